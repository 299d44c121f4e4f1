"""Delivery through the real LogsIngestionClient + azure-identity against the HTTPS stand-in."""

from __future__ import annotations

import copy
import datetime as dt
import gzip
import json
import logging
import threading
import time
from typing import Any

import msgspec
import orjson
import pytest
from conftest import CLIENT, FAST_RETRY, RULE, SECRET, TENANT, config_for, dead_port, sink_for
from sentinel_standin import Scripted, Standin, fake_jwt_claims, load_fixture

from trailrelay.contract import Batch, FatalSinkError, Origin, Record, RetryableError, Status
from trailrelay.testing import SAMPLE_EVENTS, sample_records
from trailrelay_sentinel.sink import ChunkError, SentinelSink

ORIGIN = Origin("file", "test://sentinel")


def records_from(docs: list[dict[str, Any]]) -> list[Record]:
    return [Record.from_bytes(orjson.dumps(d), ORIGIN, i) for i, d in enumerate(docs)]


def event(i: int, **changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(SAMPLE_EVENTS[i % len(SAMPLE_EVENTS)])
    doc["eventID"] = f"00000000-0000-0000-0000-{i:012d}"
    doc.update(changes)
    return doc


# --- the wire ----------------------------------------------------------------------------------


def test_uploads_are_gzip_json_arrays_to_the_rule_and_stream(make_sink: Any, standin: Standin) -> None:
    sink = make_sink()
    records = sample_records(40)
    outcomes = sink.send(Batch(records))
    assert {o.status for o in outcomes} == {Status.DELIVERED}
    (upload,) = standin.state.uploads
    assert upload.rule_id == RULE
    assert upload.stream == "Custom-AWSCloudTrail"
    assert upload.api_version == "2023-01-01"
    assert upload.headers["content-encoding"] == "gzip"
    assert upload.headers["content-type"].startswith("application/json")
    assert upload.headers["authorization"].startswith("Bearer ")
    assert "trailrelay/0.1.0" in upload.headers["user-agent"]
    assert [r["AwsEventId"] for r in upload.rows or []] == [r.event_id for r in records]


def test_large_batches_are_cut_under_the_request_limit(make_sink: Any, standin: Standin) -> None:
    sink = make_sink(max_body=60_000)
    records = sample_records(300)
    outcomes = sink.send(Batch(records))
    assert {o.status for o in outcomes} == {Status.DELIVERED}
    uploads = standin.state.uploads
    assert len(uploads) > 3
    for up in uploads:
        assert up.rows is not None
        assert len(json.dumps(up.rows, separators=(",", ":"), ensure_ascii=False).encode()) <= 60_000
    assert standin.stored_ids() == [r.event_id for r in records]


# --- failures mapped back to their records -----------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "after"),
    [("upload_429_retry_after", 7.0), ("upload_429_no_retry_after", None), ("upload_503_unavailable", 1.0)],
)
def test_throttling_and_5xx_are_retry_for_the_chunk_and_the_rest(
    make_sink: Any, standin: Standin, fixture: str, after: float | None
) -> None:
    errors: list[ChunkError] = []
    sink = make_sink(max_body=20_000, on_error=errors.append)
    records = sample_records(60)
    standin.push_fixture(fixture)
    outcomes = sink.send(Batch(records))
    assert all(o.status is Status.RETRY for o in outcomes)
    status = load_fixture(fixture)["response"]["status"]
    first = [o for o in outcomes if o.reason and o.reason.startswith(f"HTTP {status}")]
    assert first and all(o.retry_after == after for o in first)
    assert any(o.reason and o.reason.startswith("not sent") for o in outcomes)
    assert len(errors) == 1 and errors[0].failure.kind == "retry"
    assert [r.event_id for r in errors[0].records] == [r.event_id for r in records[: len(first)]]
    assert len(standin.state.uploads) == 1  # the throttled DCR is not hammered
    assert {o.status for o in sink.send(Batch(records, 2))} == {Status.DELIVERED}


