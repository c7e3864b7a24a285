//! Device persistence: the [`DeviceStore`] trait and its DynamoDB implementation.
//!
//! Table layout (one item per device, partition key `id` S; GSI `gateway-index` with
//! partition key `gateway_id` S, projection ALL):
//! `gateway_id` S, `name` S, `media_url` S (no userinfo), `media_credentials` S (sealed,
//! optional; see [`crate::media_url`]), `url_digest` S, `enabled` BOOL, `status` S
//! (`online`|`offline` as last reported), `last_heartbeat` N (unix ms), `stream` M (the
//! streamer's [`crate::stream_state`]), `slot` S and `task_arn` S (the reconciler's), `restarts` N
//! and `not_before` N (unix ms; the health handler's), `version` N, `created_at` S,
//! `updated_at` S (RFC 3339); the health handler's `restart_window_start`, `failed_at`,
//! `last_exit*` ([`crate::device_health`]).
//!
//! Writers own disjoint attributes and use conditional `UpdateItem SET`s of their own only:
//! the API the configuration, heartbeats `status`/`last_heartbeat` (and the URL when it
//! changed), the streamer `stream`, the reconciler `slot`/`task_arn`.

use crate::channel_item::{s, Item};
use crate::device::{Device, DeviceStatus};
use crate::device_item::{config_attributes, from_item, to_item};
use crate::lease::millis_value;
use crate::media_url::MediaUrl;
use crate::paging::{decode_cursor, encode_cursor, Page};
use crate::store::StoreError;
use crate::table::is_conditional_failure;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, ReturnValue, Update};
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;
use time::OffsetDateTime;

/// Name of the devices table's index by gateway.
pub const GATEWAY_INDEX: &str = "gateway-index";

/// Items per `TransactWriteItems` (DynamoDB's limit).
pub(crate) const TRANSACTION_ITEMS: usize = 100;

/// Keys per `BatchGetItem` (DynamoDB's limit).
const BATCH_GET_KEYS: usize = 100;

/// Rounds of retrying a batch's unprocessed keys or a cancelled transaction.
pub(crate) const MAX_ROUNDS: u32 = 4;

/// Filters of a device listing.
#[derive(Debug, Clone, Default)]
pub struct DeviceFilter {
    /// Only this gateway's devices.
    pub gateway_id: Option<String>,
    /// Only devices online (`Some(true)`) or offline (`Some(false)`) at `now` for `window`.
    pub online: Option<bool>,
    /// The online window, for `online`.
    pub window: time::Duration,
    /// The instant `online` is judged at.
    pub now: Option<OffsetDateTime>,
}

/// One device in a gateway heartbeat: its id and its media URL, sealed.
#[derive(Debug, Clone)]
pub struct Reported {
    /// Device id.
    pub id: String,
    /// Media URL as it is to be stored.
    pub media_url: MediaUrl,
}

/// What a heartbeat changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeartbeatOutcome {
    /// Reported devices recorded online (created ones included).
    pub online: u32,
    /// Devices registered by this heartbeat.
    pub created: u32,
    /// Devices whose URL changed.
    pub url_changed: u32,
    /// The gateway's devices missing from the report, now offline.
    pub offline: u32,
    /// Reported ids that belong to another gateway: not written.
    pub rejected: Vec<String>,
}

