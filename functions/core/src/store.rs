//! Channel persistence: the [`ChannelStore`] trait and its DynamoDB implementation.
//!
//! Table layout (one item per channel, partition key `id` of type S):
//! `id` S, `name` S, `description` S, `segment_duration` N (seconds), `playlist_window` N,
//! `recording` BOOL, `playback` S (`public`|`signed`; absent = public), `expires_at` S (RFC 3339), `state` S (`idle`|`live`), `created_at` S,
//! `updated_at` S, `version` N, `secret` S (64 hex chars), and while a publish holds the
//! channel `lease_owner` S, `lease_session` S, `lease_expires_at` N (unix ms; see [`crate::lease`]).
//!
//! Only [`ChannelStore::create`] writes a whole item (`PutItem`, refused if the id exists);
//! every later write is a conditional `UpdateItem SET` of the attributes it owns, so a PATCH
//! never touches the lease or the secret and a lease write never touches the configuration.

use crate::channel_item::{from_item, s, to_item, Item};
use crate::domain::{Channel, ChannelState, Secret};
use crate::lease::{
    claim_expressions, millis_value, placeholder_names, release_expressions, renew_expressions,
    LeaseClaim, PublishLease,
};
use crate::paging::Page;
use crate::relay_item::{relays_value, status_value};
use crate::table::{put_new, query_index, scan_page};
use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use thiserror::Error;
use time::OffsetDateTime;

// The table helpers lived here before `crate::table`; these keep their old paths working
// (`get_consistent` and `rfc3339` for crate-internal callers; both are also used below).
pub use crate::table::{
    create_table_if_missing, create_table_with, is_conditional_failure, IndexSpec,
};
pub(crate) use crate::table::{get_consistent, rfc3339};

