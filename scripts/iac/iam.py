"""IAM policy documents of a CloudFormation template, flattened for comparison and checks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterator

from templates import canon, referenced_ids, render

# Resource policies: (type, property holding the document).
RESOURCE_POLICY_TYPES = {
    "AWS::S3::BucketPolicy": "PolicyDocument",
    "AWS::SQS::QueuePolicy": "PolicyDocument",
    "AWS::SNS::TopicPolicy": "PolicyDocument",
    "AWS::SecretsManager::ResourcePolicy": "ResourcePolicy",
    "AWS::ECR::Repository": "RepositoryPolicyText",
}


@dataclass(frozen=True)
class Perm:
    """One (action, resource) pair of one statement; `when` names the template condition a
    statement wrapped in Fn::If depends on ('' = unconditional)."""

    when: str
    effect: str
    action: str
    resource: str
    condition: str
    principal: str = ""

    def line(self) -> str:
        s = f"{self.effect} {self.action} on {self.resource}"
        if self.principal:
            s += f" to {self.principal}"
        if self.condition:
            s += f" if {self.condition}"
        if self.when:
            s += f" [when {self.when}]"
        return s


def _as_list(v: Any) -> list[Any]:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def iter_statements(doc: Any, when: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(when, statement) of a policy document, Fn::If branches expanded with their condition."""
    if not isinstance(doc, dict):
        return
    stmts = doc.get("Statement")
    if isinstance(stmts, dict) and "Fn::If" in stmts:
        yield from _branches(stmts, when, lambda b, w: iter_statements({"Statement": b}, w))
        return
    for st in _as_list(stmts):
        if isinstance(st, dict) and len(st) == 1 and "Fn::If" in st:
            yield from _branches(st, when, lambda b, w: iter_statements({"Statement": b}, w))
        elif isinstance(st, dict) and st.get("Ref") == "AWS::NoValue":
            continue
        elif isinstance(st, dict):
            yield when, st


def _branches(node: dict[str, Any], when: str, f: Any) -> Iterator[Any]:
    cond, yes, no = node["Fn::If"]
    for branch, w in ((yes, cond), (no, "!" + cond)):
        if isinstance(branch, dict) and branch.get("Ref") == "AWS::NoValue":
            continue
        yield from f(branch, (when + "&" if when else "") + w)


def condition_canon(cond: Any) -> str:
    if not cond:
        return ""
    r = render(cond)
    # {"StringEquals": {"k": "v"}} and {"StringEquals": {"k": ["v"]}} mean the same.
    if isinstance(r, dict):
        for op, kv in r.items():
            if isinstance(kv, dict):
                r[op] = {k: sorted(_as_list(v)) for k, v in kv.items()}
    return json.dumps(r, sort_keys=True)


def principal_canon(st: dict[str, Any]) -> str:
    """A resource-policy statement's Principal (or NotPrincipal); {"Service": "x"} and
    {"Service": ["x"]} alike."""
    key = "Principal" if "Principal" in st else "NotPrincipal" if "NotPrincipal" in st else None
    if key is None:
        return ""
    r = render(st[key])
    if isinstance(r, dict):
        r = {k: sorted(_as_list(v)) for k, v in r.items()}
    s = r if isinstance(r, str) else json.dumps(r, sort_keys=True)
    return ("NOT " if key == "NotPrincipal" else "") + s


def perms_of(doc: Any, when: str = "") -> list[Perm]:
    out = []
    for w, st in iter_statements(doc, when):
        effect = st.get("Effect", "Allow")
        akey = "Action" if "Action" in st else "NotAction"
        rkey = "Resource" if "Resource" in st else "NotResource"
        cond = condition_canon(st.get("Condition"))
        principal = principal_canon(st)
        for a in _as_list(render(st.get(akey))):
            a = a.lower() if isinstance(a, str) else json.dumps(a)
            if akey == "NotAction":
                a = "NOT " + a
            for r in _as_list(render(st.get(rkey, "*"))):
                r = r if isinstance(r, str) else json.dumps(r, sort_keys=True)
                if rkey == "NotResource":
                    r = "NOT " + r
                out.append(Perm(w, effect, a, r, cond, principal))
    return out


def managed_policy_name(arn: Any) -> str:
    """'arn:aws:iam::aws:policy/service-role/X' -> 'aws:X'; other ARNs -> rendered."""
    r = canon(arn)
    marker = ":iam::aws:policy/"
    if marker in r:
        return "aws:" + r.split(marker, 1)[1].rsplit("/", 1)[-1]
    return r


def role_documents(t: dict[str, Any], role_id: str) -> tuple[list[tuple[str, Any]], list[str]]:
    """Identity policy documents attached to a role (inline, AWS::IAM::Policy and customer
    managed policies naming it), and the AWS managed policies it attaches."""
    res = t.get("Resources", {})
    role = res.get(role_id, {})
    props = role.get("Properties") or {}
    docs: list[tuple[str, Any]] = []
    for p in _as_list(props.get("Policies")):
        if isinstance(p, dict) and "PolicyDocument" in p:
            docs.append((f"{role_id}.{canon(p.get('PolicyName'))}", p["PolicyDocument"]))
    managed: list[str] = []
    for arn in _as_list(props.get("ManagedPolicyArns")):
        ids = referenced_ids(arn) & set(res)
        if ids:
            for mid in ids:
                docs.append((mid, (res[mid].get("Properties") or {}).get("PolicyDocument")))
        else:
            managed.append(managed_policy_name(arn))
    for pid, p in res.items():
        if p.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            roles = (p.get("Properties") or {}).get("Roles")
            if role_id in referenced_ids(roles):
                docs.append((pid, p["Properties"].get("PolicyDocument")))
    return docs, sorted(managed)


def all_identity_documents(t: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for rid, r in t.get("Resources", {}).items():
        props = r.get("Properties") or {}
        if r.get("Type") == "AWS::IAM::Role":
            for p in _as_list(props.get("Policies")):
                if isinstance(p, dict):
                    yield f"{rid}.{canon(p.get('PolicyName'))}", p.get("PolicyDocument")
        elif r.get("Type") in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            yield rid, props.get("PolicyDocument")


def all_resource_documents(t: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for rid, r in t.get("Resources", {}).items():
        key = RESOURCE_POLICY_TYPES.get(r.get("Type", ""))
        if key:
            yield rid, (r.get("Properties") or {}).get(key)
