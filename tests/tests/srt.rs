//! SRT push into a real `streamer serve` process: ffmpeg (Debian's, on libsrt) calls in with
//! the channel's signed stream name as its `streamid`; HLS lands in a directory output and is
//! checked with m3u8-rs and ffprobe. Bad keys are rejected in the SRT handshake, and no log
//! line carries a signature.

use std::path::Path;
use std::time::{Duration, Instant};
use streamstack_core::{Channel, ChannelState, ChannelStore, HlsSettings};
use streamstack_tests::process::{free_udp_port, StreamerProcess};
use streamstack_tests::*;

/// `streamer serve` with a directory output and SRT on a free port; returns the port.
async fn start(table: &str, dir: &Path) -> (StreamerProcess, u16) {
    start_with(table, dir, &[]).await
}

/// [`start`] with extra flags.
async fn start_with(table: &str, dir: &Path, extra: &[&str]) -> (StreamerProcess, u16) {
    let port = free_udp_port();
    let srt = format!("127.0.0.1:{port}");
    let out = format!("dir:{}", dir.display());
    let mut args = vec!["--output", &out, "--srt-listen", &srt];
    args.extend_from_slice(extra);
    (StreamerProcess::start(table, &args, &[]).await, port)
}

fn srt_url(port: u16, stream_id: &str) -> String {
    format!("srt://127.0.0.1:{port}?streamid={}", percent_encode(stream_id))
}

/// `<id>?exp=..&sig=..` signed with `signer`'s secret, valid until `exp`.
fn stream_key(channel: &Channel, signer: &Channel, exp: u64) -> String {
    let sig = streamstack_core::signing::sign(&signer.secret, &channel.id, exp);
    format!("{}?exp={exp}&sig={sig}", channel.id)
}

fn now() -> u64 {
    time::OffsetDateTime::now_utc().unix_timestamp() as u64
}

fn playlist_path(dir: &Path, channel: &Channel) -> std::path::PathBuf {
    dir.join(format!("live/{}/index.m3u8", channel.id))
}

