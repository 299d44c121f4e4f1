"""The encoder's shortcuts give exactly what the plain way gives.

Each shortcut here stands in for a slower, obviously right computation: the identity cache for
decoding and mapping ``userIdentity`` every time, the substring test for the ``_NOT_COMPACT``
regex, the one-copy ``body_of`` for
``"[" + ",".join(rows) + "]"``, and ``encode_batch``'s "plain" flag for sorting rows one by one.
"""

from __future__ import annotations

import copy
import datetime as dt
import itertools
from typing import Any

import msgspec
import orjson
import pytest

from trailrelay.contract import INTEGRITY_KIND, Origin, Record, RiskTag
from trailrelay.record import decode_routing
from trailrelay_sentinel import mapping
from trailrelay_sentinel.encode import body_of, encode_batch, encode_rows
from trailrelay_sentinel.integrity import encode_integrity_row
from trailrelay_sentinel.mapping import map_document, map_record

ORIGIN = Origin("file", "fast-paths.json")

ASSUMED = {
    "type": "AssumedRole",
    "principalId": "AROAEXAMPLEID:session-a",
    "arn": "arn:aws:sts::111122223333:assumed-role/Admin/session-a",
    "accountId": "111122223333",
    "accessKeyId": "ASIAEXAMPLEKEY000001",
    "sessionContext": {
        "sessionIssuer": {
            "type": "Role",
            "principalId": "AROAEXAMPLEID",
            "arn": "arn:aws:iam::111122223333:role/Admin",
            "accountId": "111122223333",
            "userName": "Admin",
        },
        "attributes": {"creationDate": "2026-03-02T09:00:00Z", "mfaAuthenticated": "false"},
    },
}


def event(identity: object, n: int = 0) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "eventVersion": "1.09",
        "eventTime": "2026-03-02T10:00:00Z",
        "eventSource": "iam.amazonaws.com",
        "eventName": "ListRoles",
        "awsRegion": "us-east-1",
        "eventID": f"fast-{n}",
        "requestParameters": None,
        "responseElements": None,
    }
    if identity is not ...:
        doc["userIdentity"] = identity
    return doc


def record(doc: dict[str, Any]) -> Record:
    return Record.from_bytes(orjson.dumps(doc), ORIGIN)


def slow(rec: Record) -> dict[str, Any]:
    return map_document(orjson.loads(rec.raw), rec)


def test_identity_cache_never_mixes_up_identities() -> None:
    # Same length, one character apart (the MFA flag, the session name): a cache keyed on less
    # than the exact bytes would hand one record the other's columns.
    mfa = copy.deepcopy(ASSUMED)
    mfa["sessionContext"]["attributes"]["mfaAuthenticated"] = "true "  # as long as "false"
    other = copy.deepcopy(ASSUMED)
    other["principalId"] = "AROAEXAMPLEID:session-b"
    assert len(orjson.dumps(mfa)) == len(orjson.dumps(ASSUMED)) == len(orjson.dumps(other))
    identities = [ASSUMED, mfa, ASSUMED, ASSUMED, other, mfa, None, ..., other, ASSUMED]
    mapping._IDENTITIES.clear()
    for _ in range(2):  # the second time round every identity is cached
        for n, identity in enumerate(identities):
            rec = record(event(identity, n))
            row = map_record(rec)
            assert row == slow(rec), identity
            if identity is ASSUMED:
                assert row["SessionMfaAuthenticated"] is False
                assert row["UserIdentityPrincipalid"].endswith("session-a")
            elif identity is mfa:
                assert row["SessionMfaAuthenticated"] is True
            elif identity is other:
                assert row["UserIdentityPrincipalid"].endswith("session-b")
            else:
                assert not any(k.startswith(("UserIdentity", "Session")) for k in row)


def test_an_identity_with_odd_types_takes_the_slow_path_even_after_a_good_one() -> None:
    odd = {**ASSUMED, "type": 7, "accountId": 111122223333}
    for identity in (ASSUMED, odd, odd, ASSUMED):
        rec = record(event(identity))
        assert map_record(rec) == slow(rec)
    row = map_record(record(event(odd)))
    assert row["UserIdentityType"] == "7" and row["UserIdentityAccountId"] == "111122223333"


def test_the_identity_cache_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mapping, "_IDENTITIES_MAX", 4)
    mapping._IDENTITIES.clear()
    for n in range(10):
        identity = {**ASSUMED, "principalId": f"AROAEXAMPLEID:session-{n}"}
        rec = record(event(identity, n))
        assert map_record(rec)["UserIdentityPrincipalid"] == f"AROAEXAMPLEID:session-{n}"
        assert len(mapping._IDENTITIES) <= 4
    big = {**ASSUMED, "arn": "arn:" + "x" * mapping._IDENTITY_MAX_BYTES}
    mapping._IDENTITIES.clear()
    assert map_record(record(event(big)))["UserIdentityArn"] == big["arn"]
    assert not mapping._IDENTITIES  # too large to keep


