//! The gateway state table: one row per gateway, every write conditional.
//!
//! Table layout (partition key `gateway_id` S): `instance_id` S (the current instance),
//! `allocation_id` S (its Elastic IP allocation), `phase` S (`healthy` | `rebooted` |
//! `recovering`), `health_failures` N, `rebooted_at` N (unix ms) and `reboot_sent` BOOL
//! (`RebootInstances` succeeded; absent: sent), `launch` S (JSON
//! [`SavedLaunch`]: the current instance's launch settings as last observed), `alarm_pending`
//! S (JSON [`PendingAlarm`]: written with the end of a recovery, removed once published),
//! while recovering
//! `failed_instance` S, `replacement` S, `attempt` N, `reason` S, `recovery_started_at` N
//! (unix ms), and while a recovery holds it `lock_owner` S, `lock_until` N (unix ms);
//! `updated_at` S (RFC 3339).
//!
//! Concurrency: health writes are conditional on the row's `instance_id` and phase, so a
//! check working from a stale view changes nothing; a reboot is sent only by the check whose
//! `healthy -> rebooted` write succeeded (or, when that call failed, by the check that
//! re-marks the unsent reboot); a recovery runs only under the lock, taken with a
//! condition on the failed instance still being current, so a second invocation can neither
//! start a second recovery nor redo a finished one.

use super::model::{GatewayRecord, Lock, PendingAlarm, SavedLaunch};
pub use super::row::from_item;
use super::row::{json_value, millis, n, now_text, s, Item};
use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use streamstack_core::store::{is_conditional_failure, StoreError};
use streamstack_core::table::update_if;
use time::OffsetDateTime;

/// Gateway state persistence.
#[async_trait]
pub trait GatewayStore: Send + Sync {
    /// The row of `gateway_id` (strongly consistent); `None` when absent.
    ///
    /// # Errors
    /// [`StoreError::Backend`]; [`StoreError::Corrupt`] for a malformed row.
    async fn get(&self, gateway_id: &str) -> Result<Option<GatewayRecord>, StoreError>;

    /// The gateway ids of the table's rows (a paged `Scan` of the key only), at most
    /// `limit`.
    async fn gateway_ids(&self, limit: usize) -> Result<Vec<String>, StoreError>;

    /// Records the launch settings of the gateway's current `instance_id` (not while
    /// recovering); `Ok(false)` when the row moved on.
    async fn save_launch(
        &self,
        gateway_id: &str,
        instance_id: &str,
        launch: &SavedLaunch,
    ) -> Result<bool, StoreError>;

    /// Writes a first row for a gateway (`PutItem` unless the gateway has one); `Ok(false)`
    /// when it has.
    async fn adopt(&self, record: &GatewayRecord) -> Result<bool, StoreError>;

    /// Records the Elastic IP allocation of the gateway's current `instance_id` (not while
    /// recovering); `Ok(false)` when the row moved on.
    async fn set_allocation(
        &self,
        gateway_id: &str,
        instance_id: &str,
        allocation_id: &str,
    ) -> Result<bool, StoreError>;

    /// Records `failures` consecutive health-URL failures of `instance_id` (healthy phase
    /// only); `Ok(false)` when the row moved on.
    async fn record_failures(
        &self,
        gateway_id: &str,
        instance_id: &str,
        failures: u32,
    ) -> Result<bool, StoreError>;

    /// Back to `healthy` with no failures (from `healthy` or `rebooted`, not while
    /// recovering); `Ok(false)` when the row moved on.
    async fn mark_healthy(&self, gateway_id: &str, instance_id: &str) -> Result<bool, StoreError>;

    /// `healthy -> rebooted` at `at` with the reboot not yet sent, only from `healthy` (or,
    /// with `unsent` = the `rebooted_at` of a reboot whose call failed, from that unsent
    /// reboot): the one caller that gets `Ok(true)` sends the reboot.
    async fn mark_rebooted(
        &self,
        gateway_id: &str,
        instance_id: &str,
        at: OffsetDateTime,
        unsent: Option<OffsetDateTime>,
    ) -> Result<bool, StoreError>;

