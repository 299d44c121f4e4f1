"""`trailrelay doctor` against moto in server mode (boto3 speaks HTTP to 127.0.0.1).

A well-configured organization trail, bucket, queue and fast path passes; each misconfiguration,
made one at a time, is reported with its severity and fix; a read the identity may not make
is a "could not check" finding, never a pass. Where moto leaves a field blank (MOTO.md) the test
says how it supplies it.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
from click.testing import CliRunner

from trailrelay.cli.main import cli
from trailrelay.detection.calls import high_risk_calls
from trailrelay.doctor.aws import Clients
from trailrelay.doctor.context import Settings
from trailrelay.doctor.findings import Report, Severity
from trailrelay.doctor.forwarding import needed_visibility
from trailrelay.doctor.run import run_doctor
from trailrelay.sources.aws import aws_client

cfnlint_decode = pytest.importorskip("cfnlint.decode")

REGION = "us-east-1"
BUCKET = "org-trail-logs"
TRAIL = "org-trail"
KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/0f0e0d0c-0b0a-0908-0706-050403020100"
TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "eventbridge-lambda" / "template.yaml"
FAST_PATH_FUNCTION = "arn:aws:lambda:us-east-1:123456789012:function:trailrelay-fast-path"


def _post(endpoint: str, path: str, body: bytes = b"") -> None:
    req = urllib.request.Request(
        f"{endpoint}{path}", data=body, method="POST", headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


@pytest.fixture
def aws(aws_env: str) -> Iterator[str]:
    """Fresh moto backends: DescribeTrails and ListRules return everything the server holds."""
    _post(aws_env, "/moto-api/reset")
    yield aws_env
    _post(aws_env, "/moto-api/reset-auth", b"inf")
    _post(aws_env, "/moto-api/reset")


@dataclass
class World:
    org_id: str
    trail_arn: str
    queue_url: str
    queue_arn: str
    dlq_arn: str

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION)


def _fast_path_pattern() -> dict[str, Any]:
    """The EventBridge pattern of the shipped fast-path template (deploy/eventbridge-lambda)."""
    template, errors = cfnlint_decode.decode(str(TEMPLATE))
    assert not errors
    events = template["Resources"]["Function"]["Properties"]["Events"]
    return dict(events["HighRiskCalls"]["Properties"]["Pattern"])


def _cloudtrail_policy(trail_arn: str, org_id: str, extra: list[dict[str, Any]] | None = None) -> str:
    statements = [
        {
            "Sid": "AWSCloudTrailAclCheck",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "s3:GetBucketAcl",
            "Resource": f"arn:aws:s3:::{BUCKET}",
            "Condition": {"StringEquals": {"aws:SourceArn": trail_arn}},
        },
        {
            "Sid": "AWSCloudTrailWrite",
            "Effect": "Allow",
            "Principal": {"Service": "cloudtrail.amazonaws.com"},
            "Action": "s3:PutObject",
            "Resource": f"arn:aws:s3:::{BUCKET}/AWSLogs/*",
            "Condition": {
                "StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control", "aws:SourceOrgID": org_id}
            },
        },
        *(extra or []),
    ]
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


def build_world(lock: tuple[str, int] = ("COMPLIANCE", 400)) -> World:
    """An organization trail as it should be, its locked bucket, an SQS queue and the fast path.

    ``lock`` is set before any object is written: moto refuses to change a non-empty bucket's
    default retention (AWS allows it).
    """
    org_id = boto3.client("organizations", region_name=REGION).create_organization(FeatureSet="ALL")[
        "Organization"
    ]["Id"]
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(
        Bucket=BUCKET,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": lock[0], "Days": lock[1]}},
        },
    )
    s3.put_public_access_block(
        Bucket=BUCKET,
        PublicAccessBlockConfiguration=dict.fromkeys(
            ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True
        ),
    )
    s3.put_bucket_lifecycle_configuration(
        Bucket=BUCKET,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "expire",
                    "Status": "Enabled",
                    "Filter": {"Prefix": "AWSLogs/"},
                    "Expiration": {"Days": 800},
                }
            ]
        },
    )
    ct = boto3.client("cloudtrail", region_name=REGION)
    trail_arn = ct.create_trail(
        Name=TRAIL,
        S3BucketName=BUCKET,
        IsMultiRegionTrail=True,
        IsOrganizationTrail=True,
        EnableLogFileValidation=True,
        IncludeGlobalServiceEvents=True,
        KmsKeyId=KMS_KEY,
    )["TrailARN"]
    ct.start_logging(Name=TRAIL)
    ct.put_event_selectors(
        TrailName=TRAIL,
        AdvancedEventSelectors=[
            {"Name": "management", "FieldSelectors": [{"Field": "eventCategory", "Equals": ["Management"]}]},
            {
                "Name": "s3 data",
                "FieldSelectors": [
                    {"Field": "eventCategory", "Equals": ["Data"]},
                    {"Field": "resources.type", "Equals": ["AWS::S3::Object"]},
                ],
            },
        ],
    )
    s3.put_bucket_policy(Bucket=BUCKET, Policy=_cloudtrail_policy(trail_arn, org_id))
    s3.put_object(
        Bucket=BUCKET,
        Key=f"AWSLogs/{org_id}/111122223333/CloudTrail/us-east-1/2026/03/02/"
        "111122223333_CloudTrail_us-east-1_20260302T0000Z_abcdefghijklmnop.json.gz",
        Body=b"\x1f\x8b" + b"x" * 2048,
    )
    sqs = boto3.client("sqs", region_name=REGION)
    dlq_url = sqs.create_queue(QueueName="trail-objects-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue_url = sqs.create_queue(
        QueueName="trail-objects",
        Attributes={
            "VisibilityTimeout": "300",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
        },
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    s3.put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "AWSLogs/"}]}},
                }
            ]
        },
    )
    events = boto3.client("events", region_name=REGION)
    events.put_rule(
        Name="trailrelay-fast-path", EventPattern=json.dumps(_fast_path_pattern()), State="ENABLED"
    )
    events.put_targets(Rule="trailrelay-fast-path", Targets=[{"Id": "trailrelay", "Arn": FAST_PATH_FUNCTION}])
    return World(org_id, trail_arn, queue_url, queue_arn, dlq_arn)


def settings(world: World, **kw: Any) -> Settings:
    base: dict[str, Any] = {
        "region": REGION,
        "trail": TRAIL,
        "bucket": BUCKET,
        "retention_days": 365,
        "queue_url": world.queue_url,
        "queue_region": REGION,
        "forwarding": True,
    }
    base.update(kw)
    return Settings(**base)


def clients(hook: Callable[[str, Any], None] | None = None) -> Clients:
    """Real clients (AWS_ENDPOINT_URL points at moto); ``hook`` may register botocore handlers."""

    def make(service: str, region: str | None) -> Any:
        client = aws_client(service, region=region)
        if hook is not None:
            hook(service, client)
        return client

    return Clients(region=REGION, factory=make)


def checks(report: Report) -> dict[str, tuple[Severity, bool]]:
    return {f.check: (f.severity, f.checked) for f in report.findings}


EVERY_CHECK = {
    "no-trail",
    "trail-not-logging",
    "trail-delivery-error",
    "trail-not-multi-region",
    "trail-not-organization",
    "log-file-validation-off",
    "global-service-events-off",
    "management-events-incomplete",
    "bucket-object-lock",
    "bucket-object-lock-mode",
    "bucket-retention-short",
    "bucket-lifecycle-expires-logs",
    "bucket-public",
    "bucket-public-access-not-blocked",
    "bucket-policy-write",
    "logs-not-kms-encrypted",
    "queue-no-dlq",
    "queue-visibility-short",
    "notifications-not-reaching-queue",
    "fast-path-missing",
}


def test_a_well_configured_organization_trail_passes(aws: str) -> None:
    world = build_world()
    report = run_doctor(settings(world), clients())
    assert report.findings == []
    assert {p.check for p in report.passed} == EVERY_CHECK
    assert report.context["organization"] == world.org_id
    assert report.context["trails"] == [world.trail_arn]
    assert report.exit_status(Severity.INFO) == 0


def test_the_shipped_fast_path_template_matches_the_pack() -> None:
    """What the good world deploys is the template; doctor passes it only if it names every call."""
    names, _ = high_risk_calls()
    assert set(_fast_path_pattern()["detail"]["eventName"]) == names


# -- one misconfiguration at a time ----------------------------------------------------------------


def _ct(world: World) -> Any:
    return world.client("cloudtrail")


def _update(**kw: Any) -> Callable[[World], None]:
    return lambda w: _ct(w).update_trail(Name=TRAIL, **kw)


def _selectors(**kw: Any) -> Callable[[World], None]:
    return lambda w: _ct(w).put_event_selectors(TrailName=TRAIL, **kw)


def _lock(mode: str, days: int) -> dict[str, Any]:
    return {"lock": (mode, days)}


def _policy_with(statement: dict[str, Any]) -> Callable[[World], None]:
    return lambda w: w.client("s3").put_bucket_policy(
        Bucket=BUCKET, Policy=_cloudtrail_policy(w.trail_arn, w.org_id, [statement])
    )


def _unscoped_cloudtrail(w: World) -> None:
    policy = json.loads(_cloudtrail_policy(w.trail_arn, w.org_id))
    del policy["Statement"][1]["Condition"]["StringEquals"]["aws:SourceOrgID"]
    w.client("s3").put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(policy))


def _wildcard_source_arn(w: World) -> None:
    """Scoped in form only: aws:SourceArn is there, but matches every account's trails."""
    policy = json.loads(_cloudtrail_policy(w.trail_arn, w.org_id))
    del policy["Statement"][1]["Condition"]["StringEquals"]["aws:SourceOrgID"]
    policy["Statement"][1]["Condition"]["StringLike"] = {"aws:SourceArn": "arn:aws:cloudtrail:*"}
    w.client("s3").put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(policy))


