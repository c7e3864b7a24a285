//! The publish lease across real `streamer serve` processes sharing one channel table: one
//! publisher per channel anywhere, a killed owner's channel reads `idle` once its lease
//! lapses, and a rotated key ends the running publish and refuses the old push URL.

use std::path::Path;
use std::time::{Duration, Instant};
use streamstack_core::{Channel, ChannelState, ChannelStore, HlsSettings};
use streamstack_tests::process::StreamerProcess;
use streamstack_tests::*;

/// Lease length given to the processes (the default is 30 s; shorter keeps the test quick).
const LEASE_SECS: u64 = 6;

fn ended(dir: &Path, channel: &Channel) -> Option<m3u8_rs::MediaPlaylist> {
    let bytes = std::fs::read(dir.join(format!("live/{}/index.m3u8", channel.id))).ok()?;
    m3u8_rs::parse_media_playlist_res(&bytes).ok().filter(|p| p.end_list)
}

#[tokio::test]
async fn one_publisher_across_processes_and_a_killed_owner_lapses() {
    let aws = aws().await;
    let (table, store) = channel_table(&aws).await;
    let ch = channel(store.as_ref(), HlsSettings { segment_duration: 2, playlist_window: 5 }).await;
    let (dir_a, dir_b) = (tempdir(), tempdir());
    let lease = LEASE_SECS.to_string();
    let args = |dir: &Path| vec!["--output".to_owned(), format!("dir:{}", dir.display())];
    let start = |dir: &Path| {
        let args = args(dir);
        let table = table.clone();
        let lease = lease.clone();
        async move {
            let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
            all.extend(["--lease-secs", &lease]);
            StreamerProcess::start(&table, &all, &[]).await
        }
    };
    let a = start(&dir_a).await;
    let b = start(&dir_b).await;

    let url_a = signed_push_url(a.addr, &ch);
    let first = tokio::spawn(async move {
        ffmpeg_publish(&url_a, Clip { seconds: 60, realtime: true, ..Clip::default() }).await
    });
    wait_for_state(store.as_ref(), &ch, ChannelState::Live, Duration::from_secs(10)).await;

    // A second publisher through the other process is refused while the first is live.
    let short = Clip { seconds: 3, ..Clip::default() };
    assert!(
        !ffmpeg_publish(&signed_push_url(b.addr, &ch), short).await,
        "second publisher accepted"
    );
    assert!(b.log().contains("channel already has a publisher"), "refused for another reason");
    assert_eq!(channel_state(store.as_ref(), &ch).await, ChannelState::Live);

    // kill -9 the owner: nothing releases the lease, yet the channel reads idle once it lapses.
    a.kill9().await;
    let _ = first.await;
    let took = wait_for_state(
        store.as_ref(),
        &ch,
        ChannelState::Idle,
        Duration::from_secs(3 * LEASE_SECS),
    )
    .await;
    eprintln!("channel read idle {took:?} after the owner was killed (lease {LEASE_SECS} s)");

    // ... and the other process now accepts a publish into it.
    assert!(
        ffmpeg_publish(&signed_push_url(b.addr, &ch), short).await,
        "publish after lapse refused"
    );
    let playlist = ended(&dir_b, &ch).expect("ended playlist from the second process");
    assert!(!playlist.segments.is_empty());
    wait_for_state(store.as_ref(), &ch, ChannelState::Idle, Duration::from_secs(10)).await;
    b.assert_log_free_of(&[&ch.secret.to_hex()]);
    b.kill9().await;
}

#[tokio::test]
async fn rotating_the_key_ends_the_running_publish_and_refuses_the_old_url() {
    let aws = aws().await;
    let (table, store) = channel_table(&aws).await;
    let ch = channel(store.as_ref(), HlsSettings { segment_duration: 2, playlist_window: 5 }).await;
    let dir = tempdir();
    let output = format!("dir:{}", dir.display());
    let lease = LEASE_SECS.to_string();
    let streamer =
        StreamerProcess::start(&table, &["--output", &output, "--lease-secs", &lease], &[]).await;

    let old_url = signed_push_url(streamer.addr, &ch);
    let url = old_url.clone();
    let started = Instant::now();
    let publish = tokio::spawn(async move {
        ffmpeg_publish(&url, Clip { seconds: 60, realtime: true, ..Clip::default() }).await;
        started.elapsed()
    });
    wait_for_state(store.as_ref(), &ch, ChannelState::Live, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rotated = store.rotate_secret(&ch.id).await.expect("rotate");
    assert_ne!(rotated.secret, ch.secret);

    // The publish ends at the next lease renewal (every LEASE_SECS / 3), not after 60 s.
    let lasted = publish.await.unwrap();
    assert!(lasted < Duration::from_secs(30), "publish went on for {lasted:?} after rotation");
    let playlist = ended(&dir, &ch).expect("the revoked publish's playlist is ended");
    assert!(!playlist.segments.is_empty());
    wait_for_state(store.as_ref(), &ch, ChannelState::Idle, Duration::from_secs(10)).await;

    // The old push URL is refused; one signed with the new key works.
    let short = Clip { seconds: 2, ..Clip::default() };
    assert!(!ffmpeg_publish(&old_url, short).await, "old push URL accepted after rotation");
    assert!(
        ffmpeg_publish(&signed_push_url(streamer.addr, &rotated), short).await,
        "new key refused"
    );
    let old_sig = old_url.split("sig=").nth(1).expect("signed URL");
    streamer.assert_log_free_of(&[old_sig, &ch.secret.to_hex(), &rotated.secret.to_hex()]);
    streamer.kill9().await;
}