/// Waits up to 30 s for the channel's live playlist in `dir` to carry `EXT-X-ENDLIST`.
async fn ended(dir: &Path, channel: &Channel) -> m3u8_rs::MediaPlaylist {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let bytes = std::fs::read(playlist_path(dir, channel)).ok();
        let playlist = bytes.and_then(|b| m3u8_rs::parse_media_playlist_res(&b).ok());
        match playlist {
            Some(p) if p.end_list => return p,
            _ if Instant::now() > deadline => panic!("playlist never ended: {playlist:?}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn hls() -> HlsSettings {
    HlsSettings { segment_duration: 2, playlist_window: 10 }
}

#[tokio::test]
async fn srt_publish_becomes_hls_and_the_channel_goes_live_then_idle() {
    let aws = aws().await;
    let (table, store) = channel_table(&aws).await;
    let ch = channel(store.as_ref(), hls()).await;
    let dir = tempdir();
    let (streamer, port) = start(&table, &dir).await;

    // The URL the API's endpoints hand out (`srt.url`), as ffmpeg takes it.
    let host = format!("127.0.0.1:{port}");
    let exp = now() + 3600;
    let url = streamstack_core::signing::srt_url(&host, &ch.secret, &ch.id, exp);
    let key = stream_key(&ch, &ch, exp);
    assert!(url.ends_with(&percent_encode(&key)), "{url}");
    let clip = Clip { seconds: 8, realtime: true, ..Clip::default() };
    let publish = tokio::spawn(async move { ffmpeg_send_ts(&url, clip).await });
    wait_for_state(store.as_ref(), &ch, ChannelState::Live, Duration::from_secs(10)).await;
    let sent = tokio::time::timeout(Duration::from_secs(30), publish).await;
    assert!(matches!(sent, Ok(Ok(true))), "ffmpeg SRT publish failed: {sent:?}");

    let pl = ended(&dir, &ch).await;
    assert_eq!(pl.target_duration, 2);
    let total: f32 = pl.segments.iter().map(|s| s.duration).sum();
    assert!((total - 8.0).abs() <= 0.5, "segments total {total} s: {pl:?}");
    assert!(pl.segments.iter().all(|s| s.duration.round() <= 2.0), "{pl:?}");
    let path = playlist_path(&dir, &ch);
    let path = path.to_str().unwrap();
    let duration = ffprobe_duration(path).expect("ffprobe reads the playlist");
    assert!((duration - 8.0).abs() <= 1.0, "ffprobe duration {duration}");
    let errors = ffmpeg_decode_errors(path);
    assert!(errors.is_empty(), "decode errors: {errors}\nstreamer log:\n{}", streamer.log());
    wait_for_state(store.as_ref(), &ch, ChannelState::Idle, Duration::from_secs(10)).await;

    let log = streamer.log();
    assert!(log.contains("SRT publish accepted") && log.contains(&ch.id), "{log}");
    let sig = key.rsplit("sig=").next().unwrap();
    streamer.assert_log_free_of(&[sig]);
}

#[tokio::test]
async fn bad_keys_are_rejected_in_the_handshake_and_write_nothing() {
    let aws = aws().await;
    let (table, store) = channel_table(&aws).await;
    let ch = channel(store.as_ref(), hls()).await;
    let other = channel(store.as_ref(), hls()).await;
    let dir = tempdir();
    let (streamer, port) = start(&table, &dir).await;

    let valid = stream_key(&ch, &ch, now() + 3600);
    let mut tampered = valid.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
    let tampered = String::from_utf8(tampered).unwrap();
    let cases = [
        ("tampered signature", tampered.clone()),
        ("expired", stream_key(&ch, &ch, now() - 10)),
        ("other channel's secret", stream_key(&ch, &other, now() + 3600)),
        ("no signature", ch.id.clone()),
        ("no stream id", String::new()),
        ("playback request", format!("#!::r=live/{valid},m=request")),
    ];
    // Accepted, each would stream for 20 s; a handshake rejection ends ffmpeg at once.
    let clip = Clip { seconds: 20, realtime: true, ..Clip::default() };
    for (what, id) in &cases {
        let url = if id.is_empty() { format!("srt://127.0.0.1:{port}") } else { srt_url(port, id) };
        let started = Instant::now();
        let sent = tokio::time::timeout(Duration::from_secs(10), ffmpeg_send_ts(&url, clip)).await;
        assert_eq!(sent, Ok(false), "{what}: publish not refused");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what}: refused only after {:?}",
            started.elapsed()
        );
        assert_eq!(channel_state(store.as_ref(), &ch).await, ChannelState::Idle, "{what}");
    }
    assert!(!dir.join("live").exists(), "refused publishes wrote output");
    let log = streamer.log();
    assert!(log.matches("SRT publish refused").count() >= 5, "{log}");

    // The same server still takes a valid publish, here in the SRT Access Control form.
    let id = format!("#!::r=live/{valid},m=publish");
    assert!(ffmpeg_send_ts(&srt_url(port, &id), Clip { seconds: 4, ..Clip::default() }).await);
    let pl = ended(&dir, &ch).await;
    let total: f32 = pl.segments.iter().map(|s| s.duration).sum();
    assert!((total - 4.0).abs() <= 0.5, "segments total {total} s: {pl:?}");
    wait_for_state(store.as_ref(), &ch, ChannelState::Idle, Duration::from_secs(10)).await;

    let sigs: Vec<&str> =
        [&valid, &tampered].iter().map(|k| k.rsplit("sig=").next().unwrap()).collect();
    streamer.assert_log_free_of(&sigs);
}

#[tokio::test]
async fn sigterm_mid_publish_flushes_and_ends_the_playlist() {
    let aws = aws().await;
    let (table, store) = channel_table(&aws).await;
    let ch = channel(store.as_ref(), hls()).await;
    let dir = tempdir();
    let (streamer, port) = start(&table, &dir).await;

    let url = srt_url(port, &format!("live/{}", stream_key(&ch, &ch, now() + 3600)));
    let clip = Clip { seconds: 60, realtime: true, ..Clip::default() };
    let publish = tokio::spawn(async move { ffmpeg_send_ts(&url, clip).await });
    wait_for_state(store.as_ref(), &ch, ChannelState::Live, Duration::from_secs(10)).await;
    // Media reaches the segmenter one SRT latency (1 s) after it was sent.
    tokio::time::sleep(Duration::from_secs(6)).await;

    assert!(streamer.terminate(Duration::from_secs(30)).await, "streamer did not exit cleanly");
    let pl = ended(&dir, &ch).await;
    let total: f32 = pl.segments.iter().map(|s| s.duration).sum();
    assert!(total >= 4.0, "flushed {total} s");
    assert_eq!(channel_state(store.as_ref(), &ch).await, ChannelState::Idle);
    // The caller is disconnected, not left streaming into nothing.
    let sent = tokio::time::timeout(Duration::from_secs(15), publish).await;
    assert!(matches!(sent, Ok(Ok(false))), "ffmpeg still running or succeeded: {sent:?}");
}

