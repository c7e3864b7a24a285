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
use crate::publish::Ingest;
use rtmp::{RtmpLimits, SourceRate};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// What every connection task of one push server (RTMP, SRT) shares.
pub(crate) struct Shared {
    pub(crate) ingest: Arc<Ingest>,
    pub(crate) limits: RtmpLimits,
    /// Refusal log lines per source.
    pub(crate) refusals: SourceRate,
    /// Publish authorizations per source.
    pub(crate) attempts: SourceRate,
}

impl Shared {
    /// Shared state over `ingest`, publish attempts limited per source IP and minute by
    /// `limits`.
    pub(crate) fn new(ingest: Arc<Ingest>, limits: RtmpLimits) -> Self {
        let attempts = SourceRate::new(limits.publish_attempts_per_minute, Duration::from_secs(60));
        Self { ingest, limits, refusals: SourceRate::refusal_log(), attempts }
    }
}

/// Shutdown of a push server or of `streamer pull`: tells every session or source task (through `stop`) to flush its last segment
/// and end its playlist by the drain's end less [`rtmp::FINISH_MARGIN`] (kept for releasing
/// leases), and waits up to `drain` for them; `protocol` names the server in the log.
pub(crate) async fn drain(
    mut sessions: tokio::task::JoinSet<()>,
    stop: &tokio::sync::watch::Sender<Option<tokio::time::Instant>>,
    drain: Duration,
    protocol: &str,
) {
    tracing::info!(sessions = sessions.len(), protocol, "shutting down: flushing");
    let finish_by = tokio::time::Instant::now() + drain.saturating_sub(rtmp::FINISH_MARGIN);
    let _ = stop.send(Some(finish_by));
    let drained =
        tokio::time::timeout(drain, async { while sessions.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(protocol, "drain timeout: aborting remaining sessions");
    }
}

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

    /// Whether the connection stays usable after [`SourceError::Timeout`]: a passive
    /// receiver (a UDP socket) keeps listening, so a feed that comes back is recorded at once
    /// instead of after a reconnect backoff. Default `false`.
    fn survives_timeout(&self) -> bool {
        false
    }
}

/// Removes the userinfo (`user:password@`) from a URL for logs and API responses:
/// `rtsp://admin:secret@cam/1` -> `rtsp://cam/1`.
///
/// A URL that parses (RFC 3986) loses exactly its userinfo. One that does not, e.g. a
/// password with an unencoded `/`, `?` or `#` (`rtsp://admin:se/cret@cam/1`), loses
/// everything up to its last `@`: an `@` later in a path costs some of the URL in the log,
/// never a credential.
pub fn redact_url(url: &str) -> String {
    if let Ok(mut parsed) = url::Url::parse(url) {
        if parsed.has_host() && !url[url.find('@').map_or(0, |at| at + 1)..].contains('@') {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            return parsed.to_string();
        }
    }
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let rest = rest.rsplit_once('@').map_or(rest, |(_, after)| after);
    match scheme {
        Some(scheme) => format!("{scheme}://{rest}"),
        None => rest.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn redacts_userinfo() {
        let cases = [
            (
                "rtsp://admin:s3cr%40t@10.0.0.5:554/Streaming/101",
                "rtsp://10.0.0.5:554/Streaming/101",
            ),
            ("rtsp://user@cam/a", "rtsp://cam/a"),
            ("rtsp://a:b@c@cam/x", "rtsp://cam/x"),
            ("udp://232.1.1.1:5000?source=10.0.0.1", "udp://232.1.1.1:5000?source=10.0.0.1"),
            ("x:y@host", "host"),
            // Unencoded delimiters in the password: not a URL RFC 3986 can split.
            ("rtsp://admin:se/cret@cam/1", "rtsp://cam/1"),
            ("rtsp://admin:Pa55?w0rd#1@127.0.0.1:9/cam", "rtsp://127.0.0.1:9/cam"),
            ("rtsp://admin:p@ss/w@rd@cam/1", "rtsp://cam/1"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
            for secret in ["s3cr", "se/cret", "Pa55", "ss/w"] {
                assert!(!redact_url(url).contains(secret), "{url}");
            }
        }
    }
}
