"""SplunkSink over real HTTP to the HEC stand-in: batching, gzip, channels, acks and faults."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import logging
import threading
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
import requests
from click.testing import CliRunner
from requests.adapters import HTTPAdapter
from splunk_hec_standin import HecStandIn, Scripted
from splunk_testkit import TOKEN, context, make_config, sink_runner

from trailrelay.cli.main import cli
from trailrelay.contract import (
    Batch,
    ConfigError,
    FatalSinkError,
    Origin,
    Outcome,
    Record,
    RetryableError,
    RiskTag,
    Status,
)
from trailrelay.pipeline.deadletter import read_entries
from trailrelay.testing import SAMPLE_EVENTS, sample_records, settled
from trailrelay_splunk.encode import EnvelopeEncoder
from trailrelay_splunk.sink import SplunkSink


def _sink(hec: HecStandIn, **overrides: Any) -> SplunkSink:
    sink = SplunkSink(make_config(hec.url, **{"ack": hec.use_ack, **overrides}), context())
    sink.open()
    return sink


def _until_final(sink: SplunkSink, records: Sequence[Record], rounds: int = 8) -> dict[str, Outcome]:
    """Re-send RETRY records (and whole batches after RetryableError) like the pipeline does."""
    final: dict[str, Outcome] = {}
    pending = list(records)
    for attempt in range(1, rounds + 1):
        if not pending:
            break
        try:
            outcomes = settled(sink.send(Batch(pending, attempt)))
        except RetryableError:
            continue
        retry = []
        for rec, outcome in zip(pending, outcomes, strict=True):
            if outcome.status is Status.RETRY:
                retry.append(rec)
            else:
                final[str(rec.event_id)] = outcome
        pending = retry
    assert not pending, f"{len(pending)} records still pending"
    return final


def _record(
    doc: dict[str, Any], location: str = "s3://trail-bucket/AWSLogs/o/1.json.gz", **kw: Any
) -> Record:
    return Record.from_bytes(
        orjson.dumps(doc), Origin("s3", location, "trail-bucket", "AWSLogs/o/1.json.gz"), **kw
    )


# -- mapping ----------------------------------------------------------------------------------


def test_event_is_the_source_bytes_unchanged_with_metadata(hec: HecStandIn) -> None:
    """event = the record's own bytes; time in epoch seconds with ms; source = S3 URI."""
    raw = b'{"eventVersion":"1.08", "eventTime":"2026-03-02T10:15:02.123Z","eventID":"e-1","awsRegion":"eu-west-1" ,"recipientAccountId":"111122223333","eventSource":"s3.amazonaws.com","eventName":"GetObject"}'
    rec = Record.from_bytes(raw, Origin("s3", "s3://trail-bucket/AWSLogs/1.json.gz"))
    sink = _sink(hec, host="trailrelay-1")
    assert settled(sink.send(Batch([rec])))[0].status is Status.DELIVERED
    body = EnvelopeEncoder(sink.config).encode([rec])[0]
    assert raw in body  # spliced byte for byte, odd spacing included
    (stored,) = hec.stored
    assert stored == {
        "time": 1772446502.123,
        "source": "s3://trail-bucket/AWSLogs/1.json.gz",
        "sourcetype": "aws:cloudtrail",
        "index": "cloudtrail",
        "host": "trailrelay-1",
        "event": json.loads(raw),
    }
    assert body.startswith(b'{"time":1772446502.123,')
    sink.close()


def test_each_envelope_carries_its_own_records_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Envelope heads are cached per eventTime: interleaved times, and times after the cache is
    cleared, each still get their own record's epoch."""
    monkeypatch.setattr("trailrelay_splunk.encode._HEAD_CACHE_LIMIT", 3)
    times = [
        "2026-03-02T10:15:02Z",
        "2026-03-02T10:15:03Z",
        "2026-03-02T10:15:02Z",
        "2026-03-02T11:00:00.250Z",
    ]
    times += ["2026-03-02T10:15:03Z", "2026-03-02T12:00:00+02:00", "2026-03-02T10:00:00Z"]
    records = [_record({"eventTime": t, "eventID": f"e-{i}", "eventName": "X"}) for i, t in enumerate(times)]
    encoder = EnvelopeEncoder(make_config("http://127.0.0.1:1"))
    got = [json.loads(encoder.envelope(r))["time"] for r in records]
    want = [dt.datetime.fromisoformat(t).timestamp() for t in times]
    assert got == pytest.approx(want, abs=1e-6)
    assert got[5] == got[6]  # the same instant written in another offset
    assert len(encoder._heads) <= 3


