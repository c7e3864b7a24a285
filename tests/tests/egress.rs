//! `streamer egress` end to end, cloud to ground: a live HLS channel made inside the test
//! (ffmpeg `-re` sends a clip as UDP MPEG-TS into `streamer pull`, whose output directory an
//! HTTP server serves) is followed by `streamer egress` and sent to a source-specific
//! multicast group, where ffmpeg records it and the test's own receiver timestamps every
//! datagram. Midway the sender stops for 3 s and starts again (a source restart: the
//! playlist gets `EXT-X-DISCONTINUITY`). Runs in its own network namespace (`unshare -rn`).
//!
//! Checks: ffmpeg decodes the recording without a complaint, as long as what was egressed;
//! the raw datagrams are all 1316 bytes, form a transport stream without a single continuity
//! counter error, carry `discontinuity_indicator` at the restart only, and have video PTS
//! one frame apart everywhere but there; pacing (gaps, bursts) is printed and bounded.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use streamstack_tests::mpegts::{analyze, PACKET};
use streamstack_tests::netns::in_netns;
use streamstack_tests::process::{free_port, free_udp_port, StreamerProcess};
use streamstack_tests::recorder::{pacing, Recorder};
use streamstack_tests::{decoded_frames, ffprobe_duration, make_ts, tempdir};
use tokio::process::{Child, Command};

const MARK: &str = "EGRESS_IN_NETNS";
const GROUP: Ipv4Addr = Ipv4Addr::new(232, 10, 11, 12);
const PORT: u16 = 5000;
const SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// Video PID and frame duration (25 fps, 90 kHz) of what `streamer pull` writes.
const VIDEO_PID: u16 = 0x100;
const FRAME: u64 = 3600;
/// The ground recorder (ffmpeg) ends after this long without a datagram, µs: longer than
/// the restart's and the source end's pauses.
const GROUND_TIMEOUT_US: u32 = 6_000_000;

/// `ffmpeg -re` sending `clip` as UDP MPEG-TS to `url`.
fn send(clip: &Path, url: &str) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-i"])
        .arg(clip)
        .args(["-c", "copy", "-f", "mpegts", url])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ffmpeg")
}

async fn finished(mut child: Child) {
    let status = tokio::time::timeout(Duration::from_secs(40), child.wait()).await;
    assert!(matches!(status, Ok(Ok(s)) if s.success()), "ffmpeg sender: {status:?}");
}

/// Waits until the playlist at `path` lists at least `n` segments.
async fn wait_for_segments(path: &Path, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let listed = std::fs::read(path)
            .ok()
            .and_then(|b| m3u8_rs::parse_media_playlist_res(&b).ok())
            .map_or(0, |p| p.segments.len());
        if listed >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: {listed} segments after {within:?}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `python3 -m http.server` on a free port of 127.0.0.1 serving `dir`, once it accepts.
async fn http_server(dir: &Path) -> (Child, u16) {
    let port = free_port();
    let child = Command::new("python3")
        .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1", "--directory"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn python3 http.server");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return (child, port);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("http.server did not listen");
}

/// `text` without ANSI colour sequences (`ESC [ … m`).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A number logged as `key=value` in the last line holding `key=`.
fn logged(log: &str, key: &str) -> f64 {
    let log = plain(log);
    let needle = format!("{key}=");
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains(&needle))
        .unwrap_or_else(|| panic!("no {key} in:\n{log}"));
    let value = &line[line.find(&needle).unwrap() + needle.len()..];
    let value: String = value.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    value.parse().unwrap_or_else(|_| panic!("{key}: {line}"))
}

