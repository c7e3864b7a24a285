//! The API's OpenAPI 3.1 document, generated from the code: request and response schemas
//! from the types' `ToSchema` derives, operations from the handlers' `#[utoipa::path]`
//! attributes, and the router itself built from the same list ([`api_router`]), so no route
//! can be served without being documented.
//!
//! Served at `GET /openapi.json`; `make openapi` writes it to `docs/openapi.json`
//! (`channels-api-local --print-openapi`), and a test fails when that file and
//! [`document_json`] disagree.
//!
//! The types below only describe JSON that the handlers build by hand (`json!`): they are
//! never constructed.

#![allow(dead_code)]

use crate::Deps;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::sync::{Arc, OnceLock};
use streamstack_core::playback::PlaybackAuthorization;
use streamstack_core::{Channel, Playback};
use utoipa::{OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

const DESCRIPTION: &str = "\
Channels (live RTMP/RTMPS/SRT ingest to HLS), VOD assets, devices (IP cameras behind media \
gateways) and gateway heartbeats of a streamstack deployment.

**Authentication.** In AWS every route is behind API Gateway with IAM authorization: requests \
are signed with AWS Signature Version 4 for the service `execute-api` (any AWS SDK or \
`curl --aws-sigv4 \"aws:amz:<region>:execute-api\"`), by a principal allowed \
`execute-api:Invoke` on the API. No security scheme is declared here because OpenAPI has none \
for SigV4. The local server (`channels-api-local`) has no authentication.

**Errors.** Every error is `application/json`: `{\"error\":{\"code\",\"message\",\"field\"}}` \
(schema `Error`), `field` naming the JSON path, query parameter or header at fault when there \
is one.

**Concurrency.** Creating, reading, patching or replacing a channel or device sends its \
`version` as a strong `ETag` (`\"3\"`). `If-Match` (RFC 9110 §13.1.1: `*` or a list of \
entity-tags, compared strongly; malformed is 400) is required by `PATCH` (428 without it, 412 \
when the resource changed since) and honoured when given by `PUT /devices/{id}` and both \
`DELETE`s (the delete happens only if it matches). A `PATCH` that changes nothing answers 200 \
with the same version.

**Paging.** Listings take `limit` (1..=100, default 25) and `next`, the opaque cursor of the \
previous page (`null` on the last page).";

/// The document's fixed parts: info, tags and the schemas no operation names directly.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "streamstack API",
        description = DESCRIPTION,
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "channels", description = "Live channels: create, configure, ingest endpoints"),
        (name = "assets", description = "VOD assets transcoded from uploads to the media bucket"),
        (name = "devices", description = "IP cameras recorded while their gateway reports them online"),
        (name = "gateways", description = "Media gateways reporting their cameras"),
        (name = "meta", description = "This document"),
    ),
    components(schemas(ErrorBody, ErrorDetail, ErrorCode))
)]
struct ApiDoc;

/// The error body of every failure (schema `Error`).
#[derive(ToSchema)]
#[schema(as = Error, example = json!({
    "error": {"code": "invalid_field", "message": "hls.segment_duration: must be 1..=10 seconds, got 11", "field": "hls.segment_duration"}
}))]
pub struct ErrorBody {
    /// What went wrong.
    error: ErrorDetail,
}

/// The `error` member of an error body.
#[derive(ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable kind, fixed per status.
    code: ErrorCode,
    /// Human-readable explanation (never echoes secrets).
    message: String,
    /// JSON path of the offending body field, or the query parameter or header at fault;
    /// absent when the error concerns no single field.
    #[schema(nullable = false)]
    field: Option<String>,
}

