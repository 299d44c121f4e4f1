"""How ``put_many`` cuts records into batches: the bisected running totals against a plain loop."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from trailrelay.contract import BatchLimits
from trailrelay.pipeline.delivery import _fill
from trailrelay.record import Origin, Record, RiskTag, decode_routing

_ROUTING = decode_routing(b'{"eventName": "x"}')
_ORIGIN = Origin("file", "x")
_TAG = RiskTag("r", "t", "high")


def _loop(batch: list[Record], size: int, records: list[Record], limits: BatchLimits):  # type: ignore[no-untyped-def]
    """The rule, a record at a time: cut before the record that would not fit, cut when full."""
    ready, batch, urgent = [], list(batch), False
    for record in records:
        n = len(record.raw) + limits.record_overhead
        if batch and size + n > limits.max_bytes:
            ready.append(batch)
            batch, size, urgent = [], 0, False
        batch.append(record)
        size += n
        urgent = urgent or bool(record.tags)
        if len(batch) >= limits.max_records or size >= limits.max_bytes:
            ready.append(batch)
            batch, size, urgent = [], 0, False
    return ready, batch, size, urgent


@settings(max_examples=400, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 300), min_size=1, max_size=60),
    tagged=st.sets(st.integers(0, 59), max_size=5),
    open_sizes=st.lists(st.integers(1, 50), max_size=3),
    max_records=st.integers(1, 12),
    max_bytes=st.integers(1, 900),
    overhead=st.integers(0, 40),
)
def test_fill_cuts_exactly_as_the_record_at_a_time_rule(
    sizes: list[int],
    tagged: set[int],
    open_sizes: list[int],
    max_records: int,
    max_bytes: int,
    overhead: int,
) -> None:
    limits = BatchLimits(
        max_records=max_records, max_bytes=max_bytes, max_age=1.0, concurrency=1, record_overhead=overhead
    )
    records = [
        Record(b"x" * n, _ROUTING, _ORIGIN, i, (_TAG,) if i in tagged else ()) for i, n in enumerate(sizes)
    ]
    # an open batch as put_many leaves it: not full
    opened: list[Record] = []
    open_size = 0
    for n in open_sizes:
        if len(opened) + 1 >= max_records or open_size + n + overhead >= max_bytes:
            break
        opened.append(Record(b"o" * n, _ROUTING, _ORIGIN, -1))
        open_size += n + overhead
    want_ready, want_batch, want_size, want_urgent = _loop(opened, open_size, records, limits)
    ready, batch, size, added = _fill(list(opened), open_size, records, limits)
    assert [[r.index for r in b] for b in ready] == [[r.index for r in b] for b in want_ready]
    assert [r.index for r in batch] == [r.index for r in want_batch]
    assert size == want_size
    assert any(r.tags for r in added) == want_urgent
    assert all(r in batch for r in added)
