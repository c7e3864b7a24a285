"""Tests of the IaC checks: mutated copies of the transformed template.yaml must be caught.

    cd scripts/iac && python3 -m unittest -v test_iac
"""

from __future__ import annotations

import copy
import io
import json
import os
import tempfile
import unittest
from unittest import mock

import drift
import policy
from templates import canon, load_cdk, load_sam, load_sam_source, render

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TEMPLATE = os.path.join(ROOT, "template.yaml")


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        cls.source = load_sam_source(TEMPLATE)
        cls.sam = load_sam(TEMPLATE)
        cls.findings = set(policy.check(cls.sam))

    def copy(self) -> dict:
        return copy.deepcopy(self.sam)

    def res(self, t: dict, typ: str) -> list[str]:
        return sorted(k for k, v in t["Resources"].items() if v["Type"] == typ)

    def function_policy(self, t: dict, fn: str) -> dict:
        return self.role_policy(t, t["Resources"][fn]["Properties"]["Role"]["Fn::GetAtt"][0])

    def statement(self, doc: dict, action: str) -> dict:
        """The first statement of a policy document naming `action` (found by content, not
        position, so that edits of template.yaml leave the tests meaningful)."""
        for st in doc["Statement"]:
            actions = st.get("Action")
            if action == actions or (isinstance(actions, list) and action in actions):
                return st
        raise AssertionError(f"no statement with {action}")

    def signed_behaviour(self, t: dict) -> dict:
        """The distribution's signed/* cache behaviour (in its Fn::If on HasPlaybackKey)."""
        behaviours = t["Resources"]["PlaybackDistribution"]["Properties"]["DistributionConfig"]["CacheBehaviors"]
        cond, yes, _ = behaviours["Fn::If"]
        self.assertEqual(cond, "HasPlaybackKey")
        return next(b for b in yes if b["PathPattern"] == "signed/*")

    def distribution_config(self, t: dict) -> dict:
        return t["Resources"]["PlaybackDistribution"]["Properties"]["DistributionConfig"]

    def role_policy(self, t: dict, role: str) -> dict:
        """The statements of all the role's inline policies, as one document whose statements
        are the template's own (mutating one mutates the template)."""
        policies = t["Resources"][role]["Properties"]["Policies"]
        return {"Statement": [st for p in policies for st in p["PolicyDocument"]["Statement"]]}


