"""Bulk delivery through the real client: documented responses, idempotency, splitting, gzip, SigV4."""

from __future__ import annotations

import base64
import copy
import email.utils
import gzip
import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import trustme
from opensearch_helpers import ACCESS_KEY, PASSWORD, REGION, USER, make_config, make_sink, sigv4_config
from opensearch_standin import FIXTURES, SigV4Check, StandIn, fixture

from trailrelay.contract import Batch, FatalSinkError, Outcome, Record, Status
from trailrelay.testing import load_records, sample_records
from trailrelay_opensearch.encode import doc_id


@pytest.fixture
def sink(standin: StandIn) -> Any:
    s = make_sink(make_config(standin.url))
    s.open()
    yield s
    s.close()


def statuses(outcomes: Any) -> list[Status]:
    return [o.status for o in outcomes]


def send_until_final(sink: Any, records: list[Record], rounds: int = 20) -> dict[int, Outcome]:
    """Send and re-send RETRY records like the pipeline (without sleeping)."""
    final: dict[int, Outcome] = {}
    pending = list(range(len(records)))
    for attempt in range(1, rounds + 1):
        if not pending:
            break
        outcomes = sink.send(Batch([records[i] for i in pending], attempt))
        retry = []
        for i, outcome in zip(pending, outcomes, strict=True):
            if outcome.status is Status.RETRY:
                retry.append(i)
            else:
                final[i] = outcome
        pending = retry
    assert not pending
    return final


def test_documented_responses_are_opensearchs_own() -> None:
    for path in FIXTURES.glob("*.json"):
        data = json.loads(path.read_text())
        assert data["description"], path.name
        assert data["source"].startswith("https://"), path.name
        if path.stem != "info-elasticsearch":
            assert "x-elastic-product" not in {k.lower() for k in data["headers"]}, path.name
    assert fixture("info")["body"]["version"]["distribution"] == "opensearch"


def test_all_created(sink: Any, standin: StandIn) -> None:
    standin.queue("bulk-all-created")
    assert statuses(sink.send(Batch(sample_records(3)))) == [Status.DELIVERED] * 3


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
    assert "rejected_execution_exception" in outcomes[2].reason
    assert "HTTP 400 mapper_parsing_exception" in outcomes[3].reason
    assert "Failed to parse value [maybe]" in outcomes[3].reason  # caused_by is kept
    assert "illegal_argument_exception: Limit of total fields" in outcomes[4].reason
    assert "HTTP 503 unavailable_shards_exception" in outcomes[5].reason


def test_document_parsing_exception_is_rejected(sink: Any, standin: StandIn) -> None:
    standin.queue("bulk-item-document-parsing")
    [outcome] = sink.send(Batch(sample_records(1)))
    assert outcome.status is Status.REJECTED
    assert "document_parsing_exception" in outcome.reason


@pytest.mark.parametrize("name", ["request-429", "request-503"])
def test_whole_request_busy_is_retry(sink: Any, standin: StandIn, name: str) -> None:
    standin.queue(name)
    outcomes = sink.send(Batch(sample_records(4)))
    assert statuses(outcomes) == [Status.RETRY] * 4
    assert all(fixture(name)["body"]["error"]["type"] in o.reason for o in outcomes)
    assert standin.stored() == []
    assert statuses(sink.send(Batch(sample_records(4)))) == [Status.DELIVERED] * 4


def test_a_proxy_s_request_timeout_is_retry(sink: Any, standin: StandIn) -> None:
    """408 from a proxy in front of the cluster (an HTML page): send again, as for 429 and 5xx."""
    standin.queue(
        {"status": 408, "headers": {"Content-Type": "text/html"}, "body": "<html>408 Request Time-out</html>"}
    )
    outcomes = sink.send(Batch(sample_records(3)))
    assert statuses(outcomes) == [Status.RETRY] * 3
    assert "HTTP 408" in outcomes[0].reason
    assert statuses(sink.send(Batch(sample_records(3)))) == [Status.DELIVERED] * 3


