//! ECS task state changes of the streamer cluster.
//!
//! - A **device task** (`startedBy` = `streamstack/<slot>`, see
//!   [`streamstack_core::slot::started_by`]) that stopped without the reconciler stopping it:
//!   each of its slot's devices that is still wanted (enabled, online, not failed) records the
//!   exit, its restart count and a restart backoff (`not_before`, [`policy`]); a crash loop
//!   marks it failed and publishes an alarm. The slot forgets the task, so the reconciler —
//!   invoked by the device change on the table's stream, or its schedule — starts the next
//!   one once the backoff has passed. Stops by the reconciler ([`event::StopKind::Intended`])
//!   change nothing.
//! - An **ingest task** (a task of the RTMP ingest service): [`ingest`].
//!
//! Idempotent under redelivery: a device's last recorded exit (task ARN, `detail.version`,
//! `stoppedAt`) de-duplicates a repeated event and drops one older than what is recorded;
//! every write is conditional on the state it was computed from.

pub mod event;
pub mod ingest;
pub mod policy;

use crate::alarm::Alarms;
use event::{Envelope, StopKind, TaskDetail, DETAIL_TYPE};
use ingest::{IngestCleanup, IngestError, ReleasedChannel};
use policy::{next_record, RestartPolicy};
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use streamstack_core::config::{env_var, number, required, ConfigError};
use streamstack_core::device::DeviceSettings;
use streamstack_core::device_health::{DeviceHealthStore, RecordOutcome, TaskExit};
use streamstack_core::device_store::DeviceStore;
use streamstack_core::slot::{slot_of, SlotStore};
use streamstack_core::store::StoreError;
use time::OffsetDateTime;

/// Attempts to record one device's exit when concurrent writes keep changing it.
const RECORD_ATTEMPTS: u32 = 3;

/// Settings of the task health handler, from the environment.
#[derive(Debug, Clone)]
pub struct TaskHealthConfig {
    /// `DEVICES_TABLE` (required).
    pub devices_table: String,
    /// `SLOTS_TABLE` (required).
    pub slots_table: String,
    /// `CHANNELS_TABLE`: ingest tasks' leases are released only when set.
    pub channels_table: Option<String>,
    /// `MEDIA_BUCKET`: where live playlists are ended.
    pub bucket: Option<String>,
    /// `ALARM_TOPIC_ARN`: crash-loop alarms (unset: logged only).
    pub alarm_topic: Option<String>,
    /// `STREAMER_CLUSTER_ARN`: events of other clusters are ignored (unset: any cluster;
    /// the EventBridge rule filters by cluster already).
    pub cluster_arn: Option<String>,
    /// `INGEST_SERVICE_GROUP`, e.g. `service:streamstack-ingest`: the ingest service's task
    /// group (unset: any task started by an ECS service, `startedBy` `ecs-svc/…`).
    pub ingest_group: Option<String>,
    /// The restart policy ([`RestartPolicy`]'s variables).
    pub policy: RestartPolicy,
    /// `DEVICE_ONLINE_WINDOW_SECS` …: which devices are still wanted.
    pub device: DeviceSettings,
    /// `AWS_ENDPOINT_URL` (local stacks).
    pub endpoint_url: Option<String>,
}

fn secs(name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
    let n = number(name, default.as_secs() as usize, 1..=86_400 * 7)?;
    Ok(Duration::from_secs(n as u64))
}

