"""Faults: all three stand-ins misbehave at once, including an outage, while one forwarder runs.

Every stand-in answers 5% of data requests with 5xx or 429, resets some connections mid-request,
answers some requests only after the client's timeout (having stored them), refuses part of some
batches in its SIEM's own way, and, once a share of the input has arrived, goes down for
``outage_seconds`` (every connection reset before a reply). The run must end with every record
delivered or dead-lettered with a reason. During the outage the forwarder's memory must stay
flat and its buffers bounded: what it has read but not finished per sink never exceeds::

    max(1000, 2 x batch) + (concurrency + 1) x batch + readers x chunk

which is what back-pressure allows (a reader waits while its sink holds that many records, and
may add one chunk of an object on top before it does).
Duplicates: none stored for Elastic; for Splunk and Sentinel no more than the stand-in counted
as stored-but-unconfirmed (late replies, acknowledgements that could not be polled).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from reliability.accounting import Tally, read_dead_letters, tally
from reliability.aws import Inputs
from reliability.faults import FaultPlan, FaultRates
from reliability.forwarder import READERS, Forwarder, RunResult, write_config
from reliability.lab import Check, Lab, log
from reliability.standins import IDEMPOTENT, SINKS, SinkSettings, StandIn, start_standin

__all__ = ["FaultResult", "pending", "run_faults"]

KINDS = ("5xx", "429", "reset", "slow", "partial")
CHUNK = 512
"""Records a reader hands over at a time (``trailrelay.pipeline.runner.CHUNK``)."""


def pending(snapshot: dict[str, Any], sink: str) -> int:
    """Records read but not yet final in ``sink``, from a metrics snapshot."""
    done = sum(
        snapshot.get(key, {}).get(sink, 0)
        for key in ("delivered", "duplicates", "rejected", "filtered_by_sink")
    )
    return int(snapshot.get("records_in", 0)) - int(snapshot.get("records_filtered", 0)) - int(done)


@dataclass
class FaultResult:
    """The fault scenario's figures."""

    records: int
    outage_seconds: float
    settings: SinkSettings
    seconds: float = 0.0
    peak_rss_kb: int = 0
    injected: dict[str, dict[str, int]] = field(default_factory=dict)
    tallies: dict[str, Tally] = field(default_factory=dict)
    unconfirmed: dict[str, int] = field(default_factory=dict)
    outage_rss_kb: tuple[int, int] = (0, 0)
    """(RSS when the outage began, highest RSS during it)."""
    outage_rss_tenths: list[int] = field(default_factory=list)
    """Highest RSS in each tenth of the outage (kB): flat, or growing?"""
    outage_samples: int = 0
    read_during_outage: int = 0
    pending_max: dict[str, int] = field(default_factory=dict)
    pending_bound: int = 0
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return all(c.ok for c in self.checks)


def run_faults(
    lab: Lab,
    inputs: Inputs,
    *,
    outage_seconds: float,
    seed: int,
    settings: SinkSettings | None = None,
    rates: FaultRates | None = None,
    outage_at: float = 0.25,
    flat_mb: float = 32.0,
    rss_limit_mb: float = 300.0,
) -> FaultResult:
    """Run the fault scenario (S3 listing mode, three sinks at once) and check it."""
    settings = settings or SinkSettings()
    rates = rates or FaultRates()
    folder = lab.folder("faults")
    standins = [start_standin(s, folder, compact=True) for s in SINKS]
    plans = {s.name: FaultPlan(f"{seed}/faults/{s.name}", rates, ensure=KINDS) for s in standins}
    for s in standins:
        s.set_faults(plans[s.name], settings.timeout + 1.5)
    result = FaultResult(inputs.records, outage_seconds, settings)
    try:
        config = write_config(
            folder,
            lab.aws.source_table(bucket=inputs.bucket),
            [s.sink_table(settings) for s in standins],
            readers=READERS,
        )
        env = {**lab.aws.env()}
        for s in standins:
            env.update(s.env())
        fw = Forwarder(config, env, once=True, tag="faults")
        run = _watch(fw, standins, plans, inputs, result, outage_at, outage_seconds)
        result.seconds = run.seconds
        result.peak_rss_kb = run.peak_rss_kb
        _judge(result, run, standins, plans, inputs, folder, flat_mb, rss_limit_mb, fw)
    finally:
        for s in standins:
            s.stop()
    return result


