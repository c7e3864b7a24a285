//! Command line of `streamer pull`: every flag also read from the environment, so an ECS
//! task (or a container override) can start it without a command.

use super::{parse_sources, PullContext, PullSource, PullTarget, SourceOptions};
use crate::cli::{raise_open_file_limit, shutdown_signal, sink, MediaArgs, RunArgs};
use crate::hls::{recover, AlwaysEndLive};
use crate::ingest::rtsp::{RtspTls, RtspTransport};
use crate::publish::{Ingest, IngestSettings};
use crate::pull::archive::RECORDING_SEGMENT_RANGE;
use crate::pull::LiveSettings;
use crate::sink::OutputSpec;
use anyhow::{bail, Context};
use clap::Args;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use streamstack_core::aws::AwsClients;
use streamstack_core::config::env_var;
use streamstack_core::stream_state::{DynamoStreamStateStore, StreamStateStore};
use streamstack_core::{ChannelStore, DynamoChannelStore, HlsSettings};

/// Flags of `streamer pull`.
///
/// Tables come from the environment: `CHANNELS_TABLE` (channel targets: lease and stream
/// state) and `DEVICES_TABLE` (device stream state). With neither and a `dir:` output the
/// process runs standalone: no AWS endpoint is needed and state goes to the log.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Source URL (`rtsp://[user:pass@]host/path`, `rtsps://…`, `udp://host:port`,
    /// `udp://group:port?source=S&interface=I`); repeat, paired in order with `--target`.
    /// From the environment: whitespace-separated.
    #[arg(long = "source", env = "PULL_SOURCE", value_delimiter = ' ', hide_env_values = true)]
    sources: Vec<String>,
    /// Where each `--source` is recorded: `channel:<id>` or `device:<id>`.
    #[arg(long = "target", env = "PULL_TARGET", value_delimiter = ' ')]
    targets: Vec<PullTarget>,
    /// A file of further sources, one `<target> <url>` per line (`#` comments).
    #[arg(long, env = "PULL_SOURCES_FILE")]
    sources_file: Option<PathBuf>,
    /// RTSP transport: `tcp` (interleaved on the RTSP connection, default) or `udp`.
    #[arg(long, env = "RTSP_TRANSPORT", default_value = "tcp")]
    rtsp_transport: String,
    /// RTSP credentials for sources whose URL has none: `user:password`, or the ARN of a
    /// Secrets Manager secret holding `{"username": …, "password": …}` or `user:password`.
    #[arg(long, env = "RTSP_CREDENTIALS", hide_env_values = true)]
    rtsp_credentials: Option<String>,
    /// PEM file of further trusted certificates for `rtsps://` sources, added to the
    /// system's roots: a CA, or a camera's self-signed certificate (trusted as it is).
    #[arg(long, env = "RTSP_CA_FILE")]
    rtsp_ca_file: Option<PathBuf>,
    /// Do not verify `rtsps://` cameras' certificates: encrypted, but the camera is not
    /// authenticated (one warning per source). `RTSP_TLS_INSECURE=true|false`.
    #[arg(long, env = "RTSP_TLS_INSECURE")]
    rtsp_tls_insecure: bool,
    /// Live target segment duration of devices (and of channels without a table), seconds
    /// (1..=10).
    #[arg(long, env = "PULL_SEGMENT_DURATION", default_value_t = HlsSettings::default().segment_duration)]
    segment_duration: u32,
    /// Segments in the live playlist of devices (and of channels without a table).
    #[arg(long, env = "PULL_PLAYLIST_WINDOW", default_value_t = HlsSettings::default().playlist_window)]
    playlist_window: u32,
    /// Recording segment length of device archives, seconds (6..=600).
    #[arg(long, env = "RECORDING_SEGMENT_DURATION", default_value_t = 30)]
    recording_segment_duration: u32,
    /// Longest wait between reconnects, seconds (the backoff doubles from 1 s up to it).
    #[arg(long, env = "PULL_MAX_BACKOFF_SECS", default_value_t = 30)]
    max_backoff_secs: u64,
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    media: MediaArgs,
}

impl PullArgs {
    /// The `--source`/`--target` pairs and the sources file's lines.
    fn sources(&self) -> anyhow::Result<Vec<PullSource>> {
        if self.sources.len() != self.targets.len() {
            bail!(
                "{} --source but {} --target: give one target per source",
                self.sources.len(),
                self.targets.len()
            );
        }
        let mut sources: Vec<PullSource> = self
            .sources
            .iter()
            .zip(&self.targets)
            .map(|(url, target)| PullSource { url: url.clone(), target: target.clone() })
            .collect();
        if let Some(path) = &self.sources_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("read {}", path.display()))?;
            sources.extend(
                parse_sources(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            );
        }
        if sources.is_empty() {
            bail!("nothing to pull: give --source/--target pairs or --sources-file");
        }
        let mut targets: Vec<&PullTarget> = sources.iter().map(|s| &s.target).collect();
        targets.sort_by_key(|t| t.to_string());
        if let Some(pair) = targets.windows(2).find(|w| w[0] == w[1]) {
            bail!("target {} is given twice", pair[0]);
        }
        Ok(sources)
    }
}

