//! `streamer pull --assignment <slot>` as a process against moto (slots and devices tables,
//! an S3 bucket), fed by real ffmpeg UDP MPEG-TS senders: the task follows its slot as the
//! reconciler changes it — devices pulled, a removed one ended, a changed URL pulled from its
//! new address, a deleted slot ending the process with status 0 — and the credentials of a
//! device's URL never reach its log.

use m3u8_rs::MediaPlaylist;
use std::time::Duration;
use streamstack_core::aws::AwsClients;
use streamstack_core::device::Device;
use streamstack_core::device_store::{DeviceStore, DynamoDeviceStore};
use streamstack_core::media_url::{MediaUrl, MediaUrlKey};
use streamstack_core::playback::device_prefix;
use streamstack_core::slot::{DynamoSlotStore, SlotStore};
use streamstack_core::Playback;
use streamstack_tests::process::{free_port, free_udp_port, StreamerProcess};
use streamstack_tests::*;

/// 64 hex characters: the test stack's `MEDIA_URL_KEY`.
const KEY_HEX: &str = "5eb63bbbe01eeed093cb22bb8f5acdc3a7f3b2b5c0f9c4c1a2b3c4d5e6f70819";

/// Each device in its own slot would be `dev-<id>`; this one is shared.
const SLOT: &str = "grp-0123456789ab";

/// The device's live playlist in `bucket`, if it exists yet. cam-b is a signed device: its
/// recordings are under `signed/devices/`.
async fn live(aws: &AwsClients, bucket: &str, id: &str) -> Option<MediaPlaylist> {
    let key = format!("{}/live/index.m3u8", device_prefix(id, playback_of(id)));
    let out = aws.s3.get_object().bucket(bucket).key(&key).send().await.ok()?;
    let bytes = out.body.collect().await.ok()?.into_bytes();
    Some(m3u8_rs::parse_media_playlist_res(&bytes).expect("playlist parses"))
}

/// Index one past the playlist's last segment: grows as segments are added.
fn end_sequence(p: &MediaPlaylist) -> u64 {
    p.media_sequence + p.segments.len() as u64
}

/// The session folder of the playlist's last segment (`<session>/<n>.ts`).
fn last_session(p: &MediaPlaylist) -> Option<String> {
    let uri = &p.segments.last()?.uri;
    let path = uri.rsplit_once('/').map_or(uri.as_str(), |(dir, _)| dir);
    path.rsplit('/').next().map(str::to_owned)
}

