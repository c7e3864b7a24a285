//! Offline remux of an FLV file to HLS through the live pipeline (same demuxer, segmenter
//! and uploader as RTMP ingest). Used by the benchmark and for recorded captures.

use crate::flv::{FlvDemuxer, FlvFileReader};
use crate::hls::{RetryPolicy, Segmenter, UploadReport, Uploader, UploaderConfig};
use crate::sink::ObjectSink;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

/// Errors of [`remux_flv`].
#[derive(Debug, thiserror::Error)]
pub enum RemuxError {
    /// Malformed FLV.
    #[error(transparent)]
    Flv(#[from] crate::flv::FlvError),
    /// Internal muxing error.
    #[error(transparent)]
    Mux(#[from] crate::ts::TsError),
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
    input: impl Read,
    sink: Arc<dyn ObjectSink>,
    prefix: &str,
    target_secs: u32,
    window: usize,
) -> Result<UploadReport, RemuxError> {
    let mut reader = FlvFileReader::new(input)?;
    let mut demux = FlvDemuxer::new();
    let mut segmenter = Segmenter::new(target_secs);
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
        },
    );
    while let Some(tag) = reader.next_tag()? {
        let frame = match tag.kind {
            8 => demux.audio(tag.timestamp_ms, tag.body)?,
            9 => demux.video(tag.timestamp_ms, tag.body)?,
            _ => None,
        };
        if let Some(frame) = frame {
            if let Some(segment) = segmenter.push(&frame, demux.has_audio())? {
                uploader.submit(segment).await?;
            }
        }
    }
    if let Some(segment) = segmenter.finish() {
        uploader.submit(segment).await?;
    }
    Ok(uploader.finish().await)
}
