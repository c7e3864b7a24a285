//! The task health handler against moto (DynamoDB, ECS, S3, SNS) with ECS "Task State
//! Change" events in the real EventBridge shape (tests/fixtures/ecs-task-state-change-stopped.json):
//! restart with backoff and the reconciler bringing the device back, crash-loop alarm,
//! duplicate and stale events, the reconciler's own stops, an ingest task's leases.

use health::alarm::{AlarmError, Alarms};
use health::task::event::Envelope;
use health::task::policy::RestartPolicy;
use health::task::{Outcome, TaskHealth, TaskHealthConfig};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use streamstack_core::device::DeviceSettings;
use streamstack_core::device_store::DeviceStore;
use streamstack_core::slot::{started_by, SlotStore, STOP_REASON_PREFIX};
use streamstack_core::{
    Channel, ChannelStore, DynamoChannelStore, HlsSettings, LeaseClaim, NewChannel, Playback,
};
use streamstack_tests::devices::{reconciler, DeviceTables, EcsCluster};
use streamstack_tests::topic::TopicQueue;
use streamstack_tests::{aws, bucket, endpoint, unique};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const INGEST_GROUP: &str = "service:streamstack-ingest";

struct Setup {
    tables: DeviceTables,
    topic: TopicQueue,
    health: TaskHealth,
    sdk: aws_config::SdkConfig,
    channels: DynamoChannelStore,
    bucket: String,
    s3: aws_sdk_s3::Client,
}

/// Fast restart policy: 1 s doubling to 4 s, 3 failures make a crash loop.
fn policy() -> RestartPolicy {
    RestartPolicy {
        backoff_base: Duration::from_secs(1),
        backoff_max: Duration::from_secs(4),
        crash_loop_restarts: 3,
        ..RestartPolicy::default()
    }
}

async fn setup() -> Setup {
    let aws = aws().await;
    let sdk = streamstack_core::aws::sdk_config(Some(&endpoint())).await;
    let tables = DeviceTables::create(&aws.dynamodb).await;
    let topic = TopicQueue::create(&sdk, "alarms").await;
    let channels_table = unique("channels");
    let channels = DynamoChannelStore::new(aws.dynamodb.clone(), &channels_table);
    channels.create_table_if_missing().await.expect("channels table");
    let bucket = bucket(&aws).await;
    let config = TaskHealthConfig {
        devices_table: tables.devices_table.clone(),
        slots_table: tables.slots_table.clone(),
        channels_table: Some(channels_table),
        bucket: Some(bucket.clone()),
        alarm_topic: Some(topic.topic_arn.clone()),
        cluster_arn: None,
        ingest_group: Some(INGEST_GROUP.into()),
        policy: policy(),
        device: DeviceSettings::default(),
        endpoint_url: Some(endpoint()),
    };
    let health = TaskHealth::new(&config, &sdk);
    Setup { tables, topic, health, sdk, channels, bucket, s3: aws.s3.clone() }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("format")
}

/// The fixture event with this task's fields.
fn stopped(
    task_arn: &str,
    by: &str,
    version: u64,
    stopped_at: OffsetDateTime,
    detail: Value,
) -> Envelope {
    let mut event: Value =
        serde_json::from_str(include_str!("../fixtures/ecs-task-state-change-stopped.json"))
            .expect("fixture");
    let d = &mut event["detail"];
    d["taskArn"] = json!(task_arn);
    d["startedBy"] = json!(by);
    d["version"] = json!(version);
    d["stoppedAt"] = json!(rfc3339(stopped_at));
    d["startedAt"] = json!(rfc3339(stopped_at - time::Duration::seconds(20)));
    if let Value::Object(fields) = detail {
        for (k, v) in fields {
            d[k.as_str()] = v;
        }
    }
    serde_json::from_value(event).expect("envelope")
}

fn actions(outcome: &Outcome) -> Vec<&'static str> {
    match outcome {
        Outcome::DeviceTask { devices, .. } => devices.iter().map(|d| d.action).collect(),
        other => panic!("not a device task outcome: {other:?}"),
    }
}

