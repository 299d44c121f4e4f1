"""Crash consistency: SIGKILL the forwarder at seeded random moments, restart it, count what arrived.

One scenario is a mode (S3 listing or SQS notifications) and a sink. The forwarder is started,
killed, and started again ``kills`` times; each kill comes either at a random time after the
start (which includes start-up, listing and the first requests; by two kills' share of the
input at the latest) or once the stand-in has stored a random number of new records
(mid-stream: between a request and its ack, between the last delivery of an object and its
checkpoint or SQS delete). A last run drains the source.
Then every input eventID must be stored or dead-lettered with a reason, and duplicates must
stay within what a kill can leave unacknowledged::

    per kill:  concurrency x batch            (batches in flight, stored but not yet confirmed)
             + (concurrency + 1) x max_object  (objects straddling the batches around them, whose
                                                delivered records are sent again with the rest)

A sink that settles later (Splunk with indexer acknowledgement) also leaves what was stored and
is still awaiting its ack, and keeps more objects open while it waits::

             + max_pending_bytes / 40 + concurrency x batch
                                               (parked records: each counts at least 40 bytes
                                                against the cap, and the requests being sent when
                                                the cap is reached still park)
             + readers x max_object            (one more open object per reader)

Elastic must show no duplicate at all (its ``_id`` is derived from the event).
"""

from __future__ import annotations

import random
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from reliability.accounting import Tally, duplicates_after, read_dead_letters, tally
from reliability.aws import Inputs
from reliability.forwarder import READERS, Forwarder, write_config
from reliability.lab import Check, Lab, log, wait_until
from reliability.standins import ACKED, IDEMPOTENT, SinkSettings, StandIn, start_standin

__all__ = ["CrashResult", "KillEvent", "bound_per_kill", "duplicate_checks", "run_crash"]

PARKED_RECORD_FLOOR = 40
"""Bytes a parked record counts against ``max_pending_bytes`` at least (``_Parked.nbytes``)."""

TIMED_SHARE = 0.3
"""Share of kills at a random time after start; the others come after random progress."""


@dataclass(frozen=True)
class KillEvent:
    """One kill: how it was triggered, when, and how much the stand-in held afterwards."""

    trigger: str
    after_seconds: float
    stored_before: int
    stored_after: int
    """Copies stored once the killed process was gone (the mark for attributing duplicates)."""
    peak_rss_kb: int = 0


@dataclass
class CrashResult:
    """One mode x sink scenario."""

    mode: str
    sink: str
    records: int
    settings: SinkSettings
    kills: list[KillEvent] = field(default_factory=list)
    final_runs: int = 0
    tally: Tally | None = None
    bound_per_kill: int = 0
    duplicates_per_kill: list[int] = field(default_factory=list)
    seconds: float = 0.0
    peak_rss_kb: int = 0
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return all(c.ok for c in self.checks)


def _checkpointed(folder: Path) -> int:
    """Objects with a checkpoint (S3 mode), read after the process is gone."""
    db = folder / "state.sqlite"
    if not db.exists():
        return 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute("select count(*) from objects").fetchone()[0])
    finally:
        conn.close()


def run_crash(
    lab: Lab,
    inputs: Inputs,
    mode: str,
    sink: str,
    *,
    kills: int,
    seed: int,
    settings: SinkSettings | None = None,
    max_timed_seconds: float = 3.0,
) -> CrashResult:
    """Run one crash scenario and check it."""
    settings = settings or SinkSettings()
    rng = random.Random(f"{seed}/{mode}/{sink}")  # noqa: S311 - reproducible kill schedule
    folder = lab.folder(f"crash-{mode}-{sink}")
    standin = start_standin(sink, folder)
    result = CrashResult(mode, sink, inputs.records, settings)
    started = time.monotonic()
    try:
        queue_url = lab.aws.new_queue(inputs.bucket, inputs.keys) if mode == "sqs" else None
        source = lab.aws.source_table(bucket=inputs.bucket, queue_url=queue_url)
        config = write_config(folder, source, [standin.sink_table(settings)])
        env = {**lab.aws.env(), **standin.env()}
        for k in range(kills):
            event = _one_kill(config, env, standin, inputs, rng, k, kills, max_timed_seconds, mode)
            if event is None:
                log.warning("crash %s/%s: the forwarder finished before kill %d", mode, sink, k + 1)
                break
            result.kills.append(event)
            log.info(
                "crash %s/%s: kill %d/%d (%s after %.2fs), %d stored",
                mode,
                sink,
                k + 1,
                kills,
                event.trigger,
                event.after_seconds,
                event.stored_after,
            )
        final_ok, runs, peak = _drain(config, env, lab, queue_url)
        result.final_runs = runs
        result.peak_rss_kb = max([peak, *(k.peak_rss_kb for k in result.kills)])
        result.seconds = time.monotonic() - started
        _judge(result, inputs, standin, folder, settings, final_ok, kills)
    finally:
        standin.stop()
    return result