def test_sdk_retry_policy_is_configurable_and_fast(make_sink: Any, standin: Standin) -> None:
    sink = make_sink(config_overrides={"sdk_retries": 3})
    standin.push_fixture("upload_429_no_retry_after")
    standin.push_fixture("upload_503_unavailable")
    started = time.monotonic()
    # 503 carries Retry-After: 1 which the SDK honours; 429 without it uses our 10 ms backoff.
    outcomes = sink.send(Batch(sample_records(5)))
    assert {o.status for o in outcomes} == {Status.DELIVERED}
    assert len(standin.state.uploads) == 3
    assert time.monotonic() - started < 5


def test_poisoned_record_is_isolated_by_splitting(make_sink: Any, standin: Standin) -> None:
    errors: list[ChunkError] = []
    sink = make_sink(on_error=errors.append)
    records = sample_records(64)
    bad = {records[5].event_id, records[40].event_id}
    standin.state.reject_ids.update(str(b) for b in bad)
    outcomes = sink.send(Batch(records))
    for rec, out in zip(records, outcomes, strict=True):
        if rec.event_id in bad:
            assert out.status is Status.REJECTED
            assert out.reason and "InvalidPayload" in out.reason and "HTTP 400" in out.reason
        else:
            assert out.status is Status.DELIVERED
    assert sorted(standin.stored_ids()) == sorted(str(r.event_id) for r in records if r.event_id not in bad)
    assert len(standin.state.uploads) <= 2 * 2 * 7  # bounded: ~2 log2(n) requests per bad record
    assert all(e.failure.kind == "split" for e in errors)


def test_oversize_record_is_trimmed_and_says_so(make_sink: Any, standin: Standin, caplog: Any) -> None:
    big = event(1, requestParameters={"blob": "x" * 2_500_000, "Host": "h.example"})
    docs = [event(0), big, event(2)]
    sink = make_sink()
    with caplog.at_level(logging.WARNING):
        outcomes = sink.send(Batch(records_from(docs)))
    assert [o.status for o in outcomes] == [Status.DELIVERED] * 3
    row = next(r for r in standin.state.stored if r["AwsEventId"] == big["eventID"])
    marker = json.loads(row["RequestParameters"])
    assert marker["trailrelay_trimmed"]["field"] == "RequestParameters"
    assert marker["trailrelay_trimmed"]["original_bytes"] > 2_500_000
    assert len(marker["trailrelay_trimmed"]["sha256"]) == 64
    assert "trimmed" in caplog.text


def test_server_413_for_one_record_trims_then_delivers(make_sink: Any, standin: Standin) -> None:
    standin.state.row_limit = 60_000
    big = event(3, responseElements={"data": "y" * 150_000})
    sink = make_sink()
    outcomes = sink.send(Batch(records_from([event(0), big, event(2), event(4)])))
    assert [o.status for o in outcomes] == [Status.DELIVERED] * 4
    row = next(r for r in standin.state.stored if r["AwsEventId"] == big["eventID"])
    assert "trailrelay_trimmed" in row["ResponseElements"]
    assert any(u.status == 413 for u in standin.state.uploads)


def test_413_record_that_cannot_shrink_is_rejected_with_azures_reason(
    make_sink: Any, standin: Standin
) -> None:
    standin.state.row_limit = 1_000
    sink = make_sink()
    outcomes = sink.send(Batch(records_from([event(0, errorMessage="z" * 1_500)])))
    assert outcomes[0].status is Status.REJECTED
    assert outcomes[0].reason and "ContentLengthLimitExceeded" in outcomes[0].reason


def test_row_that_cannot_fit_even_trimmed_is_rejected_before_sending(
    make_sink: Any, standin: Standin
) -> None:
    sink = make_sink(max_body=4_000)
    outcomes = sink.send(Batch(records_from([event(0, errorMessage="e" * 5_000), event(1)])))
    assert outcomes[0].status is Status.REJECTED
    assert outcomes[0].reason and "even after trimming" in outcomes[0].reason
    assert outcomes[1].status is Status.DELIVERED


