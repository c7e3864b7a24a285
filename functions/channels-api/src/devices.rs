//! Device registry and gateway heartbeat routes (`/devices`, `/gateways/{id}/heartbeat`).
//!
//! Devices are stored by a [`DeviceStore`] (env `DEVICES_TABLE`); when the API runs without
//! one, every route here answers 404 `not_found` "devices are not configured". Media URLs are
//! sealed on the way in ([`streamstack_core::media_url`], key `MEDIA_URL_KEY`) and only ever
//! leave masked (`rtsp://***@host/path`): no response and no log line carries credentials.

use crate::error::ApiError;
use crate::extract::{JsonBody, Path};
use crate::handlers::{if_match, page_limit, required_if_match, IfMatch, ListQuery};
use crate::Deps;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use streamstack_core::device::{
    is_valid_device_id, seal_media_url, Device, DevicePatch, DeviceSpec, DeviceStatus,
    MAX_HEARTBEAT_DEVICES,
};
use streamstack_core::device_store::{DeviceFilter, DeviceStore, Reported};
use streamstack_core::domain::device_live_prefix;
use streamstack_core::media_url::MediaUrlKey;
use streamstack_core::playback::device_prefix;
use streamstack_core::{StoreError, ValidationError};
use time::OffsetDateTime;

/// Largest heartbeat body, in bytes: 2 MiB, room for [`MAX_HEARTBEAT_DEVICES`] entries of
/// about 400 bytes (a 64-character id and a camera URL with credentials). Other routes keep
/// [`crate::MAX_BODY_BYTES`].
pub const HEARTBEAT_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Attempts of a `PUT` that races another writer of the same device (create vs. create,
/// replace vs. replace) before it answers 412.
const PUT_ATTEMPTS: usize = 3;

type Shared = State<Arc<Deps>>;

/// A device as the API shows it: the stored [`Device`] (media URL masked, internal fields
/// left out) plus `status`, `online` | `offline` at the time of the request
/// ([`Device::status`] over `DEVICE_ONLINE_WINDOW_SECS`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceView<'a> {
    /// The device's own fields.
    #[serde(flatten)]
    #[schema(value_type = Device)]
    pub device: &'a Device,
    /// `online` when its gateway reported it online within the online window.
    pub status: DeviceStatus,
    /// Restart health (the task health handler's, [`streamstack_core::device_health`]):
    /// `ok`; `backoff` while a restart waits for `not_before`; `failed` after a crash loop
    /// (`failed_at`), until a configuration change (`PUT`/`PATCH`) retries it.
    #[schema(value_type = crate::openapi::DeviceHealth)]
    pub health: &'static str,
}

impl<'a> DeviceView<'a> {
    /// The view of `device` at `now` with `deps`' online window.
    pub fn new(device: &'a Device, deps: &Deps, now: OffsetDateTime) -> Self {
        let health = match (device.failed_at, device.not_before) {
            (Some(_), _) => "failed",
            (None, Some(t)) if t > now => "backoff",
            _ => "ok",
        };
        Self { device, status: device.status(now, deps.device_settings.online_window), health }
    }
}

/// The configured device store, or 404 when the API runs without `DEVICES_TABLE`.
fn store(deps: &Deps) -> Result<&dyn DeviceStore, ApiError> {
    deps.devices
        .as_deref()
        .ok_or_else(|| ApiError::NotFound("devices are not configured (DEVICES_TABLE)".into()))
}

/// 404 naming `id` when it passes the id rule (else not echoed).
fn not_found(id: &str) -> ApiError {
    if is_valid_device_id(id) {
        ApiError::NotFound(format!("device {id:?} not found"))
    } else {
        ApiError::NotFound("device not found".into())
    }
}

/// 404 for a path id that no device can have (never sent to DynamoDB).
fn checked_id(id: &str) -> Result<&str, ApiError> {
    if is_valid_device_id(id) {
        Ok(id)
    } else {
        Err(not_found(id))
    }
}

