//! One reconcile: observe (tasks first, then slots, then devices), [`plan`], act.
//!
//! Level-triggered and idempotent: a run only compares what is with what should be, so a
//! redelivered or concurrent invocation, a crash half-way or a failed call is repaired by the
//! next run. Each action is one or a few conditional writes (see [`crate::plan`] and
//! `streamstack_core::slot` for why two reconcilers never start two tasks for one slot).
//!
//! AWS calls, with N devices, S slots and T tasks (K devices per task):
//! - every run: `ListTasks` ⌈T/100⌉ pages + `DescribeTasks` ⌈T/100⌉, `Scan` of slots and devices
//!   (1 MB pages: a few thousand items each). At steady state with K = 1 and 10,000 devices:
//!   ~200 ECS calls and ~10 scans, ~0.02 calls per device.
//! - a new device: `UpdateItem` (claim) + `PutItem`/`UpdateItem` (slot), and per new task
//!   `UpdateItem` (start claim) + `RunTask` + `UpdateItem` (record) + one `UpdateItem` per
//!   device (its task ARN): 6 calls per device with K = 1, ~3.75 with K = 4.
//! - a device leaving: `UpdateItem` ×2, and per emptied slot `StopTask` + `DeleteItem`.

use crate::plan::{plan, Action, PlanSettings, View};
use crate::tasks::{client_token, RunRequest, TaskError, Tasks, STOP_REASON_PREFIX};
use futures::stream::{self, StreamExt};
use std::collections::BTreeMap;
use std::sync::Arc;
use streamstack_core::device_store::DeviceStore;
use streamstack_core::slot::{Slot, SlotStore, StartClaim, RECORDED_TASK_GRACE};
use streamstack_core::StoreError;
use thiserror::Error;
use time::{Duration, OffsetDateTime};

/// How long a start claim holds: a reconciler that dies between its claim and recording the
/// task blocks the slot's start this long (then the task it may have started is adopted by
/// its `startedBy`, or a new one started).
pub const START_CLAIM: Duration = Duration::seconds(60);

/// Actions run at once.
const CONCURRENCY: usize = 16;

/// Observing failed: nothing was changed.
#[derive(Debug, Error)]
pub enum ReconcileError {
    /// Reading devices or slots failed.
    #[error("reading the tables failed: {0}")]
    Store(#[from] StoreError),
    /// Listing tasks failed.
    #[error("listing tasks failed: {0}")]
    Tasks(#[from] TaskError),
}

/// What one run saw and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// Devices read.
    pub devices: usize,
    /// Slots read.
    pub slots: usize,
    /// Live tasks listed.
    pub tasks: usize,
    /// Actions planned (all of them, in dry-run mode: none executed).
    pub planned: usize,
    /// Devices assigned to a slot.
    pub assigned: usize,
    /// Devices taken out of a slot.
    pub unassigned: usize,
    /// Slot digests updated after a URL change.
    pub url_changes: usize,
    /// Tasks started.
    pub started: usize,
    /// Tasks stopped.
    pub stopped: usize,
    /// Empty slots deleted.
    pub slots_deleted: usize,
    /// Devices aged out.
    pub aged_out: usize,
    /// Actions skipped because another reconciler got there first (a lost conditional write).
    pub contended: usize,
    /// Actions that failed (retried by the next run).
    pub failed: usize,
}

/// Outcome of one action.
enum Done {
    Assigned,
    Unassigned,
    UrlChanged,
    Started,
    Stopped,
    SlotDeleted,
    AgedOut,
    Contended,
    Nothing,
}

/// The reconciler: stores, task backend, settings.
pub struct Reconciler {
    /// Devices table.
    pub devices: Arc<dyn DeviceStore>,
    /// Slots table.
    pub slots: Arc<dyn SlotStore>,
    /// Where tasks run.
    pub tasks: Arc<dyn Tasks>,
    /// Plan knobs.
    pub settings: PlanSettings,
    /// Log the plan, change nothing (`RECONCILER_DRY_RUN=true`).
    pub dry_run: bool,
}

/// A failed action, for the log.
#[derive(Debug, Error)]
enum ActError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tasks(#[from] TaskError),
}

impl Reconciler {
    /// Observes, plans and acts once.
    ///
    /// # Errors
    /// [`ReconcileError`] when observing failed (then nothing was changed). Failed actions
    /// are logged and counted in [`Report::failed`], not returned.
    pub async fn run(&self) -> Result<Report, ReconcileError> {
        // Order matters: a task listed here had its slot written before, so it is in `slots`.
        let tasks = self.tasks.list().await?;
        let slots = self.slots.scan_all().await?;
        let devices = self.devices.scan_all().await?;
        let view = View { now: OffsetDateTime::now_utc(), devices, slots, tasks };
        let actions = plan(&view, &self.settings);
        let mut report = Report {
            devices: view.devices.len(),
            slots: view.slots.len(),
            tasks: view.tasks.len(),
            planned: actions.len(),
            ..Report::default()
        };
        if self.dry_run {
            for action in &actions {
                tracing::info!(?action, "dry run: would act");
            }
            return Ok(report);
        }
        let (first, second): (Vec<Action>, Vec<Action>) = actions.into_iter().partition(|a| {
            !matches!(a, Action::Start { .. } | Action::Verify { .. } | Action::DeleteSlot { .. })
        });
        for phase in [first, second] {
            let outcomes: Vec<_> = stream::iter(phase)
                .map(|action| async move {
                    let label = label(&action);
                    (label, self.act(action, view.now).await)
                })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            for (label, outcome) in outcomes {
                match outcome {
                    Ok(done) => tally(&mut report, done),
                    Err(error) => {
                        report.failed += 1;
                        tracing::warn!(action = %label, %error, "reconcile action failed; the next run retries");
                    }
                }
            }
        }
        Ok(report)
    }

