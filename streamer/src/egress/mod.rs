//! `streamer egress`: cloud-to-ground. Follows a live HLS media playlist (a channel's or a
//! device's, through the streamstack API, or any URL) and sends its MPEG-TS as one
//! continuous, paced UDP stream (unicast or multicast), as an IRD or a playout system on
//! the ground expects it from a hardware encoder.
//!
//! ```text
//! source::Resolver ─► follow::Follow (follower: RFC 8216 §6.3) ─► bounded channel
//!     ─► send::Sender: rewrite::Rewriter (ISO/IEC 13818-1 §2.4.3) ─► pacer (PCR clock)
//!     ─► 1316-byte datagrams ─► target::UdpTarget
//! ```
//!
//! - [`source`]: `--source` and the API lookup (SigV4, signed playback query);
//! - [`follower`] and [`follow`]: reloads, new segments, discontinuities, restarts, stalls;
//! - [`rewrite`]: continuity counters, `discontinuity_indicator`, resync, null packets;
//! - [`pacer`]: send times from the PCR, re-anchoring;
//! - [`send`]: datagrams; [`target`]: `--target` and its socket.
//!
//! The process runs until SIGTERM/SIGINT (exit 0 with a summary log line); a source that
//! fails, stalls or ends is waited for, never a reason to exit.

pub mod fetch;
pub mod follow;
pub mod follower;
pub mod pacer;
pub mod rewrite;
pub mod send;
pub mod source;
pub mod target;

use crate::cli::{shutdown_signal, OptionalAddr};
use anyhow::Context;
use clap::Args;
use source::{EgressSource, Resolver};
use target::UdpTarget;
use tokio::sync::{mpsc, watch};

/// Segments downloaded ahead of the sender, at most (each at most
/// [`fetch::MAX_SEGMENT_BYTES`]).
pub const QUEUE_SEGMENTS: usize = 2;

/// Flags of `streamer egress`, each also read from the environment.
#[derive(Debug, Args)]
pub struct EgressArgs {
    /// What to send: `channel:<id>` or `device:<id>` (playlist URL and playback credentials
    /// from the API, see `--api-url`), or an `http(s)://…m3u8` media playlist URL.
    #[arg(long, env = "EGRESS_SOURCE", hide_env_values = true)]
    source: EgressSource,
    /// Where to send: `udp://<ip>:<port>?ttl=N&localaddr=IP`, a multicast group (TTL 16
    /// unless `ttl`; `localaddr` picks the outgoing interface and source address) or a
    /// unicast address.
    #[arg(long, env = "EGRESS_TARGET")]
    target: UdpTarget,
    /// Base URL of the streamstack API (`https://…/prod`), for `channel:`/`device:`
    /// sources; requests are signed with SigV4 (`execute-api`) when AWS credentials exist.
    #[arg(long, env = "STREAMSTACK_API_URL")]
    api_url: Option<String>,
    /// Start this many segments from the end of the live playlist (RFC 8216 §6.3.3).
    #[arg(long, env = "EGRESS_LIVE_EDGE_SEGMENTS", default_value_t = 3,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    live_edge_segments: u32,
    /// Health endpoint address (HTTP `GET /healthz`: 200 sending, 503 stopping). Empty
    /// (default): none.
    #[arg(long, env = "HEALTH_LISTEN", default_value = "", value_parser = crate::cli::parse_optional_addr)]
    health_listen: OptionalAddr,
}

/// Runs the egress until SIGTERM/SIGINT.
///
/// # Errors
/// Configuration errors (a source needing `--api-url`, a target whose socket cannot be
/// opened, the health listener's bind), before anything is sent.
pub async fn run(args: EgressArgs) -> anyhow::Result<()> {
    let EgressArgs { source, target, api_url, live_edge_segments, health_listen } = args;
    let socket = target.open().with_context(|| format!("open target {}", target.dest))?;
    let http = fetch::client()?;
    let resolver = Resolver::new(source.clone(), api_url.as_deref(), fetch::api_client()?).await?;
    let health = crate::health::start(health_listen.0).await?;
    tracing::info!(
        ?source,
        dest = %target.dest,
        ttl = ?target.effective_ttl(),
        localaddr = ?target.localaddr,
        live_edge_segments,
        "egress starting"
    );
    let (stop_tx, stop) = watch::channel(false);
    let (items_tx, items) = mpsc::channel(QUEUE_SEGMENTS);
    let follow = follow::Follow::new(resolver, http, live_edge_segments as usize);
    let follower = tokio::spawn(follow.run(items_tx, stop.clone()));
    let sender = tokio::spawn(send::Sender::new(socket, target.dest).run(items, stop));
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("stopping");
        health.set_draining();
        let _ = stop_tx.send(true);
        // Keep the channel open until the process exits: a closed one reads as "stop".
        std::future::pending::<()>().await;
    });
    let summary = sender.await.context("sender task")?;
    follower.abort();
    tracing::info!(
        datagrams = summary.datagrams,
        bytes = summary.bytes,
        segments = summary.segments,
        media_ms = (summary.media_secs * 1000.0).round() as u64,
        discontinuities = summary.discontinuities,
        late_reanchors = summary.late_reanchors,
        send_errors = summary.send_errors,
        null_packets_dropped = summary.rewrite.null_packets,
        resync_bytes = summary.rewrite.resync_bytes,
        "egress stopped"
    );
    Ok(())
}
