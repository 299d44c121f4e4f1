"""``trailrelay replay-dead-letters``: send dead-lettered records again to the sink that refused them.

Files being replayed are first renamed to ``*.replaying`` (so new failures, written to a new
file, never mix with them); a name already taken gets a number (``x.2.ndjson.replaying``):
nothing is ever renamed over another file. Once a sink's entries in a file reached a final
outcome again (delivered, or dead-lettered again with the reason), their lines move to
``*.replayed``; the ``*.replaying`` file keeps only the entries of sinks that did not finish (a
sink that could not open or failed fatally), so the next replay sends those, and only those,
again (a crash between the two writes may send a sink's entries twice, never lose them). A
``*.replaying`` file left by a replay that stopped is replayed again. Entries from the
read/parse stages are counted and left: their input must be fixed first. So are lines that are
not entries at all (a write cut short), and entries that kept only part of their raw bytes
(``raw_truncated_from``): kept as they are, never a reason to stop. A file with no entry to
replay is not touched; the kept lines of one replayed in part are added to its
``*.kept.ndjson`` (``x.kept.ndjson`` for ``x.ndjson`` and for itself: one name, however often
it is replayed), which later replays read like any dead-letter file. Each entry is read on its
own: one whose raw text is not a record any more is dead-lettered alone (parse stage).

:func:`replay` returns each sink's run; the command exits with the most serious of their
``forward`` statuses (a sink that could not open counts as a fatal failure).
"""

from __future__ import annotations

import re
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
from trailrelay.pipeline.build import build_dead_letters, build_privacy, build_sink
from trailrelay.pipeline.delivery import SinkRunner
from trailrelay.pipeline.metrics import Metrics
from trailrelay.pipeline.runner import Pipeline, RunResult
from trailrelay.record import Origin, Record
from trailrelay.settings import secret_values
from trailrelay.sources.base import ObjectDone, ObjectRef, Work
from trailrelay.sources.parse import Problem, records_of

__all__ = ["replay"]

_KEPT = re.compile(r"\.kept(\.\d+)?$")
"""The end of a kept file's name before ``.ndjson`` (numbered when its ``*.replaying`` name was taken)."""


class _Claimed:
    """One dead-letter file being replayed (``*.replaying``) and the sinks its entries still wait for.

    ``lines``: each line of the file with the sink it is replayed to (None: kept, not replayed).
    The lines no sink waits for any more move to ``*.replayed``; the file keeps the others.
    """

    def __init__(self, path: Path, lines: list[tuple[bytes, str | None]], lock: threading.Lock) -> None:
        self.path = path
        self.lines = lines
        self.waiting = {sink for _, sink in lines if sink is not None}
        self.trace: Path | None = None
        self._lock = lock  # one for every file: two never take the same new name

    def finished(self, sink: str) -> None:
        """Every entry of ``sink`` in this file reached a final outcome."""
        with self._lock:
            self.waiting.discard(sink)
            self._settle()

    def settle(self) -> None:
        """Move what no sink waits for (kept lines, or all of it) to ``*.replayed`` now."""
        with self._lock:
            self._settle()

    def _settle(self) -> None:
        done: list[bytes] = []
        left: list[tuple[bytes, str | None]] = []
        for line, sink in self.lines:
            if sink in self.waiting:
                left.append((line, sink))
            else:
                done.append(line)
        if not done:
            return
        base = self.path.with_name(self.path.name.removesuffix(".replaying"))
        if not left and self.trace is None:  # all of it at once: the file itself is the trace
            self.path.rename(_fresh(base, ".replayed"))
        else:
            if self.trace is None:
                self.trace = _fresh(base, ".replayed")
            with self.trace.open("ab") as fh:  # first: a crash before the rewrite loses nothing
                fh.write(b"".join(line + b"\n" for line in done))
            if left:
                tmp = self.path.with_name(self.path.name + ".tmp")
                tmp.write_bytes(b"".join(line + b"\n" for line, _ in left))
                tmp.replace(self.path)
            else:
                self.path.unlink()
        self.lines = left