#[tokio::test]
async fn egress_sends_a_live_pull_to_ssm_multicast_across_a_source_restart() {
    let name = "egress_sends_a_live_pull_to_ssm_multicast_across_a_source_restart";
    if !in_netns(name, MARK).await {
        return;
    }
    let started = Instant::now();
    let dir = tempdir();
    let clip = make_ts(&dir, "clip.ts", "320x240", 10, "0");
    let hls = dir.join("hls");
    std::fs::create_dir_all(&hls).expect("hls dir");
    let udp_in = free_udp_port();
    let output = format!("dir:{}", hls.display());
    let source = format!("udp://127.0.0.1:{udp_in}");
    let pull = StreamerProcess::pull(
        &["--source", &source, "--target", "channel:egress-test", "--output", &output]
            .into_iter()
            .chain(["--segment-duration", "2", "--playlist-window", "100"])
            .collect::<Vec<_>>(),
        &[],
    )
    .await;
    pull.wait_for_log("UDP source open", 1, Duration::from_secs(20)).await;
    let (_server, http_port) = http_server(&hls).await;

    let sender_url = format!("{source}?pkt_size=1316");
    let first = send(&clip, &sender_url);
    let playlist = hls.join("live/egress-test/index.m3u8");
    wait_for_segments(&playlist, 2, Duration::from_secs(20)).await;
    let playlist_url = format!("http://127.0.0.1:{http_port}/live/egress-test/index.m3u8");
    // The ground: our timing receiver and ffmpeg recording, both joined (S, G). ffmpeg
    // ends its recording by itself (a clean file) once nothing came for a while: signals
    // cannot do that (one does not interrupt a blocking UDP read, two exit at once).
    let recorder = Recorder::ssm(GROUP, PORT, SOURCE);
    let recording = dir.join("ground.ts");
    let ffmpeg_log = dir.join("ground.log");
    let mut ground = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "warning", "-y", "-i"])
        .arg(format!("udp://{GROUP}:{PORT}?sources={SOURCE}&timeout={GROUND_TIMEOUT_US}"))
        .args(["-c", "copy", "-f", "mpegts"])
        .arg(&recording)
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&ffmpeg_log).expect("log file"))
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ffmpeg receiver");
    // Joined before the first datagram.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let target = format!("udp://{GROUP}:{PORT}?ttl=1&localaddr={SOURCE}");
    let egress = StreamerProcess::egress(
        &["--source", &playlist_url, "--target", &target, "--live-edge-segments", "2"],
        &[],
    )
    .await;
    finished(first).await;
    // The encoder is gone for 3 s, then starts again from the clip's start.
    tokio::time::sleep(Duration::from_secs(3)).await;
    finished(send(&clip, &sender_url)).await;
    // The pull reads what is in its socket at once; then its last segment is flushed and
    // the playlist ended.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(pull.terminate(Duration::from_secs(20)).await, "pull: unclean exit");
    egress.wait_for_log("everything sent", 1, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log_path = egress.log_path();
    let stopping = Instant::now();
    assert!(egress.terminate(Duration::from_secs(5)).await, "egress: unclean exit");
    let stop_ms = stopping.elapsed().as_millis();
    let ended = tokio::time::timeout(Duration::from_secs(15), ground.wait()).await;
    assert!(ended.is_ok(), "the ground recorder did not end");
    let datagrams = recorder.stop();

    // What the egress says it sent: the restart seen once, a summary at the stop.
    let log = std::fs::read_to_string(&log_path).expect("egress log");
    assert_eq!(log.matches("discontinuity: pacing re-anchored").count(), 1, "{log}");
    assert!(log.contains("egress stopped"), "{log}");

    // Datagrams: all 1316 bytes; one transport stream without counter errors.
    assert!(datagrams.len() > 100, "{} datagrams", datagrams.len());
    let sizes: Vec<usize> =
        datagrams.iter().map(|d| d.bytes.len()).filter(|n| *n != 7 * PACKET).collect();
    assert!(sizes.is_empty(), "datagrams not 1316 bytes: {sizes:?}");
    let raw: Vec<u8> = datagrams.iter().flat_map(|d| d.bytes.iter().copied()).collect();
    let raw_file = dir.join("raw.ts");
    std::fs::write(&raw_file, &raw).expect("write raw.ts");
    let report = analyze(&raw, VIDEO_PID);
    assert_eq!(report.unsynced, 0);
    assert!(
        report.cc_errors.is_empty(),
        "continuity errors: {:?}",
        &report.cc_errors[..report.cc_errors.len().min(10)]
    );
    // The restart: flagged once, on the PCR (video) PID.
    assert_eq!(
        report.discontinuities.iter().map(|d| d.1).collect::<Vec<_>>(),
        [VIDEO_PID],
        "{:?}",
        report.discontinuities
    );
    let flagged_at = report.discontinuities[0].0;
    // Video PTS one frame apart at every segment join, except into the flagged packet.
    let mut irregular = Vec::new();
    for w in report.video_pts.windows(2) {
        let delta = w[1].1.wrapping_sub(w[0].1) & ((1 << 33) - 1);
        if delta != FRAME && w[1].0 != flagged_at {
            irregular.push((w[1].0, delta));
        }
    }
    assert!(irregular.is_empty(), "PTS steps other than one frame: {irregular:?}");

    // ffmpeg's recording and the raw stream decode cleanly, as long as what was egressed.
    let media_secs = logged(&log, "media_ms") / 1000.0;
    let ground_decoded = decoded_frames(&recording.to_string_lossy());
    let raw_decoded = decoded_frames(&raw_file.to_string_lossy());
    let ground_secs = ffprobe_duration(&recording.to_string_lossy()).expect("ffprobe ground.ts");
    let receiver_log = std::fs::read_to_string(&ffmpeg_log).unwrap_or_default();
    let figures = pacing(&datagrams);
    eprintln!(
        "egress figures: {figures:?}; media egressed {media_secs:.2} s, ground.ts {ground_secs:.2} s, \
         {} / {} video frames (ground / raw), {} CC errors, stop {stop_ms} ms, test {:.1} s",
        ground_decoded.video_frames,
        raw_decoded.video_frames,
        report.cc_errors.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(ground_decoded.errors.is_empty(), "ground.ts: {}", ground_decoded.errors);
    assert!(raw_decoded.errors.is_empty(), "raw.ts: {}", raw_decoded.errors);
    assert!(!receiver_log.to_ascii_lowercase().contains("corrupt"), "receiver: {receiver_log}");
    assert!(
        (ground_secs - media_secs).abs() <= 1.5,
        "ground.ts {ground_secs} s, egressed {media_secs} s"
    );
    let frames = (media_secs * 25.0) as u64;
    for decoded in [&ground_decoded, &raw_decoded] {
        assert!(
            decoded.video_frames + 5 >= frames && decoded.video_frames <= frames + 5,
            "{} frames decoded, {frames} egressed",
            decoded.video_frames
        );
    }
    // Pacing: no burst; no gap over 1 s but two where the source itself paused: the
    // restart, and the source's end (the pull flushes its last segment only as it stops).
    assert!(figures.max_burst < 40, "{figures:?}");
    assert!(figures.longest_gaps_ms[0] < 8000.0, "{figures:?}");
    assert!(figures.longest_gaps_ms[2] < 1000.0, "{figures:?}");
    assert!(stop_ms < 1000, "SIGTERM took {stop_ms} ms");
}
