//! HTTP for the egress: two clients (media, API; rustls on aws-lc-rs with the system's
//! roots, no `Referer`, redirects kept on the origin), every request under a timeout, every
//! body under a size cap, and errors that never carry the URL (its query may be a
//! CloudFront signature).

use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// TCP (and TLS) connect timeout: 5 s.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A whole playlist or API request, body included: 10 s.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A whole segment download: 30 s.
pub const SEGMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest segment accepted, bytes (64 MiB: ~50 s at 10 Mbit/s).
pub const MAX_SEGMENT_BYTES: usize = 64 << 20;

/// Why a request failed. Display never shows the URL.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A non-2xx answer.
    #[error("HTTP status {0}")]
    Status(u16),
    /// The body exceeded the cap, bytes.
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
    /// Connect, TLS, transfer or timeout; the client's message without the URL.
    #[error("HTTP: {0}")]
    Transport(String),
}

impl FetchError {
    /// Whether the answer says the credentials are refused or stale (401, 403): a
    /// `channel:`/`device:` source re-resolves then.
    pub fn is_auth(&self) -> bool {
        matches!(self, Self::Status(401 | 403))
    }
}

impl From<reqwest::Error> for FetchError {
    fn from(e: reqwest::Error) -> Self {
        Self::Transport(e.without_url().to_string())
    }
}

/// Most redirects followed for one playlist or segment request.
pub const MAX_REDIRECTS: usize = 3;

/// The HTTP client of the egress for playlists and segments: no `Referer`, and at most
/// [`MAX_REDIRECTS`] redirects, each to the same origin (a signed query must not travel to
/// another host).
///
/// # Errors
/// [`FetchError::Transport`] when TLS cannot be configured.
pub fn client() -> Result<reqwest::Client, FetchError> {
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        if follows_redirect(attempt.previous(), attempt.url()) {
            attempt.follow()
        } else {
            attempt.stop()
        }
    });
    Ok(builder()?.redirect(policy).build()?)
}

/// The HTTP client of the egress for the channels API: no `Referer`, no redirects.
///
/// # Errors
/// [`FetchError::Transport`] when TLS cannot be configured.
pub fn api_client() -> Result<reqwest::Client, FetchError> {
    Ok(builder()?.redirect(reqwest::redirect::Policy::none()).build()?)
}

/// Whether a redirect to `next` is followed after the requests to `previous` (the first
/// one included): at most [`MAX_REDIRECTS`], and only to the origin of the last one.
pub fn follows_redirect(previous: &[Url], next: &Url) -> bool {
    previous.len() <= MAX_REDIRECTS && previous.last().is_some_and(|p| p.origin() == next.origin())
}

fn builder() -> Result<reqwest::ClientBuilder, FetchError> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(roots = added, "system root certificates");
    let tls = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| FetchError::Transport(format!("TLS configuration: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .referer(false)
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(SEGMENT_TIMEOUT))
}

/// `url` with `query` (the signed playback query) appended to its own.
pub fn with_query(url: &Url, query: Option<&str>) -> Url {
    let mut url = url.clone();
    if let Some(extra) = query.filter(|q| !q.is_empty()) {
        let joined = match url.query() {
            Some(own) if !own.is_empty() => format!("{own}&{extra}"),
            _ => extra.to_owned(),
        };
        url.set_query(Some(&joined));
    }
    url
}

/// The URL of a segment `uri` of the playlist at `playlist` (whose own URL carries no
/// signed query): `query` appended only when the segment is on the playlist's origin
/// (scheme, host, port), so a signature never travels to another host. `None` for an
/// unusable URI or a scheme other than http(s).
pub fn segment_url(playlist: &Url, uri: &str, query: Option<&str>) -> Option<Url> {
    let url = playlist.join(uri).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    if url.origin() == playlist.origin() {
        Some(with_query(&url, query))
    } else {
        Some(url)
    }
}

/// Sends `request` (a GET, its URL already carrying any signed query): the body if the
/// status is 2xx and the body at most `cap` bytes, all within `timeout`.
///
/// # Errors
/// [`FetchError`].
pub async fn get(
    request: reqwest::RequestBuilder,
    cap: usize,
    timeout: Duration,
) -> Result<Bytes, FetchError> {
    let fetch = async {
        let mut response = request.timeout(timeout).send().await?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        if response.content_length().is_some_and(|n| n > cap as u64) {
            return Err(FetchError::TooLarge(cap));
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > cap {
                return Err(FetchError::TooLarge(cap));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .unwrap_or_else(|_| Err(FetchError::Transport("timed out".into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signed_query_is_appended_to_any_own_query() {
        let url = Url::parse("https://cdn.example/live/a/index.m3u8").unwrap();
        let signed = with_query(&url, Some("Policy=p&Signature=s&Key-Pair-Id=k"));
        assert_eq!(
            signed.as_str(),
            "https://cdn.example/live/a/index.m3u8?Policy=p&Signature=s&Key-Pair-Id=k"
        );
        let own = Url::parse("https://cdn.example/a/seg.ts?v=1").unwrap();
        assert_eq!(with_query(&own, Some("x=y")).query(), Some("v=1&x=y"));
        assert_eq!(with_query(&own, None), own);
        assert_eq!(with_query(&own, Some("")), own);
    }

    #[test]
    fn redirects_stay_on_the_origin_and_are_limited() {
        let u = |s: &str| Url::parse(s).unwrap();
        let first = u("https://cdn.example/live/a/index.m3u8?Signature=s");
        let one = std::slice::from_ref(&first);
        assert!(follows_redirect(one, &u("https://cdn.example/b/index.m3u8")));
        assert!(!follows_redirect(one, &u("https://evil.example/b.m3u8")));
        assert!(!follows_redirect(one, &u("http://cdn.example/b.m3u8")));
        assert!(!follows_redirect(one, &u("https://cdn.example:8443/b.m3u8")));
        let three = vec![first.clone(); 3];
        assert!(follows_redirect(&three, &first));
        assert!(!follows_redirect(&[three, vec![first.clone()]].concat(), &first));
    }

    #[test]
    fn the_signed_query_goes_only_to_segments_on_the_playlists_origin() {
        let playlist = Url::parse("https://cdn.example/live/a/index.m3u8").unwrap();
        let q = Some("Signature=s");
        let seg = |uri| segment_url(&playlist, uri, q).map(|u| u.to_string());
        assert_eq!(seg("s1.ts").as_deref(), Some("https://cdn.example/live/a/s1.ts?Signature=s"));
        assert_eq!(
            seg("https://cdn.example/other/s1.ts").as_deref(),
            Some("https://cdn.example/other/s1.ts?Signature=s")
        );
        assert_eq!(
            seg("https://evil.example/s1.ts").as_deref(),
            Some("https://evil.example/s1.ts")
        );
        assert_eq!(seg("http://cdn.example/s1.ts").as_deref(), Some("http://cdn.example/s1.ts"));
        assert_eq!(
            seg("https://cdn.example:8443/s1.ts").as_deref(),
            Some("https://cdn.example:8443/s1.ts")
        );
        assert_eq!(seg("file:///etc/passwd"), None);
        assert_eq!(seg("ftp://cdn.example/s1.ts"), None);
    }

    #[test]
    fn errors_never_show_the_url() {
        let e = FetchError::Status(403);
        assert!(e.is_auth());
        assert_eq!(e.to_string(), "HTTP status 403");
    }
}
