//! `streamer pull`: record pulled sources (RTSP cameras, UDP MPEG-TS) into HLS.
//!
//! Each source runs in its own task, isolated as RTMP connections are: a failing camera
//! never disturbs another. A task opens its source ([`crate::ingest::rtsp`],
//! [`crate::ingest::udp`]), maps the frames onto one output timeline that survives
//! reconnects ([`Timeline`]), and feeds its [`Output`]. When the source fails or ends it
//! reconnects with capped exponential backoff ([`Backoff`]: 1 s doubling to 30 s) without
//! ending the process; the first frame after a reconnect starts a segment marked
//! `EXT-X-DISCONTINUITY` (RFC 8216 §4.3.2.3). The target's stream state is reported by
//! [`StateReporter`]. SIGTERM flushes the last segments and ends the playlists.
//!
//! The pulls of a process are kept by a [`Supervisor`], keyed by target: each has its own stop
//! signal, so one can be added, replaced or removed (flushed, playlists ended) while the
//! others run. The sources are fixed (`--source`/`--target`, `--sources-file`: [`run`]) or
//! follow a task slot of the devices reconciler (`--assignment <slot>`: [`assignment`]).
//!
//! Output layout:
//! - `channel:<id>`: the channel's `live/<id>/index.m3u8`, exactly as a push (with a channel
//!   table the pull holds the channel's publish lease, so an RTMP publish is refused meanwhile);
//! - `device:<id>`: `devices/<id>/live/index.m3u8` (sliding window) and the hourly archive
//!   ([`archive`]).

pub mod archive;
pub mod args;
pub mod assignment;
mod credentials;
mod output;
mod state;
pub mod supervisor;
mod task;

pub use output::{HlsOutput, LiveSettings, Output, Shutdown};
pub use state::{StateReporter, STATE_INTERVAL};
pub use supervisor::Supervisor;

use crate::ingest::rtsp::RtspOptions;
use crate::ingest::udp::UdpOptions;
use crate::ingest::{redact_url, MediaSource, SourceError};
use crate::media::MediaLimits;
use crate::publish::{Ingest, PublishError, UploadSettings};
use crate::sink::ObjectSink;
use archive::ArchiveConfig;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use streamstack_core::domain::{device_live_prefix, is_valid_channel_id};
use streamstack_core::playback::channel_prefix;
use streamstack_core::stream_state::StreamStateStore;
use streamstack_core::ChannelStore;
use streamstack_core::Playback;

/// What a pulled source is recorded as.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PullTarget {
    /// `channel:<id>`: a channel's live playlist.
    Channel(String),
    /// `device:<id>`: a device's live playlist and archive.
    Device(String),
}

impl PullTarget {
    /// The channel or device id.
    pub fn id(&self) -> &str {
        match self {
            Self::Channel(id) | Self::Device(id) => id,
        }
    }
}

impl fmt::Display for PullTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Channel(id) => write!(f, "channel:{id}"),
            Self::Device(id) => write!(f, "device:{id}"),
        }
    }
}

impl FromStr for PullTarget {
    type Err = String;

    /// `channel:<id>` or `device:<id>`, ids of 1..=64 letters, digits, `-`, `_`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, id) = s.split_once(':').ok_or("expected channel:<id> or device:<id>")?;
        if !is_valid_channel_id(id) {
            return Err(format!("invalid id {id:?}: 1..=64 letters, digits, '-' or '_'"));
        }
        match kind {
            "channel" => Ok(Self::Channel(id.to_owned())),
            "device" => Ok(Self::Device(id.to_owned())),
            _ => Err(format!("unknown target kind {kind:?}: expected channel or device")),
        }
    }
}

/// One source to pull and where it goes. `Debug` shows the URL without credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct PullSource {
    /// `rtsp://`, `rtsps://` or `udp://` URL, possibly with credentials.
    pub url: String,
    /// Where it is recorded.
    pub target: PullTarget,
    /// Playback of a device target, or of a channel target without a channels table (a
    /// channel's own row decides otherwise): signed media goes below `signed/`.
    pub playback: Playback,
}

impl fmt::Debug for PullSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PullSource")
            .field("url", &redact_url(&self.url))
            .field("target", &self.target)
            .field("playback", &self.playback)
            .finish()
    }
}

/// Parses a sources file: one `<target> <url>` per line (`device:cam1 rtsp://…`), each
/// recorded with `playback`; blank lines and lines starting with `#` are skipped.
///
/// # Errors
/// The first bad line: its number and why (the URL is not repeated, it may hold a password).
pub fn parse_sources(text: &str, playback: Playback) -> Result<Vec<PullSource>, String> {
    let mut sources = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let (Some(target), Some(url), None) = (fields.next(), fields.next(), fields.next()) else {
            return Err(format!("line {}: expected `<target> <url>`", n + 1));
        };
        let target = target.parse().map_err(|e| format!("line {}: {e}", n + 1))?;
        sources.push(PullSource { url: url.to_owned(), target, playback });
    }
    Ok(sources)
}