class _Entries:
    """The records of a file's entries for one sink, each read from its own raw text.

    One that is not a record (cut short, not JSON) is a problem alone, dead-lettered with its
    own raw text; the entries around it are not touched.
    """

    def __init__(self, entries: list[dict[str, Any]], origin: Origin) -> None:
        raws = [e["raw"].encode().strip(b" \t\r\n") for e in entries]
        self.items: list[Record | Problem] = [
            item for index, raw in enumerate(raws) for item in records_of((raw,), origin, index)
        ]
        self.bytes_in = sum(map(len, raws))
        self.sha256: str | None = None

    def __iter__(self) -> Iterator[Record | Problem]:
        return iter(self.items)


class _ReplaySource:
    """One unit per dead-letter file, holding its entries for ``sink``; acknowledged per file."""

    def __init__(self, sink: str, files: dict[_Claimed, list[dict[str, Any]]]) -> None:
        self.sink = sink
        self.files = files

    def work(self, stop: threading.Event) -> Iterator[Work]:
        for claimed, entries in self.files.items():
            if stop.is_set():
                return
            plain, ready = _split(entries)
            origin = Origin("replay", str(claimed.path))
            objects = [ObjectRef(origin, _no_bytes, items=_given(_Entries(plain, origin)))] if plain else []
            yield Work(objects, records=ready, ack=_finisher(claimed, self.sink), label=str(claimed.path))

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


def _no_bytes() -> bytes:
    return b""  # the records are handed over as items; there is no object to fetch


def _given(entries: _Entries) -> Callable[[], _Entries]:
    return lambda: entries


def _finisher(claimed: _Claimed, sink: str) -> Callable[[list[ObjectDone]], None]:
    def ack(_: list[ObjectDone]) -> None:
        claimed.finished(sink)

    return ack


def _fresh(path: Path, suffix: str = "") -> Path:
    """``path`` + ``suffix``, or numbered before its extension (``x.2.ndjson``) when that is taken."""
    candidate = path.with_name(path.name + suffix)
    n = 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}.{n}{path.suffix}{suffix}")
    return candidate


def _claim(f: Path) -> Path:
    """``f`` renamed ``*.replaying`` (one left by an earlier replay as it is), over no other file."""
    if f.name.endswith(".replaying"):
        return f
    moving = _fresh(f, ".replaying")
    f.rename(moving)
    return moving


class _Sorted:
    """The lines of one dead-letter file: each with the sink it is replayed to, or kept."""

    def __init__(self) -> None:
        self.lines: list[tuple[bytes, str | None]] = []
        self.by_sink: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.keep: list[bytes] = []
        self.unreadable = 0


def _sort_lines(data: bytes, known: dict[str, Any], only_sink: str | None) -> _Sorted:
    """Which lines of a file are replayed (to which sink) and which are kept as they are."""
    out = _Sorted()
    for line in data.splitlines():
        if not line.strip():
            continue
        e: Any
        try:
            e = orjson.loads(line)
        except orjson.JSONDecodeError:
            e = None
        if not isinstance(e, dict):
            out.unreadable += 1
            out.keep.append(line)
            out.lines.append((line, None))
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
            out.keep.append(line)
            out.lines.append((line, None))
            continue
        out.by_sink[sink_name].append(e)
        out.lines.append((line, sink_name))
    return out


def _kept_name(f: Path) -> Path:
    """Where the kept lines of ``f`` go: ``x.kept.ndjson`` for ``x.ndjson``, and for itself.

    One name however often a file is replayed: ``x.kept.ndjson`` (or ``x.kept.2.ndjson.replaying``)
    keeps its lines in ``x.kept.ndjson``, not ``x.kept.kept.ndjson``.
    """
    stem = f.name.removesuffix(".replaying").removesuffix(".ndjson")
    return f.with_name(_KEPT.sub("", stem) + ".kept.ndjson")


def _append_lines(path: Path, lines: list[bytes]) -> None:
    """Add ``lines`` to ``path`` (made when missing), each whole on a line of its own."""
    with path.open("ab") as fh:
        if fh.tell() > 0:  # a file cut short in a line: the first new line starts a line of its own
            with path.open("rb") as last:
                last.seek(-1, 2)
                if last.read(1) != b"\n":
                    fh.write(b"\n")
        fh.write(b"".join(line + b"\n" for line in lines))


