//! Route handlers. Each takes the shared [`Deps`] by `State` and returns JSON or [`ApiError`].

use crate::error::ApiError;
use crate::extract::{JsonBody, Path};
use crate::Deps;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
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

/// `body` as JSON with `version` as its strong `ETag` (`"3"`).
pub(crate) fn with_etag<T: serde::Serialize>(
    status: StatusCode,
    version: u64,
    body: T,
) -> Response {
    let mut response = (status, Json(body)).into_response();
    // A quoted decimal number is always a valid header value.
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(ETAG, etag);
    }
    response
}

/// 404 for a path id that no channel can have (never sent to DynamoDB, nor echoed).
fn checked_id(id: &str) -> Result<&str, ApiError> {
    if is_valid_channel_id(id) {
        Ok(id)
    } else {
        Err(ApiError::NotFound("channel not found".into()))
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
    let mut response = with_etag(StatusCode::CREATED, channel.version, &channel);
    response.headers_mut().insert(LOCATION, location);
    Ok(response)
}

/// Query of the listing routes: `limit` (1..=100, default 25) and `next` (a cursor).
#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    limit: Option<String>,
    next: Option<String>,
}

/// At most the first 64 characters of a rejected value, for an error message (the rest is
/// the client's own input and need not travel back).
pub(crate) fn truncated(raw: &str) -> String {
    const ECHO: usize = 64;
    match raw.char_indices().nth(ECHO) {
        Some((end, _)) => format!("{}…", &raw[..end]),
        None => raw.to_owned(),
    }
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
                    message: format!("limit: must be an integer 1..=100, got {:?}", truncated(raw)),
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
        (status = 400, description = "A path parameter that is not UTF-8", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such channel", body = crate::openapi::ErrorBody),
    ),
)]
pub(crate) async fn get_one(
    State(deps): Shared,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let channel = load(&deps, &id).await?;
    Ok(with_etag(StatusCode::OK, channel.version, &channel))
}

/// An `If-Match` precondition (RFC 9110 §13.1.1): `*` or a list of entity-tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum IfMatch {
    /// `*`: any current representation.
    Any,
    /// Entity-tags: `(weak, opaque-tag without its quotes)`.
    Tags(Vec<(bool, Vec<u8>)>),
}

impl IfMatch {
    /// Whether the current representation at `version` (ETag `"<version>"`) passes: `*`
    /// always; a list when one of its tags is strong and equal (strong comparison: a weak
    /// tag never matches).
    pub(crate) fn matches(&self, version: u64) -> bool {
        match self {
            Self::Any => true,
            Self::Tags(tags) => {
                let ours = version.to_string();
                tags.iter().any(|(weak, opaque)| !weak && opaque == ours.as_bytes())
            }
        }
    }

    /// Parses the field values (several `If-Match` lines are one comma-separated list):
    /// `*` alone, or `#entity-tag` with `entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE`;
    /// `None` when malformed (`4`, `"7`, `""6""`, `*, "1"`, nothing).
    pub(crate) fn parse<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<Self> {
        let is_ows = |b: u8| b == b' ' || b == b'\t';
        let is_etagc = |b: u8| b == 0x21 || (0x23..=0x7E).contains(&b) || b >= 0x80;
        let (mut any, mut tags) = (0usize, Vec::new());
        for value in values {
            let mut i = 0;
            loop {
                while i < value.len() && (is_ows(value[i]) || value[i] == b',') {
                    i += 1;
                }
                if i == value.len() {
                    break;
                }
                if value[i] == b'*' {
                    any += 1;
                    i += 1;
                } else {
                    let weak = value[i..].starts_with(b"W/");
                    if weak {
                        i += 2;
                    }
                    if value.get(i) != Some(&b'"') {
                        return None;
                    }
                    let start = i + 1;
                    let len = value[start..].iter().position(|&b| b == b'"')?;
                    let opaque = &value[start..start + len];
                    if !opaque.iter().all(|&b| is_etagc(b)) {
                        return None;
                    }
                    tags.push((weak, opaque.to_vec()));
                    i = start + len + 1;
                }
                while i < value.len() && is_ows(value[i]) {
                    i += 1;
                }
                if i < value.len() && value[i] != b',' {
                    return None;
                }
            }
        }
        match (any, tags.is_empty()) {
            (1, true) => Some(Self::Any),
            (0, false) => Some(Self::Tags(tags)),
            _ => None,
        }
    }
}

