"""``python -m reliability``: run the harness and write ``docs/RELIABILITY.md``.

Profiles: ``full`` (the published figures: 20 kills per mode and sink, a 10-minute outage, one
million records through four sinks; about 20 minutes on 2 cores) and ``short`` (a few kills,
a short outage, a few thousand records; what ``tests/reliability`` checks in CI). Options
override single figures; ``--only`` runs some scenarios. Exit status 0 only when every check
passed (the report is written either way).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import math
import pickle
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from reliability.audit import apply_ignores, audit, closure
from reliability.aws import Aws, Inputs, build_inputs
from reliability.crash import run_crash
from reliability.fault_run import FaultResult, run_faults
from reliability.lab import Lab, describe_inputs, log
from reliability.report import Report, render
from reliability.soak import run_soak
from reliability.standins import SINKS, SinkSettings

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = ("crash", "faults", "soak", "audit")


@dataclass(frozen=True)
class Profile:
    """The sizes of one kind of run."""

    name: str
    kills: int
    outage_seconds: float
    crash_events_per_hour: int
    crash_max_objects: int | None
    fault_events_per_hour: int
    fault_max_objects: int | None
    soak_records: int
    soak_accounts: int
    soak_regions: tuple[str, ...]
    parallel_faults: bool


PROFILES = {
    "full": Profile(
        "full",
        20,
        600.0,
        2000,
        None,
        400,
        None,
        1_000_000,
        4,
        ("us-east-1", "eu-west-1"),
        parallel_faults=True,
    ),
    "short": Profile("short", 3, 8.0, 100, 40, 200, None, 5000, 1, ("us-east-1",), parallel_faults=False),
}
CRASH = SinkSettings(batch=200, concurrency=2, timeout=2.0)
SOAK = SinkSettings(batch=500, concurrency=4, timeout=5.0)


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m reliability", description=__doc__.splitlines()[0])
    p.add_argument("--profile", choices=sorted(PROFILES), default="full")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated: {', '.join(SCENARIOS)}")
    p.add_argument("--kills", type=int, help="kills per mode and sink")
    p.add_argument("--outage-seconds", type=float)
    p.add_argument("--soak-records", type=int)
    p.add_argument("--out", type=Path, default=REPO / "docs" / "RELIABILITY.md", help="where the figures go")
    p.add_argument("--no-write", action="store_true", help="print the report instead of writing it")
    p.add_argument(
        "--workdir", type=Path, help="keep the scenarios' files here (default: a temporary folder)"
    )
    p.add_argument("--advisories", type=Path, help="a local OSV advisory database for the audit")
    p.add_argument("--ignore", action="append", default=[], help="reviewed advisory ids the audit accepts")
    p.add_argument(
        "--from-results",
        type=Path,
        metavar="FILE",
        help="render the report from a run's saved results (report.pickle in its --workdir) without running",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the chosen scenarios, write the report, and return the exit status."""
    args = _args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    if args.from_results is not None:
        with args.from_results.open("rb") as fh:
            saved: Report = pickle.load(fh)  # noqa: S301 - our own file, written by this harness
        if args.ignore and saved.audit is not None:  # a review after the run accepts these advisories
            apply_ignores(saved.audit, set(args.ignore))
            saved.command += "".join(f" --ignore {shlex.quote(i)}" for i in args.ignore)
        return _write(saved, args)
    profile = PROFILES[args.profile]
    profile = replace(
        profile,
        kills=args.kills or profile.kills,
        outage_seconds=args.outage_seconds or profile.outage_seconds,
        soak_records=args.soak_records or profile.soak_records,
    )
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="trailrelay-reliability-"))
    workdir.mkdir(parents=True, exist_ok=True)
    argv_text = " ".join(shlex.quote(a) for a in _figure_args(argv if argv is not None else sys.argv[1:]))
    report = Report(
        profile.name,
        f"python -m reliability {argv_text}".strip(),
        args.seed,
        dt.datetime.now(dt.UTC),
    )
    started = time.monotonic()
    aws = Aws()
    try:
        lab = Lab(workdir, aws, args.seed)
        _run(lab, profile, only, report, args)
    finally:
        aws.stop()
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    report.seconds = time.monotonic() - started
    if args.workdir is not None:
        with (workdir / "report.pickle").open("wb") as fh:
            pickle.dump(report, fh)
    return _write(report, args)


def _write(report: Report, args: argparse.Namespace) -> int:
    """Render and write (or print) the report; the exit status says whether every check passed."""
    text = render(report)
    if args.no_write:
        sys.stdout.write(text)
    else:
        args.out.write_text(text)
        log.info("wrote %s", args.out)
    for scope, check in report.checks():
        if not check.ok:
            log.error("FAILED %s: %s: %s", scope, check.name, check.detail)
    return 0 if report.ok else 1


def _figure_args(argv: list[str]) -> list[str]:
    """The arguments that change the figures (not where files go), for the command in the report."""
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("--workdir", "--out"):
            skip = True
            continue
        if a == "--no-write" or a.startswith(("--workdir=", "--out=")):
            continue
        out.append(a)
    return out