#[tokio::test]
async fn a_crashed_task_restarts_after_its_backoff() {
    let s = setup().await;
    let cluster = EcsCluster::create(&s.sdk).await;
    let r = reconciler(&s.tables, 1, cluster.tasks());
    s.tables.heartbeat("gw1", &["cam-1".into()], |_| 5000).await;
    r.run().await.expect("reconcile");
    let live = cluster.live().await;
    assert_eq!(live.len(), 1);
    let arn = live[0].arn.clone();

    // The container is killed (exit 137): ECS stops the task and sends the event.
    cluster
        .ecs
        .stop_task()
        .cluster(&cluster.settings.cluster)
        .task(&arn)
        .send()
        .await
        .expect("stop");
    let now = OffsetDateTime::now_utc();
    let event = stopped(&arn, &started_by("dev-cam-1"), 5, now, json!({}));
    let outcome = s.health.handle(&event, now).await.expect("handle");
    assert_eq!(actions(&outcome), ["backoff"]);
    let device = s.tables.devices.get("cam-1").await.expect("get").expect("device");
    assert_eq!(device.restarts, 1);
    let not_before = device.not_before.expect("backoff");
    assert!(not_before > now && not_before <= now + time::Duration::seconds(2), "{not_before}");
    let exit = device.last_exit.expect("exit recorded");
    assert_eq!((exit.exit_code, exit.stop_code.as_str()), (Some(137), "EssentialContainerExited"));
    assert_eq!(
        s.tables.slots.get("dev-cam-1").await.expect("slot").map(|s| s.task_arn),
        Some(None),
        "the slot forgot the task"
    );

    // During the backoff the reconciler starts nothing; after it, the device is back.
    r.run().await.expect("reconcile");
    assert!(cluster.live().await.is_empty(), "restarted inside the backoff");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    r.run().await.expect("reconcile");
    let live = cluster.live().await;
    assert_eq!(live.len(), 1, "restarted after the backoff");
    assert_ne!(live[0].arn, arn);

    // The same event again (EventBridge redelivers): nothing changes.
    let again = s.health.handle(&event, OffsetDateTime::now_utc()).await.expect("handle");
    assert_eq!(actions(&again), ["duplicate"]);
    assert_eq!(s.tables.devices.get("cam-1").await.unwrap().unwrap().restarts, 1);
    assert!(s.topic.drain().await.is_empty(), "no alarm for one crash");
}

#[tokio::test]
async fn a_crash_loop_fails_the_device_and_alarms() {
    let s = setup().await;
    s.tables.heartbeat("gw1", &["cam-2".into()], |_| 5000).await;
    let by = started_by("dev-cam-2");
    let t0 = OffsetDateTime::now_utc();
    let mut seen = Vec::new();
    for n in 0..3i64 {
        let at = t0 + time::Duration::seconds(n * 5);
        let event =
            stopped(&format!("arn:aws:ecs:us-east-1:1:task/c/crash-{n}"), &by, 5, at, json!({}));
        seen.extend(actions(&s.health.handle(&event, at).await.expect("handle")));
    }
    assert_eq!(seen, ["backoff", "backoff", "failed"]);
    let device = s.tables.devices.get("cam-2").await.unwrap().unwrap();
    assert!(device.failed_at.is_some() && device.not_before.is_none(), "{device:?}");
    assert!(!device.is_desired(OffsetDateTime::now_utc(), &DeviceSettings::default()));
    let alarms = s.topic.drain().await;
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    assert_eq!(
        (alarms[0]["kind"].as_str(), alarms[0]["device"].as_str()),
        (Some("device_crash_loop"), Some("cam-2"))
    );
    assert_eq!(alarms[0]["restarts"], 3);

    // A failed device is not restarted by later stops either.
    let later = stopped(
        "arn:aws:ecs:us-east-1:1:task/c/late",
        &by,
        5,
        t0 + time::Duration::seconds(30),
        json!({}),
    );
    assert_eq!(
        actions(&s.health.handle(&later, OffsetDateTime::now_utc()).await.unwrap()),
        ["not_wanted"]
    );

    // A configuration change is the retry: counters reset.
    let mut patched = device.clone();
    patched.version += 1;
    let stored = s.tables.devices.update_config(&patched, device.version).await.expect("patch");
    assert_eq!((stored.failed_at, stored.restarts, stored.not_before), (None, 0, None));
    assert!(stored.is_desired(OffsetDateTime::now_utc(), &DeviceSettings::default()));
}

