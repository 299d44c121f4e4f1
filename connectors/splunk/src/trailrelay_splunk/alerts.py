"""Scheduled Splunk alerts for the high-risk CloudTrail events trailrelay tags.

Each alert searches events *indexed* in the last schedule window (``_index_earliest``), not events
whose ``eventTime`` falls in it: CloudTrail delivers minutes late, and an index-time window sees
every event exactly once however late it arrived. Field names are the search-time JSON fields of
``sourcetype=aws:cloudtrail`` (the Splunk Add-on for AWS extracts them with ``KV_MODE = json``).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ALERTS", "AlertRule", "alert_name", "saved_search_params", "spl_quote"]


@dataclass(frozen=True, slots=True)
class AlertRule:
    """One alert: a short key, a title, Splunk severity (1-6) and the SPL filter after the base."""

    key: str
    title: str
    severity: int
    where: str
    description: str


ALERTS: tuple[AlertRule, ...] = (
    AlertRule(
        "cloudtrail-stopped",
        "CloudTrail logging stopped or trail deleted",
        5,
        'eventSource="cloudtrail.amazonaws.com" eventName IN ("StopLogging", "DeleteTrail")',
        "Someone stopped a trail or deleted it: audit logging is blind from here on (ATT&CK T1562.008).",
    ),
    AlertRule(
        "flowlogs-deleted",
        "VPC flow logs deleted",
        4,
        'eventSource="ec2.amazonaws.com" eventName="DeleteFlowLogs"',
        "VPC flow logs were deleted, removing network visibility (ATT&CK T1562.008).",
    ),
    AlertRule(
        "guardduty-disabled",
        "GuardDuty detector disabled or deleted",
        5,
        'eventSource="guardduty.amazonaws.com" (eventName="DeleteDetector" OR '
        '(eventName="UpdateDetector" "requestParameters.enable"="false"))',
        "A GuardDuty detector was deleted or switched off (ATT&CK T1562.001).",
    ),
    AlertRule(
        "s3-public-access-block-removed",
        "S3 public access block removed or weakened",
        4,
        'eventSource="s3.amazonaws.com" eventName IN ("DeleteBucketPublicAccessBlock", '
        '"DeleteAccountPublicAccessBlock", "PutBucketPublicAccessBlock", "PutAccountPublicAccessBlock") '
        '| where like(eventName, "Delete%") OR match(_raw, '
        '"\\"(BlockPublicAcls|IgnorePublicAcls|BlockPublicPolicy|RestrictPublicBuckets)\\"\\s*:\\s*false")',
        "An S3 public access block was deleted or one of its protections turned off (ATT&CK T1530).",
    ),
    AlertRule(
        "access-key-created",
        "IAM access key created",
        3,
        'eventSource="iam.amazonaws.com" eventName="CreateAccessKey" NOT errorCode=*',
        "A long-lived IAM access key was created, a common persistence step (ATT&CK T1098.001).",
    ),
    AlertRule(
        "console-login-without-mfa",
        "Console login without MFA",
        4,
        'eventSource="signin.amazonaws.com" eventName="ConsoleLogin" "additionalEventData.MFAUsed"="No" '
        '"responseElements.ConsoleLogin"="Success"',
        "A successful AWS console sign-in that did not use MFA (ATT&CK T1078.004).",
    ),
    AlertRule(
        "kms-key-disabled",
        "KMS key disabled or scheduled for deletion",
        5,
        'eventSource="kms.amazonaws.com" eventName IN ("DisableKey", "ScheduleKeyDeletion")',
        "A KMS key was disabled or scheduled for deletion: data under it may become unreadable "
        "(ATT&CK T1485).",
    ),
)

_TABLE = (
    "| table _time, eventName, eventSource, awsRegion, recipientAccountId, userIdentity.arn, "
    "sourceIPAddress, errorCode, eventID"
)


def spl_quote(value: str) -> str:
    """A double-quoted SPL string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def alert_name(prefix: str, rule: AlertRule) -> str:
    """The saved search name of a rule, e.g. ``trailrelay - Console login without MFA``."""
    return f"{prefix}{rule.title}"


def saved_search_params(
    rule: AlertRule, *, index: str, sourcetype: str, cron: str, window_minutes: int
) -> dict[str, str]:
    """The POST parameters of ``saved/searches`` for one scheduled alert (without ``name``)."""
    search = (
        f"index={spl_quote(index)} sourcetype={spl_quote(sourcetype)} "
        f"_index_earliest=-{window_minutes}m@m _index_latest=@m {rule.where} {_TABLE}"
    )
    return {
        "search": search,
        "description": f"{rule.description} Created by trailrelay.",
        "is_scheduled": "1",
        "cron_schedule": cron,
        "dispatch.earliest_time": "-24h@h",
        "dispatch.latest_time": "now",
        "alert_type": "number of events",
        "alert_comparator": "greater than",
        "alert_threshold": "0",
        "alert.track": "1",
        "alert.digest_mode": "1",
        "alert.severity": str(rule.severity),
        "disabled": "0",
    }
