//! Mapping between a [`Channel`] and its DynamoDB item (layout in [`crate::store`]).

use crate::domain::{Channel, ChannelState, HlsSettings, Secret};
use crate::lease::{from_unix_millis, millis_value, unix_millis, PublishLease};
use crate::playback::Playback;
use crate::relay_item::{relays_from_item, relays_value};
use crate::store::StoreError;
use crate::table::rfc3339;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A DynamoDB item.
pub(crate) type Item = HashMap<String, AttributeValue>;

/// A string attribute.
pub(crate) fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

/// The whole item of `c` (for `PutItem` on create): every attribute, and the lease
/// attributes when `c.lease` is set.
pub(crate) fn to_item(c: &Channel) -> Item {
    let mut item = HashMap::from([
        ("id".to_owned(), AttributeValue::S(c.id.clone())),
        ("name".to_owned(), AttributeValue::S(c.name.clone())),
        ("description".to_owned(), AttributeValue::S(c.description.clone())),
        ("segment_duration".to_owned(), AttributeValue::N(c.hls.segment_duration.to_string())),
        ("playlist_window".to_owned(), AttributeValue::N(c.hls.playlist_window.to_string())),
        ("recording".to_owned(), AttributeValue::Bool(c.recording)),
        ("playback".to_owned(), s(c.playback.as_str())),
        ("relays".to_owned(), relays_value(&c.relays)),
        ("expires_at".to_owned(), rfc3339(c.expires_at)),
        ("state".to_owned(), AttributeValue::S(c.state.as_str().to_owned())),
        ("created_at".to_owned(), rfc3339(c.created_at)),
        ("updated_at".to_owned(), rfc3339(c.updated_at)),
        ("version".to_owned(), AttributeValue::N(c.version.to_string())),
        ("secret".to_owned(), AttributeValue::S(c.secret.to_hex())),
    ]);
    if let Some(lease) = &c.lease {
        item.insert("lease_owner".to_owned(), s(&lease.owner));
        item.insert("lease_session".to_owned(), s(&lease.session));
        item.insert("lease_expires_at".to_owned(), millis_value(lease.expires_at));
    }
    item
}

/// The lease attributes of `item`, if it has a `lease_expires_at`.
pub(crate) fn lease_from_item(item: &Item) -> Result<Option<PublishLease>, StoreError> {
    let Some(expires) = item.get("lease_expires_at") else {
        return Ok(None);
    };
    let corrupt = |k: &str| StoreError::Corrupt(format!("attribute {k} missing or malformed"));
    let expires_at = expires
        .as_n()
        .ok()
        .and_then(|n| n.parse::<i128>().ok())
        .and_then(from_unix_millis)
        .ok_or_else(|| corrupt("lease_expires_at"))?;
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned().ok_or_else(|| corrupt(k));
    Ok(Some(PublishLease {
        owner: text("lease_owner")?,
        session: text("lease_session")?,
        expires_at,
    }))
}

