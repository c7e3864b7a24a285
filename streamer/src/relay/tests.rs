//! End-to-end tests of [`RelaySet`] on 127.0.0.1: a real RTMP listener (`ffmpeg -listen 1`)
//! fed from a real clip, a refusing port, a hanging TCP listener, target updates. Tests
//! needing ffmpeg skip (with a note) when it is not installed. Each is bounded well under
//! 30 s.

use super::*;
use crate::flv::{FlvDemuxer, FlvFileReader, TAG_AUDIO, TAG_VIDEO};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn have(tool: &str) -> bool {
    Command::new(tool).arg("-version").output().is_ok_and(|o| o.status.success())
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("streamer-relay-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A 6 s clip (H.264 with B-frames, GOP 2 s, AAC) read back as media events.
fn clip(dir: &Path) -> (PathBuf, Vec<MediaEvent>) {
    let path = dir.join("clip.flv");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25"])
        .args(["-f", "lavfi", "-i", "sine", "-c:v", "libx264", "-g", "50", "-c:a", "aac"])
        .args(["-t", "6"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    let file = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
    let mut reader = FlvFileReader::new(file).unwrap();
    let mut demux = FlvDemuxer::new();
    let mut events = Vec::new();
    while let Some(tag) = reader.next_tag().unwrap() {
        let event = match tag.kind {
            TAG_VIDEO => demux.video(tag.timestamp_ms, tag.body).unwrap(),
            TAG_AUDIO => demux.audio(tag.timestamp_ms, tag.body).unwrap(),
            _ => None,
        };
        events.extend(event);
    }
    (path, events)
}

/// (video packets, audio packets, duration in seconds) as ffprobe counts them.
fn probe(path: &Path) -> (u64, u64, f64) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_packets", "-of", "json"])
        .args(["-show_entries", "stream=codec_type,nb_read_packets:format=duration"])
        .arg(path)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let count = |kind: &str| {
        json["streams"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["codec_type"] == kind)
            .and_then(|s| s["nb_read_packets"].as_str()?.parse().ok())
            .unwrap_or(0)
    };
    let duration = json["format"]["duration"].as_str().and_then(|d| d.parse().ok()).unwrap_or(0.0);
    (count("video"), count("audio"), duration)
}

fn fast() -> RelaySettings {
    RelaySettings {
        connect_timeout: Duration::from_secs(1),
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
        ..RelaySettings::default()
    }
}

/// Waits (at most `within`) until `ok` holds for the statuses.
async fn until(
    set: &RelaySet,
    within: Duration,
    ok: impl Fn(&[RelayStatus]) -> bool,
) -> Vec<RelayStatus> {
    let mut changed = set.changed();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let statuses = set.statuses();
        if ok(&statuses) {
            return statuses;
        }
        let wait = tokio::time::timeout_at(deadline, changed.changed()).await;
        assert!(wait.is_ok(), "timed out; statuses {statuses:?}");
    }
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Times [`RelaySet::push`] calls: the ingest must never wait for a destination.
#[derive(Debug, Default)]
struct PushTimer {
    total: Duration,
    count: u32,
    slowest: Duration,
}

impl PushTimer {
    fn push(&mut self, set: &mut RelaySet, event: &MediaEvent) {
        let t = Instant::now();
        set.push(event);
        let took = t.elapsed();
        self.total += took;
        self.count += 1;
        self.slowest = self.slowest.max(took);
    }

    /// Microseconds on average; no call anywhere near an I/O wait (a push that waited for a
    /// stalled destination would take its write timeout, seconds). The bound on the slowest
    /// call leaves room for a descheduled test thread on a loaded machine.
    fn check(&self) {
        let mean = self.total / self.count.max(1);
        assert!(mean < Duration::from_micros(50), "{self:?}");
        assert!(self.slowest < Duration::from_millis(50), "{self:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_a_clip_to_an_rtmp_listener_unchanged() {
    if !have("ffmpeg") || !have("ffprobe") {
        eprintln!("skipped: ffmpeg/ffprobe not installed");
        return;
    }
    let dir = dir("ffmpeg");
    let (clip_path, events) = clip(&dir);
    let port = closed_port();
    let out = dir.join("out.flv");
    let mut listener = tokio::process::Command::new("ffmpeg")
        .args(["-v", "fatal", "-y", "-listen", "1", "-i"])
        .arg(format!("rtmp://127.0.0.1:{port}/live/sekrit-key"))
        .args(["-c", "copy"])
        .arg(&out)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("rtmp://127.0.0.1:{port}/live/sekrit-key");
    let mut set = RelaySet::new(vec![RelayTarget { id: "ff".into(), url }], fast());
    until(&set, Duration::from_secs(10), |s| s[0].state == RelayState::Live).await;
    let mut timer = PushTimer::default();
    for event in &events {
        timer.push(&mut set, event);
    }
    let status = set.statuses().remove(0);
    set.finish(Duration::from_secs(10)).await;
    // ffmpeg ends when the connection closes after deleteStream (reporting the end of its
    // input as an I/O error, exit status 0 or 1 at random): the file is complete either way.
    let exited = tokio::time::timeout(Duration::from_secs(10), listener.wait()).await;
    assert!(matches!(exited, Ok(Ok(_))), "ffmpeg did not end: {exited:?}");
    let (want_v, want_a, want_d) = probe(&clip_path);
    let (got_v, got_a, got_d) = probe(&out);
    eprintln!(
        "{} events pushed ({timer:?}); clip {want_v}v/{want_a}a \
         {want_d}s, relayed {got_v}v/{got_a}a {got_d}s; {status:?}",
        events.len()
    );
    assert_eq!(got_v, want_v, "video frames");
    assert!(got_a.abs_diff(want_a) <= 1, "audio frames {got_a} vs {want_a}");
    assert!((got_d - want_d).abs() <= 0.5, "duration {got_d} vs {want_d}");
    assert_eq!((status.dropped_gops, status.dropped_frames), (0, 0));
    timer.check();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_refusing_port_ends_in_retrying_with_a_masked_error() {
    let url = format!("rtmp://127.0.0.1:{}/live/sekrit-key?token=sekrit-token", closed_port());
    let target = RelayTarget { id: "closed".into(), url };
    assert!(!format!("{target:?}").contains("sekrit"));
    let set = RelaySet::new(vec![target], fast());
    let statuses = until(&set, Duration::from_secs(5), |s| {
        s[0].state == RelayState::Retrying && s[0].reconnects >= 1
    })
    .await;
    let error = statuses[0].last_error.clone().unwrap_or_default();
    assert!(error.starts_with("connect: Connection refused"), "{error}");
    assert!(!format!("{statuses:?}").contains("sekrit"));
    let json = serde_json::to_string(&statuses[0]).unwrap();
    assert!(json.contains(r#""state":"retrying""#), "{json}");
    set.finish(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_destination_times_out_and_push_never_blocks() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts and holds connections, never answers the handshake.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let url = format!("rtmps://127.0.0.1:{port}/live/sekrit-key");
    let url2 = format!("rtmp://127.0.0.1:{port}/live/sekrit-key");
    let targets =
        vec![RelayTarget { id: "tls".into(), url }, RelayTarget { id: "tcp".into(), url: url2 }];
    let mut set = RelaySet::new(targets, fast());
    let events = synthetic_gop(2000, 0);
    let mut timer = PushTimer::default();
    for event in &events {
        timer.push(&mut set, event);
    }
    let statuses =
        until(&set, Duration::from_secs(4), |s| s.iter().all(|s| s.state == RelayState::Retrying))
            .await;
    for s in &statuses {
        let error = s.last_error.as_deref().unwrap_or_default();
        assert_eq!(error, "connect and publish timed out after 1s", "{s:?}");
        assert_eq!(s.bytes_sent, 0);
    }
    timer.check();
    let t = Instant::now();
    set.finish(Duration::from_secs(2)).await;
    assert!(t.elapsed() < Duration::from_secs(1), "nothing to drain: finish is quick");
    holder.abort();
}

/// Tracks, then `n` video frames from DTS `start` (90 kHz) on, 25 fps, 25-frame GOPs of
/// 10 kB frames (one slice NAL unit each).
fn synthetic_gop(n: usize, start: u64) -> Vec<MediaEvent> {
    use crate::media::{Frame, Track, Tracks, VideoConfig};
    let sets: &[u8] = &[0, 0, 0, 1, 0x67, 0x64, 0, 0x1F, 0xAC, 0, 0, 0, 1, 0x68, 0xEE, 0x3C, 0x80];
    let tracks = Tracks {
        video: Some(VideoConfig { parameter_sets: bytes::Bytes::from_static(sets) }),
        audio: None,
    };
    let frame = |nal: u8| {
        let mut data = vec![0, 0, 0, 1, 0x09, 0xF0, 0, 0, 0, 1, nal];
        data.resize(10_000, 0xAB);
        bytes::Bytes::from(data)
    };
    let (idr, inter) = (frame(0x65), frame(0x41));
    let mut events = vec![MediaEvent::Tracks(tracks)];
    events.extend((0..n as u64).map(|i| {
        let dts = start + i * 3600;
        MediaEvent::Frame(Frame {
            track: Track::Video,
            dts,
            pts: dts,
            idr: i % 25 == 0,
            discontinuity: false,
            data: if i % 25 == 0 { idr.clone() } else { inter.clone() },
        })
    }));
    events
}

#[tokio::test]
async fn update_starts_stops_and_restarts_by_id() {
    let url = |key: &str| format!("rtmp://127.0.0.1:{}/live/{key}", closed_port());
    let a = RelayTarget { id: "a".into(), url: url("k1") };
    let b = RelayTarget { id: "b".into(), url: url("k2") };
    let mut set = RelaySet::new(vec![a.clone(), b.clone(), a.clone()], fast());
    assert_eq!(set.statuses().len(), 2, "duplicate id ignored");
    until(&set, Duration::from_secs(5), |s| s.iter().all(|s| s.reconnects >= 1)).await;
    let c = RelayTarget { id: "c".into(), url: url("k3") };
    let b2 = RelayTarget { id: "b".into(), url: url("k4") };
    set.update(vec![c, a, b2]);
    let statuses = set.statuses();
    let ids: Vec<&str> = statuses.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["c", "a", "b"]);
    assert!(statuses[1].reconnects >= 1, "a untouched");
    assert_eq!(statuses[2].reconnects, 0, "b restarted for its new url");
    assert_eq!(statuses[0].reconnects, 0);
    set.update(vec![]);
    assert!(set.statuses().is_empty());
    set.finish(Duration::from_secs(3)).await;
}

#[tokio::test]
async fn unusable_urls_are_reported_masked() {
    let target = RelayTarget { id: "bad".into(), url: "http://h/app/sekrit-key".into() };
    let set = RelaySet::new(vec![target], fast());
    let s = until(&set, Duration::from_secs(2), |s| s[0].state == RelayState::Retrying).await;
    let error = s[0].last_error.as_deref().unwrap_or_default();
    assert!(error.starts_with("invalid destination url http://h/app/****"), "{error}");
    set.finish(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_a_clip_over_encrypted_srt() {
    if !have("ffmpeg") || !have("ffprobe") {
        eprintln!("skipped: ffmpeg/ffprobe not installed");
        return;
    }
    let dir = dir("srt");
    let (clip_path, events) = clip(&dir);
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = dir.join("out.ts");
    let mut listener = tokio::process::Command::new("ffmpeg")
        .args(["-v", "fatal", "-y", "-i"])
        .arg(format!(
            "srt://127.0.0.1:{port}?mode=listener&passphrase=sekrit-passphrase&pbkeylen=16"
        ))
        .args(["-c", "copy"])
        .arg(&out)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!(
        "srt://127.0.0.1:{port}?streamid=sekrit-id&passphrase=sekrit-passphrase&latency=200"
    );
    let mut set = RelaySet::new(vec![RelayTarget { id: "srt".into(), url }], fast());
    until(&set, Duration::from_secs(10), |s| s[0].state == RelayState::Live).await;
    for event in &events {
        set.push(event);
    }
    set.finish(Duration::from_secs(10)).await;
    let exited = tokio::time::timeout(Duration::from_secs(10), listener.wait()).await;
    assert!(matches!(exited, Ok(Ok(_))), "ffmpeg did not end: {exited:?}");
    let (want_v, want_a, want_d) = probe(&clip_path);
    let (got_v, got_a, got_d) = probe(&out);
    eprintln!("clip {want_v}v/{want_a}a {want_d}s, relayed over srt {got_v}v/{got_a}a {got_d}s");
    assert_eq!(got_v, want_v, "video frames");
    assert!(got_a.abs_diff(want_a) <= 1, "audio frames {got_a} vs {want_a}");
    assert!((got_d - want_d).abs() <= 0.5, "duration {got_d} vs {want_d}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_destination_drops_gops_then_times_out() {
    if !have("ffmpeg") {
        eprintln!("skipped: ffmpeg not installed");
        return;
    }
    let dir = dir("stall");
    let (_, events) = clip(&dir);
    let port = closed_port();
    let mut listener = tokio::process::Command::new("ffmpeg")
        .args(["-v", "quiet", "-y", "-listen", "1", "-i"])
        .arg(format!("rtmp://127.0.0.1:{port}/live/k"))
        .args(["-c", "copy", "-f", "null", "-"])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let settings = RelaySettings {
        queue_bytes: 1 << 20,
        write_timeout: Duration::from_secs(1),
        backoff_min: Duration::from_secs(10),
        ..fast()
    };
    let url = format!("rtmp://127.0.0.1:{port}/live/k");
    let mut set = RelaySet::new(vec![RelayTarget { id: "stall".into(), url }], settings);
    until(&set, Duration::from_secs(10), |s| s[0].state == RelayState::Live).await;
    for event in &events {
        set.push(event);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = listener.id().and_then(|p| i32::try_from(p).ok()).unwrap();
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    // 10 kB frames at 20 MB/s until the socket buffers fill, the 1 MiB queue overflows and
    // the write stalls for the write timeout.
    let more = synthetic_gop(200_000, 10_000_000);
    let mut timer = PushTimer::default();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut statuses = set.statuses();
    for chunk in more.chunks(10) {
        for event in chunk {
            timer.push(&mut set, event);
        }
        statuses = set.statuses();
        if statuses[0].state == RelayState::Retrying || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let s = &statuses[0];
    eprintln!("{s:?}");
    assert_eq!(s.state, RelayState::Retrying, "{s:?}");
    assert!(s.dropped_gops >= 1 && s.dropped_frames >= 25, "{s:?}");
    assert_eq!(s.last_error.as_deref(), Some("write timed out after 1s"));
    timer.check();
    set.finish(Duration::from_secs(1)).await;
    let _ = listener.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}
