//! Relay destinations and their statuses in the channel item (layout in [`crate::store`]):
//! `relays` is a list of maps `{id: S, url: S, enabled: BOOL}` (the URL whole, like the
//! channel's `secret`); `relay_status` is a map from destination id to
//! `{state: S, last_error?: S, bytes_sent: N, dropped_gops: N, reconnects: N, updated_at: S}`,
//! written by the publishing streamer and removed when its lease is claimed or released.

use crate::channel_item::{s, Item};
use crate::relay::{Relay, RelayState, RelayStatus, RelayUrl};
use crate::store::StoreError;
use crate::table::rfc3339;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// The `relays` attribute of `relays`.
pub(crate) fn relays_value(relays: &[Relay]) -> AttributeValue {
    AttributeValue::L(
        relays
            .iter()
            .map(|r| {
                AttributeValue::M(HashMap::from([
                    ("id".to_owned(), s(&r.id)),
                    ("url".to_owned(), s(r.url.expose())),
                    ("enabled".to_owned(), AttributeValue::Bool(r.enabled)),
                ]))
            })
            .collect(),
    )
}

/// The `relay_status` attribute of `statuses` (destination id, status), stamped `now`.
pub(crate) fn status_value(
    statuses: &[(String, RelayStatus)],
    now: OffsetDateTime,
) -> AttributeValue {
    AttributeValue::M(
        statuses
            .iter()
            .map(|(id, status)| {
                let mut m = HashMap::from([
                    ("state".to_owned(), s(status.state.as_str())),
                    ("bytes_sent".to_owned(), AttributeValue::N(status.bytes_sent.to_string())),
                    ("dropped_gops".to_owned(), AttributeValue::N(status.dropped_gops.to_string())),
                    ("reconnects".to_owned(), AttributeValue::N(status.reconnects.to_string())),
                    ("updated_at".to_owned(), rfc3339(now)),
                ]);
                if let Some(error) = &status.last_error {
                    m.insert("last_error".to_owned(), s(error));
                }
                (id.clone(), AttributeValue::M(m))
            })
            .collect(),
    )
}

/// The destinations stored in `item` (none when it has no `relays`, as channels stored before
/// relays), with the statuses of `relay_status` when `live` (a status outliving its publish is
/// not shown).
pub(crate) fn relays_from_item(item: &Item, live: bool) -> Result<Vec<Relay>, StoreError> {
    let corrupt = || StoreError::Corrupt("attribute relays".to_owned());
    let Some(list) = item.get("relays") else {
        return Ok(Vec::new());
    };
    let statuses = match item.get("relay_status") {
        Some(AttributeValue::M(m)) if live => Some(m),
        _ => None,
    };
    let list = list.as_l().map_err(|_| corrupt())?;
    list.iter()
        .map(|entry| {
            let m = entry.as_m().map_err(|_| corrupt())?;
            let text = |k: &str| m.get(k).and_then(|v| v.as_s().ok()).ok_or_else(corrupt);
            let id = text("id")?.clone();
            let status = statuses
                .and_then(|all| all.get(&id))
                .and_then(|v| v.as_m().ok())
                .map(status_from_map)
                .unwrap_or_default();
            Ok(Relay {
                url: RelayUrl::from_stored(text("url")?.clone()),
                enabled: m.get("enabled").and_then(|v| v.as_bool().ok()).copied().unwrap_or(true),
                id,
                status,
            })
        })
        .collect()
}

/// A status map; a malformed field reads as its default (a status is informative only).
fn status_from_map(m: &HashMap<String, AttributeValue>) -> RelayStatus {
    let text = |k: &str| m.get(k).and_then(|v| v.as_s().ok());
    let n = |k: &str| m.get(k).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<u64>().ok());
    RelayStatus {
        state: text("state").and_then(|v| RelayState::parse(v)).unwrap_or_default(),
        last_error: text("last_error").cloned(),
        bytes_sent: n("bytes_sent").unwrap_or(0),
        dropped_gops: n("dropped_gops").unwrap_or(0),
        reconnects: n("reconnects").and_then(|v| u32::try_from(v).ok()).unwrap_or(0),
        updated_at: text("updated_at").and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok()),
    }
}