/// The `code` of an error: `invalid_json`, `invalid_request`, `invalid_field`,
/// `invalid_parameter` (400), `not_found` (404), `method_not_allowed` (405),
/// `precondition_failed` (412), `payload_too_large` (413), `uri_too_long` (414),
/// `unsupported_media_type` (415), `precondition_required` (428), `headers_too_large` (431),
/// `internal` (500), `request_failed` (any other framework rejection).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the body is not JSON or not the expected shape.
    InvalidJson,
    /// 400: the request itself is malformed (request line, `Content-Length`, a body shorter
    /// or longer than it, a path that is not UTF-8).
    InvalidRequest,
    /// 400: a field breaks a rule.
    InvalidField,
    /// 400: a query parameter, path parameter or header is malformed.
    InvalidParameter,
    /// 404: no such resource (or route).
    NotFound,
    /// 405: the route has no such method.
    MethodNotAllowed,
    /// 412: `If-Match` does not match the current version.
    PreconditionFailed,
    /// 413: the body is too large.
    PayloadTooLarge,
    /// 414: the request URI is too long (the local server; API Gateway answers its own).
    UriTooLong,
    /// 431: the request head is too large (the local server; API Gateway answers its own).
    HeadersTooLarge,
    /// 415: the body is not `application/json`.
    UnsupportedMediaType,
    /// 428: `If-Match` is required.
    PreconditionRequired,
    /// 500: a backend failure (details are logged, not returned).
    Internal,
    /// Any other framework rejection, by its status.
    RequestFailed,
}

/// A page of channels.
#[derive(ToSchema)]
pub struct ChannelList {
    /// This page's channels.
    items: Vec<Channel>,
    /// Cursor of the next page (the `next` query parameter); `null` on the last page.
    next: Option<String>,
}

/// A page of assets.
#[derive(ToSchema)]
pub struct AssetList {
    /// This page's assets (without `playback`).
    items: Vec<crate::assets::AssetView>,
    /// Cursor of the next page; `null` on the last page.
    next: Option<String>,
}

/// A page of devices.
#[derive(ToSchema)]
pub struct DeviceList {
    /// This page's devices.
    items: Vec<crate::devices::DeviceView<'static>>,
    /// Cursor of the next page; `null` on the last page.
    next: Option<String>,
}

/// Restart health of a device (`health` of a device).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum DeviceHealth {
    /// Recorded normally.
    Ok,
    /// A restart waits for `not_before`.
    Backoff,
    /// A crash loop stopped restarts until a configuration change (`PUT`/`PATCH`).
    Failed,
}

/// The `playback` object of endpoint and asset responses: where players fetch the playlist,
/// and for a signed resource the credentials they need.
#[derive(ToSchema)]
#[schema(example = json!({
    "mode": "public", "playlist_url": "https://d111111abcdef8.cloudfront.net/live/0f8fad5bd9cb469fa16570867728950e/index.m3u8",
    "signed_playlist_url": null, "authorization": null
}))]
pub struct PlaybackView {
    /// `public` or `signed`.
    mode: Playback,
    /// The playlist's URL; `null` when the stack has no playback base URL.
    playlist_url: Option<String>,
    /// For `signed`: the playlist URL with the signed query (`Policy`, `Signature`,
    /// `Key-Pair-Id`), for players that cannot be given cookies; else `null`.
    signed_playlist_url: Option<String>,
    /// For `signed`: CloudFront signed cookies scoped to the resource; else `null`.
    authorization: Option<PlaybackAuthorization>,
}

/// RTMP ingest of a channel.
#[derive(ToSchema)]
pub struct RtmpEndpoint {
    /// Signed push URL: `rtmp://<host>/live/<channel>?exp=..&sig=..`.
    push_url: String,
    /// Server part, for encoders that take server and stream key apart (OBS).
    server: String,
    /// Stream key part (`<channel>?exp=..&sig=..`).
    stream_key: String,
    /// When the push URL stops being accepted for new publishes (RFC 3339).
    #[schema(format = DateTime)]
    expires_at: Option<String>,
}

/// RTMPS ingest (only on stacks with `INGEST_RTMPS_HOST`).
#[derive(ToSchema)]
pub struct RtmpsEndpoint {
    /// Signed push URL over TLS.
    push_url: String,
    /// Server part.
    server: String,
}