def _lifecycle(**rule: Any) -> Callable[[World], None]:
    return lambda w: w.client("s3").put_bucket_lifecycle_configuration(
        Bucket=BUCKET,
        LifecycleConfiguration={
            "Rules": [{"ID": "purge", "Status": "Enabled", "Filter": {"Prefix": "AWSLogs/"}, **rule}]
        },
    )


def _no_redrive(w: World) -> None:
    w.client("sqs").set_queue_attributes(QueueUrl=w.queue_url, Attributes={"RedrivePolicy": ""})


def _no_notifications(w: World) -> None:
    w.client("s3").put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={})


def _no_fast_path(w: World) -> None:
    events = w.client("events")
    events.remove_targets(Rule="trailrelay-fast-path", Ids=["trailrelay"])  # AWS keeps a rule with targets
    events.delete_rule(Name="trailrelay-fast-path")


def _partial_fast_path(w: World) -> None:
    pattern = _fast_path_pattern()
    pattern["detail"]["eventName"] = ["StopLogging", "DeleteTrail"]
    w.client("events").put_rule(
        Name="trailrelay-fast-path", EventPattern=json.dumps(pattern), State="ENABLED"
    )


def _recreated(w: World, *, kms: bool = True, **selectors: Any) -> None:
    """The trail made again: moto keeps a KmsKeyId once set, and keeps advanced selectors next to
    basic ones put later (AWS replaces them); a new trail is what AWS has after either change."""
    ct = _ct(w)
    ct.delete_trail(Name=TRAIL)
    arn = ct.create_trail(
        Name=TRAIL,
        S3BucketName=BUCKET,
        IsMultiRegionTrail=True,
        IsOrganizationTrail=True,
        EnableLogFileValidation=True,
        IncludeGlobalServiceEvents=True,
        **({"KmsKeyId": KMS_KEY} if kms else {}),
    )["TrailARN"]
    assert arn == w.trail_arn
    ct.start_logging(Name=TRAIL)
    ct.put_event_selectors(
        TrailName=TRAIL,
        **(
            selectors
            or {
                "AdvancedEventSelectors": [
                    {
                        "Name": "management",
                        "FieldSelectors": [{"Field": "eventCategory", "Equals": ["Management"]}],
                    }
                ]
            }
        ),
    )


