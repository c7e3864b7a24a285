//! Devices: IP cameras behind media gateways, recorded to `devices/<id>/…` by streamer tasks
//! that the reconciler keeps matched to the online, enabled devices.
//!
//! A device is created by `PUT /devices/{id}` or by its gateway's first heartbeat; the
//! gateway reports it online every heartbeat period (a device missing from its gateway's
//! heartbeat goes `offline`). [`Device::is_online`] also requires that heartbeat to be
//! recent ([`DeviceSettings::online_window`]), so the devices of a gateway that stopped
//! reporting read `offline` without any write.

use crate::domain::{
    is_valid_channel_id, non_null, normalize_name, ValidationError, PLAYBACK_IS_FIXED,
};
use crate::media_url::{MediaUrl, MediaUrlKey};
use crate::playback::Playback;
use crate::stream_state::StreamState;
use serde::{Deserialize, Serialize, Serializer};
use time::{Duration, OffsetDateTime};

/// Default [`DeviceSettings::online_window`]: 20 minutes (a 15-minute gateway period and
/// 5 minutes of slack).
pub const DEFAULT_ONLINE_WINDOW: Duration = Duration::minutes(20);

/// Default [`DeviceSettings::age_out`]: 7 days without a heartbeat.
pub const DEFAULT_AGE_OUT: Duration = Duration::days(7);

/// Most devices one heartbeat may report.
pub const MAX_HEARTBEAT_DEVICES: usize = 5000;

/// Whether a device is seen by its gateway.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceStatus {
    /// Reported by its gateway's latest heartbeat, inside the online window.
    Online,
    /// Missing from its gateway's latest heartbeat, never reported, or the heartbeat is older
    /// than the online window.
    Offline,
}

impl DeviceStatus {
    /// `online` | `offline`, as stored and returned.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Offline => "offline",
        }
    }

    /// Parses [`DeviceStatus::as_str`]'s output.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "online" => Some(Self::Online),
            "offline" => Some(Self::Offline),
            _ => None,
        }
    }
}

/// Timing rules shared by the API and the reconciler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceSettings {
    /// A heartbeat older than this no longer counts: the device reads `offline`
    /// (`DEVICE_ONLINE_WINDOW_SECS`, default 1200 s).
    pub online_window: Duration,
    /// A device without a heartbeat (or, never reported, without a change) for this long is
    /// deleted by the reconciler (`DEVICE_AGE_OUT_SECS`, default 604800 s).
    pub age_out: Duration,
}

impl Default for DeviceSettings {
    fn default() -> Self {
        Self { online_window: DEFAULT_ONLINE_WINDOW, age_out: DEFAULT_AGE_OUT }
    }
}

impl DeviceSettings {
    /// From `DEVICE_ONLINE_WINDOW_SECS` and `DEVICE_AGE_OUT_SECS` through `get`.
    ///
    /// # Errors
    /// [`crate::config::ConfigError::Invalid`] for a value that is not a positive integer.
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, crate::config::ConfigError> {
        let secs = |name: &'static str, default: Duration| match get(name) {
            None => Ok(default),
            Some(v) => match v.parse::<u32>() {
                Ok(n) if n > 0 => Ok(Duration::seconds(n.into())),
                _ => Err(crate::config::ConfigError::Invalid {
                    name,
                    reason: format!("{v:?} is not a positive number of seconds"),
                }),
            },
        };
        Ok(Self {
            online_window: secs("DEVICE_ONLINE_WINDOW_SECS", DEFAULT_ONLINE_WINDOW)?,
            age_out: secs("DEVICE_AGE_OUT_SECS", DEFAULT_AGE_OUT)?,
        })
    }
}

