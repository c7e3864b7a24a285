//! UDP MPEG-TS pull with real ffmpeg senders (`ffmpeg -re … -c copy -f mpegts udp://…`):
//! `UdpSource` directly (unicast on 127.0.0.1; multicast ASM and SSM inside a network
//! namespace the test creates, so nothing leaves the machine), and `streamer pull` end to
//! end (unicast and multicast to HLS that ffprobe reads, a source switching mid-stream).
//! "Decodes" means every picture: the HLS decodes, whole and segment by segment, into the
//! sent file's own pictures, every send whole ([`assert_hls_decodes`]); a test shows that
//! this catches what `ffmpeg -v error` does not.
//!
//! Multicast tests re-run themselves under `unshare -rn` with `lo` up, multicast on
//! and a 224.0.0.0/4 route on it; senders pick their source address with ffmpeg's
//! `localaddr` (any 127/8 address is local).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use streamer::ingest::udp::{self, UdpOptions};
use streamer::ingest::{MediaSource, SourceError};
use streamer::media::{Frame, MediaEvent, Track, Tracks};
use streamstack_tests::process::{free_udp_port, StreamerProcess};
use streamstack_tests::*;
use tokio::process::{Child, Command};

/// 2^33: the demuxer's timestamps are the source's plus one wrap period.
const WRAP: u64 = 1 << 33;
const SECOND: u64 = 90_000;

/// `ffmpeg -re -i <file> -c copy -output_ts_offset <offset> -f mpegts <url>`: the file's
/// timestamps (ffmpeg starts them at 1.4 s) shifted by `offset` seconds.
fn send(file: &Path, url: &str, offset: u32) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-i"])
        .arg(file)
        .args(["-c", "copy", "-output_ts_offset", &offset.to_string(), "-f", "mpegts", url])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ffmpeg")
}

async fn finished(mut sender: Child) {
    let status = tokio::time::timeout(Duration::from_secs(60), sender.wait()).await;
    assert!(matches!(status, Ok(Ok(s)) if s.success()), "ffmpeg sender failed: {status:?}");
}

/// What a source yielded until it failed (or `limit` passed).
#[derive(Debug, Default)]
struct Received {
    tracks: Vec<Tracks>,
    frames: Vec<Frame>,
    error: Option<SourceError>,
}

impl Received {
    fn of(&self, track: Track) -> Vec<&Frame> {
        self.frames.iter().filter(|f| f.track == track).collect()
    }
}

/// How long the first datagram may take: the senders start after the sources opened, and
/// on a loaded two-core machine five ffmpeg processes may take seconds to start.
const FIRST_DATAGRAM: Duration = Duration::from_secs(15);

/// Everything `source` yields until it fails or `limit` passes. Its receive timeout (2 s)
/// ends it after a gap in the stream, but not before its first datagram: until then, for
/// up to [`FIRST_DATAGRAM`], a timeout is waited through (a UDP source survives it).
async fn receive(source: &mut impl MediaSource, limit: Duration) -> Received {
    let mut received = Received::default();
    let started = tokio::time::Instant::now();
    let deadline = started + limit;
    loop {
        let event = tokio::time::timeout_at(deadline, source.next_event()).await;
        match event {
            Err(_) => return received,
            Ok(Err(SourceError::Timeout(_)))
                if source.bytes_in() == 0 && started.elapsed() < FIRST_DATAGRAM => {}
            Ok(Ok(Some(MediaEvent::Tracks(t)))) => received.tracks.push(t),
            Ok(Ok(Some(MediaEvent::Frame(f)))) => received.frames.push(f),
            Ok(Ok(None)) => return received,
            Ok(Err(e)) => {
                received.error = Some(e);
                return received;
            }
        }
    }
}

fn options() -> UdpOptions {
    UdpOptions { receive_timeout: Duration::from_secs(2), ..UdpOptions::default() }
}