#[tokio::test]
async fn stale_and_intended_stops_change_nothing() {
    let s = setup().await;
    s.tables.heartbeat("gw1", &["cam-3".into()], |_| 5000).await;
    let by = started_by("dev-cam-3");
    let t0 = OffsetDateTime::now_utc();
    let newer = stopped("arn:aws:ecs:us-east-1:1:task/c/newer", &by, 7, t0, json!({}));
    assert_eq!(actions(&s.health.handle(&newer, t0).await.unwrap()), ["backoff"]);
    // An older task's stop delivered late: dropped.
    let older = stopped(
        "arn:aws:ecs:us-east-1:1:task/c/older",
        &by,
        9,
        t0 - time::Duration::minutes(3),
        json!({}),
    );
    assert_eq!(actions(&s.health.handle(&older, t0).await.unwrap()), ["stale"]);
    // The reconciler's own StopTask: intended.
    let ours = stopped(
        "arn:aws:ecs:us-east-1:1:task/c/stopped-by-us",
        &by,
        4,
        t0 + time::Duration::seconds(9),
        json!({"stopCode": "UserInitiated", "stoppedReason": format!("{STOP_REASON_PREFIX} device disabled"), "containers": [{"name": "streamer", "exitCode": 0}]}),
    );
    assert_eq!(s.health.handle(&ours, t0).await.unwrap(), Outcome::Intended);
    // A Spot interruption: restarted at once, not counted.
    let spot = stopped(
        "arn:aws:ecs:us-east-1:1:task/c/spot",
        &by,
        4,
        t0 + time::Duration::seconds(10),
        json!({"stopCode": "SpotInterruption", "stoppedReason": "Your Spot Task was interrupted."}),
    );
    assert_eq!(actions(&s.health.handle(&spot, t0).await.unwrap()), ["restart"]);
    // Not stopped yet, or not ours: ignored.
    let running = stopped(
        "arn:aws:ecs:us-east-1:1:task/c/x",
        &by,
        2,
        t0,
        json!({"lastStatus": "RUNNING", "desiredStatus": "RUNNING"}),
    );
    assert!(matches!(s.health.handle(&running, t0).await.unwrap(), Outcome::Ignored { .. }));
    let other = stopped("arn:aws:ecs:us-east-1:1:task/c/y", "someone-else", 2, t0, json!({}));
    assert!(matches!(s.health.handle(&other, t0).await.unwrap(), Outcome::Ignored { .. }));

    let device = s.tables.devices.get("cam-3").await.unwrap().unwrap();
    assert_eq!(device.restarts, 1, "{device:?}");
    assert_eq!(
        device.last_exit.map(|e| e.task_arn),
        Some("arn:aws:ecs:us-east-1:1:task/c/spot".into())
    );
    assert!(device.not_before.is_none(), "an interruption leaves no backoff");
}

/// The live playlist key of `channel`, below `signed/` for a signed channel.
fn playlist_key(channel: &Channel) -> String {
    streamstack_core::domain::live_playlist_key(&channel.id, channel.playback)
}

async fn put_playlist(s: &Setup, channel: &Channel) {
    let body = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:4\n#EXTINF:2,\ns/000004.ts\n#EXTINF:2,\ns/000005.ts\n";
    s.s3.put_object()
        .bucket(&s.bucket)
        .key(playlist_key(channel))
        .content_type("application/vnd.apple.mpegurl")
        .body(body.as_bytes().to_vec().into())
        .send()
        .await
        .expect("put playlist");
}

async fn playlist(s: &Setup, channel: &Channel) -> m3u8_rs::MediaPlaylist {
    let object =
        s.s3.get_object().bucket(&s.bucket).key(playlist_key(channel)).send().await.expect("get");
    let body = object.body.collect().await.expect("body").into_bytes();
    m3u8_rs::parse_media_playlist_res(&body).expect("playlist")
}

#[tokio::test]
async fn a_stopped_ingest_task_releases_its_channels_and_ends_their_playlists() {
    let s = setup().await;
    let task = "arn:aws:ecs:us-east-1:1:task/c/ingest-1";
    let now = OffsetDateTime::now_utc();
    let mut held = Vec::new();
    // mine-b is signed: its playlist is below signed/live/.
    for (name, owner, playback) in [
        ("mine-a", task, Playback::Public),
        ("mine-b", task, Playback::Signed),
        ("theirs", "arn:aws:ecs:us-east-1:1:task/c/ingest-2", Playback::Public),
    ] {
        let channel = NewChannel::named(name, HlsSettings::default())
            .into_channel(now, playback)
            .expect("channel");
        s.channels.create(&channel).await.expect("create");
        let claim = LeaseClaim::new(owner, format!("session-{name}"), channel.secret.clone(), now);
        s.channels.claim_publish(&channel.id, &claim).await.expect("claim");
        put_playlist(&s, &channel).await;
        held.push((channel, owner == task));
    }
    let event = stopped(task, "ecs-svc/1234567890", 6, now, json!({"group": INGEST_GROUP}));
    let Outcome::IngestTask { channels } = s.health.handle(&event, now).await.expect("handle")
    else {
        panic!("not an ingest outcome")
    };
    assert_eq!(channels.len(), 2, "{channels:?}");
    assert!(channels.iter().all(|c| c.playlist_ended));
    for (channel, mine) in &held {
        let id = &channel.id;
        let stored = s.channels.get(id).await.unwrap().unwrap();
        assert_eq!(
            stored.lease.is_none(),
            *mine,
            "{id}: lease released only for the stopped task's channels"
        );
        assert_eq!(playlist(&s, channel).await.end_list, *mine, "{id} ({:?})", channel.playback);
    }
    assert_eq!(playlist(&s, &held[0].0).await.segments.len(), 2, "segments kept");
    // Redelivered: nothing left to do.
    let Outcome::IngestTask { channels } = s.health.handle(&event, now).await.unwrap() else {
        panic!()
    };
    assert!(channels.is_empty());
}

