//! Reading the `Cookie` header and writing the signed cookies a valid signed URL turns into.
//!
//! In AWS a viewer-response CloudFront Function on the `signed/*` behaviour copies a valid
//! signed URL's `Policy`, `Signature` and `Key-Pair-Id` into `CloudFront-Policy`,
//! `CloudFront-Signature` and `CloudFront-Key-Pair-Id` with `Path` = the directory of the
//! request path, so a player that opened the signed playlist URL fetches the playlist's
//! relative segment URLs with cookies. Source: RFC 6265 (cookie syntax, section 4.1.1;
//! `Cookie` header, section 5.4) and RFC 6265bis (`SameSite`).

use crate::access::Credentials;
use axum::http::HeaderValue;
use streamstack_core::cloudfront::{COOKIE_KEY_PAIR_ID, COOKIE_POLICY, COOKIE_SIGNATURE};

/// The value of the first cookie called `name` in the `Cookie` header values `headers`
/// (surrounding double quotes removed), `None` when there is none.
pub fn find<'a>(headers: &[&'a str], name: &str) -> Option<&'a str> {
    headers.iter().flat_map(|h| h.split(';')).find_map(|pair| {
        let (n, v) = pair.trim().split_once('=')?;
        (n.trim() == name).then(|| {
            let v = v.trim();
            v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v)
        })
    })
}

/// The cookie path of a request path: its directory with a trailing slash
/// (`/signed/live/a/index.m3u8` -> `/signed/live/a/`).
pub fn directory(path: &str) -> &str {
    path.rfind('/').map_or("/", |i| &path[..=i])
}

/// RFC 6265 `cookie-octet`s only (no space, `"`, `,`, `;`, `\`, controls).
fn is_cookie_value(v: &str) -> bool {
    !v.is_empty()
        && v.bytes().all(|b| {
            b == 0x21
                || (0x23..=0x2b).contains(&b)
                || (0x2d..=0x3a).contains(&b)
                || (0x3c..=0x5b).contains(&b)
                || (0x5d..=0x7e).contains(&b)
        })
}

/// The three `Set-Cookie` values carrying `credentials` for every URL under `path`'s
/// directory: `HttpOnly`, plus `Secure; SameSite=None; Partitioned` when the request came over
/// HTTPS (`secure`; cookies for a player on another site, kept in that site's partition
/// (CHIPS) by browsers that block third-party cookies), as CloudFront's viewer-response
/// function sets them, or `SameSite=Lax` over plain HTTP (browsers drop `SameSite=None` and
/// `Partitioned` without `Secure`). Session cookies: the policy's own expiry bounds them.
/// `None` when a value or the path cannot travel in a cookie unchanged.
pub fn set_cookies(
    credentials: &Credentials,
    path: &str,
    secure: bool,
) -> Option<[HeaderValue; 3]> {
    let dir = directory(path);
    if !dir.bytes().all(|b| b.is_ascii_graphic() && b != b';') {
        return None;
    }
    let attributes = if secure {
        "HttpOnly; Secure; SameSite=None; Partitioned"
    } else {
        "HttpOnly; SameSite=Lax"
    };
    let one = |name: &str, value: &str| {
        is_cookie_value(value)
            .then(|| {
                HeaderValue::from_str(&format!("{name}={value}; Path={dir}; {attributes}")).ok()
            })
            .flatten()
    };
    Some([
        one(COOKIE_POLICY, &credentials.policy)?,
        one(COOKIE_SIGNATURE, &credentials.signature)?,
        one(COOKIE_KEY_PAIR_ID, &credentials.key_pair_id)?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_of_a_name() {
        let headers = ["a=1; CloudFront-Policy=\"p1\"", "CloudFront-Policy=p2"];
        assert_eq!(find(&headers, "CloudFront-Policy"), Some("p1"));
        assert_eq!(find(&headers, "a"), Some("1"));
        assert_eq!(find(&headers, "b"), None);
        assert_eq!(find(&["novalue; x"], "novalue"), None);
    }

    #[test]
    fn writes_path_scoped_cookies() {
        let c = Credentials {
            policy: "eyJ-_~".into(),
            signature: "c2ln".into(),
            key_pair_id: "K1".into(),
        };
        let [p, s, k] = set_cookies(&c, "/signed/live/a/index.m3u8", false).unwrap();
        assert_eq!(p, "CloudFront-Policy=eyJ-_~; Path=/signed/live/a/; HttpOnly; SameSite=Lax");
        assert_eq!(s, "CloudFront-Signature=c2ln; Path=/signed/live/a/; HttpOnly; SameSite=Lax");
        assert_eq!(k, "CloudFront-Key-Pair-Id=K1; Path=/signed/live/a/; HttpOnly; SameSite=Lax");
        let [p, s, k] = set_cookies(&c, "/signed/x.m3u8", true).unwrap();
        assert_eq!(
            p,
            "CloudFront-Policy=eyJ-_~; Path=/signed/; HttpOnly; Secure; SameSite=None; Partitioned"
        );
        assert_eq!(
            s,
            "CloudFront-Signature=c2ln; Path=/signed/; HttpOnly; Secure; SameSite=None; Partitioned"
        );
        assert_eq!(
            k,
            "CloudFront-Key-Pair-Id=K1; Path=/signed/; HttpOnly; Secure; SameSite=None; Partitioned"
        );
        let bad = Credentials { key_pair_id: "K;1".into(), ..c.clone() };
        assert!(set_cookies(&bad, "/signed/a/x", false).is_none());
        assert!(set_cookies(&c, "/signed/a;b/x", false).is_none());
        assert_eq!(directory("/x"), "/");
    }
}
