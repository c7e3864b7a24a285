//! Protocol-independent publishing: authorizing a publish against the channel table, and
//! turning a publisher's [`Frame`]s into uploaded HLS segments.

use crate::hls::SegmentError;
use crate::hls::{
    LiveFence, RetryPolicy, Segmenter, Spool, SubmitError, UploadReport, Uploader, UploaderConfig,
};
use crate::media::{MediaEvent, MediaLimits};
use crate::relay::{RelayReporter, RelaySet, RelaySettings, RelayTarget};
use crate::sink::ObjectSink;

mod instance;

pub use instance::{discover_instance_id, instance_id, METADATA_ATTEMPTS, METADATA_TIMEOUT};
use std::sync::Arc;
use std::time::Duration;
use streamstack_core::domain::Secret;
use streamstack_core::lease::{LeaseClaim, LEASE_DURATION};
use streamstack_core::playback::channel_of_prefix;
use streamstack_core::signing::{self, PushCredential, SignatureError};
use streamstack_core::{Channel, ChannelStore, StoreError};
use thiserror::Error;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Why a publish was refused or stopped.
#[derive(Debug, Error)]
pub enum PublishError {
    /// RTMP application other than `live` (its name, without any query string).
    #[error("unknown application {0:?}")]
    UnknownApp(String),
    /// Stream name without a well-formed `exp`/`sig`, or a bad signature.
    #[error("credential refused: {0}")]
    Credential(#[from] SignatureError),
    /// No channel with that id.
    #[error("unknown channel")]
    UnknownChannel,
    /// The channel's `expires_at` has passed.
    #[error("channel expired")]
    ChannelExpired,
    /// Another publisher holds the channel's publish lease (in any streamer process).
    #[error("channel already has a publisher")]
    AlreadyLive,
    /// The channel's key was rotated after the push URL was checked.
    #[error("channel key rotated")]
    KeyRotated,
    /// Too many publish requests from this source IP; refused without a table read.
    #[error("too many publish attempts from this address")]
    RateLimited,
    /// The channel table failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The object store cannot keep up; the publish is stopped.
    #[error(transparent)]
    Upload(#[from] SubmitError),
    /// Segmenting failed: a segment over [`MediaLimits::max_segment_bytes`], or an internal
    /// muxing error.
    #[error(transparent)]
    Mux(#[from] SegmentError),
}

impl PublishError {
    /// The reason sent back to the publisher: `unauthorized` for every credential or channel
    /// check (so a client cannot probe which channel ids exist), `already publishing`, or
    /// `server error`.
    pub fn public_reason(&self) -> &'static str {
        match self {
            Self::UnknownApp(_)
            | Self::Credential(_)
            | Self::UnknownChannel
            | Self::ChannelExpired
            | Self::KeyRotated => "unauthorized",
            Self::AlreadyLive => "already publishing",
            Self::RateLimited => "too many attempts",
            Self::Store(_) | Self::Upload(_) | Self::Mux(_) => "server error",
        }
    }
}

/// Checks an RTMP application name (as sent in `connect`, possibly with a query): only
/// `live` is served.
///
/// # Errors
/// [`PublishError::UnknownApp`] with the name before any `?` (a query may carry a signature,
/// which must not reach a log line), at most 64 characters.
pub fn check_app(app: &str) -> Result<(), PublishError> {
    let name = app.split_once('?').map_or(app, |(name, _)| name);
    if name.trim_end_matches('/') == signing::RTMP_APP {
        Ok(())
    } else {
        Err(PublishError::UnknownApp(name.chars().take(64).collect()))
    }
}

/// Why a running publish was ended by its lease keeper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Revocation {
    /// The channel was deleted.
    #[error("channel deleted")]
    Deleted,
    /// The channel's `expires_at` passed.
    #[error("channel expired")]
    Expired,
    /// The channel's key was rotated (`POST /channels/{id}/rotate-key`).
    #[error("channel key rotated")]
    KeyRotated,
    /// Another session holds the lease, or it was released under us.
    #[error("publish lease lost")]
    LeaseLost,
    /// The lease could not be renewed before it lapsed (channel table unreachable).
    #[error("publish lease lapsed: channel table unreachable")]
    LeaseLapsed,
}

/// Upload tuning shared by every publish.
#[derive(Debug, Clone)]
pub struct UploadSettings {
    /// Segments held in memory per publish ([`UploaderConfig::queue`]): without a spool,
    /// ingest is back-pressured beyond this; with one, later segments wait on disk only.
    pub queue: usize,
    /// Without a spool: how long a publish may be back-pressured before it is stopped.
    pub submit_timeout: Duration,
    /// Retry policy of each write.
    pub retry: RetryPolicy,
    /// The process's spool: segments wait there while the store is slow or down, and a
    /// restart finishes what a killed run left ([`crate::hls::recover`]). `None`: memory only.
    pub spool: Option<Arc<Spool>>,
}

impl Default for UploadSettings {
    /// 16 segments, 30 s, [`RetryPolicy::default`], no spool.
    fn default() -> Self {
        Self {
            queue: 16,
            submit_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            spool: None,
        }
    }
}

/// Everything every publish of one ingest server shares.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// How segments reach the object store.
    pub uploads: UploadSettings,
    /// Publish lease length (renewed every third of it): a channel whose streamer process
    /// died reads `idle` and accepts a new publish at most this long after its last renewal.
    /// At least 3 s.
    pub lease: Duration,
    /// Caps on what one publisher's media may cost (segment bytes, parameter sets,
    /// timestamp jumps).
    pub media: MediaLimits,
    /// Queues, timeouts and backoff of the channels' relay destinations.
    pub relay: RelaySettings,
}