/// SRT ingest (only on stacks with `INGEST_SRT_HOST`).
#[derive(ToSchema)]
pub struct SrtEndpoint {
    /// `srt://<host>?streamid=..` with the signed stream id.
    url: String,
}

/// HLS output of a channel.
#[derive(ToSchema)]
pub struct ChannelHls {
    /// The live playlist's URL; `null` without a playback base URL.
    playback_url: Option<String>,
}

/// Body of `GET /channels/{id}/endpoints` and `POST /channels/{id}/rotate-key`.
#[derive(ToSchema)]
#[schema(example = json!({
    "channel_id": "0f8fad5bd9cb469fa16570867728950e",
    "rtmp": {
        "push_url": "rtmp://ingest.example.com:1935/live/0f8fad5bd9cb469fa16570867728950e?exp=1764000000&sig=9c1f...",
        "server": "rtmp://ingest.example.com:1935/live",
        "stream_key": "0f8fad5bd9cb469fa16570867728950e?exp=1764000000&sig=9c1f...",
        "expires_at": "2026-11-24T09:00:00Z"
    },
    "hls": {"playback_url": "https://d111111abcdef8.cloudfront.net/live/0f8fad5bd9cb469fa16570867728950e/index.m3u8"},
    "playback": {"mode": "public", "playlist_url": "https://d111111abcdef8.cloudfront.net/live/0f8fad5bd9cb469fa16570867728950e/index.m3u8", "signed_playlist_url": null, "authorization": null}
}))]
pub struct ChannelEndpoints {
    /// The channel's id.
    channel_id: String,
    /// RTMP ingest.
    rtmp: RtmpEndpoint,
    /// RTMPS ingest, present when the stack has it.
    #[schema(nullable = false)]
    rtmps: Option<RtmpsEndpoint>,
    /// SRT ingest, present when the stack has it.
    #[schema(nullable = false)]
    srt: Option<SrtEndpoint>,
    /// HLS output.
    hls: ChannelHls,
    /// Playback authorization for the live playlist.
    playback: PlaybackView,
}

/// Where a device's recordings are played from.
#[derive(ToSchema)]
pub struct DeviceHls {
    /// The live (sliding) playlist's URL; `null` without a playback base URL.
    live_playlist_url: Option<String>,
    /// URL prefix of the hourly archive; `null` without a playback base URL.
    archive_prefix_url: Option<String>,
    /// Key pattern of an archived hour's playlist, below the archive prefix.
    archive_playlist_pattern: String,
}

/// Body of `GET /devices/{id}/endpoints`.
#[derive(ToSchema)]
pub struct DeviceEndpoints {
    /// The device's id.
    device_id: String,
    /// Live and archive URLs.
    hls: DeviceHls,
    /// Playback authorization (a signed device's cookies cover its archive too).
    playback: PlaybackView,
}

/// The source object of an asset.
#[derive(ToSchema)]
pub struct AssetSource {
    /// Bucket name.
    bucket: String,
    /// Object key.
    key: String,
    /// Object version, in a versioned bucket.
    version_id: Option<String>,
    /// Object size, in bytes.
    size: u64,
}

/// One HLS rendition of a complete asset.
#[derive(ToSchema)]
pub struct RenditionView {
    /// Frame width, in pixels.
    width: u32,
    /// Frame height, in pixels.
    height: u32,
    /// Average video bitrate, in bits per second, when reported.
    average_bitrate: Option<u64>,
    /// The rendition's media playlist URL; `null` without a playback base URL.
    playlist_url: Option<String>,
}

/// Outputs of a `COMPLETE` asset, as URLs.
#[derive(ToSchema)]
pub struct AssetOutputsView {
    /// HLS master playlist URL.
    hls_url: Option<String>,
    /// MP4 URL.
    mp4_url: Option<String>,
    /// Thumbnail URLs, in capture order.
    thumbnail_urls: Vec<String>,
    /// Duration, in milliseconds.
    duration_ms: Option<u64>,
    /// HLS renditions, lowest height first.
    renditions: Vec<RenditionView>,
}