@pytest.mark.parametrize("content_type", ["text/html", "application/json"])
def test_a_200_that_is_not_opensearch_is_retried(sink: Any, standin: StandIn, content_type: str) -> None:
    """A proxy's or captive portal's page is no answer: the records are sent again, never delivered.

    (The client raises SerializationError for it; the records were once rejected at once, each
    dead-lettered as "failed on one record".)
    """
    page = "<html><body>Sign in to continue</body></html>"
    standin.queue({"status": 200, "headers": {"Content-Type": content_type}, "body": page})
    outcomes = sink.send(Batch(sample_records(3)))
    assert statuses(outcomes) == [Status.RETRY] * 3
    assert all("answered without OpenSearch's JSON (a proxy or load balancer" in o.reason for o in outcomes)
    # what it was: the page itself, or (when the client would not parse it) its content type
    assert ("Sign in to continue" if content_type == "application/json" else "text/html") in outcomes[
        0
    ].reason
    assert standin.stored() == []
    assert statuses(sink.send(Batch(sample_records(3)))) == [Status.DELIVERED] * 3


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
                "HTTP 400 from {url}/_bulk is not OpenSearch's answer "
                "(text/html: '400 The plain HTTP request was sent to HTTPS port'): check url"
            ),
        ),
        (
            {"status": 301, "headers": {"Location": "https://search.example/_bulk"}, "body": None},
            "HTTP 301 from {url}/_bulk: redirected to https://search.example/_bulk: set url to the final address",
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
    """A configuration mistake in front of the cluster is not OpenSearch refusing the documents."""
    standin.queue(response)
    with pytest.raises(FatalSinkError) as stopped:
        sink.send(Batch(sample_records(3)))
    assert expected.format(url=standin.url) in str(stopped.value)
    assert len(standin.bulk_requests()) == 1  # a redirect is not followed
    assert standin.stored() == []


def test_opensearch_refusing_the_whole_request_is_still_rejected(sink: Any, standin: StandIn) -> None:
    error = {"type": "parse_exception", "reason": "request body is required"}
    json_type = {"Content-Type": "application/json; charset=UTF-8"}
    standin.queue({"status": 400, "headers": json_type, "body": {"error": error, "status": 400}})
    outcomes = sink.send(Batch(sample_records(2)))
    assert statuses(outcomes) == [Status.REJECTED] * 2
    assert "HTTP 400 parse_exception: request body is required" in outcomes[0].reason


def test_a_certificate_that_fails_verification_is_fatal_at_once(
    tls_standin: StandIn, ca: trustme.CA, tmp_path: Path
) -> None:
    """Sending again cannot pass a certificate check: stop and name ca_bundle, never retry."""
    sink = make_sink(make_config(tls_standin.url))
    with pytest.raises(FatalSinkError, match="set ca_bundle") as info:
        sink.send(Batch(sample_records(2)))
    sink.close()
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)
    assert PASSWORD not in str(info.value)
    assert tls_standin.requests == []
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    trusted = make_sink(make_config(tls_standin.url, ca_bundle=str(bundle)))
    assert statuses(trusted.send(Batch(sample_records(2)))) == [Status.DELIVERED] * 2
    trusted.close()


