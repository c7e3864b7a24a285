//! The per-destination queue between the ingest ([`Queue::push`], never blocks) and the
//! destination's worker ([`Queue::pop`]): bounded in bytes, dropping whole GOPs on overflow.
//!
//! Rules:
//! - An event costs its payload bytes plus [`ITEM_OVERHEAD`]; the queue never holds more
//!   than its limit.
//! - A frame that does not fit is dropped and the queue waits for the next video IDR
//!   (dropping every frame, audio included, until then): the destination gets whole GOPs
//!   or nothing. That counts one dropped GOP, as does every IDR that still does not fit.
//!   Streams without video (audio-only) drop each frame that does not fit on its own
//!   (counted in `dropped_frames`, never in `dropped_gops`).
//! - A closed queue (the worker is not live) keeps only the latest GOP, from its IDR (a GOP
//!   cache, as RTMP servers keep for their players): [`Queue::open`] (live) sends from that
//!   IDR at once, so a destination that connects after the publish started (always: it
//!   connects when the publish starts) does not lose a GOP. With nothing kept it starts at
//!   the next IDR (any frame without video). Drops while closed are not counted.
//! - Whenever the queue (re)starts or a [`MediaEvent::Tracks`] could not be queued, the
//!   latest tracks are queued again in front of the next frame, so the worker always sends
//!   sequence headers before the frames that need them.

use crate::media::{MediaEvent, Track, Tracks};
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use tokio::sync::{watch, Notify};

/// Bytes counted per queued event on top of its payload (the event itself, the deque slot):
/// bounds the number of tiny events a queue can hold.
pub const ITEM_OVERHEAD: usize = 64;

/// How a worker is asked to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Send what is queued, then close the stream (publish over).
    Drain,
    /// Close the stream now, dropping what is queued (destination removed or changed).
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// The worker is not live: only the latest GOP is kept.
    Closed,
    /// Dropping until a key frame; `overflow` when the wait was caused by a full queue.
    WaitKey { overflow: bool },
    /// Queueing.
    Open,
}

#[derive(Debug)]
struct Inner {
    items: VecDeque<MediaEvent>,
    bytes: usize,
    gate: Gate,
    /// The latest tracks pushed.
    tracks: Tracks,
    /// Queue `tracks` before the next frame.
    resend_tracks: bool,
    dropped_gops: u64,
    dropped_frames: u64,
}

/// One destination's queue. Shared (`Arc`) by the [`super::RelaySet`] and the worker.
#[derive(Debug)]
pub(crate) struct Queue {
    inner: Mutex<Inner>,
    notify: Notify,
    limit: usize,
    ending: watch::Sender<Option<Ending>>,
}

/// The cost of an event in the queue, bytes.
fn cost(event: &MediaEvent) -> usize {
    ITEM_OVERHEAD
        + match event {
            MediaEvent::Frame(f) => f.data.len(),
            MediaEvent::Tracks(t) => t.video.as_ref().map_or(0, |v| v.parameter_sets.len()),
        }
}