/// Device persistence used by the API, the reconciler and the streamer.
#[async_trait]
pub trait DeviceStore: Send + Sync {
    /// Inserts a new device.
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] if the id is taken.
    async fn create(&self, device: &Device) -> Result<(), StoreError>;

    /// Writes the configuration of `device` (gateway, name, URL, enabled, version,
    /// `updated_at`) if the stored version is still `expected_version`. Returns the device
    /// as now stored.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::VersionConflict`].
    async fn update_config(
        &self,
        device: &Device,
        expected_version: u64,
    ) -> Result<Device, StoreError>;

    /// One device (strongly consistent); `None` when absent.
    async fn get(&self, id: &str) -> Result<Option<Device>, StoreError>;

    /// The devices among `ids` that exist (`BatchGetItem`, 100 keys per call, consistent),
    /// in no particular order.
    async fn get_many(&self, ids: &[String]) -> Result<Vec<Device>, StoreError>;

    /// Up to `limit` devices after `cursor` that pass `filter` (a page may hold fewer than
    /// `limit` and still have a `next`).
    ///
    /// # Errors
    /// [`StoreError::InvalidCursor`] for a cursor this store did not issue.
    async fn list(
        &self,
        limit: u32,
        cursor: Option<&str>,
        filter: &DeviceFilter,
    ) -> Result<Page<Device>, StoreError>;

    /// Every device (consistent `Scan`, all pages): the reconciler's view.
    async fn scan_all(&self) -> Result<Vec<Device>, StoreError>;

    /// Deletes a device.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if absent.
    async fn delete(&self, id: &str) -> Result<(), StoreError>;

    /// Deletes a device if its version is `version` (`DELETE` with `If-Match`), atomically
    /// in the DynamoDB store (the default, for test doubles, checks then deletes).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] if absent, [`StoreError::VersionConflict`] if the version
    /// moved.
    async fn delete_if_version(&self, id: &str, version: u64) -> Result<(), StoreError> {
        match self.get(id).await? {
            None => Err(StoreError::NotFound),
            Some(d) if d.version != version => Err(StoreError::VersionConflict),
            Some(_) => self.delete(id).await,
        }
    }

    /// Deletes `device` if it was not seen since: its `version` and `last_heartbeat` are
    /// still as in `device`. `Ok(false)` when it changed (or is gone).
    async fn delete_unseen(&self, device: &Device) -> Result<bool, StoreError>;

    /// Records gateway `gateway_id`'s heartbeat at `now`: every `reported` device online
    /// (registered when new, URL updated when it changed), every other device of the gateway
    /// offline. Writes are `TransactWriteItems` of up to 100 conditional updates; an id owned
    /// by another gateway is rejected, not written.
    async fn heartbeat(
        &self,
        gateway_id: &str,
        reported: &[Reported],
        now: OffsetDateTime,
    ) -> Result<HeartbeatOutcome, StoreError>;

    /// Marks `id` as assigned to `slot`, unless another slot holds it: `Ok(false)` then, or
    /// when the device is gone.
    async fn claim_slot(&self, id: &str, slot: &str) -> Result<bool, StoreError>;

    /// Clears `id`'s slot and task, if the slot is still `slot` (idempotent).
    async fn release_slot(&self, id: &str, slot: &str) -> Result<(), StoreError>;

    /// Records the task recording `id` (in `slot`), if it is still in `slot`.
    async fn set_task(
        &self,
        id: &str,
        slot: &str,
        task_arn: Option<&str>,
    ) -> Result<(), StoreError>;
}

/// [`DeviceStore`] on a DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoDeviceStore {
    pub(crate) client: Client,
    pub(crate) table: String,
    /// Playback of devices a gateway heartbeat registers.
    pub(crate) default_playback: crate::playback::Playback,
}

pub(crate) fn values<const N: usize>(pairs: [(&str, AttributeValue); N]) -> Item {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

pub(crate) fn names(list: &[&str]) -> HashMap<String, String> {
    list.iter().map(|n| (format!("#{n}"), (*n).to_owned())).collect()
}

impl DynamoDeviceStore {
    /// A store on `table` using `client`; devices a heartbeat registers are public (see
    /// [`DynamoDeviceStore::with_default_playback`]).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into(), default_playback: crate::playback::Playback::Public }
    }

    /// This store registering devices first heard of in a heartbeat with `playback` (the
    /// stack's `PLAYBACK_DEFAULT`).
    pub fn with_default_playback(mut self, playback: crate::playback::Playback) -> Self {
        self.default_playback = playback;
        self
    }

    /// `UpdateItem` of device `id` with `update` if `condition` holds (`#name` placeholders
    /// from `attrs`, one value `placeholder`); `Ok(false)` when the condition failed
    /// ([`crate::table::update_if`]).
    pub(crate) async fn update_if(
        &self,
        id: &str,
        update: &str,
        condition: &str,
        attrs: &[&str],
        value: (&str, AttributeValue),
    ) -> Result<bool, StoreError> {
        let key = ("id", id);
        crate::table::update_if(
            &self.client,
            &self.table,
            key,
            update,
            condition,
            attrs,
            vec![value],
        )
        .await
    }

    /// Creates the table with its `gateway-index` (on-demand) if it does not exist; for local
    /// stacks and tests. In AWS the table comes from `template.yaml`.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when DynamoDB refuses.
    pub async fn create_table_if_missing(&self) -> Result<(), StoreError> {
        let index =
            crate::table::IndexSpec { name: GATEWAY_INDEX, key: "gateway_id", keys_only: false };
        crate::table::create_table_with(&self.client, &self.table, Some(index), true).await
    }

    /// All devices of `gateway_id` (`Query` on [`GATEWAY_INDEX`], every page; eventually
    /// consistent).
    pub(crate) async fn gateway_devices(
        &self,
        gateway_id: &str,
    ) -> Result<Vec<Device>, StoreError> {
        let gateway = ("gateway_id", gateway_id);
        crate::table::query_index(&self.client, &self.table, GATEWAY_INDEX, gateway, usize::MAX)
            .await?
            .iter()
            .map(from_item)
            .collect()
    }

    pub(crate) fn update(&self, id: &str) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
        Update::builder().table_name(&self.table).key("id", s(id))
    }
}

