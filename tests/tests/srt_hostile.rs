//! Hostile SRT peers against a real `streamer serve` process while a good ffmpeg SRT publish
//! runs: the callers that made `srt-protocol` 0.4.4 panic (libsrt's file congestion control
//! extension; keying material without a stated key length, accepted), hand-made datagrams
//! that hit its other parse-time panics, inductions from many source ports and a burst of
//! random UDP garbage. Each is refused or dropped by the patched `srt-protocol`
//! (`third_party/srt-protocol`): the listener never dies (no panic, no restart in the log),
//! and the good publish's playlist keeps growing and ends normally, decoding cleanly.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use streamstack_core::{Channel, ChannelState, HlsSettings};
use streamstack_tests::process::{free_udp_port, StreamerProcess};
use streamstack_tests::*;
use tokio::net::UdpSocket;

/// Random datagrams sent to the SRT port.
const GARBAGE_DATAGRAMS: usize = 5_000;
/// Source ports (sockets) that each send one induction handshake.
const INDUCTION_SOURCES: usize = 200;

/// `srt://127.0.0.1:<port>?streamid=<channel's signed stream name, valid for an hour>`.
fn srt_url(port: u16, channel: &Channel) -> String {
    let exp = time::OffsetDateTime::now_utc().unix_timestamp() as u64 + 3600;
    let sig = streamstack_core::signing::sign(&channel.secret, &channel.id, exp);
    format!(
        "srt://127.0.0.1:{port}?streamid={}",
        percent_encode(&format!("{}?exp={exp}&sig={sig}", channel.id))
    )
}

fn playlist_path(dir: &Path, channel: &Channel) -> PathBuf {
    dir.join(format!("live/{}/index.m3u8", channel.id))
}

fn playlist(dir: &Path, channel: &Channel) -> Option<m3u8_rs::MediaPlaylist> {
    let bytes = std::fs::read(playlist_path(dir, channel)).ok()?;
    m3u8_rs::parse_media_playlist_res(&bytes).ok()
}

/// Media sequence number one past the playlist's last segment (0 without a playlist): grows
/// with every segment, also once the sliding window is full.
fn segments_so_far(dir: &Path, channel: &Channel) -> u64 {
    playlist(dir, channel).map_or(0, |p| p.media_sequence + p.segments.len() as u64)
}

