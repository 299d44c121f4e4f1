"""The Splunk sink against HEC-compatible receivers that are not Splunk (README recipes).

Each stand-in profile reproduces a receiver's documented behaviour (see splunk_hec_standin):
the sink must detect what it talks to, say so once, and deliver everything exactly once with
DELIVERED meaning "accepted by the receiver".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from splunk_hec_standin import ACK_PATH, HecStandIn, Scripted
from splunk_testkit import TOKEN, context, make_config

from trailrelay.contract import DELIVERED, Batch, FatalSinkError, Status
from trailrelay.testing import sample_records, settled
from trailrelay_splunk.sink import SplunkSink


def _sink(hec: HecStandIn, **overrides: Any) -> SplunkSink:
    sink = SplunkSink(make_config(hec.url, **overrides), context())
    sink.open()
    return sink


@pytest.fixture(params=["vector", "fluentbit", "otel", "cribl"])
def receiver(request: pytest.FixtureRequest) -> Iterator[HecStandIn]:
    server = HecStandIn(TOKEN, profile=request.param).start()
    yield server
    server.stop()


def test_each_receiver_gets_everything_once_with_one_warning(
    receiver: HecStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    sink = _sink(receiver)  # ack unset: detect
    records = sample_records(30)
    try:
        with caplog.at_level(logging.WARNING):
            outcomes = [o for i in range(0, 30, 10) for o in sink.send(Batch(records[i : i + 10]))]
    finally:
        sink.close()
    assert outcomes == [DELIVERED] * 30
    assert sorted(receiver.event_ids()) == sorted(r.routing.event_id or "" for r in records)
    warnings = [r for r in caplog.records if "not Splunk" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert not [r for r in receiver.log if r.path.endswith("/ack")]  # no ackId: never polled


def test_each_receiver_passes_check(receiver: HecStandIn) -> None:
    sink = _sink(receiver)
    try:
        result = sink.check()
    finally:
        sink.close()
    assert result.ok, result.summary


def test_a_refused_token_is_fatal_at_each_receiver_that_checks_tokens(receiver: HecStandIn) -> None:
    if receiver.profile == "otel":
        pytest.skip("the Collector's receiver does not check tokens")
    sink = SplunkSink(make_config(receiver.url, token="not-the-token"), context())
    sink.open()
    try:
        with pytest.raises(FatalSinkError):
            sink.send(Batch(sample_records(2)))
    finally:
        sink.close()


def test_ack_ids_without_an_ack_endpoint_are_accepted_once_and_polling_stops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = HecStandIn(TOKEN, use_ack=True, ack_endpoint_missing=True).start()
    sink = _sink(server)  # ack unset
    try:
        with caplog.at_level(logging.WARNING):
            first = sink.send(Batch(sample_records(5)))
            assert {o.status for o in first} == {Status.PENDING}
            assert settled(first, timeout=10) == [DELIVERED] * 5  # accepted: not sent twice
            second = sink.send(Batch(sample_records(5)))
        polls = [r for r in server.log if r.path.endswith("/ack")]
    finally:
        sink.close()
        server.stop()
    assert second == [DELIVERED] * 5  # no ackId is awaited any more
    assert sink.ack_endpoint_missing
    assert len(polls) == 1  # polled once, got 404, stopped
    assert len(server.event_ids()) == 10
    assert len([r for r in caplog.records if "answers HTTP 404" in r.getMessage()]) == 1


def test_ack_true_against_a_receiver_without_ack_endpoint_is_fatal() -> None:
    server = HecStandIn(TOKEN, use_ack=True, ack_endpoint_missing=True).start()
    sink = _sink(server, ack=True)
    try:
        first = sink.send(Batch(sample_records(3)))
        resolved = settled(first, timeout=10)
        assert {o.status for o in resolved} == {Status.RETRY}  # never acknowledged: not counted delivered
        with pytest.raises(FatalSinkError, match="no /services/collector/ack"):
            sink.send(Batch(sample_records(1)))
    finally:
        sink.close()
        server.stop()


def test_one_foreign_404_on_an_ack_poll_after_hec_answered_confirms_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Splunk behind a load balancer: the ack endpoint answers as HEC (acks false), then the
    # balancer answers one poll with its own 404 page. That is no receiver without acks: the
    # events were never confirmed, so they are sent again (RETRY), never counted DELIVERED.
    server = HecStandIn(TOKEN, use_ack=True).start()
    server.acks_never = True
    sink = _sink(server, ack_timeout=1.5)  # ack unset: the case that detects receivers
    page = "<html><body><h1>404 Not Found</h1><hr><center>nginx</center></body></html>"
    try:
        with caplog.at_level(logging.WARNING):
            first = sink.send(Batch(sample_records(5)))
            deadline = time.monotonic() + 5
            while not [r for r in server.log if r.path == ACK_PATH and r.status == 200]:
                assert time.monotonic() < deadline, "no ack poll"
                time.sleep(0.01)
            server.script(Scripted(ACK_PATH, 404, page, {"Content-Type": "text/html"}))
            resolved = settled(first, timeout=10)
            second = sink.send(Batch(sample_records(2)))
        polls = [r.status for r in server.log if r.path == ACK_PATH]
    finally:
        sink.close()
        server.stop()
    assert {o.status for o in resolved} == {Status.RETRY}, resolved
    assert all("no indexer acknowledgement" in (o.reason or "") for o in resolved)
    assert 404 in polls and polls[-1] == 200  # polling went on after the glitch
    assert not sink.ack_endpoint_missing
    assert {o.status for o in second} == {Status.PENDING}  # ackIds are still awaited
    assert not [r for r in caplog.records if "not Splunk" in r.getMessage()]
