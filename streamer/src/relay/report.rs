//! Reporting the relay destinations' statuses into the channel item, for
//! `GET /channels/{id}`: on a change of a destination's state or error (at most one write
//! every [`MIN_WRITE_GAP`]), and every [`REFRESH`] while its counters (bytes, drops,
//! reconnects) move; each write conditional on this publish still holding the lease
//! ([`ChannelStore::set_relay_status`]). A destination flapping or overflowing costs at most
//! one small write every [`MIN_WRITE_GAP`].

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
/// Counters alone (bytes sent, drops, reconnects) are written at most this often: 15 s.
pub const REFRESH: Duration = Duration::from_secs(15);
/// Least time between two writes: 2 s (the latest snapshot wins).
pub const MIN_WRITE_GAP: Duration = Duration::from_secs(2);
/// Timeout of one status write: 3 s (a write that fails is superseded by the next).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(3);

/// Hands relay statuses from the publish path to a writer task, without ever waiting.
pub struct RelayReporter {
    store: Arc<dyn ChannelStore>,
    channel_id: String,
    session: String,
    tx: watch::Sender<Vec<RelayStatus>>,
    writer: JoinHandle<()>,
    offered_at: Instant,
    written: Vec<RelayStatus>,
    written_at: Instant,
    /// Whether any status was handed to the writer (a channel without relays never is).
    reported: bool,
}

impl std::fmt::Debug for RelayReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayReporter")
            .field("channel_id", &self.channel_id)
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl RelayReporter {
    /// Starts the writer for channel `channel_id`'s publish `session`.
    pub fn spawn(store: Arc<dyn ChannelStore>, channel_id: &str, session: &str) -> Self {
        let (tx, rx) = watch::channel(Vec::new());
        let writer = tokio::spawn(write_statuses(
            Arc::clone(&store),
            channel_id.to_owned(),
            session.to_owned(),
            rx,
        ));
        let now = Instant::now();
        Self {
            store,
            channel_id: channel_id.to_owned(),
            session: session.to_owned(),
            tx,
            writer,
            offered_at: now,
            written: Vec::new(),
            written_at: now,
            reported: false,
        }
    }

    /// Looks at `relays` at most every [`OFFER_INTERVAL`]; queues a write when a
    /// destination's state or error changed, or its counters moved and [`REFRESH`] passed.
    /// Cheap enough for every frame.
    pub fn offer(&mut self, relays: &RelaySet) {
        let now = Instant::now();
        if now.duration_since(self.offered_at) < OFFER_INTERVAL {
            return;
        }
        self.offered_at = now;
        let statuses = relays.statuses();
        let changed = statuses.len() != self.written.len()
            || statuses.iter().zip(&self.written).any(|(a, b)| {
                (a.id.as_str(), a.state, &a.last_error) != (b.id.as_str(), b.state, &b.last_error)
            });
        let counted = statuses.iter().zip(&self.written).any(|(a, b)| {
            (a.bytes_sent, a.dropped_gops, a.reconnects)
                != (b.bytes_sent, b.dropped_gops, b.reconnects)
        });
        if changed || (counted && now.duration_since(self.written_at) >= REFRESH) {
            self.written_at = now;
            self.written.clone_from(&statuses);
            self.reported = true;
            self.tx.send_replace(statuses);
        }
    }

    /// Stops the writer and records that no destination is relayed any more (the relays
    /// ended; the uploads, and so the lease, may go on for a while). Conditional on the
    /// lease like every write; at most [`WRITE_TIMEOUT`]. Nothing to write when no status was
    /// ever reported (a channel without relays costs no write).
    pub async fn finish(self) {
        self.writer.abort();
        if !self.reported {
            return;
        }
        let write = self.store.set_relay_status(&self.channel_id, &self.session, &[]);
        match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(Ok(()) | Err(StoreError::LeaseLost | StoreError::NotFound)) => {}
            Ok(Err(error)) => {
                tracing::warn!(channel = %self.channel_id, %error, "relay statuses not cleared")
            }
            Err(_) => {
                tracing::warn!(channel = %self.channel_id, "relay statuses not cleared in time")
            }
        }
    }
}

impl Drop for RelayReporter {
    /// A publish dropped without finishing: the writer goes with it.
    fn drop(&mut self) {
        self.writer.abort();
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
        tokio::time::sleep(MIN_WRITE_GAP).await;
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
