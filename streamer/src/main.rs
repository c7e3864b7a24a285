//! `streamer` binary: see [`streamer::cli`].

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    streamstack_core::telemetry::init();
    streamer::cli::run(streamer::cli::Cli::parse()).await
}
