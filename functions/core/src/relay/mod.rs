//! Relay destinations of a channel: where the streamer holding the channel's publish lease
//! pushes the incoming stream, unchanged (restreaming to YouTube, Twitch, a CDN's RTMP entry
//! point, another region), and the status it reports for each.
//!
//! A destination URL carries a secret: the stream key (the last path segment of an RTMP URL,
//! `rtmp://a.rtmp.youtube.com/live2/<key>`), or an SRT `streamid`/`passphrase`. It is stored
//! in the channel item like the channel's own secret and leaves the table only towards the
//! streamer: responses, errors and log lines carry [`mask_url`]'s form, and [`RelayUrl`]'s
//! `Debug` is masked.
//!
//! Schemes: `rtmp://host[:port]/app/key` (port 1935), `rtmps://` (RTMP over TLS, port 443),
//! `srt://host:port?streamid=…&passphrase=…` (MPEG-TS over SRT, caller mode).

pub mod url;

pub use url::{mask_url, Endpoint, InvalidRelayUrl, MASK};

use crate::domain::ValidationError;
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use time::OffsetDateTime;

/// Most destinations per channel: each costs the publishing task a connection and a queue.
pub const MAX_RELAYS: usize = 8;

/// Longest destination URL, bytes.
pub const MAX_RELAY_URL_BYTES: usize = 2048;

/// Schemes a destination may use.
pub const RELAY_SCHEMES: [&str; 3] = ["rtmp", "rtmps", "srt"];

/// A destination URL, validated; `Debug` and `Display` show [`mask_url`]'s form, the URL
/// itself only through [`RelayUrl::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct RelayUrl(String);

impl fmt::Debug for RelayUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RelayUrl({})", self.masked())
    }
}

impl fmt::Display for RelayUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl RelayUrl {
    /// Validates a destination URL: at most [`MAX_RELAY_URL_BYTES`], no whitespace or
    /// control characters, and what the streamer can dial ([`url::parse`]): a scheme of
    /// [`RELAY_SCHEMES`], a host; RTMP(S) an application and a stream key (`/app/key`, the
    /// application may have several segments), SRT a port.
    ///
    /// # Errors
    /// A message that holds the URL only masked (it holds the key).
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.len() > MAX_RELAY_URL_BYTES {
            return Err(format!("must be at most {MAX_RELAY_URL_BYTES} bytes"));
        }
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must not contain whitespace or control characters".to_owned());
        }
        if raw.contains(MASK) {
            return Err(format!(
                "holds {MASK}, the mask of a secret: send the destination's `id` alone to keep \
                 its URL"
            ));
        }
        if raw.split('?').next().is_some_and(|before_query| before_query.contains('@')) {
            return Err("must not carry user:password (the key goes in the path or query)".into());
        }
        url::parse(raw).map_err(|e| e.0)?;
        Ok(Self(raw.to_owned()))
    }

    /// A URL read back from the table, not validated again: one stored under older rules
    /// stays readable (the streamer reports an unusable one as that destination's error).
    pub fn from_stored(raw: String) -> Self {
        Self(raw)
    }

    /// The URL with its secrets: only for connecting to the destination.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// [`mask_url`] of the URL.
    pub fn masked(&self) -> String {
        mask_url(&self.0)
    }
}

/// Where a destination stands, as the publishing streamer last reported it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RelayState {
    /// Not being relayed: the channel has no publish, or the destination is disabled.
    #[default]
    Idle,
    /// Connecting (TCP/TLS, RTMP handshake, `connect`, `publish`; or the SRT handshake).
    Connecting,
    /// The destination accepted the publish and receives the stream.
    Live,
    /// The last attempt failed (`last_error`); the next one follows after a capped backoff.
    Retrying,
}

impl RelayState {
    /// The wire name: `idle`, `connecting`, `live`, `retrying`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Connecting => "connecting",
            Self::Live => "live",
            Self::Retrying => "retrying",
        }
    }

    /// The state named `s` ([`RelayState::as_str`]).
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Idle, Self::Connecting, Self::Live, Self::Retrying]
            .into_iter()
            .find(|state| state.as_str() == s)
    }
}

/// One destination's status, written by the streamer that holds the publish lease (at most
/// every few seconds, and on each state change) and shown in `GET /channels/{id}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RelayStatus {
    /// Where the destination stands.
    pub state: RelayState,
    /// The last error (masked: it never holds the stream key), kept while `retrying` and
    /// after a recovery until the publish ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub last_error: Option<String>,
    /// Bytes written to the destination during this publish (RTMP chunks or SRT payload).
    pub bytes_sent: u64,
    /// Groups of pictures dropped because the destination could not keep up while live (its
    /// queue was full). Until it is live only the latest GOP is kept, and sent first once
    /// it is (sequence headers first); older ones are not counted.
    pub dropped_gops: u64,
    /// Connection attempts after the first, during this publish.
    pub reconnects: u32,
    /// When the streamer wrote this status (RFC 3339); absent while `idle`.
    #[serde(skip_serializing_if = "Option::is_none", with = "time::serde::rfc3339::option")]
    pub updated_at: Option<OffsetDateTime>,
}

