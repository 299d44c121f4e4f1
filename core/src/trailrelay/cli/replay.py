"""``trailrelay replay-dead-letters``: send dead-lettered records again to the sink that refused them.

Files being replayed are first renamed to ``*.replaying`` (so new failures, written to a new
file, never mix with them), and to ``*.replayed`` once every entry in them reached a final
outcome again; a ``*.replaying`` file left by a replay that stopped is replayed again. Entries
from the read/parse stages are counted and left: their input must be fixed first. So are lines
that are not entries at all (a write cut short), and entries that kept only part of their raw
bytes (``raw_truncated_from``): kept as they are, never a reason to stop.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console

from trailrelay.config import Config
from trailrelay.contract import INTEGRITY_KIND
from trailrelay.errors import TrailrelayError
from trailrelay.integrity.records import integrity_record
from trailrelay.pipeline.build import build_dead_letters, build_sink
from trailrelay.pipeline.delivery import SinkRunner
from trailrelay.pipeline.metrics import Metrics
from trailrelay.pipeline.runner import Pipeline
from trailrelay.record import Origin, Record
from trailrelay.sources.base import ObjectDone, ObjectRef, Work

__all__ = ["replay"]


class _ReplaySource:
    """One unit per dead-letter file; its ``fetch`` returns the stored records as a JSON array."""

    def __init__(self, files: dict[Path, list[dict[str, Any]]]) -> None:
        self.files = files

    def work(self, stop: threading.Event) -> Iterator[Work]:
        for path, entries in self.files.items():
            if stop.is_set():
                return
            plain, ready = _split(entries)
            body = b"[" + b",".join(e["raw"].encode() for e in plain) + b"]"  # keeps each record's bytes
            origin = Origin("replay", str(path))
            objects = [ObjectRef(origin, _constant(body))] if plain else []
            yield Work(objects, records=ready, ack=_renamer(path), label=str(path))

    def close(self) -> None:
        """Nothing to release."""


def _split(entries: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Record]]:
    """CloudTrail entries (read again) and integrity events (rebuilt as such, not parsed as CloudTrail)."""
    plain: list[dict[str, Any]] = []
    ready: list[Record] = []
    for e in entries:
        if (e.get("origin") or {}).get("kind") == INTEGRITY_KIND:
            try:
                event = orjson.loads(e["raw"])
                if isinstance(event, dict):
                    ready.append(integrity_record(event))
                    continue
            except (orjson.JSONDecodeError, TypeError, ValueError):
                pass  # not an event any more: read like the rest, and dead-lettered again with why
        plain.append(e)
    return plain, ready


def _constant(body: bytes) -> Callable[[], bytes]:
    return lambda: body


def _renamer(path: Path) -> Any:
    def ack(_: list[ObjectDone]) -> None:
        path.rename(path.with_name(path.name.removesuffix(".replaying") + ".replayed"))

    return ack


def replay(config: Config, source: Path, only_sink: str | None, console: Console) -> int:
    """Replay entries under ``source``; returns the exit status."""
    if source.is_file():
        files = [source]
    else:  # *.replaying: left by a replay that stopped before its entries were final
        files = sorted(
            p for p in (*source.glob("*.ndjson"), *source.glob("*.ndjson.replaying")) if p.is_file()
        )
    known = {s.display_name: s for s in config.sinks}
    per_sink: dict[str, dict[Path, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    kept = unreadable = 0
    for f in files:
        name = f.name.removesuffix(".replaying")
        moving = f.with_name(name + ".replaying")
        if moving != f:
            f.rename(moving)
        keep: list[bytes] = []
        for line in moving.read_bytes().splitlines():
            if not line.strip():
                continue
            e: Any
            try:
                e = orjson.loads(line)
            except orjson.JSONDecodeError:
                e = None
            if not isinstance(e, dict):
                unreadable += 1
                keep.append(line)
                continue
            sink_name = e.get("sink")
            if (
                not isinstance(sink_name, str)
                or sink_name not in known
                or e.get("stage") != "sink"
                or not isinstance(e.get("raw"), str)
                or "raw_truncated_from" in e  # only part of it was kept: sending that would lose the rest
                or (only_sink and sink_name != only_sink)
            ):
                keep.append(line)
                continue
            per_sink[sink_name][moving].append(e)
        if keep:  # stays a dead-letter file under a new name, for later fixing or replay
            kept += len(keep)
            f.with_name(Path(name).stem + ".kept.ndjson").write_bytes(b"\n".join(keep) + b"\n")
        if not any(moving in by_file for by_file in per_sink.values()):
            moving.rename(f.with_name(name + ".replayed"))
    code = 0
    for name, by_file in per_sink.items():
        metrics = Metrics()
        stop = threading.Event()
        dead = build_dead_letters(config)
        sink = build_sink(known[name])
        try:
            sink.open()
        except TrailrelayError as exc:  # its files stay *.replaying: the next replay takes them
            console.print(f"{name}: not replayed: {exc}", highlight=False, markup=False)
            code = 3
            continue
        pipe = Pipeline(_ReplaySource(by_file), dead_letters=dead, metrics=metrics, stop=stop)
        pipe.sinks[name] = SinkRunner(
            name,
            sink,
            dead_letters=dead,
            metrics=metrics,
            stop=stop,
            on_fatal=pipe.on_fatal,
            max_retry_seconds=known[name].max_retry_seconds,
        )
        result = pipe.run()
        sink.close()
        snap = metrics.snapshot()
        console.print(
            f"{name}: replayed {snap['records_in']:,}, delivered {snap['delivered'].get(name, 0):,}, "
            f"dead-lettered again {sum(snap['dead_lettered'].values()):,}",
            highlight=False,
        )
        if not result.ok:
            code = 3
    if kept:
        console.print(
            f"{kept:,} entries were not replayed (read/parse stage, a sink not in this config, "
            "another sink than --sink, or only part of the record kept); they are kept in "
            "*.kept.ndjson files",
            highlight=False,
        )
    if unreadable:
        console.print(
            f"{unreadable:,} of those lines are not dead-letter entries (a write cut short?): kept "
            "as they are",
            highlight=False,
        )
    return code