    async fn act(&self, action: Action, now: OffsetDateTime) -> Result<Done, ActError> {
        match action {
            Action::AgeOut { device } => {
                let deleted = self.devices.delete_unseen(&device).await?;
                if deleted {
                    tracing::info!(device = %device.id, last_seen = %device.last_seen(), "device aged out");
                }
                Ok(if deleted { Done::AgedOut } else { Done::Contended })
            }
            Action::Unassign { slot, device, why } => {
                self.slots.remove_device(&slot, &device).await?;
                self.devices.release_slot(&device, &slot).await?;
                tracing::info!(%slot, %device, why, "device unassigned");
                Ok(Done::Unassigned)
            }
            Action::SetDigest { slot, device, digest } => {
                let set = self.slots.set_digest(&slot, &device, &digest).await?;
                tracing::info!(%slot, %device, "device URL changed: its task restarts the pull");
                Ok(if set { Done::UrlChanged } else { Done::Contended })
            }
            Action::Assign { slot, exists, device, digest } => {
                if !self.devices.claim_slot(&device, &slot).await? {
                    return Ok(Done::Contended);
                }
                let capacity = self.settings.devices_per_task.max(1);
                let mut added =
                    self.slots.add_device(&slot, exists, &device, &digest, capacity).await?;
                if !added && !exists {
                    // Created meanwhile (a concurrent reconciler assigning the same device).
                    added = self.slots.add_device(&slot, true, &device, &digest, capacity).await?;
                }
                if !added {
                    self.devices.release_slot(&device, &slot).await?;
                    return Ok(Done::Contended);
                }
                tracing::info!(%slot, %device, "device assigned");
                Ok(Done::Assigned)
            }
            Action::Start { slot, generation, devices } => {
                self.start(&slot, generation, &devices, now).await
            }
            Action::Verify { slot, task_arn, generation, devices, started_at } => {
                let described = self.tasks.describe(std::slice::from_ref(&task_arn)).await?;
                match described.iter().find(|t| t.arn == task_arn) {
                    Some(task) if task.is_alive() => {
                        self.record_devices(&slot, &devices, &task_arn).await?;
                        return Ok(Done::Nothing);
                    }
                    // Known and stopped: replace it now.
                    Some(_) => {}
                    // Unknown: not visible yet (eventual consistency), or long gone.
                    None if started_at.is_some_and(|t| now - t < RECORDED_TASK_GRACE) => {
                        return Ok(Done::Nothing)
                    }
                    None => {}
                }
                self.slots.clear_task(&slot, &task_arn).await?;
                self.start(&slot, generation, &devices, now).await
            }
            Action::Stop { task_arn, reason } => {
                self.tasks.stop(&task_arn, &format!("{STOP_REASON_PREFIX} {reason}")).await?;
                tracing::info!(task = %task_arn, %reason, "task stopped");
                Ok(Done::Stopped)
            }
            Action::DeleteSlot { slot, generation } => {
                let deleted = self.slots.delete_empty(&slot, generation).await?;
                Ok(if deleted { Done::SlotDeleted } else { Done::Contended })
            }
            Action::RecordTask { device, slot, task_arn } => {
                self.devices.set_task(&device, &slot, Some(&task_arn)).await?;
                Ok(Done::Nothing)
            }
        }
    }

