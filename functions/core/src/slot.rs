//! Task slots: what one streamer task records. A slot holds up to `DEVICES_PER_TASK` devices
//! (`devices`, each with the URL digest it was assigned with); the reconciler fills and
//! empties slots and keeps one ECS task running per non-empty slot; the task follows its
//! slot (`streamer pull --assignment <slot>`).
//!
//! Table layout (partition key `id` S): `devices` M {device id: url digest (S)},
//! `generation` N (+1 per start claim), `task_arn` S (the task started for the slot, once
//! known), `started_at` N (unix ms, when `task_arn` was recorded), `start_token` S and `start_until` N (unix ms: a reconciler's claim to start the
//! slot's task; two reconcilers never both hold it), `updated_at` S (RFC 3339).
//!
//! Concurrency: every write is a conditional `UpdateItem`/`PutItem`/`DeleteItem`. A device is
//! put into a slot only by the reconciler that first claimed the device for that slot
//! ([`crate::device_store::DeviceStore::claim_slot`]), so a device never sits in two slots; a
//! task is started only under a start claim taken at the slot's observed `generation`, so
//! two reconcilers working from the same view start at most one task.

use crate::channel_item::{s, Item};
use crate::lease::{from_unix_millis, millis_value, unix_millis};
use crate::store::StoreError;
use crate::table::{is_conditional_failure, rfc3339};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use std::collections::{BTreeMap, HashMap};
use time::OffsetDateTime;

/// Prefix of `startedBy` of every task the reconciler starts.
pub const STARTED_BY_PREFIX: &str = "streamstack/";

/// Prefix of the reason of every `StopTask` the reconciler sends; the health handler (`functions/health`) treats
/// tasks stopped with it as intended, not as failures.
pub const STOP_REASON_PREFIX: &str = "streamstack-reconciler:";

/// Environment variable that carries a task's slot.
pub const ASSIGNMENT_ENV: &str = "PULL_ASSIGNMENT";

/// `startedBy` of `slot`'s task (ECS allows up to 128 letters, digits, `-`, `/`, `_`).
pub fn started_by(slot: &str) -> String {
    format!("{STARTED_BY_PREFIX}{slot}")
}

/// The slot a `startedBy` names, if it is one of ours.
pub fn slot_of(started_by: &str) -> Option<&str> {
    started_by.strip_prefix(STARTED_BY_PREFIX).filter(|s| !s.is_empty())
}

/// A reconciler's claim to start a slot's task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartClaim {
    /// Random token of the claiming reconciler run.
    pub token: String,
    /// The claim lapses at this instant (stored as unix ms).
    pub until: OffsetDateTime,
}

/// One task slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// `dev-<device id>` (one device per task) or `grp-<12 hex>`.
    pub id: String,
    /// Device id -> the URL digest it was assigned with.
    pub devices: BTreeMap<String, String>,
    /// Start claims taken so far.
    pub generation: u64,
    /// The task started for the slot, once recorded.
    pub task_arn: Option<String>,
    /// An unfinished start claim.
    pub start: Option<StartClaim>,
    /// When `task_arn` was recorded (stored as unix ms): ECS lists and describes a new task
    /// only eventually, so a recorded task missing from both is given until
    /// [`RECORDED_TASK_GRACE`] after this before it counts as gone.
    pub started_at: Option<OffsetDateTime>,
}

/// How long a just-recorded task may be missing from `ListTasks` and `DescribeTasks` (both
/// eventually consistent) before the reconciler starts another: 60 s.
pub const RECORDED_TASK_GRACE: time::Duration = time::Duration::seconds(60);

impl Slot {
    /// The slot id used when each device has its own task: `dev-<device id>`.
    pub fn single_id(device_id: &str) -> String {
        format!("dev-{device_id}")
    }

    /// A new slot id for a shared task: `grp-` and 12 random hex characters.
    pub fn group_id() -> String {
        format!("grp-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
    }

    /// Digest of the whole assignment (device ids and URL digests): tags the task started for
    /// it, so a task started for another assignment is recognised. 16 hex characters.
    pub fn assignment_digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        for (device, digest) in &self.devices {
            hash.update(device.as_bytes());
            hash.update(b"=");
            hash.update(digest.as_bytes());
            hash.update(b";");
        }
        hex::encode(&hash.finalize()[..8])
    }
}

/// Slot persistence: the reconciler writes, streamer tasks read.
#[async_trait]
pub trait SlotStore: Send + Sync {
    /// One slot (strongly consistent); `None` when absent.
    async fn get(&self, id: &str) -> Result<Option<Slot>, StoreError>;

    /// Every slot (consistent `Scan`, all pages).
    async fn scan_all(&self) -> Result<Vec<Slot>, StoreError>;

    /// Puts `device` (assigned with URL `digest`) into slot `id`: creates the slot when
    /// `exists` is false (refused if it exists meanwhile), else adds it if the slot still has
    /// fewer than `capacity` devices. `Ok(false)` when refused.
    async fn add_device(
        &self,
        id: &str,
        exists: bool,
        device: &str,
        digest: &str,
        capacity: usize,
    ) -> Result<bool, StoreError>;

