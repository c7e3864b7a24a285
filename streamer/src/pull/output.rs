//! Where a pulled source's media goes: a channel (its publish lease and live playlist, like a
//! push), or plain HLS output (a device's live playlist and hourly archive, or a channel's
//! playlist when running standalone without a channel table).

use super::archive::{Archive, ArchiveConfig};
use super::deadline;
use crate::hls::{Segmenter, UploadReport, Uploader, UploaderConfig};
use crate::media::{MediaEvent, MediaLimits};
use crate::publish::{LivePublish, PublishError, Revocation, UploadSettings};
use crate::sink::ObjectSink;
use std::sync::Arc;
use time::OffsetDateTime;
use tokio::sync::watch;

/// Shutdown deadline shared by every output: `Some(deadline)` once the process is stopping.
pub type Shutdown = watch::Receiver<Option<tokio::time::Instant>>;

/// Live playlist settings of plain HLS output.
#[derive(Debug, Clone, Copy)]
pub struct LiveSettings {
    /// Target segment duration, seconds.
    pub segment_duration: u32,
    /// Segments in the sliding live playlist.
    pub playlist_window: u32,
}

/// Segmenter, live uploader and (for devices) archive of one pulled source.
pub struct HlsOutput {
    segmenter: Segmenter,
    live: Uploader,
    archive: Option<Archive>,
}

impl HlsOutput {
    /// Output under `prefix` (`<prefix>/index.m3u8`, segments in `<prefix>/<session>/`), with
    /// an archive when `archive` is given.
    pub fn new(
        sink: Arc<dyn ObjectSink>,
        prefix: String,
        session: String,
        live: LiveSettings,
        uploads: &UploadSettings,
        media: MediaLimits,
        archive: Option<ArchiveConfig>,
    ) -> Self {
        let config = UploaderConfig {
            prefix,
            session,
            target_secs: live.segment_duration,
            window: live.playlist_window.max(1) as usize,
            recording: false,
            queue: uploads.queue,
            submit_timeout: uploads.submit_timeout,
            retry: uploads.retry,
            spool: uploads.spool.clone(),
        };
        Self {
            segmenter: Segmenter::new(live.segment_duration, media),
            live: Uploader::spawn(sink, config),
            archive: archive.map(Archive::new),
        }
    }
}

/// One pulled source's output.
pub enum Output {
    /// A channel with a table: the pull holds the channel's publish lease.
    Channel(Box<LivePublish>),
    /// Plain HLS (devices, or standalone).
    Hls(Box<HlsOutput>),
}

impl Output {
    /// Adds one event (frames already on the output timeline).
    ///
    /// # Errors
    /// [`PublishError::Mux`] (a segment over its byte limit: the source misbehaves) or
    /// [`PublishError::Upload`] (the store cannot keep up).
    pub async fn push(&mut self, event: &MediaEvent) -> Result<(), PublishError> {
        match self {
            Self::Channel(publish) => publish.push(event).await,
            Self::Hls(out) => {
                if let Some(segment) = out.segmenter.push_event(event)? {
                    if let Some(archive) = out.archive.as_mut() {
                        archive.push(&segment, OffsetDateTime::now_utc()).await?;
                    }
                    out.live.submit(segment).await?;
                }
                Ok(())
            }
        }
    }

    /// Hands the running segment (and a device's joined recording segment) to the uploaders
    /// now: the source went away, nothing waits in memory meanwhile. The next frames start a
    /// new segment at an IDR.
    pub async fn flush(&mut self) {
        match self {
            Self::Channel(publish) => publish.flush().await,
            Self::Hls(out) => {
                let last = out.segmenter.finish().unwrap_or_else(|e| {
                    tracing::error!(error = %e, "segment lost");
                    None
                });
                if let Some(archive) = out.archive.as_mut() {
                    let result = match &last {
                        Some(segment) => archive.push(segment, OffsetDateTime::now_utc()).await,
                        None => Ok(()),
                    };
                    if let Err(e) = result.and(archive.flush().await) {
                        tracing::error!(error = %e, "recording segment not queued");
                    }
                }
                if let Some(last) = last {
                    if let Err(e) = out.live.submit(last).await {
                        tracing::error!(error = %e, "segment not queued");
                    }
                }
            }
        }
    }

    /// Resolves when a channel's lease keeper ended the publish; pending for plain output.
    pub async fn revoked(&mut self) -> Revocation {
        match self {
            Self::Channel(publish) => publish.revoked().await,
            Self::Hls(_) => std::future::pending().await,
        }
    }

    /// Flushes the last segment, ends the playlists (`EXT-X-ENDLIST`) and, for a channel,
    /// releases its lease; uploads not done by the shutdown deadline stay in the spool.
    pub async fn finish(mut self, shutdown: Shutdown) -> UploadReport {
        self.flush().await;
        match self {
            Self::Channel(publish) => (*publish).finish(shutdown).await,
            Self::Hls(out) => {
                let HlsOutput { live, archive, .. } = *out;
                let archived = async {
                    match archive {
                        Some(archive) => {
                            Some(archive.finish_until(deadline(shutdown.clone())).await)
                        }
                        None => None,
                    }
                };
                let (archived, report) =
                    tokio::join!(archived, live.finish_until(deadline(shutdown.clone())));
                if let Some(archived) = archived {
                    tracing::info!(?archived, "archive finished");
                }
                report
            }
        }
    }
}
