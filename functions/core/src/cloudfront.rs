//! CloudFront signed URLs and signed cookies with a custom policy: signing (the API) and
//! verification (the local edge, which enforces what CloudFront enforces in AWS).
//!
//! Follows the CloudFront Developer Guide, "Serve private content with signed URLs and signed
//! cookies": a custom policy is one JSON statement
//! `{"Statement":[{"Resource":"<url pattern>","Condition":{"DateLessThan":{"AWS:EpochTime":<s>}}}]}`,
//! signed with RSA PKCS#1 v1.5 over SHA-1 by a private key whose public key is in a trusted
//! key group. Policy and signature travel base64-encoded with `+` `=` `/` replaced by `-` `_`
//! `~`, as the query parameters `Policy`, `Signature`, `Key-Pair-Id` of a signed URL or the
//! cookies `CloudFront-Policy`, `CloudFront-Signature`, `CloudFront-Key-Pair-Id`. In the
//! resource, `*` matches any run of characters (also none) and `?` exactly one.

use base64::Engine as _;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::signature::{RandomizedSigner as _, SignatureEncoding, Verifier as _};
use serde_json::Value;
use sha1::Sha1;
use std::collections::HashMap;
use thiserror::Error;

/// Query parameter of a signed URL carrying the encoded policy.
pub const QUERY_POLICY: &str = "Policy";
/// Query parameter of a signed URL carrying the encoded signature.
pub const QUERY_SIGNATURE: &str = "Signature";
/// Query parameter of a signed URL carrying the public key id.
pub const QUERY_KEY_PAIR_ID: &str = "Key-Pair-Id";
/// Cookie carrying the encoded policy.
pub const COOKIE_POLICY: &str = "CloudFront-Policy";
/// Cookie carrying the encoded signature.
pub const COOKIE_SIGNATURE: &str = "CloudFront-Signature";
/// Cookie carrying the public key id.
pub const COOKIE_KEY_PAIR_ID: &str = "CloudFront-Key-Pair-Id";
/// Longest encoded policy accepted by [`Verifier::verify`], in bytes (CloudFront limits a
/// whole URL to 8 KiB).
pub const MAX_ENCODED_POLICY_BYTES: usize = 4096;

/// Base64 with CloudFront's URL-safe substitutions (`+`→`-`, `=`→`_`, `/`→`~`).
pub fn encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(bytes)
        .chars()
        .map(|c| match c {
            '+' => '-',
            '=' => '_',
            '/' => '~',
            c => c,
        })
        .collect()
}

/// Inverse of [`encode`]; `None` for anything that is not such an encoding.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let standard: String = text
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '=',
            '~' => '/',
            c => c,
        })
        .collect();
    base64::engine::general_purpose::STANDARD.decode(standard).ok()
}

/// The custom policy allowing `resource` (a URL pattern) until `expires` (Unix seconds,
/// exclusive: `DateLessThan`), without whitespace and with `Resource` before `Condition`,
/// byte for byte as the developer guide's example and botocore's `CloudFrontSigner` write it.
pub fn custom_policy(resource: &str, expires: u64) -> String {
    let resource = Value::String(resource.to_owned());
    format!(
        r#"{{"Statement":[{{"Resource":{resource},"Condition":{{"DateLessThan":{{"AWS:EpochTime":{expires}}}}}}}]}}"#
    )
}

/// A key that cannot be used.
#[derive(Debug, Error)]
pub enum KeyError {
    /// Not a PEM RSA key in PKCS#8 or PKCS#1 form (the message never contains key material).
    #[error("not an RSA {0} key in PEM (PKCS#8 or PKCS#1)")]
    Pem(&'static str),
    /// The key pair id is empty or not printable ASCII.
    #[error("key pair id must be 1..=128 printable ASCII characters")]
    KeyPairId,
}

fn check_key_pair_id(id: &str) -> Result<(), KeyError> {
    if (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(KeyError::KeyPairId)
    }
}

/// Signs custom policies with one private key of a trusted key group.
///
/// `Debug` shows only the key pair id.
#[derive(Clone)]
pub struct Signer {
    key: rsa::pkcs1v15::SigningKey<Sha1>,
    key_pair_id: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("key_pair_id", &self.key_pair_id).finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer from the private key PEM (`BEGIN PRIVATE KEY` or `BEGIN RSA PRIVATE KEY`)
    /// and the id CloudFront gave its public key.
    ///
    /// # Errors
    /// [`KeyError`] for a key that does not parse or a malformed id.
    pub fn from_pem(private_key_pem: &str, key_pair_id: &str) -> Result<Self, KeyError> {
        check_key_pair_id(key_pair_id)?;
        let pem = private_key_pem.trim();
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(pem)
            .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(pem))
            .map_err(|_| KeyError::Pem("private"))?;
        Ok(Self { key: rsa::pkcs1v15::SigningKey::new(key), key_pair_id: key_pair_id.to_owned() })
    }

