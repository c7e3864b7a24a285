//! Ordered, retried upload of segments and playlists.
//!
//! One uploader task per publish. Segments arrive through a bounded queue; for each one the
//! task writes the segment (retrying with exponential backoff), and only once it is stored
//! appends it to the playlists and writes them. A playlist therefore never names a segment
//! that is not in the store.

use super::{LivePlaylist, Segment};
use crate::sink::{ObjectMeta, ObjectSink};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
const SEGMENT_TYPE: &str = "video/mp2t";
/// Live playlists change every segment: caches may keep them one second at most.
const PLAYLIST_CACHE: &str = "max-age=1";
/// Segments never change once written.
const SEGMENT_CACHE: &str = "max-age=31536000, immutable";

/// Backoff of failed writes: `initial`, doubling up to `max_backoff`, until `give_up_after`.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First retry delay.
    pub initial: Duration,
    /// Largest delay between attempts.
    pub max_backoff: Duration,
    /// Total time spent on one object before it is reported lost.
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    /// 200 ms doubling to 5 s, for up to 2 minutes per object.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            give_up_after: Duration::from_secs(120),
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
    /// Segments in the live playlist.
    pub window: usize,
    /// Also keep a full `recording.m3u8` in the session folder.
    pub recording: bool,
    /// Segments that may wait in the queue before ingest is back-pressured.
    pub queue: usize,
    /// How long ingest waits for room in a full queue before giving up on the publish.
    pub submit_timeout: Duration,
    /// Retry behaviour of every write.
    pub retry: RetryPolicy,
}

/// What an uploader did, returned by [`Uploader::finish`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadReport {
    /// Segments stored.
    pub segments: u64,
    /// Segments given up after [`RetryPolicy::give_up_after`] (left out of playlists).
    pub lost_segments: u64,
    /// Write attempts that failed and were retried.
    pub retries: u64,
    /// Whether the final playlist (with `EXT-X-ENDLIST`) was stored.
    pub ended: bool,
}

/// The upload queue was full for [`UploaderConfig::submit_timeout`]: the store is failing or
/// too slow to keep up with real time.
#[derive(Debug, thiserror::Error)]
#[error("upload queue full for {0:?}: object store is not keeping up")]
pub struct SubmitError(pub Duration);

/// Handle on a running uploader task.
#[derive(Debug)]
pub struct Uploader {
    tx: mpsc::Sender<Segment>,
    submit_timeout: Duration,
    task: JoinHandle<UploadReport>,
}

impl Uploader {
    /// Starts the uploader task for one publish.
    pub fn spawn(sink: Arc<dyn ObjectSink>, config: UploaderConfig) -> Self {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let submit_timeout = config.submit_timeout;
        let task = tokio::spawn(run(sink, config, rx));
        Self { tx, submit_timeout, task }
    }

    /// Queues a finished segment, waiting for room up to the submit timeout.
    ///
    /// # Errors
    /// [`SubmitError`] when the queue stayed full; the segment is not queued.
    pub async fn submit(&self, segment: Segment) -> Result<(), SubmitError> {
        self.tx
            .send_timeout(segment, self.submit_timeout)
            .await
            .map_err(|_| SubmitError(self.submit_timeout))
    }

    /// Closes the queue, waits until every queued segment and the final playlist (with
    /// `EXT-X-ENDLIST`) are written, and returns the report.
    pub async fn finish(self) -> UploadReport {
        drop(self.tx);
        self.task.await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "uploader task failed");
            UploadReport::default()
        })
    }
}

struct Writer {
    sink: Arc<dyn ObjectSink>,
    retry: RetryPolicy,
    retries: u64,
}

impl Writer {
    /// Writes a playlist with [`Writer::put`]'s retries; `expiring` as in [`ObjectMeta`].
    async fn put_playlist(&mut self, key: &str, playlist: &LivePlaylist, expiring: bool) -> bool {
        let meta =
            ObjectMeta { content_type: PLAYLIST_TYPE, cache_control: PLAYLIST_CACHE, expiring };
        self.put(key, playlist.render().into(), meta).await
    }

    /// Writes one object, retrying until it is stored or the policy gives up.
    async fn put(&mut self, key: &str, body: Bytes, meta: ObjectMeta) -> bool {
        let started = tokio::time::Instant::now();
        let mut delay = self.retry.initial;
        loop {
            match self.sink.put(key, body.clone(), meta).await {
                Ok(()) => return true,
                Err(e) if started.elapsed() + delay > self.retry.give_up_after => {
                    tracing::error!(key, error = %e, "giving up on object after retries");
                    return false;
                }
                Err(e) => {
                    self.retries += 1;
                    tracing::warn!(key, error = %e, retry_in_ms = delay.as_millis() as u64, "write failed, retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.retry.max_backoff);
                }
            }
        }
    }
}

async fn run(
    sink: Arc<dyn ObjectSink>,
    config: UploaderConfig,
    mut rx: mpsc::Receiver<Segment>,
) -> UploadReport {
    let mut writer = Writer { sink, retry: config.retry, retries: 0 };
    let mut report = UploadReport::default();
    let live_key = format!("{}/index.m3u8", config.prefix);
    let recording_key = format!("{}/{}/recording.m3u8", config.prefix, config.session);
    let mut live = LivePlaylist::sliding(config.target_secs, config.window);
    let mut recording = config.recording.then(|| LivePlaylist::event(config.target_secs));
    let mut gap = false;
    // Live-only output expires through the bucket's lifecycle rule; a recording's segments and
    // playlist are kept. The sliding live playlist always expires.
    let keep = config.recording;
    let segment_meta =
        ObjectMeta { content_type: SEGMENT_TYPE, cache_control: SEGMENT_CACHE, expiring: !keep };

    while let Some(segment) = rx.recv().await {
        let name = format!("{}/{:06}.ts", config.session, segment.sequence);
        let key = format!("{}/{name}", config.prefix);
        if !writer.put(&key, segment.data, segment_meta).await {
            report.lost_segments += 1;
            gap = true;
            continue;
        }
        report.segments += 1;
        live.push(name.clone(), segment.duration, gap);
        // The recording playlist sits in the session folder, next to the segments.
        if let Some(rec) = recording.as_mut() {
            rec.push(format!("{:06}.ts", segment.sequence), segment.duration, gap);
        }
        gap = false;
        // Retried like segments; a playlist lost after all retries is superseded by the next.
        writer.put_playlist(&live_key, &live, true).await;
        if let Some(rec) = &recording {
            writer.put_playlist(&recording_key, rec, false).await;
        }
    }

    live.end();
    report.ended = writer.put_playlist(&live_key, &live, true).await;
    if let Some(rec) = recording.as_mut() {
        rec.end();
        writer.put_playlist(&recording_key, rec, false).await;
    }
    report.retries = writer.retries;
    report
}
