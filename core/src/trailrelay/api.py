"""trailrelay as a library: read CloudTrail records, forward them with per-record outcomes.

Version ``API_VERSION``; what ``__all__`` lists is public and kept compatible within a major
version (``tests/core/test_meta.py`` checks the list). See docs/api.md for the worked examples.

- :func:`read_records` reads bytes, a file or an ``s3://`` object, whatever the shape (gzip,
  ``{"Records": [...]}``, arrays, NDJSON, EventBridge envelopes), streamed: an iterator of
  :class:`Record` (and :class:`Problem` for what cannot be read, with the reason).
- :class:`Forwarder` is built from a config file or table (``Forwarder.from_config``) exactly as
  ``trailrelay forward`` builds its pipeline (``pipeline/build.py``: transforms, privacy, sinks,
  one ``SinkRunner`` per sink), and :meth:`Forwarder.forward` sends records through the
  configured detection, filters and pseudonymization to every sink, returning a :class:`Report`
  with counts and one :class:`RecordOutcome` per record that reached a final outcome.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from trailrelay.config import Config, load_config, parse_config
from trailrelay.contract import Record, Sink
from trailrelay.pipeline.deadletter import DeadLetterStore
from trailrelay.pipeline.metrics import Metrics
from trailrelay.pipeline.runner import Pipeline, RunResult
from trailrelay.record import Origin
from trailrelay.sources.base import ObjectRef, Work
from trailrelay.sources.parse import Problem
from trailrelay.sources.stream import read_stream

__all__ = ["API_VERSION", "Forwarder", "Problem", "Record", "RecordOutcome", "Report", "read_records"]

API_VERSION = "1.0"
"""Major.minor of this module's public surface (``__all__``)."""


def read_records(
    source: bytes | str | Path,
    *,
    s3_client: Any = None,
    max_record_bytes: int = 16 << 20,
) -> Iterator[Record | Problem]:
    """Records (and problems) of bytes, a local file, or an ``s3://bucket/key`` object, streamed."""
    if isinstance(source, bytes):
        return iter(
            read_stream(io.BytesIO(source), Origin("bytes", "<bytes>"), max_record_bytes=max_record_bytes)
        )
    text = str(source)
    if text.startswith("s3://"):
        bucket, _, key = text.removeprefix("s3://").partition("/")
        client = s3_client
        if client is None:
            import boto3  # noqa: PLC0415 - only for S3

            client = boto3.client("s3")
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        origin = Origin("s3", text, bucket=bucket, key=key)
        return iter(read_stream(body, origin, max_record_bytes=max_record_bytes))
    path = Path(text)
    return iter(read_stream(path.open("rb"), Origin("file", str(path)), max_record_bytes=max_record_bytes))


@dataclass(frozen=True)
class RecordOutcome:
    """What became of one record: ``delivered``, ``filtered`` or ``dead-lettered`` (with reason)."""

    event_id: str | None
    status: str
    sink: str | None = None
    reason: str | None = None


@dataclass
class Report:
    """Counts of one :meth:`Forwarder.forward` call, and the outcome of each record that failed."""

    records: int
    delivered: dict[str, int]
    duplicates: dict[str, int]
    dead_lettered: int
    filtered: int
    fatal: str | None = None
    unfinished: bool = False
    outcomes: list[RecordOutcome] = field(default_factory=list)
    """One entry per dead-lettered or filtered record (a delivered record is counted, not listed)."""

    @property
    def ok(self) -> bool:
        """Every record reached a final outcome and none was dead-lettered."""
        return self.fatal is None and not self.unfinished and self.dead_lettered == 0


class _Collecting:
    """A dead-letter store that keeps entries for the report and passes them on."""

    def __init__(self, inner: DeadLetterStore) -> None:
        self.inner = inner
        self.entries: list[dict[str, Any]] = []
        self.count = 0
        self._lock = threading.Lock()

    def write(self, item: dict[str, Any]) -> None:
        """Keep the entry for the report, then store it."""
        with self._lock:
            self.entries.append(item)
            self.count += 1
        self.inner.write(item)

    def close(self) -> None:
        """Kept open: the forwarder's store outlives one call."""


class _Records:
    """A source of one unit: the given records, handed over as already cut."""

    def __init__(self, records: list[Record | Problem]) -> None:
        self.items = records
        self.bytes_in = sum(len(r.raw) for r in records if isinstance(r, Record))
        self.sha256: str | None = None

    def __iter__(self) -> Iterator[Record | Problem]:
        return iter(self.items)

    def work(self, stop: threading.Event) -> Iterator[Work]:  # noqa: ARG002 - Source protocol
        yield Work([ObjectRef(Origin("api", "api"), fetch=bytes, items=lambda: self)], label="api")

    def close(self) -> None:
        """Nothing to release."""


class Forwarder:
    """Forwards records through a configuration's detection, filters, privacy and sinks."""

    def __init__(self, config: Config) -> None:
        from trailrelay.pipeline.build import build_dead_letters, build_privacy, build_sink, build_transforms  # noqa: PLC0415

        self.config = config
        self.transforms, self.record_filter, self.tagger = build_transforms(config)
        self.privacy = build_privacy(config)
        self.dead_letters = build_dead_letters(config)
        self.sinks: dict[str, Sink] = {}
        for sc in config.sinks:
            sink = build_sink(sc)
            sink.open()
            self.sinks[sc.display_name] = sink

    @classmethod
    def from_config(cls, config: str | Path | Mapping[str, Any]) -> Forwarder:
        """A forwarder from a TOML file's path or an already-parsed table (``${ENV}`` resolved)."""
        if isinstance(config, Mapping):
            return cls(parse_config(dict(config)))
        return cls(load_config(config))

    def forward(self, records: Iterable[Record | Problem]) -> Report:
        """Send records to every sink and wait until each is final; per-record outcomes in the report."""
        from trailrelay.pipeline.build import attach_sinks  # noqa: PLC0415

        items = list(records)
        store = _Collecting(self.dead_letters)
        pipeline = Pipeline(_Records(items), dead_letters=store, metrics=Metrics(), readers=1)
        pipeline.transforms = self.transforms
        attach_sinks(pipeline, self.config, self.sinks, privacy=self.privacy)
        dropped_before = sum(self.record_filter.dropped.values())
        result: RunResult = pipeline.run()
        snap = result.metrics.snapshot()
        outcomes = [
            RecordOutcome(_event_id(e.get("raw")), "dead-lettered", e.get("sink"), e.get("reason"))
            for e in store.entries
        ]
        filtered = sum(self.record_filter.dropped.values()) - dropped_before
        return Report(
            records=snap["records_in"],
            delivered=snap["delivered"],
            duplicates=snap["duplicates"],
            dead_lettered=len(store.entries),
            filtered=filtered + sum(snap["filtered_by_sink"].values()),
            fatal=result.fatal,
            unfinished=result.open_units > 0 or snap["units_released"] > 0,
            outcomes=outcomes,
        )

    def close(self) -> None:
        """Close every sink and the dead-letter store."""
        for sink in self.sinks.values():
            sink.close()
        self.dead_letters.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _event_id(raw: object) -> str | None:
    if not isinstance(raw, str):
        return None
    import orjson  # noqa: PLC0415

    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    value = doc.get("eventID") if isinstance(doc, dict) else None
    return value if isinstance(value, str) else None
