//! Mapping between a [`Device`] and its DynamoDB item (layout in [`crate::device_store`]).

use crate::channel_item::{s, Item};
use crate::device::{Device, DeviceStatus};
use crate::lease::{from_unix_millis, millis_value};
use crate::media_url::MediaUrl;
use crate::playback::Playback;
use crate::store::StoreError;
use crate::stream_state::from_attribute;
use crate::table::rfc3339;
use aws_sdk_dynamodb::types::AttributeValue;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The configuration attributes of `d` (what PUT/PATCH write), `(name, value)`; credentials
/// absent when the URL has none (then REMOVEd by an update).
pub(crate) fn config_attributes(d: &Device) -> Vec<(&'static str, AttributeValue)> {
    let mut attrs = vec![
        ("gateway_id", s(&d.gateway_id)),
        ("name", s(&d.name)),
        ("media_url", s(&d.media_url.url)),
        ("url_digest", s(&d.media_url.digest)),
        ("enabled", AttributeValue::Bool(d.enabled)),
        ("version", AttributeValue::N(d.version.to_string())),
        ("updated_at", rfc3339(d.updated_at)),
    ];
    if let Some(sealed) = &d.media_url.credentials {
        attrs.push(("media_credentials", s(sealed)));
    }
    attrs
}

/// The whole item of a new device `d`.
pub(crate) fn to_item(d: &Device) -> Item {
    let mut item: Item = config_attributes(d).into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    item.insert("id".into(), s(&d.id));
    item.insert("playback".into(), s(d.playback.as_str()));
    item.insert("status".into(), s(d.reported.as_str()));
    item.insert("created_at".into(), rfc3339(d.created_at));
    item.insert("restarts".into(), AttributeValue::N(d.restarts.to_string()));
    if let Some(at) = d.last_heartbeat {
        item.insert("last_heartbeat".into(), millis_value(at));
    }
    item
}

/// The device stored in `item`.
///
/// # Errors
/// [`StoreError::Corrupt`] naming the first missing or malformed attribute.
pub(crate) fn from_item(item: &Item) -> Result<Device, StoreError> {
    let corrupt =
        |k: &str| StoreError::Corrupt(format!("device attribute {k} missing or malformed"));
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned().ok_or_else(|| corrupt(k));
    let opt_text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let number =
        |k: &str| item.get(k).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i128>().ok());
    let millis = |k: &str| number(k).and_then(from_unix_millis);
    let instant = |k: &str| OffsetDateTime::parse(&text(k)?, &Rfc3339).map_err(|_| corrupt(k));
    Ok(Device {
        id: text("id")?,
        gateway_id: text("gateway_id")?,
        name: text("name")?,
        media_url: MediaUrl {
            url: text("media_url")?,
            credentials: opt_text("media_credentials"),
            digest: text("url_digest")?,
        },
        enabled: item.get("enabled").and_then(|v| v.as_bool().ok()).copied().unwrap_or(true),
        // Devices registered before playback authorization were public.
        playback: match opt_text("playback") {
            None => Playback::Public,
            Some(p) => Playback::parse(&p).ok_or_else(|| corrupt("playback"))?,
        },
        reported: opt_text("status")
            .and_then(|v| DeviceStatus::parse(&v))
            .unwrap_or(DeviceStatus::Offline),
        last_heartbeat: millis("last_heartbeat"),
        stream: item.get(crate::stream_state::STREAM_ATTRIBUTE).and_then(from_attribute),
        slot: opt_text("slot"),
        task_arn: opt_text("task_arn"),
        restarts: number("restarts").and_then(|n| u32::try_from(n).ok()).unwrap_or(0),
        not_before: millis("not_before"),
        restart_window_start: millis("restart_window_start"),
        failed_at: millis("failed_at"),
        last_exit: crate::device_health::exit_from_item(item),
        alarm_pending: item
            .get("alarm_pending")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
        version: number("version")
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| corrupt("version"))?,
        created_at: instant("created_at")?,
        updated_at: instant("updated_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media_url::MediaUrlKey;

    #[test]
    fn round_trip() {
        let key = MediaUrlKey::from_hex(&"1".repeat(64)).unwrap();
        let url = MediaUrl::seal("rtsp://u:p@cam/s", "d1", Some(&key)).unwrap();
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let mut d = Device::new("d1", "gw", url, Playback::Signed, now);
        d.reported = DeviceStatus::Online;
        d.last_heartbeat = Some(now);
        let item = to_item(&d);
        assert!(!format!("{item:?}").contains("u:p"));
        assert_eq!(from_item(&item).unwrap(), d);
        // Registered before playback authorization: public.
        let mut old = item.clone();
        old.remove("playback");
        assert_eq!(from_item(&old).unwrap().playback, Playback::Public);
        let mut broken = item.clone();
        broken.remove("url_digest");
        assert!(matches!(from_item(&broken), Err(StoreError::Corrupt(_))));
    }
}
