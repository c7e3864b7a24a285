//! Reporting the relay destinations' statuses into the channel item, for
//! `GET /channels/{id}`: at most one write a second, on every change of state, error,
//! reconnects or drops, and every [`REFRESH`] while bytes flow; each write conditional on
//! this publish still holding the lease ([`ChannelStore::set_relay_status`]).

use super::{RelaySet, RelayStatus};
use std::sync::Arc;
use std::time::Duration;
use streamstack_core::relay::RelayStatus as StoredStatus;
use streamstack_core::{ChannelStore, StoreError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How often the publish path looks at the statuses (from its frames): 1 s.
pub const OFFER_INTERVAL: Duration = Duration::from_secs(1);
/// A status whose only change is `bytes_sent` is written at most this often: 5 s.
pub const REFRESH: Duration = Duration::from_secs(5);
/// Timeout of one status write: 3 s (a write that fails is superseded by the next).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(3);

/// Hands relay statuses from the publish path to a writer task, without ever waiting.
#[derive(Debug)]
pub struct RelayReporter {
    tx: watch::Sender<Vec<RelayStatus>>,
    writer: JoinHandle<()>,
    offered_at: Instant,
    written: Vec<RelayStatus>,
    written_at: Instant,
}

impl RelayReporter {
    /// Starts the writer for channel `channel_id`'s publish `session`.
    pub fn spawn(store: Arc<dyn ChannelStore>, channel_id: &str, session: &str) -> Self {
        let (tx, rx) = watch::channel(Vec::new());
        let writer =
            tokio::spawn(write_statuses(store, channel_id.to_owned(), session.to_owned(), rx));
        let now = Instant::now();
        Self { tx, writer, offered_at: now, written: Vec::new(), written_at: now }
    }

    /// Looks at `relays` at most every [`OFFER_INTERVAL`]; queues a write when a status
    /// changed in more than its bytes, or its bytes changed and [`REFRESH`] passed. Cheap
    /// enough for every frame.
    pub fn offer(&mut self, relays: &RelaySet) {
        let now = Instant::now();
        if now.duration_since(self.offered_at) < OFFER_INTERVAL {
            return;
        }
        self.offered_at = now;
        let statuses = relays.statuses();
        let changed = statuses.len() != self.written.len()
            || statuses.iter().zip(&self.written).any(|(a, b)| {
                (a.id.as_str(), a.state, &a.last_error, a.reconnects, a.dropped_gops)
                    != (b.id.as_str(), b.state, &b.last_error, b.reconnects, b.dropped_gops)
            });
        let counted = statuses.iter().zip(&self.written).any(|(a, b)| a.bytes_sent != b.bytes_sent);
        if changed || (counted && now.duration_since(self.written_at) >= REFRESH) {
            self.written_at = now;
            self.written.clone_from(&statuses);
            self.tx.send_replace(statuses);
        }
    }

    /// Stops the writer (the lease release that follows clears the statuses).
    pub async fn stop(self) {
        self.writer.abort();
        let _ = self.writer.await;
    }
}

/// Writes each offered snapshot (the latest one wins) until the publish loses its lease or
/// the channel is gone.
async fn write_statuses(
    store: Arc<dyn ChannelStore>,
    channel_id: String,
    session: String,
    mut rx: watch::Receiver<Vec<RelayStatus>>,
) {
    let mut failures = 0u32;
    while rx.changed().await.is_ok() {
        let statuses: Vec<(String, StoredStatus)> =
            rx.borrow_and_update().iter().map(|s| (s.id.clone(), stored(s))).collect();
        let write = store.set_relay_status(&channel_id, &session, &statuses);
        match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(Ok(())) => failures = 0,
            Ok(Err(StoreError::LeaseLost | StoreError::NotFound)) => return,
            Ok(Err(error)) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(channel = %channel_id, %error, "relay status not recorded");
                }
            }
            Err(_) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(channel = %channel_id, "relay status write timed out");
                }
            }
        }
        tokio::time::sleep(OFFER_INTERVAL).await;
    }
}

/// `status` as the channel item keeps it.
fn stored(status: &RelayStatus) -> StoredStatus {
    StoredStatus {
        state: status.state,
        last_error: status.last_error.clone(),
        bytes_sent: status.bytes_sent,
        dropped_gops: status.dropped_gops,
        reconnects: status.reconnects,
        updated_at: None,
    }
}
