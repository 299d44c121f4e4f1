"""``trailrelay forward --workers N``: N worker processes, supervised.

Each worker is an ordinary ``trailrelay forward`` process. On an SQS queue, SQS itself spreads
the messages (and any number of hosts can run fleets on the same queue). On a files or S3
backfill (``shards``), every worker lists the same objects and reads those it is the first to
claim in the fleet's folder (:class:`~trailrelay.sources.base.Claims`), so every object is read
by exactly one worker, a worker free early takes what is left, and the checkpoints stay per
object; the run ends when every worker has. On Linux a backfill's
workers are forked from the supervisor once it has loaded the config and imported what a run
needs (``body``), so no worker pays start-up again; elsewhere, and for queue workers (which are
restarted when they die), each is a fresh process. The supervisor forwards
SIGINT/SIGTERM so every worker drains, restarts a queue worker that ends while the fleet is not
stopping (whatever its status), serves one ``/healthz`` and ``/metrics`` for the whole fleet
(unhealthy while a worker is down, crash-loops, reports no source activity or stops reporting),
and sums the workers' counters (a restarted worker's added to what its predecessor left). A
worker killed mid-run makes the fleet's status 5; workers stop when their supervisor dies.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import orjson

from trailrelay.pipeline.health import HealthServer, report_every
from trailrelay.pipeline.process import SAME_STOP_SECONDS, SUPERVISOR_ENV
from trailrelay.sources.base import CLAIMS_ENV

__all__ = ["can_fork", "fleet_status", "run_fleet"]

log = logging.getLogger("trailrelay.fleet")

_RESTART_DELAY = 1.0
_CRASH_LOOP = (3, 60.0)
"""A worker restarted this many times within this many seconds is crash-looping: ``/healthz``
says unhealthy until it has run that long with fewer restarts (not in and out with each one)."""
_POLL = 0.02
"""Seconds between looks at the workers of a long-running fleet."""
_POLL_ONCE = 0.005
"""The same for a backfill, whose run ends when its last worker does (a syscall per worker)."""
_STALE_REPORTS = 5
"""A worker whose last report is older than this many reporting intervals (and at most its
``max_idle``) is stopped or hung: it cannot say so itself, so ``/healthz`` says it for it."""


class _Worker(Protocol):
    """What the supervisor needs of a worker process (a ``subprocess.Popen`` or a forked child)."""

    pid: int

    def poll(self) -> int | None: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


def can_fork() -> bool:
    """Workers may be forked (Linux, with nothing but the main thread running)."""
    return sys.platform == "linux" and threading.active_count() == 1


class _Forked:
    """A forked worker, watched like a ``subprocess.Popen``."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _fork(body: Callable[[int, Path], None], index: int, summary: Path, env: dict[str, str]) -> _Forked:
    """Run ``body(index, summary)`` in a forked child; its SystemExit status is the child's."""
    for stream in (sys.stdout, sys.stderr):  # nothing buffered may be written twice by the children
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    pid = os.fork()
    if pid:
        return _Forked(pid)
    code = 1
    try:  # the child: never returns into the supervisor's code
        os.environ.update(env)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        body(index, summary)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)


_NOT_SUMMED = frozenset({"elapsed_seconds", "records_per_second", "latency_seconds"})
"""Snapshot keys that are not counters: a fleet's are worked out from its totals, or left out."""