/// `streamer pull`: resolves sources and credentials, builds only the AWS clients needed,
/// recovers what a killed run left in the spool (in the background), then pulls until
/// SIGTERM.
///
/// # Errors
/// Bad flags, an unreadable sources file or secret, the spool.
pub async fn run(args: PullArgs) -> anyhow::Result<()> {
    let sources = args.sources()?;
    if !RECORDING_SEGMENT_RANGE.contains(&args.recording_segment_duration) {
        bail!("--recording-segment-duration must be within 6..=600 seconds");
    }
    if !(1..=10).contains(&args.segment_duration) {
        bail!("--segment-duration must be within 1..=10 seconds");
    }
    // An archive segment joins whole live segments: its target cannot be shorter.
    if args.recording_segment_duration < args.segment_duration {
        bail!("--recording-segment-duration must be at least --segment-duration");
    }
    raise_open_file_limit();
    let channels_table = env_var("CHANNELS_TABLE");
    let devices_table = env_var("DEVICES_TABLE");
    let media_bucket = env_var("MEDIA_BUCKET");
    let spec = args.run.output(media_bucket.as_deref());
    let standalone = channels_table.is_none()
        && devices_table.is_none()
        && matches!(spec, OutputSpec::Dir(_))
        && !args.rtsp_credentials.as_deref().is_some_and(is_secret_arn);
    let endpoint = env_var("AWS_ENDPOINT_URL");
    let sdk = match standalone {
        true => None,
        false => Some(streamstack_core::aws::sdk_config(endpoint.as_deref()).await),
    };
    let aws = sdk.as_ref().map(|sdk| AwsClients::from_sdk_config(sdk, endpoint.is_some()));
    tracing::info!(?spec, sources = sources.len(), standalone, "pull");
    let sink = sink(spec, aws.as_ref(), media_bucket.as_deref()).await?;
    let spool = args.run.spool()?;
    let uploads = RunArgs::uploads(&spool);
    let media = args.media.limits();

    let rtsp_transport = match args.rtsp_transport.as_str() {
        "tcp" => RtspTransport::Tcp,
        "udp" => RtspTransport::Udp,
        other => bail!("--rtsp-transport {other:?}: expected tcp or udp"),
    };
    let mut options = SourceOptions::default();
    options.rtsp.transport = rtsp_transport;
    options.rtsp.limits = media;
    options.rtsp.tls =
        RtspTls { ca_file: args.rtsp_ca_file.clone(), insecure: args.rtsp_tls_insecure };
    options.udp.limits = media;
    if let Some(spec) = &args.rtsp_credentials {
        options.rtsp.credentials = Some(super::credentials::resolve(spec, sdk.as_ref()).await?);
    }

    let (mut ingest, mut channels) = (None, None);
    let mut channel_states: Option<Arc<dyn StreamStateStore>> = None;
    let mut device_states: Option<Arc<dyn StreamStateStore>> = None;
    if let Some(aws) = &aws {
        if let Some(table) = &channels_table {
            let store: Arc<dyn ChannelStore> =
                Arc::new(DynamoChannelStore::new(aws.dynamodb.clone(), table.clone()));
            let settings = IngestSettings {
                uploads: uploads.clone(),
                lease: Duration::from_secs(args.run.lease_secs),
                media,
            };
            ingest = Some(Ingest::new(Arc::clone(&store), Arc::clone(&sink), settings));
            channels = Some(store);
            channel_states =
                Some(Arc::new(DynamoStreamStateStore::new(aws.dynamodb.clone(), table)));
        }
        if let Some(table) = &devices_table {
            device_states =
                Some(Arc::new(DynamoStreamStateStore::new(aws.dynamodb.clone(), table)));
        }
    }

    // What a killed run left: uploaded and ended in the background.
    let (recover_spool, recover_sink, retry) =
        (Arc::clone(&spool), Arc::clone(&sink), uploads.retry);
    let guard = ingest.clone();
    tokio::spawn(async move {
        match guard {
            Some(ingest) => recover(&recover_spool, recover_sink, ingest.as_ref(), retry).await,
            None => recover(&recover_spool, recover_sink, &AlwaysEndLive, retry).await,
        }
    });

    let context = Arc::new(PullContext {
        sink,
        uploads,
        media,
        live: LiveSettings {
            segment_duration: args.segment_duration,
            playlist_window: args.playlist_window.max(1),
        },
        recording_segment_secs: args.recording_segment_duration,
        ingest,
        channels,
        channel_states,
        device_states,
        sources: options,
        max_backoff: Duration::from_secs(args.max_backoff_secs.max(1)),
    });
    super::run(context, sources, shutdown_signal(), Duration::from_secs(args.run.drain_secs)).await;
    Ok(())
}

/// Whether a credentials value names a Secrets Manager secret.
fn is_secret_arn(spec: &str) -> bool {
    spec.starts_with("arn:") && spec.contains(":secretsmanager:")
}