/// A device as stored (layout in [`crate::device_store`]).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "id": "cam-17", "gateway_id": "gw-paris-1", "name": "loading dock",
    "media_url": "rtsp://***@10.0.4.17/stream1", "enabled": true, "playback": "public",
    "last_heartbeat": "2026-11-24T08:00:00Z", "stream": null, "task_arn": null, "restarts": 0,
    "not_before": null, "failed_at": null, "last_exit": null, "version": 2,
    "created_at": "2026-11-24T07:00:00Z", "updated_at": "2026-11-24T07:30:00Z"
})))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    /// Caller-chosen id: 1..=64 letters, digits, `-`, `_`.
    pub id: String,
    /// Id of the media gateway the camera sits behind (same rule as ids).
    pub gateway_id: String,
    /// Display name, 1..=128 characters (defaults to the id).
    pub name: String,
    /// The media URL: serialized masked (`rtsp://***@host/path`), never with credentials.
    #[serde(serialize_with = "masked")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub media_url: MediaUrl,
    /// Desired: record this device while it is online.
    pub enabled: bool,
    /// `public` or `signed`: whether players need CloudFront signed cookies or URLs. Fixed at
    /// creation: it decides where the recordings are stored ([`crate::playback`]).
    pub playback: Playback,
    /// As last reported by the gateway; see [`Device::status`] for what the API shows.
    #[serde(skip)]
    pub reported: DeviceStatus,
    /// The gateway's latest heartbeat naming this device online (RFC 3339).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_heartbeat: Option<OffsetDateTime>,
    /// What the streamer observes (`receiving` | `reconnecting`, last error, bytes in).
    #[serde(serialize_with = "stream")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::StreamStateView>))]
    pub stream: Option<StreamState>,
    /// The task slot the reconciler assigned the device to.
    #[serde(skip)]
    pub slot: Option<String>,
    /// The ECS task (ARN) recording the device.
    pub task_arn: Option<String>,
    /// Restarts of the device's task after failures counted in the current crash window
    /// (set by the health handler, [`crate::device_health`]).
    pub restarts: u32,
    /// No task is started for the device before this instant (restart backoff).
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_before: Option<OffsetDateTime>,
    /// Start of the current crash window (internal).
    #[serde(skip)]
    pub restart_window_start: Option<OffsetDateTime>,
    /// When a crash loop marked the device failed: no task is started until a configuration
    /// change (`PUT`/`PATCH`) clears it.
    #[serde(with = "time::serde::rfc3339::option")]
    pub failed_at: Option<OffsetDateTime>,
    /// How its latest task ended without the reconciler stopping it.
    pub last_exit: Option<crate::device_health::TaskExit>,
    /// The crash-loop alarm of `failed_at` is not published yet (internal).
    #[serde(skip)]
    pub alarm_pending: bool,
    /// Configuration version: +1 on every PUT/PATCH and every URL change a heartbeat brings.
    /// Sent as the `ETag`.
    pub version: u64,
    /// Creation instant (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last configuration change (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

fn masked<S: Serializer>(url: &MediaUrl, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&url.masked())
}

fn stream<S: Serializer>(state: &Option<StreamState>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let Some(state) = state else { return s.serialize_none() };
    let mut map = s.serialize_map(Some(4))?;
    map.serialize_entry("status", state.status.as_str())?;
    map.serialize_entry("last_error", &state.last_error)?;
    map.serialize_entry("bytes_in", &state.bytes_in)?;
    let at = state.updated_at.format(&time::format_description::well_known::Rfc3339).ok();
    map.serialize_entry("updated_at", &at)?;
    map.end()
}

impl Device {
    /// `online` when the gateway reported it online and that heartbeat is inside `window`
    /// at `now`.
    pub fn status(&self, now: OffsetDateTime, window: Duration) -> DeviceStatus {
        match (self.reported, self.last_heartbeat) {
            (DeviceStatus::Online, Some(at)) if at >= now - window => DeviceStatus::Online,
            _ => DeviceStatus::Offline,
        }
    }

    /// Whether [`Device::status`] is online.
    pub fn is_online(&self, now: OffsetDateTime, window: Duration) -> bool {
        self.status(now, window) == DeviceStatus::Online
    }

    /// Whether the reconciler should have it recorded at `now`: enabled, online, not failed
    /// (crash loop), and past its restart backoff (`not_before`).
    pub fn is_desired(&self, now: OffsetDateTime, settings: &DeviceSettings) -> bool {
        self.enabled
            && self.failed_at.is_none()
            && self.is_online(now, settings.online_window)
            && self.not_before.is_none_or(|t| t <= now)
    }

    /// When it was last seen: its latest heartbeat, else its last configuration change.
    pub fn last_seen(&self) -> OffsetDateTime {
        self.last_heartbeat.unwrap_or(self.updated_at)
    }
}

/// Body of `PUT /devices/{id}`: the whole configuration.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "gateway_id": "gw-paris-1", "name": "loading dock",
    "media_url": "rtsp://user:password@10.0.4.17/stream1", "enabled": true
})))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    /// Gateway id, required.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[A-Za-z0-9_-]{1,64}$"))]
    pub gateway_id: String,
    /// Display name; default: the device id.
    #[serde(default)]
    pub name: Option<String>,
    /// `rtsp://`, `rtsps://` or `udp://` URL, credentials allowed (sealed at rest).
    pub media_url: String,
    /// Record while online; default `true`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `public` or `signed`; default the stack's (`PLAYBACK_DEFAULT`) for a new device, the
    /// current one for an existing device, which it must equal (fixed at creation).
    #[serde(default)]
    pub playback: Option<Playback>,
}