impl TaskHealthConfig {
    /// Reads the variables named on the fields.
    ///
    /// # Errors
    /// [`ConfigError`] for a missing table or a malformed number.
    pub fn from_env() -> Result<Self, ConfigError> {
        let d = RestartPolicy::default();
        Ok(Self {
            devices_table: required("DEVICES_TABLE")?,
            slots_table: required("SLOTS_TABLE")?,
            channels_table: env_var("CHANNELS_TABLE"),
            bucket: env_var("MEDIA_BUCKET"),
            alarm_topic: env_var("ALARM_TOPIC_ARN"),
            cluster_arn: env_var("STREAMER_CLUSTER_ARN"),
            ingest_group: env_var("INGEST_SERVICE_GROUP"),
            policy: RestartPolicy {
                backoff_base: secs("RESTART_BACKOFF_BASE_SECS", d.backoff_base)?,
                backoff_max: secs("RESTART_BACKOFF_MAX_SECS", d.backoff_max)?,
                crash_loop_restarts: number(
                    "CRASH_LOOP_RESTARTS",
                    d.crash_loop_restarts as usize,
                    1..=1000,
                )? as u32,
                crash_window: secs("CRASH_LOOP_WINDOW_SECS", d.crash_window)?,
                healthy_run: secs("HEALTHY_RUN_SECS", d.healthy_run)?,
            },
            device: DeviceSettings::from_lookup(env_var)?,
            endpoint_url: env_var("AWS_ENDPOINT_URL"),
        })
    }
}

/// A handler failure: the event is redelivered (EventBridge retries an async invocation,
/// then its on-failure destination keeps it).
#[derive(Debug, thiserror::Error)]
pub enum TaskHealthError {
    /// The devices or slots table.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Releasing an ingest task's channels.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// The alarm could not be published.
    #[error(transparent)]
    Alarm(#[from] crate::alarm::AlarmError),
    /// The device kept changing under concurrent writers; retry.
    #[error("device {0} changed under {RECORD_ATTEMPTS} attempts to record its task's stop")]
    Contended(String),
}

/// What happened to one device of a stopped task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeviceOutcome {
    /// Device id.
    pub device: String,
    /// `backoff` (restart after `not_before`), `restart` (at once), `failed` (crash loop,
    /// alarm published), `duplicate` (this task's stop is recorded already), `stale` (a later
    /// stop is recorded), `not_wanted` (disabled, offline or failed already), `gone`.
    pub action: &'static str,
    /// Restarts counted in the crash window after this stop.
    pub restarts: u32,
    /// Restart backoff end.
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_before: Option<OffsetDateTime>,
}

/// What the handler did with one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Not a stop of one of our tasks (another detail type or cluster, not stopped yet, a
    /// task nobody here started).
    Ignored {
        /// Why.
        reason: String,
    },
    /// Stopped by the reconciler: nothing to do.
    Intended,
    /// A device task stopped.
    DeviceTask {
        /// Its slot.
        slot: String,
        /// Per device.
        devices: Vec<DeviceOutcome>,
    },
    /// An ingest task stopped.
    IngestTask {
        /// The channels released.
        channels: Vec<ReleasedChannel>,
    },
}

/// The task health handler, built once per cold start.
pub struct TaskHealth {
    /// Devices (reads).
    pub devices: Arc<dyn DeviceStore>,
    /// Devices (health writes).
    pub health: Arc<dyn DeviceHealthStore>,
    /// Task slots.
    pub slots: Arc<dyn SlotStore>,
    /// Ingest leases (`None` without `CHANNELS_TABLE`).
    pub ingest: Option<IngestCleanup>,
    /// Alarm topic.
    pub alarms: Arc<dyn Alarms>,
    /// Restart policy.
    pub policy: RestartPolicy,
    /// Device timing rules.
    pub device: DeviceSettings,
    /// Only this cluster's events.
    pub cluster_arn: Option<String>,
    /// The ingest service's task group.
    pub ingest_group: Option<String>,
}

fn ignored(reason: impl Into<String>) -> Outcome {
    Outcome::Ignored { reason: reason.into() }
}

