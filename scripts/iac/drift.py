#!/usr/bin/env python3
"""Drift between template.yaml (through SAM's transform) and the CDK synth output.

Compared: resource types with counts; the source template's logical ids (kept by the CDK app)
and their types; table key schemas, attributes, indexes, streams; per Lambda function (by
logical id) the IAM permissions of its role (action x resource x condition, and managed
policies), environment variable names, runtime settings, EventBridge rules, event source
mappings, S3 notifications and HttpApi routes targeting it, async invoke config; all
EventBridge rules; Parameters (type, default, allowed values and bounds); Conditions and
the template's Rules (rendered); Outputs (names, values, conditions). Code template.yaml carries inline whose source
is a file of the repository (the CloudFront functions, SOURCE_FILES) must equal that file.

Exit 1 on any difference not in allowlist.ALLOWED_DRIFT.

    python3 scripts/iac/drift.py [--sam template.yaml] [--cdk infra/cdk.out]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from typing import Any

import allowlist
from iam import perms_of, role_documents
from templates import canon, load_cdk, load_sam, load_sam_source, referenced_ids, render


def _res(t: dict[str, Any], typ: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in t.get("Resources", {}).items() if v.get("Type") == typ}


def _props(r: dict[str, Any]) -> dict[str, Any]:
    return r.get("Properties") or {}


def _targets_fn(value: Any, fn: str) -> bool:
    return fn in referenced_ids(value)


def _json_pattern(p: Any) -> str:
    """An event/filter pattern (dict or JSON string) in canonical form."""
    if isinstance(p, str):
        try:
            p = json.loads(p)
        except ValueError:
            return p
    return _sorted_json(_render_intrinsics(p))


def _render_intrinsics(v: Any) -> Any:
    """Intrinsics rendered, literal JSON kept as it is (in a pattern, false != "false")."""
    if isinstance(v, dict):
        if len(v) == 1 and next(iter(v)).startswith(("Ref", "Fn::")):
            return render(v)
        return {k: _render_intrinsics(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_render_intrinsics(x) for x in v]
    return v


def _sorted_json(v: Any) -> str:
    def norm(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: norm(y) for k, y in x.items()}
        if isinstance(x, list):
            return sorted((norm(y) for y in x), key=lambda y: json.dumps(y, sort_keys=True))
        return x

    return json.dumps(norm(v), sort_keys=True)


# ---- per-function model -----------------------------------------------------------------


def role_permissions(t: dict[str, Any], roles: set[str]) -> list[str]:
    """The roles' permissions as sorted lines, however they are attached (inline, separate
    AWS::IAM::Policy, customer managed) and grouped into statements; AWS managed policies
    by name."""
    lines: set[str] = set()
    for role in roles:
        docs, managed = role_documents(t, role)
        lines |= {"managed " + m for m in managed}
        lines |= {p.line() for _, doc in docs for p in perms_of(doc)}
    return sorted(lines)


def function_permissions(t: dict[str, Any], fn: str) -> list[str]:
    role_ref = _props(t["Resources"][fn]).get("Role")
    roles = referenced_ids(role_ref) & set(t["Resources"])
    if not roles:
        return ["role " + canon(role_ref)]
    return role_permissions(t, roles)


def function_rules(t: dict[str, Any], fn: str) -> list[str]:
    out = []
    for rid, r in _res(t, "AWS::Events::Rule").items():
        for tgt in _props(r).get("Targets") or []:
            if _targets_fn(tgt.get("Arn"), fn):
                out.append(_rule_desc(r, tgt))
    return sorted(out)


def _rule_desc(r: dict[str, Any], tgt: dict[str, Any] | None) -> str:
    p = _props(r)
    d: dict[str, Any] = {"state": canon(p.get("State", "ENABLED"))}
    if "EventPattern" in p:
        d["pattern"] = json.loads(_json_pattern(p["EventPattern"]))
    if "ScheduleExpression" in p:
        d["schedule"] = canon(p["ScheduleExpression"])
    if "EventBusName" in p:
        d["bus"] = canon(p["EventBusName"])
    if tgt is not None:
        if "RetryPolicy" in tgt:
            d["retry"] = render(tgt["RetryPolicy"])
        # The queue's logical id is generated differently by SAM and CDK: presence only.
        d["dead_letter_queue"] = "DeadLetterConfig" in tgt
        for k in ("Input", "InputPath", "InputTransformer"):
            if k in tgt:
                d[k] = render(tgt[k])
    return json.dumps(d, sort_keys=True)


def function_event_source_mappings(t: dict[str, Any], fn: str) -> list[str]:
    out = []
    for r in _res(t, "AWS::Lambda::EventSourceMapping").values():
        p = dict(_props(r))
        if not _targets_fn(p.pop("FunctionName", None), fn):
            continue
        d = {k: render(v) for k, v in p.items() if k != "FilterCriteria"}
        d.setdefault("Enabled", "true")
        if "FilterCriteria" in p:
            d["FilterCriteria"] = sorted(_json_pattern(f.get("Pattern")) for f in p["FilterCriteria"].get("Filters", []))
        out.append(json.dumps(d, sort_keys=True))
    return sorted(out)


def function_s3_notifications(t: dict[str, Any], fn: str) -> list[str]:
    out = []
    for bid, b in _res(t, "AWS::S3::Bucket").items():
        for c in (_props(b).get("NotificationConfiguration") or {}).get("LambdaConfigurations") or []:
            if _targets_fn(c.get("Function"), fn):
                rules = ((c.get("Filter") or {}).get("S3Key") or {}).get("Rules") or []
                out.append(_s3_desc(bid, [c.get("Event")], rules))
    # CDK's bucket.addEventNotification: a Custom::S3BucketNotifications resource.
    for r in t.get("Resources", {}).values():
        if r.get("Type") != "Custom::S3BucketNotifications":
            continue
        p = _props(r)
        bucket = sorted(referenced_ids(p.get("BucketName")))
        for c in (p.get("NotificationConfiguration") or {}).get("LambdaFunctionConfigurations") or []:
            if _targets_fn(c.get("LambdaFunctionArn"), fn):
                rules = ((c.get("Filter") or {}).get("Key") or {}).get("FilterRules") or []
                out.append(_s3_desc(",".join(bucket), c.get("Events") or [], rules))
    return sorted(out)


def _s3_desc(bucket: str, events: list[Any], rules: list[dict[str, Any]]) -> str:
    filt = sorted(f"{canon(r.get('Name')).lower()}={canon(r.get('Value'))}" for r in rules)
    return f"{bucket} {sorted(canon(e) for e in events)} {filt}"


def function_routes(t: dict[str, Any], fn: str) -> list[str]:
    out = []
    for aid, api in _res(t, "AWS::ApiGatewayV2::Api").items():
        body = _props(api).get("Body") or {}
        for path, methods in (body.get("paths") or {}).items():
            for m, op in methods.items():
                integ = (op or {}).get("x-amazon-apigateway-integration") if isinstance(op, dict) else None
                if not integ or not _targets_fn(integ.get("uri"), fn):
                    continue
                method = "ANY" if m == "x-amazon-apigateway-any-method" else m.upper()
                auth = "+".join(sorted(k for s in op.get("security") or [] for k in s)) or "NONE"
                out.append(f"{aid} {method} {path} auth={auth}")
    integrations = _res(t, "AWS::ApiGatewayV2::Integration")
    for r in _res(t, "AWS::ApiGatewayV2::Route").values():
        p = _props(r)
        for iid in referenced_ids(p.get("Target")) & set(integrations):
            if _targets_fn(_props(integrations[iid]).get("IntegrationUri"), fn):
                api = ",".join(sorted(referenced_ids(p.get("ApiId"))))
                out.append(f"{api} {canon(p.get('RouteKey'))} auth={canon(p.get('AuthorizationType', 'NONE'))}")
    return sorted(out)


def function_invoke_config(t: dict[str, Any], fn: str) -> str:
    for r in _res(t, "AWS::Lambda::EventInvokeConfig").values():
        p = dict(_props(r))
        if _targets_fn(p.pop("FunctionName", None), fn):
            p.pop("Qualifier", None)
            return canon({k: v for k, v in p.items() if v not in ({}, [], None)})
    return "none"


def function_model(t: dict[str, Any], fn: str) -> dict[str, Any]:
    p = _props(t["Resources"][fn])
    env = ((p.get("Environment") or {}).get("Variables")) or {}
    return {
        "timeout": canon(p.get("Timeout", 3)),
        "memory": canon(p.get("MemorySize", 128)),
        "runtime": canon(p.get("Runtime")),
        "handler": canon(p.get("Handler")),
        "architectures": canon(p.get("Architectures", ["x86_64"])),
        "tracing": canon((p.get("TracingConfig") or {}).get("Mode", "PassThrough")),
        "vpc": canon(p["VpcConfig"]) if "VpcConfig" in p else "none",
        "reserved concurrency": canon(p.get("ReservedConcurrentExecutions", "none")),
        "dead letter queue": canon((p.get("DeadLetterConfig") or {}).get("TargetArn", "none")),
        "env names": sorted(env) if isinstance(env, dict) else [canon(env)],
        "iam": function_permissions(t, fn),
        "rules": function_rules(t, fn),
        "event source mappings": function_event_source_mappings(t, fn),
        "s3 notifications": function_s3_notifications(t, fn),
        "routes": function_routes(t, fn),
        "invoke config": function_invoke_config(t, fn),
    }


def table_model(r: dict[str, Any]) -> dict[str, Any]:
    p = _props(r)

    def idx(lst: Any) -> list[str]:
        out = []
        for i in lst or []:
            out.append(json.dumps({"name": canon(i.get("IndexName")), "keys": render(i.get("KeySchema")),
                                   "projection": render(i.get("Projection"))}, sort_keys=True))
        return sorted(out)

    return {
        "key schema": canon(p.get("KeySchema")),
        "attributes": sorted(canon(a) for a in p.get("AttributeDefinitions") or []),
        "global indexes": idx(p.get("GlobalSecondaryIndexes")),
        "local indexes": idx(p.get("LocalSecondaryIndexes")),
        "billing": canon(p.get("BillingMode", "PROVISIONED")),
        "stream": canon((p.get("StreamSpecification") or {}).get("StreamViewType", "none")),
        "ttl": canon(p.get("TimeToLiveSpecification", "none")),
    }


def parameter_model(p: dict[str, Any]) -> dict[str, Any]:
    m = {"type": canon(p.get("Type"))}
    for k in ("Default", "MinValue", "MaxValue", "MinLength", "MaxLength", "AllowedPattern"):
        if k in p:
            m[k.lower()] = canon(p[k])
    if "AllowedValues" in p:
        m["allowedvalues"] = sorted(canon(v) for v in p["AllowedValues"])
    return m


# Tags SAM adds to what it generates ({"lambda:createdBy": "SAM"}, and the OpenAPI tag of an
# HttpApi): SAM's bookkeeping, no effect on the stack.
SAM_TAG_KEYS = {"lambda:createdBy", "httpapi:createdBy"}


def _strip_sam_tags(props: dict[str, Any]) -> None:
    tags = props.get("Tags")
    if isinstance(tags, list):
        tags = [x for x in tags if not (isinstance(x, dict) and x.get("Key") in SAM_TAG_KEYS)]
    elif isinstance(tags, dict):
        tags = {k: v for k, v in tags.items() if k not in SAM_TAG_KEYS}
    if tags:
        props["Tags"] = tags
    else:
        props.pop("Tags", None)
    body = props.get("Body")
    if isinstance(body, dict) and isinstance(body.get("tags"), list):
        body = dict(body)
        body["tags"] = [x for x in body["tags"] if not (isinstance(x, dict) and x.get("name") in SAM_TAG_KEYS)]
        if not body["tags"]:
            del body["tags"]
        props["Body"] = body


def resource_properties(t: dict[str, Any], rid: str) -> dict[str, Any]:
    """A resource's properties, rendered, in the form compared across the two templates:
    policy documents as their permission lines (statement grouping and order carry no
    meaning), a function's code left out (asset vs CodeUri), SAM's tags dropped."""
    r = t["Resources"][rid]
    p = dict(r.get("Properties") or {})
    typ = r.get("Type")
    _strip_sam_tags(p)
    if typ == "AWS::Lambda::Function":
        p.pop("Code", None)
    if typ == "AWS::IAM::Role":
        p.pop("Policies", None)
        p.pop("ManagedPolicyArns", None)
        p["permissions"] = role_permissions(t, {rid})
    if typ in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::S3::BucketPolicy",
               "AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy"):
        p.pop("PolicyName", None)
        p["PolicyDocument"] = sorted({x.line() for x in perms_of(p.get("PolicyDocument"))})
    return render(p)


def properties_model(t: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """Properties of every resource whose logical id both templates have, with the same type."""
    res, ores = t.get("Resources", {}), other.get("Resources", {})
    return {k: resource_properties(t, k) for k in res
            if k in ores and ores[k].get("Type") == res[k].get("Type")}


def model(t: dict[str, Any]) -> dict[str, dict[str, Any]]:
    res = t.get("Resources", {})
    return {
        "resource types": dict(Counter(r.get("Type") for r in res.values())),
        "tables": {k: table_model(v) for k, v in _res(t, "AWS::DynamoDB::Table").items()},
        "functions": {k: function_model(t, k) for k in _res(t, "AWS::Lambda::Function")},
        "rules": dict(Counter(_rule_desc(r, None) for r in _res(t, "AWS::Events::Rule").values())),
        "parameters": {k: parameter_model(v) for k, v in (t.get("Parameters") or {}).items()},
        "conditions": {k: _sorted_json(_render_intrinsics(v))
                       for k, v in (t.get("Conditions") or {}).items()},
        "template rules": {k: _sorted_json(_render_intrinsics(v))
                           for k, v in (t.get("Rules") or {}).items()},
        # Value, condition and export of each output (the description is prose).
        "outputs": {k: canon({f: x for f, x in v.items() if f != "Description"})
                    for k, v in (t.get("Outputs") or {}).items()},
    }


# ---- inline code kept in files -----------------------------------------------------------

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# (logical id, property) of template.yaml -> the repository file it must equal byte for byte.
# The CDK app reads the file, so the synth is compared with template.yaml by the properties
# check; this compares template.yaml with the file itself (a test runs the file).
SOURCE_FILES = {
    ("PlaybackCookieFunction", "FunctionCode"): "infra/functions/playback-cookies.js",
    ("PlaybackGuardFunction", "FunctionCode"): "infra/functions/playback-guard.js",
}


def source_file_diffs(source: dict[str, Any], root: str = ROOT) -> list[tuple[str, str, str]]:
    """(section, key, text) for each inline copy in template.yaml that differs from its file."""
    diffs = []
    for (lid, prop), rel in SOURCE_FILES.items():
        key = f"{lid}.{prop}"
        inline = ((source.get("Resources") or {}).get(lid, {}).get("Properties") or {}).get(prop)
        try:
            with open(os.path.join(root, rel), encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            diffs.append(("source files", key, f"{rel} unreadable: {e}"))
            continue
        if inline is None:
            diffs.append(("source files", key, f"missing in template.yaml (source {rel})"))
        elif inline != text:
            a, b = (inline or "").splitlines(), text.splitlines()
            line = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            diffs.append(("source files", key, f"template.yaml differs from {rel} from line {line + 1} on "
                                               f"(copy the file into the block scalar)"))
    return diffs


# ---- comparison -------------------------------------------------------------------------


def compare(sam: dict[str, Any], cdk: dict[str, Any], source: dict[str, Any] | None = None) -> list[tuple[str, str, str]]:
    """Differences as (section, key, text)."""
    a, b = model(sam), model(cdk)
    a["properties"], b["properties"] = properties_model(sam, cdk), properties_model(cdk, sam)
    diffs: list[tuple[str, str, str]] = []
    for section in a:
        sa, sb = a[section], b[section]
        for key in sorted(set(sa) | set(sb), key=str):
            if key not in sb:
                diffs.append((section, key, f"only in template.yaml: {_short(sa[key])}"))
            elif key not in sa:
                diffs.append((section, key, f"only in CDK: {_short(sb[key])}"))
            elif sa[key] != sb[key]:
                diffs.extend((section, key, d) for d in _value_diff(sa[key], sb[key]))
    # The CDK app keeps template.yaml's logical ids for its top-level resources.
    if source is not None:
        cres = cdk.get("Resources", {})
        for lid, r in (source.get("Resources") or {}).items():
            want = sam["Resources"].get(lid, {}).get("Type")
            got = cres.get(lid, {}).get("Type")
            if got is None:
                diffs.append(("logical ids", lid, f"missing in CDK (template.yaml: {want})"))
            elif want and got != want:
                diffs.append(("logical ids", lid, f"type {want} in template.yaml, {got} in CDK"))
        diffs.extend(source_file_diffs(source))
    return diffs


def _short(v: Any) -> str:
    s = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    return s if len(s) <= 300 else s[:300] + "..."


def _value_diff(x: Any, y: Any, path: str = "") -> list[str]:
    if isinstance(x, dict) and isinstance(y, dict):
        out = []
        for k in sorted(set(x) | set(y), key=str):
            if x.get(k) != y.get(k):
                out += _value_diff(x.get(k), y.get(k), f"{path}{k}: ")
        return out
    if isinstance(x, list) and isinstance(y, list):
        ca, cb = Counter(map(_hashable, x)), Counter(map(_hashable, y))
        out = [f"{path}only in template.yaml: {_short(i)}" for i in sorted((ca - cb).elements())]
        out += [f"{path}only in CDK: {_short(i)}" for i in sorted((cb - ca).elements())]
        return out or [f"{path}order differs"]
    return [f"{path}template.yaml={_short(x)} CDK={_short(y)}"]


def _hashable(v: Any) -> Any:
    return v if isinstance(v, str) else json.dumps(v, sort_keys=True)


def allowed(section: str, key: str, text: str = "") -> str | None:
    for s, k, detail, reason in allowlist.ALLOWED_DRIFT:
        if s == section and k == str(key) and text.startswith(detail):
            return reason
    return None


def report(diffs: list[tuple[str, str, str]], out: Any = sys.stdout) -> int:
    failing = 0
    for section, key, text in diffs:
        reason = allowed(section, key, text)
        if reason:
            print(f"  allowed  [{section}] {key}: {text}  ({reason})", file=out)
        else:
            failing += 1
            print(f"  DRIFT    [{section}] {key}: {text}", file=out)
    return failing


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sam", default="template.yaml")
    ap.add_argument("--cdk", default="infra/cdk.out")
    args = ap.parse_args(argv)
    source = load_sam_source(args.sam)
    sam = load_sam(args.sam)
    cdk = load_cdk(args.cdk)
    print(f"drift: {args.sam} (SAM transform, {len(sam['Resources'])} resources) vs "
          f"{', '.join(cdk['_sources'])} ({len(cdk['Resources'])} resources)")
    failing = report(compare(sam, cdk, source))
    if failing:
        print(f"drift: {failing} difference(s) between template.yaml and the CDK app")
        return 1
    print("drift: none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
