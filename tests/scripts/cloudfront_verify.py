#!/usr/bin/env python3
"""Checks CloudFront credentials signed in Rust (streamstack_core::cloudfront) against
botocore's CloudFrontSigner and the `cryptography` package (tests/tests/cloudfront_signing.rs).

Reads one JSON document on stdin:

    {"private_key": path, "public_key": path, "key_pair_id": str, "now": unix seconds,
     "credentials": [{"name", "resource", "expires", "url", "policy", "signature",
                      "key_pair_id", "signed_url", "cookies": {name: value},
                      "requests": [{"name", "url", "allowed": bool}]}],
     "other_prefix": str, "botocore": [{"name", "resource", "expires", "url"}]}

`policy`/`signature` are as the Rust signer encoded them; `requests` are URLs to evaluate as
CloudFront would with that credential, and whether CloudFront must serve them. `other_prefix`
replaces the resource's prefix in the tampered policy. `botocore` asks for URLs signed here
with botocore, for the Rust Verifier to check.

Prints {"checks": [{"name", "expected", "observed", "ok", "detail"}], "botocore": {name:
signed URL}} on stdout; exits 1 if any check is not ok.
"""

import base64
import binascii
import json
import re
import sys
from datetime import datetime, timezone

from botocore.signers import CloudFrontSigner
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

CLOUDFRONT_ALPHABET = re.compile(r"[A-Za-z0-9~_-]*\Z")


def cf_decode(text):
    """CloudFront's base64 (`-` `_` `~` for `+` `=` `/`), strictly: the standard characters
    are refused, so an encoder that left them in is caught."""
    if not CLOUDFRONT_ALPHABET.match(text):
        raise ValueError(f"not CloudFront base64 (characters outside A-Za-z0-9-_~): {text[:40]!r}")
    standard = text.replace("-", "+").replace("_", "=").replace("~", "/")
    try:
        return base64.b64decode(standard, validate=True)
    except binascii.Error as e:
        raise ValueError(f"not base64: {e}") from None


def cf_encode(data):
    return (
        base64.b64encode(data).replace(b"+", b"-").replace(b"=", b"_").replace(b"/", b"~").decode()
    )


def wildcard_regex(pattern):
    """CloudFront's resource pattern: `*` any run of characters (also none), `?` exactly one."""
    parts = []
    for c in pattern:
        parts.append(".*" if c == "*" else "." if c == "?" else re.escape(c))
    return re.compile("".join(parts), re.DOTALL)


def verifies(public_key, message, signature):
    try:
        public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA1())
        return True
    except InvalidSignature:
        return False


def query_param(signed_url, param):
    """One parameter of a signed URL's query ('' when absent)."""
    if "?" not in signed_url:
        return ""
    for part in signed_url.split("?", 1)[1].split("&"):
        key, _, value = part.partition("=")
        if key == param:
            return value
    return ""


def edge_allows(public_key, policy_b64, signature_b64, url, now):
    """What CloudFront decides for `url` with these credentials: (allowed, reason)."""
    try:
        policy = cf_decode(policy_b64)
        signature = cf_decode(signature_b64)
    except ValueError as e:
        return False, f"malformed: {e}"
    if not verifies(public_key, policy, signature):
        return False, "signature does not verify"
    statements = json.loads(policy)["Statement"]
    if len(statements) != 1:
        return False, "not exactly one statement"
    statement = statements[0]
    condition = statement["Condition"]
    unknown = set(condition) - {"DateLessThan", "DateGreaterThan"}
    if unknown:
        return False, f"unsupported conditions {sorted(unknown)}"
    less_than = condition["DateLessThan"]["AWS:EpochTime"]
    if not now < less_than:
        return False, f"expired: now {now} >= DateLessThan {less_than}"
    greater_than = condition.get("DateGreaterThan", {}).get("AWS:EpochTime")
    if greater_than is not None and not now > greater_than:
        return False, f"not yet valid: now {now} <= DateGreaterThan {greater_than}"
    if not wildcard_regex(statement["Resource"]).fullmatch(url):
        return False, f"resource {statement['Resource']!r} does not match"
    return True, "served"


