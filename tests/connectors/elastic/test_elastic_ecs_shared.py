"""The fast paths of the ECS mapping: shared (cached) mapping, and documents identical to the plain path."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from trailrelay.contract import Origin, Record, RiskTag
from trailrelay.testing import load_records, require_corpus
from trailrelay_elastic import ecs
from trailrelay_elastic.config import ElasticConfig
from trailrelay_elastic.ecs import to_ecs
from trailrelay_elastic.encode import DocumentBuilder


@pytest.fixture(scope="module")
def corpus() -> list[Record]:
    return load_records(require_corpus("cloudtrail"))


@pytest.fixture(autouse=True)
def empty_caches() -> None:
    ecs._IDENTITIES.clear()
    ecs._TLS.clear()


def shared(event: dict[str, Any]) -> bytes:
    """The shared-mode document of a fresh parse of ``event``, serialized."""
    return orjson.dumps(to_ecs(orjson.loads(orjson.dumps(event)), shared=True))


def plain(event: dict[str, Any]) -> bytes:
    return orjson.dumps(to_ecs(copy.deepcopy(event)))


def test_shared_mapping_writes_the_plain_bytes_on_the_corpus(corpus: list[Record]) -> None:
    docs = []
    for record in corpus:
        expected = orjson.dumps(to_ecs(record.document()))
        for _ in range(2):  # a cache miss, then a hit
            doc = to_ecs(orjson.loads(record.raw), shared=True)
            assert orjson.dumps(doc) == expected, record
        docs.append((doc, expected))
    assert ecs._IDENTITIES and ecs._TLS  # the caches were used
    # Documents share cached parts: mapping later events must not have changed earlier ones.
    for doc, expected in docs:
        assert orjson.dumps(doc) == expected


IDENTITY = {
    "type": "AssumedRole",
    "principalId": "AROAEXAMPLE:jane.doe@example.com",
    "arn": "arn:aws:sts::111122223333:assumed-role/Admin/jane.doe@example.com",
    "accountId": "111122223333",
    "accessKeyId": "",
    "sessionContext": {
        "sessionIssuer": {
            "type": "Role",
            "principalId": "AROAEXAMPLE",
            "userName": "Admin",
            "arn": "arn:aws:iam::111122223333:role/Admin",
            "accountId": "111122223333",
        },
        "attributes": {"creationDate": "2026-03-02T09:00:00Z", "mfaAuthenticated": "false"},
    },
}
TLS = {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256", "keyExchange": "x25519"}


def event(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "eventVersion": "1.08",
        "userIdentity": IDENTITY,
        "eventTime": "2026-03-02T09:05:00Z",
        "eventSource": "iam.amazonaws.com",
        "eventName": "CreateUser",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.10",
        "requestParameters": None,
        "responseElements": None,
        "eventID": "0b7d7a2e-0000-4000-8000-000000000010",
        "recipientAccountId": "111122223333",
        "tlsDetails": TLS,
    }
    base.update(fields)
    return base


def test_a_cached_identity_is_not_changed_by_the_documents_using_it() -> None:
    adds = event(
        eventName="UpdateUser",
        requestParameters={"userName": "bob", "newUserName": "robert"},
        responseElements={"user": {"userId": "AIDAEXAMPLEBOB"}},
    )
    bare = event()
    for e in (adds, bare, adds, bare):
        assert shared(e) == plain(e)
    doc = orjson.loads(shared(bare))
    assert "target" not in doc["user"] and "changes" not in doc["user"]
    assert doc["related"]["user"][:2] == ["jane.doe@example.com", "jane.doe"]
    assert "bob" not in doc["related"]["user"]
    assert doc["tls"] == {"version_protocol": "tls", "version": "1.3", "cipher": "TLS_AES_128_GCM_SHA256"}
    assert doc["aws"]["cloudtrail"]["tls_details"] == {"key_exchange": "x25519"}


@pytest.mark.parametrize(
    ("identity", "tls"),
    [
        ({"accessKeyId": "", "userName": "-", "sessionContext": {"attributes": {}}}, {"tlsVersion": "none"}),
        ({"type": None, "sessionContext": {"sessionIssuer": {"arn": ""}}}, {"tlsVersion": "tlsVersion"}),
        ({"type": "IAMUser", "arn": [], "invokedBy": ["-", None]}, {"cipherSuite": ["x", ""]}),
    ],
)
def test_identity_and_tls_with_only_prunable_parts(identity: dict[str, Any], tls: dict[str, Any]) -> None:
    e = event(userIdentity=identity, tlsDetails=tls)
    assert shared(e) == plain(e)
    assert shared(e) == plain(e)  # from the cache


def test_instance_ids_from_resources_request_and_response() -> None:
    e = event(
        eventSource="ec2.amazonaws.com",
        eventName="StartInstances",
        resources=[
            {
                "ARN": "arn:aws:ec2:us-east-1:111122223333:instance/i-0aaaaaaaaaaaaaaaa",
                "accountId": "111122223333",
                "type": "AWS::EC2::Instance",
            }
        ],
        requestParameters={
            "instancesSet": {
                "items": [{"instanceId": "i-0bbbbbbbbbbbbbbbb"}, {"instanceId": "i-0aaaaaaaaaaaaaaaa"}]
            }
        },
        responseElements={
            "instanceIds": ["i-0ccccccccccccccccc", "i-short"],
            "target": "i-0dddddddddddddddd",
        },
    )
    hosts = ["i-0aaaaaaaaaaaaaaaa", "i-0bbbbbbbbbbbbbbbb", "i-0dddddddddddddddd", "i-0ccccccccccccccccc"]
    for doc in (to_ecs(e), to_ecs(e, shared=True)):
        assert doc["related"]["hosts"] == hosts
    # Without resources: the ids of the request or of the response alone.
    alone = [
        ({"instanceId": "i-0eeeeeeeeeeeeeeee"}, None, ["i-0eeeeeeeeeeeeeeee"]),
        ({"instanceType": "t3.micro"}, {"instanceIds": ["i-0fffffffffffffffff"]}, ["i-0fffffffffffffffff"]),
        ({"instanceType": "t3.micro"}, None, None),
    ]
    for request, response, expected in alone:
        e = event(requestParameters=request, responseElements=response)
        for doc in (to_ecs(e), to_ecs(e, shared=True)):
            assert doc["related"].get("hosts") == expected


def test_bulk_entry_document_equals_ecs_document(corpus: list[Record]) -> None:
    builder = DocumentBuilder(
        ElasticConfig.validate({"type": "elastic", "url": "http://127.0.0.1:9200", "mode": "ecs"})
    )
    records = corpus[:400]
    records[3].add_tags([RiskTag("CT-001", "CloudTrail logging stopped", "high", "T1562.008")])
    changed = Record(records[5].raw, records[5].routing, Origin("s3", "s3://b/k.json.gz", "b", "k.json.gz"))
    changed.replace({**changed.document(), "eventName": "Changed"})  # a transform's output: not shared
    for record in [*records, changed, *records]:
        line = builder.entry(record).split(b"\n")[1]
        assert line == orjson.dumps(builder.ecs_document(record))
        assert orjson.loads(line)["log"]["file"]["path"] == record.origin.location
