//! The channel API as a plain local HTTP server (same router as the Lambda), behind the
//! request-head check of [`channels_api::local`]: its own rejections are JSON errors too.

use clap::Parser;

/// Serve the channel API on a local address.
#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "API_LISTEN", default_value = "127.0.0.1:3000")]
    listen: std::net::SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    streamstack_core::telemetry::init();
    let args = Args::parse();
    let app = channels_api::router(channels_api::Deps::from_env().await?);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "channel API listening");
    channels_api::local::serve(listener, app, shutdown()).await?;
    Ok(())
}

async fn shutdown() {
    let _ = tokio::signal::ctrl_c().await;
}
