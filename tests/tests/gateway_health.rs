//! The media-gateway health function against moto (EC2, DynamoDB, SNS): reboot then recovery
//! with the Elastic IP moved, one replacement under concurrent recoveries, state-change
//! events, backup images with pruning, dry-run; through fault wrappers: a gateway EC2 no
//! longer lists (recovered from its row), sick gateways at once within the time budget, a
//! failed reboot sent again, one alarm after a failed last write, other event kinds ignored.
//!
//! moto 5.2.5 always reports status checks `ok` (`Instance.instance_status` /
//! `system_status` are hard-coded), so sickness here comes from the gateway's health URL (a
//! local endpoint answering 500, named by the instance's `streamstack:health-url` tag); the
//! `impaired` classification is covered by the unit tests of `health::gateway::plan`.

use health::gateway::dispatch;
use health::gateway::run::{Action, Gateways, Report};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use streamstack_tests::gateways::faults::{FaultyEc2, FaultyStore};
use streamstack_tests::gateways::{scheduled_event, Gateway, GatewayBench, HealthEndpoint};
use streamstack_tests::unique;
use time::OffsetDateTime;

async fn run(checker: &Gateways, event: &Value, now: OffsetDateTime) -> Report {
    let report = dispatch(checker, event, now).await.expect("gateway run");
    // The Lambda answers with the report as JSON.
    serde_json::to_value(&report).expect("report JSON");
    report
}

/// The report of gateway `id` in `report`.
fn of<'a>(report: &'a Report, id: &str) -> &'a health::gateway::run::GatewayReport {
    report
        .gateways
        .iter()
        .find(|g| g.gateway_id == id)
        .unwrap_or_else(|| panic!("{id} in {report:#?}"))
}

