//! One RTMP connection: handshake, connect, publish, media, unpublish.

use crate::flv::FlvDemuxer;
use crate::publish::{Ingest, LivePublish, PublishError};
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

/// A publisher that sends nothing for this long is disconnected.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
enum SessionError {
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake: {0}")]
    Handshake(#[from] rml_rtmp::handshake::HandshakeError),
    #[error("rtmp: {0}")]
    Rtmp(#[from] rml_rtmp::sessions::ServerSessionError),
    #[error("media: {0}")]
    Media(#[from] crate::flv::FlvError),
    #[error("publish refused: {0}")]
    Refused(PublishError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("no data for {0:?}")]
    Idle(Duration),
}

/// Runs one connection to completion; errors close this connection only and are logged.
pub(super) async fn run(
    socket: TcpStream,
    peer: SocketAddr,
    ingest: Arc<Ingest>,
    stop: watch::Receiver<bool>,
) {
    let mut conn =
        Connection { socket, ingest, publish: None, demux: FlvDemuxer::new(), app: String::new() };
    let result = conn.serve(stop).await;
    if let Some(publish) = conn.publish.take() {
        publish.finish().await;
    }
    match result {
        Ok(()) => tracing::debug!(%peer, "connection closed"),
        Err(SessionError::Refused(e)) => tracing::warn!(%peer, error = %e, "publish refused"),
        Err(e) => tracing::warn!(%peer, error = %e, "connection closed on error"),
    }
}

struct Connection {
    socket: TcpStream,
    ingest: Arc<Ingest>,
    publish: Option<LivePublish>,
    demux: FlvDemuxer,
    app: String,
}

impl Connection {
    async fn read(
        &mut self,
        buf: &mut [u8],
        stop: &mut watch::Receiver<bool>,
    ) -> Result<usize, SessionError> {
        tokio::select! {
            read = tokio::time::timeout(IDLE_TIMEOUT, self.socket.read(buf)) => {
                read.map_err(|_| SessionError::Idle(IDLE_TIMEOUT))?.map_err(Into::into)
            }
            _ = stop.wait_for(|stopped| *stopped) => Ok(0),
        }
    }

    async fn serve(&mut self, mut stop: watch::Receiver<bool>) -> Result<(), SessionError> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut handshake = Handshake::new(PeerType::Server);
        let leftover = loop {
            let n = self.read(&mut buf, &mut stop).await?;
            if n == 0 {
                return Ok(());
            }
            match handshake.process_bytes(&buf[..n])? {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    self.socket.write_all(&response_bytes).await?;
                }
                HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
                    self.socket.write_all(&response_bytes).await?;
                    break remaining_bytes;
                }
            }
        };
        let (mut session, initial) = ServerSession::new(ServerSessionConfig::new())?;
        self.handle(&mut session, initial).await?;
        let results = session.handle_input(&leftover)?;
        self.handle(&mut session, results).await?;
        loop {
            let n = self.read(&mut buf, &mut stop).await?;
            if n == 0 {
                return Ok(());
            }
            let results = session.handle_input(&buf[..n])?;
            self.handle(&mut session, results).await?;
        }
    }

    async fn handle(
        &mut self,
        session: &mut ServerSession,
        results: Vec<ServerSessionResult>,
    ) -> Result<(), SessionError> {
        for result in results {
            match result {
                ServerSessionResult::OutboundResponse(packet) => {
                    self.socket.write_all(&packet.bytes).await?
                }
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
                self.app = app_name;
                Ok(session.accept_request(request_id)?)
            }
            ServerSessionEvent::PublishStreamRequested {
                request_id, app_name, stream_key, ..
            } => {
                if self.publish.is_some() {
                    return Err(self.refuse(session, request_id, PublishError::AlreadyLive).await);
                }
                let app = if app_name.is_empty() { self.app.clone() } else { app_name };
                let started = match self.ingest.authorize(&app, &stream_key).await {
                    Ok(channel) => self.ingest.start(channel).await,
                    Err(e) => Err(e),
                };
                match started {
                    Ok(publish) => {
                        self.publish = Some(publish);
                        self.demux = FlvDemuxer::new();
                        Ok(session.accept_request(request_id)?)
                    }
                    Err(e) => Err(self.refuse(session, request_id, e).await),
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
                    publish.finish().await;
                }
                Ok(Vec::new())
            }
            _ => Ok(Vec::new()),
        }
    }

    async fn push(&mut self, frame: crate::media::Frame) -> Result<(), SessionError> {
        let has_audio = self.demux.has_audio();
        match self.publish.as_mut() {
            Some(publish) => Ok(publish.push(&frame, has_audio).await?),
            None => Ok(()),
        }
    }

    /// Answers a publish request with `NetStream.Publish.BadName` and a reason that does not
    /// tell an unauthenticated client which check failed; the full error is logged by the
    /// caller. Returns the error that closes the connection.
    async fn refuse(
        &mut self,
        session: &mut ServerSession,
        request_id: u32,
        error: PublishError,
    ) -> SessionError {
        if let Ok(results) =
            session.reject_request(request_id, "NetStream.Publish.BadName", error.public_reason())
        {
            for result in results {
                if let ServerSessionResult::OutboundResponse(packet) = result {
                    if self.socket.write_all(&packet.bytes).await.is_err() {
                        break;
                    }
                }
            }
            let _ = self.socket.flush().await;
        }
        SessionError::Refused(error)
    }
}
