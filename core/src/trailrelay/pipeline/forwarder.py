"""The forwarder: one configuration's detection, filters, privacy and sinks, run over any source.

:class:`Forwarder` is what ``trailrelay forward``, the Lambda handler and the Python API
(``trailrelay.api``, which re-exports it) all run: it builds the transforms, pseudonymizers,
dead-letter store and sinks once (``pipeline/build.py``), and :meth:`Forwarder.pipeline` puts a
fresh :class:`~trailrelay.pipeline.runner.Pipeline` around any source with one
:class:`~trailrelay.pipeline.delivery.SinkRunner` per sink. :meth:`Forwarder.forward` is that
pipeline over records the caller hands in, with a :class:`Report` of per-record outcomes.
:func:`build_pipeline` is the CLI's whole assembly: the configured source and checkpoints
through a forwarder's pipeline.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Self

import orjson

from trailrelay.config import (
    Config,
    FirehoseSourceConfig,
    LambdaSourceConfig,
    SqsSourceConfig,
    StdinSourceConfig,
    load_config,
    parse_config,
)
from trailrelay.contract import Batch, Outcome, Record, Sink
from trailrelay.detection.evaluate import SigmaTagger
from trailrelay.errors import ConfigError
from trailrelay.pipeline.build import (
    attach_sinks,
    build_dead_letters,
    build_privacy,
    build_sink,
    build_source,
    build_transforms,
)
from trailrelay.pipeline.deadletter import DeadLetterStore
from trailrelay.pipeline.delivery import SinkRunner
from trailrelay.pipeline.metrics import Metrics
from trailrelay.pipeline.runner import Pipeline, RunResult
from trailrelay.record import Origin
from trailrelay.sources.base import Claims, ObjectRef, Sharded, Source, Work
from trailrelay.sources.parse import Problem
from trailrelay.state import Checkpoints
from trailrelay.transforms.filters import RecordFilter

__all__ = ["Built", "Forwarder", "RecordOutcome", "Report", "build_pipeline"]

log = logging.getLogger("trailrelay.pipeline")


@dataclass(frozen=True)
class RecordOutcome:
    """What became of one record that a sink (``sink``; None: every sink) did not get, and why.

    ``status`` is ``filtered`` (dropped by ``[filter]``, sink None, or by that sink's filter),
    ``dead-lettered`` (the reason is the dead-letter entry's; sink None when it could not be
    read) or ``unfinished`` (no final outcome when the run stopped: a sink failed fatally or
    delivery did not end in time; sink None when it was not even read).
    """

    event_id: str | None
    status: str
    sink: str | None = None
    reason: str | None = None


@dataclass
class Report:
    """Counts of one :meth:`Forwarder.forward` call, and the outcome of each record not delivered."""

    records: int
    delivered: dict[str, int]
    duplicates: dict[str, int]
    dead_lettered: int
    filtered: int
    fatal: str | None = None
    unfinished: bool = False
    outcomes: list[RecordOutcome] = field(default_factory=list)
    """One entry per record and sink it did not reach: filtered, dead-lettered or unfinished.

    A record dropped by ``[filter]``, unreadable or never read is listed once (sink None); one a
    sink did not get is listed for that sink. Delivered and duplicate records are counted, not
    listed.
    """

    @property
    def ok(self) -> bool:
        """Every record reached a final outcome and none was dead-lettered."""
        return self.fatal is None and not self.unfinished and self.dead_lettered == 0


class Forwarder:
    """Forwards records through a configuration's detection, filters, privacy and sinks.

    ``open_sinks=False`` defers building the sinks to the first :meth:`pipeline` (the Lambda
    handler opens them when an event first needs them); ``dead_letters`` replaces the
    configured store.
    """

    def __init__(
        self, config: Config, *, open_sinks: bool = True, dead_letters: DeadLetterStore | None = None
    ) -> None:
        self.config = config
        self.transforms, self.record_filter, self.tagger = build_transforms(config)
        self.privacy = build_privacy(config)
        self.dead_letters: DeadLetterStore = (
            dead_letters if dead_letters is not None else build_dead_letters(config)
        )
        self.sinks: dict[str, Sink] = {}
        self._lock = threading.Lock()
        if open_sinks:
            self.open_sinks()

    @classmethod
    def from_config(cls, config: str | Path | Mapping[str, Any]) -> Forwarder:
        """A forwarder from a TOML file's path or an already-parsed table (``${ENV}`` resolved).

        ``[source]`` may be left out: the forwarder is handed its records.
        """
        if isinstance(config, Mapping):
            return cls(parse_config(dict(config), source_required=False))
        return cls(load_config(config, source_required=False))

    def open_sinks(self) -> dict[str, Sink]:
        """The configured sinks, built and opened once (a sink that cannot open raises SinkError)."""
        with self._lock:
            if not self.sinks:
                opened: dict[str, Sink] = {}
                try:
                    for sc in self.config.sinks:
                        sink = build_sink(sc)
                        sink.open()
                        opened[sc.display_name] = sink
                except BaseException:
                    for sink in opened.values():
                        sink.close()
                    raise
                self.sinks = opened
            return self.sinks

    def pipeline(
        self,
        source: Source,
        *,
        stop: threading.Event | None = None,
        metrics: Metrics | None = None,
        progress: Callable[[Metrics], None] | None = None,
        dead_letters: DeadLetterStore | None = None,
        sinks: dict[str, Sink] | None = None,
        readers: int | None = None,
        drain_seconds: float | None = None,
        backoff_base: float = 0.5,
    ) -> Pipeline:
        """A fresh pipeline from ``source`` through this configuration to every sink.

        ``sinks`` replaces the configured sinks with runners that have no per-sink filter but
        the privacy profile their name gets (the Firehose transformation collects its output
        this way, as ``firehose-transformation``).
        """
        pc = self.config.pipeline
        pipeline = Pipeline(
            source,
            dead_letters=dead_letters if dead_letters is not None else self.dead_letters,
            metrics=metrics,
            stop=stop,
            readers=pc.reader_threads(self.config.source.type) if readers is None else readers,
            max_object_bytes=pc.max_object_bytes,
            max_record_bytes=pc.max_record_bytes,
            drain_seconds=pc.drain_seconds if drain_seconds is None else drain_seconds,
            progress=progress,
            hash_objects=self.config.state.hash_objects,
        )
        pipeline.transforms = self.transforms
        if sinks is None:
            attach_sinks(
                pipeline, self.config, self.open_sinks(), privacy=self.privacy, backoff_base=backoff_base
            )
        else:
            for name, sink in sinks.items():
                pipeline.sinks[name] = SinkRunner(
                    name,
                    sink,
                    dead_letters=pipeline.dead_letters,
                    metrics=pipeline.metrics,
                    stop=pipeline.stop,
                    on_fatal=pipeline.on_fatal,
                    backoff_base=backoff_base,
                    prepare=self._privacy_of(name),
                )
        return pipeline

    def _privacy_of(self, name: str) -> Callable[[Record], Record] | None:
        """The privacy step of a sink given in place of the configured ones; never silently none."""
        pseudonymizer = self.privacy.get(name)
        if pseudonymizer is not None:
            return pseudonymizer.apply
        profile = self.config.privacy.profile_for(name) if self.config.privacy is not None else None
        if profile is not None:
            raise ConfigError(f"sink {name!r} gets privacy profile {profile!r}, which was not built for it")
        return None

    def forward(self, records: Iterable[Record | Problem]) -> Report:
        """Send records to every sink and wait until each is final; per-record outcomes in the report.

        Counts and outcomes are this call's own, also while other calls run on this forwarder.
        """
        items = list(records)
        store = _Collecting(self.dead_letters)
        watch = _Watch()
        pipeline = self.pipeline(_Records(items), dead_letters=store, readers=1)
        pipeline.transforms = [watch.enter, *pipeline.transforms, watch.keep]
        for name, runner in pipeline.sinks.items():
            runner.sink = _WatchedSink(runner.sink, watch.final_at(name))
            if runner.record_filter is not None:
                watched = _WatchedFilter(runner.record_filter, watch.filtered_at(name))
                runner.record_filter = watched  # type: ignore[assignment]
        result: RunResult = pipeline.run()
        snap = result.metrics.snapshot()
        unfinished = result.open_units > 0 or snap["units_released"] > 0
        return Report(
            records=snap["records_in"],
            delivered=snap["delivered"],
            duplicates=snap["duplicates"],
            dead_lettered=len(store.entries),
            filtered=snap["records_filtered"] + sum(snap["filtered_by_sink"].values()),
            fatal=result.fatal,
            unfinished=unfinished,
            outcomes=watch.outcomes(
                items,
                store.entries,
                list(pipeline.sinks),
                stopped=(f"the run stopped: {result.fatal}" if result.fatal else "the run ended before")
                if result.fatal or unfinished
                else None,
            ),
        )

    def close_sinks(self) -> None:
        """Close every opened sink (a later :meth:`pipeline` opens them again)."""
        with self._lock:
            sinks, self.sinks = self.sinks, {}
        for name, sink in sinks.items():
            try:
                sink.close()
            except Exception:
                log.exception("closing sink %s failed", name)

    def close(self) -> None:
        """Close every sink and the dead-letter store."""
        self.close_sinks()
        self.dead_letters.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@dataclass
class Built:
    """A pipeline and the objects around it that the CLI reports on."""

    pipeline: Pipeline
    forwarder: Forwarder
    checkpoints: Checkpoints | None
    extras: dict[str, object] = field(default_factory=dict)

    @property
    def sinks(self) -> dict[str, Sink]:
        """The opened sinks, by name."""
        return self.forwarder.sinks

    @property
    def record_filter(self) -> RecordFilter:
        """The global ``[filter]`` (its per-rule counts go into the summary)."""
        return self.forwarder.record_filter

    @property
    def tagger(self) -> SigmaTagger | None:
        """The detection tagger, when detection is on."""
        return self.forwarder.tagger


def build_pipeline(
    config: Config,
    *,
    once: bool = True,
    stop: threading.Event | None = None,
    metrics: Metrics | None = None,
    progress: Callable[[Metrics], None] | None = None,
    backoff_base: float = 0.5,
    shard: tuple[int, int] | None = None,
    claims: Path | None = None,
) -> Built:
    """Everything ``trailrelay forward`` runs: the configured source through a :class:`Forwarder`.

    ``shard`` = (index, count): read only this worker's share of a files or S3 listing source;
    with ``claims`` (the folder the workers of one fleet share), the units it takes first.
    """
    stateless = (SqsSourceConfig, FirehoseSourceConfig, LambdaSourceConfig, StdinSourceConfig)
    checkpoints = None
    if not isinstance(config.source, stateless):
        checkpoints = Checkpoints(config.state_path(), sinks=[sc.display_name for sc in config.sinks])
    forwarder = Forwarder(config)
    source = build_source(config, once=once, checkpoints=checkpoints)
    if shard is not None:
        source = Sharded(source, *shard, claims=Claims(claims) if claims is not None else None)
    pipeline = forwarder.pipeline(
        source, stop=stop, metrics=metrics, progress=progress, backoff_base=backoff_base
    )
    from trailrelay.sources.stdin import StdinSource  # noqa: PLC0415 - built above when configured

    if isinstance(source, StdinSource):  # it cannot offer what it read again: traced instead
        source.on_lost = pipeline.dead_letter_unsent
        source.on_leftover = pipeline.dead_letter_leftover
    extras: dict[str, object] = {"privacy": forwarder.privacy}
    if config.integrity.enabled:
        from trailrelay.integrity.forwarding import install_integrity_checks  # noqa: PLC0415

        extras["integrity"] = install_integrity_checks(pipeline, config, once=once)
    return Built(pipeline, forwarder, checkpoints, extras=extras)


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

    def sync(self) -> None:
        """Make the inner store's entries durable."""
        self.inner.sync()

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


_Key = tuple[int, int, str | None]


def _key(item: Record | Problem) -> _Key:
    """One record of a forward call, also as the sink's prepared copy.

    Origin, index and eventID: records built by hand often share an origin and the default index 0.
    """
    return id(item.origin), item.index, item.routing.event_id if isinstance(item, Record) else None


class _Watch:
    """What became of each record of one :meth:`Forwarder.forward` call, record by record."""

    def __init__(self) -> None:
        self.entered: set[_Key] = set()
        self.kept: set[_Key] = set()
        self.final: dict[str, set[_Key]] = {}
        self.filtered: dict[str, set[_Key]] = {}

    def enter(self, record: Record) -> Record:
        """The first transform: the record was read and handed to the transforms."""
        self.entered.add(_key(record))
        return record

    def keep(self, record: Record) -> Record:
        """The last transform: the record passed ``[filter]`` and goes to every sink."""
        self.kept.add(_key(record))
        return record

    def final_at(self, sink: str) -> set[_Key]:
        """Records ``sink`` answered for with a final outcome (delivered, duplicate, rejected)."""
        return self.final.setdefault(sink, set())

    def filtered_at(self, sink: str) -> set[_Key]:
        """Records the sink's own filter dropped."""
        return self.filtered.setdefault(sink, set())

    def outcomes(
        self,
        items: list[Record | Problem],
        entries: list[dict[str, Any]],
        sinks: list[str],
        *,
        stopped: str | None,
    ) -> list[RecordOutcome]:
        """Dead-lettered, filtered and (when the run did not finish: ``stopped``) unfinished records."""
        out = [
            RecordOutcome(_event_id(e.get("raw")), "dead-lettered", e.get("sink"), e.get("reason"))
            for e in entries
        ]
        records = [r for r in items if isinstance(r, Record)]
        out += [
            RecordOutcome(r.routing.event_id, "filtered", None, "dropped by [filter]")
            for r in records
            if _key(r) in self.entered and _key(r) not in self.kept
        ]
        for sink in sinks:
            dropped = self.filtered_at(sink)
            why = "dropped by the sink's filter"
            out += [
                RecordOutcome(r.routing.event_id, "filtered", sink, why)
                for r in records
                if _key(r) in dropped
            ]
        if stopped is None:
            return out
        # the run did not finish: every record neither final nor traced above is unfinished
        traced = {(e.get("sink"), (e.get("origin") or {}).get("location"), e.get("index")) for e in entries}

        def dead(sink: str | None, item: Record | Problem) -> bool:
            return (sink, item.origin.location, item.index) in traced

        not_read = f"not read ({stopped})"
        out += [
            RecordOutcome(_event_id_of(item.raw), "unfinished", None, not_read)
            for item in items
            if isinstance(item, Problem) and not dead(None, item)
        ]
        out += [
            RecordOutcome(r.routing.event_id, "unfinished", None, not_read)
            for r in records
            if _key(r) not in self.entered
        ]
        for sink in sinks:
            final, dropped = self.final_at(sink), self.filtered_at(sink)
            why = f"the sink gave no final outcome ({stopped})"
            out += [
                RecordOutcome(r.routing.event_id, "unfinished", sink, why)
                for r in records
                if (k := _key(r)) in self.kept and k not in final and k not in dropped and not dead(sink, r)
            ]
        return out


class _WatchedSink:
    """A sink as one forward call sees it: notes each record it answers for with a final outcome."""

    def __init__(self, inner: Sink, final: set[_Key]) -> None:
        self.inner = inner
        self.final = final

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def send(self, batch: Batch) -> Sequence[Outcome]:
        """The inner sink's outcomes; final ones (and receipts when they resolve) are noted."""
        outcomes = self.inner.send(batch)
        for record, outcome in zip(batch.records, outcomes, strict=False):
            if outcome.status.final:
                self.final.add(_key(record))
            elif outcome.receipt is not None:
                outcome.receipt.on_resolve(partial(self._resolved, _key(record)))
        return outcomes

    def _resolved(self, key: _Key, outcome: Outcome) -> None:
        if outcome.status.final:
            self.final.add(key)


class _WatchedFilter:
    """A sink's filter as one forward call sees it: notes each record it drops."""

    def __init__(self, inner: RecordFilter, dropped: set[_Key]) -> None:
        self.inner = inner
        self.dropped = dropped

    def keep(self, record: Record) -> bool:
        """The inner filter's answer; a drop is noted."""
        kept = self.inner.keep(record)
        if not kept:
            self.dropped.add(_key(record))
        return kept


def _event_id_of(raw: bytes | None) -> str | None:
    return _event_id(raw.decode("utf-8", "replace")) if raw else None


def _event_id(raw: object) -> str | None:
    if not isinstance(raw, str):
        return None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    value = doc.get("eventID") if isinstance(doc, dict) else None
    return value if isinstance(value, str) else None