    /// Records the URL digest `device` now has (the task restarts its pull); `Ok(false)`
    /// when the device is no longer in the slot.
    async fn set_digest(&self, id: &str, device: &str, digest: &str) -> Result<bool, StoreError>;

    /// Takes `device` out of slot `id` (idempotent).
    async fn remove_device(&self, id: &str, device: &str) -> Result<(), StoreError>;

    /// Claims the start of slot `id`'s task: succeeds only if the slot is still at
    /// `generation` and no other claim is unexpired at `now`; then `generation + 1` is
    /// stored and returned.
    async fn claim_start(
        &self,
        id: &str,
        generation: u64,
        claim: &StartClaim,
        now: OffsetDateTime,
    ) -> Result<Option<u64>, StoreError>;

    /// Records the started task and ends claim `token`; `Ok(false)` if the claim is no
    /// longer held. Idempotent: a retried call whose first attempt committed (the claim is
    /// gone, `task_arn` already this task) answers `Ok(true)`.
    async fn record_task(&self, id: &str, token: &str, task_arn: &str) -> Result<bool, StoreError>;

    /// Forgets `task_arn` as the slot's task (it stopped), if it is still the one recorded.
    async fn clear_task(&self, id: &str, task_arn: &str) -> Result<(), StoreError>;

    /// Deletes slot `id` if it is empty and still at `generation`; `Ok(false)` otherwise.
    async fn delete_empty(&self, id: &str, generation: u64) -> Result<bool, StoreError>;
}

/// [`SlotStore`] on a DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoSlotStore {
    client: Client,
    table: String,
}

impl DynamoSlotStore {
    /// A store on `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// Creates the table (key `id`) if missing; for local stacks and tests.
    ///
    /// # Errors
    /// [`StoreError::Backend`].
    pub async fn create_table_if_missing(&self) -> Result<(), StoreError> {
        crate::table::create_table_if_missing(&self.client, &self.table).await
    }

    fn update(
        &self,
        id: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client.update_item().table_name(&self.table).key("id", s(id))
    }
}

/// Outcome of a conditional write: `Ok(true)` written, `Ok(false)` condition failed.
fn conditional<T, E, R>(
    result: Result<T, aws_sdk_dynamodb::error::SdkError<E, R>>,
) -> Result<bool, StoreError>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match result {
        Ok(_) => Ok(true),
        Err(e) if is_conditional_failure(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn from_item(item: &Item) -> Result<Slot, StoreError> {
    let corrupt = |k: &str| StoreError::Corrupt(format!("slot attribute {k} missing or malformed"));
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let number =
        |k: &str| item.get(k).and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i128>().ok());
    let devices = match item.get("devices") {
        None => BTreeMap::new(),
        Some(v) => v
            .as_m()
            .map_err(|_| corrupt("devices"))?
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.as_s().map_err(|_| corrupt("devices"))?.clone())))
            .collect::<Result<_, StoreError>>()?,
    };
    let start = match (text("start_token"), number("start_until").and_then(from_unix_millis)) {
        (Some(token), Some(until)) => Some(StartClaim { token, until }),
        _ => None,
    };
    Ok(Slot {
        id: text("id").ok_or_else(|| corrupt("id"))?,
        devices,
        generation: number("generation").and_then(|n| u64::try_from(n).ok()).unwrap_or(0),
        task_arn: text("task_arn"),
        start,
        started_at: number("started_at").and_then(from_unix_millis),
    })
}

