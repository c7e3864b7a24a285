//! `mediaconvert-local`: a local MediaConvert on the S3 endpoint of `AWS_ENDPOINT_URL`.

use clap::Parser;
use mediaconvert_local::{serve, Config, Service};

/// Serve a local AWS Elemental MediaConvert (jobs rendered with ffmpeg).
#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:5001")]
    listen: std::net::SocketAddr,
    /// Jobs rendered at the same time.
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Scratch directory.
    #[arg(long, default_value_os_t = std::env::temp_dir().join("mediaconvert-local"))]
    work_dir: std::path::PathBuf,
    /// Directory receiving each job state change event as a JSON file.
    #[arg(long)]
    events_dir: Option<std::path::PathBuf>,
    /// Program and arguments run on each event, the event file appended (e.g. `vod-local job-event --file`).
    #[arg(long, num_args = 1.., allow_hyphen_values = true, value_terminator = ";")]
    on_event: Vec<String>,
    /// Program and arguments validating each CreateJob body, its file appended.
    #[arg(long, num_args = 1.., allow_hyphen_values = true, value_terminator = ";")]
    model_check: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let endpoint = std::env::var("AWS_ENDPOINT_URL").ok();
    let sdk = streamstack_core::aws::sdk_config(endpoint.as_deref()).await;
    let s3 = streamstack_core::aws::s3(&sdk, endpoint.is_some());
    std::fs::create_dir_all(&args.work_dir)?;
    let service = Service::new(Config {
        s3,
        concurrency: args.concurrency,
        work_dir: args.work_dir,
        on_event: args.on_event,
        events_dir: args.events_dir,
        events_tx: None,
        model_check: args.model_check,
        progress: true,
    });
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!("mediaconvert-local on http://{}", listener.local_addr()?);
    tokio::select! {
        r = serve(listener, service) => r?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
