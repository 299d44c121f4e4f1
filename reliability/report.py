"""``docs/RELIABILITY.md``: the figures of one harness run, written by the harness itself."""

from __future__ import annotations

import datetime as dt
import os
import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from reliability.audit import Finding
from reliability.crash import CrashResult
from reliability.fault_run import KINDS, FaultResult
from reliability.lab import Check
from reliability.soak import SoakResult
from reliability.standins import IDEMPOTENT

__all__ = ["Report", "machine_info", "render"]

VERSIONS = (
    "trailrelay",
    "trailrelay-splunk",
    "trailrelay-elastic",
    "trailrelay-sentinel",
    "trailrelay-opensearch",
    "boto3",
    "moto",
    "requests",
    "elasticsearch",
    "opensearch-py",
    "azure-monitor-ingestion",
    "azure-identity",
)


@dataclass
class Report:
    """Everything one run measured."""

    profile: str
    command: str
    seed: int
    started: dt.datetime
    seconds: float = 0.0
    inputs: str = ""
    notes: list[str] = field(default_factory=list)
    crash: list[CrashResult] = field(default_factory=list)
    faults: FaultResult | None = None
    faults_inputs: str = ""
    soak: SoakResult | None = None
    soak_inputs: str = ""
    audit: list[Finding] | None = None
    audit_sources: str = ""
    audit_error: str | None = None

    def checks(self) -> list[tuple[str, Check]]:
        """Every check of the run, with the scenario it belongs to."""
        out = [(f"crash {c.mode}/{c.sink}", k) for c in self.crash for k in c.checks]
        if self.faults is not None:
            out += [("faults", k) for k in self.faults.checks]
        if self.soak is not None:
            out += [("soak", k) for k in self.soak.checks]
        if self.audit is not None:
            bad = [f for f in self.audit if f.status == "vulnerable"]
            out.append(("supply chain", Check("no known vulnerability", not bad, _names(bad) or "none")))
        return out

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return all(c.ok for _, c in self.checks())


def _names(findings: list[Finding]) -> str:
    return ", ".join(f"{f.name} {f.version} ({', '.join(v.id for v in f.distinct())})" for f in findings)


