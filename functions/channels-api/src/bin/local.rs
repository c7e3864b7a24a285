//! The channel API as a plain local HTTP server (same router as the Lambda), behind the
//! request-head check of [`channels_api::local`]: its own rejections are JSON errors too.

use clap::Parser;

/// Serve the channel API on a local address.
#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "API_LISTEN", default_value = "127.0.0.1:3000")]
    listen: std::net::SocketAddr,
    /// Print the API's OpenAPI document (as served at `/openapi.json`) and exit, without
    /// reading any configuration (`make openapi` writes it to `docs/openapi.json`).
    #[arg(long)]
    print_openapi: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.print_openapi {
        print!("{}", channels_api::openapi::document_json());
        return Ok(());
    }
    streamstack_core::telemetry::init();
    let app = channels_api::router(channels_api::Deps::from_env().await?);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "channel API listening");
    channels_api::local::serve(listener, app, shutdown()).await?;
    Ok(())
}

async fn shutdown() {
    let _ = tokio::signal::ctrl_c().await;
}
