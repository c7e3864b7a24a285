//! `--source`: what the egress plays, and how its playlist URL is found.
//!
//! - `http(s)://…m3u8`: a media playlist URL, used as it is; a query it has (a CloudFront
//!   signed URL's, a token) is appended to every segment request too.
//! - `channel:<id>` / `device:<id>`: asked of the streamstack API, `GET
//!   {api}/channels/{id}/endpoints` (or `/devices/{id}/endpoints`), signed with AWS
//!   Signature Version 4 for service `execute-api` (the API's IAM authorization) with the
//!   default credentials chain (loaded by [`streamstack_core::aws::sdk_config`]). Without
//!   credentials the request goes unsigned (one warning): the local API ignores auth. The
//!   answer's `playback.playlist_url` is followed, with `playback.authorization.query` (the
//!   CloudFront signed query, `Policy`/`Signature`/`Key-Pair-Id`) appended to every
//!   playlist and segment request; it is resolved again before `authorization.expires_at`
//!   (5 min before, or half the remaining validity if that is shorter).

use super::fetch::{self, FetchError};
use aws_credential_types::provider::ProvideCredentials;
use serde::Deserialize;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};
use streamstack_core::domain::is_valid_channel_id;
use time::OffsetDateTime;
use url::Url;

/// How long before `expires_at` the playback credentials are renewed, at most: 5 min.
pub const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);
/// Largest API answer accepted, bytes.
const MAX_API_BYTES: usize = 1 << 20;

/// A parsed `--source`.
#[derive(Clone, PartialEq, Eq)]
pub enum EgressSource {
    /// `channel:<id>`: the channel's live playlist, through the API.
    Channel(String),
    /// `device:<id>`: the device's live playlist, through the API.
    Device(String),
    /// A media playlist URL, used as it is.
    Url(Url),
}

impl fmt::Debug for EgressSource {
    /// `channel:<id>`, `device:<id>`, or a URL without its query (it may be signed).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Channel(id) => write!(f, "channel:{id}"),
            Self::Device(id) => write!(f, "device:{id}"),
            Self::Url(url) => write!(f, "{}", redact(url)),
        }
    }
}

/// `url` without its query and credentials, for the log: scheme, host, path.
pub fn redact(url: &Url) -> String {
    format!("{}://{}{}", url.scheme(), url.host_str().unwrap_or(""), url.path())
}

impl FromStr for EgressSource {
    type Err = String;

    /// `channel:<id>`, `device:<id>` (ids of 1..=64 letters, digits, `-`, `_`) or an
    /// `http://`/`https://` URL.
    fn from_str(s: &str) -> Result<Self, String> {
        if s.starts_with("http://") || s.starts_with("https://") {
            return Url::parse(s).map(Self::Url).map_err(|e| format!("invalid URL: {e}"));
        }
        let (kind, id) = s
            .split_once(':')
            .ok_or("expected channel:<id>, device:<id> or an http(s):// playlist URL")?;
        if !is_valid_channel_id(id) {
            // Never the input: it can be a (mistyped) signed URL.
            return Err("invalid id: 1..=64 letters, digits, '-' or '_'".into());
        }
        match kind {
            "channel" => Ok(Self::Channel(id.to_owned())),
            "device" => Ok(Self::Device(id.to_owned())),
            _ => Err("unknown source kind: expected channel:<id>, device:<id> or a URL".into()),
        }
    }
}

/// Where the playlist is and how to ask for it. `Debug` hides the query.
#[derive(Clone)]
pub struct Resolved {
    /// The media playlist's URL (without the signed query).
    pub playlist: Url,
    /// The signed query to append to every request, if the playback is signed.
    pub query: Option<String>,
    /// When to resolve again (the credentials' renewal time), if they expire.
    pub renew_at: Option<SystemTime>,
}

impl fmt::Debug for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolved")
            .field("playlist", &redact(&self.playlist))
            .field("signed", &self.query.is_some())
            .field("renew_at", &self.renew_at)
            .finish()
    }
}