/// Store failures. Every variant except [`StoreError::Backend`] and [`StoreError::Corrupt`] is
/// the caller's doing: the API maps those it can meet to a 4xx; the lease variants
/// ([`StoreError::LeaseHeld`], [`StoreError::LeaseLost`], [`StoreError::KeyRotated`]) come from
/// the streamer's claim and renew only.
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
    /// The channel's secret changed (key rotated) since the publish was authorized.
    #[error("channel key rotated since the publish was authorized")]
    KeyRotated,
    /// Another publish session holds an unexpired lease on the channel.
    #[error("channel is live with another publisher")]
    LeaseHeld,
    /// The publish lease is no longer this session's: released, or taken over after it lapsed.
    #[error("publish lease lost")]
    LeaseLost,
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

    /// Writes the configuration fields of `channel` (name, description, HLS settings,
    /// recording, relay destinations, `expires_at`, `updated_at`, `version`) if its stored version is still
    /// `expected_version`, with one conditional `UpdateItem SET`: state, lease and secret are
    /// left as stored. Returns the channel as now stored.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if absent, [`StoreError::VersionConflict`] if the version moved.
    async fn replace(
        &self,
        channel: &Channel,
        expected_version: u64,
    ) -> Result<Channel, StoreError>;

    /// Deletes a channel.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if absent.
    async fn delete(&self, id: &str) -> Result<(), StoreError>;

    /// Deletes a channel if its version is `version` (`DELETE` with `If-Match`), atomically
    /// in the DynamoDB store (the default, for test doubles, checks then deletes).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if absent, [`StoreError::VersionConflict`] if the version
    /// moved.
    async fn delete_if_version(&self, id: &str, version: u64) -> Result<(), StoreError> {
        match self.get(id).await? {
            None => Err(StoreError::NotFound),
            Some(c) if c.version != version => Err(StoreError::VersionConflict),
            Some(_) => self.delete(id).await,
        }
    }

    /// Makes `claim.session` the channel's one live publisher: `state = live` and the lease
    /// attributes, in one conditional `UpdateItem`. Succeeds when the channel is idle, its
    /// lease lapsed before `claim.now`, it has no lease, or the lease is already
    /// `claim.session`'s (a retried claim). Does not change `version`. Returns the channel as
    /// now stored.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if absent; [`StoreError::KeyRotated`] if the stored secret is
    /// not `claim.secret`; [`StoreError::LeaseHeld`] if another session's lease is unexpired.
    async fn claim_publish(&self, id: &str, claim: &LeaseClaim) -> Result<Channel, StoreError>;

    /// Extends `session`'s lease to `expires_at` (stored as unix ms). Returns the channel as
    /// now stored, for the caller to re-check (channel expiry, secret rotation). Does not
    /// change `version`.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if the channel was deleted; [`StoreError::LeaseLost`] if the
    /// lease was released or another session now holds it.
    async fn renew_publish(
        &self,
        id: &str,
        session: &str,
        expires_at: OffsetDateTime,
    ) -> Result<Channel, StoreError>;

    /// Ends `session`'s lease: `state = idle`, lease attributes removed. Idempotent: `Ok` also
    /// when the lease is no longer `session`'s or the channel is gone (then nothing is
    /// written). Does not change `version`.
    ///
    /// # Errors
    /// [`StoreError::Backend`] only.
    async fn release_publish(&self, id: &str, session: &str) -> Result<(), StoreError>;

    /// Replaces the channel's secret with a fresh [`Secret::generate`]: push URLs signed with
    /// the old one are refused from then on, and a running publish fails its next claim or
    /// re-check. Bumps `version` and `updated_at`; returns the channel as now stored.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if absent.
    async fn rotate_secret(&self, id: &str) -> Result<Channel, StoreError>;

    /// Records the relay destinations' statuses (`(destination id, status)`, stamped now)
    /// while `session` holds the publish lease: one conditional `UpdateItem`. Does not change
    /// `version`. Claiming and releasing the lease clear them.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if the channel was deleted; [`StoreError::LeaseLost`] if
    /// another session holds the lease or it was released.
    async fn set_relay_status(
        &self,
        id: &str,
        session: &str,
        statuses: &[(String, crate::relay::RelayStatus)],
    ) -> Result<(), StoreError>;
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

    /// Creates the table (on-demand billing, key `id`, the keys-only
    /// [`crate::lease::LEASE_OWNER_INDEX`]) if it does not exist; for local stacks and tests.
    /// In AWS the table comes from `template.yaml`.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when DynamoDB refuses.
    pub async fn create_table_if_missing(&self) -> Result<(), StoreError> {
        let index = IndexSpec {
            name: crate::lease::LEASE_OWNER_INDEX,
            key: "lease_owner",
            keys_only: true,
        };
        create_table_with(&self.client, &self.table, Some(index), false).await
    }

    /// The lease attributes stored on channel `id`, lapsed or not (`None`: no lease, or no
    /// channel): what [`ChannelStore::get`] hides once a lease has lapsed.
    ///
    /// # Errors
    /// [`StoreError::Backend`], [`StoreError::Corrupt`].
    pub async fn stored_lease(&self, id: &str) -> Result<Option<PublishLease>, StoreError> {
        match self.get_item(id).await? {
            Some(item) => crate::channel_item::lease_from_item(&item),
            None => Ok(None),
        }
    }

    /// Ids of the channels whose publish lease `owner` holds (a release removes the owner), from the
    /// eventually consistent [`crate::lease::LEASE_OWNER_INDEX`] (`Query`, every page, at
    /// most 1000 ids): candidates to re-read, not a verdict.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    pub async fn leased_by(&self, owner: &str) -> Result<Vec<String>, StoreError> {
        let lease = crate::lease::LEASE_OWNER_INDEX;
        let items =
            query_index(&self.client, &self.table, lease, ("lease_owner", owner), 1000).await?;
        Ok(items
            .iter()
            .filter_map(|item| item.get("id").and_then(|v| v.as_s().ok()).cloned())
            .collect())
    }

    /// The raw item of `id` (strongly consistent read).
    async fn get_item(&self, id: &str) -> Result<Option<Item>, StoreError> {
        get_consistent(&self.client, &self.table, id).await
    }

    /// One conditional `UpdateItem` on `id`; placeholders (`#name`) come from the expressions.
    /// The refused case carries the item as it was (`ReturnValuesOnConditionCheckFailure =
    /// ALL_OLD`, or a consistent read when the service returned none): `None` when absent.
    async fn update(
        &self,
        id: &str,
        expressions: (&str, &str),
        values: Item,
    ) -> Result<Updated, StoreError> {
        self.update_returning(id, expressions, values, ReturnValue::AllNew).await
    }

    /// [`Self::update`] returning `returns` of the written item.
    async fn update_returning(
        &self,
        id: &str,
        (condition, update): (&str, &str),
        values: Item,
        returns: ReturnValue,
    ) -> Result<Updated, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", AttributeValue::S(id.to_owned()))
            .condition_expression(condition)
            .update_expression(update)
            .set_expression_attribute_names(Some(placeholder_names(&[condition, update])))
            .set_expression_attribute_values(Some(values))
            .return_values(returns)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => Ok(Updated::Written(out.attributes.unwrap_or_default())),
            Err(e) => {
                let old = match e.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(refused)) => {
                        refused.item.clone()
                    }
                    _ => return Err(e.into()),
                };
                match old {
                    Some(item) => Ok(Updated::Refused(Some(item))),
                    None => Ok(Updated::Refused(self.get_item(id).await?)),
                }
            }
        }
    }
}