def _sum(snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    """The workers' counters added up; counters keyed by sink, stage or rule at any depth alike."""
    total: dict[str, Any] = {"workers": len(snapshots)}
    for snap in snapshots:
        _add(total, _counters(snap))
    return total


def _add(total: dict[str, Any], snap: dict[str, Any]) -> None:
    """Add ``snap``'s numbers into ``total``, merging nested tables (``privacy``: sink, then rule)."""
    for key, value in snap.items():
        current = total.get(key)
        if isinstance(value, dict):
            if current is None:
                current = total[key] = {}
            if isinstance(current, dict):
                _add(current, value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if current is None:
                total[key] = value
            elif isinstance(current, (int, float)):
                total[key] = current + value


class _FleetHealth:
    """The fleet's ``/healthz`` and ``/metrics``, from the workers' metrics files in ``folder``.

    A worker process that ends leaves its last counters behind (:meth:`retire`): the process
    restarted in its place adds to them, so the fleet's counters never go down. A worker that
    ended when it should not have (:meth:`down`) is unhealthy until it is started again.
    """

    def __init__(
        self,
        folder: Path,
        workers: int,
        procs: dict[int, _Worker],
        clock: Callable[[], float] = time.monotonic,
        *,
        every: float | None = None,
        max_idle: float = float("inf"),
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.folder = folder
        self.workers = workers
        self.procs = procs
        self.clock = clock
        self.every = report_every() if every is None else every
        """Seconds between a worker's reports (what the workers are told: the same variable)."""
        self.stale = min(_STALE_REPORTS * self.every, max_idle)
        """How old a running worker's last report may be (file times are wall-clock times)."""
        self.wall = wall
        self._ended: dict[str, Any] = {}  # counters of the processes that ended, added up
        self._last: dict[int, dict[str, Any]] = {}  # each worker's latest snapshot read
        self._restarts: dict[int, deque[float]] = {}
        self._down: dict[int, str] = {}  # workers not running that should be: how each ended
        self._lock = threading.Lock()

    def metrics_file(self, i: int) -> Path:
        """Where worker ``i``'s process writes its counters."""
        return self.folder / f"worker-{i}.json"

    def retire(self, i: int) -> None:
        """Worker ``i``'s process ended: keep its counters (the last it wrote) and clear its file."""
        with self._lock:
            snap = self._read(i)
            last = self._last.pop(i, None)
            if snap is None:  # killed while writing it: what was read of it before
                snap = last
            if snap is not None:
                _add(self._ended, _counters(snap))
            self.metrics_file(i).unlink(missing_ok=True)

    def restarted(self, i: int) -> None:
        """Worker ``i`` is started again after its process died."""
        with self._lock:
            self._restarts.setdefault(i, deque()).append(self.clock())

    def down(self, i: int, how: str) -> None:
        """Worker ``i`` ended while the fleet was not stopping (``how``: "was killed by SIGKILL")."""
        with self._lock:
            self._down[i] = how

    def started(self, i: int) -> None:
        """A process runs as worker ``i`` (again)."""
        with self._lock:
            self._down.pop(i, None)

    def __call__(self) -> tuple[bool, str, dict[str, Any]]:
        """(healthy, why not, the fleet's counters): the provider of a :class:`HealthServer`.

        Unhealthy while a worker that should run does not (it ended, whatever its status, and is
        not restarted yet, or not at all: ``--once``) or crash-loops, and while any worker says
        it is unhealthy itself (its metrics file: no source activity for ``max_idle``, the rule
        of a single ``forward``), or has said nothing for longer than its reports allow (stopped
        or hung: it cannot say so itself). Any, not all: each worker is a forwarder of its own,
        and the supervisor restarts only workers that exit, so one stuck or cut off stays so
        until the fleet is restarted; in an outage of the queue every worker says so anyway.
        """
        with self._lock:
            live = {i: snap for i in range(self.workers) if (snap := self._read(i)) is not None}
            total = _sum(list(live.values()))
            _add(total, self._ended)
            looping = self._looping(self.clock())
            problems = [f"worker {i} {how}, not running" for i, how in sorted(self._down.items())]
            problems += self._silent(live)
        if looping:
            count, seconds = _CRASH_LOOP
            problems.append(f"workers {looping} restarted {count} times or more within {seconds:g}s")
        problems += [f"worker {i}: {snap['unhealthy']}" for i, snap in live.items() if snap.get("unhealthy")]
        return (not problems, "; ".join(problems), total)

    def _silent(self, live: dict[int, Any]) -> list[str]:
        """Running workers that have not reported for longer than ``stale`` (SIGSTOPped, hung)."""
        silent = []
        now = self.wall()
        for i, p in sorted(self.procs.items()):  # a copy made at once: the supervisor changes it
            if i not in live or i in self._down:
                continue
            try:
                age = now - self.metrics_file(i).stat().st_mtime
            except OSError:  # ended meanwhile
                continue
            if age > self.stale:
                silent.append(
                    f"worker {i} (pid {p.pid}): last report {age:.0f}s ago (one is due every {self.every:g}s)"
                )
        return silent

    def _read(self, i: int) -> dict[str, Any] | None:
        try:
            snap = orjson.loads(self.metrics_file(i).read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        if not isinstance(snap, dict):
            return None
        self._last[i] = snap
        return snap

    def _looping(self, now: float) -> list[int]:
        count, seconds = _CRASH_LOOP
        for times in self._restarts.values():
            while times and now - times[0] > seconds:
                times.popleft()
        return sorted(i for i, times in self._restarts.items() if len(times) >= count)


def _counters(snap: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in snap.items() if k not in _NOT_SUMMED}


_SEVERITY = (3, 5, 4)
"""Exit statuses of workers, most telling first: fatal, unfinished, dead letters."""
_OWN_STATUSES = frozenset({0, 2, 3, 4, 5})
"""The documented statuses of ``forward``: a worker that ends with one has said why itself.
Any other end (a signal, a crash) leaves the worker's unacknowledged work for the next run."""
_UNFINISHED = 5
_BEFORE_WORK = frozenset({-signal.SIGTERM, -signal.SIGINT})
"""A worker's handler of these is in place before it builds its pipeline: one that was killed
by them was still starting, with nothing taken from the source (its peers do its share)."""


def _status(code: int) -> int:
    if code in _OWN_STATUSES:
        return code
    return 0 if code in _BEFORE_WORK else _UNFINISHED


def _lost(code: int) -> bool:
    """The worker ended without saying why and may have left work unacknowledged."""
    return code not in _OWN_STATUSES and code not in _BEFORE_WORK


def fleet_status(codes: list[int]) -> int:
    """One exit status for the fleet: the most telling of its workers' statuses.

    A worker killed by a signal (a negative status) or ended by a crash left its work
    unacknowledged: the fleet's run is unfinished (5), never 0.
    """
    codes = [_status(code) for code in codes]
    for code in _SEVERITY:
        if code in codes:
            return code
    return max(codes, default=0)


def _ended(code: int) -> str:
    """How a worker process ended, for a log line: "was killed by SIGKILL", "exited with 1"."""
    if code >= 0:
        return f"exited with {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        return f"was killed by signal {-code}"
    if code in _BEFORE_WORK:
        return f"was stopped by {name} before it started work"
    return f"was killed by {name}"


def run_fleet(
    config_path: Path,
    workers: int,
    *,
    once: bool,
    health: str | None,
    log_format: str,
    shards: bool = False,
    max_idle: float = float("inf"),
    body: Callable[[int, Path], None] | None = None,
    after_fork: Callable[[], None] | None = None,
) -> tuple[int, dict[str, Any] | None]:
    """Run and supervise ``workers`` worker processes; the exit status and (shards) summed counters.

    ``body(index, summary_path)``: fork each worker to run it (a backfill's shards) instead of
    starting a new ``trailrelay forward`` process. ``after_fork``: called once every worker is
    started (the supervisor's own threads start only then). ``max_idle``: the workers' own limit
    on source inactivity; a worker silent that long (or a few reports long) is unhealthy.
    """
    with tempfile.TemporaryDirectory(prefix="trailrelay-fleet-") as tmp:
        return _supervise(
            Path(tmp), config_path, workers, once, health, log_format, shards, max_idle, body, after_fork
        )


def _supervise(  # noqa: PLR0917 - run_fleet's arguments, plus its scratch folder
    folder: Path,
    config_path: Path,
    workers: int,
    once: bool,
    health: str | None,
    log_format: str,
    shards: bool,
    max_idle: float,
    body: Callable[[int, Path], None] | None,
    after_fork: Callable[[], None] | None,
) -> tuple[int, dict[str, Any] | None]:
    """run_fleet's work, with the workers' metrics and summary files kept in ``folder``."""
    stopping = threading.Event()
    claims = folder / "claims"
    if shards:
        claims.mkdir()
    procs: dict[int, _Worker] = {}
    pids: dict[int, int] = {}
    codes: dict[int, int] = {}
    fleet = _FleetHealth(folder, workers, procs, max_idle=max_idle)

    def start(i: int) -> None:
        env = {
            "TRAILRELAY_METRICS_FILE": str(fleet.metrics_file(i)),
            "TRAILRELAY_WORKER": str(i),
            SUPERVISOR_ENV: str(os.getpid()),  # a worker stops when this process is gone
        }
        if shards:  # the workers of a backfill take objects as they get free (sources.base.Claims)
            env[CLAIMS_ENV] = str(claims)
        if body is not None:
            procs[i] = _fork(body, i, folder / f"summary-{i}.json", env)
        else:
            procs[i] = popen(i, env)
        pids[i] = procs[i].pid
        fleet.started(i)

    def popen(i: int, env: dict[str, str]) -> _Worker:
        cmd = [
            sys.executable,
            "-m",
            "trailrelay",
            "forward",
            "-c",
            str(config_path),
            "--no-progress",
            "--log-format",
            log_format,
        ]
        if once:
            cmd.append("--once")
        if shards:
            cmd += ["--shard", f"{i}/{workers}", "--summary-json", str(folder / f"summary-{i}.json")]
        return subprocess.Popen(cmd, env={**os.environ, **env})  # noqa: S603 - our own interpreter and CLI

    first_signal: list[float] = []

    def on_signal(signum: int, _frame: Any) -> None:
        if stopping.is_set():
            if time.monotonic() - first_signal[0] < SAME_STOP_SECONDS:
                return  # the same stop twice (Ctrl-C to the process group, systemd to the cgroup)
            for p in procs.values():
                p.kill()
            return
        first_signal.append(time.monotonic())
        stopping.set()
        log.warning("%s: asking %d workers to drain", signal.Signals(signum).name, len(procs))
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    started = time.monotonic()
    for i in range(workers):
        start(i)
    if after_fork is not None:  # threads only after forking
        after_fork()
    server = HealthServer(health, fleet).start() if health else None
    try:
        while procs:
            for i, p in list(procs.items()):
                code = p.poll()
                if code is None:
                    continue
                del procs[i]
                codes[i] = code
                fleet.retire(i)
                if stopping.is_set():
                    if _lost(code):
                        log.warning("worker %d (pid %d) %s while stopping", i, pids[i], _ended(code))
                    continue
                if once:  # a backfill's or --once run's worker is not restarted: its work is left
                    if _lost(code):
                        fleet.down(i, _ended(code))
                        log.error(
                            "worker %d (pid %d) %s: what it had not finished is left for the next run",
                            i,
                            pids[i],
                            _ended(code),
                        )
                    elif code in _BEFORE_WORK:
                        log.warning("worker %d (pid %d) %s: its peers do its share", i, pids[i], _ended(code))
                    continue
                # a queue worker runs until the fleet stops: any end, even a clean one, is one too early
                fleet.down(i, _ended(code))
                log.error("worker %d (pid %d) %s; restarting it", i, pids[i], _ended(code))
                fleet.restarted(i)
                if not stopping.wait(_RESTART_DELAY):  # a stop meanwhile: no new worker to stop
                    start(i)
            if procs:  # the run ends the moment the last worker has
                time.sleep(_POLL_ONCE if once else _POLL)
    finally:
        if server is not None:
            server.stop()
    code = fleet_status(list(codes.values()))
    if not shards:
        return code, None
    summaries = []
    lost = []
    for i in range(workers):
        try:
            summaries.append(orjson.loads((folder / f"summary-{i}.json").read_bytes()))
        except (OSError, orjson.JSONDecodeError):  # killed before it wrote one: say so, with how
            lost.append({"worker": i, "pid": pids[i], "ended": _ended(codes[i]).removeprefix("was ")})
    total = _sum(summaries)
    total["workers"] = workers  # started, not only those that reported: a lost one is not hidden
    if lost:
        total["workers_without_summary"] = lost
    elapsed = time.monotonic() - started
    total["elapsed_seconds"] = round(elapsed, 3)
    total["records_per_second"] = round(total.get("records_in", 0) / elapsed, 1) if elapsed > 0 else 0.0
    return code, total
