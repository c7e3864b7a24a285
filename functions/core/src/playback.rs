//! Playback authorization of channels, devices and VOD assets: whether players need CloudFront
//! signed cookies or URLs, where each kind of media is stored, and the credentials the API
//! hands out.
//!
//! The choice is made per resource when it is created and never changes, because it decides
//! where the media is written: public media under `live/`, `devices/`, `outputs/` (served by
//! the distribution's default behaviour), signed media under the same paths below `signed/`
//! (served by the `signed/*` behaviour, which requires the stack's trusted key group). So no
//! object is ever reachable both ways, and nothing has to move.

use crate::cloudfront::{SignedPolicy, Signer};
use crate::config::{env_var, ConfigError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Key prefix under which signed media is stored (and the `signed/*` cache behaviour's path).
pub const SIGNED_ROOT: &str = "signed/";
/// Default lifetime of issued playback credentials: 1 hour, in seconds.
pub const DEFAULT_PLAYBACK_TTL_SECS: u64 = 60 * 60;
/// Allowed lifetimes of playback credentials, in seconds (1 minute to 7 days).
pub const PLAYBACK_TTL_RANGE: std::ops::RangeInclusive<u64> = 60..=7 * 24 * 60 * 60;

/// Who may play a resource's media.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Playback {
    /// Anyone with the URL.
    Public,
    /// Only requests carrying CloudFront signed cookies or a signed URL for the resource.
    Signed,
}

impl Playback {
    /// `public` or `signed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Signed => "signed",
        }
    }

    /// Parses [`Playback::as_str`]'s output.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "public" => Some(Self::Public),
            "signed" => Some(Self::Signed),
            _ => None,
        }
    }

    /// The prefix every media key of this kind starts with: `""` or [`SIGNED_ROOT`].
    pub fn root(self) -> &'static str {
        match self {
            Self::Public => "",
            Self::Signed => SIGNED_ROOT,
        }
    }

    /// The kind of media stored at `key`.
    pub fn of_key(key: &str) -> Self {
        if key.starts_with(SIGNED_ROOT) {
            Self::Signed
        } else {
            Self::Public
        }
    }
}

/// Key prefix (no trailing slash) of a channel's live output: `live/<id>` or
/// `signed/live/<id>`.
pub fn channel_prefix(channel_id: &str, playback: Playback) -> String {
    format!("{}live/{channel_id}", playback.root())
}

/// The channel id of a [`channel_prefix`] (either kind), `None` for any other prefix.
pub fn channel_of_prefix(prefix: &str) -> Option<&str> {
    prefix.strip_prefix(SIGNED_ROOT).unwrap_or(prefix).strip_prefix("live/")
}

/// Key prefix (no trailing slash) of everything a device records: `devices/<id>` or
/// `signed/devices/<id>`.
pub fn device_prefix(device_id: &str, playback: Playback) -> String {
    format!("{}devices/{device_id}", playback.root())
}

/// Key prefix (no trailing slash) of a VOD asset's outputs: `outputs/<id>` or
/// `signed/outputs/<id>`.
pub fn asset_prefix(asset_id: &str, playback: Playback) -> String {
    format!("{}outputs/{asset_id}", playback.root())
}

/// Playback settings of the API and the VOD trigger, from the environment.
///
/// | variable | meaning | default |
/// |---|---|---|
/// | `PLAYBACK_DEFAULT` | [`Playback`] of resources created without one | `public` |
/// | `PLAYBACK_TTL_SECS` | lifetime of issued credentials, 60..=604800 s | 3600 |
/// | `PLAYBACK_KEY_PAIR_ID` | CloudFront public key id of the signing key | none |
/// | `PLAYBACK_PRIVATE_KEY_SECRET_ARN` | Secrets Manager secret holding the private key PEM | none |
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaybackSettings {
    /// What a resource created without `playback` gets.
    pub default: Playback,
    /// Lifetime of issued cookies and signed URLs, seconds.
    pub ttl_secs: u64,
    /// CloudFront public key id (`Key-Pair-Id`); with the secret, signing is configured.
    pub key_pair_id: Option<String>,
    /// ARN of the secret whose `SecretString` is the private key PEM.
    pub private_key_secret_arn: Option<String>,
}

