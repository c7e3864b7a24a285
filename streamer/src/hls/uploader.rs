//! Ordered upload of segments and playlists, spooled to disk while the store is away.
//!
//! One uploader task per publish. [`Uploader::submit`] writes each finished segment to the
//! publish's [`SessionSpool`] (when a spool is configured) and queues it; the task uploads
//! segments strictly in order, each retried until stored, and only once a segment is stored
//! appends it to the playlists (and to the spool's playlist log) and writes them. A playlist
//! therefore never names a segment that is not in the store, and a store outage only grows
//! the spool: a segment is lost only when the spool's disk budget is exhausted, which stops
//! the publish ([`SubmitError::SpoolFull`]).
//!
//! The live playlist continues the one an earlier session left at the same key (a process
//! killed and replaced, a device pull restarted): just before listing its first segment the
//! uploader reads `<prefix>/index.m3u8` back ([`ObjectSink::get`]) and goes on from it
//! ([`LivePlaylist::continue_from`]), so its media sequence numbers never go backwards
//! (RFC 8216 §6.2.1, §6.3.5) and the first new segment carries `EXT-X-DISCONTINUITY`
//! (§4.3.2.3). Nothing there, or nothing readable, starts a fresh playlist; ingest never
//! fails for it. The per-session recording playlist always starts afresh.

use super::continuity::continued_live;
use super::fence::LiveFence;
use super::spool::{
    SegmentEntry, SessionManifest, SessionSpool, Spool, SpoolError, SpooledSegment,
};
use super::{LivePlaylist, Segment};
use crate::sink::{ObjectMeta, ObjectSink};
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
const SEGMENT_TYPE: &str = "video/mp2t";
/// Live playlists change every segment: caches may keep them one second at most.
const PLAYLIST_CACHE: &str = "max-age=1";
/// Segments never change once written.
const SEGMENT_CACHE: &str = "max-age=31536000, immutable";

/// Backoff of failed writes: `initial`, doubling up to `max_backoff`. A segment is retried
/// until stored; after `retry_budget` a failing write is reported
/// as an outage.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First retry delay.
    pub initial: Duration,
    /// Largest delay between attempts (the capped backoff of a long outage).
    pub max_backoff: Duration,
    /// Retry budget of one object. Once spent, the failure is logged as an outage (error
    /// level, once per object) and counted in [`UploadReport::stalls`]; a segment then stays
    /// spooled and keeps being retried every `max_backoff`, an intermediate playlist write is
    /// dropped (the next one supersedes it), the final playlist keeps being retried.
    pub retry_budget: Duration,
}

impl Default for RetryPolicy {
    /// 200 ms doubling to 5 s; an outage is reported after 30 s on one object.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            retry_budget: Duration::from_secs(30),
        }
    }
}

/// Where and how one publish's HLS output is written.
#[derive(Debug, Clone)]
pub struct UploaderConfig {
    /// Key prefix of the channel, e.g. `live/<channel-id>`; the live playlist is
    /// `<prefix>/index.m3u8`.
    pub prefix: String,
    /// Per-publish folder under the prefix, keeping segment names unique across publishes.
    pub session: String,
    /// Target segment duration, seconds.
    pub target_secs: u32,
    /// Segments in the live playlist; 0: no live playlist at all (an archive, which writes
    /// its recording playlist only). A live playlist continues the one an earlier session
    /// left at the same key (module docs; RFC 8216 §6.2.1).
    pub window: usize,
    /// Also keep a full `recording.m3u8` in the session folder.
    pub recording: bool,
    /// Segments held in memory. Without a spool, ingest is back-pressured beyond this;
    /// with one, further segments are read back from disk when their turn comes.
    pub queue: usize,
    /// Without a spool: how long ingest waits for room in a full queue before giving up on
    /// the publish.
    pub submit_timeout: Duration,
    /// Retry behaviour of every write.
    pub retry: RetryPolicy,
    /// Local spool holding segments until stored (and recovering them after a crash);
    /// `None` keeps segments in memory only (offline remux).
    pub spool: Option<Arc<Spool>>,
}