    /// The public key id sent as `Key-Pair-Id`.
    pub fn key_pair_id(&self) -> &str {
        &self.key_pair_id
    }

    /// Credentials for every URL matching `resource` until `expires` (Unix seconds).
    ///
    /// The RSA operation is blinded (`sign_with_rng`), so its timing does not depend on the
    /// private key (RUSTSEC-2023-0071 concerns unblinded use); PKCS#1 v1.5 signatures are
    /// deterministic, so the result is the same as unblinded signing.
    pub fn sign(&self, resource: &str, expires: u64) -> SignedPolicy {
        let policy = custom_policy(resource, expires);
        let signature =
            self.key.sign_with_rng(&mut rsa::rand_core::OsRng, policy.as_bytes()).to_vec();
        SignedPolicy {
            policy: encode(policy.as_bytes()),
            signature: encode(&signature),
            key_pair_id: self.key_pair_id.clone(),
            resource: resource.to_owned(),
            expires,
        }
    }
}

/// A signed custom policy, ready to travel as a query string or as cookies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPolicy {
    /// The policy, encoded ([`encode`]).
    pub policy: String,
    /// Its signature, encoded.
    pub signature: String,
    /// The public key id.
    pub key_pair_id: String,
    /// The URL pattern the policy allows.
    pub resource: String,
    /// End of validity, Unix seconds (exclusive).
    pub expires: u64,
}

impl SignedPolicy {
    /// `Policy=…&Signature=…&Key-Pair-Id=…` (the encodings need no further escaping).
    pub fn query(&self) -> String {
        format!(
            "{QUERY_POLICY}={}&{QUERY_SIGNATURE}={}&{QUERY_KEY_PAIR_ID}={}",
            self.policy, self.signature, self.key_pair_id
        )
    }

    /// `url` with [`SignedPolicy::query`] appended (after `&` when it has a query already).
    pub fn signed_url(&self, url: &str) -> String {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}{}", self.query())
    }

    /// The three cookies as `(name, value)`, in CloudFront's order.
    pub fn cookies(&self) -> [(&'static str, &str); 3] {
        [
            (COOKIE_POLICY, &self.policy),
            (COOKIE_SIGNATURE, &self.signature),
            (COOKIE_KEY_PAIR_ID, &self.key_pair_id),
        ]
    }
}

/// Why a request was refused (each answers 403, as CloudFront does).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Denied {
    /// Neither a complete signed query nor the three cookies.
    #[error("missing signed URL parameters or signed cookies")]
    MissingCredentials,
    /// The key pair id is not in the trusted key group.
    #[error("unknown key pair id")]
    UnknownKeyPair,
    /// The policy is not an encoded custom policy of one statement.
    #[error("malformed policy: {0}")]
    MalformedPolicy(&'static str),
    /// The signature does not verify against the policy.
    #[error("signature does not match the policy")]
    BadSignature,
    /// `now` is at or after `DateLessThan`.
    #[error("credentials expired")]
    Expired,
    /// `now` is before `DateGreaterThan` (valid on or after it).
    #[error("credentials not yet valid")]
    NotYetValid,
    /// The request URL does not match the policy's resource.
    #[error("resource not allowed by the policy")]
    ResourceMismatch,
}

/// Verifies signed URLs and cookies against the public keys of a key group.
#[derive(Debug, Clone, Default)]
pub struct Verifier {
    keys: HashMap<String, rsa::pkcs1v15::VerifyingKey<Sha1>>,
}

