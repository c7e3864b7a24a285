//! Asset notifications on SNS: one message per asset reaching `COMPLETE` or `ERROR`.
//!
//! Message body (JSON): `{"asset_id","status","job_id","source":{"bucket","key",..},
//! "outputs":{..}|null,"error":{"code","message"}|null,"updated_at"}`; message attribute
//! `status` (String) for subscription filter policies. Delivery is at least once: a subscriber
//! may see one asset's notification twice and should key on `asset_id` + `status`.

use aws_sdk_sns::types::MessageAttributeValue;
use serde_json::json;
use streamstack_core::asset::{Asset, AssetStatus};
use time::format_description::well_known::Rfc3339;

/// A notification that could not be published (the caller's invocation fails and is retried).
#[derive(Debug, thiserror::Error)]
#[error("SNS publish failed: {0}")]
pub struct NotifyError(pub String);

/// Whether assets in `status` are announced.
pub fn is_announced(status: AssetStatus) -> bool {
    matches!(status, AssetStatus::Complete | AssetStatus::Error)
}

/// The JSON body announcing `asset`.
pub fn message(asset: &Asset) -> serde_json::Value {
    json!({
        "asset_id": asset.id,
        "status": asset.status,
        "job_id": asset.job_id,
        "source": asset.source,
        "outputs": asset.outputs,
        "error": asset.error,
        "updated_at": asset.updated_at.format(&Rfc3339).ok(),
    })
}

/// Publishes `asset` to `topic_arn` when its status [`is_announced`]; `None` topic = no-op.
///
/// # Errors
/// [`NotifyError`] when SNS refuses or cannot be reached.
pub async fn announce(
    sns: &aws_sdk_sns::Client,
    topic_arn: Option<&str>,
    asset: &Asset,
) -> Result<(), NotifyError> {
    let Some(topic) = topic_arn else { return Ok(()) };
    if !is_announced(asset.status) {
        return Ok(());
    }
    let status = MessageAttributeValue::builder()
        .data_type("String")
        .string_value(asset.status.as_str())
        .build()
        .map_err(|e| NotifyError(e.to_string()))?;
    sns.publish()
        .topic_arn(topic)
        .subject(format!("streamstack asset {} {}", asset.id, asset.status.as_str()))
        .message(message(asset).to_string())
        .message_attributes("status", status)
        .send()
        .await
        .map_err(|e| NotifyError(aws_sdk_sns::error::DisplayErrorContext(&e).to_string()))?;
    tracing::info!(asset_id = %asset.id, status = asset.status.as_str(), "notification published");
    Ok(())
}
