"""Built-in tagging of the high-risk CloudTrail events that blind defenders or take over accounts.

A small, fast table of conditions on routing fields and, for a few rules, on the parsed
record. Tagged records take the pipeline's fast path (no batching delay) and carry their tags
into every SIEM.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trailrelay.record import Record, RiskTag

__all__ = ["BUILTIN_RULES", "RiskRule", "RiskTagger"]


@dataclass(frozen=True)
class RiskRule:
    """Tag records whose eventSource/eventName match and whose document passes ``when``."""

    tag: RiskTag
    source: str
    names: frozenset[str]
    when: Callable[[dict[str, Any]], bool] | None = None
    success_only: bool = True


def _path(doc: dict[str, Any], *keys: str) -> Any:
    cur: Any = doc
    for k in keys:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(k)
    return cur


def _mfa_not_used(doc: dict[str, Any]) -> bool:
    return bool(
        _path(doc, "additionalEventData", "MFAUsed") == "No"
        and _path(doc, "responseElements", "ConsoleLogin") == "Success"
    )


def _detector_disabled(doc: dict[str, Any]) -> bool:
    return _path(doc, "requestParameters", "enable") is False


def _no_mfa_session(doc: dict[str, Any]) -> bool:
    mfa = _path(doc, "userIdentity", "sessionContext", "attributes", "mfaAuthenticated")
    return bool(mfa != "true")


def _root(doc: dict[str, Any]) -> bool:
    return bool(_path(doc, "userIdentity", "type") == "Root")


def _admin_policy(doc: dict[str, Any]) -> bool:
    arn = _path(doc, "requestParameters", "policyArn")
    return isinstance(arn, str) and arn.endswith(":policy/AdministratorAccess")


def _rule(
    rule_id: str,
    title: str,
    severity: str,
    technique: str,
    source: str,
    *names: str,
    when: Callable[[dict[str, Any]], bool] | None = None,
) -> RiskRule:
    return RiskRule(RiskTag(rule_id, title, severity, technique), source, frozenset(names), when)


BUILTIN_RULES: tuple[RiskRule, ...] = (
    _rule(
        "trailrelay-ct-stop",
        "CloudTrail logging stopped or trail deleted",
        "critical",
        "T1562.008",
        "cloudtrail.amazonaws.com",
        "StopLogging",
        "DeleteTrail",
    ),
    _rule(
        "trailrelay-ct-reduce",
        "CloudTrail trail or event selectors changed",
        "high",
        "T1562.008",
        "cloudtrail.amazonaws.com",
        "UpdateTrail",
        "PutEventSelectors",
        "PutInsightSelectors",
    ),
    _rule(
        "trailrelay-flowlogs-delete",
        "VPC flow logs deleted",
        "high",
        "T1562.008",
        "ec2.amazonaws.com",
        "DeleteFlowLogs",
    ),
    _rule(
        "trailrelay-guardduty-off",
        "GuardDuty detector deleted",
        "critical",
        "T1562.001",
        "guardduty.amazonaws.com",
        "DeleteDetector",
    ),
    _rule(
        "trailrelay-guardduty-disable",
        "GuardDuty detector disabled",
        "critical",
        "T1562.001",
        "guardduty.amazonaws.com",
        "UpdateDetector",
        when=_detector_disabled,
    ),
    _rule(
        "trailrelay-securityhub-off",
        "Security Hub disabled",
        "high",
        "T1562.001",
        "securityhub.amazonaws.com",
        "DisableSecurityHub",
    ),
    _rule(
        "trailrelay-config-off",
        "AWS Config recorder stopped or deleted",
        "high",
        "T1562.001",
        "config.amazonaws.com",
        "StopConfigurationRecorder",
        "DeleteConfigurationRecorder",
        "DeleteDeliveryChannel",
    ),
    _rule(
        "trailrelay-s3-pab",
        "S3 public access block removed or changed",
        "high",
        "T1530",
        "s3.amazonaws.com",
        "DeleteBucketPublicAccessBlock",
        "PutBucketPublicAccessBlock",
    ),
    _rule(
        "trailrelay-account-pab",
        "Account public access block removed or changed",
        "high",
        "T1530",
        "s3control.amazonaws.com",
        "DeletePublicAccessBlock",
        "PutPublicAccessBlock",
    ),
    _rule(
        "trailrelay-accesskey-nomfa",
        "Access key created without MFA",
        "high",
        "T1098.001",
        "iam.amazonaws.com",
        "CreateAccessKey",
        when=_no_mfa_session,
    ),
    _rule(
        "trailrelay-console-nomfa",
        "Console login without MFA",
        "medium",
        "T1078.004",
        "signin.amazonaws.com",
        "ConsoleLogin",
        when=_mfa_not_used,
    ),
    _rule(
        "trailrelay-console-root",
        "Root user console login",
        "high",
        "T1078.004",
        "signin.amazonaws.com",
        "ConsoleLogin",
        when=_root,
    ),
    _rule(
        "trailrelay-kms-destroy",
        "KMS key disabled or scheduled for deletion",
        "high",
        "T1485",
        "kms.amazonaws.com",
        "DisableKey",
        "ScheduleKeyDeletion",
    ),
    _rule(
        "trailrelay-admin-attach",
        "Administrator policy attached",
        "high",
        "T1098",
        "iam.amazonaws.com",
        "AttachUserPolicy",
        "AttachRolePolicy",
        "AttachGroupPolicy",
        when=_admin_policy,
    ),
    _rule(
        "trailrelay-org-leave",
        "Account left the organization",
        "high",
        "T1562",
        "organizations.amazonaws.com",
        "LeaveOrganization",
    ),
)


class RiskTagger:
    """Tags records matching any rule; only candidates by (source, name) are parsed fully."""

    def __init__(self, rules: tuple[RiskRule, ...] = BUILTIN_RULES) -> None:
        self._by_key: dict[tuple[str, str], list[RiskRule]] = {}
        for rule in rules:
            for name in rule.names:
                self._by_key.setdefault((rule.source, name), []).append(rule)
        self.matches = 0

    def __call__(self, record: Record) -> Record:
        """Attach tags for every matching rule; returns the record."""
        r = record.routing
        rules = self._by_key.get((r.event_source or "", r.event_name or ""))
        if not rules:
            return record
        tags = []
        for rule in rules:
            if rule.success_only and r.error_code:
                continue
            if rule.when is not None and not rule.when(record.document()):
                continue
            tags.append(rule.tag)
        if tags:
            record.add_tags(tags)
            self.matches += 1
        return record