def test_pretty_printed_source_becomes_one_line_event(hec: HecStandIn) -> None:
    records = sample_records(4, pretty_every=4)
    assert b"\n" in records[3].raw
    body = EnvelopeEncoder(make_config(hec.url)).encode(records)[0]
    assert body.count(b"\n") == 3  # one separator between four envelopes, none inside
    assert [json.loads(line)["event"] for line in body.split(b"\n")] == [r.document() for r in records]


def test_indexed_account_falls_back_to_the_callers_account(hec: HecStandIn) -> None:
    """Without recipientAccountId the account field is userIdentity.accountId (decoded on demand)."""
    event = {k: v for k, v in SAMPLE_EVENTS[0].items() if k != "recipientAccountId"}
    event["userIdentity"] = {**event["userIdentity"], "accountId": "444455556666"}
    bare = {k: v for k, v in event.items() if k != "userIdentity"}
    body = EnvelopeEncoder(make_config(hec.url, fields=["account"])).encode([_record(event), _record(bare)])[
        0
    ]
    fields = [json.loads(line).get("fields") for line in body.split(b"\n")]
    assert fields == [{"trailrelay_account": "444455556666"}, None]


def test_indexed_fields_account_region_and_risk_tags(hec: HecStandIn) -> None:
    rec = _record(SAMPLE_EVENTS[0])
    rec.add_tags(
        [
            RiskTag("ct-stop-logging", "CloudTrail logging stopped", "high", "T1562.008"),
            RiskTag("iam-user-action", "IAM user activity", "low"),
        ]
    )
    plain = _record(SAMPLE_EVENTS[2])
    sink = _sink(hec, fields=["account", "region", "risk"], source="cloudtrail-org-trail")
    assert [o.status for o in settled(sink.send(Batch([rec, plain])))] == [Status.DELIVERED] * 2
    tagged, untagged = hec.stored
    assert tagged["fields"] == {
        "trailrelay_account": "111122223333",
        "trailrelay_region": "eu-west-1",
        "trailrelay_rule": ["ct-stop-logging", "iam-user-action"],
        "trailrelay_severity": "high",
        "trailrelay_technique": ["T1562.008"],
    }
    assert untagged["fields"] == {"trailrelay_account": "111122223333", "trailrelay_region": "us-east-1"}
    assert tagged["source"] == "cloudtrail-org-trail"
    sink.close()


def test_record_without_event_time_omits_time(hec: HecStandIn) -> None:
    doc = {k: v for k, v in SAMPLE_EVENTS[1].items() if k != "eventTime"}
    sink = _sink(hec)
    settled(sink.send(Batch([_record(doc)])))
    assert "time" not in hec.stored[0]
    sink.close()


# -- batching and the wire --------------------------------------------------------------------


def test_batches_are_cut_by_count_and_bytes_and_gzipped(hec: HecStandIn) -> None:
    records = sample_records(23)
    sink = _sink(hec, batch_events=5)
    assert {o.status for o in settled(sink.send(Batch(records)))} == {Status.DELIVERED}
    requests_seen = hec.event_requests()
    assert [r.events for r in requests_seen] == [5, 5, 5, 5, 3]
    assert all(r.headers.get("Content-Encoding") == "gzip" for r in requests_seen)
    assert all(r.headers.get("Authorization") == f"Splunk {TOKEN}" for r in requests_seen)
    sink.close()

    limit = 16 * 1024
    hec.log.clear()
    sink = _sink(hec, batch_bytes=limit)
    encoder = EnvelopeEncoder(sink.config)
    bodies = encoder.encode(sample_records(60))
    assert len(bodies) > 1 and all(len(b) <= limit for b in bodies)
    assert b"\n".join(bodies) == b"\n".join(encoder.envelopes(sample_records(60)))
    settled(sink.send(Batch(sample_records(60))))
    assert len(hec.event_requests()) == len(bodies)
    assert all(r.body_size < limit for r in hec.event_requests())  # gzip'd Content-Length
    sink.close()


def test_body_on_the_wire_is_gzip_of_the_encoded_body(hec: HecStandIn) -> None:
    seen: list[bytes] = []

    class Recording(HTTPAdapter):
        def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
            if isinstance(request.body, bytes):
                seen.append(request.body)
            return super().send(request, *args, **kwargs)

    records = sample_records(7)
    sink = SplunkSink(make_config(hec.url), context(), adapter=Recording())  # the transport seam
    sink.open()
    settled(sink.send(Batch(records)))
    assert [gzip.decompress(b) for b in seen] == EnvelopeEncoder(sink.config).encode(records)
    sink.close()


