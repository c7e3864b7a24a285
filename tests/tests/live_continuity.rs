//! Live playlist continuity across streamer processes: a `streamer pull` of a device killed
//! with `kill -9` and started again on the same output (and the same spool, so start-up
//! recovery runs first) continues the device's live playlist instead of starting a new one
//! at `EXT-X-MEDIA-SEQUENCE:0`. Every version of the playlist a player could have loaded keeps
//! its media sequence growing and each number naming one segment (RFC 8216 §6.2.1, §6.3.5),
//! the new process's first segment carries `EXT-X-DISCONTINUITY` (§4.3.2.3), the old
//! segments still listed are still there, and the whole playlist decodes across the break.
//!
//! Also the S3 sink's bounded read-back that continuity relies on (needs moto:
//! `scripts/with-moto.sh cargo test -p streamstack-tests --test live_continuity`).

use bytes::Bytes;
use m3u8_rs::MediaPlaylist;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use streamer::sink::{ObjectMeta, ObjectSink, S3Sink, SinkError};
use streamstack_tests::process::{free_udp_port, StreamerProcess};
use streamstack_tests::*;
use tokio::process::{Child, Command};
use tokio::time::Instant;

const DEVICE: &str = "cam-continuity";

/// `ffmpeg -re -i <file> -c copy -f mpegts udp://…`: a camera sending MPEG-TS over UDP.
fn send(file: &Path, port: u16) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-i"])
        .arg(file)
        .args(["-c", "copy", "-f", "mpegts"])
        .arg(format!("udp://127.0.0.1:{port}?pkt_size=1316"))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ffmpeg")
}

/// `streamer pull` of `udp://127.0.0.1:<port>` as `device:<DEVICE>` into `dir:<out>`, 2 s
/// segments, a 20-segment live window, spooling in `spool`; returns once the UDP source is
/// bound.
async fn pull(port: u16, out: &Path, spool: &Path) -> StreamerProcess {
    let source = format!("udp://127.0.0.1:{port}");
    let target = format!("device:{DEVICE}");
    let output = format!("dir:{}", out.display());
    let args = [
        "--source",
        &source,
        "--target",
        &target,
        "--output",
        &output,
        "--segment-duration",
        "2",
        "--playlist-window",
        "20",
    ];
    let spool = spool.to_string_lossy();
    let streamer = StreamerProcess::pull(&args, &[("STREAMER_SPOOL_DIR", &spool)]).await;
    streamer.wait_for_log("UDP source open", 1, Duration::from_secs(20)).await;
    streamer
}

/// Every distinct version of the live playlist seen by polling it every 50 ms, in order.
struct Watch {
    path: PathBuf,
    versions: Vec<(Vec<u8>, MediaPlaylist)>,
}

impl Watch {
    fn new(path: PathBuf) -> Self {
        Self { path, versions: Vec::new() }
    }

    fn poll(&mut self) {
        let Ok(bytes) = std::fs::read(&self.path) else { return };
        if self.versions.last().is_some_and(|(b, _)| *b == bytes) {
            return;
        }
        let playlist = m3u8_rs::parse_media_playlist_res(&bytes)
            .unwrap_or_else(|e| panic!("live playlist does not parse: {e:?}"));
        self.versions.push((bytes, playlist));
    }

    fn last(&self) -> Option<&MediaPlaylist> {
        self.versions.last().map(|(_, p)| p)
    }

    /// Polls until the latest version satisfies `done`, for at most `within` (and at most
    /// `within / 50 ms` polls).
    async fn until(&mut self, what: &str, within: Duration, done: impl Fn(&MediaPlaylist) -> bool) {
        let deadline = Instant::now() + within;
        let polls = within.as_millis() / 50;
        for _ in 0..polls {
            self.poll();
            if self.last().is_some_and(&done) {
                return;
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{what}: not within {within:?}; last version: {:?}", self.last());
    }
}

/// The session folder of a listed URI (`<session>/000012.ts`).
fn session_of(uri: &str) -> &str {
    uri.split_once('/').map_or("", |(s, _)| s)
}

/// Segments of `playlist` in session folders other than `old`.
fn new_segments<'a>(playlist: &'a MediaPlaylist, old: &str) -> Vec<&'a m3u8_rs::MediaSegment> {
    playlist.segments.iter().filter(|s| session_of(&s.uri) != old).collect()
}

