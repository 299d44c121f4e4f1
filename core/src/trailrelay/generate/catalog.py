"""Background event templates: who calls which API, how often, in which event version.

The table is dominated, like a real trail, by read-only Describe/List/Get calls; writes,
sign-ins, S3 data events and service events are rarer. Builders live in :mod:`.builders`.
"""

from __future__ import annotations

from typing import Any

from trailrelay.generate import builders as b
from trailrelay.generate.events import Template

__all__ = ["TEMPLATES"]

_OPS = frozenset({"user", "sso", "bot", "ci"})
_HUM = frozenset({"user", "sso"})
_WORK = frozenset({"workload", "lambda"})
_SLR = frozenset({"slr"})
_AUDIT = frozenset({"config.amazonaws.com", "securityhub.amazonaws.com", "access-analyzer.amazonaws.com"})
_SCAN = frozenset({"config.amazonaws.com", "inspector2.amazonaws.com", "guardduty.amazonaws.com"})


def _t(
    source: str, name: str, weight: float, kinds: frozenset[str], build: Any, *, ro: bool = True, **kw: Any
) -> Template:
    if "." not in source:
        source += ".amazonaws.com"
    return Template(source, name, weight, ro, kinds, build, **kw)


_NOOP = b.static()
_OPS_SCAN = _OPS | _SLR
_S3V = "1.10"
_OPS_WORK = _OPS | _WORK

