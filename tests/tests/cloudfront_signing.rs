//! Issue 14: CloudFront credentials signed by `streamstack_core::cloudfront` verify with
//! botocore's `CloudFrontSigner` and the `cryptography` package, and the Rust `Verifier`
//! accepts what botocore signs: valid, expired, another prefix, tampered.
//!
//! `tests/scripts/cloudfront_verify.py` (run with the project venv's Python: botocore and
//! cryptography come with moto) rebuilds each policy with botocore, compares it and the
//! signed URL byte for byte (PKCS#1 v1.5 is deterministic), verifies the signatures with
//! `cryptography`, evaluates requests as CloudFront would, and reports each check by name.
//! No moto server is needed.

use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::signature::{SignatureEncoding, Signer as _};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};
use streamstack_core::cloudfront::{self, Denied, SignedPolicy, Signer, Verifier};

const HOST: &str = "https://d111111abcdef8.cloudfront.net";
const KEY_PAIR_ID: &str = "K2JCJMDEHXQW5F";

/// One 2048-bit key for every test of this file (generating it is the slow part).
struct Key {
    private: rsa::RsaPrivateKey,
    private_pem: String,
    public_pem: String,
}

fn key() -> &'static Key {
    static KEY: OnceLock<Key> = OnceLock::new();
    KEY.get_or_init(|| {
        let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("keygen");
        let private_pem = private.to_pkcs8_pem(LineEnding::LF).expect("pkcs8").to_string();
        let public_pem = private.to_public_key().to_public_key_pem(LineEnding::LF).expect("spki");
        assert!(private_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        Key { private, private_pem, public_pem }
    })
}

/// The key's PEM files in a fresh directory, removed on drop.
struct KeyFiles {
    dir: PathBuf,
}

impl KeyFiles {
    fn write(key: &Key) -> Self {
        let dir = streamstack_tests::tempdir();
        std::fs::write(dir.join("private.pem"), &key.private_pem).expect("write private key");
        std::fs::write(dir.join("public.pem"), &key.public_pem).expect("write public key");
        Self { dir }
    }

    fn private(&self) -> PathBuf {
        self.dir.join("private.pem")
    }

    fn public(&self) -> PathBuf {
        self.dir.join("public.pem")
    }
}

impl Drop for KeyFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

/// `STREAMSTACK_PYTHON` (`make test`), else the workspace's `.venv` (`make tools`).
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("STREAMSTACK_PYTHON") {
        return p.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with botocore and cryptography: set STREAMSTACK_PYTHON or run `make tools`"
    );
    venv
}

/// The script's verdict: whether it exited 0, and its report.
struct Report {
    success: bool,
    checks: BTreeMap<String, Value>,
    botocore: Value,
}

impl Report {
    fn check(&self, name: &str) -> &Value {
        self.checks.get(name).unwrap_or_else(|| panic!("no check {name} in the report"))
    }

    fn ok(&self, name: &str) -> bool {
        self.check(name)["ok"].as_bool().expect("ok is a bool")
    }

    fn failing(&self) -> Vec<&Value> {
        self.checks.values().filter(|c| c["ok"] != json!(true)).collect()
    }
}

fn run_script(input: &Value) -> Report {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/cloudfront_verify.py");
    let mut child = Command::new(python())
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cloudfront_verify.py");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write the script's input");
    let out = child.wait_with_output().expect("cloudfront_verify.py");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "cloudfront_verify.py printed no report ({e}); stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let mut checks = BTreeMap::new();
    for c in report["checks"].as_array().expect("checks") {
        let name = c["name"].as_str().expect("check name").to_owned();
        assert!(checks.insert(name.clone(), c.clone()).is_none(), "check {name} twice");
    }
    Report { success: out.status.success(), checks, botocore: report["botocore"].clone() }
}

/// A request to judge with a credential, and whether CloudFront must serve it.
fn request(name: &str, url: &str, allowed: bool) -> Value {
    json!({ "name": name, "url": url, "allowed": allowed })
}