def _no_kms(w: World) -> None:
    _recreated(w, kms=False)


def _basic(**selector: Any) -> Callable[[World], None]:
    return lambda w: _recreated(w, EventSelectors=[{"IncludeManagementEvents": True, **selector}])


OTHER_ACCOUNT_WRITE = {
    "Sid": "PartnerWrite",
    "Effect": "Allow",
    "Principal": {"AWS": "arn:aws:iam::444455556666:root"},
    "Action": ["s3:PutObject", "s3:DeleteObject"],
    "Resource": f"arn:aws:s3:::{BUCKET}/*",
}
ANYONE_WRITE = {
    "Sid": "Anyone",
    "Effect": "Allow",
    "Principal": "*",
    "Action": "s3:*",
    "Resource": f"arn:aws:s3:::{BUCKET}/*",
}

# (id, change or build_world arguments, expected check, severity, a piece of the fix, other checks it trips)
MISCONFIGURATIONS: list[tuple[str, Callable[[World], Any] | dict[str, Any], str, Severity, str, set[str]]] = [
    ("not-logging", lambda w: _ct(w).stop_logging(Name=TRAIL), "trail-not-logging", Severity.CRITICAL,
     "aws cloudtrail start-logging --name arn:aws:cloudtrail:us-east-1:123456789012:trail/org-trail --region us-east-1", set()),
    ("single-region", _update(IsMultiRegionTrail=False), "trail-not-multi-region", Severity.HIGH,
     "update-trail --name arn:aws:cloudtrail:us-east-1:123456789012:trail/org-trail --region us-east-1 --is-multi-region-trail", set()),
    ("not-org", _update(IsOrganizationTrail=False), "trail-not-organization", Severity.HIGH,
     "--is-organization-trail", set()),
    ("no-validation", _update(EnableLogFileValidation=False), "log-file-validation-off", Severity.HIGH,
     "--enable-log-file-validation", set()),
    ("no-global", _update(IncludeGlobalServiceEvents=False), "global-service-events-off", Severity.HIGH,
     "--include-global-service-events", set()),
    ("write-only", _selectors(AdvancedEventSelectors=[{"Name": "m", "FieldSelectors": [
        {"Field": "eventCategory", "Equals": ["Management"]}, {"Field": "readOnly", "Equals": ["false"]}]}]),
     "management-events-incomplete", Severity.HIGH, '"Equals":["Management"]', set()),
    ("data-only", _selectors(AdvancedEventSelectors=[{"Name": "d", "FieldSelectors": [
        {"Field": "eventCategory", "Equals": ["Data"]}, {"Field": "resources.type", "Equals": ["AWS::S3::Object"]}]}]),
     "management-events-incomplete", Severity.CRITICAL, "put-event-selectors --trail-name", set()),
    ("kms-excluded", _basic(ReadWriteType="All", ExcludeManagementEventSources=["kms.amazonaws.com"]),
     "management-events-incomplete", Severity.MEDIUM, "put-event-selectors", set()),
    ("basic-read-only", _basic(ReadWriteType="ReadOnly"),
     "management-events-incomplete", Severity.HIGH, "put-event-selectors", set()),
    ("governance", _lock("GOVERNANCE", 400), "bucket-object-lock-mode", Severity.MEDIUM,
     '"Mode":"COMPLIANCE","Days":365', set()),
    ("short-lock", _lock("COMPLIANCE", 30), "bucket-retention-short", Severity.MEDIUM,
     "put-object-lock-configuration --bucket org-trail-logs", set()),
    ("lifecycle", lambda w: w.client("s3").put_bucket_lifecycle_configuration(Bucket=BUCKET, LifecycleConfiguration={
        "Rules": [{"ID": "cheap", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 90}}]}),
     "bucket-lifecycle-expires-logs", Severity.MEDIUM, "Expiration.Days to at least 365", set()),
    ("lifecycle-date", _lifecycle(Expiration={"Date": "2027-01-01T00:00:00Z"}), "bucket-lifecycle-expires-logs",
     Severity.MEDIUM, "remove Expiration.Date", set()),
    ("public-access", lambda w: w.client("s3").delete_public_access_block(Bucket=BUCKET),
     "bucket-public-access-not-blocked", Severity.HIGH,
     "put-public-access-block --bucket org-trail-logs --public-access-block-configuration BlockPublicAcls=true", set()),
    ("other-writer", _policy_with(OTHER_ACCOUNT_WRITE), "bucket-policy-write", Severity.HIGH,
     '"aws:SourceArn":"arn:aws:cloudtrail:us-east-1:123456789012:trail/org-trail"', set()),
    ("anyone-writes", _policy_with(ANYONE_WRITE), "bucket-policy-write", Severity.CRITICAL,
     "put-bucket-policy --bucket org-trail-logs", {"bucket-public"}),
    ("unscoped-cloudtrail", _unscoped_cloudtrail, "bucket-policy-write", Severity.MEDIUM,
     '"Principal":{"Service":"cloudtrail.amazonaws.com"}', set()),
    ("wildcard-source-arn", _wildcard_source_arn, "bucket-policy-write", Severity.MEDIUM,
     '"aws:SourceArn":"arn:aws:cloudtrail:us-east-1:123456789012:trail/org-trail"', set()),
    ("no-kms", _no_kms, "logs-not-kms-encrypted", Severity.INFO,
     "--kms-key-id alias/cloudtrail", set()),
    ("no-dlq", _no_redrive, "queue-no-dlq", Severity.MEDIUM, "RedrivePolicy", set()),
    ("short-visibility", lambda w: w.client("sqs").set_queue_attributes(
        QueueUrl=w.queue_url, Attributes={"VisibilityTimeout": "30"}), "queue-visibility-short", Severity.MEDIUM,
     f"--attributes VisibilityTimeout={needed_visibility(2050)}", set()),
    ("no-notifications", _no_notifications, "notifications-not-reaching-queue", Severity.HIGH,
     "put-bucket-notification-configuration --bucket org-trail-logs", set()),
    ("no-fast-path", _no_fast_path, "fast-path-missing", Severity.MEDIUM, "deploy/eventbridge-lambda/template.yaml",
     set()),
    ("fast-path-without-target", lambda w: w.client("events").remove_targets(Rule="trailrelay-fast-path", Ids=["trailrelay"]),
     "fast-path-missing", Severity.MEDIUM, "aws events put-targets --rule trailrelay-fast-path --region us-east-1", set()),
    ("partial-fast-path", _partial_fast_path, "fast-path-missing", Severity.LOW, "ConsoleLogin", set()),
]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "check", "severity", "fix", "also"),
    [pytest.param(*m[1:], id=m[0]) for m in MISCONFIGURATIONS],
)
def test_each_misconfiguration_is_reported_with_its_severity_and_fix(
    aws: str,
    change: Callable[[World], Any] | dict[str, Any],
    check: str,
    severity: Severity,
    fix: str,
    also: set[str],
) -> None:
    if isinstance(change, dict):
        world = build_world(**change)
    else:
        world = build_world()
        change(world)
    report = run_doctor(settings(world), clients())
    found = checks(report)
    assert set(found) == {check} | also, [f.as_dict() for f in report.findings]
    assert found[check] == (severity, True)
    [finding] = [f for f in report.findings if f.check == check]
    assert fix in finding.fix
    assert finding.why and finding.title
    assert check not in {p.check for p in report.passed}