def _one_kill(  # noqa: PLR0917 - private helper of run_crash
    config: Path,
    env: dict[str, str],
    standin: StandIn,
    inputs: Inputs,
    rng: random.Random,
    k: int,
    kills: int,
    max_timed: float,
    mode: str,
) -> KillEvent | None:
    """Start the forwarder and kill it at the drawn moment; None when it finished first."""
    base = standin.stored_count()
    remaining = max(1, inputs.records - len(set(standin.event_ids())))
    step = remaining / (kills - k + 1)
    timed = rng.random() < TIMED_SHARE
    deadline = rng.uniform(0.2, max_timed) if timed else 60.0
    # A timed kill still comes by two kills' share of the input: a forwarder fast enough to store
    # most of it within max_timed would otherwise finish before the last kills.
    progress = 2 * step if timed else rng.uniform(0.1, 1.9) * step
    # ...and never later than three quarters of what is left: drawn up to all of it (the last
    # kill's share is half of what is left), it could only come after the run had finished.
    progress = min(progress, 0.75 * remaining)
    fw = Forwarder(config, env, once=mode == "s3", tag=f"kill{k:03d}")
    while True:
        if not fw.alive():
            return None
        elapsed = time.monotonic() - fw.started
        if elapsed >= deadline or standin.stored_count() - base >= progress:
            break
        time.sleep(0.005)
    run = fw.kill()
    time.sleep(0.2)  # requests the dead process had fully sent may still be stored
    trigger = "time" if elapsed >= deadline else "progress"
    return KillEvent(trigger, elapsed, base, standin.stored_count(), run.peak_rss_kb)


def _drain(config: Path, env: dict[str, str], lab: Lab, queue_url: str | None) -> tuple[bool, int, int]:
    """Run the forwarder to the end (SQS: until the queue is empty). (clean exit, runs, peak RSS)."""
    runs, peak = 0, 0
    for attempt in range(12):
        fw = Forwarder(config, env, once=True, tag=f"final{attempt:02d}")
        res = fw.wait(timeout=600)
        runs += 1
        peak = max(peak, res.peak_rss_kb)
        if res.code != 0:
            log.error("final run exited %d: %s", res.code, fw.log_tail())
            return False, runs, peak
        if queue_url is None:
            return True, runs, peak
        if wait_until(lambda: lab.aws.queue_left(queue_url) == 0, 12.0, every=0.5):
            return True, runs, peak
    return False, runs, peak


def bound_per_kill(sink: str, settings: SinkSettings, max_object: int) -> int:
    """Most records one kill may leave stored but unconfirmed (sent again after the restart)."""
    in_flight = settings.concurrency * settings.batch
    bound = in_flight + (settings.concurrency + 1) * max_object
    if sink in ACKED:
        parked = settings.max_pending_bytes // PARKED_RECORD_FLOOR + in_flight
        bound += parked + READERS * max_object
    return bound


def duplicate_checks(sink: str, mode: str, total: int, per_kill: list[int], bound: int) -> list[Check]:
    """Duplicates within the bound, in total and kill by kill.

    ``per_kill[k]`` counts the copies stored after kill k (index 0: before the first kill). The
    total bound can exceed the input (the Splunk bound holds what ``max_pending_bytes`` may
    park), so each kill is held to it too: in S3 listing mode an interval holds its own kill's
    duplicates; in SQS mode a killed worker's messages may come back after the next kill, so an
    interval may hold two kills' worth.
    """
    if sink in IDEMPOTENT:
        return [Check("no duplicates", total == 0, f"{total} duplicates (must be 0)")]
    kills = len(per_kill) - 1
    most = max(per_kill[1:], default=0)
    limit = bound if mode == "s3" else 2 * bound
    return [
        Check("duplicates bounded", total <= kills * bound, f"{total} duplicates <= {kills} kills x {bound}"),
        Check(
            "duplicates bounded per kill",
            per_kill[:1] == [0] and most <= limit,
            f"at most {most} between two kills <= {limit}; {per_kill[0] if per_kill else 0} before the first",
        ),
    ]


def _judge(  # noqa: PLR0917 - private helper of run_crash
    result: CrashResult,
    inputs: Inputs,
    standin: StandIn,
    folder: Path,
    settings: SinkSettings,
    final_ok: bool,
    kills: int,
) -> None:
    ids = standin.event_ids()
    dead = read_dead_letters(folder / "dead-letters")
    t = tally(result.sink, inputs.expected, ids, dead)
    result.tally = t
    marks = [e.stored_after for e in result.kills]
    result.duplicates_per_kill = duplicates_after(inputs.expected, ids, marks)
    result.bound_per_kill = bound_per_kill(result.sink, settings, inputs.max_object_records)
    n = len(result.kills)
    checks = [
        Check("kills", n >= kills, f"{n} kills (wanted {kills})"),
        Check("drained", final_ok, f"final run(s) exited cleanly in {result.final_runs} run(s)"),
        Check("no loss", t.lost == 0, f"{t.lost} missing of {t.records}; first: {t.missing[:3]}"),
        Check(
            "dead letters explained",
            t.unexplained_dead_letters == 0,
            f"{t.dead_lettered} dead-lettered with a reason, {t.unexplained_dead_letters} without",
        ),
        Check("nothing foreign", t.unexpected == 0, f"{t.unexpected} stored records not in the input"),
    ]
    checks += duplicate_checks(
        result.sink, result.mode, t.duplicates, result.duplicates_per_kill, result.bound_per_kill
    )
    if result.mode == "s3":
        done = _checkpointed(folder)
        checks.append(
            Check("all checkpointed", done >= inputs.objects, f"{done} checkpoints, {inputs.objects} objects")
        )
    result.checks = checks
