//! Command line of the `streamer` binary.

use crate::hls::{default_spool_dir, recover, Spool, SpoolConfig, DEFAULT_BUDGET_BYTES};
use crate::ingest::rtmp::{RtmpLimits, Server};
use crate::ingest::srt::SrtServer;
use crate::media::MediaLimits;
use crate::publish::{Ingest, IngestSettings, UploadSettings};
use crate::sink::{DirSink, ObjectSink, OutputSpec, S3Sink};
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
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
    Serve(ServeArgs),
    /// Pull RTSP cameras and UDP MPEG-TS feeds into HLS (channels or devices); standalone
    /// with a `dir:` output and no table.
    Pull(crate::pull::args::PullArgs),
    /// Send a live HLS playlist (a channel's, a device's or a URL) as paced MPEG-TS over UDP
    /// (unicast or multicast): cloud to ground.
    Egress(crate::egress::EgressArgs),
    /// Exit 0 when a running streamer's health endpoint answers 200 (the container health
    /// check; `serve`/`pull` with `--health-listen`), 1 otherwise.
    Healthcheck {
        /// The health endpoint.
        #[arg(long, env = "HEALTHCHECK_URL", default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
        /// Seconds allowed for the answer.
        #[arg(long, default_value_t = 3)]
        timeout_secs: u64,
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

/// Flags of `streamer serve`, each also read from the environment.
#[derive(Debug, Args)]
struct ServeArgs {
    /// RTMP listen address.
    #[arg(long, env = "RTMP_LISTEN", default_value = "0.0.0.0:1935")]
    listen: SocketAddr,
    /// SRT listen address (UDP): MPEG-TS pushed by SRT callers with the channel's signed
    /// stream key as `streamid`, under the same limits as RTMP. Empty disables SRT.
    #[arg(long, env = "SRT_LISTEN", default_value = "0.0.0.0:9000", value_parser = parse_optional_addr)]
    srt_listen: OptionalAddr,
    /// Do not listen for SRT (as an empty `--srt-listen`).
    #[arg(long)]
    no_srt: bool,
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    media: MediaArgs,
}

/// Output, spool, drain and lease flags shared by `serve` and `pull`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Where HLS goes: `s3` (MEDIA_BUCKET), `s3://bucket` or `dir:PATH`. Default: `s3`
    /// when MEDIA_BUCKET is set, else `dir:./hls`.
    #[arg(long, env = "STREAMER_OUTPUT")]
    pub(crate) output: Option<OutputSpec>,
    /// Seconds allowed on SIGTERM/SIGINT to flush last segments and end playlists; keep
    /// it below the ECS task's `stopTimeout` (at most 120 s on Fargate).
    #[arg(long, env = "STREAMER_DRAIN_SECS", default_value_t = 90)]
    pub(crate) drain_secs: u64,
    /// Spool directory: finished segments wait there while the object store is slow or
    /// down, and a restart uploads what a killed run left. One per process (locked).
    /// Default: `$TMPDIR/streamstack-spool`.
    #[arg(long, env = "STREAMER_SPOOL_DIR")]
    pub(crate) spool_dir: Option<PathBuf>,
    /// Disk budget of the spool, MiB. A publish whose segment finds it full is stopped.
    #[arg(long, env = "STREAMER_SPOOL_BUDGET_MIB", default_value_t = DEFAULT_BUDGET_BYTES >> 20)]
    pub(crate) spool_budget_mib: u64,
    /// Publish lease length, seconds: a channel whose streamer process died reads `idle`
    /// and accepts a new publish at most this long after its last renewal (every third).
    #[arg(long, env = "STREAMER_LEASE_SECS", default_value_t = streamstack_core::LEASE_DURATION.as_secs())]
    pub(crate) lease_secs: u64,
    /// Health endpoint address (HTTP `GET /healthz`: 200 serving, 503 draining), for a
    /// load balancer's target health check and `streamer healthcheck`. Empty (default):
    /// none. The image sets `0.0.0.0:8080`.
    #[arg(long, env = "HEALTH_LISTEN", default_value = "", value_parser = parse_optional_addr)]
    pub(crate) health_listen: OptionalAddr,
}

impl RunArgs {
    /// Starts the health listener (when configured), answering 503 from SIGTERM/SIGINT on.
    ///
    /// # Errors
    /// The listener's bind error.
    pub(crate) async fn start_health(&self) -> anyhow::Result<()> {
        let health = crate::health::start(self.health_listen.0).await?;
        tokio::spawn(async move {
            shutdown_signal().await;
            health.set_draining();
        });
        Ok(())
    }

