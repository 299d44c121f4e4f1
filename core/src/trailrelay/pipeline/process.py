"""Process-wide settings for a forwarding run: the C allocator and the garbage collector.

Reading an object makes a few large short-lived buffers per megabyte of CloudTrail (the
decompressed chunk, the bytes being cut into records, request bodies). glibc hands every
allocation over its mmap threshold to a fresh ``mmap`` and gives the pages back on ``free``, so
each buffer is page-faulted in (and zeroed by the kernel) again: measured on the 200k-record
benchmark, 210,000 minor faults and ~0.4 CPU-seconds of system time, about 12% of the run.
:func:`tune_allocator` keeps buffers of up to ``MMAP_THRESHOLD`` in the heap and lets up to
``TRIM_THRESHOLD`` of free memory stay there to be reused: 16,000 faults, the same peak RSS.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import signal
import sys
import threading

__all__ = [
    "MMAP_THRESHOLD",
    "SAME_STOP_SECONDS",
    "TRIM_THRESHOLD",
    "freeze_startup",
    "join",
    "stop_with_parent",
    "tune_allocator",
]

SAME_STOP_SECONDS = 1.0
"""A signal this soon after the first is the same stop delivered twice, not "exit now": Ctrl-C
reaches a whole process group while a fleet's supervisor passes SIGTERM on, and systemd signals
every process of the unit's cgroup."""

log = logging.getLogger("trailrelay.pipeline")

MMAP_THRESHOLD = 4 << 20
"""Allocations up to this size come from the heap (glibc's default adapts from 128 KiB)."""
TRIM_THRESHOLD = 16 << 20
"""Free memory kept at the top of a heap for reuse before it is returned to the system."""
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")
_tuned: bool | None = None


def tune_allocator() -> bool:
    """Set glibc's mmap and trim thresholds once per process; True when they are set.

    Nothing is changed off Linux, under a C library without ``mallopt`` (musl ignores it), or
    when the operator set the allocator up themselves (``MALLOC_*_`` or ``GLIBC_TUNABLES``).
    """
    global _tuned  # noqa: PLW0603 - once per process
    if _tuned is not None:
        return _tuned
    _tuned = False
    if not sys.platform.startswith("linux") or any(name in os.environ for name in _USER_SETTINGS):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    _tuned = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    if not _tuned:
        log.debug("mallopt refused the thresholds; the allocator keeps its defaults")
    return _tuned


def freeze_startup() -> None:
    """Keep what start-up left alive (modules, rules, config) out of every later collection.

    The collection thresholds stay at Python's defaults: raising them saved ~6% CPU, but failed
    requests leave reference cycles (exception, traceback, frames holding request bodies) that
    then lived long enough to grow memory by tens of MB during a SIEM outage.
    """
    gc.freeze()


JOIN_STEP = 0.5
"""Seconds the main thread waits on a thread at a time (:func:`join`)."""


def join(thread: threading.Thread) -> None:
    """Wait for ``thread`` to end, a little at a time, so the main thread runs signal handlers.

    Python runs a signal's handler in the main thread only, and only when that thread runs
    bytecode. A process-directed SIGTERM the kernel hands to another thread does not interrupt
    a ``join()`` without a timeout: the handler (drain, then stop) would wait for the run to end.
    """
    while thread.is_alive():
        thread.join(JOIN_STEP)


SUPERVISOR_ENV = "TRAILRELAY_SUPERVISOR"
"""The pid of a fleet worker's supervisor (set by the supervisor)."""
_PR_SET_PDEATHSIG = 1
DEATH_SIGNAL: int | None = getattr(signal, "SIGUSR1", None)
"""What a fleet worker asks the kernel to send it when its supervisor dies (Linux)."""
PARENT_WATCH = 1.0
"""Seconds between looks at the parent where the kernel cannot signal its death (not Linux)."""


def stop_with_parent(parent: int, stop: threading.Event) -> None:
    """Stop as on SIGTERM (drain, hand back the rest) once process ``parent`` is gone.

    A fleet's worker whose supervisor was killed (``kill -9``, OOM) would otherwise run on
    unsupervised: no restarts, no ``/healthz``, no signal from a restarted fleet, and the same
    file-sink names as its workers. On Linux the kernel sends ``DEATH_SIGNAL`` when the parent
    dies; elsewhere (or called off the main thread) a thread looks at the parent every second.
    Not SIGTERM: the kernel signals again each time the child passes to another of the dying
    parent's threads, and a second SIGTERM means "exit now" (see ``cli.main``).
    """
    if _signalled(parent, stop):
        if os.getppid() != parent:  # it died before the request was made: no signal will come
            _orphaned(parent, stop)
        return

    def watch() -> None:
        while not stop.wait(PARENT_WATCH):
            if os.getppid() != parent:
                _orphaned(parent, stop)
                return

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _signalled(parent: int, stop: threading.Event) -> bool:
    """Handle ``DEATH_SIGNAL`` and ask the kernel for it when the parent dies; False where it cannot."""
    if DEATH_SIGNAL is None or not sys.platform.startswith("linux"):
        return False

    def on_death_signal(_signum: int, _frame: object) -> None:
        if os.getppid() != parent:  # not while the child is handed to the parent's next thread
            _orphaned(parent, stop)

    try:
        signal.signal(DEATH_SIGNAL, on_death_signal)
    except ValueError:  # not the main thread
        return False
    return _death_signal(DEATH_SIGNAL)


def _death_signal(sig: int) -> bool:
    """Ask the kernel for ``sig`` when the parent dies (Linux ``prctl``); False where it cannot."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return False
    return bool(prctl(_PR_SET_PDEATHSIG, ctypes.c_ulong(sig), 0, 0, 0) == 0)


def _orphaned(parent: int, stop: threading.Event) -> None:
    if stop.is_set():  # stopping already (a signal, or said once)
        return
    log.warning("the fleet's supervisor (pid %d) is gone: finishing in-flight work, then stopping", parent)
    stop.set()
