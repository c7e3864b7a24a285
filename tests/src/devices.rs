//! Harness of the device tests: devices and slots tables, an ECS cluster in moto that takes
//! Fargate tasks, and reconcilers on them.

use crate::unique;
use devices::config::ReconcilerConfig;
use devices::ecs::{EcsSettings, EcsTasks};
use devices::plan::PlanSettings;
use devices::reconcile::Reconciler;
use devices::tasks::{TaskInfo, Tasks};
use std::sync::Arc;
use streamstack_core::device::DeviceSettings;
use streamstack_core::device_store::{DeviceStore, DynamoDeviceStore, Reported};
use streamstack_core::media_url::MediaUrl;
use streamstack_core::slot::{DynamoSlotStore, SlotStore};

/// Fresh devices and slots tables with stores on them.
pub struct DeviceTables {
    /// Devices table name.
    pub devices_table: String,
    /// Slots table name.
    pub slots_table: String,
    /// Store on the devices table.
    pub devices: Arc<DynamoDeviceStore>,
    /// Store on the slots table.
    pub slots: Arc<DynamoSlotStore>,
    /// The DynamoDB client.
    pub dynamodb: aws_sdk_dynamodb::Client,
}

impl DeviceTables {
    /// Creates both tables in moto.
    pub async fn create(dynamodb: &aws_sdk_dynamodb::Client) -> Self {
        let (devices_table, slots_table) = (unique("devices"), unique("slots"));
        let devices = Arc::new(DynamoDeviceStore::new(dynamodb.clone(), &devices_table));
        let slots = Arc::new(DynamoSlotStore::new(dynamodb.clone(), &slots_table));
        devices.create_table_if_missing().await.expect("devices table");
        slots.create_table_if_missing().await.expect("slots table");
        Self { devices_table, slots_table, devices, slots, dynamodb: dynamodb.clone() }
    }

    /// Gateway `gateway` reports `ids` online with URL `udp://127.0.0.1:<port>` (port from
    /// `port_of`).
    pub async fn heartbeat(&self, gateway: &str, ids: &[String], port_of: impl Fn(&str) -> u16) {
        let now = time::OffsetDateTime::now_utc();
        let reported: Vec<Reported> = ids
            .iter()
            .map(|id| Reported {
                id: id.clone(),
                media_url: MediaUrl::seal(&format!("udp://127.0.0.1:{}", port_of(id)), id, None)
                    .expect("url"),
            })
            .collect();
        let outcome = self.devices.heartbeat(gateway, &reported, now).await.expect("heartbeat");
        assert!(outcome.rejected.is_empty(), "{outcome:?}");
    }

    /// Every slot, sorted by id.
    pub async fn slots(&self) -> Vec<streamstack_core::slot::Slot> {
        let mut slots = self.slots.scan_all().await.expect("slots");
        slots.sort_by(|a, b| a.id.cmp(&b.id));
        slots
    }
}

/// A moto ECS cluster ready for Fargate `RunTask`, and the ECS client.
pub struct EcsCluster {
    /// Where the reconciler runs tasks.
    pub settings: EcsSettings,
    /// ECS client on moto.
    pub ecs: aws_sdk_ecs::Client,
}

impl EcsCluster {
    /// Creates a VPC, subnet, security group, cluster and task definition in moto (with
    /// `tests/scripts/ecs_setup.py`).
    pub async fn create(sdk: &aws_config::SdkConfig) -> Self {
        let python = std::env::var("STREAMSTACK_PYTHON").expect(
            "STREAMSTACK_PYTHON is not set: run `make test` (scripts/with-moto.sh sets it)",
        );
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ecs_setup.py");
        let cluster = unique("streamers");
        let output = tokio::process::Command::new(python)
            .args([script, &cluster, &format!("{cluster}-pull")])
            .output()
            .await
            .expect("run ecs_setup.py");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let created: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
        let text = |k: &str| created[k].as_str().expect(k).to_owned();
        Self {
            settings: EcsSettings {
                cluster: text("cluster"),
                task_definition: text("task_definition"),
                container: "streamer".into(),
                subnets: vec![text("subnet")],
                security_groups: vec![text("security_group")],
                assign_public_ip: false,
            },
            ecs: streamstack_core::aws::ecs(sdk),
        }
    }

    /// The task backend on this cluster.
    pub fn tasks(&self) -> Arc<EcsTasks> {
        Arc::new(EcsTasks::new(self.ecs.clone(), self.settings.clone()))
    }

    /// The live streamer tasks.
    pub async fn live(&self) -> Vec<TaskInfo> {
        self.tasks().list().await.expect("list tasks")
    }
}

/// A reconciler on `tables` with `devices_per_task`, running tasks with `tasks`.
pub fn reconciler(
    tables: &DeviceTables,
    devices_per_task: usize,
    tasks: Arc<dyn Tasks>,
) -> Reconciler {
    let config = ReconcilerConfig {
        devices_table: tables.devices_table.clone(),
        slots_table: tables.slots_table.clone(),
        plan: PlanSettings {
            devices_per_task,
            device: DeviceSettings::default(),
            max_starts: 100_000,
        },
        dry_run: false,
        endpoint_url: None,
    };
    devices::reconciler(&config, &tables.dynamodb, tasks)
}

/// Device ids `prefix-000`, `prefix-001`, …
pub fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:03}")).collect()
}
