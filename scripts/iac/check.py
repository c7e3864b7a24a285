#!/usr/bin/env python3
"""`make iac-check`: the policy rules on both templates and the drift between them, each
template loaded once. Offline: no AWS call, no credentials.

    python3 scripts/iac/check.py [--sam template.yaml] [--cdk infra/cdk.out]

Exit 1 when either finds something; both always run, so one run shows everything open.
"""

from __future__ import annotations

import argparse
import sys
import time

import drift
import policy
from templates import load_cdk, load_sam_source, sam_to_cfn


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sam", default="template.yaml")
    ap.add_argument("--cdk", default="infra/cdk.out")
    args = ap.parse_args(argv)
    start = time.monotonic()
    source = load_sam_source(args.sam)
    sam = sam_to_cfn(source)
    cdk = load_cdk(args.cdk)

    policy_findings = 0
    for label, t in ((f"{args.sam} (SAM transform)", sam), (", ".join(cdk["_sources"]), cdk)):
        findings = policy.check(t)
        used = policy.managed_policies_in_use(t)
        print(f"policy: {label}: {len(t['Resources'])} resources; AWS managed policies: "
              + (", ".join(f"{k} x{len(v)}" for k, v in sorted(used.items())) or "none"))
        for f in findings:
            print(f"  POLICY   {f}")
        policy_findings += len(findings)

    print(f"drift: {args.sam} vs {args.cdk}")
    drifts = drift.report(drift.compare(sam, cdk, source))

    print(f"iac-check: {policy_findings} policy finding(s), {drifts} drift difference(s) "
          f"({time.monotonic() - start:.1f} s)")
    return 1 if policy_findings or drifts else 0


if __name__ == "__main__":
    sys.exit(main())
