"""Document shape: CloudTrail's own fields, @timestamp, cloud, detections, integrity events."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import orjson
import pytest
from opensearch_helpers import make_config

from trailrelay.contract import INTEGRITY_KIND, Origin, Record, RiskTag
from trailrelay.testing import SAMPLE_EVENTS, SAMPLE_INTEGRITY_EVENT, load_records, sample_records
from trailrelay_opensearch.encode import BulkEncoder, DocumentBuilder, doc_id

URL = "https://search-trail.eu-west-1.es.amazonaws.com"


def entries(records: list[Record], **overrides: Any) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    builder = DocumentBuilder(make_config(URL, **overrides))
    out = []
    for r in records:
        action, doc, tail = builder.entry(r).split(b"\n")
        assert tail == b""
        out.append((json.loads(action), json.loads(doc)))
    return out


def test_document_is_the_record_plus_three_fields() -> None:
    record = sample_records(1)[0]
    [(action, doc)] = entries([record])
    assert action == {"create": {"_index": "logs-aws.cloudtrail-default", "_id": doc_id(record)}}
    assert doc["@timestamp"] == "2026-03-02T10:15:02.000Z"
    assert doc["cloud"] == {"provider": "aws", "account": {"id": "111122223333"}, "region": "eu-west-1"}
    assert doc["trailrelay"] == {"origin": "trailrelay-testing://sample"}
    original = orjson.loads(record.raw)
    assert {k: v for k, v in doc.items() if k not in ("@timestamp", "cloud", "trailrelay")} == original


def test_pretty_printed_records_and_every_sample_encode() -> None:
    records = sample_records(8)  # every fourth is pretty-printed
    for record, (_, doc) in zip(records, entries(records), strict=True):
        assert doc["eventID"] == record.event_id


def test_detection_tags_are_carried() -> None:
    record = sample_records(1)[0]
    record.add_tags(
        [
            RiskTag("ct-stop-logging", "CloudTrail logging stopped", "high", "T1562.008"),
            RiskTag("ct-any", "Something", "medium"),
        ]
    )
    [(_, doc)] = entries([record])
    ours = doc["trailrelay"]
    assert ours["rule_id"] == ["ct-stop-logging", "ct-any"]
    assert ours["severity"] == "high"
    assert ours["technique"] == ["T1562.008"]
    assert ours["detections"][0]["title"] == "CloudTrail logging stopped"


def test_logstash_timestamp_and_beats_cloud_are_not_duplicated() -> None:
    event = dict(SAMPLE_EVENTS[0])
    del event["eventTime"]
    event["@timestamp"] = "2026-03-02T10:20:00.000Z"
    event["cloud"] = {"instance": {"id": "i-1"}}
    record = Record.from_bytes(orjson.dumps(event), Origin("firehose", "stream"))
    [(_, doc)] = entries([record])
    raw = DocumentBuilder(make_config(URL)).document(record)
    assert raw.count(b'"@timestamp"') == 1
    assert raw.count(b'"cloud"') == 1
    assert doc["@timestamp"] == "2026-03-02T10:20:00.000Z"  # core derives event time from it
    assert doc["cloud"]["provider"] == "aws"


def test_an_added_key_spelled_with_escapes_is_not_duplicated() -> None:
    """``"\\u0063loud"`` is the key ``cloud``: a quick byte search for the name misses it."""
    body = orjson.dumps(SAMPLE_EVENTS[0])[:-1] + b',"\\u0063loud":{"instance":{"id":"i-1"}}}'
    record = Record.from_bytes(body, Origin("firehose", "stream"))
    raw = DocumentBuilder(make_config(URL)).document(record)
    top = [key for key, _ in json.loads(raw, object_pairs_hook=list)]  # every key, duplicates too
    assert top.count("cloud") == 1
    assert json.loads(raw)["cloud"]["provider"] == "aws"


def test_plain_index_target_and_integrity_index() -> None:
    integrity = Record.from_bytes(
        orjson.dumps(SAMPLE_INTEGRITY_EVENT), Origin(INTEGRITY_KIND, SAMPLE_INTEGRITY_EVENT["digest"])
    )
    (a1, _), (a2, doc) = entries([sample_records(1)[0], integrity], index="cloudtrail", namespace="prod")
    assert a1["create"]["_index"] == "cloudtrail"
    assert a2["create"]["_index"] == "logs-trailrelay.integrity-prod"
    assert doc["event"]["kind"] == "alert"
    assert doc["trailrelay"]["integrity"]["verdict"] == "invalid"
    assert doc["cloud"]["account"]["id"] == "111122223333"
    assert "log-modified" in doc["message"]
    again = entries([integrity])[0][0]["create"]["_id"]
    assert again == a2["create"]["_id"]  # deterministic


def test_encoder_billable_bytes_are_the_document_lines() -> None:
    encoder = BulkEncoder(make_config(URL))
    records = sample_records(5)
    [body] = encoder.encode(records)
    docs = body.split(b"\n")[1::2]
    assert [encoder.billable_bytes(r) for r in records] == [len(d) for d in docs]


def test_corpus_documents_keep_cloudtrail_names(corpus: Any) -> None:
    records = load_records(corpus / "cloudtrail")[:2000]
    for record, (_, doc) in zip(records, entries(records), strict=True):
        assert doc["eventID"] == record.event_id
        if record.routing.event_time is not None:
            want = record.routing.event_time.astimezone(dt.UTC)
            assert doc["@timestamp"].startswith(want.strftime("%Y-%m-%dT%H:%M:%S"))


def test_pretty_printed_records_are_spliced_without_a_parse_and_say_the_same() -> None:
    event = dict(SAMPLE_EVENTS[0])
    event["requestParameters"] = {"note": 'a line\nbreak and "quotes"\r\n  kept', "n": [1, {"x": None}]}
    origin = Origin("file", "s3://trail/x.json.gz")
    compact = Record.from_bytes(orjson.dumps(event), origin)
    for option in (orjson.OPT_INDENT_2, orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS):
        pretty_raw = orjson.dumps(event, option=option).replace(b"\n", b"\r\n")
        pretty = Record.from_bytes(pretty_raw, origin)
        builder = DocumentBuilder(make_config(URL))
        entry = builder.entry(pretty)
        assert entry.count(b"\n") == 2  # one action line, one document line
        assert pretty._doc is None  # never parsed on the way
        assert json.loads(entry.split(b"\n")[1]) == json.loads(builder.entry(compact).split(b"\n")[1])


def test_added_key_names_nested_in_the_record_keep_the_spliced_path() -> None:
    event = dict(SAMPLE_EVENTS[0])
    event["requestParameters"] = {"cloud": "x", "trailrelay": 1, "@timestamp": "y"}
    record = Record.from_bytes(orjson.dumps(event), Origin("file", "s3://trail/x.json.gz"))
    doc = json.loads(DocumentBuilder(make_config(URL)).document(record))
    assert doc["requestParameters"] == {"cloud": "x", "trailrelay": 1, "@timestamp": "y"}
    assert doc["cloud"]["provider"] == "aws" and record._doc is None


def test_the_encoders_caches_hold_small_fragments_not_orjson_buffers() -> None:
    """Each output of orjson keeps a ~4 KB buffer; cached per timestamp, that grew the soak to 534 MB."""
    import tracemalloc

    base = orjson.loads(sample_records(1)[0].raw)
    start = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)
    records = []
    for i in range(2000):  # a distinct eventTime, region and account each: every cache misses
        event = dict(base, eventID=f"ev-{i}", awsRegion=f"eu-west-{i}")
        event["eventTime"] = (start + dt.timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        event["recipientAccountId"] = f"{i:012d}"
        records.append(Record.from_bytes(orjson.dumps(event), Origin("file", f"/trail/{i}.json.gz"), 0))
    builder = DocumentBuilder(make_config(URL))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        lines = [builder.entry(r) for r in records]
        held = tracemalloc.get_traced_memory()[0] - before - sum(len(x) + 40 for x in lines)
    finally:
        tracemalloc.stop()
    assert len(builder._timestamps) == 2000
    assert held < 2000 * 1024, f"{held / 2000:.0f} bytes held per record by the caches"


@pytest.mark.parametrize(
    ("extra", "has"),
    [
        (b"", False),
        (b',"@timestamp":"2026-03-02T10:20:00Z"', True),
        (b',"cloud":{"provider":"aws"}', True),
        (b',"trailrelay":{"origin":"x"}', True),
        (b',"\\u0074railrelay":1', True),  # an escape spells the name
        (b',"requestParameters":{"cloud":"on","trailrelay":1,"@timestamp":2}', False),  # nested only
        (b',"note":"caf\\u00e9 \\"cloud\\""', False),  # in a string, with an escape in the text
    ],
)
def test_added_keys_are_found_at_the_top_level_only(extra: bytes, has: bool) -> None:
    from trailrelay_opensearch.encode import _has_added_keys

    line = orjson.dumps(SAMPLE_EVENTS[0])[:-1] + extra + b"}"
    assert json.loads(line)  # the cases are JSON
    assert _has_added_keys(line) is has


def test_a_url_carrying_credentials_is_refused_without_echoing_them() -> None:
    from trailrelay.testing import assert_refuses_credentials_in_url
    from trailrelay_opensearch.config import OpenSearchConfig

    assert_refuses_credentials_in_url(OpenSearchConfig, {"type": "opensearch", "index": "cloudtrail"})
