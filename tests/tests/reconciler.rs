//! The device reconciler against moto: DynamoDB devices and slots tables, ECS Fargate tasks.

use aws_sdk_dynamodb::types::AttributeValue;
use futures::StreamExt;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use streamstack_core::device_store::DeviceStore;
use streamstack_core::slot::SlotStore;
use streamstack_tests::devices::{ids, reconciler, DeviceTables, EcsCluster};
use time::{Duration, OffsetDateTime};

async fn setup() -> (DeviceTables, EcsCluster) {
    let sdk = streamstack_core::aws::sdk_config(Some(&streamstack_tests::endpoint())).await;
    let tables = DeviceTables::create(&streamstack_core::aws::dynamodb(&sdk)).await;
    (tables, EcsCluster::create(&sdk).await)
}

/// The slots named by live tasks, sorted.
async fn task_slots(cluster: &EcsCluster) -> Vec<String> {
    let mut slots: Vec<String> = cluster.live().await.into_iter().filter_map(|t| t.slot).collect();
    slots.sort();
    slots
}

fn slot_ids(devices: &[String]) -> Vec<String> {
    let mut slots: Vec<String> = devices.iter().map(|d| format!("dev-{d}")).collect();
    slots.sort();
    slots
}

async fn set_millis(tables: &DeviceTables, id: &str, attribute: &str, at: OffsetDateTime) {
    tables
        .dynamodb
        .update_item()
        .table_name(&tables.devices_table)
        .key("id", AttributeValue::S(id.into()))
        .update_expression("SET #a = :v")
        .expression_attribute_names("#a", attribute)
        .expression_attribute_values(
            ":v",
            AttributeValue::N((at.unix_timestamp_nanos() / 1_000_000).to_string()),
        )
        .send()
        .await
        .expect("update");
}

#[tokio::test]
async fn devices_come_and_go_and_tasks_follow() {
    let (tables, cluster) = setup().await;
    let r = reconciler(&tables, 1, cluster.tasks());
    let cams = ids("cam", 20);
    tables.heartbeat("gw1", &cams, |_| 5000).await;

    // Dry run: the plan is made and logged, nothing is written or started.
    let mut dry = reconciler(&tables, 1, cluster.tasks());
    dry.dry_run = true;
    let report = dry.run().await.expect("dry run");
    assert_eq!((report.planned, report.assigned, report.started), (40, 0, 0), "{report:?}");
    assert!(cluster.live().await.is_empty() && tables.slots().await.is_empty());

    // Empty -> 20 online devices: 20 tasks, one per device slot, with the slot as override.
    let report = r.run().await.expect("reconcile");
    assert_eq!((report.assigned, report.started, report.failed), (20, 20, 0), "{report:?}");
    assert_eq!(task_slots(&cluster).await, slot_ids(&cams));
    let arns: Vec<String> = cluster.live().await.into_iter().map(|t| t.arn).collect();
    let described = cluster
        .ecs
        .describe_tasks()
        .cluster(&cluster.settings.cluster)
        .tasks(&arns[0])
        .send()
        .await
        .expect("describe");
    let task = &described.tasks()[0];
    let env = &task.overrides().expect("overrides").container_overrides()[0];
    assert_eq!(env.name(), Some("streamer"));
    let assignment = env.environment()[0].value().expect("PULL_ASSIGNMENT");
    assert_eq!(task.started_by(), Some(format!("streamstack/{assignment}").as_str()));
    let device = tables.devices.get("cam-000").await.unwrap().unwrap();
    assert!(device.task_arn.as_deref().is_some_and(|a| arns.contains(&a.to_owned())));

    // Steady state: nothing to do, nothing started twice.
    let report = r.run().await.expect("reconcile");
    assert_eq!((report.planned, report.started), (0, 0), "{report:?}");

    // Heartbeat without 3 of them: those 3 are stopped, their slots deleted.
    tables.heartbeat("gw1", &cams[3..], |_| 5000).await;
    let report = r.run().await.expect("reconcile");
    assert_eq!((report.unassigned, report.stopped, report.slots_deleted), (3, 3, 3), "{report:?}");
    assert_eq!(task_slots(&cluster).await, slot_ids(&cams[3..]));
    assert_eq!(tables.devices.get("cam-000").await.unwrap().unwrap().task_arn, None);

    // URL change: the slot carries the new digest (its task restarts that pull); no new task.
    tables.heartbeat("gw1", &cams[3..], |id| if id == "cam-005" { 6000 } else { 5000 }).await;
    let report = r.run().await.expect("reconcile");
    assert_eq!((report.url_changes, report.started, report.stopped), (1, 0, 0), "{report:?}");
    let digest = tables.devices.get("cam-005").await.unwrap().unwrap().media_url.digest;
    let slot = tables.slots.get("dev-cam-005").await.unwrap().unwrap();
    assert_eq!(slot.devices["cam-005"], digest);

    // Age-out: a device unseen for more than 7 days is deleted and its task stopped.
    set_millis(&tables, "cam-003", "last_heartbeat", OffsetDateTime::now_utc() - Duration::days(8))
        .await;
    let report = r.run().await.expect("reconcile");
    assert_eq!((report.aged_out, report.stopped), (1, 1), "{report:?}");
    assert!(tables.devices.get("cam-003").await.unwrap().is_none());

    // Deleted through the API: task stopped.
    tables.devices.delete("cam-004").await.expect("delete");
    let report = r.run().await.expect("reconcile");
    assert_eq!(report.stopped, 1, "{report:?}");
    assert_eq!(task_slots(&cluster).await, slot_ids(&cams[5..]));

    // A task that stopped on its own (crash) is replaced by the next run.
    let crash = |arn: String| {
        let (ecs, cluster) = (cluster.ecs.clone(), cluster.settings.cluster.clone());
        async move {
            ecs.stop_task()
                .cluster(cluster)
                .task(arn)
                .reason("Essential container exited")
                .send()
                .await
                .expect("stop");
        }
    };
    crash(tables.devices.get("cam-007").await.unwrap().unwrap().task_arn.unwrap()).await;
    let report = r.run().await.expect("reconcile");
    assert_eq!(report.started, 1, "{report:?}");
    assert_eq!(task_slots(&cluster).await, slot_ids(&cams[5..]));
    // With a restart backoff (`not_before`), not before it passes.
    crash(tables.devices.get("cam-006").await.unwrap().unwrap().task_arn.unwrap()).await;
    set_millis(&tables, "cam-006", "not_before", OffsetDateTime::now_utc() + Duration::minutes(5))
        .await;
    let report = r.run().await.expect("reconcile");
    assert_eq!(report.started, 0, "backing off: {report:?}");
    assert!(!task_slots(&cluster).await.contains(&"dev-cam-006".to_owned()));
    set_millis(&tables, "cam-006", "not_before", OffsetDateTime::now_utc() - Duration::seconds(1))
        .await;
    let report = r.run().await.expect("reconcile");
    assert_eq!(report.started, 1, "{report:?}");
    assert_eq!(task_slots(&cluster).await, slot_ids(&cams[5..]));
}