TEMPLATES: tuple[Template, ...] = (
    # EC2: the bulk of any trail.
    _t("ec2", "DescribeInstances", 60, _OPS_WORK | _SLR, b.describe_instances, services=_SCAN),
    _t("ec2", "DescribeSecurityGroups", 18, _OPS_SCAN, b.describe_sgs, services=_SCAN),
    _t("ec2", "DescribeVpcs", 10, _OPS_SCAN, b.static({"vpcSet": {}, "filterSet": {}}), services=_SCAN),
    _t("ec2", "DescribeSubnets", 10, _OPS_SCAN, b.describe_subnets, services=_SCAN),
    _t("ec2", "DescribeVolumes", 10, _OPS_SCAN, b.describe_volumes, services=_SCAN),
    _t("ec2", "DescribeNetworkInterfaces", 8, _OPS_SCAN, b.describe_enis, services=_SCAN),
    _t("ec2", "DescribeRegions", 6, _OPS | _WORK, b.static({"regionSet": {}})),
    _t(
        "ec2",
        "DescribeAvailabilityZones",
        5,
        _OPS,
        b.static({"availabilityZoneSet": {}, "availabilityZoneIdSet": {}}),
    ),
    _t("ec2", "DescribeImages", 5, _OPS, b.describe_images),
    _t("ec2", "DescribeSnapshots", 4, _OPS_SCAN, b.describe_snapshots, services=_SCAN),
    _t(
        "ec2",
        "DescribeInstanceStatus",
        4,
        _OPS,
        b.static({"instancesSet": {}, "filterSet": {}, "includeAllInstances": False}),
    ),
    _t("ec2", "DescribeFlowLogs", 2, _OPS_SCAN, b.describe_flow_logs, services=_AUDIT),
    _t("ec2", "CreateTags", 2, frozenset({"ci", "workload"}), b.create_tags, ro=False),
    _t("ec2", "StartInstances", 0.4, _OPS, b.start_stop("pending"), ro=False),
    _t("ec2", "StopInstances", 0.4, _OPS, b.start_stop("stopping"), ro=False),
    _t("ec2", "RunInstances", 0.4, frozenset({"ci"}), b.run_instances, ro=False),
    _t("ec2", "AuthorizeSecurityGroupIngress", 0.2, _HUM | {"ci"}, b.authorize_ingress, ro=False),
    # S3 bucket configuration reads (management) and object access (data events).
    _t("s3", "ListBuckets", 8, _OPS_SCAN, b.list_buckets, scope="global", version=_S3V, services=_AUDIT),
    _t(
        "s3",
        "GetBucketLocation",
        6,
        _OPS_SCAN | _WORK,
        b.bucket_read("location"),
        version=_S3V,
        services=_AUDIT,
    ),
    _t("s3", "GetBucketAcl", 5, _OPS_SCAN, b.bucket_read("acl"), version=_S3V, services=_AUDIT),
    _t(
        "s3",
        "GetBucketPolicy",
        5,
        _OPS_SCAN,
        b.bucket_read("policy"),
        version=_S3V,
        services=_AUDIT,
        errors=(("NoSuchBucketPolicy", "The bucket policy does not exist", 0.45),),
    ),
    _t("s3", "GetBucketVersioning", 4, _OPS_SCAN, b.bucket_read("versioning"), version=_S3V, services=_AUDIT),
    _t("s3", "GetBucketEncryption", 4, _OPS_SCAN, b.bucket_read("encryption"), version=_S3V, services=_AUDIT),
    _t(
        "s3",
        "GetBucketPublicAccessBlock",
        3,
        _OPS_SCAN,
        b.bucket_read("publicAccessBlock"),
        version=_S3V,
        services=_AUDIT,
        errors=(
            (
                "NoSuchPublicAccessBlockConfiguration",
                "The public access block configuration was not found",
                0.2,
            ),
        ),
    ),
    _t(
        "s3",
        "GetBucketTagging",
        3,
        _OPS_SCAN,
        b.bucket_read("tagging"),
        version=_S3V,
        services=_AUDIT,
        errors=(("NoSuchTagSet", "The TagSet does not exist", 0.4),),
    ),
    _t("s3", "GetBucketLogging", 2, _OPS_SCAN, b.bucket_read("logging"), version=_S3V, services=_AUDIT),
    _t(
        "s3",
        "GetBucketLifecycle",
        2,
        _OPS_SCAN,
        b.bucket_read("lifecycle"),
        version=_S3V,
        services=_AUDIT,
        errors=(("NoSuchLifecycleConfiguration", "The lifecycle configuration does not exist", 0.5),),
    ),
    _t(
        "s3",
        "GetObject",
        22,
        _WORK | {"bot", "ci", "user"},
        b.get_object,
        version=_S3V,
        data=True,
        errors=(("NoSuchKey", "The specified key does not exist.", 0.02),),
    ),
    _t(
        "s3",
        "HeadObject",
        6,
        _WORK | {"ci"},
        b.head_object,
        version=_S3V,
        data=True,
        errors=(("NoSuchKey", "The specified key does not exist.", 0.05),),
    ),
    _t("s3", "PutObject", 9, _WORK | {"bot", "ci"}, b.put_object, version=_S3V, data=True, ro=False),
    _t("s3", "ListObjects", 5, _WORK | _OPS, b.list_objects, version=_S3V, data=True),
    # IAM, STS, Organizations and sign-in (global services log in us-east-1).
    _t("iam", "GetRole", 5, _OPS_SCAN, b.by("roleName", b.role_name), scope="global", services=_AUDIT),
    _t("iam", "ListRoles", 4, _OPS_SCAN, _NOOP, scope="global", services=_AUDIT),
    _t(
        "iam",
        "ListAttachedRolePolicies",
        3,
        _OPS_SCAN,
        b.by("roleName", b.role_name),
        scope="global",
        services=_AUDIT,
    ),
    _t(
        "iam",
        "ListRolePolicies",
        2,
        _OPS_SCAN,
        b.by("roleName", b.role_name),
        scope="global",
        services=_AUDIT,
    ),
    _t("iam", "GetPolicy", 2, _OPS_SCAN, b.get_policy, scope="global", services=_AUDIT),
    _t("iam", "ListUsers", 2, _OPS_SCAN, _NOOP, scope="global", services=_AUDIT),
    _t("iam", "GetUser", 1, _OPS, b.by("userName", b.user_name), scope="global"),
    _t("iam", "ListAccessKeys", 1, _OPS_SCAN, b.by("userName", b.user_name), scope="global", services=_AUDIT),
    _t("iam", "ListMFADevices", 1, _OPS_SCAN, b.by("userName", b.user_name), scope="global", services=_AUDIT),
    _t("iam", "GetAccountSummary", 1, _OPS_SCAN, _NOOP, scope="global", services=_AUDIT),
    _t(
        "iam",
        "GetAccountPasswordPolicy",
        0.5,
        _OPS_SCAN,
        _NOOP,
        scope="global",
        services=_AUDIT,
        errors=(
            ("NoSuchEntityException", "The Password Policy with domain name {account} cannot be found.", 0.3),
        ),
    ),
    _t(
        "sts",
        "AssumeRole",
        10,
        frozenset({"user", "bot", "ci", "service"}),
        b.assume_role,
        services=frozenset({"lambda.amazonaws.com", "ec2.amazonaws.com", "ecs-tasks.amazonaws.com"}),
    ),
    _t("sts", "GetCallerIdentity", 6, _OPS_WORK, _NOOP),
    _t("organizations", "DescribeOrganization", 1, _OPS_SCAN, _NOOP, scope="global", services=_AUDIT),
    _t("organizations", "ListAccounts", 0.5, _HUM, _NOOP, scope="global", mgmt_only=True),
    _t(
        "signin",
        "ConsoleLogin",
        0.6,
        frozenset({"user"}),
        b.console_login,
        scope="global",
        ro=False,
        event_type="AwsConsoleSignIn",
    ),
    _t("sso", "ListAccounts", 0.6, frozenset({"idc"}), _NOOP, scope="home", mgmt_only=True, version="1.10"),
    _t(
        "sso",
        "ListAccountRoles",
        0.6,
        frozenset({"idc"}),
        b.sso_account,
        scope="home",
        mgmt_only=True,
        version="1.10",
    ),
    _t(
        "sso",
        "GetRoleCredentials",
        0.6,
        frozenset({"idc"}),
        b.sso_credentials,
        scope="home",
        mgmt_only=True,
        version="1.10",
    ),
    # KMS, Secrets Manager, SSM.
    _t("kms", "Decrypt", 14, _WORK, b.decrypt),
    _t(
        "kms",
        "GenerateDataKey",
        6,
        frozenset({"service"}),
        b.generate_data_key,
        mgmt_only=True,
        services=frozenset({"cloudtrail.amazonaws.com"}),
    ),
    _t("kms", "Encrypt", 1, _WORK, b.key_req("keyId")),
    _t("kms", "DescribeKey", 2, _OPS_SCAN, b.key_req("keyId"), services=_AUDIT),
    _t("kms", "GetKeyRotationStatus", 1, _SLR, b.key_req("keyId"), services=_AUDIT),
    _t("kms", "ListAliases", 2, _OPS, _NOOP),
    _t(
        "kms",
        "RotateKey",
        0.05,
        frozenset({"svcevent"}),
        b.rotate_key,
        ro=False,
        event_type="AwsServiceEvent",
        services=frozenset({"kms.amazonaws.com"}),
    ),
    _t("secretsmanager", "GetSecretValue", 4, _WORK | {"ci"}, b.get_secret, version="1.09"),
    _t("secretsmanager", "ListSecrets", 1, _OPS_SCAN, _NOOP, version="1.09", services=_AUDIT),
    _t(
        "secretsmanager",
        "RotationSucceeded",
        0.05,
        frozenset({"svcevent"}),
        b.rotation_succeeded,
        ro=False,
        event_type="AwsServiceEvent",
        services=frozenset({"secretsmanager.amazonaws.com"}),
    ),
    _t(
        "ssm",
        "UpdateInstanceInformation",
        8,
        frozenset({"workload"}),
        b.update_instance_information,
        ro=False,
    ),
    _t(
        "ssm",
        "ListInstanceAssociations",
        5,
        frozenset({"workload"}),
        b.list_instance_associations,
    ),
    _t("ssm", "GetParameter", 4, _WORK, b.ssm_param(many=False)),
    _t("ssm", "GetParameters", 2, _WORK | {"ci"}, b.ssm_param(many=True)),
    _t("ssm", "DescribeInstanceInformation", 1, _OPS_SCAN, _NOOP, services=_AUDIT),
    # Monitoring, logs, Lambda, CloudTrail, GuardDuty, Config, data stores, load balancers.
    _t("monitoring", "DescribeAlarms", 6, _OPS_SCAN, b.static({"stateValue": "ALARM"}), services=_AUDIT),
    _t("monitoring", "GetMetricData", 5, _OPS | {"workload"}, b.get_metric_data),
    _t("monitoring", "ListMetrics", 2, _OPS, b.static({"namespace": "AWS/EC2"})),
    _t(
        "logs",
        "DescribeLogGroups",
        5,
        _OPS_SCAN,
        b.static({"logGroupNamePrefix": "/aws/lambda/"}),
        services=_AUDIT,
    ),
    _t("logs", "CreateLogStream", 3, frozenset({"lambda"}), b.create_log_stream, ro=False),
    _t("logs", "FilterLogEvents", 2, _HUM, b.filter_log_events),
    _t("lambda", "ListFunctions20150331", 4, _OPS_SCAN, _NOOP, services=_AUDIT | _SCAN),
    _t("lambda", "GetFunction20150331v2", 3, _OPS_SCAN, b.by("functionName", b.fn_arn), services=_SCAN),
    _t("lambda", "GetFunctionConfiguration20150331v2", 2, _OPS, b.by("functionName", b.fn_arn)),
    _t("lambda", "UpdateFunctionCode20150331v2", 0.3, frozenset({"ci"}), b.update_function_code, ro=False),
    _t(
        "cloudtrail",
        "DescribeTrails",
        2,
        _OPS_SCAN,
        b.static({"includeShadowTrails": True}),
        version="1.09",
        services=_AUDIT,
    ),
    _t(
        "cloudtrail",
        "GetTrailStatus",
        2,
        _OPS_SCAN,
        b.by("name", b.trail_arn),
        version="1.09",
        services=_AUDIT,
    ),
    _t(
        "cloudtrail",
        "GetEventSelectors",
        1,
        _OPS_SCAN,
        b.by("trailName", b.trail_arn),
        version="1.09",
        services=_AUDIT,
    ),
    _t("cloudtrail", "LookupEvents", 2, _HUM, b.lookup_events, version="1.09"),
    _t("guardduty", "ListDetectors", 2, _OPS_SCAN, _NOOP, services=_AUDIT),
    _t(
        "guardduty",
        "GetDetector",
        1,
        _OPS_SCAN,
        b.by("detectorId", lambda e: e.res.detector),
        services=_AUDIT,
    ),
    _t("guardduty", "ListFindings", 1, _HUM, b.list_findings),
    _t("config", "DescribeConfigurationRecorders", 1, _OPS_SCAN, _NOOP, services=_AUDIT),
    _t("config", "DescribeConfigRules", 1, _OPS, _NOOP),
    _t("dynamodb", "DescribeTable", 3, _WORK | _OPS, b.table),
    _t("dynamodb", "ListTables", 1, _OPS, _NOOP),
    _t("rds", "DescribeDBInstances", 3, _OPS_SCAN, _NOOP, services=_AUDIT),
    _t("rds", "DescribeDBClusters", 1, _OPS_SCAN, _NOOP, services=_AUDIT),
    _t("ecr", "GetAuthorizationToken", 3, frozenset({"ci", "workload"}), _NOOP),
    _t(
        "elasticloadbalancing",
        "DescribeLoadBalancers",
        3,
        _OPS_SCAN,
        b.static({"pageSize": 400}),
        services=_AUDIT,
    ),
    _t("elasticloadbalancing", "DescribeTargetHealth", 2, _OPS | {"workload"}, b.target_health),
    _t("autoscaling", "DescribeAutoScalingGroups", 3, _OPS_SCAN, _NOOP, services=_AUDIT),
)
