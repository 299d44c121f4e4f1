"""Bulk delivery through the real client: documented responses, idempotency, splitting, gzip."""

from __future__ import annotations

import base64
import copy
import email.utils
import gzip
import json
import logging
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import trustme
from click.testing import CliRunner
from elastic_helpers import API_KEY, free_port, make_sink
from elastic_standin import PRODUCT, StandIn, fixture

from trailrelay.cli.main import cli
from trailrelay.contract import Batch, FatalSinkError, Origin, Record, Status
from trailrelay.testing import SAMPLE_EVENTS, sample_records
from trailrelay_elastic.encode import doc_id


@pytest.fixture
def sink(standin: StandIn) -> Any:
    s = make_sink(standin.url)
    s.open()
    yield s
    s.close()


def statuses(outcomes: Any) -> list[Status]:
    return [o.status for o in outcomes]


def test_every_fixture_carries_the_product_header() -> None:
    from elastic_standin import FIXTURES

    for path in FIXTURES.glob("*.json"):
        data = json.loads(path.read_text())
        assert data["headers"]["X-Elastic-Product"] == "Elasticsearch", path.name
        assert data["description"], path.name


def test_all_created(sink: Any, standin: StandIn) -> None:
    standin.queue("bulk-all-created")
    outcomes = sink.send(Batch(sample_records(3)))
    assert statuses(outcomes) == [Status.DELIVERED] * 3


def test_mixed_items_map_one_to_one(sink: Any, standin: StandIn) -> None:
    standin.queue("bulk-mixed")
    outcomes = sink.send(Batch(sample_records(6)))
    assert statuses(outcomes) == [
        Status.DELIVERED,
        Status.DUPLICATE,
        Status.RETRY,
        Status.REJECTED,
        Status.REJECTED,
        Status.RETRY,
    ]
    assert "es_rejected_execution_exception" in outcomes[2].reason
    assert "HTTP 400 document_parsing_exception" in outcomes[3].reason
    assert "Failed to parse value [maybe]" in outcomes[3].reason  # caused_by is kept
    assert "mapper_parsing_exception" in outcomes[4].reason
    assert "HTTP 503 unavailable_shards_exception" in outcomes[5].reason


@pytest.mark.parametrize("name", ["request-429-rejected", "request-429-circuit-breaker", "request-503"])
def test_whole_request_busy_is_retry(sink: Any, standin: StandIn, name: str) -> None:
    standin.queue(name)
    outcomes = sink.send(Batch(sample_records(4)))
    assert statuses(outcomes) == [Status.RETRY] * 4
    expected = fixture(name)["body"]["error"]["type"]
    assert all(expected in o.reason for o in outcomes)
    assert standin.stored() == []
    assert statuses(sink.send(Batch(sample_records(4)))) == [Status.DELIVERED] * 4


def test_a_proxy_s_request_timeout_is_retry(sink: Any, standin: StandIn) -> None:
    """408 from a proxy in front of the cluster (no product header, an HTML page): send again."""
    standin.queue(
        {"status": 408, "headers": {"Content-Type": "text/html"}, "body": "<html>408 Request Time-out</html>"}
    )
    outcomes = sink.send(Batch(sample_records(3)))
    assert statuses(outcomes) == [Status.RETRY] * 3
    assert "HTTP 408" in outcomes[0].reason
    assert statuses(sink.send(Batch(sample_records(3)))) == [Status.DELIVERED] * 3


def test_retry_after_header_is_passed_on(sink: Any, standin: StandIn) -> None:
    response = copy.deepcopy(fixture("request-429-rejected"))
    response["headers"]["Retry-After"] = "7"
    standin.queue(response)
    outcomes = sink.send(Batch(sample_records(2)))
    assert [o.retry_after for o in outcomes] == [7.0, 7.0]


def test_retry_after_http_date_is_passed_on(sink: Any, standin: StandIn) -> None:
    """RFC 9110 allows an HTTP date in Retry-After: the outcome waits until then, not a default."""
    response = copy.deepcopy(fixture("request-429-rejected"))
    response["headers"]["Retry-After"] = email.utils.formatdate(time.time() + 120, usegmt=True)
    standin.queue(response)
    after = [o.retry_after for o in sink.send(Batch(sample_records(2)))]
    assert all(a is not None and 100 < a <= 120 for a in after), after


