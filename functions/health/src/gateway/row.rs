//! The gateway state row as a DynamoDB item (see [`super::store`] for the layout), and the
//! table itself for local stacks and tests.

use super::model::{GatewayRecord, Lock, Phase, Recovery};
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;
use streamstack_core::store::StoreError;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

pub(super) fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

pub(super) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn millis(t: OffsetDateTime) -> AttributeValue {
    n(t.unix_timestamp_nanos() / 1_000_000)
}

pub(super) fn from_millis(ms: i128) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(ms.checked_mul(1_000_000)?).ok()
}

pub(super) fn now_text() -> AttributeValue {
    s(&OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default())
}

/// The row of `item`.
///
/// # Errors
/// [`StoreError::Corrupt`] without `gateway_id` or `instance_id`, or with an unknown phase.
pub fn from_item(item: &Item) -> Result<GatewayRecord, StoreError> {
    let corrupt =
        |k: &str| StoreError::Corrupt(format!("gateway attribute {k} missing or malformed"));
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let number =
        |k: &str| item.get(k).and_then(|v| v.as_n().ok()).and_then(|v| v.parse::<i128>().ok());
    let time = |k: &str| number(k).and_then(from_millis);
    let count = |k: &str| number(k).and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
    let phase = match text("phase").as_deref() {
        None | Some("healthy") => Phase::Healthy,
        Some("rebooted") => Phase::Rebooted {
            at: time("rebooted_at").ok_or_else(|| corrupt("rebooted_at"))?,
            // Rows written before the flag existed were marked before a successful call.
            sent: item.get("reboot_sent").and_then(|v| v.as_bool().ok()).copied().unwrap_or(true),
        },
        Some("recovering") => Phase::Recovering(Recovery {
            failed_instance: text("failed_instance").ok_or_else(|| corrupt("failed_instance"))?,
            replacement: text("replacement"),
            attempt: count("attempt"),
            reason: text("reason").unwrap_or_default(),
            started_at: time("recovery_started_at").unwrap_or(OffsetDateTime::UNIX_EPOCH),
        }),
        Some(_) => return Err(corrupt("phase")),
    };
    let lock = match (text("lock_owner"), time("lock_until")) {
        (Some(owner), Some(until)) => Some(Lock { owner, until }),
        _ => None,
    };
    Ok(GatewayRecord {
        gateway_id: text("gateway_id").ok_or_else(|| corrupt("gateway_id"))?,
        instance_id: text("instance_id").ok_or_else(|| corrupt("instance_id"))?,
        allocation_id: text("allocation_id"),
        phase,
        health_failures: count("health_failures"),
        lock,
        launch: json(item, "launch").map_err(|_| corrupt("launch"))?,
        alarm_pending: json(item, "alarm_pending").map_err(|_| corrupt("alarm_pending"))?,
    })
}

/// The JSON-encoded attribute `key` of `item`, if present.
fn json<T: serde::de::DeserializeOwned>(item: &Item, key: &str) -> Result<Option<T>, ()> {
    match item.get(key).and_then(|v| v.as_s().ok()) {
        None => Ok(None),
        Some(text) => serde_json::from_str(text).map(Some).map_err(|_| ()),
    }
}

/// `value` as a JSON string attribute.
pub(super) fn json_value(value: &impl serde::Serialize) -> AttributeValue {
    s(&serde_json::to_string(value).unwrap_or_default())
}

impl super::store::DynamoGatewayStore {
    /// Creates the table (on-demand, partition key `gateway_id` S) if missing; for local
    /// stacks and tests (in AWS it comes from `template.yaml`).
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    pub async fn create_table_if_missing(&self) -> Result<(), StoreError> {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        };
        if self.client.describe_table().table_name(&self.table).send().await.is_ok() {
            return Ok(());
        }
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Backend(e.to_string());
        self.client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("gateway_id")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(build)?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("gateway_id")
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(build)?,
            )
            .send()
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::model::SavedLaunch;

    #[test]
    fn rows_round_trip_through_items() {
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("time");
        let item = Item::from([
            ("gateway_id".to_owned(), s("gw")),
            ("instance_id".to_owned(), s("i-1")),
            ("phase".to_owned(), s("recovering")),
            ("failed_instance".to_owned(), s("i-1")),
            ("replacement".to_owned(), s("i-2")),
            ("attempt".to_owned(), n(1)),
            ("recovery_started_at".to_owned(), millis(at)),
            ("lock_owner".to_owned(), s("me")),
            ("lock_until".to_owned(), millis(at)),
        ]);
        let mut item = item;
        let launch = SavedLaunch { instance_type: Some("t3.small".into()), ..Default::default() };
        item.insert("launch".into(), json_value(&launch));
        let r = from_item(&item).expect("row");
        assert_eq!(r.launch, Some(launch));
        assert_eq!(r.alarm_pending, None);
        let rec = r.recovery().expect("recovering");
        assert_eq!((rec.replacement.as_deref(), rec.attempt, rec.started_at), (Some("i-2"), 1, at));
        assert_eq!(r.lock, Some(Lock { owner: "me".into(), until: at }));
        let mut bad = item.clone();
        bad.insert("phase".into(), s("rebooted"));
        bad.insert("rebooted_at".into(), millis(at));
        let legacy = from_item(&bad).expect("rebooted row");
        assert_eq!(legacy.phase, Phase::Rebooted { at, sent: true });
        bad.insert("reboot_sent".into(), AttributeValue::Bool(false));
        assert_eq!(from_item(&bad).expect("row").phase, Phase::Rebooted { at, sent: false });
        bad.insert("phase".into(), s("dancing"));
        assert!(matches!(from_item(&bad), Err(StoreError::Corrupt(_))));
        bad.remove("phase");
        bad.remove("instance_id");
        assert!(matches!(from_item(&bad), Err(StoreError::Corrupt(_))));
    }
}
