//! The EventBridge "ECS Task State Change" event (source `aws.ecs`), the fields the health
//! handler reads, and what a stop means for a streamer task.
//!
//! Shape (Amazon ECS Developer Guide, "Amazon ECS task state change events"): an EventBridge
//! envelope (`id`, `detail-type`, `source`, `time`, `resources`) whose `detail` is the task:
//! `taskArn`, `clusterArn`, `group` (`family:<name>` for RunTask, `service:<name>` for a
//! service's tasks), `startedBy`, `lastStatus`, `desiredStatus`, `stopCode`, `stoppedReason`,
//! `containers[]` (`name`, `exitCode`, `reason`), `createdAt`/`startedAt`/`stoppedAt`
//! (RFC 3339) and `version` (incremented with every change of the task; EventBridge may
//! deliver an event more than once and out of order).

use serde::Deserialize;
use streamstack_core::slot::STOP_REASON_PREFIX;
use time::OffsetDateTime;

/// `detail-type` of the events handled here.
pub const DETAIL_TYPE: &str = "ECS Task State Change";

/// The EventBridge envelope.
#[derive(Debug, Clone, Deserialize)]
pub struct Envelope {
    /// Event id (the same for a redelivery).
    #[serde(default)]
    pub id: String,
    /// `ECS Task State Change` for the events handled here.
    #[serde(rename = "detail-type", default)]
    pub detail_type: String,
    /// When EventBridge received it.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub time: Option<OffsetDateTime>,
    /// The task (for other detail types: whatever it is, unread).
    pub detail: serde_json::Value,
}

/// `detail` of a task state change (fields not listed are ignored).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskDetail {
    /// Task ARN.
    pub task_arn: String,
    /// Cluster ARN.
    #[serde(default)]
    pub cluster_arn: String,
    /// `family:<task definition family>` or `service:<service name>`.
    #[serde(default)]
    pub group: Option<String>,
    /// Who started it: `streamstack/<slot>` for the reconciler's tasks, `ecs-svc/<id>` for
    /// a service's.
    #[serde(default)]
    pub started_by: Option<String>,
    /// `PROVISIONING` … `RUNNING` … `STOPPED`.
    pub last_status: String,
    /// `RUNNING` or `STOPPED`.
    #[serde(default)]
    pub desired_status: String,
    /// Why it stopped: `EssentialContainerExited`, `TaskFailedToStart`, `UserInitiated`,
    /// `SpotInterruption`, `ServiceSchedulerInitiated`, `TerminationNotice`, …
    #[serde(default)]
    pub stop_code: Option<String>,
    /// Free text: for a `StopTask` the caller's reason (ours start with
    /// [`STOP_REASON_PREFIX`]).
    #[serde(default)]
    pub stopped_reason: Option<String>,
    /// The containers, with their exit codes once stopped.
    #[serde(default)]
    pub containers: Vec<Container>,
    /// When the task started running (absent if it never did).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub started_at: Option<OffsetDateTime>,
    /// When it stopped.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub stopped_at: Option<OffsetDateTime>,
    /// Incremented with every change of the task.
    #[serde(default)]
    pub version: u64,
}

/// One container of the task.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    /// Container name.
    #[serde(default)]
    pub name: String,
    /// Exit code once it stopped.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Why it stopped (e.g. `CannotPullContainerError: …`).
    #[serde(default)]
    pub reason: Option<String>,
}

/// What a stop means for a streamer task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopKind {
    /// The reconciler stopped it ([`STOP_REASON_PREFIX`]): intended, never restarted here.
    Intended,
    /// The task's own failure (non-zero exit, failed to start, an unknown stop code): counts
    /// towards the crash loop and gets a restart backoff.
    Failure,
    /// Stopped from outside without fault of its own (Spot interruption, host health,
    /// someone else's `StopTask`, a clean exit): restarted at once, not counted.
    Interrupted,
}

impl TaskDetail {
    /// Whether the task has stopped (`lastStatus` `STOPPED`).
    pub fn is_stopped(&self) -> bool {
        self.last_status == "STOPPED"
    }

    /// The essential container's exit code: the first container that reported one.
    pub fn exit_code(&self) -> Option<i32> {
        self.containers.iter().find_map(|c| c.exit_code)
    }

    /// The stop reason, falling back to the first container's reason.
    pub fn reason(&self) -> String {
        self.stopped_reason
            .clone()
            .or_else(|| self.containers.iter().find_map(|c| c.reason.clone()))
            .unwrap_or_default()
    }

    /// Classifies the stop.
    pub fn stop_kind(&self) -> StopKind {
        if self.stopped_reason.as_deref().is_some_and(|r| r.starts_with(STOP_REASON_PREFIX)) {
            return StopKind::Intended;
        }
        match self.stop_code.as_deref().unwrap_or("") {
            "SpotInterruption"
            | "TerminationNotice"
            | "InfrastructureHealth"
            | "ServiceSchedulerInitiated"
            | "UserInitiated" => StopKind::Interrupted,
            "EssentialContainerExited" if self.exit_code() == Some(0) => StopKind::Interrupted,
            _ => StopKind::Failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(code: &str, reason: &str, exit: Option<i32>) -> TaskDetail {
        serde_json::from_value(serde_json::json!({
            "taskArn": "arn:aws:ecs:us-east-1:1:task/c/t", "lastStatus": "STOPPED",
            "stopCode": code, "stoppedReason": reason,
            "containers": [{"name": "streamer", "exitCode": exit}],
        }))
        .unwrap()
    }

    #[test]
    fn stops_are_classified() {
        let ours = format!("{STOP_REASON_PREFIX} device disabled");
        assert_eq!(detail("UserInitiated", &ours, Some(0)).stop_kind(), StopKind::Intended);
        assert_eq!(detail("UserInitiated", "console", None).stop_kind(), StopKind::Interrupted);
        assert_eq!(detail("SpotInterruption", "", None).stop_kind(), StopKind::Interrupted);
        let crash =
            detail("EssentialContainerExited", "Essential container in task exited", Some(137));
        assert_eq!(crash.stop_kind(), StopKind::Failure);
        assert_eq!(crash.exit_code(), Some(137));
        let clean = detail("EssentialContainerExited", "exited", Some(0));
        assert_eq!(clean.stop_kind(), StopKind::Interrupted);
        assert_eq!(detail("TaskFailedToStart", "CannotPull", None).stop_kind(), StopKind::Failure);
        assert_eq!(detail("SomethingNew", "", None).stop_kind(), StopKind::Failure);
    }
}
