//! Settings read once from the process environment at start-up.

use thiserror::Error;

/// Default lifetime of a signed RTMP push URL: 24 hours, in seconds.
pub const DEFAULT_PUSH_URL_TTL_SECS: u64 = 24 * 60 * 60;

/// A required or malformed environment variable.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The variable is not set (or is empty).
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    /// The variable is set but cannot be parsed.
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid {
        /// Variable name.
        name: &'static str,
        /// Why it was rejected.
        reason: String,
    },
}

/// The process environment variable `name`; unset, empty and non-UTF-8 values are `None`
/// (an empty template parameter means "use the default").
pub fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The value of required variable `name`.
///
/// # Errors
/// [`ConfigError::Missing`] when unset or empty.
pub fn required(name: &'static str) -> Result<String, ConfigError> {
    required_from(env_var, name)
}

/// The value of required variable `name` through `get` (a variable name -> value lookup).
///
/// # Errors
/// [`ConfigError::Missing`] when `get` has no value.
pub fn required_from(
    get: impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<String, ConfigError> {
    get(name).ok_or(ConfigError::Missing(name))
}

/// Integer variable `name` in `range`, `default` when unset.
///
/// # Errors
/// [`ConfigError::Invalid`] for a value that is not an integer in `range`.
pub fn number(
    name: &'static str,
    default: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<usize, ConfigError> {
    number_from(env_var, name, default, range)
}

/// Integer variable `name` through `get` (a variable name -> value lookup), in `range`,
/// `default` when `get` has no value.
///
/// # Errors
/// [`ConfigError::Invalid`] for a value that is not an integer in `range`.
pub fn number_from<T>(
    get: impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    match get(name) {
        None => Ok(default),
        Some(v) => {
            v.parse::<T>().ok().filter(|n| range.contains(n)).ok_or_else(|| ConfigError::Invalid {
                name,
                reason: format!("{v:?} is not an integer in {}..={}", range.start(), range.end()),
            })
        }
    }
}

/// Boolean variable `name`: `true` or `false` (any case); unset is false.
///
/// # Errors
/// [`ConfigError::Invalid`] for any other value.
pub fn flag(name: &'static str) -> Result<bool, ConfigError> {
    flag_from(env_var, name)
}

/// Boolean variable `name` through `get` (a variable name -> value lookup): `true` or
/// `false` (any case); no value is false.
///
/// # Errors
/// [`ConfigError::Invalid`] for any other value.
pub fn flag_from(
    get: impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<bool, ConfigError> {
    match get(name).as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => {
            Err(ConfigError::Invalid { name, reason: format!("{other:?}: expected true or false") })
        }
    }
}

/// Process-wide settings shared by the API Lambda and the streamer.
///
/// | variable | field | default |
/// |---|---|---|
/// | `CHANNELS_TABLE` | [`Config::channels_table`] | required |
/// | `ASSETS_TABLE` | [`Config::assets_table`] | none; the API refuses to start without it |
/// | `MEDIA_BUCKET` | [`Config::media_bucket`] | none |
/// | `INGEST_HOST` | [`Config::ingest_host`] | `localhost:1935` |
/// | `INGEST_RTMPS_HOST` | [`Config::ingest_rtmps_host`] | none (no RTMPS URLs) |
/// | `INGEST_SRT_HOST` | [`Config::ingest_srt_host`] | none (no SRT URLs) |
/// | `PLAYBACK_BASE_URL` | [`Config::playback_base_url`] | derived from bucket/endpoint |
/// | `PUSH_URL_TTL_SECS` | [`Config::push_url_ttl_secs`] | 86400 |
/// | `AWS_ENDPOINT_URL` | [`Config::endpoint_url`] | none (real AWS) |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// DynamoDB table holding channels (partition key `id`, string).
    pub channels_table: String,
    /// DynamoDB table holding VOD assets (partition key `id`, string); required by the API,
    /// unused by the streamer.
    pub assets_table: Option<String>,
    /// S3 bucket receiving HLS output, if any.
    pub media_bucket: Option<String>,
    /// `host[:port]` that publishers reach the RTMP ingest on; goes into push URLs.
    pub ingest_host: String,
    /// `host:port` of the RTMPS (TLS) ingest, when there is one (in AWS the load balancer's
    /// TLS listener); goes into `rtmps://` push URLs.
    pub ingest_rtmps_host: Option<String>,
    /// `host:port` of the SRT ingest (UDP), when there is one; goes into `srt://` URLs.
    pub ingest_srt_host: Option<String>,
    /// Base URL that players fetch HLS objects from (no trailing slash), e.g. a CloudFront
    /// domain. When unset: `<endpoint>/<bucket>` with an endpoint override, else the bucket's
    /// virtual-hosted S3 URL.
    pub playback_base_url: Option<String>,
    /// Lifetime of issued push URLs, in seconds.
    pub push_url_ttl_secs: u64,
    /// Endpoint override for every AWS client (e.g. `http://127.0.0.1:5000` for moto).
    pub endpoint_url: Option<String>,
}

impl Config {
    /// Reads the settings from the process environment.
    ///
    /// # Errors
    /// [`ConfigError::Missing`] when `CHANNELS_TABLE` is unset, [`ConfigError::Invalid`] when
    /// `PUSH_URL_TTL_SECS` is not a positive integer.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(env_var)
    }

    /// Reads the settings through `get` (a variable name -> value lookup); used by tests.
    ///
    /// # Errors
    /// As [`Config::from_env`].
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let push_url_ttl_secs = match get("PUSH_URL_TTL_SECS") {
            None => DEFAULT_PUSH_URL_TTL_SECS,
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n > 0 => n,
                _ => {
                    return Err(ConfigError::Invalid {
                        name: "PUSH_URL_TTL_SECS",
                        reason: format!("{v:?} is not a positive number of seconds"),
                    })
                }
            },
        };
        Ok(Self {
            channels_table: required_from(&get, "CHANNELS_TABLE")?,
            assets_table: get("ASSETS_TABLE"),
            media_bucket: get("MEDIA_BUCKET"),
            ingest_host: get("INGEST_HOST").unwrap_or_else(|| "localhost:1935".to_owned()),
            ingest_rtmps_host: get("INGEST_RTMPS_HOST").filter(|h| !h.is_empty()),
            ingest_srt_host: get("INGEST_SRT_HOST").filter(|h| !h.is_empty()),
            playback_base_url: get("PLAYBACK_BASE_URL").map(|u| u.trim_end_matches('/').to_owned()),
            push_url_ttl_secs,
            endpoint_url: get("AWS_ENDPOINT_URL"),
        })
    }

    /// The HLS playback URL of a channel's live playlist, `<base>/live/<id>/index.m3u8` (below
    /// `signed/` for a signed channel), or `None` when neither a playback base URL nor a
    /// media bucket is configured.
    pub fn playback_url(
        &self,
        channel_id: &str,
        playback: crate::playback::Playback,
    ) -> Option<String> {
        self.media_url(&crate::domain::live_playlist_key(channel_id, playback))
    }

    /// The URL players fetch the media bucket object `key` from: `<base>/<key>` with every
    /// path segment percent-encoded (RFC 3986 §2.1), so keys with spaces or non-ASCII names
    /// stay valid URLs. `None` when neither a playback base URL nor a media bucket is set.
    pub fn media_url(&self, key: &str) -> Option<String> {
        let base = self.media_base_url()?;
        let path: Vec<String> = key
            .split('/')
            .map(|seg| percent_encoding::utf8_percent_encode(seg, PATH_SEGMENT).to_string())
            .collect();
        Some(format!("{base}/{}", path.join("/")))
    }
}