def test_not_compact_is_the_regex() -> None:
    alphabet = ' \n\r\t:,[]{}"a\\é'
    texts = ["".join(p) for n in range(4) for p in itertools.product(alphabet, repeat=n)]
    texts += ['{"a": 1}', '{"a":"b, c"}', '["a" ]', "[\n1]", '{"k":"v" }', "x" * 50 + "[ "]
    for text in texts:
        assert mapping._not_compact(text) == bool(mapping._NOT_COMPACT.search(text.encode())), repr(text)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('{"a":"b"}', '{"a":"b"}'),
        ('{"a": "b"}', '{"a":"b"}'),
        ('{"when":"Jul 3, 2023, 11:42:38 AM"}', '{"when":"Jul 3, 2023, 11:42:38 AM"}'),
        ('{"x":"\\u00e9", "n":1.50}', '{"x":"é","n":1.5}'),  # re-serialised: escapes, numbers
        ('{"x":"\\u00e9","n":1.50}', '{"x":"\\u00e9","n":1.50}'),  # compact: kept byte for byte
        ("[\n  1,\n  2\n]", "[1,2]"),
        ("[1,\t2]", "[1,2]"),
        ("null", None),
        ("{}", "{}"),
    ],
)
def test_json_text_columns(value: str, expected: str | None) -> None:
    raw = b'{"eventID":"j","requestParameters":' + value.encode() + b"}"
    row = map_record(Record.from_bytes(raw, ORIGIN))
    assert row.get("RequestParameters") == expected


def test_json_text_that_is_not_utf8_is_refused_as_before() -> None:
    raw = b'{"eventID":"u","requestParameters":{"a":"\xff"}}'
    rec = Record(raw, decode_routing(b'{"eventID":"u"}'), ORIGIN)  # past the core's UTF-8 check
    (row,) = encode_rows([rec])
    assert row.error is not None
    assert row.error.endswith("'utf-8' codec can't decode byte 0xff in position 6: invalid start byte")


@pytest.mark.parametrize("count", [0, 1, 2, 5])
def test_body_of_is_the_json_array(count: int) -> None:
    rows = [orjson.dumps({"n": n}) for n in range(count)]
    assert body_of(rows) == b"[" + b",".join(rows) + b"]"
    assert orjson.loads(body_of(rows)) == [{"n": n} for n in range(count)]


def test_encode_batch_says_when_every_row_is_plain() -> None:
    plain = [record(event(ASSUMED, n)) for n in range(3)]
    rows, is_plain = encode_batch(plain)
    assert is_plain and [r.data for r in rows] == [r.data for r in encode_rows(plain)]
    integrity = Record.from_document(
        {"eventID": "i", "eventTime": "2026-03-02T10:00:00Z"}, Origin(INTEGRITY_KIND, "x")
    )
    assert encode_batch([*plain, integrity])[1] is False
    odd = Record(b'{"eventID":"u","responseElements":{"a":"\xff"}}', decode_routing(b"{}"), ORIGIN)
    assert encode_batch([odd, *plain])[1] is False  # rejected
    big = record({**event(ASSUMED), "requestParameters": {"x": "y" * 20_000}})
    rows, is_plain = encode_batch([*plain, big], max_body=10_000)
    assert rows[-1].trimmed and is_plain is False


# --- the fast row against the careful one -------------------------------------------------------

FULL: dict[str, Any] = {
    "eventVersion": "1.10",
    "userIdentity": {
        **ASSUMED,
        "userName": "Admin",
        "invokedBy": "cloudformation.amazonaws.com",
        "onBehalfOf": {
            "userId": "u-1",
            "identityStoreArn": "arn:aws:identitystore::111122223333:identitystore/d-1",
        },
        "sessionContext": {**ASSUMED["sessionContext"], "ec2RoleDelivery": "2.0"},
    },
    "eventTime": "2026-03-02T10:00:00Z",
    "eventSource": "ec2.amazonaws.com",
    "eventName": "AuthorizeSecurityGroupIngress",
    "awsRegion": "eu-west-1",
    "sourceIPAddress": "198.51.100.7",
    "userAgent": "agent/1.0 (Ünïcode ✓)",
    "errorCode": "Client.Invalid",
    "errorMessage": 'no, really: "quoted" é',
    "requestParameters": {
        "groupId": "sg-1",
        "ipPermissions": {
            "items": [
                {
                    "ipProtocol": "tcp",
                    "fromPort": 22,
                    "toPort": 23,
                    "ipRanges": {"items": [{"cidrIp": "0.0.0.0/0"}]},
                }
            ]
        },
    },
    "responseElements": {"when": "Jul 3, 2023, 11:42:38 AM", "ok": True},
    "additionalEventData": {"note": "ß"},
    "requestID": "req-1",
    "eventID": "full-1",
    "readOnly": False,
    "resources": [{"ARN": "arn:aws:ec2:eu-west-1:111122223333:security-group/sg-1"}],
    "eventType": "AwsApiCall",
    "apiVersion": "2016-11-15",
    "managementEvent": True,
    "recipientAccountId": "111122223333",
    "sharedEventID": "shared-1",
    "vpcEndpointId": "vpce-1",
    "eventCategory": "management",
    "tlsDetails": {
        "tlsVersion": "TLSv1.3",
        "cipherSuite": "TLS_AES_128_GCM_SHA256",
        "clientProvidedHostHeader": "ec2.eu-west-1.amazonaws.com",
    },
    "serviceEventDetails": {"detail": [1, 2.5, None]},
}


