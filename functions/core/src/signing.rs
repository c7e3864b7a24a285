//! Signed RTMP push URLs.
//!
//! A push URL is `rtmp://<ingest host>/live/<channel-id>?exp=<unix seconds>&sig=<hex>` where
//! `sig` is the lower-case hex HMAC-SHA256 (RFC 2104, FIPS 180-4) keyed with the channel's
//! 256-bit [`Secret`] over the message `"<channel-id>\n<exp>"`. The streamer recomputes it
//! on publish and compares in constant time.

use crate::domain::Secret;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

type HmacSha256 = Hmac<Sha256>;

/// The RTMP application name publishers must use.
pub const RTMP_APP: &str = "live";

/// Why a push credential was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SignatureError {
    /// `exp` or `sig` is missing or not well-formed (non-numeric `exp`, non-hex `sig`).
    #[error("missing or malformed exp/sig")]
    Malformed,
    /// `exp` is in the past.
    #[error("push URL expired")]
    Expired,
    /// The signature does not match this channel and expiry.
    #[error("signature mismatch")]
    Mismatch,
}

fn mac(secret: &Secret, channel_id: &str, exp: u64) -> HmacSha256 {
    // Any key length is valid for HMAC, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(&secret.0).expect("HMAC accepts any key length");
    mac.update(channel_id.as_bytes());
    mac.update(b"\n");
    mac.update(exp.to_string().as_bytes());
    mac
}

/// The hex signature of `channel_id` valid until `exp` (unix seconds).
pub fn sign(secret: &Secret, channel_id: &str, exp: u64) -> String {
    hex::encode(mac(secret, channel_id, exp).finalize().into_bytes())
}

/// Checks a signature at `now` (unix seconds).
///
/// # Errors
/// [`SignatureError::Malformed`] if `sig` is not 64 hex characters, [`SignatureError::Expired`]
/// if `now >= exp`, [`SignatureError::Mismatch`] if it was not made by `secret` for this
/// `channel_id` and `exp`.
pub fn verify(
    secret: &Secret,
    channel_id: &str,
    exp: u64,
    sig: &str,
    now: u64,
) -> Result<(), SignatureError> {
    let mut raw = [0u8; 32];
    hex::decode_to_slice(sig, &mut raw).map_err(|_| SignatureError::Malformed)?;
    if now >= exp {
        return Err(SignatureError::Expired);
    }
    mac(secret, channel_id, exp).verify_slice(&raw).map_err(|_| SignatureError::Mismatch)
}

/// The publish credential carried in an RTMP stream name:
/// `<channel-id>?exp=<unix seconds>&sig=<hex>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushCredential {
    /// Channel id (the stream name before `?`).
    pub channel_id: String,
    /// Expiry, unix seconds.
    pub exp: u64,
    /// Hex HMAC-SHA256.
    pub sig: String,
}

impl PushCredential {
    /// Parses a stream name such as `abc?exp=1700000000&sig=ff..`. Unknown query parameters
    /// are ignored (some publishers append their own).
    ///
    /// # Errors
    /// [`SignatureError::Malformed`] when the id is empty or `exp`/`sig` are absent or invalid.
    pub fn parse(stream_name: &str) -> Result<Self, SignatureError> {
        let (id, query) = stream_name.split_once('?').ok_or(SignatureError::Malformed)?;
        let (mut exp, mut sig) = (None, None);
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("exp", v)) => exp = v.parse::<u64>().ok(),
                Some(("sig", v)) => sig = Some(v.to_owned()),
                _ => {}
            }
        }
        let valid_id = crate::domain::is_valid_channel_id(id);
        match (valid_id, exp, sig) {
            (true, Some(exp), Some(sig)) => Ok(Self { channel_id: id.to_owned(), exp, sig }),
            _ => Err(SignatureError::Malformed),
        }
    }
}

