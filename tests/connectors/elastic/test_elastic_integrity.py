"""Integrity events ([integrity]) in Elasticsearch: their own data stream, idempotent ids.

Golden checks of the action and document, then the real client against the stand-in (a mixed
batch, duplicates, a refused write), and a signed test trail forwarded from a local mirror
through the whole pipeline.
"""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest
from elastic_helpers import API_KEY, make_config, make_sink
from elastic_standin import PRODUCT, StandIn

from trailrelay.config import parse_config
from trailrelay.contract import Batch, ConfigError, FatalSinkError, Origin, Record, Status
from trailrelay.integrity.records import integrity_record
from trailrelay.pipeline.forwarder import build_pipeline
from trailrelay.testing import SAMPLE_DIGEST, SAMPLE_INTEGRITY_EVENT, sample_records
from trailrelay.testing.trail import TrailBuilder
from trailrelay_elastic.encode import BulkEncoder, DocumentBuilder
from trailrelay_elastic.integrity import INTEGRITY_KIND, integrity_doc_id

DIGEST = SAMPLE_DIGEST
EVENT: dict[str, Any] = SAMPLE_INTEGRITY_EVENT


def lines(entry: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    action, doc, rest = entry.split(b"\n")
    assert rest == b""
    return orjson.loads(action), orjson.loads(doc)


def test_kind_matches_core() -> None:
    assert integrity_record(EVENT).origin.kind == INTEGRITY_KIND


@pytest.mark.parametrize("mode", ["integration", "ecs"])
def test_integrity_document_golden(mode: str) -> None:
    builder = DocumentBuilder(make_config("http://127.0.0.1:1", mode=mode, namespace="prod"))
    record = integrity_record(EVENT)
    action, doc = lines(builder.entry(record))
    assert action == {"create": {"_index": "logs-trailrelay.integrity-prod", "_id": integrity_doc_id(record)}}
    assert doc == {
        "@timestamp": "2026-03-02T10:00:05.000Z",
        "message": f"CloudTrail digest {DIGEST}: invalid (log-modified)",
        "event": {
            "kind": "alert",
            "dataset": "trailrelay.integrity",
            "module": "trailrelay",
            "action": "cloudtrail-integrity-check",
            "outcome": "failure",
        },
        "tags": ["forwarded", "trailrelay-integrity"],
        "cloud": {"provider": "aws", "account": {"id": "111122223333"}, "region": "us-east-1"},
        "organization": {"id": "o-abcdef1234"},
        "data_stream": {"type": "logs", "dataset": "trailrelay.integrity", "namespace": "prod"},
        "trailrelay": {
            "integrity": EVENT,
            "detections": [
                {
                    "rule_id": "trailrelay-integrity-failed",
                    "title": "CloudTrail log integrity check failed: log-modified",
                    "severity": "critical",
                    "technique": "T1070",
                }
            ],
        },
        "rule": {
            "id": "trailrelay-integrity-failed",
            "name": "CloudTrail log integrity check failed: log-modified",
            "ruleset": "trailrelay",
        },
        "threat": {"framework": "MITRE ATT&CK", "technique": {"id": ["T1070"]}},
    }


def test_valid_event_is_an_event_and_a_restart_an_alert() -> None:
    builder = DocumentBuilder(make_config("http://127.0.0.1:1"))
    valid = {**EVENT, "verdict": "valid", "problems": []}
    _, doc = lines(builder.entry(integrity_record(valid)))
    assert (doc["event"]["kind"], doc["event"]["outcome"]) == ("event", "success")
    assert "rule" not in doc and "detections" not in doc["trailrelay"]
    assert doc["message"] == f"CloudTrail digest {DIGEST}: valid"
    _, restart = lines(builder.entry(integrity_record({**valid, "chain": "restart"})))
    assert (restart["event"]["kind"], restart["event"]["outcome"]) == ("alert", "success")
    assert restart["rule"]["id"] == "trailrelay-integrity-chain-gap"


def test_ids_are_stable_per_location_verdict_and_window() -> None:
    record = integrity_record(EVENT)
    same = integrity_record({**EVENT, "verified_at": "2026-03-02T10:30:00Z"})  # sent again later
    assert integrity_doc_id(record) == integrity_doc_id(same)
    assert integrity_doc_id(record) != integrity_doc_id(integrity_record({**EVENT, "verdict": "valid"}))
    later_check = {**EVENT, "window_start": "2026-03-02T08:00:00Z", "window_end": "2026-03-02T09:00:00Z"}
    assert integrity_doc_id(record) != integrity_doc_id(integrity_record(later_check))
    uncovered = {**EVENT, "verdict": "log-not-covered", "digest": None}
    other = {**uncovered, "problems": [{"kind": "log-not-covered", "location": "s3://trail-bucket/m"}]}
    assert integrity_doc_id(integrity_record(uncovered)) != integrity_doc_id(integrity_record(other))
    assert len(integrity_doc_id(record)) == 20


def test_custom_target_and_plain_index() -> None:
    builder = DocumentBuilder(make_config("http://127.0.0.1:1", integrity_data_stream="logs-audit.trail-x"))
    action, doc = lines(builder.entry(integrity_record(EVENT)))
    assert action["create"]["_index"] == "logs-audit.trail-x"
    assert doc["data_stream"] == {"type": "logs", "dataset": "audit.trail", "namespace": "x"}
    assert doc["event"]["dataset"] == "audit.trail"
    builder = DocumentBuilder(make_config("http://127.0.0.1:1", integrity_data_stream="trail-integrity"))
    action, doc = lines(builder.entry(integrity_record(EVENT)))
    assert action["create"]["_index"] == "trail-integrity" and "data_stream" not in doc
    with pytest.raises(ConfigError, match="integrity_data_stream"):
        make_config("http://127.0.0.1:1", integrity_data_stream="Bad Name")


def test_offline_encoder_puts_both_kinds_in_one_body() -> None:
    encoder = BulkEncoder(make_config("http://127.0.0.1:1"))
    (body,) = encoder.encode([*sample_records(2), integrity_record(EVENT)])
    actions = [orjson.loads(x) for x in body.splitlines()[::2]]
    assert [a["create"]["_index"] for a in actions] == [
        "logs-aws.cloudtrail-default",
        "logs-aws.cloudtrail-default",
        "logs-trailrelay.integrity-default",
    ]


def test_a_mixed_batch_through_the_client(standin: StandIn) -> None:
    sink = make_sink(standin.url)
    sink.open()
    try:
        records = [
            *sample_records(3),
            integrity_record(EVENT),
            integrity_record({**EVENT, "verdict": "valid"}),
        ]
        assert [o.status for o in sink.send(Batch(records))] == [Status.DELIVERED] * 5
        stored = standin.stored("logs-trailrelay.integrity-default")
        assert sorted(d["trailrelay"]["integrity"]["verdict"] for d in stored) == ["invalid", "valid"]
        assert len(standin.stored("logs-aws.cloudtrail-default")) == 3
        again = sink.send(Batch([integrity_record(EVENT)], attempt=2))  # at-least-once: sent twice
        assert [o.status for o in again] == [Status.DUPLICATE]
    finally:
        sink.close()


def test_a_refused_integrity_write_names_the_integrity_data_stream(standin: StandIn) -> None:
    sink = make_sink(standin.url)
    sink.open()
    item = {
        "create": {
            "_index": "logs-trailrelay.integrity-default",
            "status": 403,
            "error": {
                "type": "security_exception",
                "reason": "action [indices:data/write/bulk[s]] is unauthorized",
            },
        }
    }
    standin.queue(
        {"status": 200, "headers": dict(PRODUCT), "body": {"took": 1, "errors": True, "items": [item]}}
    )
    try:
        with pytest.raises(FatalSinkError, match=r"logs-trailrelay\.integrity-default") as info:
            sink.send(Batch([integrity_record(EVENT)]))
        assert API_KEY not in str(info.value)
    finally:
        sink.close()


def test_a_record_rebuilt_without_routing_still_gets_its_time() -> None:
    record = Record.from_document(EVENT, Origin(INTEGRITY_KIND, DIGEST))
    _, doc = lines(DocumentBuilder(make_config("http://127.0.0.1:1")).entry(record))
    assert doc["@timestamp"] == "2026-03-02T10:00:05.000Z"


def test_forwarding_with_integrity_end_to_end(standin: StandIn, tmp_path: Path) -> None:
    b = TrailBuilder("trail-bucket")
    keys = b.chain(
        "111122223333",
        "us-east-1",
        start=dt.datetime(2026, 3, 1, 21, tzinfo=dt.UTC),
        hours=4,
        stopped_hours=[2],
    )
    changed = b.digest_doc(keys[0])["logFiles"][1]["s3Object"]
    b.write(tmp_path / "mirror")
    path = tmp_path / "mirror" / changed
    content = bytearray(gzip.decompress(path.read_bytes()))
    content[40] ^= 1
    path.write_bytes(gzip.compress(bytes(content)))
    (tmp_path / "key.der").write_bytes(b.public_der)
    table = {
        "source": {"type": "files", "path": "mirror"},
        "sinks": [
            {"type": "elastic", "url": standin.url, "api_key": API_KEY, "filter": {}, "batch_seconds": 0.05}
        ],
        "dead_letter": {"path": "dead"},
        "state": {"path": "state.sqlite"},
        "integrity": {"enabled": True, "public_keys": {b.fingerprint: "key.der"}},
    }
    built = build_pipeline(parse_config(table, base_dir=tmp_path), once=True, backoff_base=0.001)
    result = built.pipeline.run()
    for sink in built.sinks.values():
        sink.close()
    assert result.ok and result.open_units == 0
    assert len(standin.stored("logs-aws.cloudtrail-default")) == 3 * 2 * len(keys)
    docs = {
        d["trailrelay"]["integrity"]["digest"]: d for d in standin.stored("logs-trailrelay.integrity-default")
    }
    stopped = docs.pop(None)  # no digest: the chain's digests end in 2026-03, the window at now
    assert set(docs) == {f"s3://trail-bucket/{k}" for k in keys}
    assert stopped["trailrelay"]["integrity"]["verdict"] == "window-not-covered"
    assert stopped["trailrelay"]["integrity"]["chain"] == "stopped" and stopped["event"]["kind"] == "alert"
    first, second, restarted = (docs[f"s3://trail-bucket/{k}"] for k in keys)
    assert first["event"]["kind"] == "alert" and first["trailrelay"]["integrity"]["verdict"] == "invalid"
    assert first["rule"]["id"] == "trailrelay-integrity-failed"
    assert second["event"]["kind"] == "event" and "rule" not in second
    assert (
        restarted["trailrelay"]["integrity"]["chain"] == "restart" and restarted["event"]["kind"] == "alert"
    )
