//! The origin: objects of the media bucket read with S3 `GetObject` (`HeadObject` for HEAD)
//! and passed on as they come, headers and streamed body, never held whole in memory.
//!
//! Source: the Amazon S3 API reference (`GetObject`, `HeadObject`; error codes `NoSuchKey`,
//! `InvalidRange`).

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime, DateTimeFormat};
use axum::body::Body;
use axum::http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, LAST_MODIFIED,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use thiserror::Error;

/// Why an object could not be served.
#[derive(Debug, Error)]
pub enum OriginError {
    /// No object at the key (404).
    #[error("no such key")]
    NoSuchKey,
    /// The `Range` cannot be satisfied (416).
    #[error("invalid range")]
    InvalidRange,
    /// Any other S3 failure (502): the SDK's error with its context.
    #[error("origin failed: {0}")]
    Failed(String),
}

/// An object's answer: status (200, or 206 for a range), its headers and, for GET, its body.
#[derive(Debug)]
pub struct Object {
    /// 200 or 206.
    pub status: StatusCode,
    /// `Content-Type`, `Content-Length`, `Cache-Control`, `ETag`, `Last-Modified`,
    /// `Accept-Ranges` and `Content-Range` as S3 gave them.
    pub headers: HeaderMap,
    /// The body stream (`None` for HEAD).
    pub body: Option<ByteStream>,
}

impl Object {
    /// The body as a response body that streams the S3 body chunk by chunk.
    pub fn into_body(self) -> Body {
        match self.body {
            None => Body::empty(),
            Some(stream) => {
                Body::from_stream(futures::stream::unfold(stream, |mut s| async move {
                    s.next().await.map(|chunk| (chunk, s))
                }))
            }
        }
    }
}

/// The response headers S3 gave, `None` values skipped.
#[derive(Default)]
struct Meta<'a> {
    content_type: Option<&'a str>,
    content_length: Option<i64>,
    cache_control: Option<&'a str>,
    e_tag: Option<&'a str>,
    last_modified: Option<&'a DateTime>,
    accept_ranges: Option<&'a str>,
    content_range: Option<&'a str>,
}

impl Meta<'_> {
    fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        let mut put = |name: HeaderName, value: Option<String>| {
            if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                h.insert(name, v);
            }
        };
        put(CONTENT_TYPE, self.content_type.map(str::to_owned));
        put(CONTENT_LENGTH, self.content_length.map(|n| n.to_string()));
        put(CACHE_CONTROL, self.cache_control.map(str::to_owned));
        put(ETAG, self.e_tag.map(str::to_owned));
        put(LAST_MODIFIED, self.last_modified.and_then(|t| t.fmt(DateTimeFormat::HttpDate).ok()));
        put(ACCEPT_RANGES, self.accept_ranges.map(str::to_owned));
        put(CONTENT_RANGE, self.content_range.map(str::to_owned));
        h
    }

    fn status(&self) -> StatusCode {
        if self.content_range.is_some() {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        }
    }
}

fn failure<E>(err: SdkError<E, HttpResponse>) -> OriginError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    match err.as_service_error().and_then(ProvideErrorMetadata::code) {
        Some("NoSuchKey") => OriginError::NoSuchKey,
        Some("InvalidRange") => OriginError::InvalidRange,
        // HeadObject answers a missing key with a bare 404 (no body, so no code but NotFound).
        Some("NotFound") if status == Some(404) => OriginError::NoSuchKey,
        _ => OriginError::Failed(aws_sdk_s3::error::DisplayErrorContext(err).to_string()),
    }
}

/// The [`Meta`] of a `HeadObject` or `GetObject` output (the same accessors on two types).
macro_rules! meta_of {
    ($out:expr) => {
        Meta {
            content_type: $out.content_type(),
            content_length: $out.content_length(),
            cache_control: $out.cache_control(),
            e_tag: $out.e_tag(),
            last_modified: $out.last_modified(),
            accept_ranges: $out.accept_ranges(),
            content_range: $out.content_range(),
        }
    };
}

/// Reads `key` of `bucket`: its headers and, unless `head`, its body (a byte `range`, the
/// request's `Range` header, when given).
///
/// # Errors
/// [`OriginError`].
pub async fn fetch(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    head: bool,
    range: Option<&str>,
) -> Result<Object, OriginError> {
    if head {
        let out = s3
            .head_object()
            .bucket(bucket)
            .key(key)
            .set_range(range.map(str::to_owned))
            .send()
            .await
            .map_err(failure)?;
        let meta = meta_of!(out);
        return Ok(Object { status: meta.status(), headers: meta.headers(), body: None });
    }
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .set_range(range.map(str::to_owned))
        .send()
        .await
        .map_err(failure)?;
    let meta = meta_of!(out);
    let (status, headers) = (meta.status(), meta.headers());
    Ok(Object { status, headers, body: Some(out.body) })
}
