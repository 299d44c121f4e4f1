"""Local files and folders (recursive), e.g. a mirror of a trail bucket or exported logs."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from trailrelay.record import Origin
from trailrelay.sources.base import ObjectDone, ObjectRef, Work
from trailrelay.state import Checkpoints

__all__ = ["FileSource", "list_files"]

_SUFFIXES = (".json", ".json.gz", ".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz")


def list_files(path: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files to read under ``path`` (sorted) and (reason, path) of those skipped."""
    if path.is_file():
        return [path], []
    if not path.exists():
        return [], [("missing", str(path))]
    files: list[Path] = []
    skipped: list[tuple[str, str]] = []
    for p in sorted(path.rglob("*")):
        if not p.is_file():
            continue
        parts = set(p.parts)
        if "CloudTrail-Digest" in parts:
            skipped.append(("digest", str(p)))
        elif "CloudTrail-Insight" in parts:
            skipped.append(("insight", str(p)))
        elif not p.name.endswith(_SUFFIXES):
            skipped.append(("not-a-log-file", str(p)))
        elif p.stat().st_size == 0:
            skipped.append(("empty-object", str(p)))
        else:
            files.append(p)
    return files, skipped


class FileSource:
    """Reads every log file under a path once; finished files are checkpointed."""

    def __init__(self, path: Path | str, checkpoints: Checkpoints | None = None) -> None:
        self.path = Path(path)
        self.checkpoints = checkpoints
        self.source_id = f"file:{self.path.resolve()}"

    def work(self, stop: threading.Event) -> Iterator[Work]:
        """One unit per file; files already finished at the same size and mtime are skipped."""
        files, skipped = list_files(self.path)
        if skipped:
            yield Work([], skipped=skipped, label="skipped files")
        for p in files:
            if stop.is_set():
                return
            st = p.stat()
            version = f"{st.st_size}:{st.st_mtime_ns}"
            key = str(p.resolve())
            if self.checkpoints and self.checkpoints.is_done(self.source_id, key, version):
                yield Work([], skipped=[("already-done", str(p))], label=str(p))
                continue
            origin = Origin("file", str(p), size=st.st_size)
            ref = ObjectRef(origin, p.read_bytes, _opener(p))
            yield Work([ref], label=str(p), ack=self._acker(key, version))

    def _acker(self, key: str, version: str) -> _Ack:
        return _Ack(self.checkpoints, self.source_id, key, version)

    def close(self) -> None:
        """Nothing to release."""


def _opener(path: Path) -> Callable[[], BinaryIO]:
    return lambda: path.open("rb")


class _Ack:
    """Marks a file done in the checkpoint store (a callable, so Work.ack stays simple)."""

    def __init__(self, checkpoints: Checkpoints | None, source: str, key: str, version: str) -> None:
        self.checkpoints, self.source, self.key, self.version = checkpoints, source, key, version

    def __call__(self, done: list[ObjectDone]) -> None:
        if self.checkpoints is not None:
            records = sum(d.records for d in done)
            digest = done[0].sha256 if done else None
            self.checkpoints.mark_done(self.source, self.key, self.version, records, digest)