fn yes() -> bool {
    true
}

/// Body of `PATCH /devices/{id}` (JSON merge patch over the configuration).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"enabled": false})))]
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicePatch {
    /// New gateway id.
    #[serde(default, deserialize_with = "non_null::deserialize")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub gateway_id: Option<String>,
    /// New name.
    #[serde(default, deserialize_with = "non_null::deserialize")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub name: Option<String>,
    /// New media URL.
    #[serde(default, deserialize_with = "non_null::deserialize")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub media_url: Option<String>,
    /// New desired state.
    #[serde(default, deserialize_with = "non_null::deserialize")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub enabled: Option<bool>,
    /// Accepted only when equal to the device's: playback is fixed at creation.
    #[serde(default, deserialize_with = "non_null::deserialize")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub playback: Option<Playback>,
}

/// Whether `id` can be a device or gateway id (the channel id rule: 1..=64 letters, digits,
/// `-`, `_`).
pub fn is_valid_device_id(id: &str) -> bool {
    is_valid_channel_id(id)
}

fn check_gateway(gateway_id: &str) -> Result<(), ValidationError> {
    if is_valid_device_id(gateway_id) {
        Ok(())
    } else {
        Err(ValidationError {
            field: "gateway_id".into(),
            message: "must be 1..=64 letters, digits, '-' or '_'".into(),
        })
    }
}

/// The name as stored ([`normalize_name`]).
fn check_name(name: &str) -> Result<String, ValidationError> {
    normalize_name("name", name)
}

/// Seals `raw` for device `id`, as a validation error on field `media_url`.
///
/// # Errors
/// [`ValidationError`] on `media_url` (never echoing the URL).
pub fn seal_media_url(
    raw: &str,
    id: &str,
    key: Option<&MediaUrlKey>,
) -> Result<MediaUrl, ValidationError> {
    MediaUrl::seal(raw, id, key)
        .map_err(|e| ValidationError { field: "media_url".into(), message: e.to_string() })
}

impl DeviceSpec {
    /// The device `id` configured by this body: a new device (version 1, offline, playback
    /// `default_playback` unless the body says), or `current` with its configuration replaced
    /// (version + 1; observed state kept).
    ///
    /// # Errors
    /// [`ValidationError`] naming the first invalid field, `playback` when it differs from
    /// `current`'s.
    pub fn apply(
        self,
        id: &str,
        current: Option<&Device>,
        key: Option<&MediaUrlKey>,
        now: OffsetDateTime,
        default_playback: Playback,
    ) -> Result<Device, ValidationError> {
        let now = now.replace_nanosecond(0).unwrap_or(now);
        if let (Some(current), Some(wanted)) = (current, self.playback) {
            if wanted != current.playback {
                return Err(ValidationError::new("playback", PLAYBACK_IS_FIXED));
            }
        }
        check_gateway(&self.gateway_id)?;
        let name = check_name(&self.name.unwrap_or_else(|| id.to_owned()))?;
        let media_url = seal_media_url(&self.media_url, id, key)?;
        let mut device = match current {
            Some(current) => {
                let mut d = current.clone();
                d.version += 1;
                d
            }
            None => {
                let playback = self.playback.unwrap_or(default_playback);
                Device::new(id, &self.gateway_id, media_url.clone(), playback, now)
            }
        };
        device.gateway_id = self.gateway_id;
        device.name = name;
        device.media_url = media_url;
        device.enabled = self.enabled;
        device.updated_at = now;
        Ok(device)
    }
}

impl DevicePatch {
    /// `current` with the patch applied, version + 1; a patch that changes nothing (empty,
    /// or every value equal to the current one) returns `current` unchanged (same version),
    /// unless the device has restart state to clear (failed, backing off, restarts counted):
    /// then any PATCH, `{}` included, is its retry and a new version.
    ///
    /// # Errors
    /// [`ValidationError`] naming the first invalid field.
    pub fn apply(
        &self,
        current: &Device,
        key: Option<&MediaUrlKey>,
        now: OffsetDateTime,
    ) -> Result<Device, ValidationError> {
        if self.playback.is_some_and(|p| p != current.playback) {
            return Err(ValidationError::new("playback", PLAYBACK_IS_FIXED));
        }
        let mut d = current.clone();
        if let Some(gateway_id) = &self.gateway_id {
            check_gateway(gateway_id)?;
            d.gateway_id.clone_from(gateway_id);
        }
        if let Some(name) = &self.name {
            d.name = check_name(name)?;
        }
        if let Some(url) = &self.media_url {
            let sealed = seal_media_url(url, &d.id, key)?;
            // Sealing is randomised: equal digests are equal URLs, credentials included.
            if sealed.digest != d.media_url.digest {
                d.media_url = sealed;
            }
        }
        d.enabled = self.enabled.unwrap_or(d.enabled);
        // A PATCH is also the retry of a failed or backing-off device (its restart state is
        // cleared by the write): only a device without any is left as it is.
        let retry = current.failed_at.is_some()
            || current.not_before.is_some()
            || current.restarts > 0
            || current.restart_window_start.is_some();
        if d == *current && !retry {
            return Ok(d);
        }
        d.version += 1;
        d.updated_at = now.replace_nanosecond(0).unwrap_or(now);
        Ok(d)
    }
}

