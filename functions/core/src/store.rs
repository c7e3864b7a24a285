//! Channel persistence: the [`ChannelStore`] trait and its DynamoDB implementation.
//!
//! Table layout (one item per channel, partition key `id` of type S):
//! `id` S, `name` S, `description` S, `segment_duration` N (seconds), `playlist_window` N,
//! `recording` BOOL, `expires_at` S (RFC 3339), `state` S (`idle`|`live`), `created_at` S,
//! `updated_at` S, `version` N, `secret` S (64 hex chars).

use crate::domain::{Channel, ChannelState, HlsSettings, Secret};
use crate::paging::{decode_cursor, encode_cursor, Page};
use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;
use thiserror::Error;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Store failures. Every variant except [`StoreError::Backend`] and [`StoreError::Corrupt`] is
/// the caller's doing and maps to a 4xx.
#[derive(Debug, Error)]
pub enum StoreError {
    /// No item with that id.
    #[error("not found")]
    NotFound,
    /// An item with that id already exists (create only).
    #[error("already exists")]
    AlreadyExists,
    /// The stored version differs from the expected one (optimistic concurrency).
    #[error("version conflict")]
    VersionConflict,
    /// A paging cursor that this store did not issue.
    #[error("invalid paging cursor")]
    InvalidCursor,
    /// DynamoDB (or the network) failed; the message carries the SDK's error context.
    #[error("storage backend error: {0}")]
    Backend(String),
    /// A stored item is missing an attribute or has the wrong type.
    #[error("corrupt item: {0}")]
    Corrupt(String),
}

impl<E: std::error::Error + 'static, R: std::fmt::Debug> From<SdkError<E, R>> for StoreError {
    fn from(e: SdkError<E, R>) -> Self {
        StoreError::Backend(DisplayErrorContext(&e).to_string())
    }
}

/// Channel persistence used by the API and the streamer.
#[async_trait]
pub trait ChannelStore: Send + Sync {
    /// Inserts a new channel.
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] if the id is taken.
    async fn create(&self, channel: &Channel) -> Result<(), StoreError>;

    /// Reads one channel (strongly consistent); `Ok(None)` when absent.
    async fn get(&self, id: &str) -> Result<Option<Channel>, StoreError>;

    /// Lists up to `limit` channels after `cursor` (a [`Page::next`] value).
    ///
    /// # Errors
    /// [`StoreError::InvalidCursor`] for a cursor this store did not issue.
    async fn list(&self, limit: u32, cursor: Option<&str>) -> Result<Page<Channel>, StoreError>;

    /// Replaces a channel if its stored version is still `expected_version`.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if absent, [`StoreError::VersionConflict`] if the version moved.
    async fn replace(&self, channel: &Channel, expected_version: u64) -> Result<(), StoreError>;

    /// Deletes a channel.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if absent.
    async fn delete(&self, id: &str) -> Result<(), StoreError>;

    /// Sets the channel's `state` with a read-modify-conditional-write loop, so a concurrent
    /// PATCH is never lost; returns the updated channel.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if absent; [`StoreError::VersionConflict`] after 8 lost races.
    async fn set_state(&self, id: &str, state: ChannelState) -> Result<Channel, StoreError> {
        for _ in 0..8 {
            let current = self.get(id).await?.ok_or(StoreError::NotFound)?;
            if current.state == state {
                return Ok(current);
            }
            let mut next = current.clone();
            next.state = state;
            next.version += 1;
            next.updated_at =
                OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or(next.updated_at);
            match self.replace(&next, current.version).await {
                Ok(()) => return Ok(next),
                Err(StoreError::VersionConflict) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::VersionConflict)
    }
}

/// [`ChannelStore`] on a DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoChannelStore {
    client: Client,
    table: String,
}

impl DynamoChannelStore {
    /// A store on `table` using `client`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// Creates the table (on-demand billing, key `id`) if it does not exist; for local stacks
    /// and tests. In AWS the table comes from `template.yaml`.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when DynamoDB refuses.
    pub async fn create_table_if_missing(&self) -> Result<(), StoreError> {
        create_table_if_missing(&self.client, &self.table).await
    }
}

/// Creates `table` (on-demand billing, partition key `id` of type S) if it does not exist; for
/// local stacks and tests. In AWS the tables come from `template.yaml`.
///
/// # Errors
/// [`StoreError::Backend`] when DynamoDB refuses.
pub async fn create_table_if_missing(client: &Client, table: &str) -> Result<(), StoreError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    if client.describe_table().table_name(table).send().await.is_ok() {
        return Ok(());
    }
    let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Backend(e.to_string());
    client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(build)?,
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
                .key_type(KeyType::Hash)
                .build()
                .map_err(build)?,
        )
        .send()
        .await?;
    Ok(())
}