# --- fatal -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "words"),
    [
        ("upload_403_missing_role", "Monitoring Metrics Publisher"),
        ("upload_404_unknown_stream", "rule_id"),
        ("upload_401_invalid_token", "audience"),
    ],
)
def test_auth_and_addressing_errors_stop_the_sink(
    make_sink: Any, standin: Standin, fixture: str, words: str
) -> None:
    sink = make_sink()
    standin.push_fixture(fixture)
    with pytest.raises(FatalSinkError) as info:
        sink.send(Batch(sample_records(3)))
    assert words in str(info.value)
    assert SECRET not in str(info.value)
    assert len(standin.state.uploads) == 1  # a 401 before any upload worked: no new token, no resend


def _echo_authorization(headers: dict[str, str]) -> dict[str, Any]:
    """An Azure error body repeating the request's Authorization header, as some gateways do."""
    seen = headers.get("authorization", "")
    return {
        "error": {"code": "InvalidPayload", "message": f"Request rejected; headers: Authorization={seen}"}
    }


def test_an_answer_repeating_the_access_token_does_not_reach_logs_or_dead_letters(
    make_sink: Any, standin: Standin, caplog: Any
) -> None:
    """The Entra access token was in the warning and in every rejected record's reason."""
    sink = make_sink()
    standin.push(*[Scripted(400, {"x-ms-error-code": "InvalidPayload"}, _echo_authorization)] * 7)
    with caplog.at_level(logging.WARNING):
        outcomes = sink.send(Batch(sample_records(4)))  # 1 + 2 + 4 uploads, split to single records
    assert [o.status for o in outcomes] == [Status.REJECTED] * 4
    (token,) = standin.state.tokens
    texts = [o.reason or "" for o in outcomes] + [caplog.text]
    assert all("Authorization=Bearer ***" in t for t in texts)
    assert not any(token in t for t in texts)


def test_any_bearer_credential_in_an_answer_is_scrubbed(make_sink: Any, standin: Standin) -> None:
    body = {"error": {"code": "Forbidden", "message": "denied for Authorization: bearer eyJ0eXAi.e30.c2ln"}}
    standin.push(Scripted(403, {"x-ms-error-code": "Forbidden"}, body))
    with pytest.raises(FatalSinkError) as info:
        make_sink().send(Batch(sample_records(1)))
    assert "bearer ***" in str(info.value) and "eyJ0eXAi" not in str(info.value)


def test_a_refused_token_after_uploads_worked_is_replaced_and_the_upload_sent_again(
    make_sink: Any, standin: Standin
) -> None:
    """A token revoked or expired mid-run stopped a long-running worker, blaming audience/tenant."""
    sink = make_sink()
    first, second, third = (sample_records(3) for _ in range(3))
    assert {o.status for o in sink.send(Batch(first))} == {Status.DELIVERED}
    standin.push_fixture("upload_401_invalid_token")
    assert {o.status for o in sink.send(Batch(second, 1))} == {Status.DELIVERED}
    assert {o.status for o in sink.send(Batch(third, 2))} == {Status.DELIVERED}
    assert len(standin.state.token_requests) == 2 and len(standin.state.tokens) == 2
    old, new = (u.headers["authorization"] for u in standin.state.uploads[1:3])
    assert old != new and standin.state.uploads[3].headers["authorization"] == new
    assert len(standin.stored_ids()) == 9
    # both tokens, the refused one too, stay out of every message
    tokens = list(standin.state.tokens)
    standin.push(Scripted(403, {"x-ms-error-code": "Forbidden"}, {"error": {"message": " ".join(tokens)}}))
    with pytest.raises(FatalSinkError) as info:
        sink.send(Batch(sample_records(1), 3))
    assert not any(t in str(info.value) for t in tokens)


