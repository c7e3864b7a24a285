//! EC2 media gateways: health checks, reboot, recovery onto a replacement instance with the
//! Elastic IP moved, and image backups per RPO (the `gateway-health` Lambda).
//!
//! A gateway is an EC2 instance tagged `GATEWAY_TAG_KEY = GATEWAY_TAG_VALUE` (default
//! `streamstack:role = media-gateway`), identified across replacements by its
//! [`model::GATEWAY_ID_TAG`] tag (else its instance id), with an Elastic IP customers'
//! cameras and networks know.
//!
//! - [`plan`]: the pure decisions (health rules, backup schedule), unit-tested rule by rule;
//! - [`ec2`]: the EC2 trait and its SDK adapter;
//! - [`store`]: the gateway state table (phase, failures, recovery lock), its items in
//!   [`row`];
//! - [`probe`]: the gateway software's health URL;
//! - [`run`]: the entry points and observing, with the steps split by seam into
//!   [`act`] (deciding and acting: the check / reboot path), [`recovery`] (recovery onto a
//!   replacement under a lock), [`backup`] (image backups per RPO) and [`report`] (the JSON
//!   [`run::Report`] and [`run::RunError`]);
//! - [`events`]: the EventBridge events (schedule, EC2 state change);
//! - [`config`]: environment settings.
//!
//! Each scheduled run (default every 5 minutes) walks every gateway EC2 lists and every row
//! of the state table (so a gateway whose instance EC2 no longer describes is still
//! recovered, from the launch settings its row keeps), at most four at a time within the
//! invocation's time budget: `DescribeInstanceStatus` and the health URL; a sick gateway (status check impaired, or the health URL failing
//! `GATEWAY_HEALTH_FAILURES` times in a row) is rebooted once; still sick
//! `GATEWAY_REBOOT_GRACE_SECS` later, it is recovered: a replacement launched from its newest
//! available backup image (else its own image) with the same type, subnet, security groups,
//! key, instance profile and tags, awaited (bounded; resumed next run if still pending), the
//! Elastic IP re-associated, the failed instance terminated, an SNS alarm published. A
//! gateway that stops or terminates without this function's doing is recovered on its EC2
//! state-change event. Healthy gateways get one `CreateImage` (`NoReboot`) per RPO interval;
//! images beyond the retention count are deleted, never the newest available one.

pub mod act;
pub mod backup;
pub mod config;
pub mod ec2;
pub mod events;
pub mod model;
pub mod plan;
pub mod probe;
pub mod recovery;
pub mod report;
pub mod row;
pub mod run;
pub mod store;

use crate::alarm::SnsAlarms;
use config::GatewayConfig;
use events::{Event, EventError};
use lambda_runtime::{Diagnostic, LambdaEvent};
use run::{Gateways, Report, RunError};
use serde_json::Value;
use std::sync::Arc;
use streamstack_core::aws;
use streamstack_core::config::ConfigError;
use time::OffsetDateTime;

/// The function could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A missing or malformed environment variable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The health URL client could not be built.
    #[error("health URL client: {0}")]
    Http(#[from] reqwest::Error),
}

/// What the Lambda handler needs, built once per cold start.
pub struct Deps {
    /// The checker.
    pub gateways: Gateways,
}

impl Deps {
    /// Reads [`GatewayConfig`] from the environment and builds the EC2, DynamoDB and SNS
    /// clients (`streamstack_core::aws`, with their timeouts) and the health URL client.
    ///
    /// # Errors
    /// [`SetupError`].
    pub async fn from_env() -> Result<Self, SetupError> {
        let config = GatewayConfig::from_env()?;
        let sdk = aws::sdk_config(config.endpoint_url.as_deref()).await;
        let gateways = gateways(config, aws::ec2(&sdk), aws::dynamodb(&sdk), aws::sns(&sdk))?;
        Ok(Self { gateways })
    }
}

/// A checker on `config` through the given clients (build them with `streamstack_core::aws`,
/// which sets their timeouts).
///
/// # Errors
/// [`SetupError::Http`] when the health URL client cannot be built.
pub fn gateways(
    config: GatewayConfig,
    ec2: aws_sdk_ec2::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    sns: aws_sdk_sns::Client,
) -> Result<Gateways, SetupError> {
    Ok(Gateways {
        ec2: Arc::new(ec2::SdkEc2::new(ec2)),
        store: Arc::new(store::DynamoGatewayStore::new(dynamodb, &config.table)),
        alarms: Arc::new(SnsAlarms::new(sns, config.alarm_topic_arn.clone())),
        probe: probe::HttpProbe::new(config.health_timeout)?,
        config,
    })
}

