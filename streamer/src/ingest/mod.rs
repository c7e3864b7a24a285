//! Ingest protocols, one module each, every one ending in the same [`MediaEvent`] stream
//! (MediaMTX's layout: one package per protocol behind one stream model).
//!
//! - push, authorized against the channel table ([`crate::publish`]): [`rtmp`], [`srt`];
//! - pull, driven by [`crate::pull`] with reconnects: [`rtsp`] (IP cameras), [`udp`]
//!   (unicast or multicast MPEG-TS).
//!
//! MPEG-TS carried by UDP and SRT is demuxed by [`mpegts`].
//!
//! A pulled source is a [`MediaSource`]: one connection's events, its timestamps still the
//! source's own. [`crate::pull`] maps them onto one output timeline that survives reconnects
//! ([`crate::media::Timeline::map_frame`]).

pub mod mpegts;
pub mod rtmp;
pub mod rtsp;
pub mod srt;
pub mod udp;

use crate::media::MediaEvent;
use thiserror::Error;

/// Why a pulled source could not be opened, or stopped.
///
/// Every error ends one connection only; [`crate::pull`] reconnects with backoff.
/// [`SourceError::is_permanent`] ones (a codec we refuse, a malformed URL) are retried at the
/// longest backoff, as a camera may be reconfigured.
#[derive(Debug, Error)]
pub enum SourceError {
    /// The URL cannot be used (scheme, host, query parameters); a message saying what.
    #[error("invalid source URL: {0}")]
    InvalidUrl(String),
    /// Connecting, or the protocol's setup (RTSP DESCRIBE/SETUP/PLAY, a multicast join).
    #[error("connect failed: {0}")]
    Connect(String),
    /// The server refused the credentials (RTSP 401 after authenticating).
    #[error("authentication refused")]
    Unauthorized,
    /// The source offers nothing we can record, e.g. H.265 video or no H.264 track; says what.
    #[error("unsupported media: {0}")]
    Unsupported(String),
    /// No data for the source's receive timeout.
    #[error("no data for {0:?}")]
    Timeout(std::time::Duration),
    /// The stream broke the protocol (RTSP/RTP framing, MPEG-TS structure beyond repair).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// Socket error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl SourceError {
    /// Errors that reconnecting soon will not fix: an unusable URL or unsupported media.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::InvalidUrl(_) | Self::Unsupported(_))
    }
}

/// One open connection to a pulled source.
///
/// Events come in decode order. [`MediaEvent::Tracks`] comes before the first frame and again
/// whenever the codec configuration changes. Frames carry the **source's own timestamps**:
/// 90 kHz ticks, unwrapped (monotonic apart from real source jumps), non-negative; video as
/// an Annex B access unit starting with an AUD, SPS/PPS in front of every IDR; audio as one
/// ADTS frame each (the same payload contract as [`crate::media::Frame`]).
#[async_trait::async_trait]
pub trait MediaSource: Send {
    /// The next event; `Ok(None)` when the source ended the stream cleanly (RTSP TEARDOWN,
    /// end of a finite stream).
    ///
    /// # Errors
    /// [`SourceError`]: the connection is unusable and should be dropped.
    async fn next_event(&mut self) -> Result<Option<MediaEvent>, SourceError>;

    /// Bytes received from the network on this connection so far.
    fn bytes_in(&self) -> u64;
}

/// Removes the userinfo (`user:password@`) from a URL for logs and API responses:
/// `rtsp://admin:secret@cam/1` -> `rtsp://cam/1`. A string that is not a URL is returned
/// with everything up to its last `@` before the path removed, so no credential survives.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    match scheme {
        Some(scheme) => format!("{scheme}://{host}{path}"),
        None => format!("{host}{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redacts_userinfo() {
        assert_eq!(
            redact_url("rtsp://admin:s3cr%40t@10.0.0.5:554/Streaming/101"),
            "rtsp://10.0.0.5:554/Streaming/101"
        );
        assert_eq!(redact_url("rtsp://user@cam/a@b"), "rtsp://cam/a@b");
        assert_eq!(redact_url("rtsp://a:b@c@cam/x"), "rtsp://cam/x");
        assert_eq!(
            redact_url("udp://232.1.1.1:5000?source=10.0.0.1"),
            "udp://232.1.1.1:5000?source=10.0.0.1"
        );
        assert_eq!(redact_url("x:y@host"), "host");
    }
}
