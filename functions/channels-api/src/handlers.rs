//! Route handlers. Each takes the shared [`Deps`] by `State` and returns JSON or [`ApiError`].

use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::Deps;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header::{ETAG, IF_MATCH, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use streamstack_core::domain::is_valid_channel_id;
use streamstack_core::signing;
use streamstack_core::{Channel, ChannelPatch, NewChannel, StoreError};
use time::OffsetDateTime;

type Shared = State<Arc<Deps>>;

fn with_etag(status: StatusCode, channel: &Channel) -> Response {
    let etag = HeaderValue::from_str(&format!("\"{}\"", channel.version))
        .unwrap_or(HeaderValue::from_static("\"0\""));
    (status, [(ETAG, etag)], Json(channel)).into_response()
}

/// 404 for a path id that no channel can have (never sent to DynamoDB).
fn checked_id(id: &str) -> Result<&str, ApiError> {
    if is_valid_channel_id(id) {
        Ok(id)
    } else {
        Err(ApiError::NotFound(format!("channel {id:?} not found")))
    }
}

async fn load(deps: &Deps, id: &str) -> Result<Channel, ApiError> {
    let id = checked_id(id)?;
    deps.store.get(id).await?.ok_or_else(|| ApiError::NotFound(format!("channel {id} not found")))
}

#[utoipa::path(
    post,
    path = "/channels",
    operation_id = "create_channel",
    tag = "channels",
    summary = "Create a channel",
    request_body(content = streamstack_core::NewChannel, content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = streamstack_core::Channel,
            headers(("ETag" = String, description = "The channel's `version`, quoted: `\"3\"`"), ("Location" = String, description = "`/channels/{id}`")),
            links(
                ("GetChannel" = (operation_id = "get_channel", parameters(("id" = "$response.body#/id")))),
                ("PatchChannel" = (operation_id = "patch_channel", parameters(("id" = "$response.body#/id"), ("If-Match" = "$response.header.ETag")))),
                ("DeleteChannel" = (operation_id = "delete_channel", parameters(("id" = "$response.body#/id")))),
                ("GetChannelEndpoints" = (operation_id = "get_channel_endpoints", parameters(("id" = "$response.body#/id")))),
                ("RotateChannelKey" = (operation_id = "rotate_channel_key", parameters(("id" = "$response.body#/id")))),
            )),
        (status = 400, description = "Invalid JSON or field", body = crate::openapi::ErrorBody),
        (status = 413, description = "Body larger than 64 KiB", body = crate::openapi::ErrorBody),
        (status = 415, description = "Body not `application/json`", body = crate::openapi::ErrorBody),
    ),
)]
pub(crate) async fn create(
    State(deps): Shared,
    JsonBody(body): JsonBody<NewChannel>,
) -> Result<Response, ApiError> {
    let playback = crate::playback::for_new(&deps, body.playback)?;
    let channel = body.into_channel(OffsetDateTime::now_utc(), playback)?;
    deps.store.create(&channel).await?;
    let location = HeaderValue::from_str(&format!("/channels/{}", channel.id))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut response = with_etag(StatusCode::CREATED, &channel);
    response.headers_mut().insert(LOCATION, location);
    Ok(response)
}

/// Query of the listing routes: `limit` (1..=100, default 25) and `next` (a cursor).
#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    limit: Option<String>,
    next: Option<String>,
}