def test_a_401_that_persists_with_a_new_token_is_fatal_and_says_so(make_sink: Any, standin: Standin) -> None:
    sink = make_sink()
    assert {o.status for o in sink.send(Batch(sample_records(2)))} == {Status.DELIVERED}
    standin.push_fixture("upload_401_invalid_token", 2)
    with pytest.raises(FatalSinkError) as info:
        sink.send(Batch(sample_records(2), 1))
    assert "refused a new access token too" in str(info.value) and "InvalidToken" in str(info.value)
    assert "check that audience" not in str(info.value)  # the audience was right: uploads worked
    assert len(standin.state.tokens) == 2 and len(standin.state.uploads) == 3


NGINX_400 = (
    b"<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port</title></head>\r\n<body>\r\n"
    b"<center><h1>400 Bad Request</h1></center>\r\n<center>The plain HTTP request was sent to HTTPS port"
    b"</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (
            Scripted(400, {"Content-Type": "text/html"}, NGINX_400),
            [
                'HTTP 400 (text/html, starting "<html> <head><title>400 The plain HTTP request was sent',
                "JSON",
            ],
        ),
        (
            Scripted(
                302, {"Location": "https://login.example/sso", "Content-Type": "text/html"}, b"<a>here</a>"
            ),
            ["HTTP 302 (text/html, to https://login.example/sso", "JSON"],
        ),
        (Scripted(404, {}, None), ["HTTP 404 (no Content-Type, empty)", "JSON"]),
        (
            Scripted(
                200, {"Content-Type": "text/html"}, b"<html><body>Corporate proxy: sign in</body></html>"
            ),
            ['HTTP 200 (text/html, starting "<html><body>Corporate proxy: sign in', "which answers 204"],
        ),
    ],
)
def test_an_answer_that_is_not_the_logs_ingestion_api_stops_the_sink(
    make_sink: Any, standin: Standin, answer: Scripted, words: list[str]
) -> None:
    """A proxy's 400 page was taken for Azure refusing the rows: every record split down and
    dead-lettered with "Operation returned an invalid status 'Bad Request'"; a 200 page stopped
    the run saying only "invalid status 'OK'"."""
    errors: list[ChunkError] = []
    sink = make_sink(on_error=errors.append)
    standin.push(*[answer] * 30)
    with pytest.raises(FatalSinkError) as info:
        sink.send(Batch(sample_records(8)))
    text = str(info.value)
    assert all(w in text for w in words), text
    assert "not the Logs Ingestion API" in text and "check endpoint" in text and "\n" not in text
    assert len(standin.state.uploads) == 1 and standin.state.stored == []  # not split, nothing refused
    assert [e.failure.kind for e in errors] == ["fatal"]


def test_wrong_rule_id_is_fatal(standin: Standin, ca_file: str) -> None:
    sink = sink_for(
        standin, ca_file, config=config_for(standin, ca_file, rule_id="dcr-ffffffffffffffffffffffffffffffff")
    )
    with pytest.raises(FatalSinkError, match="dcr-ffff"):
        sink.send(Batch(sample_records(1)))
    with pytest.raises(FatalSinkError):
        sink.check()
    sink.close()


def test_wrong_secret_is_fatal_and_secret_free(standin: Standin, ca_file: str) -> None:
    wrong = "not-the-secret-" + SECRET[::-1]
    sink = sink_for(standin, ca_file, config=config_for(standin, ca_file, client_secret=wrong))
    with pytest.raises(FatalSinkError) as info:
        sink.send(Batch(sample_records(1)))
    text = str(info.value) + repr(info.value) + repr(sink)
    assert "AADSTS7000215" in text
    assert wrong not in text and SECRET not in text
    sink.close()


def test_unreachable_token_endpoint_is_retry(standin: Standin, ca_file: str) -> None:
    cfg = config_for(standin, ca_file, authority_host=f"https://127.0.0.1:{dead_port()}")
    sink = sink_for(standin, ca_file, config=cfg)
    outcomes = sink.send(Batch(sample_records(2)))
    assert [o.status for o in outcomes] == [Status.RETRY] * 2
    assert outcomes[0].reason and "Entra" in outcomes[0].reason
    with pytest.raises(RetryableError):
        sink.check()
    sink.close()