    /// Claims the start at `generation`, runs the task, records it on the slot and devices.
    /// `now` is the view's instant (a claim that lapsed by then may be taken); the claim
    /// lasts [`START_CLAIM`] from the clock at claim time, not from the view, which may be
    /// tens of seconds old after the first phase of a large run. A task whose claim was lost
    /// before it could be recorded (another reconciler took the lapsed claim and starts its
    /// own, or the slot was deleted) is stopped at once.
    async fn start(
        &self,
        slot: &str,
        generation: u64,
        devices: &BTreeMap<String, String>,
        now: OffsetDateTime,
    ) -> Result<Done, ActError> {
        let claim = StartClaim {
            token: uuid::Uuid::new_v4().simple().to_string(),
            until: OffsetDateTime::now_utc().max(now) + START_CLAIM,
        };
        let Some(next) = self.slots.claim_start(slot, generation, &claim, now).await? else {
            return Ok(Done::Contended);
        };
        let assignment = Slot {
            id: slot.to_owned(),
            devices: devices.clone(),
            generation: next,
            task_arn: None,
            start: None,
            started_at: None,
        }
        .assignment_digest();
        let request = RunRequest {
            slot: slot.to_owned(),
            client_token: client_token(slot, next, &claim.token),
            assignment,
        };
        let arn = self.tasks.run(&request).await?;
        tracing::info!(%slot, task = %arn, devices = devices.len(), "task started");
        if !self.slots.record_task(slot, &claim.token, &arn).await? {
            tracing::warn!(%slot, task = %arn, "start claim lost before the task was recorded: stopping it");
            let reason = format!("{STOP_REASON_PREFIX} start claim lost");
            self.tasks.stop(&arn, &reason).await?;
            return Ok(Done::Contended);
        }
        self.record_devices(slot, devices, &arn).await?;
        Ok(Done::Started)
    }

    async fn record_devices(
        &self,
        slot: &str,
        devices: &BTreeMap<String, String>,
        arn: &str,
    ) -> Result<(), StoreError> {
        for device in devices.keys() {
            self.devices.set_task(device, slot, Some(arn)).await?;
        }
        Ok(())
    }
}

fn label(action: &Action) -> String {
    match action {
        Action::AgeOut { device } => format!("age out {}", device.id),
        Action::Unassign { slot, device, .. } => format!("unassign {device} from {slot}"),
        Action::SetDigest { slot, device, .. } => format!("new URL of {device} in {slot}"),
        Action::Assign { slot, device, .. } => format!("assign {device} to {slot}"),
        Action::Start { slot, .. } => format!("start task of {slot}"),
        Action::Verify { slot, .. } => format!("verify task of {slot}"),
        Action::Stop { task_arn, .. } => format!("stop {task_arn}"),
        Action::DeleteSlot { slot, .. } => format!("delete slot {slot}"),
        Action::RecordTask { device, .. } => format!("record task of {device}"),
    }
}

fn tally(report: &mut Report, done: Done) {
    match done {
        Done::Assigned => report.assigned += 1,
        Done::Unassigned => report.unassigned += 1,
        Done::UrlChanged => report.url_changes += 1,
        Done::Started => report.started += 1,
        Done::Stopped => report.stopped += 1,
        Done::SlotDeleted => report.slots_deleted += 1,
        Done::AgedOut => report.aged_out += 1,
        Done::Contended => report.contended += 1,
        Done::Nothing => {}
    }
}

#[cfg(test)]
#[path = "reconcile_tests.rs"]
mod tests;
