//! Offline remux of an FLV file to HLS through the live pipeline (same demuxer, segmenter
//! and uploader as RTMP ingest). Used by the benchmark and for recorded captures.

use crate::flv::{FlvDemuxer, FlvFileReader, TAG_AUDIO, TAG_VIDEO};
use crate::hls::{RetryPolicy, SegmentError, Segmenter, UploadReport, Uploader, UploaderConfig};
use crate::media::MediaLimits;
use crate::sink::ObjectSink;
use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;

/// Errors of [`remux_flv`].
#[derive(Debug, thiserror::Error)]
pub enum RemuxError {
    /// Malformed FLV.
    #[error(transparent)]
    Flv(#[from] crate::flv::FlvError),
    /// A segment over its byte limit, or an internal muxing error.
    #[error(transparent)]
    Mux(#[from] SegmentError),
    /// The sink stopped accepting segments.
    #[error(transparent)]
    Upload(#[from] crate::hls::SubmitError),
}

/// Remuxes the FLV in `input` to `<prefix>/index.m3u8` plus segments in `sink`, with
/// segments of `target_secs` seconds and a playlist window of `window` segments (use a large
/// window to keep the whole file listed).
///
/// # Errors
/// [`RemuxError`] for malformed input or a sink that never accepts writes.
pub async fn remux_flv(
    input: impl BufRead,
    sink: Arc<dyn ObjectSink>,
    prefix: &str,
    target_secs: u32,
    window: usize,
) -> Result<UploadReport, RemuxError> {
    let mut reader = FlvFileReader::new(input)?;
    let limits = MediaLimits::default();
    let mut demux = FlvDemuxer::with_limits(limits);
    let mut segmenter = Segmenter::new(target_secs, limits);
    let uploader = Uploader::spawn(
        sink,
        UploaderConfig {
            prefix: prefix.to_owned(),
            session: "0".to_owned(),
            target_secs,
            window,
            recording: false,
            queue: 2,
            submit_timeout: Duration::from_secs(300),
            retry: RetryPolicy::default(),
            spool: None,
        },
    );
    while let Some(tag) = reader.next_tag()? {
        let event = match tag.kind {
            TAG_AUDIO => demux.audio(tag.timestamp_ms, tag.body)?,
            TAG_VIDEO => demux.video(tag.timestamp_ms, tag.body)?,
            _ => None,
        };
        if let Some(event) = event {
            if let Some(segment) = segmenter.push_event(&event)? {
                uploader.submit(segment).await?;
            }
        }
    }
    if let Some(segment) = segmenter.finish()? {
        uploader.submit(segment).await?;
    }
    Ok(uploader.finish().await)
}
