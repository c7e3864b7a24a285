//! The API's error type and its JSON body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use streamstack_core::{StoreError, ValidationError};

/// An error response: `{"error":{"code":..,"message":..,"field":..}}` with the status below.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `invalid_json`: the body is not JSON or not the expected shape.
    #[error("{message}")]
    InvalidJson {
        /// JSON path of the offending field, when known.
        field: Option<String>,
        /// Parser message.
        message: String,
    },
    /// 400 `invalid_request`: the request itself is malformed (a body shorter than its
    /// `Content-Length`, a bad `Content-Length`, a request line the local server cannot parse).
    #[error("{0}")]
    InvalidRequest(String),
    /// 400 `invalid_field`: a field breaks a rule.
    #[error(transparent)]
    InvalidField(#[from] ValidationError),
    /// 400 `invalid_parameter`: a query parameter or header is malformed.
    #[error("{message}")]
    InvalidParameter {
        /// Parameter name.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// 404 `not_found`.
    #[error("{0}")]
    NotFound(String),
    /// 405 `method_not_allowed`.
    #[error("method not allowed on this resource")]
    MethodNotAllowed,
    /// 412 `precondition_failed`: `If-Match` does not match the current version.
    #[error("the resource was modified: If-Match does not match its current version")]
    PreconditionFailed,
    /// 413 `payload_too_large`: body above the route's limit (64 KiB; heartbeats 2 MiB).
    #[error("request body exceeds {0} bytes")]
    PayloadTooLarge(usize),
    /// 414 `uri_too_long`: the request target is longer than the local server accepts (in
    /// AWS, API Gateway answers this itself).
    #[error("request URI exceeds {0} bytes")]
    UriTooLong(usize),
    /// 431 `headers_too_large`: the request header section is larger than the local server
    /// accepts (in AWS, API Gateway answers this itself).
    #[error("request header section exceeds {0} bytes")]
    HeadersTooLarge(usize),
    /// 415 `unsupported_media_type`: body is not `application/json`.
    #[error("request body must be application/json")]
    UnsupportedMediaType,
    /// 428 `precondition_required`: PATCH without `If-Match`.
    #[error("If-Match header with the current version (the ETag) is required")]
    PreconditionRequired,
    /// 500 `internal`: a backend failure; details are logged, not returned.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status and the `code` of the body.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::InvalidJson { .. } => (StatusCode::BAD_REQUEST, "invalid_json"),
            Self::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            Self::InvalidField(_) => (StatusCode::BAD_REQUEST, "invalid_field"),
            Self::InvalidParameter { .. } => (StatusCode::BAD_REQUEST, "invalid_parameter"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::PreconditionFailed => (StatusCode::PRECONDITION_FAILED, "precondition_failed"),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::UriTooLong(_) => (StatusCode::URI_TOO_LONG, "uri_too_long"),
            Self::HeadersTooLarge(_) => {
                (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers_too_large")
            }
            Self::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::PreconditionRequired => {
                (StatusCode::PRECONDITION_REQUIRED, "precondition_required")
            }
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            Self::InvalidJson { field, .. } => field.as_deref(),
            Self::InvalidField(v) => Some(&v.field),
            Self::InvalidParameter { field, .. } => Some(field),
            _ => None,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound("channel not found".into()),
            StoreError::VersionConflict => Self::PreconditionFailed,
            StoreError::InvalidCursor => Self::InvalidParameter {
                field: "next".into(),
                message: "next: not a cursor issued by this API".into(),
            },
            other => Self::Internal(other.to_string()),
        }
    }
}

impl ApiError {
    /// The JSON body: `{"error":{"code":..,"message":..,"field":..}}` (`field` only when
    /// known).
    pub fn body(&self) -> serde_json::Value {
        let (_, code) = self.status_and_code();
        let mut error = json!({ "code": code, "message": self.to_string() });
        if let Some(field) = self.field() {
            error["field"] = json!(field);
        }
        json!({ "error": error })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, _) = self.status_and_code();
        if let Self::Internal(detail) = &self {
            tracing::error!(%detail, "request failed");
        }
        (status, Json(self.body())).into_response()
    }
}

/// The `code` of an error response made by something other than [`ApiError`] (a framework
/// rejection), by status.
fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "invalid_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::URI_TOO_LONG => "uri_too_long",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "headers_too_large",
        s if s.is_server_error() => "internal",
        _ => "request_failed",
    }
}

/// Response middleware of the router: any error response (4xx, 5xx) whose body is not JSON
/// (a rejection of an extractor or of the framework, answered as `text/plain`) is rewritten to
/// the error schema with the same status and headers, so every failure is
/// `{"error":{"code","message"}}`.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(crate::extract::is_json);
    if json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().chars().take(200).collect::<String>())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("request failed").to_owned()
    } else {
        text
    };
    if status.is_server_error() {
        tracing::error!(%status, %message, "request failed");
    }
    let message = if status.is_server_error() { "internal error".to_owned() } else { message };
    parts.headers.remove(axum::http::header::CONTENT_TYPE);
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    let body = json!({ "error": { "code": code_for(status), "message": message } });
    let mut fresh = (status, Json(body)).into_response();
    for (name, value) in &parts.headers {
        fresh.headers_mut().entry(name).or_insert(value.clone());
    }
    fresh
}
