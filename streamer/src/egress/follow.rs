//! The fetching half of the egress: resolves the source ([`super::source`]), reloads its
//! playlist ([`super::follower`] decides what is new and when to reload), downloads each
//! new segment in order and hands it to the sender through a bounded channel (so at most a
//! few segments wait in memory; a slow sender holds the reloads back).
//!
//! Nothing here ends the process: a source that is gone (404, 5xx, timeouts, an unusable
//! playlist) is retried with capped backoff ([`RETRY_INITIAL`] doubling to [`RETRY_MAX`]);
//! a stalled playlist is reloaded on (one warning until it moves again); a 401/403 of a
//! `channel:`/`device:` source resolves it again (fresh credentials). A segment that fails
//! [`SEGMENT_ATTEMPTS`] times is skipped, and the next one sent is a discontinuity.

use super::fetch::{self, FetchError, MAX_SEGMENT_BYTES};
use super::follower::{Follower, NewSegment, Update, MAX_PLAYLIST_BYTES};
use super::source::{redact, Resolved, Resolver};
use crate::pull::Backoff;
use bytes::Bytes;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// First retry delay of a failing playlist or API request: 500 ms.
pub const RETRY_INITIAL: Duration = Duration::from_millis(500);
/// Longest retry delay: 10 s.
pub const RETRY_MAX: Duration = Duration::from_secs(10);
/// Attempts at one segment before it is skipped.
pub const SEGMENT_ATTEMPTS: u32 = 3;
/// A playlist unchanged for this many target durations is reported stalled (RFC 8216
/// §6.3.4 lets a server keep one unchanged that long before clients may give up; we never do).
const STALL_TARGETS: u32 = 3;

/// What the follower hands the sender, in order.
#[derive(Debug)]
pub enum Item {
    /// A downloaded segment.
    Segment(SegmentData),
    /// The playlist ended (`EXT-X-ENDLIST`) after the segments before this.
    Ended,
}

/// One downloaded segment.
#[derive(Debug)]
pub struct SegmentData {
    /// Media sequence number.
    pub sequence: u64,
    /// The segment's bytes (at most [`MAX_SEGMENT_BYTES`]).
    pub bytes: Bytes,
    /// It does not continue the previous one sent.
    pub discontinuity: bool,
    /// `EXTINF`, seconds.
    pub duration: f32,
    /// The playlist's target duration.
    pub target: Duration,
}

/// Resolves when `stop` turns true (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Sleeps `delay` unless stopped first; returns whether it was stopped.
async fn pause(delay: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => false,
        () = stopped(stop) => true,
    }
}

/// The follower task's state.
pub struct Follow {
    resolver: Resolver,
    http: reqwest::Client,
    follower: Follower,
    resolved: Option<Resolved>,
    backoff: Backoff,
    /// Failures in a row, for the log (the first, then every 10th).
    failures: u32,
    /// The next segment sent must be a discontinuity (one was skipped).
    gap: bool,
    last_change: Instant,
    stall_logged: bool,
    ended: bool,
}

impl Follow {
    /// A follower of `resolver`'s source starting `live_edge` segments from the end.
    pub fn new(resolver: Resolver, http: reqwest::Client, live_edge: usize) -> Self {
        Self {
            resolver,
            http,
            follower: Follower::new(live_edge),
            resolved: None,
            backoff: Backoff::new(RETRY_INITIAL, RETRY_MAX),
            failures: 0,
            gap: false,
            last_change: Instant::now(),
            stall_logged: false,
            ended: false,
        }
    }

    fn failed(&mut self, what: &str, error: &dyn std::fmt::Display) -> Duration {
        self.failures += 1;
        if self.failures % 10 == 1 {
            tracing::warn!(%error, failures = self.failures, "{what} failed: retrying");
        }
        self.backoff.delay(false)
    }