impl PlaybackSettings {
    /// Reads the settings from the process environment.
    ///
    /// # Errors
    /// As [`PlaybackSettings::from_lookup`].
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(env_var)
    }

    /// Reads the settings through `get` (a variable name -> value lookup).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for an unknown `PLAYBACK_DEFAULT` or a TTL out of range, and
    /// when only one of the key pair id and the secret ARN is set.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let default = match get("PLAYBACK_DEFAULT") {
            None => Playback::Public,
            Some(v) => Playback::parse(&v).ok_or_else(|| ConfigError::Invalid {
                name: "PLAYBACK_DEFAULT",
                reason: format!("{v:?}: expected public or signed"),
            })?,
        };
        let ttl_secs = crate::config::number_from(
            &get,
            "PLAYBACK_TTL_SECS",
            DEFAULT_PLAYBACK_TTL_SECS,
            PLAYBACK_TTL_RANGE,
        )?;
        let key_pair_id = get("PLAYBACK_KEY_PAIR_ID");
        let private_key_secret_arn = get("PLAYBACK_PRIVATE_KEY_SECRET_ARN");
        if key_pair_id.is_some() != private_key_secret_arn.is_some() {
            return Err(ConfigError::Invalid {
                name: "PLAYBACK_KEY_PAIR_ID",
                reason: "PLAYBACK_KEY_PAIR_ID and PLAYBACK_PRIVATE_KEY_SECRET_ARN go together"
                    .into(),
            });
        }
        Ok(Self { default, ttl_secs, key_pair_id, private_key_secret_arn })
    }
}

/// What a player needs to play a signed resource, as the endpoint responses carry it.
///
/// Two ways, both scoped to the resource's prefix and valid until `expires_at`:
/// - **cookies**: the app sets `cookies` for the playback domain with `Path=cookie_path`
///   (`Secure; HttpOnly; SameSite=None; Partitioned` when the player runs on another site);
///   every request
///   under the prefix then carries them.
/// - **signed URL**: the player opens the signed playlist URL; the `signed/*` behaviour turns
///   its valid query into the same cookies on the response (a viewer-response CloudFront
///   Function), so the playlist's relative segment requests are authorized by cookie. Players
///   that keep no cookies append `query` to every request instead.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlaybackAuthorization {
    /// The policy's `Resource`: `<playback base>/<prefix>/*`.
    pub resource: String,
    /// End of validity (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: time::OffsetDateTime,
    /// `CloudFront-Policy`, `CloudFront-Signature`, `CloudFront-Key-Pair-Id` -> value.
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, String>, example = json!({
        "CloudFront-Policy": "eyJTdGF0ZW1lbnQiOlt7...", "CloudFront-Signature": "Yq1x...",
        "CloudFront-Key-Pair-Id": "K2JCJMDEHXQW5F"
    })))]
    pub cookies: BTreeMap<&'static str, String>,
    /// Cookie path covering the prefix: `/<prefix>/`.
    pub cookie_path: String,
    /// `Policy=…&Signature=…&Key-Pair-Id=…`, valid on any URL under the resource.
    pub query: String,
}

impl PlaybackAuthorization {
    /// Signs `<base>/<prefix>/*` (`base` the playback base URL without trailing slash, `prefix`
    /// a key prefix without slashes at its ends) for `ttl_secs` from `now` (Unix seconds).
    pub fn issue(signer: &Signer, base: &str, prefix: &str, now: u64, ttl_secs: u64) -> Self {
        let expires = now.saturating_add(ttl_secs);
        let policy = signer.sign(&format!("{base}/{prefix}/*"), expires);
        Self::from_policy(&policy, prefix)
    }

    fn from_policy(policy: &SignedPolicy, prefix: &str) -> Self {
        let expires_at = i64::try_from(policy.expires)
            .ok()
            .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        Self {
            resource: policy.resource.clone(),
            expires_at,
            cookies: policy.cookies().into_iter().map(|(k, v)| (k, v.to_owned())).collect(),
            cookie_path: format!("/{prefix}/"),
            query: policy.query(),
        }
    }

