//! A device's archive: the live segments joined into longer recording segments, one EVENT
//! playlist per UTC hour.
//!
//! Layout (keys from [`streamstack_core::domain::device_archive_prefix`]):
//! `devices/<id>/<yyyy>/<mm>/<dd>/<hh>/<session>/recording.m3u8` and its segments
//! `…/<session>/000000.ts`, …; a playlist is ended (`EXT-X-ENDLIST`) when its hour is over,
//! so rewriting a playlist never grows with the length of a recording, and a lifecycle rule
//! can move everything under `devices/` to Glacier by prefix.
//!
//! An archive segment is a run of consecutive live segments (each already starts with PAT,
//! PMT and an IDR, and the muxer's continuity counters run on across them, so the bytes
//! concatenate into valid MPEG-TS). A run ends before a live segment that would carry it past
//! the recording target (its EXTINF must round to at most `EXT-X-TARGETDURATION`, RFC 8216
//! §4.3.3.1), that starts a discontinuity, that would carry it past
//! [`MediaLimits::max_segment_bytes`](crate::media::MediaLimits::max_segment_bytes), or that
//! arrives in another hour; and as soon as it reached the target.

use crate::hls::{Segment, SubmitError, UploadReport, Uploader, UploaderConfig};
use crate::publish::UploadSettings;
use crate::sink::ObjectSink;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use streamstack_core::domain::device_archive_prefix;
use time::OffsetDateTime;
use tokio::task::JoinHandle;

/// Accepted range of the recording segment length, seconds.
pub const RECORDING_SEGMENT_RANGE: std::ops::RangeInclusive<u32> = 6..=600;

/// Where and how an archive is written.
#[derive(Clone)]
pub struct ArchiveConfig {
    /// The device id (key prefix `devices/<id>/…`).
    pub device_id: String,
    /// The device's playback: its archive goes below `signed/` when signed.
    pub playback: streamstack_core::Playback,
    /// Session folder under each hour (unique per streamer run).
    pub session: String,
    /// Recording target duration, seconds ([`RECORDING_SEGMENT_RANGE`]).
    pub target_secs: u32,
    /// Largest archive segment, bytes.
    pub max_bytes: usize,
    /// Object store.
    pub sink: Arc<dyn ObjectSink>,
    /// Upload queue, retry and spool.
    pub uploads: UploadSettings,
    /// The process's shutdown deadline: past hours still uploading stop there (the rest
    /// stays in the spool).
    pub shutdown: super::Shutdown,
}

/// The hour being written and its uploader.
struct Hour {
    start: OffsetDateTime,
    uploader: Uploader,
    next_sequence: u64,
}

/// Joins live segments into recording segments and uploads them hour by hour.
pub struct Archive {
    config: ArchiveConfig,
    hour: Option<Hour>,
    parts: Vec<Bytes>,
    bytes: usize,
    duration: f64,
    discontinuity: bool,
    started_at: OffsetDateTime,
    /// Uploaders of past hours, finishing in the background.
    finishing: Vec<JoinHandle<UploadReport>>,
}

/// The UTC hour `t` falls in.
fn hour_of(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.replace_time(time::Time::from_hms(t.hour(), 0, 0).unwrap_or(time::Time::MIDNIGHT))
}

impl Archive {
    /// An archive writing nothing until the first segment.
    pub fn new(mut config: ArchiveConfig) -> Self {
        config.target_secs = config
            .target_secs
            .clamp(*RECORDING_SEGMENT_RANGE.start(), *RECORDING_SEGMENT_RANGE.end());
        Self {
            config,
            hour: None,
            parts: Vec::new(),
            bytes: 0,
            duration: 0.0,
            discontinuity: false,
            started_at: OffsetDateTime::UNIX_EPOCH,
            finishing: Vec::new(),
        }
    }

    /// Adds a live segment that finished at wall-clock time `now`.
    ///
    /// # Errors
    /// [`SubmitError`] when a completed recording segment could not be queued.
    pub async fn push(
        &mut self,
        segment: &Segment,
        now: OffsetDateTime,
    ) -> Result<(), SubmitError> {
        let target = f64::from(self.config.target_secs);
        let over = self.duration + segment.duration >= target + 0.5
            || self.bytes + segment.data.len() > self.config.max_bytes
            || segment.discontinuity
            || hour_of(now) != hour_of(self.started_at);
        if !self.parts.is_empty() && over {
            self.cut().await?;
        }
        if self.parts.is_empty() {
            self.started_at = now;
            self.discontinuity = segment.discontinuity;
        }
        self.parts.push(segment.data.clone());
        self.bytes += segment.data.len();
        self.duration += segment.duration;
        if self.duration >= target - 0.5 {
            self.cut().await?;
        }
        Ok(())
    }

    /// Uploads what is joined so far as a (short) recording segment: the source went away.
    ///
    /// # Errors
    /// [`SubmitError`] when it could not be queued.
    pub async fn flush(&mut self) -> Result<(), SubmitError> {
        self.cut().await
    }