/// Alarms that fail while `failing` is set, else go to `inner`.
struct FlakyAlarms {
    inner: Arc<dyn Alarms>,
    failing: AtomicBool,
}

#[async_trait::async_trait]
impl Alarms for FlakyAlarms {
    async fn publish(&self, subject: &str, message: &Value) -> Result<(), AlarmError> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(AlarmError("SNS unreachable (test)".into()));
        }
        self.inner.publish(subject, message).await
    }
}

#[tokio::test]
async fn a_crash_loop_alarm_survives_a_failed_publish_and_is_sent_once() {
    let mut s = setup().await;
    let flaky =
        Arc::new(FlakyAlarms { inner: s.health.alarms.clone(), failing: AtomicBool::new(false) });
    s.health.alarms = flaky.clone();
    s.tables.heartbeat("gw1", &["cam-4".into()], |_| 5000).await;
    let by = started_by("dev-cam-4");
    let t0 = OffsetDateTime::now_utc();
    let event = |n: i64| {
        let at = t0 + time::Duration::seconds(n * 5);
        stopped(&format!("arn:aws:ecs:us-east-1:1:task/c/loop-{n}"), &by, 5, at, json!({}))
    };
    for n in 0..2 {
        s.health.handle(&event(n), t0).await.expect("handle");
    }
    // The third failure: recorded (failed, alarm pending), but SNS is down: the invocation
    // fails and EventBridge redelivers.
    flaky.failing.store(true, Ordering::SeqCst);
    assert!(s.health.handle(&event(2), t0).await.is_err());
    let device = s.tables.devices.get("cam-4").await.unwrap().unwrap();
    assert!(device.failed_at.is_some() && device.alarm_pending, "{device:?}");
    assert!(s.topic.drain().await.is_empty());
    flaky.failing.store(false, Ordering::SeqCst);
    for _ in 0..2 {
        assert_eq!(actions(&s.health.handle(&event(2), t0).await.unwrap()), ["duplicate"]);
    }
    let alarms = s.topic.drain().await;
    assert_eq!(alarms.len(), 1, "one alarm after the redeliveries: {alarms:?}");
    assert_eq!(alarms[0]["device"], "cam-4");
    assert!(!s.tables.devices.get("cam-4").await.unwrap().unwrap().alarm_pending);
}

#[tokio::test]
async fn a_lapsed_lease_is_released_without_ending_the_playlist() {
    let s = setup().await;
    let task = "arn:aws:ecs:us-east-1:1:task/c/ingest-late";
    let then = OffsetDateTime::now_utc() - time::Duration::minutes(2);
    let channel = NewChannel::named("late", HlsSettings::default())
        .into_channel(then, Playback::Public)
        .expect("channel");
    s.channels.create(&channel).await.expect("create");
    let claim = LeaseClaim::new(task, "session-late", channel.secret.clone(), then);
    s.channels.claim_publish(&channel.id, &claim).await.expect("claim");
    put_playlist(&s, &channel).await;
    // The event arrives after the lease lapsed: a new publish may be claiming the channel.
    let event = stopped(task, "ecs-svc/1", 6, then, json!({"group": INGEST_GROUP}));
    let Outcome::IngestTask { channels } =
        s.health.handle(&event, OffsetDateTime::now_utc()).await.expect("handle")
    else {
        panic!("not an ingest outcome")
    };
    assert_eq!(channels.len(), 1);
    assert!(!channels[0].playlist_ended);
    assert!(!playlist(&s, &channel).await.end_list, "a lapsed lease's playlist is left alone");
    assert!(s.channels.stored_lease(&channel.id).await.unwrap().is_none(), "released");
}
