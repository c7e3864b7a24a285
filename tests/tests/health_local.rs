//! The whole health loop on the local stack's parts: a camera (a GStreamer RTSP server) is
//! recorded by a local `streamer pull` process that the reconciler started; `kill -9` of that
//! process reaches the task health handler as an ECS "Task State Change" event (the local task
//! runner's), the device gets its restart backoff, the reconciler restarts it after the
//! backoff, and its live playlist continues after a discontinuity. Five crashes inside the
//! crash window mark the device failed and publish an alarm on the SNS topic.

use ::devices::local::ProcessTasks;
use ::devices::local_loop::LocalLoop;
use health::task::policy::RestartPolicy;
use health::task::{TaskHealth, TaskHealthConfig};
use std::sync::Arc;
use std::time::Duration;
use streamstack_core::device::DeviceSettings;
use streamstack_core::device_store::{DeviceStore, Reported};
use streamstack_core::media_url::MediaUrl;
use streamstack_tests::devices::{reconciler, DeviceTables};
use streamstack_tests::process::streamer_binary;
use streamstack_tests::rtsp::{make_file, Media, RtspServer};
use streamstack_tests::topic::TopicQueue;
use streamstack_tests::{aws, bucket, endpoint, tempdir};
use tokio::time::Instant;

const PLAYLIST: &str = "devices/cam/live/index.m3u8";
const SLOT: &str = "dev-cam";

async fn playlist(
    aws: &streamstack_core::aws::AwsClients,
    bucket: &str,
) -> Option<m3u8_rs::MediaPlaylist> {
    let out = aws.s3.get_object().bucket(bucket).key(PLAYLIST).send().await.ok()?;
    let body = out.body.collect().await.ok()?.into_bytes();
    m3u8_rs::parse_media_playlist_res(&body).ok()
}

fn log(dir: &std::path::Path) -> String {
    let text = std::fs::read_to_string(dir.join(format!("{SLOT}.log"))).unwrap_or_default();
    text.lines().rev().take(40).collect::<Vec<_>>().join("\n")
}

fn kill9(pid: u32) {
    // SAFETY: kill(2) on a child process of this test with a valid signal.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}

#[tokio::test]
async fn killed_pulls_restart_after_backoff_and_a_crash_loop_fails_the_device() {
    let aws = aws().await;
    let sdk = streamstack_core::aws::sdk_config(Some(&endpoint())).await;
    let tables = DeviceTables::create(&aws.dynamodb).await;
    let bucket = bucket(&aws).await;
    let alarms = TopicQueue::create(&sdk, "alarms").await;
    let dir = tempdir();
    let clip = make_file(&dir, Media::H264Aac, 20);
    let server = RtspServer::start(&clip, &["--loop"]).await;
    let url = MediaUrl::seal(&server.url(""), "cam", None).expect("url");
    let now = time::OffsetDateTime::now_utc();
    tables
        .devices
        .heartbeat("site-1", &[Reported { id: "cam".into(), media_url: url }], now)
        .await
        .expect("heartbeat");

    let logs = dir.join("tasks");
    let tasks = Arc::new(
        ProcessTasks::new(
            streamer_binary(),
            ["--output", "s3", "--segment-duration", "2"].map(String::from).to_vec(),
            logs.clone(),
        )
        .with_env("DEVICES_TABLE", &tables.devices_table)
        .with_env("SLOTS_TABLE", &tables.slots_table)
        .with_env("MEDIA_BUCKET", &bucket)
        .with_env("ASSIGNMENT_POLL_SECS", "1"),
    );
    let config = TaskHealthConfig {
        devices_table: tables.devices_table.clone(),
        slots_table: tables.slots_table.clone(),
        channels_table: None,
        bucket: Some(bucket.clone()),
        alarm_topic: Some(alarms.topic_arn.clone()),
        cluster_arn: None,
        ingest_group: None,
        policy: RestartPolicy {
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(2),
            crash_loop_restarts: 5,
            crash_window: Duration::from_secs(600),
            healthy_run: Duration::from_secs(600),
        },
        device: DeviceSettings::default(),
        endpoint_url: Some(endpoint()),
    };
    let control = LocalLoop {
        tasks: tasks.clone(),
        reconciler: reconciler(&tables, 1, tasks.clone()),
        health: Some(TaskHealth::new(&config, &sdk)),
    };

    // Recording: three live segments.
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        control.step().await.expect("step");
        if let Some(p) = playlist(&aws, &bucket).await.filter(|p| p.segments.len() >= 3) {
            break p;
        }
        assert!(Instant::now() < deadline, "no HLS; log:\n{}", log(&logs));
        tokio::time::sleep(Duration::from_millis(300)).await;
    };

    // Crash 1: kill -9. The stop reaches the handler, the backoff holds the restart back, the
    // reconciler restarts it after, and the live playlist continues with a discontinuity.
    let pid = tasks.pid(SLOT).await.expect("a process records the camera");
    kill9(pid);
    let killed_at = Instant::now();
    let deadline = killed_at + Duration::from_secs(60);
    let restarted_pid = loop {
        control.step().await.expect("step");
        let device = tables.devices.get("cam").await.unwrap().unwrap();
        if let Some(new) = tasks.pid(SLOT).await.filter(|p| *p != pid) {
            assert_eq!(device.restarts, 1, "{device:?}");
            assert_eq!(device.last_exit.as_ref().and_then(|e| e.exit_code), Some(137));
            assert!(
                killed_at.elapsed() >= Duration::from_millis(900),
                "restarted inside the 1 s backoff"
            );
            eprintln!("kill -9 -> restarted pull: {:?} (backoff 1 s)", killed_at.elapsed());
            break new;
        }
        assert!(
            Instant::now() < deadline,
            "not restarted; device {device:?}; log:\n{}",
            log(&logs)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let last_first = first.media_sequence + first.segments.len() as u64;
    loop {
        let p = playlist(&aws, &bucket).await.expect("playlist");
        assert!(p.media_sequence >= first.media_sequence, "media sequence went backwards: {p:?}");
        let continued = p.segments.iter().position(|s| s.discontinuity);
        if let Some(at) = continued {
            if p.segments.len() - at >= 2 && !p.end_list {
                assert!(p.media_sequence + at as u64 >= last_first - 1, "{p:?}");
                eprintln!("kill -9 -> live playlist continued: {:?}", killed_at.elapsed());
                break;
            }
        }
        assert!(Instant::now() < deadline, "HLS did not continue: {p:?}; log:\n{}", log(&logs));
        control.step().await.expect("step");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Crashes 2..5 inside the window: the fifth marks the device failed, with an alarm, and
    // nothing restarts it.
    let mut pid = restarted_pid;
    for crash in 2..=5u32 {
        kill9(pid);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            control.step().await.expect("step");
            let device = tables.devices.get("cam").await.unwrap().unwrap();
            if crash == 5 && device.failed_at.is_some() {
                assert_eq!(device.restarts, 5);
                break;
            }
            if let Some(new) = tasks.pid(SLOT).await.filter(|p| *p != pid) {
                assert_eq!(device.restarts, crash, "{device:?}");
                pid = new;
                break;
            }
            assert!(Instant::now() < deadline, "crash {crash}: {device:?}; log:\n{}", log(&logs));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for _ in 0..10 {
        control.step().await.expect("step");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(tasks.pid(SLOT).await.is_none(), "a failed device was restarted");
    let messages = alarms.drain().await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["kind"], "device_crash_loop");
    assert_eq!(messages[0]["device"], "cam");
    tasks.stop_all().await;
    drop(server);
}