    /// Uploads the joined parts as one recording segment of the hour it started in.
    async fn cut(&mut self) -> Result<(), SubmitError> {
        if self.parts.is_empty() {
            return Ok(());
        }
        let mut data = BytesMut::with_capacity(self.bytes);
        for part in self.parts.drain(..) {
            data.extend_from_slice(&part);
        }
        let start = hour_of(self.started_at);
        if self.hour.as_ref().is_some_and(|h| h.start != start) {
            if let Some(past) = self.hour.take() {
                let cutoff = super::deadline(self.config.shutdown.clone());
                self.finishing.push(tokio::spawn(past.uploader.finish_until(cutoff)));
            }
        }
        let config = &self.config;
        let hour = self.hour.get_or_insert_with(|| Hour {
            start,
            uploader: Uploader::spawn(
                Arc::clone(&config.sink),
                UploaderConfig {
                    prefix: device_archive_prefix(&config.device_id, config.playback, start),
                    session: config.session.clone(),
                    target_secs: config.target_secs,
                    window: 0,
                    recording: true,
                    queue: config.uploads.queue,
                    submit_timeout: config.uploads.submit_timeout,
                    retry: config.uploads.retry,
                    spool: config.uploads.spool.clone(),
                },
            ),
            next_sequence: 0,
        });
        let segment = Segment {
            sequence: hour.next_sequence,
            duration: self.duration,
            discontinuity: std::mem::take(&mut self.discontinuity),
            data: data.freeze(),
        };
        hour.next_sequence += 1;
        self.bytes = 0;
        self.duration = 0.0;
        hour.uploader.submit(segment).await
    }

    /// Uploads what is joined so far, ends the current hour's playlist and waits for every
    /// hour's uploads until `cutoff` resolves to a deadline (then the rest stays spooled).
    pub async fn finish_until(
        mut self,
        cutoff: impl std::future::Future<Output = tokio::time::Instant>,
    ) -> UploadReport {
        if let Err(e) = self.cut().await {
            tracing::error!(device = %self.config.device_id, error = %e, "last recording segment not queued");
        }
        let mut total = match self.hour.take() {
            Some(hour) => hour.uploader.finish_until(cutoff).await,
            None => UploadReport { ended: true, ..Default::default() },
        };
        for past in self.finishing {
            if let Ok(report) = past.await {
                total.segments += report.segments;
                total.lost_segments += report.lost_segments;
                total.retries += report.retries;
                total.stalls += report.stalls;
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::DirSink;
    use time::macros::datetime;

    fn live(sequence: u64, duration: f64, discontinuity: bool) -> Segment {
        Segment { sequence, duration, discontinuity, data: Bytes::from(vec![0x47; 188]) }
    }

    #[tokio::test]
    async fn joins_segments_per_target_and_hour() {
        let dir = std::env::temp_dir().join(format!("archive-{}", rand::random::<u32>()));
        let sink = Arc::new(DirSink::new(dir.clone()));
        let mut archive = Archive::new(ArchiveConfig {
            device_id: "cam1".into(),
            playback: streamstack_core::Playback::Public,
            session: "s1".into(),
            target_secs: 12,
            max_bytes: 1 << 20,
            sink,
            uploads: UploadSettings::default(),
            shutdown: tokio::sync::watch::channel(None).1,
        });
        let t = datetime!(2026-11-23 18:59:30 UTC);
        // 4 s live segments: 3 make a 12 s recording segment; the hour turns after 30 s.
        for i in 0..11u32 {
            let now = t + time::Duration::seconds(i64::from(i) * 4);
            archive.push(&live(u64::from(i), 4.0, i == 9), now).await.unwrap();
        }
        let report = archive.finish_until(std::future::pending()).await;
        assert!(report.ended);
        let read = |p: &str| std::fs::read_to_string(dir.join(p)).unwrap();
        let h18 = read("devices/cam1/2026/11/23/18/s1/recording.m3u8");
        let h19 = read("devices/cam1/2026/11/23/19/s1/recording.m3u8");
        // 18:59:30..18:59:58: 12 s + 12 s + 8 s (cut when the hour turned at 19:00:02).
        assert_eq!(h18.matches("#EXTINF").count(), 3, "{h18}");
        assert!(h18.contains("#EXT-X-TARGETDURATION:12") && h18.contains("#EXT-X-ENDLIST"));
        // 19:00:02: 4 s, then a discontinuity starts one of 8 s, ended by the finish.
        assert_eq!(h19.matches("#EXTINF").count(), 2, "{h19}");
        assert!(h19.contains("#EXT-X-DISCONTINUITY"), "{h19}");
        let first = std::fs::read(dir.join("devices/cam1/2026/11/23/18/s1/000000.ts")).unwrap();
        assert_eq!(first.len(), 3 * 188);
        let _ = std::fs::remove_dir_all(dir);
    }
}