@pytest.mark.parametrize(
    ("answer", "words", "after"),
    [
        (Scripted(503, {"Content-Type": "text/html"}, b"<html>Service Unavailable</html>"), "HTTP 503", None),
        (
            Scripted(
                429,
                {"Retry-After": "2"},
                {"error": "temporarily_unavailable", "error_description": "AADSTS50196: throttled"},
            ),
            "HTTP 429 temporarily_unavailable",
            2.0,
        ),
        (
            Scripted(200, {"Content-Type": "text/html"}, b"<html>proxy login</html>"),
            "HTTP 200 without JSON",
            None,
        ),
    ],
)
def test_a_token_endpoint_outage_is_retry_not_a_refused_credential(
    standin: Standin, ca_file: str, answer: Scripted, words: str, after: float | None
) -> None:
    """Entra down, throttling, or a proxy's page in its place: the credential is fine, try again.

    azure-identity raises these as ClientAuthenticationError without the response, like a wrong
    secret: the run stopped (exit 3) saying "refused the client_secret credential".
    """
    standin.state.token_script.extend([answer, answer])  # for send, then check
    sink = sink_for(standin, ca_file, credential_options={**FAST_RETRY, "retry_total": 0})
    outcomes = sink.send(Batch(sample_records(2)))
    assert [o.status for o in outcomes] == [Status.RETRY] * 2
    assert "Microsoft Entra ID" in outcomes[0].reason and words in outcomes[0].reason
    assert outcomes[0].retry_after == after
    with pytest.raises(RetryableError, match="Microsoft Entra ID"):  # and `trailrelay check` says so too
        sink.check()
    sink.close()
    assert standin.state.stored == []


def test_without_the_token_answer_msals_words_for_a_5xx_are_enough() -> None:
    """A credential built elsewhere records no answer; MSAL says "HTTP Error: 503" itself."""
    from azure.core.exceptions import ClientAuthenticationError

    from trailrelay_sentinel.failures import classify

    where = {"rule_id": RULE, "stream": "Custom-X", "endpoint": "https://dce", "credential": "client_secret"}
    outage = classify(ClientAuthenticationError("Authentication failed: HTTP Error: 503"), **where)
    refused = classify(
        ClientAuthenticationError("Authentication failed: AADSTS7000215: Invalid client secret"), **where
    )
    assert (outage.kind, outage.status) == ("retry", 503)
    assert refused.kind == "fatal"


def test_an_oauth_refusal_is_still_fatal(standin: Standin, ca_file: str) -> None:
    refused = {"error": "unauthorized_client", "error_description": "AADSTS700016: Application not found"}
    standin.state.token_script.append(Scripted(400, {}, refused))
    sink = sink_for(standin, ca_file, credential_options={**FAST_RETRY, "retry_total": 0})
    with pytest.raises(FatalSinkError, match=r"refused the client_secret credential: .*AADSTS700016"):
        sink.send(Batch(sample_records(1)))
    sink.close()


def test_untrusted_certificate_is_fatal_and_points_at_ca_bundle(standin: Standin) -> None:
    sink = sink_for(standin, None)
    with pytest.raises(FatalSinkError, match="ca_bundle"):
        sink.send(Batch(sample_records(1)))
    sink.close()


# --- backfill ----------------------------------------------------------------------------------


