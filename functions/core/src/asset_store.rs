//! Asset persistence: the [`AssetStore`] trait and its DynamoDB implementation.
//!
//! One item per asset, partition key `id` (S); the attributes are [`Asset`]'s fields (nested
//! structs as maps). Every transition is a conditional write, so that concurrent and
//! redelivered events cannot create a second job or move an asset backwards.

use crate::asset::{Asset, AssetError, AssetOutputs, AssetStatus, EncodeSettings};
use crate::paging::Page;
use crate::store::StoreError;
use crate::table::{is_conditional_failure, rfc3339, scan_page};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_dynamodb::Client;
use std::collections::HashMap;
use time::OffsetDateTime;

/// Outcome of [`AssetStore::claim`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The caller holds the submission claim (a new asset, or an unfinished one whose previous
    /// claim expired or was released) and must create the job.
    Claimed(Asset),
    /// Another invocation holds a live claim on this asset.
    Busy(Asset),
    /// The asset already has its job (or has failed); nothing to do.
    Done(Asset),
}

/// One MediaConvert job state change to apply to an asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobUpdate {
    /// MediaConvert job id the event is about.
    pub job_id: String,
    /// New status.
    pub status: AssetStatus,
    /// The event's `detail.timestamp`, Unix milliseconds.
    pub event_ms: u64,
    /// `jobPercentComplete`, for progress updates.
    pub progress_percent: Option<u8>,
    /// Outputs, for `COMPLETE`.
    pub outputs: Option<AssetOutputs>,
    /// Reason, for `ERROR`.
    pub error: Option<AssetError>,
}

/// Outcome of [`AssetStore::apply_job_update`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The update moved the asset; here it is after the write.
    Updated(Asset),
    /// The update is a duplicate or older than what is stored (or the asset is final); the
    /// stored asset is unchanged.
    Stale(Asset),
    /// No asset has that id.
    Missing,
}

/// Asset persistence used by the VOD functions and the API.
#[async_trait]
pub trait AssetStore: Send + Sync {
    /// Claims the right to create `asset`'s MediaConvert job until `asset.claim_until_ms`:
    /// inserts it if new, or re-claims a `SUBMITTING` asset whose claim is absent or older
    /// than `now_ms`.
    async fn claim(&self, asset: &Asset, now_ms: u64) -> Result<Claim, StoreError>;

    /// Gives the claim up (after a retryable failure) so that a redelivery may try again.
    async fn release_claim(&self, id: &str) -> Result<(), StoreError>;

    /// Records the created job: `SUBMITTING` -> `SUBMITTED` with `job_id` and `settings`. When a
    /// job event already moved the asset further, only `job_id`/`settings` are written.
    async fn record_job(
        &self,
        id: &str,
        job_id: &str,
        settings: &EncodeSettings,
    ) -> Result<(), StoreError>;

    /// Marks a `SUBMITTING` asset `ERROR` (invalid settings, permanent CreateJob failure);
    /// `settings` are recorded when they were resolved. Returns the asset after the write,
    /// or `None` when it was no longer `SUBMITTING`.
    async fn fail_submission(
        &self,
        id: &str,
        error: &AssetError,
        settings: Option<&EncodeSettings>,
    ) -> Result<Option<Asset>, StoreError>;

    /// Applies a job state change unless the asset is final, belongs to another job, or has
    /// already seen a newer event (same timestamp: only a higher [`AssetStatus::rank`] wins).
    async fn apply_job_update(&self, id: &str, update: &JobUpdate) -> Result<Applied, StoreError>;

    /// Reads one asset (strongly consistent); `Ok(None)` when absent.
    async fn get(&self, id: &str) -> Result<Option<Asset>, StoreError>;

    /// Lists up to `limit` assets after `cursor` (a [`Page::next`] value).
    ///
    /// # Errors
    /// [`StoreError::InvalidCursor`] for a cursor this store did not issue.
    async fn list(&self, limit: u32, cursor: Option<&str>) -> Result<Page<Asset>, StoreError>;
}

/// [`AssetStore`] on a DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoAssetStore {
    client: Client,
    table: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// Now, whole seconds, as stored in `updated_at`.
fn now_text() -> AttributeValue {
    let now = OffsetDateTime::now_utc();
    rfc3339(now.replace_nanosecond(0).unwrap_or(now))
}

fn to_attr<T: serde::Serialize>(v: &T) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_item(item: HashMap<String, AttributeValue>) -> Result<Asset, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(format!("asset item: {e}")))
}

