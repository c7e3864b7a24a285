//! Relays: a live channel's stream pushed unchanged (`-c copy`) to external destinations
//! (YouTube / Twitch / nginx-rtmp style RTMP(S) servers, SRT listeners) while the publish
//! lasts.
//!
//! ```text
//! ingest ──► RelaySet::push (never blocks) ──► per destination: Queue (bytes, GOP drops)
//!                                                  │ worker task (tokio)
//!                                                  ├─ rtmp(s)://  FlvMuxer ─► rml_rtmp client
//!                                                  └─ srt://      TsMuxer  ─► srt-tokio caller
//! ```
//!
//! Each destination has its own worker and queue: a slow or dead destination costs the
//! others nothing, and the ingest never waits for any. A worker connects (state
//! [`RelayState::Connecting`]), publishes ([`RelayState::Live`]) from the next IDR with
//! sequence headers first, and after any error ([`RelayState::Retrying`]) reconnects with a
//! capped exponential backoff for as long as the publish lasts.
//!
//! Secrets: a destination URL holds its stream key. It is kept in [`RelayTarget`] (whose
//! `Debug` masks it) and in the worker; every log line names the destination by id and
//! [`mask_url`], and every error text is scrubbed of the key, passwords and query values.

mod dial;
mod queue;
mod report;
mod rtmp;
mod srt;
mod worker;

#[cfg(test)]
mod tests;

pub use report::RelayReporter;
use streamstack_core::relay::url;
pub use streamstack_core::relay::{mask_url, RelayState};

use queue::{Ending, Queue};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::media::MediaEvent;

/// One destination: `id` names it in statuses and logs; `url` is secret (it holds the stream
/// key): `rtmp://host[:1935]/app/key`, `rtmps://host[:443]/app/key`, or
/// `srt://host:port?streamid=…&passphrase=…&latency=ms`.
#[derive(Clone, PartialEq, Eq)]
pub struct RelayTarget {
    /// Caller-chosen identifier, unique within a [`RelaySet`] (later duplicates are ignored).
    pub id: String,
    /// Destination URL with the stream key (secret; shown only through [`mask_url`]).
    pub url: String,
}

impl std::fmt::Debug for RelayTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayTarget")
            .field("id", &self.id)
            .field("url", &mask_url(&self.url))
            .finish()
    }
}

/// Bounds and timings of every destination of a [`RelaySet`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelaySettings {
    /// Most bytes queued per destination (payloads plus 64 bytes per event); beyond it whole
    /// GOPs are dropped. Default 8 MiB (about 3 s of a 20 Mb/s stream).
    pub queue_bytes: usize,
    /// Longest time from starting a connection to publishing on it: TCP connect, TLS, RTMP
    /// handshake, `connect` and `publish` answered (SRT: the SRT handshake). Default 5 s.
    pub connect_timeout: Duration,
    /// Longest a write may make no progress (the destination stopped reading) before the
    /// connection is given up. Default 5 s.
    pub write_timeout: Duration,
    /// First delay before reconnecting after an error. Default 1 s.
    pub backoff_min: Duration,
    /// Cap of the delay, which doubles with each failed attempt. Default 30 s.
    pub backoff_max: Duration,
    /// A connection live at least this long resets the delay to `backoff_min`. Default 30 s.
    pub backoff_reset: Duration,
    /// How long a removed or changed destination gets to close its stream (deleteStream).
    /// Default 2 s.
    pub stop_timeout: Duration,
}

impl Default for RelaySettings {
    /// 8 MiB queues, 5 s connect and write timeouts, backoff 1 s doubling to 30 s (reset after
    /// 30 s live), 2 s to close a removed destination.
    fn default() -> Self {
        Self {
            queue_bytes: 8 << 20,
            connect_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            backoff_reset: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(2),
        }
    }
}

/// A snapshot of one destination ([`RelaySet::statuses`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RelayStatus {
    /// The destination's [`RelayTarget::id`].
    pub id: String,
    /// Where its worker stands.
    pub state: RelayState,
    /// The latest error (masked: never the key), kept while live again; `None` until one.
    pub last_error: Option<String>,
    /// Bytes written to the destination while live, over all its connections (RTMP chunks
    /// or MPEG-TS).
    pub bytes_sent: u64,
    /// GOPs (from a dropped frame to the next IDR) dropped because the queue was full.
    /// Drops while not live are not counted; audio-only streams drop single frames instead.
    pub dropped_gops: u64,
    /// Frames dropped because the queue was full (all tracks, audio-only streams included).
    pub dropped_frames: u64,
    /// Connection attempts after the first one.
    pub reconnects: u32,
}