/// What an uploader did, returned by [`Uploader::finish`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadReport {
    /// Segments stored.
    pub segments: u64,
    /// Segments that could not be uploaded: without a spool, those still queued at the
    /// finish deadline; with one, spooled files that could not be read back.
    pub lost_segments: u64,
    /// Segments left in the spool at the finish deadline, for the next start to upload.
    pub spooled: u64,
    /// Write attempts that failed and were retried.
    pub retries: u64,
    /// Objects whose retry budget ([`RetryPolicy::retry_budget`]) ran out.
    pub stalls: u64,
    /// Whether the final playlist (with `EXT-X-ENDLIST`) was stored.
    pub ended: bool,
}

/// A segment could not be accepted; the publish should stop.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// No spool, and the in-memory queue stayed full for
    /// [`UploaderConfig::submit_timeout`].
    #[error("upload queue full for {0:?}: object store is not keeping up")]
    QueueFull(Duration),
    /// The spool's disk budget is exhausted (the store has been down too long) and the
    /// in-memory queue is full: this segment is lost and the publish is stopped.
    #[error("object store down too long: {0}; segment dropped, stopping the publish")]
    SpoolFull(#[source] SpoolError),
    /// The segment could not be written to the spool and the in-memory queue is full.
    #[error("spool write failed with the in-memory queue full: {0}")]
    Spool(#[source] SpoolError),
    /// The uploader task is gone.
    #[error("uploader stopped")]
    Closed,
}

/// Counters shared between the handle and the task (readable after an abort).
#[derive(Debug, Default)]
struct Stats {
    submitted: AtomicU64,
    segments: AtomicU64,
    lost: AtomicU64,
    retries: AtomicU64,
    stalls: AtomicU64,
    ended: AtomicU64,
    /// Until when the live playlist may be written (another publish may own it after).
    live_fence: Arc<LiveFence>,
}

/// A segment waiting for its upload: in memory, in the spool, or both.
struct Pending {
    entry: SegmentEntry,
    body: Option<Bytes>,
    spooled: Option<SpooledSegment>,
    /// The in-memory slot held while `body` is kept.
    _slot: Option<OwnedSemaphorePermit>,
}

/// Handle on a running uploader task.
#[derive(Debug)]
pub struct Uploader {
    /// Unbounded: entries are a few bytes each unless they hold a memory slot, and spooled
    /// ones are bounded by the spool budget.
    tx: mpsc::UnboundedSender<Pending>,
    slots: Arc<Semaphore>,
    session: Option<Arc<SessionSpool>>,
    submit_timeout: Duration,
    stats: Arc<Stats>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("entry", &self.entry).finish_non_exhaustive()
    }
}