def replay(config: Config, source: Path, only_sink: str | None, console: Console) -> list[RunResult | None]:
    """Replay entries under ``source``; returns each sink's run (None: the sink could not open)."""
    if source.is_file():
        files = [source]
    else:  # *.replaying: left by a replay that stopped before its entries were final
        files = sorted(
            p for p in (*source.glob("*.ndjson"), *source.glob("*.ndjson.replaying")) if p.is_file()
        )
    if not files:
        console.print(f"no dead-letter files in {source}: nothing to replay", highlight=False, markup=False)
        return []
    privacy = build_privacy(config)  # as forward has it; before any file is claimed
    known = {s.display_name: s for s in config.sinks}
    per_sink: dict[str, dict[_Claimed, list[dict[str, Any]]]] = defaultdict(dict)
    lock = threading.Lock()
    kept = unreadable = 0
    settling: list[tuple[Path, list[bytes], _Claimed]] = []
    for f in files:
        data = f.read_bytes()
        sorted_lines = _sort_lines(data, known, only_sink)
        if not sorted_lines.by_sink:  # nothing in it to replay now: left as it is, under its name
            kept += len(sorted_lines.keep)
            unreadable += sorted_lines.unreadable
            continue
        moving = _claim(f)
        if moving.stat().st_size != len(data):  # written to since it was read: read it again
            sorted_lines = _sort_lines(moving.read_bytes(), known, only_sink)
        kept += len(sorted_lines.keep)
        unreadable += sorted_lines.unreadable
        claimed = _Claimed(moving, sorted_lines.lines, lock)
        settling.append((_kept_name(f), sorted_lines.keep, claimed))
        for sink_name, entries in sorted_lines.by_sink.items():
            per_sink[sink_name][claimed] = entries
    for target, keep, claimed in settling:  # after the reading: no file is read with lines added here
        if keep:  # they stay dead letters, in one *.kept.ndjson per day, for later fixing or replay
            _append_lines(target, keep)
        claimed.settle()  # then the kept lines leave the *.replaying file
    if not per_sink:
        what = f"for sink {only_sink!r} " if only_sink else ""
        console.print(f"nothing to replay {what}in {source}", highlight=False, markup=False)
    runs: list[RunResult | None] = []
    for name, by_file in per_sink.items():
        metrics = Metrics()
        stop = threading.Event()
        dead = build_dead_letters(config)
        sink = build_sink(known[name])
        entries_in = sum(map(len, by_file.values()))
        try:
            sink.open()
        except TrailrelayError as exc:  # its entries stay in *.replaying files: the next replay takes them
            console.print(
                f"{name}: not replayed: {exc}; {entries_in:,} entries left for the next replay",
                highlight=False,
                markup=False,
            )
            runs.append(None)
            continue
        pipe = Pipeline(_ReplaySource(name, by_file), dead_letters=dead, metrics=metrics, stop=stop)
        pipe.sinks[name] = SinkRunner(
            name,
            sink,
            dead_letters=dead,
            metrics=metrics,
            stop=stop,
            on_fatal=pipe.on_fatal,
            max_retry_seconds=known[name].max_retry_seconds,
            prepare=privacy[name].apply if name in privacy else None,  # never sent in clear
            secrets=secret_values(known[name]),
        )
        result = pipe.run()
        sink.close()
        snap = metrics.snapshot()
        left = sum(len(entries) for claimed, entries in by_file.items() if name in claimed.waiting)
        console.print(
            f"{name}: replayed {entries_in:,}, delivered {snap['delivered'].get(name, 0):,}, "
            f"dead-lettered again {sum(snap['dead_lettered'].values()):,}"
            + (f", left for the next replay {left:,}" if left else ""),
            highlight=False,
        )
        if result.fatal:
            console.print(f"{name}: stopped: {result.fatal}", highlight=False, markup=False)
        runs.append(result)
    if kept:
        console.print(
            f"{kept:,} entries were not replayed (read/parse stage, a sink not in this config, "
            "another sink than --sink, or only part of the record kept); they stay in their "
            "dead-letter files, or in the *.kept.ndjson file of one replayed in part",
            highlight=False,
        )
    if unreadable:
        console.print(
            f"{unreadable:,} of those lines are not dead-letter entries (a write cut short?): kept "
            "as they are",
            highlight=False,
        )
    return runs
