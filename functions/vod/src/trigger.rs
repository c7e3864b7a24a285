//! The trigger function: S3 `ObjectCreated:*` events for `inputs/` -> one MediaConvert job
//! per object version.
//!
//! Per record: decode and filter the key ([`crate::source`]), claim the asset (conditional
//! write: concurrent and redelivered events find it claimed or done), resolve settings
//! (defaults < object metadata < sidecar), `CreateJob` with the asset id as
//! `ClientRequestToken`, record the job id. A retryable failure releases the claim and fails
//! the invocation (Lambda retries the event); a permanent one marks the asset `ERROR`.

use crate::config::VodConfig;
use crate::deps::Deps;
use crate::job::{job_request, submit, SubmitError};
use crate::notify::{announce, NotifyError};
use crate::settings::{resolve, Overrides, SettingsError};
use crate::source::{media_source, sidecar_key, Skip};
use aws_lambda_events::s3::{S3Event, S3EventRecord};
use aws_sdk_s3::error::DisplayErrorContext;
use streamstack_core::asset::{Asset, AssetError, AssetStatus, EncodeSettings};
use streamstack_core::asset_store::Claim;
use streamstack_core::config::ConfigError;
use streamstack_core::StoreError;
use thiserror::Error;
use time::OffsetDateTime;

/// How long a claim protects a submission in progress, in milliseconds; longer than the
/// function's timeout, so a crashed invocation's claim expires before S3/Lambda redelivers.
pub const CLAIM_LEASE_MS: u64 = 5 * 60 * 1000;
/// Largest sidecar read, in bytes.
pub const MAX_SIDECAR_BYTES: i64 = 64 * 1024;

/// What became of one event record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not a media upload under `inputs/` (logged).
    Skipped(Skip),
    /// A job was created (or MediaConvert returned the one already created for the token).
    Submitted {
        /// Asset id.
        asset_id: String,
        /// MediaConvert job id.
        job_id: String,
    },
    /// A redelivery: the asset already has its job, or has failed.
    AlreadyHandled {
        /// Asset id.
        asset_id: String,
        /// Its status.
        status: AssetStatus,
    },
    /// A concurrent delivery holds the claim.
    InProgress {
        /// Asset id.
        asset_id: String,
    },
    /// The asset was marked `ERROR` (invalid settings, missing source, refused job).
    Rejected {
        /// Asset id.
        asset_id: String,
        /// Why.
        error: AssetError,
    },
}