impl Uploader {
    /// Starts the uploader task for one publish.
    pub fn spawn(sink: Arc<dyn ObjectSink>, config: UploaderConfig) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let session = config.spool.as_ref().map(|spool| {
            Arc::new(spool.session(SessionManifest {
                prefix: config.prefix.clone(),
                session: config.session.clone(),
                target_secs: config.target_secs,
                window: config.window,
                recording: config.recording,
                sink: sink.location(),
            }))
        });
        let stats = Arc::new(Stats::default());
        let slots = Arc::new(Semaphore::new(config.queue.max(1)));
        let submit_timeout = config.submit_timeout;
        let writer = Writer { sink, retry: config.retry, stats: Arc::clone(&stats) };
        let task = tokio::spawn(run(writer, config, session.clone(), rx));
        Self { tx, slots, session, submit_timeout, stats, task }
    }

    /// Hands a finished segment over. With a spool it is written there first (a disk write,
    /// off the async threads) and this only fails when the spool refuses it while the
    /// in-memory queue is full; without one, this waits for room up to the submit timeout.
    ///
    /// # Errors
    /// [`SubmitError`]: the segment was not queued and the publish should stop.
    pub async fn submit(&self, segment: Segment) -> Result<(), SubmitError> {
        // Set by the segmenter for a configuration change or a timestamp jump; a segment
        // lost in between is marked by the uploader itself.
        let entry = SegmentEntry {
            sequence: segment.sequence,
            duration: segment.duration,
            discontinuity: segment.discontinuity,
        };
        let body = segment.data;
        let pending = match &self.session {
            Some(session) => {
                let slot = Arc::clone(&self.slots).try_acquire_owned().ok();
                let (session, data) = (Arc::clone(session), body.clone());
                let written =
                    tokio::task::spawn_blocking(move || session.write_segment(entry, &data))
                        .await
                        .unwrap_or_else(|e| {
                            Err(SpoolError::Io { path: Default::default(), source: e.into() })
                        });
                match (written, slot) {
                    (Ok(spooled), slot) => Pending {
                        entry,
                        body: slot.is_some().then_some(body),
                        spooled: Some(spooled),
                        _slot: slot,
                    },
                    (Err(e), Some(slot)) => {
                        tracing::warn!(error = %e, sequence = entry.sequence, "segment kept in memory only");
                        Pending { entry, body: Some(body), spooled: None, _slot: Some(slot) }
                    }
                    (Err(e @ SpoolError::Full { .. }), None) => {
                        tracing::error!(error = %e, sequence = entry.sequence, "segment lost: spool full");
                        return Err(SubmitError::SpoolFull(e));
                    }
                    (Err(e), None) => {
                        tracing::error!(error = %e, sequence = entry.sequence, "segment lost: spool write failed");
                        return Err(SubmitError::Spool(e));
                    }
                }
            }
            None => {
                let slot = tokio::time::timeout(
                    self.submit_timeout,
                    Arc::clone(&self.slots).acquire_owned(),
                )
                .await
                .map_err(|_| SubmitError::QueueFull(self.submit_timeout))?
                .map_err(|_| SubmitError::Closed)?;
                Pending { entry, body: Some(body), spooled: None, _slot: Some(slot) }
            }
        };
        self.tx.send(pending).map_err(|_| SubmitError::Closed)?;
        self.stats.submitted.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// The fence on this publish's live-playlist writes, for its lease keeper to hold.
    pub fn live_fence(&self) -> Arc<LiveFence> {
        Arc::clone(&self.stats.live_fence)
    }

    /// Closes the queue, waits until every queued segment and the final playlists (with
    /// `EXT-X-ENDLIST`) are stored, however long the store takes, and returns the report.
    /// A publish that produced no segment writes no playlist.
    pub async fn finish(self) -> UploadReport {
        self.finish_until(std::future::pending()).await
    }

    /// [`Uploader::finish`], but stops at `deadline` (a process shutting down): what is not
    /// stored by then stays in the spool with its session record, for the next start's
    /// [`super::recover`] to upload and end ([`UploadReport::spooled`]).
    pub async fn finish_by(self, deadline: Instant) -> UploadReport {
        self.finish_until(std::future::ready(deadline)).await
    }

    /// [`Uploader::finish`] until `cutoff` resolves to a deadline (e.g. a shutdown that may
    /// start while the uploads are still going), then [`Uploader::finish_by`] that deadline.
    pub async fn finish_until(
        self,
        cutoff: impl std::future::Future<Output = Instant>,
    ) -> UploadReport {
        let Self { tx, stats, mut task, session, .. } = self;
        drop(tx);
        let deadline = async { tokio::time::sleep_until(cutoff.await).await };
        let finished = tokio::select! {
            result = &mut task => Ok(result),
            () = deadline => Err(()),
        };
        match finished {
            Ok(Err(e)) => tracing::error!(error = %e, "uploader task failed"),
            Ok(Ok(())) => {}
            Err(_) => {
                task.abort();
                let _ = task.await;
                let mut report = report(&stats);
                let done = report.segments + report.lost_segments;
                let left = stats.submitted.load(Ordering::SeqCst).saturating_sub(done);
                match session {
                    Some(_) => report.spooled = left,
                    None => report.lost_segments += left,
                }
                tracing::warn!(
                    ?report,
                    "finish deadline: the rest stays in the spool (lost without one)"
                );
                return report;
            }
        }
        report(&stats)
    }
}

fn report(stats: &Stats) -> UploadReport {
    UploadReport {
        segments: stats.segments.load(Ordering::SeqCst),
        lost_segments: stats.lost.load(Ordering::SeqCst),
        spooled: 0,
        retries: stats.retries.load(Ordering::SeqCst),
        stalls: stats.stalls.load(Ordering::SeqCst),
        ended: stats.ended.load(Ordering::SeqCst) > 0,
    }
}

