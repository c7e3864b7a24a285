//! Channels: what a user creates through the API and publishes into over RTMP.

use crate::lease::PublishLease;
use crate::playback::Playback;
use crate::relay::{resolve_relays, Relay, RelayRequest};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;
use time::{Duration, OffsetDateTime};

/// Allowed HLS segment (target) duration, in seconds (RFC 8216 §4.3.3.1 `EXT-X-TARGETDURATION`).
pub const SEGMENT_DURATION_RANGE: std::ops::RangeInclusive<u32> = 1..=10;
/// Allowed number of segments in the sliding live playlist.
pub const PLAYLIST_WINDOW_RANGE: std::ops::RangeInclusive<u32> = 3..=20;
/// Maximum channel name length, in characters.
pub const MAX_NAME_CHARS: usize = 128;
/// Maximum channel description length, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1024;
/// Maximum name length in UTF-8 bytes (after NFC normalisation), besides [`MAX_NAME_CHARS`]:
/// 128 ASCII characters fit, 85 of three bytes (most CJK).
pub const MAX_NAME_BYTES: usize = 256;
/// Maximum description length in UTF-8 bytes, besides [`MAX_DESCRIPTION_CHARS`].
pub const MAX_DESCRIPTION_BYTES: usize = 2048;

/// Bidirectional embedding, override and isolate controls (U+202A..U+202E, U+2066..U+2069):
/// they reorder how the text around them is displayed ("Trojan source").
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Characters that display as nothing: whitespace, and Unicode's default-ignorable code points
/// (DerivedCoreProperties.txt `Default_Ignorable_Code_Point`: soft hyphen, zero-width and
/// directional marks, Hangul fillers, variation selectors, tag characters, ...).
fn is_invisible(c: char) -> bool {
    c.is_whitespace()
        || matches!(c,
            '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
            | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}' | '\u{2800}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}' | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

/// Line and paragraph separators (U+2028, U+2029): line breaks that are not control characters.
fn is_line_separator(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}')
}

/// A display name (of a channel, a device) as stored: Unicode NFC, 1..=[`MAX_NAME_CHARS`]
/// characters and at most [`MAX_NAME_BYTES`] bytes, no control characters (CR, LF, NUL,
/// ...), no bidi override or isolate characters, not blank once whitespace and zero-width
/// characters are removed.
///
/// # Errors
/// [`ValidationError`] on `field`.
pub fn normalize_name(field: &str, raw: &str) -> Result<String, ValidationError> {
    use unicode_normalization::UnicodeNormalization;
    let name: String = raw.nfc().collect();
    let rule = "must be 1..=128 characters (at most 256 bytes), not blank, without control, line separator or bidi override characters";
    if name.chars().any(|c| c.is_control() || is_bidi_control(c) || is_line_separator(c))
        || name.chars().all(is_invisible)
        || name.chars().count() > MAX_NAME_CHARS
        || name.len() > MAX_NAME_BYTES
    {
        return Err(ValidationError::new(field, rule));
    }
    Ok(name)
}

/// A description as stored: Unicode NFC, at most [`MAX_DESCRIPTION_CHARS`] characters and
/// [`MAX_DESCRIPTION_BYTES`] bytes, no control characters but tab and line breaks (LF, CR),
/// no bidi override or isolate characters. May be empty.
///
/// # Errors
/// [`ValidationError`] on `description`.
pub fn normalize_description(raw: &str) -> Result<String, ValidationError> {
    use unicode_normalization::UnicodeNormalization;
    let text: String = raw.nfc().collect();
    let bad = |c: char| (c.is_control() && !matches!(c, '\t' | '\n' | '\r')) || is_bidi_control(c);
    if text.chars().any(bad)
        || text.chars().count() > MAX_DESCRIPTION_CHARS
        || text.len() > MAX_DESCRIPTION_BYTES
    {
        return Err(ValidationError::new(
            "description",
            "must be at most 1024 characters (2048 bytes), without control characters other than tab and line breaks, nor bidi override characters",
        ));
    }
    Ok(text)
}

/// For the optional fields of a merge patch: a field that is absent stays `None`, `null` is
/// refused ("must not be null") rather than read as absent, so `{"name": null}` is a 400
/// naming the field instead of a silent no-op.
pub(crate) mod non_null {
    use serde::{Deserialize, Deserializer};

    /// `Some(value)`; `null` is an error.
    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        match Option::<T>::deserialize(d)? {
            Some(v) => Ok(Some(v)),
            None => {
                Err(serde::de::Error::custom("must not be null (omit the field to keep its value)"))
            }
        }
    }

    /// As [`deserialize`], for an RFC 3339 instant.
    pub mod rfc3339 {
        use serde::Deserializer;
        use time::OffsetDateTime;

        /// `Some(instant)`; `null` is an error.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<OffsetDateTime>, D::Error> {
            match time::serde::rfc3339::option::deserialize(d)? {
                Some(v) => Ok(Some(v)),
                None => Err(serde::de::Error::custom(
                    "must not be null (omit the field to keep its value)",
                )),
            }
        }
    }
}
/// Lifetime of a channel created without `expires_at`: 30 days.
pub const DEFAULT_CHANNEL_LIFETIME: Duration = Duration::days(30);

