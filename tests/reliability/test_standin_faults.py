"""Each stand-in's fault hook, seen through the real connector sink: what the client experiences."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reliability.faults import DATA_LABELS, FaultPlan, FaultRates
from reliability.standins import IDEMPOTENT, SINKS, SinkSettings, StandIn, start_standin
from trailrelay.contract import Batch, RetryableError, Status
from trailrelay.pipeline.build import build_sink
from trailrelay.plugins import load_sink
from trailrelay.testing import sample_records, settled

SETTINGS = SinkSettings(batch=200, concurrency=2, timeout=1.0)


class OneShot:
    """A fault hook that injects ``kind`` into the first data request only."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.fired = 0

    def __call__(self, label: str) -> str | None:
        if label in DATA_LABELS and not self.fired:
            self.fired += 1
            return self.kind
        return None


def _sink(standin: StandIn) -> Any:
    text = standin.sink_table(SETTINGS)
    for key, value in standin.env().items():
        text = text.replace("${" + key + "}", value)
    table = tomllib.loads(text)["sinks"][0]
    config = load_sink(table["type"]).config_model.validate(table)
    sink = build_sink(config)
    sink.open()
    return sink


def _send(sink: Any, records: list[Any]) -> list[Status]:
    try:
        return [o.status for o in settled(sink.send(Batch(records, 1)))]  # acks waited for
    except RetryableError:
        return [Status.RETRY] * len(records)


@pytest.fixture(params=SINKS)
def standin(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StandIn]:
    server = start_standin(request.param, tmp_path)
    yield server
    server.stop()


@pytest.mark.parametrize("kind", ["5xx", "429", "reset", "outage"])
def test_refusals_are_retried_then_delivered(standin: StandIn, kind: str) -> None:
    hook = OneShot(kind)
    standin.set_faults(hook, 0.0)  # type: ignore[arg-type]
    sink = _sink(standin)
    records = sample_records(20)
    try:
        assert set(_send(sink, records)) == {Status.RETRY}
        assert hook.fired == 1
        assert standin.stored_count() == 0
        assert set(_send(sink, records)) == {Status.DELIVERED}
        assert sorted(standin.event_ids()) == sorted(str(r.event_id) for r in records)
    finally:
        sink.close()


def test_slow_reply_is_stored_unconfirmed_and_sent_again(standin: StandIn) -> None:
    standin.set_faults(OneShot("slow"), SETTINGS.timeout + 1.0)  # type: ignore[arg-type]
    sink = _sink(standin)
    records = sample_records(20)
    try:
        assert set(_send(sink, records)) == {Status.RETRY}  # the client gave up waiting
        assert standin.unconfirmed() == len(records)
        assert standin.stored_count() == len(records)  # ... but the SIEM had stored them
        again = set(_send(sink, records))
        if standin.name in IDEMPOTENT:
            assert again == {Status.DUPLICATE}
            assert standin.stored_count() == len(records)
        else:
            assert again == {Status.DELIVERED}
            assert standin.stored_count() == 2 * len(records)
    finally:
        sink.close()


def test_partial_batch_in_each_siems_own_way(standin: StandIn) -> None:
    standin.set_faults(OneShot("partial"), 0.0)  # type: ignore[arg-type]
    sink = _sink(standin)
    records = sample_records(20)
    try:
        statuses = _send(sink, records)
        stored = standin.stored_count()
        if standin.name == "splunk":  # code 6 at event 10: 0..9 kept, 10 refused, 11.. sent again
            assert statuses.count(Status.REJECTED) == 1
            assert statuses[10] is Status.REJECTED
            # with acks no ackId vouches for 0..9: sent again (may duplicate), never assumed
            assert statuses[:10] == [Status.RETRY] * 10
            assert statuses[11:] == [Status.DELIVERED] * 9
            assert stored == 19
        elif standin.name in IDEMPOTENT:  # every fourth item refused with 429, the rest stored
            assert statuses.count(Status.RETRY) == 5
            assert all(s is Status.RETRY for s in statuses[::4])
            assert stored == 15
        else:  # 400 for the body: the client splits it and the halves go through
            assert set(statuses) == {Status.DELIVERED}
            assert stored == 20
    finally:
        sink.close()


def test_fault_plan_counts_and_outage() -> None:
    plan = FaultPlan(
        "seed", FaultRates(server_error=0.0, reset=0.0, slow=0.0, partial=0.0), ensure=("reset",)
    )
    assert [plan("event") for _ in range(4)] == [None, None, "reset", None]
    assert plan("ack") is None  # random faults only hit data requests
    plan.start_outage(60)
    assert plan.outage_active()
    assert plan("ack") == "outage"
    assert plan("upload") == "outage"
    assert plan.counts == {"reset": 1, "outage": 2}


def test_fault_plan_is_seeded_and_near_its_rates() -> None:
    def draws(seed: str) -> list[str | None]:
        plan = FaultPlan(seed, FaultRates())
        return [plan("bulk") for _ in range(20000)]

    first = draws("a")
    assert first == draws("a")
    assert first != draws("b")
    share = {k: first.count(k) / len(first) for k in ("5xx", "429", "reset", "slow", "partial")}
    assert 0.045 < share["5xx"] + share["429"] < 0.055
    assert 0.007 < share["reset"] < 0.013
    assert 0.015 < share["partial"] < 0.025
