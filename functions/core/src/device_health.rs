//! Restart health of devices: what the health handler records when a device's streamer task
//! stops without the reconciler having stopped it, and the restart backoff that follows.
//!
//! Attributes on the device item (see [`crate::device_store`]), written only by the health
//! handler through [`DeviceHealthStore::record_exit`]:
//!
//! | attribute | type | meaning |
//! |---|---|---|
//! | `restarts` | N | restarts counted in the current crash window |
//! | `restart_window_start` | N | unix ms: the first counted restart of that window |
//! | `not_before` | N | unix ms: no task is started before (the restart backoff) |
//! | `failed_at` | N | unix ms: a crash loop marked the device failed (no more restarts) |
//! | `alarm_pending` | BOOL | the crash-loop alarm of `failed_at` is not published yet |
//! | `last_exit_task` | S | ARN of the task whose stop was recorded last (de-duplication) |
//! | `last_exit_version` | N | that event's `detail.version` |
//! | `last_exit_at` | N | unix ms: that task's `stoppedAt` |
//! | `last_exit` | M | `stop_code` S, `reason` S, `exit_code` N (when known), `task_arn` S, `stopped_at` S (RFC 3339) |
//!
//! Any configuration change (`PUT`/`PATCH /devices/{id}`) clears `failed_at`, `not_before`,
//! `restart_window_start` and sets `restarts` to 0: fixing a failed device, or re-sending its
//! configuration, is the retry.

use crate::channel_item::{s, Item};
use crate::device_store::{names, DynamoDeviceStore};
use crate::lease::{from_unix_millis, millis_value, unix_millis};
use crate::store::{is_conditional_failure, StoreError};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use time::OffsetDateTime;

/// How a device's task ended, from an ECS "Task State Change" event.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskExit {
    /// The stopped task's ARN.
    pub task_arn: String,
    /// The event's `detail.version` (ECS increments it with every change of the task).
    #[serde(skip)]
    pub version: u64,
    /// The task's `stoppedAt` (or the event time when ECS left it out).
    #[serde(with = "time::serde::rfc3339")]
    pub stopped_at: OffsetDateTime,
    /// ECS `stopCode`: `EssentialContainerExited`, `TaskFailedToStart`, `SpotInterruption`, …
    pub stop_code: String,
    /// The essential container's exit code, when it ran (137: killed by SIGKILL).
    pub exit_code: Option<i32>,
    /// ECS `stoppedReason`, cut to 256 characters.
    pub reason: String,
}

/// What one recorded stop leaves on the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthRecord {
    /// Restarts counted in the crash window, this one included.
    pub restarts: u32,
    /// Start of the crash window.
    pub window_start: Option<OffsetDateTime>,
    /// Restart backoff: no task before this instant (`None`: restart at once).
    pub not_before: Option<OffsetDateTime>,
    /// Set when this stop completes a crash loop: the device is not restarted any more.
    pub failed_at: Option<OffsetDateTime>,
    /// The crash-loop alarm is still to be published (stored as `alarm_pending`, cleared by
    /// [`DeviceHealthStore::alarm_published`]): written before publishing, so a handler that
    /// dies in between leaves the alarm to the redelivery, and a retried write never
    /// publishes twice.
    pub alarm_pending: bool,
    /// The stop itself.
    pub exit: TaskExit,
}

/// What [`DeviceHealthStore::record_exit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordOutcome {
    /// Written.
    Recorded,
    /// Not written: the device changed since it was read (another stop recorded, or its
    /// configuration reset the counters); read it again and retry.
    Conflict,
    /// Not written: the device no longer exists.
    NotFound,
}

/// The health handler's writes on the devices table.
#[async_trait]
pub trait DeviceHealthStore: Send + Sync {
    /// Records `record` on device `id` if the device still has `expected_restarts` restarts
    /// and its last recorded exit is still `expected_last` (task ARN and event version):
    /// optimistic concurrency, so two handlers of events of the same device never both count
    /// from the same state. One conditional `UpdateItem`.
    ///
    /// # Errors
    /// [`StoreError`] when DynamoDB failed (after the SDK's bounded retries).
    async fn record_exit(
        &self,
        id: &str,
        record: &HealthRecord,
        expected_restarts: u32,
        expected_last: Option<(&str, u64)>,
    ) -> Result<RecordOutcome, StoreError>;

    /// Clears `alarm_pending` on device `id` if its last recorded exit is still `task_arn`'s
    /// (idempotent).
    ///
    /// # Errors
    /// [`StoreError`] when DynamoDB failed.
    async fn alarm_published(&self, id: &str, task_arn: &str) -> Result<(), StoreError>;
}

