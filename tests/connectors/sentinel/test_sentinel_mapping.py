"""Column mapping on real corpus records: golden rows, explicit expectations, fast == slow path."""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest

from trailrelay.contract import Origin, Record, RiskTag
from trailrelay.testing import load_records, require_corpus
from trailrelay_sentinel.columns import COLUMN_NAMES, COLUMNS, JSON_TEXT_COLUMNS
from trailrelay_sentinel.encode import SentinelEncoder, cut_bodies, encode_rows
from trailrelay_sentinel.mapping import map_document, map_record, trim_row

GOLDEN = Path(__file__).parent / "fixtures" / "golden_rows.json"

# eventID -> what the record exercises (all from the shared corpus)
CASES = {
    "865d9377-9c6b-4fd7-8aad-725e95f6a140": "console login without MFA (IAMUser)",
    "8feee4c2-5e27-4857-8475-bfa7e7b6d791": "console login with MFA (IAMUser)",
    "74b4a7d6-764d-4ec8-bbd4-91e7a84e6780": "console sign-in CheckMfa",
    "c4fa3db1-2303-40e4-bde0-3b7246bdbf0b": "Root identity (from an EventBridge envelope)",
    "91529247-c4c4-4793-afc8-d70bbcfe9d19": "FederatedUser with sessionIssuer",
    "7c6e3d04-0c3b-42f2-8589-EXAMPLE826c0": "AWSAccount, network activity (AwsVpceEvent), vpcEndpointId",
    "a4a7b25e-c2d5-436f-8a7e-ea89f50541ab": "AWSService",
    "895dc875-cb08-45a5-b8c2-9158838741c0": "AwsServiceEvent with serviceEventDetails",
    "228ca3c8-5f95-4a8a-9732-EXAMPLE60ed9": "AssumedRole with session attributes",
    "b379479b-05c9-4c3c-af4b-cbd43acf29e1": "AssumedRole EC2 instance credentials (ec2RoleDelivery)",
    "46558847-8b84-43de-8c96-302aa4744763": "AccessDenied error",
    "bf575a0c-c344-4302-a468-00e6a84a127a": "S3 data event",
    "450230d4-b39e-4a18-a6a0-d07a6e2105cb": "TLS details",
    "55ed45c5-0b0c-4228-9fe5-EXAMPLEc3f4d": "Insights event (insightDetails)",
    "9fd68588-ecbf-4528-a345-199fa6bb0821": "security group rule, flat request parameters",
    "7e96f0e7-4d78-423d-b3f5-391370685b30": "security group rule, ipPermissions items",
    "995c4653-3c53-4a06-a0f0-f5531997b741": "resources list",
    "e9f72371-5fc5-48fc-999d-462e13fdc6bd": "apiVersion",
}


@cache
def corpus() -> tuple[Record, ...]:
    return tuple(load_records(require_corpus("cloudtrail")))


@cache
def by_id() -> dict[str, Record]:
    out: dict[str, Record] = {}
    for r in corpus():
        out.setdefault(str(r.event_id), r)
    return out


def fresh(record: Record) -> Record:
    """A new Record from the same bytes (no cached document)."""
    return Record.from_bytes(record.raw, record.origin, record.index)


