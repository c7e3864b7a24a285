//! Gateway heartbeats on the devices table ([`DeviceStore::heartbeat`]): one `Query` of the
//! gateway's devices on `gateway-index`, then conditional `TransactWriteItems` of up to 100
//! (registrations, status and URL updates, offline marks), each with a `ClientRequestToken`.

use crate::channel_item::s;
use crate::device::{Device, DeviceStatus};
use crate::device_item::to_item;
use crate::device_store::{
    build_error, names, tokio_sleep_ms, values, DeviceStore, DynamoDeviceStore, HeartbeatOutcome,
    Reported, MAX_ROUNDS, TRANSACTION_ITEMS,
};
use crate::lease::millis_value;
use crate::store::StoreError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use std::collections::{HashMap, HashSet};
use time::OffsetDateTime;

impl DynamoDeviceStore {
    /// [`DeviceStore::heartbeat`].
    pub(crate) async fn record_heartbeat(
        &self,
        gateway_id: &str,
        reported: &[Reported],
        now: OffsetDateTime,
    ) -> Result<HeartbeatOutcome, StoreError> {
        let known: HashMap<String, Device> = self
            .gateway_devices(gateway_id)
            .await?
            .into_iter()
            .map(|d| (d.id.clone(), d))
            .collect();
        let reported_ids: HashSet<&str> = reported.iter().map(|r| r.id.as_str()).collect();
        let mut writes = Vec::new();
        // What each write is, to count it once it is in.
        let mut kinds = Vec::new();
        for report in reported {
            let (write, kind) =
                self.report_write(gateway_id, known.get(&report.id), report, now)?;
            writes.push(write);
            kinds.push((report.id.clone(), kind));
        }
        for device in known.values() {
            if reported_ids.contains(device.id.as_str()) || device.reported == DeviceStatus::Offline
            {
                continue;
            }
            let write = self
                .update(&device.id)
                .update_expression("SET #status = :offline")
                .condition_expression("#gateway_id = :gw")
                .set_expression_attribute_names(Some(names(&["status", "gateway_id"])))
                .set_expression_attribute_values(Some(values([
                    (":offline", s(DeviceStatus::Offline.as_str())),
                    (":gw", s(gateway_id)),
                ])))
                .build()
                .map_err(build_error)?;
            writes.push(TransactWriteItem::builder().update(write).build());
            kinds.push((device.id.clone(), Kind::Offline));
        }
        let refused = self.transact(writes).await?;
        let mut outcome = HeartbeatOutcome::default();
        // A refused registration: the id exists after all (created meanwhile, missed by the
        // eventually consistent index, or a retried attempt that had committed). If it is this
        // gateway's, it is updated in a second pass; else it is another gateway's: rejected.
        let mut retry = Vec::new();
        for (i, (id, kind)) in kinds.into_iter().enumerate() {
            match (refused.contains(&i), kind) {
                (true, Kind::Created) => retry.push(id),
                (true, Kind::Offline) => {}
                (true, _) => outcome.rejected.push(id),
                (false, kind) => outcome.count(kind),
            }
        }
        if !retry.is_empty() {
            let stored: HashMap<String, Device> =
                self.get_many(&retry).await?.into_iter().map(|d| (d.id.clone(), d)).collect();
            let mut writes = Vec::new();
            let mut kinds = Vec::new();
            for report in reported.iter().filter(|r| retry.contains(&r.id)) {
                match stored.get(&report.id).filter(|d| d.gateway_id == gateway_id) {
                    Some(current) => {
                        let (write, kind) =
                            self.report_write(gateway_id, Some(current), report, now)?;
                        writes.push(write);
                        kinds.push((report.id.clone(), kind));
                    }
                    None => outcome.rejected.push(report.id.clone()),
                }
            }
            let refused = self.transact(writes).await?;
            for (i, (id, kind)) in kinds.into_iter().enumerate() {
                if refused.contains(&i) {
                    outcome.rejected.push(id);
                } else {
                    outcome.count(kind);
                }
            }
        }
        Ok(outcome)
    }

