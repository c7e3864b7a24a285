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
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::InvalidJson { .. } => (StatusCode::BAD_REQUEST, "invalid_json"),
            Self::InvalidField(_) => (StatusCode::BAD_REQUEST, "invalid_field"),
            Self::InvalidParameter { .. } => (StatusCode::BAD_REQUEST, "invalid_parameter"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Self::PreconditionFailed => (StatusCode::PRECONDITION_FAILED, "precondition_failed"),
            Self::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let Self::Internal(detail) = &self {
            tracing::error!(%detail, "request failed");
        }
        let mut error = json!({ "code": code, "message": self.to_string() });
        if let Some(field) = self.field() {
            error["field"] = json!(field);
        }
        (status, Json(json!({ "error": error }))).into_response()
    }
}