/// The object keys and metadata of one session's output.
pub(crate) struct Keys {
    pub(crate) live: String,
    pub(crate) recording: String,
    prefix: String,
    session: String,
    /// Live-only output expires through the bucket's lifecycle rule; a recording's segments
    /// and playlist are kept. The sliding live playlist always expires.
    pub(crate) segment_meta: ObjectMeta,
}

impl Keys {
    pub(crate) fn new(prefix: &str, session: &str, recording: bool) -> Self {
        Self {
            live: format!("{prefix}/index.m3u8"),
            recording: format!("{prefix}/{session}/recording.m3u8"),
            prefix: prefix.to_owned(),
            session: session.to_owned(),
            segment_meta: ObjectMeta {
                content_type: SEGMENT_TYPE,
                cache_control: SEGMENT_CACHE,
                expiring: !recording,
            },
        }
    }

    /// The segment's URI in the recording playlist (which sits next to the segments).
    pub(crate) fn recording_uri(sequence: u64) -> String {
        format!("{sequence:06}.ts")
    }

    /// The segment's URI in the live playlist.
    pub(crate) fn live_uri(&self, sequence: u64) -> String {
        format!("{}/{}", self.session, Self::recording_uri(sequence))
    }

    pub(crate) fn segment(&self, sequence: u64) -> String {
        format!("{}/{}", self.prefix, self.live_uri(sequence))
    }
}

/// The playlists of one session, built up segment by segment.
pub(crate) struct Playlists {
    pub(crate) live: LivePlaylist,
    pub(crate) recording: Option<LivePlaylist>,
}

impl Playlists {
    /// Target `target_secs` s, a live window of `window` segments, and a recording playlist
    /// if `recording`.
    pub(crate) fn new(target_secs: u32, window: usize, recording: bool) -> Self {
        Self {
            live: LivePlaylist::sliding(target_secs, window),
            recording: recording.then(|| LivePlaylist::event(target_secs)),
        }
    }

    pub(crate) fn push(&mut self, keys: &Keys, entry: &SegmentEntry) {
        let seq = entry.sequence;
        self.live.push(keys.live_uri(seq), entry.duration, entry.discontinuity);
        if let Some(rec) = self.recording.as_mut() {
            rec.push(Keys::recording_uri(seq), entry.duration, entry.discontinuity);
        }
    }

    pub(crate) fn end(&mut self) {
        self.live.end();
        if let Some(rec) = self.recording.as_mut() {
            rec.end();
        }
    }
}

/// Playlist object metadata: `expiring` as in [`ObjectMeta`].
pub(crate) fn playlist_meta(expiring: bool) -> ObjectMeta {
    ObjectMeta { content_type: PLAYLIST_TYPE, cache_control: PLAYLIST_CACHE, expiring }
}

/// Writes objects with the retry policy.
pub(crate) struct Writer {
    pub(crate) sink: Arc<dyn ObjectSink>,
    pub(crate) retry: RetryPolicy,
    stats: Arc<Stats>,
}

impl Writer {
    /// A writer of its own counters (recovery).
    pub(crate) fn new(sink: Arc<dyn ObjectSink>, retry: RetryPolicy) -> Self {
        Self { sink, retry, stats: Arc::default() }
    }

    /// Writes one object, retrying with backoff. With `give_up`, stops (returning `false`)
    /// once the retry budget is spent; otherwise retries until stored.
    pub(crate) async fn put(
        &self,
        key: &str,
        body: Bytes,
        meta: ObjectMeta,
        give_up: bool,
    ) -> bool {
        self.put_fenced(key, body, meta, give_up, None).await
    }

    /// [`Writer::put`] that also stops (returning `false`) as soon as `fence` no longer
    /// allows the write, checked before every attempt: a retried live playlist never outlives
    /// the publish lease.
    async fn put_fenced(
        &self,
        key: &str,
        body: Bytes,
        meta: ObjectMeta,
        give_up: bool,
        fence: Option<&LiveFence>,
    ) -> bool {
        let started = Instant::now();
        let mut delay = self.retry.initial;
        let mut stalled = false;
        loop {
            if fence.is_some_and(|f| !f.allows()) {
                tracing::warn!(
                    key,
                    "publish lease may have lapsed: live playlist left to its new owner"
                );
                return false;
            }
            let e = match self.sink.put(key, body.clone(), meta).await {
                Ok(()) => return true,
                Err(e) => e,
            };
            self.stats.retries.fetch_add(1, Ordering::SeqCst);
            if !stalled && started.elapsed() + delay > self.retry.retry_budget {
                stalled = true;
                self.stats.stalls.fetch_add(1, Ordering::SeqCst);
                if give_up {
                    tracing::warn!(key, error = %e, "giving up on playlist write; the next one supersedes it");
                    return false;
                }
                tracing::error!(key, error = %e, retry_every_ms = self.retry.max_backoff.as_millis() as u64,
                    "object store outage: still retrying (segments wait in the spool)");
            } else {
                tracing::warn!(key, error = %e, retry_in_ms = delay.as_millis() as u64, "write failed, retrying");
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.retry.max_backoff);
        }
    }

