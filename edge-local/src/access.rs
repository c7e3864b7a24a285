//! Which request may read which object: the rules of the distribution's two cache
//! behaviours.
//!
//! - The default behaviour serves the public prefixes ([`PUBLIC_ROOTS`]) to anyone.
//! - The `signed/*` behaviour requires the trusted key group: a signed URL (query `Policy`,
//!   `Signature`, `Key-Pair-Id`) or, without any of those parameters, the signed cookies
//!   (`CloudFront-Policy`, `CloudFront-Signature`, `CloudFront-Key-Pair-Id`). When any of the
//!   three parameters is present CloudFront judges the URL alone and ignores the cookies.
//!   Credentials are checked by [`Verifier::verify`] against the request URL
//!   `http://<Host><path>[?<query without the signing parameters>]`.
//! - Anything else is refused.
//!
//! Source: CloudFront Developer Guide, "Serve private content with signed URLs and signed
//! cookies" ("Choose between signed URLs and signed cookies": a request with a signed URL's
//! parameters is judged by the URL), and `streamstack_core::playback` for the prefixes.

use crate::cookies;
use streamstack_core::cloudfront::{
    Denied, Verifier, COOKIE_KEY_PAIR_ID, COOKIE_POLICY, COOKIE_SIGNATURE, QUERY_KEY_PAIR_ID,
    QUERY_POLICY, QUERY_SIGNATURE,
};
use streamstack_core::playback::SIGNED_ROOT;
use thiserror::Error;

/// Key prefixes of public media (channels, VOD outputs, device recordings); below
/// [`SIGNED_ROOT`] the same prefixes hold signed media.
pub const PUBLIC_ROOTS: [&str; 3] = ["live/", "outputs/", "devices/"];
/// Longest request target (path and query) served, in bytes: 8 KiB, CloudFront's limit on a
/// request URL.
pub const MAX_URL_BYTES: usize = 8 * 1024;
/// Longest `Cookie` header (all of them together) accepted, in bytes: 8 KiB.
pub const MAX_COOKIE_BYTES: usize = 8 * 1024;

/// Why a request may not read what it asks for. Every refusal answers 403 `AccessDenied`
/// with this text as the message; none carries a credential.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    /// The credentials were judged and refused.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// The key is under none of the media prefixes.
    #[error("not a media path")]
    OutsideMedia,
    /// The path is not percent-encoded UTF-8, or has empty, `.` or `..` segments.
    #[error("malformed path")]
    MalformedPath,
    /// A signing parameter appears more than once in the query.
    #[error("repeated signed URL parameter")]
    RepeatedParameter,
    /// The `Host` header is missing or not `host[:port]`, so the URL to judge is unknown.
    #[error("missing or malformed Host header")]
    BadHost,
    /// No public key is trusted: signed media is refused to everyone (fail closed).
    #[error("no trusted signing keys configured")]
    NoTrustedKeys,
}

/// Where a key lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// Under a [`PUBLIC_ROOTS`] prefix: anyone may read it.
    Public,
    /// Under [`SIGNED_ROOT`] followed by a [`PUBLIC_ROOTS`] prefix: credentials needed.
    Signed,
}

impl Area {
    /// The area of `key`, `None` outside the media prefixes.
    pub fn of_key(key: &str) -> Option<Self> {
        let under = |k: &str| PUBLIC_ROOTS.iter().any(|root| k.starts_with(root));
        match key.strip_prefix(SIGNED_ROOT) {
            Some(rest) => under(rest).then_some(Self::Signed),
            None => under(key).then_some(Self::Public),
        }
    }
}

/// The three values of a signed URL or of the signed cookies (encoded as they travel).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `Policy` / `CloudFront-Policy`.
    pub policy: String,
    /// `Signature` / `CloudFront-Signature`.
    pub signature: String,
    /// `Key-Pair-Id` / `CloudFront-Key-Pair-Id`.
    pub key_pair_id: String,
}

/// Shows only the key pair id (policy and signature are credentials).
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("key_pair_id", &self.key_pair_id)
            .finish_non_exhaustive()
    }
}

/// How a request was let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// A public key.
    Public,
    /// Valid signed cookies.
    Cookies,
    /// A valid signed URL (its values become cookies on a 200 answer).
    Query(Credentials),
}

/// The parts of a request that decide access.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The `Host` header, if any.
    pub host: Option<&'a str>,
    /// The path as received (percent-encoded), starting with `/`.
    pub path: &'a str,
    /// The query as received, without `?`.
    pub query: Option<&'a str>,
    /// Every `Cookie` header value.
    pub cookies: &'a [&'a str],
}

/// An authorized request: the object key to read and how it was let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    /// The S3 key (the path percent-decoded, without its leading `/`).
    pub key: String,
    /// How.
    pub grant: Grant,
}