impl Default for IngestSettings {
    /// [`UploadSettings::default`], [`LEASE_DURATION`], [`MediaLimits::default`],
    /// [`RelaySettings::default`].
    fn default() -> Self {
        Self {
            uploads: UploadSettings::default(),
            lease: LEASE_DURATION,
            media: MediaLimits::default(),
            relay: RelaySettings::default(),
        }
    }
}

/// Shared state of the ingest server: where channels and media live, and which process this
/// is (the owner recorded in publish leases).
pub struct Ingest {
    store: Arc<dyn ChannelStore>,
    sink: Arc<dyn ObjectSink>,
    settings: IngestSettings,
    owner: String,
}

impl Ingest {
    /// Ingest state over a channel store and an object sink; leases are recorded as owned by
    /// [`instance_id`].
    pub fn new(
        store: Arc<dyn ChannelStore>,
        sink: Arc<dyn ObjectSink>,
        mut settings: IngestSettings,
    ) -> Arc<Self> {
        settings.lease = settings.lease.max(Duration::from_secs(3));
        Arc::new(Self { store, sink, settings, owner: instance_id() })
    }

    /// The caps on one publisher's media, for the protocol's demuxer.
    pub fn media_limits(&self) -> MediaLimits {
        self.settings.media
    }

    /// Checks a publish request: application `live`, a stream name
    /// `<channel-id>?exp=..&sig=..` whose signature verifies with the channel's secret, and a
    /// channel that exists and has not expired. The query may also arrive on the application
    /// name (`live?exp=..&sig=..`, as some publishers send it).
    ///
    /// # Errors
    /// The [`PublishError`] describing the refusal.
    pub async fn authorize(&self, app: &str, stream_name: &str) -> Result<Channel, PublishError> {
        check_app(app)?;
        let app_query = app.split_once('?').map_or("", |(_, query)| query);
        let credential = if stream_name.contains('?') || app_query.is_empty() {
            PushCredential::parse(stream_name)?
        } else {
            PushCredential::parse(&format!("{stream_name}?{app_query}"))?
        };
        // An expired URL costs no channel-table read.
        let now = OffsetDateTime::now_utc();
        if credential.exp < now.unix_timestamp().max(0) as u64 {
            return Err(SignatureError::Expired.into());
        }
        let channel =
            self.store.get(&credential.channel_id).await?.ok_or(PublishError::UnknownChannel)?;
        signing::verify(
            &channel.secret,
            &channel.id,
            credential.exp,
            &credential.sig,
            now.unix_timestamp().max(0) as u64,
        )?;
        if channel.is_expired(now) {
            return Err(PublishError::ChannelExpired);
        }
        Ok(channel)
    }