def _fast_path_names(event_name: list[Any]) -> Callable[[World], None]:
    def change(w: World) -> None:
        pattern = _fast_path_pattern()
        pattern["detail"]["eventName"] = event_name
        w.client("events").put_rule(
            Name="trailrelay-fast-path", EventPattern=json.dumps(pattern), State="ENABLED"
        )

    return change


NAMES = sorted(high_risk_calls()[0])


@pytest.mark.parametrize(
    ("event_name", "missing", "checked"),
    [
        ([{"prefix": "Stop"}, "DeleteTrail"], [n for n in NAMES if not n.startswith("Stop") and n != "DeleteTrail"], True),
        ([{"anything-but": ["StopLogging", "ListBuckets"]}], ["StopLogging"], True),
        ([{"anything-but": {"prefix": "Get"}}], [], True),
        ([{"wildcard": "*Public*"}, {"suffix": "Trail"}], [n for n in NAMES if "Public" not in n and not n.endswith("Trail")], True),
        ([{"prefix": {"equals-ignore-case": "stoplogging"}}, *(n for n in NAMES if n != "StopLogging")], [], True),
        ([{"exists": True}], [], True),
        ([{"regex": "^Stop"}], NAMES, False),  # an operator doctor does not know: it says so
        ([{"regex": "^Stop"}, *NAMES], [], True),  # the names decide it anyway
    ],
)  # fmt: skip
def test_fast_path_content_filters_are_evaluated(
    aws: str, tmp_path: Path, event_name: list[Any], missing: list[str], checked: bool
) -> None:
    """EventBridge content filtering in detail.eventName (`doctor -c` crashed with a TypeError)."""
    world = build_world()
    _fast_path_names(event_name)(world)
    args = ["doctor", "-c", str(_config(tmp_path, world)), "--json", "--fail-on", "medium"]
    result = CliRunner().invoke(cli, args)
    report = orjson.loads(result.stdout)
    found = [f for f in report["findings"] if f["check"] == "fast-path-missing"]
    assert [f["check"] for f in report["findings"]] == [f["check"] for f in found]  # nothing else changed
    passed = "fast-path-missing" in {p["check"] for p in report["passed"]}
    if not missing:
        assert (found, passed, result.exit_code) == ([], True, 0)
        return
    [finding] = found
    assert finding["details"]["missing"] == missing
    assert finding["checked"] is checked
    assert not passed
    if not checked:
        assert finding["title"].startswith(
            "could not check whether the EventBridge rule trailrelay-fast-path"
        )
        assert '"regex"' in finding["title"]
        assert finding["severity"] == "medium"  # the worst it could not rule out
        assert result.exit_code == 1


