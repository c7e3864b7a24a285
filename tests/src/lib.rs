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

/// Settings of an API under test: ingest `ingest.example:1935`, playback from
/// `https://cdn.example`, push URLs valid 600 s.
pub fn api_config() -> streamstack_core::Config {
    streamstack_core::Config::from_lookup(|k| match k {
        "CHANNELS_TABLE" => Some("unused".into()),
        "MEDIA_BUCKET" => Some("media".into()),
        "INGEST_HOST" => Some("ingest.example:1935".into()),
        "PLAYBACK_BASE_URL" => Some("https://cdn.example".into()),
        "PUSH_URL_TTL_SECS" => Some("600".into()),
        _ => None,
    })
    .expect("valid test config")
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
        .into_channel(time::OffsetDateTime::now_utc())
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
    let key = format!("live/{}/index.m3u8", channel.id);
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

pub mod mediaconvert;
pub mod process;
pub mod vod;