impl DynamoAssetStore {
    /// A store on `table` using `client`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self { client, table: table.into() }
    }

    /// Creates the table if it does not exist (local stacks and tests).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when DynamoDB refuses.
    pub async fn create_table_if_missing(&self) -> Result<(), StoreError> {
        crate::table::create_table_if_missing(&self.client, &self.table).await
    }

    fn update(
        &self,
        id: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("id", s(id))
            .expression_attribute_names("#status", "status")
    }

    async fn get_required(&self, id: &str) -> Result<Asset, StoreError> {
        self.get(id).await?.ok_or(StoreError::NotFound)
    }
}

#[async_trait]
impl AssetStore for DynamoAssetStore {
    async fn claim(&self, asset: &Asset, now_ms: u64) -> Result<Claim, StoreError> {
        let item: HashMap<String, AttributeValue> =
            serde_dynamo::to_item(asset).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await;
        match put {
            Ok(_) => return Ok(Claim::Claimed(asset.clone())),
            Err(e) if is_conditional_failure(&e) => {}
            Err(e) => return Err(e.into()),
        }
        let reclaim = self
            .update(&asset.id)
            .update_expression("SET claim_until_ms = :until, updated_at = :now")
            .condition_expression(
                "#status = :submitting AND \
                 (attribute_not_exists(claim_until_ms) OR claim_until_ms < :now_ms)",
            )
            .expression_attribute_values(":until", n(asset.claim_until_ms.unwrap_or(now_ms)))
            .expression_attribute_values(":now", now_text())
            .expression_attribute_values(":now_ms", n(now_ms))
            .expression_attribute_values(":submitting", s(AssetStatus::Submitting.as_str()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match reclaim {
            Ok(out) => Ok(Claim::Claimed(from_item(out.attributes.unwrap_or_default())?)),
            Err(e) if is_conditional_failure(&e) => {
                let current = self.get_required(&asset.id).await?;
                Ok(if current.status == AssetStatus::Submitting {
                    Claim::Busy(current)
                } else {
                    Claim::Done(current)
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn release_claim(&self, id: &str) -> Result<(), StoreError> {
        let out = self
            .update(id)
            .update_expression("REMOVE claim_until_ms SET updated_at = :now")
            .condition_expression("#status = :submitting")
            .expression_attribute_values(":now", now_text())
            .expression_attribute_values(":submitting", s(AssetStatus::Submitting.as_str()))
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) if is_conditional_failure(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn record_job(
        &self,
        id: &str,
        job_id: &str,
        settings: &EncodeSettings,
    ) -> Result<(), StoreError> {
        let first = self
            .update(id)
            .update_expression(
                "SET #status = :submitted, job_id = :job, settings = :settings, updated_at = :now \
                 REMOVE claim_until_ms",
            )
            .condition_expression("#status = :submitting")
            .expression_attribute_values(":submitted", s(AssetStatus::Submitted.as_str()))
            .expression_attribute_values(":submitting", s(AssetStatus::Submitting.as_str()))
            .expression_attribute_values(":job", s(job_id))
            .expression_attribute_values(":settings", to_attr(settings)?)
            .expression_attribute_values(":now", now_text())
            .send()
            .await;
        match first {
            Ok(_) => return Ok(()),
            Err(e) if is_conditional_failure(&e) => {}
            Err(e) => return Err(e.into()),
        }
        // A job event got here first (it carries the asset id in userMetadata): keep its status.
        self.update(id)
            .update_expression("SET job_id = :job, settings = :settings REMOVE claim_until_ms")
            .condition_expression("attribute_exists(id)")
            .expression_attribute_values(":job", s(job_id))
            .expression_attribute_values(":settings", to_attr(settings)?)
            .send()
            .await
            .map_err(
                |e| {
                    if is_conditional_failure(&e) {
                        StoreError::NotFound
                    } else {
                        e.into()
                    }
                },
            )?;
        Ok(())
    }

    async fn fail_submission(
        &self,
        id: &str,
        error: &AssetError,
        settings: Option<&EncodeSettings>,
    ) -> Result<Option<Asset>, StoreError> {
        let mut expr = "SET #status = :error, #error = :reason, updated_at = :now".to_owned();
        let mut req = self
            .update(id)
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(":error", s(AssetStatus::Error.as_str()))
            .expression_attribute_values(":reason", to_attr(error)?)
            .expression_attribute_values(":now", now_text())
            .expression_attribute_values(":submitting", s(AssetStatus::Submitting.as_str()));
        if let Some(settings) = settings {
            expr.push_str(", settings = :settings");
            req = req.expression_attribute_values(":settings", to_attr(settings)?);
        }
        expr.push_str(" REMOVE claim_until_ms");
        let out = req
            .update_expression(expr)
            .condition_expression("#status = :submitting")
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match out {
            Ok(out) => Ok(Some(from_item(out.attributes.unwrap_or_default())?)),
            Err(e) if is_conditional_failure(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn apply_job_update(&self, id: &str, update: &JobUpdate) -> Result<Applied, StoreError> {
        let mut sets =
            vec!["#status = :status", "job_id = :job", "job_event_ms = :t", "updated_at = :now"];
        let mut req = self
            .update(id)
            .expression_attribute_values(":status", s(update.status.as_str()))
            .expression_attribute_values(":job", s(update.job_id.as_str()))
            .expression_attribute_values(":t", n(update.event_ms))
            .expression_attribute_values(":now", now_text());
        if let Some(p) = update.progress_percent {
            sets.push("progress_percent = :p");
            req = req.expression_attribute_values(":p", n(u64::from(p)));
        }
        if let Some(outputs) = &update.outputs {
            sets.push("outputs = :outputs");
            req = req.expression_attribute_values(":outputs", to_attr(outputs)?);
        }
        if let Some(error) = &update.error {
            sets.push("#error = :reason");
            req = req
                .expression_attribute_names("#error", "error")
                .expression_attribute_values(":reason", to_attr(error)?);
        }
        // Never leave a final status; never take an older event; on equal timestamps only a
        // higher rank wins (e.g. PROGRESSING and COMPLETE stamped in the same millisecond).
        let mut finals = Vec::new();
        let mut lower = Vec::new();
        for (i, st) in AssetStatus::ALL.into_iter().enumerate() {
            let name = format!(":s{i}");
            if st.is_final() {
                finals.push(name.clone());
            } else if st.rank() < update.status.rank() {
                lower.push(name.clone());
            } else {
                continue;
            }
            req = req.expression_attribute_values(name, s(st.as_str()));
        }
        let same_time_ok = if lower.is_empty() {
            String::new()
        } else {
            format!(" OR (job_event_ms = :t AND #status IN ({}))", lower.join(", "))
        };
        let condition = format!(
            "attribute_exists(id) AND (attribute_not_exists(job_id) OR job_id = :job) \
             AND NOT (#status IN ({})) \
             AND (attribute_not_exists(job_event_ms) OR job_event_ms < :t{same_time_ok})",
            finals.join(", ")
        );
        let out = req
            .update_expression(format!("SET {} REMOVE claim_until_ms", sets.join(", ")))
            .condition_expression(condition)
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match out {
            Ok(out) => Ok(Applied::Updated(from_item(out.attributes.unwrap_or_default())?)),
            Err(e) if is_conditional_failure(&e) => {
                Ok(self.get(id).await?.map_or(Applied::Missing, Applied::Stale))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn get(&self, id: &str) -> Result<Option<Asset>, StoreError> {
        crate::table::get_consistent(&self.client, &self.table, id)
            .await?
            .map(from_item)
            .transpose()
    }

    async fn list(&self, limit: u32, cursor: Option<&str>) -> Result<Page<Asset>, StoreError> {
        let page = scan_page(&self.client, &self.table, limit, cursor).await?;
        let items = page.items.into_iter().map(from_item).collect::<Result<_, _>>()?;
        Ok(Page { items, next: page.next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asset::SourceObject;

    #[test]
    fn item_round_trip() {
        let mut a = Asset::submitting(
            SourceObject {
                bucket: "b".into(),
                key: "inputs/x y.mp4".into(),
                version_id: None,
                sequencer: Some("0A".into()),
                size: 10,
            },
            OffsetDateTime::now_utc(),
            5,
        );
        a.outputs = Some(AssetOutputs { thumbnail_keys: vec!["k".into()], ..Default::default() });
        let item: HashMap<String, AttributeValue> = serde_dynamo::to_item(&a).unwrap();
        assert_eq!(item["status"], s("SUBMITTING"));
        assert_eq!(item["claim_until_ms"], n(5));
        assert_eq!(from_item(item).unwrap(), a);
    }
}
