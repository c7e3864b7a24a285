//! Pulls that come and go while the process runs, keyed by target.
//!
//! Each pull task has its own stop signal (a [`Shutdown`] watch carrying the drain deadline),
//! so one can be removed — its last segment flushed and its playlists ended within the drain,
//! exactly as SIGTERM does for every pull — while the others go on. Nothing here waits for a
//! drain: [`Supervisor::remove`] signals the pull and lets it finish in the background, and
//! [`Supervisor::add`] of a target that is already pulled starts a task that first waits for
//! the old pull to end (so two pulls never write one playlist). [`Supervisor::shutdown`]
//! ends them all and waits for them, removed ones included.

use super::{task, PullContext, PullSource, PullTarget, Shutdown};
use crate::ingest::redact_url;
use crate::ingest::rtmp::FINISH_MARGIN;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tracing::Instrument;

/// One running pull.
struct Pull {
    /// Tells apart a pull from the one that replaced it on the same target.
    generation: u64,
    /// `Some(deadline)`: flush and end the playlists by then.
    stop: watch::Sender<Option<tokio::time::Instant>>,
    handle: JoinHandle<()>,
    /// The task's span (target and redacted URL): also that of its end's log lines.
    span: tracing::Span,
}

impl Pull {
    /// Tells the pull to finish by the drain's end less [`FINISH_MARGIN`] (kept, as for the
    /// push servers, for releasing a channel's lease).
    fn signal(&self, drain: Duration) {
        let finish_by = tokio::time::Instant::now() + drain.saturating_sub(FINISH_MARGIN);
        let _ = self.stop.send(Some(finish_by));
    }

    /// Waits up to `drain` for the signalled pull to end, then aborts it.
    async fn finish(mut self, drain: Duration) {
        let span = self.span.clone();
        async move {
            match tokio::time::timeout(drain, &mut self.handle).await {
                Ok(Ok(())) => tracing::info!("pull ended"),
                Ok(Err(e)) => tracing::error!(error = %e, "pull task failed"),
                Err(_) => {
                    tracing::warn!("drain timeout: aborting pull");
                    self.handle.abort();
                }
            }
        }
        .instrument(span)
        .await
    }
}

/// Sends `(target, generation)` when a pull task ends, however it ends (returned, panicked,
/// aborted): the guard is dropped with the task's future.
struct EndedGuard {
    tx: mpsc::UnboundedSender<(PullTarget, u64)>,
    key: Option<(PullTarget, u64)>,
}

impl Drop for EndedGuard {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let _ = self.tx.send(key);
        }
    }
}

/// The pulls of one process; see the module docs.
pub struct Supervisor {
    context: Arc<PullContext>,
    drain: Duration,
    pulls: HashMap<PullTarget, Pull>,
    /// Removed pulls finishing in the background ([`Pull::finish`]).
    stopping: JoinSet<()>,
    generation: u64,
    ended_tx: mpsc::UnboundedSender<(PullTarget, u64)>,
    ended_rx: mpsc::UnboundedReceiver<(PullTarget, u64)>,
}

impl Supervisor {
    /// No pulls yet. A removed or replaced pull gets `drain` to flush and end its playlists
    /// (uploads pending [`FINISH_MARGIN`] before its end stay spooled), then it is aborted.
    pub fn new(context: Arc<PullContext>, drain: Duration) -> Self {
        let (ended_tx, ended_rx) = mpsc::unbounded_channel();
        Self {
            context,
            drain,
            pulls: HashMap::new(),
            stopping: JoinSet::new(),
            generation: 0,
            ended_tx,
            ended_rx,
        }
    }

    /// How many pulls are running (removed ones still finishing not counted).
    pub fn len(&self) -> usize {
        self.pulls.len()
    }

    /// Whether no pull is running.
    pub fn is_empty(&self) -> bool {
        self.pulls.is_empty()
    }

    /// The pulled targets, in no particular order (pulls that ended by themselves noticed
    /// first, as by [`Supervisor::contains`]).
    pub fn targets(&mut self) -> impl Iterator<Item = &PullTarget> {
        self.reap();
        self.pulls.keys()
    }

    /// Pulls started so far, replacements included.
    pub fn started(&self) -> u64 {
        self.generation
    }

