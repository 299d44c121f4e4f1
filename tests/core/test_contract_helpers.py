"""The connector helpers the contract lends (one copy each, in ``trailrelay.helpers``)."""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import hashlib
import json
import random

import orjson
import pytest

from trailrelay import contract, helpers
from trailrelay.contract import (
    Origin,
    Record,
    bool_value,
    cut_runs,
    describe_answer,
    document_id,
    hash_id,
    retry_after_seconds,
    scrub,
    text_value,
)

# -- cut_runs ------------------------------------------------------------------------------------


def _greedy(sizes: list[int], max_bytes: int, max_items: int | None, sep: int, overhead: int) -> list[range]:
    """The definition: extend the run while it stays within both limits; a lone item always fits."""
    runs: list[range] = []
    start = 0
    for i in range(1, len(sizes) + 1):
        if i == len(sizes):
            runs.append(range(start, i))
            break
        n = i + 1 - start
        size = overhead + sum(sizes[start : i + 1]) + sep * (n - 1)
        if (max_items is not None and n > max_items) or size > max_bytes:
            runs.append(range(start, i))
            start = i
    return runs if sizes else []


def test_cut_runs_matches_the_definition() -> None:
    rng = random.Random(15)
    for _ in range(2000):
        sizes = [rng.randint(0, 60) for _ in range(rng.randint(0, 30))]
        max_bytes = rng.randint(1, 200)
        max_items = rng.choice([None, 1, 2, 5, 100])
        sep, overhead = rng.choice([(0, 0), (1, 0), (1, 2)])
        got = cut_runs(sizes, max_bytes, max_items, separator_bytes=sep, overhead_bytes=overhead)
        assert got == _greedy(sizes, max_bytes, max_items, sep, overhead), (sizes, max_bytes, max_items, sep)
        assert [i for r in got for i in r] == list(range(len(sizes)))


def test_cut_runs_boundaries() -> None:
    assert cut_runs([], 100, 10) == []
    # newline-separated envelopes (Splunk HEC): 10 + 1 + 10 = 21
    assert cut_runs([10, 10, 10], 21, 10) == [range(2), range(2, 3)]
    assert cut_runs([10, 10, 10], 20, 10) == [range(1), range(1, 2), range(2, 3)]
    assert cut_runs([10, 10, 10], 1000, 2) == [range(2), range(2, 3)]
    # NDJSON entries that end with their own newline (Elasticsearch, OpenSearch _bulk)
    assert cut_runs([10, 10, 10], 20, 10, separator_bytes=0) == [range(2), range(2, 3)]
    # a JSON array of rows (Sentinel): [ + rows + commas + ]
    assert cut_runs([10, 10, 10], 34, None, overhead_bytes=2) == [range(3)]
    assert cut_runs([10, 10, 10], 33, None, overhead_bytes=2) == [range(2), range(2, 3)]
    # an item too large on its own still gets its own run: the server says why it refuses it
    assert cut_runs([5, 200, 5], 100, 10) == [range(1), range(1, 2), range(2, 3)]


# -- retry_after_seconds ---------------------------------------------------------------------------

NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("7", 7.0),
        (" 30 ", 30.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("nan", None),
        ("inf", None),
        ("soon", None),
        ("Sun, 01 Mar 2026 12:02:00 GMT", 120.0),
        ("Sun, 01 Mar 2026 11:00:00 GMT", 0.0),  # already past
        ("Sunday, 01-Mar-26 12:00:30 GMT", 30.0),  # RFC 850, still allowed by RFC 9110
        ("Sun Mar  1 12:00:10 2026", 10.0),  # asctime, no zone: UTC
    ],
)
def test_retry_after_seconds(header: str | None, expected: float | None) -> None:
    assert retry_after_seconds(header, now=NOW) == expected


def test_retry_after_http_date_counts_from_the_current_time() -> None:
    header = email.utils.formatdate(dt.datetime.now(dt.UTC).timestamp() + 120, usegmt=True)
    after = retry_after_seconds(header)
    assert after is not None and 100 < after <= 120


# -- scrub, text_value, bool_value --------------------------------------------------------------------


def test_scrub_replaces_every_secret_and_ignores_empty_ones() -> None:
    text = "auth failed for key s3cr3t (s3cr3t) with password hunter2"
    assert scrub(text, ["s3cr3t", "hunter2"]) == "auth failed for key *** (***) with password ***"
    assert scrub(text, ["", None]) == text
    assert scrub(text, iter(["absent"])) == text


