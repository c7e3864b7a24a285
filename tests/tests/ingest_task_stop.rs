//! A real `streamer serve` process on "ECS" (a task metadata endpoint v4 stand-in gives it
//! its task ARN) holds a channel's publish lease under that ARN; it is killed with `kill -9`;
//! the task health handler, given the ECS "Task State Change" event of the ingest service's
//! task, ends the channel's live playlist and releases the lease at once — not 30 s later
//! when the lease would lapse.

use health::task::event::Envelope;
use health::task::policy::RestartPolicy;
use health::task::{Outcome, TaskHealth, TaskHealthConfig};
use std::time::Duration;
use streamstack_core::device::DeviceSettings;
use streamstack_core::{ChannelState, HlsSettings};
use streamstack_tests::devices::DeviceTables;
use streamstack_tests::process::StreamerProcess;
use streamstack_tests::*;
use time::OffsetDateTime;

const TASK_ARN: &str =
    "arn:aws:ecs:us-east-1:111122223333:task/streamstack-streamer/0f6d6f6e1f8d4e0b9a1c2d3e4f506172";
const GROUP: &str = "service:streamstack-ingest";

/// Serves `GET /v4/<id>/task` as the ECS agent does (trimmed to the fields read).
async fn metadata_endpoint() -> String {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/v4/abc/task",
        get(|| async {
            axum::Json(serde_json::json!({
                "Cluster": "arn:aws:ecs:us-east-1:111122223333:cluster/streamstack-streamer",
                "TaskARN": TASK_ARN,
                "Family": "streamstack-ingest",
                "DesiredStatus": "RUNNING",
                "KnownStatus": "RUNNING",
            }))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/v4/abc")
}

#[tokio::test]
async fn a_killed_ingest_task_releases_its_channel_at_once() {
    let aws = aws().await;
    let (table, store) = channel_table(&aws).await;
    let bucket = bucket(&aws).await;
    let ch = channel(store.as_ref(), HlsSettings { segment_duration: 2, playlist_window: 5 }).await;
    let metadata = metadata_endpoint().await;
    let output = format!("s3://{bucket}");
    let streamer = StreamerProcess::start(
        &table,
        &["--output", &output],
        &[("ECS_CONTAINER_METADATA_URI_V4", &metadata), ("MEDIA_BUCKET", &bucket)],
    )
    .await;
    let url = signed_push_url(streamer.addr, &ch);
    let publisher = tokio::spawn(async move {
        ffmpeg_publish(&url, Clip { seconds: 60, realtime: true, ..Clip::default() }).await
    });
    wait_for_state(store.as_ref(), &ch, ChannelState::Live, Duration::from_secs(15)).await;
    let lease = store.stored_lease(&ch.id).await.expect("lease").expect("leased");
    assert_eq!(lease.owner, TASK_ARN, "the lease names the ECS task");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while playlist(&aws, &bucket, &ch).await.is_none_or(|p| p.segments.len() < 2) {
        assert!(tokio::time::Instant::now() < deadline, "no live playlist");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    streamer.kill9().await;
    let killed_at = std::time::Instant::now();
    let _ = publisher.await;
    assert_eq!(
        channel_state(store.as_ref(), &ch).await,
        ChannelState::Live,
        "the lease outlives the process"
    );
    let live = playlist(&aws, &bucket, &ch).await.expect("playlist");
    assert!(!live.end_list);

    let sdk = streamstack_core::aws::sdk_config(Some(&endpoint())).await;
    let devices = DeviceTables::create(&aws.dynamodb).await;
    let health = TaskHealth::new(
        &TaskHealthConfig {
            devices_table: devices.devices_table.clone(),
            slots_table: devices.slots_table.clone(),
            channels_table: Some(table.clone()),
            bucket: Some(bucket.clone()),
            alarm_topic: None,
            cluster_arn: None,
            ingest_group: Some(GROUP.into()),
            policy: RestartPolicy::default(),
            device: DeviceSettings::default(),
            endpoint_url: Some(endpoint()),
        },
        &sdk,
    );
    let mut event: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/ecs-task-state-change-stopped.json"))
            .expect("fixture");
    event["detail"]["taskArn"] = TASK_ARN.into();
    event["detail"]["group"] = GROUP.into();
    event["detail"]["startedBy"] = "ecs-svc/9223370280555396425".into();
    let event: Envelope = serde_json::from_value(event).expect("event");
    let outcome = health.handle(&event, OffsetDateTime::now_utc()).await.expect("handle");
    let Outcome::IngestTask { channels } = outcome else { panic!("{outcome:?}") };
    assert_eq!(channels.len(), 1);
    assert_eq!(channels[0].channel, ch.id);
    assert!(channels[0].playlist_ended);

    assert_eq!(channel_state(store.as_ref(), &ch).await, ChannelState::Idle, "released at once");
    eprintln!("kill -9 -> channel idle: {:?} (lease 30 s)", killed_at.elapsed());
    let ended = playlist(&aws, &bucket, &ch).await.expect("playlist");
    assert!(ended.end_list, "{ended:?}");
    assert_eq!(ended.segments.len(), live.segments.len(), "the same segments, ended");
}
