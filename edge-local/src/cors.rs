//! CORS for players on other origins: an allowed `Origin` is echoed with credentials allowed
//! (signed cookies travel only with `credentials: include`, which forbids `*`), as the
//! distribution's response headers policy does in AWS.
//!
//! Source: the Fetch standard, "CORS protocol" (`Access-Control-Allow-Origin` must be the
//! request's origin, not `*`, when `Access-Control-Allow-Credentials` is `true`).

use axum::http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, VARY,
};
use axum::http::{HeaderMap, HeaderValue};
use thiserror::Error;

/// Methods a preflight allows.
pub const ALLOW_METHODS: &str = "GET, HEAD, OPTIONS";
/// Request headers a preflight allows (players fetch byte ranges).
pub const ALLOW_HEADERS: &str = "Range";
/// How long a browser may cache a preflight answer: 600 seconds.
pub const MAX_AGE_SECS: u32 = 600;

/// An allowed origin that is not `scheme://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("allowed origin {0:?}: want http(s)://host[:port] without path or wildcard")]
pub struct OriginError(pub String);

/// The allowed origins.
#[derive(Debug, Clone, Default)]
pub struct Cors {
    origins: Vec<String>,
}

impl Cors {
    /// Allows exactly `origins` (compared byte for byte with the request's `Origin`).
    ///
    /// # Errors
    /// [`OriginError`] for anything but `http://` or `https://` and a host with an optional
    /// port (no path, no trailing slash, no `*`).
    pub fn new(origins: impl IntoIterator<Item = String>) -> Result<Self, OriginError> {
        let origins: Vec<String> = origins.into_iter().collect();
        for origin in &origins {
            let host = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
            let ok = host.is_some_and(|h| {
                !h.is_empty()
                    && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
            });
            if !ok {
                return Err(OriginError(origin.clone()));
            }
        }
        Ok(Self { origins })
    }

    /// Whether no origin is allowed (then no response carries CORS headers).
    pub fn is_empty(&self) -> bool {
        self.origins.is_empty()
    }

    /// The request's `Origin` when it is allowed.
    pub fn allowed<'a>(&self, request: &'a HeaderMap) -> Option<&'a HeaderValue> {
        let origin = request.get(axum::http::header::ORIGIN)?;
        self.origins.iter().any(|o| o.as_bytes() == origin.as_bytes()).then_some(origin)
    }

    /// Adds the CORS headers of a response to `request` to `response`: for an allowed origin,
    /// `Access-Control-Allow-Origin: <origin>` and `Access-Control-Allow-Credentials: true`
    /// (plus, on a preflight, the allowed methods, headers and max age); `Vary: Origin`
    /// whenever any origin is allowed (the answer depends on it); nothing otherwise.
    pub fn apply(&self, request: &HeaderMap, response: &mut HeaderMap, preflight: bool) {
        if self.is_empty() {
            return;
        }
        response.append(VARY, HeaderValue::from_static("Origin"));
        let Some(origin) = self.allowed(request) else { return };
        response.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        response.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        if preflight {
            response.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(ALLOW_METHODS));
            response.insert(ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOW_HEADERS));
            response.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from(MAX_AGE_SECS));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(origin: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        h
    }

    #[test]
    fn echoes_only_allowed_origins() {
        let cors = Cors::new(["https://app.example".to_owned()]).unwrap();
        let mut out = HeaderMap::new();
        cors.apply(&request("https://app.example"), &mut out, true);
        assert_eq!(out[ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example");
        assert_eq!(out[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert_eq!(out[ACCESS_CONTROL_ALLOW_METHODS], ALLOW_METHODS);
        assert_eq!(out[VARY], "Origin");
        let mut out = HeaderMap::new();
        cors.apply(&request("https://evil.example"), &mut out, true);
        assert!(out.get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert!(out.get(ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
        let mut out = HeaderMap::new();
        Cors::default().apply(&request("https://app.example"), &mut out, false);
        assert!(out.is_empty());
    }

    #[test]
    fn refuses_wildcards_and_paths() {
        for bad in ["*", "https://a.example/", "app.example", "https://", "https://a b"] {
            assert!(Cors::new([bad.to_owned()]).is_err(), "{bad}");
        }
        assert!(Cors::new(["http://127.0.0.1:3000".to_owned()]).is_ok());
    }
}
