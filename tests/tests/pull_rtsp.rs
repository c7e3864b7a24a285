//! RTSP pull against a real GStreamer RTSP server (`tests/scripts/rtsp_server.py`) serving
//! files ffmpeg made: `RtspSource` directly (tracks, IDR framing, timestamps, digest auth,
//! G.711 audio left out, H.265 refused, timeouts, `rtsps://` with certificates openssl
//! made), and `streamer pull` end to end (HLS duration, digest auth, a server outage with
//! reconnect, no credentials in the log, `rtsps://` with a CA file). The HLS must decode,
//! whole and segment by segment, into the file's own pictures, each connection's from the
//! first on with none lost ([`assert_hls_decodes`]); a server that plays its file once
//! serves one session only (`--once`), so a reconnect cannot play it twice.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use streamer::ingest::rtsp::{self, Credentials, RtspOptions, RtspTls};
use streamer::ingest::{MediaSource, SourceError};
use streamer::media::{Frame, MediaEvent, Track, Tracks};
use streamstack_tests::process::{free_port, StreamerProcess};
use streamstack_tests::rtsp::{make_file, Media, RtspServer};
use streamstack_tests::*;

/// A self-signed certificate for `127.0.0.1` (IP SAN) and its key, PEM files in `dir`
/// named after `name`; `extra` adds `openssl req` arguments. openssl's defaults mark it
/// `CA:TRUE`, as many cameras' own certificates are.
fn self_signed(dir: &Path, name: &str, extra: &[&str]) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    let status = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
        .args(extra)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl could not make {name}");
    (cert, key)
}