/// Outcome of [`DynamoChannelStore::update`].
enum Updated {
    /// The condition held: the item as now stored (`ALL_NEW`).
    Written(Item),
    /// The condition failed: the item as it was, `None` when absent.
    Refused(Option<Item>),
}

/// `(condition, update)` of [`ChannelStore::replace`]: the configuration fields only, never
/// `state`, the lease attributes or `secret`.
pub fn replace_expressions() -> (&'static str, &'static str) {
    (
        "#version = :expected",
        "SET #name = :name, #description = :description, \
         #segment_duration = :segment_duration, #playlist_window = :playlist_window, \
         #recording = :recording, #relays = :relays, #expires_at = :expires_at, \
         #updated_at = :updated_at, #version = :version",
    )
}

/// `(condition, update)` of [`ChannelStore::set_relay_status`]. Values: `:session` (S),
/// `:status` (M).
pub fn relay_status_expressions() -> (&'static str, &'static str) {
    ("#lease_session = :session", "SET #relay_status = :status")
}

/// `(condition, update)` of [`ChannelStore::rotate_secret`].
pub fn rotate_expressions() -> (&'static str, &'static str) {
    (
        "attribute_exists(#id)",
        "SET #secret = :secret, #version = #version + :one, #updated_at = :updated_at",
    )
}