    /// Starts publishing into an authorized channel: claims its publish lease in the channel
    /// table (one conditional `UpdateItem`, see [`streamstack_core::lease`]), starts the lease
    /// keeper that renews it every third of the lease ([`streamstack_core::LEASE_RENEW_INTERVAL`] by default),
    /// and starts the uploader.
    ///
    /// # Errors
    /// [`PublishError::AlreadyLive`] when another session (in any process) holds the lease,
    /// [`PublishError::KeyRotated`] / [`PublishError::UnknownChannel`] when the channel changed
    /// since [`Ingest::authorize`], or a store error.
    pub async fn start(self: &Arc<Self>, channel: Channel) -> Result<LivePublish, PublishError> {
        let now = OffsetDateTime::now_utc();
        // Unique across processes; sorts by start time. Also the segments' folder name.
        let session =
            format!("{}-{:08x}", now.unix_timestamp_nanos() / 1_000_000, rand::random::<u32>());
        let mut claim = LeaseClaim::new(&self.owner, &session, channel.secret.clone(), now);
        claim.expires_at = now + self.settings.lease;
        let claimed_at = std::time::Instant::now();
        let channel = match self.store.claim_publish(&channel.id, &claim).await {
            Ok(channel) => channel,
            Err(StoreError::LeaseHeld) => return Err(PublishError::AlreadyLive),
            Err(StoreError::KeyRotated) => return Err(PublishError::KeyRotated),
            Err(StoreError::NotFound) => return Err(PublishError::UnknownChannel),
            Err(e) => return Err(e.into()),
        };
        let config = UploaderConfig {
            prefix: channel.prefix(),
            session: session.clone(),
            target_secs: channel.hls.segment_duration,
            window: channel.hls.playlist_window as usize,
            recording: channel.recording,
            queue: self.settings.uploads.queue,
            submit_timeout: self.settings.uploads.submit_timeout,
            retry: self.settings.uploads.retry,
            spool: self.settings.uploads.spool.clone(),
        };
        tracing::info!(channel = %channel.id, %session, "publish started");
        let uploader = Uploader::spawn(Arc::clone(&self.sink), config);
        let fence = uploader.live_fence();
        let lease = self.settings.lease;
        fence.hold_until(claimed_at + lease.saturating_sub(FENCE_MARGIN));
        let (revoke, revoked) = watch::channel(None);
        let targets = relay_targets(&channel);
        let (relay_config, relay_updates) = watch::channel(targets.clone());
        let keeper = tokio::spawn(keep_lease(
            Arc::clone(&self.store),
            channel.id.clone(),
            session.clone(),
            channel.secret.clone(),
            lease,
            fence,
            revoke,
            relay_config,
        ));
        let relays = RelaySet::new(targets, self.settings.relay.clone());
        let reporter = RelayReporter::spawn(Arc::clone(&self.store), &channel.id, &session);
        Ok(LivePublish {
            ingest: Arc::clone(self),
            segmenter: Segmenter::new(channel.hls.segment_duration, self.settings.media),
            uploader,
            channel_id: channel.id,
            session,
            keeper: AbortOnDrop(keeper),
            revoked,
            relays,
            relay_updates,
            reporter,
        })
    }
}

/// Margin kept between a lease's expiry and the last live-playlist write it allows, for
/// clock differences between streamer tasks and in-flight writes.
pub const FENCE_MARGIN: Duration = Duration::from_secs(3);