def main():
    doc = json.load(sys.stdin)
    with open(doc["private_key"], "rb") as f:
        private_key = serialization.load_pem_private_key(f.read(), password=None)
    with open(doc["public_key"], "rb") as f:
        public_key = serialization.load_pem_public_key(f.read())

    def rsa_signer(message):
        return private_key.sign(message, padding.PKCS1v15(), hashes.SHA1())

    signer = CloudFrontSigner(doc["key_pair_id"], rsa_signer)
    now = doc["now"]
    checks = []

    def check(name, expected, observed, detail=""):
        checks.append(
            {
                "name": name,
                "expected": expected,
                "observed": observed,
                "ok": expected == observed,
                "detail": detail,
            }
        )

    for cred in doc["credentials"]:
        n = cred["name"]
        expiry = datetime.fromtimestamp(cred["expires"], tz=timezone.utc)
        boto_policy = signer.build_policy(cred["resource"], expiry)
        boto_url = signer.generate_presigned_url(cred["url"], policy=boto_policy)
        boto_query = dict(p.split("=", 1) for p in boto_url.split("?", 1)[1].split("&"))

        for field in ("policy", "signature"):
            ok = bool(CLOUDFRONT_ALPHABET.match(cred[field]))
            check(f"{n}.{field}_uses_cloudfront_alphabet", True, ok, cred[field][:60])
        try:
            policy = cf_decode(cred["policy"])
            signature = cf_decode(cred["signature"])
        except ValueError as e:
            check(f"{n}.decodes", True, False, str(e))
            continue
        check(f"{n}.decodes", True, True)

        check(
            f"{n}.policy_matches_botocore",
            boto_policy,
            policy.decode("utf-8", "replace"),
            "botocore build_policy vs the Rust policy, decoded",
        )
        check(
            f"{n}.signature_matches_botocore",
            boto_query["Signature"],
            cred["signature"],
            "PKCS#1 v1.5 is deterministic: same key and policy, same signature",
        )
        check(f"{n}.signed_url_matches_botocore", boto_url, cred["signed_url"])
        check(f"{n}.key_pair_id", doc["key_pair_id"], cred["key_pair_id"])
        check(
            f"{n}.cookies_match_botocore",
            {
                "CloudFront-Policy": boto_query["Policy"],
                "CloudFront-Signature": boto_query["Signature"],
                "CloudFront-Key-Pair-Id": boto_query["Key-Pair-Id"],
            },
            cred["cookies"],
        )

        check(
            f"{n}.signature_verifies",
            True,
            verifies(public_key, policy, signature),
            "cryptography: PKCS1v15 + SHA1 against the public key",
        )
        prefix = cred["resource"].rstrip("*")
        tampered = policy.replace(prefix.encode(), doc["other_prefix"].encode())
        check(f"{n}.tamper_changes_policy", True, tampered != policy)
        check(
            f"{n}.tampered_policy_refused",
            False,
            verifies(public_key, tampered, signature),
            "resource moved to another prefix, same signature",
        )
        flipped = bytearray(signature)
        flipped[len(flipped) // 2] ^= 0x01
        check(
            f"{n}.tampered_signature_refused",
            False,
            verifies(public_key, policy, bytes(flipped)),
            "one bit of the signature flipped",
        )
        tampered_allowed, why = edge_allows(
            public_key, cf_encode(tampered), cred["signature"], cred["requests"][0]["url"], now
        )
        check(f"{n}.edge_refuses_tampered_policy", False, tampered_allowed, why)

        for req in cred["requests"]:
            for via, (p, s) in (
                (
                    "url",
                    (
                        query_param(cred["signed_url"], "Policy"),
                        query_param(cred["signed_url"], "Signature"),
                    ),
                ),
                (
                    "cookies",
                    (
                        cred["cookies"].get("CloudFront-Policy", ""),
                        cred["cookies"].get("CloudFront-Signature", ""),
                    ),
                ),
            ):
                allowed, why = edge_allows(public_key, p, s, req["url"], now)
                check(f"{n}.edge.{req['name']}.{via}", req["allowed"], allowed, why)

    signed = {}
    for b in doc.get("botocore", []):
        expiry = datetime.fromtimestamp(b["expires"], tz=timezone.utc)
        policy = signer.build_policy(b["resource"], expiry)
        signed[b["name"]] = signer.generate_presigned_url(b["url"], policy=policy)

    json.dump({"checks": checks, "botocore": signed}, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0 if checks and all(c["ok"] for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
