//! One SRT caller: authorize its stream id while the handshake waits, then MPEG-TS payloads
//! in, HLS out, until the caller leaves, goes idle, the publish is revoked or the server
//! shuts down.

use super::streamid::{self, StreamIdError};
use crate::ingest::mpegts::{DemuxError, TsDemuxer};
use crate::ingest::rtmp::limits::ConnectionPermit;
use crate::ingest::Shared;
use crate::media::{MediaEvent, Timeline};
use crate::publish::{LivePublish, PublishError};
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use srt_tokio::access::{RejectReason, ServerRejectReason};
use srt_tokio::options::KeySize;
use srt_tokio::{ConnectionRequest, SrtSocket};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use streamstack_core::signing::{PushCredential, RTMP_APP};
use thiserror::Error;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Longest wait for srt-tokio to complete an accepted handshake (normally one round trip).
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);

/// SRT payloads (at most 1456 bytes each, usually 1316) buffered between the SRT socket and
/// the demuxer: about 5 MiB, 2 s of a 20 Mb/s stream. A publish that falls further behind
/// (its uploads back-pressured) is closed: `srt-tokio` hands every connection's packets over
/// from one listener task, so a connection that stops reading would stall every other one.
pub const BACKLOG_PAYLOADS: usize = 4096;

/// Handshake rejection `SRT_REJ_UNSECURE` ("password required or unexpected") as
/// `srt-protocol` numbers core reasons (1000 + the libsrt code, 11); its `CoreRejectReason`
/// is not re-exported by `srt-tokio`.
const REJECT_UNSECURE: i32 = 1011;

#[derive(Debug, Error)]
enum SessionError {
    #[error("stream id refused: {0}")]
    StreamId(#[from] StreamIdError),
    #[error("encryption (a passphrase) is not supported")]
    Encrypted,
    #[error("publish refused: {0}")]
    Refused(PublishError),
    #[error("handshake not completed: {0}")]
    Accept(std::io::Error),
    #[error("socket: {0}")]
    Io(std::io::Error),
    #[error("more than {BACKLOG_PAYLOADS} payloads waiting: publish too slow")]
    Backlog,
    #[error("mpeg-ts: {0}")]
    Demux(#[from] DemuxError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("no data for {0:?}")]
    Idle(Duration),
}

impl SessionError {
    /// The SRT rejection code sent for a refused handshake: as RTMP's public reasons, it does
    /// not tell an unauthenticated caller which check failed.
    fn reject_reason(&self) -> RejectReason {
        use ServerRejectReason as R;
        if let Self::Encrypted = self {
            return RejectReason::CoreUnrecognized(REJECT_UNSECURE);
        }
        RejectReason::Server(match self {
            Self::StreamId(StreamIdError::BadMode) => R::BadMode,
            Self::StreamId(_) => R::Unauthorized,
            Self::Refused(PublishError::AlreadyLive) => R::Conflict,
            Self::Refused(PublishError::RateLimited) => R::Overload,
            Self::Refused(
                PublishError::Store(_) | PublishError::Upload(_) | PublishError::Mux(_),
            ) => R::InternalServerError,
            Self::Refused(_) => R::Unauthorized,
            _ => R::InternalServerError,
        })
    }
}

/// Runs one caller to completion; errors close this connection only and are logged, refusals
/// of unauthenticated callers at most [`crate::ingest::rtmp::SourceRate::LOG_LINES_PER_MINUTE`]
/// times a minute per source. Logs name the channel id, never the stream id (it carries the
/// signature).
pub(super) async fn run(
    request: ConnectionRequest,
    shared: Arc<Shared>,
    stop: watch::Receiver<Option<Instant>>,
    permit: ConnectionPermit,
) {
    let peer = request.remote();
    let stream_name = streamid::stream_name(request.stream_id().map(|s| s.as_str()));
    let channel = stream_name
        .as_ref()
        .ok()
        .and_then(|name| PushCredential::parse(name).ok())
        .map_or_else(|| "-".to_owned(), |c| c.channel_id);
    // Encryption is not offered: a caller that sent keying material is refused before its
    // publish is authorized (the patched srt-protocol would refuse it too).
    let encrypted = request.key_size() != KeySize::Unspecified;
    let publish = match authorize(&shared, peer, stream_name, encrypted).await {
        Ok(publish) => publish,
        Err(e) => {
            let _ = request.reject(e.reject_reason()).await;
            if let Some(suppressed) = shared.refusals.admit(peer.ip()) {
                tracing::warn!(%peer, %channel, error = %e, suppressed, "SRT publish refused");
            }
            return;
        }
    };
    // Bounded: a handshake that never completes must not hold the channel's lease.
    let accepted = tokio::time::timeout(ACCEPT_TIMEOUT, request.accept(None)).await;
    let accepted = accepted.unwrap_or_else(|_| {
        Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "SRT accept timed out"))
    });
    let mut socket = match accepted {
        Ok(socket) => socket,
        Err(e) => {
            publish.finish(stop).await;
            drop(permit);
            let e = SessionError::Accept(e);
            tracing::warn!(%peer, %channel, error = %e, "SRT connection closed on error");
            return;
        }
    };
    tracing::info!(%peer, %channel, "SRT publish accepted");
    // What SRT recovered and what it could not (the latter damages the stream).
    let mut transport = Box::pin(socket.statistics().clone());
    let mut conn = Connection { publish, shared: &shared, stop: stop.clone(), bytes: 0 };
    let result = conn.serve(socket).await;
    let t = transport.next().now_or_never().flatten().unwrap_or_default();
    let bytes = conn.bytes;
    conn.publish.finish(stop).await;
    drop(permit);
    let (lost, dropped, retransmitted) = (t.rx_loss_data, t.rx_dropped_data, t.rx_retransmit_data);
    match result {
        Ok(()) => tracing::info!(
            %peer, %channel, bytes, lost, retransmitted, dropped, "SRT connection closed"
        ),
        Err(e) => tracing::warn!(
            %peer, %channel, bytes, lost, retransmitted, dropped, error = %e,
            "SRT connection closed on error"
        ),
    }
}