impl Config {
    /// The base URL of [`Config::media_url`] (no trailing slash): the playback base URL, else
    /// `<endpoint>/<bucket>` with an endpoint override, else the bucket's S3 URL; `None`
    /// without a playback base URL or a bucket.
    pub fn media_base_url(&self) -> Option<String> {
        match (&self.playback_base_url, &self.media_bucket, &self.endpoint_url) {
            (Some(base), _, _) => Some(base.clone()),
            (None, Some(bucket), Some(endpoint)) => {
                Some(format!("{}/{bucket}", endpoint.trim_end_matches('/')))
            }
            (None, Some(bucket), None) => Some(format!("https://{bucket}.s3.amazonaws.com")),
            (None, None, _) => None,
        }
    }
}

/// Bytes escaped in a URL path segment: everything but RFC 3986 unreserved characters.
const PATH_SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn requires_table_and_defaults_the_rest() {
        assert!(matches!(cfg(&[]), Err(ConfigError::Missing("CHANNELS_TABLE"))));
        let c = cfg(&[("CHANNELS_TABLE", "t")]).unwrap();
        assert_eq!(c.push_url_ttl_secs, 86_400);
        assert_eq!(c.ingest_host, "localhost:1935");
        assert_eq!(c.playback_url("abc", crate::Playback::Public), None);
    }

    #[test]
    fn lookup_readers() {
        let get = |k: &str| match k {
            "N" => Some("42".to_owned()),
            "F" => Some("TRUE".to_owned()),
            "X" => Some("x".to_owned()),
            _ => None,
        };
        assert_eq!(number_from(get, "N", 1u64, 1..=100).unwrap(), 42);
        assert_eq!(number_from(get, "UNSET", 7i64, 1..=100).unwrap(), 7);
        assert!(matches!(number_from(get, "N", 1u32, 1..=10), Err(ConfigError::Invalid { .. })));
        assert!(number_from(get, "X", 1usize, 1..=10).is_err());
        assert!(flag_from(get, "F").unwrap() && !flag_from(get, "UNSET").unwrap());
        assert!(flag_from(get, "X").is_err());
        assert_eq!(required_from(get, "N").unwrap(), "42");
        assert!(matches!(required_from(get, "UNSET"), Err(ConfigError::Missing("UNSET"))));
    }

    #[test]
    fn rejects_bad_ttl() {
        let e = cfg(&[("CHANNELS_TABLE", "t"), ("PUSH_URL_TTL_SECS", "0")]).unwrap_err();
        assert!(e.to_string().contains("PUSH_URL_TTL_SECS"), "{e}");
    }

    #[test]
    fn playback_url_prefers_explicit_base() {
        let c = cfg(&[
            ("CHANNELS_TABLE", "t"),
            ("MEDIA_BUCKET", "b"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000/"),
        ])
        .unwrap();
        assert_eq!(
            c.playback_url("x", crate::Playback::Public).unwrap(),
            "http://127.0.0.1:5000/b/live/x/index.m3u8"
        );
        let c =
            cfg(&[("CHANNELS_TABLE", "t"), ("PLAYBACK_BASE_URL", "https://cdn.example/")]).unwrap();
        assert_eq!(
            c.playback_url("x", crate::Playback::Public).unwrap(),
            "https://cdn.example/live/x/index.m3u8"
        );
        assert_eq!(
            c.media_url("outputs/a/hls/My Film+é.m3u8").unwrap(),
            "https://cdn.example/outputs/a/hls/My%20Film%2B%C3%A9.m3u8"
        );
    }
}