/// A client-chosen path id (`PUT /devices/{id}`, the heartbeat's gateway) that breaks the
/// id rule: 400 naming the parameter.
fn chosen_id<'a>(id: &'a str, field: &str) -> Result<&'a str, ApiError> {
    if is_valid_device_id(id) {
        Ok(id)
    } else {
        Err(ApiError::InvalidParameter {
            field: field.into(),
            message: format!("{field}: must be 1..=64 letters, digits, '-' or '_'"),
        })
    }
}

fn with_etag(status: StatusCode, deps: &Deps, device: &Device) -> Response {
    let view = DeviceView::new(device, deps, OffsetDateTime::now_utc());
    crate::handlers::with_etag(status, device.version, view)
}

async fn load(deps: &Deps, id: &str) -> Result<Device, ApiError> {
    let id = checked_id(id)?;
    store(deps)?.get(id).await?.ok_or_else(|| not_found(id))
}

/// `PUT /devices/{id}`: creates the device (201 + `Location`) or replaces its configuration
/// (200), `If-Match` honoured when given (412 when stale or, for a version or `*`, when the
/// device does not exist).
#[utoipa::path(
    put,
    path = "/devices/{id}",
    operation_id = "put_device",
    tag = "devices",
    summary = "Create or replace a device",
    params(
        ("id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "Device id: 1..=64 letters, digits, `-` or `_`"),
        ("If-Match" = Option<String>, Header, nullable = false, description = "`*` (the device must exist) or its current `ETag`; 412 when stale or absent"),
    ),
    request_body(content = DeviceSpec, content_type = "application/json"),
    responses(
        (status = 200, description = "Replaced", body = DeviceView, headers(("ETag" = String, description = "The device's `version`, quoted: `\"3\"`"))),
        (status = 201, description = "Created", body = DeviceView,
            headers(("ETag" = String, description = "The device's `version`, quoted: `\"3\"`"), ("Location" = String, description = "`/devices/{id}`")),
            links(
                ("GetDevice" = (operation_id = "get_device", parameters(("id" = "$response.body#/id")))),
                ("PatchDevice" = (operation_id = "patch_device", parameters(("id" = "$response.body#/id"), ("If-Match" = "$response.header.ETag")))),
                ("DeleteDevice" = (operation_id = "delete_device", parameters(("id" = "$response.body#/id")))),
                ("GetDeviceEndpoints" = (operation_id = "get_device_endpoints", parameters(("id" = "$response.body#/id")))),
            )),
        (status = 400, description = "Invalid JSON, field, id or `If-Match`", body = crate::openapi::ErrorBody),
        (status = 404, description = "Devices are not configured (`DEVICES_TABLE`)", body = crate::openapi::ErrorBody),
        (status = 412, description = "`If-Match` does not match (or the device does not exist)", body = crate::openapi::ErrorBody),
        (status = 413, description = "Body larger than 64 KiB", body = crate::openapi::ErrorBody),
        (status = 415, description = "Body not `application/json`", body = crate::openapi::ErrorBody),
    ),
)]
pub(crate) async fn put(
    State(deps): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(spec): JsonBody<DeviceSpec>,
) -> Result<Response, ApiError> {
    let store = store(&deps)?;
    let id = chosen_id(&id, "id")?;
    // Absent: create or replace unconditionally; else the device must exist and match
    // ([`IfMatch::matches`]: `*` any version, else one of the tags).
    let precondition = if_match(&headers)?;
    for _ in 0..PUT_ATTEMPTS {
        let current = store.get(id).await?;
        match (&precondition, &current) {
            (Some(_), None) => return Err(ApiError::PreconditionFailed),
            (Some(condition), Some(c)) if !condition.matches(c.version) => {
                return Err(ApiError::PreconditionFailed)
            }
            _ => {}
        }
        let now = OffsetDateTime::now_utc();
        let default = match &current {
            Some(_) => deps.playback.default,
            None => crate::playback::for_new(&deps, spec.playback)?,
        };
        let key = deps.media_url_key.as_ref();
        let device = spec.clone().apply(id, current.as_ref(), key, now, default)?;
        match current {
            None => match store.create(&device).await {
                Ok(()) => {
                    tracing::info!(device = %device.id, gateway = %device.gateway_id, "device created");
                    let location = HeaderValue::from_str(&format!("/devices/{id}"))
                        .map_err(|e| ApiError::Internal(e.to_string()))?;
                    let mut response = with_etag(StatusCode::CREATED, &deps, &device);
                    response.headers_mut().insert(LOCATION, location);
                    return Ok(response);
                }
                // Created meanwhile by another PUT or a heartbeat: replace it instead.
                Err(StoreError::AlreadyExists) => continue,
                Err(e) => return Err(e.into()),
            },
            Some(current) => match store.update_config(&device, current.version).await {
                Ok(stored) => {
                    tracing::info!(device = %stored.id, version = stored.version, "device replaced");
                    return Ok(with_etag(StatusCode::OK, &deps, &stored));
                }
                Err(StoreError::VersionConflict | StoreError::NotFound)
                    if precondition.is_none() =>
                {
                    continue
                }
                Err(StoreError::VersionConflict) => return Err(ApiError::PreconditionFailed),
                Err(StoreError::NotFound) => return Err(not_found(id)),
                Err(e) => return Err(e.into()),
            },
        }
    }
    Err(ApiError::PreconditionFailed)
}