impl TaskHealth {
    /// Handles one EventBridge event at `now`.
    ///
    /// # Errors
    /// [`TaskHealthError`] when a table, S3 or SNS failed: retry the event (every step is
    /// idempotent).
    pub async fn handle(
        &self,
        event: &Envelope,
        now: OffsetDateTime,
    ) -> Result<Outcome, TaskHealthError> {
        if event.detail_type != DETAIL_TYPE {
            return Ok(ignored(format!("detail-type {:?}", event.detail_type)));
        }
        let Ok(task) = serde_json::from_value::<TaskDetail>(event.detail.clone()) else {
            return Ok(ignored("malformed task detail"));
        };
        if self.cluster_arn.as_ref().is_some_and(|c| *c != task.cluster_arn) {
            return Ok(ignored("another cluster"));
        }
        if !task.is_stopped() {
            return Ok(ignored(format!("lastStatus {}", task.last_status)));
        }
        let started_by = task.started_by.as_deref().unwrap_or("");
        if let Some(slot) = slot_of(started_by) {
            if task.stop_kind() == StopKind::Intended {
                return Ok(Outcome::Intended);
            }
            let devices = self.device_task_stopped(slot, &task, event.time, now).await?;
            return Ok(Outcome::DeviceTask { slot: slot.to_owned(), devices });
        }
        if self.is_ingest(&task, started_by) {
            let Some(ingest) = &self.ingest else { return Ok(ignored("no CHANNELS_TABLE")) };
            let channels = ingest.release_task(&task.task_arn).await?;
            return Ok(Outcome::IngestTask { channels });
        }
        Ok(ignored("not a streamstack task"))
    }

    fn is_ingest(&self, task: &TaskDetail, started_by: &str) -> bool {
        match &self.ingest_group {
            Some(group) => task.group.as_deref() == Some(group.as_str()),
            None => started_by.starts_with("ecs-svc/"),
        }
    }

