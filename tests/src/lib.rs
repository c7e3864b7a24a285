//! Shared harness of the cross-crate integration tests.
//!
//! Tests run against a real moto server (started by `scripts/with-moto.sh`, which `make test`
//! wraps around `cargo test`) and real ffmpeg / GStreamer publishers.

#![warn(missing_docs)]

use m3u8_rs::MediaPlaylist;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use streamer::publish::{Ingest, UploadSettings};
use streamer::sink::{ObjectSink, S3Sink};
use streamstack_core::aws::AwsClients;
use streamstack_core::{
    Channel, ChannelState, ChannelStore, DynamoAssetStore, DynamoChannelStore, HlsSettings,
    NewChannel,
};

/// The moto endpoint from `AWS_ENDPOINT_URL`.
///
/// # Panics
/// When unset: these tests need `make test` (or `scripts/with-moto.sh cargo test`).
pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL")
        .expect("AWS_ENDPOINT_URL is not set: run `make test` (it starts a moto server)")
}

/// AWS clients pointed at moto.
pub async fn aws() -> AwsClients {
    AwsClients::load(Some(&endpoint())).await
}

/// A unique name for a table or bucket.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// A fresh channel table in moto.
pub async fn channel_store(aws: &AwsClients) -> Arc<DynamoChannelStore> {
    channel_table(aws).await.1
}

/// A fresh channel table in moto: its name (for a `streamer` child process's
/// `CHANNELS_TABLE`) and a store on it.
pub async fn channel_table(aws: &AwsClients) -> (String, Arc<DynamoChannelStore>) {
    let table = unique("channels");
    let store = DynamoChannelStore::new(aws.dynamodb.clone(), table.clone());
    store.create_table_if_missing().await.expect("create table");
    (table, Arc::new(store))
}

/// The signed push URL of `channel` on an RTMP server at `addr`, valid for an hour.
pub fn signed_push_url(addr: SocketAddr, channel: &Channel) -> String {
    let exp = time::OffsetDateTime::now_utc().unix_timestamp() as u64 + 3600;
    streamstack_core::signing::push_url(&addr.to_string(), &channel.secret, &channel.id, exp)
}

/// The channel's `state` as the API reads it.
pub async fn channel_state(store: &dyn ChannelStore, channel: &Channel) -> ChannelState {
    store.get(&channel.id).await.expect("get channel").expect("channel exists").state
}