#[tokio::test]
async fn rotating_the_key_ends_the_running_srt_publish() {
    let aws = aws().await;
    let (table, store) = channel_table(&aws).await;
    let ch = channel(store.as_ref(), hls()).await;
    let dir = tempdir();
    let (streamer, port) = start_with(&table, &dir, &["--lease-secs", "6"]).await;

    let key = stream_key(&ch, &ch, now() + 3600);
    let url = srt_url(port, &key);
    let clip = Clip { seconds: 60, realtime: true, ..Clip::default() };
    let publish = tokio::spawn(async move { ffmpeg_send_ts(&url, clip).await });
    wait_for_state(store.as_ref(), &ch, ChannelState::Live, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rotated = store.rotate_secret(&ch.id).await.expect("rotate");

    // Revoked at the next lease renewal (every 2 s): the caller is disconnected and the
    // playlist ended long before the clip's 60 s.
    let sent = tokio::time::timeout(Duration::from_secs(20), publish).await;
    assert!(matches!(sent, Ok(Ok(false))), "publish not ended by the rotation: {sent:?}");
    let pl = ended(&dir, &ch).await;
    assert!(!pl.segments.is_empty());
    wait_for_state(store.as_ref(), &ch, ChannelState::Idle, Duration::from_secs(10)).await;

    // The old key is refused in the handshake; the new one is taken.
    let short = Clip { seconds: 2, ..Clip::default() };
    assert!(!ffmpeg_send_ts(&srt_url(port, &key), short).await, "old key accepted");
    let new_key = stream_key(&rotated, &rotated, now() + 3600);
    assert!(ffmpeg_send_ts(&srt_url(port, &new_key), short).await, "new key refused");
    let old_sig = key.rsplit("sig=").next().unwrap();
    let new_sig = new_key.rsplit("sig=").next().unwrap();
    streamer.assert_log_free_of(&[old_sig, new_sig]);
}

#[tokio::test]
async fn encrypted_and_crashing_callers_do_not_take_srt_down() {
    let aws = aws().await;
    let (table, store) = channel_table(&aws).await;
    let ch = channel(store.as_ref(), hls()).await;
    let dir = tempdir();
    let (streamer, port) = start(&table, &dir).await;
    let key = stream_key(&ch, &ch, now() + 3600);
    let long = Clip { seconds: 20, realtime: true, ..Clip::default() };

    // A passphrase is refused in the handshake: with a bad key, or with a valid one when the
    // caller states its key length (srt-tokio only sees the length, not the keying material).
    let bad_key = stream_key(&ch, &ch, now() - 10);
    for (id, extra) in [(&bad_key, ""), (&key, "&pbkeylen=16")] {
        let url = format!("{}&passphrase=0123456789abcdef{extra}", srt_url(port, id));
        let started = Instant::now();
        let sent = tokio::time::timeout(Duration::from_secs(10), ffmpeg_send_ts(&url, long)).await;
        assert_eq!(sent, Ok(false), "encrypted caller not refused ({extra})");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "refused after {took:?} ({extra})");
    }
    let log = streamer.log();
    assert!(log.contains("encryption") && !log.contains("restarting"), "{log}");

    // libsrt's file congestion control extension made srt-protocol 0.4.4 panic while
    // parsing the handshake (patched in third_party/: now a refusal); SRT keeps working
    // without even a listener restart.
    let url = format!("srt://127.0.0.1:{port}?transtype=file&connect_timeout=2000");
    let sent = tokio::time::timeout(Duration::from_secs(15), ffmpeg_send_ts(&url, long)).await;
    assert_eq!(sent, Ok(false), "file-mode caller not refused");
    assert!(ffmpeg_send_ts(&srt_url(port, &key), Clip { seconds: 4, ..Clip::default() }).await);
    let pl = ended(&dir, &ch).await;
    let total: f32 = pl.segments.iter().map(|s| s.duration).sum();
    assert!((total - 4.0).abs() <= 0.5, "segments total {total} s: {pl:?}");
    wait_for_state(store.as_ref(), &ch, ChannelState::Idle, Duration::from_secs(10)).await;
    let log = streamer.log();
    assert!(!log.contains("restarting") && !log.contains("panicked"), "{log}");
    streamer.assert_log_free_of(&[key.rsplit("sig=").next().unwrap()]);
}
