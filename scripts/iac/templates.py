"""Offline loaders for the two definitions of the stack, and intrinsic rendering.

- `load_sam(path)`: template.yaml through SAM's own transform (samtranslator, the library
  `sam deploy` and CloudFormation's AWS::Serverless transform use), into plain CloudFormation.
  No AWS call: local CodeUri values get a placeholder S3 URI (as `sam validate` does) and
  managed-policy names resolve from the static map below instead of iam:ListPolicies.
- `load_cdk(dir)`: the CDK synth output, infra/cdk.out/*.template.json (all stacks merged).
- `render(value)`: an intrinsic-function tree as one canonical string, so that
  `!Sub "${B.Arn}/x/*"` (SAM) and `{"Fn::Join": ["", [{"Fn::GetAtt": ["B", "Arn"]}, "/x/*"]]}`
  (CDK) compare equal.
"""

from __future__ import annotations

import copy
import glob
import json
import logging
import os
import re
from typing import Any

# The transform reads a region for ARNs of managed policies; never a credential.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_REGION", "us-east-1")

# Managed policies template.yaml names by bare name (SAM resolves names through
# iam:ListPolicies; offline they resolve here). Policies SAM adds itself (basic execution,
# X-Ray, DynamoDB/SQS event sources) carry full ARNs already and need no entry.
MANAGED_POLICY_ARNS = {
    "AWSLambdaVPCAccessExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole",
    "AWSLambdaBasicExecutionRole": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    "AmazonECSTaskExecutionRolePolicy": "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy",
}

# The translator's metrics object warns on exit about metrics nobody publishes offline.
logging.getLogger("samtranslator.metrics.metrics").setLevel(logging.ERROR)

PLACEHOLDER_CODE_URI = "s3://streamstack-offline-check/code.zip"


class _StaticPolicyLoader:
    def load(self) -> dict[str, str]:
        return dict(MANAGED_POLICY_ARNS)


def sam_to_cfn(sam: dict[str, Any]) -> dict[str, Any]:
    """SAM template (parsed) -> CloudFormation, offline."""
    from samtranslator.translator.transform import transform

    sam = copy.deepcopy(sam)
    glob_fn = sam.get("Globals", {}).get("Function", {})
    if isinstance(glob_fn.get("CodeUri"), str) and not glob_fn["CodeUri"].startswith("s3://"):
        glob_fn["CodeUri"] = PLACEHOLDER_CODE_URI
    for res in sam.get("Resources", {}).values():
        props = res.get("Properties") or {}
        if res.get("Type") == "AWS::Serverless::Function":
            uri = props.get("CodeUri")
            if uri is None or (isinstance(uri, str) and not uri.startswith("s3://")):
                props["CodeUri"] = PLACEHOLDER_CODE_URI
            res["Properties"] = props
        elif res.get("Type") == "AWS::Serverless::LayerVersion":
            if isinstance(props.get("ContentUri"), str) and not props["ContentUri"].startswith("s3://"):
                props["ContentUri"] = PLACEHOLDER_CODE_URI
    return transform(sam, {}, _StaticPolicyLoader())


def parse_yaml(text: str) -> dict[str, Any]:
    # samtranslator's parser understands the short intrinsic forms (!Ref, !Sub, ...).
    from samtranslator.yaml_helper import yaml_parse

    return yaml_parse(text)


