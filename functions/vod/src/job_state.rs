//! The job-state function: EventBridge "MediaConvert Job State Change" events -> asset status.
//!
//! Event shape: MediaConvert User Guide, "Using EventBridge with MediaConvert" (`detail` has
//! `timestamp` in Unix ms, `jobId`, `status`, `userMetadata`, and per status
//! `outputGroupDetails`, `errorCode`/`errorMessage` or `jobProgress`). Events arrive at least
//! once and in any order; [`streamstack_core::AssetStore::apply_job_update`] makes sure none
//! moves an asset backwards.

use crate::deps::Deps;
use crate::job::{META_ASSET_ID, META_PLAYBACK, META_STACK};
use crate::notify::{announce, NotifyError};
use aws_lambda_events::eventbridge::EventBridgeEvent;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use streamstack_core::asset::{output_prefix, AssetError, AssetOutputs, AssetStatus, Rendition};
use streamstack_core::asset_store::{Applied, JobUpdate};
use streamstack_core::Playback;
use streamstack_core::StoreError;
use thiserror::Error;

/// `detail-type` of the events handled here.
pub const DETAIL_TYPE: &str = "MediaConvert Job State Change";

/// `detail` of a MediaConvert job state change event (fields this function reads).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobStateDetail {
    /// When the state changed, Unix milliseconds.
    pub timestamp: u64,
    /// MediaConvert job id.
    pub job_id: String,
    /// `SUBMITTED`, `PROGRESSING`, `STATUS_UPDATE`, `COMPLETE`, `ERROR`, `CANCELED`,
    /// `INPUT_INFORMATION`, `NEW_WARNING`, `QUEUE_HOP`.
    pub status: String,
    /// The job's `UserMetadata`.
    #[serde(default)]
    pub user_metadata: HashMap<String, String>,
    /// Outputs (`COMPLETE`).
    #[serde(default)]
    pub output_group_details: Vec<OutputGroupDetail>,
    /// Numeric error code (`ERROR`).
    #[serde(default)]
    pub error_code: Option<i64>,
    /// Error text (`ERROR`).
    #[serde(default)]
    pub error_message: Option<String>,
    /// Progress (`STATUS_UPDATE`).
    #[serde(default)]
    pub job_progress: Option<JobProgress>,
}

/// `detail.jobProgress`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobProgress {
    /// 0..=100.
    #[serde(default)]
    pub job_percent_complete: Option<u8>,
}

/// One entry of `detail.outputGroupDetails`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputGroupDetail {
    /// `HLS_GROUP`, `FILE_GROUP`, `DASH_ISO_GROUP`, `CMAF_GROUP`, `MS_SMOOTH_GROUP`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Master playlist paths (`s3://bucket/key`), for streaming groups.
    #[serde(default)]
    pub playlist_file_paths: Vec<String>,
    /// One entry per output.
    #[serde(default)]
    pub output_details: Vec<OutputDetail>,
}

/// One entry of `outputDetails`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputDetail {
    /// Written files (`s3://bucket/key`); for frame capture only the last one.
    #[serde(default)]
    pub output_file_paths: Vec<String>,
    /// Duration, milliseconds.
    #[serde(default)]
    pub duration_in_ms: Option<u64>,
    /// Video properties.
    #[serde(default)]
    pub video_details: Option<VideoDetails>,
}

/// `videoDetails` of an output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VideoDetails {
    /// Width, pixels.
    #[serde(default)]
    pub width_in_px: u32,
    /// Height, pixels.
    #[serde(default)]
    pub height_in_px: u32,
    /// Average bitrate, bits per second.
    #[serde(default)]
    pub average_bitrate: Option<u64>,
}

/// What became of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not for this stack, not a status this function tracks, or without an asset id.
    Ignored(String),
    /// The asset moved to this status.
    Applied(AssetStatus),
    /// Duplicate, older than the stored state, or the asset is final: nothing changed.
    Stale(AssetStatus),
    /// No asset has the id in the event's metadata.
    UnknownAsset(String),
}

