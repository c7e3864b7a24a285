//! `streamer pull` as a process, fed by real ffmpeg UDP MPEG-TS senders: a device's live
//! playlist and hourly archive, its stream state in a devices table (moto), a channel target
//! holding the channel's publish lease, and one dead source beside a live one.

use aws_sdk_dynamodb::types::AttributeValue;
use std::path::Path;
use std::time::Duration;
use streamstack_core::aws::AwsClients;
use streamstack_core::{ChannelState, HlsSettings};
use streamstack_tests::process::{free_port, free_udp_port, StreamerProcess};
use streamstack_tests::*;

/// A devices table with partition key `id` holding `ids`.
async fn devices_table(aws: &AwsClients, ids: &[&str]) -> String {
    let table = unique("devices");
    streamstack_core::store::create_table_if_missing(&aws.dynamodb, &table)
        .await
        .expect("create devices table");
    for id in ids {
        aws.dynamodb
            .put_item()
            .table_name(&table)
            .item("id", AttributeValue::S((*id).to_owned()))
            .send()
            .await
            .expect("put device");
    }
    table
}

/// The `stream.status` recorded on item `id`, if any.
async fn stream_status(aws: &AwsClients, table: &str, id: &str) -> Option<String> {
    let item = aws
        .dynamodb
        .get_item()
        .table_name(table)
        .key("id", AttributeValue::S(id.to_owned()))
        .send()
        .await
        .ok()?
        .item?;
    let stream = item.get("stream")?.as_m().ok()?;
    stream.get("status")?.as_s().ok().cloned()
}

/// Waits up to `within` for `stream.status == want`.
async fn wait_for_status(aws: &AwsClients, table: &str, id: &str, want: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let status = stream_status(aws, table, id).await;
        if status.as_deref() == Some(want) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "stream status {status:?}, wanted {want}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn read_playlist(path: &Path) -> m3u8_rs::MediaPlaylist {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    m3u8_rs::parse_media_playlist_res(&bytes).expect("playlist parses")
}

/// Every `recording.m3u8` under `dir`.
fn recordings(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "recording.m3u8") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn udp_url() -> String {
    format!("udp://127.0.0.1:{}", free_udp_port())
}

/// `streamer pull` of `source` into `device:<id>` at `output`: 2 s live segments, 6 s
/// recording segments.
async fn pull_device(
    source: &str,
    id: &str,
    output: &str,
    env: &[(&str, &str)],
) -> StreamerProcess {
    let target = format!("device:{id}");
    let args = ["--source", source, "--target", &target, "--output", output];
    let segments = ["--segment-duration", "2", "--recording-segment-duration", "6"];
    StreamerProcess::pull(&[&args[..], &segments[..]].concat(), env).await
}

#[tokio::test]
async fn device_live_playlist_archive_and_stream_state() {
    let aws = aws().await;
    let table = devices_table(&aws, &["cam1"]).await;
    let out = tempdir();
    let source = udp_url();
    let output = format!("dir:{}", out.display());
    let streamer = pull_device(&source, "cam1", &output, &[("DEVICES_TABLE", &table)]).await;
    let sender = format!("{source}?pkt_size=1316");
    let clip = Clip { seconds: 14, realtime: true, gop: 25, ..Clip::default() };
    let send = tokio::spawn(async move { ffmpeg_send_ts(&sender, clip).await });
    wait_for_status(&aws, &table, "cam1", "receiving", Duration::from_secs(15)).await;
    assert!(send.await.unwrap(), "ffmpeg failed");
    // The source went quiet: the UDP receive timeout makes it `reconnecting`.
    wait_for_status(&aws, &table, "cam1", "reconnecting", Duration::from_secs(20)).await;
    assert!(streamer.terminate(Duration::from_secs(30)).await, "unclean exit");

    let live = read_playlist(&out.join("devices/cam1/live/index.m3u8"));
    assert!(live.end_list, "live playlist not ended");
    assert_eq!(live.target_duration, 2);
    let archives = recordings(&out.join("devices/cam1"));
    assert!(!archives.is_empty(), "no archive playlist");
    let now = time::OffsetDateTime::now_utc();
    let mut total = 0.0;
    for path in &archives {
        let rel = path.strip_prefix(&out).unwrap().to_string_lossy().into_owned();
        // devices/cam1/<yyyy>/<mm>/<dd>/<hh>/<session>/recording.m3u8
        let parts: Vec<&str> = rel.split('/').collect();
        assert_eq!(parts.len(), 8, "{rel}");
        assert_eq!(parts[2], format!("{:04}", now.year()), "{rel}");
        let playlist = read_playlist(path);
        assert!(playlist.end_list, "{rel} not ended");
        assert_eq!(playlist.target_duration, 6);
        assert_eq!(playlist.playlist_type, Some(m3u8_rs::MediaPlaylistType::Event));
        for segment in &playlist.segments {
            assert!((segment.duration as f64).round() <= 6.0, "{rel}: {}", segment.duration);
        }
        total += ffprobe_duration(&path.to_string_lossy()).expect("archive decodes");
    }
    assert!((total - 14.0).abs() <= 1.0, "archive holds {total} s of a 14 s source");
    let errors = ffmpeg_decode_errors(&archives[0].to_string_lossy());
    assert!(errors.is_empty(), "decode errors: {errors}");
}

