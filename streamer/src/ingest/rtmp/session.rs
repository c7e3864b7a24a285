//! One RTMP connection: handshake, connect, publish, media, unpublish — each step bounded by
//! the server's [`RtmpLimits`].

use super::guard::{ChunkGuard, GuardError};
use super::limits::{ConnectionPermit, RtmpLimits};
use crate::flv::FlvDemuxer;
use crate::ingest::Shared;
use crate::publish::{LivePublish, PublishError};
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

/// Read buffer of a connection until its publish is authorized, bytes.
const UNAUTHORIZED_READ_BUFFER: usize = 4 * 1024;
/// Read buffer of a publishing connection, bytes.
const PUBLISH_READ_BUFFER: usize = 64 * 1024;
/// Receive low-water mark of a publishing connection (`SO_RCVLOWAT`, socket(7)), bytes: the
/// kernel wakes the server once this much has arrived (or the peer closed) instead of once
/// per RTMP message, which more than halves the CPU per stream. It delays reading by at most
/// 16 KiB of the stream: 80 ms at 1.6 Mb/s, 1 s at 128 kb/s, well inside a segment.
const PUBLISH_RECV_LOW_WATER: libc::c_int = 16 * 1024;

/// Sets `SO_RCVLOWAT` on a connected socket; a failure only costs wake-ups, so it is logged.
fn set_recv_low_water(socket: &TcpStream, bytes: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: setsockopt(2) on a descriptor this TcpStream owns, with a pointer to a live
    // c_int and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "SO_RCVLOWAT not set");
    }
}