/// Opens `url` with the protocol its scheme names.
///
/// # Errors
/// [`SourceError::InvalidUrl`] for another scheme, else the protocol's error.
pub async fn open_source(
    url: &str,
    options: &SourceOptions,
) -> Result<Box<dyn MediaSource>, SourceError> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase()).unwrap_or_default();
    match scheme.as_str() {
        "rtsp" | "rtsps" => Ok(Box::new(crate::ingest::rtsp::connect(url, &options.rtsp).await?)),
        "udp" => Ok(Box::new(crate::ingest::udp::open(url, &options.udp).await?)),
        _ => Err(SourceError::InvalidUrl(format!(
            "scheme {scheme:?} not supported: expected rtsp://, rtsps:// or udp://"
        ))),
    }
}

/// Protocol options of every source.
#[derive(Debug, Clone, Default)]
pub struct SourceOptions {
    /// RTSP transport, credentials and timeouts.
    pub rtsp: RtspOptions,
    /// UDP receive options.
    pub udp: UdpOptions,
}

/// Capped exponential backoff: `initial` doubling to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// 1 s doubling to `max` (default 30 s).
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max, next: initial }
    }

    /// The delay before the next attempt; `permanent` errors wait the longest.
    pub fn delay(&mut self, permanent: bool) -> Duration {
        if permanent {
            return self.max;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    /// Media flowed again: the next failure starts from `initial`.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// What every pulled source of one process shares.
pub struct PullContext {
    /// Object store.
    pub sink: Arc<dyn ObjectSink>,
    /// Upload queue, retry, spool.
    pub uploads: UploadSettings,
    /// Caps on one source's media.
    pub media: MediaLimits,
    /// Live playlist of devices (and of channels without a table).
    pub live: LiveSettings,
    /// Recording segment length of device archives, seconds.
    pub recording_segment_secs: u32,
    /// With a channel table: leases and publishing into channels.
    pub ingest: Option<Arc<Ingest>>,
    /// With a channel table: the channels.
    pub channels: Option<Arc<dyn ChannelStore>>,
    /// Stream state of channel targets (the channel table), if configured.
    pub channel_states: Option<Arc<dyn StreamStateStore>>,
    /// Stream state of device targets (the devices table), if configured.
    pub device_states: Option<Arc<dyn StreamStateStore>>,
    /// Protocol options.
    pub sources: SourceOptions,
    /// Longest reconnect delay.
    pub max_backoff: Duration,
}

/// Session folder name of this run: unique across processes, sorted by start time.
fn new_session() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!("{}-{:08x}", now.unix_timestamp_nanos() / 1_000_000, rand::random::<u32>())
}

impl PullContext {
    /// Opens `target`'s output: a channel's publish (claiming its lease) or plain HLS.
    async fn open_output(
        &self,
        source: &PullSource,
        stop: &Shutdown,
    ) -> Result<Output, PublishError> {
        let session = new_session();
        let playback = source.playback;
        match (&source.target, &self.ingest, &self.channels) {
            (PullTarget::Channel(id), Some(ingest), Some(channels)) => {
                let channel = channels.get(id).await?.ok_or(PublishError::UnknownChannel)?;
                Ok(Output::Channel(Box::new(ingest.start(channel).await?)))
            }
            // Standalone: the channel's settings are not known; the flags give them.
            (PullTarget::Channel(id), _, _) => {
                let prefix = channel_prefix(id, playback);
                Ok(Output::Hls(Box::new(self.hls(prefix, session, self.live, None))))
            }
            (PullTarget::Device(id), _, _) => {
                let archive = ArchiveConfig {
                    device_id: id.clone(),
                    playback,
                    session: session.clone(),
                    target_secs: self.recording_segment_secs,
                    max_bytes: self.media.max_segment_bytes,
                    sink: Arc::clone(&self.sink),
                    uploads: self.uploads.clone(),
                    shutdown: stop.clone(),
                };
                let prefix = device_live_prefix(id, playback);
                Ok(Output::Hls(Box::new(self.hls(prefix, session, self.live, Some(archive)))))
            }
        }
    }

    fn hls(
        &self,
        prefix: String,
        session: String,
        live: LiveSettings,
        archive: Option<ArchiveConfig>,
    ) -> HlsOutput {
        let sink = Arc::clone(&self.sink);
        HlsOutput::new(sink, prefix, session, live, &self.uploads, self.media, archive)
    }

    fn state_store(&self, target: &PullTarget) -> Option<Arc<dyn StreamStateStore>> {
        match target {
            PullTarget::Channel(_) => self.channel_states.clone(),
            PullTarget::Device(_) => self.device_states.clone(),
        }
    }
}

/// Pulls every source until `shutdown` resolves (or every pull ended by itself), then asks
/// each to flush and end its playlists, waiting up to `drain` (uploads pending 10 s before
/// its end stay spooled).
pub async fn run(
    context: Arc<PullContext>,
    sources: Vec<PullSource>,
    shutdown: impl std::future::Future<Output = ()>,
    drain: Duration,
) {
    let mut pulls = Supervisor::new(context, drain);
    for source in sources {
        pulls.add(source);
    }
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            ended = pulls.next_ended() => if ended.is_none() { return },
            () = &mut shutdown => break,
        }
    }
    pulls.shutdown().await;
}

/// Resolves to the shutdown deadline once there is one (never, if the process is not
/// stopping).
pub(crate) async fn deadline(mut shutdown: Shutdown) -> tokio::time::Instant {
    match shutdown.wait_for(Option::is_some).await.map(|d| *d) {
        Ok(Some(deadline)) => deadline,
        _ => std::future::pending().await,
    }
}
