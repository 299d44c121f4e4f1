"""Indexer acknowledgement without waiting: the per-channel ledger, the poller and the pipeline.

Sending never waits for acks: ``send`` answers PENDING with a receipt, one poller asks HEC about
every pending ackId of a channel in one request, and the pipeline keeps sending meanwhile,
holding the waiting records compactly within ``max_pending_bytes``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from splunk_hec_standin import HecStandIn
from splunk_testkit import context, make_config, sink_runner

from trailrelay.contract import (
    Batch,
    BatchLimits,
    FatalSinkError,
    Outcome,
    Receipt,
    Record,
    RetryableError,
    Status,
)
from trailrelay.pipeline.delivery import SinkRunner
from trailrelay.pipeline.metrics import Metrics
from trailrelay.pipeline.tickets import Ticket
from trailrelay.sources.base import Work
from trailrelay.testing import sample_records, settled
from trailrelay_splunk.sink import SplunkSink


def _sink(hec: HecStandIn, **overrides: Any) -> SplunkSink:
    sink = SplunkSink(make_config(hec.url, **overrides), context())
    sink.open()
    return sink


def _polls(hec: HecStandIn) -> list[Any]:
    return [r for r in hec.log if r.path.endswith("/ack")]


# -- the sink ---------------------------------------------------------------------------------


def test_send_returns_before_the_ack_and_the_receipt_settles_later(hec_ack: HecStandIn) -> None:
    hec_ack.ack_delay = 0.6
    sink = _sink(hec_ack)
    t0 = time.monotonic()
    outcomes = sink.send(Batch(sample_records(10)))
    assert time.monotonic() - t0 < 0.5  # did not wait for the indexer
    assert {o.status for o in outcomes} == {Status.PENDING}
    receipt = outcomes[0].receipt
    assert receipt is not None and all(o.receipt is receipt for o in outcomes)  # one per request
    assert receipt.outcome is None
    final = settled(outcomes)
    assert {o.status for o in final} == {Status.DELIVERED}
    assert time.monotonic() - t0 >= 0.6
    sink.close()


def test_one_poll_asks_about_every_pending_ack_of_a_channel(
    hec_ack: HecStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[list[int]] = []
    answer = hec_ack.handle_ack

    def noting(body: bytes, channel: str | None) -> tuple[int, dict[str, Any]]:
        asked.append(sorted(int(i) for i in json.loads(body)["acks"]))
        return answer(body, channel)

    monkeypatch.setattr(hec_ack, "handle_ack", noting)
    hec_ack.ack_delay = 0.4
    sink = _sink(hec_ack, batch_events=5)
    outcomes = sink.send(Batch(sample_records(40)))  # 8 requests on one channel
    assert len(hec_ack.event_requests()) == 8
    final = settled(outcomes)
    assert {o.status for o in final} == {Status.DELIVERED}
    assert len(_polls(hec_ack)) == len(asked) >= 1
    # each poll carried the whole ledger (every ackId pending then, a contiguous run since they
    # turn true in order), not one ackId per request: one poll per 10 ms round over ~0.5 s,
    # where polling per request would be about eight times as many
    everything = list(range(8))
    assert everything in asked
    assert all(ids == list(range(ids[0], ids[-1] + 1)) for ids in asked)
    assert len(asked) <= 100, len(asked)
    assert hec_ack.unconfirmed() == 0
    sink.close()


def test_out_of_order_acks_settle_each_request_on_its_own(hec_ack: HecStandIn) -> None:
    hec_ack.ack_delay_for = lambda ack_id: 0.8 if ack_id == 0 else 0.05
    sink = _sink(hec_ack, batch_events=5)
    records = sample_records(15)
    outcomes = sink.send(Batch(records))
    first, later = outcomes[0].receipt, outcomes[5].receipt
    assert first is not None and later is not None and first is not later
    assert later.wait(5) is not None and first.outcome is None  # the later request settled first
    assert {o.status for o in settled(outcomes)} == {Status.DELIVERED}
    sink.close()


def test_lost_ack_times_out_as_retry_that_may_duplicate(hec_ack: HecStandIn) -> None:
    hec_ack.lost_acks = {1}
    sink = _sink(hec_ack, batch_events=5, ack_timeout=0.5)
    records = sample_records(15)
    final = settled(sink.send(Batch(records)))
    statuses = [o.status for o in final]
    assert statuses[5:10] == [Status.RETRY] * 5  # the request whose ack never came
    assert all("twice" in (o.reason or "") for o in final[5:10])
    assert statuses[:5] + statuses[10:] == [Status.DELIVERED] * 10
    sink.close()


def test_poll_interval_backs_off_while_acks_are_slow(hec_ack: HecStandIn) -> None:
    hec_ack.ack_delay = 2.0
    sink = _sink(hec_ack, ack_poll_interval=0.5, ack_timeout=10)
    outcomes = sink.send(Batch(sample_records(3)))
    time.sleep(1.8)
    slow_polls = len(_polls(hec_ack))
    assert sink.poll_interval == pytest.approx(0.5)  # reached the configured longest pause
    assert slow_polls <= 10, slow_polls  # a 50 ms poll would have asked ~36 times
    assert {o.status for o in settled(outcomes)} == {Status.DELIVERED}
    sink.close()


def test_channel_forgotten_by_hec_resends_on_a_new_channel(hec_ack: HecStandIn) -> None:
    hec_ack.acks_never = True
    sink = _sink(hec_ack)
    records = sample_records(4)
    outcomes = sink.send(Batch(records))
    hec_ack.forget_channels = True
    final = settled(outcomes)
    assert {o.status for o in final} == {Status.RETRY}
    assert "no longer knows channel" in (final[0].reason or "")
    old = hec_ack.event_requests()[0].headers["X-Splunk-Request-Channel"]
    hec_ack.forget_channels, hec_ack.acks_never = False, False
    assert {o.status for o in settled(sink.send(Batch(records, 2)))} == {Status.DELIVERED}
    assert hec_ack.event_requests()[-1].headers["X-Splunk-Request-Channel"] != old
    sink.close()


def test_ack_polls_carry_the_load_balancers_sticky_cookie(hec_ack: HecStandIn) -> None:
    hec_ack.cookie = "AWSALB=indexer-7"
    hec_ack.ack_after_polls = 1
    sink = _sink(hec_ack)
    assert {o.status for o in settled(sink.send(Batch(sample_records(3))))} == {Status.DELIVERED}
    polls = _polls(hec_ack)
    assert polls and all("AWSALB=indexer-7" in p.headers.get("Cookie", "") for p in polls)
    # the next event requests carry it too (they are sent from a request prepared before it was set)
    assert {o.status for o in settled(sink.send(Batch(sample_records(3), 2)))} == {Status.DELIVERED}
    events = hec_ack.event_requests()
    assert "Cookie" not in events[0].headers
    assert len(events) == 2 and "AWSALB=indexer-7" in events[1].headers.get("Cookie", "")
    sink.close()


def test_ack_disabled_on_poll_stops_the_next_send(hec_ack: HecStandIn) -> None:
    sink = _sink(hec_ack)
    outcomes = sink.send(Batch(sample_records(2)))
    hec_ack.use_ack = False  # the token's useACK was switched off meanwhile: polls get code 14
    assert {o.status for o in settled(outcomes)} == {Status.RETRY}
    with pytest.raises(FatalSinkError, match="useACK"):
        sink.send(Batch(sample_records(2)))
    sink.close()


def test_close_resolves_what_still_waits(hec_ack: HecStandIn) -> None:
    hec_ack.acks_never = True
    sink = _sink(hec_ack, ack_timeout=60)
    outcomes = sink.send(Batch(sample_records(2)))
    sink.close()
    assert {o.status for o in settled(outcomes, timeout=1)} == {Status.RETRY}


# -- detection of the token's setting and of non-HEC answers ------------------------------------


def test_ack_unset_uses_acks_when_the_token_has_them(hec_ack: HecStandIn) -> None:
    sink = _sink(hec_ack, ack=None)
    outcomes = sink.send(Batch(sample_records(3)))
    assert {o.status for o in outcomes} == {Status.PENDING}
    assert {o.status for o in settled(outcomes)} == {Status.DELIVERED}
    assert _polls(hec_ack)
    sink.close()


def test_ack_unset_falls_back_with_one_warning_when_the_token_has_none(
    hec: HecStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    sink = _sink(hec, ack=None)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert {o.status for o in sink.send(Batch(sample_records(2)))} == {Status.DELIVERED}
    warnings = [r for r in caplog.records if "useACK" in r.getMessage()]
    assert len(warnings) == 1
    assert "accepted" in warnings[0].getMessage()
    assert not _polls(hec)
    result = sink.check()
    assert result.ok and "acknowledgement is off" in result.summary
    sink.close()


@pytest.mark.parametrize(
    ("body", "headers", "named"),
    [
        ("<html><body>Welcome to nginx!</body></html>", {"Content-Type": "text/html"}, "nginx"),
        ("", {}, "an empty body"),
        # JSON that is not HEC's success: no `code` (these were counted DELIVERED), or no `text`
        # either (its reason was an empty string)
        ('{"text":"Gateway says hi"}', {"Content-Type": "application/json"}, "Gateway says hi"),
        (
            '"Service temporarily unavailable"',
            {"Content-Type": "application/json"},
            "temporarily unavailable",
        ),
        ('{"status": "ok"}', {"Content-Type": "application/json"}, '{"status": "ok"}'),
    ],
)
def test_2xx_without_hec_json_is_retry_naming_what_answered(
    hec: HecStandIn, body: str, headers: dict[str, str], named: str
) -> None:
    from splunk_hec_standin import Scripted

    hec.script(Scripted("/services/collector/event", 200, body, headers))
    sink = _sink(hec, ack=False)
    records = sample_records(3)
    with pytest.raises(RetryableError) as info:  # nothing got anywhere: the whole batch retries
        sink.send(Batch(records))
    reason = str(info.value)
    assert "without HEC's JSON answer" in reason
    assert named in reason
    assert hec.stored == []
    assert {o.status for o in settled(sink.send(Batch(records, 2)))} == {Status.DELIVERED}
    sink.close()


# -- through the pipeline's runner ----------------------------------------------------------------


class _Acks:
    """Units of work whose acknowledgement the tests watch."""

    def __init__(self) -> None:
        self.acked: list[str] = []
        self.released: list[str] = []
        self.tickets: list[Ticket] = []
        self.lock = threading.Lock()

    def ticket(self, label: str) -> Ticket:
        def ack(_: Any) -> None:
            with self.lock:
                self.acked.append(label)

        def release(_: str) -> None:
            with self.lock:
                self.released.append(label)

        t = Ticket(Work([], ack=ack, release=release, label=label), lambda *_: None)
        self.tickets.append(t)
        return t


def _hand_over(runner: SinkRunner, tickets: _Acks, units: int, per: int) -> list[Record]:
    records = sample_records(units * per)
    for u in range(units):
        ticket = tickets.ticket(f"unit-{u}")
        chunk = records[u * per : (u + 1) * per]
        for r in chunk:
            r.ticket = ticket
        ticket.add(len(chunk))
        runner.put_many(chunk)
        ticket.reading_done()
    return records


def test_runner_keeps_sending_while_acks_are_pending(hec_ack: HecStandIn, tmp_path: Path) -> None:
    """With acks 1 s late, 10 batches leave within well under a second; all units ack after."""
    hec_ack.ack_delay = 1.0
    sink = _sink(hec_ack, batch_events=20, concurrency=2, batch_seconds=0.05)
    metrics = Metrics()
    runner = sink_runner(sink, tmp_path, metrics)
    tickets = _Acks()
    t0 = time.monotonic()
    _hand_over(runner, tickets, units=10, per=20)
    while len(hec_ack.event_requests()) < 10 and time.monotonic() - t0 < 5:
        time.sleep(0.01)
    sent_within = time.monotonic() - t0
    assert sent_within < 0.9, sent_within  # nobody waited for an ack before sending the next
    assert tickets.acked == []  # nothing acknowledged before the indexer said so
    runner.close()
    assert sorted(tickets.acked) == sorted(f"unit-{u}" for u in range(10))
    snap = metrics.snapshot()
    assert snap["delivered"] == {"splunk": 200}
    assert Counter(hec_ack.event_ids()) == Counter(dict.fromkeys(hec_ack.event_ids(), 1))
    # the delay to final counts acknowledged records too (with acks on it had none to show)
    assert snap["latency_seconds"]["p50"] > 0
    sink.close()


def test_runner_resends_what_the_ack_timeout_gave_back(hec_ack: HecStandIn, tmp_path: Path) -> None:
    hec_ack.lost_acks = {0}
    sink = _sink(hec_ack, batch_events=10, ack_timeout=0.3, concurrency=1, batch_seconds=0.05)
    metrics = Metrics()
    runner = sink_runner(sink, tmp_path, metrics)
    tickets = _Acks()
    records = _hand_over(runner, tickets, units=2, per=10)
    runner.close()
    assert sorted(tickets.acked) == ["unit-0", "unit-1"]
    stored = Counter(hec_ack.event_ids())
    assert set(stored) == {str(r.event_id) for r in records}
    assert sum(stored.values()) == 30  # the unacknowledged request's ten events, twice
    assert metrics.snapshot()["retries"] == {"splunk": 10}
    sink.close()


def test_pending_records_are_held_compressed_within_the_cap(hec_ack: HecStandIn, tmp_path: Path) -> None:
    """A cap on pending bytes slows hand-over (back-pressure) instead of growing memory."""
    hec_ack.ack_delay = 0.3
    sink = _sink(hec_ack, batch_events=50, concurrency=2, batch_seconds=0.02)
    runner = sink_runner(sink, tmp_path, Metrics())
    runner.max_pending_bytes = 2_000  # less than one parked request
    peak = 0
    stop = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, len(runner._parked))
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    tickets = _Acks()
    t0 = time.monotonic()
    _hand_over(runner, tickets, units=6, per=50)
    handed = time.monotonic() - t0
    runner.close()
    stop.set()
    watcher.join()
    assert len(tickets.acked) == 6
    assert handed >= 0.3  # a reader waited for an ack to free room
    # over the cap, only what was already being sent still parks (concurrency 2, plus one);
    # without the cap all six requests would wait at once (acks come after 0.3 s)
    assert 0 < peak <= 3, peak
    sink.close()


def test_busy_for_too_many_pending_acks_backs_off_and_delivers(hec_ack: HecStandIn, tmp_path: Path) -> None:
    hec_ack.max_pending_acks = 2
    hec_ack.ack_delay = 0.2
    sink = _sink(hec_ack, batch_events=5, concurrency=1, batch_seconds=0.01)
    metrics = Metrics()
    runner = sink_runner(sink, tmp_path, metrics)
    tickets = _Acks()
    records = _hand_over(runner, tickets, units=6, per=5)
    runner.close()
    assert len(tickets.acked) == 6
    assert Counter(hec_ack.event_ids()) == Counter(str(r.event_id) for r in records)
    assert any(r.code == 9 for r in hec_ack.log)  # HEC said busy, and it was only a back-off
    assert metrics.snapshot()["rejected"] == {}
    sink.close()


def test_runner_abandons_pending_records_when_stopping(hec_ack: HecStandIn, tmp_path: Path) -> None:
    """A stop while acks are outstanding releases the units: they are read again, never lost."""
    hec_ack.acks_never = True
    sink = _sink(hec_ack, batch_events=10, ack_timeout=60, batch_seconds=0.02)
    runner = sink_runner(sink, tmp_path, Metrics())
    tickets = _Acks()
    _hand_over(runner, tickets, units=3, per=10)
    time.sleep(0.3)
    runner.abandon_after(0.0)
    runner.close()
    assert tickets.acked == []
    assert all(t.failure and "not confirmed" in t.failure for t in tickets.tickets)
    for t in tickets.tickets:  # what the pipeline does with unfinished tickets at the end
        t.abandon("stopping")
    assert sorted(tickets.released) == ["unit-0", "unit-1", "unit-2"]
    sink.close()


def test_a_receipt_resolves_once_and_never_to_pending() -> None:
    receipt = Receipt()
    with pytest.raises(ValueError, match="PENDING"):
        receipt.resolve(Outcome(Status.PENDING))
    seen: list[Outcome] = []
    receipt.on_resolve(seen.append)
    assert receipt.resolve(Outcome.retry("late")) is True
    assert receipt.resolve(Outcome(Status.DELIVERED)) is False  # a late confirmation changes nothing
    receipt.on_resolve(seen.append)  # registered after: called at once
    assert [o.status for o in seen] == [Status.RETRY, Status.RETRY]


def test_limits_pass_the_pending_cap(hec_ack: HecStandIn) -> None:
    sink = _sink(hec_ack, max_pending_bytes=8 * 1024 * 1024)
    assert isinstance(sink.limits, BatchLimits)
    assert sink.limits.max_pending_bytes == 8 * 1024 * 1024
    sink.close()


def test_acks_timing_out_together_wait_for_their_resend_compressed(
    hec_ack: HecStandIn, tmp_path: Path
) -> None:
    """Many requests whose acks time out at once are re-sent one by one, never all inflated at once.

    The soak run found that re-inflating every timed-out group when its receipt resolved grew
    memory by hundreds of MB; the groups now wait in the retry heap in their parked form.
    """
    hec_ack.lost_acks = set(range(4))  # the first four requests of each channel are never acked
    sink = _sink(hec_ack, batch_events=10, ack_timeout=0.3, concurrency=2, batch_seconds=0.02)
    metrics = Metrics()
    runner = sink_runner(sink, tmp_path, metrics)
    runner.backoff_base = 0.4  # long enough for the timed-out requests to meet in the retry heap
    peaks = {"compressed": 0, "inflated": 0}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            with runner._cond:
                waiting = [a for _, _, a in runner._retries]
            peaks["compressed"] = max(peaks["compressed"], sum(a.parked is not None for a in waiting))
            peaks["inflated"] = max(peaks["inflated"], sum(a.parked is None for a in waiting))
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    tickets = _Acks()
    records = _hand_over(runner, tickets, units=8, per=10)
    runner.close()
    stop.set()
    watcher.join()
    assert sorted(tickets.acked) == sorted(f"unit-{u}" for u in range(8))
    stored = Counter(hec_ack.event_ids())
    assert set(stored) == {str(r.event_id) for r in records}
    assert metrics.snapshot()["retries"]["splunk"] >= 40
    assert peaks["compressed"] >= 3, peaks  # several timed-out requests waited together ...
    assert peaks["inflated"] == 0, peaks  # ... and none of them as full records
    sink.close()