def test_golden_rows() -> None:
    rows = {eid: map_record(fresh(by_id()[eid])) for eid in CASES}
    if os.environ.get("TRAILRELAY_REGEN_GOLDEN"):
        GOLDEN.write_text(
            json.dumps(rows, indent=1, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8"
        )
    expected = json.loads(GOLDEN.read_text(encoding="utf-8"))
    assert rows == expected


def row(eid: str) -> dict[str, Any]:
    return map_record(fresh(by_id()[eid]))


def test_console_login_without_and_with_mfa() -> None:
    no_mfa = row("865d9377-9c6b-4fd7-8aad-725e95f6a140")
    assert no_mfa["EventName"] == "ConsoleLogin" and no_mfa["EventTypeName"] == "AwsConsoleSignIn"
    assert json.loads(no_mfa["AdditionalEventData"])["MFAUsed"] == "No"
    assert json.loads(no_mfa["ResponseElements"]) == {"ConsoleLogin": "Success"}
    mfa = row("8feee4c2-5e27-4857-8475-bfa7e7b6d791")
    assert '"MFAUsed":"Yes"' in mfa["AdditionalEventData"]  # compact, as Microsoft's connector stores it
    assert mfa["UserIdentityType"] == "IAMUser"


def test_identity_types() -> None:
    assert row("c4fa3db1-2303-40e4-bde0-3b7246bdbf0b")["UserIdentityType"] == "Root"
    fed = row("91529247-c4c4-4793-afc8-d70bbcfe9d19")
    assert fed["UserIdentityType"] == "FederatedUser" and fed["SessionIssuerType"] == "IAMUser"
    assert row("7c6e3d04-0c3b-42f2-8589-EXAMPLE826c0")["UserIdentityType"] == "AWSAccount"
    svc = row("a4a7b25e-c2d5-436f-8a7e-ea89f50541ab")
    assert svc["UserIdentityType"] == "AWSService" and svc["UserIdentityInvokedBy"]
    assumed = row("228ca3c8-5f95-4a8a-9732-EXAMPLE60ed9")
    assert assumed["UserIdentityType"] == "AssumedRole"
    assert assumed["SessionIssuerType"] == "Role"
    assert isinstance(assumed["SessionMfaAuthenticated"], bool)
    assert assumed["SessionCreationDate"].endswith("Z")
    assert row("b379479b-05c9-4c3c-af4b-cbd43acf29e1")["EC2RoleDelivery"] in ("1.0", "2.0")


def test_service_event_without_identity_type_is_aws_service() -> None:
    svc = row("895dc875-cb08-45a5-b8c2-9158838741c0")
    assert svc["EventTypeName"] == "AwsServiceEvent"
    assert json.loads(svc["ServiceEventDetails"])


def test_errors_data_events_tls_insight_and_sg_rules() -> None:
    err = row("46558847-8b84-43de-8c96-302aa4744763")
    assert err["ErrorCode"] == "AccessDenied" and err["ErrorMessage"]
    s3 = row("bf575a0c-c344-4302-a468-00e6a84a127a")
    assert s3["Category"] == "Data" and s3["ManagementEvent"] is False and s3["ReadOnly"] is True
    assert isinstance(json.loads(s3["Resources"]), list)
    tls = row("450230d4-b39e-4a18-a6a0-d07a6e2105cb")
    assert tls["TlsVersion"].startswith("TLSv1") and tls["CipherSuite"] and tls["ClientProvidedHostHeader"]
    insight = row("55ed45c5-0b0c-4228-9fe5-EXAMPLEc3f4d")
    assert insight["Category"] == "Insight"
    assert json.loads(insight["AdditionalEventData"])["insightType"] == "ApiCallRateInsight"
    flat = row("9fd68588-ecbf-4528-a345-199fa6bb0821")
    assert (flat["IpProtocol"], flat["SourcePort"], flat["DestinationPort"], flat["CidrIp"]) == (
        "tcp",
        "22",
        "22",
        "208.236.235.254/0",
    )
    nested = row("7e96f0e7-4d78-423d-b3f5-391370685b30")
    assert (nested["IpProtocol"], nested["SourcePort"], nested["CidrIp"]) == ("tcp", "443", "0.0.0.0/0")


def test_identity_center_user() -> None:
    # Shape of an IAM Identity Center user identity (AWS CloudTrail userIdentity reference).
    doc = {
        "eventVersion": "1.10",
        "userIdentity": {
            "type": "IdentityCenterUser",
            "accountId": "111122223333",
            "onBehalfOf": {
                "userId": "906728d2c0-5b5a6d27-4b50-4d4f-9d5e-0f5a1b2c3d4e",
                "identityStoreArn": "arn:aws:identitystore::111122223333:identitystore/d-1234567890",
            },
            "credentialId": "EXAMPLEVHULjJdTUdPJfofVa1sufHDoj7aYcOYcxFVllWR_Whr1fEXAMPLE",
        },
        "eventTime": "2026-03-02T10:00:00Z",
        "eventSource": "signin.amazonaws.com",
        "eventName": "ConsoleLogin",
        "eventType": "AwsConsoleSignIn",
        "eventID": "1d1c1b1a-0000-4000-8000-000000000001",
        "responseElements": {"ConsoleLogin": "Success"},
    }
    out = map_record(Record.from_bytes(orjson.dumps(doc), Origin("file", "x")))
    assert out["UserIdentityType"] == "IdentityCenterUser"
    assert out["UserIdentityUserId"] == doc["userIdentity"]["onBehalfOf"]["userId"]
    assert out["UserIdentityStoreArn"] == doc["userIdentity"]["onBehalfOf"]["identityStoreArn"]


def _normal(r: dict[str, Any]) -> dict[str, Any]:
    return {k: (orjson.loads(v) if k in JSON_TEXT_COLUMNS else v) for k, v in r.items()}


def test_fast_and_slow_paths_agree_on_the_whole_corpus() -> None:
    for rec in corpus():
        fast = map_record(fresh(rec))
        slow = map_document(orjson.loads(rec.raw), rec)
        assert _normal(fast) == _normal(slow), rec.event_id


def test_odd_types_take_the_slow_path() -> None:
    doc = {
        "eventID": "x1",
        "eventTime": "2026-03-02T10:00:00Z",
        "recipientAccountId": 111122223333,
        "readOnly": "true",
    }
    out = map_record(Record.from_bytes(orjson.dumps(doc), Origin("file", "x")))
    assert out["RecipientAccountId"] == "111122223333" and out["ReadOnly"] is True


def test_modified_records_are_mapped_from_the_document() -> None:
    rec = fresh(by_id()["46558847-8b84-43de-8c96-302aa4744763"])
    doc = dict(rec.document())
    doc["sourceIPAddress"] = "198.51.100.99"
    rec.replace(doc)
    assert map_record(rec)["SourceIpAddress"] == "198.51.100.99"


def test_pretty_printed_json_fields_become_compact_text() -> None:
    pretty = [r for r in corpus() if b"\n" in r.raw and b'"requestParameters": {' in r.raw]
    assert pretty
    for rec in pretty[:50]:
        text = map_record(fresh(rec))["RequestParameters"]
        assert "\n" not in text and '": ' not in text.replace('\\"', "")


def test_only_declared_columns_are_emitted_and_most_are_used() -> None:
    seen: set[str] = set()
    for rec in corpus():
        seen |= set(map_record(fresh(rec)))
    assert seen <= set(COLUMN_NAMES)
    never = set(COLUMN_NAMES) - seen
    # Identity Center users are not in the corpus; detections come from tags, not from the event.
    assert never <= {"UserIdentityUserId", "UserIdentityStoreArn", "TrailrelayDetections"}, never
    assert [
        c.type for c in COLUMNS if c.name in ("ReadOnly", "ManagementEvent", "SessionMfaAuthenticated")
    ] == ["boolean"] * 3


def test_detection_tags_become_the_dynamic_detections_column() -> None:
    rec = fresh(by_id()["865d9377-9c6b-4fd7-8aad-725e95f6a140"])
    assert "TrailrelayDetections" not in map_record(rec)
    rec.add_tags(
        [
            RiskTag("rule-1", "Console login without MFA", "high", "T1078.004"),
            RiskTag("rule-2", "Something low", "low"),
        ]
    )
    expected = [
        {
            "rule_id": "rule-1",
            "title": "Console login without MFA",
            "severity": "high",
            "technique": "T1078.004",
        },
        {"rule_id": "rule-2", "title": "Something low", "severity": "low"},
    ]
    assert map_record(rec)["TrailrelayDetections"] == expected  # fast path
    assert map_document(rec.document(), rec)["TrailrelayDetections"] == expected  # slow path
    (row,) = orjson.loads(SentinelEncoder().encode([rec])[0])
    assert row["TrailrelayDetections"] == expected  # a JSON array in the body, for the dynamic column
    assert {c.name: c.type for c in COLUMNS}["TrailrelayDetections"] == "dynamic"


def test_trim_row_marks_what_it_trimmed() -> None:
    big = {
        "AwsEventId": "a",
        "RequestParameters": json.dumps({"x": "y" * 200_000}),
        "UserAgent": "u" * 100_000,
    }
    data, trimmed = trim_row(dict(big), 150_000)
    assert len(data) <= 150_000
    assert trimmed == ["RequestParameters"]
    out = orjson.loads(data)
    note = json.loads(out["RequestParameters"])["trailrelay_trimmed"]
    assert note["field"] == "RequestParameters" and note["original_bytes"] > 200_000
    data, trimmed = trim_row(dict(big), 20_000)
    assert trimmed == ["RequestParameters", "UserAgent"]
    assert "[trimmed by trailrelay: 100000 bytes" in orjson.loads(data)["UserAgent"]


def test_encoder_bodies_hold_every_corpus_record_once_and_fit() -> None:
    records = [fresh(r) for r in corpus()]
    bodies = SentinelEncoder().encode(records)
    rows = [r for b in bodies for r in orjson.loads(b)]
    assert len(rows) == len(records)
    assert all(len(b) <= 1_000_000 for b in bodies)
    assert len(bodies) >= 4


def test_cut_bodies_boundaries() -> None:
    assert cut_bodies([], 100) == []
    assert cut_bodies([10, 10, 10], 34) == [range(3)]  # 2 + 30 + 2 commas
    assert cut_bodies([10, 10, 10], 33) == [range(2), range(2, 3)]
    assert cut_bodies([200], 100) == [range(1)]  # an oversize row still gets its own body
    rows = encode_rows([fresh(r) for r in corpus()[:10]])
    assert all(r.error is None and r.data.startswith(b"{") for r in rows)


@pytest.mark.parametrize("modified", [False, True])
def test_a_record_without_event_time_takes_time_generated_from_logstash_timestamp(modified: bool) -> None:
    """Logstash-processed trails carry @timestamp, not eventTime: TimeGenerated is the core's event time."""
    doc = {
        "@timestamp": "2026-03-01T21:04:05.250+01:00",
        "eventSource": "cloudtrail.amazonaws.com",
        "eventName": "StopLogging",
        "eventID": "e-logstash-1",
        "awsRegion": "eu-west-1",
    }
    record = Record.from_bytes(orjson.dumps(doc), Origin("file", "logstash.ndjson"))
    if modified:  # a transform replaced the event: the slow path
        record.replace(dict(doc))
    assert record.routing.event_time is not None
    row = map_record(record)
    assert row["TimeGenerated"] == "2026-03-01T20:04:05.250000Z"
    assert row["EventTime"] == row["TimeGenerated"]
    assert orjson.loads(SentinelEncoder().encode([record])[0])[0]["TimeGenerated"] == row["TimeGenerated"]


def test_event_time_wins_over_logstash_timestamp() -> None:
    doc = {"eventTime": "2026-03-01T20:00:00Z", "@timestamp": "2026-03-02T10:00:00Z", "eventID": "e-2"}
    row = map_record(Record.from_bytes(orjson.dumps(doc), Origin("file", "x")))
    assert row["TimeGenerated"] == "2026-03-01T20:00:00Z"


@pytest.mark.parametrize("modified", [False, True])
@pytest.mark.parametrize(
    ("event_time", "expected"),
    [
        ("2023-07-10T11:45:00Z", "2023-07-10T11:45:00Z"),  # CloudTrail's own text, kept
        ("2023-07-10T13:45:00+02:00", "2023-07-10T11:45:00Z"),
        ("20230710T114500Z", "2023-07-10T11:45:00Z"),
        ("2023-07-10T11:45:00.123456789Z", "2023-07-10T11:45:00.123457Z"),  # rounded to microseconds
        ("garbage", None),
        ("2023-07-10T11:45:60Z", None),
        (1688989500, None),
    ],
)
def test_time_generated_is_a_utc_time_azure_reads_or_left_to_azure(
    modified: bool, event_time: object, expected: str | None
) -> None:
    """The raw eventTime text went into the datetime columns whatever it was: an offset Azure may
    read differently, basic ISO or text it cannot read at all."""
    doc = {"eventTime": event_time, "eventSource": "cloudtrail.amazonaws.com", "eventName": "StopLogging"}
    record = Record.from_bytes(orjson.dumps(doc), Origin("file", "x"))
    if modified:
        record.replace(dict(doc))
    row = map_record(record)
    assert row.get("TimeGenerated") == expected
    assert row.get("EventTime") == expected