/// Object key of a channel's live HLS playlist: `live/<channel-id>/index.m3u8`, below
/// `signed/` for a [`Playback::Signed`] channel ([`crate::playback::channel_prefix`]).
pub fn live_playlist_key(channel_id: &str, playback: Playback) -> String {
    format!("{}/index.m3u8", crate::playback::channel_prefix(channel_id, playback))
}

/// Key prefix of a device's live output: `devices/<device-id>/live` (the sliding playlist is
/// `<prefix>/index.m3u8`), below `signed/` for a [`Playback::Signed`] device.
pub fn device_live_prefix(device_id: &str, playback: Playback) -> String {
    format!("{}/live", crate::playback::device_prefix(device_id, playback))
}

/// Key prefix of a device's archive for the UTC hour starting at `hour`:
/// `devices/<device-id>/<yyyy>/<mm>/<dd>/<hh>` (one EVENT playlist per hour and session under
/// it; below `signed/` for a [`Playback::Signed`] device), the layout a lifecycle rule moves
/// to the archive storage class by the `devices/` prefix.
pub fn device_archive_prefix(
    device_id: &str,
    playback: Playback,
    hour: time::OffsetDateTime,
) -> String {
    let hour = hour.to_offset(time::UtcOffset::UTC);
    format!(
        "{}/{:04}/{:02}/{:02}/{:02}",
        crate::playback::device_prefix(device_id, playback),
        hour.year(),
        u8::from(hour.month()),
        hour.day(),
        hour.hour()
    )
}

/// Whether `id` can be a channel id: 1..=64 ASCII letters, digits, `-` or `_`. Ids are
/// generated as 32 hex characters; anything else is rejected before it reaches DynamoDB
/// (whose keys are limited to 2048 bytes).
pub fn is_valid_channel_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Why `playback` cannot change: the media of each kind is stored under its own prefix.
pub const PLAYBACK_IS_FIXED: &str = "is fixed when the resource is created (public and signed media are stored under different prefixes); create a new one to change it";

/// A request field that breaks a rule. `field` is the JSON path, e.g. `hls.segment_duration`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// JSON path of the offending field.
    pub field: String,
    /// Human-readable rule that was broken.
    pub message: String,
}

impl ValidationError {
    /// The error for `field` (its JSON path) breaking the rule `message`.
    pub fn new(field: &str, message: impl Into<String>) -> Self {
        Self { field: field.to_owned(), message: message.into() }
    }
}

/// Whether a publisher is currently pushing into the channel.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelState {
    /// No publisher.
    Idle,
    /// A publisher is connected and HLS segments are being written.
    Live,
}

impl ChannelState {
    /// The wire/storage name: `idle` or `live`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Live => "live",
        }
    }

    /// Parses [`ChannelState::as_str`]'s output.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "idle" => Some(Self::Idle),
            "live" => Some(Self::Live),
            _ => None,
        }
    }
}

/// HLS output settings of a channel.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"segment_duration": 4, "playlist_window": 6})))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HlsSettings {
    /// Target segment duration in seconds, 1..=10. Segments are cut on IDR frames, so the
    /// publisher's GOP should divide it.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10))]
    pub segment_duration: u32,
    /// Number of segments kept in the sliding live playlist, 3..=20.
    #[cfg_attr(feature = "openapi", schema(minimum = 3, maximum = 20))]
    pub playlist_window: u32,
}

impl Default for HlsSettings {
    fn default() -> Self {
        Self { segment_duration: 4, playlist_window: 6 }
    }
}

impl HlsSettings {
    /// Checks both ranges.
    ///
    /// # Errors
    /// [`ValidationError`] naming `hls.segment_duration` or `hls.playlist_window`.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if !SEGMENT_DURATION_RANGE.contains(&self.segment_duration) {
            return Err(ValidationError::new(
                "hls.segment_duration",
                format!("must be 1..=10 seconds, got {}", self.segment_duration),
            ));
        }
        if !PLAYLIST_WINDOW_RANGE.contains(&self.playlist_window) {
            return Err(ValidationError::new(
                "hls.playlist_window",
                format!("must be 3..=20 segments, got {}", self.playlist_window),
            ));
        }
        Ok(())
    }
}

/// The per-channel signing key: 32 random bytes (256 bits), stored hex-encoded.
///
/// Its `Debug` output is redacted and it never serializes, so it cannot leak into a response
/// or a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub [u8; 32]);