def load_sam_source(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return parse_yaml(f.read())


def load_sam(path: str) -> dict[str, Any]:
    return sam_to_cfn(load_sam_source(path))


def load_cdk(out_dir: str) -> dict[str, Any]:
    """Every stack template of a synth output, merged (logical ids must not collide)."""
    paths = sorted(glob.glob(os.path.join(out_dir, "*.template.json")))
    if not paths:
        raise FileNotFoundError(f"no *.template.json in {out_dir} (run `make cdk-synth`)")
    merged: dict[str, Any] = {"Parameters": {}, "Resources": {}, "Outputs": {}, "Conditions": {}, "Rules": {}}
    for p in paths:
        with open(p, encoding="utf-8") as f:
            t = json.load(f)
        for section in merged:
            for k, v in (t.get(section) or {}).items():
                if k in merged[section] and section != "Parameters":
                    raise ValueError(f"{p}: {section} {k} appears in two stacks")
                merged[section][k] = v
    merged["_sources"] = paths
    return merged


# ---- rendering ------------------------------------------------------------------------

NOVALUE = "__AWS::NoValue__"

_PSEUDO = {"${AWS::Partition}": "aws", "${AWS::URLSuffix}": "amazonaws.com"}


def _finish(s: str) -> str:
    for k, v in _PSEUDO.items():
        s = s.replace(k, v)
    return s


def render(v: Any) -> Any:
    """Canonical form: strings for scalars and intrinsics, lists stay lists (NoValue dropped),
    plain dicts stay dicts with rendered values."""
    if isinstance(v, list):
        return [r for r in (render(x) for x in v) if r != NOVALUE]
    if isinstance(v, dict):
        if len(v) == 1:
            (k, a), = v.items()
            if k == "Ref" or k.startswith("Fn::") or k == "Condition":
                return _intrinsic(k, a)
        return {k: r for k, r in ((k, render(x)) for k, x in v.items()) if r != NOVALUE}
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return _finish(str(v))


def _str(v: Any) -> str:
    r = render(v)
    return r if isinstance(r, str) else json.dumps(r, sort_keys=True)


_SUB_VAR = re.compile(r"\$\{([^}!][^}]*)\}")


def _intrinsic(k: str, a: Any) -> Any:
    if k == "Ref":
        return NOVALUE if a == "AWS::NoValue" else _finish("${%s}" % a)
    if k == "Fn::GetAtt":
        parts = a.split(".", 1) if isinstance(a, str) else [str(x) for x in a]
        return "${%s}" % ".".join(parts)
    if k == "Fn::Sub":
        if isinstance(a, list):
            s, env = a[0], a[1]
        else:
            s, env = a, {}

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name in env:
                return _str(env[name])
            return "${%s}" % name

        return _finish(_SUB_VAR.sub(sub, s).replace("${!", "${"))
    if k == "Fn::Join":
        sep, items = a
        if isinstance(items, list):
            rendered = render(items)
            return _finish(sep.join(x if isinstance(x, str) else json.dumps(x) for x in rendered))
        return "${Join(%s,%s)}" % (sep, _str(items))
    if k == "Fn::Select":
        idx, items = a
        if isinstance(items, list):
            return render(items[int(idx)])
        return "${Select(%s,%s)}" % (render(idx), _str(items))
    if k == "Fn::Split":
        return "Split(%s,%s)" % (a[0], _str(a[1]))
    if k == "Fn::If":
        cond, yes, no = a
        return "${If(%s,%s,%s)}" % (cond, _str(yes), _str(no))
    return "${%s(%s)}" % (k, json.dumps(render(a), sort_keys=True))


def canon(v: Any) -> str:
    """A rendered value as a stable string (dict keys sorted, lists of strings sorted when
    order carries no meaning is the caller's decision: this keeps order)."""
    r = render(v)
    return r if isinstance(r, str) else json.dumps(r, sort_keys=True)


def referenced_ids(v: Any) -> set[str]:
    """Logical ids a value references (Ref, GetAtt, ${X} / ${X.Attr} in Sub)."""
    out: set[str] = set()
    if isinstance(v, list):
        for x in v:
            out |= referenced_ids(x)
    elif isinstance(v, dict):
        for k, a in v.items():
            if k == "Ref" and isinstance(a, str):
                out.add(a)
            elif k == "Fn::GetAtt":
                out.add(a.split(".", 1)[0] if isinstance(a, str) else a[0])
            elif k == "Fn::Sub":
                s = a[0] if isinstance(a, list) else a
                out |= {m.group(1).split(".", 1)[0] for m in _SUB_VAR.finditer(s)}
                if isinstance(a, list):
                    out |= referenced_ids(a[1])
            else:
                out |= referenced_ids(a)
    return out