# -- acknowledgement --------------------------------------------------------------------------


def test_ack_delivered_only_after_acknowledgement(hec_ack: HecStandIn) -> None:
    hec_ack.ack_after_polls = 3
    sink = _sink(hec_ack)
    outcomes = settled(sink.send(Batch(sample_records(9))))
    assert {o.status for o in outcomes} == {Status.DELIVERED}
    polls = [r for r in hec_ack.log if r.path.endswith("/ack")]
    assert len(polls) == 4  # three "false", then "true"
    channel = hec_ack.event_requests()[0].headers["X-Splunk-Request-Channel"]
    assert {p.headers["X-Splunk-Request-Channel"] for p in polls} == {channel}
    sink.close()


def test_ack_timeout_is_retry_that_may_duplicate(hec_ack: HecStandIn) -> None:
    hec_ack.acks_never = True
    records = sample_records(5)
    sink = _sink(hec_ack, ack_timeout=0.2)
    outcomes = settled(sink.send(Batch(records)))
    assert {o.status for o in outcomes} == {Status.RETRY}
    assert all("twice" in (o.reason or "") for o in outcomes)
    hec_ack.acks_never = False
    assert {o.status for o in settled(sink.send(Batch(records, 2)))} == {Status.DELIVERED}
    # The documented duplicate: HEC had the first copy, it just never acknowledged it.
    assert Counter(hec_ack.event_ids()) == Counter({str(r.event_id): 2 for r in records})
    sink.close()


def test_each_worker_thread_has_its_own_channel(hec_ack: HecStandIn) -> None:
    sink = _sink(hec_ack, concurrency=4, batch_events=10)
    per_thread: dict[int, list[Outcome]] = {}
    records = sample_records(40)

    def work(n: int) -> None:
        per_thread[n] = list(settled(sink.send(Batch(records[n * 10 : (n + 1) * 10]))))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(o.status is Status.DELIVERED for outs in per_thread.values() for o in outs)
    channels = {r.headers["X-Splunk-Request-Channel"] for r in hec_ack.event_requests()}
    assert len(channels) == 4
    assert Counter(hec_ack.event_ids()) == Counter(str(r.event_id) for r in records)
    sink.close()


def test_token_without_ack_when_ack_is_on_is_fatal(hec: HecStandIn) -> None:
    sink = _sink(hec, ack=True)  # HEC answers Success without ackId
    with pytest.raises(FatalSinkError, match="useACK"):
        settled(sink.send(Batch(sample_records(2))))
    result = sink.check()
    assert not result.ok and "ACK is disabled" in result.summary
    sink.close()


def test_token_with_ack_when_ack_is_off_is_fatal(hec_ack: HecStandIn) -> None:
    sink = _sink(hec_ack, ack=False)
    with pytest.raises(FatalSinkError, match="set ack = true"):
        settled(sink.send(Batch(sample_records(2))))
    assert not sink.check().ok
    sink.close()


@pytest.mark.parametrize("path", ["/services/collector/health", "/services/collector/event"])
def test_check_fails_when_a_200_is_not_hecs(hec: HecStandIn, path: str) -> None:
    """A proxy or portal page answering 200 must not pass for a healthy HEC that took the token.

    (It did: the health check looked at the status alone, and the token probe's 200 was not
    among the refusals it looked for.)
    """
    page = "<html><body>Please sign in to continue</body></html>"
    hec.script(Scripted(path, 200, page, {"Content-Type": "text/html"}))
    sink = _sink(hec)
    try:
        result = sink.check()
    finally:
        sink.close()
    assert not result.ok
    assert "without HEC's JSON (a proxy or another service?)" in result.summary
    assert "Please sign in" in result.summary


# -- faults -----------------------------------------------------------------------------------


def test_busy_for_n_requests_then_delivered_once(hec_ack: HecStandIn) -> None:
    hec_ack.busy_left = 3
    records = sample_records(12)
    sink = _sink(hec_ack)
    final = _until_final(sink, records)
    assert {o.status for o in final.values()} == {Status.DELIVERED}
    assert Counter(hec_ack.event_ids()) == Counter(str(r.event_id) for r in records)
    sink.close()