    /// Runs `writes` as transactions of up to 100. A write whose condition fails is left out
    /// and its index (into `writes`) returned; the rest are retried (up to [`MAX_ROUNDS`]).
    async fn transact(&self, writes: Vec<TransactWriteItem>) -> Result<HashSet<usize>, StoreError> {
        let mut refused = HashSet::new();
        let indexed: Vec<(usize, TransactWriteItem)> = writes.into_iter().enumerate().collect();
        for chunk in indexed.chunks(TRANSACTION_ITEMS) {
            let mut pending: Vec<(usize, TransactWriteItem)> = chunk.to_vec();
            let mut round = 0;
            while !pending.is_empty() {
                round += 1;
                // Idempotency within DynamoDB's 10-minute window: an SDK retry of an attempt
                // that committed does not apply (and refuse) it twice.
                let token = uuid::Uuid::new_v4().simple().to_string();
                let result = self
                    .client
                    .transact_write_items()
                    .client_request_token(token)
                    .set_transact_items(Some(pending.iter().map(|(_, w)| w.clone()).collect()))
                    .send()
                    .await;
                let error = match result {
                    Ok(_) => break,
                    Err(e) => e,
                };
                let reasons = match error.as_service_error() {
                    Some(TransactWriteItemsError::TransactionCanceledException(c)) => {
                        c.cancellation_reasons().to_vec()
                    }
                    _ => return Err(error.into()),
                };
                if round >= MAX_ROUNDS {
                    return Err(StoreError::Backend(format!(
                        "transaction still cancelled after {MAX_ROUNDS} rounds"
                    )));
                }
                let failed: HashSet<usize> = reasons
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.code() == Some("ConditionalCheckFailed"))
                    .map(|(i, _)| i)
                    .collect();
                // Conflicts with another transaction: back off a little, then retry all.
                tokio_sleep_ms(20 << round).await;
                let mut keep = Vec::new();
                for (i, (index, write)) in pending.into_iter().enumerate() {
                    if failed.contains(&i) {
                        refused.insert(index);
                    } else {
                        keep.push((index, write));
                    }
                }
                pending = keep;
            }
        }
        Ok(refused)
    }

    /// The heartbeat write of one reported device: a conditional `Put` registering it when
    /// `current` is `None`, else an `Update` of its status and heartbeat (and URL, version and
    /// `updated_at` when the digest changed) on condition it is still `gateway_id`'s.
    fn report_write(
        &self,
        gateway_id: &str,
        current: Option<&Device>,
        report: &Reported,
        now: OffsetDateTime,
    ) -> Result<(TransactWriteItem, Kind), StoreError> {
        let Some(current) = current else {
            let url = report.media_url.clone();
            let mut device = Device::new(&report.id, gateway_id, url, self.default_playback, now);
            device.reported = DeviceStatus::Online;
            device.last_heartbeat = Some(now);
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(to_item(&device)))
                .condition_expression("attribute_not_exists(id)")
                .build()
                .map_err(build_error)?;
            return Ok((TransactWriteItem::builder().put(put).build(), Kind::Created));
        };
        let changed = current.media_url.digest != report.media_url.digest;
        let mut update = "SET #status = :online, #last_heartbeat = :beat".to_owned();
        let mut vals = values([
            (":online", s(DeviceStatus::Online.as_str())),
            (":beat", millis_value(now)),
            (":gw", s(gateway_id)),
        ]);
        let mut name_list = vec!["status", "last_heartbeat", "gateway_id"];
        if changed {
            update.push_str(
                ", #media_url = :url, #url_digest = :digest, #version = #version + :one, #updated_at = :now",
            );
            name_list.extend([
                "media_url",
                "url_digest",
                "version",
                "updated_at",
                "media_credentials",
            ]);
            vals.insert(":url".into(), s(&report.media_url.url));
            vals.insert(":digest".into(), s(&report.media_url.digest));
            vals.insert(":one".into(), AttributeValue::N("1".into()));
            vals.insert(
                ":now".into(),
                crate::table::rfc3339(now.replace_nanosecond(0).unwrap_or(now)),
            );
            match &report.media_url.credentials {
                Some(sealed) => {
                    update.push_str(", #media_credentials = :credentials");
                    vals.insert(":credentials".into(), s(sealed));
                }
                None => update.push_str(" REMOVE #media_credentials"),
            }
        }
        let write = self
            .update(&report.id)
            .update_expression(update)
            .condition_expression("#gateway_id = :gw")
            .set_expression_attribute_names(Some(names(&name_list)))
            .set_expression_attribute_values(Some(vals))
            .build()
            .map_err(build_error)?;
        let kind = if changed { Kind::Changed } else { Kind::Online };
        Ok((TransactWriteItem::builder().update(write).build(), kind))
    }
}

/// What one heartbeat write does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Created,
    Changed,
    Online,
    Offline,
}

impl HeartbeatOutcome {
    fn count(&mut self, kind: Kind) {
        match kind {
            Kind::Created => {
                self.created += 1;
                self.online += 1;
            }
            Kind::Changed => {
                self.url_changed += 1;
                self.online += 1;
            }
            Kind::Online => self.online += 1,
            Kind::Offline => self.offline += 1,
        }
    }
}