/// `ExpressionAttributeValues` from `(":placeholder", value)` pairs.
fn values<const N: usize>(pairs: [(&str, AttributeValue); N]) -> Item {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Now, to the second (the precision of stored RFC 3339 timestamps).
fn now_seconds() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

#[async_trait]
impl ChannelStore for DynamoChannelStore {
    async fn create(&self, channel: &Channel) -> Result<(), StoreError> {
        put_new(&self.client, &self.table, to_item(channel)).await
    }

    async fn get(&self, id: &str) -> Result<Option<Channel>, StoreError> {
        let now = OffsetDateTime::now_utc();
        self.get_item(id).await?.map(|item| from_item(&item, now)).transpose()
    }

    async fn list(&self, limit: u32, cursor: Option<&str>) -> Result<Page<Channel>, StoreError> {
        let page = scan_page(&self.client, &self.table, limit, cursor).await?;
        let now = OffsetDateTime::now_utc();
        let items = page.items.iter().map(|i| from_item(i, now)).collect::<Result<Vec<_>, _>>()?;
        Ok(Page { items, next: page.next })
    }

    async fn replace(
        &self,
        channel: &Channel,
        expected_version: u64,
    ) -> Result<Channel, StoreError> {
        let c = channel;
        let vals = values([
            (":expected", AttributeValue::N(expected_version.to_string())),
            (":name", s(&c.name)),
            (":description", s(&c.description)),
            (":segment_duration", AttributeValue::N(c.hls.segment_duration.to_string())),
            (":playlist_window", AttributeValue::N(c.hls.playlist_window.to_string())),
            (":recording", AttributeValue::Bool(c.recording)),
            (":relays", relays_value(&c.relays)),
            (":expires_at", rfc3339(c.expires_at)),
            (":updated_at", rfc3339(c.updated_at)),
            (":version", AttributeValue::N(c.version.to_string())),
        ]);
        match self.update(&c.id, replace_expressions(), vals).await? {
            Updated::Written(item) => from_item(&item, OffsetDateTime::now_utc()),
            Updated::Refused(None) => Err(StoreError::NotFound),
            Updated::Refused(Some(_)) => Err(StoreError::VersionConflict),
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

    async fn delete_if_version(&self, id: &str, version: u64) -> Result<(), StoreError> {
        crate::table::delete_if_version(&self.client, &self.table, id, version).await
    }

    async fn claim_publish(&self, id: &str, claim: &LeaseClaim) -> Result<Channel, StoreError> {
        let vals = values([
            (":secret", AttributeValue::S(claim.secret.to_hex())),
            (":idle", s(ChannelState::Idle.as_str())),
            (":live", s(ChannelState::Live.as_str())),
            (":now", millis_value(claim.now)),
            (":expires", millis_value(claim.expires_at)),
            (":owner", s(&claim.owner)),
            (":session", s(&claim.session)),
        ]);
        match self.update(id, claim_expressions(), vals).await? {
            Updated::Written(item) => from_item(&item, claim.now),
            Updated::Refused(None) => Err(StoreError::NotFound),
            Updated::Refused(Some(old)) => {
                let stored = old.get("secret").and_then(|v| v.as_s().ok());
                if stored.and_then(|hex| Secret::from_hex(hex)).as_ref() != Some(&claim.secret) {
                    Err(StoreError::KeyRotated)
                } else {
                    Err(StoreError::LeaseHeld)
                }
            }
        }
    }

    async fn renew_publish(
        &self,
        id: &str,
        session: &str,
        expires_at: OffsetDateTime,
    ) -> Result<Channel, StoreError> {
        let vals = values([(":session", s(session)), (":expires", millis_value(expires_at))]);
        match self.update(id, renew_expressions(), vals).await? {
            Updated::Written(item) => from_item(&item, OffsetDateTime::now_utc()),
            Updated::Refused(None) => Err(StoreError::NotFound),
            Updated::Refused(Some(_)) => Err(StoreError::LeaseLost),
        }
    }

    async fn release_publish(&self, id: &str, session: &str) -> Result<(), StoreError> {
        let vals = values([(":session", s(session)), (":idle", s(ChannelState::Idle.as_str()))]);
        self.update(id, release_expressions(), vals).await.map(|_| ())
    }

    async fn set_relay_status(
        &self,
        id: &str,
        session: &str,
        statuses: &[(String, crate::relay::RelayStatus)],
    ) -> Result<(), StoreError> {
        let vals = values([
            (":session", s(session)),
            (":status", status_value(statuses, OffsetDateTime::now_utc())),
        ]);
        // No return values: a status write should not carry the whole item (secret, URLs)
        // back every time.
        match self.update_returning(id, relay_status_expressions(), vals, ReturnValue::None).await?
        {
            Updated::Written(_) => Ok(()),
            Updated::Refused(None) => Err(StoreError::NotFound),
            Updated::Refused(Some(_)) => Err(StoreError::LeaseLost),
        }
    }

    async fn rotate_secret(&self, id: &str) -> Result<Channel, StoreError> {
        let vals = values([
            (":secret", AttributeValue::S(Secret::generate().to_hex())),
            (":one", AttributeValue::N("1".to_owned())),
            (":updated_at", rfc3339(now_seconds())),
        ]);
        match self.update(id, rotate_expressions(), vals).await? {
            Updated::Written(item) => from_item(&item, OffsetDateTime::now_utc()),
            Updated::Refused(_) => Err(StoreError::NotFound),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_writes_configuration_only() {
        let (condition, update) = replace_expressions();
        assert_eq!(condition, "#version = :expected");
        let names = placeholder_names(&[update]);
        let mut written: Vec<_> = names.values().map(String::as_str).collect();
        written.sort_unstable();
        assert_eq!(
            written,
            [
                "description",
                "expires_at",
                "name",
                "playlist_window",
                "recording",
                "relays",
                "segment_duration",
                "updated_at",
                "version"
            ]
        );
        assert!(update.starts_with("SET ") && !update.contains("REMOVE"));
    }

    #[test]
    fn rotate_needs_the_item_and_bumps_version() {
        assert_eq!(
            rotate_expressions(),
            (
                "attribute_exists(#id)",
                "SET #secret = :secret, #version = #version + :one, #updated_at = :updated_at"
            )
        );
    }
}