/// Polls `check` every 200 ms until it returns `Some`, for at most `within`.
async fn wait_until<T>(
    what: &str,
    within: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The playback of the test's devices: cam-b signed, the others public.
fn playback_of(id: &str) -> Playback {
    if id == "cam-b" {
        Playback::Signed
    } else {
        Playback::Public
    }
}

/// Registers device `id` at `url` and returns it.
async fn register(store: &DynamoDeviceStore, key: &MediaUrlKey, id: &str, url: &str) -> Device {
    let media_url = MediaUrl::seal(url, id, Some(key)).expect("valid URL");
    let now = time::OffsetDateTime::now_utc();
    let device = Device::new(id, "gw1", media_url, playback_of(id), now);
    store.create(&device).await.expect("create device");
    device
}

/// Sends a realtime TS clip of `seconds` to UDP `port` in the background.
fn send(port: u16, seconds: u32) -> tokio::task::JoinHandle<bool> {
    let url = format!("udp://127.0.0.1:{port}?pkt_size=1316");
    let clip = Clip { seconds, realtime: true, ..Clip::default() };
    tokio::spawn(async move { ffmpeg_send_ts(&url, clip).await })
}

#[tokio::test]
async fn a_task_follows_its_slot() {
    let aws = aws().await;
    let bucket = bucket(&aws).await;
    let key = MediaUrlKey::from_hex(KEY_HEX).expect("key");
    let (devices_table, slots_table) = (unique("devices"), unique("slots"));
    let devices = DynamoDeviceStore::new(aws.dynamodb.clone(), &devices_table);
    devices.create_table_if_missing().await.expect("devices table");
    let slots = DynamoSlotStore::new(aws.dynamodb.clone(), &slots_table);
    slots.create_table_if_missing().await.expect("slots table");

    // Two UDP cameras, and one RTSP camera with credentials that refuses connections.
    let (port_a, port_b) = (free_udp_port(), free_udp_port());
    let cam_a = register(&devices, &key, "cam-a", &format!("udp://127.0.0.1:{port_a}")).await;
    let cam_b = register(&devices, &key, "cam-b", &format!("udp://127.0.0.1:{port_b}")).await;
    let dead = format!("rtsp://admin:hunter2@127.0.0.1:{}/cam", free_port());
    let cam_c = register(&devices, &key, "cam-c", &dead).await;
    let mut exists = false;
    for device in [&cam_a, &cam_b, &cam_c] {
        let added = slots
            .add_device(SLOT, exists, &device.id, &device.media_url.digest, 4)
            .await
            .expect("add to slot");
        assert!(added, "slot refused {}", device.id);
        exists = true;
    }

    let output = format!("s3://{bucket}");
    let args = ["--assignment", SLOT, "--output", &output, "--segment-duration", "2"];
    let env = [
        ("SLOTS_TABLE", slots_table.as_str()),
        ("DEVICES_TABLE", devices_table.as_str()),
        ("MEDIA_URL_KEY", KEY_HEX),
        ("ASSIGNMENT_POLL_SECS", "1"),
        ("STREAMER_DRAIN_SECS", "20"),
    ];
    let started = tokio::time::Instant::now();
    let mut streamer = StreamerProcess::pull(&args, &env).await;
    let senders = [send(port_a, 20), send(port_b, 20)];

    // Both UDP cameras recorded.
    let within = Duration::from_secs(20);
    let first_a = wait_until("cam-a live", within, async || {
        live(&aws, &bucket, "cam-a").await.filter(|p| !p.segments.is_empty())
    })
    .await;
    wait_until("cam-b live", within, async || {
        live(&aws, &bucket, "cam-b").await.filter(|p| !p.segments.is_empty())
    })
    .await;

    // cam-b leaves the slot: its playlist ends while cam-a's keeps growing.
    slots.remove_device(SLOT, "cam-b").await.expect("remove from slot");
    wait_until("cam-b ended", Duration::from_secs(15), async || {
        live(&aws, &bucket, "cam-b").await.filter(|p| p.end_list)
    })
    .await;
    let a_now = live(&aws, &bucket, "cam-a").await.expect("cam-a playlist");
    wait_until("cam-a growing", Duration::from_secs(10), async || {
        live(&aws, &bucket, "cam-a")
            .await
            .filter(|p| !p.end_list && end_sequence(p) > end_sequence(&a_now))
    })
    .await;

    // cam-a moves to another port (new URL, new digest): pulled from there, in a new session.
    let new_port = free_udp_port();
    let mut moved = cam_a.clone();
    moved.media_url =
        MediaUrl::seal(&format!("udp://127.0.0.1:{new_port}"), "cam-a", Some(&key)).unwrap();
    moved.version += 1;
    devices.update_config(&moved, cam_a.version).await.expect("update cam-a");
    let digest = &moved.media_url.digest;
    assert!(slots.set_digest(SLOT, "cam-a", digest).await.expect("set digest"));
    let first_session = last_session(&first_a).expect("a session");
    let sender_new = send(new_port, 12);
    let pulled_from = format!("127.0.0.1:{new_port}");
    wait_until("cam-a from its new port", Duration::from_secs(20), async || {
        let log = streamer.log();
        let receiving = log.lines().any(|l| l.contains(&pulled_from) && l.contains("receiving"));
        let p = live(&aws, &bucket, "cam-a").await?;
        let renewed = last_session(&p).is_some_and(|s| s != first_session);
        (receiving && renewed && !p.end_list).then_some(())
    })
    .await;

    // The slot is deleted (its devices still in it): every pull ends, the process exits 0.
    aws.dynamodb
        .delete_item()
        .table_name(&slots_table)
        .key("id", aws_sdk_dynamodb::types::AttributeValue::S(SLOT.into()))
        .send()
        .await
        .expect("delete slot");
    let status = streamer.wait_exit(Duration::from_secs(25)).await;
    assert!(status.is_some_and(|s| s.success()), "exit {status:?}:\n{}", streamer.log());
    let a = live(&aws, &bucket, "cam-a").await.expect("cam-a playlist");
    assert!(a.end_list, "cam-a not ended after the slot was deleted");

    // The credentials never reached the log; the dead camera was tried under its redacted URL.
    streamer.assert_log_free_of(&["hunter2", "admin:"]);
    let log = streamer.log();
    assert!(log.contains("Connection refused"), "cam-c never tried:\n{log}");
    let elapsed = started.elapsed();
    eprintln!("slot followed end to end in {elapsed:?}");
    for sender in senders {
        sender.abort();
    }
    sender_new.abort();
}
