"""The encoder's shortcuts give exactly what the plain way gives.

Each shortcut here stands in for a slower, obviously right computation: the identity cache for
decoding and mapping ``userIdentity`` every time, the substring test for the ``_NOT_COMPACT``
regex, the one-copy ``body_of`` for
``"[" + ",".join(rows) + "]"``, and ``encode_batch``'s "plain" flag for sorting rows one by one.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any

import orjson
import pytest

from trailrelay.contract import INTEGRITY_KIND, Origin, Record
from trailrelay.record import decode_routing
from trailrelay_sentinel import mapping
from trailrelay_sentinel.encode import body_of, encode_batch, encode_rows
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
