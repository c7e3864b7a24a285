//! The MediaConvert `CreateJob` stand-in as a process, for the local stack (`make demo`):
//! records each request body as `<dir>/<n>.json` and answers like MediaConvert.

use clap::Parser;
use streamstack_tests::mediaconvert::MediaConvertStub;

/// Serve a MediaConvert CreateJob stand-in.
#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:5001")]
    listen: std::net::SocketAddr,
    /// Directory receiving one JSON file per CreateJob request.
    #[arg(long)]
    record: std::path::PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.record)?;
    let stub = MediaConvertStub::start(args.listen).await;
    stub.record_to(args.record);
    eprintln!("MediaConvert stand-in on {}", stub.endpoint);
    tokio::signal::ctrl_c().await?;
    Ok(())
}