def test_429_retry_after_is_honoured(hec: HecStandIn) -> None:
    hec.busy_left, hec.busy_status, hec.busy_retry_after = 1, 429, "7"
    sink = _sink(hec)
    with pytest.raises(RetryableError) as info:
        settled(sink.send(Batch(sample_records(2))))
    assert info.value.retry_after == 7.0
    assert "code 26" in str(info.value)
    sink.close()


def test_busy_mid_batch_keeps_what_was_delivered(hec: HecStandIn) -> None:
    """The second request of a two-request batch is refused: first half DELIVERED, second RETRY."""
    records = sample_records(10)
    sink = _sink(hec, batch_events=5)
    calls = Counter[str]()
    original = hec.handle_events

    def flaky(body: bytes, channel: str | None) -> tuple[int, dict[str, Any], int]:
        calls["n"] += 1
        if calls["n"] == 2:
            return 503, {"text": "Server is busy", "code": 9}, 0
        return original(body, channel)

    hec.handle_events = flaky  # type: ignore[method-assign]
    outcomes = settled(sink.send(Batch(records)))
    assert [o.status for o in outcomes] == [Status.DELIVERED] * 5 + [Status.RETRY] * 5
    assert all("Server is busy" in (o.reason or "") for o in outcomes[5:])
    sink.close()


def test_connection_reset_mid_batch_loses_nothing_and_duplicates_nothing(hec_ack: HecStandIn) -> None:
    records = sample_records(15)
    sink = _sink(hec_ack, batch_events=5)
    hec_ack.reset_left = 1
    with pytest.raises(RetryableError, match="cannot reach"):
        settled(sink.send(Batch(records)))
    final = _until_final(sink, records)
    assert {o.status for o in final.values()} == {Status.DELIVERED}
    assert Counter(hec_ack.event_ids()) == Counter(str(r.event_id) for r in records)
    sink.close()


def test_poisoned_records_rejected_rest_delivered_exactly_once(hec: HecStandIn) -> None:
    """Without acks HEC's 200-free answer is all there is: the kept prefix counts as delivered."""
    records = sample_records(20)
    bad = {str(records[3].event_id), str(records[11].event_id)}
    hec.poisoned |= bad
    sink = _sink(hec, ack=False)
    outcomes = settled(sink.send(Batch(records)))
    by_id = {str(r.event_id): o for r, o in zip(records, outcomes, strict=True)}
    assert {k for k, o in by_id.items() if o.status is Status.REJECTED} == bad
    assert all("Invalid data format" in (by_id[k].reason or "") for k in bad)
    assert {o.status for k, o in by_id.items() if k not in bad} == {Status.DELIVERED}
    assert Counter(hec.event_ids()) == Counter(k for k in by_id if k not in bad)
    assert [r.events for r in hec.event_requests()] == [3, 7, 8]  # prefix kept, rest re-sent
    sink.close()


def test_a_record_that_cannot_be_encoded_is_rejected_alone(hec: HecStandIn) -> None:
    """An event the encoder refuses is REJECTED with the reason; the others go in one request."""
    records = sample_records(6)
    odd = Origin("file", "trail-\udcff.json")  # a file name that is not UTF-8: no JSON string for its source
    for i in (2, 4):
        records[i] = Record(records[i].raw, records[i].routing, odd, i)
    sink = _sink(hec, ack=False)
    outcomes = settled(sink.send(Batch(records)))
    ok, bad = Status.DELIVERED, Status.REJECTED
    assert [o.status for o in outcomes] == [ok, ok, bad, ok, bad, ok]
    assert "cannot encode the record as an HEC event" in (outcomes[2].reason or "")
    assert [r.events for r in hec.event_requests()] == [4]
    assert hec.event_ids() == [str(records[i].event_id) for i in (0, 1, 3, 5)]
    sink.close()


def test_under_ack_events_before_a_refused_one_are_retried_not_assumed(hec_ack: HecStandIn) -> None:
    """With acks, no ackId vouches for the prefix HEC kept: it is sent again (may duplicate)."""
    records = sample_records(20)
    bad = str(records[3].event_id)
    hec_ack.poisoned.add(bad)
    sink = _sink(hec_ack)
    outcomes = settled(sink.send(Batch(records)))
    by_id = {str(r.event_id): o for r, o in zip(records, outcomes, strict=True)}
    assert by_id[bad].status is Status.REJECTED
    prefix = [str(r.event_id) for r in records[:3]]
    assert all(by_id[k].status is Status.RETRY and "twice" in (by_id[k].reason or "") for k in prefix)
    rest = [str(r.event_id) for r in records[4:]]
    assert {by_id[k].status for k in rest} == {Status.DELIVERED}  # confirmed by their ackId
    final = _until_final(sink, records[:3])
    assert {o.status for o in final.values()} == {Status.DELIVERED}
    # the documented duplicate: HEC had kept the prefix the first time
    assert Counter(hec_ack.event_ids()) == Counter({**dict.fromkeys(rest, 1), **dict.fromkeys(prefix, 2)})
    sink.close()