class Render(unittest.TestCase):
    def test_sub_and_join_render_alike(self) -> None:
        sub = {"Fn::Sub": "arn:${AWS::Partition}:s3:::${B}/x/*"}
        join = {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::", {"Ref": "B"}, "/x/*"]]}
        self.assertEqual(render(sub), render(join))
        self.assertEqual(render({"Fn::GetAtt": ["T", "Arn"]}), render({"Fn::GetAtt": "T.Arn"}))
        self.assertEqual(canon(300), canon("300"))

    def test_sub_with_variables(self) -> None:
        v = {"Fn::Sub": ["a-${Id}", {"Id": {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "AWS::StackId"}]}]}}]}
        self.assertEqual(render(v), "a-${Select(2,Split(/,${AWS::StackId}))}")


class Drift(Base):
    def diffs(self, cdk: dict) -> list[tuple[str, str, str]]:
        return [d for d in drift.compare(self.sam, cdk, self.source) if not drift.allowed(*d)]

    def assertCaught(self, cdk: dict, section: str, key: str) -> None:
        found = self.diffs(cdk)
        self.assertTrue(any(s == section and k == key for s, k, _ in found), f"{section}/{key} not in {found}")

    def test_identical_templates_have_no_drift(self) -> None:
        self.assertEqual(self.diffs(self.copy()), [])

    def test_added_resource(self) -> None:
        t = self.copy()
        t["Resources"]["Extra"] = {"Type": "AWS::SQS::Queue", "Properties": {"SqsManagedSseEnabled": True}}
        self.assertCaught(t, "resource types", "AWS::SQS::Queue")

    def test_missing_top_level_logical_id(self) -> None:
        t = self.copy()
        t["Resources"]["ChannelsTableRenamed"] = t["Resources"].pop("ChannelsTable")
        self.assertCaught(t, "logical ids", "ChannelsTable")

    def test_changed_key_schema(self) -> None:
        t = self.copy()
        t["Resources"]["SlotsTable"]["Properties"]["KeySchema"][0]["AttributeName"] = "slot"
        self.assertCaught(t, "tables", "SlotsTable")

    def test_changed_gsi(self) -> None:
        t = self.copy()
        t["Resources"]["DevicesTable"]["Properties"]["GlobalSecondaryIndexes"][0]["Projection"] = {"ProjectionType": "KEYS_ONLY"}
        self.assertCaught(t, "tables", "DevicesTable")

    def test_removed_event_rule(self) -> None:
        t = self.copy()
        rule = next(k for k in self.res(t, "AWS::Events::Rule") if k.startswith("TaskHealthFunction"))
        del t["Resources"][rule]
        self.assertCaught(t, "functions", "TaskHealthFunction")
        self.assertCaught(t, "rules", drift._rule_desc(self.sam["Resources"][rule], None))

    def test_changed_event_pattern(self) -> None:
        t = self.copy()
        rule = next(k for k in self.res(t, "AWS::Events::Rule") if k.startswith("GatewayHealthFunctionStateChange"))
        t["Resources"][rule]["Properties"]["EventPattern"]["detail"]["state"] = ["stopped"]
        self.assertCaught(t, "functions", "GatewayHealthFunction")

    def test_filter_false_is_not_the_string_false(self) -> None:
        t = self.copy()
        esm = self.res(t, "AWS::Lambda::EventSourceMapping")[0]
        f = t["Resources"][esm]["Properties"]["FilterCriteria"]["Filters"]
        pattern = next(x for x in f if "[false]" in x["Pattern"])
        pattern["Pattern"] = pattern["Pattern"].replace("[false]", '["false"]')
        self.assertCaught(t, "functions", "ReconcilerFunction")

    def test_added_iam_action(self) -> None:
        t = self.copy()
        self.statement(self.function_policy(t, "VodJobStateFunction"), "dynamodb:GetItem")["Action"].append("dynamodb:DeleteItem")
        self.assertCaught(t, "functions", "VodJobStateFunction")

    def test_changed_iam_resource(self) -> None:
        t = self.copy()
        self.statement(self.function_policy(t, "TaskHealthFunction"), "s3:GetObject")["Resource"] = {"Fn::Sub": "${MediaBucket.Arn}/*"}
        self.assertCaught(t, "functions", "TaskHealthFunction")

    def test_removed_env_var_timeout_memory(self) -> None:
        for mutate in (lambda p: p["Environment"]["Variables"].pop("ASSETS_TABLE"),
                       lambda p: p.update(Timeout=61),
                       lambda p: p.update(MemorySize=512)):
            t = self.copy()
            mutate(t["Resources"]["VodTriggerFunction"]["Properties"])
            self.assertCaught(t, "functions", "VodTriggerFunction")

    def test_removed_route_and_s3_notification(self) -> None:
        t = self.copy()
        del t["Resources"]["HttpApi"]["Properties"]["Body"]["paths"]["/assets/{id}"]
        t["Resources"]["MediaBucket"]["Properties"]["NotificationConfiguration"]["LambdaConfigurations"][0]["Filter"]["S3Key"]["Rules"][0]["Value"] = "in/"
        self.assertCaught(t, "functions", "ChannelsApiFunction")
        self.assertCaught(t, "functions", "VodTriggerFunction")

    def test_parameters_and_outputs(self) -> None:
        t = self.copy()
        t["Parameters"]["Architecture"]["AllowedValues"] = ["x86_64"]
        t["Parameters"]["PullTaskCpu"]["Default"] = 1024
        del t["Outputs"]["ApiUrl"]
        self.assertCaught(t, "parameters", "Architecture")
        self.assertCaught(t, "parameters", "PullTaskCpu")
        self.assertCaught(t, "outputs", "ApiUrl")

    def test_conditions_and_template_rules(self) -> None:
        t = self.copy()
        t["Conditions"]["HasSrt"] = {"Fn::Equals": [{"Ref": "EnableSrt"}, "false"]}
        del t["Rules"]["RtmpsNeedsDomainName"]
        self.assertCaught(t, "conditions", "HasSrt")
        self.assertCaught(t, "template rules", "RtmpsNeedsDomainName")

    def test_equal_permissions_in_another_shape(self) -> None:
        """A function's grants as an AWS::IAM::Policy resource attached to its role, in other
        statements, with Fn::Join for Fn::Sub and numbers as numbers: the permissions of the
        function and the role compare equal; only the new resource type is reported."""
        t = self.copy()
        fn = "VodJobStateFunction"
        role = t["Resources"][fn]["Properties"]["Role"]["Fn::GetAtt"][0]
        doc = self.role_policy(t, role)
        del t["Resources"][role]["Properties"]["Policies"]
        split = [{"Effect": "Allow", "Action": a, "Resource": st["Resource"], **({"Condition": st["Condition"]} if "Condition" in st else {})}
                 for st in doc["Statement"] for a in (st["Action"] if isinstance(st["Action"], list) else [st["Action"]])]
        t["Resources"][role + "DefaultPolicy"] = {"Type": "AWS::IAM::Policy", "Properties": {
            "PolicyName": "x", "PolicyDocument": {"Statement": list(reversed(split))}, "Roles": [{"Ref": role}]}}
        st = self.statement(self.function_policy(t, "TaskHealthFunction"), "s3:GetObject")
        self.assertEqual(st["Resource"][0], {"Fn::Sub": "${MediaBucket.Arn}/live/*"})
        st["Resource"][0] = {"Fn::Join": ["", [{"Fn::GetAtt": ["MediaBucket", "Arn"]}, "/live/*"]]}
        t["Resources"][fn]["Properties"]["Timeout"] = "30"
        t["Resources"][fn]["Properties"]["Tags"] = []
        self.assertEqual([(s, k) for s, k, _ in self.diffs(t)], [("resource types", "AWS::IAM::Policy")])

    def test_allow_list_entry(self) -> None:
        t = self.copy()
        t["Resources"]["CDKMetadata"] = {"Type": "AWS::CDK::Metadata", "Properties": {}}
        self.assertCaught(t, "resource types", "AWS::CDK::Metadata")
        entry = ("resource types", "AWS::CDK::Metadata", "only in CDK", "test")
        with mock.patch.object(drift.allowlist, "ALLOWED_DRIFT", [entry]):
            self.assertEqual(self.diffs(t), [])
            out = io.StringIO()
            self.assertEqual(drift.report(drift.compare(self.sam, t, self.source), out), 0)
            self.assertIn("allowed", out.getvalue())

    def test_changed_resource_property(self) -> None:
        t = self.copy()
        t["Resources"]["MediaBucket"]["Properties"]["LifecycleConfiguration"]["Rules"][-1]["Status"] = "Disabled"
        t["Resources"]["PullTaskDefinition"]["Properties"]["ContainerDefinitions"][0]["StopTimeout"] = 30
        self.statement(self.role_policy(t, "PullTaskRole"), "s3:PutObject")["Action"].append("s3:ListBucket")
        self.assertCaught(t, "properties", "MediaBucket")
        self.assertCaught(t, "properties", "PullTaskDefinition")
        self.assertCaught(t, "properties", "PullTaskRole")

    def test_changed_egress_task_definition_role_service_rule(self) -> None:
        """The ECS Anywhere egress: its EXTERNAL/host task definition, the execute-api grant of
        its task role, the optional service and the rule that guards it."""
        t = self.copy()
        t["Resources"]["EgressTaskDefinition"]["Properties"]["NetworkMode"] = "bridge"
        st = self.statement(self.role_policy(t, "EgressTaskRole"), "execute-api:Invoke")
        st["Resource"][0] = {"Fn::Sub": st["Resource"][0]["Fn::Sub"].replace("/GET/", "/*/")}
        t["Resources"]["EgressService"]["Properties"]["LaunchType"] = "EC2"
        del t["Rules"]["EgressServiceNeedsSource"]
        self.assertCaught(t, "properties", "EgressTaskDefinition")
        self.assertCaught(t, "properties", "EgressTaskRole")
        self.assertCaught(t, "properties", "EgressService")
        self.assertCaught(t, "template rules", "EgressServiceNeedsSource")

    def test_changed_bucket_policy_principal(self) -> None:
        t = self.copy()
        doc = t["Resources"]["MediaBucketPolicy"]["Properties"]["PolicyDocument"]
        self.statement(doc, "s3:GetObject")["Principal"] = {"Service": ["mediaconvert.amazonaws.com"]}
        self.assertCaught(t, "properties", "MediaBucketPolicy")

    def test_signed_behaviour_without_trusted_key_groups(self) -> None:
        t = self.copy()
        del self.signed_behaviour(t)["TrustedKeyGroups"]
        self.assertCaught(t, "properties", "PlaybackDistribution")

    def test_signed_behaviour_without_cookie_function(self) -> None:
        t = self.copy()
        del self.signed_behaviour(t)["FunctionAssociations"]
        self.assertCaught(t, "properties", "PlaybackDistribution")

    def test_default_behaviour_without_guard_function(self) -> None:
        t = self.copy()
        del self.distribution_config(t)["DefaultCacheBehavior"]["FunctionAssociations"]
        self.assertCaught(t, "properties", "PlaybackDistribution")

    def test_playback_domain_alias_and_base_url(self) -> None:
        t = self.copy()
        del self.distribution_config(t)["Aliases"]
        self.assertCaught(t, "properties", "PlaybackDistribution")
        t = self.copy()
        self.distribution_config(t)["ViewerCertificate"]["Fn::If"][1]["MinimumProtocolVersion"] = "TLSv1"
        self.assertCaught(t, "properties", "PlaybackDistribution")
        t = self.copy()
        env = t["Resources"]["ChannelsApiFunction"]["Properties"]["Environment"]["Variables"]
        env["PLAYBACK_BASE_URL"] = {"Fn::Sub": "https://${PlaybackDistribution.DomainName}"}
        self.assertCaught(t, "properties", "ChannelsApiFunction")

    def test_output_values(self) -> None:
        t = self.copy()
        t["Outputs"]["PlaybackDomain"]["Value"] = {"Fn::GetAtt": ["PlaybackDistribution", "DomainName"]}
        t["Outputs"]["PlaybackKeyPairId"].pop("Condition")
        self.assertCaught(t, "outputs", "PlaybackDomain")
        self.assertCaught(t, "outputs", "PlaybackKeyPairId")
        t = self.copy()
        t["Outputs"]["PlaybackDomain"]["Description"] = "another text"
        self.assertEqual(self.diffs(t), [])

    def test_guard_function_code_differs_from_its_file(self) -> None:
        key = ("source files", "PlaybackGuardFunction.FunctionCode")
        source = copy.deepcopy(self.source)
        code = source["Resources"]["PlaybackGuardFunction"]["Properties"]["FunctionCode"]
        self.assertIn("/%(2f|5c)/i", code)
        source["Resources"]["PlaybackGuardFunction"]["Properties"]["FunctionCode"] = code.replace("/%(2f|5c)/i", "/%2f/")
        found = [d for d in drift.compare(self.sam, self.copy(), source) if not drift.allowed(*d)]
        self.assertEqual([(s, k) for s, k, _ in found], [key])
        self.assertIn("infra/functions/playback-guard.js", found[0][2])
        t = self.copy()
        props = t["Resources"]["PlaybackGuardFunction"]["Properties"]
        props["FunctionCode"] = props["FunctionCode"].replace("/%(2f|5c)/i", "/%2f/")
        self.assertCaught(t, "properties", "PlaybackGuardFunction")

    def test_cookie_function_code_differs_between_templates(self) -> None:
        t = self.copy()
        props = t["Resources"]["PlaybackCookieFunction"]["Properties"]
        self.assertIn("response.statusCode !== 200", props["FunctionCode"])
        props["FunctionCode"] = props["FunctionCode"].replace("response.statusCode !== 200", "response.statusCode >= 400")
        self.assertCaught(t, "properties", "PlaybackCookieFunction")

    def test_cookie_function_code_differs_from_its_file(self) -> None:
        """template.yaml's inline FunctionCode against infra/functions/playback-cookies.js,
        whichever of the two was edited alone."""
        key = ("source files", "PlaybackCookieFunction.FunctionCode")
        self.assertEqual(drift.source_file_diffs(self.source), [])
        source = copy.deepcopy(self.source)
        source["Resources"]["PlaybackCookieFunction"]["Properties"]["FunctionCode"] += "// edited here only\n"
        found = [d for d in drift.compare(self.sam, self.copy(), source) if not drift.allowed(*d)]
        self.assertEqual([(s, k) for s, k, _ in found], [key])
        self.assertIn("infra/functions/playback-cookies.js", found[0][2])
        with tempfile.TemporaryDirectory() as root:
            for other in drift.SOURCE_FILES.values():
                os.makedirs(os.path.dirname(os.path.join(root, other)), exist_ok=True)
                with open(os.path.join(drift.ROOT, other), encoding="utf-8") as f:
                    text = f.read()
                with open(os.path.join(root, other), "w", encoding="utf-8") as f:
                    f.write(text)
            self.assertEqual(drift.source_file_diffs(self.source, root), [])
            rel = drift.SOURCE_FILES[("PlaybackCookieFunction", "FunctionCode")]
            with open(os.path.join(drift.ROOT, rel), encoding="utf-8") as f:
                text = f.read()
            with open(os.path.join(root, rel), "w", encoding="utf-8") as f:
                f.write(text.replace("SameSite=None", "SameSite=Lax"))
            self.assertEqual([(s, k) for s, k, _ in drift.source_file_diffs(self.source, root)], [key])
        source = copy.deepcopy(self.source)
        del source["Resources"]["PlaybackCookieFunction"]
        self.assertEqual([(s, k) for s, k, _ in drift.source_file_diffs(source)], [key])

    def test_cdk_loader_merges_stacks(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            for name, res in (("A", {"X": {"Type": "AWS::SNS::Topic"}}), ("B", {"Y": {"Type": "AWS::SNS::Topic"}})):
                with open(os.path.join(d, f"{name}.template.json"), "w") as f:
                    json.dump({"Resources": res}, f)
            with open(os.path.join(d, "A.assets.json"), "w") as f:
                f.write("{}")
            self.assertEqual(sorted(load_cdk(d)["Resources"]), ["X", "Y"])


class Policy(Base):
    def assertCaught(self, t: dict, text: str) -> None:
        new = set(policy.check(t)) - self.findings
        self.assertTrue(any(text in f for f in new), f"{text!r} not in {sorted(new)}")

    def test_star_action(self) -> None:
        for action in ("*", "s3:*", "s3:Get*"):
            t = self.copy()
            self.statement(self.function_policy(t, "VodJobStateFunction"), "dynamodb:GetItem")["Action"].append(action)
            self.assertCaught(t, f"wildcard action {action.lower()}")

    def test_star_resource(self) -> None:
        t = self.copy()
        self.statement(self.function_policy(t, "VodJobStateFunction"), "dynamodb:GetItem")["Resource"] = "*"
        self.assertCaught(t, "dynamodb:getitem on Resource *")

    def test_allowlisted_star_resource_needs_its_condition(self) -> None:
        t = self.copy()
        del self.statement(self.function_policy(t, "ReconcilerFunction"), "ecs:ListTasks")["Condition"]
        self.assertCaught(t, "ecs:listtasks on Resource * without the ecs:cluster condition")

    def test_star_action_in_resource_policy(self) -> None:
        t = self.copy()
        self.statement(t["Resources"]["MediaBucketPolicy"]["Properties"]["PolicyDocument"], "s3:GetObject")["Action"] = "s3:*"
        self.assertCaught(t, "MediaBucketPolicy: wildcard action s3:*")

    def test_execute_api_grants_name_routes(self) -> None:
        self.assertEqual([f for f in self.findings if "execute-api" in f], [])
        arn = "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:"
        for resource, text in (
                (arn + "${HttpApi}/*", "not a route"),
                (arn + "${HttpApi}/$default/*/channels/*/endpoints", "method *"),
                (arn + "${HttpApi}/$default/GET/*", "path *"),
                (arn + "a1b2c3d4e5/$default/GET/channels/*/endpoints", "not a route"),
                (arn + "*/$default/GET/channels/*/endpoints", "not a route")):
            t = self.copy()
            self.statement(self.role_policy(t, "EgressTaskRole"), "execute-api:Invoke")["Resource"].append(
                {"Fn::Sub": resource})
            self.assertCaught(t, text)

    def test_unaccepted_managed_policy(self) -> None:
        t = self.copy()
        t["Resources"]["PullTaskRole"]["Properties"]["ManagedPolicyArns"] = ["arn:aws:iam::aws:policy/AmazonS3FullAccess"]
        self.assertCaught(t, "managed policy aws:AmazonS3FullAccess")

    def test_table_without_pitr_or_sse(self) -> None:
        t = self.copy()
        del t["Resources"]["SlotsTable"]["Properties"]["PointInTimeRecoverySpecification"]
        t["Resources"]["GatewaysTable"]["Properties"]["SSESpecification"]["SSEEnabled"] = False
        self.assertCaught(t, "SlotsTable: point-in-time recovery")
        self.assertCaught(t, "GatewaysTable: SSESpecification")

    def test_bucket_public_access_encryption_tls(self) -> None:
        t = self.copy()
        p = t["Resources"]["MediaBucket"]["Properties"]
        p["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"] = False
        del p["BucketEncryption"]
        self.assertCaught(t, "MediaBucket: PublicAccessBlockConfiguration.RestrictPublicBuckets")
        self.assertCaught(t, "MediaBucket: no default encryption")
        t = self.copy()
        statements = t["Resources"]["MediaBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
        statements.remove(self.statement({"Statement": statements}, "s3:*"))
        self.assertCaught(t, "MediaBucket: no bucket policy denying")
        t = self.copy()
        deny = self.statement(t["Resources"]["MediaBucketPolicy"]["Properties"]["PolicyDocument"], "s3:*")
        deny["Resource"] = deny["Resource"][1:]  # objects only, not the bucket
        self.assertCaught(t, "MediaBucket: no bucket policy denying")

    def test_signed_cache_behaviour_needs_trusted_key_groups(self) -> None:
        text = "PlaybackDistribution: cache behaviour signed/* without TrustedKeyGroups"
        t = self.copy()
        del self.signed_behaviour(t)["TrustedKeyGroups"]
        self.assertCaught(t, text)
        t = self.copy()
        self.signed_behaviour(t)["TrustedKeyGroups"] = []
        self.assertCaught(t, text)
        # Key groups in one branch of a condition only: signed/ would be public in the other.
        t = self.copy()
        b = self.signed_behaviour(t)
        b["TrustedKeyGroups"] = {"Fn::If": ["HasAllowedOrigins", b["TrustedKeyGroups"], {"Ref": "AWS::NoValue"}]}
        self.assertCaught(t, text)
        # A public prefix needs none (but the guard function, as the default behaviour).
        t = self.copy()
        b = self.signed_behaviour(t)
        del b["TrustedKeyGroups"]
        b["PathPattern"] = "live/*"
        b["FunctionAssociations"] = copy.deepcopy(self.distribution_config(t)["DefaultCacheBehavior"]["FunctionAssociations"])
        self.assertEqual(set(policy.check(t)) - self.findings, set())

    GUARD_TEXT = "PlaybackDistribution: default cache behaviour without the viewer-request guard function"

    def default_behaviour(self, t: dict) -> dict:
        return self.distribution_config(t)["DefaultCacheBehavior"]

    def test_template_has_the_guard(self) -> None:
        self.assertEqual(policy.check_signed_guard(self.sam), [])
        self.assertTrue(any(policy._grants_cloudfront_signed(st) for _, st in policy.iter_statements(
            self.sam["Resources"]["MediaBucketPolicy"]["Properties"]["PolicyDocument"])))

    def test_default_behaviour_needs_the_guard(self) -> None:
        t = self.copy()
        del self.default_behaviour(t)["FunctionAssociations"]
        self.assertCaught(t, self.GUARD_TEXT)
        self.assertCaught(t, "MediaBucketPolicy lets CloudFront read signed/")

    def test_guard_on_viewer_request_only(self) -> None:
        t = self.copy()
        self.default_behaviour(t)["FunctionAssociations"][0]["EventType"] = "viewer-response"
        self.assertCaught(t, self.GUARD_TEXT)

    def test_another_function_is_no_guard(self) -> None:
        t = self.copy()
        self.default_behaviour(t)["FunctionAssociations"][0]["FunctionARN"] = {
            "Fn::GetAtt": ["PlaybackCookieFunction", "FunctionARN"]}
        self.assertCaught(t, self.GUARD_TEXT)
        # The guard's code is infra/functions/playback-guard.js: an edited copy is no guard.
        t = self.copy()
        props = t["Resources"]["PlaybackGuardFunction"]["Properties"]
        props["FunctionCode"] = props["FunctionCode"].replace("/%(2f|5c)/i", "/%2f/")
        self.assertCaught(t, self.GUARD_TEXT)

    def test_guard_in_one_branch_only(self) -> None:
        t = self.copy()
        b = self.default_behaviour(t)
        b["FunctionAssociations"] = {"Fn::If": ["HasPlaybackKey", b["FunctionAssociations"], {"Ref": "AWS::NoValue"}]}
        self.assertCaught(t, self.GUARD_TEXT)
        t = self.copy()
        b = self.default_behaviour(t)
        b["FunctionAssociations"] = [{"Fn::If": ["HasAllowedOrigins", b["FunctionAssociations"][0], {"Ref": "AWS::NoValue"}]}]
        self.assertCaught(t, self.GUARD_TEXT)
        # The same association in both branches is fine.
        t = self.copy()
        b = self.default_behaviour(t)
        b["FunctionAssociations"] = {"Fn::If": ["HasPlaybackKey", b["FunctionAssociations"], copy.deepcopy(b["FunctionAssociations"])]}
        self.assertEqual(set(policy.check(t)) - self.findings, set())

    def test_conditional_guard_function(self) -> None:
        t = self.copy()
        t["Resources"]["PlaybackGuardFunction"]["Condition"] = "HasPlaybackKey"
        self.assertCaught(t, "PlaybackGuardFunction: the guard function (infra/functions/playback-guard.js) has a Condition")
        self.assertCaught(t, self.GUARD_TEXT)

    def test_every_other_behaviour_needs_the_guard(self) -> None:
        text = "PlaybackDistribution: cache behaviour live/* without the viewer-request guard function"
        t = self.copy()
        config = self.distribution_config(t)
        cond, yes, no = config["CacheBehaviors"]["Fn::If"]
        public = copy.deepcopy(self.default_behaviour(t))
        del public["FunctionAssociations"]
        public["PathPattern"] = "live/*"
        yes.append(public)
        self.assertCaught(t, text)
        public["FunctionAssociations"] = copy.deepcopy(self.default_behaviour(t)["FunctionAssociations"])
        self.assertEqual(set(policy.check(t)) - self.findings, set())

    def test_no_guard_needed_without_a_signed_grant(self) -> None:
        t = self.copy()
        del self.default_behaviour(t)["FunctionAssociations"]
        doc = t["Resources"]["MediaBucketPolicy"]["Properties"]["PolicyDocument"]
        doc["Statement"] = [st for st in doc["Statement"] if "Fn::If" not in st]
        self.assertEqual(policy.check_signed_guard(t), [])
        # A grant of the whole bucket includes signed/.
        st = self.statement(doc, "s3:GetObject")
        st["Resource"] = {"Fn::Sub": "${MediaBucket.Arn}/*"}
        self.assertCaught(t, self.GUARD_TEXT)

    def test_signed_grant_detection(self) -> None:
        may = policy._may_match_under
        self.assertTrue(may("signed/live/*", "signed/"))
        self.assertTrue(may("*", "signed/"))
        self.assertTrue(may("sig*", "signed/"))
        self.assertTrue(may("s?gned/*", "signed/"))
        self.assertFalse(may("live/*", "signed/"))
        self.assertFalse(may("signed", "signed/"))
        self.assertFalse(may("signedx/*", "signed/"))
        key = policy._object_key_pattern
        self.assertEqual(key("${MediaBucket.Arn}/signed/live/*"), "signed/live/*")
        self.assertEqual(key("arn:aws:s3:::streamstack-media-${Select(2,Split(/,${AWS::StackId}))}/x/*"), "x/*")
        self.assertIsNone(key("${MediaBucket.Arn}"))
        grant = {"Effect": "Allow", "Principal": {"Service": "cloudfront.amazonaws.com"}, "Action": "s3:GetObject",
                 "Resource": {"Fn::Sub": "${MediaBucket.Arn}/signed/outputs/*"}}
        self.assertTrue(policy._grants_cloudfront_signed(grant))
        for change in ({"Effect": "Deny"}, {"Action": "s3:PutObject"},
                       {"Principal": {"Service": "mediaconvert.amazonaws.com"}},
                       {"Resource": {"Fn::Sub": "${MediaBucket.Arn}/live/*"}}):
            self.assertFalse(policy._grants_cloudfront_signed({**grant, **change}), change)
        for change in ({"Action": "s3:Get*"}, {"Action": ["s3:ListBucket", "s3:GetObject"]}, {"Principal": "*"},
                       {"Resource": [{"Fn::Sub": "${MediaBucket.Arn}/live/*"},
                                     {"Fn::If": ["C", {"Fn::Sub": "${MediaBucket.Arn}/signed/*"}, {"Ref": "AWS::NoValue"}]}]}):
            self.assertTrue(policy._grants_cloudfront_signed({**grant, **change}), change)

    def test_unencrypted_queue_and_topic(self) -> None:
        t = self.copy()
        del t["Resources"]["ReconcilerDeadLetterQueue"]["Properties"]["SqsManagedSseEnabled"]
        del t["Resources"]["AlarmTopic"]["Properties"]["KmsMasterKeyId"]
        self.assertCaught(t, "ReconcilerDeadLetterQueue: queue without explicit encryption")
        self.assertCaught(t, "AlarmTopic: topic without KmsMasterKeyId")


if __name__ == "__main__":
    unittest.main()
