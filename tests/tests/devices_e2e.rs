//! Devices end to end on a local stack: a camera (a real GStreamer RTSP server with digest
//! credentials) is registered by its gateway's heartbeat through the HTTP API, the reconciler
//! with the local task runner starts a `streamer pull` process for its slot (the same
//! assignment override an ECS task gets), HLS appears under `devices/<id>/live/`; the next
//! heartbeat without the camera stops the process and ends the playlist.

use ::devices::local::ProcessTasks;
use ::devices::tasks::Tasks;
use std::sync::Arc;
use std::time::Duration;
use streamstack_core::device_store::DeviceStore;
use streamstack_tests::devices::{reconciler, DeviceTables};
use streamstack_tests::process::streamer_binary;
use streamstack_tests::rtsp::{make_file, Media, RtspServer};
use streamstack_tests::*;

const KEY_HEX: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// Starts the API router on a local port with the devices table and the URL key.
async fn api(tables: &DeviceTables, aws: &streamstack_core::aws::AwsClients) -> String {
    let config = streamstack_core::Config::from_lookup(|k| match k {
        "CHANNELS_TABLE" => Some("unused".into()),
        _ => None,
    })
    .expect("config");
    let deps = channels_api::Deps::new(
        Arc::new(streamstack_core::DynamoChannelStore::new(aws.dynamodb.clone(), "unused")),
        Arc::new(streamstack_core::DynamoAssetStore::new(aws.dynamodb.clone(), "unused")),
        config,
    )
    .with_devices(
        tables.devices.clone(),
        Some(streamstack_core::media_url::MediaUrlKey::from_hex(KEY_HEX).expect("key")),
        streamstack_core::device::DeviceSettings::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, channels_api::router(Arc::new(deps))).await });
    format!("http://{addr}")
}

async fn heartbeat(api: &str, devices: serde_json::Value) -> serde_json::Value {
    let response = reqwest::Client::new()
        .post(format!("{api}/gateways/site-1/heartbeat"))
        .json(&serde_json::json!({ "devices": devices }))
        .send()
        .await
        .expect("heartbeat");
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

#[tokio::test]
async fn heartbeat_reconcile_record_and_stop_a_camera() {
    let aws = aws().await;
    let tables = DeviceTables::create(&aws.dynamodb).await;
    let bucket = bucket(&aws).await;
    let api = api(&tables, &aws).await;
    let dir = tempdir();
    let clip = make_file(&dir, Media::H264Aac, 20);
    let server =
        RtspServer::start(&clip, &["--loop", "--user", "cam", "--password", "s3cret"]).await;
    let url = server.url("cam:s3cret@");

    let outcome = heartbeat(&api, serde_json::json!([{ "id": "door", "media_url": url }])).await;
    assert_eq!(outcome["created"], 1, "{outcome}");

    let logs = dir.join("tasks");
    let tasks = Arc::new(
        ProcessTasks::new(
            streamer_binary(),
            ["--output", "s3", "--segment-duration", "2", "--recording-segment-duration", "6"]
                .map(String::from)
                .to_vec(),
            logs.clone(),
        )
        .with_env("DEVICES_TABLE", &tables.devices_table)
        .with_env("SLOTS_TABLE", &tables.slots_table)
        .with_env("MEDIA_BUCKET", &bucket)
        .with_env("MEDIA_URL_KEY", KEY_HEX)
        .with_env("ASSIGNMENT_POLL_SECS", "1"),
    );
    let r = reconciler(&tables, 1, tasks.clone());
    let report = r.run().await.expect("reconcile");
    assert_eq!((report.assigned, report.started), (1, 1), "{report:?}");

    // HLS under devices/door/live/, decodable, while the stream state says receiving.
    let key = "devices/door/live/index.m3u8";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let playlist = object(&aws, &bucket, key).await;
        if playlist
            .as_deref()
            .is_some_and(|p| String::from_utf8_lossy(p).matches("#EXTINF").count() >= 3)
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no HLS for the camera; task log:\n{}",
            task_log(&logs)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let device = tables.devices.get("door").await.unwrap().unwrap();
    assert!(device.task_arn.is_some());
    let log = task_log(&logs);
    assert!(!log.contains("s3cret"), "the camera password reached the task log");

    // The gateway no longer reports it: the next reconcile stops the process, which ends the
    // playlist.
    let outcome = heartbeat(&api, serde_json::json!([])).await;
    assert_eq!(outcome["offline"], 1, "{outcome}");
    let report = r.run().await.expect("reconcile");
    assert_eq!((report.unassigned, report.stopped), (1, 1), "{report:?}");
    // The process ends the playlist, records `stopped`, and exits.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ended = object(&aws, &bucket, key)
            .await
            .is_some_and(|p| String::from_utf8_lossy(&p).contains("#EXT-X-ENDLIST"));
        let stream = tables.devices.get("door").await.unwrap().unwrap().stream;
        let stopped = stream.as_ref().is_some_and(|s| s.status.as_str() == "stopped");
        if ended && stopped && tasks.list().await.expect("list").is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "task not stopped ({stream:?}); log:\n{}",
            task_log(&logs)
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let text = object(&aws, &bucket, key).await.expect("playlist");
    let playlist = m3u8_rs::parse_media_playlist_res(&text).expect("playlist parses");
    let seconds: f32 = playlist.segments.iter().map(|s| s.duration).sum();
    assert!(playlist.end_list && seconds >= 6.0, "{seconds} s: {playlist:?}");
    drop(server);
}

/// The object's bytes, `None` while it does not exist.
async fn object(
    aws: &streamstack_core::aws::AwsClients,
    bucket: &str,
    key: &str,
) -> Option<Vec<u8>> {
    let out = aws.s3.get_object().bucket(bucket).key(key).send().await.ok()?;
    Some(out.body.collect().await.ok()?.into_bytes().to_vec())
}

fn task_log(dir: &std::path::Path) -> String {
    std::fs::read_to_string(dir.join("dev-door.log")).unwrap_or_default()
}