def _run(lab: Lab, profile: Profile, only: set[str], report: Report, args: argparse.Namespace) -> None:
    report.notes += _notes(profile)
    fault_thread: threading.Thread | None = None
    fault_box: list[FaultResult] = []
    if "faults" in only:
        fault_inputs = build_inputs(
            lab.aws,
            lab.folder("input-faults"),
            seed=args.seed + 1,
            events_per_hour=profile.fault_events_per_hour,
            accounts=1,
            regions=("us-east-1",),
            with_corpus=False,
            max_generated_objects=profile.fault_max_objects,
        )
        report.faults_inputs = describe_inputs(fault_inputs)

        def faults() -> None:
            fault_box.append(
                run_faults(
                    lab, fault_inputs, outage_seconds=profile.outage_seconds, seed=args.seed, settings=CRASH
                )
            )

        fault_thread = threading.Thread(target=faults, name="faults")
        fault_thread.start()
        if not profile.parallel_faults:
            fault_thread.join()
    if "crash" in only:
        inputs = _crash_inputs(lab, profile, args.seed, report)
        for mode in ("s3", "sqs"):
            for sink in SINKS:
                log.info("crash %s/%s: %d kills", mode, sink, profile.kills)
                report.crash.append(
                    run_crash(lab, inputs, mode, sink, kills=profile.kills, seed=args.seed, settings=CRASH)
                )
    if fault_thread is not None:
        fault_thread.join()
        report.faults = fault_box[0] if fault_box else None
    if "soak" in only:
        # the generator's day is a little under events_per_hour x 24 per account and region: aim 2% high
        hours = 24 * profile.soak_accounts * len(profile.soak_regions)
        eph = math.ceil(profile.soak_records * 1.02 / hours)
        soak_inputs = build_inputs(
            lab.aws,
            lab.folder("input-soak"),
            seed=args.seed + 2,
            events_per_hour=eph,
            accounts=profile.soak_accounts,
            regions=profile.soak_regions,
            with_corpus=False,
        )
        report.soak_inputs = describe_inputs(soak_inputs)
        report.soak = run_soak(lab, soak_inputs, seed=args.seed, settings=SOAK)
    if "audit" in only:
        _audit(report, args)


def _crash_inputs(lab: Lab, profile: Profile, seed: int, report: Report) -> Inputs:
    inputs = build_inputs(
        lab.aws,
        lab.folder("input-crash"),
        seed=seed,
        events_per_hour=profile.crash_events_per_hour,
        accounts=1,
        regions=("us-east-1",),
        with_corpus=True,
        max_generated_objects=profile.crash_max_objects,
    )
    report.inputs = describe_inputs(inputs)
    if inputs.corpus_records == 0:
        report.notes.append(
            "The real CloudTrail corpus was not found ($TRAILRELAY_CORPUS or ../shared/corpus): the crash "
            "scenarios ran on generated data only."
        )
    return inputs


def _audit(report: Report, args: argparse.Namespace) -> None:
    db = args.advisories
    report.audit_sources = (
        "Sources, in order: PyPI's release JSON (what `pip-audit -s pypi` queries; this workplace's "
        "PyPI mirror answers 404 for every release page), PyPI's project JSON (whose vulnerabilities "
        "cover the latest release only, so it settles packages installed at their latest version), "
        + (
            f"then a local OSV advisory database ({_db_date(db)}). "
            if db
            else "and no local advisory database (`--advisories`). "
        )
        + "OSV's API (`pip-audit -s osv`) does not resolve from here."
    )
    try:
        report.audit = apply_ignores(audit(closure(), advisories=db), set(args.ignore))
    except Exception as exc:
        report.audit_error = f"{type(exc).__name__}: {exc}"


def _db_date(db: Path) -> str:
    """The date of the advisory database's last commit, when it is a git checkout."""
    try:
        out = subprocess.run(  # noqa: S603 - fixed arguments
            ["git", "-C", str(db), "log", "-1", "--format=%cs"],  # noqa: S607 - git from PATH
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return f"{db.name}, as of {out}" if out else db.name


def _notes(profile: Profile) -> list[str]:
    notes = [
        (
            "The stand-ins, moto and the harness share one Python process (and one core's worth of GIL) "
            "with each other, and two cores with the forwarder; throughput is a floor for this machine, "
            "not a measure of any SIEM."
        ),
        (
            "SQS mode is slower than S3 listing mode here because moto's ReceiveMessage takes ~0.3 s for "
            "a queue of a few hundred messages; it bounds how fast the SQS scenarios move, not trailrelay."
        ),
        (
            "Duplicates for Splunk and Sentinel are the at-least-once price: a kill, a reply that comes "
            "after the client's timeout, or an acknowledgement that cannot be polled leaves records "
            "stored but unconfirmed, and they are sent again. Elastic's ids make the second copy a 409 "
            "(counted as DUPLICATE by the sink, never stored twice)."
        ),
    ]
    if profile.parallel_faults:
        notes.append(
            "To keep the full run under 25 minutes on 2 cores, the fault scenario (mostly its outage) "
            "runs alongside the crash scenarios."
        )
    if profile.name == "short":
        notes.append(
            f"Short profile: {profile.kills} kills per scenario, a {profile.outage_seconds:.0f}-second "
            f"outage instead of 10 minutes, {profile.soak_records:,} soak records instead of a million."
        )
    return notes


if __name__ == "__main__":
    raise SystemExit(main())
