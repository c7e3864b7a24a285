//! A stopped RTMP ingest task (a task of the streamer ECS service, which ECS replaces by
//! itself): its channels' publish leases are released and their live playlists ended at
//! once, instead of players spinning on a frozen playlist and publishers being refused until
//! the lease lapses ([`streamstack_core::LEASE_DURATION`]).
//!
//! The streamer records its ECS task ARN as `lease_owner` (task metadata endpoint v4); the
//! channels table's keys-only [`streamstack_core::lease::LEASE_OWNER_INDEX`] finds the
//! candidates without a scan, and each is re-read consistently. For a channel whose stored
//! lease is still the stopped task's: first its live playlist (`live/<id>/index.m3u8`, below
//! `signed/` for a signed channel) gets `EXT-X-ENDLIST` (RFC 8216 §4.3.3.4) — while the dead session still holds the lease no other publish can
//! write that playlist — then the lease is released, conditional on the session (a publish
//! that took over meanwhile is never touched). A lease that has lapsed already (an event
//! delivered more than [`streamstack_core::LEASE_DURATION`] late) is only released: a new
//! publish may claim the channel at any moment, and its playlist must not be ended. A
//! redelivered event finds nothing left to do.

use aws_sdk_s3::primitives::ByteStream;
use serde::Serialize;
use streamstack_core::domain::live_playlist_key;
use streamstack_core::store::StoreError;
use streamstack_core::{ChannelStore, DynamoChannelStore};

/// Largest live playlist read back (a sliding window of a few segments is a few KiB).
pub const MAX_PLAYLIST_BYTES: usize = 1 << 20;

/// The S3 object tag the streamer puts on live-only output (`streamer::sink::EXPIRING_TAG`):
/// kept on a rewritten playlist that carried a tag.
pub const EXPIRING_TAG: &str = "streamstack-retention=live";

/// An ingest cleanup step failed (retryable: the event is redelivered).
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The channels table.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// S3 refused or could not be reached (after the SDK's bounded retries).
    #[error("S3 {operation} {key}: {message}")]
    S3 {
        /// `GetObject` or `PutObject`.
        operation: &'static str,
        /// Object key.
        key: String,
        /// SDK error context.
        message: String,
    },
}

/// What happened to one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReleasedChannel {
    /// Channel id.
    pub channel: String,
    /// Whether the live playlist was ended now (false: absent, already ended, the lease had
    /// lapsed already, or no bucket).
    pub playlist_ended: bool,
}

/// Releases what a stopped ingest task held.
pub struct IngestCleanup {
    /// The channels table.
    pub channels: DynamoChannelStore,
    /// S3, for the live playlists.
    pub s3: aws_sdk_s3::Client,
    /// The media bucket (`MEDIA_BUCKET`); `None`: leases only.
    pub bucket: Option<String>,
}

impl IngestCleanup {
    /// Ends the live playlist and releases the lease of every channel `task_arn` still holds.
    ///
    /// # Errors
    /// [`IngestError`] on the first failed call (earlier channels stay done; a retry skips
    /// them).
    pub async fn release_task(&self, task_arn: &str) -> Result<Vec<ReleasedChannel>, IngestError> {
        let mut released = Vec::new();
        for id in self.channels.leased_by(task_arn).await? {
            let Some(lease) = self.channels.stored_lease(&id).await? else { continue };
            if lease.owner != task_arn {
                continue;
            }
            // Only while the lease is unexpired can nobody else be writing the playlist: a
            // lapsed lease (an event delivered late) may be claimed any moment by a new
            // publish, whose playlist must not be ended. Then the lease is only released.
            let unexpired = lease.expires_at > time::OffsetDateTime::now_utc();
            let playlist_ended = match &self.bucket {
                Some(bucket) if unexpired => {
                    // Where the playlist is depends on the channel's playback (fixed at
                    // creation); a channel deleted meanwhile has nobody left to play it.
                    match self.channels.get(&id).await? {
                        Some(channel) => {
                            let key = live_playlist_key(&id, channel.playback);
                            self.end_playlist(bucket, &key).await?
                        }
                        None => false,
                    }
                }
                _ => false,
            };
            match self.channels.release_publish(&id, &lease.session).await {
                Ok(()) | Err(StoreError::NotFound) => {}
                // Another session holds it now: theirs.
                Err(StoreError::LeaseLost) => continue,
                Err(e) => return Err(e.into()),
            }
            tracing::info!(channel = %id, task = %task_arn, playlist_ended, "released the publish lease of a stopped ingest task");
            released.push(ReleasedChannel { channel: id, playlist_ended });
        }
        Ok(released)
    }

    /// Rewrites `key` with `EXT-X-ENDLIST`; false when it is absent, already ended, too large
    /// or not a media playlist.
    async fn end_playlist(&self, bucket: &str, key: &str) -> Result<bool, IngestError> {
        let s3_error =
            |operation, e: String| IngestError::S3 { operation, key: key.to_owned(), message: e };
        let object = match self.s3.get_object().bucket(bucket).key(key).send().await {
            Ok(o) => o,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => return Ok(false),
            Err(e) => {
                return Err(s3_error(
                    "GetObject",
                    aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
                ))
            }
        };
        if object.content_length().unwrap_or(0) > MAX_PLAYLIST_BYTES as i64 {
            tracing::warn!(%key, "live playlist too large to end");
            return Ok(false);
        }
        let tagged = object.tag_count().unwrap_or(0) > 0;
        let cache_control = object.cache_control().map(str::to_owned);
        let body = object
            .body
            .collect()
            .await
            .map_err(|e| s3_error("GetObject", e.to_string()))?
            .into_bytes();
        let Ok(mut playlist) = m3u8_rs::parse_media_playlist_res(&body) else {
            tracing::warn!(%key, "live playlist unparsable: left as it is");
            return Ok(false);
        };
        if playlist.end_list {
            return Ok(false);
        }
        playlist.end_list = true;
        let mut out = Vec::with_capacity(body.len() + 16);
        // Writing into a Vec cannot fail.
        let _ = playlist.write_to(&mut out);
        let mut put = self
            .s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("application/vnd.apple.mpegurl")
            .set_cache_control(cache_control)
            .body(ByteStream::from(out));
        if tagged {
            put = put.tagging(EXPIRING_TAG);
        }
        put.send().await.map_err(|e| {
            s3_error("PutObject", aws_sdk_s3::error::DisplayErrorContext(e).to_string())
        })?;
        Ok(true)
    }
}
