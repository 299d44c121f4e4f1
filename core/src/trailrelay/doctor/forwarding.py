"""Checks of the forwarding set-up: the SQS queue, the bucket's notifications, the fast path."""

from __future__ import annotations

import json
import math
import shlex
from typing import Any

from trailrelay.doctor.aws import read
from trailrelay.doctor.context import Context
from trailrelay.doctor.findings import Finding, Severity

__all__ = ["SECONDS_PER_MIB", "check_fast_path", "check_notifications", "check_queue", "needed_visibility"]

SECONDS_PER_MIB = 10.0
"""Time allowed per compressed MiB of one object to read, parse and deliver it (conservative:
gzip CloudTrail expands about tenfold, and a SIEM takes a few MB/s per connection)."""
BASE_SECONDS = 60.0
SAMPLE_KEYS = 1000


def _q(value: str) -> str:
    return shlex.quote(value)


def needed_visibility(largest_bytes: int) -> int:
    """Seconds a consumer may need for the largest object before its message must not reappear."""
    return math.ceil(BASE_SECONDS + SECONDS_PER_MIB * largest_bytes / (1 << 20))


def _queue_arn(url: str, region: str | None) -> str:
    """``arn:aws:sqs:REGION:ACCOUNT:NAME`` from a queue URL (region from the host when it has one)."""
    parts = url.rstrip("/").split("/")
    host = parts[2] if len(parts) > 2 else ""
    if host.startswith("sqs.") and host.count(".") >= 3:
        region = host.split(".")[1]
    return f"arn:aws:sqs:{region or 'us-east-1'}:{parts[-2]}:{parts[-1]}"


def check_queue(ctx: Context, bucket: str | None, prefix: str) -> str | None:
    """Redrive policy and visibility timeout of the SQS source's queue; returns the queue's ARN."""
    url = ctx.settings.queue_url
    if url is None:
        return None
    sqs = ctx.clients.get("sqs", ctx.settings.queue_region)
    read_back: dict[str, Any] = {}
    with ctx.attempt("queue-no-dlq", "the queue's redrive policy", Severity.MEDIUM, url):
        attrs = read(
            sqs.get_queue_attributes, "sqs:GetQueueAttributes", QueueUrl=url, AttributeNames=["All"]
        )["Attributes"]
        arn = str(attrs.get("QueueArn") or _queue_arn(url, ctx.settings.queue_region))
        if attrs.get("RedrivePolicy"):
            ctx.report.ok("queue-no-dlq", url)
        else:
            name = url.rstrip("/").rsplit("/", 1)[-1]
            redrive = json.dumps(
                {"RedrivePolicy": json.dumps({"deadLetterTargetArn": f"{arn}-dlq", "maxReceiveCount": "5"})}
            )
            ctx.report.add(
                Finding(
                    "queue-no-dlq",
                    Severity.MEDIUM,
                    "the queue has no dead-letter queue (redrive policy)",
                    url,
                    "A notification whose object cannot be read is received again and again, forever; "
                    "with a dead-letter queue it is set aside after a few tries and can be looked at.",
                    f"aws sqs create-queue --queue-name {_q(name + '-dlq')} --attributes "
                    f"MessageRetentionPeriod=1209600 && aws sqs set-queue-attributes --queue-url {_q(url)} "
                    f"--attributes {_q(redrive)}  (deploy/sqs-lambda/template.yaml has both)",
                )
            )
        read_back = {"arn": arn, "visibility": int(attrs.get("VisibilityTimeout", 30))}
    if not read_back:
        return None
    if bucket is not None:
        _visibility(ctx, url, read_back["visibility"], bucket, prefix)
    else:
        ctx.report.notes.append(
            "the visibility timeout was not held against object sizes: no log bucket known "
            "(set [doctor] bucket)"
        )
    return str(read_back["arn"])


def _visibility(ctx: Context, url: str, visibility: int, bucket: str, prefix: str) -> None:
    s3 = ctx.clients.get("s3")
    logs = f"{prefix}/AWSLogs/" if prefix else "AWSLogs/"
    with ctx.attempt(
        "queue-visibility-short", "the queue's visibility timeout against object sizes", Severity.MEDIUM, url
    ):
        listed = read(
            s3.list_objects_v2, "s3:ListBucket", Bucket=bucket, Prefix=logs, MaxKeys=SAMPLE_KEYS
        ).get("Contents", [])
        largest = max((int(o.get("Size", 0)) for o in listed), default=0)
        needed = needed_visibility(largest)
        if visibility >= needed:
            ctx.report.ok("queue-visibility-short", url)
            return
        ctx.report.add(
            Finding(
                "queue-visibility-short",
                Severity.MEDIUM,
                f"the visibility timeout ({visibility}s) is shorter than the {needed}s the largest sampled "
                f"object ({largest / (1 << 20):.1f} MiB) may take",
                url,
                "A consumer that does not extend visibility (a Lambda function on the queue) is still "
                "working when the message reappears: another one reads the same object and its records "
                "are delivered twice. trailrelay's workers extend it, but the queue's own timeout is what "
                "Lambda uses (AWS: at least six times the function timeout).",
                f"aws sqs set-queue-attributes --queue-url {_q(url)} --attributes VisibilityTimeout={needed}",
                details={"visibility": visibility, "needed": needed, "largest_bytes": largest},
            )
        )


def _prefix_ok(config: dict[str, Any], logs: str) -> bool:
    rules = ((config.get("Filter") or {}).get("Key") or {}).get("FilterRules") or []
    for rule in rules:
        value = str(rule.get("Value", ""))
        if str(rule.get("Name", "")).lower() == "prefix" and not (
            logs.startswith(value) or value.startswith(logs)
        ):
            return False
    return True


