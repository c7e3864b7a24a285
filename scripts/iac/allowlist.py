"""Every exception the IaC checks make, each with its reason. Keep it short: an entry here is
a place where least privilege or drift-freedom is knowingly given up.

Actions are lowercase (IAM action names are case-insensitive).
"""

# ---- policy: Allow statements with Resource "*" ------------------------------------------
# (action, condition key the statement must carry or None, reason). An Allow statement with
# Resource "*" passes only if every one of its actions is listed here, with its condition key
# present in the statement's Condition.
WILDCARD_RESOURCE_ACTIONS = [
    ("ec2:describeinstances", None, "EC2 Describe* actions support no resource-level permissions"),
    ("ec2:describeinstancestatus", None, "EC2 Describe* actions support no resource-level permissions"),
    ("ec2:describeaddresses", None, "EC2 Describe* actions support no resource-level permissions"),
    ("ec2:describeimages", None, "EC2 Describe* actions support no resource-level permissions"),
    ("ec2:createtags", "ec2:CreateAction",
     "tags on resources a RunInstances/CreateImage call creates (no ARN exists before the call); "
     "the ec2:CreateAction condition forbids tagging existing resources"),
    ("ecs:tagresource", "ecs:CreateAction",
     "RunTask with tags is also authorized as ecs:TagResource on the task being created; the "
     "ecs:CreateAction condition forbids tagging existing resources"),
    ("dynamodb:liststreams", None,
     "ListStreams has no resource-level permissions (returns stream ARNs, reads no records); a "
     "stream event source mapping needs it beside DescribeStream/GetRecords/GetShardIterator on "
     "the one stream, which replaces SAM's AWSLambdaDynamoDBExecutionRole (reads on every stream)"),
    ("ecs:listtasks", "ecs:cluster",
     "ListTasks is authorized on container instances, not tasks; narrowed to the streamer cluster "
     "by the ecs:cluster condition (AWS ECS identity-based policy examples)"),
]

# ---- policy: AWS managed policies a role may attach -------------------------------------
# Their documents are AWS's and not in the templates; each is judged here as a whole.
# A managed policy not named here fails the policy check.
ACCEPTED_MANAGED_POLICIES = {
    "aws:AWSLambdaBasicExecutionRole":
        "logs:CreateLogGroup/CreateLogStream/PutLogEvents on *: every Lambda function's logging; "
        "SAM and CDK both attach it. Only log writes, no reads.",
    "aws:AWSXrayWriteOnlyAccess":
        "X-Ray PutTraceSegments/PutTelemetryRecords/GetSampling* on *: X-Ray has no resource-level "
        "permissions; SAM attaches it for Tracing: Active. Write-only.",
    "aws:AWSLambdaVPCAccessExecutionRole":
        "ec2 Create/Describe/DeleteNetworkInterface, Assign/UnassignPrivateIpAddresses on * plus "
        "logs: what Lambda needs to place a function's ENIs in a VPC (GatewayHealthFunction with "
        "GatewayHealthUrl). ENI actions have no narrower resource before the ENI exists.",
    "aws:AmazonECSTaskExecutionRolePolicy":
        "ECR GetAuthorizationToken/BatchGetImage/GetDownloadUrlForLayer/BatchCheckLayerAvailability "
        "and logs CreateLogStream/PutLogEvents on *: ECS's own image pull and awslogs driver for the "
        "pull tasks (execution role only; the task role has none of it).",
}

# ---- drift: differences that are inherent -------------------------------------------------
# (section, key, detail, reason): a difference in `section` for `key` whose text starts with
# `detail` ("" = any) is reported as allowed and does not fail the check.
#
# Empty: infra/ builds what the SAM transform generates from the same parts (same logical
# ids, inline role policies, SAM's OpenAPI Body for the HttpApi), so nothing differs by
# nature. An entry belongs here only for a difference the two tools cannot avoid, e.g. if
# the CDK app moved to L2 constructs: ("resource types", "AWS::IAM::Policy", "", "CDK writes
# a role's grants as a DefaultPolicy resource, SAM inline; permissions compared per role").
ALLOWED_DRIFT: list[tuple[str, str, str, str]] = [
    ("template rules", "ArchitectureMatchesLambdaBuild", "only in CDK",
     "cdk synth builds the Lambda code for one CPU (context `architecture`) before deploy; "
     "the rule refuses an Architecture parameter that differs. sam build reads the "
     "parameter itself, so template.yaml needs no such rule."),
]