impl Queue {
    /// A closed queue holding at most `limit` bytes.
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                bytes: 0,
                gate: Gate::Closed,
                tracks: Tracks::default(),
                resend_tracks: true,
                dropped_gops: 0,
                dropped_frames: 0,
            }),
            notify: Notify::new(),
            limit,
            ending: watch::channel(None).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Nothing panics while holding the lock; a poisoned one still holds valid data.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Offers an event (O(1), never blocks beyond the short queue lock). Returns `true` when
    /// a new GOP drop started (the counters changed in a way worth reporting).
    pub(crate) fn push(&self, event: &MediaEvent) -> bool {
        let mut q = self.lock();
        let q = &mut *q;
        let frame = match event {
            MediaEvent::Tracks(tracks) => {
                q.tracks = tracks.clone();
                if q.gate == Gate::Open {
                    q.resend_tracks = true; // queued with the next frame, whole or not at all
                }
                return false;
            }
            MediaEvent::Frame(frame) => frame,
        };
        let has_video = q.tracks.video.is_some();
        let key = !has_video || (frame.track == Track::Video && frame.idr);
        if q.gate == Gate::Closed {
            self.cache(q, event, key);
            return false;
        }
        match q.gate {
            Gate::Closed => return false,
            Gate::WaitKey { .. } if !key => {
                if q.gate == (Gate::WaitKey { overflow: true }) {
                    q.dropped_frames += 1;
                }
                return false;
            }
            Gate::WaitKey { .. } => q.resend_tracks = true,
            Gate::Open => {}
        }
        let tracks = q.resend_tracks.then(|| MediaEvent::Tracks(q.tracks.clone()));
        let needed = cost(event) + tracks.as_ref().map_or(0, cost);
        if q.bytes + needed > self.limit {
            q.dropped_frames += 1;
            if has_video {
                let new_drop = q.gate != (Gate::WaitKey { overflow: true }) || key;
                q.dropped_gops += u64::from(new_drop);
                q.gate = Gate::WaitKey { overflow: true };
                return new_drop;
            }
            return false;
        }
        if let Some(tracks) = tracks {
            q.items.push_back(tracks);
            q.resend_tracks = false;
        }
        q.items.push_back(event.clone());
        q.bytes += needed;
        q.gate = Gate::Open;
        self.notify.notify_one();
        false
    }

    /// While closed: keeps `event` if it starts a GOP (dropping the one kept) or continues
    /// the kept one; a GOP outgrowing the limit is dropped whole.
    fn cache(&self, q: &mut Inner, event: &MediaEvent, key: bool) {
        if key {
            q.items.clear();
            q.bytes = 0;
            q.resend_tracks = true;
        } else if q.items.is_empty() {
            return;
        }
        let tracks = q.resend_tracks.then(|| MediaEvent::Tracks(q.tracks.clone()));
        let needed = cost(event) + tracks.as_ref().map_or(0, cost);
        if q.bytes + needed > self.limit {
            q.items.clear();
            q.bytes = 0;
            q.resend_tracks = true;
            return;
        }
        if let Some(tracks) = tracks {
            q.items.push_back(tracks);
            q.resend_tracks = false;
        }
        q.items.push_back(event.clone());
        q.bytes += needed;
    }

    /// The worker is live: send the kept GOP, or keep events again from the next key frame
    /// on (tracks first).
    pub(crate) fn open(&self) {
        let mut q = self.lock();
        if q.gate == Gate::Closed {
            if q.items.is_empty() {
                q.gate = Gate::WaitKey { overflow: false };
                q.resend_tracks = true;
            } else {
                q.gate = Gate::Open;
                self.notify.notify_one();
            }
        }
    }

    /// The worker is not live any more: drop everything queued; keep GOPs from the next IDR.
    pub(crate) fn close(&self) {
        let dropped = {
            let mut q = self.lock();
            q.gate = Gate::Closed;
            q.bytes = 0;
            q.resend_tracks = true;
            std::mem::take(&mut q.items)
        };
        drop(dropped); // outside the lock
    }

    /// Asks the worker to end (see [`Ending`]); a `Stop` overrides a `Drain`.
    pub(crate) fn end(&self, how: Ending) {
        self.ending.send_if_modified(|e| {
            let new = match (*e, how) {
                (Some(Ending::Stop), _) => Ending::Stop,
                (_, how) => how,
            };
            let changed = *e != Some(new);
            *e = Some(new);
            changed
        });
        self.notify.notify_one();
    }

    /// How the worker was asked to end, if it was.
    pub(crate) fn ending(&self) -> Option<Ending> {
        *self.ending.borrow()
    }

    /// Resolves once the worker is asked to end.
    pub(crate) async fn ended(&self) -> Ending {
        let mut rx = self.ending.subscribe();
        let ending = match rx.wait_for(Option::is_some).await {
            Ok(e) => e.unwrap_or(Ending::Stop),
            Err(_) => Ending::Stop, // the sender lives in self: unreachable
        };
        ending
    }

    /// Resolves once the worker is asked to stop (not on a drain).
    pub(crate) async fn stopped(&self) {
        let mut rx = self.ending.subscribe();
        let _ = rx.wait_for(|e| *e == Some(Ending::Stop)).await;
    }

    /// The next event without waiting.
    pub(crate) fn try_pop(&self) -> Option<MediaEvent> {
        let mut q = self.lock();
        let event = q.items.pop_front()?;
        q.bytes -= cost(&event);
        Some(event)
    }

    /// The next event; `None` once asked to stop, or to drain and the queue is empty.
    /// Cancel-safe.
    pub(crate) async fn pop(&self) -> Option<MediaEvent> {
        loop {
            match self.ending() {
                Some(Ending::Stop) => return None,
                Some(Ending::Drain) => return self.try_pop(),
                None => {}
            }
            if let Some(event) = self.try_pop() {
                return Some(event);
            }
            self.notify.notified().await;
        }
    }

    /// `(dropped_gops, dropped_frames)` so far.
    pub(crate) fn counters(&self) -> (u64, u64) {
        let q = self.lock();
        (q.dropped_gops, q.dropped_frames)
    }

    /// Bytes queued now.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.lock().bytes
    }
}

#[cfg(test)]
#[path = "queue_tests.rs"]
mod tests;