impl Secret {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Lower-case hex encoding (64 characters), as stored in DynamoDB.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses [`Secret::to_hex`]'s output; `None` unless exactly 64 hex characters.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).ok()?;
        Some(Self(bytes))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A channel as stored and as returned by the API (without its secret).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "id": "0f8fad5bd9cb469fa16570867728950e", "name": "lobby cam", "description": "",
    "hls": {"segment_duration": 4, "playlist_window": 6}, "recording": false,
    "playback": "public", "relays": [], "expires_at": "2026-12-24T08:00:00Z", "state": "idle",
    "created_at": "2026-11-24T08:00:00Z", "updated_at": "2026-11-24T08:00:00Z", "version": 1
})))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Channel {
    /// Server-generated id: 32 lower-case hex characters.
    pub id: String,
    /// Display name, 1..=128 characters.
    pub name: String,
    /// Free text, up to 1024 characters.
    pub description: String,
    /// HLS output settings.
    pub hls: HlsSettings,
    /// Whether the live output is also kept as a recording.
    pub recording: bool,
    /// `public` or `signed`: whether players need CloudFront signed cookies or URLs. Fixed at
    /// creation: it decides where the media is stored ([`crate::playback`]).
    pub playback: Playback,
    /// Relay destinations (at most 8, [`crate::relay::MAX_RELAYS`]): the streamer holding the
    /// publish lease pushes the stream to each enabled one. Serialized with the URLs masked
    /// and each destination's status.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::relay::RelayView>))]
    pub relays: Vec<Relay>,
    /// After this instant publishes are refused (RFC 3339 on the wire).
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// `idle` or `live`: `live` while a publish holds an unexpired lease (see
    /// [`crate::lease`]); a channel whose publisher died reads `idle` once its lease lapsed.
    pub state: ChannelState,
    /// Creation instant (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last configuration change instant (RFC 3339): moves with `version`, not with lease
    /// writes.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Optimistic-concurrency version of the configuration: 1 on creation, +1 on every PATCH
    /// and key rotation. Publish lease writes (`state`, lease attributes) do not change it, so
    /// a publish starting or ending never makes a client's `If-Match` stale. Sent as the
    /// `ETag` and expected back in `If-Match`.
    pub version: u64,
    /// Signing key of push URLs; never serialized.
    #[serde(skip)]
    pub secret: Secret,
    /// The publish lease, present exactly when `state` is `live`; never serialized (the
    /// owner is an internal task id).
    #[serde(skip)]
    pub lease: Option<PublishLease>,
    /// The latest publish session that claimed the channel (`last_session`), kept after its
    /// lease is released: tells a recovering streamer whether a newer publish came since.
    #[serde(skip)]
    pub last_session: Option<String>,
}

impl Channel {
    /// Whether the channel no longer accepts publishes at `now`.
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        now >= self.expires_at
    }

    /// Key prefix of the channel's live output ([`crate::playback::channel_prefix`]).
    pub fn prefix(&self) -> String {
        crate::playback::channel_prefix(&self.id, self.playback)
    }
}