/// What a player following the playlist relies on across every version it could load
/// (RFC 8216 §6.2.1, §6.2.2, §6.3.5): the media sequence never goes back, a media sequence
/// number always names the same URI, and a URI keeps its discontinuity sequence number.
fn assert_numbering(versions: &[(Vec<u8>, MediaPlaylist)]) {
    let mut by_number: BTreeMap<u64, String> = BTreeMap::new();
    let mut discontinuity: BTreeMap<String, u64> = BTreeMap::new();
    let mut last = 0;
    for (i, (_, p)) in versions.iter().enumerate() {
        assert!(
            p.media_sequence >= last,
            "version {i}: EXT-X-MEDIA-SEQUENCE {} after {last}",
            p.media_sequence
        );
        last = p.media_sequence;
        let mut d = p.discontinuity_sequence;
        for (k, s) in p.segments.iter().enumerate() {
            d += u64::from(s.discontinuity);
            let n = p.media_sequence + k as u64;
            let named = by_number.entry(n).or_insert_with(|| s.uri.clone());
            assert_eq!(named, &s.uri, "version {i}: media sequence number {n} renamed");
            let number = discontinuity.entry(s.uri.clone()).or_insert(d);
            assert_eq!(*number, d, "version {i}: {} renumbered", s.uri);
        }
    }
}

/// A copy of a live playlist version next to it (same relative URIs), ended so that ffmpeg
/// reads it from the start, keeping only the segments `keep` selects.
fn snapshot(live_dir: &Path, name: &str, text: &[u8], keep: impl Fn(&str) -> bool) -> PathBuf {
    let mut playlist = m3u8_rs::parse_media_playlist_res(text).expect("parses");
    playlist.segments.retain(|s| keep(&s.uri));
    if let Some(first) = playlist.segments.first_mut() {
        first.discontinuity = false;
    }
    playlist.end_list = true;
    let mut out = Vec::new();
    playlist.write_to(&mut out).expect("render");
    let path = live_dir.join(name);
    std::fs::write(&path, out).expect("write snapshot");
    path
}

/// Decodes the live playlist `text` (the old process's segments, a discontinuity, the new
/// one's): each process's part decodes cleanly, whole and segment by segment, into the
/// clip's own pictures ([`assert_hls_decodes`]); the whole playlist decodes end to end into
/// exactly those pictures, one run per process.
///
/// ffmpeg's HLS demuxer ignores `EXT-X-DISCONTINUITY` and reads the segments as one MPEG-TS
/// stream, so the new process's continuity counters, which start again at 0, make it flag
/// the packet in progress at the break `Packet corrupt` (its data is whole: the picture
/// hashes prove it); players reset their demuxer at the tag (RFC 8216 §4.3.2.3). That flag is
/// the only complaint allowed, once per elementary stream at most.
fn assert_decodes_across_the_break(live_dir: &Path, text: &[u8], old: &str, clip: &Path) {
    let old_part = snapshot(live_dir, "old.m3u8", text, |uri| session_of(uri) == old);
    let new_part = snapshot(live_dir, "new.m3u8", text, |uri| session_of(uri) != old);
    let old_runs = assert_hls_decodes(&old_part, clip).runs;
    let new_runs = assert_hls_decodes(&new_part, clip).runs;
    assert_eq!((old_runs.len(), new_runs.len()), (1, 1), "{old_runs:?} {new_runs:?}");

    let all = snapshot(live_dir, "all.m3u8", text, |_| true);
    let path = all.to_string_lossy();
    let whole = decoded_frames(&path);
    let flagged = |l: &&str| l.contains("Packet corrupt") || l.contains("corrupt input packet");
    let others: Vec<&str> = whole.errors.lines().filter(|l| !flagged(l)).collect();
    assert!(others.is_empty(), "decode errors across the break: {}", whole.errors);
    let cc_flags = whole.errors.lines().filter(|l| l.starts_with("[mpegts @")).count();
    assert!(cc_flags <= 2, "more than the break's continuity flags: {}", whole.errors);
    let by_segment = segment_decoded_frames(&all);
    assert!(by_segment.errors.is_empty(), "segment by segment: {}", by_segment.errors);
    assert_eq!(by_segment.video_frames, whole.video_frames, "every segment decodes on its own");
    let hashes = picture_hashes(&path);
    assert_eq!(hashes.len() as u64, whole.video_frames);
    let runs = source_runs(&hashes, &picture_hashes(&clip.to_string_lossy()))
        .unwrap_or_else(|e| panic!("{}: {e}", all.display()));
    assert_eq!(runs, [old_runs[0], new_runs[0]], "the clip's pictures, one run per process");
    let probed = ffprobe_duration(&path).expect("HLS probes");
    let playlist = m3u8_rs::parse_media_playlist_res(text).expect("parses");
    let listed: f64 = playlist.segments.iter().map(|s| f64::from(s.duration)).sum();
    assert!((probed - listed).abs() <= 2.5, "ffprobe reads {probed} s of {listed} s listed");
}