def test_old_events_are_delivered_with_event_time_kept_and_a_counted_warning(
    make_sink: Any, standin: Standin, caplog: Any
) -> None:
    now = dt.datetime.now(dt.UTC)
    old = (now - dt.timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    fresh = (now - dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    docs = [event(i, eventTime=old if i % 3 else fresh) for i in range(9)]
    sink = make_sink()
    with caplog.at_level(logging.WARNING):
        outcomes = sink.send(Batch(records_from(docs)))
    assert {o.status for o in outcomes} == {Status.DELIVERED}
    assert "6 record(s) have an eventTime more than 2 days old" in caplog.text
    assert "EventTime_CF" in caplog.text
    rows = {r["AwsEventId"]: r for r in standin.state.stored}
    assert all(rows[d["eventID"]]["EventTime"] == d["eventTime"] for d in docs)


def test_backfill_warning_is_throttled_but_counts_everything(
    standin: Standin, ca_file: str, caplog: Any
) -> None:
    clock = [1_700_000_000.0]
    sink = sink_for(standin, ca_file, warn_interval=60.0, clock=lambda: clock[0])
    docs = [event(i, eventTime="2023-01-01T00:00:00Z") for i in range(4)]
    with caplog.at_level(logging.WARNING):
        sink.send(Batch(records_from(docs[:2])))
        sink.send(Batch(records_from(docs[2:3])))
        clock[0] += 61
        sink.send(Batch(records_from(docs[3:])))
    warnings = [r.getMessage() for r in caplog.records if "eventTime more than 2 days" in r.getMessage()]
    assert len(warnings) == 2
    assert warnings[1].startswith("sentinel: 2 record(s)") and "4 such record(s) since start" in warnings[1]
    sink.close()


def test_failed_uploads_are_logged_at_most_every_30_s_with_a_count(
    standin: Standin, ca_file: str, caplog: Any
) -> None:
    """An outage fails every chunk: one warning each flooded the log (71-239 in a few seconds)."""
    clock = [1_700_000_000.0]
    sink = sink_for(standin, ca_file, clock=lambda: clock[0])
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            standin.push_fixture("upload_503_unavailable")
            assert {o.status for o in sink.send(Batch(sample_records(3)))} == {Status.RETRY}
        clock[0] += 31
        standin.push_fixture("upload_503_unavailable")
        sink.send(Batch(sample_records(3)))
    sink.close()
    warnings = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(warnings) == 2
    assert warnings[0].startswith("sentinel: upload of 3 record(s) failed (retry): HTTP 503")
    assert warnings[1].startswith("sentinel: 5 uploads of 15 record(s) in all failed since the last message")


def test_an_unreachable_entra_leaves_the_warnings_to_the_pipeline(
    standin: Standin, ca_file: str, caplog: Any
) -> None:
    """azure-identity warned "get_token failed" on every attempt."""
    cfg = config_for(standin, ca_file, authority_host=f"https://127.0.0.1:{dead_port()}")
    sink = sink_for(standin, ca_file, config=cfg)
    with caplog.at_level(logging.DEBUG):
        for _ in range(3):
            assert {o.status for o in sink.send(Batch(sample_records(2)))} == {Status.RETRY}
    sink.close()
    noisy = [
        r for r in caplog.records if r.name.startswith("azure.identity") and r.levelno >= logging.WARNING
    ]
    assert noisy == []


# --- concurrency, check ------------------------------------------------------------------------


def test_concurrent_sends_deliver_each_record_once(make_sink: Any, standin: Standin) -> None:
    sink = make_sink(max_body=30_000)
    batches = [sample_records(50) for _ in range(4)]
    for n, batch in enumerate(batches):
        for r in batch:
            r.routing.event_id = f"{n}-{r.event_id}"
            r.replace({**r.document(), "eventID": r.routing.event_id})
    results: list[Any] = [None] * 4

    def run(n: int) -> None:
        results[n] = sink.send(Batch(batches[n]))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all({o.status for o in res} == {Status.DELIVERED} for res in results)
    assert sorted(standin.stored_ids()) == sorted(r.event_id for b in batches for r in b)


def test_check_gets_a_token_and_writes_nothing(make_sink: Any, standin: Standin) -> None:
    result = make_sink().check()
    assert result.ok
    assert result.details["rule_id"] == RULE and result.details["credential"] == "client_secret"
    (upload,) = standin.state.uploads
    assert upload.rows == [] and upload.status == 204
    assert standin.state.stored == []


def test_check_reports_missing_role(make_sink: Any, standin: Standin) -> None:
    sink = make_sink()
    standin.push_fixture("upload_403_missing_role")
    with pytest.raises(FatalSinkError, match="Monitoring Metrics Publisher"):
        sink.check()


# --- credentials -------------------------------------------------------------------------------


def _rsa_pem(path: Any) -> None:
    """A self-signed RSA certificate + key, as an app registration certificate would be."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "trailrelay-app")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        + cert.public_bytes(serialization.Encoding.PEM)
    )


def test_certificate_credential(standin: Standin, ca_file: str, tmp_path: Any) -> None:
    pem = tmp_path / "app.pem"
    _rsa_pem(pem)
    cfg = config_for(standin, ca_file, client_secret=None, certificate_path=str(pem))
    sink = sink_for(standin, ca_file, config=cfg)
    assert sink.check().details["credential"] == "certificate"
    assertion = standin.state.token_requests[-1]["client_assertion"]
    claims = fake_jwt_claims(assertion)
    assert claims["iss"] == CLIENT and claims["sub"] == CLIENT
    sink.close()


def test_workload_identity_credential(
    standin: Standin, ca_file: str, tmp_path: Any, monkeypatch: Any
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("eyJhbGciOiJub25lIn0.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6dHIifQ.")
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", str(token_file))
    cfg = config_for(standin, ca_file, client_secret=None, credential="workload_identity")
    sink = sink_for(standin, ca_file, config=cfg)
    assert sink.check().ok
    assert standin.state.token_requests[-1]["client_assertion"] == token_file.read_text()
    sink.close()


def test_managed_identity_credential(standin: Standin, ca_file: str, monkeypatch: Any) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"{standin.url}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", standin.state.identity_header)
    cfg = config_for(standin, ca_file, client_secret=None, tenant_id=None, credential="managed_identity")
    sink = sink_for(standin, ca_file, config=cfg)
    assert sink.send(Batch(sample_records(2)))[0].status is Status.DELIVERED
    req = standin.state.token_requests[-1]
    assert req["managed_identity"] == "1" and req["resource"] == "https://monitor.azure.com"
    assert req["client_id"] == CLIENT  # user-assigned identity chosen by client_id
    sink.close()


def test_default_azure_credential_uses_the_environment(
    standin: Standin, ca_file: str, monkeypatch: Any
) -> None:
    for name in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "AZURE_FEDERATED_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_TENANT_ID", TENANT)
    monkeypatch.setenv("AZURE_CLIENT_ID", CLIENT)
    monkeypatch.setenv("AZURE_CLIENT_SECRET", SECRET)
    cfg = config_for(
        standin, ca_file, client_secret=None, tenant_id=None, client_id=None, credential="default"
    )
    sink = sink_for(standin, ca_file, config=cfg)
    assert sink.check().details["credential"] == "default"
    assert standin.state.token_requests[-1]["client_secret"] == SECRET
    sink.close()


def test_sovereign_cloud_audience(standin: Standin, ca_file: str) -> None:
    standin.state.audience = "https://monitor.azure.us"
    ok = sink_for(standin, ca_file, config=config_for(standin, ca_file, audience="https://monitor.azure.us"))
    assert ok.send(Batch(sample_records(1)))[0].status is Status.DELIVERED
    assert standin.state.token_requests[-1]["scope"].startswith("https://monitor.azure.us/.default")
    ok.close()
    wrong = sink_for(standin, ca_file)  # public-cloud audience against a US Gov authority
    with pytest.raises(FatalSinkError, match="AADSTS70011"):
        wrong.send(Batch(sample_records(1)))
    wrong.close()


def test_discovery_happens_against_the_configured_authority(make_sink: Any, standin: Standin) -> None:
    make_sink().check()
    assert standin.state.discovery_requests >= 1
    assert standin.state.token_requests[-1]["client_id"] == CLIENT


def test_gzip_body_matches_encoder_output(make_sink: Any, standin: Standin) -> None:
    from trailrelay_sentinel.encode import SentinelEncoder

    records = sample_records(10)
    make_sink().send(Batch(records))
    (body,) = SentinelEncoder().encode(records)
    assert json.loads(body) == standin.state.uploads[0].rows
    assert gzip.decompress(gzip.compress(body)) == body


def test_repr_and_config_hide_secrets(standin: Standin, ca_file: str) -> None:
    sink: SentinelSink = sink_for(standin, ca_file)
    for text in (repr(sink), str(sink), repr(sink.config), str(msgspec.structs.asdict(sink.config))):
        assert SECRET not in text
    assert TENANT in repr(sink.config)


@pytest.mark.parametrize(
    ("name", "expect"),
    [
        ("upload_204", "delivered"),
        ("upload_400_invalid_payload", "rejected"),
        ("upload_413_content_length", "rejected"),
        ("upload_429_retry_after", "retry"),
        ("upload_429_no_retry_after", "retry"),
        ("upload_503_unavailable", "retry"),
        ("upload_401_invalid_token", "fatal"),
        ("upload_403_missing_role", "fatal"),
        ("upload_404_unknown_stream", "fatal"),
    ],
)
def test_documented_responses_replayed(make_sink: Any, standin: Standin, name: str, expect: str) -> None:
    fixture = load_fixture(name)["response"]
    sink = make_sink()
    standin.push_fixture(name)
    if expect == "fatal":
        with pytest.raises(FatalSinkError) as info:
            sink.send(Batch(sample_records(1)))
        assert fixture["headers"]["x-ms-error-code"] in str(info.value)
        return
    (outcome,) = sink.send(Batch(sample_records(1)))
    assert outcome.status.value == expect
    if expect != "delivered":
        assert (
            outcome.reason
            and f"HTTP {fixture['status']} {fixture['headers']['x-ms-error-code']}" in outcome.reason
        )


class _Proxy:
    """A forward proxy that records each CONNECT line and refuses it (502)."""

    def __init__(self) -> None:
        import socket

        self.lines: list[str] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data and (chunk := conn.recv(4096)):
                    data += chunk
                self.lines.append(data.split(b"\r\n", 1)[0].decode())
                conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")

    def close(self) -> None:
        self._sock.close()


def test_proxy_from_the_environment_is_read_once_at_open(
    standin: Standin, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Uploads go through $HTTPS_PROXY as it was when the sink opened (requests would re-read
    every environment variable on each request); $NO_PROXY still exempts the endpoint."""
    proxy = _Proxy()
    try:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "")
        sink = sink_for(standin, ca_file)
        sink.open()
        monkeypatch.delenv("HTTPS_PROXY")  # later changes do not matter; the token call goes direct
        records = records_from([event(0)])
        outcomes = sink.send(Batch(records, 1))
        sink.close()
        assert [o.status for o in outcomes] == [Status.RETRY]
        port = standin.url.rsplit(":", 1)[1]
        assert proxy.lines and all(line.startswith(f"CONNECT 127.0.0.1:{port} ") for line in proxy.lines)
        assert standin.stored_ids() == []

        seen = len(proxy.lines)
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        direct = sink_for(standin, ca_file)
        direct.open()
        assert [o.status for o in direct.send(Batch(records, 1))] == [Status.DELIVERED]
        direct.close()
        assert len(proxy.lines) == seen
    finally:
        proxy.close()


def test_ca_bundle_from_the_environment_still_trusted(
    standin: Standin, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ca_bundle, $REQUESTS_CA_BUNDLE (read once at open) decides whom uploads trust."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
    sink = sink_for(standin, None)
    sink.open()
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    outcomes = sink.send(Batch(records_from([event(1)]), 1))
    sink.close()
    assert [o.status for o in outcomes] == [Status.DELIVERED]


def test_a_url_carrying_credentials_is_refused_without_echoing_them() -> None:
    from trailrelay.testing import assert_refuses_credentials_in_url
    from trailrelay_sentinel.config import SentinelConfig

    table = {
        "type": "sentinel",
        "rule_id": "dcr-1",
        "stream": "Custom-AWSCloudTrail",
        "tenant_id": "t",
        "client_id": "c",
        "client_secret": "s",
    }
    assert_refuses_credentials_in_url(SentinelConfig, table, "endpoint")