/// The handler error.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// A malformed event (not retried usefully).
    #[error(transparent)]
    Event(#[from] EventError),
    /// Observing or acting failed (retryable: every step is idempotent).
    #[error(transparent)]
    Run(#[from] RunError),
}

impl From<HandlerError> for Diagnostic {
    fn from(e: HandlerError) -> Self {
        let error_type = match &e {
            HandlerError::Event(_) => "UnexpectedEvent",
            HandlerError::Run(_) => "GatewayRunError",
        };
        Diagnostic { error_type: error_type.into(), error_message: e.to_string() }
    }
}

/// Runs the invocation `payload` at `now` within the configured budget
/// (`GATEWAY_BUDGET_SECS`): see [`dispatch_until`].
///
/// # Errors
/// As [`dispatch_until`].
pub async fn dispatch(
    gateways: &Gateways,
    payload: &Value,
    now: OffsetDateTime,
) -> Result<Report, HandlerError> {
    dispatch_until(gateways, payload, now, None).await
}

/// Runs the invocation `payload` at `now`: a scheduled event checks every gateway, an EC2
/// state change the one gateway it concerns, another EventBridge event is reported ignored.
/// No recovery or wait starts past `deadline` minus [`config::FINISH_RESERVE`] (default:
/// now plus the configured budget).
///
/// # Errors
/// [`HandlerError`]: a malformed event, or a run that could not observe (a state-change run
/// also fails when one of its steps did).
pub async fn dispatch_until(
    gateways: &Gateways,
    payload: &Value,
    now: OffsetDateTime,
    deadline: Option<tokio::time::Instant>,
) -> Result<Report, HandlerError> {
    let deadline = deadline.unwrap_or_else(|| tokio::time::Instant::now() + gateways.config.budget);
    let report = match events::parse(payload)? {
        Event::Schedule => gateways.on_schedule(now, deadline).await?,
        Event::StateChange(d) => {
            gateways.on_state_change(&d.instance_id, &d.state, now, deadline).await?
        }
        Event::Other { detail_type } => {
            tracing::warn!(detail_type, "ignoring an event of another kind");
            Report {
                trigger: plan::Trigger::Other { detail_type: detail_type.clone() },
                dry_run: gateways.config.dry_run,
                gateways: vec![],
                ignored: Some(format!("not a handled event kind: {detail_type:?}")),
            }
        }
    };
    Ok(report)
}

/// The invocation's deadline from the Lambda context (`deadline`, ms since the epoch), as a
/// monotonic instant; `None` when the context has none (0) or it passed.
pub fn context_deadline(deadline_ms: u64) -> Option<tokio::time::Instant> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let left = deadline_ms.checked_sub(now_ms).filter(|ms| *ms > 0)?;
    Some(tokio::time::Instant::now() + std::time::Duration::from_millis(left))
}

/// The Lambda handler: [`dispatch_until`] at the current time and the context's deadline;
/// answers with the [`Report`] as JSON (also logged).
///
/// # Errors
/// As [`dispatch_until`].
pub async fn handle(deps: &Deps, event: LambdaEvent<Value>) -> Result<Value, HandlerError> {
    let started = std::time::Instant::now();
    let deadline = context_deadline(event.context.deadline);
    let report =
        dispatch_until(&deps.gateways, &event.payload, OffsetDateTime::now_utc(), deadline).await?;
    let value = serde_json::to_value(&report).unwrap_or(Value::Null);
    tracing::info!(report = %value, elapsed_ms = started.elapsed().as_millis() as u64, "gateways checked");
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lambda_deadline_bounds_the_run() {
        assert!(context_deadline(0).is_none(), "no deadline in the context");
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        assert!(context_deadline(now_ms.saturating_sub(1000)).is_none(), "passed");
        let left = context_deadline(now_ms + 10_000)
            .map(|d| d.saturating_duration_since(tokio::time::Instant::now()))
            .expect("a deadline");
        assert!(
            left > std::time::Duration::from_secs(8) && left <= std::time::Duration::from_secs(10)
        );
    }
}