/// Builds the signed push URL of a channel: `rtmp://<ingest_host>/live/<id>?exp=..&sig=..`.
pub fn push_url(ingest_host: &str, secret: &Secret, channel_id: &str, exp: u64) -> String {
    format!("rtmp://{ingest_host}/{RTMP_APP}/{}", stream_key(secret, channel_id, exp))
}

/// The same push URL over TLS: `rtmps://<rtmps_host>/live/<id>?exp=..&sig=..` (RTMP inside
/// TLS; in AWS the load balancer's TLS listener decrypts it).
pub fn rtmps_push_url(rtmps_host: &str, secret: &Secret, channel_id: &str, exp: u64) -> String {
    format!("rtmps://{rtmps_host}/{RTMP_APP}/{}", stream_key(secret, channel_id, exp))
}

/// An SRT caller URL: `srt://<srt_host>?streamid=<stream key, percent-encoded>` (RFC 3986
/// §2.1; ffmpeg passes `streamid` on as written and splits its own options on `&`, so the
/// key's `?`, `=` and `&` must be encoded). The streamer's SRT ingest decodes it.
pub fn srt_url(srt_host: &str, secret: &Secret, channel_id: &str, exp: u64) -> String {
    let key = stream_key(secret, channel_id, exp);
    let encoded = percent_encoding::utf8_percent_encode(&key, percent_encoding::NON_ALPHANUMERIC);
    format!("srt://{srt_host}?streamid={encoded}")
}

/// The stream key part of a push URL, `<id>?exp=..&sig=..` (what OBS calls "Stream Key").
pub fn stream_key(secret: &Secret, channel_id: &str, exp: u64) -> String {
    format!("{channel_id}?exp={exp}&sig={}", sign(secret, channel_id, exp))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn parsed(url: &str) -> PushCredential {
        PushCredential::parse(url.rsplit('/').next().unwrap()).unwrap()
    }

    #[test]
    fn valid_url_verifies() {
        let s = Secret::generate();
        let c = parsed(&push_url("h:1935", &s, "abc", NOW + 60));
        assert_eq!(c.channel_id, "abc");
        assert_eq!(verify(&s, &c.channel_id, c.exp, &c.sig, NOW), Ok(()));
    }

    #[test]
    fn expired_url_is_refused() {
        let s = Secret::generate();
        let c = parsed(&push_url("h", &s, "abc", NOW));
        assert_eq!(verify(&s, "abc", c.exp, &c.sig, NOW), Err(SignatureError::Expired));
    }

    #[test]
    fn tampered_expiry_or_signature_is_refused() {
        let s = Secret::generate();
        let c = parsed(&push_url("h", &s, "abc", NOW + 60));
        assert_eq!(verify(&s, "abc", c.exp + 3600, &c.sig, NOW), Err(SignatureError::Mismatch));
        let mut sig = c.sig.clone().into_bytes();
        sig[0] = if sig[0] == b'0' { b'1' } else { b'0' };
        let sig = String::from_utf8(sig).unwrap();
        assert_eq!(verify(&s, "abc", c.exp, &sig, NOW), Err(SignatureError::Mismatch));
        assert_eq!(verify(&s, "abc", c.exp, "xyz", NOW), Err(SignatureError::Malformed));
    }

    #[test]
    fn signature_of_another_channel_is_refused() {
        let s = Secret::generate();
        let c = parsed(&push_url("h", &s, "abc", NOW + 60));
        assert_eq!(verify(&s, "abd", c.exp, &c.sig, NOW), Err(SignatureError::Mismatch));
        assert_eq!(
            verify(&Secret::generate(), "abc", c.exp, &c.sig, NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn malformed_stream_names() {
        for s in [
            "abc",
            "abc?exp=1",
            "abc?sig=00",
            "?exp=1&sig=00",
            "a/b?exp=1&sig=0",
            "abc?exp=x&sig=00",
        ] {
            assert_eq!(PushCredential::parse(s), Err(SignatureError::Malformed), "{s}");
        }
        assert!(PushCredential::parse("abc?exp=5&sig=00&foo=bar").is_ok());
    }
}
