//! Where streamer tasks run: the [`Tasks`] trait, implemented on ECS Fargate
//! ([`crate::ecs::EcsTasks`]) and by local processes ([`crate::local::ProcessTasks`]).
//!
//! A streamer task records one slot: it is started with `startedBy` = `streamstack/<slot>`
//! ([`started_by`]) and told its slot by the `PULL_ASSIGNMENT` environment variable, nothing
//! else (no URLs, no credentials: the task reads its slot and devices from DynamoDB).

use async_trait::async_trait;
use thiserror::Error;
use time::OffsetDateTime;

pub use streamstack_core::slot::{
    slot_of, started_by, ASSIGNMENT_ENV, STARTED_BY_PREFIX, STOP_REASON_PREFIX,
};

/// `clientToken` of the start of `slot` at `generation` under start claim `claim` (its
/// random token): 32 hex characters of SHA-256 (ECS allows 64 ASCII characters). The SDK's
/// retries of one RunTask resend it, so they start no second task. The claim token keeps it
/// unique across a slot's lives: a `dev-<id>` slot deleted and created again restarts at
/// generation 0, and ECS answers a token reused within 24 hours with the original (stopped)
/// task, or `ConflictException` when the parameters (the assignment tag) differ.
pub fn client_token(slot: &str, generation: u64, claim: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(format!("{slot}#{generation}#{claim}").as_bytes())[..16])
}

/// One streamer task as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    /// Task ARN.
    pub arn: String,
    /// The slot from its `startedBy`, when it is a reconciler's task.
    pub slot: Option<String>,
    /// Its `streamstack:assignment` tag: the slot's assignment digest at start.
    pub assignment: Option<String>,
    /// `lastStatus`: `PROVISIONING`, `PENDING`, `RUNNING`, `STOPPED`, …
    pub last_status: String,
    /// `desiredStatus`: `RUNNING` or `STOPPED`.
    pub desired_status: String,
    /// When ECS created it.
    pub created_at: Option<OffsetDateTime>,
}

impl TaskInfo {
    /// Whether the task is (going to be) running: desired `RUNNING` and not `STOPPED` yet.
    pub fn is_alive(&self) -> bool {
        self.desired_status == "RUNNING" && self.last_status != "STOPPED"
    }
}

/// A task to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRequest {
    /// The slot it records.
    pub slot: String,
    /// Idempotency token ([`client_token`]).
    pub client_token: String,
    /// The slot's assignment digest, tagged on the task.
    pub assignment: String,
}

/// A task backend call failed.
#[derive(Debug, Error)]
pub enum TaskError {
    /// The service answered with an error or could not be reached (after the SDK's bounded
    /// retries with backoff); the message carries the service's error context.
    #[error("{operation} failed: {message}")]
    Backend {
        /// API operation, e.g. `RunTask`.
        operation: &'static str,
        /// Error context.
        message: String,
    },
    /// RunTask answered without a task (e.g. capacity): `failures` as reported.
    #[error("RunTask started no task: {0}")]
    NotStarted(String),
}

/// Lists, starts and stops streamer tasks.
#[async_trait]
pub trait Tasks: Send + Sync {
    /// Every streamer task desired `RUNNING` (pending ones included).
    async fn list(&self) -> Result<Vec<TaskInfo>, TaskError>;

    /// The tasks among `arns` that the backend still knows (stopped ones included).
    async fn describe(&self, arns: &[String]) -> Result<Vec<TaskInfo>, TaskError>;

    /// Starts a task for `request.slot`; returns its ARN.
    async fn run(&self, request: &RunRequest) -> Result<String, TaskError>;

    /// Stops `arn` with `reason` (prefixed with [`STOP_REASON_PREFIX`] by the caller).
    async fn stop(&self, arn: &str, reason: &str) -> Result<(), TaskError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn started_by_and_tokens() {
        let slot = format!("dev-{}", "a".repeat(64));
        let by = started_by(&slot);
        assert!(by.len() <= 128);
        assert_eq!(slot_of(&by), Some(slot.as_str()));
        assert_eq!(slot_of("ecs-svc/123"), None);
        assert_eq!(client_token(&slot, 3, "c").len(), 32);
        assert_eq!(client_token(&slot, 3, "c"), client_token(&slot, 3, "c"));
        assert_ne!(client_token(&slot, 3, "c"), client_token(&slot, 4, "c"));
        // The same slot and generation in a later life of the slot: another token.
        assert_ne!(client_token(&slot, 1, "c"), client_token(&slot, 1, "d"));
    }
}