/// Renews a publish lease of length `lease` every third of it and re-checks the channel each
/// time. Each successful renewal moves `fence` to the lease's expiry as seen from before the
/// call, less [`FENCE_MARGIN`], so the publish stops writing the live playlist before another
/// task could take the channel. Sends the [`Revocation`] that ends the publish; after a
/// deleted channel or a lost lease there is nothing left to renew, otherwise renewal goes on
/// (the publish is finishing its uploads) until the publish aborts this task. A failed
/// renewal is retried every second. Each renewal also hands the channel's current relay
/// destinations to `relays` (a `PATCH` during the publish takes effect within a third of
/// the lease).
#[allow(clippy::too_many_arguments)]
async fn keep_lease(
    store: Arc<dyn ChannelStore>,
    channel_id: String,
    session: String,
    secret: Secret,
    lease: Duration,
    fence: Arc<LiveFence>,
    revoke: watch::Sender<Option<Revocation>>,
    relays: watch::Sender<Vec<RelayTarget>>,
) {
    let interval = lease / 3;
    let mut wait = interval;
    let mut lapse_logged = false;
    loop {
        tokio::time::sleep(wait).await;
        let sent = std::time::Instant::now();
        let now = OffsetDateTime::now_utc();
        let revocation = match store.renew_publish(&channel_id, &session, now + lease).await {
            Ok(channel) => {
                fence.hold_until(sent + lease.saturating_sub(FENCE_MARGIN));
                wait = interval;
                relays.send_if_modified(|current| {
                    let next = relay_targets(&channel);
                    (*current != next).then(|| *current = next).is_some()
                });
                if channel.is_expired(now) {
                    Revocation::Expired
                } else if channel.secret != secret {
                    Revocation::KeyRotated
                } else {
                    continue;
                }
            }
            Err(StoreError::NotFound) => Revocation::Deleted,
            Err(StoreError::LeaseLost) => Revocation::LeaseLost,
            Err(e) => {
                wait = Duration::from_secs(1);
                if fence.allows() {
                    tracing::warn!(channel = %channel_id, error = %e, "lease renewal failed, retrying");
                    continue;
                }
                if !std::mem::replace(&mut lapse_logged, true) {
                    tracing::error!(channel = %channel_id, error = %e, "lease renewal failed");
                }
                Revocation::LeaseLapsed
            }
        };
        if revoke.borrow().is_none() {
            tracing::warn!(channel = %channel_id, %session, reason = %revocation, "ending publish");
            let _ = revoke.send(Some(revocation));
        }
        if matches!(revocation, Revocation::Deleted | Revocation::LeaseLost) {
            fence.revoke();
            return;
        }
    }
}

/// One running publish: frames in, segments out, its lease kept alive alongside (the keeper
/// stops when the publish is finished or dropped).
pub struct LivePublish {
    ingest: Arc<Ingest>,
    channel_id: String,
    session: String,
    segmenter: Segmenter,
    uploader: Uploader,
    keeper: AbortOnDrop,
    revoked: watch::Receiver<Option<Revocation>>,
    relays: RelaySet,
    relay_updates: watch::Receiver<Vec<RelayTarget>>,
    reporter: RelayReporter,
}