/// A credential as the script reads it; `url` is the signed URL without its query.
fn credential(name: &str, p: &SignedPolicy, url: &str, requests: &[Value]) -> Value {
    let cookies: BTreeMap<&str, &str> = p.cookies().into_iter().collect();
    json!({
        "name": name,
        "resource": p.resource,
        "expires": p.expires,
        "url": url,
        "policy": p.policy,
        "signature": p.signature,
        "key_pair_id": p.key_pair_id,
        "signed_url": p.signed_url(url),
        "cookies": cookies,
        "requests": requests,
    })
}

/// The names of the checks the script reports for one credential.
fn expected_checks(name: &str, requests: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = [
        "policy_uses_cloudfront_alphabet",
        "signature_uses_cloudfront_alphabet",
        "decodes",
        "policy_matches_botocore",
        "signature_matches_botocore",
        "signed_url_matches_botocore",
        "key_pair_id",
        "cookies_match_botocore",
        "signature_verifies",
        "tamper_changes_policy",
        "tampered_policy_refused",
        "tampered_signature_refused",
        "edge_refuses_tampered_policy",
    ]
    .iter()
    .map(|c| format!("{name}.{c}"))
    .collect();
    for r in requests {
        names.push(format!("{name}.edge.{r}.url"));
        names.push(format!("{name}.edge.{r}.cookies"));
    }
    names
}

/// Live channel paths on the distribution.
fn live(channel: &str, rest: &str) -> String {
    format!("{HOST}/signed/live/{channel}/{rest}")
}

/// `(url without query, Policy, Signature, Key-Pair-Id)` of a signed URL.
fn split_signed_url(signed: &str) -> (String, String, String, String) {
    let (url, query) = signed.split_once('?').expect("signed URL has a query");
    let params: BTreeMap<&str, &str> =
        query.split('&').map(|kv| kv.split_once('=').expect("key=value")).collect();
    assert_eq!(params.len(), 3, "exactly Policy, Signature, Key-Pair-Id: {signed}");
    let get = |k: &str| params.get(k).unwrap_or_else(|| panic!("{k} in {signed}")).to_string();
    (url.to_owned(), get("Policy"), get("Signature"), get("Key-Pair-Id"))
}