/// Body of `POST /channels`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "name": "lobby cam", "description": "entrance, north side",
    "hls": {"segment_duration": 4, "playlist_window": 6}, "recording": true
})))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewChannel {
    /// Display name, required.
    pub name: String,
    /// Optional free text.
    #[serde(default)]
    pub description: String,
    /// Optional HLS settings; defaults to 4 s segments, 6-segment window.
    #[serde(default)]
    pub hls: HlsSettings,
    /// Optional recording flag, default `false`.
    #[serde(default)]
    pub recording: bool,
    /// Optional `public` or `signed`; default the stack's (`PLAYBACK_DEFAULT`).
    #[serde(default)]
    pub playback: Option<Playback>,
    /// Optional relay destinations (default none).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_items = 8))]
    pub relays: Vec<RelayRequest>,
    /// Optional expiry (RFC 3339); default 30 days after creation.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

impl NewChannel {
    /// A request for a channel named `name` with `hls` settings and every other field at its
    /// default (no description, no recording, the default lifetime).
    pub fn named(name: impl Into<String>, hls: HlsSettings) -> Self {
        Self {
            name: name.into(),
            description: String::new(),
            hls,
            recording: false,
            playback: None,
            relays: Vec::new(),
            expires_at: None,
        }
    }

    /// Validates the request and builds the channel to store, with a fresh id and secret;
    /// `default_playback` applies when the request has no `playback`.
    ///
    /// # Errors
    /// [`ValidationError`] naming the first invalid field.
    pub fn into_channel(
        self,
        now: OffsetDateTime,
        default_playback: Playback,
    ) -> Result<Channel, ValidationError> {
        let now = now.replace_nanosecond(0).unwrap_or(now);
        let channel = Channel {
            id: uuid::Uuid::new_v4().simple().to_string(),
            name: normalize_name("name", &self.name)?,
            description: normalize_description(&self.description)?,
            hls: self.hls,
            recording: self.recording,
            playback: self.playback.unwrap_or(default_playback),
            relays: resolve_relays(&self.relays, &[])?,
            expires_at: self.expires_at.unwrap_or(now + DEFAULT_CHANNEL_LIFETIME),
            state: ChannelState::Idle,
            created_at: now,
            updated_at: now,
            version: 1,
            secret: Secret::generate(),
            lease: None,
            last_session: None,
        };
        validate(&channel, now)?;
        Ok(channel)
    }
}

/// Partial HLS settings inside a [`ChannelPatch`].
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HlsPatch {
    /// New target segment duration in seconds.
    #[serde(default, deserialize_with = "non_null::deserialize")]
    #[cfg_attr(feature = "openapi", schema(nullable = false, minimum = 1, maximum = 10))]
    pub segment_duration: Option<u32>,
    /// New playlist window in segments.
    #[serde(default, deserialize_with = "non_null::deserialize")]
    #[cfg_attr(feature = "openapi", schema(nullable = false, minimum = 3, maximum = 20))]
    pub playlist_window: Option<u32>,
}

/// Body of `PATCH /channels/{id}` (JSON merge patch, RFC 7396, over the mutable fields).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "name": "lobby cam (north)", "hls": {"segment_duration": 2}
})))]
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelPatch {
    /// New name.
    #[serde(default, deserialize_with = "non_null::deserialize")]
    #[cfg_attr(feature = "openapi", schema(nullable = false, min_length = 1, max_length = 128))]
    pub name: Option<String>,
    /// New description.
    #[serde(default, deserialize_with = "non_null::deserialize")]
    #[cfg_attr(feature = "openapi", schema(nullable = false, max_length = 1024))]
    pub description: Option<String>,
    /// New HLS settings (either field may be omitted).
    #[serde(default, deserialize_with = "non_null::deserialize")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub hls: Option<HlsPatch>,
    /// New recording flag.
    #[serde(default, deserialize_with = "non_null::deserialize")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub recording: Option<bool>,
    /// Accepted only when equal to the channel's: playback is fixed at creation.
    #[serde(default, deserialize_with = "non_null::deserialize")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub playback: Option<Playback>,
    /// The new relay destination list (replaces the current one; an entry with an `id` and
    /// no `url` keeps that destination's URL).
    #[serde(default, deserialize_with = "non_null::deserialize")]
    #[cfg_attr(feature = "openapi", schema(nullable = false, max_items = 8))]
    pub relays: Option<Vec<RelayRequest>>,
    /// New expiry (RFC 3339).
    #[serde(default, deserialize_with = "non_null::rfc3339::deserialize")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub expires_at: Option<OffsetDateTime>,
}

impl ChannelPatch {
    /// Applies the patch to `channel`, bumping `version` and `updated_at`; a patch that
    /// changes nothing (empty, or every value equal to the current one) returns `channel`
    /// unchanged, same `version` and `updated_at`.
    ///
    /// # Errors
    /// [`ValidationError`] when the patched channel breaks a rule; `channel` is then unchanged.
    pub fn apply(
        &self,
        channel: &Channel,
        now: OffsetDateTime,
    ) -> Result<Channel, ValidationError> {
        if self.playback.is_some_and(|p| p != channel.playback) {
            return Err(ValidationError::new("playback", PLAYBACK_IS_FIXED));
        }
        let mut next = channel.clone();
        if let Some(name) = &self.name {
            next.name = normalize_name("name", name)?;
        }
        if let Some(description) = &self.description {
            next.description = normalize_description(description)?;
        }
        if let Some(hls) = &self.hls {
            next.hls.segment_duration = hls.segment_duration.unwrap_or(next.hls.segment_duration);
            next.hls.playlist_window = hls.playlist_window.unwrap_or(next.hls.playlist_window);
        }
        next.recording = self.recording.unwrap_or(next.recording);
        if let Some(relays) = &self.relays {
            next.relays = resolve_relays(relays, &channel.relays)?;
        }
        if let Some(expires_at) = self.expires_at {
            next.expires_at = expires_at;
        }
        if next == *channel {
            return Ok(next);
        }
        next.updated_at = now.replace_nanosecond(0).unwrap_or(now);
        next.version += 1;
        validate(&next, channel.created_at)?;
        Ok(next)
    }
}

fn validate(channel: &Channel, created_at: OffsetDateTime) -> Result<(), ValidationError> {
    channel.hls.validate()?;
    if channel.expires_at <= created_at {
        return Err(ValidationError::new("expires_at", "must be after the creation time"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