/// `rtsp_server.py` arguments serving `rtsps://` with `cert`.
fn tls_args(cert: &Path, key: &Path) -> Vec<String> {
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    vec!["--tls-cert".into(), cert, "--tls-key".into(), key]
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Options with short timeouts for tests.
fn options() -> RtspOptions {
    RtspOptions {
        connect_timeout: Duration::from_secs(10),
        receive_timeout: Duration::from_secs(3),
        ..RtspOptions::default()
    }
}

/// Everything one connection yields until it ends (RTCP BYE, error) or `limit` passes.
struct Received {
    tracks: Vec<Tracks>,
    frames: Vec<Frame>,
    end: Result<(), SourceError>,
    bytes_in: u64,
}

/// Everything a new connection yields until it ends or `limit` passes; the tracks must
/// come before any frame.
async fn receive(source: &mut impl MediaSource, limit: Duration) -> Received {
    collect(source, limit, true, (usize::MAX, 0)).await
}

/// What a new connection yields until at least `video` video and `audio` audio frames came
/// (or it ended, or [`FRAMES_WITHIN`] passed); the tracks must come before any frame.
async fn receive_frames(source: &mut impl MediaSource, video: usize, audio: usize) -> Received {
    collect(source, FRAMES_WITHIN, true, (video, audio)).await
}

/// How long a test waits for frames that start flowing at once (the server plays in real
/// time from PLAY): a bound for a loaded machine, not a duration the test depends on.
const FRAMES_WITHIN: Duration = Duration::from_secs(20);

/// What an already-read connection yields next until it ends or `limit` passes.
async fn receive_more(source: &mut impl MediaSource, limit: Duration) -> Received {
    collect(source, limit, false, (usize::MAX, 0)).await
}

/// Collects until the source ends, `limit` passes, or `(video, audio)` frames came.
async fn collect(
    source: &mut impl MediaSource,
    limit: Duration,
    fresh: bool,
    (video, audio): (usize, usize),
) -> Received {
    let mut got = Received { tracks: vec![], frames: vec![], end: Ok(()), bytes_in: 0 };
    let deadline = tokio::time::Instant::now() + limit;
    let mut counts = (0, 0);
    while counts.0 < video || counts.1 < audio {
        match tokio::time::timeout_at(deadline, source.next_event()).await {
            Err(_) | Ok(Ok(None)) => break,
            Ok(Ok(Some(MediaEvent::Tracks(t)))) => got.tracks.push(t),
            Ok(Ok(Some(MediaEvent::Frame(f)))) => {
                assert!(!fresh || !got.tracks.is_empty(), "a frame before the tracks");
                match f.track {
                    Track::Video => counts.0 += 1,
                    Track::Audio => counts.1 += 1,
                }
                got.frames.push(f);
            }
            Ok(Err(e)) => {
                got.end = Err(e);
                break;
            }
        }
    }
    got.bytes_in = source.bytes_in();
    got
}

fn of(frames: &[Frame], track: Track) -> Vec<&Frame> {
    frames.iter().filter(|f| f.track == track).collect()
}

/// NAL unit types of an Annex B access unit, in order.
fn nal_types(au: &[u8]) -> Vec<u8> {
    let mut types = vec![];
    let mut i = 0;
    while i + 3 < au.len() {
        if au[i..i + 3] == [0, 0, 1] {
            types.push(au[i + 3] & 0x1F);
            i += 3;
        } else {
            i += 1;
        }
    }
    types
}

#[tokio::test]
async fn h264_and_aac_arrive_as_annex_b_and_adts_on_the_source_clock() {
    let dir = tempdir();
    let file = make_file(&dir, Media::H264Aac, 6);
    let server = RtspServer::start(&file, &[]).await;
    let mut source = rtsp::connect(&server.url(""), &options()).await.expect("connect");
    let got = receive(&mut source, Duration::from_secs(20)).await;
    // The end of the file: GStreamer's RTCP BYE ends the source cleanly, not a timeout.
    assert!(got.end.is_ok(), "{:?}", got.end.err());

    // Tracks first: H.264 parameter sets from the SDP, AAC-LC 48 kHz mono.
    let tracks = got.tracks.first().expect("tracks");
    let video = tracks.video.as_ref().expect("video track");
    assert_eq!(nal_types(&video.parameter_sets), [7, 8]);
    let audio = tracks.audio.expect("audio track");
    assert_eq!((audio.profile, audio.sampling_index, audio.channels), (1, 3, 1));
    assert_eq!(got.tracks.len(), 1, "parameters never changed");

    // 6 s at 25 fps: 150 frames, IDR every 50, each with AUD, SPS and PPS in front.
    let v = of(&got.frames, Track::Video);
    assert!((148..=150).contains(&v.len()), "{} video frames", v.len());
    assert!(v[0].idr, "the first frame is an IDR");
    let idrs: Vec<&&Frame> = v.iter().filter(|f| f.idr).collect();
    assert_eq!(idrs.len(), 3, "GOP 50");
    for f in &v {
        assert!(f.data.starts_with(&[0, 0, 0, 1, 0x09, 0xF0]), "AUD first");
        let types = nal_types(&f.data);
        assert_eq!(f.idr, types.contains(&5));
        if f.idr {
            assert_eq!(types[..3], [9, 7, 8], "AUD SPS PPS before the IDR (and its SEI)");
        }
    }
    // Monotonic DTS per track, PTS at or after DTS, B-frames reordered (PTS not monotonic).
    for track in [Track::Video, Track::Audio] {
        let frames = of(&got.frames, track);
        for w in frames.windows(2) {
            assert!(w[1].dts > w[0].dts, "{track:?} DTS {} after {}", w[1].dts, w[0].dts);
        }
        assert!(frames.iter().all(|f| f.pts >= f.dts));
    }
    assert!(v.windows(2).any(|w| w[1].pts < w[0].pts), "x264's B-frames come reordered");
    // The source's duration on its own clock: 150 frames of 40 ms, 281 AAC frames of 1024.
    let span = |frames: &[&Frame]| {
        let pts = frames.iter().map(|f| f.pts);
        (pts.clone().max().unwrap() - pts.min().unwrap()) as f64 / 90_000.0
    };
    assert!((span(&v) - 5.96).abs() < 0.05, "video spans {} s", span(&v));
    let a = of(&got.frames, Track::Audio);
    assert!((279..=283).contains(&a.len()), "{} AAC frames", a.len());
    assert!((span(&a) - 5.95).abs() < 0.1, "audio spans {} s", span(&a));
    assert!((a[0].pts as i64 - v[0].pts as i64).abs() < 9_000, "A/V start within 100 ms");
    assert!(a.iter().all(|f| f.data[..2] == [0xFF, 0xF1]), "ADTS");
    let total: usize = got.frames.iter().map(|f| f.data.len()).sum();
    assert!(got.bytes_in as usize >= total / 2, "bytes_in {} for {total}", got.bytes_in);

    // What came out decodes: the Annex B stream and the ADTS stream, as ffmpeg reads them.
    let h264 = dir.join("out.h264");
    let aac = dir.join("out.aac");
    std::fs::write(&h264, v.iter().flat_map(|f| f.data.to_vec()).collect::<Vec<u8>>()).unwrap();
    std::fs::write(&aac, a.iter().flat_map(|f| f.data.to_vec()).collect::<Vec<u8>>()).unwrap();
    for out in [&h264, &aac] {
        let decoded = decoded_frames(out.to_str().unwrap());
        assert!(decoded.errors.is_empty(), "{}: {}", out.display(), decoded.errors);
    }
    // Every access unit decodes into the file's own picture, in order from the first.
    let pictures = picture_hashes(h264.to_str().unwrap());
    let runs = source_runs(&pictures, &picture_hashes(file.to_str().unwrap())).expect("pictures");
    assert_eq!(runs, [Run { start: 0, len: v.len() }], "the file's pictures, none lost");
    let aac_secs = ffprobe_duration(aac.to_str().unwrap()).expect("ffprobe aac");
    assert!((aac_secs - 6.0).abs() < 0.2, "AAC {aac_secs} s");
}

#[tokio::test]
async fn digest_auth_takes_the_right_password_only_and_never_echoes_it() {
    let dir = tempdir();
    let file = make_file(&dir, Media::H264Aac, 4);
    let password = "s3cr:t@pw%x";
    let server = RtspServer::start(&file, &["--user", "cam-admin", "--password", password]).await;
    let encoded = "s3cr%3At%40pw%25x";

    // Right password in the URL (percent-encoded).
    let url = server.url(&format!("cam-admin:{encoded}@"));
    let mut source = rtsp::connect(&url, &options()).await.expect("right password");
    let got = receive_frames(&mut source, 1, 0).await;
    assert!(got.tracks.first().is_some_and(|t| t.video.is_some()));
    assert!(!of(&got.frames, Track::Video).is_empty());
    drop(source);

    // Wrong password, and none at all: Unauthorized, and neither text holds a password.
    for url in [server.url("cam-admin:wrong-pw-123@"), server.url("")] {
        let e = rtsp::connect(&url, &options()).await.err().expect("refused");
        assert!(matches!(e, SourceError::Unauthorized), "{e}");
        let text = format!("{e} {e:?}");
        assert!(!text.contains("wrong-pw-123") && !text.contains(password), "{text}");
    }

    // Credentials from the options serve a URL without its own.
    let mut opts = options();
    opts.credentials =
        Some(Credentials { username: "cam-admin".into(), password: password.into() });
    let mut source = rtsp::connect(&server.url(""), &opts).await.expect("options");
    let got = receive_frames(&mut source, 1, 0).await;
    assert!(!of(&got.frames, Track::Video).is_empty());
    assert!(!format!("{opts:?}").contains(password), "Debug of the options shows no password");
}

#[tokio::test]
async fn rtp_over_udp_on_request() {
    let dir = tempdir();
    let file = make_file(&dir, Media::H264Aac, 4);
    let server = RtspServer::start(&file, &[]).await;
    let mut opts = options();
    opts.transport = rtsp::RtspTransport::Udp;
    let mut source = rtsp::connect(&server.url(""), &opts).await.expect("connect over UDP");
    let got = receive_frames(&mut source, 25, 1).await;
    assert!(got.end.is_ok(), "{:?}", got.end.err());
    let v = of(&got.frames, Track::Video);
    assert!(v.len() >= 25 && v[0].idr, "{} video frames", v.len());
    assert!(!of(&got.frames, Track::Audio).is_empty());
}

#[tokio::test]
async fn g711_audio_is_left_out_and_video_goes_on() {
    let dir = tempdir();
    let file = make_file(&dir, Media::H264Pcmu, 4);
    let server = RtspServer::start(&file, &["--audio", "pcmu"]).await;
    let mut source = rtsp::connect(&server.url(""), &options()).await.expect("connect");
    let got = receive_frames(&mut source, 50, 0).await;
    let tracks = got.tracks.first().expect("tracks");
    assert!(tracks.video.is_some());
    assert_eq!(tracks.audio, None, "PCMU is not declared");
    assert!(of(&got.frames, Track::Video).len() >= 50);
    assert!(of(&got.frames, Track::Audio).is_empty());
}

#[tokio::test]
async fn h265_and_non_rtsp_urls_are_refused() {
    let dir = tempdir();
    let file = make_file(&dir, Media::H265, 2);
    let server = RtspServer::start(&file, &["--h265", "--audio", "none"]).await;
    let e = rtsp::connect(&server.url(""), &options()).await.err().expect("refused");
    assert!(matches!(&e, SourceError::Unsupported(m) if m.contains("H.265")), "{e}");
    assert!(e.is_permanent());

    for url in ["http://admin:pw@127.0.0.1/cam", "udp://127.0.0.1:5000", "cam/1", "rtsp://"] {
        let e = rtsp::connect(url, &options()).await.err().expect(url);
        assert!(matches!(e, SourceError::InvalidUrl(_)), "{url}: {e}");
        assert!(!e.to_string().contains(":pw"), "{e}");
    }
    // Nothing listening: a connect error, quickly.
    let url = format!("rtsp://127.0.0.1:{}/cam", free_port());
    let e = rtsp::connect(&url, &options()).await.err().expect("refused");
    assert!(matches!(e, SourceError::Connect(_)), "{e}");
}

#[tokio::test]
async fn a_stalled_server_times_out_and_a_dead_one_is_an_error() {
    let dir = tempdir();
    let file = make_file(&dir, Media::H264Aac, 30);
    let server = RtspServer::start(&file, &[]).await;
    let mut opts = options();
    opts.receive_timeout = Duration::from_secs(2);
    let mut source = rtsp::connect(&server.url(""), &opts).await.expect("connect");
    let got = receive_frames(&mut source, 1, 0).await;
    assert!(got.end.is_ok() && !got.frames.is_empty());
    server.signal(libc::SIGSTOP);
    let started = std::time::Instant::now();
    let got = receive_more(&mut source, Duration::from_secs(10)).await;
    assert!(matches!(got.end, Err(SourceError::Timeout(_))), "{:?}", got.end.err());
    let waited = started.elapsed();
    assert!((Duration::from_secs(2)..Duration::from_secs(4)).contains(&waited), "{waited:?}");
    server.signal(libc::SIGCONT);
    drop(source);

    let mut source = rtsp::connect(&server.url(""), &opts).await.expect("connect again");
    let got = receive_frames(&mut source, 1, 0).await;
    assert!(got.end.is_ok() && !got.frames.is_empty(), "playing again");
    server.kill().await;
    let got = receive_more(&mut source, Duration::from_secs(10)).await;
    assert!(got.end.is_err(), "a dropped connection is an error");
}

/// Options trusting `ca_file` for `rtsps://`.
fn tls_options(ca_file: Option<&Path>, insecure: bool) -> RtspOptions {
    RtspOptions { tls: RtspTls { ca_file: ca_file.map(Path::to_path_buf), insecure }, ..options() }
}

/// Tracks first, then at least a second of video starting at an IDR.
fn assert_plays(got: &Received, what: &str) {
    assert!(got.end.is_ok(), "{what}: {:?}", got.end.as_ref().err());
    let tracks = got.tracks.first().unwrap_or_else(|| panic!("{what}: no tracks"));
    assert!(tracks.video.is_some() && tracks.audio.is_some(), "{what}: {tracks:?}");
    let v = of(&got.frames, Track::Video);
    assert!(v.len() >= 25 && v[0].idr, "{what}: {} video frames", v.len());
    assert!(!of(&got.frames, Track::Audio).is_empty(), "{what}: no audio");
}

#[tokio::test]
async fn rtsps_with_the_camera_certificate_as_ca_file_plays_and_closes_its_tunnel() {
    let dir = tempdir();
    let file = make_file(&dir, Media::H264Aac, 10);
    // openssl's default self-signed certificate (CA:TRUE, as cameras' often are): WebPKI
    // refuses it as a server certificate; the CA file pins it.
    let (cert, key) = self_signed(&dir, "camera", &[]);
    let server = RtspServer::start(&file, &strs(&tls_args(&cert, &key))).await;
    assert!(server.url("").starts_with("rtsps://127.0.0.1:"));
    let opts = tls_options(Some(&cert), false);
    let mut source = rtsp::connect(&server.url(""), &opts).await.expect("rtsps with the CA file");
    let got = receive_frames(&mut source, 25, 1).await;
    assert_plays(&got, "pinned self-signed certificate");
    assert_eq!(server.connections(), 1, "one TLS connection to the camera");
    // Dropping the source aborts the tunnel: the camera's connection closes.
    drop(source);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while server.connections() > 0 {
        assert!(std::time::Instant::now() < deadline, "the tunnel outlived its source");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A server certificate (CA:FALSE) verified by WebPKI against the CA file, digest auth
    // through the tunnel, and UDP refused for rtsps.
    let (cert, key) =
        self_signed(&dir, "server", &["-addext", "basicConstraints=critical,CA:FALSE"]);
    let mut args = tls_args(&cert, &key);
    args.extend(["--user", "cam-admin", "--password", "tls-pw-1"].map(String::from));
    let server = RtspServer::start(&file, &strs(&args)).await;
    let opts = tls_options(Some(&cert), false);
    let e = rtsp::connect(&server.url("cam-admin:wrong@"), &opts).await.err().expect("401");
    assert!(matches!(e, SourceError::Unauthorized), "{e}");
    let mut source =
        rtsp::connect(&server.url("cam-admin:tls-pw-1@"), &opts).await.expect("rtsps + digest");
    let got = receive_frames(&mut source, 25, 1).await;
    assert_plays(&got, "WebPKI-verified certificate");
    drop(source);
    let mut udp = opts.clone();
    udp.transport = rtsp::RtspTransport::Udp;
    let e = rtsp::connect(&server.url(""), &udp).await.err().expect("UDP refused");
    assert!(matches!(&e, SourceError::Unsupported(m) if m.contains("TCP")), "{e}");
}

#[tokio::test]
async fn rtsps_refuses_an_unverified_certificate_unless_insecure() {
    let dir = tempdir();
    let file = make_file(&dir, Media::H264Aac, 6);
    let (cert, key) = self_signed(&dir, "camera", &[]);
    let (other, _) = self_signed(&dir, "other", &[]);
    let server = RtspServer::start(&file, &strs(&tls_args(&cert, &key))).await;

    // The system's roots only, and a CA file of another certificate: a certificate error
    // while connecting, with nothing playing.
    for (ca, what) in [(None, "system roots"), (Some(other.as_path()), "another CA file")] {
        let started = std::time::Instant::now();
        let e = rtsp::connect(&server.url("admin:pw-77@"), &tls_options(ca, false))
            .await
            .err()
            .unwrap_or_else(|| panic!("{what}: connected"));
        assert!(matches!(&e, SourceError::Connect(m) if m.contains("certificate")), "{what}: {e}");
        assert!(!e.to_string().contains("pw-77"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5), "{what}: slow refusal");
    }
    let missing = dir.join("missing.pem");
    let e = rtsp::connect(&server.url(""), &tls_options(Some(&missing), false)).await.err();
    assert!(matches!(&e, Some(SourceError::Connect(m)) if m.contains("missing.pem")), "{e:?}");

    // Verification off: the same server plays.
    let mut source =
        rtsp::connect(&server.url(""), &tls_options(None, true)).await.expect("insecure");
    let got = receive_frames(&mut source, 25, 1).await;
    assert_plays(&got, "insecure");
    drop(source);

    // rtsps:// to a clear-text RTSP server: a TLS error, not a hang.
    let plain = RtspServer::start(&file, &[]).await;
    let url = plain.url("").replacen("rtsp://", "rtsps://", 1);
    let started = std::time::Instant::now();
    let e = rtsp::connect(&url, &tls_options(None, true)).await.err().expect("not TLS");
    assert!(matches!(e, SourceError::Connect(_)), "{e}");
    assert!(started.elapsed() < Duration::from_secs(9), "{:?}", started.elapsed());
}

// ---- `streamer pull` end to end ----

const USER: &str = "cam-admin";
const PASSWORD: &str = "pw-9f3K:x@y";
const PASSWORD_ENCODED: &str = "pw-9f3K%3Ax%40y";

/// `streamer pull` of `url` into `channel:<id>` under `out` (standalone: no table),
/// 2 s segments, a live playlist long enough to hold the whole test.
async fn pull(url: &str, id: &str, out: &Path, env: &[(&str, &str)]) -> StreamerProcess {
    let output = format!("dir:{}", out.display());
    let target = format!("channel:{id}");
    let args = [
        "--source",
        url,
        "--target",
        &target,
        "--output",
        &output,
        "--segment-duration",
        "2",
        "--playlist-window",
        "100",
        "--max-backoff-secs",
        "4",
    ];
    StreamerProcess::pull(&args, env).await
}

fn read_playlist(path: &Path) -> m3u8_rs::MediaPlaylist {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    m3u8_rs::parse_media_playlist_res(&bytes).expect("playlist parses")
}

/// A 12 s H.264 + AAC file through RTSP (digest auth if `auth`; `rtsps://` with the
/// server's self-signed certificate in `RTSP_CA_FILE` if `tls`) -> `streamer pull` -> HLS
/// that ffprobe finds 12 s long (within 1 s) and that decodes into the file's 300 pictures
/// (at most the last 2 missing), every segment on its own too.
async fn rtsp_file_to_hls(auth: bool, tls: bool) {
    let dir = tempdir();
    let file = make_file(&dir, Media::H264Aac, 12);
    // One session: a reconnect after the file's end finds no server, so the file is not
    // played twice however the test is scheduled.
    let mut server_args = vec!["--once".to_owned()];
    let userinfo = if auth {
        server_args.extend(["--user", USER, "--password", PASSWORD].map(String::from));
        format!("{USER}:{PASSWORD_ENCODED}@")
    } else {
        String::new()
    };
    let ca_file = match tls {
        true => {
            let (cert, key) = self_signed(&dir, "camera", &[]);
            server_args.extend(tls_args(&cert, &key));
            cert.display().to_string()
        }
        false => String::new(),
    };
    let mut server = RtspServer::start(&file, &strs(&server_args)).await;
    let out = dir.join("out");
    let env: &[(&str, &str)] = if tls { &[("RTSP_CA_FILE", &ca_file)] } else { &[] };
    let streamer = pull(&server.url(&userinfo), "cam", &out, env).await;
    streamer.wait_for_log("receiving", 1, Duration::from_secs(30)).await;
    // The file ends with an RTCP BYE, the streamer closes its session, and the server exits.
    server.exited(Duration::from_secs(90)).await;
    streamer.wait_for_log("RTCP BYE", 1, Duration::from_secs(10)).await;
    streamer.assert_log_free_of(&[PASSWORD, PASSWORD_ENCODED, &format!("{USER}:")]);
    assert!(streamer.terminate(Duration::from_secs(30)).await, "unclean exit");

    let playlist_path = out.join("live/cam/index.m3u8");
    let playlist = read_playlist(&playlist_path);
    assert!(playlist.end_list, "playlist not ended");
    assert!(playlist.segments.iter().all(|s| !s.discontinuity), "one connection, no discontinuity");
    let duration = ffprobe_duration(&playlist_path.to_string_lossy()).expect("HLS probes");
    assert!((duration - 12.0).abs() <= 1.0, "HLS of {duration} s from a 12 s source");
    let runs = assert_hls_decodes(&playlist_path, &file).runs;
    assert!(
        runs.len() == 1 && runs[0].start == 0 && (298..=300).contains(&runs[0].len),
        "12 s at 25 fps as sent, the file's pictures in order: {runs:?}"
    );
}

#[tokio::test]
async fn pull_rtsp_to_hls_keeps_the_source_duration() {
    rtsp_file_to_hls(false, false).await;
}

#[tokio::test]
async fn pull_rtsp_with_digest_auth_to_hls_and_no_credentials_in_the_log() {
    rtsp_file_to_hls(true, false).await;
}

#[tokio::test]
async fn pull_rtsps_with_a_ca_file_and_digest_auth_to_hls() {
    rtsp_file_to_hls(true, true).await;
}

#[tokio::test]
async fn pull_reconnects_after_a_server_outage_with_a_discontinuity() {
    let dir = tempdir();
    let file = make_file(&dir, Media::H264Aac, 20);
    let server_args = ["--loop", "--user", USER, "--password", PASSWORD];
    let server = RtspServer::start(&file, &server_args).await;
    let out = dir.join("out");
    // Credentials from the environment, the URL without any.
    let credentials = format!("{USER}:{PASSWORD}");
    let env = [("RTSP_CREDENTIALS", credentials.as_str())];
    let streamer = pull(&server.url(""), "cam", &out, &env).await;
    streamer.wait_for_log("receiving", 1, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(8)).await;

    // 10 s without a server, then the same server again.
    let (port, args) = server.kill().await;
    streamer.wait_for_log("reconnecting", 1, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let server = RtspServer::spawn(port, args).await;
    streamer.wait_for_log("receiving", 2, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    server.kill().await;
    streamer.assert_log_free_of(&[PASSWORD, &credentials]);
    assert!(streamer.terminate(Duration::from_secs(30)).await, "unclean exit");

    let playlist_path = out.join("live/cam/index.m3u8");
    let playlist = read_playlist(&playlist_path);
    assert!(playlist.end_list, "playlist not ended");
    let discontinuities = playlist.segments.iter().filter(|s| s.discontinuity).count();
    assert!(discontinuities >= 1, "no EXT-X-DISCONTINUITY after the reconnect");
    let listed: f64 = playlist.segments.iter().map(|s| f64::from(s.duration)).sum();
    let path = playlist_path.to_string_lossy();
    let duration = ffprobe_duration(&path).expect("HLS probes");
    // The outage is no hole in the timeline: what ffprobe reads is what the playlist lists,
    // about 8 s before and 6 s after it.
    assert!((duration - listed).abs() <= 1.0, "ffprobe {duration} s, playlist {listed} s");
    assert!((12.0..=20.0).contains(&duration), "{duration} s recorded");
    // Each connection's pictures, from the file's first on, with none missing but at its
    // very end (the B-frames of a mini-GOP whose reference came before the server died).
    let runs = assert_hls_decodes(&playlist_path, &file).runs;
    let sessions = sessions(&runs);
    assert!(
        sessions.len() >= 2 && sessions.len() <= discontinuities + 1,
        "{} connections' pictures, {discontinuities} discontinuities: {runs:?}",
        sessions.len()
    );
}

/// Groups `runs` of a looped file's pictures into the connections that played them (each
/// starts at the file's first picture) and asserts that a connection lost no picture but
/// some of the last [`MINI_GOP`] (reordered B-frames a killed server never sent).
fn sessions(runs: &[Run]) -> Vec<&[Run]> {
    let mut sessions: Vec<&[Run]> = Vec::new();
    let mut from = 0;
    for i in 1..=runs.len() {
        if i == runs.len() || runs[i].start == 0 {
            sessions.push(&runs[from..i]);
            from = i;
        }
    }
    for session in &sessions {
        let (first, last) = (session[0], session[session.len() - 1]);
        let end = last.start + last.len;
        assert!(
            first.start == 0 && first.len + MINI_GOP >= end,
            "a connection's pictures from the first, none lost before its last mini-GOP: \
             {session:?}"
        );
    }
    sessions
}

/// Frames from one reference picture to the next in display order in the test files
/// (x264's default: up to 3 B-frames between).
const MINI_GOP: usize = 4;

/// `RTSP_CREDENTIALS` naming a Secrets Manager secret (moto): the URL has no userinfo, the
/// secret's `{"username","password"}` passes digest auth, and neither reaches the log.
#[tokio::test]
async fn pull_rtsp_with_credentials_from_secrets_manager() {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .load()
        .await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let secret = serde_json::json!({ "username": USER, "password": PASSWORD }).to_string();
    let arn = secrets
        .create_secret()
        .name(unique("camera"))
        .secret_string(secret)
        .send()
        .await
        .expect("create secret")
        .arn
        .expect("secret ARN");

    let dir = tempdir();
    let file = make_file(&dir, Media::H264Aac, 6);
    let args = ["--once", "--user", USER, "--password", PASSWORD];
    let mut server = RtspServer::start(&file, &args).await;
    let out = dir.join("out");
    let streamer = pull(&server.url(""), "cam", &out, &[("RTSP_CREDENTIALS", &arn)]).await;
    streamer.wait_for_log("receiving", 1, Duration::from_secs(30)).await;
    // The whole file played (RTCP BYE), the session closed, the server gone.
    server.exited(Duration::from_secs(90)).await;
    streamer.assert_log_free_of(&[PASSWORD, PASSWORD_ENCODED, &format!("{USER}:")]);
    assert!(streamer.terminate(Duration::from_secs(30)).await, "unclean exit");
    let playlist_path = out.join("live/cam/index.m3u8");
    let playlist = read_playlist(&playlist_path);
    assert!(playlist.end_list && !playlist.segments.is_empty(), "{playlist:?}");
    let runs = assert_hls_decodes(&playlist_path, &file).runs;
    assert!(
        runs.len() == 1 && runs[0].start == 0 && (148..=150).contains(&runs[0].len),
        "6 s at 25 fps as sent: {runs:?}"
    );
}
