//! What a pulling streamer observes of its source, recorded on the target's item (a channel,
//! or a device once the device registry exists): the `stream` attribute, a map
//! `{status, last_error?, bytes_in, updated_at}`, status `receiving` | `reconnecting` | `stopped`.
//!
//! Written by `streamer pull` at most every few seconds and on every status change, with one
//! conditional `UpdateItem SET #stream = :s` (`attribute_exists(id)`): a target deleted
//! meanwhile is not re-created, and no other attribute is touched.

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;
use thiserror::Error;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Name of the item attribute holding the [`StreamState`] map.
pub const STREAM_ATTRIBUTE: &str = "stream";

/// Whether the source is flowing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStatus {
    /// Media is arriving and being segmented.
    Receiving,
    /// The source is down or refused us; the streamer retries with backoff.
    Reconnecting,
    /// The streamer stopped pulling it (the device left its task, or the task shut down);
    /// the last segments were flushed and the playlist ended.
    Stopped,
}

impl StreamStatus {
    /// `receiving` | `reconnecting`, as stored and returned by the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Receiving => "receiving",
            Self::Reconnecting => "reconnecting",
            Self::Stopped => "stopped",
        }
    }
}

/// One observation of a pulled source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamState {
    /// Receiving or reconnecting.
    pub status: StreamStatus,
    /// The last connection error, credentials removed (at most 512 characters stored).
    pub last_error: Option<String>,
    /// Bytes received from the source since the streamer started pulling it.
    pub bytes_in: u64,
    /// When this was observed.
    pub updated_at: OffsetDateTime,
}

/// A stream-state write failed.
#[derive(Debug, Error)]
pub enum StreamStateError {
    /// The target's item does not exist (deleted while being pulled).
    #[error("target not found")]
    NotFound,
    /// DynamoDB (or the network) failed.
    #[error("storage backend error: {0}")]
    Backend(String),
}

/// Where pulled-stream states are recorded.
#[async_trait]
pub trait StreamStateStore: Send + Sync {
    /// Records `state` on the item `id`.
    ///
    /// # Errors
    /// [`StreamStateError::NotFound`] when the item is gone, else a backend error.
    async fn put_stream_state(&self, id: &str, state: &StreamState)
        -> Result<(), StreamStateError>;
}

/// [`StreamStateStore`] on a DynamoDB table with partition key `id` (S): the channels table,
/// or the devices table.
#[derive(Debug, Clone)]
pub struct DynamoStreamStateStore {
    client: Client,
    table: String,
}

impl DynamoStreamStateStore {
    /// A store writing to `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }
}

/// The stored map of `state`.
pub fn to_attribute(state: &StreamState) -> AttributeValue {
    let mut map = HashMap::from([
        ("status".to_owned(), AttributeValue::S(state.status.as_str().to_owned())),
        ("bytes_in".to_owned(), AttributeValue::N(state.bytes_in.to_string())),
        (
            "updated_at".to_owned(),
            AttributeValue::S(state.updated_at.format(&Rfc3339).unwrap_or_default()),
        ),
    ]);
    if let Some(error) = &state.last_error {
        map.insert("last_error".to_owned(), AttributeValue::S(error.chars().take(512).collect()));
    }
    AttributeValue::M(map)
}

/// The [`StreamState`] stored in `value` (a map written by [`to_attribute`]); `None` when it is
/// not one.
pub fn from_attribute(value: &AttributeValue) -> Option<StreamState> {
    let map = value.as_m().ok()?;
    let text = |k: &str| map.get(k).and_then(|v| v.as_s().ok());
    let status = match text("status")?.as_str() {
        "receiving" => StreamStatus::Receiving,
        "reconnecting" => StreamStatus::Reconnecting,
        "stopped" => StreamStatus::Stopped,
        _ => return None,
    };
    Some(StreamState {
        status,
        last_error: text("last_error").cloned(),
        bytes_in: map.get("bytes_in").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok())?,
        updated_at: OffsetDateTime::parse(text("updated_at")?, &Rfc3339).ok()?,
    })
}

#[async_trait]
impl StreamStateStore for DynamoStreamStateStore {
    async fn put_stream_state(
        &self,
        id: &str,
        state: &StreamState,
    ) -> Result<(), StreamStateError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(id.to_owned()))
            .update_expression("SET #stream = :s")
            .condition_expression("attribute_exists(id)")
            .expression_attribute_names("#stream", STREAM_ATTRIBUTE)
            .expression_attribute_values(":s", to_attribute(state))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(e))
                if matches!(e.err(), UpdateItemError::ConditionalCheckFailedException(_)) =>
            {
                Err(StreamStateError::NotFound)
            }
            Err(e) => Err(StreamStateError::Backend(DisplayErrorContext(&e).to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_shape() {
        let state = StreamState {
            status: StreamStatus::Reconnecting,
            last_error: Some("x".repeat(600)),
            bytes_in: 42,
            updated_at: OffsetDateTime::UNIX_EPOCH,
        };
        let AttributeValue::M(map) = to_attribute(&state) else { panic!("not a map") };
        assert_eq!(map["status"], AttributeValue::S("reconnecting".into()));
        assert_eq!(map["bytes_in"], AttributeValue::N("42".into()));
        assert_eq!(map["updated_at"], AttributeValue::S("1970-01-01T00:00:00Z".into()));
        let AttributeValue::S(error) = &map["last_error"] else { panic!("no error") };
        assert_eq!(error.len(), 512);
        let back = from_attribute(&to_attribute(&state)).unwrap();
        assert_eq!((back.status, back.bytes_in), (StreamStatus::Reconnecting, 42));
    }
}
