//! Destination URLs: parsing into an [`Endpoint`] and masking for logs ([`mask_url`]).
//!
//! Accepted forms (no percent-decoding of RTMP paths: the key is sent as written):
//! - `rtmp://host[:port]/app[/more/app]/key[?query]` (port 1935), `rtmps://…` (port 443, TLS).
//!   The application is every path segment but the last; the stream key is the last segment
//!   plus `?query` when present (Facebook-style keys carry parameters).
//! - `srt://host:port[?streamid=…&passphrase=…&latency=ms]`: SRT caller, MPEG-TS payloads.
//!   Query values are percent-decoded; everything after the first `?` is the query, `#`
//!   included (stream ids such as `#!::r=live/key,m=publish` are often left unencoded).
//!
//! Secrets (the stream key, a userinfo password, every query value, a fragment) never leave
//! this module unmasked except inside the [`Endpoint`] the worker dials with.

use std::time::Duration;
use thiserror::Error;

/// What replaces every secret in a masked URL or an error text.
pub const MASK: &str = "****";
/// Default port of `rtmp://` destinations.
pub const RTMP_PORT: u16 = 1935;
/// Default port of `rtmps://` destinations.
pub const RTMPS_PORT: u16 = 443;
/// Longest SRT stream id, bytes (SRT's `SRTO_STREAMID` limit).
pub const SRT_MAX_STREAMID_BYTES: usize = 512;
/// Accepted SRT `latency=` values, milliseconds (SRT carries it in 16 bits).
pub const SRT_LATENCY_MS: std::ops::RangeInclusive<u64> = 20..=8000;
/// Secrets shorter than this are not scrubbed out of error texts (one-character query values
/// such as `s_bl=1` would otherwise mangle every number in an OS error).
const MIN_SCRUBBED: usize = 4;

/// Where and how a worker connects.
#[derive(Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// RTMP, over TLS when `tls`.
    Rtmp {
        /// Over TLS (`rtmps://`).
        tls: bool,
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        /// TCP port.
        port: u16,
        /// Application (path without the key), e.g. `live2` or `app/instance`.
        app: String,
        /// Stream key (secret), with its `?query` if any.
        key: String,
        /// `tcUrl` of the connect command: `scheme://host[:port]/app` (no secret).
        tc_url: String,
    },
    /// SRT caller sending MPEG-TS.
    Srt {
        /// Host name or IP address.
        host: String,
        /// UDP port.
        port: u16,
        /// SRT stream id (secret: often carries the key).
        streamid: Option<String>,
        /// Encryption passphrase (secret), 10..=79 characters.
        passphrase: Option<String>,
        /// SRT latency, if the URL sets one (`latency=` in milliseconds).
        latency: Option<Duration>,
    },
}

impl std::fmt::Debug for Endpoint {
    /// Secrets masked: the key, the stream id and the passphrase print as `****`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Rtmp { tls, host, port, app, tc_url, .. } => f
                .debug_struct("Rtmp")
                .field("tls", tls)
                .field("host", host)
                .field("port", port)
                .field("app", app)
                .field("key", &MASK)
                .field("tc_url", tc_url)
                .finish(),
            Self::Srt { host, port, streamid, passphrase, latency } => f
                .debug_struct("Srt")
                .field("host", host)
                .field("port", port)
                .field("streamid", &streamid.as_ref().map(|_| MASK))
                .field("passphrase", &passphrase.as_ref().map(|_| MASK))
                .field("latency", latency)
                .finish(),
        }
    }
}

/// The pieces of a URL as written (no decoding).
struct Parts<'a> {
    scheme: &'a str,
    password: Option<&'a str>,
    host: &'a str,
    port: Option<&'a str>,
    path: &'a str,
    query: Option<&'a str>,
}

/// Splits `url` into its pieces; `None` without `scheme://`.
fn split(url: &str) -> Option<Parts<'_>> {
    let (scheme, rest) = url.split_once("://")?;
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    // A userinfo may hold a `/` (an unencoded password): the authority ends at the first
    // `/` after the last `@`.
    let host_from = before_query.rfind('@').map_or(0, |at| at + 1);
    let (authority, path) = match before_query[host_from..].find('/') {
        Some(i) => before_query.split_at(host_from + i),
        None => (before_query, ""),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let password = userinfo.and_then(|u| u.split_once(':')).map(|(_, p)| p);
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    Some(Parts { scheme, password, host, port, path, query })
}

