"""Firehose data transformation: filter (and tag) records in front of Firehose's own destinations.

Each Firehose record is one unit of work through the pipeline's transforms; instead of SIEM
sinks, an in-memory sink collects what survives, and each record is answered:

- ``Ok`` with ``data`` = base64 of the surviving CloudTrail records, one JSON per line
  (a CloudWatch Logs payload or an EventBridge envelope comes out as the plain records),
  pseudonymized by the ``[privacy]`` profile of the sink name ``firehose-transformation``
  (its entry in ``[privacy.sinks]``, else ``default``);
- ``Dropped`` when the filter removed all of its records (or it held none: a control message);
- ``ProcessingFailed`` (with the original data) when nothing in it could be read as CloudTrail.
  Firehose writes such records to its error output, so they are not dead-lettered here too;
  bad records inside a record that also held good ones are dead-lettered as usual.

If the invocation's time runs out before every record is decided, it fails as a whole and
Firehose invokes again with the same batch: no record is answered half-done.
"""

from __future__ import annotations

import base64
import threading
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Protocol

from trailrelay.aws_lambda.events import IncompleteInvocationError, Ledger
from trailrelay.config import Config
from trailrelay.contract import DELIVERED, Batch, BatchLimits, CheckResult, Outcome, Sink
from trailrelay.errors import InputError
from trailrelay.pipeline.deadletter import DeadLetterStore
from trailrelay.privacy.config import TRANSFORMATION
from trailrelay.record import Origin
from trailrelay.sources.base import ObjectRef, Work
from trailrelay.sources.payloads import PayloadCollector, decode_base64

__all__ = ["OUTPUT_LIMIT", "InvocationApp", "transform"]

OUTPUT_LIMIT = 6_000_000
"""Lambda's synchronous response limit is 6 MB; the answer must fit with its JSON around it."""


class _Collect:
    """The in-memory sink of a transformation: the surviving records' lines, per Firehose record."""

    limits = BatchLimits(max_records=10_000, max_bytes=64 << 20, max_age=0.001, concurrency=1)

    def __init__(self) -> None:
        self.lines: dict[str, list[bytes]] = defaultdict(list)
        self._lock = threading.Lock()

    def open(self) -> None:
        """Nothing to open."""

    def send(self, batch: Batch) -> Sequence[Outcome]:
        """Keep every record's line under its Firehose record."""
        with self._lock:
            for rec in batch.records:
                self.lines[rec.origin.location].append(rec.line())
        return [DELIVERED] * len(batch.records)

    def check(self) -> CheckResult:
        """Always reachable."""
        return CheckResult(True, "in memory")

    def close(self) -> None:
        """Nothing to close."""


class _Held:
    """Dead-letter entries held per Firehose record until its result is known."""

    def __init__(self, inner: DeadLetterStore, locations: set[str]) -> None:
        self.inner = inner
        self.locations = locations
        self.held: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.count = 0
        self._lock = threading.Lock()

    def write(self, item: dict[str, Any]) -> None:
        """Hold entries about a Firehose record; pass anything else through."""
        origin = item.get("origin")
        location = origin.get("location") if isinstance(origin, dict) else None
        if location in self.locations:
            with self._lock:
                self.held[location].append(item)
                self.count += 1
            return
        self.inner.write(item)

    def release(self, location: str) -> None:
        """The record is answered Ok: its bad parts are dead-lettered after all."""
        with self._lock:
            items = self.held.pop(location, [])
        for item in items:
            self.inner.write(item)

    def sync(self) -> None:
        """Make the inner store's entries durable (held ones are not written yet)."""
        self.inner.sync()

    def close(self) -> None:
        """Flush the inner store."""
        self.inner.close()


class InvocationApp(Protocol):
    """What the transformation needs of the invocation's app (:class:`~trailrelay.aws_lambda.invoke.App`)."""

    @property
    def config(self) -> Config:
        """The configuration the app was built from."""
        ...

    @property
    def dead_letters(self) -> DeadLetterStore:
        """Where dead letters go."""
        ...

    def run(
        self,
        units: list[Work],
        context: Any,
        *,
        sinks: dict[str, Sink] | None = None,
        dead_letters: DeadLetterStore | None = None,
    ) -> Any:
        """Run the units through the pipeline, into ``sinks`` instead of the configured ones."""
        ...


def transform(app: InvocationApp, event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Answer a Firehose data-transformation event with one result per record."""
    stream = str(event.get("deliveryStreamArn", "")).rpartition("/")[2] or "firehose"
    ledger = Ledger()
    answers: dict[str, dict[str, Any]] = {}
    units: list[Work] = []
    where_of: dict[str, str] = {}
    for i, rec in enumerate(event["records"]):
        rid = str(rec.get("recordId", i)) if isinstance(rec, dict) else str(i)
        data = rec.get("data") if isinstance(rec, dict) else None
        where = f"firehose://{stream}/{rid}"
        where_of[rid] = where
        if not isinstance(data, str):
            answers[rid] = _answer(rid, "ProcessingFailed", "")
            continue
        try:
            raw = decode_base64(data)
        except InputError:  # Firehose keeps the record in its error output
            answers[rid] = _answer(rid, "ProcessingFailed", data)
            continue
        collector = PayloadCollector(Origin("firehose", where), app.config.pipeline.max_object_bytes)
        collector.add_bytes(raw, where)
        # every object answers to its Firehose record, CloudWatch batches included
        origin = Origin("firehose", where)
        objects = [ObjectRef(origin, ref.fetch, ref.open, held=ref.held) for ref in collector.refs()]
        units.append(ledger.work(rid, objects, skipped=collector.skipped, label=where))
    collect = _Collect()
    held = _Held(app.dead_letters, set(where_of.values()))
    app.run(units, context, sinks={TRANSFORMATION: collect}, dead_letters=held)
    unfinished = ledger.unfinished()
    if unfinished:
        reasons = "; ".join(f"{u}: {ledger.reason(u)}" for u in unfinished[:5])
        raise IncompleteInvocationError(
            f"{len(unfinished)} of {len(units)} Firehose records not decided ({reasons})"
        )
    out: list[dict[str, Any]] = []
    size = 0
    for i, rec in enumerate(event["records"]):
        rid = str(rec.get("recordId", i)) if isinstance(rec, dict) else str(i)
        answer = answers.get(rid) or _decide(rid, where_of[rid], rec, collect, held)
        size += len(answer["data"]) + 100
        out.append(answer)
    if size > OUTPUT_LIMIT:
        raise IncompleteInvocationError(
            f"the transformed batch is {size} bytes, over Lambda's 6 MB response limit: lower the "
            "Firehose processor's BufferSizeInMBs (CloudWatch Logs payloads grow when decompressed)"
        )
    return {"records": out}


def _decide(rid: str, where: str, rec: dict[str, Any], collect: _Collect, held: _Held) -> dict[str, Any]:
    lines = collect.lines.get(where)
    if lines:
        held.release(where)
        return _answer(rid, "Ok", base64.b64encode(b"".join(line + b"\n" for line in lines)).decode())
    original = str(rec.get("data", ""))
    if held.held.get(where):
        return _answer(rid, "ProcessingFailed", original)
    return _answer(rid, "Dropped", original)


def _answer(rid: str, result: str, data: str) -> dict[str, Any]:
    return {"recordId": rid, "result": result, "data": data}
