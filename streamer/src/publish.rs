//! Protocol-independent publishing: authorizing a publish against the channel table, and
//! turning a publisher's [`Frame`]s into uploaded HLS segments.

use crate::hls::{RetryPolicy, Segmenter, SubmitError, UploadReport, Uploader, UploaderConfig};
use crate::media::Frame;
use crate::sink::ObjectSink;
use crate::ts::TsError;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use streamstack_core::signing::{self, PushCredential, SignatureError};
use streamstack_core::{Channel, ChannelState, ChannelStore, StoreError};
use thiserror::Error;
use time::OffsetDateTime;

/// Why a publish was refused or stopped.
#[derive(Debug, Error)]
pub enum PublishError {
    /// RTMP application other than `live`.
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
    /// Another publisher is already live on this channel in this process.
    #[error("channel already has a publisher")]
    AlreadyLive,
    /// The channel table failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The object store cannot keep up; the publish is stopped.
    #[error(transparent)]
    Upload(#[from] SubmitError),
    /// Internal muxing error.
    #[error(transparent)]
    Mux(#[from] TsError),
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
            | Self::ChannelExpired => "unauthorized",
            Self::AlreadyLive => "already publishing",
            Self::Store(_) | Self::Upload(_) | Self::Mux(_) => "server error",
        }
    }
}

/// Upload tuning shared by every publish.
#[derive(Debug, Clone, Copy)]
pub struct UploadSettings {
    /// Segments buffered per publish before ingest is back-pressured.
    pub queue: usize,
    /// How long a publish may be back-pressured before it is stopped.
    pub submit_timeout: Duration,
    /// Retry policy of each write.
    pub retry: RetryPolicy,
}

impl Default for UploadSettings {
    /// 16 segments, 30 s, [`RetryPolicy::default`].
    fn default() -> Self {
        Self { queue: 16, submit_timeout: Duration::from_secs(30), retry: RetryPolicy::default() }
    }
}

/// Shared state of the ingest server: where channels and media live, and which channels
/// currently have a publisher in this process.
pub struct Ingest {
    store: Arc<dyn ChannelStore>,
    sink: Arc<dyn ObjectSink>,
    uploads: UploadSettings,
    live: Mutex<HashSet<String>>,
}

impl Ingest {
    /// Ingest state over a channel store and an object sink.
    pub fn new(
        store: Arc<dyn ChannelStore>,
        sink: Arc<dyn ObjectSink>,
        uploads: UploadSettings,
    ) -> Arc<Self> {
        Arc::new(Self { store, sink, uploads, live: Mutex::new(HashSet::new()) })
    }

    /// Checks a publish request: application `live`, a stream name
    /// `<channel-id>?exp=..&sig=..` whose signature verifies with the channel's secret, and a
    /// channel that exists and has not expired. The query may also arrive on the application
    /// name (`live?exp=..&sig=..`, as some publishers send it).
    ///
    /// # Errors
    /// The [`PublishError`] describing the refusal.
    pub async fn authorize(&self, app: &str, stream_name: &str) -> Result<Channel, PublishError> {
        let (app_name, app_query) = app.split_once('?').unwrap_or((app, ""));
        if app_name.trim_end_matches('/') != signing::RTMP_APP {
            return Err(PublishError::UnknownApp(app.to_owned()));
        }
        let credential = if stream_name.contains('?') || app_query.is_empty() {
            PushCredential::parse(stream_name)?
        } else {
            PushCredential::parse(&format!("{stream_name}?{app_query}"))?
        };
        let channel =
            self.store.get(&credential.channel_id).await?.ok_or(PublishError::UnknownChannel)?;
        let now = OffsetDateTime::now_utc();
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

    /// Starts publishing into an authorized channel: claims it in this process, marks it
    /// `live` in the table, and starts its uploader.
    ///
    /// # Errors
    /// [`PublishError::AlreadyLive`] or a store error (the claim is then released).
    pub async fn start(self: &Arc<Self>, channel: Channel) -> Result<LivePublish, PublishError> {
        if !self.lock_live().insert(channel.id.clone()) {
            return Err(PublishError::AlreadyLive);
        }
        if let Err(e) = self.store.set_state(&channel.id, ChannelState::Live).await {
            self.lock_live().remove(&channel.id);
            return Err(e.into());
        }
        let session = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        let config = UploaderConfig {
            prefix: format!("live/{}", channel.id),
            session: session.to_string(),
            target_secs: channel.hls.segment_duration,
            window: channel.hls.playlist_window as usize,
            recording: channel.recording,
            queue: self.uploads.queue,
            submit_timeout: self.uploads.submit_timeout,
            retry: self.uploads.retry,
        };
        tracing::info!(channel = %channel.id, session = %config.session, "publish started");
        Ok(LivePublish {
            ingest: Arc::clone(self),
            segmenter: Segmenter::new(channel.hls.segment_duration),
            uploader: Uploader::spawn(Arc::clone(&self.sink), config),
            channel_id: channel.id,
        })
    }

    fn lock_live(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One running publish: frames in, segments out.
pub struct LivePublish {
    ingest: Arc<Ingest>,
    channel_id: String,
    segmenter: Segmenter,
    uploader: Uploader,
}

impl LivePublish {
    /// The channel being published.
    pub fn channel_id(&self) -> &str {
        &self.channel_id
    }

    /// Adds one frame; hands a completed segment to the uploader.
    ///
    /// # Errors
    /// [`PublishError::Upload`] when the upload queue stayed full (the publish should stop).
    pub async fn push(&mut self, frame: &Frame, has_audio: bool) -> Result<(), PublishError> {
        if let Some(segment) = self.segmenter.push(frame, has_audio)? {
            self.uploader.submit(segment).await?;
        }
        Ok(())
    }

    /// Flushes the last segment, writes the final playlist with `EXT-X-ENDLIST`, marks the
    /// channel `idle` and releases it.
    pub async fn finish(mut self) -> UploadReport {
        if let Some(last) = self.segmenter.finish() {
            if let Err(e) = self.uploader.submit(last).await {
                tracing::error!(channel = %self.channel_id, error = %e, "last segment not queued");
            }
        }
        let report = self.uploader.finish().await;
        if let Err(e) = self.ingest.store.set_state(&self.channel_id, ChannelState::Idle).await {
            tracing::error!(channel = %self.channel_id, error = %e, "could not mark channel idle");
        }
        self.ingest.lock_live().remove(&self.channel_id);
        tracing::info!(channel = %self.channel_id, ?report, "publish finished");
        report
    }
}