#[tokio::test]
async fn four_devices_per_task_pack_into_five_tasks_each_following_its_slot() {
    let (tables, cluster) = setup().await;
    let r = reconciler(&tables, 4, cluster.tasks());
    let cams = ids("packed", 18);
    tables.heartbeat("gw-pack", &cams, |_| 5000).await;
    let report = r.run().await.expect("reconcile");
    assert_eq!((report.assigned, report.started), (18, 5), "{report:?}");
    let slots = tables.slots().await;
    assert_eq!(slots.len(), 5);
    let members: Vec<&String> = slots.iter().flat_map(|s| s.devices.keys()).collect();
    assert_eq!(members.iter().collect::<HashSet<_>>().len(), 18, "each device in one slot");
    assert!(slots.iter().all(|s| s.devices.len() <= 4));
    let mut by_task: Vec<String> = task_slots(&cluster).await;
    by_task.dedup();
    assert_eq!(by_task, slots.iter().map(|s| s.id.clone()).collect::<Vec<_>>());
    // Every device shows its slot's task.
    for slot in &slots {
        for id in slot.devices.keys() {
            let device = tables.devices.get(id).await.unwrap().unwrap();
            assert_eq!(device.task_arn, slot.task_arn, "{id}");
        }
    }
    // Two devices go offline: they leave their slots, the tasks stay (the task follows).
    tables.heartbeat("gw-pack", &cams[2..], |_| 5000).await;
    let report = r.run().await.expect("reconcile");
    assert_eq!((report.unassigned, report.stopped, report.started), (2, 0, 0), "{report:?}");
}

