//! `streamer egress` end to end, cloud to ground.
//!
//! 1. Multicast, with a source restart (in its own network namespace, `unshare -rn`): a
//!    live HLS channel made inside the test (ffmpeg `-re` sends a clip as UDP MPEG-TS into
//!    `streamer pull`, whose output directory an HTTP server serves) is followed by
//!    `streamer egress` and sent to a source-specific multicast group, where ffmpeg records
//!    it and the test's own receiver timestamps every datagram. Midway the sender stops for
//!    3 s and starts again (the playlist gets `EXT-X-DISCONTINUITY`). Checks: ffmpeg decodes
//!    the recording without a complaint, as long as what was egressed; the raw datagrams are
//!    all 1316 bytes, form a transport stream without a single continuity counter error,
//!    carry `discontinuity_indicator` at the restart only, and have video PTS one frame
//!    apart everywhere but there; pacing (gaps, bursts) is printed and bounded.
//! 2. `--source channel:<id>` through the API and signed playback (moto,
//!    `channels-api-local`, `edge-local`, an RTMP publish into the streamer): the egress
//!    resolves the channel (SigV4-signed request), plays its signed playlist with the
//!    CloudFront query, to a unicast receiver; the stream checks as above, and the egress
//!    log holds no credential.
//! 3. Segments of two separate muxers (counters from 0 in each) joined: none of the input's
//!    continuity errors reach the output.
//!
//! Needs ffmpeg, python3, `unshare`/`ip`; test 2 the moto server (`scripts/with-moto.sh`)
//! and the `edge-local` and `channels-api-local` binaries.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use streamstack_core::ChannelStore;
use streamstack_tests::egress::{http_server, logged, plain, pts_irregularities, received};
use streamstack_tests::mpegts::analyze;
use streamstack_tests::netns::in_netns;
use streamstack_tests::process::{free_udp_port, StreamerProcess};
use streamstack_tests::recorder::Recorder;
use streamstack_tests::signed_stack::SignedStack;
use streamstack_tests::{decoded_frames, ffprobe_duration, make_ts, tempdir, Clip, Streamer};
use streamstack_tests::{ffmpeg_publish, playlist};
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
    let got = received(&datagrams, &dir, VIDEO_PID);
    let report = &got.report;
    // The restart: flagged once, on the PCR (video) PID.
    let flagged: Vec<u16> = report.discontinuities.iter().map(|d| d.1).collect();
    assert_eq!(flagged, [VIDEO_PID], "{:?}", report.discontinuities);
    // Video PTS one frame apart at every segment join, except into the flagged packet.
    let irregular = pts_irregularities(report, FRAME, &[report.discontinuities[0].0]);
    assert!(irregular.is_empty(), "PTS steps other than one frame: {irregular:?}");

    // ffmpeg's recording and the raw stream decode cleanly, as long as what was egressed.
    let media_secs = logged(&log, "media_ms") / 1000.0;
    let ground_decoded = decoded_frames(&recording.to_string_lossy());
    let raw_decoded = &got.decoded;
    let ground_secs = ffprobe_duration(&recording.to_string_lossy()).expect("ffprobe ground.ts");
    let receiver_log = std::fs::read_to_string(&ffmpeg_log).unwrap_or_default();
    let figures = &got.pacing;
    eprintln!(
        "egress figures: {figures:?}; media egressed {media_secs:.2} s, ground.ts {ground_secs:.2} s, \
         {} / {} video frames (ground / raw), {} CC errors, stop {stop_ms} ms, test {:.1} s",
        ground_decoded.video_frames,
        raw_decoded.video_frames,
        report.cc_errors.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(ground_decoded.errors.is_empty(), "ground.ts: {}", ground_decoded.errors);
    assert!(!receiver_log.to_ascii_lowercase().contains("corrupt"), "receiver: {receiver_log}");
    assert!(
        (ground_secs - media_secs).abs() <= 1.5,
        "ground.ts {ground_secs} s, egressed {media_secs} s"
    );
    let frames = (media_secs * 25.0) as u64;
    for decoded in [&ground_decoded, raw_decoded] {
        assert!(
            decoded.video_frames + 5 >= frames && decoded.video_frames <= frames + 5,
            "{} frames decoded, {frames} egressed",
            decoded.video_frames
        );
    }
    // Pacing: no burst; no gap over 1 s but two where the source itself paused: the
    // restart, and the source's end (the pull flushes its last segment only as it stops).
    assert!(figures.max_burst < 8, "{figures:?}");
    assert!(figures.longest_gaps_ms[0] < 8000.0, "{figures:?}");
    assert!(figures.longest_gaps_ms[2] < 1000.0, "{figures:?}");
    assert!(stop_ms < 1000, "SIGTERM took {stop_ms} ms");
}

const KEY_PAIR_ID: &str = "KEGRESSPLAYBACK";