/// Aborts the lease keeper when its publish goes away, however it goes (finished, or its
/// connection task dropped or panicking): a lease nobody uses must lapse.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl LivePublish {
    /// The channel being published.
    pub fn channel_id(&self) -> &str {
        &self.channel_id
    }

    /// Resolves when the lease keeper ended the publish (channel deleted, expired, key
    /// rotated, lease lost or lapsed); pending otherwise. Cancel-safe.
    pub async fn revoked(&mut self) -> Revocation {
        let reason = self.revoked.wait_for(Option::is_some).await.map(|r| *r);
        match reason {
            Ok(reason) => reason.unwrap_or(Revocation::LeaseLost),
            Err(_) => std::future::pending().await,
        }
    }

    /// Adds one ingest event (tracks or frame); hands a completed segment to the uploader.
    ///
    /// # Errors
    /// [`PublishError::Upload`] when the upload queue stayed full, [`PublishError::Mux`] when
    /// a segment outgrew its byte limit (the publish should stop).
    pub async fn push(&mut self, event: &MediaEvent) -> Result<(), PublishError> {
        if self.relay_updates.has_changed().unwrap_or(false) {
            let targets = self.relay_updates.borrow_and_update().clone();
            self.relays.update(targets);
        }
        // Relays first: never waits, and sees the frame before any upload back-pressure.
        self.relays.push(event);
        self.reporter.offer(&self.relays);
        if let Some(segment) = self.segmenter.push_event(event)? {
            self.uploader.submit(segment).await?;
        }
        Ok(())
    }

    /// Hands the running segment to the uploader now (the source went away): nothing waits
    /// in memory while it is gone. Frames that follow start a new segment at an IDR.
    pub async fn flush(&mut self) {
        match self.segmenter.finish() {
            Ok(Some(segment)) => {
                if let Err(e) = self.uploader.submit(segment).await {
                    tracing::error!(channel = %self.channel_id, error = %e, "segment not queued");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!(channel = %self.channel_id, error = %e, "segment lost"),
        }
    }

    /// Flushes the last segment, writes the final playlist with `EXT-X-ENDLIST`, and releases
    /// the publish lease (the channel reads `idle`). The lease is renewed until the uploads
    /// are done, so no other publish can take the channel (and its live playlist) meanwhile;
    /// a publish that already lost its lease leaves the live playlist to its new owner.
    ///
    /// `shutdown` carries the server's drain deadline once it is shutting down (also while
    /// this finish is under way): what is not stored by then stays in the spool, for the next
    /// start to upload ([`crate::hls::recover`]); until then the store is waited for.
    pub async fn finish(
        mut self,
        mut shutdown: watch::Receiver<Option<tokio::time::Instant>>,
    ) -> UploadReport {
        let last = self.segmenter.finish().unwrap_or_else(|e| {
            tracing::error!(channel = %self.channel_id, error = %e, "last segment lost");
            None
        });
        if let Some(last) = last {
            if let Err(e) = self.uploader.submit(last).await {
                tracing::error!(channel = %self.channel_id, error = %e, "last segment not queued");
            }
        }
        let cutoff = async move {
            match shutdown.wait_for(Option::is_some).await.map(|d| *d) {
                Ok(Some(deadline)) => deadline,
                _ => std::future::pending().await,
            }
        };
        // The relays end alongside the uploads: neither waits for the other. A revoked
        // publish stops them at once (another publisher may be live on them already).
        let revoked = self.revoked.borrow().is_some();
        let (relays, reporter) = (self.relays, self.reporter);
        let end_relays = async move {
            if revoked {
                relays.stop(RELAY_DRAIN).await;
            } else {
                relays.finish(RELAY_DRAIN).await;
            }
            reporter.finish().await;
        };
        let (report, ()) = tokio::join!(self.uploader.finish_until(cutoff), end_relays);
        drop(self.keeper);
        let store = &self.ingest.store;
        if let Err(e) = store.release_publish(&self.channel_id, &self.session).await {
            tracing::error!(channel = %self.channel_id, error = %e, "could not release the lease");
        }
        tracing::info!(channel = %self.channel_id, ?report, "publish finished");
        report
    }
}

/// How long a finishing publish lets its relay destinations send what they have queued.
pub const RELAY_DRAIN: Duration = Duration::from_secs(2);

/// The enabled relay destinations of `channel`, for its [`RelaySet`].
fn relay_targets(channel: &Channel) -> Vec<RelayTarget> {
    channel
        .relays
        .iter()
        .filter(|r| r.enabled)
        .map(|r| RelayTarget { id: r.id.clone(), url: r.url.expose().to_owned() })
        .collect()
}

/// Start-up recovery ([`crate::hls::recover`]) may end a crashed session's live playlist only
/// when no other session has published into the channel since: the channel is gone, its lease
/// is still the crashed session's own, or it has no lease and its `last_session` is that
/// session. A channel table that
/// does not answer (3 tries, 2 s apart) means "no": the live playlist is left as is, the
/// recording is ended anyway.
#[async_trait::async_trait]
impl crate::hls::LivePlaylistGuard for Ingest {
    async fn may_end_live(&self, manifest: &crate::hls::SessionManifest) -> bool {
        let Some(channel_id) = channel_of_prefix(&manifest.prefix) else {
            return false;
        };
        for attempt in 1..=3 {
            match self.store.get(channel_id).await {
                Ok(None) => return true,
                // Ours, or nobody's and no newer publish claimed the channel since.
                Ok(Some(channel)) => {
                    return match &channel.lease {
                        Some(lease) => lease.session == manifest.session,
                        None => {
                            channel.last_session.as_ref().is_none_or(|s| *s == manifest.session)
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(channel = %channel_id, attempt, error = %e, "lease check failed");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
        false
    }

    /// Releases the crashed session's lease if it still holds it (idempotent), so the
    /// channel reads `idle` now rather than when the lease lapses.
    async fn recovered(&self, manifest: &crate::hls::SessionManifest) {
        if let Some(channel_id) = channel_of_prefix(&manifest.prefix) {
            if let Err(e) = self.store.release_publish(channel_id, &manifest.session).await {
                tracing::warn!(channel = %channel_id, error = %e, "could not release a recovered lease");
            }
        }
    }
}