/// The S3 key of a request path: percent-decoded, without the leading `/`.
///
/// # Errors
/// [`Refusal::MalformedPath`] for a path that is not UTF-8 once decoded or that has an empty,
/// `.` or `..` segment (CloudFront would normalise those; S3 keys are taken literally). The
/// path `/` is the empty key.
pub fn key_of_path(path: &str) -> Result<String, Refusal> {
    let raw = path.strip_prefix('/').ok_or(Refusal::MalformedPath)?;
    let key = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| Refusal::MalformedPath)?;
    // `/` alone is the empty key (no object, outside the media prefixes).
    if !key.is_empty() && key.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Err(Refusal::MalformedPath);
    }
    Ok(key.into_owned())
}

/// A `Host` header value that is `host[:port]` (letters, digits, `-`, `.`, `:`, IPv6
/// brackets): nothing that could change the meaning of the URL it is put in.
fn valid_host(host: Option<&str>) -> Result<&str, Refusal> {
    let host = host.ok_or(Refusal::BadHost)?;
    let ok = !host.is_empty()
        && host.len() <= 255
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    ok.then_some(host).ok_or(Refusal::BadHost)
}

/// The signed URL's credentials and the rest of the query (raw, in order), or `None` when
/// the query has none of the three parameters.
fn signed_query(query: &str) -> Result<Option<(Credentials, String)>, Refusal> {
    let (mut policy, mut signature, mut key_pair_id) = (None, None, None);
    let mut rest = Vec::new();
    for piece in query.split('&').filter(|p| !p.is_empty()) {
        let Some((name, value)) = url::form_urlencoded::parse(piece.as_bytes()).next() else {
            continue;
        };
        let slot = match name.as_ref() {
            QUERY_POLICY => &mut policy,
            QUERY_SIGNATURE => &mut signature,
            QUERY_KEY_PAIR_ID => &mut key_pair_id,
            _ => {
                rest.push(piece);
                continue;
            }
        };
        if slot.replace(value.into_owned()).is_some() {
            return Err(Refusal::RepeatedParameter);
        }
    }
    match (policy, signature, key_pair_id) {
        (None, None, None) => Ok(None),
        (Some(policy), Some(signature), Some(key_pair_id)) => {
            Ok(Some((Credentials { policy, signature, key_pair_id }, rest.join("&"))))
        }
        _ => Err(Denied::MissingCredentials.into()),
    }
}

/// The signed cookies among `headers` (the first of each name, as browsers send the most
/// specific path first).
fn signed_cookies(headers: &[&str]) -> Result<Credentials, Refusal> {
    let get = |name| cookies::find(headers, name).map(str::to_owned);
    match (get(COOKIE_POLICY), get(COOKIE_SIGNATURE), get(COOKIE_KEY_PAIR_ID)) {
        (Some(policy), Some(signature), Some(key_pair_id)) => {
            Ok(Credentials { policy, signature, key_pair_id })
        }
        _ => Err(Denied::MissingCredentials.into()),
    }
}