@pytest.mark.parametrize("name", ["request-401", "request-403"])
def test_auth_failures_are_fatal_without_the_secret(sink: Any, standin: StandIn, name: str) -> None:
    standin.queue(name)
    with pytest.raises(FatalSinkError) as info:
        sink.send(Batch(sample_records(2)))
    text = str(info.value)
    assert API_KEY not in text
    assert "api_key" in text  # says which setting to look at
    assert "security_exception" in text


def test_an_error_page_that_echoes_the_credentials_never_shows_them(standin: StandIn) -> None:
    """A proxy's page echoing the Authorization header, even decoded, goes into reasons masked."""
    decoded = base64.b64decode(API_KEY).decode()
    basic = base64.b64encode(b"trail:pa55-word-for-tests").decode()
    html = {"Content-Type": "text/html"}
    standin.queue(
        {"status": 502, "headers": html, "body": f"<html>ApiKey {API_KEY} decoded: {decoded}</html>"}
    )
    standin.queue({"status": 400, "headers": html, "body": f"<html>Authorization: Basic {basic}</html>"})
    long_page = f"<html>{'x' * 570} ApiKey {API_KEY}</html>"  # the reason is cut at 600 characters
    standin.queue({"status": 503, "headers": html, "body": long_page})
    with_key = make_sink(standin.url)
    with_password = make_sink(standin.url, api_key=None, username="trail", password="pa55-word-for-tests")
    retried = with_key.send(Batch(sample_records(2)))
    with pytest.raises(FatalSinkError) as stopped:  # a 400 page is not Elasticsearch's answer
        with_password.send(Batch(sample_records(2)))
    cut = with_key.send(Batch(sample_records(2)))
    with_key.close()
    with_password.close()
    assert statuses(retried + cut) == [Status.RETRY] * 4
    reasons = " ".join(o.reason for o in retried + cut) + str(stopped.value)
    assert "ApiKey *** decoded: ***" in reasons and "Authorization: Basic ***" in reasons
    assert decoded not in reasons and basic not in reasons and API_KEY[:8] not in reasons


NGINX_PLAIN_HTTP_TO_HTTPS = (
    "<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port</title></head>\r\n"
    "<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<center>The plain HTTP request was "
    "sent to HTTPS port</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
"""nginx's page for plain HTTP sent to its TLS port: an http:// url for an https cluster."""


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        (
            {"status": 400, "headers": {"Content-Type": "text/html"}, "body": NGINX_PLAIN_HTTP_TO_HTTPS},
            (
                "HTTP 400 from {url}/_bulk is not Elasticsearch's answer "
                "(text/html: '400 The plain HTTP request was sent to HTTPS port'): check url"
            ),
        ),
        (
            {"status": 301, "headers": {"Location": "https://es.example:9243/_bulk"}, "body": None},
            "HTTP 301 from {url}/_bulk: redirected to https://es.example:9243/_bulk: set url to the final address",
        ),
        (
            {"status": 302, "headers": {"Location": "https://sso.example/login"}, "body": None},
            "HTTP 302 from {url}/_bulk: redirected to https://sso.example/login: set url to the final address",
        ),
    ],
    ids=["nginx-400-page", "301", "302"],
)
def test_something_else_answering_at_url_stops_the_sink(
    sink: Any, standin: StandIn, response: dict[str, Any], expected: str
) -> None:
    """A configuration mistake in front of the cluster is not Elasticsearch refusing the documents."""
    standin.queue(response)
    with pytest.raises(FatalSinkError) as stopped:
        sink.send(Batch(sample_records(3)))
    assert expected.format(url=standin.url) in str(stopped.value)
    assert len(standin.bulk_requests()) == 1  # a redirect is not followed
    assert standin.stored() == []


def test_elasticsearch_refusing_the_whole_request_is_still_rejected(sink: Any, standin: StandIn) -> None:
    error = {"type": "parse_exception", "reason": "request body is required"}
    standin.queue({"status": 400, "headers": dict(PRODUCT), "body": {"error": error, "status": 400}})
    outcomes = sink.send(Batch(sample_records(2)))
    assert statuses(outcomes) == [Status.REJECTED] * 2
    assert "HTTP 400 parse_exception: request body is required" in outcomes[0].reason


