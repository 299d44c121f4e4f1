"""Doctor's pure parts: selector coverage, bucket-policy writers, severities, events and sending."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from trailrelay.config import parse_config
from trailrelay.contract import (
    DELIVERED,
    INTEGRITY_KIND,
    Batch,
    BatchLimits,
    CheckResult,
    FatalSinkError,
    Outcome,
    Receipt,
)
from trailrelay.doctor.bucket import policy_writers
from trailrelay.doctor.events import EVENT_TYPE, finding_event, finding_record, send_findings
from trailrelay.doctor.findings import Finding, Report, Severity
from trailrelay.doctor.forwarding import event_name_matches, needed_visibility
from trailrelay.doctor.trail import management_coverage

MGMT = {"Field": "eventCategory", "Equals": ["Management"]}


@pytest.mark.parametrize(
    ("selectors", "level"),
    [
        ({"EventSelectors": [{"ReadWriteType": "All", "IncludeManagementEvents": True}]}, "all"),
        ({"AdvancedEventSelectors": [{"FieldSelectors": [MGMT]}]}, "all"),
        (
            {
                "EventSelectors": [
                    {"ReadWriteType": "ReadOnly", "IncludeManagementEvents": True},
                    {"ReadWriteType": "WriteOnly", "IncludeManagementEvents": True},
                ]
            },
            "all",
        ),
        ({"EventSelectors": [{"ReadWriteType": "WriteOnly", "IncludeManagementEvents": True}]}, "partial"),
        ({"EventSelectors": [{"ReadWriteType": "All", "IncludeManagementEvents": False}]}, "none"),
        (
            {
                "AdvancedEventSelectors": [
                    {"FieldSelectors": [MGMT, {"Field": "readOnly", "Equals": ["true"]}]}
                ]
            },
            "partial",
        ),
        (
            {
                "AdvancedEventSelectors": [
                    {"FieldSelectors": [MGMT, {"Field": "eventSource", "NotEquals": ["kms.amazonaws.com"]}]}
                ]
            },
            "excluded",
        ),
        (
            {
                "AdvancedEventSelectors": [
                    {"FieldSelectors": [MGMT, {"Field": "eventSource", "NotEquals": ["kms.amazonaws.com"]}]},
                    {"FieldSelectors": [MGMT]},
                ]
            },
            "all",
        ),
        (
            {
                "AdvancedEventSelectors": [
                    {"FieldSelectors": [MGMT, {"Field": "eventName", "Equals": ["StopLogging"]}]}
                ]
            },
            "partial",
        ),
        (
            {
                "AdvancedEventSelectors": [
                    {"FieldSelectors": [{"Field": "eventCategory", "Equals": ["Data"]}]}
                ]
            },
            "none",
        ),
        ({"EventSelectors": [], "AdvancedEventSelectors": []}, "unknown"),
    ],
)
def test_management_coverage(selectors: dict[str, Any], level: str) -> None:
    assert management_coverage(selectors).level == level


TRAIL_ARN = "arn:aws:cloudtrail:us-east-1:111122223333:trail/org-trail"


def _statement(
    principal: Any, action: Any, condition: dict[str, Any] | None = None, **kw: Any
) -> dict[str, Any]:
    st = {"Effect": "Allow", "Principal": principal, "Action": action, "Resource": "*", **kw}
    if condition:
        st["Condition"] = condition
    return st


@pytest.mark.parametrize(
    ("statement", "kinds"),
    [
        (_statement({"Service": "cloudtrail.amazonaws.com"}, "s3:PutObject", {"StringEquals": {"aws:SourceArn": TRAIL_ARN}}), []),
        (_statement({"Service": "cloudtrail.amazonaws.com"}, "s3:PutObject", {"ArnLike": {"aws:SourceArn": "arn:aws:cloudtrail:*:111122223333:trail/*"}}), []),
        (_statement({"Service": "cloudtrail.amazonaws.com"}, "s3:PutObject", {"StringLike": {"aws:SourceArn": "arn:aws:cloudtrail:*"}}), ["cloudtrail-unscoped"]),
        (_statement({"Service": "cloudtrail.amazonaws.com"}, "s3:PutObject", {"StringLike": {"aws:SourceArn": "arn:aws:cloudtrail:*:*:trail/org-trail"}}), ["cloudtrail-unscoped"]),
        (_statement({"Service": "cloudtrail.amazonaws.com"}, "s3:PutObject", {"ArnLike": {"aws:SourceArn": "arn:aws:cloudtrail:us-east-1:11112222333?:trail/t"}}), ["cloudtrail-unscoped"]),
        (_statement({"Service": "cloudtrail.amazonaws.com"}, "s3:PutObject", {"StringEquals": {"aws:SourceArn": [TRAIL_ARN, "arn:aws:cloudtrail:*"]}}), ["cloudtrail-unscoped"]),
        (_statement({"Service": "cloudtrail.amazonaws.com"}, "s3:PutObject", {"StringNotEquals": {"aws:SourceArn": TRAIL_ARN}}), ["cloudtrail-unscoped"]),
        (_statement({"Service": "cloudtrail.amazonaws.com"}, "s3:PutObject", {"StringEqualsIfExists": {"aws:SourceArn": TRAIL_ARN}}), ["cloudtrail-unscoped"]),
        (_statement({"Service": "cloudtrail.amazonaws.com"}, "s3:PutObject", {"StringEquals": {"aws:SourceAccount": "111122223333"}}), []),
        (_statement({"Service": "cloudtrail.amazonaws.com"}, "s3:PutObject", {"StringLike": {"aws:SourceAccount": "*"}}), ["cloudtrail-unscoped"]),
        (_statement({"Service": "cloudtrail.amazonaws.com"}, "s3:PutObject", {"StringLike": {"aws:SourceOrgID": "o-*"}}), ["cloudtrail-unscoped"]),
        (_statement({"Service": "cloudtrail.amazonaws.com"}, "s3:PutObject", {"StringLike": {"aws:SourceArn": "arn:aws:cloudtrail:*"}, "StringEquals": {"aws:SourceAccount": "111122223333"}}), []),
        (_statement({"Service": "cloudtrail.amazonaws.com"}, "s3:PutObject", {"StringEquals": {"AWS:SourceOrgID": "o"}}), []),
        (_statement({"Service": "cloudtrail.amazonaws.com"}, "s3:PutObject", {"StringEquals": {"s3:x-amz-acl": "b"}}), ["cloudtrail-unscoped"]),
        (_statement({"Service": "cloudtrail.amazonaws.com"}, "s3:GetBucketAcl"), []),
        (_statement({"AWS": "arn:aws:iam::444455556666:root"}, "s3:GetObject"), []),
        (_statement({"AWS": "arn:aws:iam::444455556666:root"}, "s3:Delete*"), ["other"]),
        (_statement({"AWS": ["arn:aws:iam::1:root", "*"]}, "s3:PutObject"), ["other", "public"]),
        (_statement("*", "*"), ["public"]),
        (_statement({"Service": "delivery.logs.amazonaws.com"}, "s3:PutObject"), ["other"]),
        ({"Effect": "Allow", "NotPrincipal": {"AWS": "arn:aws:iam::1:root"}, "Action": "s3:PutBucketPolicy"}, ["public"]),
        ({"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:role/x"}, "NotAction": "s3:GetObject"}, ["other"]),
        ({"Effect": "Deny", "Principal": "*", "Action": "s3:*"}, []),
    ],
)  # fmt: skip
def test_policy_writers(statement: dict[str, Any], kinds: list[str]) -> None:
    assert sorted(w.kind for w in policy_writers({"Statement": [statement]})) == kinds


def test_needed_visibility_grows_with_object_size() -> None:
    assert needed_visibility(0) == 60
    assert needed_visibility(50 << 20) == 560


@pytest.mark.parametrize(
    ("condition", "name", "matches"),
    [
        ("StopLogging", "StopLogging", True),
        ("StopLogging", "stoplogging", False),
        (None, "StopLogging", False),
        (7, "StopLogging", False),
        ({"prefix": "Stop"}, "StopLogging", True),
        ({"prefix": "Stop"}, "DeleteTrail", False),
        ({"prefix": {"equals-ignore-case": "stop"}}, "StopLogging", True),
        ({"suffix": "Trail"}, "DeleteTrail", True),
        ({"suffix": {"equals-ignore-case": "TRAIL"}}, "UpdateTrail", True),
        ({"equals-ignore-case": "deletetrail"}, "DeleteTrail", True),
        ({"wildcard": "Delete*Access*"}, "DeletePublicAccessBlock", True),
        ({"wildcard": "Delete*Access*"}, "DeleteTrail", False),
        ({"wildcard": "Stop\\*"}, "StopLogging", False),  # an escaped star is a star
        ({"wildcard": "Stop\\"}, "StopLogging", None),  # malformed: not a guess
        ({"anything-but": "StopLogging"}, "StopLogging", False),
        ({"anything-but": ["GetObject", "ListBuckets"]}, "StopLogging", True),
        ({"anything-but": {"prefix": "Stop"}}, "StopLogging", False),
        ({"anything-but": {"wildcard": ["Get*", "List*"]}}, "DeleteTrail", True),
        ({"anything-but": {"equals-ignore-case": ["stoplogging"]}}, "StopLogging", False),
        ({"anything-but": {"regex": "x"}}, "StopLogging", None),
        ({"exists": True}, "StopLogging", True),
        ({"exists": False}, "StopLogging", False),
        ({"numeric": [">", 0]}, "StopLogging", False),
        ({"cidr": "10.0.0.0/8"}, "StopLogging", False),
        ({"regex": "^Stop"}, "StopLogging", None),  # unknown: the check says it could not decide
        ({"prefix": "Stop", "suffix": "ing"}, "StopLogging", None),
        ({"prefix": ["Stop"]}, "StopLogging", None),
        (["StopLogging"], "StopLogging", None),
    ],
)  # fmt: skip
def test_eventbridge_content_filters_on_event_name(condition: Any, name: str, matches: bool | None) -> None:
    assert event_name_matches(condition, name) is matches


def test_severity_order_parse_and_exit_status() -> None:
    assert Severity.CRITICAL > Severity.HIGH > Severity.MEDIUM > Severity.LOW > Severity.INFO
    assert Severity.parse(" High ") is Severity.HIGH
    with pytest.raises(ValueError):
        Severity.parse("severe")
    report = Report()
    assert report.exit_status(Severity.INFO) == 0
    report.add(Finding("x", Severity.MEDIUM, "t", "r", "w", "f"))
    assert report.exit_status(Severity.HIGH) == 0
    assert report.exit_status(Severity.MEDIUM) == 1
    assert report.exit_status(None) == 0
    assert report.counts() == {"critical": 0, "high": 0, "medium": 1, "low": 0, "info": 0}


FINDING = Finding(
    "trail-not-logging",
    Severity.CRITICAL,
    "the trail is not logging",
    "arn:aws:cloudtrail:eu-west-1:111122223333:trail/org-trail",
    "why",
    "aws cloudtrail start-logging --name org-trail",
)
NOW = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)


def test_a_finding_event_travels_as_an_integrity_kind_record_with_a_detection() -> None:
    event = finding_event(FINDING, checked_at=NOW, account="111122223333", organization="o-abc1234567")
    assert event["type"] == EVENT_TYPE
    assert event["verdict"] == "doctor:trail-not-logging"
    assert event["region"] == "eu-west-1"
    assert event["trail"] == FINDING.resource
    assert event["verified_at"] == "2026-03-02T12:00:00Z"
    assert event["problems"] == [
        {
            "kind": "trail-not-logging",
            "severity": "critical",
            "location": FINDING.resource,
            "detail": "the trail is not logging. Fix: aws cloudtrail start-logging --name org-trail",
        }
    ]
    record = finding_record(event)
    assert record.origin.kind == INTEGRITY_KIND
    assert record.routing.event_time == NOW
    assert record.routing.recipient_account_id == "111122223333"
    [tag] = record.tags
    assert (tag.rule_id, tag.severity, tag.technique) == (
        "trailrelay-doctor-trail-not-logging",
        "critical",
        "T1562.008",
    )
    medium = finding_record(
        finding_event(Finding("queue-no-dlq", Severity.MEDIUM, "t", "q", "w", "f"), checked_at=NOW)
    )
    assert medium.tags == ()
    assert medium.routing.event_id != record.routing.event_id


class _Sink:
    """A stand-in SIEM whose answers the test scripts."""

    def __init__(self, answers: list[str]) -> None:
        self.limits = BatchLimits(max_records=1)
        self.answers = answers
        self.stored: list[str] = []
        self.closed = False

    def open(self) -> None:
        pass

    def send(self, batch: Batch) -> Sequence[Outcome]:
        answer = self.answers.pop(0) if self.answers else "ok"
        if answer == "fatal":
            raise FatalSinkError("token revoked")
        if answer == "retry":
            return [Outcome.retry("busy")] * len(batch)
        if answer == "reject":
            return [Outcome.rejected("too big")] * len(batch)
        self.stored.extend(r.document()["check"] for r in batch.records)
        if answer.startswith("ack"):  # stored; the outcome comes later, as Splunk's indexer ack
            receipt = Receipt()
            late = {"ack": DELIVERED, "ack-refused": Outcome.rejected("index full"), "ack-lost": None}[answer]
            if late is not None:
                threading.Timer(0.05, receipt.resolve, [late]).start()
            return [Outcome.pending(receipt)] * len(batch)
        return [DELIVERED] * len(batch)

    def check(self) -> CheckResult:
        return CheckResult(True, "ok")

    def close(self) -> None:
        self.closed = True


def _config(tmp_path: Path) -> Any:
    return parse_config(
        {
            "source": {"type": "files", "path": "."},
            "sinks": [
                {"type": "file", "path": "a.ndjson", "name": "a"},
                {"type": "file", "path": "b.ndjson", "name": "b"},
            ],
        },
        base_dir=tmp_path,
    )


def test_send_retries_then_reports_each_sink(tmp_path: Path) -> None:
    events = [
        finding_event(FINDING, checked_at=NOW),
        finding_event(Finding("queue-no-dlq", Severity.MEDIUM, "t", "q", "w", "f"), checked_at=NOW),
    ]
    sinks = {"a": _Sink(["retry", "ok", "ok"]), "b": _Sink(["ok", "reject"])}
    result = send_findings(
        events, _config(tmp_path), build=lambda sc: sinks[sc.display_name], backoff_base=0.01
    )
    assert sorted(sinks["a"].stored) == ["queue-no-dlq", "trail-not-logging"]
    assert result.delivered == {"a": 2, "b": 1}
    dead_letters = tmp_path / "dead-letters"
    assert result.failures == {"b": f"rejected 1 of 2: too big (dead-lettered in {dead_letters})"}
    assert not result.ok
    assert all(s.closed for s in sinks.values())
    [entry] = [orjson.loads(line) for f in dead_letters.iterdir() for line in f.read_bytes().splitlines()]
    assert (entry["sink"], entry["reason"]) == ("b", "too big")  # the refused finding is not lost


def test_send_waits_for_the_sinks_acknowledgement(tmp_path: Path) -> None:
    """Splunk with indexer acknowledgement answers PENDING: a finding is delivered once acked."""
    events = [finding_event(FINDING, checked_at=NOW)]
    sinks = {"a": _Sink(["ack"]), "b": _Sink(["ack-refused"])}
    result = send_findings(events, _config(tmp_path), build=lambda sc: sinks[sc.display_name])
    assert result.delivered == {"a": 1, "b": 0}
    assert list(result.failures) == ["b"]
    assert result.failures["b"].startswith("rejected 1 of 1: index full (dead-lettered in ")
    lost = {"a": _Sink(["ack-lost"]), "b": _Sink([])}
    result = send_findings(events, _config(tmp_path), build=lambda sc: lost[sc.display_name], timeout=0.3)
    assert result.delivered == {"a": 0, "b": 1}
    # never acknowledged: a failure, never a pass
    assert result.failures == {"a": "1 of 1 not delivered within 0.3s"}


def test_send_survives_a_fatal_sink(tmp_path: Path) -> None:
    sinks = {"a": _Sink(["fatal"]), "b": _Sink([])}
    events = [finding_event(FINDING, checked_at=NOW)]
    result = send_findings(events, _config(tmp_path), build=lambda sc: sinks[sc.display_name])
    assert result.delivered == {"a": 0, "b": 1}
    assert "token revoked" in result.failures["a"]