/// The request's `If-Match`: `None` when absent, 400 `invalid_parameter` when malformed.
pub(crate) fn if_match(headers: &HeaderMap) -> Result<Option<IfMatch>, ApiError> {
    let mut values = headers.get_all(IF_MATCH).iter().peekable();
    if values.peek().is_none() {
        return Ok(None);
    }
    IfMatch::parse(values.map(HeaderValue::as_bytes)).map(Some).ok_or_else(|| {
        ApiError::InvalidParameter {
            field: "If-Match".into(),
            message: "If-Match: expected * or a list of entity-tags such as \"3\" (the ETag)"
                .into(),
        }
    })
}

/// [`if_match`], required: 428 when absent.
pub(crate) fn required_if_match(headers: &HeaderMap) -> Result<IfMatch, ApiError> {
    if_match(headers)?.ok_or(ApiError::PreconditionRequired)
}

/// `PATCH /channels/{id}`: `If-Match` required (428), evaluated against the current version
/// (412); a patch that changes nothing answers 200 with the channel as it is (no new version).
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
    let condition = required_if_match(&headers)?;
    let current = load(&deps, &id).await?;
    if !condition.matches(current.version) {
        return Err(ApiError::PreconditionFailed);
    }
    let next = body.apply(&current, OffsetDateTime::now_utc())?;
    if next.version == current.version {
        return Ok(with_etag(StatusCode::OK, current.version, &current));
    }
    let stored = deps.store.replace(&next, current.version).await?;
    Ok(with_etag(StatusCode::OK, stored.version, &stored))
}

/// `DELETE /channels/{id}`: `If-Match` optional; when given it is evaluated against the
/// current version (400 malformed, 412 no match) and the delete is conditional on it.
#[utoipa::path(
    delete,
    path = "/channels/{id}",
    operation_id = "delete_channel",
    tag = "channels",
    summary = "Delete a channel",
    params(
        ("id" = String, Path, description = "Channel id (32 hex characters)"),
        ("If-Match" = Option<String>, Header, nullable = false, description = "Optional: the `ETag` (`\"3\"`) or `*`; the delete happens only if it matches"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Malformed `If-Match`", body = crate::openapi::ErrorBody),
        (status = 412, description = "`If-Match` does not match the current version", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such channel", body = crate::openapi::ErrorBody),
    ),
)]
pub(crate) async fn delete(
    State(deps): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    match if_match(&headers)? {
        None | Some(IfMatch::Any) => deps.store.delete(checked_id(&id)?).await?,
        Some(condition) => {
            let current = load(&deps, &id).await?;
            if !condition.matches(current.version) {
                return Err(ApiError::PreconditionFailed);
            }
            // Atomic: a write between the read and the delete makes it 412.
            deps.store.delete_if_version(&current.id, current.version).await?;
        }
    }
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
        (status = 400, description = "A path parameter that is not UTF-8", body = crate::openapi::ErrorBody),
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
        (status = 400, description = "A path parameter that is not UTF-8", body = crate::openapi::ErrorBody),
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

#[cfg(test)]
mod tests {
    use super::IfMatch;

    fn parse(values: &[&str]) -> Option<IfMatch> {
        IfMatch::parse(values.iter().map(|v| v.as_bytes()))
    }

    #[test]
    fn if_match_is_rfc_9110() {
        let m = |v: &[&str]| parse(v).unwrap().matches(3);
        assert!(m(&["\"3\""]));
        assert!(m(&["*"]));
        assert!(m(&["\"1\", \"3\""]));
        assert!(m(&["\"1\"", " \"3\" "]), "several lines are one list");
        assert!(m(&[" , \"3\" ,"]), "empty list elements are allowed");
        assert!(!m(&["W/\"3\""]), "weak tags never match");
        assert!(!m(&["\"+3\""]));
        assert!(!m(&["\"1\""]));
        for bad in [
            &["3"][..],
            &["\"3"],
            &["\"\"3\"\""],
            &["*, \"3\""],
            &["*", "*"],
            &[""],
            &[" , "],
            &["\"a b\""],
            &["w/\"3\""],
            &["\"3\" \"4\""],
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