CLOUDTRAIL_CALLS = ["DeleteTrail", "PutEventSelectors", "StopLogging", "UpdateTrail"]


@pytest.mark.parametrize(
    ("pattern", "missing", "checked"),
    [
        # S3's own events never carry a CloudTrail API call, whatever eventName says
        ({"source": ["aws.s3"], "detail-type": ["Object Created"], "detail": {"eventName": NAMES}}, NAMES, True),
        ({"source": ["aws.cloudtrail"], "detail": {"eventName": NAMES}}, [n for n in NAMES if n not in CLOUDTRAIL_CALLS], True),
        ({"detail": {"eventSource": ["cloudtrail.amazonaws.com"], "eventName": NAMES}}, [n for n in NAMES if n not in CLOUDTRAIL_CALLS], True),
        # the console sign-in has its own detail-type
        ({"detail-type": ["AWS API Call via CloudTrail"], "detail": {"eventName": NAMES}}, ["ConsoleLogin"], True),
        ({"detail": {"eventSource": [{"anything-but": "signin.amazonaws.com"}], "eventName": NAMES}}, ["ConsoleLogin"], True),
        ({"source": [{"prefix": "aws."}], "detail-type": [{"suffix": "via CloudTrail"}], "detail": {"eventName": NAMES}}, [], True),
        ({"source": [{"wildcard": "aws.*"}], "detail": {"eventSource": [{"exists": True}], "eventName": NAMES}}, [], True),
        ({"detail": {"eventSource": [{"regex": "x"}], "eventName": NAMES}}, NAMES, False),
        ({"$or": [{"source": ["aws.cloudtrail"]}, {"source": ["aws.iam"]}], "detail": {"eventName": NAMES}}, NAMES, False),
    ],
)  # fmt: skip
def test_a_fast_path_rule_must_match_the_calls_as_cloudtrail_events(
    aws: str, tmp_path: Path, pattern: dict[str, Any], missing: list[str], checked: bool
) -> None:
    """source, detail-type and detail.eventSource are held against each call as EventBridge sends it."""
    world = build_world()
    world.client("events").put_rule(
        Name="trailrelay-fast-path", EventPattern=json.dumps(pattern), State="ENABLED"
    )
    args = ["doctor", "-c", str(_config(tmp_path, world)), "--json", "--fail-on", "info"]
    report = orjson.loads(CliRunner().invoke(cli, args).stdout)
    found = [f for f in report["findings"] if f["check"] == "fast-path-missing"]
    assert [f["check"] for f in report["findings"]] == [f["check"] for f in found]
    passed = "fast-path-missing" in {p["check"] for p in report["passed"]}
    if not missing:
        assert (found, passed) == ([], True)
        return
    [finding] = found
    assert (finding["details"]["missing"], finding["checked"], passed) == (missing, checked, False)
    if missing == NAMES and checked:
        assert finding["severity"] == "medium"
    if not checked:
        assert "could not check whether the EventBridge rule trailrelay-fast-path" in finding["title"]


def test_a_fast_path_rule_counts_only_with_a_target(aws: str, tmp_path: Path) -> None:
    """Every call named but no target: nothing is sent anywhere, whatever another rule covers."""
    world = build_world()
    events = world.client("events")
    events.remove_targets(Rule="trailrelay-fast-path", Ids=["trailrelay"])
    events.put_rule(
        Name="stop-only", EventPattern=json.dumps({"detail": {"eventName": ["StopLogging"]}}), State="ENABLED"
    )
    events.put_targets(Rule="stop-only", Targets=[{"Id": "t", "Arn": FAST_PATH_FUNCTION}])
    config = str(_config(tmp_path, world))
    result = CliRunner().invoke(cli, ["doctor", "-c", config, "--json", "--fail-on", "low"])
    assert result.exit_code == 1
    [finding] = orjson.loads(result.stdout)["findings"]
    assert (finding["check"], finding["severity"]) == ("fast-path-missing", "low")
    assert (
        f"trailrelay-fast-path in us-east-1 matches {len(NAMES)} high-risk calls but has no target"
        in finding["title"]
    )
    assert finding["details"] == {
        "rule": "trailrelay-fast-path",
        "missing": [n for n in NAMES if n != "StopLogging"],
    }
    events.put_targets(Rule="trailrelay-fast-path", Targets=[{"Id": "t", "Arn": world.queue_arn}])
    result = CliRunner().invoke(cli, ["doctor", "-c", config, "--json", "--fail-on", "info"])
    assert (result.exit_code, orjson.loads(result.stdout)["findings"]) == (0, [])


