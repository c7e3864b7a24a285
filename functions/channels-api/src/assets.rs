//! `GET /assets` and `GET /assets/{id}`: VOD assets with their output URLs.

use crate::error::ApiError;
use crate::extract::Path;
use crate::handlers::{page_limit, ListQuery};
use crate::Deps;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::Arc;
use streamstack_core::asset::{is_valid_asset_id, Asset, AssetError, AssetStatus, EncodeSettings};
use streamstack_core::playback::asset_prefix;
use streamstack_core::Config;
use time::OffsetDateTime;

/// An asset as the API shows it: stored object keys become playback/download URLs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AssetView {
    /// Asset id (32 hex characters).
    pub id: String,
    /// `SUBMITTING`, `SUBMITTED`, `PROGRESSING`, `COMPLETE`, `ERROR` or `CANCELED`.
    pub status: AssetStatus,
    /// Source object: `{"bucket","key","version_id"?,"size"}` (size in bytes).
    #[schema(value_type = crate::openapi::AssetSource)]
    pub source: Value,
    /// Encoding choices (`ladder`, `segment_length` s, `thumbnail_interval` s, `playback`),
    /// once resolved.
    pub settings: Option<EncodeSettings>,
    /// `{"mode","playlist_url","signed_playlist_url","authorization"}` for the HLS master
    /// playlist ([`crate::playback::body`]; the credentials cover every output of the asset:
    /// renditions, MP4, thumbnails). Only in `GET /assets/{id}` once `COMPLETE`, else `null`.
    #[schema(value_type = Option<crate::openapi::PlaybackView>)]
    pub playback: Option<Value>,
    /// MediaConvert job id.
    pub job_id: Option<String>,
    /// Job progress, 0..=100.
    pub progress_percent: Option<u8>,
    /// `{"hls_url","mp4_url","thumbnail_urls":[..],"duration_ms","renditions":[..]}` once
    /// `COMPLETE`, else `null`.
    #[schema(value_type = Option<crate::openapi::AssetOutputsView>)]
    pub outputs: Option<Value>,
    /// `{"code","message"}` when `ERROR`.
    pub error: Option<AssetError>,
    /// RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl AssetView {
    /// The view of `asset`, URLs made with [`Config::media_url`], without `playback`.
    pub fn new(asset: Asset, config: &Config) -> Self {
        let url = |key: &str| config.media_url(key);
        let outputs = asset.outputs.as_ref().map(|o| {
            json!({
                "hls_url": o.hls_master_key.as_deref().and_then(url),
                "mp4_url": o.mp4_key.as_deref().and_then(url),
                "thumbnail_urls": o.thumbnail_keys.iter().filter_map(|k| url(k)).collect::<Vec<_>>(),
                "duration_ms": o.duration_ms,
                "renditions": o.renditions.iter().map(|r| json!({
                    "width": r.width,
                    "height": r.height,
                    "average_bitrate": r.average_bitrate,
                    "playlist_url": url(&r.playlist_key),
                })).collect::<Vec<_>>(),
            })
        });
        Self {
            id: asset.id,
            status: asset.status,
            source: json!({
                "bucket": asset.source.bucket,
                "key": asset.source.key,
                "version_id": asset.source.version_id,
                "size": asset.source.size,
            }),
            settings: asset.settings,
            playback: None,
            job_id: asset.job_id,
            progress_percent: asset.progress_percent,
            outputs,
            error: asset.error,
            created_at: asset.created_at,
            updated_at: asset.updated_at,
        }
    }
}

#[utoipa::path(
    get,
    path = "/assets",
    operation_id = "list_assets",
    tag = "assets",
    summary = "List VOD assets",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size, 1..=100 (default 25)"),
        ("next" = Option<String>, Query, description = "Cursor from the previous page's `next`"),
    ),
    responses(
        (status = 200, description = "A page of assets", body = crate::openapi::AssetList,
            links(("GetFirstAsset" = (operation_id = "get_asset", parameters(("id" = "$response.body#/items/0/id")))))),
        (status = 400, description = "Invalid `limit` or `next`", body = crate::openapi::ErrorBody),
    ),
)]
pub(crate) async fn list(
    State(deps): State<Arc<Deps>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let (limit, next) = page_limit(query)?;
    let page = deps.assets.list(limit, next.as_deref()).await?;
    let items: Vec<AssetView> =
        page.items.into_iter().map(|a| AssetView::new(a, &deps.config)).collect();
    Ok(Json(json!({ "items": items, "next": page.next })))
}

#[utoipa::path(
    get,
    path = "/assets/{id}",
    operation_id = "get_asset",
    tag = "assets",
    summary = "Get a VOD asset",
    params(
        ("id" = String, Path, description = "Asset id (32 hex characters)"),
    ),
    responses(
        (status = 200, description = "The asset, with `playback` once `COMPLETE`", body = AssetView),
        (status = 400, description = "A path parameter that is not UTF-8", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such asset", body = crate::openapi::ErrorBody),
    ),
)]
pub(crate) async fn get_one(
    State(deps): State<Arc<Deps>>,
    Path(id): Path<String>,
) -> Result<Json<AssetView>, ApiError> {
    let not_found = || ApiError::NotFound(format!("asset {id:?} not found"));
    if !is_valid_asset_id(&id) {
        // Not echoed: it can be anything, of any length.
        return Err(ApiError::NotFound("asset not found".into()));
    }
    let asset = deps.assets.get(&id).await?.ok_or_else(not_found)?;
    let mode = asset.settings.as_ref().map(|s| s.playback);
    let master = asset.outputs.as_ref().and_then(|o| o.hls_master_key.clone());
    let mut view = AssetView::new(asset, &deps.config);
    if let (Some(mode), Some(master)) = (mode, master) {
        let prefix = asset_prefix(&view.id, mode);
        view.playback = Some(crate::playback::body(&deps, mode, &prefix, &master));
    }
    Ok(Json(view))
}