    /// `url` with [`PlaybackAuthorization::query`] appended.
    pub fn signed_url(&self, url: &str) -> String {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}{}", self.query)
    }
}

/// Why the signing key could not be loaded (no message contains key material).
#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    /// `GetSecretValue` failed or timed out.
    #[error("reading secret {arn}: {reason}")]
    Secret {
        /// The secret's ARN.
        arn: String,
        /// The SDK's error, or `timed out`.
        reason: String,
    },
    /// The secret has no `SecretString`.
    #[error("secret {0} has no string value")]
    NotAString(String),
    /// The PEM or the key pair id is unusable.
    #[error("signing key from {arn}: {source}")]
    Key {
        /// The secret's ARN.
        arn: String,
        /// What is wrong with it.
        #[source]
        source: crate::cloudfront::KeyError,
    },
}

/// Time allowed for reading the signing key, SDK retries included: 4 s (a Lambda's whole
/// init phase is 10 s).
#[cfg(feature = "secretsmanager")]
pub const SECRET_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);

/// The signer of `settings`, its private key read once from Secrets Manager
/// (`GetSecretValue`); `None` when no key is configured.
///
/// # Errors
/// [`SigningKeyError`] when the secret cannot be read within [`SECRET_TIMEOUT`] or holds no
/// usable key.
#[cfg(feature = "secretsmanager")]
pub async fn load_signer(
    sdk: &aws_config::SdkConfig,
    settings: &PlaybackSettings,
) -> Result<Option<Signer>, SigningKeyError> {
    let (Some(id), Some(arn)) = (&settings.key_pair_id, &settings.private_key_secret_arn) else {
        return Ok(None);
    };
    let client = crate::aws::secretsmanager(sdk);
    let failed = |reason: String| SigningKeyError::Secret { arn: arn.clone(), reason };
    let output =
        tokio::time::timeout(SECRET_TIMEOUT, client.get_secret_value().secret_id(arn).send())
            .await
            .map_err(|_| failed("timed out".into()))?
            .map_err(|e| {
                failed(aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string())
            })?;
    let pem = output.secret_string().ok_or_else(|| SigningKeyError::NotAString(arn.clone()))?;
    Signer::from_pem(pem, id)
        .map(Some)
        .map_err(|source| SigningKeyError::Key { arn: arn.clone(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_of_each_kind() {
        assert_eq!(channel_prefix("c", Playback::Public), "live/c");
        assert_eq!(channel_prefix("c", Playback::Signed), "signed/live/c");
        assert_eq!(channel_of_prefix("signed/live/c"), Some("c"));
        assert_eq!(channel_of_prefix("live/c"), Some("c"));
        assert_eq!(channel_of_prefix("devices/c/live"), None);
        assert_eq!(device_prefix("d", Playback::Signed), "signed/devices/d");
        assert_eq!(asset_prefix("a", Playback::Public), "outputs/a");
        assert_eq!(Playback::of_key("signed/outputs/a/x"), Playback::Signed);
        assert_eq!(Playback::parse("Signed"), None);
    }

    #[test]
    fn settings() {
        let s = PlaybackSettings::from_lookup(|_| None).unwrap();
        assert_eq!((s.default, s.ttl_secs, s.key_pair_id), (Playback::Public, 3600, None));
        let get = |k: &str| match k {
            "PLAYBACK_DEFAULT" => Some("signed".to_owned()),
            "PLAYBACK_TTL_SECS" => Some("120".to_owned()),
            "PLAYBACK_KEY_PAIR_ID" => Some("K".to_owned()),
            "PLAYBACK_PRIVATE_KEY_SECRET_ARN" => Some("arn:aws:secretsmanager:x".to_owned()),
            _ => None,
        };
        let s = PlaybackSettings::from_lookup(get).unwrap();
        assert_eq!((s.default, s.ttl_secs), (Playback::Signed, 120));
        let half = |k: &str| (k == "PLAYBACK_KEY_PAIR_ID").then(|| "K".to_owned());
        assert!(PlaybackSettings::from_lookup(half).is_err());
        let bad = |k: &str| (k == "PLAYBACK_TTL_SECS").then(|| "10".to_owned());
        assert!(PlaybackSettings::from_lookup(bad).is_err());
    }
}