#[tokio::test]
async fn a_killed_pull_restarted_on_the_same_output_continues_its_live_playlist() {
    let dir = tempdir();
    let clip = make_ts(&dir, "clip.ts", "320x240", 20, "0");
    let (out, spool) = (dir.join("out"), dir.join("spool"));
    let live_dir = out.join(format!("devices/{DEVICE}/live"));
    let mut watch = Watch::new(live_dir.join("index.m3u8"));
    let port = free_udp_port();
    let minute = Duration::from_secs(60);

    // First process: at least 3 segments listed, then kill -9 (no flush, no ENDLIST).
    let first = pull(port, &out, &spool).await;
    let sender = send(&clip, port);
    watch.until("3 segments of the first process", minute, |p| p.segments.len() >= 3).await;
    first.kill9().await;
    drop(sender);
    watch.poll();
    let killed = watch.last().expect("a playlist").clone();
    assert!(!killed.end_list, "a killed process ends nothing");
    assert_eq!(killed.media_sequence, 0);
    let old = session_of(&killed.segments[0].uri).to_owned();
    assert!(killed.segments.iter().all(|s| session_of(&s.uri) == old), "{killed:?}");

    // Second process on the same output and spool: recovery, then a new session.
    let second = pull(port, &out, &spool).await;
    let sender = send(&clip, port);
    let old_ref = old.clone();
    watch
        .until("3 segments of the second process", minute, move |p| {
            new_segments(p, &old_ref).len() >= 3
        })
        .await;
    drop(sender);
    let versions = watch.versions.len();
    assert!(versions >= 4, "{versions} versions seen");
    assert_numbering(&watch.versions);

    let live = watch.last().expect("a playlist").clone();
    assert!(!live.end_list, "no EXT-X-ENDLIST while live: {live:?}");
    let fresh = new_segments(&live, &old);
    let first_new = live.segments.iter().position(|s| session_of(&s.uri) != old).unwrap();
    assert!(first_new > 0, "the first process's segments are still listed: {live:?}");
    assert!(live.segments[first_new].discontinuity, "EXT-X-DISCONTINUITY before the new session");
    assert!(fresh[1..].iter().all(|s| !s.discontinuity), "{live:?}");
    let new_session = session_of(&fresh[0].uri);
    assert!(fresh.iter().all(|s| session_of(&s.uri) == new_session), "one new session");
    // Numbering went on from the killed process's (its last version or recovery's).
    assert_eq!(live.target_duration, killed.target_duration);
    let last_old = killed.media_sequence + killed.segments.len() as u64 - 1;
    let first_new_number = live.media_sequence + first_new as u64;
    assert!(first_new_number > last_old, "{first_new_number} after {last_old}");
    for segment in &live.segments {
        let path = live_dir.join(&segment.uri);
        assert!(
            std::fs::metadata(&path).is_ok_and(|m| m.len() > 0),
            "{} is listed but not stored",
            segment.uri
        );
    }
    // Recovery ended the first session's playlist in between (or the new session was
    // first, and recovery left its live playlist alone): either way it was un-ended.
    if watch.versions.iter().any(|(_, p)| p.end_list) {
        let ended = watch.versions.iter().position(|(_, p)| p.end_list).unwrap();
        assert!(watch.versions[ended + 1..].iter().all(|(_, p)| !p.end_list));
    }
    assert!(second.log().contains("continuing an earlier session's live playlist"));

    // The playlist as a player joining now sees it, decoded end to end across the break.
    assert_decodes_across_the_break(&live_dir, &watch.versions.last().unwrap().0, &old, &clip);

    assert!(second.terminate(Duration::from_secs(30)).await, "unclean exit");
    watch.poll();
    let ended = watch.last().unwrap();
    assert!(ended.end_list, "SIGTERM ends the playlist");
    assert_numbering(&watch.versions);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn s3_sink_reads_objects_back_within_a_limit() {
    let aws = aws().await;
    let bucket = bucket(&aws).await;
    let sink = S3Sink::new(aws.s3.clone(), &bucket);
    let meta = ObjectMeta {
        content_type: "application/vnd.apple.mpegurl",
        cache_control: "max-age=1",
        expiring: true,
    };
    assert!(sink.get("devices/x/live/index.m3u8", 100).await.expect("get").is_none());
    let body = Bytes::from_static(b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n");
    sink.put("devices/x/live/index.m3u8", body.clone(), meta).await.expect("put");
    let read = sink.get("devices/x/live/index.m3u8", 100).await.expect("get");
    assert_eq!(read.as_deref(), Some(&body[..]));
    let small = sink.get("devices/x/live/index.m3u8", 10).await;
    assert!(matches!(small, Err(SinkError::TooLarge { max_bytes: 10, .. })), "{small:?}");
    let elsewhere = S3Sink::new(aws.s3.clone(), unique("no-such-bucket"));
    let missing = elsewhere.get("devices/x/live/index.m3u8", 100).await;
    assert!(matches!(missing, Err(SinkError::Read { .. })), "{missing:?}");
}