NGINX_400 = (
    b"<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port</title></head>\r\n"
    b"<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<center>The plain HTTP request was "
    b"sent to HTTPS port</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


def test_describe_answer_names_the_content_type_and_a_page_title() -> None:
    assert (
        describe_answer(NGINX_400, "text/html")
        == "text/html: '400 The plain HTTP request was sent to HTTPS port'"
    )
    untitled = b"<html><body><h1>Moved &amp; gone</h1>\n<p>see   elsewhere</p></body></html>"
    assert describe_answer(untitled, "text/html; charset=utf-8") == "text/html: 'Moved & gone see elsewhere'"
    assert describe_answer("error: invalid HTTP endpoint\n", None) == "'error: invalid HTTP endpoint'"
    assert describe_answer(b"", "text/plain") == "text/plain: an empty body"
    assert len(describe_answer("x" * 10_000)) == 122


def test_describe_answer_masks_a_secret_the_page_echoes_before_cutting() -> None:
    page = "<pre>" + "h" * 90 + "Authorization: Splunk SECRET-TOKEN-123 and more</pre>"
    described = describe_answer(page, "text/html", ["SECRET-TOKEN-123"])
    assert "SECRET" not in described  # the cut falls inside the token: masked first, no piece left
    assert "Authorization: Splunk *** and" in described


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ({}, None),
        ([1], None),
        (True, "true"),
        (False, "false"),
        (3, "3"),
        ("x", "x"),
        (1.5, "1.5"),
    ],
)
def test_text_value(value: object, expected: str | None) -> None:
    assert text_value(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("true", True),
        (" FALSE ", False),
        ("yes", None),
        (1, None),
        (None, None),
    ],
)
def test_bool_value(value: object, expected: bool | None) -> None:
    assert bool_value(value) == expected


# -- document_id ------------------------------------------------------------------------------------


def _record(doc: dict[str, object], location: str = "x") -> Record:
    return Record.from_bytes(orjson.dumps(doc), Origin("file", location))


EVENT = {"eventID": "3f2b7c1e-0000-4000-8000-000000000001", "recipientAccountId": "123456789012"}
DIGEST = {"digestEndTime": "2026-01-01T00:00:00Z", "awsAccountId": "123456789012"}


def test_document_ids_are_pinned() -> None:
    """These ids are stored in users' clusters: a change would store every replayed event twice."""
    assert document_id(_record(EVENT)) == b"aD44XJop8lDmHLpSh-kl"
    assert document_id(_record(EVENT), b"c") == b"aD44XJop8lDmHLpSh-kl"  # eventID: the tag is unused
    assert document_id(_record(DIGEST)) == b"_DnupYM_hyjsjQ8I2BbW"  # Elasticsearch's content tag
    assert document_id(_record(DIGEST), b"c") == b"MicFIpOjUs2xGHuQkfEO"  # OpenSearch's
    assert len(hash_id(b"anything")) == 20
    # the integrity event id both connectors store: location, verdict and window, \x1f-joined
    key = "s3://b/k\x1finvalid\x1f2026-01-01T00:00:00Z\x1f2026-01-01T01:00:00Z"
    assert hash_id(key.encode()) == b"laNP3zBCVEphGxCKw4p1"


def test_hash_id_is_blake2b_15_of_each_key_alone() -> None:
    """Each id is the hash of its own key only, whatever was hashed before (short and long keys)."""
    rng = random.Random(7)
    keys = [rng.randbytes(n) for n in (0, 1, 49, 2047, 2048, 5000)] * 2
    for key in keys:
        want = base64.urlsafe_b64encode(hashlib.blake2b(key, digest_size=15).digest())
        assert hash_id(key) == want


def test_the_id_of_a_record_on_several_lines_hashes_the_same_compact_json() -> None:
    """An event without eventID hashes orjson's compact JSON of the event, however the source
    laid it out (indented, escaped): Record.line() keeps the source's bytes, the ids stay put."""
    doc = {**DIGEST, "note": "caf\u00e9"}
    pretty = json.dumps(doc, indent=2).encode()  # `"caf\u00e9"`: escaped, as the stdlib writes
    assert b"\\u00e9" in pretty
    assert document_id(Record.from_bytes(pretty, Origin("file", "x"))) == document_id(_record(doc))
    assert document_id(_record(doc)) == b"8DZPxyPYUHr_b6uXuMGO"


def test_document_id_ignores_where_the_event_came_from() -> None:
    assert document_id(_record(EVENT, "s3://a/b")) == document_id(_record(EVENT, "firehose"))
    other = {**EVENT, "recipientAccountId": "210987654321"}
    assert document_id(_record(other)) != document_id(_record(EVENT))