/// Answer of `POST /gateways/{gateway_id}/heartbeat`: what the heartbeat changed.
#[derive(ToSchema)]
#[schema(example = json!({
    "gateway_id": "gw-paris-1", "online": 2, "created": 1, "url_changed": 0, "offline": 1, "rejected": []
}))]
pub struct HeartbeatAnswer {
    /// The gateway.
    gateway_id: String,
    /// Reported devices recorded online (created ones included).
    online: u32,
    /// Devices registered by this heartbeat.
    created: u32,
    /// Devices whose media URL changed.
    url_changed: u32,
    /// The gateway's devices missing from the report, now offline.
    offline: u32,
    /// Reported ids that belong to another gateway: not written.
    rejected: Vec<String>,
}

/// `GET /openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "get_openapi",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API",
        content_type = "application/json", body = Object)),
)]
pub(crate) async fn serve() -> Response {
    ([(CONTENT_TYPE, "application/json")], document_json()).into_response()
}

/// Every documented route, unbound to its state: the router and the document at once.
pub fn api_router() -> OpenApiRouter<Arc<Deps>> {
    use crate::{assets, devices, handlers};
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(handlers::list, handlers::create))
        .routes(routes!(handlers::get_one, handlers::patch, handlers::delete))
        .routes(routes!(handlers::endpoints))
        .routes(routes!(handlers::rotate_key))
        .routes(routes!(assets::list))
        .routes(routes!(assets::get_one))
        .routes(routes!(devices::list))
        .routes(routes!(devices::put, devices::get_one, devices::patch, devices::delete))
        .routes(routes!(devices::endpoints))
        .routes(routes!(devices::heartbeat))
        .routes(routes!(serve))
}

/// The document: [`api_router`]'s, with the crate's version, every object's keys sorted.
pub fn document() -> Value {
    let mut doc = api_router().into_openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let value = serde_json::to_value(&doc).expect("the OpenAPI document serializes");
    sorted(value)
}

/// [`document`] pretty-printed with a final newline, as `docs/openapi.json` holds it
/// (computed once per process).
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        let mut text =
            serde_json::to_string_pretty(&document()).expect("the OpenAPI document serializes");
        text.push('\n');
        text
    })
}

/// `value` with the keys of every object in lexicographic order (whatever map serde_json
/// was built with), so the document's text is stable, and descriptions without rustdoc
/// links ([`without_rustdoc_links`]).
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| match v {
                        Value::String(text) if k == "description" => {
                            (k, Value::String(without_rustdoc_links(&text)))
                        }
                        v => (k, sorted(v)),
                    })
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// A doc comment as a description for API users: a parenthesis that only points at Rust
/// items (`([`crate::lease`])`, `(see [`crate::lease`])`) goes, and any other intra-doc link
/// `[`a::b::C`]` becomes `` `C` ``.
fn without_rustdoc_links(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("[`") {
        let Some(len) = rest[start..].find("`]") else { break };
        let inner = &rest[start + 2..start + len];
        let after = &rest[start + len + 2..];
        let before = &rest[..start];
        let opener = ["(see ", "(layout in ", "("].into_iter().find(|o| before.ends_with(o));
        match opener {
            Some(o) if after.starts_with(')') => {
                out.push_str(before[..before.len() - o.len()].trim_end());
                rest = &after[1..];
            }
            _ => {
                out.push_str(before);
                out.push('`');
                out.push_str(inner.rsplit("::").next().unwrap_or(inner));
                out.push('`');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn rustdoc_links_leave_descriptions() {
        let clean = super::without_rustdoc_links;
        assert_eq!(clean("`idle` or `live` (see [`crate::lease`]); x"), "`idle` or `live`; x");
        assert_eq!(clean("fixed ([`crate::playback`])."), "fixed.");
        assert_eq!(
            clean("the stored [`Device`] plus [`Device::status`]"),
            "the stored `Device` plus `status`"
        );
        assert_eq!(clean("no links, [brackets]"), "no links, [brackets]");
    }
}