def test_expiring_deleted_versions_counts_unless_object_lock_holds_them(aws: str) -> None:
    """A deleted (or overwritten) log file stays a noncurrent version until NoncurrentDays pass."""
    rule = _lifecycle(Expiration={"Days": 800}, NoncurrentVersionExpiration={"NoncurrentDays": 30})
    world = build_world()  # locked for 400 days: lifecycle cannot delete a version before that
    rule(world)
    assert run_doctor(settings(world), clients()).findings == []

    _post(aws, "/moto-api/reset")
    world = build_world(lock=("COMPLIANCE", 30))
    rule(world)
    report = run_doctor(settings(world), clients())
    assert set(checks(report)) == {"bucket-retention-short", "bucket-lifecycle-expires-logs"}
    [finding] = [f for f in report.findings if f.check == "bucket-lifecycle-expires-logs"]
    assert finding.title == (
        "lifecycle rules delete log files before 365 days: purge (deleted or overwritten log files 30 days later)"
    )
    assert "NoncurrentVersionExpiration.NoncurrentDays to at least 365" in finding.fix


def test_a_delivery_error_is_reported(aws: str) -> None:
    """moto never sets LatestDeliveryError (MOTO.md): a botocore after-call handler adds it to the
    real GetTrailStatus answer; every other read goes to moto unchanged."""

    def add_error(service: str, client: Any) -> None:
        if service == "cloudtrail":

            def handler(parsed: dict[str, Any], **_: Any) -> None:
                parsed["LatestDeliveryError"] = "AccessDenied"

            client.meta.events.register("after-call.cloudtrail.GetTrailStatus", handler)

    world = build_world()
    report = run_doctor(settings(world), clients(add_error))
    assert checks(report) == {"trail-delivery-error": (Severity.HIGH, True)}
    [finding] = report.findings
    assert "AccessDenied" in finding.title
    assert f"aws:SourceArn = {world.trail_arn}" in finding.fix


def test_no_matching_trail_is_critical(aws: str) -> None:
    world = build_world()
    report = run_doctor(settings(world, trail="other-trail"), clients())
    assert checks(report)["no-trail"] == (Severity.CRITICAL, True)
    [finding] = [f for f in report.findings if f.check == "no-trail"]
    assert (
        "create-trail --name other-trail --s3-bucket-name org-trail-logs --is-multi-region-trail"
        in finding.fix
    )
    assert "--is-organization-trail" in finding.fix


def test_a_bucket_without_object_lock(aws: str) -> None:
    world = build_world()
    s3 = world.client("s3")
    s3.create_bucket(Bucket="plain-logs")
    s3.put_public_access_block(
        Bucket="plain-logs",
        PublicAccessBlockConfiguration=dict.fromkeys(
            ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True
        ),
    )
    s3.put_bucket_policy(
        Bucket="plain-logs",
        Policy=_cloudtrail_policy(world.trail_arn, world.org_id).replace(BUCKET, "plain-logs"),
    )
    _ct(world).update_trail(Name=TRAIL, S3BucketName="plain-logs")
    report = run_doctor(settings(world, bucket="plain-logs", forwarding=False), clients())
    assert checks(report) == {"bucket-object-lock": (Severity.HIGH, True)}
    [finding] = report.findings
    assert finding.resource == "s3://plain-logs"
    assert (
        "put-bucket-versioning --bucket plain-logs --versioning-configuration Status=Enabled" in finding.fix
    )
    assert '"Mode":"COMPLIANCE","Days":365' in finding.fix


def test_notifications_through_sns_reach_the_queue(aws: str) -> None:
    world = build_world()
    sns = world.client("sns")
    topic = sns.create_topic(Name="trail-objects")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=world.queue_arn)
    world.client("s3").put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={
            "TopicConfigurations": [{"TopicArn": topic, "Events": ["s3:ObjectCreated:*"]}]
        },
    )
    report = run_doctor(settings(world), clients())
    assert report.findings == []
    assert ("notifications-not-reaching-queue", f"s3://{BUCKET}") in {
        (p.check, p.resource) for p in report.passed
    }


def _notify(w: World, *rules: tuple[str, str]) -> None:
    w.client("s3").put_bucket_notification_configuration(
        Bucket=BUCKET,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": w.queue_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": n, "Value": v} for n, v in rules]}},
                }
            ]
        },
    )