impl Verifier {
    /// A verifier trusting no key yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts `public_key_pem` (`BEGIN PUBLIC KEY` or `BEGIN RSA PUBLIC KEY`) under
    /// `key_pair_id`.
    ///
    /// # Errors
    /// [`KeyError`] for a key that does not parse or a malformed id.
    pub fn trust(mut self, key_pair_id: &str, public_key_pem: &str) -> Result<Self, KeyError> {
        check_key_pair_id(key_pair_id)?;
        let pem = public_key_pem.trim();
        let key = rsa::RsaPublicKey::from_public_key_pem(pem)
            .or_else(|_| rsa::RsaPublicKey::from_pkcs1_pem(pem))
            .map_err(|_| KeyError::Pem("public"))?;
        self.keys.insert(key_pair_id.to_owned(), rsa::pkcs1v15::VerifyingKey::new(key));
        Ok(self)
    }

    /// Checks that `policy`/`signature` (encoded) under `key_pair_id` allow `url` (scheme,
    /// host, path and any query other than the signing parameters) at `now` (Unix seconds).
    ///
    /// Supports the conditions the API issues (`DateLessThan`, optionally
    /// `DateGreaterThan`); a policy with any other condition (`IpAddress`) is refused.
    ///
    /// # Errors
    /// The first [`Denied`] reason found.
    pub fn verify(
        &self,
        url: &str,
        policy: &str,
        signature: &str,
        key_pair_id: &str,
        now: u64,
    ) -> Result<(), Denied> {
        let key = self.keys.get(key_pair_id).ok_or(Denied::UnknownKeyPair)?;
        if policy.len() > MAX_ENCODED_POLICY_BYTES {
            return Err(Denied::MalformedPolicy("too long"));
        }
        let policy = decode(policy).ok_or(Denied::MalformedPolicy("not base64"))?;
        let signature = decode(signature)
            .and_then(|s| rsa::pkcs1v15::Signature::try_from(s.as_slice()).ok())
            .ok_or(Denied::BadSignature)?;
        key.verify(&policy, &signature).map_err(|_| Denied::BadSignature)?;
        let statement = parse_statement(&policy)?;
        if now >= statement.date_less_than {
            return Err(Denied::Expired);
        }
        if statement.date_greater_than.is_some_and(|t| now < t) {
            return Err(Denied::NotYetValid);
        }
        if !wildcard_match(statement.resource.as_bytes(), url.as_bytes()) {
            return Err(Denied::ResourceMismatch);
        }
        Ok(())
    }
}

struct Statement {
    resource: String,
    date_less_than: u64,
    date_greater_than: Option<u64>,
}

fn parse_statement(policy: &[u8]) -> Result<Statement, Denied> {
    let malformed = Denied::MalformedPolicy;
    let doc: Value = serde_json::from_slice(policy).map_err(|_| malformed("not JSON"))?;
    let statements = doc["Statement"].as_array().ok_or(malformed("no Statement list"))?;
    let [statement] = statements.as_slice() else {
        return Err(malformed("not exactly one statement"));
    };
    let resource = statement["Resource"].as_str().ok_or(malformed("no Resource"))?;
    let conditions = statement["Condition"].as_object().ok_or(malformed("no Condition"))?;
    let epoch = |name: &str| conditions.get(name).map(|c| c["AWS:EpochTime"].as_u64());
    if conditions.keys().any(|k| k != "DateLessThan" && k != "DateGreaterThan") {
        return Err(malformed("unsupported condition"));
    }
    let date_less_than = epoch("DateLessThan").flatten().ok_or(malformed("no DateLessThan"))?;
    let date_greater_than = match epoch("DateGreaterThan") {
        None => None,
        Some(Some(t)) => Some(t),
        Some(None) => return Err(malformed("DateGreaterThan is not an epoch time")),
    };
    Ok(Statement { resource: resource.to_owned(), date_less_than, date_greater_than })
}