def test_413_splits_and_single_oversized_event_is_rejected(hec: HecStandIn) -> None:
    records = sample_records(16)
    hec.max_content_length = 900  # gzip'd bytes: a few events per request
    sink = _sink(hec)
    outcomes = settled(sink.send(Batch(records)))
    assert {o.status for o in outcomes} == {Status.DELIVERED}
    assert Counter(hec.event_ids()) == Counter(str(r.event_id) for r in records)
    assert any(r.status == 413 for r in hec.log)

    big = dict(SAMPLE_EVENTS[0], requestParameters={"blob": "x" * 50_000}, eventID="big-1")
    hec.max_content_length = 200
    (outcome,) = settled(sink.send(Batch([_record(big)])))
    assert outcome.status is Status.REJECTED
    assert "too large" in (outcome.reason or "")
    sink.close()


def test_every_record_final_exactly_once_under_mixed_faults(hec_ack: HecStandIn) -> None:
    records = sample_records(60)
    bad = str(records[17].event_id)
    hec_ack.poisoned.add(bad)
    hec_ack.busy_left = 1
    hec_ack.reset_left = 1
    hec_ack.ack_after_polls = 1
    sink = _sink(hec_ack, batch_events=10)
    final = _until_final(sink, records)
    assert len(final) == 60
    assert final[bad].status is Status.REJECTED
    assert {o.status for k, o in final.items() if k != bad} == {Status.DELIVERED}
    stored = Counter(hec_ack.event_ids())
    assert set(stored) == {str(r.event_id) for r in records if str(r.event_id) != bad}
    # only the events HEC kept ahead of the refused one (same request, no ackId) come twice
    twice = {k for k, n in stored.items() if n > 1}
    assert twice <= {str(r.event_id) for r in records[10:17]}
    assert max(stored.values()) <= 2
    sink.close()


# -- configuration errors ---------------------------------------------------------------------


def test_wrong_token_is_fatal_and_never_shows_the_token(
    hec: HecStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hec.token = "another-token"
    sink = _sink(hec)
    with pytest.raises(FatalSinkError) as info:
        settled(sink.send(Batch(sample_records(2))))
    assert "Invalid token" in str(info.value) and "check `token`" in str(info.value)
    assert TOKEN not in str(info.value) + repr(info.value) + caplog.text + repr(sink) + repr(sink.config)
    result = sink.check()
    assert not result.ok and "Invalid token" in result.summary
    assert TOKEN not in result.summary + str(result.details)
    sink.close()


def _env_token_config(tmp_path: Path, url: str) -> Path:
    """The tester's config: a files source holding SAMPLE_EVENTS, the token from ``$HECTOK``."""
    (tmp_path / "in").mkdir(exist_ok=True)
    (tmp_path / "in" / "trail.json").write_bytes(orjson.dumps({"Records": SAMPLE_EVENTS}))
    cfg = tmp_path / "z.toml"
    cfg.write_text(
        '[source]\ntype = "files"\npath = "in"\n'
        f'[[sinks]]\ntype = "splunk"\nurl = "{url}"\ntoken = "${{HECTOK}}"\nack = false\nfilter = {{}}\n'
    )
    return cfg


def test_a_token_from_the_environment_ending_in_a_newline_works(hec: HecStandIn, tmp_path: Path) -> None:
    """HECTOK=$'TOKEN\\n' (a Kubernetes secret made with echo): `check` passed the newline on to
    the Authorization header and failed with the token in its message; now it works."""
    cfg = _env_token_config(tmp_path, hec.url)
    env = {"HECTOK": TOKEN + "\n", "COLUMNS": "500"}
    check = CliRunner().invoke(cli, ["check", "-c", str(cfg)], env=env)
    assert check.exit_code == 0, check.output
    assert "✓ sink splunk (splunk)" in check.output
    forward = CliRunner().invoke(cli, ["forward", "-c", str(cfg), "--once", "--no-progress"], env=env)
    assert forward.exit_code == 0, forward.output
    assert sorted(hec.event_ids()) == sorted(e["eventID"] for e in SAMPLE_EVENTS)
    assert TOKEN not in check.output + forward.output


@pytest.mark.parametrize("command", ["check", "forward"])
def test_a_token_no_header_can_carry_is_a_config_error_naming_the_key(tmp_path: Path, command: str) -> None:
    cfg = _env_token_config(tmp_path, "http://127.0.0.1:9")
    env = {"HECTOK": "SECRETENV\nTOK", "COLUMNS": "500"}
    result = CliRunner().invoke(cli, [command, "-c", str(cfg)], env=env)
    assert result.exit_code == 2, result.output
    assert "sinks[0].token: contains a line break or another control character" in result.output
    assert "SECRETENV" not in result.output and "TOK\n" not in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "dead-letters").exists()


