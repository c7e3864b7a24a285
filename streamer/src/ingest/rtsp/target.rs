//! An RTSP source URL split into what retina connects to and the credentials to answer
//! its challenge with (RFC 2326 §3.2 `rtsp_URL`; userinfo as RFC 3986 §3.2.1 writes it).

use super::Credentials;
use crate::ingest::SourceError;
use url::Url;

/// Where to connect and as whom.
#[derive(Debug)]
pub(super) struct Target {
    /// The URL without userinfo (retina refuses URLs that carry credentials).
    pub url: Url,
    /// The URL's credentials (percent-decoded), else the options', else none: a shared
    /// credential never goes to a camera whose URL names its own.
    pub credentials: Option<Credentials>,
}

/// Parses `url`: `rtsp://[user[:password]@]host[:port][/path]`, or `rtsps://…` (RTSP over
/// TLS, RFC 7826 §4.2), which the caller tunnels (see `tls`).
///
/// # Errors
/// [`SourceError::InvalidUrl`] for a URL that does not parse, another scheme, no host, or
/// userinfo that is not UTF-8 once percent-decoded. No message contains the URL's userinfo.
pub(super) fn parse(url: &str, credentials: Option<&Credentials>) -> Result<Target, SourceError> {
    let mut url = Url::parse(url.trim()).map_err(|e| SourceError::InvalidUrl(e.to_string()))?;
    if !matches!(url.scheme(), "rtsp" | "rtsps") {
        return Err(SourceError::InvalidUrl(format!(
            "scheme {:?} is not rtsp:// or rtsps://",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(SourceError::InvalidUrl("no host".into()));
    }
    let from_url = if url.username().is_empty() && url.password().is_none() {
        None
    } else {
        Some(Credentials {
            username: percent_decode(url.username())?,
            password: percent_decode(url.password().unwrap_or_default())?,
        })
    };
    // Cannot fail for a URL with a host.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Ok(Target { url, credentials: from_url.or_else(|| credentials.cloned()) })
}

/// Decodes `%XX` escapes (RFC 3986 §2.1); a `%` not followed by two hex digits stays as it is.
fn percent_decode(s: &str) -> Result<String, SourceError> {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .map(std::borrow::Cow::into_owned)
        .map_err(|_| SourceError::InvalidUrl("userinfo is not UTF-8 once percent-decoded".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(username: &str, password: &str) -> Credentials {
        Credentials { username: username.into(), password: password.into() }
    }

    #[test]
    fn userinfo_is_decoded_and_removed() {
        let t = parse("rtsp://admin:s3cr%3At%40x%25@10.0.0.5:8554/Streaming/101?a=b", None)
            .expect("valid");
        assert_eq!(t.url.as_str(), "rtsp://10.0.0.5:8554/Streaming/101?a=b");
        assert_eq!(t.credentials, Some(creds("admin", "s3cr:t@x%")));
        let t = parse("rtsp://user@cam/x", None).expect("valid");
        assert_eq!(t.credentials, Some(creds("user", "")));
        assert_eq!(t.url.as_str(), "rtsp://cam/x");
    }

    #[test]
    fn rtsps_is_taken_with_its_credentials_removed() {
        let t = parse("rtsps://admin:pw1@cam.example:8322/1?a=b", None).expect("valid");
        assert_eq!(t.url.as_str(), "rtsps://cam.example:8322/1?a=b");
        assert_eq!(t.credentials, Some(creds("admin", "pw1")));
    }

    #[test]
    fn option_credentials_serve_urls_without_their_own() {
        let given = creds("ops", "from-secrets-manager");
        let t = parse("rtsp://admin:own@cam/1", Some(&given)).expect("valid");
        assert_eq!(t.credentials, Some(creds("admin", "own")));
        assert_eq!(t.url.as_str(), "rtsp://cam/1");
        let t = parse("rtsp://cam/1", Some(&given)).expect("valid");
        assert_eq!(t.credentials, Some(given.clone()));
        let t = parse("rtsp://cam/1", None).expect("valid");
        assert_eq!(t.credentials, None);
    }

    #[test]
    fn refuses_other_urls_without_echoing_credentials() {
        for url in ["http://admin:pw1@cam/1", "rtsp:///path", "not a url", "udp://1.2.3.4:5"] {
            let e = parse(url, None).expect_err(url);
            assert!(matches!(e, SourceError::InvalidUrl(_)), "{url}: {e}");
            assert!(!e.to_string().contains("pw1"), "{e}");
        }
        let e = parse("rtsp://a:%FF%FE@cam/1", None).expect_err("not UTF-8");
        assert!(matches!(e, SourceError::InvalidUrl(_)));
    }

    #[test]
    fn percent_decoding_keeps_stray_percent_signs() {
        assert_eq!(percent_decode("a%2").unwrap(), "a%2");
        assert_eq!(percent_decode("%zz%41").unwrap(), "%zzA");
        assert_eq!(percent_decode("").unwrap(), "");
    }
}