def test_forward_stops_with_exit_3_when_a_proxy_page_answers(
    standin: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As seen by the user: a stop (3) naming what answered, nothing dead-lettered or acknowledged."""
    trail = tmp_path / "in" / "a.json.gz"
    trail.parent.mkdir()
    trail.write_bytes(gzip.compress(orjson.dumps({"Records": SAMPLE_EVENTS})))
    monkeypatch.setenv("TEST_ES_API_KEY", API_KEY)
    config = tmp_path / "trailrelay.toml"
    config.write_text(
        f'[source]\ntype = "files"\npath = "{trail.parent}"\n'
        f'[[sinks]]\ntype = "elastic"\nurl = "{standin.url}"\napi_key = "${{TEST_ES_API_KEY}}"\n'
        f'filter = {{}}\nmax_retry_seconds = 2\n[dead_letter]\npath = "{tmp_path / "dead"}"\n'
        f'[state]\npath = "{tmp_path / "state.sqlite"}"\n'
    )
    page = {"status": 400, "headers": {"Content-Type": "text/html"}, "body": NGINX_PLAIN_HTTP_TO_HTTPS}
    standin.queue(page, count=4)
    result = CliRunner().invoke(cli, ["forward", "-c", str(config), "--once", "--no-progress"])
    output = " ".join(result.output.split())  # rich wraps long lines
    assert result.exit_code == 3, output
    assert "is not Elasticsearch's answer (text/html: '400 The plain HTTP request" in output
    assert not [p for p in (tmp_path / "dead").rglob("*") if p.is_file()]
    standin.queued.clear()  # the url fixed: nothing was acknowledged, so everything is sent
    again = CliRunner().invoke(cli, ["forward", "-c", str(config), "--once", "--no-progress"])
    assert again.exit_code == 0, again.output
    assert len(standin.stored()) == len(SAMPLE_EVENTS)


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("bulk-item-403", "create_doc"),
        ("bulk-item-read-only", "read-only"),
        ("bulk-item-missing-pipeline", "ingest pipeline does not exist"),
    ],
)
def test_items_no_document_could_pass_are_fatal(sink: Any, standin: StandIn, name: str, words: str) -> None:
    standin.queue(name)
    with pytest.raises(FatalSinkError, match=words):
        sink.send(Batch(sample_records(1)))


def test_flood_stage_block_is_retry(sink: Any, standin: StandIn) -> None:
    standin.queue("bulk-item-flood-stage")
    [outcome] = sink.send(Batch(sample_records(1)))
    assert outcome.status is Status.RETRY
    assert "flood-stage" in outcome.reason


def test_response_without_product_header_is_fatal(sink: Any, standin: StandIn) -> None:
    body = fixture("bulk-all-created")["body"]
    standin.queue({"status": 200, "headers": {"content-type": "application/json"}, "body": body})
    with pytest.raises(FatalSinkError, match="X-Elastic-Product"):
        sink.send(Batch(sample_records(3)))


@pytest.mark.parametrize(
    ("content_type", "body", "shown"),
    [
        (
            "text/html",
            "<html><body>Access gateway: please sign in</body></html>",
            "text/html: 'Access gateway",
        ),
        ("application/json", {"status": "ok"}, """application/json: '{"status":"ok"}'"""),
    ],
    ids=["page", "other-json"],
)
def test_a_200_that_is_no_bulk_response_is_retried_naming_what_answered(
    sink: Any, standin: StandIn, content_type: str, body: Any, shown: str
) -> None:
    """A proxy's page that passes the product check (the header set or passed on) is no answer."""
    standin.queue({"status": 200, "headers": {**PRODUCT, "Content-Type": content_type}, "body": body})
    outcomes = sink.send(Batch(sample_records(3)))
    assert statuses(outcomes) == [Status.RETRY] * 3
    assert all(
        "answered HTTP 200 with no bulk response (a proxy or load balancer" in o.reason for o in outcomes
    )
    assert shown in outcomes[0].reason
    assert standin.stored() == []
    assert statuses(sink.send(Batch(sample_records(3)))) == [Status.DELIVERED] * 3


def test_item_count_mismatch_is_retry(sink: Any, standin: StandIn) -> None:
    standin.queue("bulk-all-created")  # three items for five documents
    outcomes = sink.send(Batch(sample_records(5)))
    assert statuses(outcomes) == [Status.RETRY] * 5
    assert "3 items for 5 documents" in outcomes[0].reason


def test_request_is_gzip_ndjson_of_create_actions(sink: Any, standin: StandIn) -> None:
    records = sample_records(4)
    sink.send(Batch(records))
    [request] = standin.bulk_requests()
    assert request["headers"]["content-encoding"] == "gzip"
    assert "x-ndjson" in request["headers"]["content-type"]
    assert request["headers"]["authorization"] == f"ApiKey {API_KEY}"
    lines = request["body"].decode().splitlines()
    assert len(lines) == 8
    for i, record in enumerate(records):
        action = json.loads(lines[2 * i])
        assert action == {"create": {"_index": "logs-aws.cloudtrail-default", "_id": doc_id(record)}}


def test_pipeline_parameter(standin: StandIn) -> None:
    sink = make_sink(standin.url, pipeline="cloudtrail-geoip")
    sink.send(Batch(sample_records(1)))
    assert standin.bulk_requests()[0]["query"]["pipeline"] == ["cloudtrail-geoip"]
    sink.close()


def test_batches_cut_by_actions_and_bytes(standin: StandIn) -> None:
    sink = make_sink(standin.url, batch_actions=3)
    records = sample_records(8)
    assert statuses(sink.send(Batch(records))) == [Status.DELIVERED] * 8
    assert [len(r["body"].splitlines()) // 2 for r in standin.bulk_requests()] == [3, 3, 2]
    standin.requests.clear()
    sink = make_sink(standin.url, batch_bytes=64 * 1024)
    big = sample_records(60, pretty_every=0)
    sink.send(Batch(big))
    sizes = [len(r["body"]) for r in standin.bulk_requests()]
    assert len(sizes) > 1
    assert all(size <= 64 * 1024 for size in sizes)


def test_413_splits_until_it_fits(sink: Any, standin: StandIn) -> None:
    records = sample_records(8, pretty_every=0)
    one = max(len(sink.builder.entry(r)) for r in records)
    standin.max_content_length = one * 2 + 10
    outcomes = sink.send(Batch(records))
    assert statuses(outcomes) == [Status.DELIVERED] * 8
    assert len(standin.stored()) == 8


def test_413_single_document_is_rejected(sink: Any, standin: StandIn) -> None:
    standin.queue("request-413")
    [outcome] = sink.send(Batch(sample_records(1)))
    assert outcome.status is Status.REJECTED
    assert "http.max_content_length" in outcome.reason


def test_replaying_the_same_input_stores_each_record_once(sink: Any, standin: StandIn) -> None:
    records = sample_records(10)
    assert statuses(sink.send(Batch(records))) == [Status.DELIVERED] * 10
    again = sample_records(10)  # same events, freshly read again
    assert statuses(sink.send(Batch(again, attempt=1))) == [Status.DUPLICATE] * 10
    assert len(standin.stored()) == 10


def test_same_event_from_two_sources_is_stored_once(sink: Any, standin: StandIn) -> None:
    raw = orjson.dumps(SAMPLE_EVENTS[0])
    from_s3 = Record.from_bytes(
        raw, Origin("s3", "s3://trail/AWSLogs/o.json.gz", "trail", "AWSLogs/o.json.gz")
    )
    from_firehose = Record.from_bytes(
        orjson.dumps(SAMPLE_EVENTS[0], option=orjson.OPT_INDENT_2), Origin("firehose", "stream")
    )
    assert doc_id(from_s3) == doc_id(from_firehose)
    assert statuses(sink.send(Batch([from_s3]))) == [Status.DELIVERED]
    assert statuses(sink.send(Batch([from_firehose]))) == [Status.DUPLICATE]
    assert len(standin.stored()) == 1


def test_doc_id_depends_on_event_id_and_account() -> None:
    a = dict(SAMPLE_EVENTS[0])
    b = dict(a, recipientAccountId="999999999999")
    c = dict(a, eventID="6f1d1c7e-0001-4b8e-8f3a-00000000ffff")
    ids = {doc_id(Record.from_bytes(orjson.dumps(e), Origin("file", "x"))) for e in (a, b, c)}
    assert len(ids) == 3
    same = doc_id(Record.from_bytes(orjson.dumps(a), Origin("file", "y"), index=7))
    assert same == doc_id(Record.from_bytes(orjson.dumps(a), Origin("file", "x")))
    assert len(same) == 20


def test_send_is_thread_safe(sink: Any, standin: StandIn) -> None:
    records = sample_records(80)
    chunks = [records[i::4] for i in range(4)]
    results: list[Any] = []

    def run(chunk: list[Record]) -> None:
        results.extend(sink.send(Batch(chunk)))

    threads = [threading.Thread(target=run, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses(results) == [Status.DELIVERED] * 80
    stored = sorted(json.loads(d["message"])["eventID"] for d in standin.stored())
    assert stored == sorted(str(r.event_id) for r in records)


def test_check_after_fault_free_send_has_product_verified(standin: StandIn) -> None:
    # The client verifies X-Elastic-Product on the first 2xx: a normal answer passes.
    standin.index_templates["logs-aws.cloudtrail"] = {"index_patterns": ["logs-aws.cloudtrail-*"]}
    sink = make_sink(standin.url)
    assert sink.check().ok
    assert PRODUCT["X-Elastic-Product"] == "Elasticsearch"
    sink.close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_standin(ca: trustme.CA) -> Iterator[StandIn]:
    """The stand-in over HTTPS, with a certificate from a CA the client does not trust by default."""
    server = StandIn()
    server.expected_auth = f"ApiKey {API_KEY}"
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server.start(tls=context)
    yield server
    server.stop()


def test_a_certificate_that_fails_verification_is_fatal_at_once(
    tls_standin: StandIn, ca: trustme.CA, tmp_path: Path
) -> None:
    """Sending again cannot pass a certificate check: stop and name ca_bundle, never retry."""
    sink = make_sink(tls_standin.url)
    with pytest.raises(FatalSinkError, match="set ca_bundle") as info:
        sink.send(Batch(sample_records(2)))
    sink.close()
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)
    assert API_KEY not in str(info.value)
    assert tls_standin.requests == []
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    trusted = make_sink(tls_standin.url, ca_bundle=str(bundle))
    assert statuses(trusted.send(Batch(sample_records(2)))) == [Status.DELIVERED] * 2
    trusted.close()


def test_a_pinned_fingerprint_that_does_not_match_is_fatal(tls_standin: StandIn) -> None:
    sink = make_sink(tls_standin.url, ssl_assert_fingerprint="ab" * 32)
    with pytest.raises(FatalSinkError, match="check ssl_assert_fingerprint"):
        sink.send(Batch(sample_records(1)))
    sink.close()
    assert tls_standin.requests == []


def test_forward_stops_with_exit_3_on_an_untrusted_certificate(
    tls_standin: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As seen by the user: a fatal stop (3) naming ca_bundle, not retries ending in dead letters (4)."""
    trail = tmp_path / "in" / "a.json.gz"
    trail.parent.mkdir()
    trail.write_bytes(gzip.compress(orjson.dumps({"Records": SAMPLE_EVENTS})))
    monkeypatch.setenv("TEST_ES_API_KEY", API_KEY)
    config = tmp_path / "trailrelay.toml"
    config.write_text(
        f'[source]\ntype = "files"\npath = "{trail.parent}"\n'
        f'[[sinks]]\ntype = "elastic"\nurl = "{tls_standin.url}"\napi_key = "${{TEST_ES_API_KEY}}"\n'
        f'filter = {{}}\nmax_retry_seconds = 2\n[dead_letter]\npath = "{tmp_path / "dead"}"\n'
        f'[state]\npath = "{tmp_path / "state.sqlite"}"\n'
    )
    result = CliRunner().invoke(cli, ["forward", "-c", str(config), "--once", "--no-progress"])
    output = " ".join(result.output.split())  # rich wraps long lines
    assert result.exit_code == 3, output
    assert "set ca_bundle" in output
    assert API_KEY not in output
    assert not [p for p in (tmp_path / "dead").rglob("*") if p.is_file()]


def test_an_outage_leaves_the_warnings_to_the_pipeline(caplog: pytest.LogCaptureFixture) -> None:
    """elastic_transport warned on every failed request (74 lines in a few seconds of an outage)."""
    caplog.set_level(logging.DEBUG)
    sink = make_sink(f"http://127.0.0.1:{free_port()}")
    for _ in range(5):
        outcomes = sink.send(Batch(sample_records(2)))
        assert statuses(outcomes) == [Status.RETRY] * 2
        assert "Connection refused" in outcomes[0].reason  # the reason is in the outcome
    sink.close()
    noisy = [
        r for r in caplog.records if r.name.startswith("elastic_transport") and r.levelno >= logging.WARNING
    ]
    assert noisy == []