@pytest.mark.parametrize("command", ["check", "forward"])
def test_a_token_with_a_character_outside_latin1_is_a_config_error_naming_the_key(
    tmp_path: Path, command: str
) -> None:
    """token = "0a1b2c3d-\u20ac-token" was accepted: `check` showed the codec error (the '\u20ac'
    and its position) and `forward` dead-lettered every record with it."""
    cfg = _env_token_config(tmp_path, "http://127.0.0.1:9")
    env = {"HECTOK": "0a1b2c3d-\u20ac-token", "COLUMNS": "500"}
    result = CliRunner().invoke(cli, [command, "-c", str(cfg)], env=env)
    assert result.exit_code == 2, result.output
    assert (
        "sinks[0].token: contains a character outside Latin-1, which an HTTP header cannot carry"
        in result.output
    )
    assert "\u20ac" not in result.output and "20ac" not in result.output and "0a1b" not in result.output
    assert not (tmp_path / "dead-letters").exists()


def test_an_unexpected_error_quoting_the_token_is_shown_without_it(
    hec: HecStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever an unexpected exception says is shown by `check` and logged and dead-lettered by
    `forward`: the sink's secrets are scrubbed from it (it quoted the Authorization header)."""

    def quoting_the_token(*_args: Any) -> Any:
        raise ValueError(f"Invalid header value {('Splunk ' + TOKEN).encode()!r}")

    monkeypatch.setattr(SplunkSink, "check", quoting_the_token)
    monkeypatch.setattr(SplunkSink, "send", quoting_the_token)
    cfg = _env_token_config(tmp_path, hec.url)
    env = {"HECTOK": TOKEN, "COLUMNS": "500"}
    check = CliRunner().invoke(cli, ["check", "-c", str(cfg)], env=env)
    assert check.exit_code == 1, check.output
    assert (
        "✗ sink splunk (splunk): the check failed unexpectedly: ValueError: Invalid header value b'Splunk ***'"
        in check.output
    )
    forward = CliRunner().invoke(cli, ["forward", "-c", str(cfg), "--once", "--no-progress"], env=env)
    assert forward.exit_code == 4, forward.output  # dead letters
    reasons = [e["reason"] for e in read_entries(tmp_path / "dead-letters")]
    assert reasons == ["sink failed on this record: ValueError: Invalid header value b'Splunk ***'"] * len(
        SAMPLE_EVENTS
    )
    assert "failed on one record (ValueError): Invalid header value b'Splunk ***'" in forward.output
    assert TOKEN not in check.output + forward.output


def test_an_error_page_that_echoes_the_token_never_shows_it(
    hec: HecStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    """Some proxies and WAFs echo the request's headers in their error pages; HEC's token is one.

    The page's first 120 characters went into reasons (RETRY, dead letters), logs, the error
    that stops the run (a 400 page is not HEC's) and check summaries; the second page puts the
    token across that cut.
    """
    caplog.set_level(logging.DEBUG)
    echo = f"Authorization: Splunk {TOKEN}"
    html = {"Content-Type": "text/html"}
    hec.script(
        Scripted(
            "/services/collector/event", 503, f"<html>upstream error; request headers: {echo}</html>", html
        ),
        Scripted("/services/collector/event", 400, f"<html>{'x' * 81} {echo}</html>", html),
        Scripted("/services/collector/health", 502, f"<html>bad gateway; {echo}</html>", html),
    )
    sink = _sink(hec)
    try:
        with pytest.raises(RetryableError) as busy:
            settled(sink.send(Batch(sample_records(2))))
        with pytest.raises(FatalSinkError) as refused:
            settled(sink.send(Batch(sample_records(2))))
        result = sink.check()
    finally:
        sink.close()
    assert "Authorization: Splunk ***" in str(busy.value)
    assert "Authorization: Splunk ***" in str(refused.value)
    assert not result.ok and "Authorization: Splunk ***" in result.summary
    shown = str(busy.value) + str(refused.value) + result.summary + caplog.text
    assert TOKEN[:8] not in shown


NGINX_PLAIN_HTTP_TO_HTTPS = (
    "<html>\r\n<head><title>400 The plain HTTP request was sent to HTTPS port</title></head>\r\n"
    "<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<center>The plain HTTP request was "
    "sent to HTTPS port</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
"""nginx's page for plain HTTP sent to its TLS port (ngx_http_request.c): an http:// url for an https HEC."""


def _forward_config(tmp_path: Path, url: str, ack: str = "false") -> Path:
    trail = tmp_path / "in" / "a.json.gz"
    trail.parent.mkdir()
    trail.write_bytes(gzip.compress(orjson.dumps({"Records": SAMPLE_EVENTS})))
    config = tmp_path / "trailrelay.toml"
    config.write_text(
        f'[source]\ntype = "files"\npath = "{trail.parent}"\n'
        f'[[sinks]]\ntype = "splunk"\nurl = "{url}"\ntoken = "{TOKEN}"\nack = {ack}\nfilter = {{}}\n'
        f'[state]\npath = "{tmp_path / "state.sqlite"}"\n[dead_letter]\npath = "{tmp_path / "dead"}"\n'
    )
    return config


def test_a_proxy_page_refusing_the_request_stops_the_run_without_dead_letters(
    hec: HecStandIn, tmp_path: Path
) -> None:
    """An http:// url for nginx's TLS port: its 400 page is not HEC refusing the events."""
    for _ in range(4):
        hec.script(
            Scripted(
                "/services/collector/event", 400, NGINX_PLAIN_HTTP_TO_HTTPS, {"Content-Type": "text/html"}
            )
        )
    config = _forward_config(tmp_path, hec.url)
    result = CliRunner().invoke(cli, ["forward", "-c", str(config), "--once", "--no-progress"])
    output = " ".join(result.output.split())
    assert result.exit_code == 3, output
    assert (
        f"HTTP 400 from {hec.url}/services/collector/event is not HEC's answer "
        "(text/html: '400 The plain HTTP request was sent to HTTPS port'): check `url`" in output
    )
    assert not list(read_entries(tmp_path / "dead"))  # nothing dead-lettered for a configuration mistake
    hec.scripted.clear()  # the url fixed
    again = CliRunner().invoke(cli, ["forward", "-c", str(config), "--once", "--no-progress"])
    assert again.exit_code == 0, again.output  # nothing was acknowledged: the next run sends it all
    assert len(hec.event_ids()) == len(SAMPLE_EVENTS)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_not_followed_and_stops_the_sink(hec: HecStandIn, status: int) -> None:
    """requests would drop the token on a cross-origin redirect (a 302 even sends a body-less GET)."""
    target = HecStandIn(TOKEN).start()
    try:
        where = f"{target.url}/services/collector/event"
        hec.script(Scripted("/services/collector/event", status, "", {"Location": where}))
        sink = _sink(hec)
        try:
            with pytest.raises(FatalSinkError) as stopped:
                sink.send(Batch(sample_records(2)))
        finally:
            sink.close()
        assert not target.log  # never followed
    finally:
        target.stop()
    assert str(stopped.value) == (
        f"HTTP {status} from {hec.url}/services/collector/event: redirected to {where}: "
        "set `url` to the final address"
    )


def test_forward_names_the_stopped_sink_once(hec: HecStandIn, tmp_path: Path) -> None:
    """The run says "stopped: sink 'splunk': Splunk HEC at ...", not "sink 'splunk': sink 'splunk': ..."."""
    hec.token = "another-token"
    trail = tmp_path / "in" / "a.json.gz"
    trail.parent.mkdir()
    trail.write_bytes(gzip.compress(orjson.dumps({"Records": SAMPLE_EVENTS})))
    config = tmp_path / "trailrelay.toml"
    config.write_text(
        f'[source]\ntype = "files"\npath = "{trail.parent}"\n'
        f'[[sinks]]\ntype = "splunk"\nurl = "{hec.url}"\ntoken = "{TOKEN}"\nack = false\nfilter = {{}}\n'
        f'[state]\npath = "{tmp_path / "state.sqlite"}"\n[dead_letter]\npath = "{tmp_path / "dead"}"\n'
    )
    result = CliRunner().invoke(cli, ["forward", "-c", str(config), "--once", "--no-progress"])
    output = " ".join(result.output.split())  # rich wraps long lines
    assert result.exit_code == 3, output
    assert (
        f"stopped: sink 'splunk': Splunk HEC at {hec.url} answered HTTP 403, code 4: Invalid token" in output
    )
    assert output.count("sink 'splunk'") == 1


def test_incorrect_index_is_fatal(hec: HecStandIn) -> None:
    hec.allowed_indexes = {"main"}
    sink = _sink(hec)
    with pytest.raises(FatalSinkError, match="index"):
        settled(sink.send(Batch(sample_records(2))))
    sink.close()


def test_wrong_path_is_fatal_with_url_hint(hec: HecStandIn) -> None:
    sink = _sink(hec)
    sink.config = make_config(hec.url + "/not-hec")
    with pytest.raises(FatalSinkError, match="check `url`"):
        settled(sink.send(Batch(sample_records(1))))
    sink.close()


def test_missing_ca_bundle_is_fatal_at_open(hec: HecStandIn, tmp_path: Any) -> None:
    sink = SplunkSink(make_config(hec.url, ca_bundle=str(tmp_path / "nope.pem")), context())
    with pytest.raises(FatalSinkError, match="ca_bundle"):
        sink.open()


def test_tls_verification_off_warns_loudly(hec: HecStandIn, caplog: pytest.LogCaptureFixture) -> None:
    sink = SplunkSink(make_config(hec.url, verify_tls=False), context())
    sink.open()
    assert "TLS CERTIFICATE VERIFICATION IS OFF" in caplog.text
    sink.close()


def test_config_keys_and_defaults() -> None:
    cfg = make_config("https://splunk.example.com:8088/services/collector/event/")
    assert cfg.url == "https://splunk.example.com:8088"
    assert (cfg.sourcetype, cfg.batch_bytes, cfg.batch_events, cfg.verify_tls, cfg.ack) == (
        "aws:cloudtrail",
        800_000,
        1000,
        True,
        None,  # indexer acknowledgement whenever the token has it
    )
    assert cfg.batch_bytes < 1_000_000  # under HEC's default max_content_length
    with pytest.raises(ConfigError, match="url"):
        make_config("splunk.example.com:8088")
    with pytest.raises(ConfigError, match="batchbytes: unknown key"):
        make_config("https://x", batchbytes=1)
    assert TOKEN not in repr(cfg) and TOKEN not in str(msgspec.structs.asdict(cfg))


def test_pipeline_batches_each_fit_one_request(hec: HecStandIn, tmp_path: Path) -> None:
    """The runner counts the envelope: a full batch is one request, not a full one and a sliver.

    Real S3 locations (~140 characters) make the envelope ~20% of a small record; counting raw
    bytes alone cut batches that the sink then had to send as two requests each.
    """
    location = "s3://org-trail-bucket/AWSLogs/o-a1b2c3d4e5/111122223333/CloudTrail/eu-west-1/2026/03/02/"
    location += "111122223333_CloudTrail_eu-west-1_20260302T1015Z_AbCdEfGh01234567.json.gz"
    origin = Origin("s3", location, "org-trail-bucket", location[22:])
    records = [Record(r.raw, r.routing, origin, r.index) for r in sample_records(400)]
    limit = 16 * 1024
    sink = _sink(hec, batch_bytes=limit, ack=False)
    runner = sink_runner(sink, tmp_path)
    for at in range(0, len(records), 50):  # as readers hand them over: in chunks
        runner.put_many(records[at : at + 50])
    runner.close()
    sink.close()
    sent = hec.event_requests()
    assert sum(r.events for r in sent) == len(records)
    wire = sum(len(e) + 1 for e in EnvelopeEncoder(sink.config).envelopes(records))
    fewest = -(-wire // limit)
    # the envelope is estimated a little long (a few percent); a sliver per batch would be ~1.5x
    assert fewest <= len(sent) <= 1.15 * fewest + 1, (
        f"{len(sent)} requests for {wire} bytes at {limit} a body"
    )


def test_a_url_carrying_credentials_is_refused_without_echoing_them() -> None:
    from trailrelay.testing import assert_refuses_credentials_in_url
    from trailrelay_splunk.config import SplunkConfig

    assert_refuses_credentials_in_url(SplunkConfig, {"type": "splunk", "token": "t"})