    /// Writes the session's playlists: the recording first, then the live one if `live` is
    /// given and while that fence allows it.
    pub(crate) async fn put_playlists(
        &self,
        keys: &Keys,
        playlists: &Playlists,
        live: Option<&LiveFence>,
        give_up: bool,
    ) -> bool {
        let mut ok = true;
        if let Some(rec) = &playlists.recording {
            ok &=
                self.put(&keys.recording, rec.render().into(), playlist_meta(false), give_up).await;
        }
        if live.is_some() {
            let body = playlists.live.render().into();
            ok &= self.put_fenced(&keys.live, body, playlist_meta(true), give_up, live).await;
        }
        ok
    }
}

/// Runs `f` (blocking spool I/O) on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, SpoolError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(SpoolError::Io { path: Default::default(), source: std::io::Error::other(e) })
    })
}

async fn run(
    writer: Writer,
    config: UploaderConfig,
    session: Option<Arc<SessionSpool>>,
    mut rx: mpsc::UnboundedReceiver<Pending>,
) {
    let stats = Arc::clone(&writer.stats);
    let keys = Keys::new(&config.prefix, &config.session, config.recording);
    let mut playlists = Playlists::new(config.target_secs, config.window, config.recording);
    let mut gap = false;
    let mut listed = 0u64;

    while let Some(pending) = rx.recv().await {
        let Pending { mut entry, body, spooled, _slot } = pending;
        let body = match (body, &spooled, &session) {
            (Some(body), _, _) => body,
            (None, Some(file), Some(session)) => {
                let (session, file) = (Arc::clone(session), file.clone());
                match blocking(move || session.read_segment(&file)).await {
                    Ok(body) => body,
                    Err(e) => {
                        tracing::error!(error = %e, sequence = entry.sequence, "spooled segment unreadable: lost");
                        stats.lost.fetch_add(1, Ordering::SeqCst);
                        gap = true;
                        continue;
                    }
                }
            }
            _ => continue,
        };
        writer.put(&keys.segment(entry.sequence), body, keys.segment_meta, false).await;
        drop(_slot);
        stats.segments.fetch_add(1, Ordering::SeqCst);
        entry.discontinuity |= gap;
        gap = false;
        if let Some(session) = &session {
            let session = Arc::clone(session);
            if let Err(e) = blocking(move || session.commit(entry, spooled.as_ref())).await {
                tracing::warn!(error = %e, "spool log append failed: a crash now would not list this segment");
            }
        }
        if listed == 0 && config.window > 0 {
            // Read once the store took a segment (it is up), just before the first listing.
            playlists.live =
                continued_live(writer.sink.as_ref(), &keys.live, config.target_secs, config.window)
                    .await;
        }
        playlists.push(&keys, &entry);
        listed += 1;
        let live = (config.window > 0).then_some(&*stats.live_fence);
        writer.put_playlists(&keys, &playlists, live, true).await;
    }

    // A publish that produced no segment leaves no playlist at all.
    if listed > 0 {
        playlists.end();
        let live = (config.window > 0).then_some(&*stats.live_fence);
        if writer.put_playlists(&keys, &playlists, live, false).await {
            stats.ended.fetch_add(1, Ordering::SeqCst);
        }
    }
    if let Some(session) = session {
        if let Err(e) = blocking(move || session.remove()).await {
            tracing::warn!(error = %e, "could not remove the finished session from the spool");
        }
    }
}

#[cfg(test)]
#[path = "uploader_tests.rs"]
mod tests;
