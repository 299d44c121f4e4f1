"""Whole appends to a file that others may append to: all of the bytes, or none of them kept.

The file sink and the dead-letter files write this way. Writes are unbuffered (``os.write``
until every byte is out), so nothing of a failed write lingers in a buffer to be written later
into the middle of a retry. On a regular file the write happens under an exclusive ``flock``
(the workers of ``forward --workers N`` append to one file) and, when it fails (disk full), the
file is cut back to where the write started, which the lock makes safe: the cut can only take
this write's own bytes. A pipe cannot be cut back: what went out stays out.

A writer killed in the middle of a write (``kill -9``: the kernel stops a large write at a fatal
signal) leaves a torn line at the end. An append may start on a fresh line (``fresh_line``:
the dead-letter files keep the fragment for a person to look at) or cut such a tail off first,
under the same lock, when it is not whole JSON (``cut_torn``: the file sink, whose torn records
were not acknowledged and are written again); a last line that is whole JSON without its line
break is kept either way.

A leaf: the standard library only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat

try:
    import fcntl
except ImportError:  # not on Windows: there a file has one writer, this process
    fcntl = None  # type: ignore[assignment]

__all__ = ["PartialAppendError", "append_whole", "is_regular"]

log = logging.getLogger("trailrelay.appending")

_TAIL_BLOCK = 1 << 16
_TAIL_LIMIT = 1 << 28
"""How far back a torn last line is looked for: records are far smaller; past it, a line break is added."""


class PartialAppendError(OSError):
    """A write failed after ``written`` of its bytes went out and stayed: a partial line.

    ``cut_error``: why they could not be cut off a regular file (None for a pipe or device).
    """

    def __init__(self, cause: OSError, written: int, cut_error: OSError | None) -> None:
        super().__init__(cause.errno, cause.strerror)
        self.written = written
        self.cut_error = cut_error


def is_regular(fd: int) -> bool:
    """Whether ``fd`` is a regular file (one that can be cut back), not a pipe or a device."""
    return stat.S_ISREG(os.fstat(fd).st_mode)


def append_whole(
    fd: int,
    data: bytes,
    *,
    regular: bool,
    fresh_line: bool = False,
    cut_torn: bool = False,
    fsync: bool = False,
) -> None:
    """Append all of ``data`` to ``fd`` (``O_APPEND``), then fsync it if asked.

    Raises the write's OSError with none of ``data`` kept, or :class:`PartialAppendError` when part of
    it stayed. ``regular``: ``fd`` is a regular file (:func:`is_regular`): locked, and cut back
    on failure. ``fresh_line``: when the file ends in part of a line, ``data`` starts on a new
    line (``fd`` must be readable). ``cut_torn``: the same, but a last line that is not whole
    JSON (torn by a writer killed mid-write) is cut off first.
    """
    locked = False
    if regular and fcntl is not None:
        with contextlib.suppress(OSError):  # a file system without locks (some NFS): one writer
            fcntl.flock(fd, fcntl.LOCK_EX)
            locked = True
    try:
        start = None
        if regular:
            start = os.lseek(fd, 0, os.SEEK_END)
            if (fresh_line or cut_torn) and start and os.pread(fd, 1, start - 1) != b"\n":
                start, data = _mend_tail(fd, start, data) if cut_torn else (start, b"\n" + data)
        view = memoryview(data)
        done = 0
        try:
            while done < len(data):
                done += os.write(fd, view[done:])
            if fsync:
                os.fsync(fd)
        except OSError as exc:
            if start is not None:
                try:
                    os.ftruncate(fd, start)
                except OSError as cut:
                    raise PartialAppendError(exc, done, cut) from None
            elif done:
                raise PartialAppendError(exc, done, None) from None
            raise
    finally:
        if locked:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)


def _mend_tail(fd: int, end: int, data: bytes) -> tuple[int, bytes]:
    """``(where the append starts, data)`` for a file of ``end`` bytes whose last byte is no line break."""
    line_start = _last_line_start(fd, end)
    if line_start is not None:
        tail = os.pread(fd, end - line_start, line_start)
        try:
            json.loads(tail)
        except ValueError:  # a torn line: its records were not acknowledged and come again
            os.ftruncate(fd, line_start)
            log.warning(
                "%d bytes of a line torn by a writer that stopped mid-write were cut off the end of the file",
                end - line_start,
            )
            return line_start, data
    return end, b"\n" + data


def _last_line_start(fd: int, end: int) -> int | None:
    """Where the last line of the file begins (0 for the first), or None past ``_TAIL_LIMIT``."""
    pos = end
    while pos > 0 and end - pos < _TAIL_LIMIT:
        size = min(_TAIL_BLOCK, pos)
        block = os.pread(fd, size, pos - size)
        found = block.rfind(b"\n")
        if found >= 0:
            return pos - size + found + 1
        pos -= size
    return 0 if pos == 0 else None
