//! A local CloudFront edge for the media bucket, enforcing what the distribution enforces in
//! AWS (issue 14, playback authorization):
//!
//! - `GET`/`HEAD /<key>` for keys under `live/`, `outputs/`, `devices/`: public;
//! - keys under `signed/`: only with a valid CloudFront signed URL (query `Policy`,
//!   `Signature`, `Key-Pair-Id`) or, without those, valid signed cookies
//!   (`CloudFront-Policy`, `CloudFront-Signature`, `CloudFront-Key-Pair-Id`), verified with
//!   `streamstack_core::cloudfront::Verifier` against `http://<Host><path>`; a valid signed
//!   URL's values come back as path-scoped cookies (the viewer-response CloudFront Function);
//! - anything else, and every refusal: 403 with CloudFront's XML `AccessDenied` body.
//!
//! Authorized requests are answered from S3 (`AWS_ENDPOINT_URL`, moto locally), streamed.
//! Modules: [`config`] (flags and environment), [`access`] (who may read what), [`cookies`],
//! [`cors`], [`origin`] (S3), [`server`] (HTTP, logging).
//!
//! Sources: CloudFront Developer Guide, "Serve private content with signed URLs and signed
//! cookies" and "Restricting access to files" (the trusted key group); the S3 API reference
//! (`GetObject`, error XML).

pub mod access;
pub mod config;
pub mod cookies;
pub mod cors;
pub mod origin;
pub mod server;

pub use config::{Args, ConfigError};
pub use server::{router, Edge};

/// Why the edge could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Unusable flags or environment.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listen address cannot be bound.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The server's I/O error.
    #[error("serving: {0}")]
    Serve(#[source] std::io::Error),
}

/// Builds the edge of `args` (S3 on `AWS_ENDPOINT_URL` when set, path-style) and serves it
/// until SIGINT or SIGTERM.
///
/// # Errors
/// [`RunError`].
pub async fn run(args: Args) -> Result<(), RunError> {
    let verifier = args.verifier()?;
    let cors = args.cors()?;
    let endpoint = std::env::var("AWS_ENDPOINT_URL").ok();
    let sdk = streamstack_core::aws::sdk_config(endpoint.as_deref()).await;
    let s3 = streamstack_core::aws::s3(&sdk, endpoint.is_some());
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| RunError::Bind { addr: args.listen, source })?;
    let addr = listener.local_addr().map_err(RunError::Serve)?;
    let keys = args.key_pair_ids.len();
    tracing::info!(%addr, bucket = %args.bucket, trusted_keys = keys,
        allowed_origins = args.allowed_origins.len(), "edge-local listening");
    if keys == 0 {
        tracing::warn!("no trusted signing keys: every signed/ request is refused");
    }
    let edge = Edge { s3, bucket: args.bucket, verifier: (keys > 0).then_some(verifier), cors };
    axum::serve(listener, router(edge))
        .with_graceful_shutdown(shutdown())
        .await
        .map_err(RunError::Serve)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let term = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