/// `url` with its secrets replaced by `****`: the last path segment (the stream key), a
/// userinfo password, every query value (a bare query word too) and any fragment. Scheme,
/// user name, host, port and the application path stay readable, e.g.
/// `rtmp://a.rtmp.youtube.com/live2/abcd-efgh` → `rtmp://a.rtmp.youtube.com/live2/****`,
/// `srt://h:9000?streamid=#!::r=live/k&latency=200` → `srt://h:9000?streamid=****&latency=****`.
/// Text that is no URL (no `scheme://`) comes back as `****` whole.
pub fn mask_url(url: &str) -> String {
    let Some(p) = split(url) else {
        return MASK.to_owned();
    };
    let (_, rest) = url.split_once("://").unwrap_or_default();
    let before_query = rest.split('?').next().unwrap_or_default();
    let host_from = before_query.rfind('@').map_or(0, |at| at + 1);
    let authority_end =
        before_query[host_from..].find('/').map_or(before_query.len(), |i| host_from + i);
    let mut authority = rest[..authority_end].to_owned();
    if p.password.is_some() {
        // The password ends the userinfo: replace that occurrence (before the last '@').
        if let Some(at) = authority.rfind('@') {
            let colon = authority[..at].find(':').unwrap_or(at);
            authority.replace_range(colon + 1..at, MASK);
        }
    }
    let mut out = format!("{}://{authority}", p.scheme);
    let path = p.path.split('#').next().unwrap_or_default();
    let segments: Vec<&str> = path.split('/').collect();
    let last_key = segments.iter().rposition(|s| !s.is_empty());
    for (i, segment) in segments.iter().enumerate().skip(1) {
        out.push('/');
        out.push_str(if Some(i) == last_key { MASK } else { segment });
    }
    if p.path.contains('#') {
        out.push('#');
        out.push_str(MASK);
    }
    if let Some(query) = p.query {
        out.push('?');
        let masked: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) => format!("{k}={MASK}"),
                None if pair.is_empty() => String::new(),
                None => MASK.to_owned(),
            })
            .collect();
        out.push_str(&masked.join("&"));
    }
    out
}