def test_the_contract_lends_each_helper_once() -> None:
    for name in helpers.__all__:
        assert name in contract.__all__
        assert getattr(contract, name) is getattr(helpers, name)
    assert "document_id" in contract.__all__


def test_exact_bytes_holds_only_its_length() -> None:
    import tracemalloc

    made = [orjson.dumps(f"2026-03-02T10:{i % 60:02d}:00.000Z") for i in range(500)]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        copies = [contract.exact_bytes(m) for m in made]
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert copies == made
    assert grown < 500 * 128  # ~60 B each; orjson's own output holds ~4 KB each


def test_search_error_reads_every_shape_elasticsearch_and_opensearch_send() -> None:
    caused = {
        "type": "mapper_parsing_exception",
        "reason": "failed to parse",
        "caused_by": {"type": "illegal_argument_exception", "reason": "bad date"},
    }
    expected = (
        "mapper_parsing_exception",
        "failed to parse (caused by illegal_argument_exception: bad date)",
    )
    assert contract.search_error(caused) == expected
    assert contract.search_error({"error": caused, "status": 400}) == expected  # a whole body
    assert contract.search_error({"message": "Forbidden"}) == ("error", "Forbidden")  # AWS's gateway
    iam = {"Message": "User: arn:aws:iam::1:user/w is not authorized to perform: es:ESHttpPost"}
    assert contract.search_error(iam) == ("error", iam["Message"])  # IAM refusing a SigV4 request
    assert contract.search_error(None) == ("error", "")
    assert contract.search_error({"type": "x", "reason": "r" * 1000})[1] == "r" * 600


def test_tls_verify_takes_the_environments_bundle_only_when_asked_and_none_is_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import logging

    log = logging.getLogger("test")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/env/requests.pem")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/env/curl.pem")
    assert contract.tls_verify(True, None, log) is True  # urllib3 clients ignore the variables
    assert contract.tls_verify(True, None, log, environment=True) == "/env/requests.pem"
    assert contract.tls_verify(True, "/cfg/ca.pem", log, environment=True) == "/cfg/ca.pem"
    assert contract.tls_verify(False, None, log, environment=True) is False
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    assert contract.tls_verify(True, None, log, environment=True) == "/env/curl.pem"
    monkeypatch.delenv("CURL_CA_BUNDLE")
    assert contract.tls_verify(True, None, log, environment=True) is True


# -- url_without_credentials ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["https://es.example:9200", "http://127.0.0.1:8088/", "https://host/base/path", " https://h "]
)
def test_a_url_without_credentials_passes_unchanged(url: str) -> None:
    assert contract.url_without_credentials(url, "url") == url


@pytest.mark.parametrize(
    "url", ["https://h:8088?token=S3cret", "https://h/path?q=a@S3cret", "https://h/#S3cret", "https://h/?"]
)
def test_a_url_with_a_query_or_fragment_is_refused_without_echoing_it(url: str) -> None:
    """Sinks append API paths to the URL: ``https://h:8088?x/services/collector`` helps nobody."""
    with pytest.raises(ValueError, match="url must be a base URL without a query string") as info:
        contract.url_without_credentials(url, "url")
    assert "S3cret" not in str(info.value)


@pytest.mark.parametrize(
    "url", ["https://admin:S3cret@es.example:9200", "https://admin@es.example", "http://:S3cret@h:1"]
)
def test_a_url_with_credentials_is_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(ValueError, match="endpoint must not carry credentials") as info:
        contract.url_without_credentials(url, "endpoint")
    assert "S3cret" not in str(info.value)
    assert "admin" not in str(info.value)


def test_refused_certificate_finds_the_check_under_a_client_s_wrappers() -> None:
    """The connectors stop at once on what this finds (a setting to fix), and retry the rest."""
    import ssl

    from trailrelay.contract import refused_certificate

    def wrapped(inner: BaseException) -> ConnectionError:  # as urllib3 and a client chain them
        middle = OSError("urllib3: max retries exceeded")
        middle.__cause__ = inner
        outer = ConnectionError("client: cannot connect")
        outer.__cause__ = middle
        return outer

    check = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] self-signed certificate")
    assert refused_certificate(wrapped(check)) == str(check)
    assert refused_certificate(wrapped(ConnectionResetError("reset by peer"))) is None
    assert refused_certificate(None) is None
    pinned = wrapped(ValueError("Fingerprints did not match. Expected 'ab', got 'cd'"))
    assert refused_certificate(pinned) is None
    assert refused_certificate(pinned, "Fingerprints did not match") == str(pinned.__cause__.__cause__)