@pytest.mark.parametrize(
    ("rules", "reaches"),
    [
        ([("prefix", "AWSLogs/"), ("suffix", ".json")], False),  # log files end in .json.gz
        ([("prefix", "AWSLogs/123456789012/CloudTrail-Digest/")], False),  # digest files only
        ([("prefix", "AWSLogs/{org}/123456789012/")], False),  # the management account only
        ([("prefix", "AWSLogs/{org}/111122223333/CloudTrail/us-east-1/")], False),  # one account, one region
        ([("prefix", "AWSLogs/{org}/111122223333/CloudTrail/us-east-1/2026/")], False),  # one year
        ([("suffix", "CloudTrail_us-east-1_20260302T0000Z_abcdefghijklmnop.json.gz")], False),  # one file
        ([("prefix", "AWSLogs/{org}/"), ("suffix", ".json.gz")], True),
        ([("prefix", "AWSLogs/o-"), ("suffix", "gz")], True),
        ([("suffix", ".json.gz")], True),
    ],
)  # fmt: skip
def test_a_notification_filter_must_pass_every_log_file(
    aws: str, rules: list[tuple[str, str]], reaches: bool
) -> None:
    """Prefix and suffix rules both held against the trail's log-file keys (not its digests)."""
    world = build_world()
    _notify(world, *((n, v.replace("{org}", world.org_id)) for n, v in rules))
    report = run_doctor(settings(world), clients())
    found = checks(report)
    if reaches:
        assert found == {}
    else:
        assert found == {"notifications-not-reaching-queue": (Severity.HIGH, True)}


def test_a_notification_filter_on_an_unknown_account_is_could_not_check(aws: str) -> None:
    """No trail writes to the bucket: a filter naming one account can be neither passed nor failed."""
    world = build_world()
    _notify(world, ("prefix", "AWSLogs/123456789012/"), ("suffix", ".json.gz"))
    report = run_doctor(settings(world, trail="another-trail"), clients())
    [finding] = [f for f in report.findings if f.check == "notifications-not-reaching-queue"]
    assert (finding.severity, finding.checked) == (Severity.HIGH, False)
    assert "notifications-not-reaching-queue" not in {p.check for p in report.passed}
    _notify(world, ("prefix", "AWSLogs/123456789012/CloudTrail-Digest/"))
    report = run_doctor(settings(world, trail="another-trail"), clients())
    [finding] = [f for f in report.findings if f.check == "notifications-not-reaching-queue"]
    assert (finding.severity, finding.checked) == (Severity.HIGH, True)
    _notify(world, ("prefix", "AWSLogs/"))
    report = run_doctor(settings(world, trail="another-trail"), clients())
    assert "notifications-not-reaching-queue" in {p.check for p in report.passed}


# -- permissions -----------------------------------------------------------------------------------


