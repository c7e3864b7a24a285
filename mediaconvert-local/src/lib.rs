//! A local AWS Elemental MediaConvert for the local stack and the tests: the job API that the
//! SDK and the VOD functions call ([`api`]), jobs rendered with ffmpeg from and to the S3
//! endpoint ([`plan`], [`runner`], [`media`]), and EventBridge job state change events ([`events`]).
//!
//! Source of the shapes: the MediaConvert API reference (`/2017-08-29/jobs`, `Job`,
//! `JobSettings`) and the EventBridge events of real jobs (`tests/fixtures/`).

pub mod api;
pub mod events;
pub mod media;
pub mod model;
pub mod plan;
pub mod runner;

pub use runner::{Config, Service};

/// Serves `service` on `listener` until the process ends.
///
/// # Errors
/// The server's I/O error.
pub async fn serve(listener: tokio::net::TcpListener, service: Service) -> std::io::Result<()> {
    axum::serve(listener, api::router(service)).await
}
