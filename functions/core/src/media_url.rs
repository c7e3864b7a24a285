//! Device media URLs (`rtsp://`, `rtsps://`, `udp://`) and the credentials they may carry.
//!
//! A camera URL often embeds `user:password@`. It is stored split in two: the URL without its
//! userinfo (shown, logged, used in filters) and the userinfo sealed with AES-256-GCM under
//! the stack's key ([`MediaUrlKey`], env `MEDIA_URL_KEY`, 64 hex characters). Only the API
//! (which seals) and the streamer (which opens, to connect) hold the key; the reconciler
//! compares URLs by their [`MediaUrl::digest`], a keyed HMAC-SHA256 of the whole URL, so it
//! sees a password change as a URL change without ever seeing the password.
//!
//! Sealed form: base64 (standard, padded) of `nonce (12 bytes) || ciphertext || tag (16
//! bytes)`, AES-256-GCM (NIST SP 800-38D) with the device id as associated data, so a sealed
//! value copied onto another device does not open.

use crate::config::{env_var, ConfigError};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::fmt;
use thiserror::Error;

/// Longest accepted media URL, in bytes.
pub const MAX_MEDIA_URL_BYTES: usize = 2048;

/// Schemes a device may be pulled with.
pub const MEDIA_URL_SCHEMES: [&str; 3] = ["rtsp", "rtsps", "udp"];

/// A media URL that cannot be stored or opened.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MediaUrlError {
    /// Not a URL, a scheme other than [`MEDIA_URL_SCHEMES`], no host, too long, or a
    /// fragment. The message never repeats the URL (it may hold a password).
    #[error("{0}")]
    Invalid(String),
    /// The URL carries credentials but no [`MediaUrlKey`] is configured to seal or open them.
    #[error("media URL credentials need MEDIA_URL_KEY, which is not configured")]
    KeyRequired,
    /// The sealed credentials do not open with this key (other key, other device, tampered).
    #[error("media URL credentials do not decrypt with this key")]
    Undecryptable,
    /// `MEDIA_URL_KEY` is not 64 hex characters.
    #[error("MEDIA_URL_KEY must be 64 hex characters (32 bytes)")]
    BadKey,
}

/// The stack's media URL key: an AES-256-GCM key and an HMAC-SHA256 key, both derived from
/// the configured 32 bytes (HMAC-SHA256 of a fixed label, one label per use). `Debug` is
/// redacted.
#[derive(Clone)]
pub struct MediaUrlKey {
    seal: [u8; 32],
    digest: [u8; 32],
}

impl fmt::Debug for MediaUrlKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MediaUrlKey(<redacted>)")
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

impl MediaUrlKey {
    /// The key from 64 hex characters.
    ///
    /// # Errors
    /// [`MediaUrlError::BadKey`] for anything else.
    pub fn from_hex(hex_key: &str) -> Result<Self, MediaUrlError> {
        let mut root = [0u8; 32];
        hex::decode_to_slice(hex_key.trim(), &mut root).map_err(|_| MediaUrlError::BadKey)?;
        Ok(Self {
            seal: hmac(&root, b"streamstack media-url seal v1"),
            digest: hmac(&root, b"streamstack media-url digest v1"),
        })
    }

    /// The key from `MEDIA_URL_KEY`; `Ok(None)` when unset (URLs with credentials are then
    /// refused).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when set but not 64 hex characters.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        env_var("MEDIA_URL_KEY")
            .map(|v| {
                Self::from_hex(&v).map_err(|e| ConfigError::Invalid {
                    name: "MEDIA_URL_KEY",
                    reason: e.to_string(),
                })
            })
            .transpose()
    }
}

/// A media URL as stored: the URL without userinfo, the sealed userinfo, and the digest.
/// `Debug` shows neither the sealed value nor anything secret.
#[derive(Clone, PartialEq, Eq)]
pub struct MediaUrl {
    /// The URL without userinfo, e.g. `rtsp://10.0.0.7:554/stream1`.
    pub url: String,
    /// Sealed `user[:password]` (percent-encoded as in the URL), when the URL had one.
    pub credentials: Option<String>,
    /// 32 hex characters: HMAC-SHA256 (with a key, else SHA-256) of the whole URL, truncated
    /// to 128 bits. Equal digests mean equal URLs, credentials included.
    pub digest: String,
}

