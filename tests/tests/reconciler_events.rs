//! Which invocations make the reconciler work: the event fixtures (shared with
//! `cargo lambda invoke reconciler --data-file tests/fixtures/…`), and the records moto's
//! DynamoDB stream really produces for heartbeats, stream-state writes and device changes.

use ::devices::events::{classify, Trigger};
use serde_json::Value;
use streamstack_core::device_store::DeviceStore;
use streamstack_core::stream_state::{StreamState, StreamStateStore, StreamStatus};
use streamstack_tests::devices::{ids, DeviceTables};
use time::{Duration, OffsetDateTime};

fn fixture(name: &str) -> Value {
    let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json")
}

const WINDOW: Duration = Duration::minutes(20);

#[test]
fn fixtures() {
    // The fixtures' heartbeats are from 2026-11-23 ~12:00; judge them then.
    let now = OffsetDateTime::from_unix_timestamp(1_795_430_400).unwrap();
    let schedule = fixture("eventbridge-scheduled-reconcile.json");
    assert_eq!(classify(&schedule, now, WINDOW), Trigger::Schedule);
    // A stream-state write (skipped) and a device going offline (reconcile).
    let batch = fixture("dynamodb-stream-devices.json");
    assert_eq!(classify(&batch, now, WINDOW), Trigger::Stream { records: 2, relevant: 1 });
}

/// Every record of the devices table's stream so far, via `tests/scripts/stream_records.py`.
async fn stream(tables: &DeviceTables) -> Vec<Value> {
    let python = std::env::var("STREAMSTACK_PYTHON").expect("STREAMSTACK_PYTHON (make test)");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/stream_records.py");
    let out = tokio::process::Command::new(python)
        .args([script, &tables.devices_table])
        .output()
        .await
        .expect("stream_records.py");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let event: Value = serde_json::from_slice(&out.stdout).expect("json");
    event["Records"].as_array().expect("records").clone()
}

/// Classifies the records after the first `seen`.
fn tail(records: &[Value], seen: usize) -> Trigger {
    let event = serde_json::json!({ "Records": records[seen..].to_vec() });
    classify(&event, OffsetDateTime::now_utc(), WINDOW)
}

#[tokio::test]
async fn moto_stream_records_of_devices() {
    let aws = streamstack_tests::aws().await;
    let tables = DeviceTables::create(&aws.dynamodb).await;
    let cams = ids("streamed", 2);
    tables.heartbeat("gw-s", &cams, |_| 5000).await;
    let records = stream(&tables).await;
    assert_eq!(tail(&records, 0), Trigger::Stream { records: 2, relevant: 2 }, "two inserts");

    // The same heartbeat again and a streamer's stream-state write: nothing to reconcile.
    let seen = records.len();
    tables.heartbeat("gw-s", &cams, |_| 5000).await;
    let states = streamstack_core::stream_state::DynamoStreamStateStore::new(
        aws.dynamodb.clone(),
        &tables.devices_table,
    );
    let state = StreamState {
        status: StreamStatus::Receiving,
        last_error: None,
        bytes_in: 1,
        updated_at: OffsetDateTime::now_utc(),
    };
    states.put_stream_state(&cams[0], &state).await.expect("state");
    let records = stream(&tables).await;
    assert_eq!(tail(&records, seen), Trigger::Stream { records: 3, relevant: 0 });

    // One camera missing from the next heartbeat, the other disabled: two relevant changes.
    let seen = records.len();
    tables.heartbeat("gw-s", &cams[..1], |_| 5000).await;
    let mut device = tables.devices.get(&cams[0]).await.unwrap().unwrap();
    let version = device.version;
    device.enabled = false;
    device.version += 1;
    tables.devices.update_config(&device, version).await.expect("disable");
    let records = stream(&tables).await;
    let trigger = tail(&records, seen);
    assert!(matches!(trigger, Trigger::Stream { relevant: 2, .. }), "{trigger:?}");
}