impl Device {
    /// A new device: enabled, offline, never heard of, version 1.
    pub fn new(
        id: &str,
        gateway_id: &str,
        media_url: MediaUrl,
        playback: Playback,
        now: OffsetDateTime,
    ) -> Self {
        let now = now.replace_nanosecond(0).unwrap_or(now);
        Self {
            id: id.to_owned(),
            gateway_id: gateway_id.to_owned(),
            name: id.to_owned(),
            media_url,
            enabled: true,
            playback,
            reported: DeviceStatus::Offline,
            last_heartbeat: None,
            stream: None,
            slot: None,
            task_arn: None,
            restarts: 0,
            not_before: None,
            restart_window_start: None,
            failed_at: None,
            last_exit: None,
            alarm_pending: false,
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(now: OffsetDateTime) -> Device {
        let url = MediaUrl::seal("rtsp://cam/s", "d1", None).unwrap();
        Device::new("d1", "gw1", url, Playback::Public, now)
    }

    #[test]
    fn online_needs_a_recent_report() {
        let now = OffsetDateTime::now_utc();
        let s = DeviceSettings::default();
        let mut d = device(now);
        assert_eq!(d.status(now, s.online_window), DeviceStatus::Offline);
        d.reported = DeviceStatus::Online;
        d.last_heartbeat = Some(now - Duration::minutes(5));
        assert!(d.is_desired(now, &s));
        assert!(!d.is_online(now + Duration::minutes(16), s.online_window));
        d.not_before = Some(now + Duration::seconds(10));
        assert!(!d.is_desired(now, &s));
        d.not_before = None;
        d.failed_at = Some(now);
        assert!(!d.is_desired(now, &s));
        d.failed_at = None;
        d.enabled = false;
        assert!(!d.is_desired(now, &s));
    }

    #[test]
    fn spec_and_patch_validate_and_bump_version() {
        let now = OffsetDateTime::now_utc();
        let spec = |url: &str| DeviceSpec {
            gateway_id: "gw1".into(),
            name: None,
            media_url: url.into(),
            enabled: true,
            playback: None,
        };
        let d = spec("rtsp://cam/s").apply("d1", None, None, now, Playback::Signed).unwrap();
        assert_eq!((d.name.as_str(), d.version), ("d1", 1));
        let e = spec("http://cam/s").apply("d1", None, None, now, Playback::Signed).unwrap_err();
        assert_eq!(e.field, "media_url");
        // A new device takes the default; an existing one keeps its playback, which a body
        // may repeat but not change.
        assert_eq!(d.playback, Playback::Signed);
        let again =
            spec("rtsp://cam/t").apply("d1", Some(&d), None, now, Playback::Public).unwrap();
        assert_eq!((again.version, again.playback), (2, Playback::Signed));
        let mut to_public = spec("rtsp://cam/t");
        to_public.playback = Some(Playback::Public);
        let e = to_public.apply("d1", Some(&d), None, now, Playback::Public).unwrap_err();
        assert_eq!(e.field, "playback");
        let p = DevicePatch { playback: Some(Playback::Public), ..Default::default() };
        assert_eq!(p.apply(&d, None, now).unwrap_err().field, "playback");
        let p = DevicePatch { playback: Some(Playback::Signed), ..Default::default() };
        assert!(p.apply(&d, None, now).is_ok());
        let p = DevicePatch { name: Some("\u{7}".into()), ..Default::default() };
        assert_eq!(p.apply(&d, None, now).unwrap_err().field, "name");
        let p = DevicePatch { enabled: Some(false), ..Default::default() };
        let patched = p.apply(&d, None, now).unwrap();
        assert_eq!((patched.enabled, patched.version), (false, 2));
        let json = serde_json::to_value(&patched).unwrap();
        assert_eq!(json["media_url"], "rtsp://cam/s");
        assert!(json.get("slot").is_none());
    }
}
