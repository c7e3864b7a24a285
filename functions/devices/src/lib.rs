//! Devices reconciler: keeps streamer tasks matched to the online, enabled devices,
//! Kubernetes-controller style (observe, diff, act; level-triggered and idempotent).
//!
//! - [`plan`]: the pure diff from what is to what should be;
//! - [`reconcile`]: observing (tasks, slots, devices), running the plan with conditional
//!   writes, the [`reconcile::Report`];
//! - [`tasks`]: the task backend trait, on ECS Fargate ([`ecs`]) or local processes
//!   ([`local`]);
//! - [`events`]: which invocations need a reconcile (schedule, or a device change in a
//!   DynamoDB stream batch);
//! - [`calls`]: counting AWS requests per run;
//! - [`config`]: environment settings.
//!
//! Binaries: `reconciler` (the Lambda) and `devices-local` (the reconciler looping against a
//! local stack, starting `streamer pull` processes, delivering their stops to the task health
//! handler: [`local_loop`]).

#![warn(missing_docs)]

pub mod calls;
pub mod config;
pub mod ecs;
pub mod events;
pub mod local;
pub mod local_loop;
pub mod plan;
pub mod reconcile;
pub mod tasks;

use calls::{count_dynamodb, count_ecs, CallCounter};
use config::ReconcilerConfig;
use lambda_runtime::{Diagnostic, LambdaEvent};
use reconcile::{ReconcileError, Reconciler};
use serde_json::{json, Value};
use std::sync::Arc;
use streamstack_core::aws;
use streamstack_core::config::ConfigError;
use streamstack_core::device_store::DynamoDeviceStore;
use streamstack_core::slot::DynamoSlotStore;
use time::OffsetDateTime;

/// What the Lambda handler needs, built once per cold start.
pub struct Deps {
    /// The reconciler on ECS.
    pub reconciler: Reconciler,
    /// Requests made, by operation (reported per run, then reset).
    pub calls: CallCounter,
}

impl Deps {
    /// Builds the DynamoDB and ECS clients (counted) and the reconciler from the environment.
    ///
    /// # Errors
    /// [`ConfigError`] for a missing or malformed variable.
    pub async fn from_env() -> Result<Self, ConfigError> {
        let config = ReconcilerConfig::from_env()?;
        let ecs_settings = config::ecs_from_env()?;
        let sdk = aws::sdk_config(config.endpoint_url.as_deref()).await;
        let calls = CallCounter::default();
        let dynamodb = count_dynamodb(&aws::dynamodb(&sdk), &calls);
        let ecs = count_ecs(&aws::ecs(&sdk), &calls);
        Ok(Self {
            reconciler: reconciler(
                &config,
                &dynamodb,
                Arc::new(ecs::EcsTasks::new(ecs, ecs_settings)),
            ),
            calls,
        })
    }
}

/// A reconciler on `config`'s tables through `dynamodb`, starting tasks with `tasks`.
pub fn reconciler(
    config: &ReconcilerConfig,
    dynamodb: &aws_sdk_dynamodb::Client,
    tasks: Arc<dyn tasks::Tasks>,
) -> Reconciler {
    Reconciler {
        devices: Arc::new(DynamoDeviceStore::new(dynamodb.clone(), &config.devices_table)),
        slots: Arc::new(DynamoSlotStore::new(dynamodb.clone(), &config.slots_table)),
        tasks,
        settings: config.plan,
        dry_run: config.dry_run,
    }
}

/// The handler error: observing failed (retryable; the stream batch is retried or bisected).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct HandlerError(#[from] ReconcileError);

impl From<HandlerError> for Diagnostic {
    fn from(e: HandlerError) -> Self {
        Diagnostic { error_type: "ReconcileError".into(), error_message: e.to_string() }
    }
}

/// Handles a scheduled event or a devices-table stream batch: reconciles when needed and
/// answers with the [`reconcile::Report`] and the AWS requests it made.
///
/// # Errors
/// [`HandlerError`] when the tables or tasks could not be read.
pub async fn handle(deps: &Deps, event: LambdaEvent<Value>) -> Result<Value, HandlerError> {
    let window = deps.reconciler.settings.device.online_window;
    let trigger = events::classify(&event.payload, OffsetDateTime::now_utc(), window);
    if !trigger.should_reconcile() {
        tracing::debug!(?trigger, "no device change that needs a reconcile");
        return Ok(json!({ "reconciled": false }));
    }
    deps.calls.reset();
    let started = std::time::Instant::now();
    let report = deps.reconciler.run().await?;
    let calls = deps.calls.snapshot();
    tracing::info!(
        ?trigger,
        report = %json!(report),
        calls = %json!(calls),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "reconciled"
    );
    Ok(json!({ "reconciled": true, "report": report, "calls": calls }))
}