fn decision(report: &Report, id: &str) -> String {
    serde_json::to_value(&of(report, id).decision).expect("json")["decision"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn has(report: &Report, id: &str, f: impl Fn(&Action) -> bool) -> bool {
    of(report, id).actions.iter().any(f)
}

/// Instances of the gateway and which one runs.
async fn replacement_of(bench: &GatewayBench, gw: &Gateway) -> String {
    let instances = bench.instances_of(&gw.id).await;
    let running: Vec<&String> =
        instances.iter().filter(|(_, d)| d.state == "running").map(|(id, _)| id).collect();
    assert_eq!(running.len(), 1, "one running instance: {instances:#?}");
    assert_ne!(running[0], &gw.instance_id, "a replacement runs: {instances:#?}");
    running[0].clone()
}

fn alarm_kinds(alarms: &[Value]) -> Vec<String> {
    alarms.iter().filter_map(|a| a["kind"].as_str().map(str::to_owned)).collect()
}

#[tokio::test]
async fn sick_gateway_is_rebooted_then_recovered_onto_its_backup_with_its_address() {
    let bench = GatewayBench::start().await;
    let endpoint = HealthEndpoint::start(200).await;
    let gw = bench.launch_gateway(&unique("gw"), Some(&endpoint.url)).await;
    let checker = bench.checker(&[("GATEWAY_HEALTH_FAILURES", "2")]);
    let schedule = scheduled_event();
    let t0 = OffsetDateTime::now_utc();

    // Healthy: adopted, backed up.
    let r = run(&checker, &schedule, t0).await;
    assert_eq!(decision(&r, &gw.id), "healthy", "{r:#?}");
    assert!(has(&r, &gw.id, |a| matches!(a, Action::Adopt { .. })));
    assert!(endpoint.hits() >= 1, "the health URL was checked");
    let images = bench.images_of(&gw.id).await;
    assert_eq!(images.len(), 1, "{images:?}");
    let backup = images.keys().next().cloned().unwrap_or_default();
    let row = bench.record(&gw.id).await.expect("row");
    assert_eq!(row.allocation_id.as_deref(), Some(gw.allocation_id.as_str()));

    // Sick: one failure counted, the second reboots (once).
    endpoint.set(500);
    let r = run(&checker, &schedule, t0).await;
    assert_eq!(decision(&r, &gw.id), "count_failure", "{r:#?}");
    assert_eq!(bench.record(&gw.id).await.expect("row").health_failures, 1);
    let r = run(&checker, &schedule, t0).await;
    assert_eq!(decision(&r, &gw.id), "reboot", "{r:#?}");
    assert!(has(
        &r,
        &gw.id,
        |a| matches!(a, Action::Reboot { instance_id } if *instance_id == gw.instance_id)
    ));
    let row = bench.record(&gw.id).await.expect("row");
    assert!(matches!(row.phase, health::gateway::model::Phase::Rebooted { .. }), "{row:?}");
    assert_eq!(alarm_kinds(&bench.alarms().await), ["gateway_rebooted"]);

    // Still sick after the (zero) grace period: recovered.
    let r = run(&checker, &schedule, t0 + time::Duration::seconds(1)).await;
    assert_eq!(decision(&r, &gw.id), "recover", "{r:#?}");
    assert_eq!(of(&r, &gw.id).error, None, "{r:#?}");
    let new = replacement_of(&bench, &gw).await;
    let instances = bench.instances_of(&gw.id).await;
    assert_eq!(instances.len(), 2, "{instances:#?}");
    let (old, replacement) = (&instances[&gw.instance_id], &instances[&new]);
    assert_eq!(old.state, "terminated");
    assert_eq!(replacement.image_id, backup, "launched from the newest backup image");
    assert_eq!(replacement.instance_type, old.instance_type);
    assert_eq!(replacement.subnet_id.as_deref(), Some(bench.subnet_id.as_str()));
    assert_eq!(replacement.security_groups, vec![bench.security_group_id.clone()]);
    assert_eq!(replacement.key_name.as_deref(), Some(bench.key_name.as_str()));
    for (k, v) in &old.tags {
        assert_eq!(replacement.tags.get(k), Some(v), "tag {k} copied");
    }
    assert_eq!(
        replacement.tags.get("streamstack:replaces").map(String::as_str),
        Some(gw.instance_id.as_str())
    );
    assert_eq!(bench.address_instance(&gw.allocation_id).await.as_deref(), Some(new.as_str()));
    let row = bench.record(&gw.id).await.expect("row");
    assert_eq!(row.instance_id, new);
    assert_eq!(row.phase, health::gateway::model::Phase::Healthy);
    assert_eq!(row.lock, None);
    let alarms = bench.alarms().await;
    assert_eq!(alarm_kinds(&alarms), ["gateway_recovered"]);
    assert_eq!(alarms[0]["replacement"], new.as_str());
    assert_eq!(alarms[0]["failed_instance"], gw.instance_id.as_str());
    assert_eq!(alarms[0]["allocation_id"], gw.allocation_id.as_str());

    // The replacement is well: nothing more happens to the gateway.
    endpoint.set(200);
    let r = run(&checker, &schedule, t0 + time::Duration::seconds(2)).await;
    assert_eq!(decision(&r, &gw.id), "healthy", "{r:#?}");
    assert_eq!(bench.instances_of(&gw.id).await.len(), 2);
}

#[tokio::test]
async fn concurrent_recoveries_of_one_gateway_launch_one_replacement() {
    let bench = GatewayBench::start().await;
    let gw = bench.launch_gateway(&unique("gw"), None).await;
    let schedule = scheduled_event();
    let now = OffsetDateTime::now_utc();
    run(&bench.checker(&[]), &schedule, now).await; // adopted
    bench.ec2.stop_instances().instance_ids(&gw.instance_id).send().await.expect("stop");
    // Four invocations at once (the state-change event delivered twice, two schedules), each
    // with its own clients, as separate Lambda instances would be.
    let checkers: Vec<Gateways> = (0..4).map(|_| bench.checker(&[])).collect();
    let event = bench.state_change_event(&gw.instance_id, "stopped");
    let runs = checkers.iter().enumerate().map(|(i, c)| {
        let payload = if i % 2 == 0 { event.clone() } else { schedule.clone() };
        async move { dispatch(c, &payload, now).await }
    });
    let reports = futures::future::join_all(runs).await;
    let mut launches = 0;
    for report in &reports {
        let report = report.as_ref().expect("run");
        for g in &report.gateways {
            assert_eq!(g.error, None, "{report:#?}");
            launches += g.actions.iter().filter(|a| matches!(a, Action::Launch { .. })).count();
        }
    }
    assert_eq!(launches, 1, "{reports:#?}");
    let instances = bench.instances_of(&gw.id).await;
    assert_eq!(instances.len(), 2, "exactly one replacement: {instances:#?}");
    let new = replacement_of(&bench, &gw).await;
    assert_eq!(bench.address_instance(&gw.allocation_id).await.as_deref(), Some(new.as_str()));
    assert_eq!(bench.record(&gw.id).await.expect("row").instance_id, new);
    assert_eq!(alarm_kinds(&bench.alarms().await), ["gateway_recovered"]);
}

#[tokio::test]
async fn state_changes_recover_a_stopped_gateway_and_ignore_our_own_termination() {
    let bench = GatewayBench::start().await;
    let gw = bench.launch_gateway(&unique("gw"), None).await;
    let checker = bench.checker(&[]);
    let now = OffsetDateTime::now_utc();
    run(&checker, &scheduled_event(), now).await; // adopted

    // Stopped by someone else: recovered on the event.
    bench.ec2.stop_instances().instance_ids(&gw.instance_id).send().await.expect("stop");
    let r = run(&checker, &bench.state_change_event(&gw.instance_id, "stopped"), now).await;
    assert_eq!(decision(&r, &gw.id), "recover", "{r:#?}");
    let new = replacement_of(&bench, &gw).await;
    assert_eq!(bench.instances_of(&gw.id).await[&gw.instance_id].state, "terminated");
    assert_eq!(bench.address_instance(&gw.allocation_id).await.as_deref(), Some(new.as_str()));
    assert_eq!(alarm_kinds(&bench.alarms().await), ["gateway_recovered"]);
    let row = bench.record(&gw.id).await.expect("row");

    // Our own termination of the replaced instance: ignored, nothing changes.
    let r = run(&checker, &bench.state_change_event(&gw.instance_id, "terminated"), now).await;
    assert_eq!(decision(&r, &gw.id), "ignore", "{r:#?}");
    assert_eq!(of(&r, &gw.id).actions, vec![], "{r:#?}");
    assert_eq!(bench.instances_of(&gw.id).await.len(), 2);
    assert_eq!(bench.record(&gw.id).await.expect("row"), row);
    assert!(bench.alarms().await.is_empty());

    // An instance that is not a gateway: ignored.
    let other = bench
        .ec2
        .run_instances()
        .image_id(&bench.image_id)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .expect("run other");
    let other_id = other.instances()[0].instance_id().expect("id").to_owned();
    bench.ec2.stop_instances().instance_ids(&other_id).send().await.expect("stop other");
    let r = run(&checker, &bench.state_change_event(&other_id, "stopped"), now).await;
    assert!(r.ignored.as_deref().is_some_and(|w| w.contains("not a gateway")), "{r:#?}");
    assert!(r.gateways.is_empty());

    // The replacement terminated by someone else: recovered again.
    bench.ec2.terminate_instances().instance_ids(&new).send().await.expect("terminate");
    let r = run(&checker, &bench.state_change_event(&new, "terminated"), now).await;
    assert_eq!(decision(&r, &gw.id), "recover", "{r:#?}");
    let third = bench.record(&gw.id).await.expect("row").instance_id;
    assert!(third != new && third != gw.instance_id);
    assert_eq!(bench.address_instance(&gw.allocation_id).await.as_deref(), Some(third.as_str()));
}

#[tokio::test]
async fn backup_images_follow_the_rpo_and_retention() {
    let bench = GatewayBench::start().await;
    let gw = bench.launch_gateway(&unique("gw"), None).await;
    let checker = bench.checker(&[("GATEWAY_RPO_SECS", "3600"), ("GATEWAY_IMAGE_RETENTION", "2")]);
    let schedule = scheduled_event();
    let hour = time::Duration::hours(1);
    // Mid-interval: images are named by their RPO interval, so a run 60 s later must stay in
    // the same one (from the wall clock, a run at hh:59:30 would cross into the next).
    let t0 = health::gateway::plan::interval_start(OffsetDateTime::now_utc(), hour)
        + time::Duration::minutes(30);
    let creates = |r: &Report| {
        of(r, &gw.id).actions.iter().filter(|a| matches!(a, Action::CreateImage { .. })).count()
    };

    let r = run(&checker, &schedule, t0).await;
    assert_eq!(creates(&r), 1, "{r:#?}");
    let first = bench.images_of(&gw.id).await;
    assert_eq!(first.len(), 1);
    let (i1, (_, _, i1_snapshots)) =
        first.iter().next().map(|(k, v)| (k.clone(), v.clone())).expect("image");
    // Its snapshots carry the tags too: the IAM policy lets pruning delete only those.
    for s in &i1_snapshots {
        let tags = bench.snapshot_tags(s).await;
        assert_eq!(tags.get("streamstack:created-by").map(String::as_str), Some("gateway-health"));
        assert_eq!(tags.get("streamstack:gateway-id"), Some(&gw.id), "{tags:?}");
    }

    // A second run within the interval (a retry) creates nothing.
    let r = run(&checker, &schedule, t0 + time::Duration::seconds(60)).await;
    assert_eq!(creates(&r), 0, "{r:#?}");
    assert_eq!(bench.images_of(&gw.id).await.len(), 1);

    let r = run(&checker, &schedule, t0 + hour).await;
    assert_eq!(creates(&r), 1, "{r:#?}");
    assert_eq!(bench.images_of(&gw.id).await.len(), 2);
    let i2 = bench.images_of(&gw.id).await.into_keys().find(|k| *k != i1).expect("second image");

    // The third interval: the oldest image and its snapshot go, two stay.
    let r = run(&checker, &schedule, t0 + hour * 2).await;
    assert_eq!(creates(&r), 1, "{r:#?}");
    assert!(has(&r, &gw.id, |a| matches!(a, Action::DeleteImage { image_id } if *image_id == i1)));
    let images = bench.images_of(&gw.id).await;
    assert_eq!(images.len(), 2, "{images:#?}");
    assert!(!images.contains_key(&i1));
    assert!(!i1_snapshots.is_empty());
    for s in &i1_snapshots {
        assert!(!bench.snapshot_exists(s).await, "snapshot {s} of the pruned image deleted");
    }
    let i3 = images.into_keys().find(|k| *k != i2).expect("third image");

    // The newest image is not good (disabled): the newest available one (i2) is kept beyond
    // the retention count.
    bench.ec2.disable_image().image_id(&i3).send().await.expect("disable");
    let r = run(&checker, &schedule, t0 + hour * 3).await;
    assert_eq!(creates(&r), 1, "{r:#?}");
    assert!(!has(&r, &gw.id, |a| matches!(a, Action::DeleteImage { .. })), "{r:#?}");
    let images = bench.images_of(&gw.id).await;
    assert_eq!(images.len(), 3, "{images:#?}");
    assert!(images.contains_key(&i2) && images.contains_key(&i3));
    for (name, _, _) in images.values() {
        assert!(name.starts_with(&format!("streamstack-gw-{}-", gw.id)), "{name}");
    }
}

/// What EC2 and the table hold for `gateways`.
async fn snapshot(bench: &GatewayBench, gateways: &[&Gateway]) -> String {
    let mut out = String::new();
    for gw in gateways {
        out += &format!(
            "{:?}\n{:?}\n{:?}\n",
            bench.instances_of(&gw.id).await,
            bench.address_instance(&gw.allocation_id).await,
            bench.images_of(&gw.id).await
        );
    }
    out + &format!("{:?}", bench.table_items().await)
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let bench = GatewayBench::start().await;
    let endpoint = HealthEndpoint::start(500).await;
    let sick = bench.launch_gateway(&unique("sick"), Some(&endpoint.url)).await;
    let well = bench.launch_gateway(&unique("well"), None).await;
    let dry = bench.checker(&[("GATEWAY_DRY_RUN", "true")]);
    let schedule = scheduled_event();
    let now = OffsetDateTime::now_utc();
    let before = snapshot(&bench, &[&sick, &well]).await;

    // Unknown gateways: adoption, a reboot and a backup are planned, nothing is done.
    let r = run(&dry, &schedule, now).await;
    assert!(r.dry_run);
    assert!(has(&r, &sick.id, |a| matches!(a, Action::Adopt { .. })));
    assert!(has(&r, &sick.id, |a| matches!(a, Action::Reboot { .. })), "{r:#?}");
    assert!(
        has(&r, &well.id, |a| matches!(a, Action::CreateImage { image_id: None, .. })),
        "{r:#?}"
    );
    assert_eq!(snapshot(&bench, &[&sick, &well]).await, before);
    assert!(bench.table_items().await.is_empty());

    // A real run reboots the sick one; then a dry run plans its recovery and does nothing.
    run(&bench.checker(&[]), &schedule, now).await;
    bench.alarms().await;
    let before = snapshot(&bench, &[&sick, &well]).await;
    let r = run(&dry, &schedule, now + time::Duration::seconds(1)).await;
    assert_eq!(decision(&r, &sick.id), "recover", "{r:#?}");
    assert!(has(&r, &sick.id, |a| matches!(a, Action::Launch { instance_id: None, .. })), "{r:#?}");
    assert!(has(&r, &sick.id, |a| matches!(a, Action::AssociateAddress { .. })), "{r:#?}");
    assert!(has(&r, &sick.id, |a| matches!(a, Action::Terminate { .. })), "{r:#?}");
    assert_eq!(snapshot(&bench, &[&sick, &well]).await, before);

    // A stopped gateway's event: recovery planned, nothing done.
    bench.ec2.stop_instances().instance_ids(&well.instance_id).send().await.expect("stop");
    let before_event = snapshot(&bench, &[&sick, &well]).await;
    let r = run(&dry, &bench.state_change_event(&well.instance_id, "stopped"), now).await;
    assert_eq!(decision(&r, &well.id), "recover", "{r:#?}");
    assert_eq!(snapshot(&bench, &[&sick, &well]).await, before_event);
    assert_ne!(before, before_event, "the snapshot sees the stop");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(bench.alarms().await.is_empty(), "no alarm in dry-run mode");
}

#[tokio::test]
async fn an_interrupted_recovery_waits_for_its_lock_then_resumes_without_a_second_launch() {
    use health::gateway::model::Lock;
    use health::gateway::store::GatewayStore;
    let bench = GatewayBench::start().await;
    let gw = bench.launch_gateway(&unique("gw"), None).await;
    let checker = bench.checker(&[]);
    let schedule = scheduled_event();
    let now = OffsetDateTime::now_utc();
    run(&checker, &schedule, now).await; // adopted

    // Another invocation took the lock, launched a replacement and died before recording it.
    let lock = Lock { owner: "crashed".into(), until: now + time::Duration::seconds(60) };
    let locked = bench.store.lock_recovery(&gw.id, &gw.instance_id, &lock, "test", now).await;
    assert!(locked.expect("lock"));
    let tag = |k: &str, v: &str| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build();
    let tags = aws_sdk_ec2::types::TagSpecification::builder()
        .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
        .tags(tag("streamstack:role", &bench.tag_value))
        .tags(tag("streamstack:gateway-id", &gw.id))
        .tags(tag("streamstack:replaces", &gw.instance_id))
        .build();
    let launched = bench
        .ec2
        .run_instances()
        .image_id(&bench.image_id)
        .subnet_id(&bench.subnet_id)
        .min_count(1)
        .max_count(1)
        .tag_specifications(tags)
        .send()
        .await
        .expect("orphan replacement");
    let orphan = launched.instances()[0].instance_id().expect("id").to_owned();

    // While the lock holds, nothing is done.
    let r = run(&checker, &schedule, now).await;
    assert_eq!(decision(&r, &gw.id), "resume_recovery", "{r:#?}");
    assert!(has(&r, &gw.id, |a| matches!(a, Action::Skipped { .. })), "{r:#?}");
    assert_eq!(bench.instances_of(&gw.id).await.len(), 2);
    assert_eq!(
        bench.address_instance(&gw.allocation_id).await.as_deref(),
        Some(gw.instance_id.as_str())
    );

    // Once it lapsed, the recovery resumes onto the orphan: no second launch.
    let r = run(&checker, &schedule, now + time::Duration::seconds(120)).await;
    assert_eq!(decision(&r, &gw.id), "resume_recovery", "{r:#?}");
    assert!(!has(&r, &gw.id, |a| matches!(a, Action::Launch { .. })), "{r:#?}");
    assert!(
        has(
            &r,
            &gw.id,
            |a| matches!(a, Action::Replacement { instance_id } if *instance_id == orphan)
        ),
        "{r:#?}"
    );
    let instances = bench.instances_of(&gw.id).await;
    assert_eq!(instances.len(), 2, "{instances:#?}");
    assert_eq!(instances[&gw.instance_id].state, "terminated");
    assert_eq!(bench.address_instance(&gw.allocation_id).await.as_deref(), Some(orphan.as_str()));
    let row = bench.record(&gw.id).await.expect("row");
    assert_eq!((row.instance_id.as_str(), row.lock.is_none()), (orphan.as_str(), true));
}

#[tokio::test]
async fn a_pending_replacement_is_awaited_next_run_and_a_dead_one_relaunched() {
    use health::gateway::model::{Lifecycle, Phase};
    let bench = GatewayBench::start().await;
    let gw = bench.launch_gateway(&unique("gw"), None).await;
    let mut checker = bench.checker(&[("GATEWAY_RUNNING_WAIT_SECS", "0")]);
    let ec2 = std::sync::Arc::new(FaultyEc2::new(checker.ec2.clone()));
    *ec2.seen_as.lock().expect("lock") = Some(Lifecycle::Pending);
    checker.ec2 = ec2.clone();
    let now = OffsetDateTime::now_utc();
    run(&checker, &scheduled_event(), now).await; // adopted
    bench.ec2.stop_instances().instance_ids(&gw.instance_id).send().await.expect("stop");
    let stopped = bench.state_change_event(&gw.instance_id, "stopped");

    // The replacement is still pending when the (bounded) wait ends: recorded, lock released,
    // the address and the failed instance untouched.
    let r = run(&checker, &stopped, now).await;
    let first_token = of(&r, &gw.id)
        .actions
        .iter()
        .find_map(|a| match a {
            Action::Launch { client_token, .. } => Some(client_token.clone()),
            _ => None,
        })
        .expect("launched");
    assert!(
        has(&r, &gw.id, |a| matches!(
            a,
            Action::AwaitRunning { lifecycle: Lifecycle::Pending, .. }
        )),
        "{r:#?}"
    );
    let row = bench.record(&gw.id).await.expect("row");
    let pending = row.recovery().and_then(|x| x.replacement.clone()).expect("replacement recorded");
    assert_eq!(row.lock, None, "lock released for the next run");
    assert_eq!(
        bench.address_instance(&gw.allocation_id).await.as_deref(),
        Some(gw.instance_id.as_str())
    );
    assert_eq!(bench.instances_of(&gw.id).await[&gw.instance_id].state, "stopped");

    // It died before running: forgotten, the attempt counted, the run reports the failure.
    *ec2.seen_as.lock().expect("lock") = None;
    bench.ec2.terminate_instances().instance_ids(&pending).send().await.expect("terminate");
    let r = dispatch(&checker, &scheduled_event(), now).await.expect("run");
    assert!(of(&r, &gw.id).error.as_deref().is_some_and(|e| e.contains("relaunching")), "{r:#?}");
    let row = bench.record(&gw.id).await.expect("row");
    let recovery = row.recovery().expect("still recovering");
    assert_eq!((recovery.replacement.as_deref(), recovery.attempt), (None, 1));
    let kinds = alarm_kinds(&bench.alarms().await);
    assert_eq!(kinds, ["gateway_recovery_failed"]);

    // Next run: a new launch (new client token), running this time; recovery completes.
    let r = run(&checker, &scheduled_event(), now).await;
    let second_token = of(&r, &gw.id)
        .actions
        .iter()
        .find_map(|a| match a {
            Action::Launch { client_token, .. } => Some(client_token.clone()),
            _ => None,
        })
        .expect("relaunched");
    assert_ne!(first_token, second_token);
    let row = bench.record(&gw.id).await.expect("row");
    assert_eq!(row.phase, Phase::Healthy);
    assert_ne!(row.instance_id, pending);
    assert_eq!(
        bench.address_instance(&gw.allocation_id).await.as_deref(),
        Some(row.instance_id.as_str())
    );
    assert_eq!(bench.instances_of(&gw.id).await[&gw.instance_id].state, "terminated");
}

#[tokio::test]
async fn a_gateway_ec2_no_longer_lists_is_recovered_from_its_row() {
    let bench = GatewayBench::start().await;
    let gw = bench.launch_gateway(&unique("gw"), None).await;
    let (checker, ec2) = FaultyEc2::checker(&bench, &[]);
    let now = OffsetDateTime::now_utc();
    run(&checker, &scheduled_event(), now).await; // adopted: launch settings kept
    for image in bench.images_of(&gw.id).await.into_keys() {
        bench.ec2.deregister_image().image_id(image).send().await.expect("deregister");
    }
    // Terminated, the event missed, and EC2 describes it no more.
    bench.ec2.terminate_instances().instance_ids(&gw.instance_id).send().await.expect("end");
    ec2.hidden.lock().expect("lock").insert(gw.instance_id.clone());
    let r = run(&checker, &scheduled_event(), now).await;
    assert_eq!(decision(&r, &gw.id), "recover", "{r:#?}");
    assert_eq!(of(&r, &gw.id).error, None, "{r:#?}");
    let new = replacement_of(&bench, &gw).await;
    let replacement = &bench.instances_of(&gw.id).await[&new];
    assert_eq!(replacement.image_id, bench.image_id, "the row's image: no backup left");
    assert_eq!(replacement.instance_type.as_deref(), Some("t3.small"));
    assert_eq!(replacement.subnet_id.as_deref(), Some(bench.subnet_id.as_str()));
    assert_eq!(replacement.security_groups, vec![bench.security_group_id.clone()]);
    assert_eq!(replacement.key_name.as_deref(), Some(bench.key_name.as_str()));
    assert_eq!(replacement.tags.get("Name"), Some(&format!("gateway {}", gw.id)));
    assert_eq!(bench.address_instance(&gw.allocation_id).await.as_deref(), Some(new.as_str()));
    assert_eq!(alarm_kinds(&bench.alarms().await), ["gateway_recovered"]);
}

#[tokio::test]
async fn sick_gateways_are_recovered_at_once_within_the_time_budget() {
    use health::gateway::model::Lifecycle;
    let bench = GatewayBench::start().await;
    let mut gws = Vec::new();
    for _ in 0..3 {
        gws.push(bench.launch_gateway(&unique("gw"), None).await);
    }
    let (checker, ec2) = FaultyEc2::checker(&bench, &[("GATEWAY_RUNNING_WAIT_SECS", "3")]);
    *ec2.seen_as.lock().expect("lock") = Some(Lifecycle::Pending);
    let now = OffsetDateTime::now_utc();
    run(&checker, &scheduled_event(), now).await; // adopted
    for gw in &gws {
        bench.ec2.stop_instances().instance_ids(&gw.instance_id).send().await.expect("stop");
    }
    // The three 3 s waits run at once: every wait was still polling when the last began.
    let r = run(&checker, &scheduled_event(), now).await;
    let polls: Vec<_> = ec2.replacement_polls.lock().expect("lock").values().copied().collect();
    assert_eq!(polls.len(), 3, "{polls:?}");
    let last_start = polls.iter().map(|p| p.0).max().expect("polls");
    let first_end = polls.iter().map(|p| p.1).min().expect("polls");
    assert!(last_start < first_end, "the waits ran one after another: {polls:?}");
    let pending =
        |a: &Action| matches!(a, Action::AwaitRunning { lifecycle: Lifecycle::Pending, .. });
    for gw in &gws {
        assert!(has(&r, &gw.id, pending), "{r:#?}");
    }
    // A budget of 22 s (20 s kept for finishing): the 60 s waits end at once.
    let (mut short, _) = FaultyEc2::checker(
        &bench,
        &[("GATEWAY_RUNNING_WAIT_SECS", "60"), ("GATEWAY_BUDGET_SECS", "22")],
    );
    short.ec2 = ec2.clone();
    let started = std::time::Instant::now();
    let r = run(&short, &scheduled_event(), now).await;
    // Far less than the 60 s waits (the bound is loose: no timing is asserted closely).
    assert!(started.elapsed() < Duration::from_secs(45), "{:?}", started.elapsed());
    for gw in &gws {
        assert_eq!(of(&r, &gw.id).error, None, "{r:#?}");
        let row = bench.record(&gw.id).await.expect("row");
        assert!(row.recovery().is_some_and(|x| x.replacement.is_some()), "{row:?}");
    }
}

#[tokio::test]
async fn a_failed_reboot_is_sent_again_before_the_gateway_is_recovered() {
    use health::gateway::model::Phase;
    let bench = GatewayBench::start().await;
    let endpoint = HealthEndpoint::start(500).await;
    let gw = bench.launch_gateway(&unique("gw"), Some(&endpoint.url)).await;
    let (checker, ec2) = FaultyEc2::checker(&bench, &[]);
    ec2.failing_reboots.store(1, std::sync::atomic::Ordering::SeqCst);
    let t0 = OffsetDateTime::now_utc();
    let r = run(&checker, &scheduled_event(), t0).await;
    assert_eq!(decision(&r, &gw.id), "reboot", "{r:#?}");
    assert!(of(&r, &gw.id).error.is_some(), "{r:#?}");
    let phase = bench.record(&gw.id).await.expect("row").phase;
    assert!(matches!(phase, Phase::Rebooted { sent: false, .. }), "{phase:?}");
    // Past the (zero) grace period: the reboot is sent, no recovery yet.
    let r = run(&checker, &scheduled_event(), t0 + time::Duration::seconds(1)).await;
    assert_eq!(decision(&r, &gw.id), "reboot", "{r:#?}");
    assert_eq!(of(&r, &gw.id).error, None, "{r:#?}");
    let phase = bench.record(&gw.id).await.expect("row").phase;
    assert!(matches!(phase, Phase::Rebooted { sent: true, .. }), "{phase:?}");
    assert_eq!(bench.instances_of(&gw.id).await.len(), 1);
    assert_eq!(alarm_kinds(&bench.alarms().await), ["gateway_rebooted"]);
    let r = run(&checker, &scheduled_event(), t0 + time::Duration::seconds(2)).await;
    assert_eq!(decision(&r, &gw.id), "recover", "{r:#?}");
}

#[tokio::test]
async fn a_recovery_retried_after_its_last_write_failed_alarms_once() {
    let bench = GatewayBench::start().await;
    let gw = bench.launch_gateway(&unique("gw"), None).await;
    let mut checker = bench.checker(&[]);
    let store = FaultyStore { inner: checker.store.clone(), failing_finishes: 1.into() };
    checker.store = Arc::new(store);
    let now = OffsetDateTime::now_utc();
    run(&checker, &scheduled_event(), now).await; // adopted
    bench.ec2.stop_instances().instance_ids(&gw.instance_id).send().await.expect("stop");
    let r = run(&checker, &scheduled_event(), now).await;
    assert!(of(&r, &gw.id).error.as_deref().is_some_and(|e| e.contains("throttled")), "{r:#?}");
    let r = run(&checker, &scheduled_event(), now).await;
    assert_eq!(decision(&r, &gw.id), "resume_recovery", "{r:#?}");
    run(&checker, &scheduled_event(), now).await;
    let kinds = alarm_kinds(&bench.alarms().await);
    assert_eq!(kinds.iter().filter(|k| *k == "gateway_recovered").count(), 1, "{kinds:?}");
    let row = bench.record(&gw.id).await.expect("row");
    assert_eq!((row.phase, row.alarm_pending), (health::gateway::model::Phase::Healthy, None));

    // An event of another kind: reported ignored, not failed.
    let other = serde_json::json!({"version": "0", "id": "x", "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.ec2", "detail": {}});
    let r = run(&checker, &other, now).await;
    assert!(r.ignored.is_some() && r.gateways.is_empty(), "{r:#?}");
}
