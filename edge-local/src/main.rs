//! `edge-local`: the local CloudFront edge of the media bucket (see the library docs).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    streamstack_core::telemetry::init();
    edge_local::run(edge_local::Args::parse()).await?;
    Ok(())
}
