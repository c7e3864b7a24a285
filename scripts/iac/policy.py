#!/usr/bin/env python3
"""Least-privilege and data-protection rules on a CloudFormation template.

- IAM (identity policies of roles, AWS::IAM::Policy/ManagedPolicy, and resource policies of
  buckets, queues, topics, secrets, repositories): no Allow statement with Action `*`,
  `service:*` or any other wildcard action, nor NotAction/NotResource; no Allow identity
  statement with Resource `*` unless every action in it is in
  allowlist.WILDCARD_RESOURCE_ACTIONS (with the condition key that entry requires); every AWS
  managed policy a role attaches is in allowlist.ACCEPTED_MANAGED_POLICIES.
- execute-api:Invoke (identity Allow): every resource names an API of this template (Ref), one
  HTTP method and a path with a literal first segment (routes, never a whole API).
- S3 buckets: all four PublicAccessBlockConfiguration flags true, default encryption, and a
  bucket policy denying s3:* to everyone when aws:SecureTransport is false, on the bucket
  and its objects.
- DynamoDB tables: SSE enabled and point-in-time recovery enabled.
- SQS queues and SNS topics: encrypted (SSE-SQS or KMS; KMS for SNS), set explicitly.
- CloudFront: every cache behaviour whose PathPattern starts with `signed/` requires
  signatures (TrustedKeyGroups, non-empty, in every branch of any Fn::If). And when a bucket
  policy lets CloudFront read objects under signed/ (in any branch), every other behaviour
  (the default one included) of a distribution reading that bucket runs the guard function
  on viewer request (an unconditional AWS::CloudFront::Function whose code is
  infra/functions/playback-guard.js, in every branch): CloudFront matches behaviours on the
  undecoded URI and S3 decodes %2F, so /signed%2F... would otherwise read signed/ unsigned.

    python3 scripts/iac/policy.py [--sam template.yaml] [--cdk infra/cdk.out]
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import sys
from typing import Any

import allowlist
from iam import _as_list, all_identity_documents, all_resource_documents, iter_statements, managed_policy_name
from templates import canon, load_cdk, load_sam, referenced_ids, render

_WILDCARD_OK = {a: (cond, reason) for a, cond, reason in allowlist.WILDCARD_RESOURCE_ACTIONS}


def _actions(st: dict[str, Any]) -> list[str]:
    if "Action" not in st:
        return []
    return [a.lower() if isinstance(a, str) else canon(a) for a in _as_list(render(st["Action"]))]


def check_statements(doc_id: str, doc: Any, identity: bool) -> list[str]:
    out = []
    for when, st in iter_statements(doc):
        if st.get("Effect", "Allow") != "Allow":
            continue
        where = f"{doc_id}{' [when ' + when + ']' if when else ''}"
        if "NotAction" in st:
            out.append(f"{where}: Allow with NotAction")
        if "NotResource" in st:
            out.append(f"{where}: Allow with NotResource")
        actions = _actions(st)
        for a in actions:
            if a == "*" or a.endswith(":*"):
                out.append(f"{where}: wildcard action {a}")
            elif "*" in a or "?" in a:
                out.append(f"{where}: wildcard action {a} (name the actions)")
        if not identity:
            continue
        resources = _as_list(render(st.get("Resource")))
        if "*" not in resources:
            continue
        cond_keys = {k.lower() for kv in (st.get("Condition") or {}).values() if isinstance(kv, dict) for k in kv}
        for a in actions:
            if a not in _WILDCARD_OK:
                out.append(f"{where}: {a} on Resource * (not in allowlist.WILDCARD_RESOURCE_ACTIONS)")
            else:
                need = _WILDCARD_OK[a][0]
                if need and need.lower() not in cond_keys:
                    out.append(f"{where}: {a} on Resource * without the {need} condition the allow-list requires")
    return out


# execute-api:Invoke resources: arn:...:execute-api:<region>:<account>:<api>/<stage>/<METHOD>/<path>.
_EXECUTE_API_ARN = re.compile(r":execute-api:[^/]*:(?P<api>\$\{[A-Za-z0-9]+\})/(?P<stage>[^/]+)/(?P<method>[^/]+)"
                              r"/(?P<path>.*)$")
_HTTP_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
_API_TYPES = {"AWS::ApiGatewayV2::Api", "AWS::ApiGateway::RestApi"}


def check_execute_api(t: dict[str, Any]) -> list[str]:
    """An identity Allow of execute-api:Invoke names, per resource, an API of this template
    (by Ref), one HTTP method (not `*`) and a path whose first segment is literal: callers get
    routes, never a whole API."""
    out = []
    apis = {rid for rid, r in t.get("Resources", {}).items() if r.get("Type") in _API_TYPES}
    for doc_id, doc in all_identity_documents(t):
        for when, st in iter_statements(doc):
            if st.get("Effect", "Allow") != "Allow" or "execute-api:invoke" not in _actions(st):
                continue
            where = f"{doc_id}{' [when ' + when + ']' if when else ''}"
            for r in _as_list(render(st.get("Resource"))):
                arn = canon(r)
                m = _EXECUTE_API_ARN.search(arn)
                if not m or m["api"][2:-1] not in apis:
                    out.append(f"{where}: execute-api:Invoke on {arn} (not a route of an API of this template)")
                elif m["method"] not in _HTTP_METHODS:
                    out.append(f"{where}: execute-api:Invoke on {arn} (method {m['method']}: name one)")
                elif not m["path"] or m["path"].split("/")[0] in ("", "*") or "*" in m["path"].split("/")[0]:
                    out.append(f"{where}: execute-api:Invoke on {arn} (path {m['path'] or '(none)'}: name the route)")
    return out


def check_managed_policies(t: dict[str, Any]) -> list[str]:
    out = []
    res = t.get("Resources", {})
    for rid, r in res.items():
        if r.get("Type") not in ("AWS::IAM::Role", "AWS::IAM::User", "AWS::IAM::Group"):
            continue
        for arn in _as_list((r.get("Properties") or {}).get("ManagedPolicyArns")):
            if referenced_ids(arn) & set(res):
                continue  # a customer managed policy of this template: its document is checked
            name = managed_policy_name(arn)
            if name not in allowlist.ACCEPTED_MANAGED_POLICIES:
                out.append(f"{rid}: managed policy {name} not in allowlist.ACCEPTED_MANAGED_POLICIES")
    return out


def managed_policies_in_use(t: dict[str, Any]) -> dict[str, list[str]]:
    used: dict[str, list[str]] = {}
    for rid, r in t.get("Resources", {}).items():
        for arn in _as_list((r.get("Properties") or {}).get("ManagedPolicyArns")):
            if not (referenced_ids(arn) & set(t["Resources"])):
                used.setdefault(managed_policy_name(arn), []).append(rid)
    return used


def _true(v: Any) -> bool:
    return canon(v) == "true"


def check_buckets(t: dict[str, Any]) -> list[str]:
    out = []
    res = t.get("Resources", {})
    policies = [(r.get("Properties") or {}) for r in res.values() if r.get("Type") == "AWS::S3::BucketPolicy"]
    for bid, b in res.items():
        if b.get("Type") != "AWS::S3::Bucket":
            continue
        p = b.get("Properties") or {}
        pab = p.get("PublicAccessBlockConfiguration") or {}
        for flag in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"):
            if not _true(pab.get(flag)):
                out.append(f"{bid}: PublicAccessBlockConfiguration.{flag} is not true")
        rules = ((p.get("BucketEncryption") or {}).get("ServerSideEncryptionConfiguration")) or []
        if not any((r.get("ServerSideEncryptionByDefault") or {}).get("SSEAlgorithm") for r in rules):
            out.append(f"{bid}: no default encryption (BucketEncryption)")
        if not any(bid in referenced_ids(pp.get("Bucket")) and _denies_insecure(bid, pp.get("PolicyDocument"))
                   for pp in policies):
            out.append(f"{bid}: no bucket policy denying s3:* on the bucket and its objects when aws:SecureTransport is false")
    return out


def _denies_insecure(bid: str, doc: Any) -> bool:
    for _, st in iter_statements(doc):
        if st.get("Effect") != "Deny" or st.get("Condition") is None:
            continue
        principal = render(st.get("Principal"))
        if principal not in ("*", {"AWS": "*"}, {"AWS": ["*"]}):
            continue
        if not {"s3:*", "*"} & {a.lower() for a in _actions(st)}:
            continue
        cond = st["Condition"].get("Bool") or {}
        if canon(cond.get("aws:SecureTransport")) not in ("false", '["false"]'):
            continue
        rs = [(r, referenced_ids(r)) for r in _as_list(st.get("Resource"))]
        objects = any(bid in ids and canon(r).endswith("/*") for r, ids in rs)
        bucket = any(bid in ids and not canon(r).endswith("/*") for r, ids in rs)
        if objects and bucket:
            return True
    return False


def check_tables(t: dict[str, Any]) -> list[str]:
    out = []
    for tid, r in t.get("Resources", {}).items():
        p = r.get("Properties") or {}
        if r.get("Type") == "AWS::DynamoDB::Table":
            if not _true((p.get("SSESpecification") or {}).get("SSEEnabled")):
                out.append(f"{tid}: SSESpecification.SSEEnabled is not true")
            if not _true((p.get("PointInTimeRecoverySpecification") or {}).get("PointInTimeRecoveryEnabled")):
                out.append(f"{tid}: point-in-time recovery is not enabled")
        elif r.get("Type") == "AWS::DynamoDB::GlobalTable":
            if not _true((p.get("SSESpecification") or {}).get("SSEEnabled")):
                out.append(f"{tid}: SSESpecification.SSEEnabled is not true")
            for rep in p.get("Replicas") or []:
                if not _true((rep.get("PointInTimeRecoverySpecification") or {}).get("PointInTimeRecoveryEnabled")):
                    out.append(f"{tid}: replica {canon(rep.get('Region'))} without point-in-time recovery")
    return out


def check_queues_topics(t: dict[str, Any]) -> list[str]:
    out = []
    for rid, r in t.get("Resources", {}).items():
        p = r.get("Properties") or {}
        if r.get("Type") == "AWS::SQS::Queue":
            if not (p.get("KmsMasterKeyId") or _true(p.get("SqsManagedSseEnabled"))):
                out.append(f"{rid}: queue without explicit encryption (SqsManagedSseEnabled: true or KmsMasterKeyId)")
        elif r.get("Type") == "AWS::SNS::Topic":
            if not p.get("KmsMasterKeyId"):
                out.append(f"{rid}: topic without KmsMasterKeyId")
    return out


def _alternatives(v: Any) -> list[Any]:
    """The values `v` may take: Fn::If expanded into both branches, AWS::NoValue as None."""
    if isinstance(v, dict) and len(v) == 1:
        if "Fn::If" in v and isinstance(v["Fn::If"], list) and len(v["Fn::If"]) == 3:
            return _alternatives(v["Fn::If"][1]) + _alternatives(v["Fn::If"][2])
        if v.get("Ref") == "AWS::NoValue":
            return [None]
    return [v]


# Cache behaviours under this prefix serve content that must not be public.
SIGNED_PATH_PREFIX = "signed/"


def check_distributions(t: dict[str, Any]) -> list[str]:
    out = []
    for rid, r in t.get("Resources", {}).items():
        if r.get("Type") != "AWS::CloudFront::Distribution":
            continue
        config = (r.get("Properties") or {}).get("DistributionConfig") or {}
        for behaviours in _alternatives(config.get("CacheBehaviors")):
            for item in _as_list(behaviours):
                for b in _alternatives(item):
                    if not isinstance(b, dict):
                        continue
                    pattern = canon(b.get("PathPattern", ""))
                    if not pattern.lstrip("/").startswith(SIGNED_PATH_PREFIX):
                        continue
                    groups = _alternatives(b.get("TrustedKeyGroups"))
                    if any(g is None or g == [] or g == "" for g in groups):
                        out.append(f"{rid}: cache behaviour {pattern} without TrustedKeyGroups "
                                   "(signed/ content must require signed URLs or cookies)")
    return out


# The viewer-request function that keeps signed/ out of every behaviour but signed/*.
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GUARD_FUNCTION_FILE = "infra/functions/playback-guard.js"


def _guard_code() -> str:
    with open(os.path.join(ROOT, GUARD_FUNCTION_FILE), encoding="utf-8") as f:
        return f.read()


def _object_key_pattern(resource: str) -> str | None:
    """The object-key part of a rendered S3 ARN (what follows the first `/` outside `${...}`):
    `${MediaBucket.Arn}/signed/live/*` -> `signed/live/*`; None for the bucket itself."""
    depth = 0
    for i, c in enumerate(resource):
        if c == "{":
            depth += 1
        elif c == "}":
            depth = max(0, depth - 1)
        elif c == "/" and depth == 0:
            return resource[i + 1:]
    return None


def _may_match_under(pattern: str, prefix: str) -> bool:
    """Whether the IAM glob `pattern` (`*`, `?`) matches some key starting with `prefix`."""
    for i, c in enumerate(prefix):
        if i >= len(pattern):
            return False
        if pattern[i] == "*":
            return True
        if pattern[i] not in ("?", c):
            return False
    return True


def _grants_cloudfront_signed(st: dict[str, Any]) -> bool:
    """An Allow of s3:GetObject to CloudFront (or anyone) on some object under signed/."""
    if st.get("Effect", "Allow") != "Allow":
        return False
    principal = canon(st.get("Principal"))
    if "cloudfront.amazonaws.com" not in principal and render(st.get("Principal")) not in (
            "*", {"AWS": "*"}, {"AWS": ["*"]}):
        return False
    if not any(fnmatch.fnmatchcase("s3:getobject", a) for a in _actions(st)):
        return False
    for item in _as_list(st.get("Resource")):
        for alt in _alternatives(item):
            if alt is None:
                continue
            key = _object_key_pattern(canon(alt))
            if key is not None and _may_match_under(key, SIGNED_PATH_PREFIX):
                return True
    return False


def _is_guard_association(a: Any, guards: set[str]) -> bool:
    return (isinstance(a, dict) and canon(a.get("EventType")) == "viewer-request"
            and bool(referenced_ids(a.get("FunctionARN")) & guards))


def _has_guard(behaviour: dict[str, Any], guards: set[str]) -> bool:
    """The behaviour runs a guard on viewer request in every branch of any Fn::If."""
    for assocs in _alternatives(behaviour.get("FunctionAssociations")):
        if not any(all(_is_guard_association(alt, guards) for alt in _alternatives(item))
                   for item in _as_list(assocs)):
            return False
    return True


def check_signed_guard(t: dict[str, Any], guard_code: str | None = None) -> list[str]:
    """Every behaviour but signed/* of a distribution reading a bucket whose policy lets
    CloudFront read signed/ runs the guard function (GUARD_FUNCTION_FILE) on viewer request."""
    res = t.get("Resources", {})
    granting: dict[str, str] = {}  # bucket id -> bucket policy id
    for pid, r in res.items():
        if r.get("Type") != "AWS::S3::BucketPolicy":
            continue
        p = r.get("Properties") or {}
        if any(_grants_cloudfront_signed(st) for _, st in iter_statements(p.get("PolicyDocument"))):
            for bid in referenced_ids(p.get("Bucket")):
                granting[bid] = pid
    if not granting:
        return []
    code = _guard_code() if guard_code is None else guard_code
    out = []
    guards = set()
    for fid, r in res.items():
        if r.get("Type") != "AWS::CloudFront::Function":
            continue
        p = r.get("Properties") or {}
        if p.get("FunctionCode") != code:
            continue
        if "Condition" in r:
            out.append(f"{fid}: the guard function ({GUARD_FUNCTION_FILE}) has a Condition (it must always exist)")
        elif canon((p.get("FunctionConfig") or {}).get("Runtime")) != "cloudfront-js-2.0":
            out.append(f"{fid}: the guard function ({GUARD_FUNCTION_FILE}) is not cloudfront-js-2.0")
        else:
            guards.add(fid)
    for rid, r in res.items():
        if r.get("Type") != "AWS::CloudFront::Distribution":
            continue
        config = (r.get("Properties") or {}).get("DistributionConfig") or {}
        buckets = {b for o in _as_list(config.get("Origins")) for b in referenced_ids(o) if b in granting}
        if not buckets:
            continue
        why = (f"without the viewer-request guard function ({GUARD_FUNCTION_FILE}) while "
               f"{', '.join(sorted(granting[b] for b in buckets))} lets CloudFront read signed/ "
               "(an encoded path such as /signed%2F... would reach signed/ unsigned)")
        behaviours = [("default cache behaviour", b) for b in _alternatives(config.get("DefaultCacheBehavior"))]
        for items in _alternatives(config.get("CacheBehaviors")):
            for item in _as_list(items):
                for b in _alternatives(item):
                    if isinstance(b, dict):
                        behaviours.append((f"cache behaviour {canon(b.get('PathPattern', ''))}", b))
        seen = set()
        for name, b in behaviours:
            if not isinstance(b, dict):
                out.append(f"{rid}: {name} missing")
                continue
            pattern = canon(b.get("PathPattern", ""))
            if pattern and pattern.lstrip("/").startswith(SIGNED_PATH_PREFIX):
                continue  # requires signatures (check_distributions)
            if not _has_guard(b, guards) and name not in seen:
                seen.add(name)
                out.append(f"{rid}: {name} {why}")
    return out


def check(t: dict[str, Any]) -> list[str]:
    out = []
    for doc_id, doc in all_identity_documents(t):
        out += check_statements(doc_id, doc, identity=True)
    for doc_id, doc in all_resource_documents(t):
        out += check_statements(doc_id, doc, identity=False)
    out += check_execute_api(t)
    out += check_managed_policies(t)
    out += check_buckets(t)
    out += check_tables(t)
    out += check_queues_topics(t)
    out += check_distributions(t)
    out += check_signed_guard(t)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sam", default="template.yaml", help="SAM template ('' to skip)")
    ap.add_argument("--cdk", default="infra/cdk.out", help="CDK synth output directory ('' to skip)")
    args = ap.parse_args(argv)
    templates = []
    if args.sam:
        templates.append((args.sam, load_sam(args.sam)))
    if args.cdk:
        templates.append((args.cdk, load_cdk(args.cdk)))
    failing = 0
    for label, t in templates:
        findings = check(t)
        used = managed_policies_in_use(t)
        print(f"policy: {label}: {len(t['Resources'])} resources, managed policies "
              + (", ".join(f"{k} ({len(v)})" for k, v in sorted(used.items())) or "none"))
        for f in findings:
            print(f"  POLICY   {label}: {f}")
        failing += len(findings)
    if failing:
        print(f"policy: {failing} finding(s)")
        return 1
    print("policy: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