def careful_row(rec: Record) -> mapping.Row:
    """The row the slow path makes from the parsed document (with the same time fallback)."""
    row = mapping._row_from_document(orjson.loads(rec.raw), rec)
    if row.TimeGenerated is None:
        mapping._event_time_from_routing(row, rec)
    return row


def variants() -> list[dict[str, Any]]:
    """FULL, and FULL with each field absent, null, or (objects) empty in turn, plus odd spots."""
    out = [FULL]
    for key, value in FULL.items():
        out.append({k: v for k, v in FULL.items() if k != key})
        out.append({**FULL, key: None})
        if isinstance(value, dict):
            out.append({**FULL, key: {}})
    out.append({**FULL, "additionalEventData": None, "insightDetails": {"state": "Start"}})
    out.append({**FULL, "insightDetails": {"state": "Start"}})  # additionalEventData wins
    out.append({k: v for k, v in FULL.items() if k != "additionalEventData"} | {"insightDetails": None})
    out.append({**FULL, "tlsDetails": {"cipherSuite": "only"}})
    out.append({**FULL, "eventCategory": "NetworkActivity"})
    out.append({**FULL, "eventCategory": "Unheard-Of"})
    out.append({**FULL, "managementEvent": "false", "readOnly": "true"})
    out.append({"eventID": "bare"})
    return out


def test_the_fast_row_is_the_careful_row_column_by_column() -> None:
    # Row(...) takes its first 30 columns by position and the rest by name: a slip in either
    # puts a value in the wrong column, which this compares one by one on every variant.
    mapping._IDENTITIES.clear()
    for n, doc in enumerate(variants()):
        for tags in ((), (RiskTag("r1", "Tïtle", "high", "T1078"), RiskTag("r2", "Other", "low"))):
            rec = record({**doc, "eventID": f"v-{n}"})
            rec.tags = tags
            fast = mapping.build_row(rec)
            assert msgspec.structs.asdict(fast) == msgspec.structs.asdict(careful_row(rec)), doc
    row = mapping.build_row(record(FULL))
    assert all(getattr(row, f) is not None for f in mapping._ROW_FIELDS if f != "TrailrelayDetections")


def test_a_mixed_batch_encodes_each_row_as_the_careful_path_does() -> None:
    plain = [record({**doc, "eventID": f"m-{n}"}) for n, doc in enumerate(variants())]
    modified = record({**FULL, "eventID": "mod"})
    modified.replace({**modified.document(), "userIdentity": None, "userAgent": "é"})
    tagged = record({**FULL, "eventID": "tag"})
    tagged.add_tags([RiskTag("r1", "Title", "critical")])
    integrity = Record.from_document(
        {"eventID": "i", "eventTime": "2026-03-02T10:00:00Z"}, Origin(INTEGRITY_KIND, "x")
    )
    records = [*plain, modified, tagged, integrity]
    rows, is_plain = encode_batch(records)
    assert is_plain is False
    encoder = msgspec.json.Encoder()
    for rec, row in zip(records, rows, strict=True):
        if rec is integrity:
            assert row.data == encode_integrity_row(rec)
        elif rec is modified:
            assert row.data == encoder.encode(mapping._row_from_document(rec.document(), rec))
        else:
            assert row.data == encoder.encode(careful_row(rec)), rec.event_id


@pytest.mark.parametrize(
    "when",
    [
        dt.datetime(2026, 3, 2, 10, 0, 0, tzinfo=dt.UTC),
        dt.datetime(2026, 3, 2, 10, 0, 0, 250_000, tzinfo=dt.UTC),
        dt.datetime(2026, 3, 2, 10, 0, 0, 7, tzinfo=dt.UTC),
        dt.datetime(2026, 3, 2, 11, 30, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=1, minutes=30))),
        dt.datetime(2026, 3, 2, 10, 0, 0, tzinfo=dt.timezone.utc),  # noqa: UP017 - a different UTC object
        dt.datetime(2026, 3, 2, 10, 0, 0),  # noqa: DTZ001 - naive: counts as local, as before
        dt.datetime(999, 1, 2, 3, 4, 5, tzinfo=dt.UTC),  # strftime does not pad the year
        dt.datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=dt.UTC),
    ],
)
def test_time_generated_from_routing_is_strftimes_text(when: dt.datetime) -> None:
    rec = record({"eventID": "no-time"})
    rec.routing.event_time = when
    utc = when.astimezone(dt.UTC)
    expected = utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if utc.microsecond else "%Y-%m-%dT%H:%M:%SZ")
    row = map_record(rec)
    assert row["TimeGenerated"] == row["EventTime"] == expected