/// A channel's relay destination as stored. Serializes (API responses) with the URL masked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relay {
    /// Server-assigned id, 12 lower-case hex characters: names the destination in a `PATCH`
    /// (to keep its URL without sending the key again) and in its status.
    pub id: String,
    /// The destination.
    pub url: RelayUrl,
    /// Whether the publishing streamer pushes to it.
    pub enabled: bool,
    /// The latest status while the channel is live; [`RelayStatus::default`] (`idle`)
    /// otherwise.
    pub status: RelayStatus,
}

/// A relay destination in a response.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "id": "3f2a9c0d1b7e", "url": "rtmp://a.rtmp.youtube.com/live2/****", "enabled": true,
    "status": {"state": "live", "bytes_sent": 1843200, "dropped_gops": 0, "reconnects": 0,
               "updated_at": "2026-11-24T08:00:05Z"}
})))]
#[derive(Debug, Clone, Serialize)]
pub struct RelayView {
    /// The destination's id.
    pub id: String,
    /// The URL with the stream key and every query value masked ([`mask_url`]).
    pub url: String,
    /// Whether it is pushed to.
    pub enabled: bool,
    /// Its status.
    pub status: RelayStatus,
}

impl Serialize for Relay {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        RelayView {
            id: self.id.clone(),
            url: self.url.masked(),
            enabled: self.enabled,
            status: self.status.clone(),
        }
        .serialize(serializer)
    }
}

/// One destination in a request (`relays` of `POST /channels` and `PATCH /channels/{id}`,
/// which replace the whole list).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "url": "rtmp://a.rtmp.youtube.com/live2/xxxx-xxxx-xxxx-xxxx", "enabled": true
})))]
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayRequest {
    /// An existing destination's id: keeps its URL (and id) when `url` is absent, so a
    /// client can toggle `enabled` without the stream key it was only ever shown masked.
    #[serde(default, deserialize_with = "crate::domain::non_null::deserialize")]
    #[cfg_attr(feature = "openapi", schema(nullable = false, pattern = "^[0-9a-f]{12}$"))]
    pub id: Option<String>,
    /// The destination URL (`rtmp://`, `rtmps://`, `srt://`), with its stream key; required
    /// for a new destination.
    #[serde(default, deserialize_with = "crate::domain::non_null::deserialize")]
    #[cfg_attr(feature = "openapi", schema(nullable = false, min_length = 1, max_length = 2048))]
    pub url: Option<String>,
    /// Whether to push to it; default: the destination's current value for an entry with an
    /// `id`, `true` for a new one.
    #[serde(default, deserialize_with = "crate::domain::non_null::deserialize")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub enabled: Option<bool>,
}

impl fmt::Debug for RelayRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayRequest")
            .field("id", &self.id)
            .field("url", &self.url.as_deref().map(mask_url))
            .field("enabled", &self.enabled)
            .finish()
    }
}

/// Builds the destination list a request asks for, over the `current` one: an entry with an
/// `id` refers to a current destination (its URL kept unless `url` replaces it); an entry
/// with only a `url` reuses the id of a current destination with that exact URL, or gets a
/// fresh one. Statuses are carried over by id.
///
/// # Errors
/// [`ValidationError`] naming `relays`, or `relays[i].url` / `relays[i].id`: more than
/// [`MAX_RELAYS`], an invalid URL, an unknown id, neither id nor URL, or two entries for the
/// same destination.
pub fn resolve_relays(
    requests: &[RelayRequest],
    current: &[Relay],
) -> Result<Vec<Relay>, ValidationError> {
    if requests.len() > MAX_RELAYS {
        return Err(ValidationError::new("relays", format!("at most {MAX_RELAYS} destinations")));
    }
    let mut relays: Vec<Relay> = Vec::with_capacity(requests.len());
    for (i, request) in requests.iter().enumerate() {
        let field = |name: &str| format!("relays[{i}].{name}");
        let existing = match &request.id {
            Some(id) => Some(current.iter().find(|r| &r.id == id).ok_or_else(|| {
                ValidationError::new(&field("id"), "no such destination on this channel")
            })?),
            None => None,
        };
        let url = match (&request.url, existing) {
            (Some(raw), _) => {
                RelayUrl::parse(raw).map_err(|m| ValidationError::new(&field("url"), m))?
            }
            (None, Some(relay)) => relay.url.clone(),
            (None, None) => {
                return Err(ValidationError::new(&field("url"), "required for a new destination"))
            }
        };
        let same = existing.or_else(|| current.iter().find(|r| r.url == url));
        let relay = Relay {
            id: same.map_or_else(new_relay_id, |r| r.id.clone()),
            enabled: request.enabled.or(existing.map(|r| r.enabled)).unwrap_or(true),
            status: same.filter(|r| r.url == url).map(|r| r.status.clone()).unwrap_or_default(),
            url,
        };
        if relays.iter().any(|r| r.id == relay.id || r.url == relay.url) {
            return Err(ValidationError::new(&field("url"), "the same destination twice"));
        }
        relays.push(relay);
    }
    Ok(relays)
}

/// A fresh destination id: 12 random lower-case hex characters.
fn new_relay_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

#[cfg(test)]
mod tests;