/// Checks encryption, the rate limit and the stream name, then starts the publish.
async fn authorize(
    shared: &Shared,
    peer: SocketAddr,
    stream_name: Result<String, StreamIdError>,
    encrypted: bool,
) -> Result<LivePublish, SessionError> {
    if encrypted {
        return Err(SessionError::Encrypted);
    }
    if shared.attempts.admit(peer.ip()).is_none() {
        return Err(SessionError::Refused(PublishError::RateLimited));
    }
    let stream_name = stream_name?;
    let ingest = &shared.ingest;
    let channel = ingest.authorize(RTMP_APP, &stream_name).await.map_err(SessionError::Refused)?;
    ingest.start(channel).await.map_err(SessionError::Refused)
}

/// How the reader task ended.
enum ReaderEnd {
    /// The caller closed the connection (SRT shutdown, or its peer idle timeout).
    Closed,
    Io(std::io::Error),
    Backlog,
}

/// Drains `socket` into `tx` without ever waiting on the consumer (see
/// [`BACKLOG_PAYLOADS`]); dropping the socket at the end sends the SRT shutdown.
async fn read_payloads(mut socket: SrtSocket, tx: mpsc::Sender<Bytes>) -> ReaderEnd {
    while let Some(item) = socket.next().await {
        match item {
            Ok((_, payload)) => match tx.try_send(payload) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => return ReaderEnd::Backlog,
                Err(mpsc::error::TrySendError::Closed(_)) => return ReaderEnd::Closed,
            },
            Err(e) => return ReaderEnd::Io(e),
        }
    }
    ReaderEnd::Closed
}

/// Aborts the reader task (closing the SRT socket) however the session ends.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Connection<'a> {
    publish: LivePublish,
    shared: &'a Shared,
    /// The server's shutdown signal: its drain deadline once it is shutting down.
    stop: watch::Receiver<Option<Instant>>,
    /// Payload bytes received.
    bytes: u64,
}

impl Connection<'_> {
    /// Demuxes and publishes until the caller leaves (`Ok`), the server stops or the publish
    /// is revoked (`Ok`), or an error.
    async fn serve(&mut self, socket: SrtSocket) -> Result<(), SessionError> {
        let (tx, mut rx) = mpsc::channel(BACKLOG_PAYLOADS);
        let mut reader = AbortOnDrop(tokio::spawn(read_payloads(socket, tx)));
        let media = self.shared.ingest.media_limits();
        let mut demux = TsDemuxer::new(media, None);
        let mut timeline = Timeline::new(media.max_timestamp_jump);
        let mut events = Vec::new();
        let idle = self.shared.limits.idle_timeout;
        loop {
            let payload = tokio::select! {
                received = tokio::time::timeout(idle, rx.recv()) => match received {
                    Ok(Some(payload)) => payload,
                    Ok(None) => break,
                    Err(_) => return Err(SessionError::Idle(idle)),
                },
                _ = self.stop.wait_for(Option::is_some) => return Ok(()),
                _ = self.publish.revoked() => return Ok(()),
            };
            self.bytes += payload.len() as u64;
            demux.push(&payload, &mut events)?;
            self.emit(&mut timeline, &mut events).await?;
        }
        // The frames still being assembled are left out, not flushed with `demux.finish`:
        // a caller in live mode closes without lingering (SRTO_LINGER 0), so the tail of
        // its last access unit is often never sent, and a truncated frame does not decode.
        match (&mut reader.0).await {
            Ok(ReaderEnd::Closed) | Err(_) => Ok(()),
            Ok(ReaderEnd::Io(e)) => Err(SessionError::Io(e)),
            Ok(ReaderEnd::Backlog) => Err(SessionError::Backlog),
        }
    }

    /// Maps the frames of `events` onto the publish's timeline and publishes them all.
    async fn emit(
        &mut self,
        timeline: &mut Timeline,
        events: &mut Vec<MediaEvent>,
    ) -> Result<(), SessionError> {
        for mut event in events.drain(..) {
            if let MediaEvent::Frame(frame) = &mut event {
                timeline.map_frame(frame);
            }
            self.publish.push(&event).await?;
        }
        Ok(())
    }
}