    /// Runs until `stop`, sending segments to `out` (returns early if the sender is gone).
    pub async fn run(mut self, out: mpsc::Sender<Item>, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            let renew = self.resolved.as_ref().and_then(|r| r.renew_at);
            if self.resolved.is_none() || renew.is_some_and(|at| at <= SystemTime::now()) {
                match self.resolver.resolve().await {
                    Ok(resolved) => {
                        tracing::info!(
                            playlist = %redact(&resolved.playlist),
                            signed = resolved.query.is_some(),
                            "source resolved"
                        );
                        self.resolved = Some(resolved);
                    }
                    Err(e) => {
                        let delay = self.failed("resolving the source", &e);
                        match &mut self.resolved {
                            // Stale credentials are still worth a try until new ones come;
                            // the API is asked again after the backoff, not every reload.
                            Some(stale) => stale.renew_at = Some(SystemTime::now() + delay),
                            None if pause(delay, &mut stop).await => return,
                            None => continue,
                        }
                    }
                }
            }
            let Some(resolved) = self.resolved.clone() else { continue };
            let started = Instant::now();
            let url = fetch::with_query(&resolved.playlist, resolved.query.as_deref());
            let loaded = tokio::select! {
                loaded = fetch::get(self.http.get(url), MAX_PLAYLIST_BYTES, fetch::REQUEST_TIMEOUT) => loaded,
                () = stopped(&mut stop) => return,
            };
            let update = match loaded {
                Ok(text) => self.follower.update(&text).map_err(|e| e.to_string()),
                Err(e) => {
                    if e.is_auth() && resolved.query.is_some() {
                        self.resolved = None;
                    }
                    Err(e.to_string())
                }
            };
            let update = match update {
                Ok(update) => update,
                Err(e) => {
                    let delay = self.failed("loading the playlist", &e);
                    if pause(delay, &mut stop).await {
                        return;
                    }
                    continue;
                }
            };
            self.failures = 0;
            self.backoff.reset();
            self.observe(&update);
            for segment in &update.segments {
                let Some(item) = self.segment(&resolved, segment, update.target, &mut stop).await
                else {
                    continue;
                };
                tokio::select! {
                    sent = out.send(item) => if sent.is_err() { return },
                    () = stopped(&mut stop) => return,
                }
            }
            if update.ended && !self.ended {
                tracing::info!(
                    "source playlist ended (EXT-X-ENDLIST): waiting for it to go live again"
                );
                if out.send(Item::Ended).await.is_err() {
                    return;
                }
            }
            self.ended = update.ended;
            let wait = update.reload_after.saturating_sub(started.elapsed());
            if pause(wait, &mut stop).await {
                return;
            }
        }
    }

    /// Logs what a reload found: restarts, skipped segments, a stall.
    fn observe(&mut self, update: &Update) {
        if update.restarted {
            tracing::info!("source restarted: continuing after a discontinuity");
        }
        if update.skipped > 0 {
            tracing::warn!(
                skipped = update.skipped,
                "segments left the playlist before they were sent"
            );
        }
        if update.changed {
            if self.stall_logged {
                tracing::info!("source playlist moving again");
            }
            self.last_change = Instant::now();
            self.stall_logged = false;
        } else if !update.ended
            && !self.stall_logged
            && self.last_change.elapsed() > update.target * STALL_TARGETS
        {
            tracing::warn!(
                unchanged_secs = self.last_change.elapsed().as_secs(),
                "source playlist stalled: reloading until it moves"
            );
            self.stall_logged = true;
        }
    }

    /// Downloads `segment` (up to [`SEGMENT_ATTEMPTS`] times); `None` when it is skipped
    /// or the egress stops.
    async fn segment(
        &mut self,
        resolved: &Resolved,
        segment: &NewSegment,
        target: Duration,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<Item> {
        let Some(signed) =
            fetch::segment_url(&resolved.playlist, &segment.uri, resolved.query.as_deref())
        else {
            tracing::warn!(sequence = segment.sequence, "segment URI unusable: skipped");
            self.gap = true;
            return None;
        };
        let url = &signed;
        let mut delay = RETRY_INITIAL;
        for attempt in 1..=SEGMENT_ATTEMPTS {
            let request = self.http.get(signed.clone());
            let fetched: Result<Bytes, FetchError> = tokio::select! {
                fetched = fetch::get(request, MAX_SEGMENT_BYTES, fetch::SEGMENT_TIMEOUT) => fetched,
                () = stopped(stop) => return None,
            };
            match fetched {
                Ok(bytes) => {
                    tracing::debug!(
                        sequence = segment.sequence,
                        bytes = bytes.len(),
                        path = url.path(),
                        "segment"
                    );
                    let discontinuity = segment.discontinuity || std::mem::take(&mut self.gap);
                    return Some(Item::Segment(SegmentData {
                        sequence: segment.sequence,
                        bytes,
                        discontinuity,
                        duration: segment.duration,
                        target,
                    }));
                }
                Err(e) => {
                    tracing::warn!(sequence = segment.sequence, path = url.path(), attempt, error = %e, "segment download failed");
                    if e.is_auth() && resolved.query.is_some() {
                        self.resolved = None;
                    }
                    if attempt < SEGMENT_ATTEMPTS && pause(delay, stop).await {
                        return None;
                    }
                    delay *= 2;
                }
            }
        }
        tracing::warn!(sequence = segment.sequence, "segment skipped");
        self.gap = true;
        None
    }
}
