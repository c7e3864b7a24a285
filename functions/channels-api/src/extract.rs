//! Request body extraction with the API's error contract.

use crate::error::ApiError;
use crate::MAX_BODY_BYTES;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;

/// A JSON body of type `T`, checked in this order:
/// 1. `Content-Type` is `application/json` or `application/*+json` (else 415);
/// 2. at most `LIMIT` bytes, [`MAX_BODY_BYTES`] unless a route asks for more (else 413);
/// 3. parses as `T`, unknown fields refused (else 400 naming the JSON path of the bad field).
#[derive(Debug)]
pub struct JsonBody<T, const LIMIT: usize = MAX_BODY_BYTES>(pub T);

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<S: Send + Sync, T: DeserializeOwned, const LIMIT: usize> FromRequest<S>
    for JsonBody<T, LIMIT>
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let json =
            req.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(is_json);
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = axum::body::to_bytes(req.into_body(), LIMIT)
            .await
            .map_err(|_| ApiError::PayloadTooLarge(LIMIT))?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let field = (path != ".").then_some(path);
            let inner = e.into_inner();
            let inner = without_quoted_values(&inner.to_string());
            let message = match &field {
                Some(f) => format!("{f}: {inner}"),
                None => inner,
            };
            ApiError::InvalidJson { field, message }
        })?;
        de.end().map_err(|e| ApiError::InvalidJson { field: None, message: e.to_string() })?;
        Ok(Self(value))
    }
}

/// `message` with every double-quoted value replaced by `"…"`: serde_json quotes the
/// offending input (`invalid type: string "rtsp://admin:pw@cam/1", expected …`), which may be
/// a camera password; field names (in backticks) are kept.
fn without_quoted_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut parts = message.split('"');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    let rest: Vec<&str> = parts.collect();
    for (i, part) in rest.iter().enumerate() {
        // Odd parts are inside quotes; an unpaired last quote keeps what follows.
        if i % 2 == 0 && i + 1 < rest.len() {
            out.push_str("\"…\"");
        } else if i % 2 == 1 {
            out.push_str(part);
        } else {
            out.push('"');
            out.push_str(part);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn quoted_values_are_not_echoed() {
        let m = super::without_quoted_values(
            r#"invalid type: string "rtsp://admin:pw@cam/1", expected struct Report"#,
        );
        assert_eq!(m, r#"invalid type: string "…", expected struct Report"#);
        assert_eq!(super::without_quoted_values("unknown field `x`"), "unknown field `x`");
    }

    #[test]
    fn json_media_types() {
        assert!(super::is_json("application/json"));
        assert!(super::is_json("Application/JSON; charset=utf-8"));
        assert!(super::is_json("application/merge-patch+json"));
        assert!(!super::is_json("text/plain"));
        assert!(!super::is_json("application/jsonx"));
    }
}