/// Decides whether `request` may read its key at `now` (Unix seconds), trusting the keys of
/// `verifier` (`None`: no key is trusted and every signed request is refused).
///
/// # Errors
/// The [`Refusal`].
pub fn authorize(
    verifier: Option<&Verifier>,
    request: &Request<'_>,
    now: u64,
) -> Result<Authorized, Refusal> {
    let key = key_of_path(request.path)?;
    match Area::of_key(&key).ok_or(Refusal::OutsideMedia)? {
        Area::Public => Ok(Authorized { key, grant: Grant::Public }),
        Area::Signed => {
            let verifier = verifier.ok_or(Refusal::NoTrustedKeys)?;
            let host = valid_host(request.host)?;
            let query = request.query.unwrap_or("");
            let (credentials, judged_query, by_query) = match signed_query(query)? {
                Some((credentials, rest)) => (credentials, rest, true),
                None => (signed_cookies(request.cookies)?, query.to_owned(), false),
            };
            let mut url = format!("http://{host}{}", request.path);
            if !judged_query.is_empty() {
                url.push('?');
                url.push_str(&judged_query);
            }
            let Credentials { policy, signature, key_pair_id } = &credentials;
            verifier.verify(&url, policy, signature, key_pair_id, now)?;
            let grant = if by_query { Grant::Query(credentials) } else { Grant::Cookies };
            Ok(Authorized { key, grant })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamstack_core::cloudfront::{SignedPolicy, Signer};

    /// A 1024-bit test key pair (CloudFront requires 2048; small keeps the test fast).
    fn keys() -> (Signer, Verifier) {
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 1024).unwrap();
        let pem = private.to_pkcs8_pem(LineEnding::LF).unwrap();
        let public = private.to_public_key().to_public_key_pem(LineEnding::LF).unwrap();
        (Signer::from_pem(&pem, "K1").unwrap(), Verifier::new().trust("K1", &public).unwrap())
    }

    fn cookie_header(p: &SignedPolicy) -> String {
        p.cookies().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn req<'a>(path: &'a str, query: Option<&'a str>, cookies: &'a [&'a str]) -> Request<'a> {
        Request { host: Some("127.0.0.1:8088"), path, query, cookies }
    }

    #[test]
    fn areas() {
        assert_eq!(Area::of_key("live/a/index.m3u8"), Some(Area::Public));
        assert_eq!(Area::of_key("outputs/a/hls/master.m3u8"), Some(Area::Public));
        assert_eq!(Area::of_key("devices/d/x.ts"), Some(Area::Public));
        assert_eq!(Area::of_key("signed/live/a/index.m3u8"), Some(Area::Signed));
        assert_eq!(Area::of_key("signed/inputs/a"), None);
        assert_eq!(Area::of_key("inputs/a.mp4"), None);
        assert_eq!(Area::of_key("livestream/a"), None);
        assert_eq!(key_of_path("/live/a%20b/x.ts").unwrap(), "live/a b/x.ts");
        for bad in ["/live/../signed/live/a/x", "/live//x", "/live/%2e%2e/x", "/live/%ff", "x"] {
            assert_eq!(key_of_path(bad), Err(Refusal::MalformedPath), "{bad}");
        }
    }

    #[test]
    fn public_needs_nothing_and_signed_needs_credentials() {
        let (signer, verifier) = keys();
        let v = Some(&verifier);
        let public = authorize(v, &req("/live/c/index.m3u8", None, &[]), 10).unwrap();
        assert_eq!(public, Authorized { key: "live/c/index.m3u8".into(), grant: Grant::Public });
        let path = "/signed/live/a/index.m3u8";
        assert_eq!(authorize(v, &req(path, None, &[]), 10), Err(Denied::MissingCredentials.into()));
        assert_eq!(authorize(None, &req(path, None, &[]), 10), Err(Refusal::NoTrustedKeys));
        assert_eq!(authorize(v, &req("/inputs/x", None, &[]), 10), Err(Refusal::OutsideMedia));

        let p = signer.sign("http://127.0.0.1:8088/signed/live/a/*", 100);
        let cookies = cookie_header(&p);
        let headers = [cookies.as_str()];
        let ok = authorize(v, &req(path, None, &headers), 10).unwrap();
        assert_eq!(ok.grant, Grant::Cookies);
        assert_eq!(
            authorize(v, &req(path, None, &headers), 100),
            Err(Denied::Expired.into()),
            "expired"
        );
        assert_eq!(
            authorize(v, &req("/signed/live/b/index.m3u8", None, &headers), 10),
            Err(Denied::ResourceMismatch.into())
        );
        // A Host that would move the policy's prefix in front of another path.
        let sneaky =
            Request { host: Some("127.0.0.1:8088/signed/live/a"), ..req(path, None, &headers) };
        assert_eq!(authorize(v, &sneaky, 10), Err(Refusal::BadHost));
        assert_eq!(authorize(v, &Request { host: None, ..sneaky }, 10), Err(Refusal::BadHost));

        // Signed URL: judged alone, cookies ignored; other parameters stay in the URL judged.
        let q = p.query();
        let by_query = authorize(v, &req(path, Some(&q), &[]), 10).unwrap();
        assert_eq!(
            by_query.grant,
            Grant::Query(Credentials {
                policy: p.policy.clone(),
                signature: p.signature.clone(),
                key_pair_id: "K1".into()
            })
        );
        let with_other = format!("x=1&{q}");
        assert!(authorize(v, &req(path, Some(&with_other), &[]), 10).is_ok());
        let partial = format!("Policy={}&Key-Pair-Id=K1", p.policy);
        assert_eq!(
            authorize(v, &req(path, Some(&partial), &headers), 10),
            Err(Denied::MissingCredentials.into()),
            "an incomplete signed URL is refused even with valid cookies"
        );
        let repeated = format!("{q}&Key-Pair-Id=K1");
        assert_eq!(
            authorize(v, &req(path, Some(&repeated), &[]), 10),
            Err(Refusal::RepeatedParameter)
        );
        let other_key = q.replace("Key-Pair-Id=K1", "Key-Pair-Id=K2");
        assert_eq!(
            authorize(v, &req(path, Some(&other_key), &[]), 10),
            Err(Denied::UnknownKeyPair.into())
        );
    }

    #[test]
    fn refusal_messages_carry_no_credentials() {
        let (signer, verifier) = keys();
        let p = signer.sign("http://127.0.0.1:8088/signed/live/a/*", 100);
        let mut tampered = p.clone();
        tampered.signature = tampered.signature.replacen(|c: char| c != 'A', "A", 1);
        let q = tampered.query();
        let e =
            authorize(Some(&verifier), &req("/signed/live/a/x.ts", Some(&q), &[]), 10).unwrap_err();
        assert_eq!(e, Refusal::Denied(Denied::BadSignature));
        let text = e.to_string();
        assert!(!text.contains(&p.policy) && !text.contains(&tampered.signature), "{text}");
        assert!(!format!(
            "{:?}",
            Credentials {
                policy: p.policy.clone(),
                signature: "s".into(),
                key_pair_id: "K".into()
            }
        )
        .contains(&p.policy));
    }
}