fn names(list: &[(&str, &str)]) -> HashMap<String, String> {
    list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[async_trait]
impl SlotStore for DynamoSlotStore {
    async fn get(&self, id: &str) -> Result<Option<Slot>, StoreError> {
        let item = crate::table::get_consistent(&self.client, &self.table, id).await?;
        item.as_ref().map(from_item).transpose()
    }

    async fn scan_all(&self) -> Result<Vec<Slot>, StoreError> {
        let items = crate::table::scan_all_items(&self.client, &self.table).await?;
        items.iter().map(from_item).collect()
    }

    async fn add_device(
        &self,
        id: &str,
        exists: bool,
        device: &str,
        digest: &str,
        capacity: usize,
    ) -> Result<bool, StoreError> {
        let now = rfc3339(OffsetDateTime::now_utc());
        if !exists {
            let item = Item::from([
                ("id".to_owned(), s(id)),
                (
                    "devices".to_owned(),
                    AttributeValue::M(HashMap::from([(device.to_owned(), s(digest))])),
                ),
                ("generation".to_owned(), AttributeValue::N("0".into())),
                ("updated_at".to_owned(), now),
            ]);
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(id)")
                .send()
                .await;
            return conditional(result);
        }
        let result = self
            .update(id)
            .update_expression("SET #devices.#device = :digest, #updated_at = :now")
            .condition_expression(
                "attribute_exists(id) AND (attribute_exists(#devices.#device) OR size(#devices) < :capacity)",
            )
            .set_expression_attribute_names(Some(names(&[
                ("#devices", "devices"),
                ("#device", device),
                ("#updated_at", "updated_at"),
            ])))
            .expression_attribute_values(":digest", s(digest))
            .expression_attribute_values(":now", now)
            .expression_attribute_values(":capacity", AttributeValue::N(capacity.to_string()))
            .send()
            .await;
        conditional(result)
    }

    async fn set_digest(&self, id: &str, device: &str, digest: &str) -> Result<bool, StoreError> {
        let result = self
            .update(id)
            .update_expression("SET #devices.#device = :digest")
            .condition_expression("attribute_exists(#devices.#device)")
            .set_expression_attribute_names(Some(names(&[
                ("#devices", "devices"),
                ("#device", device),
            ])))
            .expression_attribute_values(":digest", s(digest))
            .send()
            .await;
        conditional(result)
    }

    async fn remove_device(&self, id: &str, device: &str) -> Result<(), StoreError> {
        let result = self
            .update(id)
            .update_expression("REMOVE #devices.#device")
            .condition_expression("attribute_exists(#devices.#device)")
            .set_expression_attribute_names(Some(names(&[
                ("#devices", "devices"),
                ("#device", device),
            ])))
            .send()
            .await;
        conditional(result).map(|_| ())
    }

    async fn claim_start(
        &self,
        id: &str,
        generation: u64,
        claim: &StartClaim,
        now: OffsetDateTime,
    ) -> Result<Option<u64>, StoreError> {
        let next = generation + 1;
        let result = self
            .update(id)
            .update_expression(
                "SET #generation = :next, #start_token = :token, #start_until = :until, #updated_at = :now_text",
            )
            .condition_expression(
                "#generation = :generation AND (attribute_not_exists(#start_until) OR #start_until < :now)",
            )
            .set_expression_attribute_names(Some(names(&[
                ("#generation", "generation"),
                ("#start_token", "start_token"),
                ("#start_until", "start_until"),
                ("#updated_at", "updated_at"),
            ])))
            .expression_attribute_values(":next", AttributeValue::N(next.to_string()))
            .expression_attribute_values(":generation", AttributeValue::N(generation.to_string()))
            .expression_attribute_values(":token", s(&claim.token))
            .expression_attribute_values(":until", millis_value(claim.until))
            .expression_attribute_values(":now", AttributeValue::N(unix_millis(now).to_string()))
            .expression_attribute_values(":now_text", rfc3339(now))
            .send()
            .await;
        Ok(conditional(result)?.then_some(next))
    }

    async fn record_task(&self, id: &str, token: &str, task_arn: &str) -> Result<bool, StoreError> {
        let result = self
            .update(id)
            .update_expression(
                "SET #task_arn = :arn, #started_at = :now REMOVE #start_token, #start_until",
            )
            .condition_expression("#start_token = :token OR #task_arn = :arn")
            .set_expression_attribute_names(Some(names(&[
                ("#task_arn", "task_arn"),
                ("#start_token", "start_token"),
                ("#start_until", "start_until"),
                ("#started_at", "started_at"),
            ])))
            .expression_attribute_values(":arn", s(task_arn))
            .expression_attribute_values(":token", s(token))
            .expression_attribute_values(":now", millis_value(OffsetDateTime::now_utc()))
            .send()
            .await;
        conditional(result)
    }

    async fn clear_task(&self, id: &str, task_arn: &str) -> Result<(), StoreError> {
        let result = self
            .update(id)
            .update_expression("REMOVE #task_arn")
            .condition_expression("#task_arn = :arn")
            .set_expression_attribute_names(Some(names(&[("#task_arn", "task_arn")])))
            .expression_attribute_values(":arn", s(task_arn))
            .send()
            .await;
        conditional(result).map(|_| ())
    }

    async fn delete_empty(&self, id: &str, generation: u64) -> Result<bool, StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("id", s(id))
            .condition_expression(
                "#generation = :generation AND (attribute_not_exists(#devices) OR size(#devices) = :zero)",
            )
            .set_expression_attribute_names(Some(names(&[
                ("#generation", "generation"),
                ("#devices", "devices"),
            ])))
            .expression_attribute_values(":generation", AttributeValue::N(generation.to_string()))
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .send()
            .await;
        conditional(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_digest_follows_devices_and_urls() {
        let mut slot = Slot {
            id: Slot::single_id("cam"),
            devices: BTreeMap::from([("cam".into(), "aa".into())]),
            generation: 0,
            task_arn: None,
            start: None,
            started_at: None,
        };
        let before = slot.assignment_digest();
        assert_eq!(before.len(), 16);
        slot.devices.insert("cam".into(), "bb".into());
        assert_ne!(slot.assignment_digest(), before);
        assert!(Slot::group_id().starts_with("grp-") && Slot::group_id().len() == 16);
        assert_eq!(slot.id, "dev-cam");
        let _ = unix_millis(OffsetDateTime::now_utc());
    }
}
