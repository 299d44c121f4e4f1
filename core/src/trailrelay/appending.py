"""Whole appends to a file that others may append to: all of the bytes, or none of them kept.

The file sink and the dead-letter files write this way. Writes are unbuffered (``os.write``
until every byte is out), so nothing of a failed write lingers in a buffer to be written later
into the middle of a retry. On a regular file the write happens under an exclusive ``flock``
(the workers of ``forward --workers N`` append to one file) and, when it fails (disk full), the
file is cut back to where the write started, which the lock makes safe: the cut can only take
this write's own bytes. A pipe cannot be cut back: what went out stays out.

A leaf: the standard library only.
"""

from __future__ import annotations

import contextlib
import os
import stat

try:
    import fcntl
except ImportError:  # not on Windows: there a file has one writer, this process
    fcntl = None  # type: ignore[assignment]

__all__ = ["PartialAppendError", "append_whole", "is_regular"]


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
    fd: int, data: bytes, *, regular: bool, fresh_line: bool = False, fsync: bool = False
) -> None:
    """Append all of ``data`` to ``fd`` (``O_APPEND``), then fsync it if asked.

    Raises the write's OSError with none of ``data`` kept, or :class:`PartialAppendError` when part of
    it stayed. ``regular``: ``fd`` is a regular file (:func:`is_regular`): locked, and cut back
    on failure. ``fresh_line``: when the file ends in part of a line (a writer stopped mid-write
    before this was how files were written), ``data`` starts on a new line (``fd`` must be
    readable).
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
            if fresh_line and start and os.pread(fd, 1, start - 1) != b"\n":
                data = b"\n" + data
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
