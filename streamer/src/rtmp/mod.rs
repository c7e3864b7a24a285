//! RTMP ingest (Adobe RTMP specification 1.0), built on `rml_rtmp`'s handshake and server
//! session. [`Server`] accepts connections; each runs in its own task ([`session`]), so a bad
//! connection only ever closes itself.

mod session;

use crate::publish::Ingest;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A bound RTMP server.
pub struct Server {
    listener: TcpListener,
    ingest: Arc<Ingest>,
}

impl Server {
    /// Binds the listening socket (e.g. `0.0.0.0:1935`; port 0 picks a free port).
    ///
    /// # Errors
    /// The socket error.
    pub async fn bind(addr: SocketAddr, ingest: Arc<Ingest>) -> std::io::Result<Self> {
        Ok(Self { listener: TcpListener::bind(addr).await?, ingest })
    }

    /// The bound address.
    ///
    /// # Errors
    /// The socket error.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then stops accepting, asks every session to flush its
    /// last segment and end its playlist, and waits up to `drain` for them.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>, drain: Duration) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut sessions = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((socket, peer)) => {
                        let _ = socket.set_nodelay(true);
                        sessions.spawn(session::run(socket, peer, Arc::clone(&self.ingest), stop_rx.clone()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
                () = &mut shutdown => break,
            }
        }
        tracing::info!(sessions = sessions.len(), "shutting down: flushing publishes");
        let _ = stop_tx.send(true);
        let drained =
            tokio::time::timeout(drain, async { while sessions.join_next().await.is_some() {} })
                .await;
        if drained.is_err() {
            tracing::warn!("drain timeout: aborting remaining sessions");
        }
    }
}