#[test]
fn rust_signatures_verify_with_botocore_and_cryptography_and_back() {
    let key = key();
    let files = KeyFiles::write(key);
    let signer = Signer::from_pem(&key.private_pem, KEY_PAIR_ID).expect("signer");
    let now = now();
    let channel = streamstack_tests::unique("ch");
    let other = streamstack_tests::unique("ch");
    let resource = live(&channel, "*");
    let playlist = live(&channel, "index.m3u8");
    let valid = signer.sign(&resource, now + 3600);
    let expired = signer.sign(&resource, now - 60);

    let segment = live(&channel, "720p/000001.ts");
    let other_channel = live(&other, "index.m3u8");
    let sibling = format!("{HOST}/signed/live/{channel}x/index.m3u8");
    let valid_requests = [
        request("playlist", &playlist, true),
        request("segment", &segment, true),
        request("other_channel", &other_channel, false),
        request("sibling_prefix", &sibling, false),
    ];
    let expired_requests = [request("segment", &segment, false)];

    // A second channel that botocore signs, for the Rust verifier.
    let boto_channel = streamstack_tests::unique("ch");
    let boto_resource = live(&boto_channel, "*");
    let boto_playlist = live(&boto_channel, "index.m3u8");
    let input = json!({
        "private_key": files.private(),
        "public_key": files.public(),
        "key_pair_id": KEY_PAIR_ID,
        "now": now,
        "other_prefix": live(&other, ""),
        "credentials": [
            credential("valid", &valid, &playlist, &valid_requests),
            credential("expired", &expired, &playlist, &expired_requests),
        ],
        "botocore": [
            { "name": "valid", "resource": boto_resource, "url": boto_playlist,
              "expires": now + 3600 },
            { "name": "expired", "resource": boto_resource, "url": boto_playlist,
              "expires": now - 60 },
        ],
    });
    let report = run_script(&input);

    // All as expected, and every check reported, none missing or extra.
    let mut expected: BTreeSet<String> = BTreeSet::new();
    expected.extend(expected_checks(
        "valid",
        &["playlist", "segment", "other_channel", "sibling_prefix"],
    ));
    expected.extend(expected_checks("expired", &["segment"]));
    assert!(report.failing().is_empty(), "failing checks: {:#?}", report.failing());
    let reported: BTreeSet<String> = report.checks.keys().cloned().collect();
    assert_eq!(reported, expected, "the script's checks");
    assert!(report.success, "the script exits 0 when every check passes");

    // The cases of the issue, by name: valid, expired, other prefix, tampered.
    let observed = |name: &str| report.check(name)["observed"].clone();
    let detail = |name: &str| report.check(name)["detail"].as_str().unwrap_or("").to_owned();
    assert_eq!(
        observed("valid.policy_matches_botocore"),
        json!(cloudfront::custom_policy(&resource, now + 3600))
    );
    assert_eq!(observed("valid.signed_url_matches_botocore"), json!(valid.signed_url(&playlist)));
    assert_eq!(observed("valid.signature_verifies"), json!(true));
    assert_eq!(observed("valid.edge.segment.url"), json!(true));
    assert_eq!(observed("valid.edge.segment.cookies"), json!(true));
    assert_eq!(observed("expired.signature_verifies"), json!(true));
    assert_eq!(observed("expired.edge.segment.url"), json!(false));
    assert!(detail("expired.edge.segment.url").starts_with("expired"), "refused as expired");
    assert_eq!(observed("valid.edge.other_channel.url"), json!(false));
    assert!(detail("valid.edge.other_channel.url").contains("does not match"));
    assert_eq!(observed("valid.edge.sibling_prefix.cookies"), json!(false));
    for case in ["valid", "expired"] {
        assert_eq!(observed(&format!("{case}.tampered_policy_refused")), json!(false));
        assert_eq!(observed(&format!("{case}.tampered_signature_refused")), json!(false));
        assert_eq!(observed(&format!("{case}.edge_refuses_tampered_policy")), json!(false));
    }

    // And back: what botocore signed, the Rust verifier accepts, and refuses once tampered.
    let verifier = Verifier::new().trust(KEY_PAIR_ID, &key.public_pem).expect("verifier");
    let boto_valid = report.botocore["valid"].as_str().expect("botocore's signed URL");
    let boto_expired = report.botocore["expired"].as_str().expect("botocore's expired URL");
    assert_eq!(boto_valid, signer.sign(&boto_resource, now + 3600).signed_url(&boto_playlist));
    let (url, policy, signature, key_pair_id) = split_signed_url(boto_valid);
    assert_eq!(url, boto_playlist);
    assert_eq!(key_pair_id, KEY_PAIR_ID);
    let verify = |url: &str, policy: &str, signature: &str| {
        verifier.verify(url, policy, signature, &key_pair_id, now)
    };
    assert_eq!(verify(&url, &policy, &signature), Ok(()));
    assert_eq!(verify(&live(&boto_channel, "720p/000002.ts"), &policy, &signature), Ok(()));
    assert_eq!(verify(&other_channel, &policy, &signature), Err(Denied::ResourceMismatch));
    let (_, expired_policy, expired_signature, _) = split_signed_url(boto_expired);
    assert_eq!(verify(&url, &expired_policy, &expired_signature), Err(Denied::Expired));
    // Tampered: the policy moved to another channel's prefix, or one signature bit flipped.
    let decoded = String::from_utf8(cloudfront::decode(&policy).expect("policy")).unwrap();
    let moved = decoded.replace(&live(&boto_channel, ""), &live(&other, ""));
    assert_ne!(moved, decoded);
    let moved = cloudfront::encode(moved.as_bytes());
    assert_eq!(verify(&other_channel, &moved, &signature), Err(Denied::BadSignature));
    let mut flipped = cloudfront::decode(&signature).expect("signature");
    flipped[100] ^= 0x01;
    let flipped = cloudfront::encode(&flipped);
    assert_eq!(verify(&url, &policy, &flipped), Err(Denied::BadSignature));
    assert_eq!(
        verifier.verify(&url, &policy, &signature, "K-OTHER", now),
        Err(Denied::UnknownKeyPair)
    );
}