def _watch(  # noqa: PLR0917 - private helper of run_faults
    fw: Forwarder,
    standins: list[StandIn],
    plans: dict[str, FaultPlan],
    inputs: Inputs,
    result: FaultResult,
    outage_at: float,
    outage_seconds: float,
) -> RunResult:
    """Follow the run: start the outage, sample memory and buffers, wait for the end."""
    begun: float | None = None
    read_at_start: int | None = None
    deadline = time.monotonic() + outage_seconds + 900
    snapshots: list[tuple[float, dict[str, Any]]] = []
    while fw.alive():
        if time.monotonic() > deadline:
            fw.kill()
            break
        now = time.monotonic() - fw.started
        snap = fw.metrics()
        if snap is not None and (not snapshots or snapshots[-1][1] != snap):
            snapshots.append((now, snap))
        if begun is None and min(s.stored_count() for s in standins) >= outage_at * inputs.records:
            for plan in plans.values():
                plan.start_outage(outage_seconds)
            begun = now
            read_at_start = int(snap["records_in"]) if snap else 0
            log.info("faults: outage of %.0fs begins after %.1fs", outage_seconds, now)
        time.sleep(0.25)
    run = fw.wait()
    if begun is not None:
        window = [(t, kb) for t, kb in run.samples if begun <= t <= begun + outage_seconds]
        if window:
            result.outage_rss_kb = (window[0][1], max(kb for _, kb in window))
            result.outage_samples = len(window)
            tenths: dict[int, int] = {}
            for t, kb in window:
                i = min(9, int((t - begun) / outage_seconds * 10))
                tenths[i] = max(tenths.get(i, 0), kb)
            result.outage_rss_tenths = [tenths[i] for i in sorted(tenths)]
        during = [s for t, s in snapshots if begun <= t <= begun + outage_seconds]
        if during and read_at_start is not None:
            result.read_during_outage = int(during[-1]["records_in"]) - read_at_start
    for s in standins:
        result.pending_max[s.name] = max((pending(snap, s.name) for _, snap in snapshots), default=0)
    return run


def _judge(  # noqa: PLR0917 - private helper of run_faults
    result: FaultResult,
    run: RunResult,
    standins: list[StandIn],
    plans: dict[str, FaultPlan],
    inputs: Inputs,
    folder: Any,
    flat_mb: float,
    rss_limit_mb: float,
    fw: Forwarder,
) -> None:
    dead = read_dead_letters(folder / "dead-letters")
    s = result.settings
    result.pending_bound = max(1000, 2 * s.batch) + (s.concurrency + 1) * s.batch + READERS * CHUNK
    expected = 4 if dead else 0  # forward's status: 4 = finished, with dead letters
    checks = [
        Check(
            "clean exit",
            run.code == expected,
            f"exit status {run.code} (expected {expected})"
            + ("" if run.code == expected else fw.log_tail(800)),
        )
    ]
    for st in standins:
        name = st.name
        t = tally(name, inputs.expected, st.event_ids(), dead)
        result.tallies[name] = t
        result.unconfirmed[name] = st.unconfirmed()
        counts: Counter[str] = plans[name].counts
        result.injected[name] = dict(counts)
        checks.append(
            Check(f"{name}: no loss", t.lost == 0, f"{t.lost} missing; {t.dead_lettered} dead-lettered")
        )
        checks.append(
            Check(
                f"{name}: dead letters explained",
                t.unexplained_dead_letters == 0,
                f"{t.unexplained_dead_letters} dead-letter entries without a reason",
            )
        )
        if name in IDEMPOTENT:
            checks.append(Check(f"{name}: no duplicates", t.duplicates == 0, f"{t.duplicates} duplicates"))
        else:
            checks.append(
                Check(
                    f"{name}: duplicates only from unconfirmed requests",
                    t.duplicates <= result.unconfirmed[name],
                    f"{t.duplicates} duplicates <= {result.unconfirmed[name]} stored but unconfirmed",
                )
            )
        missing = [k for k in (*KINDS, "outage") if counts.get(k, 0) == 0]
        checks.append(
            Check(f"{name}: every fault injected", not missing, f"not injected: {missing or 'none'}")
        )
        checks.append(
            Check(
                f"{name}: buffers bounded",
                result.pending_max[name] <= result.pending_bound,
                f"at most {result.pending_max[name]} records pending <= {result.pending_bound}",
            )
        )
    start, high = result.outage_rss_kb
    growth = (high - start) / 1024
    checks.append(
        Check(
            "memory flat during the outage",
            result.outage_samples > 0 and growth <= flat_mb,
            f"{start / 1024:.0f} MB at its start, {high / 1024:.0f} MB at most ({growth:+.1f} MB, "
            f"limit +{flat_mb:.0f} MB; {result.outage_samples} samples)",
        )
    )
    checks.append(
        Check(
            "peak memory",
            run.peak_rss_kb / 1024 <= rss_limit_mb,
            f"{run.peak_rss_kb / 1024:.0f} MB <= {rss_limit_mb:.0f} MB",
        )
    )
    result.checks = checks