def _created(events: list[str]) -> bool:
    return any(e in ("s3:ObjectCreated:*", "s3:ObjectCreated:Put") for e in events)


def check_notifications(ctx: Context, bucket: str, prefix: str, queue_arn: str) -> None:
    """Whether the bucket's new-object notifications reach the queue (directly, by SNS, by EventBridge)."""
    s3 = ctx.clients.get("s3")
    where = f"s3://{bucket}"
    logs = f"{prefix}/AWSLogs/" if prefix else "AWSLogs/"
    with ctx.attempt(
        "notifications-not-reaching-queue",
        "the bucket's event notifications",
        Severity.HIGH,
        where,
    ):
        conf = read(s3.get_bucket_notification_configuration, "s3:GetBucketNotification", Bucket=bucket)
        for q in conf.get("QueueConfigurations") or []:
            if q.get("QueueArn") == queue_arn and _created(q.get("Events") or []) and _prefix_ok(q, logs):
                ctx.report.ok("notifications-not-reaching-queue", where)
                return
        sns = ctx.clients.get("sns")
        for t in conf.get("TopicConfigurations") or []:
            if not (_created(t.get("Events") or []) and _prefix_ok(t, logs)):
                continue
            subs = read(
                sns.list_subscriptions_by_topic, "sns:ListSubscriptionsByTopic", TopicArn=t["TopicArn"]
            ).get("Subscriptions", [])
            if any(s.get("Protocol") == "sqs" and s.get("Endpoint") == queue_arn for s in subs):
                ctx.report.ok("notifications-not-reaching-queue", where)
                return
        if "EventBridgeConfiguration" in conf and _eventbridge_rule(ctx, queue_arn):
            ctx.report.ok("notifications-not-reaching-queue", where)
            return
        notification = json.dumps(
            {
                "QueueConfigurations": [
                    {
                        "QueueArn": queue_arn,
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": logs}]}},
                    }
                ]
            },
            separators=(",", ":"),
        )
        ctx.report.add(
            Finding(
                "notifications-not-reaching-queue",
                Severity.HIGH,
                "new log files are not announced to the queue",
                where,
                "The SQS worker only reads objects it is told about: without a notification for each new "
                "log file nothing is forwarded, and nothing says so.",
                f"aws s3api put-bucket-notification-configuration --bucket {_q(bucket)} "
                f"--notification-configuration {_q(notification)}  (the queue policy must allow "
                "s3.amazonaws.com sqs:SendMessage with aws:SourceArn = the bucket; this replaces the "
                "bucket's other notifications: merge them in)",
                details={"queue": queue_arn},
            )
        )


def _eventbridge_rule(ctx: Context, queue_arn: str) -> bool:
    events = ctx.clients.get("events", ctx.settings.queue_region)
    names = read(events.list_rule_names_by_target, "events:ListRuleNamesByTarget", TargetArn=queue_arn).get(
        "RuleNames", []
    )
    for name in names:
        rule = read(events.describe_rule, "events:DescribeRule", Name=name)
        pattern = json.loads(rule.get("EventPattern") or "{}")
        if rule.get("State") == "ENABLED" and "Object Created" in pattern.get("detail-type", []):
            return True
    return False


def check_fast_path(ctx: Context, regions: list[str]) -> None:
    """An enabled EventBridge rule for the detection pack's high-risk calls in each region."""
    from trailrelay.detection.calls import high_risk_calls  # noqa: PLC0415 - loads the rule pack

    names, _sources = high_risk_calls()
    for region in regions:
        where = f"events:{region}"
        events = ctx.clients.get("events", region)
        with ctx.attempt(
            "fast-path-missing", f"the EventBridge fast path in {region}", Severity.MEDIUM, where
        ):
            best: set[str] = set()
            best_rule = ""
            paginator = events.get_paginator("list_rules")
            pages = read(lambda p=paginator: list(p.paginate()), "events:ListRules")
            for page in pages:
                for rule in page.get("Rules", []):
                    if rule.get("State") != "ENABLED" or not rule.get("EventPattern"):
                        continue
                    pattern = json.loads(rule["EventPattern"])
                    covered = set((pattern.get("detail") or {}).get("eventName") or []) & names
                    if len(covered) > len(best):
                        best, best_rule = covered, str(rule.get("Name"))
            missing = sorted(names - best)
            if not missing:
                ctx.report.ok("fast-path-missing", where)
            elif not best:
                ctx.report.add(
                    Finding(
                        "fast-path-missing",
                        Severity.MEDIUM,
                        f"no EventBridge rule sends the high-risk calls to trailrelay in {region}",
                        where,
                        "StopLogging, DeleteTrail and the other calls the detection pack alerts on reach "
                        "the SIEM only with the trail's S3 delivery, 5 to 15 minutes later, instead of "
                        "within seconds.",
                        "sam deploy --template-file deploy/eventbridge-lambda/template.yaml --stack-name "
                        f"trailrelay-fast-path --region {_q(region)} --capabilities CAPABILITY_IAM "
                        "(see docs/deploy/eventbridge-lambda.md)",
                        details={"missing": missing},
                    )
                )
            else:
                ctx.report.add(
                    Finding(
                        "fast-path-missing",
                        Severity.LOW,
                        f"the fast-path rule {best_rule} in {region} misses {len(missing)} high-risk calls",
                        where,
                        "The calls it leaves out wait for the trail's S3 delivery (5 to 15 minutes).",
                        f"Add {', '.join(missing)} to "
                        "Events.HighRiskCalls.Properties.Pattern.detail.eventName in "
                        "deploy/eventbridge-lambda/template.yaml (the shipped template has them all) and "
                        f"redeploy the stack in {region}",
                        details={"rule": best_rule, "missing": missing},
                    )
                )