/// Waits up to `within` for the channel to read `want` (state changes trail the media: a
/// channel turns idle right after its final playlist is written); returns how long it took.
///
/// # Panics
/// When it does not within `within`.
pub async fn wait_for_state(
    store: &dyn ChannelStore,
    channel: &Channel,
    want: ChannelState,
    within: Duration,
) -> Duration {
    let started = std::time::Instant::now();
    while channel_state(store, channel).await != want {
        assert!(started.elapsed() < within, "channel not {want:?} within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

/// Settings of an API under test: ingest `ingest.example:1935` (RTMPS on 443, SRT on 9000),
/// playback from `https://cdn.example`, push URLs valid 600 s.
pub fn api_config() -> streamstack_core::Config {
    streamstack_core::Config::from_lookup(|k| match k {
        "CHANNELS_TABLE" => Some("unused".into()),
        "MEDIA_BUCKET" => Some("media".into()),
        "INGEST_HOST" => Some("ingest.example:1935".into()),
        "INGEST_RTMPS_HOST" => Some("ingest.example:443".into()),
        "INGEST_SRT_HOST" => Some("ingest.example:9000".into()),
        "PLAYBACK_BASE_URL" => Some("https://cdn.example".into()),
        "PUSH_URL_TTL_SECS" => Some("600".into()),
        _ => None,
    })
    .expect("valid test config")
}

/// Lets anyone read `<bucket>/<prefix>*` (a bucket policy), as the local stack does, so
/// players (ffprobe, a browser) fetch objects by plain URL; in AWS CloudFront reads them.
///
/// # Panics
/// When the policy cannot be put.
pub async fn allow_public_read(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) {
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{ "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                        "Resource": format!("arn:aws:s3:::{bucket}/{prefix}*") }]
    });
    let put = s3.put_bucket_policy().bucket(bucket).policy(policy.to_string());
    put.send().await.expect("bucket policy");
}

/// A fresh empty directory under the system temporary directory.
pub fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(unique("streamstack-test"));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// A fresh asset table in moto.
pub async fn asset_store(aws: &AwsClients) -> Arc<DynamoAssetStore> {
    let store = DynamoAssetStore::new(aws.dynamodb.clone(), unique("assets"));
    store.create_table_if_missing().await.expect("create table");
    Arc::new(store)
}

/// A fresh bucket in moto whose `live/` prefix is publicly readable (as players read it
/// through a CDN in a deployment), so ffprobe can fetch playlists over plain HTTP.
pub async fn bucket(aws: &AwsClients) -> String {
    let name = unique("media");
    aws.s3.create_bucket().bucket(&name).send().await.expect("create bucket");
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{ "Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                        "Resource": format!("arn:aws:s3:::{name}/live/*") }]
    });
    aws.s3
        .put_bucket_policy()
        .bucket(&name)
        .policy(policy.to_string())
        .send()
        .await
        .expect("bucket policy");
    name
}

/// Creates a channel with the given HLS settings directly in the store.
pub async fn channel(store: &dyn ChannelStore, hls: HlsSettings) -> Channel {
    let channel = NewChannel::named("test", hls)
        .into_channel(time::OffsetDateTime::now_utc(), streamstack_core::Playback::Public)
        .expect("valid channel");
    store.create(&channel).await.expect("store channel");
    channel
}

/// A running RTMP ingest server on 127.0.0.1 (random port).
pub struct Streamer {
    /// RTMP address.
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Streamer {
    /// Starts a server writing to `sink`.
    pub async fn start(
        store: Arc<dyn ChannelStore>,
        sink: Arc<dyn ObjectSink>,
        uploads: UploadSettings,
    ) -> Self {
        let settings = streamer::publish::IngestSettings { uploads, ..Default::default() };
        let ingest = Ingest::new(store, sink, settings);
        let limits = streamer::ingest::rtmp::RtmpLimits::default();
        let server =
            streamer::ingest::rtmp::Server::bind("127.0.0.1:0".parse().unwrap(), ingest, limits)
                .await
                .expect("bind");
        let addr = server.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(
            async {
                let _ = rx.await;
            },
            Duration::from_secs(20),
        ));
        Self { addr, stop: Some(tx), task }
    }

    /// Starts a server writing to an S3 bucket.
    pub async fn start_s3(aws: &AwsClients, store: Arc<dyn ChannelStore>, bucket: &str) -> Self {
        Self::start(store, Arc::new(S3Sink::new(aws.s3.clone(), bucket)), UploadSettings::default())
            .await
    }

    /// The signed push URL of `channel` on this server, valid for an hour.
    pub fn push_url(&self, channel: &Channel) -> String {
        signed_push_url(self.addr, channel)
    }

    /// Stops accepting, flushes open publishes and waits for the server task.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = self.task.await;
    }
}

/// How a test publisher encodes its synthetic source.
#[derive(Debug, Clone, Copy)]
pub struct Clip {
    /// Duration, seconds.
    pub seconds: u32,
    /// Frames per second.
    pub fps: u32,
    /// IDR interval in frames.
    pub gop: u32,
    /// Include an AAC track.
    pub audio: bool,
    /// Publish in real time (`-re`) instead of as fast as possible.
    pub realtime: bool,
}

impl Default for Clip {
    fn default() -> Self {
        Self { seconds: 20, fps: 25, gop: 25, audio: true, realtime: false }
    }
}

/// Publishes a synthetic H.264(+AAC) clip to `url` with ffmpeg; returns whether ffmpeg
/// exited successfully.
pub async fn ffmpeg_publish(url: &str, clip: Clip) -> bool {
    ffmpeg_send(url, clip, "flv").await
}

/// Sends a synthetic H.264(+AAC) clip as MPEG-TS to `url` (`udp://…?pkt_size=1316`,
/// `srt://…`) with ffmpeg; returns whether ffmpeg exited successfully.
pub async fn ffmpeg_send_ts(url: &str, clip: Clip) -> bool {
    ffmpeg_send(url, clip, "mpegts").await
}

/// The clip encoded by ffmpeg into container `format` at `url`.
async fn ffmpeg_send(url: &str, clip: Clip, format: &str) -> bool {
    let mut cmd = tokio::process::Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin"]);
    if clip.realtime {
        cmd.arg("-re");
    }
    cmd.args(["-f", "lavfi", "-i", &format!("testsrc2=size=320x240:rate={}", clip.fps)]);
    if clip.audio {
        cmd.args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]);
    }
    cmd.args([
        "-t",
        &clip.seconds.to_string(),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
    ]);
    cmd.args([
        "-g",
        &clip.gop.to_string(),
        "-keyint_min",
        &clip.gop.to_string(),
        "-sc_threshold",
        "0",
    ]);
    if clip.audio {
        cmd.args(["-c:a", "aac", "-b:a", "64k"]);
    }
    cmd.args(["-f", format, url]).stdin(Stdio::null());
    cmd.status().await.map(|s| s.success()).unwrap_or(false)
}

/// The channel's live playlist, parsed, if it exists yet.
pub async fn playlist(aws: &AwsClients, bucket: &str, channel: &Channel) -> Option<MediaPlaylist> {
    let key = streamstack_core::domain::live_playlist_key(&channel.id, channel.playback);
    let out = aws.s3.get_object().bucket(bucket).key(&key).send().await.ok()?;
    let bytes = out.body.collect().await.ok()?.into_bytes();
    Some(m3u8_rs::parse_media_playlist_res(&bytes).expect("playlist parses"))
}

/// Waits up to 30 s for the channel's live playlist to carry `EXT-X-ENDLIST`.
pub async fn ended_playlist(aws: &AwsClients, bucket: &str, channel: &Channel) -> MediaPlaylist {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let last = playlist(aws, bucket, channel).await;
        match last {
            Some(p) if p.end_list => return p,
            _ if tokio::time::Instant::now() > deadline => panic!("playlist never ended: {last:?}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Keys under `prefix` in `bucket`.
pub async fn list_keys(aws: &AwsClients, bucket: &str, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut pages = aws.s3.list_objects_v2().bucket(bucket).prefix(prefix).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.expect("list objects");
        keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
    }
    keys.sort();
    keys
}

/// Reads an object's bytes.
pub async fn get_object(aws: &AwsClients, bucket: &str, key: &str) -> Vec<u8> {
    let out = aws.s3.get_object().bucket(bucket).key(key).send().await.expect("get object");
    out.body.collect().await.expect("read body").into_bytes().to_vec()
}

/// Runs ffprobe on `input` (file or URL) and returns the format duration in seconds, or the
/// error text.
pub fn ffprobe_duration(input: &str) -> Result<f64, String> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "default=nw=1:nk=1",
            input,
        ])
        .output()
        .map_err(|e| format!("ffprobe: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().map_err(|e| format!("{e}: {:?}", out))
}

/// Decodes every frame of `input` with ffmpeg; returns its error output (empty when clean).
pub fn ffmpeg_decode_errors(input: &str) -> String {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i", input, "-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// What ffmpeg made of a stream when decoding every frame of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decoded {
    /// Video frames the decoder output for the first video stream (ffprobe `-count_frames`,
    /// `nb_read_frames`). Frames it could not decode at all (no SPS/PPS, no picture to
    /// reference at a stream's start) are not counted; frames it concealed are.
    pub video_frames: u64,
    /// The decoders' complaints, one per line (`ffmpeg -v warning`, decoder lines and any
    /// "error while decoding", "corrupt", "conceal", "missing", "unavailable" line, e.g.
    /// "reference picture missing", "co located POCs unavailable"); empty when clean.
    pub errors: String,
}

/// Decodes every video and audio frame of `input` (file or URL) with ffprobe and ffmpeg:
/// the video frames that came out and what the decoders complained about.
///
/// A frame that references pictures of another encoder decodes *silently* into a wrong
/// picture when the decoder holds pictures of that other encoder (nothing at `-v error`,
/// often nothing at `-v warning`, and it still counts): compare [`picture_hashes`] with the
/// source's ([`source_runs`]) to catch that.
///
/// # Panics
/// When ffprobe or ffmpeg cannot be run.
pub fn decoded_frames(input: &str) -> Decoded {
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", input])
        .output()
        .expect("run ffprobe");
    // An HLS playlist lists its streams twice (program and streams): both say the same.
    let video_frames = String::from_utf8_lossy(&probe.stdout)
        .lines()
        .find_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .unwrap_or(0);
    let decode = Command::new("ffmpeg")
        .args(["-v", "warning", "-nostdin", "-i", input, "-map", "0:v?", "-map", "0:a?"])
        .args(["-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    let probe_errors = String::from_utf8_lossy(&probe.stderr);
    let decode_errors = String::from_utf8_lossy(&decode.stderr);
    let errors: Vec<&str> = probe_errors
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.contains("Last message repeated"))
        .chain(decode_errors.lines().filter(|l| decoder_complaint(l)))
        .collect();
    Decoded { video_frames, errors: errors.join("\n") }
}

/// Whether an `ffmpeg -v warning` line is a decoder's complaint: not a muxer's remark about
/// the timestamps it was handed (which a discontinuity legitimately causes), nor the raw
/// ADTS demuxer's (also tagged `aac`) that it estimates the duration.
fn decoder_complaint(line: &str) -> bool {
    const DECODERS: [&str; 3] = ["[h264 @", "[hevc @", "[aac @"];
    const WORDS: [&str; 5] =
        ["error while decoding", "corrupt", "conceal", "missing", "unavailable"];
    const REMARKS: [&str; 1] = ["Estimating duration from bitrate"];
    let lower = line.to_ascii_lowercase();
    (DECODERS.iter().any(|d| line.starts_with(d)) || WORDS.iter().any(|w| lower.contains(w)))
        && !REMARKS.iter().any(|r| line.contains(r))
}

/// [`decoded_frames`] of every segment of the HLS media playlist file `playlist`, each
/// decoded on its own as a player joining there does, summed (errors prefixed with the
/// segment's URI). Each segment must decode without the ones before it (RFC 8216 §4.3.3.6
/// EXT-X-INDEPENDENT-SEGMENTS; Apple's HLS authoring spec: a segment starts with an IDR and
/// its SPS/PPS), so a segment starting mid-GOP — e.g. after a source switch — loses frames
/// here that decoding the whole playlist still shows.
///
/// # Panics
/// When the playlist cannot be read or parsed.
pub fn segment_decoded_frames(playlist: &std::path::Path) -> Decoded {
    let bytes = std::fs::read(playlist).unwrap_or_else(|e| panic!("{}: {e}", playlist.display()));
    let parsed = m3u8_rs::parse_media_playlist_res(&bytes).expect("playlist parses");
    let dir = playlist.parent().unwrap_or(std::path::Path::new("."));
    let mut sum = Decoded::default();
    let mut errors = Vec::new();
    for segment in &parsed.segments {
        let one = decoded_frames(&dir.join(&segment.uri).to_string_lossy());
        sum.video_frames += one.video_frames;
        errors.extend(one.errors.lines().map(|l| format!("{}: {l}", segment.uri)));
    }
    sum.errors = errors.join("\n");
    sum
}

/// MD5 of every picture the decoder outputs for the first video stream of `input` (file or
/// URL), in output (presentation) order: `ffmpeg -f framemd5`, every decoded frame passed
/// through as it came (`-fps_mode passthrough`). H.264 decoding is bit-exact, so a stream
/// passed on without re-encoding yields its source's hashes.
///
/// # Panics
/// When ffmpeg cannot be run or fails.
pub fn picture_hashes(input: &str) -> Vec<String> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-i", input, "-map", "0:v:0"])
        .args(["-fps_mode", "passthrough", "-f", "framemd5", "-"])
        .output()
        .expect("run ffmpeg");
    assert!(out.status.success(), "framemd5 of {input}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit(',').next().map(|h| h.trim().to_owned()))
        .filter(|h| !h.is_empty())
        .collect()
}

/// A stretch of consecutive source pictures found in a decoded stream: source pictures
/// `start`, `start + 1`, … (`len` of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Index of the first picture in the source, presentation order.
    pub start: usize,
    /// Pictures in the stretch.
    pub len: usize,
}

/// Splits `decoded` ([`picture_hashes`] of a stream) into [`Run`]s of consecutive pictures
/// of `source` (the [`picture_hashes`] of the file the sender played): one run per
/// uninterrupted stretch, a new one wherever a picture is missing or the source restarts
/// (also right after its last picture: a looped source shows as runs from 0).
///
/// # Errors
/// The first decoded picture that is none of the source's (its index and hash): a picture
/// decoded from missing or another encoder's references, or from corrupt data.
pub fn source_runs(decoded: &[String], source: &[String]) -> Result<Vec<Run>, String> {
    let mut first = std::collections::HashMap::new();
    for (i, hash) in source.iter().enumerate() {
        first.entry(hash.as_str()).or_insert(i);
    }
    let mut runs: Vec<Run> = Vec::new();
    let mut at: Option<usize> = None;
    for (k, hash) in decoded.iter().enumerate() {
        match (at.map(|i| i + 1).filter(|&i| i < source.len()), runs.last_mut()) {
            (Some(next), Some(run)) if source[next] == *hash => {
                run.len += 1;
                at = Some(next);
            }
            _ => {
                let i = *first.get(hash.as_str()).ok_or_else(|| {
                    format!("decoded picture {k} ({hash}) is none of the source's {}", source.len())
                })?;
                runs.push(Run { start: i, len: 1 });
                at = Some(i);
            }
        }
    }
    Ok(runs)
}

/// An HLS playlist decoded against the file its source played.
#[derive(Debug)]
pub struct HlsDecode {
    /// The whole playlist, decoded as a player reads it from the start.
    pub whole: Decoded,
    /// Its pictures as runs of consecutive pictures of the source file.
    pub runs: Vec<Run>,
}

/// Decodes the HLS media playlist file `playlist` whole and segment by segment, and its
/// pictures against those of `source` (the file the sender played, passed on without
/// re-encoding).
///
/// # Panics
/// When a decoder complains (whole or any segment), a segment does not decode on its own
/// (fewer frames segment by segment than whole), a picture is none of the source's (see
/// [`source_runs`]), or the picture count differs from the decoded frame count.
pub fn assert_hls_decodes(playlist: &std::path::Path, source: &std::path::Path) -> HlsDecode {
    let path = playlist.to_string_lossy();
    let whole = decoded_frames(&path);
    assert!(whole.errors.is_empty(), "decode errors: {}", whole.errors);
    let segments = segment_decoded_frames(playlist);
    assert!(segments.errors.is_empty(), "decode errors, segment by segment: {}", segments.errors);
    assert_eq!(
        segments.video_frames, whole.video_frames,
        "every segment decodes on its own: video frames segment by segment vs whole"
    );
    let hashes = picture_hashes(&path);
    assert_eq!(hashes.len() as u64, whole.video_frames, "framemd5 vs ffprobe frame counts");
    let runs = source_runs(&hashes, &picture_hashes(&source.to_string_lossy()))
        .unwrap_or_else(|e| panic!("{}: {e}", playlist.display()));
    HlsDecode { whole, runs }
}

/// RFC 3986 percent-encoding of everything but unreserved characters: ffmpeg's `srt://` URL
/// splits its options on `&` and passes `streamid` on undecoded, so a signed stream name goes
/// encoded.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Encodes `secs` of 25 fps H.264 (`size`, IDR every second) + mono AAC into an MPEG-TS file,
/// its timestamps shifted by `offset` seconds (ffmpeg's `-output_ts_offset`).
pub fn make_ts(
    dir: &std::path::Path,
    name: &str,
    size: &str,
    secs: u32,
    offset: &str,
) -> std::path::PathBuf {
    let path = dir.join(name);
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(["-f", "lavfi", "-i", &format!("testsrc2=size={size}:rate=25")])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &secs.to_string(), "-c:v", "libx264", "-preset", "ultrafast"])
        .args(["-pix_fmt", "yuv420p", "-g", "25", "-keyint_min", "25", "-sc_threshold", "0"])
        .args(["-c:a", "aac", "-b:a", "64k", "-output_ts_offset", offset])
        .args(["-f", "mpegts"])
        .arg(&path)
        .status()
        .expect("run ffmpeg");
    assert!(status.success(), "could not encode {name}");
    path
}

pub mod browser;
pub mod devices;
pub mod egress;
pub mod gateways;
pub mod mediaconvert;
pub mod mpegts;
pub mod netns;
pub mod nginx;
pub mod process;
pub mod recorder;
pub mod router;
pub mod rtsp;
pub mod signed_stack;
pub mod topic;
pub mod vod;