/// Sleeps `ms` milliseconds (backoff between rounds).
pub(crate) async fn tokio_sleep_ms(ms: u64) {
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

pub(crate) fn build_error(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Backend(e.to_string())
}

#[async_trait]
impl DeviceStore for DynamoDeviceStore {
    async fn create(&self, device: &Device) -> Result<(), StoreError> {
        crate::table::put_new(&self.client, &self.table, to_item(device)).await
    }

    async fn update_config(
        &self,
        device: &Device,
        expected_version: u64,
    ) -> Result<Device, StoreError> {
        let attrs = config_attributes(device);
        let mut set: Vec<String> = attrs.iter().map(|(k, _)| format!("#{k} = :{k}")).collect();
        set.sort();
        // A configuration change is the retry of a failed or backing-off device
        // (`crate::device_health`): its restart counters start over.
        set.push("#restarts = :zero_restarts".into());
        let mut update = format!("SET {}", set.join(", "));
        let mut name_list: Vec<&str> = attrs.iter().map(|(k, _)| *k).collect();
        name_list.extend([
            "restarts",
            "failed_at",
            "not_before",
            "restart_window_start",
            "alarm_pending",
        ]);
        update.push_str(" REMOVE #failed_at, #not_before, #restart_window_start, #alarm_pending");
        if device.media_url.credentials.is_none() {
            update.push_str(", #media_credentials");
            name_list.push("media_credentials");
        }
        let mut vals: Item = attrs.into_iter().map(|(k, v)| (format!(":{k}"), v)).collect();
        vals.insert(":zero_restarts".into(), AttributeValue::N("0".into()));
        vals.insert(":expected".into(), AttributeValue::N(expected_version.to_string()));
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", s(&device.id))
            .condition_expression("#version = :expected")
            .update_expression(update)
            .set_expression_attribute_names(Some(names(&name_list)))
            .set_expression_attribute_values(Some(vals))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => from_item(&out.attributes.unwrap_or_default()),
            Err(e) if is_conditional_failure(&e) => match self.get(&device.id).await? {
                None => Err(StoreError::NotFound),
                Some(_) => Err(StoreError::VersionConflict),
            },
            Err(e) => Err(e.into()),
        }
    }

    async fn get(&self, id: &str) -> Result<Option<Device>, StoreError> {
        let item = crate::table::get_consistent(&self.client, &self.table, id).await?;
        item.as_ref().map(from_item).transpose()
    }

    async fn get_many(&self, ids: &[String]) -> Result<Vec<Device>, StoreError> {
        let mut unique: Vec<&String> = ids.iter().collect();
        unique.sort();
        unique.dedup();
        let mut found = Vec::new();
        for chunk in unique.chunks(BATCH_GET_KEYS) {
            let keys: Vec<Item> =
                chunk.iter().map(|id| Item::from([("id".into(), s(id))])).collect();
            let mut request = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .map_err(build_error)?,
            );
            let mut round = 0;
            while let Some(keys) = request.take() {
                round += 1;
                if round > MAX_ROUNDS {
                    return Err(StoreError::Backend("BatchGetItem kept keys unprocessed".into()));
                }
                let out =
                    self.client.batch_get_item().request_items(&self.table, keys).send().await?;
                if let Some(items) = out.responses.as_ref().and_then(|r| r.get(&self.table)) {
                    for item in items {
                        found.push(from_item(item)?);
                    }
                }
                request = out.unprocessed_keys.and_then(|mut u| u.remove(&self.table));
                if request.is_some() {
                    tokio_sleep_ms(50 << round).await;
                }
            }
        }
        Ok(found)
    }

    async fn list(
        &self,
        limit: u32,
        cursor: Option<&str>,
        filter: &DeviceFilter,
    ) -> Result<Page<Device>, StoreError> {
        let start =
            cursor.map(|c| decode_cursor(c).ok_or(StoreError::InvalidCursor)).transpose()?;
        let mut request = self
            .client
            .scan()
            .table_name(&self.table)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .consistent_read(true)
            .set_exclusive_start_key(start.map(|id| Item::from([("id".into(), s(&id))])));
        let mut conditions = Vec::new();
        if let Some(gateway) = &filter.gateway_id {
            conditions.push("#gateway_id = :gateway_id");
            request = request
                .expression_attribute_names("#gateway_id", "gateway_id")
                .expression_attribute_values(":gateway_id", s(gateway));
        }
        if let Some(online) = filter.online {
            let now = filter.now.unwrap_or_else(OffsetDateTime::now_utc);
            conditions.push(if online {
                "(#status = :online AND #last_heartbeat >= :cutoff)"
            } else {
                "(#status <> :online OR attribute_not_exists(#last_heartbeat) OR #last_heartbeat < :cutoff)"
            });
            request = request
                .expression_attribute_names("#status", "status")
                .expression_attribute_names("#last_heartbeat", "last_heartbeat")
                .expression_attribute_values(":online", s(DeviceStatus::Online.as_str()))
                .expression_attribute_values(":cutoff", millis_value(now - filter.window));
        }
        if !conditions.is_empty() {
            request = request.filter_expression(conditions.join(" AND "));
        }
        let out = request.send().await?;
        let items = out.items().iter().map(from_item).collect::<Result<Vec<_>, _>>()?;
        let next = out
            .last_evaluated_key
            .as_ref()
            .and_then(|k| k.get("id"))
            .and_then(|v| v.as_s().ok())
            .map(|id| encode_cursor(id));
        Ok(Page { items, next })
    }

    async fn scan_all(&self) -> Result<Vec<Device>, StoreError> {
        let items = crate::table::scan_all_items(&self.client, &self.table).await?;
        items.iter().map(from_item).collect()
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("id", s(id))
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

    async fn delete_unseen(&self, device: &Device) -> Result<bool, StoreError> {
        let mut request = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("id", s(&device.id))
            .expression_attribute_names("#version", "version")
            .expression_attribute_names("#last_heartbeat", "last_heartbeat")
            .expression_attribute_values(":version", AttributeValue::N(device.version.to_string()));
        request = match device.last_heartbeat {
            Some(at) => request
                .condition_expression("#version = :version AND #last_heartbeat = :seen")
                .expression_attribute_values(":seen", millis_value(at)),
            None => request.condition_expression(
                "#version = :version AND attribute_not_exists(#last_heartbeat)",
            ),
        };
        match request.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_conditional_failure(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn heartbeat(
        &self,
        gateway_id: &str,
        reported: &[Reported],
        now: OffsetDateTime,
    ) -> Result<HeartbeatOutcome, StoreError> {
        self.record_heartbeat(gateway_id, reported, now).await
    }

    async fn claim_slot(&self, id: &str, slot: &str) -> Result<bool, StoreError> {
        self.update_if(
            id,
            "SET #slot = :slot",
            "attribute_exists(id) AND (attribute_not_exists(#slot) OR #slot = :slot)",
            &["slot"],
            (":slot", s(slot)),
        )
        .await
    }

    async fn release_slot(&self, id: &str, slot: &str) -> Result<(), StoreError> {
        let condition = "#slot = :slot";
        self.update_if(
            id,
            "REMOVE #slot, #task_arn",
            condition,
            &["slot", "task_arn"],
            (":slot", s(slot)),
        )
        .await
        .map(|_| ())
    }

    async fn set_task(
        &self,
        id: &str,
        slot: &str,
        task_arn: Option<&str>,
    ) -> Result<(), StoreError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("id", s(id))
            .condition_expression("#slot = :slot")
            .set_expression_attribute_names(Some(names(&["slot", "task_arn"])))
            .expression_attribute_values(":slot", s(slot));
        let request = match task_arn {
            Some(arn) => request
                .update_expression("SET #task_arn = :arn")
                .expression_attribute_values(":arn", s(arn)),
            None => request.update_expression("REMOVE #task_arn"),
        };
        match request.send().await {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_failure(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