#[derive(Debug, Error)]
enum SessionError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake: {0}")]
    Handshake(#[from] rml_rtmp::handshake::HandshakeError),
    #[error("rtmp: {0}")]
    Rtmp(#[from] rml_rtmp::sessions::ServerSessionError),
    #[error("chunk stream refused: {0}")]
    Guard(#[from] GuardError),
    #[error("media: {0}")]
    Media(#[from] crate::flv::FlvError),
    #[error("publish refused: {0}")]
    Refused(PublishError),
    #[error("play requests are not served")]
    Play,
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("no data for {0:?}")]
    Idle(Duration),
    #[error("no authorized publish within {0:?}")]
    AuthDeadline(Duration),
    #[error("more than {0} bytes before an authorized publish")]
    UnauthorizedBytes(u64),
    #[error("write not completed within {0:?}")]
    WriteTimeout(Duration),
}

/// Runs one connection to completion; errors close this connection only and are logged
/// (refusals of unauthenticated peers at most [`super::SourceRate::LOG_LINES_PER_MINUTE`]
/// times a minute per source).
pub(super) async fn run(
    socket: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Receiver<Option<Instant>>,
    permit: ConnectionPermit,
) {
    let limits = shared.limits;
    let mut conn = Connection {
        socket,
        shared: Arc::clone(&shared),
        publish: None,
        demux: FlvDemuxer::with_limits(shared.ingest.media_limits()),
        app: String::new(),
        guard: ChunkGuard::new(limits.unauthorized_chunks()),
        deadline: Some(Instant::now() + limits.auth_deadline),
        received: 0,
        limits,
        stop: stop.clone(),
        peer,
    };
    let result = conn.serve().await;
    let authorized = conn.deadline.is_none();
    if let Some(publish) = conn.publish.take() {
        publish.finish(stop).await;
    }
    drop(permit);
    match result {
        Ok(()) => tracing::debug!(%peer, "connection closed"),
        Err(e) if authorized => tracing::warn!(%peer, error = %e, "connection closed on error"),
        Err(e) => {
            if let Some(suppressed) = shared.refusals.admit(peer.ip()) {
                tracing::warn!(%peer, error = %e, suppressed, "connection refused");
            }
        }
    }
}

struct Connection {
    socket: TcpStream,
    shared: Arc<Shared>,
    limits: RtmpLimits,
    publish: Option<LivePublish>,
    demux: FlvDemuxer,
    app: String,
    guard: ChunkGuard,
    /// Until the publish is authorized: when the connection must have got there.
    deadline: Option<Instant>,
    /// Bytes received before authorization.
    received: u64,
    /// The server's shutdown signal: its drain deadline once it is shutting down.
    stop: watch::Receiver<Option<Instant>>,
    peer: SocketAddr,
}

impl Connection {
    /// Reads what the peer sent; `Ok(0)` at end of stream, on server shutdown or when the
    /// running publish was revoked (channel deleted, expired, key rotated, lease lost).
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, SessionError> {
        let idle = Instant::now() + self.limits.idle_timeout;
        let until = self.deadline.map_or(idle, |d| d.min(idle));
        let (socket, publish, stop) = (&mut self.socket, &mut self.publish, &mut self.stop);
        let revoked = async {
            match publish.as_mut() {
                Some(publish) => publish.revoked().await,
                None => std::future::pending().await,
            }
        };
        let n = tokio::select! {
            read = tokio::time::timeout_at(until, socket.read(buf)) => match read {
                Ok(read) => read?,
                Err(_) if self.deadline.is_some_and(|d| d <= idle) => {
                    return Err(SessionError::AuthDeadline(self.limits.auth_deadline))
                }
                Err(_) => return Err(SessionError::Idle(self.limits.idle_timeout)),
            },
            _ = stop.wait_for(Option::is_some) => 0,
            _ = revoked => 0,
        };
        if self.deadline.is_some() {
            self.received += n as u64;
            if self.received > self.limits.max_unauthorized_bytes {
                return Err(SessionError::UnauthorizedBytes(self.limits.max_unauthorized_bytes));
            }
        }
        Ok(n)
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        let timeout = self.limits.write_timeout;
        tokio::time::timeout(timeout, self.socket.write_all(bytes))
            .await
            .map_err(|_| SessionError::WriteTimeout(timeout))?
            .map_err(Into::into)
    }

    async fn serve(&mut self) -> Result<(), SessionError> {
        let mut buf = vec![0u8; UNAUTHORIZED_READ_BUFFER];
        let mut handshake = Handshake::new(PeerType::Server);
        let leftover = loop {
            let n = self.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            match handshake.process_bytes(&buf[..n])? {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    self.write(&response_bytes).await?;
                }
                HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
                    self.write(&response_bytes).await?;
                    break remaining_bytes;
                }
            }
        };
        let (mut session, initial) = ServerSession::new(ServerSessionConfig::new())?;
        self.handle(&mut session, initial).await?;
        self.input(&mut session, &leftover).await?;
        loop {
            if self.deadline.is_none() && buf.len() < PUBLISH_READ_BUFFER {
                buf.resize(PUBLISH_READ_BUFFER, 0);
                set_recv_low_water(&self.socket, PUBLISH_RECV_LOW_WATER);
            }
            let n = self.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            self.input(&mut session, &buf[..n]).await?;
        }
    }

    /// Checks `bytes` with the chunk guard, then feeds them to the session.
    async fn input(
        &mut self,
        session: &mut ServerSession,
        bytes: &[u8],
    ) -> Result<(), SessionError> {
        self.guard.inspect(bytes)?;
        let results = session.handle_input(bytes)?;
        self.handle(session, results).await
    }

    async fn handle(
        &mut self,
        session: &mut ServerSession,
        results: Vec<ServerSessionResult>,
    ) -> Result<(), SessionError> {
        for result in results {
            match result {
                ServerSessionResult::OutboundResponse(packet) => self.write(&packet.bytes).await?,
                ServerSessionResult::RaisedEvent(event) => {
                    let follow_up = self.on_event(session, event).await?;
                    Box::pin(self.handle(session, follow_up)).await?;
                }
                ServerSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(())
    }

    async fn on_event(
        &mut self,
        session: &mut ServerSession,
        event: ServerSessionEvent,
    ) -> Result<Vec<ServerSessionResult>, SessionError> {
        match event {
            ServerSessionEvent::ConnectionRequested { request_id, app_name } => {
                if let Err(e) = crate::publish::check_app(&app_name) {
                    let code = "NetConnection.Connect.Rejected";
                    return Err(self.refuse(session, request_id, code, e).await);
                }
                self.app = app_name;
                Ok(session.accept_request(request_id)?)
            }
            ServerSessionEvent::PlayStreamRequested { request_id, .. } => {
                let results = session.reject_request(
                    request_id,
                    "NetStream.Play.Failed",
                    "this server only accepts publishes",
                )?;
                self.handle_responses(results).await;
                Err(SessionError::Play)
            }
            ServerSessionEvent::PublishStreamRequested {
                request_id, app_name, stream_key, ..
            } => {
                let code = "NetStream.Publish.BadName";
                if self.publish.is_some() {
                    let e = PublishError::AlreadyLive;
                    return Err(self.refuse(session, request_id, code, e).await);
                }
                if self.shared.attempts.admit(self.peer.ip()).is_none() {
                    let e = PublishError::RateLimited;
                    return Err(self.refuse(session, request_id, code, e).await);
                }
                let app = if app_name.is_empty() { self.app.clone() } else { app_name };
                let ingest = &self.shared.ingest;
                let started = match ingest.authorize(&app, &stream_key).await {
                    Ok(channel) => ingest.start(channel).await,
                    Err(e) => Err(e),
                };
                match started {
                    Ok(publish) => {
                        self.publish = Some(publish);
                        self.demux = FlvDemuxer::with_limits(ingest.media_limits());
                        self.deadline = None;
                        self.guard.set_max_message_bytes(self.limits.max_message);
                        Ok(session.accept_request(request_id)?)
                    }
                    Err(e) => Err(self.refuse(session, request_id, code, e).await),
                }
            }
            ServerSessionEvent::VideoDataReceived { data, timestamp, .. } => {
                if let Some(frame) = self.demux.video(timestamp.value, &data)? {
                    self.push(frame).await?;
                }
                Ok(Vec::new())
            }
            ServerSessionEvent::AudioDataReceived { data, timestamp, .. } => {
                if let Some(frame) = self.demux.audio(timestamp.value, &data)? {
                    self.push(frame).await?;
                }
                Ok(Vec::new())
            }
            ServerSessionEvent::PublishStreamFinished { .. } => {
                if let Some(publish) = self.publish.take() {
                    publish.finish(self.stop.clone()).await;
                }
                Ok(Vec::new())
            }
            _ => Ok(Vec::new()),
        }
    }

    async fn push(&mut self, event: crate::media::MediaEvent) -> Result<(), SessionError> {
        match self.publish.as_mut() {
            Some(publish) => Ok(publish.push(&event).await?),
            None => Ok(()),
        }
    }

    /// Sends the session's responses, best effort (the connection is closing).
    async fn handle_responses(&mut self, results: Vec<ServerSessionResult>) {
        for result in results {
            if let ServerSessionResult::OutboundResponse(packet) = result {
                if self.write(&packet.bytes).await.is_err() {
                    return;
                }
            }
        }
        let _ = tokio::time::timeout(self.limits.write_timeout, self.socket.flush()).await;
    }

    /// Answers a connect or publish request with `code` and a reason that does not tell an
    /// unauthenticated client which check failed; the full error is logged by the caller.
    /// Returns the error that closes the connection.
    async fn refuse(
        &mut self,
        session: &mut ServerSession,
        request_id: u32,
        code: &str,
        error: PublishError,
    ) -> SessionError {
        if let Ok(results) = session.reject_request(request_id, code, error.public_reason()) {
            self.handle_responses(results).await;
        }
        SessionError::Refused(error)
    }
}
