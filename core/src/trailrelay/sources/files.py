"""Local files and folders (recursive), e.g. a mirror of a trail bucket or exported logs."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, NoReturn

from trailrelay.errors import FetchError
from trailrelay.record import Origin
from trailrelay.sources.base import ObjectDone, ObjectRef, Work
from trailrelay.state import Checkpoints

__all__ = ["FileSource", "Listing", "list_files", "scan"]

_SUFFIXES = (".json", ".json.gz", ".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz")


@dataclass
class Listing:
    """What a folder holds: log files to read, files skipped (reason, path), and what cannot be read.

    ``unreadable``: (path, why) of a folder that cannot be listed, or of something named like a
    log file that is not one to open (a broken symlink, a symlink loop, a FIFO, a device). They
    may hold records, so they are never skipped quietly.
    """

    files: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)


def scan(path: Path) -> Listing:
    """Every log file under ``path`` (sorted), following symlinked folders, each folder once."""
    out = Listing()
    if path.is_file():
        out.files.append(path)
        return out
    if not path.exists():
        out.skipped.append(("missing", _text(path)))
        return out
    seen: set[tuple[int, int]] = set()
    folders = [path]
    while folders:
        folder = folders.pop()
        try:
            st = folder.stat()
            if (st.st_dev, st.st_ino) in seen:  # a symlink back into the tree: read once
                continue
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError as exc:
            out.unreadable.append((folder, f"cannot list the folder: {exc.strerror or exc}"))
            continue
        for entry in entries:
            p = Path(entry.path)
            try:  # both follow a symlink: False for a broken one, OSError for a loop
                folder_here = entry.is_dir()
                regular = not folder_here and entry.is_file()
            except OSError:
                folder_here = regular = False
            if folder_here:
                folders.append(p)
            elif regular:
                _classify(p, out)
            elif p.name.endswith(_SUFFIXES):
                why = "a broken symlink or a symlink loop" if entry.is_symlink() else "not a regular file"
                out.unreadable.append((p, why))
            else:
                out.skipped.append(("not-a-log-file", _text(p)))
    out.files.sort()
    out.skipped.sort(key=lambda s: s[1])
    out.unreadable.sort()
    return out


def _text(path: Path) -> str:
    r"""``path`` as text that can be written anywhere (logs, checkpoints, dead letters, SIEMs).

    A file name need not be UTF-8; Python keeps the bytes it cannot decode as lone surrogates,
    which no UTF-8 writer takes, so one such name stopped the whole run ("source failed"). Those
    bytes are written as backslash escapes (byte 0xff as the four characters ``\xff``) instead;
    every other path is unchanged.
    """
    text = str(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text


def _classify(p: Path, out: Listing) -> None:
    parts = set(p.parts)
    if "CloudTrail-Digest" in parts:
        out.skipped.append(("digest", _text(p)))
    elif "CloudTrail-Insight" in parts:
        out.skipped.append(("insight", _text(p)))
    elif not p.name.endswith(_SUFFIXES):
        out.skipped.append(("not-a-log-file", _text(p)))
    else:
        try:
            empty = p.stat().st_size == 0
        except OSError as exc:  # gone since it was listed
            out.unreadable.append((p, exc.strerror or str(exc)))
            return
        if empty:
            out.skipped.append(("empty-object", _text(p)))
        else:
            out.files.append(p)


def list_files(path: Path) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files to read under ``path`` (sorted) and (reason, path) of those skipped or unreadable."""
    found = scan(path)
    return found.files, found.skipped + [("unreadable", _text(p)) for p, _ in found.unreadable]


class FileSource:
    """Reads every log file under a path once; finished files are checkpointed."""

    def __init__(self, path: Path | str, checkpoints: Checkpoints | None = None) -> None:
        self.path = Path(path)
        self.checkpoints = checkpoints
        self.source_id = f"file:{_text(self.path.resolve())}"

    def work(self, stop: threading.Event) -> Iterator[Work]:
        """One unit per file; files already finished at the same size and mtime are skipped.

        What cannot be read (a folder that cannot be listed, a broken symlink or a FIFO named like
        a log file, a file gone since it was listed) is a unit that fails to fetch: warned about,
        counted, released, and the run ends "unfinished"; the other files are read all the same.
        """
        found = scan(self.path)
        if found.skipped:
            yield Work([], skipped=found.skipped, label="skipped files")
        for p, why in found.unreadable:
            yield _unreadable(p, why)
        for p in found.files:
            if stop.is_set():
                return
            try:
                st = p.stat()
            except OSError as exc:
                yield _unreadable(p, exc.strerror or str(exc))
                continue
            version = f"{st.st_size}:{st.st_mtime_ns}"
            key = _text(p.resolve())
            name = _text(p)
            done = self.checkpoints.skip_reason(self.source_id, key, version) if self.checkpoints else None
            if done is not None:
                yield Work([], skipped=[(done, name)], label=name)
                continue
            origin = Origin("file", name, size=st.st_size)
            ref = ObjectRef(origin, p.read_bytes, _opener(p))
            yield Work([ref], label=name, ack=self._acker(key, version))

    def _acker(self, key: str, version: str) -> _Ack:
        return _Ack(self.checkpoints, self.source_id, key, version)

    def close(self) -> None:
        """Nothing to release."""


def _unreadable(path: Path, why: str) -> Work:
    def fail() -> NoReturn:
        raise FetchError(why)

    name = _text(path)
    return Work([ObjectRef(Origin("file", name), fail, fail)], label=name)


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