def test_an_error_page_that_echoes_the_authorization_header_never_shows_the_credential(
    sink: Any, standin: StandIn
) -> None:
    """A proxy's page echoing ``Authorization: Basic base64(user:password)`` went into every reason.

    Only the literal password was masked; the header carries the pair in base64.
    """
    credential = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    echo = f"Authorization: Basic {credential}"
    html = {"Content-Type": "text/html"}
    standin.queue({"status": 502, "headers": html, "body": f"<html>upstream error; {echo}</html>"})
    standin.queue({"status": 400, "headers": html, "body": f"<html>bad request; {echo}</html>"})
    long_page = f"<html>{'x' * 560} {echo}</html>"  # the reason is cut at 600 characters
    standin.queue({"status": 503, "headers": html, "body": long_page})
    retried = sink.send(Batch(sample_records(2)))
    with pytest.raises(FatalSinkError) as stopped:  # a 400 page is not OpenSearch's answer
        sink.send(Batch(sample_records(2)))
    cut = sink.send(Batch(sample_records(2)))
    assert statuses(retried + cut) == [Status.RETRY] * 4
    reasons = " ".join(o.reason for o in retried + cut) + str(stopped.value)
    assert "Authorization: Basic ***" in reasons
    assert credential[:8] not in reasons and PASSWORD not in reasons


def test_retry_after_seconds_and_http_date(sink: Any, standin: StandIn) -> None:
    seconds = copy.deepcopy(fixture("request-429"))
    seconds["headers"]["Retry-After"] = "7"
    standin.queue(seconds)
    assert [o.retry_after for o in sink.send(Batch(sample_records(2)))] == [7.0, 7.0]
    dated = copy.deepcopy(fixture("request-503"))
    dated["headers"]["Retry-After"] = email.utils.formatdate(time.time() + 120, usegmt=True)
    standin.queue(dated)
    after = sink.send(Batch(sample_records(2)))[0].retry_after
    assert after is not None
    assert 100 < after <= 120


@pytest.mark.parametrize("name", ["request-401", "request-403"])
def test_auth_failures_are_fatal_and_name_the_setting(sink: Any, standin: StandIn, name: str) -> None:
    standin.queue(name)
    with pytest.raises(FatalSinkError) as info:
        sink.send(Batch(sample_records(2)))
    text = str(info.value) + repr(info.value)
    assert PASSWORD not in text
    assert "username trailrelay + password" in text


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("bulk-item-403", "may not write"),
        ("bulk-item-read-only", "read-only"),
        ("bulk-item-index-missing", "auto_create_index"),
    ],
)
def test_items_no_document_could_pass_are_fatal(sink: Any, standin: StandIn, name: str, words: str) -> None:
    standin.queue(name)
    with pytest.raises(FatalSinkError, match=words):
        sink.send(Batch(sample_records(1)))


def test_missing_index_without_auto_create_is_fatal(sink: Any, standin: StandIn) -> None:
    standin.auto_create_index = False
    with pytest.raises(FatalSinkError, match="does not exist"):
        sink.send(Batch(sample_records(2)))


def test_flood_stage_block_is_retry(sink: Any, standin: StandIn) -> None:
    standin.queue("bulk-item-flood-stage")
    [outcome] = sink.send(Batch(sample_records(1)))
    assert outcome.status is Status.RETRY
    assert "flood-stage" in outcome.reason


def test_413_splits_until_it_fits(sink: Any, standin: StandIn) -> None:
    records = sample_records(16)
    standin.max_content_length = 6000
    outcomes = sink.send(Batch(records))
    assert statuses(outcomes) == [Status.DELIVERED] * 16
    assert Counter(d["eventID"] for d in standin.stored()) == Counter(str(r.event_id) for r in records)
    sent = [len(r["body"]) for r in standin.bulk_requests()]
    assert max(sent) > 6000  # the first, whole body was refused
    standin.max_content_length = 10
    [one] = sink.send(Batch(sample_records(1)))
    assert one.status is Status.REJECTED
    assert "larger than the cluster accepts" in one.reason


def test_bodies_are_gzip_and_actions_are_create_with_ids(sink: Any, standin: StandIn) -> None:
    records = sample_records(5)
    sink.send(Batch(records))
    [request] = standin.bulk_requests()
    assert request["headers"]["content-encoding"] == "gzip"
    assert gzip.decompress(request["sent"]) == request["body"]
    actions = [json.loads(line) for line in request["body"].split(b"\n")[0::2] if line]
    assert [a["create"]["_id"] for a in actions] == [doc_id(r) for r in records]
    assert {a["create"]["_index"] for a in actions} == {"logs-aws.cloudtrail-default"}


