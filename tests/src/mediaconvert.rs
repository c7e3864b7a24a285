//! A failure-injecting stand-in for the MediaConvert `CreateJob` endpoint, for the trigger's retry
//! and error tests (the local stack runs `mediaconvert-local`, which really transcodes).
//!
//! It records every request body exactly as the SDK put it on the wire, answers like
//! MediaConvert (`201 {"job":{..}}`, one job per `clientRequestToken`, as the real service's
//! idempotency does), and can be told to fail the next requests with a given status and
//! error type (`x-amzn-ErrorType`, restJson1) so that retry classification is exercised
//! through the SDK's real retry stack.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// One recorded `CreateJob` call.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The request body, parsed.
    pub body: Value,
    /// The request headers.
    pub headers: HeaderMap,
}

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    jobs: HashMap<String, String>,
    failures: VecDeque<(u16, String)>,
}

/// A running stand-in; cheap to clone.
#[derive(Clone)]
pub struct MediaConvertStub {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    inner: Arc<Mutex<Inner>>,
}

impl MediaConvertStub {
    /// Starts a stand-in on `addr` (port 0: any free port).
    ///
    /// # Panics
    /// When the address cannot be bound.
    pub async fn start(addr: SocketAddr) -> Self {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/2017-08-29/jobs", post(create_job))
            .with_state(Arc::clone(&inner));
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind stub");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { endpoint, inner }
    }

    /// Fails the next `n` requests with HTTP `status` and error type `error_type` (e.g. 429
    /// `TooManyRequestsException`, 400 `BadRequestException`).
    pub fn fail_next(&self, n: usize, status: u16, error_type: &str) {
        let mut inner = self.inner.lock().expect("lock");
        inner.failures.extend(std::iter::repeat_n((status, error_type.to_owned()), n));
    }

    /// Every request so far, failed ones included.
    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().expect("lock").requests.clone()
    }

    /// Number of distinct jobs created.
    pub fn jobs(&self) -> usize {
        self.inner.lock().expect("lock").jobs.len()
    }
}

async fn create_job(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut inner = inner.lock().expect("lock");
    inner.requests.push(Recorded { body: body.clone(), headers });
    if let Some((status, error_type)) = inner.failures.pop_front() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (
            status,
            [("x-amzn-ErrorType", error_type.clone())],
            Json(json!({ "message": format!("stand-in: {error_type}") })),
        )
            .into_response();
    }
    let token = body["clientRequestToken"].as_str().unwrap_or_default().to_owned();
    let next = inner.jobs.len();
    let id = inner
        .jobs
        .entry(token)
        .or_insert_with(|| {
            format!("{}-{next:06}", time::OffsetDateTime::now_utc().unix_timestamp())
        })
        .clone();
    let job = json!({
        "job": {
            "id": id,
            "arn": format!("arn:aws:mediaconvert:us-east-1:123456789012:jobs/{id}"),
            "status": "SUBMITTED",
            "role": body["role"],
            "settings": body["settings"],
            "userMetadata": body["userMetadata"],
            "createdAt": time::OffsetDateTime::now_utc().unix_timestamp(),
        }
    });
    (StatusCode::CREATED, Json(job)).into_response()
}