    /// Whether `target` is pulled. A pull that ended by itself (a deleted channel, a panic)
    /// no longer counts once noticed: by [`Supervisor::next_ended`], or at the start of this
    /// call.
    pub fn contains(&mut self, target: &PullTarget) -> bool {
        self.reap();
        self.pulls.contains_key(target)
    }

    /// Starts pulling `source` into its target. A running pull of that target is replaced:
    /// told to flush and end its playlists, and the new pull starts once it ended (at most
    /// the drain later).
    pub fn add(&mut self, source: PullSource) {
        self.reap();
        let drain = self.drain;
        let previous = self.pulls.remove(&source.target);
        if let Some(previous) = &previous {
            tracing::info!(target_id = %source.target, "pull replaced: flushing the old one");
            previous.signal(drain);
        }
        self.generation += 1;
        let generation = self.generation;
        let (stop, stop_rx): (_, Shutdown) = watch::channel(None);
        let span = tracing::info_span!(
            "pull",
            target_id = %source.target,
            source = %redact_url(&source.url)
        );
        let guard = EndedGuard {
            tx: self.ended_tx.clone(),
            key: Some((source.target.clone(), generation)),
        };
        let target = source.target.clone();
        let context = Arc::clone(&self.context);
        let handle = tokio::spawn(
            async move {
                let _guard = guard;
                if let Some(previous) = previous {
                    previous.finish(drain).await;
                }
                task::pull_one(context, source, stop_rx).await;
            }
            .instrument(span.clone()),
        );
        self.pulls.insert(target, Pull { generation, stop, handle, span });
    }

    /// Ends `target`'s pull: told to flush its last segment and end its playlists within
    /// the drain (then aborted), in the background. `false` if it was not pulled.
    pub fn remove(&mut self, target: &PullTarget) -> bool {
        self.reap();
        let Some(pull) = self.pulls.remove(target) else { return false };
        tracing::info!(target_id = %target, "pull removed: flushing");
        pull.signal(self.drain);
        self.stopping.spawn(pull.finish(self.drain));
        true
    }

    /// Ends every pull (SIGTERM): each flushes its last segment and ends its playlists
    /// within the drain; those still running after it are aborted. Also waits for removed
    /// pulls still finishing.
    pub async fn shutdown(mut self) {
        self.reap();
        let sessions = self.pulls.len() + self.stopping.len();
        tracing::info!(sessions, protocol = "pull", "shutting down: flushing");
        let drain = self.drain;
        for (_, pull) in self.pulls.drain() {
            pull.signal(drain);
            self.stopping.spawn(pull.finish(drain));
        }
        // Each finish is bounded by the drain; this bound only guards against a bug.
        let all = async { while self.stopping.join_next().await.is_some() {} };
        if tokio::time::timeout(drain + Duration::from_secs(1), all).await.is_err() {
            self.stopping.abort_all();
        }
    }

    /// Waits until a pull ends by itself (e.g. its channel was deleted) and returns its
    /// target; `None` at once when none is running. Cancel safe.
    pub async fn next_ended(&mut self) -> Option<PullTarget> {
        loop {
            self.reap();
            if self.pulls.is_empty() {
                return None;
            }
            // The supervisor holds a sender: `recv` never yields `None`.
            let (target, generation) = self.ended_rx.recv().await?;
            if let Some(ended) = self.take_ended(target, generation) {
                return Some(ended);
            }
        }
    }

    /// Forgets pulls whose task ended (and stale notices of removed or replaced ones) and
    /// removed pulls done finishing, so neither queue outgrows the running pulls.
    fn reap(&mut self) {
        while let Ok((target, generation)) = self.ended_rx.try_recv() {
            self.take_ended(target, generation);
        }
        while self.stopping.try_join_next().is_some() {}
    }

    /// Forgets `target`'s pull if `generation` is the running one; logs a panic.
    fn take_ended(&mut self, target: PullTarget, generation: u64) -> Option<PullTarget> {
        if self.pulls.get(&target).is_none_or(|p| p.generation != generation) {
            return None;
        }
        let pull = self.pulls.remove(&target)?;
        // The guard fires as the task's future is dropped, just before the task completes.
        self.stopping.spawn(pull.finish(self.drain));
        Some(target)
    }
}