def machine_info() -> list[tuple[str, str]]:
    """What the figures were measured on."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    versions = []
    for name in VERSIONS:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return [
        ("CPU", f"{cpu}, {os.cpu_count()} cores"),
        ("memory", mem),
        ("system", platform.platform()),
        ("Python", platform.python_version()),
        ("packages", ", ".join(versions)),
    ]


def _mb(kb: int) -> str:
    return f"{kb / 1024:.0f} MB"


def _crash_section(report: Report) -> list[str]:
    if not report.crash:
        return []
    first = report.crash[0]
    lines = [
        "## Crash consistency",
        "",
        (
            f"Input: {report.inputs}. Each scenario runs `trailrelay forward` against a fresh stand-in, "
            "kills it with SIGKILL, restarts it, and finally drains the source. About 30% of the kills "
            "come at a random time after the start (start-up, listing, first requests); the others once "
            "the stand-in has stored a random number of new records (between a request and its "
            "acknowledgement, between an object's last delivery and its checkpoint or SQS delete). "
            "Splunk runs with indexer acknowledgement."
        ),
        "",
        (
            "Checked: every input eventID is stored or dead-lettered with a reason; Elastic and "
            "OpenSearch store no duplicate; for Sentinel duplicates <= kills x (concurrency x batch + "
            "(concurrency + 1) x largest object); for Splunk, whose records wait for their indexer "
            "acknowledgement parked within `max_pending_bytes` "
            f"({first.settings.max_pending_bytes // 1024} KiB here), the bound adds what may be parked "
            "(max_pending_bytes / 40 B + concurrency x batch) and one open object per reader "
            f"(concurrency {first.settings.concurrency}, batches of {first.settings.batch} records; "
            "the bound column shows each scenario's total). Each kill is held to the bound too: "
            "'most between two kills' may not exceed it (SQS: twice it). That column counts the "
            "duplicates stored between one kill and the next (or the end). In S3 listing mode that "
            "is the kill's own count: the restart reads the unfinished objects at once. In SQS mode "
            "a killed worker's messages come back only when their visibility timeout (10 s) runs "
            "out, often after the next kill, so one interval can hold two kills' duplicates; the "
            "bound checked is the total."
        ),
        "",
        (
            "| mode | sink | records | kills (timed/progress) | lost | dead-lettered | duplicates | bound |"
            " most between two kills | final runs | peak RSS | time | result |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in report.crash:
        t = c.tally
        assert t is not None
        timed = sum(1 for k in c.kills if k.trigger == "time")
        bound = "0 (idempotent ids)" if c.sink in IDEMPOTENT else f"{len(c.kills) * c.bound_per_kill:,}"
        per_kill = max(c.duplicates_per_kill[1:], default=0)
        lines.append(
            f"| {c.mode} | {c.sink} | {c.records:,} | {len(c.kills)} ({timed}/{len(c.kills) - timed}) | "
            f"{t.lost} | {t.dead_lettered} | {t.duplicates:,} | {bound} | {per_kill:,} | {c.final_runs} | "
            f"{_mb(c.peak_rss_kb)} | {c.seconds:.0f} s | {'pass' if c.ok else 'FAIL'} |"
        )
    return [*lines, ""]


def _fault_section(report: Report) -> list[str]:
    f = report.faults
    if f is None:
        return []
    s = f.settings
    start, high = f.outage_rss_kb
    lines = [
        "## Faults",
        "",
        (
            f"Input: {report.faults_inputs}, S3 listing mode, one forwarder sending to all three "
            f"stand-ins at once (concurrency {s.concurrency}, batches of {s.batch}, request timeout "
            f"{s.timeout:g} s). Each stand-in answers a random 5% of data requests with 5xx or 429 "
            "(half each), resets 1% mid-request, answers 1% only after the timeout (having stored "
            "them), refuses part of 2% of the batches in its SIEM's own way (Splunk: code 6 with "
            "`invalid-event-number`, the events before it kept; Elastic: every fourth bulk item 429 "
            "`es_rejected_execution_exception`; Sentinel: 400 InvalidPayload for the body, which the "
            "client splits), and once a quarter of the input has arrived, all three go down for "
            f"**{f.outage_seconds:.0f} s** (every connection reset before a reply)."
        ),
        "",
        "| sink | " + " | ".join(KINDS) + " | refused in outage | lost | dead-lettered (reason) |"
        " duplicates | stored but unconfirmed | most pending | result |",
        "|---|" + "---:|" * (len(KINDS) + 1) + "---:|---|---:|---:|---:|---|",
    ]
    for name, t in f.tallies.items():
        inj = f.injected.get(name, {})
        reasons = "; ".join(f"{k}: {v}" for k, v in t.dead_letter_reasons.items()) or "-"
        ok = all(c.ok for c in f.checks if c.name.startswith(f"{name}:"))
        lines.append(
            f"| {name} | "
            + " | ".join(str(inj.get(k, 0)) for k in KINDS)
            + f" | {inj.get('outage', 0)} | {t.lost} | {t.dead_lettered} ({reasons}) | {t.duplicates:,} | "
            f"{f.unconfirmed.get(name, 0):,} | {f.pending_max.get(name, 0):,} | {'pass' if ok else 'FAIL'} |"
        )
    lines += [
        "",
        (
            f"Memory during the outage: {_mb(start)} when it began, {_mb(high)} at most "
            f"({(high - start) / 1024:+.1f} MB over {f.outage_samples} samples; highest in each tenth of "
            f"it: {', '.join(f'{kb / 1024:.0f}' for kb in f.outage_rss_tenths)} MB); records read during "
            f"the outage: {f.read_during_outage:,} (the queues filled, then the readers blocked). Records "
            f"pending per sink never exceeded {max(f.pending_max.values(), default=0):,} (bound "
            f"{f.pending_bound:,} = queue + (concurrency + 1) x batch + readers). Peak RSS "
            f"{_mb(f.peak_rss_kb)}; the run took {f.seconds:.0f} s."
        ),
        "",
    ]
    return lines


def _soak_section(report: Report) -> list[str]:
    s = report.soak
    if s is None:
        return []
    lines = [
        "## Soak",
        "",
        (
            f"Input: {report.soak_inputs}, S3 listing mode, to Splunk (with ack), Elastic and Sentinel at "
            f"once (concurrency {s.settings.concurrency}, batches of {s.settings.batch}), with the random "
            "faults above (no outage)."
        ),
        "",
        (
            f"- **throughput: {s.throughput:,.0f} records/s** ({s.records:,} records, each to three "
            f"sinks, in {s.seconds:.0f} s of the forwarder's wall time, start-up included)"
        ),
        (
            f"- **peak RSS: {_mb(s.peak_rss_kb)}** (median while running {_mb(s.median_rss_kb)}; "
            "target <= 300 MB)"
        ),
        "",
        "| sink | injected | lost | dead-lettered | duplicates | stored but unconfirmed | result |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for name, t in s.tallies.items():
        inj = ", ".join(f"{k} {v}" for k, v in sorted(s.injected.get(name, {}).items()))
        ok = all(c.ok for c in s.checks if c.name.startswith(f"{name}:"))
        lines.append(
            f"| {name} | {inj} | {t.lost} | {t.dead_lettered} | {t.duplicates:,} | "
            f"{s.unconfirmed.get(name, 0):,} | {'pass' if ok else 'FAIL'} |"
        )
    return [*lines, ""]


def _audit_section(report: Report) -> list[str]:
    lines = ["## Supply chain", ""]
    if report.audit is None:
        return [*lines, f"Not run: {report.audit_error or 'skipped'}.", ""]
    counts: dict[str, int] = {}
    sources: dict[str, int] = {}
    for f in report.audit:
        counts[f.status] = counts.get(f.status, 0) + 1
        sources[f.source] = sources.get(f.source, 0) + 1
    lines += [
        f"{len(report.audit)} packages installed by the four distributions (runtime dependencies, "
        f"markers evaluated): " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + ".",
        "",
        report.audit_sources,
        "",
        "| looked up in | packages |",
        "|---|---:|",
        *[f"| {k} | {v} |" for k, v in sorted(sources.items())],
        "",
    ]
    flagged = [f for f in report.audit if f.status != "clean"]
    if flagged:
        lines += ["| package | status | advisories |", "|---|---|---|"]
        lines += [
            f"| {f.name} {f.version} | {f.status} | "
            + (
                ", ".join(f"{v.id} ({', '.join(v.aliases)})" for v in f.distinct())
                or f"{f.source}; latest is {f.latest}"
            )
            + " |"
            for f in flagged
        ]
        lines.append("")
    return lines


def render(report: Report) -> str:
    """The Markdown document."""
    when = report.started.strftime("%Y-%m-%d %H:%M UTC")
    checks = report.checks()
    failed = [(scope, c) for scope, c in checks if not c.ok]
    out = [
        "# Reliability figures",
        "",
        "<!-- Written by `python -m reliability`; do not edit by hand: run it again. -->",
        "",
        (
            f"Measured {when} by the `{report.profile}` profile of the harness in `reliability/` "
            f"(seed {report.seed}, {report.seconds / 60:.1f} minutes). To reproduce, from the repository "
            "root with the four distributions and their `[test]` extras installed (`tox -e reliability` "
            "runs the full profile):"
        ),
        "",
        "```sh",
        report.command,
        "```",
        "",
        f"**{len(checks) - len(failed)} of {len(checks)} checks passed"
        + ("." if not failed else f"; {len(failed)} FAILED (listed at the end).")
        + "** The forwarder runs as real `trailrelay forward` subprocesses against moto (S3, SQS) in "
        "server mode and the connectors' own local stand-ins (Splunk HEC, Elasticsearch, the Logs "
        "Ingestion API with its Entra ID token endpoint over TLS), all on 127.0.0.1.",
        "",
        *_crash_section(report),
        *_fault_section(report),
        *_soak_section(report),
        *_audit_section(report),
        "## Notes",
        "",
        *[f"- {n}" for n in report.notes],
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in machine_info()],
        "",
        "## Every check",
        "",
        "| scenario | check | result | figures |",
        "|---|---|---|---|",
        *[
            f"| {scope} | {c.name} | {'pass' if c.ok else '**FAIL**'} | {c.detail.replace('|', '/')} |"
            for scope, c in checks
        ],
        "",
    ]
    return "\n".join(out)