    /// Records that the reboot marked at `at` was sent (`RebootInstances` succeeded).
    async fn reboot_sent(
        &self,
        gateway_id: &str,
        instance_id: &str,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Takes the recovery lock of `failed_instance` for `lock.owner` and enters (or stays in)
    /// `recovering`: succeeds only while `failed_instance` is still the row's current
    /// instance, no other recovery of another instance is recorded, and no other owner's
    /// lock is unexpired at `now`. An unfinished recovery's replacement and attempt are kept.
    async fn lock_recovery(
        &self,
        gateway_id: &str,
        failed_instance: &str,
        lock: &Lock,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError>;

    /// Records the replacement instance (under `owner`'s lock); `Ok(false)` if the lock is
    /// no longer `owner`'s.
    async fn record_replacement(
        &self,
        gateway_id: &str,
        owner: &str,
        replacement: &str,
    ) -> Result<bool, StoreError>;

    /// Forgets a replacement that died before running and counts the attempt (under
    /// `owner`'s lock), so the next launch uses a new client token.
    async fn replacement_failed(&self, gateway_id: &str, owner: &str) -> Result<bool, StoreError>;

    /// Ends the recovery (under `owner`'s lock): `replacement` becomes the current
    /// instance, healthy, with `allocation_id` if given and `alarm` pending; lock and
    /// recovery attributes go.
    async fn finish_recovery(
        &self,
        gateway_id: &str,
        owner: &str,
        replacement: &str,
        allocation_id: Option<&str>,
        alarm: &PendingAlarm,
    ) -> Result<bool, StoreError>;

    /// Removes the pending alarm `alarm` (published); `Ok(false)` when another is pending.
    async fn clear_alarm(&self, gateway_id: &str, alarm: &PendingAlarm)
        -> Result<bool, StoreError>;

    /// Releases `owner`'s lock (the recovery stays recorded, to be resumed).
    async fn release(&self, gateway_id: &str, owner: &str) -> Result<(), StoreError>;
}

/// [`GatewayStore`] on a DynamoDB table (partition key `gateway_id`).
#[derive(Debug, Clone)]
pub struct DynamoGatewayStore {
    pub(super) client: Client,
    pub(super) table: String,
}

/// `Ok(true)` written, `Ok(false)` condition failed.
fn conditional<T, E, R>(result: Result<T, SdkError<E, R>>) -> Result<bool, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match result {
        Ok(_) => Ok(true),
        Err(e) if is_conditional_failure(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

impl DynamoGatewayStore {
    /// A store on `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// One conditional `UpdateItem`: `update` and `condition` expressions, `#name`
    /// placeholders for every attribute in `names`, and `values`.
    async fn update(
        &self,
        gateway_id: &str,
        update: &str,
        condition: &str,
        names: &[&str],
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<bool, StoreError> {
        let key = ("gateway_id", gateway_id);
        update_if(&self.client, &self.table, key, update, condition, names, values).await
    }
}

/// Placeholders used by [`DynamoGatewayStore`]'s expressions.
const RECOVERY_ATTRS: [&str; 5] =
    ["failed_instance", "replacement", "attempt", "reason", "recovery_started_at"];

#[async_trait]
impl GatewayStore for DynamoGatewayStore {
    async fn get(&self, gateway_id: &str) -> Result<Option<GatewayRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("gateway_id", s(gateway_id))
            .consistent_read(true)
            .send()
            .await?;
        out.item.as_ref().map(from_item).transpose()
    }

    async fn gateway_ids(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .projection_expression("#g")
                .expression_attribute_names("#g", "gateway_id")
                .set_exclusive_start_key(start)
                .send()
                .await?;
            out.extend(
                page.items().iter().filter_map(|i| i.get("gateway_id")?.as_s().ok().cloned()),
            );
            start = page.last_evaluated_key;
            if start.is_none() || out.len() >= limit {
                break;
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    async fn save_launch(
        &self,
        gateway_id: &str,
        instance_id: &str,
        launch: &SavedLaunch,
    ) -> Result<bool, StoreError> {
        self.update(
            gateway_id,
            "SET #launch = :l, #updated_at = :now",
            "#instance_id = :i AND #phase <> :recovering",
            &["launch", "updated_at", "instance_id", "phase"],
            vec![
                (":l", json_value(launch)),
                (":now", now_text()),
                (":i", s(instance_id)),
                (":recovering", s("recovering")),
            ],
        )
        .await
    }

    async fn adopt(&self, record: &GatewayRecord) -> Result<bool, StoreError> {
        let mut item = Item::from([
            ("gateway_id".to_owned(), s(&record.gateway_id)),
            ("instance_id".to_owned(), s(&record.instance_id)),
            ("phase".to_owned(), s("healthy")),
            ("health_failures".to_owned(), n(0)),
            ("updated_at".to_owned(), now_text()),
        ]);
        if let Some(a) = &record.allocation_id {
            item.insert("allocation_id".to_owned(), s(a));
        }
        if let Some(launch) = &record.launch {
            item.insert("launch".to_owned(), json_value(launch));
        }
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(gateway_id)")
            .send()
            .await;
        conditional(result)
    }

    async fn set_allocation(
        &self,
        gateway_id: &str,
        instance_id: &str,
        allocation_id: &str,
    ) -> Result<bool, StoreError> {
        self.update(
            gateway_id,
            "SET #allocation_id = :a, #updated_at = :now",
            "#instance_id = :i AND #phase <> :recovering",
            &["allocation_id", "updated_at", "instance_id", "phase"],
            vec![
                (":a", s(allocation_id)),
                (":now", now_text()),
                (":i", s(instance_id)),
                (":recovering", s("recovering")),
            ],
        )
        .await
    }

    async fn record_failures(
        &self,
        gateway_id: &str,
        instance_id: &str,
        failures: u32,
    ) -> Result<bool, StoreError> {
        self.update(
            gateway_id,
            "SET #health_failures = :f, #updated_at = :now",
            "#instance_id = :i AND #phase = :healthy",
            &["health_failures", "updated_at", "instance_id", "phase"],
            vec![
                (":f", n(failures)),
                (":now", now_text()),
                (":i", s(instance_id)),
                (":healthy", s("healthy")),
            ],
        )
        .await
    }

    async fn mark_healthy(&self, gateway_id: &str, instance_id: &str) -> Result<bool, StoreError> {
        self.update(
            gateway_id,
            "SET #phase = :healthy, #health_failures = :zero, #updated_at = :now \
             REMOVE #rebooted_at, #reboot_sent",
            "#instance_id = :i AND #phase <> :recovering",
            &[
                "phase",
                "health_failures",
                "updated_at",
                "rebooted_at",
                "reboot_sent",
                "instance_id",
            ],
            vec![
                (":healthy", s("healthy")),
                (":zero", n(0)),
                (":now", now_text()),
                (":i", s(instance_id)),
                (":recovering", s("recovering")),
            ],
        )
        .await
    }

    async fn mark_rebooted(
        &self,
        gateway_id: &str,
        instance_id: &str,
        at: OffsetDateTime,
        unsent: Option<OffsetDateTime>,
    ) -> Result<bool, StoreError> {
        let mut values = vec![
            (":rebooted", s("rebooted")),
            (":at", millis(at)),
            (":no", AttributeValue::Bool(false)),
            (":zero", n(0)),
            (":now", now_text()),
            (":i", s(instance_id)),
        ];
        let from = match unsent {
            None => {
                values.push((":healthy", s("healthy")));
                "#phase = :healthy"
            }
            Some(prev) => {
                values.push((":prev", millis(prev)));
                "#phase = :rebooted AND #rebooted_at = :prev AND #reboot_sent = :no"
            }
        };
        self.update(
            gateway_id,
            "SET #phase = :rebooted, #rebooted_at = :at, #reboot_sent = :no, \
             #health_failures = :zero, #updated_at = :now",
            &format!("#instance_id = :i AND {from}"),
            &[
                "phase",
                "rebooted_at",
                "reboot_sent",
                "health_failures",
                "updated_at",
                "instance_id",
            ],
            values,
        )
        .await
    }

    async fn reboot_sent(
        &self,
        gateway_id: &str,
        instance_id: &str,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.update(
            gateway_id,
            "SET #reboot_sent = :yes, #updated_at = :now",
            "#instance_id = :i AND #phase = :rebooted AND #rebooted_at = :at",
            &["reboot_sent", "updated_at", "instance_id", "phase", "rebooted_at"],
            vec![
                (":yes", AttributeValue::Bool(true)),
                (":now", now_text()),
                (":i", s(instance_id)),
                (":rebooted", s("rebooted")),
                (":at", millis(at)),
            ],
        )
        .await
    }

    async fn lock_recovery(
        &self,
        gateway_id: &str,
        failed_instance: &str,
        lock: &Lock,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.update(
            gateway_id,
            "SET #phase = :recovering, #failed_instance = :failed, #lock_owner = :owner, \
             #lock_until = :until, #attempt = if_not_exists(#attempt, :zero), \
             #reason = if_not_exists(#reason, :reason), \
             #recovery_started_at = if_not_exists(#recovery_started_at, :now), \
             #updated_at = :now_text",
            "#instance_id = :failed \
             AND (#phase <> :recovering OR #failed_instance = :failed) \
             AND (attribute_not_exists(#lock_until) OR #lock_until < :now OR #lock_owner = :owner)",
            &[
                "phase",
                "failed_instance",
                "lock_owner",
                "lock_until",
                "attempt",
                "reason",
                "recovery_started_at",
                "updated_at",
                "instance_id",
            ],
            vec![
                (":recovering", s("recovering")),
                (":failed", s(failed_instance)),
                (":owner", s(&lock.owner)),
                (":until", millis(lock.until)),
                (":zero", n(0)),
                (":reason", s(reason)),
                (":now", millis(now)),
                (":now_text", now_text()),
            ],
        )
        .await
    }

    async fn record_replacement(
        &self,
        gateway_id: &str,
        owner: &str,
        replacement: &str,
    ) -> Result<bool, StoreError> {
        self.update(
            gateway_id,
            "SET #replacement = :r, #updated_at = :now",
            "#lock_owner = :owner AND #phase = :recovering",
            &["replacement", "updated_at", "lock_owner", "phase"],
            vec![
                (":r", s(replacement)),
                (":now", now_text()),
                (":owner", s(owner)),
                (":recovering", s("recovering")),
            ],
        )
        .await
    }

    async fn replacement_failed(&self, gateway_id: &str, owner: &str) -> Result<bool, StoreError> {
        self.update(
            gateway_id,
            "SET #attempt = #attempt + :one, #updated_at = :now REMOVE #replacement",
            "#lock_owner = :owner AND #phase = :recovering",
            &["attempt", "updated_at", "replacement", "lock_owner", "phase"],
            vec![
                (":one", n(1)),
                (":now", now_text()),
                (":owner", s(owner)),
                (":recovering", s("recovering")),
            ],
        )
        .await
    }

    async fn finish_recovery(
        &self,
        gateway_id: &str,
        owner: &str,
        replacement: &str,
        allocation_id: Option<&str>,
        alarm: &PendingAlarm,
    ) -> Result<bool, StoreError> {
        let mut set = String::from(
            "SET #instance_id = :r, #phase = :healthy, #health_failures = :zero, \
             #updated_at = :now, #alarm_pending = :alarm",
        );
        let mut names = vec![
            "instance_id",
            "phase",
            "health_failures",
            "updated_at",
            "alarm_pending",
            "rebooted_at",
            "reboot_sent",
            "lock_owner",
            "lock_until",
        ];
        names.extend(RECOVERY_ATTRS);
        let mut values = vec![
            (":r", s(replacement)),
            (":healthy", s("healthy")),
            (":zero", n(0)),
            (":now", now_text()),
            (":alarm", json_value(alarm)),
            (":owner", s(owner)),
        ];
        if let Some(a) = allocation_id {
            set.push_str(", #allocation_id = :a");
            names.push("allocation_id");
            values.push((":a", s(a)));
        }
        let remove = ["rebooted_at", "reboot_sent", "lock_owner", "lock_until"]
            .iter()
            .chain(RECOVERY_ATTRS.iter())
            .map(|k| format!("#{k}"))
            .collect::<Vec<_>>()
            .join(", ");
        self.update(
            gateway_id,
            &format!("{set} REMOVE {remove}"),
            "#lock_owner = :owner",
            &names,
            values,
        )
        .await
    }

    async fn clear_alarm(
        &self,
        gateway_id: &str,
        alarm: &PendingAlarm,
    ) -> Result<bool, StoreError> {
        self.update(
            gateway_id,
            "REMOVE #alarm_pending",
            "#alarm_pending = :alarm",
            &["alarm_pending"],
            vec![(":alarm", json_value(alarm))],
        )
        .await
    }

    async fn release(&self, gateway_id: &str, owner: &str) -> Result<(), StoreError> {
        self.update(
            gateway_id,
            "REMOVE #lock_owner, #lock_until",
            "#lock_owner = :owner",
            &["lock_owner", "lock_until"],
            vec![(":owner", s(owner))],
        )
        .await
        .map(|_| ())
    }
}