/// The secrets of `url` that error texts must not contain: the stream key, the password and
/// the query values, raw and percent-decoded (those of [`MIN_SCRUBBED`] bytes or more).
pub fn secrets(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(p) = split(url) {
        out.extend(p.password.map(str::to_owned));
        out.extend(p.password.map(decode));
        let path = p.path.split('#').collect::<Vec<_>>();
        out.extend(path.iter().skip(1).map(|s| (*s).to_owned()));
        out.extend(path[0].rsplit('/').next().map(str::to_owned));
        if let Some(query) = p.query {
            out.push(query.to_owned());
            for pair in query.split('&') {
                let value = pair.split_once('=').map_or(pair, |(_, v)| v);
                out.push(value.to_owned());
                out.push(decode(value));
            }
        }
    }
    out.retain(|s| s.len() >= MIN_SCRUBBED);
    // Longest first, so a secret containing another is replaced whole.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// `text` with every secret of `secrets` replaced by `****`.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    secrets.iter().fold(text.to_owned(), |t, s| t.replace(s.as_str(), MASK))
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// A destination URL that cannot be used; the text holds the URL masked ([`mask_url`]) and why.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid destination url {0}")]
pub struct InvalidRelayUrl(pub String);

/// Parses a destination URL.
///
/// # Errors
/// [`InvalidRelayUrl`] (its text masked) for an unknown scheme, no host, a bad port,
/// an RTMP URL without application and key, or an SRT URL without a port.
pub fn parse(url: &str) -> Result<Endpoint, InvalidRelayUrl> {
    let invalid = |why: &str| InvalidRelayUrl(format!("{}: {why}", mask_url(url)));
    let p = split(url).ok_or_else(|| invalid("not scheme://host/…"))?;
    if p.host.is_empty() {
        return Err(invalid("no host"));
    }
    let port = match p.port {
        Some(port) => Some(port.parse::<u16>().map_err(|_| invalid("bad port"))?),
        None => None,
    };
    let host = p.host.to_owned();
    match p.scheme.to_ascii_lowercase().as_str() {
        scheme @ ("rtmp" | "rtmps") => {
            let tls = scheme == "rtmps";
            let path = p.path.trim_start_matches('/');
            let (app, key) = path.rsplit_once('/').ok_or_else(|| invalid("no app/key path"))?;
            if app.is_empty() || key.is_empty() {
                return Err(invalid("empty application or stream key"));
            }
            let key = match p.query {
                Some(q) => format!("{key}?{q}"),
                None => key.to_owned(),
            };
            let bracketed = if host.contains(':') { format!("[{host}]") } else { host.clone() };
            let tc_url = match p.port {
                Some(port) => format!("{scheme}://{bracketed}:{port}/{app}"),
                None => format!("{scheme}://{bracketed}/{app}"),
            };
            let default = if tls { RTMPS_PORT } else { RTMP_PORT };
            let port = port.unwrap_or(default);
            Ok(Endpoint::Rtmp { tls, host, port, app: app.to_owned(), key, tc_url })
        }
        "srt" => {
            let port = port.ok_or_else(|| invalid("no port"))?;
            let (mut streamid, mut passphrase, mut latency) = (None, None, None);
            for pair in p.query.unwrap_or_default().split('&') {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                match k {
                    "streamid" => {
                        let id = decode(v);
                        if id.len() > SRT_MAX_STREAMID_BYTES {
                            return Err(invalid("streamid over 512 bytes"));
                        }
                        streamid = Some(id);
                    }
                    "passphrase" => {
                        let phrase = decode(v);
                        if !(10..=79).contains(&phrase.len()) {
                            return Err(invalid("passphrase must be 10 to 79 bytes"));
                        }
                        passphrase = Some(phrase);
                    }
                    "latency" => {
                        let ms = v.parse::<u64>().map_err(|_| invalid("bad latency"))?;
                        if !SRT_LATENCY_MS.contains(&ms) {
                            return Err(invalid("latency must be 20 to 8000 ms"));
                        }
                        latency = Some(Duration::from_millis(ms));
                    }
                    _ => {}
                }
            }
            Ok(Endpoint::Srt { host, port, streamid, passphrase, latency })
        }
        _ => Err(invalid("scheme is not rtmp, rtmps or srt")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keys_passwords_and_query_values() {
        let cases = [
            ("rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl", "rtmp://a.rtmp.youtube.com/live2/****"),
            ("rtmp://127.0.0.1:1935/live/key", "rtmp://127.0.0.1:1935/live/****"),
            ("rtmps://h:443/app/inst/key?s_bl=1&a=XYZ", "rtmps://h:443/app/inst/****?s_bl=****&a=****"),
            ("rtmp://user:hunter22@h/app/k", "rtmp://user:****@h/app/****"),
            ("rtmp://h/app/key/", "rtmp://h/app/****/"),
            ("rtmp://h/key", "rtmp://h/****"),
            ("rtmp://[::1]:1935/live/key", "rtmp://[::1]:1935/live/****"),
            (
                "srt://h:9000?streamid=#!::r=live/secret,m=publish&passphrase=longpassphrase&latency=200",
                "srt://h:9000?streamid=****&passphrase=****&latency=****",
            ),
            ("srt://h:9000", "srt://h:9000"),
            ("rtmp://h/app/key#frag", "rtmp://h/app/****#****"),
            ("rtmp://h/app/key?bare", "rtmp://h/app/****?****"),
            ("not a url with secret", "****"),
        ];
        for (url, masked) in cases {
            assert_eq!(mask_url(url), masked, "{url}");
        }
    }

    #[test]
    fn parses_rtmp_with_default_ports_and_tc_url() {
        let Endpoint::Rtmp { tls, host, port, app, key, tc_url } =
            parse("rtmps://live.example.com/rtmp/FB-1?s_bl=1&a=b").unwrap()
        else {
            panic!("rtmp");
        };
        assert!(tls);
        assert_eq!((host.as_str(), port), ("live.example.com", 443));
        assert_eq!((app.as_str(), key.as_str()), ("rtmp", "FB-1?s_bl=1&a=b"));
        assert_eq!(tc_url, "rtmps://live.example.com/rtmp");
        let Endpoint::Rtmp { port, app, tc_url, .. } = parse("rtmp://h:1936/a/b/key").unwrap()
        else {
            panic!("rtmp");
        };
        assert_eq!((port, app.as_str(), tc_url.as_str()), (1936, "a/b", "rtmp://h:1936/a/b"));
        assert!(matches!(parse("RTMP://h/a/k"), Ok(Endpoint::Rtmp { port: 1935, .. })));
    }

    #[test]
    fn debug_masks_the_secrets() {
        let e = parse("srt://h:1?streamid=sekrit-id&passphrase=sekrit-pass").unwrap();
        let rtmp = parse("rtmp://h/app/sekrit-key").unwrap();
        let shown = format!("{e:?} {rtmp:?}");
        assert!(!shown.contains("sekrit") && shown.contains("app"), "{shown}");
    }

    #[test]
    fn parses_srt_query() {
        let e = parse("srt://10.0.0.1:9000?streamid=%23!::r=live/k,m=publish&passphrase=0123456789&latency=250")
            .unwrap();
        assert!(
            e == Endpoint::Srt {
                host: "10.0.0.1".into(),
                port: 9000,
                streamid: Some("#!::r=live/k,m=publish".into()),
                passphrase: Some("0123456789".into()),
                latency: Some(Duration::from_millis(250)),
            }
        );
    }

    #[test]
    fn refuses_bad_urls_without_leaking_the_key() {
        for url in [
            "http://h/app/secretkey",
            "rtmp:///app/secretkey",
            "rtmp://h:99999/app/secretkey",
            "rtmp://h/secretkey",
            "srt://h?streamid=secretkey",
            "secretkey",
        ] {
            let e = parse(url).unwrap_err().to_string();
            assert!(!e.contains("secretkey"), "{e}");
        }
    }

    #[test]
    fn scrubs_secrets_out_of_text() {
        let url = "rtmp://u:pass%21word@h/app/streamkey123?x=1&token=abc%20def";
        let secrets = secrets(url);
        let text = "refused streamkey123 pass%21word abc def abc%20def os error 111 app";
        let out = scrub(text, &secrets);
        assert_eq!(out, "refused **** **** **** **** os error 111 app");
    }
}