#[tokio::test]
async fn channel_target_holds_the_publish_lease_and_a_dead_source_disturbs_nothing() {
    let aws = aws().await;
    let (table, store) = channel_table(&aws).await;
    let ch = channel(store.as_ref(), HlsSettings { segment_duration: 2, playlist_window: 5 }).await;
    let out = tempdir();
    let source = udp_url();
    let dead = format!("rtsp://admin:hunter2@127.0.0.1:{}/cam", free_port());
    let output = format!("dir:{}", out.display());
    let target = format!("channel:{}", ch.id);
    let streamer = StreamerProcess::pull(
        &[
            "--source",
            &source,
            "--target",
            &target,
            "--source",
            &dead,
            "--target",
            "device:dead1",
            "--output",
            &output,
        ],
        &[("CHANNELS_TABLE", &table)],
    )
    .await;
    // The pull claimed the channel's lease before any media.
    wait_for_state(store.as_ref(), &ch, ChannelState::Live, Duration::from_secs(10)).await;
    let sender = format!("{source}?pkt_size=1316");
    let clip = Clip { seconds: 8, realtime: true, ..Clip::default() };
    let send = tokio::spawn(async move { ffmpeg_send_ts(&sender, clip).await });
    wait_for_status(&aws, &table, &ch.id, "receiving", Duration::from_secs(15)).await;
    assert!(send.await.unwrap(), "ffmpeg failed");
    // Failures are logged at attempts 1, 2, 4, ...: the dead source was retried.
    streamer.wait_for_log("Connection refused", 2, Duration::from_secs(10)).await;
    streamer.assert_log_free_of(&["hunter2", "admin:"]);
    assert!(streamer.terminate(Duration::from_secs(30)).await, "unclean exit");
    assert_eq!(channel_state(store.as_ref(), &ch).await, ChannelState::Idle, "lease not released");
    let live = read_playlist(&out.join(format!("live/{}/index.m3u8", ch.id)));
    assert!(live.end_list);
    let duration =
        ffprobe_duration(&out.join(format!("live/{}/index.m3u8", ch.id)).to_string_lossy())
            .expect("channel playlist decodes");
    assert!(duration >= 5.0, "only {duration} s recorded");
}

/// A UDP feed that starts late (after the receive timeout), goes quiet for longer than the
/// timeout, and comes back from another encoder: the first segment is no discontinuity,
/// the return is recorded at once on the same socket (no reconnect backoff), and exactly one
/// `EXT-X-DISCONTINUITY` separates the two.
#[tokio::test]
async fn udp_feed_starting_late_and_returning_after_a_quiet_spell() {
    let out = tempdir();
    let source = udp_url();
    let output = format!("dir:{}", out.display());
    let streamer = pull_device(&source, "quiet1", &output, &[]).await;
    let sender = format!("{source}?pkt_size=1316");
    // Nothing for longer than the 5 s receive timeout: the source reads as reconnecting.
    streamer.wait_for_log("reconnecting", 1, Duration::from_secs(15)).await;
    let clip = Clip { seconds: 4, realtime: true, ..Clip::default() };
    assert!(ffmpeg_send_ts(&sender, clip).await, "first sender failed");
    let seen = streamer.log().matches("reconnecting").count();
    streamer.wait_for_log("reconnecting", seen + 1, Duration::from_secs(15)).await;
    assert!(ffmpeg_send_ts(&sender, clip).await, "second sender failed");
    assert!(streamer.terminate(Duration::from_secs(30)).await, "unclean exit");

    let path = out.join("devices/quiet1/live/index.m3u8");
    let live = read_playlist(&path);
    assert!(!live.segments[0].discontinuity, "a late start is no discontinuity");
    let breaks = live.segments.iter().filter(|s| s.discontinuity).count();
    assert_eq!(breaks, 1, "{live:?}");
    let duration = ffprobe_duration(&path.to_string_lossy()).expect("probes");
    assert!((duration - 8.0).abs() <= 1.0, "{duration} s of two 4 s feeds");
}