/// Query of `GET /devices`: paging plus `gateway_id` and `status` (`online` | `offline`).
#[derive(Debug, Deserialize)]
pub(crate) struct DeviceQuery {
    #[serde(flatten)]
    page: ListQuery,
    gateway_id: Option<String>,
    status: Option<String>,
}

#[utoipa::path(
    get,
    path = "/devices",
    operation_id = "list_devices",
    tag = "devices",
    summary = "List devices",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size, 1..=100 (default 25)"),
        ("next" = Option<String>, Query, description = "Cursor from the previous page's `next`"),
        ("gateway_id" = Option<String>, Query, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "Only this gateway's devices"),
        ("status" = Option<DeviceStatus>, Query, description = "Only `online` or only `offline` devices"),
    ),
    responses(
        (status = 200, description = "A page of devices", body = crate::openapi::DeviceList,
            links(("GetFirstDevice" = (operation_id = "get_device", parameters(("id" = "$response.body#/items/0/id")))))),
        (status = 400, description = "Invalid query parameter", body = crate::openapi::ErrorBody),
        (status = 404, description = "Devices are not configured (`DEVICES_TABLE`)", body = crate::openapi::ErrorBody),
    ),
)]
pub(crate) async fn list(
    State(deps): Shared,
    query: Result<Query<DeviceQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let store = store(&deps)?;
    let Query(query) = query.map_err(|e| ApiError::InvalidParameter {
        field: "query".into(),
        message: e.body_text(),
    })?;
    let (limit, next) = page_limit(Ok(Query(query.page)))?;
    if let Some(gateway) = &query.gateway_id {
        chosen_id(gateway, "gateway_id")?;
    }
    let online = match query.status.as_deref() {
        None => None,
        Some(raw) => match DeviceStatus::parse(raw) {
            Some(status) => Some(status == DeviceStatus::Online),
            None => {
                return Err(ApiError::InvalidParameter {
                    field: "status".into(),
                    message: format!(
                        "status: must be online or offline, got {:?}",
                        crate::handlers::truncated(raw)
                    ),
                })
            }
        },
    };
    let now = OffsetDateTime::now_utc();
    let filter = DeviceFilter {
        gateway_id: query.gateway_id,
        online,
        window: deps.device_settings.online_window,
        now: Some(now),
    };
    let page = store.list(limit, next.as_deref(), &filter).await?;
    let items: Vec<DeviceView> =
        page.items.iter().map(|d| DeviceView::new(d, &deps, now)).collect();
    Ok(Json(json!({ "items": items, "next": page.next })))
}