/// The script's checks can fail: credentials that are wrong in the ways a signer could be
/// (keys of the policy reordered, the standard base64 alphabet, a signature of another
/// policy) and expectations that contradict CloudFront are reported as failures.
#[test]
fn the_checks_catch_wrong_credentials() {
    let key = key();
    let files = KeyFiles::write(key);
    let signer = Signer::from_pem(&key.private_pem, KEY_PAIR_ID).expect("signer");
    let sha1_signer = rsa::pkcs1v15::SigningKey::<sha1::Sha1>::new(key.private.clone());
    let now = now();
    let channel = streamstack_tests::unique("ch");
    let other = streamstack_tests::unique("ch");
    let resource = live(&channel, "*");
    let playlist = live(&channel, "index.m3u8");
    let segment = live(&channel, "720p/000001.ts");
    let good = signer.sign(&resource, now + 3600);
    let expired = signer.sign(&resource, now - 60);
    let requests = [request("segment", &segment, true)];

    // Condition before Resource: valid JSON, correctly signed, but not botocore's bytes.
    let reordered = format!(
        r#"{{"Statement":[{{"Condition":{{"DateLessThan":{{"AWS:EpochTime":{}}}}},"Resource":"{resource}"}}]}}"#,
        now + 3600
    );
    let key_order = SignedPolicy {
        policy: cloudfront::encode(reordered.as_bytes()),
        signature: cloudfront::encode(&sha1_signer.sign(reordered.as_bytes()).to_vec()),
        ..good.clone()
    };
    // Standard base64 (`+` `=` `/`): a 2048-bit signature always ends in `==`.
    let standard = |s: &str| s.replace('-', "+").replace('_', "=").replace('~', "/");
    let alphabet = SignedPolicy {
        policy: standard(&good.policy),
        signature: standard(&good.signature),
        ..good.clone()
    };
    assert!(alphabet.signature.ends_with("=="));
    // The expired credential's signature on the valid policy.
    let swapped = SignedPolicy { signature: expired.signature.clone(), ..good.clone() };
    let contradicted = [
        request("segment", &segment, false),
        request("other_channel", &live(&other, "index.m3u8"), true),
    ];
    let input = json!({
        "private_key": files.private(),
        "public_key": files.public(),
        "key_pair_id": KEY_PAIR_ID,
        "now": now,
        "other_prefix": live(&other, ""),
        "credentials": [
            credential("key_order", &key_order, &playlist, &requests),
            credential("alphabet", &alphabet, &playlist, &requests),
            credential("swapped", &swapped, &playlist, &requests),
            credential("contradicted", &good, &playlist, &contradicted),
            credential("expired_as_valid", &expired, &playlist, &requests),
        ],
    });
    let report = run_script(&input);
    assert!(!report.success, "the script exits non-zero when a check fails");

    // Key order: the byte comparisons with botocore fail, though the signature is good.
    assert!(!report.ok("key_order.policy_matches_botocore"));
    assert!(!report.ok("key_order.signature_matches_botocore"));
    assert!(!report.ok("key_order.signed_url_matches_botocore"));
    assert!(!report.ok("key_order.cookies_match_botocore"));
    assert!(report.ok("key_order.signature_verifies"));
    assert!(report.ok("key_order.edge.segment.url"));
    // Alphabet: refused before anything is compared (the policy's encoding has a `+` `=` or
    // `/` depending on its bytes; the signature's always has).
    assert_eq!(
        report.ok("alphabet.policy_uses_cloudfront_alphabet"),
        alphabet.policy == good.policy
    );
    assert!(!report.ok("alphabet.signature_uses_cloudfront_alphabet"));
    assert!(!report.ok("alphabet.decodes"));
    // Another policy's signature: cryptography and the edge refuse it.
    assert!(report.ok("swapped.policy_matches_botocore"));
    assert!(!report.ok("swapped.signature_matches_botocore"));
    assert!(!report.ok("swapped.signature_verifies"));
    assert!(!report.ok("swapped.edge.segment.url"));
    assert!(!report.ok("swapped.edge.segment.cookies"));
    // Expectations against CloudFront's rules: a served segment, another channel's prefix,
    // an expired credential.
    assert!(!report.ok("contradicted.edge.segment.url"));
    assert!(!report.ok("contradicted.edge.other_channel.url"));
    assert!(!report.ok("contradicted.edge.other_channel.cookies"));
    assert!(report.ok("contradicted.signed_url_matches_botocore"));
    assert!(!report.ok("expired_as_valid.edge.segment.url"));
    assert!(report.ok("expired_as_valid.signature_verifies"));
}
