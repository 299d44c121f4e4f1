"""``trailrelay demo``: a synthetic trail through the whole pipeline, with no cloud and no SIEM.

It generates an organization trail (plus a corrupt object and a truncated one, to show what
happens to bad input), forwards it from the files source through tagging and filtering into
the built-in file sink and, for every installed connector, into a folder of the exact request
bodies that connector would send. Then it prints what it saw.
"""

from __future__ import annotations

import dataclasses
import gzip
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from trailrelay.detection.evaluate import SigmaTagger
from trailrelay.errors import ConfigError
from trailrelay.helpers import output_errors
from trailrelay.pipeline.build import build_sink
from trailrelay.pipeline.deadletter import FolderDeadLetters
from trailrelay.pipeline.delivery import SinkRunner
from trailrelay.pipeline.metrics import Metrics
from trailrelay.pipeline.runner import Pipeline, Transform
from trailrelay.plugins import SHIPPED_CONNECTORS, installed_sinks, load_sink
from trailrelay.record import Record
from trailrelay.sinks.encoded import EncodedFolderSink
from trailrelay.sinks.file import FileConfig, FileSink
from trailrelay.sinks.placeholders import placeholder_config
from trailrelay.sources.files import FileSource
from trailrelay.transforms.filters import FilterConfig, RecordFilter

__all__ = ["run_demo"]

_MARK = ".trailrelay-demo"
"""Left in the output folder: the files the demo wrote there, which a later demo may replace."""
_MARK_HEADER = "written by `trailrelay demo`, which replaces these files of its own here:\n"
_OWN = ("trail", "forwarded", "payloads", "dead-letters")
"""What the demo writes in its output folder."""


def _own_files(out: Path) -> list[str]:
    """Every file under the demo's folders in ``out``, relative to it (``forwarded/x.ndjson``)."""
    return sorted(
        p.relative_to(out).as_posix()
        for name in _OWN
        if (out / name).is_dir()
        for p in (out / name).rglob("*")
        if not p.is_dir()
    )


def _fresh(out: Path) -> None:
    """Make ``out`` ready for a run: an earlier demo's output removed, anything else refused.

    An earlier run's files would be read again and appended to (the forwarded file held both
    runs). Only the demo's own folders go, only from a folder an earlier demo marked, and only
    when they hold nothing but the files that demo listed in its mark (someone's notes put in
    ``forwarded/`` would go with them: the run is refused instead).
    """
    if out.is_dir() and any(out.iterdir()):
        mark = out / _MARK
        if not mark.is_file():
            raise ConfigError(
                f"--out {out} is not empty and holds no earlier demo's output: name a new or empty "
                "folder (the demo replaces only its own output)"
            )
        listed = set(mark.read_text(encoding="utf-8", errors="replace").splitlines()[1:])
        foreign = [f for f in _own_files(out) if f not in listed]
        if foreign:
            more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
            raise ConfigError(
                f"--out {out} holds files an earlier demo did not write ({', '.join(foreign[:3])}{more}): "
                "move them, or name a new or empty folder (the demo replaces only its own output)"
            )
        for name in _OWN:
            if (out / name).exists():
                shutil.rmtree(out / name)
    out.mkdir(parents=True, exist_ok=True)
    (out / _MARK).write_text(_MARK_HEADER, encoding="utf-8")


def _list_own_files(out: Path) -> None:
    """Record in the mark what this run wrote (after ``_fresh`` the demo's folders held nothing)."""
    (out / _MARK).write_text(_MARK_HEADER + "".join(f"{f}\n" for f in _own_files(out)), encoding="utf-8")