/// The channel stored in `item`, as seen at `now`: `live` only while its lease has not
/// lapsed (`lease_expires_at >= now`, in unix ms), else `idle` without a lease.
pub(crate) fn from_item(item: &Item, now: OffsetDateTime) -> Result<Channel, StoreError> {
    let s = |k: &str| -> Result<&String, StoreError> {
        item.get(k)
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| StoreError::Corrupt(format!("attribute {k} missing or not S")))
    };
    let n = |k: &str| -> Result<u64, StoreError> {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| StoreError::Corrupt(format!("attribute {k} missing or not N")))
    };
    let t = |k: &str| -> Result<OffsetDateTime, StoreError> {
        OffsetDateTime::parse(s(k)?, &Rfc3339)
            .map_err(|e| StoreError::Corrupt(format!("attribute {k}: {e}")))
    };
    let small = |k: &str| -> Result<u32, StoreError> {
        u32::try_from(n(k)?).map_err(|_| StoreError::Corrupt(format!("attribute {k} out of range")))
    };
    let stored_state = ChannelState::parse(s("state")?)
        .ok_or_else(|| StoreError::Corrupt("attribute state".to_owned()))?;
    let lease = lease_from_item(item)?.filter(|lease| {
        stored_state == ChannelState::Live && unix_millis(lease.expires_at) >= unix_millis(now)
    });
    Ok(Channel {
        id: s("id")?.clone(),
        name: s("name")?.clone(),
        description: s("description")?.clone(),
        hls: HlsSettings {
            segment_duration: small("segment_duration")?,
            playlist_window: small("playlist_window")?,
        },
        recording: item.get("recording").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false),
        // Channels stored before playback authorization were public (media under `live/`).
        playback: match item.get("playback") {
            None => Playback::Public,
            Some(v) => v
                .as_s()
                .ok()
                .and_then(|p| Playback::parse(p))
                .ok_or_else(|| StoreError::Corrupt("attribute playback".to_owned()))?,
        },
        relays: relays_from_item(item, lease.is_some())?,
        expires_at: t("expires_at")?,
        state: if lease.is_some() { ChannelState::Live } else { ChannelState::Idle },
        created_at: t("created_at")?,
        updated_at: t("updated_at")?,
        version: n("version")?,
        secret: Secret::from_hex(s("secret")?)
            .ok_or_else(|| StoreError::Corrupt("attribute secret".to_owned()))?,
        lease,
        last_session: item.get("last_session").and_then(|v| v.as_s().ok()).cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::NewChannel;
    use time::Duration;

    fn channel(now: OffsetDateTime) -> Channel {
        NewChannel {
            name: "n".into(),
            description: "d".into(),
            hls: HlsSettings::default(),
            recording: true,
            playback: Some(Playback::Signed),
            relays: Vec::new(),
            expires_at: None,
        }
        .into_channel(now, Playback::Public)
        .unwrap()
    }

    fn live(now: OffsetDateTime, expires_at: OffsetDateTime) -> Channel {
        let mut c = channel(now);
        c.state = ChannelState::Live;
        c.lease = Some(PublishLease {
            owner: "task-1".into(),
            session: "s1".into(),
            expires_at: from_unix_millis(unix_millis(expires_at)).unwrap(),
        });
        c
    }

    #[test]
    fn idle_item_round_trip() {
        let now = OffsetDateTime::now_utc();
        let c = channel(now);
        let item = to_item(&c);
        assert!(!item.contains_key("lease_expires_at"));
        assert_eq!(from_item(&item, now).unwrap(), c);
        assert_eq!(c.playback, Playback::Signed);
        // Stored before playback authorization: public; an unknown value is corrupt.
        let mut old = item.clone();
        old.remove("playback");
        assert_eq!(from_item(&old, now).unwrap().playback, Playback::Public);
        old.insert("playback".into(), s("private"));
        assert!(matches!(from_item(&old, now), Err(StoreError::Corrupt(_))));
    }

    #[test]
    fn live_item_with_unexpired_lease_reads_live() {
        let now = OffsetDateTime::now_utc();
        let c = live(now, now + Duration::seconds(30));
        let item = to_item(&c);
        assert_eq!(item["state"], s("live"));
        assert_eq!(from_item(&item, now).unwrap(), c);
        // The last millisecond of the lease still counts as held (a claim needs `<`).
        let last = c.lease.as_ref().unwrap().expires_at;
        assert_eq!(from_item(&item, last).unwrap().state, ChannelState::Live);
    }

    #[test]
    fn lapsed_or_missing_lease_reads_idle() {
        let now = OffsetDateTime::now_utc();
        let c = live(now, now + Duration::seconds(30));
        let later = c.lease.as_ref().unwrap().expires_at + Duration::milliseconds(1);
        let read = from_item(&to_item(&c), later).unwrap();
        assert_eq!((read.state, read.lease), (ChannelState::Idle, None));

        let mut item = to_item(&c);
        item.remove("lease_expires_at");
        let read = from_item(&item, now).unwrap();
        assert_eq!((read.state, read.lease), (ChannelState::Idle, None));
    }

    #[test]
    fn relays_round_trip_and_statuses_show_only_while_live() {
        use crate::relay::{resolve_relays, RelayRequest, RelayState, RelayStatus};
        use crate::relay_item::status_value;
        let now = OffsetDateTime::now_utc();
        let mut c = live(now, now + Duration::seconds(30));
        let request = RelayRequest {
            url: Some("rtmp://h/app/key".into()),
            enabled: Some(false),
            ..Default::default()
        };
        c.relays = resolve_relays(&[request], &[]).unwrap();
        let mut item = to_item(&c);
        assert_eq!(from_item(&item, now).unwrap(), c);
        let status =
            RelayStatus { state: RelayState::Retrying, bytes_sent: 9, ..Default::default() };
        let id = c.relays[0].id.clone();
        item.insert("relay_status".into(), status_value(&[(id, status)], now));
        let read = from_item(&item, now).unwrap();
        assert_eq!(read.relays[0].status.state, RelayState::Retrying);
        assert_eq!(read.relays[0].status.bytes_sent, 9);
        assert_eq!(read.relays[0].url.expose(), "rtmp://h/app/key");
        // Once the lease lapsed, a left-over status is not shown.
        let later = c.lease.as_ref().unwrap().expires_at + Duration::seconds(1);
        assert_eq!(from_item(&item, later).unwrap().relays[0].status, RelayStatus::default());
        // Stored before relays: none.
        item.remove("relays");
        assert!(from_item(&item, now).unwrap().relays.is_empty());
        item.insert("relays".into(), s("rtmp://h/app/key"));
        assert!(matches!(from_item(&item, now), Err(StoreError::Corrupt(_))));
        // A URL stored under older rules stays readable.
        let old = HashMap::from([
            ("id".to_owned(), s("aaaaaaaaaaaa")),
            ("url".to_owned(), s("rtmp://h/k")),
        ]);
        item.insert("relays".into(), AttributeValue::L(vec![AttributeValue::M(old)]));
        assert_eq!(from_item(&item, now).unwrap().relays[0].url.expose(), "rtmp://h/k");
    }

    #[test]
    fn malformed_lease_is_corrupt() {
        let now = OffsetDateTime::now_utc();
        let mut item = to_item(&live(now, now + Duration::seconds(30)));
        item.insert("lease_expires_at".into(), s("soon"));
        assert!(matches!(from_item(&item, now), Err(StoreError::Corrupt(_))));
        let mut item = to_item(&live(now, now + Duration::seconds(30)));
        item.remove("lease_session");
        assert!(matches!(from_item(&item, now), Err(StoreError::Corrupt(_))));
    }
}
