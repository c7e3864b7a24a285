//! SRT push ingest (Secure Reliable Transport, draft-sharabayko-srt-01), built on `srt-tokio`'s
//! multiplexed listener: encoders (OBS, `ffmpeg -f mpegts srt://…`) call in, MPEG-TS rides
//! in the SRT payloads (ISO/IEC 13818-1, 188-byte packets, usually 7 per payload).
//!
//! [`SrtServer`] mirrors the RTMP [`Server`](super::rtmp::Server): the caller's stream id
//! ([`streamid`]) carries the channel's signed stream name, checked exactly as RTMP's
//! ([`Ingest::authorize`] with application `live`, then [`Ingest::start`]) while the SRT
//! handshake waits, so a bad key is rejected in the handshake (an SRT rejection code, the
//! caller never connects). Each accepted connection runs in its own task ([`session`]) whose
//! TS payloads go through [`TsDemuxer`](super::mpegts::TsDemuxer) and one
//! [`Timeline`](crate::media::Timeline) into the [`LivePublish`](crate::publish::LivePublish).
//!
//! Bounds, from the server's [`RtmpLimits`]: connection counts in all and per source IP
//! (a [`ConnectionTable`] of its own, not shared with RTMP), publish authorizations per source
//! IP and minute ([`SourceRate`]), the idle timeout (no media for that long closes the
//! connection; SRT's own peer idle timeout, 5 s, catches silent peers first). The other RTMP
//! fields do not apply: the SRT handshake is `srt-tokio`'s and payloads are at most 1456 bytes.
//! Not supported: encryption (a caller with a passphrase is refused: in the handshake when it
//! states its key length, else by `srt-protocol` when accepted, `SRT_REJ_UNSECURE`), playback
//! (`m=request`).

mod session;
pub mod streamid;

use super::rtmp::{ConnectionTable, RtmpLimits};
use super::Shared;
use crate::publish::Ingest;
use futures::StreamExt;
use srt_tokio::access::{RejectReason, ServerRejectReason};
use srt_tokio::{ConnectionRequest, SrtIncoming, SrtListener};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// UDP receive buffer asked for the listening socket (`SO_RCVBUF`), bytes: every SRT caller
/// shares this one socket; 8 MiB hold 3 s of 20 Mb/s. The kernel caps it at
/// `net.core.rmem_max` (a failure to set it is logged, not fatal).
pub const RECV_BUFFER: usize = 8 << 20;

/// SRT receive latency offered to callers (SRTO_RCVLATENCY); the larger of this and the
/// caller's own latency is used by both ends. A packet not recovered within it is dropped
/// (TLPKTDROP) and damages the stream; SRT's guideline is at least 4 × RTT. libsrt's default,
/// 120 ms, only covers RTTs up to 30 ms; 1 s covers intercontinental contribution and adds
/// nothing that matters to HLS, whose latency is several segments. Also set as the send
/// latency: `srt-tokio` keeps delivering for twice that after a caller's shutdown, and the
/// receive buffer holds up to one latency of stream.
pub const LATENCY: Duration = Duration::from_secs(1);

/// A bound SRT listener (UDP).
pub struct SrtServer {
    listener: SrtListener,
    incoming: SrtIncoming,
    /// A duplicate of the listening socket's descriptor, to restart the listener on the same
    /// socket if `srt-tokio`'s listener task dies (see [`SrtServer::serve`]).
    socket: std::net::UdpSocket,
    local: SocketAddr,
    shared: Arc<Shared>,
    connections: Arc<ConnectionTable>,
}

impl SrtServer {
    /// Binds the UDP socket (e.g. `0.0.0.0:9000`; port 0 picks a free port) with a
    /// [`RECV_BUFFER`] receive buffer and starts the SRT listener on it. `limits` supplies the
    /// connection counts, the idle timeout and the publish attempts per source IP and minute.
    ///
    /// # Errors
    /// The socket error.
    pub async fn bind(
        addr: SocketAddr,
        ingest: Arc<Ingest>,
        limits: RtmpLimits,
    ) -> std::io::Result<Self> {
        let socket = bind_udp(addr)?;
        let local = socket.local_addr()?;
        let (listener, incoming) = listen(&socket, local).await?;
        Ok(Self {
            listener,
            incoming,
            socket,
            local,
            connections: ConnectionTable::new(&limits),
            shared: Arc::new(Shared::new(ingest, limits)),
        })
    }

    /// The bound address.
    ///
    /// # Errors
    /// None today; `io::Result` for symmetry with the RTMP server.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }

    /// Serves until `shutdown` resolves, then stops taking callers, asks every session to
    /// flush its last segment and end its playlist, and waits up to `drain` for them (the
    /// same drain as [`super::rtmp::Server::serve`], [`super::rtmp::FINISH_MARGIN`] kept for leases).
    ///
    /// A caller over [`RtmpLimits::max_connections`] or [`RtmpLimits::max_connections_per_ip`]
    /// is rejected in the handshake (`SRT_REJX_OVERLOAD`).
    ///
    /// `srt-protocol` 0.4.4 panicked on some packets instead of refusing them, which ended its
    /// listener task and with it every open SRT connection (a handshake with a
    /// congestion-control extension, as libsrt sends with `transtype=file`; accepting a caller
    /// that sent keying material without stating its key length; several malformed
    /// packets). The vendored copy (`third_party/srt-protocol`, see its
    /// `STREAMSTACK-PATCHES.md`) refuses them instead. Should the listener task still end (a
    /// panic not found yet), it is restarted on the same socket after [`RESTART_PAUSE`]: the
    /// dropped callers' sessions end their playlists and the callers can reconnect; RTMP is
    /// not affected.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>, drain: Duration) {
        let Self { mut listener, mut incoming, socket, local, shared, connections } = self;
        let (stop_tx, stop_rx) = watch::channel(None);
        let mut sessions = JoinSet::new();
        tokio::pin!(shutdown);
        let mut alive = true;
        loop {
            tokio::select! {
                request = incoming.incoming().next() => match request {
                    Some(request) => admit(request, &shared, &connections, &stop_rx, &mut sessions),
                    None => {
                        tracing::error!(
                            "SRT listener task ended (a panic in srt-tokio or srt-protocol): restarting it"
                        );
                        tokio::time::sleep(RESTART_PAUSE).await;
                        match listen(&socket, local).await {
                            Ok((l, i)) => (listener, incoming) = (l, i),
                            Err(e) => {
                                tracing::error!(error = %e, "SRT listener not restarted: SRT is off");
                                alive = false;
                                break;
                            }
                        }
                    }
                },
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                () = &mut shutdown => break,
            }
        }
        super::drain(sessions, &stop_tx, drain, "SRT").await;
        // Unblocks the listener task if it waits to hand over a request, then stops it, in a
        // task of its own: `SrtListener::close` panics if the listener task panicked.
        drop(incoming);
        if alive {
            let closing = tokio::spawn(async move { listener.close().await });
            let _ = tokio::time::timeout(Duration::from_secs(2), closing).await;
        }
    }
}

/// Starts a session for `request`, or rejects it when a connection count is full. Either
/// runs in a task of `sessions`: answering waits on the listener task, which must never
/// wait on this loop.
fn admit(
    request: ConnectionRequest,
    shared: &Arc<Shared>,
    connections: &Arc<ConnectionTable>,
    stop: &watch::Receiver<Option<tokio::time::Instant>>,
    sessions: &mut JoinSet<()>,
) {
    let peer = request.remote();
    match connections.admit(peer.ip()) {
        Ok(permit) => {
            sessions.spawn(session::run(request, Arc::clone(shared), stop.clone(), permit));
        }
        Err(refusal) => {
            if let Some(suppressed) = shared.refusals.admit(peer.ip()) {
                tracing::warn!(%peer, %refusal, suppressed, "SRT connection refused");
            }
            let overload = RejectReason::Server(ServerRejectReason::Overload);
            sessions.spawn(async move {
                let _ = request.reject(overload).await;
            });
        }
    }
}

/// Pause before restarting a listener whose task died: bounds how often a peer that keeps
/// crashing it costs a restart.
pub const RESTART_PAUSE: Duration = Duration::from_millis(200);

/// A non-blocking UDP socket bound to `addr` with [`RECV_BUFFER`].
fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_nonblocking(true)?;
    if let Err(e) = socket.set_recv_buffer_size(RECV_BUFFER) {
        tracing::warn!(error = %e, "SRT receive buffer not set");
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Starts an `srt-tokio` listener on a duplicate descriptor of `socket` (bound to `local`).
async fn listen(
    socket: &std::net::UdpSocket,
    local: SocketAddr,
) -> std::io::Result<(SrtListener, SrtIncoming)> {
    let socket = tokio::net::UdpSocket::from_std(socket.try_clone()?)?;
    SrtListener::builder().latency(LATENCY).socket(socket).bind(local).await
}
