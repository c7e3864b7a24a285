//! Command line of the `streamer` binary.

use crate::publish::{Ingest, UploadSettings};
use crate::rtmp::Server;
use crate::sink::{DirSink, ObjectSink, OutputSpec, S3Sink};
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use streamstack_core::aws::AwsClients;
use streamstack_core::{Config, DynamoChannelStore};

/// streamstack streamer: live ingest into HLS.
#[derive(Debug, Parser)]
#[command(version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Accept RTMP publishes and write HLS (channels from CHANNELS_TABLE).
    Serve {
        /// RTMP listen address.
        #[arg(long, env = "RTMP_LISTEN", default_value = "0.0.0.0:1935")]
        listen: SocketAddr,
        /// Where HLS goes: `s3` (MEDIA_BUCKET), `s3://bucket` or `dir:PATH`. Default: `s3`
        /// when MEDIA_BUCKET is set, else `dir:./hls`.
        #[arg(long, env = "STREAMER_OUTPUT")]
        output: Option<OutputSpec>,
        /// Seconds allowed on SIGTERM/SIGINT to flush last segments and end playlists.
        #[arg(long, default_value_t = 25)]
        drain_secs: u64,
    },
    /// Remux a recorded FLV file to HLS (same pipeline as live ingest).
    Remux {
        /// FLV input file.
        #[arg(long)]
        input: PathBuf,
        /// Where HLS goes (`dir:PATH`, `s3://bucket`).
        #[arg(long)]
        output: OutputSpec,
        /// Key prefix of the output.
        #[arg(long, default_value = "vod")]
        prefix: String,
        /// Target segment duration, seconds.
        #[arg(long, default_value_t = 4)]
        segment_duration: u32,
    },
}

/// Builds the sink for `spec`. S3 uses `aws` when the caller already has clients, else
/// loads them (honouring `AWS_ENDPOINT_URL`); the bucket defaults to `default_bucket`.
async fn sink(
    spec: OutputSpec,
    aws: Option<&AwsClients>,
    default_bucket: Option<&str>,
) -> anyhow::Result<Arc<dyn ObjectSink>> {
    Ok(match spec {
        OutputSpec::Dir(path) => Arc::new(DirSink::new(path)),
        OutputSpec::S3 { bucket } => {
            let bucket = bucket
                .or_else(|| default_bucket.map(str::to_owned))
                .context("--output s3 needs MEDIA_BUCKET or s3://<bucket>")?;
            let client = match aws {
                Some(aws) => aws.s3.clone(),
                None => {
                    let endpoint = std::env::var("AWS_ENDPOINT_URL").ok();
                    AwsClients::load(endpoint.as_deref()).await.s3
                }
            };
            Arc::new(S3Sink::new(client, bucket))
        }
    })
}

/// Runs the parsed command line.
///
/// # Errors
/// Configuration, bind and input errors, for the binary's edge to report.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { listen, output, drain_secs } => {
            let config = Config::from_env()?;
            let spec = output.unwrap_or_else(|| match &config.media_bucket {
                Some(_) => OutputSpec::S3 { bucket: None },
                None => OutputSpec::Dir(PathBuf::from("hls")),
            });
            tracing::info!(?spec, "output");
            let aws = AwsClients::load(config.endpoint_url.as_deref()).await;
            let store = Arc::new(DynamoChannelStore::new(
                aws.dynamodb.clone(),
                config.channels_table.clone(),
            ));
            let sink = sink(spec, Some(&aws), config.media_bucket.as_deref()).await?;
            let ingest = Ingest::new(store, sink, UploadSettings::default());
            let server =
                Server::bind(listen, ingest).await.with_context(|| format!("bind {listen}"))?;
            tracing::info!(addr = %server.local_addr()?, "RTMP ingest listening");
            server.serve(shutdown_signal(), Duration::from_secs(drain_secs)).await;
            Ok(())
        }
        Command::Remux { input, output, prefix, segment_duration } => {
            let file =
                std::fs::File::open(&input).with_context(|| format!("open {}", input.display()))?;
            let reader = std::io::BufReader::with_capacity(256 * 1024, file);
            let report = crate::remux::remux_flv(
                reader,
                sink(output, None, None).await?,
                &prefix,
                segment_duration,
                usize::MAX,
            )
            .await?;
            println!("{report:?}");
            Ok(())
        }
    }
}

/// Resolves on SIGTERM (ECS stopping the task) or SIGINT.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
