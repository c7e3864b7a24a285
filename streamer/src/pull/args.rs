//! Command line of `streamer pull`: every flag also read from the environment, so an ECS
//! task (or a container override) can start it without a command.

use super::assignment::{follow, Follower};
use super::{parse_sources, PullContext, PullSource, PullTarget, SourceOptions, Supervisor};
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
use streamstack_core::device_store::{DeviceStore, DynamoDeviceStore};
use streamstack_core::media_url::MediaUrlKey;
use streamstack_core::slot::{DynamoSlotStore, SlotStore};
use streamstack_core::stream_state::{DynamoStreamStateStore, StreamStateStore};
use streamstack_core::{ChannelStore, DynamoChannelStore, HlsSettings, Playback};

fn parse_playback(text: &str) -> Result<Playback, String> {
    Playback::parse(text).ok_or_else(|| format!("{text:?}: expected public or signed"))
}

/// Flags of `streamer pull`.
///
/// Tables come from the environment: `CHANNELS_TABLE` (channel targets: lease and stream
/// state) and `DEVICES_TABLE` (device stream state). With neither and a `dir:` output the
/// process runs standalone: no AWS endpoint is needed and state goes to the log.
///
/// With `--assignment <slot>` the sources come from the devices reconciler instead: the
/// slot item of `SLOTS_TABLE` names the devices, `DEVICES_TABLE` their URLs, and
/// `MEDIA_URL_KEY` (64 hex characters) opens the credentials of those that have any.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Follow task slot `<slot>` (an item of `SLOTS_TABLE`): pull its devices as
    /// `device:<id>`, starting and stopping pulls as the slot changes; exit 0 once the slot
    /// is deleted. Excludes `--source`, `--target` and `--sources-file`.
    #[arg(
        long,
        env = "PULL_ASSIGNMENT",
        conflicts_with_all = ["sources", "targets", "sources_file"]
    )]
    assignment: Option<String>,
    /// Seconds between two reads of the `--assignment` slot.
    #[arg(long, env = "ASSIGNMENT_POLL_SECS", default_value_t = 5)]
    assignment_poll_secs: u64,
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
    /// Playback of the `--source`/`--sources-file` targets: `public` (media under
    /// `devices/<id>/`, `live/<id>/`) or `signed` (under `signed/…`, played with CloudFront
    /// signed cookies or URLs). Assigned devices and channels with a table use their own.
    #[arg(long, env = "PULL_PLAYBACK", default_value = "public", value_parser = parse_playback)]
    playback: Playback,
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

/// Where the sources come from.
enum Mode {
    /// `--source`/`--target` pairs and the sources file: fixed for the process's life.
    Fixed(Vec<PullSource>),
    /// `--assignment <slot>`: the slot's devices, as they change.
    Assignment(String),
}

/// Whether `id` can be a slot id: `dev-<device id>` or `grp-<12 hex>`, so 1..=68 letters,
/// digits, `-` or `_`.
fn is_valid_slot_id(id: &str) -> bool {
    (1..=68).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl PullArgs {
    /// The assignment slot, or the fixed sources.
    fn mode(&self) -> anyhow::Result<Mode> {
        match &self.assignment {
            Some(slot) if is_valid_slot_id(slot) => Ok(Mode::Assignment(slot.clone())),
            Some(_) => bail!("--assignment: 1..=68 letters, digits, '-' or '_'"),
            None => self.sources().map(Mode::Fixed),
        }
    }

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
            .map(|(url, target)| PullSource {
                url: url.clone(),
                target: target.clone(),
                playback: self.playback,
            })
            .collect();
        if let Some(path) = &self.sources_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("read {}", path.display()))?;
            sources.extend(
                parse_sources(&text, self.playback)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
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
    let mode = args.mode()?;
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
    let slots_table = env_var("SLOTS_TABLE");
    if matches!(mode, Mode::Assignment(_)) && (slots_table.is_none() || devices_table.is_none()) {
        bail!("--assignment needs SLOTS_TABLE and DEVICES_TABLE");
    }
    // Checked before anything starts: a malformed key is a deployment error.
    let key = match mode {
        Mode::Assignment(_) => MediaUrlKey::from_env()?,
        Mode::Fixed(_) => None,
    };
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
    match &mode {
        Mode::Fixed(sources) => tracing::info!(?spec, sources = sources.len(), standalone, "pull"),
        Mode::Assignment(slot) => tracing::info!(?spec, %slot, "pull: following an assignment"),
    }
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
                relay: args.media.relay(),
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
    let drain = Duration::from_secs(args.run.drain_secs);
    args.run.start_health().await?;
    match mode {
        Mode::Fixed(sources) => super::run(context, sources, shutdown_signal(), drain).await,
        Mode::Assignment(slot) => {
            // Both tables are set (checked above), so the clients were built.
            let (Some(aws), Some(slots_table), Some(devices_table)) =
                (aws, slots_table, devices_table)
            else {
                bail!("--assignment needs SLOTS_TABLE and DEVICES_TABLE");
            };
            let slots: Arc<dyn SlotStore> =
                Arc::new(DynamoSlotStore::new(aws.dynamodb.clone(), slots_table));
            let devices: Arc<dyn DeviceStore> =
                Arc::new(DynamoDeviceStore::new(aws.dynamodb, devices_table));
            let follower = Follower::new(slot, slots, devices, key);
            let period = Duration::from_secs(args.assignment_poll_secs.max(1));
            let pulls = Supervisor::new(context, drain);
            follow(follower, pulls, period, shutdown_signal()).await;
        }
    }
    Ok(())
}

/// Whether a credentials value names a Secrets Manager secret.
fn is_secret_arn(spec: &str) -> bool {
    spec.starts_with("arn:") && spec.contains(":secretsmanager:")
}

#[cfg(test)]
mod tests {
    use super::is_valid_slot_id;
    use crate::cli::Cli;
    use clap::Parser;

    #[test]
    fn an_assignment_excludes_fixed_sources() {
        let pull = |extra: &[&str]| {
            let args = [&["streamer", "pull", "--assignment", "grp-0123456789ab"], extra].concat();
            Cli::try_parse_from(args)
        };
        assert!(pull(&[]).is_ok());
        assert!(pull(&["--source", "udp://127.0.0.1:5000", "--target", "device:a"]).is_err());
        assert!(pull(&["--sources-file", "sources.txt"]).is_err());
    }

    #[test]
    fn slot_ids() {
        assert!(is_valid_slot_id("grp-0123456789ab"));
        assert!(is_valid_slot_id(&format!("dev-{}", "a".repeat(64))));
        for bad in ["", "grp 1", "../x", &"a".repeat(69)] {
            assert!(!is_valid_slot_id(bad), "{bad:?}");
        }
    }
}