    /// The output spec, defaulting to `s3` with a media bucket, else `dir:hls`.
    pub(crate) fn output(&self, media_bucket: Option<&str>) -> OutputSpec {
        self.output.clone().unwrap_or_else(|| match media_bucket {
            Some(_) => OutputSpec::S3 { bucket: None },
            None => OutputSpec::Dir(PathBuf::from("hls")),
        })
    }

    /// Opens the spool (and logs where it is).
    pub(crate) fn spool(&self) -> anyhow::Result<Arc<Spool>> {
        let spool = Spool::open(&SpoolConfig {
            dir: self.spool_dir.clone().unwrap_or_else(default_spool_dir),
            budget_bytes: self.spool_budget_mib.saturating_mul(1 << 20),
        })?;
        tracing::info!(dir = %spool.dir().display(), used_bytes = spool.used_bytes(), "spool");
        Ok(spool)
    }

    /// Upload settings over `spool`: segments wait on disk, not in memory, while the store
    /// is slow.
    pub(crate) fn uploads(spool: &Arc<Spool>) -> UploadSettings {
        UploadSettings { queue: 2, spool: Some(Arc::clone(spool)), ..Default::default() }
    }
}

/// What one RTMP peer may cost ([`RtmpLimits`]; defaults from [`RtmpLimits::default`]).
#[derive(Debug, Args)]
struct LimitArgs {
    /// Open RTMP connections in all.
    #[arg(long, env = "RTMP_MAX_CONNECTIONS", default_value_t = RtmpLimits::default().max_connections)]
    max_connections: usize,
    /// Open RTMP connections per source IP address.
    #[arg(long, env = "RTMP_MAX_CONNECTIONS_PER_IP", default_value_t = RtmpLimits::default().max_connections_per_ip)]
    max_connections_per_ip: usize,
    /// Seconds from accept to an authorized publish.
    #[arg(long, env = "RTMP_AUTH_DEADLINE_SECS", default_value_t = RtmpLimits::default().auth_deadline.as_secs())]
    auth_deadline_secs: u64,
    /// Seconds without data before a connection is closed.
    #[arg(long, env = "RTMP_IDLE_TIMEOUT_SECS", default_value_t = RtmpLimits::default().idle_timeout.as_secs())]
    idle_timeout_secs: u64,
    /// Seconds a write to a peer may take.
    #[arg(long, env = "RTMP_WRITE_TIMEOUT_SECS", default_value_t = RtmpLimits::default().write_timeout.as_secs())]
    write_timeout_secs: u64,
    /// Largest RTMP message from a publisher, bytes.
    #[arg(long, env = "RTMP_MAX_MESSAGE_BYTES", default_value_t = RtmpLimits::default().max_message)]
    max_message_bytes: u32,
    /// Largest chunk size a peer may set, bytes.
    #[arg(long, env = "RTMP_MAX_CHUNK_SIZE", default_value_t = RtmpLimits::default().max_chunk_size)]
    max_chunk_size: u32,
    /// Publish requests per source IP and minute checked against the channel table.
    #[arg(long, env = "RTMP_PUBLISH_ATTEMPTS_PER_MINUTE", default_value_t = RtmpLimits::default().publish_attempts_per_minute)]
    publish_attempts_per_minute: u32,
}

/// Caps on one source's media ([`MediaLimits`]), shared by `serve` and `pull`.
#[derive(Debug, Args)]
pub(crate) struct MediaArgs {
    /// Largest segment, bytes: a publisher whose segment grows beyond it (e.g. timestamps
    /// that stop advancing) is disconnected.
    #[arg(long, env = "STREAMER_MAX_SEGMENT_BYTES", default_value_t = MediaLimits::default().max_segment_bytes)]
    max_segment_bytes: usize,
    /// Largest H.264 parameter sets (SPS + PPS), bytes.
    #[arg(long, env = "STREAMER_MAX_PARAMETER_SET_BYTES", default_value_t = MediaLimits::default().max_parameter_set_bytes)]
    max_parameter_set_bytes: usize,
    /// A timestamp step larger than this (forward or back), milliseconds, is rebased and
    /// starts a discontinuity.
    #[arg(long, env = "STREAMER_MAX_TIMESTAMP_JUMP_MS", default_value_t = MediaLimits::default().max_timestamp_jump.as_millis() as u64)]
    max_timestamp_jump_ms: u64,
    /// Queue of each relay destination, MiB: a destination further behind than this loses
    /// whole GOPs (counted in its status), never delaying the ingest.
    #[arg(long, env = "STREAMER_RELAY_QUEUE_MIB", default_value_t = (crate::relay::RelaySettings::default().queue_bytes >> 20) as u64, value_parser = clap::value_parser!(u64).range(1..=1024))]
    relay_queue_mib: u64,
}