/// The page size and cursor of a listing query.
pub(crate) fn page_limit(
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<(u32, Option<String>), ApiError> {
    let Query(query) = query.map_err(|e| ApiError::InvalidParameter {
        field: "query".into(),
        message: e.body_text(),
    })?;
    let limit = match query.limit.as_deref() {
        None => 25,
        Some(raw) => match raw.parse::<u32>() {
            Ok(n @ 1..=100) => n,
            _ => {
                return Err(ApiError::InvalidParameter {
                    field: "limit".into(),
                    message: format!("limit: must be an integer 1..=100, got {raw:?}"),
                })
            }
        },
    };
    Ok((limit, query.next))
}

#[utoipa::path(
    get,
    path = "/channels",
    operation_id = "list_channels",
    tag = "channels",
    summary = "List channels",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size, 1..=100 (default 25)"),
        ("next" = Option<String>, Query, description = "Cursor from the previous page's `next`"),
    ),
    responses(
        (status = 200, description = "A page of channels", body = crate::openapi::ChannelList,
            links(("GetFirstChannel" = (operation_id = "get_channel", parameters(("id" = "$response.body#/items/0/id")))))),
        (status = 400, description = "Invalid `limit` or `next`", body = crate::openapi::ErrorBody),
    ),
)]
pub(crate) async fn list(
    State(deps): Shared,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (limit, next) = page_limit(query)?;
    let page = deps.store.list(limit, next.as_deref()).await?;
    Ok(Json(json!({ "items": page.items, "next": page.next })).into_response())
}

#[utoipa::path(
    get,
    path = "/channels/{id}",
    operation_id = "get_channel",
    tag = "channels",
    summary = "Get a channel",
    params(
        ("id" = String, Path, description = "Channel id (32 hex characters)"),
    ),
    responses(
        (status = 200, description = "The channel", body = streamstack_core::Channel, headers(("ETag" = String, description = "The channel's `version`, quoted: `\"3\"`"))),
        (status = 404, description = "No such channel", body = crate::openapi::ErrorBody),
    ),
)]
pub(crate) async fn get_one(
    State(deps): Shared,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(with_etag(StatusCode::OK, &load(&deps, &id).await?))
}

/// The version named by `If-Match` (`"3"`, `W/"3"` or `3`): 428 when absent, 400 when not
/// a version.
pub(crate) fn if_match_version(headers: &HeaderMap) -> Result<u64, ApiError> {
    let raw = headers.get(IF_MATCH).ok_or(ApiError::PreconditionRequired)?;
    let text = raw.to_str().unwrap_or("").trim();
    let text = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    text.parse().map_err(|_| ApiError::InvalidParameter {
        field: "If-Match".into(),
        message: format!("If-Match: expected a version (the ETag) such as \"3\", got {raw:?}"),
    })
}

#[utoipa::path(
    patch,
    path = "/channels/{id}",
    operation_id = "patch_channel",
    tag = "channels",
    summary = "Change a channel (JSON merge patch)",
    params(
        ("id" = String, Path, description = "Channel id (32 hex characters)"),
        ("If-Match" = String, Header, description = "The current `ETag` (`\"3\"`); 428 without it, 412 when stale"),
    ),
    request_body(content = streamstack_core::ChannelPatch, content_type = "application/json"),
    responses(
        (status = 200, description = "The changed channel", body = streamstack_core::Channel, headers(("ETag" = String, description = "The channel's `version`, quoted: `\"3\"`"))),
        (status = 400, description = "Invalid JSON, field or `If-Match`", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such channel", body = crate::openapi::ErrorBody),
        (status = 412, description = "`If-Match` does not match the current version", body = crate::openapi::ErrorBody),
        (status = 413, description = "Body larger than 64 KiB", body = crate::openapi::ErrorBody),
        (status = 415, description = "Body not `application/json`", body = crate::openapi::ErrorBody),
        (status = 428, description = "No `If-Match`", body = crate::openapi::ErrorBody),
    ),
)]
pub(crate) async fn patch(
    State(deps): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<ChannelPatch>,
) -> Result<Response, ApiError> {
    let expected = if_match_version(&headers)?;
    let current = load(&deps, &id).await?;
    if current.version != expected {
        return Err(ApiError::PreconditionFailed);
    }
    let next = body.apply(&current, OffsetDateTime::now_utc())?;
    let stored = deps.store.replace(&next, expected).await?;
    Ok(with_etag(StatusCode::OK, &stored))
}