/// The local stack of a signed channel ([`SignedStack`]) and the id of a channel on it (2 s
/// segments, signed by the stack default).
async fn signed_stack() -> (SignedStack, String) {
    let stack = SignedStack::start(KEY_PAIR_ID, 600).await;
    let api = &stack.api;
    let created: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/channels", api.base_url()))
        .json(&serde_json::json!({"name": "egress", "hls": {"segment_duration": 2, "playlist_window": 10}}))
        .send()
        .await
        .expect("POST /channels")
        .json()
        .await
        .expect("channel JSON");
    assert_eq!(created["playback"], "signed", "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    (stack, id)
}

#[tokio::test]
async fn egress_plays_a_signed_channel_resolved_through_the_api_to_unicast() {
    let started = Instant::now();
    let (stack, id) = signed_stack().await;
    let SignedStack { aws, store, bucket, edge, api, .. } = stack;
    let channel = store.get(&id).await.expect("get").expect("channel");
    let streamer = Streamer::start_s3(&aws, store.clone(), &bucket).await;
    let push = streamer.push_url(&channel);
    let clip = Clip { seconds: 14, realtime: true, ..Clip::default() };
    let publish = tokio::spawn(async move { ffmpeg_publish(&push, clip).await });
    let deadline = Instant::now() + Duration::from_secs(30);
    while playlist(&aws, &bucket, &channel).await.map_or(0, |p| p.segments.len()) < 2 {
        assert!(Instant::now() < deadline, "no live playlist of 2 segments");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let port = free_udp_port();
    let recorder = Recorder::unicast(([127, 0, 0, 1], port).into());
    let source = format!("channel:{id}");
    let target = format!("udp://127.0.0.1:{port}");
    let egress = StreamerProcess::egress(
        &["--source", &source, "--api-url", &api.base_url(), "--target", &target]
            .into_iter()
            .chain(["--live-edge-segments", "2"])
            .collect::<Vec<_>>(),
        &[],
    )
    .await;
    assert!(publish.await.expect("publish task"), "ffmpeg publish failed");
    streamer.stop().await;
    egress.wait_for_log("everything sent", 1, Duration::from_secs(30)).await;
    let log_path = egress.log_path();
    assert!(egress.terminate(Duration::from_secs(5)).await, "egress: unclean exit");
    let datagrams = recorder.stop();
    let log = plain(&std::fs::read_to_string(&log_path).expect("egress log"));

    assert!(log.contains("signed=true"), "the channel's signed playlist:\n{log}");
    assert!(!log.contains("go unsigned"), "API requests signed with SigV4:\n{log}");
    for secret in ["Signature=", "Key-Pair-Id", "Policy=", "CloudFront-", "X-Amz-", "Credential="] {
        assert!(!log.contains(secret), "the egress log holds {secret:?}:\n{log}");
    }
    let dir = tempdir();
    let got = received(&datagrams, &dir, VIDEO_PID);
    let media_secs = logged(&log, "media_ms") / 1000.0;
    let frames = (media_secs * 25.0) as u64;
    eprintln!(
        "signed channel egress: {:?}; media egressed {media_secs:.2} s, {} video frames, \
         test {:.1} s",
        got.pacing,
        got.decoded.video_frames,
        started.elapsed().as_secs_f64()
    );
    assert!(media_secs >= 6.0, "{media_secs} s egressed");
    let decoded = got.decoded.video_frames;
    assert!(decoded + 5 >= frames && decoded <= frames + 5, "{decoded} frames, {frames} egressed");
    assert!(got.report.cc_errors.is_empty() && got.report.discontinuities.is_empty());
    assert!(got.pacing.max_burst < 8, "{:?}", got.pacing);
    assert!(got.pacing.longest_gaps_ms[0] < 1000.0, "{:?}", got.pacing);
    // The edge saw only signed requests for the channel and granted them.
    let edge_log = plain(&edge.log());
    assert!(!edge_log.contains(" 403"), "the edge refused a request:\n{edge_log}");
}

/// Segments of two separate muxers joined without a discontinuity (each file's counters
/// start at 0, the timestamps continue): the input join has continuity errors, the egress
/// output none. The end-to-end counterpart of the rewriter's unit tests, since a pull's own
/// output keeps its counters across a sender restart.
#[tokio::test]
async fn egress_rewrites_counters_across_segments_of_separate_muxers() {
    let dir = tempdir();
    let a = make_ts(&dir, "a.ts", "320x240", 4, "0");
    let b = make_ts(&dir, "b.ts", "320x240", 4, "4");
    let joined = [std::fs::read(&a).expect("a.ts"), std::fs::read(&b).expect("b.ts")].concat();
    assert!(!analyze(&joined, VIDEO_PID).cc_errors.is_empty(), "the input join is discontinuous");
    let text = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXT-X-MEDIA-SEQUENCE:0\n\
                #EXTINF:4.000,\na.ts\n#EXTINF:4.000,\nb.ts\n#EXT-X-ENDLIST\n";
    std::fs::write(dir.join("index.m3u8"), text).expect("write playlist");
    let (_server, http_port) = http_server(&dir).await;
    let port = free_udp_port();
    let recorder = Recorder::unicast(([127, 0, 0, 1], port).into());
    let source = format!("http://127.0.0.1:{http_port}/index.m3u8");
    let target = format!("udp://127.0.0.1:{port}");
    let egress = StreamerProcess::egress(
        &["--source", &source, "--target", &target, "--live-edge-segments", "2"],
        &[],
    )
    .await;
    egress.wait_for_log("everything sent", 1, Duration::from_secs(30)).await;
    assert!(egress.terminate(Duration::from_secs(5)).await, "egress: unclean exit");
    let datagrams = recorder.stop();
    let out = tempdir();
    let got = received(&datagrams, &out, VIDEO_PID);
    eprintln!("separate muxers: {:?}, {} frames", got.pacing, got.decoded.video_frames);
    assert!(got.report.discontinuities.is_empty(), "{:?}", got.report.discontinuities);
    assert_eq!(got.decoded.video_frames, 200, "both clips, every picture");
    assert!(got.pacing.span_secs > 7.0, "paced in real time: {:?}", got.pacing);
}