/// Why a source could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// `channel:`/`device:` without `--api-url`, or an unusable API URL.
    #[error("{0}")]
    Config(String),
    /// The API request failed.
    #[error("API: {0}")]
    Api(#[from] FetchError),
    /// The answer is not the endpoints JSON, or has no `playback.playlist_url` (the stack
    /// has no playback base URL).
    #[error("API answer: {0}")]
    Answer(String),
}

#[derive(Deserialize)]
struct Endpoints {
    playback: PlaybackBody,
}

#[derive(Deserialize)]
struct PlaybackBody {
    playlist_url: Option<String>,
    authorization: Option<Authorization>,
}

#[derive(Deserialize)]
struct Authorization {
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    query: String,
}

/// Resolves a source, again whenever asked (module doc).
pub struct Resolver {
    source: EgressSource,
    api: Option<String>,
    http: reqwest::Client,
    sdk: Option<aws_config::SdkConfig>,
    warned_unsigned: bool,
}

impl Resolver {
    /// A resolver of `source`, with the API base URL for `channel:`/`device:` sources.
    ///
    /// # Errors
    /// [`ResolveError::Config`] when such a source has no usable API URL.
    pub async fn new(
        source: EgressSource,
        api: Option<&str>,
        http: reqwest::Client,
    ) -> Result<Self, ResolveError> {
        let api = match (&source, api) {
            (EgressSource::Url(_), _) => None,
            (_, Some(api)) if api.starts_with("http://") || api.starts_with("https://") => {
                Some(api.trim_end_matches('/').to_owned())
            }
            (_, Some(_)) => {
                return Err(ResolveError::Config("--api-url: expected http(s)://".into()))
            }
            (_, None) => {
                return Err(ResolveError::Config(format!(
                    "--source {source:?} needs --api-url (STREAMSTACK_API_URL)"
                )))
            }
        };
        let sdk = match api {
            Some(_) => Some(streamstack_core::aws::sdk_config(None).await),
            None => None,
        };
        Ok(Self { source, api, http, sdk, warned_unsigned: false })
    }

    /// The playlist URL and its signed query, now.
    ///
    /// # Errors
    /// [`ResolveError`]: the caller retries with backoff.
    pub async fn resolve(&mut self) -> Result<Resolved, ResolveError> {
        let (kind, id) = match &self.source {
            EgressSource::Url(url) => {
                // Its query (a signed URL's, a token) goes on every request, segments too.
                let mut playlist = url.clone();
                let query = url.query().filter(|q| !q.is_empty()).map(str::to_owned);
                playlist.set_query(None);
                return Ok(Resolved { playlist, query, renew_at: None });
            }
            EgressSource::Channel(id) => ("channels", id),
            EgressSource::Device(id) => ("devices", id),
        };
        let api = self.api.as_deref().unwrap_or_default();
        let url = format!("{api}/{kind}/{id}/endpoints");
        let mut request = self.http.get(&url);
        match self.sign(&url).await {
            Ok(headers) => {
                for (name, value) in headers {
                    request = request.header(name, value);
                }
            }
            Err(why) if !self.warned_unsigned => {
                self.warned_unsigned = true;
                tracing::warn!(%why, "no AWS credentials: API requests go unsigned");
            }
            Err(_) => {}
        }
        let body = fetch::get(request, MAX_API_BYTES, fetch::REQUEST_TIMEOUT).await?;
        let endpoints: Endpoints =
            serde_json::from_slice(&body).map_err(|e| ResolveError::Answer(e.to_string()))?;
        let playlist = endpoints
            .playback
            .playlist_url
            .ok_or_else(|| ResolveError::Answer("no playback.playlist_url".into()))?;
        let playlist = Url::parse(&playlist)
            .map_err(|e| ResolveError::Answer(format!("playlist_url: {e}")))?;
        let (query, renew_at) = match endpoints.playback.authorization {
            Some(auth) => (Some(auth.query), Some(renewal(auth.expires_at, SystemTime::now()))),
            None => (None, None),
        };
        Ok(Resolved { playlist, query, renew_at })
    }

