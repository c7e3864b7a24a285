//! The stream state of a pulled source (`receiving` | `reconnecting` | `stopped`, last error,
//! bytes in):
//! logged on every change (repeated failures at exponentially spaced attempts), and written
//! to the target's item ([`streamstack_core::stream_state`]) on every change and at most
//! every [`STATE_INTERVAL`] otherwise, in the background so a slow table never delays ingest.

use std::sync::Arc;
use std::time::{Duration, Instant};
use streamstack_core::stream_state::{
    StreamState, StreamStateError, StreamStateStore, StreamStatus,
};
use time::OffsetDateTime;
use tokio::task::JoinHandle;

/// Least time between two writes of an unchanged status.
pub const STATE_INTERVAL: Duration = Duration::from_secs(5);

/// Longest wait for the final `stopped` write when a pull ends.
pub const STOPPED_WRITE_WAIT: Duration = Duration::from_secs(3);

/// Reports one source's state; see the module docs.
pub struct StateReporter {
    store: Option<Arc<dyn StreamStateStore>>,
    target_id: String,
    target: String,
    last: Option<(StreamStatus, Instant)>,
    last_error: Option<String>,
    /// Failures since media last flowed.
    failures: u64,
    inflight: Option<JoinHandle<()>>,
}

impl StateReporter {
    /// A reporter for `target` (e.g. `device:cam1`, for logs) whose item id is `target_id`;
    /// `store` is `None` standalone (state goes to the log only).
    pub fn new(store: Option<Arc<dyn StreamStateStore>>, target: &str, target_id: &str) -> Self {
        Self {
            store,
            target_id: target_id.to_owned(),
            target: target.to_owned(),
            last: None,
            last_error: None,
            failures: 0,
            inflight: None,
        }
    }

    /// Media is flowing; `bytes_in` counts every byte received since the pull started.
    /// Cheap when nothing is due (call it per frame).
    pub fn receiving(&mut self, bytes_in: u64) {
        self.report(StreamStatus::Receiving, None, bytes_in);
    }

    /// The source failed with `error` (credentials already removed); retrying.
    pub fn reconnecting(&mut self, error: &str, bytes_in: u64) {
        self.report(StreamStatus::Reconnecting, Some(error), bytes_in);
    }

    /// The pull ended (removed, or the process is stopping): records `stopped` and waits for
    /// the write, at most [`STOPPED_WRITE_WAIT`], so it is not lost when the process exits.
    pub async fn stopped(&mut self, bytes_in: u64) {
        tracing::info!(target_id = %self.target, "stopped");
        if let Some(previous) = self.inflight.take() {
            let _ = tokio::time::timeout(STOPPED_WRITE_WAIT, previous).await;
        }
        self.last = None;
        self.report(StreamStatus::Stopped, None, bytes_in);
        if let Some(write) = self.inflight.take() {
            let _ = tokio::time::timeout(STOPPED_WRITE_WAIT, write).await;
        }
    }

    fn report(&mut self, status: StreamStatus, error: Option<&str>, bytes_in: u64) {
        let changed = self.last.is_none_or(|(s, _)| s != status)
            || (error.is_some() && error != self.last_error.as_deref());
        match error {
            // Every change, and a repeated failure at its 1st, 2nd, 4th, 8th, ... occurrence:
            // a source down for a day logs a few dozen lines, not thousands.
            Some(error) => {
                self.failures += 1;
                if changed || self.failures.is_power_of_two() {
                    let attempt = self.failures;
                    tracing::warn!(target_id = %self.target, %error, attempt, "source lost: reconnecting");
                }
            }
            None if changed && status == StreamStatus::Receiving => {
                self.failures = 0;
                tracing::info!(target_id = %self.target, "receiving");
            }
            None => {}
        }
        let due = self.last.is_none_or(|(_, at)| at.elapsed() >= STATE_INTERVAL);
        if !changed && !due {
            return;
        }
        if let Some(error) = error {
            self.last_error = Some(error.to_owned());
        }
        self.last = Some((status, Instant::now()));
        let Some(store) = &self.store else { return };
        // An unchanged status waits for the previous write; a change goes out regardless.
        if !changed && self.inflight.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let state = StreamState {
            status,
            last_error: self.last_error.clone(),
            bytes_in,
            updated_at: OffsetDateTime::now_utc(),
        };
        let (store, id, target) = (Arc::clone(store), self.target_id.clone(), self.target.clone());
        self.inflight = Some(tokio::spawn(async move {
            match store.put_stream_state(&id, &state).await {
                Ok(()) => {}
                Err(StreamStateError::NotFound) => {
                    tracing::warn!(target_id = %target, "stream state not recorded: target not found")
                }
                Err(e) => {
                    tracing::warn!(target_id = %target, error = %e, "stream state not recorded")
                }
            }
        }));
    }
}