/// One strongly consistent scan page of `table` (items keyed by `id`) after `cursor`.
///
/// # Errors
/// [`StoreError::InvalidCursor`] for a cursor not made by [`encode_cursor`].
pub(crate) async fn scan_page(
    client: &Client,
    table: &str,
    limit: u32,
    cursor: Option<&str>,
) -> Result<Page<HashMap<String, AttributeValue>>, StoreError> {
    let start = cursor.map(|c| decode_cursor(c).ok_or(StoreError::InvalidCursor)).transpose()?;
    let out = client
        .scan()
        .table_name(table)
        .limit(i32::try_from(limit).unwrap_or(i32::MAX))
        .set_exclusive_start_key(
            start.map(|id| HashMap::from([("id".to_owned(), AttributeValue::S(id))])),
        )
        .consistent_read(true)
        .send()
        .await?;
    let next = out
        .last_evaluated_key
        .as_ref()
        .and_then(|k| k.get("id"))
        .and_then(|v| v.as_s().ok())
        .map(|id| encode_cursor(id));
    Ok(Page { items: out.items.unwrap_or_default(), next })
}

pub(crate) fn is_conditional_failure<E, R>(e: &SdkError<E, R>) -> bool
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    e.as_service_error()
        .and_then(|s| s.code())
        .is_some_and(|c| c == "ConditionalCheckFailedException")
}

#[async_trait]
impl ChannelStore for DynamoChannelStore {
    async fn create(&self, channel: &Channel) -> Result<(), StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(channel)))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_failure(&e) => Err(StoreError::AlreadyExists),
            Err(e) => Err(e.into()),
        }
    }

    async fn get(&self, id: &str) -> Result<Option<Channel>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(id.to_owned()))
            .consistent_read(true)
            .send()
            .await?;
        out.item.map(|item| from_item(&item)).transpose()
    }

    async fn list(&self, limit: u32, cursor: Option<&str>) -> Result<Page<Channel>, StoreError> {
        let page = scan_page(&self.client, &self.table, limit, cursor).await?;
        let items = page.items.iter().map(from_item).collect::<Result<Vec<_>, _>>()?;
        Ok(Page { items, next: page.next })
    }

    async fn replace(&self, channel: &Channel, expected_version: u64) -> Result<(), StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(to_item(channel)))
            .condition_expression("#v = :expected")
            .expression_attribute_names("#v", "version")
            .expression_attribute_values(
                ":expected",
                AttributeValue::N(expected_version.to_string()),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_failure(&e) => match self.get(&channel.id).await? {
                None => Err(StoreError::NotFound),
                Some(_) => Err(StoreError::VersionConflict),
            },
            Err(e) => Err(e.into()),
        }
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(id.to_owned()))
            .condition_expression("attribute_exists(id)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_failure(&e) => Err(StoreError::NotFound),
            Err(e) => Err(e.into()),
        }
    }
}

/// `t` as an RFC 3339 string attribute.
pub(crate) fn rfc3339(t: OffsetDateTime) -> AttributeValue {
    AttributeValue::S(t.format(&Rfc3339).unwrap_or_default())
}

fn to_item(c: &Channel) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("id".to_owned(), AttributeValue::S(c.id.clone())),
        ("name".to_owned(), AttributeValue::S(c.name.clone())),
        ("description".to_owned(), AttributeValue::S(c.description.clone())),
        ("segment_duration".to_owned(), AttributeValue::N(c.hls.segment_duration.to_string())),
        ("playlist_window".to_owned(), AttributeValue::N(c.hls.playlist_window.to_string())),
        ("recording".to_owned(), AttributeValue::Bool(c.recording)),
        ("expires_at".to_owned(), rfc3339(c.expires_at)),
        ("state".to_owned(), AttributeValue::S(c.state.as_str().to_owned())),
        ("created_at".to_owned(), rfc3339(c.created_at)),
        ("updated_at".to_owned(), rfc3339(c.updated_at)),
        ("version".to_owned(), AttributeValue::N(c.version.to_string())),
        ("secret".to_owned(), AttributeValue::S(c.secret.to_hex())),
    ])
}

fn from_item(item: &HashMap<String, AttributeValue>) -> Result<Channel, StoreError> {
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
    Ok(Channel {
        id: s("id")?.clone(),
        name: s("name")?.clone(),
        description: s("description")?.clone(),
        hls: HlsSettings {
            segment_duration: small("segment_duration")?,
            playlist_window: small("playlist_window")?,
        },
        recording: item.get("recording").and_then(|v| v.as_bool().ok()).copied().unwrap_or(false),
        expires_at: t("expires_at")?,
        state: ChannelState::parse(s("state")?)
            .ok_or_else(|| StoreError::Corrupt("attribute state".to_owned()))?,
        created_at: t("created_at")?,
        updated_at: t("updated_at")?,
        version: n("version")?,
        secret: Secret::from_hex(s("secret")?)
            .ok_or_else(|| StoreError::Corrupt("attribute secret".to_owned()))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::NewChannel;

    #[test]
    fn item_round_trip() {
        let c = NewChannel {
            name: "n".into(),
            description: "d".into(),
            hls: HlsSettings::default(),
            recording: true,
            expires_at: None,
        }
        .into_channel(OffsetDateTime::now_utc())
        .unwrap();
        assert_eq!(from_item(&to_item(&c)).unwrap(), c);
    }
}
