//! RTMP ingest (Adobe RTMP specification 1.0), built on `rml_rtmp`'s handshake and server
//! session. [`Server`] accepts connections; each runs in its own task ([`session`]), so a bad
//! connection only ever closes itself. What a peer may cost is bounded by [`RtmpLimits`]:
//! connection counts (in all and per source IP), a deadline from accept to an authorized
//! publish, idle and write timeouts, and the chunk-layer sizes checked by [`guard`].

pub mod guard;
pub mod limits;
mod session;

pub use limits::{ConnectionTable, RtmpLimits, SourceRate};

use super::Shared;

use crate::publish::Ingest;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Time kept at the end of a shutdown drain for releasing publish leases after the uploads
/// stop (a DynamoDB call takes at most 6 s with its timeouts).
pub const FINISH_MARGIN: Duration = Duration::from_secs(10);

/// A bound RTMP server.
pub struct Server {
    listener: TcpListener,
    shared: Arc<Shared>,
    connections: Arc<ConnectionTable>,
}

impl Server {
    /// Binds the listening socket (e.g. `0.0.0.0:1935`; port 0 picks a free port).
    ///
    /// # Errors
    /// The socket error.
    pub async fn bind(
        addr: SocketAddr,
        ingest: Arc<Ingest>,
        limits: RtmpLimits,
    ) -> std::io::Result<Self> {
        Ok(Self {
            listener: TcpListener::bind(addr).await?,
            connections: ConnectionTable::new(&limits),
            shared: Arc::new(Shared::new(ingest, limits)),
        })
    }

    /// The bound address.
    ///
    /// # Errors
    /// The socket error.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then stops accepting, asks every session to flush its
    /// last segment and end its playlist, and waits up to `drain` for them. Uploads still
    /// pending [`FINISH_MARGIN`] before the end of `drain` stay in the spool for the next start,
    /// leaving that margin to release leases; `drain` itself must stay below the ECS task's
    /// `stopTimeout` (at most 120 s on Fargate), after which the process is killed.
    ///
    /// A connection over [`RtmpLimits::max_connections`] or
    /// [`RtmpLimits::max_connections_per_ip`] is accepted and closed at once (so the listen
    /// backlog never fills with them).
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>, drain: Duration) {
        let (stop_tx, stop_rx) = watch::channel(None);
        let mut sessions = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((socket, peer)) => match self.connections.admit(peer.ip()) {
                        Ok(permit) => {
                            let _ = socket.set_nodelay(true);
                            let shared = Arc::clone(&self.shared);
                            sessions.spawn(session::run(socket, peer, shared, stop_rx.clone(), permit));
                        }
                        Err(refusal) => {
                            drop(socket);
                            if let Some(suppressed) = self.shared.refusals.admit(peer.ip()) {
                                tracing::warn!(%peer, %refusal, suppressed, "connection refused");
                            }
                        }
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                () = &mut shutdown => break,
            }
        }
        super::drain(sessions, &stop_tx, drain, "RTMP").await;
    }
}