impl MediaArgs {
    /// The relay settings these flags give.
    pub(crate) fn relay(&self) -> crate::relay::RelaySettings {
        crate::relay::RelaySettings {
            queue_bytes: (self.relay_queue_mib as usize) << 20,
            ..Default::default()
        }
    }

    /// The limits these flags give.
    pub(crate) fn limits(&self) -> MediaLimits {
        MediaLimits {
            max_segment_bytes: self.max_segment_bytes,
            max_parameter_set_bytes: self.max_parameter_set_bytes,
            max_timestamp_jump: Duration::from_millis(self.max_timestamp_jump_ms),
        }
    }
}

impl LimitArgs {
    fn limits(&self) -> RtmpLimits {
        RtmpLimits {
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            auth_deadline: Duration::from_secs(self.auth_deadline_secs),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            write_timeout: Duration::from_secs(self.write_timeout_secs),
            max_message: self.max_message_bytes,
            max_chunk_size: self.max_chunk_size,
            publish_attempts_per_minute: self.publish_attempts_per_minute,
            ..RtmpLimits::default()
        }
    }
}

/// Raises the soft open-file limit to the hard one: every connection is a descriptor, and
/// the usual soft limit (1024) is below [`RtmpLimits::max_connections`].
pub(crate) fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(open_files = n, "open file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open file limit"),
    }
}

/// Builds the sink for `spec`. S3 uses `aws` when the caller already has clients, else
/// loads them (honouring `AWS_ENDPOINT_URL`); the bucket defaults to `default_bucket`.
pub(crate) async fn sink(
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
        Command::Serve(args) => {
            crate::publish::discover_instance_id().await;
            serve(args).await
        }
        Command::Pull(args) => {
            crate::publish::discover_instance_id().await;
            crate::pull::args::run(args).await
        }
        Command::Egress(args) => crate::egress::run(args).await,
        Command::Healthcheck { url, timeout_secs } => {
            crate::health::check(&url, Duration::from_secs(timeout_secs)).await
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

/// `streamer serve`: loads the configuration and AWS clients once, opens the spool and
/// recovers what a killed run left (in the background), then serves RTMP until SIGTERM.
async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let ServeArgs { listen, srt_listen, no_srt, run, limits, media } = args;
    raise_open_file_limit();
    let config = Config::from_env()?;
    let spec = run.output(config.media_bucket.as_deref());
    tracing::info!(?spec, "output");
    let aws = AwsClients::load(config.endpoint_url.as_deref()).await;
    let store =
        Arc::new(DynamoChannelStore::new(aws.dynamodb.clone(), config.channels_table.clone()));
    let sink = sink(spec, Some(&aws), config.media_bucket.as_deref()).await?;
    let spool = run.spool()?;
    let uploads = RunArgs::uploads(&spool);
    let retry = uploads.retry;
    let settings = IngestSettings {
        uploads,
        lease: Duration::from_secs(run.lease_secs),
        media: media.limits(),
        relay: media.relay(),
    };
    let ingest = Ingest::new(store, Arc::clone(&sink), settings);
    // What a killed run left: uploaded and ended in the background, so ingest starts
    // at once even while the store is still down.
    let lease_check = Arc::clone(&ingest);
    tokio::spawn(async move { recover(&spool, sink, lease_check.as_ref(), retry).await });
    // SRT first: once RTMP accepts connections, SRT is bound too.
    let srt = match srt_listen.0.filter(|_| !no_srt) {
        Some(addr) => {
            let srt = SrtServer::bind(addr, Arc::clone(&ingest), limits.limits())
                .await
                .with_context(|| format!("bind SRT {addr}"))?;
            tracing::info!(addr = %srt.local_addr()?, "SRT ingest listening");
            Some(srt)
        }
        None => None,
    };
    let server = Server::bind(listen, ingest, limits.limits())
        .await
        .with_context(|| format!("bind {listen}"))?;
    tracing::info!(addr = %server.local_addr()?, "RTMP ingest listening");
    run.start_health().await?;
    let drain = Duration::from_secs(run.drain_secs);
    let srt = async move {
        if let Some(srt) = srt {
            srt.serve(shutdown_signal(), drain).await;
        }
    };
    tokio::join!(server.serve(shutdown_signal(), drain), srt);
    Ok(())
}

/// An address flag that may be empty (`--srt-listen`, `--health-listen`): `None` = off.
#[derive(Debug, Clone)]
pub(crate) struct OptionalAddr(pub(crate) Option<SocketAddr>);

pub(crate) fn parse_optional_addr(value: &str) -> Result<OptionalAddr, std::net::AddrParseError> {
    match value.trim() {
        "" => Ok(OptionalAddr(None)),
        addr => addr.parse().map(|a| OptionalAddr(Some(a))),
    }
}

/// Resolves on SIGTERM (ECS stopping the task) or SIGINT.
pub(crate) async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