/// Waits up to `within` until more than `than` segments were written.
async fn segments_beyond(dir: &Path, channel: &Channel, than: u64, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    loop {
        let n = segments_so_far(dir, channel);
        if n > than {
            return n;
        }
        assert!(Instant::now() < deadline, "no segment beyond {than} within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An SRT control packet header (draft-sharabayko-srt-01 §3.2): control type, subtype,
/// type-specific information, timestamp, destination socket id.
fn control_header(control_type: u16, subtype: u16) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&(0x8000 | control_type).to_be_bytes());
    p.extend_from_slice(&subtype.to_be_bytes());
    p.extend_from_slice(&[0; 12]);
    p
}

/// An HSv5 handshake (§3.2.1) of `shake_type` (1 induction, -1 conclusion) with extension
/// flags `flags` and the raw extension blocks `extensions`.
fn handshake(shake_type: i32, flags: u16, extensions: &[u8]) -> Vec<u8> {
    let mut p = control_header(0, 0);
    p.extend_from_slice(&5u32.to_be_bytes()); // version
    p.extend_from_slice(&0u16.to_be_bytes()); // encryption field
    p.extend_from_slice(&flags.to_be_bytes()); // extension field (0x4A17 in an induction)
    p.extend_from_slice(&1u32.to_be_bytes()); // initial sequence number
    p.extend_from_slice(&1500u32.to_be_bytes()); // MTU
    p.extend_from_slice(&8192u32.to_be_bytes()); // flow window
    p.extend_from_slice(&shake_type.to_be_bytes());
    p.extend_from_slice(&7u32.to_be_bytes()); // socket id
    p.extend_from_slice(&0u32.to_be_bytes()); // SYN cookie
    p.extend_from_slice(&[127, 0, 0, 1]);
    p.extend_from_slice(&[0; 12]);
    p.extend_from_slice(extensions);
    p
}

/// One handshake extension block (§3.2.1.1): type, length in 32-bit words, content.
fn extension(ext_type: u16, content: &[u8]) -> Vec<u8> {
    let mut e = ext_type.to_be_bytes().to_vec();
    e.extend_from_slice(&((content.len() / 4) as u16).to_be_bytes());
    e.extend_from_slice(content);
    e
}

/// Datagrams that each made `srt-protocol` 0.4.4 panic while parsing, from any source, no
/// handshake needed: SRT control packets (stream id, congestion, filter, group) without a
/// body; conclusions with a "file" congestion extension and with an empty stream id.
fn crashing_datagrams() -> Vec<Vec<u8>> {
    let mut all: Vec<Vec<u8>> = (5..=8).map(|subtype| control_header(0x7fff, subtype)).collect();
    // HSREQ: SRT 1.4.1, TSBPD send/receive flags, 120 ms latencies.
    let hsreq = extension(1, &[0, 1, 4, 1, 0, 0, 0, 3, 0, 120, 0, 120]);
    // "file", as libsrt sends strings: 32-bit words, each little-endian.
    let file = [hsreq.clone(), extension(6, b"elif")].concat();
    all.push(handshake(-1, 0x1 | 0x4, &file));
    let empty_sid = [hsreq, extension(5, &[]), extension(5, b"\0\0\0x")].concat();
    all.push(handshake(-1, 0x1 | 0x4, &empty_sid));
    all
}

/// xorshift64: reproducible garbage without a dependency.
struct Garbage(u64);

impl Garbage {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// 0..1500 random bytes; half of them with the control bit and a known control type.
    fn datagram(&mut self) -> Vec<u8> {
        let len = (self.next() % 1500) as usize;
        let mut d: Vec<u8> = (0..len).map(|_| self.next() as u8).collect();
        if len >= 2 && self.next().is_multiple_of(2) {
            let types = [0u16, 1, 2, 3, 4, 5, 6, 7, 8, 0x7fff];
            let t = 0x8000 | types[(self.next() % types.len() as u64) as usize];
            d[..2].copy_from_slice(&t.to_be_bytes());
        }
        d
    }
}

/// Sends the crashing datagrams, an induction from each of [`INDUCTION_SOURCES`] sockets and
/// [`GARBAGE_DATAGRAMS`] random datagrams to `port`, paced at about 50 per millisecond.
async fn flood(port: u16) {
    let target = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    for _ in 0..10 {
        for d in crashing_datagrams() {
            socket.send_to(&d, target).await.expect("send");
        }
    }
    let induction = handshake(1, 0x4a17, &[]);
    for _ in 0..INDUCTION_SOURCES {
        let source = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        source.send_to(&induction, target).await.expect("send");
    }
    let mut garbage = Garbage(0x5eed_0f5c_5172_u64 ^ u64::from(port));
    for i in 0..GARBAGE_DATAGRAMS {
        socket.send_to(&garbage.datagram(), target).await.expect("send");
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

#[tokio::test]
async fn hostile_callers_and_udp_garbage_do_not_disturb_a_running_srt_publish() {
    let aws = aws().await;
    let (table, store) = channel_table(&aws).await;
    let hls = HlsSettings { segment_duration: 2, playlist_window: 10 };
    let good = channel(store.as_ref(), hls).await;
    let other = channel(store.as_ref(), hls).await;
    let dir = tempdir();
    let port = free_udp_port();
    let out = format!("dir:{}", dir.display());
    let srt = format!("127.0.0.1:{port}");
    let streamer =
        StreamerProcess::start(&table, &["--output", &out, "--srt-listen", &srt], &[]).await;

    let good_url = srt_url(port, &good);
    let clip = Clip { seconds: 30, realtime: true, ..Clip::default() };
    let publish = tokio::spawn(async move { ffmpeg_send_ts(&good_url, clip).await });
    wait_for_state(store.as_ref(), &good, ChannelState::Live, Duration::from_secs(10)).await;
    let before = segments_beyond(&dir, &good, 0, Duration::from_secs(10)).await;

    // Both callers carry a valid stream name (of another channel), so the second one is
    // accepted by our access control and reaches srt-protocol's keying material check.
    let long = Clip { seconds: 20, realtime: true, ..Clip::default() };
    let file = format!("{}&transtype=file&connect_timeout=2000", srt_url(port, &other));
    let sent = tokio::time::timeout(Duration::from_secs(15), ffmpeg_send_ts(&file, long)).await;
    assert_eq!(sent, Ok(false), "file-mode caller not refused");
    let encrypted = format!("{}&passphrase=0123456789abcdef", srt_url(port, &other));
    let started = Instant::now();
    let sent =
        tokio::time::timeout(Duration::from_secs(10), ffmpeg_send_ts(&encrypted, long)).await;
    assert_eq!(sent, Ok(false), "caller with a passphrase and no key length not refused");
    assert!(started.elapsed() < Duration::from_secs(5), "refused after {:?}", started.elapsed());

    tokio::time::timeout(Duration::from_secs(30), flood(port)).await.expect("flood sent");
    assert_eq!(channel_state(store.as_ref(), &good).await, ChannelState::Live);
    let during = segments_so_far(&dir, &good);
    assert!(during > before, "no segment while hostile peers called: {during} <= {before}");
    segments_beyond(&dir, &good, during, Duration::from_secs(10)).await;

    let sent = tokio::time::timeout(Duration::from_secs(40), publish).await;
    assert!(matches!(sent, Ok(Ok(true))), "good publish failed: {sent:?}\n{}", streamer.log());
    let deadline = Instant::now() + Duration::from_secs(30);
    let pl = loop {
        match playlist(&dir, &good) {
            Some(p) if p.end_list => break p,
            _ => assert!(Instant::now() < deadline, "playlist never ended"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let total = (pl.media_sequence + pl.segments.len() as u64) as f32 * 2.0;
    assert!((total - 30.0).abs() <= 2.5, "about {total} s of segments: {pl:?}");
    let path = playlist_path(&dir, &good);
    let errors = ffmpeg_decode_errors(path.to_str().unwrap());
    assert!(errors.is_empty(), "decode errors: {errors}\nstreamer log:\n{}", streamer.log());
    wait_for_state(store.as_ref(), &good, ChannelState::Idle, Duration::from_secs(10)).await;
    assert_eq!(channel_state(store.as_ref(), &other).await, ChannelState::Idle);

    let log = streamer.log();
    assert!(!log.contains("panicked"), "a task panicked:\n{log}");
    assert!(!log.contains("restarting"), "the SRT listener was restarted:\n{log}");
    assert!(!log.contains("SRT is off"), "{log}");
    assert_eq!(log.matches("SRT publish accepted").count(), 1, "{log}");
    streamer.assert_log_free_of(&[]);
}