/// `last_exit` as stored.
fn exit_attribute(exit: &TaskExit) -> AttributeValue {
    let mut map: Item = [
        ("task_arn", s(&exit.task_arn)),
        ("stop_code", s(&exit.stop_code)),
        ("reason", s(&exit.reason.chars().take(256).collect::<String>())),
        ("stopped_at", crate::store::rfc3339(exit.stopped_at)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if let Some(code) = exit.exit_code {
        map.insert("exit_code".into(), AttributeValue::N(code.to_string()));
    }
    AttributeValue::M(map)
}

/// The last recorded exit in a device item, when there is one.
pub(crate) fn exit_from_item(item: &Item) -> Option<TaskExit> {
    let map = item.get("last_exit")?.as_m().ok()?;
    let text = |k: &str| map.get(k).and_then(|v| v.as_s().ok()).cloned();
    let number =
        |k: &str| item.get(k).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i128>().ok());
    Some(TaskExit {
        task_arn: item.get("last_exit_task")?.as_s().ok()?.clone(),
        version: number("last_exit_version").and_then(|v| u64::try_from(v).ok()).unwrap_or(0),
        stopped_at: number("last_exit_at").and_then(from_unix_millis)?,
        stop_code: text("stop_code").unwrap_or_default(),
        exit_code: map.get("exit_code").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()),
        reason: text("reason").unwrap_or_default(),
    })
}

#[async_trait]
impl DeviceHealthStore for DynamoDeviceStore {
    async fn record_exit(
        &self,
        id: &str,
        record: &HealthRecord,
        expected_restarts: u32,
        expected_last: Option<(&str, u64)>,
    ) -> Result<RecordOutcome, StoreError> {
        let mut set: Vec<String> = [
            "#restarts = :restarts",
            "#last_exit = :last_exit",
            "#last_exit_task = :task",
            "#last_exit_version = :version",
            "#last_exit_at = :at",
        ]
        .map(str::to_owned)
        .to_vec();
        let mut remove = Vec::new();
        let mut vals: Item = [
            (":restarts", AttributeValue::N(record.restarts.to_string())),
            (":expected", AttributeValue::N(expected_restarts.to_string())),
            (":last_exit", exit_attribute(&record.exit)),
            (":task", s(&record.exit.task_arn)),
            (":version", AttributeValue::N(record.exit.version.to_string())),
            (":at", AttributeValue::N(unix_millis(record.exit.stopped_at).to_string())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (attr, value) in [
            ("restart_window_start", record.window_start),
            ("not_before", record.not_before),
            ("failed_at", record.failed_at),
        ] {
            match value {
                Some(at) => {
                    set.push(format!("#{attr} = :{attr}"));
                    vals.insert(format!(":{attr}"), millis_value(at));
                }
                None => remove.push(format!("#{attr}")),
            }
        }
        if record.alarm_pending {
            set.push("#alarm_pending = :alarm_pending".to_owned());
            vals.insert(":alarm_pending".into(), AttributeValue::Bool(true));
        } else {
            remove.push("#alarm_pending".to_owned());
        }
        let mut update = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            update.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        let last = match expected_last {
            None => "attribute_not_exists(#last_exit_task)".to_owned(),
            Some((task, version)) => {
                vals.insert(":prev_task".into(), s(task));
                vals.insert(":prev_version".into(), AttributeValue::N(version.to_string()));
                "(#last_exit_task = :prev_task AND #last_exit_version = :prev_version)".to_owned()
            }
        };
        let condition = format!(
            "attribute_exists(#id) AND (attribute_not_exists(#restarts) OR #restarts = :expected) AND {last}"
        );
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", s(id))
            .condition_expression(condition)
            .update_expression(update)
            .set_expression_attribute_names(Some(names(&[
                "id",
                "restarts",
                "last_exit",
                "last_exit_task",
                "last_exit_version",
                "last_exit_at",
                "restart_window_start",
                "not_before",
                "failed_at",
                "alarm_pending",
            ])))
            .set_expression_attribute_values(Some(vals))
            .send()
            .await;
        match result {
            Ok(_) => Ok(RecordOutcome::Recorded),
            Err(e) if is_conditional_failure(&e) => {
                match crate::store::get_consistent(&self.client, &self.table, id).await? {
                    None => Ok(RecordOutcome::NotFound),
                    Some(_) => Ok(RecordOutcome::Conflict),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn alarm_published(&self, id: &str, task_arn: &str) -> Result<(), StoreError> {
        // Refused: a later exit (or a deletion) replaced it, nothing pending of this one.
        self.update_if(
            id,
            "REMOVE #alarm_pending",
            "#last_exit_task = :task",
            &["last_exit_task", "alarm_pending"],
            (":task", s(task_arn)),
        )
        .await
        .map(|_| ())
    }
}
