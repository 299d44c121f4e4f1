"""Configuration and the shape of the documents each mode writes."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import orjson
import pytest
from elastic_helpers import API_KEY, context, make_config

from trailrelay.contract import ConfigError, Origin, Record, RiskTag
from trailrelay.testing import SAMPLE_EVENTS, sample_records
from trailrelay_elastic.config import ElasticConfig
from trailrelay_elastic.encode import BulkEncoder, DocumentBuilder
from trailrelay_elastic.plugin import plugin
from trailrelay_elastic.templates import component_template

S3 = Origin(
    "s3",
    "s3://org-trail/AWSLogs/111122223333/CloudTrail/eu-west-1/2026/03/02/x.json.gz",
    "org-trail",
    "AWSLogs/111122223333/CloudTrail/eu-west-1/2026/03/02/x.json.gz",
)


def record(index: int = 0, origin: Origin = S3, pretty: bool = False) -> Record:
    raw = orjson.dumps(SAMPLE_EVENTS[index], option=orjson.OPT_INDENT_2 if pretty else 0)
    return Record.from_bytes(raw, origin)


def integration_doc(rec: Record, **overrides: Any) -> dict[str, Any]:
    builder = DocumentBuilder(make_config("http://127.0.0.1:9", **overrides))
    return json.loads(builder.integration_document(rec))


def test_integration_document_shape() -> None:
    rec = record(0)
    doc = integration_doc(rec)
    assert doc["message"] == rec.raw.decode()  # the source's own bytes, as a JSON string
    assert doc["@timestamp"] == "2026-03-02T10:15:02.000Z"
    assert doc["data_stream"] == {"type": "logs", "dataset": "aws.cloudtrail", "namespace": "default"}
    assert doc["event"] == {"dataset": "aws.cloudtrail"}
    assert doc["tags"] == ["forwarded", "aws-cloudtrail"]
    assert doc["cloud"] == {"provider": "aws", "region": "eu-west-1", "account": {"id": "111122223333"}}
    assert doc["aws"] == {
        "s3": {"bucket": {"name": "org-trail", "arn": "arn:aws:s3:::org-trail"}, "object": {"key": S3.key}}
    }
    assert doc["log"] == {"file": {"path": S3.location}}
    assert set(doc) == {"@timestamp", "message", "data_stream", "event", "tags", "cloud", "aws", "log"}


def test_integration_message_of_pretty_source_is_one_line() -> None:
    rec = record(1, pretty=True)
    doc = integration_doc(rec)
    assert "\n" not in doc["message"]
    assert json.loads(doc["message"]) == SAMPLE_EVENTS[1]
    assert "Ünïcödé ✓" in doc["message"]


def test_integration_account_falls_back_to_recipient() -> None:
    doc = integration_doc(record(2))  # AWSService event: userIdentity has accountId
    assert doc["cloud"]["account"]["id"] == "111122223333"
    event = dict(SAMPLE_EVENTS[2], userIdentity={"invokedBy": "secretsmanager.amazonaws.com"})
    doc = integration_doc(Record.from_bytes(orjson.dumps(event), S3))
    assert doc["cloud"]["account"]["id"] == "111122223333"


def test_gov_cloud_bucket_arn_and_non_s3_origin() -> None:
    event = dict(SAMPLE_EVENTS[0], awsRegion="us-gov-west-1")
    doc = integration_doc(Record.from_bytes(orjson.dumps(event), S3))
    assert doc["aws"]["s3"]["bucket"]["arn"] == "arn:aws-us-gov:s3:::org-trail"
    doc = integration_doc(record(0, Origin("firehose", "delivery-stream")))
    assert "aws" not in doc and "log" not in doc
    doc = integration_doc(record(0, Origin("file", "/data/trail.json")))
    assert doc["log"] == {"file": {"path": "/data/trail.json"}}


def test_targets_and_overrides() -> None:
    assert make_config("http://x", namespace="prod").target.name == "logs-aws.cloudtrail-prod"
    doc = integration_doc(record(0), data_stream="logs-aws.cloudtrail-eu.prod")
    assert doc["data_stream"] == {"type": "logs", "dataset": "aws.cloudtrail", "namespace": "eu.prod"}
    doc = integration_doc(record(0), index="cloudtrail-archive")
    assert "data_stream" not in doc
    body = BulkEncoder(make_config("http://x", index="cloudtrail-archive")).encode([record(0)])[0]
    assert json.loads(body.split(b"\n")[0])["create"]["_index"] == "cloudtrail-archive"


def test_detections_travel_with_the_document() -> None:
    rec = record(0)
    rec.add_tags([RiskTag("CT-001", "CloudTrail logging stopped", "high", "T1562.008")])
    doc = integration_doc(rec)
    assert doc["trailrelay"]["detections"] == [
        {
            "rule_id": "CT-001",
            "title": "CloudTrail logging stopped",
            "severity": "high",
            "technique": "T1562.008",
        }
    ]
    assert doc["threat"] == {"framework": "MITRE ATT&CK", "technique": {"id": ["T1562.008"]}}
    assert doc["rule"] == {"id": "CT-001", "name": "CloudTrail logging stopped", "ruleset": "trailrelay"}
    ecs = DocumentBuilder(make_config("http://x", mode="ecs")).ecs_document(rec)
    assert ecs["trailrelay"]["detections"][0]["rule_id"] == "CT-001"
    assert ecs["rule"] == doc["rule"] and ecs["threat"] == doc["threat"]


def test_several_detections_become_ecs_rule_arrays() -> None:
    rec = record(0)
    rec.add_tags(
        [
            RiskTag("CT-001", "CloudTrail logging stopped", "critical", "T1562.008"),
            RiskTag("IAM-002", "IAM user activity", "low"),
            RiskTag("CT-003", "Trail coverage reduced", "high", "T1562.008"),
        ]
    )
    for doc in (integration_doc(rec), DocumentBuilder(make_config("http://x", mode="ecs")).ecs_document(rec)):
        assert doc["rule"] == {
            "id": ["CT-001", "IAM-002", "CT-003"],
            "name": ["CloudTrail logging stopped", "IAM user activity", "Trail coverage reduced"],
            "ruleset": "trailrelay",
        }
        assert doc["threat"]["technique"]["id"] == ["T1562.008"]
        assert [d["rule_id"] for d in doc["trailrelay"]["detections"]] == ["CT-001", "IAM-002", "CT-003"]
        assert "technique" not in doc["trailrelay"]["detections"][1]


def test_untagged_documents_carry_no_detection_fields() -> None:
    doc = integration_doc(record(0))
    ecs = DocumentBuilder(make_config("http://x", mode="ecs")).ecs_document(record(0))
    for d in (doc, ecs):
        assert not {"rule", "threat", "trailrelay"} & set(d)


def test_ecs_template_maps_the_detection_fields() -> None:
    props = component_template()["template"]["mappings"]["properties"]
    keyword = {"type": "keyword", "ignore_above": 1024}
    assert props["rule"]["properties"] == {"id": keyword, "name": keyword, "ruleset": keyword}
    assert props["threat"]["properties"]["framework"] == keyword
    assert props["threat"]["properties"]["technique"]["properties"]["id"] == keyword
    detections = props["trailrelay"]["properties"]["detections"]["properties"]
    assert set(detections) == {"rule_id", "title", "severity", "technique"}


def test_ecs_document_adds_stream_and_provenance() -> None:
    doc = DocumentBuilder(make_config("http://x", mode="ecs")).ecs_document(record(0))
    assert doc["data_stream"]["dataset"] == "aws.cloudtrail"
    assert doc["event"]["dataset"] == "aws.cloudtrail"
    assert doc["event"]["action"] == "StopLogging"
    assert doc["aws"]["s3"]["bucket"]["name"] == "org-trail"
    assert doc["aws"]["cloudtrail"]["user_identity"]["arn"] == "arn:aws:iam::111122223333:user/alice"
    assert doc["log"]["file"]["path"] == S3.location
    assert "message" not in doc


@pytest.mark.parametrize("event_time", [None, "garbage", "2023-07-10T11:45:60Z", 1688989500])
def test_ecs_document_without_a_readable_event_time_still_has_a_timestamp(event_time: object) -> None:
    """Elastic's pipeline keeps such an event (its date processor ignores the failure); a data
    stream refuses a document without @timestamp, so ours took a dead letter instead."""
    event = {**SAMPLE_EVENTS[0], "eventTime": event_time}
    if event_time is None:
        del event["eventTime"]
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    doc = DocumentBuilder(make_config("http://x", mode="ecs")).ecs_document(
        Record.from_bytes(orjson.dumps(event), S3)
    )
    stamped = dt.datetime.fromisoformat(doc["@timestamp"])
    assert before <= stamped <= dt.datetime.now(dt.UTC)


def test_long_flattened_leaves_stay_searchable() -> None:
    """An inline session policy or a certificate runs past 1,024 characters: Elastic's mapping
    indexes it; ignore_above 1024 left it in _source only."""
    cloudtrail = component_template()["template"]["mappings"]["properties"]["aws"]["properties"]["cloudtrail"]
    flattened = cloudtrail["properties"]["flattened"]["properties"]
    assert flattened["request_parameters"] == {"type": "flattened", "ignore_above": 8191}


def test_encoder_bodies_are_ndjson_pairs() -> None:
    records = sample_records(7)
    bodies = BulkEncoder(make_config("http://x", batch_actions=3)).encode(records)
    assert len(bodies) == 3
    lines = b"".join(bodies).split(b"\n")
    assert lines[-1] == b""
    assert len(lines) - 1 == 14
    for action, source in zip(lines[0:-1:2], lines[1:-1:2], strict=True):
        assert set(json.loads(action)) == {"create"}
        assert "message" in json.loads(source)
    assert plugin.encoder(make_config("http://x")).content_type == "application/x-ndjson"


def test_config_keys_and_defaults() -> None:
    config = ElasticConfig.validate({"type": "elastic", "url": "https://es:9200"})
    assert config.mode == "integration"
    assert config.namespace == "default"
    assert config.batch_bytes == 10 * 1024 * 1024
    assert config.verify_tls is True
    full = {
        "type": "elastic",
        "url": "https://es:9200",
        "api_key": API_KEY,
        "mode": "ecs",
        "namespace": "prod",
        "data_stream": "logs-aws.cloudtrail-prod",
        "pipeline": "p",
        "ca_bundle": "/etc/ca.pem",
        "ssl_assert_fingerprint": "AB:" * 31 + "AB",
        "batch_bytes": 5_000_000,
        "batch_actions": 500,
        "timeout": 30,
        "concurrency": 4,
    }
    assert ElasticConfig.validate(full).batch_actions == 500


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"type": "elastic"}, "set url (or cloud_id)"),
        ({"type": "elastic", "url": "https://a", "cloud_id": "x:eQ=="}, "either url or cloud_id"),
        ({"type": "elastic", "url": "https://a", "username": "u"}, "username and password go together"),
        (
            {"type": "elastic", "url": "https://a", "api_key": "k", "bearer_token": "t"},
            "choose one authentication",
        ),
        ({"type": "elastic", "url": "https://a", "namespace": "Prod-1"}, "namespace must be"),
        (
            {"type": "elastic", "url": "https://a", "index": "i", "data_stream": "logs-a-b"},
            "either data_stream or index",
        ),
        ({"type": "elastic", "url": "https://a", "ssl_assert_fingerprint": "abc"}, "SHA-256 fingerprint"),
        ({"type": "elastic", "url": "https://a", "apikey": "k"}, "apikey: unknown key"),
        ({"type": "elastic", "url": "https://a", "batch_bytes": 10}, "batch_bytes: Expected `int` >= 65536"),
    ],
)
def test_config_errors(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        ElasticConfig.validate(table)
    assert message in str(info.value)


def test_secrets_never_in_repr_or_errors() -> None:
    config = make_config("https://es:9200", api_key=None, username="ops", password="hunter2-secret")
    assert "hunter2-secret" not in repr(config) + str(config)
    with pytest.raises(ConfigError) as info:
        ElasticConfig.validate({"type": "elastic", "api_key": "sekrit-value"})
    assert "sekrit-value" not in str(info.value)


def test_missing_ca_bundle_is_fatal_at_open(tmp_path: Any) -> None:
    from trailrelay.contract import FatalSinkError

    sink = plugin.create(make_config("https://es:9200", ca_bundle=str(tmp_path / "nope.pem")), context())
    with pytest.raises(FatalSinkError, match="ca_bundle"):
        sink.open()


def test_tls_verification_off_warns(caplog: pytest.LogCaptureFixture) -> None:
    sink = plugin.create(make_config("https://es:9200", verify_tls=False), context())
    with caplog.at_level("WARNING"):
        sink.open()
    assert "TLS CERTIFICATE VERIFICATION IS OFF" in caplog.text
    sink.close()


def test_auth_variants_build_clients() -> None:
    for overrides in (
        {"api_key": None, "username": "u", "password": "p"},
        {"api_key": None, "bearer_token": "t"},
        {"api_key": None},
        {"ssl_assert_fingerprint": "ab" * 32},
    ):
        sink = plugin.create(make_config("https://es:9200", **overrides), context())
        sink.open()
        sink.close()
    cloud = plugin.create(
        ElasticConfig.validate(
            {
                "type": "elastic",
                "cloud_id": "dep:ZXUtd2VzdC0xLmF3cy5mb3VuZC5pbyRhYmMkZGVm",
                "api_key": API_KEY,
            }
        ),
        context(),
    )
    cloud.open()
    assert "Elastic Cloud" in cloud._where()
    cloud.close()


def test_a_url_carrying_credentials_is_refused_without_echoing_them() -> None:
    from trailrelay.testing import assert_refuses_credentials_in_url
    from trailrelay_elastic.config import ElasticConfig

    assert_refuses_credentials_in_url(ElasticConfig, {"type": "elastic", "api_key": "k"})