def _add_bad_input(trail: Path) -> None:
    """Objects a real bucket may hold by mistake: a truncated gzip and a non-CloudTrail JSON."""
    bad = trail / "AWSLogs" / "bad-input"
    bad.mkdir(parents=True, exist_ok=True)
    whole = gzip.compress(b'{"Records": [{"eventVersion": "1.08", "eventID": "x"}]}')
    (bad / "truncated_CloudTrail.json.gz").write_bytes(whole[: len(whole) // 2])
    (bad / "not-cloudtrail.json").write_bytes(b'{"hello": "this is not a CloudTrail log"}')


def run_demo(out: Path | None, seed: int, console: Console) -> int:
    """Run the demo; returns the exit status. ConfigError: ``out`` holds something else."""
    started = time.monotonic()
    tmp = None
    if out is None:
        tmp = tempfile.TemporaryDirectory(prefix="trailrelay-demo-")
        out = Path(tmp.name)
    with output_errors(out):
        _fresh(out)
    try:
        return _run(out, seed, console, started, temporary=tmp is not None)
    finally:
        if tmp is not None:
            tmp.cleanup()
        elif (out / _MARK).is_file():
            with output_errors(out):
                _list_own_files(out)


def _run(out: Path, seed: int, console: Console, started: float, *, temporary: bool) -> int:
    from trailrelay.generate import generate_trail  # noqa: PLC0415

    with output_errors(out):
        summary = generate_trail(out / "trail", seed=seed)
        _add_bad_input(out / "trail")
    console.print(
        f"generated {summary.records:,} CloudTrail records in {summary.objects} objects "
        f"({len(summary.accounts)} accounts, {len(summary.regions)} regions, org {summary.org_id})",
        highlight=False,
    )

    metrics = Metrics()
    stop = threading.Event()
    dead = FolderDeadLetters(out / "dead-letters")
    pipeline = Pipeline(FileSource(out / "trail"), dead_letters=dead, metrics=metrics, stop=stop)
    tagger = SigmaTagger()
    record_filter = RecordFilter(FilterConfig())

    def keep(record: Record) -> Record | None:
        return record if record_filter.keep(record) else None

    transforms: list[Transform] = [tagger, keep]
    pipeline.transforms = transforms
    file_sink = FileSink(FileConfig(type="file", path=out / "forwarded" / "cloudtrail.ndjson"))
    sinks: dict[str, Any] = {"file": file_sink}
    encoders: dict[str, EncodedFolderSink] = {}
    filters: dict[str, FilterConfig] = {}
    skipped_connectors: list[str] = []
    for name in installed_sinks():
        try:
            plugin = load_sink(name)
            placeholder = placeholder_config(name, plugin)
            if placeholder is None:  # the built-in sinks and connectors without demo_config()
                continue
            config = plugin.config_model.validate(placeholder)
            # the connector's own batching and batch_seconds (the sink is never opened: no
            # connection is made), so the requests counted are the ones a forward run would send
            limits = build_sink(config).limits
            enc = EncodedFolderSink(
                plugin.encoder(config),
                out / "payloads" / name,
                dataclasses.replace(limits, max_age=config.batch_seconds, concurrency=1),
            )
        except Exception as exc:  # a broken connector must not break the demo
            skipped_connectors.append(f"{name} ({exc})")
            continue
        encoders[name] = enc
        sinks[name] = enc
        filters[name] = config.filter  # what the SIEM would get: data events out by default
    for name, sink in sinks.items():
        sink.open()
        sink_filter = filters.get(name)
        pipeline.sinks[name] = SinkRunner(
            name,
            sink,
            dead_letters=dead,
            metrics=metrics,
            stop=stop,
            on_fatal=pipeline.on_fatal,
            max_age=0.2,
            record_filter=RecordFilter(sink_filter) if sink_filter is not None else None,
        )
    result = pipeline.run()
    file_sink.close()
    snap = metrics.snapshot()
    _report(console, snap, metrics, encoders, out, summary.attack_event_ids)
    if skipped_connectors:
        console.print(f"connectors not shown: {', '.join(skipped_connectors)}", highlight=False)
    missing = sorted(set(SHIPPED_CONNECTORS) - set(installed_sinks()))
    if missing:
        console.print(f"not installed (pip install trailrelay-<name>): {', '.join(missing)}", highlight=False)
    console.print(
        f"finished in {time.monotonic() - started:.1f}s; output in {out}"
        + (" (temporary, removed now; use --out DIR to keep it)" if temporary else ""),
        highlight=False,
    )
    return 0 if result.ok else 1


def _report(  # noqa: PLR0917 - one call site, all parts of the report
    console: Console,
    snap: dict[str, Any],
    metrics: Metrics,
    encoders: dict[str, EncodedFolderSink],
    out: Path,
    attack: dict[str, str],
) -> None:
    t = Table(title="what the pipeline did", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_row("objects read", f"{snap['objects_read']:,}")
    t.add_row("records read", f"{snap['records_in']:,}")
    for reason, n in sorted(snap["skipped"].items()):
        t.add_row(f"skipped ({reason})", f"{n:,}")
    for stage, n in sorted(snap["dead_lettered"].items()):
        t.add_row(f"dead-lettered ({stage})", f"{n:,}")
    t.add_row("delivered to the file sink", f"{snap['delivered'].get('file', 0):,}")
    console.print(t)

    risks = Table(
        "time (UTC)", "account", "who", "event", "why", title="high-risk events seen", title_justify="left"
    )
    for item in sorted(metrics.high_risk, key=lambda x: x["eventTime"] or ""):
        risks.add_row(
            (item["eventTime"] or "")[11:19],
            item["account"] or "",
            (item["user"] or "").rsplit(":", 1)[-1],
            item["eventName"] or "",
            "; ".join(item["titles"]),
        )
    console.print(risks)
    found = {i["eventID"] for i in metrics.high_risk}
    missed = [name for name, eid in attack.items() if eid not in found]
    if missed:
        console.print(f"[yellow]attack steps not tagged:[/yellow] {', '.join(missed)}", highlight=False)

    sizes = Table(
        "format",
        "records",
        "requests",
        "bytes",
        "gzip bytes",
        "bytes/record",
        title="what each SIEM would receive (data events stay out of SIEMs by default)",
        title_justify="left",
    )
    forwarded = out / "forwarded" / "cloudtrail.ndjson"
    n = snap["records_in"]
    raw = forwarded.stat().st_size if forwarded.exists() else 0
    sizes.add_row("NDJSON archive (file sink)", f"{n:,}", "-", f"{raw:,}", "-", f"{raw / max(1, n):,.0f}")
    for name, enc in encoders.items():
        sent = snap["delivered"].get(name, 0)
        sizes.add_row(
            name,
            f"{sent:,}",
            f"{enc.bodies:,}",
            f"{enc.raw_bytes:,}",
            f"{enc.gzip_bytes:,}",
            f"{enc.raw_bytes / max(1, sent):,.0f}",
        )
    console.print(sizes)
