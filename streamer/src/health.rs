//! Liveness of a running streamer for load balancers and container runtimes.
//!
//! `serve` and `pull` answer `GET /healthz` on `--health-listen` (env `HEALTH_LISTEN`, off
//! by default; the image turns it on at `0.0.0.0:8080`):
//! - `200 ok` while the process serves (listeners bound, not stopping);
//! - `503 draining` from SIGTERM/SIGINT on, so a Network Load Balancer target health check
//!   (HTTP, this port) marks the task unhealthy and sends new publishers elsewhere while
//!   the drain flushes the last segments.
//!
//! `streamer healthcheck` is the client the container health check runs (exec form, so it
//! works in an image without a shell): exit 0 on `200`, 1 otherwise, within its timeout.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Path of the health endpoint.
pub const HEALTH_PATH: &str = "/healthz";

/// Whether the process is stopping; shared by the health endpoint and whoever watches
/// for SIGTERM.
#[derive(Debug, Clone, Default)]
pub struct Health {
    draining: Arc<AtomicBool>,
}

impl Health {
    /// Marks the process as draining: `/healthz` answers 503 from now on.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Whether [`Health::set_draining`] was called.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// A bound health listener; [`HealthServer::spawn`] serves it until the process exits.
#[derive(Debug)]
pub struct HealthServer {
    listener: tokio::net::TcpListener,
    health: Health,
}

impl HealthServer {
    /// Binds `addr` (TCP).
    ///
    /// # Errors
    /// The bind error (address in use, permission).
    pub async fn bind(addr: SocketAddr, health: Health) -> std::io::Result<Self> {
        Ok(Self { listener: tokio::net::TcpListener::bind(addr).await?, health })
    }

    /// The bound address (with the port the OS chose for port 0).
    ///
    /// # Errors
    /// The socket's error.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves `/healthz` in a background task. It keeps answering (503) through the drain
    /// and ends with the runtime.
    pub fn spawn(self) {
        let app = Router::new().route(HEALTH_PATH, get(healthz)).with_state(self.health);
        tokio::spawn(async move {
            if let Err(error) = axum::serve(self.listener, app).await {
                tracing::error!(%error, "health listener failed");
            }
        });
    }
}

async fn healthz(State(health): State<Health>) -> (StatusCode, &'static str) {
    match health.is_draining() {
        false => (StatusCode::OK, "ok\n"),
        true => (StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
    }
}

/// Starts the health listener when `addr` is set, and returns the [`Health`] to flag the
/// drain with.
///
/// # Errors
/// The bind error, so a misconfigured port fails the start instead of every later check.
pub async fn start(addr: Option<SocketAddr>) -> anyhow::Result<Health> {
    let health = Health::default();
    if let Some(addr) = addr {
        let server = HealthServer::bind(addr, health.clone())
            .await
            .map_err(|e| anyhow::anyhow!("bind health listener {addr}: {e}"))?;
        tracing::info!(addr = %server.local_addr()?, path = HEALTH_PATH, "health listening");
        server.spawn();
    }
    Ok(health)
}

/// `streamer healthcheck`: GET `url`; `Ok(())` on 200.
///
/// # Errors
/// A connection error, a timeout (`timeout`) or any other status, as a message for the
/// container runtime's health log.
pub async fn check(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().timeout(timeout).build()?;
    let response = client.get(url).send().await?;
    match response.status() {
        reqwest::StatusCode::OK => Ok(()),
        status => anyhow::bail!("{url}: {status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ok_then_draining() {
        let health = Health::default();
        let server =
            HealthServer::bind("127.0.0.1:0".parse().unwrap(), health.clone()).await.unwrap();
        let url = format!("http://{}{HEALTH_PATH}", server.local_addr().unwrap());
        server.spawn();
        check(&url, Duration::from_secs(5)).await.unwrap();
        health.set_draining();
        let error = check(&url, Duration::from_secs(5)).await.unwrap_err();
        assert!(error.to_string().contains("503"), "{error}");
        let missing = check("http://127.0.0.1:9/healthz", Duration::from_secs(5)).await;
        assert!(missing.is_err());
    }
}
