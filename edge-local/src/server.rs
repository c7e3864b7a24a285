//! The HTTP side: every `GET`/`HEAD /<key>` judged by [`access::authorize`], served from the
//! bucket by [`origin::fetch`], refusals answered as CloudFront answers them (403 with an S3
//! style XML `Error` body), CORS from [`Cors`], and one log line per request.

use crate::access::{self, Grant, MAX_COOKIE_BYTES, MAX_URL_BYTES};
use crate::cookies;
use crate::cors::Cors;
use crate::origin::{self, OriginError};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, HOST, RANGE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use std::sync::Arc;
use streamstack_core::cloudfront::Verifier;

/// Longest request path written to the log, in bytes (longer ones are cut).
pub const MAX_LOGGED_PATH_BYTES: usize = 512;

/// What the edge serves and whom it trusts.
#[derive(Debug, Clone)]
pub struct Edge {
    /// Client of the origin's S3 endpoint.
    pub s3: aws_sdk_s3::Client,
    /// The media bucket.
    pub bucket: String,
    /// The trusted public keys; `None`: no key, every signed request refused.
    pub verifier: Option<Verifier>,
    /// The allowed CORS origins.
    pub cors: Cors,
}

/// The router serving `edge` on every path.
pub fn router(edge: Edge) -> Router {
    Router::new().fallback(handle).with_state(Arc::new(edge))
}

/// An error answer with CloudFront's (S3's) XML body: `<Error><Code>` and `<Message>`.
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let escaped = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    let body = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{escaped}</Message></Error>"#
    );
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    // Refusals depend on the credentials of the request: no cache may replay them.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The answer to one request and, for refusals and failures, why (never a credential).
async fn answer(edge: &Edge, request: &Parts) -> (Response, Option<String>) {
    let head = match request.method {
        Method::GET => false,
        Method::HEAD => true,
        Method::OPTIONS => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::NO_CONTENT;
            return (response, None);
        }
        _ => {
            let why = "method not allowed";
            return (
                error(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", why),
                Some(why.into()),
            );
        }
    };
    let uri = &request.uri;
    if uri.path_and_query().map_or(0, |pq| pq.as_str().len()) > MAX_URL_BYTES {
        let why = "URL longer than 8 KiB";
        return (error(StatusCode::URI_TOO_LONG, "RequestURITooLong", why), Some(why.into()));
    }
    let headers = &request.headers;
    let cookie_bytes: usize = headers.get_all(COOKIE).iter().map(|v| v.len()).sum();
    if cookie_bytes > MAX_COOKIE_BYTES {
        let why = "Cookie header longer than 8 KiB";
        let status = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
        return (error(status, "RequestHeaderFieldsTooLarge", why), Some(why.into()));
    }
    let cookie_values: Vec<&str> =
        headers.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok()).collect();
    let parts = access::Request {
        host: headers.get(HOST).and_then(|h| h.to_str().ok()),
        path: uri.path(),
        query: uri.query(),
        cookies: &cookie_values,
    };
    let authorized = match access::authorize(edge.verifier.as_ref(), &parts, now()) {
        Ok(a) => a,
        Err(refusal) => {
            let why = refusal.to_string();
            return (error(StatusCode::FORBIDDEN, "AccessDenied", &why), Some(why));
        }
    };
    let range = headers.get(RANGE).and_then(|r| r.to_str().ok());
    let mut object = match origin::fetch(&edge.s3, &edge.bucket, &authorized.key, head, range).await
    {
        Ok(object) => object,
        Err(OriginError::NoSuchKey) => {
            let why = "The specified key does not exist.";
            return (error(StatusCode::NOT_FOUND, "NoSuchKey", why), Some("no such key".into()));
        }
        Err(OriginError::InvalidRange) => {
            let why = "The requested range is not satisfiable";
            let status = StatusCode::RANGE_NOT_SATISFIABLE;
            return (error(status, "InvalidRange", why), Some("invalid range".into()));
        }
        Err(e @ OriginError::Failed(_)) => {
            let response = error(StatusCode::BAD_GATEWAY, "OriginError", "the origin failed");
            return (response, Some(e.to_string()));
        }
    };
    let status = object.status;
    let mut object_headers = std::mem::take(&mut object.headers);
    if let Grant::Query(credentials) = &authorized.grant {
        // The local edge speaks plain HTTP only: cookies without `Secure`.
        for value in cookies::set_cookies(credentials, uri.path(), false).into_iter().flatten() {
            object_headers.append(SET_COOKIE, value);
        }
    }
    let mut response = Response::new(object.into_body());
    *response.status_mut() = status;
    *response.headers_mut() = object_headers;
    (response, None)
}

/// Answers one request, adds the CORS headers, logs one line.
async fn handle(State(edge): State<Arc<Edge>>, request: Request) -> Response {
    // The body is never read (GET, HEAD, OPTIONS have none).
    let (request, _body) = request.into_parts();
    let (mut response, reason) = answer(&edge, &request).await;
    let preflight = request.method == Method::OPTIONS;
    edge.cors.apply(&request.headers, response.headers_mut(), preflight);
    let path = request.uri.path();
    let mut cut = path.len().min(MAX_LOGGED_PATH_BYTES);
    while !path.is_char_boundary(cut) {
        cut -= 1;
    }
    tracing::info!(
        method = %request.method,
        path = &path[..cut],
        status = response.status().as_u16(),
        reason = reason.as_deref().unwrap_or(""),
        "request"
    );
    response
}
