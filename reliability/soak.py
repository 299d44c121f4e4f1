"""Soak: a large input through three sinks at once with faults on; loss, memory and throughput.

The stand-ins keep only eventIDs (``compact``) so the harness itself stays small, and inject
the same random faults as the fault scenario (no outage). The forwarder's peak RSS is the
kernel's high-water mark for it (VmHWM, sampled every 0.1 s); throughput is records over the
process's wall time (start-up included).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reliability.accounting import Tally, read_dead_letters, tally
from reliability.aws import Inputs
from reliability.fault_run import KINDS
from reliability.faults import FaultPlan, FaultRates
from reliability.forwarder import Forwarder, write_config
from reliability.lab import Check, Lab, log
from reliability.standins import IDEMPOTENT, SINKS, SinkSettings, start_standin

__all__ = ["SoakResult", "run_soak"]


@dataclass
class SoakResult:
    """The soak's figures."""

    records: int
    settings: SinkSettings
    seconds: float = 0.0
    peak_rss_kb: int = 0
    median_rss_kb: int = 0
    injected: dict[str, dict[str, int]] = field(default_factory=dict)
    tallies: dict[str, Tally] = field(default_factory=dict)
    unconfirmed: dict[str, int] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        """Records per second through all three sinks (each record goes to each sink)."""
        return self.records / self.seconds if self.seconds else 0.0

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return all(c.ok for c in self.checks)


def run_soak(
    lab: Lab,
    inputs: Inputs,
    *,
    seed: int,
    settings: SinkSettings,
    rates: FaultRates | None = None,
    rss_limit_mb: float = 300.0,
    timeout: float = 3600.0,
) -> SoakResult:
    """Run the soak and check it."""
    rates = rates or FaultRates()
    folder = lab.folder("soak")
    standins = [start_standin(s, folder, compact=True) for s in SINKS]
    plans = {s.name: FaultPlan(f"{seed}/soak/{s.name}", rates, ensure=KINDS) for s in standins}
    for s in standins:
        s.set_faults(plans[s.name], settings.timeout + 1.5)
    result = SoakResult(inputs.records, settings)
    try:
        config = write_config(
            folder, lab.aws.source_table(bucket=inputs.bucket), [s.sink_table(settings) for s in standins]
        )
        env = {**lab.aws.env()}
        for s in standins:
            env.update(s.env())
        fw = Forwarder(config, env, once=True, tag="soak", sample_every=0.1)
        log.info("soak: %d records through %s", inputs.records, ", ".join(SINKS))
        try:
            run = fw.wait(timeout=timeout)
        except TimeoutError:
            run = fw.kill()
        result.seconds = run.seconds
        result.peak_rss_kb = run.peak_rss_kb
        rss = sorted(kb for _, kb in run.samples)
        result.median_rss_kb = rss[len(rss) // 2] if rss else 0
        dead = read_dead_letters(folder / "dead-letters")
        expected = 4 if dead else 0  # forward's status: 4 = finished, with dead letters
        checks = [Check("clean exit", run.code == expected, f"exit status {run.code} (expected {expected})")]
        for st in standins:
            t = tally(st.name, inputs.expected, st.event_ids(), dead)
            result.tallies[st.name] = t
            result.unconfirmed[st.name] = st.unconfirmed()
            result.injected[st.name] = dict(plans[st.name].counts)
            checks.append(
                Check(
                    f"{st.name}: no loss", t.lost == 0, f"{t.lost} missing; {t.dead_lettered} dead-lettered"
                )
            )
            checks.append(
                Check(
                    f"{st.name}: dead letters explained",
                    t.unexplained_dead_letters == 0,
                    f"{t.unexplained_dead_letters} without a reason",
                )
            )
            limit = 0 if st.name in IDEMPOTENT else result.unconfirmed[st.name]
            checks.append(
                Check(
                    f"{st.name}: duplicates", t.duplicates <= limit, f"{t.duplicates} duplicates <= {limit}"
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
    finally:
        for s in standins:
            s.stop()
    return result