def test_replay_twice_stores_once(sink: Any, standin: StandIn) -> None:
    records = sample_records(40)
    assert statuses(sink.send(Batch(records))) == [Status.DELIVERED] * 40
    again = sink.send(Batch(sample_records(40), attempt=1))
    assert statuses(again) == [Status.DUPLICATE] * 40
    assert len(standin.stored()) == 40


def test_serverless_time_series_falls_back_to_no_ids_once(
    standin: StandIn, caplog: pytest.LogCaptureFixture
) -> None:
    standin.no_custom_ids = True
    s = make_sink(make_config(standin.url))
    records = sample_records(6)
    with caplog.at_level(logging.WARNING, logger="test.opensearch"):
        first = s.send(Batch(records))
        assert statuses(first) == [Status.RETRY] * 6
        assert all(o.retry_after == 0.0 for o in first)
        assert statuses(s.send(Batch(records, 2))) == [Status.DELIVERED] * 6
        assert statuses(s.send(Batch(sample_records(2), 1))) == [Status.DELIVERED] * 2
    s.close()
    warnings = [r for r in caplog.records if "refuses custom document ids" in r.getMessage()]
    assert len(warnings) == 1
    assert len(standin.stored()) == 8  # the replayed two are stored again: documented


def test_corpus_delivered_once_with_five_percent_item_429s(sink: Any, standin: StandIn, corpus: Any) -> None:
    records = load_records(corpus / "cloudtrail")
    assert len(records) > 100
    standin.item_429_rate = 0.05
    final = send_until_final(sink, records)
    distinct = {doc_id(r) for r in records}
    delivered = [i for i, o in final.items() if o.status is Status.DELIVERED]
    # Records sharing recipientAccountId and eventID are one event: stored once, the others DUPLICATE.
    assert {o.status for o in final.values()} <= {Status.DELIVERED, Status.DUPLICATE}
    assert len(delivered) == len(distinct)
    stored_ids = [i for docs in standin.docs.values() for i in docs]
    assert sorted(stored_ids) == sorted(distinct)
    assert standin.items_refused_429 >= len(records) // 25  # about 5% of the items were refused once


def test_wrong_sigv4_secret_is_refused_with_403(
    aws_standin: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-key-at-all")
    s = make_sink(sigv4_config(aws_standin.url))
    with pytest.raises(FatalSinkError) as info:
        s.send(Batch(sample_records(2)))
    s.close()
    text = str(info.value)
    assert "signature we calculated does not match" in text
    assert "aws_sigv4 (es, the boto3 credential chain)" in text
    assert "not-the-secret-key-at-all" not in text
    assert aws_standin.stored() == []


def test_sigv4_region_and_service_are_part_of_the_signature(aws_standin: StandIn) -> None:
    aws_standin.sigv4 = SigV4Check({ACCESS_KEY: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}, REGION, "aoss")
    s = make_sink(sigv4_config(aws_standin.url))
    with pytest.raises(FatalSinkError):
        s.send(Batch(sample_records(1)))
    s.close()
    s = make_sink(sigv4_config(aws_standin.url, aws_service="aoss"))
    assert statuses(s.send(Batch(sample_records(3)))) == [Status.DELIVERED] * 3
    s.close()


def test_signature_covers_the_body(aws_standin: StandIn) -> None:
    s = make_sink(sigv4_config(aws_standin.url))
    s.send(Batch(sample_records(2)))
    s.close()
    [request] = aws_standin.bulk_requests()
    check = aws_standin.sigv4
    assert check is not None
    target = request["target"]
    assert check.verify("POST", target, request["headers"], request["sent"]) is None
    tampered = gzip.compress(request["body"].replace(b"StopLogging", b"StartLogging"))
    assert check.verify("POST", target, request["headers"], tampered) == "request-403-signature"