/// Whether `text` matches `pattern`, where `*` matches any run of bytes and `?` one byte.
/// Linear in `pattern.len() * text.len()` at worst (greedy with one backtrack point).
pub fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1024-bit test key (small so the tests stay fast; CloudFront requires 2048).
    fn keys() -> (Signer, Verifier) {
        let mut rng = rand::thread_rng();
        let private = rsa::RsaPrivateKey::new(&mut rng, 1024).unwrap();
        use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
        let pem = private.to_pkcs8_pem(LineEnding::LF).unwrap();
        let public = private.to_public_key().to_public_key_pem(LineEnding::LF).unwrap();
        (Signer::from_pem(&pem, "K1").unwrap(), Verifier::new().trust("K1", &public).unwrap())
    }

    #[test]
    fn encoding_round_trips_and_uses_cloudfront_characters() {
        let bytes: Vec<u8> = (0..=255).collect();
        let e = encode(&bytes);
        assert!(!e.contains(['+', '=', '/']));
        assert_eq!(decode(&e).unwrap(), bytes);
        assert_eq!(decode("a b"), None);
    }

    #[test]
    fn policy_is_compact_json() {
        assert_eq!(
            custom_policy("https://d.example/signed/live/a/*", 1_700_000_000),
            r#"{"Statement":[{"Resource":"https://d.example/signed/live/a/*","Condition":{"DateLessThan":{"AWS:EpochTime":1700000000}}}]}"#
        );
    }

    #[test]
    fn verifies_what_it_signs_and_refuses_the_rest() {
        let (signer, verifier) = keys();
        let p = signer.sign("https://d.example/signed/live/a/*", 2_000);
        let ok = |url: &str, now| verifier.verify(url, &p.policy, &p.signature, "K1", now);
        assert_eq!(ok("https://d.example/signed/live/a/index.m3u8", 1_999), Ok(()));
        assert_eq!(ok("https://d.example/signed/live/a/s/000001.ts", 10), Ok(()));
        assert_eq!(ok("https://d.example/signed/live/a/x", 2_000), Err(Denied::Expired));
        assert_eq!(ok("https://d.example/signed/live/b/x", 10), Err(Denied::ResourceMismatch));
        assert_eq!(ok("https://d.example/signed/live/ab/x", 10), Err(Denied::ResourceMismatch));
        let url = "https://d.example/signed/live/a/x";
        assert_eq!(
            verifier.verify(url, &p.policy, &p.signature, "K2", 10),
            Err(Denied::UnknownKeyPair)
        );
        // Another policy with this signature, and a flipped signature byte.
        let other = encode(custom_policy("https://d.example/*", 2_000).as_bytes());
        assert_eq!(verifier.verify(url, &other, &p.signature, "K1", 10), Err(Denied::BadSignature));
        let mut sig = decode(&p.signature).unwrap();
        sig[5] ^= 1;
        assert_eq!(
            verifier.verify(url, &p.policy, &encode(&sig), "K1", 10),
            Err(Denied::BadSignature)
        );
        assert!(matches!(
            verifier.verify(url, "%%%", &p.signature, "K1", 10),
            Err(Denied::MalformedPolicy(_))
        ));
        assert!(p
            .signed_url("https://d.example/signed/live/a/index.m3u8")
            .contains(&format!("?Policy={}&Signature={}&Key-Pair-Id=K1", p.policy, p.signature)));
    }

    #[test]
    fn refuses_conditions_it_does_not_enforce() {
        let (signer, verifier) = keys();
        let policy = r#"{"Statement":[{"Resource":"*","Condition":{"DateLessThan":{"AWS:EpochTime":9},"IpAddress":{"AWS:SourceIp":"1.2.3.4/32"}}}]}"#;
        use rsa::signature::Signer as _;
        let sig = signer.key.sign(policy.as_bytes()).to_vec();
        // Blinded signing gives the same (deterministic) PKCS#1 v1.5 signature.
        assert_eq!(
            signer.key.sign_with_rng(&mut rsa::rand_core::OsRng, policy.as_bytes()).to_vec(),
            sig
        );
        assert_eq!(
            verifier.verify("x", &encode(policy.as_bytes()), &encode(&sig), "K1", 1),
            Err(Denied::MalformedPolicy("unsupported condition"))
        );
    }

    #[test]
    fn wildcards() {
        let m = |p: &str, t: &str| wildcard_match(p.as_bytes(), t.as_bytes());
        assert!(m("*", "") && m("a*", "a") && m("a*c", "abbbc") && m("a?c", "abc"));
        assert!(m("*/live/a/*", "https://h/live/a/x/y.ts"));
        assert!(!m("a?c", "ac") && !m("a*c", "abd") && !m("", "a") && !m("abc", "ab"));
        let long = "a".repeat(5000);
        assert!(!m(&format!("{}b", "*a".repeat(50)), &long));
    }

    #[test]
    fn rejects_bad_keys_without_echoing_them() {
        let e = Signer::from_pem("-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n", "K").unwrap_err();
        assert!(!e.to_string().contains("c2VjcmV0"));
        assert!(matches!(Verifier::new().trust("", "x"), Err(KeyError::KeyPairId)));
    }
}