impl fmt::Debug for MediaUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MediaUrl")
            .field("url", &self.url)
            .field("credentials", &self.credentials.as_ref().map(|_| "<sealed>"))
            .field("digest", &self.digest)
            .finish()
    }
}

/// Parses and checks a device media URL: scheme in [`MEDIA_URL_SCHEMES`], a host, at most
/// [`MAX_MEDIA_URL_BYTES`], no fragment.
///
/// # Errors
/// [`MediaUrlError::Invalid`] naming the rule (never echoing the URL).
pub fn parse_media_url(raw: &str) -> Result<url::Url, MediaUrlError> {
    let invalid = |m: &str| MediaUrlError::Invalid(m.to_owned());
    if raw.len() > MAX_MEDIA_URL_BYTES {
        return Err(invalid("must be at most 2048 bytes"));
    }
    let url = url::Url::parse(raw).map_err(|e| invalid(&format!("not a URL: {e}")))?;
    if !MEDIA_URL_SCHEMES.contains(&url.scheme()) {
        return Err(invalid("scheme must be rtsp://, rtsps:// or udp://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("must name a host"));
    }
    if url.fragment().is_some() {
        return Err(invalid("must not have a #fragment"));
    }
    Ok(url)
}

impl MediaUrl {
    /// Splits and seals `raw` for device `device_id`.
    ///
    /// # Errors
    /// [`MediaUrlError::Invalid`] (see [`parse_media_url`]), [`MediaUrlError::KeyRequired`]
    /// when `raw` has credentials and `key` is `None`.
    pub fn seal(
        raw: &str,
        device_id: &str,
        key: Option<&MediaUrlKey>,
    ) -> Result<Self, MediaUrlError> {
        let mut url = parse_media_url(raw)?;
        let full = url.to_string();
        let digest = match key {
            Some(key) => hex::encode(&hmac(&key.digest, full.as_bytes())[..16]),
            None => {
                use sha2::Digest;
                hex::encode(&Sha256::digest(full.as_bytes())[..16])
            }
        };
        let userinfo = match (url.username(), url.password()) {
            ("", None) => None,
            (user, None) => Some(user.to_owned()),
            (user, Some(password)) => Some(format!("{user}:{password}")),
        };
        let credentials = match userinfo {
            None => None,
            Some(userinfo) => {
                let key = key.ok_or(MediaUrlError::KeyRequired)?;
                let _ = url.set_username("");
                let _ = url.set_password(None);
                Some(seal(key, device_id, userinfo.as_bytes()))
            }
        };
        Ok(Self { url: url.to_string(), credentials, digest })
    }

    /// The whole URL, credentials put back, for connecting. Never log it.
    ///
    /// # Errors
    /// [`MediaUrlError::KeyRequired`] when sealed credentials exist and `key` is `None`;
    /// [`MediaUrlError::Undecryptable`] when they do not open; [`MediaUrlError::Invalid`]
    /// when the stored URL no longer parses.
    pub fn open(
        &self,
        device_id: &str,
        key: Option<&MediaUrlKey>,
    ) -> Result<String, MediaUrlError> {
        let Some(sealed) = &self.credentials else {
            return Ok(self.url.clone());
        };
        let key = key.ok_or(MediaUrlError::KeyRequired)?;
        let userinfo = open(key, device_id, sealed)?;
        let (scheme, rest) = self
            .url
            .split_once("://")
            .ok_or_else(|| MediaUrlError::Invalid("stored URL has no scheme".into()))?;
        Ok(format!("{scheme}://{userinfo}@{rest}"))
    }

    /// The URL as shown to API clients: userinfo replaced by `***` when it had any
    /// (`rtsp://***@cam.example/stream1`).
    pub fn masked(&self) -> String {
        match (&self.credentials, self.url.split_once("://")) {
            (Some(_), Some((scheme, rest))) => format!("{scheme}://***@{rest}"),
            _ => self.url.clone(),
        }
    }
}

fn cipher(key: &MediaUrlKey) -> Aes256Gcm {
    Aes256Gcm::new(&key.seal.into())
}

fn seal(key: &MediaUrlKey, device_id: &str, plaintext: &[u8]) -> String {
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let payload = Payload { msg: plaintext, aad: device_id.as_bytes() };
    // Encryption fails only for plaintexts beyond 64 GiB.
    let sealed = cipher(key).encrypt(Nonce::from_slice(&nonce), payload).unwrap_or_default();
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    base64::engine::general_purpose::STANDARD.encode(out)
}

fn open(key: &MediaUrlKey, device_id: &str, sealed: &str) -> Result<String, MediaUrlError> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(sealed)
        .map_err(|_| MediaUrlError::Undecryptable)?;
    if raw.len() < 12 + 16 {
        return Err(MediaUrlError::Undecryptable);
    }
    let (nonce, body) = raw.split_at(12);
    let plain = cipher(key)
        .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad: device_id.as_bytes() })
        .map_err(|_| MediaUrlError::Undecryptable)?;
    String::from_utf8(plain).map_err(|_| MediaUrlError::Undecryptable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: char) -> MediaUrlKey {
        MediaUrlKey::from_hex(&byte.to_string().repeat(64)).unwrap()
    }

    #[test]
    fn credentials_are_sealed_and_open_only_with_the_key_and_device() {
        let raw = "rtsp://admin:p%40ss@10.0.0.7:554/stream1";
        let k = key('a');
        let stored = MediaUrl::seal(raw, "cam1", Some(&k)).unwrap();
        assert_eq!(stored.url, "rtsp://10.0.0.7:554/stream1");
        assert_eq!(stored.masked(), "rtsp://***@10.0.0.7:554/stream1");
        let sealed = stored.credentials.clone().unwrap();
        assert!(!sealed.contains("admin") && !format!("{stored:?}").contains(&sealed));
        assert_eq!(stored.open("cam1", Some(&k)).unwrap(), raw);
        assert_eq!(stored.open("cam2", Some(&k)), Err(MediaUrlError::Undecryptable));
        assert_eq!(stored.open("cam1", Some(&key('b'))), Err(MediaUrlError::Undecryptable));
        assert_eq!(stored.open("cam1", None), Err(MediaUrlError::KeyRequired));
        assert_eq!(MediaUrl::seal(raw, "cam1", None), Err(MediaUrlError::KeyRequired));
    }

    #[test]
    fn digest_moves_with_the_password_only() {
        let k = key('a');
        let a = MediaUrl::seal("rtsp://u:one@cam/s", "d", Some(&k)).unwrap();
        let b = MediaUrl::seal("rtsp://u:one@cam/s", "d", Some(&k)).unwrap();
        let c = MediaUrl::seal("rtsp://u:two@cam/s", "d", Some(&k)).unwrap();
        assert_eq!(a.digest, b.digest);
        assert_ne!(a.credentials, b.credentials, "fresh nonce per seal");
        assert_ne!(a.digest, c.digest);
        assert_eq!(a.digest.len(), 32);
        let plain = MediaUrl::seal("udp://239.1.1.1:5000", "d", None).unwrap();
        assert_eq!(
            (plain.credentials.clone(), plain.masked()),
            (None, "udp://239.1.1.1:5000".into())
        );
    }

    #[test]
    fn refuses_other_schemes_and_garbage() {
        for bad in ["http://cam/s", "rtmp://x/y", "not a url", "rtsp:///path", "rtsp://cam/s#x"] {
            assert!(
                matches!(MediaUrl::seal(bad, "d", None), Err(MediaUrlError::Invalid(_))),
                "{bad}"
            );
        }
        let long = format!("rtsp://cam/{}", "a".repeat(3000));
        assert!(MediaUrl::seal(&long, "d", None).is_err());
        assert!(MediaUrlKey::from_hex("00").is_err());
        assert_eq!(format!("{:?}", key('a')), "MediaUrlKey(<redacted>)");
    }
}