/// A failure that fails the invocation so that Lambda delivers the event again.
#[derive(Debug, Error)]
pub enum TriggerError {
    /// DynamoDB failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// S3 failed while reading metadata or the sidecar.
    #[error("S3: {0}")]
    S3(String),
    /// MediaConvert throttled or failed on its side.
    #[error(transparent)]
    Submit(SubmitError),
    /// The SNS notification of a rejected asset failed.
    #[error(transparent)]
    Notify(#[from] NotifyError),
    /// The [`Deps`] carry no MediaConvert client (built by [`Deps::job_state_from_env`]).
    #[error("no MediaConvert client: the trigger needs Deps::from_env")]
    NoMediaConvert,
}

/// Checks at start-up what only the trigger needs: `MEDIACONVERT_ROLE_ARN`.
///
/// # Errors
/// [`ConfigError::Missing`] when the role is not configured.
pub fn check_config(config: &VodConfig) -> Result<(), ConfigError> {
    config.role_arn.as_ref().map(|_| ()).ok_or(ConfigError::Missing("MEDIACONVERT_ROLE_ARN"))
}

/// Handles every record of `event`; each record is independent. Returns the outcomes, or the
/// first retryable failure after all records were tried (redelivery is idempotent, so the
/// records that succeeded are not redone).
///
/// # Errors
/// A [`TriggerError`] when any record needs a retry.
pub async fn handle_event(deps: &Deps, event: S3Event) -> Result<Vec<Outcome>, TriggerError> {
    let mut outcomes = Vec::with_capacity(event.records.len());
    let mut first_error = None;
    for record in &event.records {
        match handle_record(deps, record).await {
            Ok(outcome) => outcomes.push(outcome),
            Err(e) => {
                tracing::error!(error = %e, "record failed; the event will be retried");
                first_error.get_or_insert(e);
            }
        }
    }
    first_error.map_or(Ok(outcomes), Err)
}

/// Handles one record (see the module docs).
///
/// # Errors
/// A [`TriggerError`] when the record needs a retry; the claim has been released then.
pub async fn handle_record(deps: &Deps, record: &S3EventRecord) -> Result<Outcome, TriggerError> {
    let source = match media_source(record) {
        Ok(source) => source,
        Err(skip) => {
            tracing::info!(reason = %skip, "record skipped");
            return Ok(Outcome::Skipped(skip));
        }
    };
    let now = OffsetDateTime::now_utc();
    let now_ms = (now.unix_timestamp_nanos() / 1_000_000) as u64;
    let asset = Asset::submitting(source, now, now_ms + CLAIM_LEASE_MS);
    let asset_id = asset.id.clone();
    let span = tracing::info_span!("asset", id = %asset_id, key = %asset.source.key);
    let _enter = span.enter();
    match deps.assets.claim(&asset, now_ms).await? {
        Claim::Claimed(_) => {}
        Claim::Busy(_) => {
            tracing::info!("another delivery is submitting this asset");
            return Ok(Outcome::InProgress { asset_id });
        }
        Claim::Done(current) => {
            tracing::info!(status = current.status.as_str(), "redelivered event; nothing to do");
            return Ok(Outcome::AlreadyHandled { asset_id, status: current.status });
        }
    }
    let result = submit_claimed(deps, &asset).await;
    if result.is_err() {
        if let Err(e) = deps.assets.release_claim(&asset_id).await {
            tracing::warn!(error = %e, "could not release the claim; it expires by itself");
        }
    }
    result
}

async fn submit_claimed(deps: &Deps, asset: &Asset) -> Result<Outcome, TriggerError> {
    let settings = match load_settings(deps, asset).await? {
        Ok(settings) => settings,
        Err(error) => return reject(deps, asset, error, None).await,
    };
    let Some(request) = job_request(
        &asset.id,
        &asset.source,
        &settings,
        &deps.config.presets,
        &deps.config.stack_name,
    ) else {
        let error = AssetError {
            code: "InvalidSettings".into(),
            message: format!("unknown ladder {:?}", settings.ladder),
        };
        return reject(deps, asset, error, Some(&settings)).await;
    };
    let mediaconvert = deps.mediaconvert.as_ref().ok_or(TriggerError::NoMediaConvert)?;
    let role = deps.config.role_arn.as_deref().unwrap_or_default();
    match submit(mediaconvert, role, deps.config.queue_arn.as_deref(), request).await {
        Ok(job_id) => {
            deps.assets.record_job(&asset.id, &job_id, &settings).await?;
            tracing::info!(job_id = %job_id, ladder = %settings.ladder, "MediaConvert job created");
            Ok(Outcome::Submitted { asset_id: asset.id.clone(), job_id })
        }
        Err(SubmitError::Permanent(message)) => {
            let error = AssetError { code: "SubmitFailed".into(), message };
            reject(deps, asset, error, Some(&settings)).await
        }
        Err(e @ SubmitError::Retryable(_)) => Err(TriggerError::Submit(e)),
    }
}

async fn reject(
    deps: &Deps,
    asset: &Asset,
    error: AssetError,
    settings: Option<&EncodeSettings>,
) -> Result<Outcome, TriggerError> {
    tracing::warn!(code = %error.code, reason = %error.message, "asset rejected");
    if let Some(failed) = deps.assets.fail_submission(&asset.id, &error, settings).await? {
        announce(&deps.sns, deps.config.topic_arn.as_deref(), &failed).await?;
    }
    Ok(Outcome::Rejected { asset_id: asset.id.clone(), error })
}

/// Resolves the asset's settings: `Ok(Err(_))` is the asset's fault (it becomes `ERROR`),
/// `Err(_)` is S3's (retry).
async fn load_settings(
    deps: &Deps,
    asset: &Asset,
) -> Result<Result<EncodeSettings, AssetError>, TriggerError> {
    let src = &asset.source;
    let head = deps
        .s3
        .head_object()
        .bucket(&src.bucket)
        .key(&src.key)
        .set_version_id(src.version_id.clone())
        .send()
        .await;
    let metadata = match head {
        Ok(out) => out.metadata.unwrap_or_default(),
        Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
            return Ok(Err(AssetError {
                code: "SourceMissing".into(),
                message: format!("{} no longer exists", src.s3_url()),
            }))
        }
        Err(e) => return Err(TriggerError::S3(DisplayErrorContext(&e).to_string())),
    };
    let invalid =
        |e: SettingsError| AssetError { code: "InvalidSettings".into(), message: e.to_string() };
    let from_meta = match Overrides::from_metadata(&metadata) {
        Ok(o) => o,
        Err(e) => return Ok(Err(invalid(e))),
    };
    let sidecar = sidecar_key(&src.key);
    let origin = format!("sidecar {sidecar}");
    let from_sidecar = match read_sidecar(deps, &src.bucket, &sidecar).await? {
        None => Overrides::default(),
        Some(Err(message)) => {
            return Ok(Err(invalid(SettingsError { origin, field: "(document)".into(), message })))
        }
        Some(Ok(body)) => match Overrides::from_sidecar(&origin, &body) {
            Ok(o) => o,
            Err(e) => return Ok(Err(invalid(e))),
        },
    };
    let origin = if from_sidecar == Overrides::default() { "object metadata" } else { &origin };
    Ok(resolve(origin, &from_meta.then(from_sidecar), &deps.config.defaults, &deps.config.presets)
        .map_err(invalid))
}

/// The sidecar's bytes; `None` when there is none, `Some(Err)` when it is too large.
async fn read_sidecar(
    deps: &Deps,
    bucket: &str,
    key: &str,
) -> Result<Option<Result<Vec<u8>, String>>, TriggerError> {
    let out = match deps.s3.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => out,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
        Err(e) => return Err(TriggerError::S3(DisplayErrorContext(&e).to_string())),
    };
    if out.content_length.unwrap_or(0) > MAX_SIDECAR_BYTES {
        return Ok(Some(Err(format!("larger than {MAX_SIDECAR_BYTES} bytes"))));
    }
    let body = out.body.collect().await.map_err(|e| TriggerError::S3(e.to_string()))?;
    Ok(Some(Ok(body.into_bytes().to_vec())))
}