#[utoipa::path(
    get,
    path = "/devices/{id}",
    operation_id = "get_device",
    tag = "devices",
    summary = "Get a device",
    params(
        ("id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "Device id: 1..=64 letters, digits, `-` or `_`"),
    ),
    responses(
        (status = 200, description = "The device", body = DeviceView, headers(("ETag" = String, description = "The device's `version`, quoted: `\"3\"`"))),
        (status = 400, description = "A path parameter that is not UTF-8", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such device, or devices are not configured (`DEVICES_TABLE`)", body = crate::openapi::ErrorBody),
    ),
)]
pub(crate) async fn get_one(
    State(deps): Shared,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(with_etag(StatusCode::OK, &deps, &load(&deps, &id).await?))
}

/// `PATCH /devices/{id}`: JSON merge patch of the configuration; `If-Match` required.
#[utoipa::path(
    patch,
    path = "/devices/{id}",
    operation_id = "patch_device",
    tag = "devices",
    summary = "Change a device (JSON merge patch)",
    params(
        ("id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "Device id: 1..=64 letters, digits, `-` or `_`"),
        ("If-Match" = String, Header, description = "The current `ETag` (`\"3\"`); 428 without it, 412 when stale"),
    ),
    request_body(content = DevicePatch, content_type = "application/json"),
    responses(
        (status = 200, description = "The changed device", body = DeviceView, headers(("ETag" = String, description = "The device's `version`, quoted: `\"3\"`"))),
        (status = 400, description = "Invalid JSON, field or `If-Match`", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such device, or devices are not configured (`DEVICES_TABLE`)", body = crate::openapi::ErrorBody),
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
    JsonBody(body): JsonBody<DevicePatch>,
) -> Result<Response, ApiError> {
    let condition = required_if_match(&headers)?;
    let current = load(&deps, &id).await?;
    if !condition.matches(current.version) {
        return Err(ApiError::PreconditionFailed);
    }
    let next = body.apply(&current, deps.media_url_key.as_ref(), OffsetDateTime::now_utc())?;
    if next.version == current.version {
        // Nothing changes: the device as it is, no new version.
        return Ok(with_etag(StatusCode::OK, &deps, &current));
    }
    let stored =
        store(&deps)?.update_config(&next, current.version).await.map_err(|e| match e {
            StoreError::NotFound => not_found(&current.id),
            other => other.into(),
        })?;
    tracing::info!(device = %stored.id, version = stored.version, "device patched");
    Ok(with_etag(StatusCode::OK, &deps, &stored))
}

/// `DELETE /devices/{id}`: `If-Match` optional; when given it is evaluated against the
/// current version (400 malformed, 412 no match) and the delete is conditional on it.
#[utoipa::path(
    delete,
    path = "/devices/{id}",
    operation_id = "delete_device",
    tag = "devices",
    summary = "Delete a device",
    params(
        ("id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "Device id: 1..=64 letters, digits, `-` or `_`"),
        ("If-Match" = Option<String>, Header, nullable = false, description = "Optional: the `ETag` (`\"3\"`) or `*`; the delete happens only if it matches"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Malformed `If-Match`", body = crate::openapi::ErrorBody),
        (status = 412, description = "`If-Match` does not match the current version", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such device, or devices are not configured (`DEVICES_TABLE`)", body = crate::openapi::ErrorBody),
    ),
)]
pub(crate) async fn delete(
    State(deps): Shared,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let condition = if_match(&headers)?;
    let id = checked_id(&id)?;
    let deleted = match condition {
        None | Some(IfMatch::Any) => store(&deps)?.delete(id).await,
        Some(condition) => {
            let current = load(&deps, id).await?;
            if !condition.matches(current.version) {
                return Err(ApiError::PreconditionFailed);
            }
            // Atomic: a write between the read and the delete makes it 412.
            store(&deps)?.delete_if_version(id, current.version).await
        }
    };
    deleted.map_err(|e| match e {
        StoreError::NotFound => not_found(id),
        other => other.into(),
    })?;
    tracing::info!(device = %id, "device deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /devices/{id}/endpoints`: where the device's recordings are played from (URLs made
/// with [`streamstack_core::Config::media_url`]; `null` without a playback base or bucket),
/// and `playback` ([`crate::playback::body`] for the live playlist; a signed device's cookies
/// cover its archive too).
#[utoipa::path(
    get,
    path = "/devices/{id}/endpoints",
    operation_id = "get_device_endpoints",
    tag = "devices",
    summary = "Playback endpoints of a device",
    params(
        ("id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "Device id: 1..=64 letters, digits, `-` or `_`"),
    ),
    responses(
        (status = 200, description = "Live and archive playback", body = crate::openapi::DeviceEndpoints),
        (status = 400, description = "A path parameter that is not UTF-8", body = crate::openapi::ErrorBody),
        (status = 404, description = "No such device, or devices are not configured (`DEVICES_TABLE`)", body = crate::openapi::ErrorBody),
    ),
)]
pub(crate) async fn endpoints(
    State(deps): Shared,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let device = load(&deps, &id).await?;
    let id = &device.id;
    let live = format!("{}/index.m3u8", device_live_prefix(id, device.playback));
    let prefix = device_prefix(id, device.playback);
    Ok(Json(json!({
        "device_id": id,
        "hls": {
            "live_playlist_url": deps.config.media_url(&live),
            "archive_prefix_url": deps.config.media_url(&format!("{prefix}/")),
            "archive_playlist_pattern":
                format!("{prefix}/<yyyy>/<mm>/<dd>/<hh>/<session>/recording.m3u8"),
        },
        "playback": crate::playback::body(&deps, device.playback, &prefix, &live),
    })))
}

/// Body of `POST /gateways/{gateway_id}/heartbeat`: the gateway's complete list of online
/// devices (its devices left out go `offline`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Heartbeat {
    devices: Vec<HeartbeatDevice>,
}

/// One online device of a heartbeat.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeartbeatDevice {
    id: String,
    media_url: String,
}

/// The heartbeat's devices, validated and sealed.
///
/// # Errors
/// [`ValidationError`] on `devices` (too many), `devices[i].id` (invalid or repeated) or
/// `devices[i].media_url` (invalid, or credentials without `MEDIA_URL_KEY`).
fn reports(key: Option<&MediaUrlKey>, body: Heartbeat) -> Result<Vec<Reported>, ValidationError> {
    if body.devices.len() > MAX_HEARTBEAT_DEVICES {
        return Err(ValidationError {
            field: "devices".into(),
            message: format!(
                "at most {MAX_HEARTBEAT_DEVICES} devices per heartbeat, got {}",
                body.devices.len()
            ),
        });
    }
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(body.devices.len());
    let mut out = Vec::with_capacity(body.devices.len());
    for (i, device) in body.devices.into_iter().enumerate() {
        let field = |name: &str| format!("devices[{i}].{name}");
        if !is_valid_device_id(&device.id) {
            return Err(ValidationError {
                field: field("id"),
                message: "must be 1..=64 letters, digits, '-' or '_'".into(),
            });
        }
        if let Some(first) = seen.insert(device.id.clone(), i) {
            return Err(ValidationError {
                field: field("id"),
                message: format!("repeats devices[{first}].id"),
            });
        }
        let media_url = seal_media_url(&device.media_url, &device.id, key)
            .map_err(|e| ValidationError { field: field("media_url"), message: e.message })?;
        out.push(Reported { id: device.id, media_url });
    }
    Ok(out)
}

/// `POST /gateways/{gateway_id}/heartbeat`: records the gateway's online devices in one
/// request (registering new ones, updating changed URLs) and marks its other devices
/// offline; answers what changed.
#[utoipa::path(
    post,
    path = "/gateways/{gateway_id}/heartbeat",
    operation_id = "gateway_heartbeat",
    tag = "gateways",
    summary = "Report a gateway's online devices",
    params(
        ("gateway_id" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "Gateway id: 1..=64 letters, digits, `-` or `_`"),
    ),
    request_body(content = Heartbeat, content_type = "application/json"),
    responses(
        (status = 200, description = "What the heartbeat changed", body = crate::openapi::HeartbeatAnswer),
        (status = 400, description = "Invalid JSON, field or gateway id", body = crate::openapi::ErrorBody),
        (status = 404, description = "Devices are not configured (`DEVICES_TABLE`)", body = crate::openapi::ErrorBody),
        (status = 413, description = "Body larger than 2 MiB", body = crate::openapi::ErrorBody),
        (status = 415, description = "Body not `application/json`", body = crate::openapi::ErrorBody),
    ),
)]
pub(crate) async fn heartbeat(
    State(deps): Shared,
    Path(gateway_id): Path<String>,
    JsonBody(body): JsonBody<Heartbeat, HEARTBEAT_BODY_BYTES>,
) -> Result<Json<Value>, ApiError> {
    let store = store(&deps)?;
    let gateway = chosen_id(&gateway_id, "gateway_id")?;
    let reports = reports(deps.media_url_key.as_ref(), body)?;
    let outcome = store.heartbeat(gateway, &reports, OffsetDateTime::now_utc()).await?;
    tracing::info!(
        gateway,
        reported = reports.len(),
        online = outcome.online,
        created = outcome.created,
        url_changed = outcome.url_changed,
        offline = outcome.offline,
        rejected = outcome.rejected.len(),
        "gateway heartbeat"
    );
    Ok(Json(json!({
        "gateway_id": gateway,
        "online": outcome.online,
        "created": outcome.created,
        "url_changed": outcome.url_changed,
        "offline": outcome.offline,
        "rejected": outcome.rejected,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(entries: &[(&str, &str)]) -> Heartbeat {
        Heartbeat {
            devices: entries
                .iter()
                .map(|(id, url)| HeartbeatDevice { id: (*id).into(), media_url: (*url).into() })
                .collect(),
        }
    }

    #[test]
    fn heartbeat_entries_are_checked_and_sealed() {
        let key = MediaUrlKey::from_hex(&"ab".repeat(32)).unwrap();
        let d = Some(&key);
        let ok =
            reports(d, body(&[("a", "rtsp://u:p@cam/1"), ("b", "udp://239.0.0.1:5000")])).unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[0].media_url.masked(), "rtsp://***@cam/1");
        assert!(!format!("{ok:?}").contains("u:p"));

        let e = reports(d, body(&[("a", "rtsp://cam/1"), ("a", "rtsp://cam/2")])).unwrap_err();
        assert_eq!(e.field, "devices[1].id");
        let e = reports(d, body(&[("a", "rtsp://cam/1"), ("b c", "rtsp://cam/2")])).unwrap_err();
        assert_eq!(e.field, "devices[1].id");
        let e = reports(d, body(&[("a", "http://u:secret@cam/1")])).unwrap_err();
        assert_eq!(e.field, "devices[0].media_url");
        assert!(!e.message.contains("secret"));
        let many: Vec<(String, String)> = (0..=MAX_HEARTBEAT_DEVICES)
            .map(|i| (format!("d{i}"), "rtsp://cam/1".to_owned()))
            .collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(reports(d, body(&many)).unwrap_err().field, "devices");
    }

    #[test]
    fn credentials_need_the_key() {
        let e = reports(None, body(&[("a", "rtsp://u:p@cam/1")])).unwrap_err();
        assert_eq!(e.field, "devices[0].media_url");
        assert!(e.message.contains("MEDIA_URL_KEY"), "{}", e.message);
    }
}
