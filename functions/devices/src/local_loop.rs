//! The local stack's control loop: what ECS, EventBridge and the Lambdas do in AWS, in one
//! process. Each step delivers the stops of local streamer processes to the task health
//! handler as "ECS Task State Change" events (as EventBridge would), then reconciles.

use crate::local::ProcessTasks;
use crate::reconcile::{ReconcileError, Reconciler, Report};
use health::task::event::Envelope;
use health::task::{Outcome, TaskHealth};
use std::sync::Arc;
use time::OffsetDateTime;

/// One local control loop.
pub struct LocalLoop {
    /// The processes standing in for ECS tasks.
    pub tasks: Arc<ProcessTasks>,
    /// The reconciler starting and stopping them.
    pub reconciler: Reconciler,
    /// The task health handler (`None`: stops are not delivered).
    pub health: Option<TaskHealth>,
}

/// What one [`LocalLoop::step`] did.
#[derive(Debug)]
pub struct Step {
    /// The health handler's outcome per stopped process.
    pub stops: Vec<Outcome>,
    /// The reconcile that followed.
    pub report: Report,
}

impl LocalLoop {
    /// Delivers the processes' stops, then reconciles. A health handler failure is logged and
    /// the event dropped (the local stack has no retry queue; the reconciler still repairs).
    ///
    /// # Errors
    /// [`ReconcileError`] when the reconcile could not observe.
    pub async fn step(&self) -> Result<Step, ReconcileError> {
        let mut stops = Vec::new();
        for event in self.tasks.take_stopped().await {
            let Some(health) = &self.health else { continue };
            let Ok(envelope) = serde_json::from_value::<Envelope>(event) else { continue };
            match health.handle(&envelope, OffsetDateTime::now_utc()).await {
                Ok(outcome) => {
                    tracing::info!(outcome = %serde_json::json!(outcome), "task stop handled");
                    stops.push(outcome);
                }
                Err(error) => tracing::warn!(%error, "task health handler failed"),
            }
        }
        Ok(Step { stops, report: self.reconciler.run().await? })
    }
}
