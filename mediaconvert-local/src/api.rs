//! The MediaConvert REST API (restJson1, under `/2017-08-29`): `CreateJob`, `GetJob`,
//! `ListJobs`, `CancelJob`, `DescribeEndpoints`. Errors as MediaConvert sends them: the
//! `x-amzn-ErrorType` header naming the exception and a `{"message": ...}` body.

use crate::runner::{CancelError, Service};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Exception name, e.g. `BadRequestException`.
    pub kind: &'static str,
    /// Text.
    pub message: String,
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "BadRequestException",
            message: message.into(),
        }
    }
    fn not_found(message: impl Into<String>) -> Self {
        Self { status: StatusCode::NOT_FOUND, kind: "NotFoundException", message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, [("x-amzn-ErrorType", self.kind)], Json(json!({ "message": self.message })))
            .into_response()
    }
}

/// The router of `service`.
pub fn router(service: Service) -> Router {
    Router::new()
        .route("/2017-08-29/jobs", post(create_job).get(list_jobs))
        .route("/2017-08-29/jobs/{id}", get(get_job).delete(cancel_job))
        .route("/2017-08-29/endpoints", post(describe_endpoints))
        .with_state(service)
}

/// Runs the model check program on `body`; `Err(report)` when it refuses it.
async fn model_check(program: &[String], body: &Value) -> Result<(), String> {
    let Some((cmd, args)) = program.split_first() else { return Ok(()) };
    let dir =
        std::env::temp_dir().join(format!("mediaconvert-local-{}", uuid::Uuid::new_v4().simple()));
    let path = dir.join("create-job.json");
    let write = async {
        tokio::fs::create_dir_all(&dir).await?;
        tokio::fs::write(&path, serde_json::to_vec(body).unwrap_or_default()).await
    };
    write.await.map_err(|e| format!("model check: {e}"))?;
    let out = tokio::process::Command::new(cmd).args(args).arg(&path).output().await;
    let _ = tokio::fs::remove_dir_all(&dir).await;
    match out {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(String::from_utf8_lossy(&o.stdout).trim().to_owned()),
        Err(e) => Err(format!("model check {cmd}: {e}")),
    }
}

async fn create_job(State(service): State<Service>, body: Bytes) -> Result<Response, ApiError> {
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("Request body is not JSON: {e}")))?;
    for member in ["role", "settings"] {
        if body.get(member).is_none() {
            return Err(ApiError::bad_request(format!("{member} is a required parameter")));
        }
    }
    model_check(&service.config().model_check, &body).await.map_err(ApiError::bad_request)?;
    let (job, _new) = service.create(body);
    Ok((StatusCode::CREATED, Json(json!({ "job": job.to_json() }))).into_response())
}

async fn get_job(
    State(service): State<Service>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = service
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("The job {id} does not exist.")))?;
    Ok(Json(json!({ "job": job.to_json() })))
}

/// `ListJobs` query members.
#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(rename = "maxResults")]
    max_results: Option<usize>,
    #[serde(rename = "nextToken")]
    next_token: Option<String>,
    order: Option<String>,
    status: Option<String>,
}

async fn list_jobs(
    State(service): State<Service>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let mut jobs = service.list();
    if q.order.as_deref() != Some("ASCENDING") {
        jobs.reverse();
    }
    if let Some(status) = &q.status {
        jobs.retain(|j| j.status == status);
    }
    let start: usize = match &q.next_token {
        Some(t) => t.parse().map_err(|_| ApiError::bad_request("Invalid nextToken"))?,
        None => 0,
    };
    let max = q.max_results.unwrap_or(20);
    if !(1..=20).contains(&max) {
        return Err(ApiError::bad_request("maxResults must be between 1 and 20"));
    }
    let page: Vec<Value> = jobs.iter().skip(start).take(max).map(|j| j.to_json()).collect();
    let mut out = json!({ "jobs": page });
    if start + max < jobs.len() {
        out["nextToken"] = (start + max).to_string().into();
    }
    Ok(Json(out))
}

async fn cancel_job(
    State(service): State<Service>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match service.cancel(&id).await {
        Ok(()) => Ok((StatusCode::ACCEPTED, Json(json!({}))).into_response()),
        Err(e @ CancelError::NotFound(_)) => Err(ApiError::not_found(e.to_string())),
        Err(e @ CancelError::Ended(..)) => Err(ApiError {
            status: StatusCode::CONFLICT,
            kind: "ConflictException",
            message: e.to_string(),
        }),
    }
}

async fn describe_endpoints(headers: HeaderMap) -> Json<Value> {
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    Json(json!({ "endpoints": [{ "url": format!("http://{host}") }] }))
}
