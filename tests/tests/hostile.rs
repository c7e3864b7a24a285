//! The public RTMP port under hostile input, against a real `streamer serve` process: what
//! unauthenticated peers make it hold stays O(connections x small constant) whatever they
//! send, refused peers are closed, and a valid publish alongside completes normally.

use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use streamstack_core::HlsSettings;
use streamstack_tests::process::StreamerProcess;
use streamstack_tests::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Idle connections held open at once (connect only, nothing sent).
const IDLE: usize = 1_000;
/// Connections that complete the handshake and announce large messages.
const ANNOUNCERS: usize = 50;
/// The stated bound: all of the above may raise the server's resident memory by at most
/// this much over its idle baseline (about 48 KiB per connection).
const RSS_BOUND: u64 = 48 * 1024 * 1024;

/// `SetChunkSize` 2^31-1 (RTMP spec §5.4.1) on chunk stream 2.
const SET_HUGE_CHUNK_SIZE: [u8; 16] = [2, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0x7F, 0xFF, 0xFF, 0xFF];

/// Completes the RTMP handshake as a client.
async fn handshake(addr: SocketAddr) -> TcpStream {
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    let mut hs = Handshake::new(PeerType::Client);
    socket.write_all(&hs.generate_outbound_p0_and_p1().unwrap()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    loop {
        let n = socket.read(&mut buf).await.expect("read handshake");
        assert!(n > 0, "server closed during the handshake");
        match hs.process_bytes(&buf[..n]).expect("valid server handshake") {
            HandshakeProcessResult::InProgress { response_bytes } => {
                socket.write_all(&response_bytes).await.unwrap();
            }
            HandshakeProcessResult::Completed { response_bytes, .. } => {
                socket.write_all(&response_bytes).await.unwrap();
                return socket;
            }
        }
    }
}

/// A type 0 chunk header on chunk stream 3 announcing a message of `len` bytes (type 20,
/// AMF0 command), as RTMP spec §5.3.1 lays it out.
fn announce(len: u32) -> Vec<u8> {
    let l = len.to_be_bytes();
    vec![0x03, 0, 0, 0, l[1], l[2], l[3], 20, 0, 0, 0, 0]
}

/// Whether the server closes `socket` within `within` (reads until EOF or error).
async fn closed_by_server(socket: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

async fn wait_for_ended_playlist(path: &Path) -> m3u8_rs::MediaPlaylist {
    for _ in 0..300 {
        if let Ok(bytes) = std::fs::read(path) {
            let playlist = m3u8_rs::parse_media_playlist_res(&bytes).expect("playlist parses");
            if playlist.end_list {
                return playlist;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{} never ended", path.display());
}

#[tokio::test]
async fn unauthenticated_connections_cost_bounded_memory_and_a_publish_goes_on() {
    rlimit::increase_nofile_limit(u64::MAX).expect("raise open file limit");
    let aws = aws().await;
    let (table, store) = channel_table(&aws).await;
    let ch =
        channel(store.as_ref(), HlsSettings { segment_duration: 2, playlist_window: 10 }).await;
    let out = tempdir();
    let output = format!("dir:{}", out.display());
    let streamer = StreamerProcess::start(
        &table,
        &["--output", &output, "--max-connections", "3000", "--max-connections-per-ip", "3000"],
        &[],
    )
    .await;
    let addr = streamer.addr;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = streamer.rss_bytes();

    // A valid real-time publish throughout.
    let url = signed_push_url(addr, &ch);
    let publish = tokio::spawn(async move {
        ffmpeg_publish(&url, Clip { seconds: 8, realtime: true, ..Clip::default() }).await
    });

    // 1,000 idle connections.
    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(TcpStream::connect(addr).await.expect("idle connect"));
    }
    // 50 that announce a 16 MiB message and send 2 MiB of it, half of them after setting a
    // 2^31-1 byte chunk size: refused on the first header (a server without the chunk guard
    // buffers the 2 MiB of each of the latter, 50 MiB).
    let mut huge = Vec::new();
    let body = vec![0u8; 2 << 20];
    for i in 0..ANNOUNCERS {
        let mut s = handshake(addr).await;
        if i % 2 == 0 {
            let _ = s.write_all(&SET_HUGE_CHUNK_SIZE).await;
        }
        let _ = s.write_all(&announce(16 * 1024 * 1024 - 1)).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), s.write_all(&body)).await;
        huge.push(s);
    }
    // 50 that set a 64 KiB chunk size, announce the largest message allowed before
    // authorization and send all of it but one byte: held until the authorization deadline.
    let mut trickle = Vec::new();
    for _ in 0..ANNOUNCERS {
        let mut s = handshake(addr).await;
        s.write_all(&[0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 1, 0, 0]).await.unwrap();
        s.write_all(&announce(16 * 1024)).await.unwrap();
        s.write_all(&[7u8; 16 * 1024 - 1]).await.unwrap();
        trickle.push(s);
    }
    // One that sets a 2^31-1 byte chunk size.
    let mut chunky = handshake(addr).await;
    chunky.write_all(&SET_HUGE_CHUNK_SIZE).await.unwrap();

    let mut peak = 0;
    for _ in 0..40 {
        peak = peak.max(streamer.rss_bytes());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let grown = peak.saturating_sub(baseline);
    eprintln!(
        "baseline {} KiB, peak {} KiB, grown {} KiB for {} connections",
        baseline / 1024,
        peak / 1024,
        grown / 1024,
        IDLE + 2 * ANNOUNCERS + 1
    );
    assert!(grown < RSS_BOUND, "RSS grew by {grown} bytes (bound {RSS_BOUND})");

    assert!(closed_by_server(&mut chunky, Duration::from_secs(2)).await, "2^31-1 chunk size kept");
    for s in huge.iter_mut() {
        assert!(closed_by_server(s, Duration::from_secs(2)).await, "16 MiB announcement kept");
    }
    // The authorization deadline (10 s from accept) closes the idle and trickling ones.
    for s in trickle.iter_mut().chain(idle.iter_mut()) {
        assert!(closed_by_server(s, Duration::from_secs(15)).await, "unauthorized peer kept");
    }

    assert!(publish.await.unwrap(), "the valid publish failed");
    let playlist = wait_for_ended_playlist(&out.join(format!("live/{}/index.m3u8", ch.id))).await;
    let total: f32 = playlist.segments.iter().map(|s| s.duration).sum();
    assert!((total - 8.0).abs() <= 0.5, "published {total} s of 8");

    // 1,101 refusals from one address, a handful of log lines; no secret in any line.
    let refusal_lines = streamer.log().lines().filter(|l| l.contains("connection refused")).count();
    assert!(
        (1..=2 * streamer::ingest::rtmp::SourceRate::LOG_LINES_PER_MINUTE as usize)
            .contains(&refusal_lines),
        "{refusal_lines} refusal log lines"
    );
    streamer.assert_log_free_of(&[&ch.secret.to_hex()]);
    streamer.kill9().await;
    let _ = std::fs::remove_dir_all(&out);
}

#[tokio::test]
async fn per_address_limit_and_play_requests_are_refused() {
    let aws = aws().await;
    let (table, _) = channel_table(&aws).await;
    let args = ["--max-connections-per-ip", "4", "--publish-attempts-per-minute", "2"];
    let streamer = StreamerProcess::start(&table, &args, &[]).await;
    // Let the start-up probe's connection go, then open five: exactly one is closed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut open = Vec::new();
    for _ in 0..5 {
        open.push(TcpStream::connect(streamer.addr).await.unwrap());
    }
    let mut closed = 0;
    for s in open.iter_mut() {
        closed += usize::from(closed_by_server(s, Duration::from_millis(500)).await);
    }
    assert_eq!(closed, 1, "connections over the per-address limit of 4");
    drop(open);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // ffmpeg as a player: `play` is refused and the connection closed.
    let url = format!("rtmp://{}/live/anything", streamer.addr);
    let played = tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-rw_timeout", "5000000"])
        .args(["-i", &url, "-t", "1", "-f", "null", "-"])
        .status()
        .await
        .expect("run ffmpeg");
    assert!(!played.success(), "play was served");

    // Publish attempts beyond 2 a minute from one address are refused before any table read.
    let exp = time::OffsetDateTime::now_utc().unix_timestamp() + 600;
    let url = format!("rtmp://{}/live/{}?exp={exp}&sig=00", streamer.addr, "f".repeat(32));
    for _ in 0..3 {
        assert!(!ffmpeg_publish(&url, Clip { seconds: 1, ..Clip::default() }).await);
    }
    let log = streamer.log();
    assert_eq!(log.matches("signature mismatch").count(), 0, "unknown channel read as mismatch");
    assert_eq!(log.matches("unknown channel").count(), 2, "{log}");
    assert_eq!(log.matches("too many publish attempts").count(), 1, "{log}");
    streamer.kill9().await;
}