def test_a_denied_read_is_could_not_check_never_a_pass(aws: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """moto enforces IAM once told to (its /moto-api/reset-auth, as INITIAL_NO_AUTH_ACTION_COUNT=0
    would): a user allowed everything except two reads runs doctor; no Stubber needed."""
    world = build_world()
    iam = world.client("iam")
    iam.create_user(UserName="auditor")
    iam.put_user_policy(
        UserName="auditor",
        PolicyName="doctor",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "*", "Resource": "*"},
                    {
                        "Effect": "Deny",
                        "Action": [
                            "s3:GetBucketPolicy",
                            "cloudtrail:GetEventSelectors",
                            "sqs:GetQueueAttributes",
                        ],
                        "Resource": "*",
                    },
                ],
            }
        ),
    )
    key = iam.create_access_key(UserName="auditor")["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    _post(aws, "/moto-api/reset-auth", b"0")
    try:
        report = run_doctor(settings(world), clients())
    finally:
        _post(aws, "/moto-api/reset-auth", b"inf")
    unchecked = {f.check: f for f in report.findings if not f.checked}
    assert set(unchecked) == {"bucket-policy-write", "management-events-incomplete", "queue-no-dlq"}
    assert {f.check for f in report.findings} == set(unchecked)  # everything readable still passes
    policy = unchecked["bucket-policy-write"]
    assert (
        policy.title
        == "could not check who may write to the bucket (its policy): needs permission s3:GetBucketPolicy"
    )
    assert policy.severity is Severity.CRITICAL  # the worst it could have found
    assert "Allow s3:GetBucketPolicy" in policy.fix
    selectors = unchecked["management-events-incomplete"]
    assert selectors.title.endswith("needs permission cloudtrail:GetEventSelectors")
    assert selectors.severity is Severity.CRITICAL
    assert unchecked["queue-no-dlq"].title.endswith("needs permission sqs:GetQueueAttributes")
    # what could not be read is never counted as passed, nor are the checks that depend on it
    passed = {p.check for p in report.passed}
    assert not passed & {"bucket-policy-write", "management-events-incomplete", "queue-no-dlq",
                         "queue-visibility-short", "notifications-not-reaching-queue"}  # fmt: skip
    assert report.exit_status(Severity.HIGH) == 1


# -- the command -----------------------------------------------------------------------------------


def _config(tmp_path: Path, world: World, *, send: bool = False, extra: str = "") -> Path:
    path = tmp_path / "trailrelay.toml"
    path.write_text(
        f"""
[source]
type = "sqs"
queue_url = "{world.queue_url}"
region = "{REGION}"

[[sinks]]
type = "file"
path = "out/findings.ndjson"

[doctor]
trail = "{TRAIL}"
bucket = "{BUCKET}"
retention_days = 365
send = {str(send).lower()}
{extra}
"""
    )
    return path


def test_command_json_and_exit_status(aws: str, tmp_path: Path) -> None:
    world = build_world()
    config = _config(tmp_path, world)
    runner = CliRunner()
    good = runner.invoke(cli, ["doctor", "-c", str(config), "--json", "--fail-on", "info"])
    assert good.exit_code == 0, good.output
    doc = orjson.loads(good.output)
    assert doc["findings"] == []
    assert {p["check"] for p in doc["passed"]} == EVERY_CHECK
    assert doc["fail_on"] == "info"

    _no_redrive(world)  # one medium finding
    at_high = runner.invoke(cli, ["doctor", "-c", str(config), "--json"])
    assert at_high.exit_code == 0  # default --fail-on high
    [finding] = orjson.loads(at_high.output)["findings"]
    assert finding["check"] == "queue-no-dlq"
    assert finding["severity"] == "medium"
    assert runner.invoke(cli, ["doctor", "-c", str(config), "--fail-on", "medium"]).exit_code == 1
    never = runner.invoke(cli, ["doctor", "-c", str(config), "--fail-on", "never"])
    assert never.exit_code == 0
    assert (
        "OK: 1 finding (1 medium), 19 checks passed; no finding fails the run (--fail-on never)"
        in " ".join(never.output.split())
    )

    text = runner.invoke(cli, ["doctor", "-c", str(config), "--fail-on", "medium"])
    assert "queue-no-dlq" in text.output
    assert "fix:" in text.output and "set-queue-attributes" in text.output
    assert "FAIL: 1 finding (1 medium), 19 checks passed; failing on medium and above" in " ".join(
        text.output.split()
    )


def test_command_sees_a_wildcard_source_arn_and_a_dated_expiration(aws: str) -> None:
    """Both used to pass: a SourceArn naming no account, a rule deleting every log file on a date."""
    world = build_world()
    _wildcard_source_arn(world)
    _lifecycle(Expiration={"Date": "2027-01-01T00:00:00Z"})(world)
    result = CliRunner().invoke(cli, ["doctor", "--trail", TRAIL, "--json", "--fail-on", "medium"])
    assert result.exit_code == 1
    report = orjson.loads(result.stdout)
    found = {f["check"]: f for f in report["findings"]}
    assert set(found) == {"bucket-policy-write", "bucket-lifecycle-expires-logs"}
    assert "AWSCloudTrailWrite: cloudtrail.amazonaws.com" in found["bucket-policy-write"]["title"]
    assert found["bucket-lifecycle-expires-logs"]["title"].endswith("purge (every log file on 2027-01-01)")
    assert not {"bucket-policy-write", "bucket-lifecycle-expires-logs"} & {
        p["check"] for p in report["passed"]
    }


def test_command_retention_from_the_config_and_options(aws: str, tmp_path: Path) -> None:
    world = build_world()  # locked for 400 days
    config = _config(tmp_path, world).read_text().replace("retention_days = 365", "retention_days = 730")
    path = tmp_path / "long.toml"
    path.write_text(config)
    runner = CliRunner()
    result = runner.invoke(cli, ["doctor", "-c", str(path), "--json"])
    assert [f["check"] for f in orjson.loads(result.output)["findings"]] == ["bucket-retention-short"]
    assert result.exit_code == 0  # medium, below the default --fail-on high
    result = runner.invoke(cli, ["doctor", "-c", str(path), "--json", "--retention-days", "100"])
    assert orjson.loads(result.output)["findings"] == []


def test_send_delivers_each_finding_to_the_sinks_as_an_integrity_event(aws: str, tmp_path: Path) -> None:
    world = build_world()
    _ct(world).stop_logging(Name=TRAIL)
    _no_redrive(world)
    config = _config(tmp_path, world, send=True)
    result = CliRunner().invoke(cli, ["doctor", "-c", str(config), "--json"])
    assert result.exit_code == 1  # a critical finding, and every finding delivered
    lines = (tmp_path / "out" / "findings.ndjson").read_bytes().splitlines()
    events = [orjson.loads(line) for line in lines]
    assert sorted(e["check"] for e in events) == ["queue-no-dlq", "trail-not-logging"]
    stopped = next(e for e in events if e["check"] == "trail-not-logging")
    assert stopped["type"] == "trailrelay:doctor"
    assert stopped["verdict"] == "doctor:trail-not-logging"
    assert stopped["severity"] == "critical"
    assert stopped["account"] == "123456789012"
    assert stopped["organization"] == world.org_id
    assert stopped["problems"][0]["location"] == world.trail_arn
    assert "aws cloudtrail start-logging" in stopped["fix"]


def test_send_needs_a_config_and_permissions_prints_the_policy() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["doctor", "--send"])
    assert result.exit_code == 2
    assert "--send needs -c FILE" in result.output
    policy = json.loads(runner.invoke(cli, ["doctor", "--permissions"]).output)
    actions = policy["Statement"][0]["Action"]
    assert "s3:GetBucketPolicy" in actions and "cloudtrail:GetEventSelectors" in actions
    assert all(":Get" in a or ":List" in a or ":Describe" in a for a in actions)


def test_a_bad_config_is_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[source]\ntype = "files"\npath = "."\n[[sinks]]\ntype = "stdout"\n[doctor]\nretention_days = 0\n'
    )
    result = CliRunner().invoke(cli, ["doctor", "-c", str(path)])
    assert result.exit_code == 2
    assert "doctor.retention_days" in result.output


def test_without_a_region_doctor_says_how_to_give_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """botocore's NoRegionError came out as a traceback; it is a usage error (exit 2) now."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "config").write_text("[default]\n")  # no region in a shared config either
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 2, result.output
    assert "no AWS region to read the trail in: pass --region" in " ".join(result.output.split())
    assert isinstance(result.exception, SystemExit)  # not NoRegionError