#[utoipa::path(
    delete,
    path = "/channels/{id}",
    operation_id = "delete_channel",
    tag = "channels",
    summary = "Delete a channel",
    params(
        ("id" = String, Path, description = "Channel id (32 hex characters)"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such channel", body = crate::openapi::ErrorBody),
    ),
)]
pub(crate) async fn delete(
    State(deps): Shared,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    deps.store.delete(checked_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get,
    path = "/channels/{id}/endpoints",
    operation_id = "get_channel_endpoints",
    tag = "channels",
    summary = "Ingest and playback endpoints of a channel",
    params(
        ("id" = String, Path, description = "Channel id (32 hex characters)"),
    ),
    responses(
        (status = 200, description = "Signed push URLs (valid for `PUSH_URL_TTL_SECS`) and playback", body = crate::openapi::ChannelEndpoints),
        (status = 404, description = "No such channel", body = crate::openapi::ErrorBody),
    ),
)]
pub(crate) async fn endpoints(
    State(deps): Shared,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let channel = load(&deps, &id).await?;
    Ok(Json(endpoints_body(&deps, &channel)).into_response())
}

/// `POST /channels/{id}/rotate-key`: a new secret, so push URLs signed with the old one are
/// refused from then on; answers with the new endpoints.
#[utoipa::path(
    post,
    path = "/channels/{id}/rotate-key",
    operation_id = "rotate_channel_key",
    tag = "channels",
    summary = "Rotate a channel's signing key",
    params(
        ("id" = String, Path, description = "Channel id (32 hex characters)"),
    ),
    responses(
        (status = 200, description = "The new endpoints; push URLs signed with the old key are refused from now on", body = crate::openapi::ChannelEndpoints),
        (status = 404, description = "No such channel", body = crate::openapi::ErrorBody),
    ),
)]
pub(crate) async fn rotate_key(
    State(deps): Shared,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = checked_id(&id)?;
    let channel = deps.store.rotate_secret(id).await.map_err(|e| match e {
        StoreError::NotFound => ApiError::NotFound(format!("channel {id} not found")),
        other => other.into(),
    })?;
    tracing::info!(channel = %channel.id, version = channel.version, "channel key rotated");
    Ok(Json(endpoints_body(&deps, &channel)).into_response())
}

/// Body of the endpoints routes: a push URL signed with the channel's current secret, valid
/// for `PUSH_URL_TTL_SECS`, the same over RTMPS and SRT where the stack has them
/// (`INGEST_RTMPS_HOST`, `INGEST_SRT_HOST`), the HLS playback URL, and `playback`
/// ([`crate::playback::body`]: for a signed channel, cookies and a signed playlist URL).
fn endpoints_body(deps: &Deps, channel: &Channel) -> serde_json::Value {
    let now = OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
    let exp = now + deps.config.push_url_ttl_secs;
    let host = &deps.config.ingest_host;
    let mut body = json!({
        "channel_id": channel.id,
        "rtmp": {
            "push_url": signing::push_url(host, &channel.secret, &channel.id, exp),
            "server": format!("rtmp://{host}/{}", signing::RTMP_APP),
            "stream_key": signing::stream_key(&channel.secret, &channel.id, exp),
            "expires_at": OffsetDateTime::from_unix_timestamp(exp as i64)
                .ok()
                .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
        },
        "hls": { "playback_url": deps.config.playback_url(&channel.id, channel.playback) },
        "playback": crate::playback::body(
            deps,
            channel.playback,
            &channel.prefix(),
            &streamstack_core::domain::live_playlist_key(&channel.id, channel.playback),
        ),
    });
    if let Some(rtmps) = &deps.config.ingest_rtmps_host {
        body["rtmps"] = json!({
            "push_url": signing::rtmps_push_url(rtmps, &channel.secret, &channel.id, exp),
            "server": format!("rtmps://{rtmps}/{}", signing::RTMP_APP),
        });
    }
    if let Some(srt) = &deps.config.ingest_srt_host {
        body["srt"] = json!({ "url": signing::srt_url(srt, &channel.secret, &channel.id, exp) });
    }
    body
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::NotFound("no such resource".into())
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
