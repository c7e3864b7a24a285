//! What a run reports: the steps taken per gateway ([`Action`]), the per-gateway
//! [`GatewayReport`] and the invocation's JSON [`Report`], and the [`RunError`] that stops a
//! gateway's steps.

use super::ec2::Ec2Error;
use super::model::{Lifecycle, Status};
use super::plan::{Decision, Probe, Trigger};
use crate::alarm::AlarmError;
use serde::Serialize;
use streamstack_core::store::StoreError;

/// A run could not observe what it needs, or a step failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// An EC2 call failed.
    #[error(transparent)]
    Ec2(#[from] Ec2Error),
    /// The state table failed.
    #[error("gateway state table: {0}")]
    Store(#[from] StoreError),
    /// An alarm could not be published.
    #[error(transparent)]
    Alarm(#[from] AlarmError),
    /// The recovery cannot go on (no launch spec or image, lock lost).
    #[error("recovery of gateway {gateway_id}: {reason}")]
    Recovery {
        /// The gateway.
        gateway_id: String,
        /// Why.
        reason: String,
    },
}

/// One thing done (or, in dry-run mode, that would be done).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// First row written for a gateway.
    Adopt {
        /// Its current instance.
        instance_id: String,
        /// Its Elastic IP allocation, if found.
        allocation_id: Option<String>,
    },
    /// The Elastic IP allocation seen on the current instance recorded.
    RecordAllocation {
        /// Allocation id.
        allocation_id: String,
    },
    /// Consecutive health-URL failures recorded.
    RecordFailures {
        /// The count.
        failures: u32,
    },
    /// Row back to healthy, failures cleared.
    MarkHealthy,
    /// The current instance's launch settings kept in the row (for a replacement launched
    /// once EC2 no longer describes it).
    SaveLaunch,
    /// `RebootInstances`.
    Reboot {
        /// The instance.
        instance_id: String,
    },
    /// The recovery lock taken.
    Lock,
    /// `RunInstances` of a replacement.
    Launch {
        /// Image launched.
        image_id: String,
        /// Idempotency token.
        client_token: String,
        /// The replacement (none in dry-run mode).
        instance_id: Option<String>,
    },
    /// A replacement launched earlier was found (recorded or tagged).
    Replacement {
        /// The replacement.
        instance_id: String,
    },
    /// Waited for the replacement to run.
    AwaitRunning {
        /// The replacement.
        instance_id: String,
        /// Its state when the wait ended.
        lifecycle: Lifecycle,
    },
    /// `AssociateAddress` of the gateway's Elastic IP with the replacement.
    AssociateAddress {
        /// Allocation id.
        allocation_id: String,
        /// The replacement.
        instance_id: String,
    },
    /// `TerminateInstances` of the failed instance.
    Terminate {
        /// The failed instance.
        instance_id: String,
    },
    /// Row moved to the replacement, healthy, lock released.
    FinishRecovery {
        /// The new current instance.
        instance_id: String,
    },
    /// An SNS alarm.
    Alarm {
        /// Its subject.
        subject: String,
    },
    /// `CreateImage` of this interval's backup.
    CreateImage {
        /// Image name.
        name: String,
        /// The new image (none in dry-run mode, or when the name existed).
        image_id: Option<String>,
    },
    /// `DeregisterImage` and `DeleteSnapshot` of a pruned backup.
    DeleteImage {
        /// The image.
        image_id: String,
    },
    /// A step not taken.
    Skipped {
        /// Why.
        reason: String,
    },
}

/// What happened to one gateway.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayReport {
    /// The gateway.
    pub gateway_id: String,
    /// Its current instance (before a recovery).
    pub instance_id: String,
    /// Its status checks, if observed.
    pub status: Option<Status>,
    /// Its health URL check.
    pub probe: Probe,
    /// The decision.
    pub decision: Decision,
    /// Steps done (or planned, in dry-run mode), in order.
    pub actions: Vec<Action>,
    /// The error that stopped the steps, if any.
    pub error: Option<String>,
}

/// What one invocation did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// What invoked it.
    pub trigger: Trigger,
    /// Nothing was changed: `actions` are the plan.
    pub dry_run: bool,
    /// Per gateway.
    pub gateways: Vec<GatewayReport>,
    /// Why the event was ignored as a whole (an instance that is not a gateway).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
}

impl Report {
    /// Whether any gateway's steps stopped on an error.
    pub fn has_errors(&self) -> bool {
        self.gateways.iter().any(|g| g.error.is_some())
    }
}

/// The report of a gateway whose steps stopped on `e` before it was observed.
pub(super) fn error_report(
    gateway_id: &str,
    instance_id: Option<&str>,
    actions: Vec<Action>,
    e: &RunError,
) -> GatewayReport {
    tracing::error!(gateway_id, error = %e, "gateway check failed");
    GatewayReport {
        gateway_id: gateway_id.into(),
        instance_id: instance_id.unwrap_or_default().into(),
        status: None,
        probe: Probe::NotChecked,
        decision: Decision::Wait { reason: "not observed".into() },
        actions,
        error: Some(e.to_string()),
    }
}