/// Why a destination is not live. Texts never contain secrets (URLs masked, key scrubbed).
#[derive(Debug, Error)]
pub enum RelayError {
    /// A URL that cannot be used (text masked).
    #[error("invalid destination url {0}")]
    InvalidUrl(String),
    /// TCP connect (or name resolution) failed.
    #[error("connect: {0}")]
    Connect(std::io::Error),
    /// TLS (`rtmps://`) failed: configuration, roots or handshake.
    #[error("tls: {0}")]
    Tls(String),
    /// A step took longer than its timeout.
    #[error("{0} timed out after {1:?}")]
    Timeout(&'static str, Duration),
    /// The destination closed the connection.
    #[error("connection closed by the destination {0}")]
    Closed(&'static str),
    /// Reading or writing failed.
    #[error("{0}: {1}")]
    Io(&'static str, std::io::Error),
    /// The RTMP handshake or session failed (rml_rtmp's text).
    #[error("rtmp: {0}")]
    Protocol(String),
    /// The server refused the RTMP `connect` (its description).
    #[error("connect refused: {0}")]
    ConnectRefused(String),
    /// The server refused to let us publish (its onStatus code, e.g.
    /// `NetStream.Publish.BadName`).
    #[error("publish refused: {0}")]
    PublishRefused(String),
    /// SRT failed (srt-tokio's text).
    #[error("srt: {0}")]
    Srt(String),
}

/// What a worker and the [`RelaySet`] share about one destination.
struct Shared {
    id: String,
    /// The URL masked, for logs.
    masked: String,
    /// Strings scrubbed out of every error text.
    secrets: Vec<String>,
    queue: Queue,
    status: Mutex<(RelayState, Option<String>, u32)>,
    bytes_sent: AtomicU64,
    changed: Arc<watch::Sender<u64>>,
}

impl std::fmt::Debug for Shared {
    /// Id, masked URL and status: never the secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("id", &self.id)
            .field("url", &self.masked)
            .field("status", &self.snapshot())
            .finish_non_exhaustive()
    }
}

/// Longest `last_error` kept, characters: its text may come from the destination.
pub const MAX_ERROR_CHARS: usize = 256;

/// `text` as a status shows it: control characters (a destination's newlines) as spaces, at
/// most [`MAX_ERROR_CHARS`] characters.
fn shown_error(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(MAX_ERROR_CHARS).collect()
}

impl Shared {
    fn bump(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Sets the state, and the error (scrubbed) if one is given.
    fn set(&self, state: RelayState, error: Option<&RelayError>) {
        {
            let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
            s.0 = state;
            if let Some(e) = error {
                s.1 = Some(shown_error(&url::scrub(&e.to_string(), &self.secrets)));
            }
        }
        self.bump();
    }

    fn count_reconnect(&self) {
        let mut s = self.status.lock().unwrap_or_else(|e| e.into_inner());
        s.2 = s.2.saturating_add(1);
    }

    fn add_sent(&self, bytes: usize) {
        self.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn snapshot(&self) -> RelayStatus {
        let (state, last_error, reconnects) =
            self.status.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let (dropped_gops, dropped_frames) = self.queue.counters();
        RelayStatus {
            id: self.id.clone(),
            state,
            last_error,
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            dropped_gops,
            dropped_frames,
            reconnects,
        }
    }
}

#[derive(Debug)]
struct Destination {
    target: RelayTarget,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

/// The destinations of one publish. Dropping it stops every worker (each closes its stream
/// within [`RelaySettings::stop_timeout`]); [`RelaySet::finish`] drains the queues first.
#[derive(Debug)]
pub struct RelaySet {
    settings: RelaySettings,
    destinations: Vec<Destination>,
    /// Workers of removed or changed destinations, still closing.
    retired: Vec<JoinHandle<()>>,
    changed: Arc<watch::Sender<u64>>,
}

impl RelaySet {
    /// Starts one worker task per target (ids unique: later duplicates are ignored). Must be
    /// called within a tokio runtime.
    pub fn new(targets: Vec<RelayTarget>, settings: RelaySettings) -> Self {
        let mut set = Self {
            settings,
            destinations: Vec::new(),
            retired: Vec::new(),
            changed: Arc::new(watch::channel(0).0),
        };
        set.update(targets);
        set
    }

    fn spawn(&self, target: RelayTarget) -> Destination {
        let shared = Arc::new(Shared {
            id: target.id.clone(),
            masked: mask_url(&target.url),
            secrets: url::secrets(&target.url),
            queue: Queue::new(self.settings.queue_bytes),
            status: Mutex::new((RelayState::Connecting, None, 0)),
            bytes_sent: AtomicU64::new(0),
            changed: Arc::clone(&self.changed),
        });
        let endpoint = url::parse(&target.url).map_err(|e| RelayError::InvalidUrl(e.0));
        let task = tokio::spawn(worker::run(Arc::clone(&shared), endpoint, self.settings.clone()));
        shared.bump();
        Destination { target, shared, task }
    }

    /// Offers an event to every destination: O(destinations), no allocation beyond queue
    /// slots (frames are `Bytes`, cloned by reference count), never waits, never fails.
    /// A destination that is not live or whose queue is full drops it (see [`RelayStatus`]).
    pub fn push(&mut self, event: &MediaEvent) {
        for d in &self.destinations {
            if d.shared.queue.push(event) {
                d.shared.bump();
            }
        }
        // A worker ends only when its destination is removed or the set finishes: one that
        // ended otherwise (a panic in a dependency) is started again.
        for i in 0..self.destinations.len() {
            if self.destinations[i].task.is_finished() {
                let target = self.destinations[i].target.clone();
                tracing::error!(relay = %target.id, "relay worker ended unexpectedly: restarted");
                self.destinations[i] = self.spawn(target);
            }
        }
    }

    /// Reconciles with `targets`: starts workers for new ids, stops those of removed ids,
    /// restarts an id whose URL changed; unchanged ones go on untouched. Order follows
    /// `targets`.
    pub fn update(&mut self, targets: Vec<RelayTarget>) {
        let mut old = std::mem::take(&mut self.destinations);
        let mut next = Vec::with_capacity(targets.len());
        for target in targets {
            if next.iter().any(|d: &Destination| d.target.id == target.id) {
                tracing::warn!(relay = %target.id, "duplicate relay id ignored");
                continue;
            }
            match old.iter().position(|d| d.target == target) {
                Some(i) => next.push(old.swap_remove(i)),
                None => {
                    tracing::info!(relay = %target.id, url = %mask_url(&target.url), "relay started");
                    next.push(self.spawn(target));
                }
            }
        }
        for d in old {
            tracing::info!(relay = %d.target.id, url = %d.shared.masked, "relay stopped");
            d.shared.queue.end(Ending::Stop);
            self.retired.push(d.task);
        }
        self.retired.retain(|t| !t.is_finished());
        self.destinations = next;
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A snapshot of every destination, in target order (locks each briefly).
    pub fn statuses(&self) -> Vec<RelayStatus> {
        self.destinations.iter().map(|d| d.shared.snapshot()).collect()
    }

    /// A receiver whose value changes whenever a status changes in more than `bytes_sent`
    /// (state, error, reconnects, a new GOP drop, targets updated): await
    /// [`watch::Receiver::changed`], then read [`RelaySet::statuses`].
    pub fn changed(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Ends the relays at once, nothing drained (the publish was revoked: another publisher
    /// may already be live on the same destinations). Waits at most `within`.
    pub async fn stop(self, within: Duration) {
        self.end(Ending::Stop, within).await;
    }

    /// Ends the relays: live destinations send what is queued and close their stream
    /// (deleteStream); the others stop. Waits at most `within`, then aborts the workers left.
    pub async fn finish(self, within: Duration) {
        self.end(Ending::Drain, within).await;
    }

    async fn end(mut self, ending: Ending, within: Duration) {
        let destinations = std::mem::take(&mut self.destinations);
        for d in &destinations {
            d.shared.queue.end(ending);
        }
        let mut tasks: Vec<JoinHandle<()>> = destinations.into_iter().map(|d| d.task).collect();
        tasks.append(&mut self.retired);
        let aborts: Vec<_> = tasks.iter().map(JoinHandle::abort_handle).collect();
        if tokio::time::timeout(within, futures::future::join_all(tasks)).await.is_err() {
            tracing::warn!(?within, "relays not finished in time: aborted");
            aborts.iter().for_each(tokio::task::AbortHandle::abort);
        }
    }
}

impl Drop for RelaySet {
    fn drop(&mut self) {
        for d in &self.destinations {
            d.shared.queue.end(Ending::Stop);
        }
    }
}