/// Checks that `r` holds `seconds` of clip `offset` (seconds): tracks first, an IDR first,
/// monotonic video and audio timestamps on the source's clock, ended by the timeout.
fn assert_clip(r: &Received, seconds: u64, offset: u64) {
    assert!(matches!(r.error, Some(SourceError::Timeout(_))), "{:?}", r.error);
    let tracks = r.tracks.last().expect("tracks declared");
    assert!(tracks.video.is_some() && tracks.audio.is_some(), "{tracks:?}");
    let video = r.of(Track::Video);
    let audio = r.of(Track::Audio);
    assert!(video[0].idr, "the first frame is an IDR");
    // The last frame completes only with a next PES; -re may cut the first GOP short.
    let expected = seconds * 25;
    assert!(
        (expected - 26..expected).contains(&(video.len() as u64)),
        "{} video frames",
        video.len()
    );
    assert!(video.windows(2).all(|w| w[1].dts > w[0].dts), "video DTS monotonic");
    assert!(audio.windows(2).all(|w| w[1].dts > w[0].dts), "audio DTS monotonic");
    assert!(r.frames.iter().all(|f| !f.discontinuity));
    let span = video[video.len() - 1].dts - video[0].dts;
    assert!(span + 2 * SECOND >= seconds * SECOND, "{span} ticks of video");
    // The source's own clock (ffmpeg starts at 1.4 s, plus the offset).
    for f in &r.frames {
        let secs = (f.dts - WRAP) / SECOND;
        assert!((offset..offset + seconds + 3).contains(&secs), "{:?} at {secs} s", f.track);
    }
}

#[tokio::test]
async fn unicast_source_yields_tracks_and_frames_covering_the_clip() {
    let dir = tempdir();
    let clip = make_ts(&dir, "clip.ts", "320x240", 6, "0");
    let port = free_udp_port();
    let mut source = udp::open(&format!("udp://127.0.0.1:{port}"), &options()).await.unwrap();
    let sender = send(&clip, &format!("udp://127.0.0.1:{port}?pkt_size=1316"), 0);
    let received = receive(&mut source, Duration::from_secs(30)).await;
    finished(sender).await;
    assert_clip(&received, 6, 0);
    assert!(source.bytes_in() > 0 && source.bytes_in() % 188 == 0, "{}", source.bytes_in());
    assert_eq!(source.stats().cc_errors, 0);
}

/// [`streamstack_tests::netns::in_netns`] with this file's marker.
async fn in_netns(name: &str) -> bool {
    streamstack_tests::netns::in_netns(name, "PULL_UDP_IN_NETNS").await
}

#[tokio::test]
async fn multicast_asm_and_ssm_receive_only_their_group_and_source() {
    if !in_netns("multicast_asm_and_ssm_receive_only_their_group_and_source").await {
        return;
    }
    let dir = tempdir();
    let clip = make_ts(&dir, "a.ts", "320x240", 4, "0");
    // Two groups on one port, both joined here: each source gets its own group only.
    let mut asm = udp::open("udp://239.1.1.1:5000", &options()).await.unwrap();
    let mut other = udp::open("udp://239.1.1.2:5000", &options()).await.unwrap();
    let mut ssm =
        udp::open("udp://232.1.1.1:5002?source=127.0.0.2&interface=127.0.0.1", &options())
            .await
            .unwrap();
    // The same group and port from another source, in the same process: each socket keeps
    // its own source filter.
    let mut ssm_other =
        udp::open("udp://232.1.1.1:5002?source=127.0.0.1", &options()).await.unwrap();
    let mut wrong = udp::open("udp://232.1.1.1:5004?source=127.0.0.9", &options()).await.unwrap();
    let senders = [
        send(&clip, "udp://239.1.1.1:5000?pkt_size=1316", 0),
        send(&clip, "udp://239.1.1.2:5000?pkt_size=1316", 1000),
        send(&clip, "udp://232.1.1.1:5002?pkt_size=1316&localaddr=127.0.0.2", 0),
        send(&clip, "udp://232.1.1.1:5002?pkt_size=1316&localaddr=127.0.0.1", 1000),
        send(&clip, "udp://232.1.1.1:5004?pkt_size=1316&localaddr=127.0.0.2", 0),
    ];
    let limit = Duration::from_secs(40);
    let (asm_got, other_got, ssm_got, ssm_other_got) = tokio::join!(
        receive(&mut asm, limit),
        receive(&mut other, limit),
        receive(&mut ssm, limit),
        receive(&mut ssm_other, limit),
    );
    for sender in senders {
        finished(sender).await;
    }
    // The SSM socket with another source was joined through every send: whatever reached it
    // waits in its receive buffer. Nothing did: a timeout with nothing read.
    let wrong_got = tokio::time::timeout(Duration::from_secs(10), wrong.next_event()).await;
    assert!(matches!(wrong_got, Ok(Err(SourceError::Timeout(_)))), "{wrong_got:?}");
    assert_clip(&asm_got, 4, 0);
    assert_clip(&other_got, 4, 1000);
    assert_clip(&ssm_got, 4, 0);
    assert_clip(&ssm_other_got, 4, 1000);
    assert_eq!(wrong.bytes_in(), 0, "an SSM join with another source receives nothing");
    assert_eq!(asm.stats().cc_errors + ssm.stats().cc_errors, 0, "no foreign packets mixed in");
}