    async fn device_task_stopped(
        &self,
        slot_id: &str,
        task: &TaskDetail,
        event_time: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Result<Vec<DeviceOutcome>, TaskHealthError> {
        let slot = self.slots.get(slot_id).await?;
        // A one-device slot names its device. A shared slot's members are charged only while
        // the slot still runs this task (or none): after a newer task took over, its
        // members may have changed and the event is stale for them.
        let ids: Vec<String> = match (&slot, slot_id.strip_prefix("dev-")) {
            (_, Some(device)) => vec![device.to_owned()],
            (Some(slot), None) if slot.task_arn.as_deref().is_none_or(|t| t == task.task_arn) => {
                slot.devices.keys().cloned().collect()
            }
            _ => Vec::new(),
        };
        let exit = TaskExit {
            task_arn: task.task_arn.clone(),
            version: task.version,
            stopped_at: task.stopped_at.or(event_time).unwrap_or(now),
            stop_code: task.stop_code.clone().unwrap_or_default(),
            exit_code: task.exit_code(),
            reason: task.reason(),
        };
        let mut outcomes = Vec::with_capacity(ids.len());
        for id in ids {
            outcomes.push(self.device_stopped(&id, task, &exit, now).await?);
        }
        if slot.as_ref().is_some_and(|s| s.task_arn.as_deref() == Some(task.task_arn.as_str())) {
            self.slots.clear_task(slot_id, &task.task_arn).await?;
        }
        Ok(outcomes)
    }

    async fn device_stopped(
        &self,
        id: &str,
        task: &TaskDetail,
        exit: &TaskExit,
        now: OffsetDateTime,
    ) -> Result<DeviceOutcome, TaskHealthError> {
        let outcome = |action, restarts, not_before| DeviceOutcome {
            device: id.to_owned(),
            action,
            restarts,
            not_before,
        };
        for _ in 0..RECORD_ATTEMPTS {
            let Some(device) = self.devices.get(id).await? else {
                return Ok(outcome("gone", 0, None));
            };
            if let Some(last) = &device.last_exit {
                if last.task_arn == exit.task_arn {
                    if device.alarm_pending {
                        // Recorded by an attempt that did not get to publish.
                        self.crash_loop_alarm(&device, last).await?;
                    }
                    return Ok(outcome("duplicate", device.restarts, device.not_before));
                }
                if last.stopped_at > exit.stopped_at {
                    return Ok(outcome("stale", device.restarts, device.not_before));
                }
            }
            if !device.enabled
                || device.failed_at.is_some()
                || !device.is_online(now, self.device.online_window)
            {
                return Ok(outcome("not_wanted", device.restarts, device.not_before));
            }
            let kind = task.stop_kind();
            let record =
                next_record(&self.policy, &device, kind, task.started_at, exit.clone(), now);
            let expected = device.last_exit.as_ref().map(|l| (l.task_arn.as_str(), l.version));
            match self.health.record_exit(id, &record, device.restarts, expected).await? {
                RecordOutcome::Recorded => {
                    if record.alarm_pending {
                        self.crash_loop_alarm(&device, &record.exit).await?;
                    }
                    let action = match (record.failed_at, record.not_before) {
                        (Some(_), _) => "failed",
                        (None, Some(_)) => "backoff",
                        (None, None) => "restart",
                    };
                    tracing::info!(device = %id, task = %exit.task_arn, action, restarts = record.restarts, stop_code = %exit.stop_code, exit_code = ?exit.exit_code, "device task stopped");
                    return Ok(outcome(action, record.restarts, record.not_before));
                }
                RecordOutcome::NotFound => return Ok(outcome("gone", 0, None)),
                RecordOutcome::Conflict => continue,
            }
        }
        // Still changing under us: fail the invocation so the event is retried.
        Err(TaskHealthError::Contended(id.to_owned()))
    }

    /// Publishes the crash-loop alarm of `device` (failed by `exit`), then clears its
    /// `alarm_pending`.
    async fn crash_loop_alarm(
        &self,
        device: &streamstack_core::device::Device,
        exit: &TaskExit,
    ) -> Result<(), TaskHealthError> {
        self.alarms
            .publish(
                &format!("streamstack: device {} failed (crash loop)", device.id),
                &json!({
                    "kind": "device_crash_loop",
                    "device": device.id,
                    "gateway": device.gateway_id,
                    "restarts": self.policy.crash_loop_restarts,
                    "crash_window_secs": self.policy.crash_window.as_secs(),
                    "last_exit": exit,
                }),
            )
            .await?;
        self.health.alarm_published(&device.id, &exit.task_arn).await?;
        Ok(())
    }
}

impl TaskHealth {
    /// The handler on `config`'s tables, bucket and topic, with clients built from `sdk`
    /// (DynamoDB, SNS, and S3 when ingest cleanup is configured).
    pub fn new(config: &TaskHealthConfig, sdk: &aws_config::SdkConfig) -> Self {
        use streamstack_core::aws;
        use streamstack_core::device_store::DynamoDeviceStore;
        use streamstack_core::slot::DynamoSlotStore;
        let dynamodb = aws::dynamodb(sdk);
        let devices = Arc::new(DynamoDeviceStore::new(dynamodb.clone(), &config.devices_table));
        let ingest = config.channels_table.as_ref().map(|table| IngestCleanup {
            channels: streamstack_core::DynamoChannelStore::new(dynamodb.clone(), table),
            s3: aws::s3(sdk, config.endpoint_url.is_some()),
            bucket: config.bucket.clone(),
        });
        Self {
            devices: devices.clone(),
            health: devices,
            slots: Arc::new(DynamoSlotStore::new(dynamodb, &config.slots_table)),
            ingest,
            alarms: Arc::new(crate::alarm::SnsAlarms::new(
                aws::sns(sdk),
                config.alarm_topic.clone(),
            )),
            policy: config.policy,
            device: config.device,
            cluster_arn: config.cluster_arn.clone(),
            ingest_group: config.ingest_group.clone(),
        }
    }
}

/// The `task-health` Lambda handler: one EventBridge event in, the [`Outcome`] as JSON out.
///
/// # Errors
/// [`TaskHealthError`]: the invocation fails and EventBridge's asynchronous invocation
/// retries it (then the on-failure destination keeps it).
pub async fn handle_event(
    health: &TaskHealth,
    event: lambda_runtime::LambdaEvent<serde_json::Value>,
) -> Result<serde_json::Value, TaskHealthError> {
    let Ok(envelope) = serde_json::from_value::<Envelope>(event.payload) else {
        return Ok(json!(ignored("not an EventBridge event")));
    };
    let outcome = health.handle(&envelope, OffsetDateTime::now_utc()).await?;
    tracing::info!(event = %envelope.id, outcome = %json!(outcome), "task state change handled");
    Ok(json!(outcome))
}

impl From<TaskHealthError> for lambda_runtime::Diagnostic {
    fn from(e: TaskHealthError) -> Self {
        Self { error_type: "TaskHealthError".into(), error_message: e.to_string() }
    }
}