/// A failure that fails the invocation (EventBridge retries it).
#[derive(Debug, Error)]
pub enum JobStateError {
    /// DynamoDB failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Listing thumbnails failed.
    #[error("S3: {0}")]
    S3(String),
    /// The notification failed.
    #[error(transparent)]
    Notify(#[from] NotifyError),
}

/// Handles one event.
///
/// # Errors
/// A [`JobStateError`] on DynamoDB, S3 or SNS failure.
pub async fn handle_event(
    deps: &Deps,
    event: EventBridgeEvent<JobStateDetail>,
) -> Result<Outcome, JobStateError> {
    let d = event.detail;
    if d.user_metadata.get(META_STACK) != Some(&deps.config.stack_name) {
        return Ok(Outcome::Ignored(format!("job {} belongs to another stack", d.job_id)));
    }
    let Some(asset_id) = d.user_metadata.get(META_ASSET_ID).cloned() else {
        return Ok(Outcome::Ignored(format!("job {} has no {META_ASSET_ID}", d.job_id)));
    };
    let status = match d.status.as_str() {
        "SUBMITTED" => AssetStatus::Submitted,
        "PROGRESSING" | "STATUS_UPDATE" => AssetStatus::Progressing,
        "COMPLETE" => AssetStatus::Complete,
        "ERROR" => AssetStatus::Error,
        "CANCELED" => AssetStatus::Canceled,
        other => return Ok(Outcome::Ignored(format!("status {other} is not tracked"))),
    };
    let span = tracing::info_span!("asset", id = %asset_id, job_id = %d.job_id);
    let _enter = span.enter();
    let Some(current) = deps.assets.get(&asset_id).await? else {
        tracing::warn!("event for an unknown asset");
        return Ok(Outcome::UnknownAsset(asset_id));
    };
    // A final asset refuses the update below anyway; skip the listing for it.
    let outputs = match status {
        AssetStatus::Complete if !current.status.is_final() => {
            // The job's own record of where it wrote (its UserMetadata), else the asset's
            // settings: a COMPLETE may arrive before the trigger recorded them. Jobs from
            // before playback authorization carry neither and wrote public outputs.
            let playback = d
                .user_metadata
                .get(META_PLAYBACK)
                .and_then(|p| Playback::parse(p))
                .or(current.settings.as_ref().map(|s| s.playback))
                .unwrap_or(Playback::Public);
            Some(outputs(deps, &current.source.bucket, &asset_id, playback, &d).await?)
        }
        _ => None,
    };
    let update = JobUpdate {
        job_id: d.job_id.clone(),
        status,
        event_ms: d.timestamp,
        progress_percent: match status {
            AssetStatus::Complete => Some(100),
            _ => d.job_progress.as_ref().and_then(|p| p.job_percent_complete).map(|p| p.min(100)),
        },
        outputs,
        error: (status == AssetStatus::Error).then(|| AssetError {
            code: d.error_code.map_or_else(|| "Unknown".to_owned(), |c| c.to_string()),
            message: d.error_message.clone().unwrap_or_default(),
        }),
    };
    match deps.assets.apply_job_update(&asset_id, &update).await? {
        Applied::Updated(asset) => {
            tracing::info!(status = asset.status.as_str(), "asset updated");
            announce(&deps.sns, deps.config.topic_arn.as_deref(), &asset).await?;
            Ok(Outcome::Applied(asset.status))
        }
        Applied::Stale(asset) => {
            // The same event again (an earlier delivery may have failed to notify): announce
            // again; subscribers get at-least-once delivery anyway.
            if asset.status == status && asset.job_event_ms == Some(d.timestamp) {
                announce(&deps.sns, deps.config.topic_arn.as_deref(), &asset).await?;
            }
            tracing::info!(stored = asset.status.as_str(), event = %d.status, "stale event");
            Ok(Outcome::Stale(asset.status))
        }
        Applied::Missing => Ok(Outcome::UnknownAsset(asset_id)),
    }
}

/// The object key of an `s3://bucket/key` path.
fn key_of(path: &str) -> Option<String> {
    path.strip_prefix("s3://")?.split_once('/').map(|(_, key)| key.to_owned())
}

/// Outputs of a `COMPLETE` event; thumbnails come from listing their prefix, since the event
/// names only the last frame capture.
async fn outputs(
    deps: &Deps,
    bucket: &str,
    asset_id: &str,
    playback: Playback,
    d: &JobStateDetail,
) -> Result<AssetOutputs, JobStateError> {
    let mut out = AssetOutputs::default();
    for group in &d.output_group_details {
        for detail in &group.output_details {
            out.duration_ms = out.duration_ms.max(detail.duration_in_ms);
            let Some(key) = detail.output_file_paths.first().and_then(|p| key_of(p)) else {
                continue;
            };
            match (group.kind.as_str(), &detail.video_details) {
                ("HLS_GROUP", Some(v)) => out.renditions.push(Rendition {
                    width: v.width_in_px,
                    height: v.height_in_px,
                    average_bitrate: v.average_bitrate,
                    playlist_key: key,
                }),
                ("FILE_GROUP", _) if key.ends_with(".mp4") => out.mp4_key = Some(key),
                _ => {}
            }
        }
        if group.kind == "HLS_GROUP" {
            out.hls_master_key = group.playlist_file_paths.first().and_then(|p| key_of(p));
        }
    }
    out.renditions.sort_by_key(|r| (r.height, r.width));
    out.thumbnail_keys =
        list_keys(deps, bucket, &output_prefix(asset_id, playback, "thumbnails")).await?;
    out.thumbnail_keys.retain(|k| k.ends_with(".jpg"));
    Ok(out)
}

async fn list_keys(deps: &Deps, bucket: &str, prefix: &str) -> Result<Vec<String>, JobStateError> {
    let mut keys = Vec::new();
    let mut pages = deps.s3.list_objects_v2().bucket(bucket).prefix(prefix).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            JobStateError::S3(aws_sdk_s3::error::DisplayErrorContext(&e).to_string())
        })?;
        keys.extend(page.contents.unwrap_or_default().into_iter().filter_map(|o| o.key));
    }
    keys.sort();
    Ok(keys)
}