/// `streamer pull` (standalone, into `dir:<out>`) of each `(url, channel id)`, 2 s segments,
/// a live playlist long enough for the whole test; returns once every source is bound.
async fn pull(sources: &[(&str, &str)], out: &Path) -> StreamerProcess {
    let output = format!("dir:{}", out.display());
    let mut args: Vec<String> = Vec::new();
    for (url, id) in sources {
        args.extend(["--source".into(), (*url).into(), "--target".into(), format!("channel:{id}")]);
    }
    args.extend(["--output".into(), output]);
    args.extend(["--segment-duration", "2", "--playlist-window", "100"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let streamer = StreamerProcess::pull(&args, &[]).await;
    streamer.wait_for_log("UDP source open", sources.len(), Duration::from_secs(20)).await;
    streamer
}

/// Waits until `sources` more of `streamer`'s sources went quiet ("source lost:
/// reconnecting" after the UDP source's 5 s receive timeout) than had when called: called
/// once the senders finished, it returns when the streamer has read every datagram they sent,
/// so a SIGTERM then cuts nothing off however slowly a loaded machine runs it.
async fn drained(streamer: &StreamerProcess, sources: usize) {
    const QUIET: &str = "source lost: reconnecting";
    let before = streamer.log().matches(QUIET).count();
    streamer.wait_for_log(QUIET, before + sources, Duration::from_secs(60)).await;
}

/// SIGTERM, then [`ended_hls`] of channel `id`.
async fn terminated_hls(streamer: StreamerProcess, out: &Path, id: &str, clip: &Path) -> Hls {
    assert!(streamer.terminate(Duration::from_secs(30)).await, "unclean exit");
    ended_hls(out, id, clip)
}

/// The ended live playlist of channel `id` under `out`, decoded.
struct Hls {
    playlist: m3u8_rs::MediaPlaylist,
    /// What ffprobe reads, seconds.
    duration: f64,
    /// Pictures of `clip` the playlist holds, as runs of consecutive ones.
    runs: Vec<Run>,
}

/// Reads the ended playlist of channel `id`, which must decode without a decoder complaint,
/// segment by segment as whole, into nothing but pictures of `clip` (the file the senders
/// played): [`assert_hls_decodes`].
fn ended_hls(out: &Path, id: &str, clip: &Path) -> Hls {
    let path = out.join(format!("live/{id}/index.m3u8"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let playlist = m3u8_rs::parse_media_playlist_res(&bytes).expect("playlist parses");
    assert!(playlist.end_list, "{id}: playlist not ended");
    let duration = ffprobe_duration(&path.to_string_lossy()).expect("HLS probes");
    let decoded = assert_hls_decodes(&path, clip);
    Hls { playlist, duration, runs: decoded.runs }
}

/// Asserts that `runs` are `sends` whole plays of a clip of `frames` pictures, each from its
/// first picture on: only the last frame or two of a send may be missing (a TS sender's
/// last access unit completes only with a PES packet that never comes).
fn assert_whole_sends(id: &str, runs: &[Run], sends: usize, frames: usize) {
    assert_eq!(runs.len(), sends, "{id}: pictures of the clip in {sends} stretch(es): {runs:?}");
    for run in runs {
        assert!(
            run.start == 0 && (frames - 2..=frames).contains(&run.len),
            "{id}: a send of {frames} pictures decodes as {run:?}"
        );
    }
}

/// Width x height of the video ffprobe finds in `input` (distinct sizes, space-separated).
fn video_size(input: &Path) -> String {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height"])
        .args(["-of", "csv=p=0:s=x"])
        .arg(input)
        .output()
        .expect("run ffprobe");
    let mut sizes: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_owned())
        .collect();
    sizes.dedup();
    sizes.join(" ")
}

#[tokio::test]
async fn pull_udp_unicast_to_hls_read_by_ffprobe() {
    let dir = tempdir();
    let clip = make_ts(&dir, "clip.ts", "320x240", 8, "0");
    let port = free_udp_port();
    let out = dir.join("out");
    let streamer = pull(&[(&format!("udp://127.0.0.1:{port}"), "udp")], &out).await;
    finished(send(&clip, &format!("udp://127.0.0.1:{port}?pkt_size=1316"), 0)).await;
    streamer.wait_for_log("receiving", 1, Duration::from_secs(15)).await;
    drained(&streamer, 1).await;
    let hls = terminated_hls(streamer, &out, "udp", &clip).await;
    assert!(hls.playlist.segments.iter().all(|s| !s.discontinuity), "one sender, no discontinuity");
    assert!((hls.duration - 8.0).abs() <= 1.0, "HLS of {} s from an 8 s source", hls.duration);
    // 8 s at 25 fps, every picture as sent.
    assert_whole_sends("udp", &hls.runs, 1, 200);
}

#[tokio::test]
async fn pull_udp_multicast_asm_and_ssm_to_hls() {
    if !in_netns("pull_udp_multicast_asm_and_ssm_to_hls").await {
        return;
    }
    let dir = tempdir();
    let clip = make_ts(&dir, "a.ts", "320x240", 6, "0");
    let intruder = make_ts(&dir, "b.ts", "640x360", 6, "0");
    let out = dir.join("out");
    let asm = "udp://239.2.2.1:5000";
    let ssm = "udp://232.2.2.1:5002?source=127.0.0.2&interface=127.0.0.1";
    let streamer = pull(&[(asm, "asm"), (ssm, "ssm")], &out).await;
    // Another group on the ASM port, joined on this host; another sender to the SSM group.
    let mut joined = udp::open("udp://239.2.2.2:5000", &options()).await.unwrap();
    let senders = [
        send(&clip, "udp://239.2.2.1:5000?pkt_size=1316", 0),
        send(&intruder, "udp://239.2.2.2:5000?pkt_size=1316", 1000),
        send(&clip, "udp://232.2.2.1:5002?pkt_size=1316&localaddr=127.0.0.2", 0),
        send(&intruder, "udp://232.2.2.1:5002?pkt_size=1316&localaddr=127.0.0.1", 1000),
    ];
    let intruded = receive(&mut joined, Duration::from_secs(30)).await;
    for sender in senders {
        finished(sender).await;
    }
    assert!(intruded.of(Track::Video).len() > 100, "the other group was sent");
    streamer.wait_for_log("receiving", 2, Duration::from_secs(15)).await;
    drained(&streamer, 2).await;
    assert!(streamer.terminate(Duration::from_secs(30)).await, "unclean exit");
    for id in ["asm", "ssm"] {
        let hls = ended_hls(&out, id, &clip);
        let segments = &hls.playlist.segments;
        assert!(segments.iter().all(|s| !s.discontinuity), "{id}: nothing else mixed in");
        for segment in segments {
            let size = video_size(&out.join(format!("live/{id}")).join(&segment.uri));
            assert_eq!(size, "320x240", "{id}: {} holds another sender's video", segment.uri);
        }
        let duration = hls.duration;
        assert!((duration - 6.0).abs() <= 1.0, "{id}: HLS of {duration} s from a 6 s source");
        // 6 s at 25 fps, every picture as sent, none of the intruders' (another size).
        assert_whole_sends(id, &hls.runs, 1, 150);
    }
}

#[tokio::test]
async fn pull_udp_source_switch_mid_stream_is_a_discontinuity_within_the_target() {
    let dir = tempdir();
    let clip = make_ts(&dir, "clip.ts", "320x240", 6, "0");
    let port = free_udp_port();
    let out = dir.join("out");
    let streamer = pull(&[(&format!("udp://127.0.0.1:{port}"), "switch")], &out).await;
    let url = format!("udp://127.0.0.1:{port}?pkt_size=1316");
    finished(send(&clip, &url, 0)).await;
    // Another encoder takes over at once, its clock 1000 s ahead.
    finished(send(&clip, &url, 1000)).await;
    drained(&streamer, 1).await;
    let hls = terminated_hls(streamer, &out, "switch", &clip).await;
    let (playlist, duration) = (&hls.playlist, hls.duration);
    let discontinuities = playlist.segments.iter().filter(|s| s.discontinuity).count();
    let listing: Vec<(f32, bool)> =
        playlist.segments.iter().map(|s| (s.duration, s.discontinuity)).collect();
    assert_eq!(discontinuities, 1, "one EXT-X-DISCONTINUITY at the switch: {listing:?}");
    assert_eq!(playlist.target_duration, 2);
    for s in &playlist.segments {
        assert!(s.duration.round() <= 2.0, "{} lasts {} s, over the 2 s target", s.uri, s.duration);
    }
    assert!((duration - 12.0).abs() <= 1.5, "HLS of {duration} s from two 6 s sources");
    // Both sends whole (6 s at 25 fps each), the second from its first IDR on: no picture
    // of the second decoded against the first one's references.
    assert_whole_sends("switch", &hls.runs, 2, 150);
}

/// `ffmpeg -i <file> [-ss <cut_at>] -c copy -copyinkf -output_ts_offset <offset>`: the file
/// as a second sender would send it, its clock `offset` seconds ahead, joined `cut_at`
/// seconds in without waiting for a keyframe (`-copyinkf`); its first packets flag the
/// discontinuity (ISO/IEC 13818-1 §2.4.3.5 `discontinuity_indicator`), so a demuxer reading
/// it after another file takes its continuity counters as a new start, not as loss.
fn resend(file: &Path, name: &str, cut_at: Option<&str>, offset: u32) -> PathBuf {
    let path = file.with_file_name(name);
    let mut cmd = std::process::Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i"]).arg(file);
    if let Some(at) = cut_at {
        cmd.args(["-ss", at]);
    }
    cmd.args(["-c", "copy", "-copyinkf", "-output_ts_offset", &offset.to_string()]);
    cmd.args(["-mpegts_flags", "+initial_discontinuity"]);
    let status = cmd.args(["-f", "mpegts"]).arg(&path).status().expect("run ffmpeg");
    assert!(status.success(), "could not make {name}");
    path
}

/// An HLS playlist `name` next to `first` playing it, a discontinuity, then `second`.
fn two_send_playlist(name: &str, first: &Path, second: &Path) -> PathBuf {
    let uri = |p: &Path| p.file_name().expect("file name").to_string_lossy().into_owned();
    let text = format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\n{}\n\
         #EXT-X-DISCONTINUITY\n#EXTINF:4,\n{}\n#EXT-X-ENDLIST\n",
        uri(first),
        uri(second)
    );
    let path = first.with_file_name(name);
    std::fs::write(&path, text).expect("write playlist");
    path
}

/// What the end-to-end tests' decode checks catch that `ffmpeg -v error` does not: a second
/// sender's stream joined mid-GOP after a first one (its first 15 frames referencing
/// pictures that never came) decodes without a word, into pictures that are none of the
/// source's, and with a segment that does not decode on its own. The same sends joined at
/// a keyframe pass every check.
#[test]
fn decode_checks_catch_pictures_decoded_from_another_senders_references() {
    let dir = tempdir();
    let clip = make_ts(&dir, "clip.ts", "320x240", 4, "0");
    let source = picture_hashes(&clip.to_string_lossy());
    assert_eq!(source.len(), 100);
    // The second sender joined 1.4 s in: frames 35..=49 come before its next IDR.
    let cut = resend(&clip, "cut.ts", Some("1.4"), 1000);
    let whole = resend(&clip, "whole.ts", None, 1000);

    // One continuous MPEG-TS stream of both sends (remuxed by ffmpeg's concat demuxer: one
    // timeline, no continuity-counter break), as a segmenter that missed the switch writes.
    let splice = |name: &str, second: &Path| {
        let list = dir.join(format!("{name}.txt"));
        let entries = format!("file '{}'\nfile '{}'\n", clip.display(), second.display());
        std::fs::write(&list, entries).expect("write concat list");
        let path = dir.join(name);
        let status = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "quiet", "-nostdin", "-y"])
            .args(["-f", "concat", "-safe", "0", "-i"])
            .arg(&list)
            .args(["-c", "copy", "-copyinkf", "-f", "mpegts"])
            .arg(&path)
            .status()
            .expect("run ffmpeg");
        assert!(status.success(), "could not splice {name}");
        path.to_string_lossy().into_owned()
    };
    let (broken, clean) = (splice("broken.ts", &cut), splice("clean.ts", &whole));
    let silent = decoded_frames(&broken);
    eprintln!("broken splice: {silent:?}; ffmpeg -v error: {:?}", ffmpeg_decode_errors(&broken));
    assert_eq!(silent.video_frames, 165, "100 + 65 frames, the 15 without references too");
    let decoded = decoded_frames(&clean);
    assert!(decoded.errors.is_empty() && decoded.video_frames == 200, "{decoded:?}");
    let foreign = source_runs(&picture_hashes(&broken), &source);
    eprintln!("broken splice against the source's pictures: {foreign:?}");
    assert!(foreign.is_err(), "the concealed pictures are none of the source's");
    let runs = source_runs(&picture_hashes(&clean), &source).expect("the source's pictures");
    assert_eq!(runs, [Run { start: 0, len: 100 }, Run { start: 0, len: 100 }]);

    // As HLS, one segment per send behind a discontinuity.
    let broken = two_send_playlist("broken.m3u8", &clip, &cut);
    let whole_decoded = decoded_frames(&broken.to_string_lossy());
    let by_segment = segment_decoded_frames(&broken);
    eprintln!("broken playlist: whole {whole_decoded:?}, segment by segment {by_segment:?}");
    assert_eq!(by_segment.video_frames, 150, "the cut send's 15 frames need the other's");
    assert!(!by_segment.errors.is_empty(), "the decoder says so, segment by segment");
    let caught = std::panic::catch_unwind(|| assert_hls_decodes(&broken, &clip));
    assert!(caught.is_err(), "assert_hls_decodes passes the broken playlist");
    let clean = two_send_playlist("clean.m3u8", &clip, &whole);
    let decoded = assert_hls_decodes(&clean, &clip);
    assert_eq!(decoded.whole.video_frames, 200);
    assert_whole_sends("clean", &decoded.runs, 2, 100);
}