    /// SigV4 headers (`authorization`, `x-amz-date`, `x-amz-security-token`) of a GET of
    /// `url` for `execute-api`, or why there are none.
    async fn sign(&self, url: &str) -> Result<Vec<(String, String)>, String> {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
        let sdk = self.sdk.as_ref().ok_or("no AWS configuration")?;
        let provider = sdk.credentials_provider().ok_or("no credentials provider")?;
        let credentials = provider.provide_credentials().await.map_err(|e| e.to_string())?;
        let identity = credentials.into();
        let region = sdk.region().map_or_else(|| "us-east-1".to_owned(), |r| r.to_string());
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&region)
            .name("execute-api")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let request =
            SignableRequest::new("GET", url, std::iter::empty(), SignableBody::Bytes(&[]))
                .map_err(|e| e.to_string())?;
        let (instructions, _signature) =
            sign(request, &params).map_err(|e| e.to_string())?.into_parts();
        Ok(instructions.headers().map(|(k, v)| (k.to_owned(), v.to_owned())).collect())
    }
}

/// When to renew credentials expiring at `expires_at`: [`RENEW_BEFORE_EXPIRY`] before, or
/// half the remaining validity from `now` if that is shorter.
pub fn renewal(expires_at: OffsetDateTime, now: SystemTime) -> SystemTime {
    let expires = SystemTime::UNIX_EPOCH
        + Duration::from_secs(u64::try_from(expires_at.unix_timestamp()).unwrap_or(0));
    let left = expires.duration_since(now).unwrap_or_default();
    now + left.saturating_sub(RENEW_BEFORE_EXPIRY.min(left / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_never_repeat_the_input() {
        for input in [
            "htps://cdn.example/a.m3u8?Signature=SECRET",
            "channel:SECRET/x",
            "SECRETkind:abc",
            "https://[SECRET/a.m3u8",
            "SECRET",
        ] {
            let e = input.parse::<EgressSource>().unwrap_err();
            assert!(!e.contains("SECRET"), "{input}: {e}");
        }
    }

    #[test]
    fn parses_channels_devices_and_urls() {
        assert_eq!("channel:abc".parse(), Ok(EgressSource::Channel("abc".into())));
        assert_eq!("device:cam-1".parse(), Ok(EgressSource::Device("cam-1".into())));
        let url: EgressSource =
            "https://cdn.example/live/a/index.m3u8?Signature=s".parse().unwrap();
        assert_eq!(format!("{url:?}"), "https://cdn.example/live/a/index.m3u8");
        for bad in ["channel:", "channel:a b", "vod:x", "nothing", "rtmp://x/y"] {
            assert!(bad.parse::<EgressSource>().is_err(), "{bad}");
        }
    }

    #[test]
    fn renews_five_minutes_before_expiry_or_halfway() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |s: i64| OffsetDateTime::from_unix_timestamp(s).unwrap();
        let hour = renewal(at(1_000_000 + 3600), now);
        assert_eq!(hour, now + Duration::from_secs(3600 - 300));
        assert_eq!(renewal(at(1_000_000 + 240), now), now + Duration::from_secs(120));
        assert_eq!(renewal(at(999_000), now), now, "expired: now");
    }

    #[tokio::test]
    async fn api_sources_need_an_api_url() {
        let http = reqwest::Client::new();
        let channel = EgressSource::Channel("a".into());
        assert!(Resolver::new(channel.clone(), None, http.clone()).await.is_err());
        assert!(Resolver::new(channel, Some("ftp://x"), http.clone()).await.is_err());
        let url = EgressSource::Url(Url::parse("http://127.0.0.1/x.m3u8").unwrap());
        let mut resolver = Resolver::new(url, None, http.clone()).await.unwrap();
        let resolved = resolver.resolve().await.unwrap();
        assert_eq!((resolved.query, resolved.renew_at), (None, None));
        let signed = "https://cdn.example/live/a/index.m3u8?Policy=p&Signature=s";
        let url = EgressSource::Url(Url::parse(signed).unwrap());
        let resolved = Resolver::new(url, None, http).await.unwrap().resolve().await.unwrap();
        assert_eq!(resolved.playlist.as_str(), "https://cdn.example/live/a/index.m3u8");
        assert_eq!(resolved.query.as_deref(), Some("Policy=p&Signature=s"));
        assert!(!format!("{resolved:?}").contains("Signature"));
    }
}