#[tokio::test]
async fn ten_concurrent_reconcilers_never_start_two_tasks_for_one_slot() {
    for k in [1usize, 4] {
        let (tables, cluster) = setup().await;
        let cams = ids(&format!("race{k}"), 20);
        tables.heartbeat(&format!("gw-race{k}"), &cams, |_| 5000).await;
        let reconcilers: Vec<_> =
            (0..10).map(|_| Arc::new(reconciler(&tables, k, cluster.tasks()))).collect();
        let runs = reconcilers.iter().map(|r| {
            let r = Arc::clone(r);
            tokio::spawn(async move { r.run().await.expect("reconcile") })
        });
        let reports = futures::future::join_all(runs).await;
        let mut started: usize = reports.iter().map(|r| r.as_ref().expect("join").started).sum();
        // And once more, settled.
        started += reconcilers[0].run().await.expect("reconcile").started;
        let slots = tables.slots().await;
        let live = task_slots(&cluster).await;
        let unique: BTreeSet<&String> = live.iter().collect();
        assert_eq!(unique.len(), live.len(), "K={k}: two tasks for one slot: {live:?}");
        assert_eq!(live.len(), slots.len(), "K={k}: one task per slot");
        let mut seen = HashSet::new();
        for slot in &slots {
            for id in slot.devices.keys() {
                assert!(seen.insert(id.clone()), "K={k}: {id} in two slots");
            }
        }
        assert_eq!(seen.len(), 20, "K={k}");
        assert_eq!(started, slots.len(), "K={k}: every start of the 11 runs is a slot's only task");
    }
}

/// One reconcile of `RECONCILE_DEVICES` online devices from nothing (default 1,000 in the
/// suite; `make bench-reconcile` runs 10,000): every device assigned and its task started;
/// prints the AWS calls per device and the wall time, then those of a steady-state run.
#[tokio::test]
async fn first_reconcile_of_many_devices() {
    let n: usize =
        std::env::var("RECONCILE_DEVICES").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000);
    let (tables, cluster) = setup().await;
    let calls = devices::calls::CallCounter::default();
    // moto scans a 10,000-item table far slower than DynamoDB answers a 1 MB page: give the
    // emulator minutes, not the production clients' seconds.
    let slow = aws_config::timeout::TimeoutConfig::builder()
        .operation_attempt_timeout(std::time::Duration::from_secs(120))
        .operation_timeout(std::time::Duration::from_secs(300))
        .build();
    let ecs = aws_sdk_ecs::Client::from_conf(
        cluster.ecs.config().to_builder().timeout_config(slow.clone()).build(),
    );
    let counted = Arc::new(devices::ecs::EcsTasks::new(
        devices::calls::count_ecs(&ecs, &calls),
        cluster.settings.clone(),
    ));
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        tables.dynamodb.config().to_builder().timeout_config(slow).build(),
    );
    let dynamodb = devices::calls::count_dynamodb(&dynamodb, &calls);
    let devices = Arc::new(streamstack_core::device_store::DynamoDeviceStore::new(
        dynamodb.clone(),
        &tables.devices_table,
    ));
    let counted_tables = DeviceTables { dynamodb, devices, ..tables };
    // Seeded with one PutItem per device (moto's TransactWriteItems copies the whole table
    // per call, too slow for heartbeats into a table this size).
    let cams = ids("many", n);
    let now = OffsetDateTime::now_utc();
    let seeds = cams.iter().map(|id| {
        let url = streamstack_core::media_url::MediaUrl::seal("udp://127.0.0.1:5000", id, None);
        let public = streamstack_core::Playback::Public;
        let mut device =
            streamstack_core::device::Device::new(id, "gw-many", url.expect("url"), public, now);
        device.reported = streamstack_core::device::DeviceStatus::Online;
        device.last_heartbeat = Some(now);
        let store = Arc::clone(&counted_tables.devices);
        async move { store.create(&device).await.expect("create") }
    });
    futures::stream::iter(seeds).buffer_unordered(8).collect::<Vec<()>>().await;
    calls.reset();
    let r = reconciler(&counted_tables, 1, counted);
    let started = std::time::Instant::now();
    let report = r.run().await.expect("reconcile");
    let elapsed = started.elapsed();
    assert_eq!((report.assigned, report.started, report.failed), (n, n, 0), "{report:?}");
    let per_device = calls.total() as f64 / n as f64;
    eprintln!(
        "first reconcile of {n} devices: {:.1} s, {} AWS calls ({per_device:.2} per device): {:?}",
        elapsed.as_secs_f64(),
        calls.total(),
        calls.snapshot(),
    );
    calls.reset();
    let started = std::time::Instant::now();
    let report = r.run().await.expect("reconcile");
    assert_eq!(report.planned, 0, "{report:?}");
    eprintln!(
        "steady-state reconcile: {:.1} s, {} calls ({:.3} per device): {:?}",
        started.elapsed().as_secs_f64(),
        calls.total(),
        calls.total() as f64 / n as f64,
        calls.snapshot()
    );
}
