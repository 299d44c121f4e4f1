"""The ``trailrelay`` command line."""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson

from trailrelay import __version__
from trailrelay.cli.logs import setup_logging
from trailrelay.cli.report import print_summary, progress_reporter
from trailrelay.config import (
    Config,
    FilesSourceConfig,
    FirehoseSourceConfig,
    LambdaSourceConfig,
    S3SourceConfig,
    SqsSourceConfig,
    StdinSourceConfig,
    load_config,
)
from trailrelay.errors import ConfigError, SinkError, TrailrelayError
from trailrelay.helpers import check_writable, exception_text, output_errors
from trailrelay.plugins import COMMANDS_GROUP, installed_sinks

if TYPE_CHECKING:
    from collections.abc import Callable

    from trailrelay.detection.evaluate import SigmaTagger
    from trailrelay.detection.shared import SharedWindows
    from trailrelay.pipeline.runner import RunResult

__all__ = [
    "EXIT_CONFIG",
    "EXIT_DEAD_LETTERS",
    "EXIT_FATAL",
    "EXIT_OK",
    "EXIT_UNFINISHED",
    "cli",
    "exit_status",
    "main",
]

log = logging.getLogger("trailrelay.cli")


class _LazyConsole:
    """The stderr console, built on first use (rich is not loaded before anything is printed)."""

    _console: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console  # noqa: PLC0415

            self._console = Console(stderr=True, soft_wrap=True)
        return getattr(self._console, name)


err: Any = _LazyConsole()


def _fail(label: str, message: object) -> None:
    """``label`` in red, then ``message`` as plain text (never read as markup: "[state] path")."""
    from rich.markup import escape  # noqa: PLC0415

    err.print(f"[red]{label}[/red] {escape(str(message))}", highlight=False)


EXIT_OK = 0
"""Everything read was delivered (or filtered out, or was a duplicate)."""
EXIT_CONFIG = 2
"""The configuration (or a command's arguments) cannot work; nothing was sent."""
EXIT_FATAL = 3
"""A sink failed fatally (bad token, missing index) or the source failed; the run stopped."""
EXIT_DEAD_LETTERS = 4
"""The run finished, but some records are dead letters (see the summary and the folder)."""
EXIT_UNFINISHED = 5
"""The run stopped with work left unfinished (a signal, an unreadable object, a drain timeout):
those units were not acknowledged and will be read again by the next run."""

# Commands whose modules are imported only when called: ``forward`` starts without them.
_LAZY = {
    "athena": ("trailrelay.athena.cli", "athena", "Athena DDL and hunting queries for the trail in S3."),
    "canary": ("trailrelay.cli.canary", "canary", "Send a marked StopLogging and time it until searchable."),
    "cost": ("trailrelay.cost.cli", "cost", "Measure what forwarding this trail would cost in each SIEM."),
    "doctor": ("trailrelay.doctor.cli", "doctor_command", "Check that the trail itself can be trusted."),
    "mirror": (
        "trailrelay.integrity.cli",
        "mirror_command",
        "Copy a trail (logs, digests, keys) for offline checks.",
    ),
    "package": ("trailrelay.cli.package_cmd", "package", "Build deployment packages (Lambda zip)."),
    "reveal": (
        "trailrelay.privacy.cli",
        "reveal_command",
        "Tell which candidate a pseudonym token stands for.",
    ),
    "rules": ("trailrelay.detection.cli", "rules", "List, test and export the Sigma detection rules."),
    "verify": (
        "trailrelay.integrity.cli",
        "verify_command",
        "Prove the logs were not tampered with (digests).",
    ),
}


class _LazyGroup(click.Group):
    """Loads a sub-command's module (or a connector's command group) only when it is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from importlib.metadata import entry_points  # noqa: PLC0415

        names = set(super().list_commands(ctx)) | set(_LAZY)
        names |= {ep.name for ep in entry_points(group=COMMANDS_GROUP)}
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        if cmd_name in _LAZY:
            import importlib  # noqa: PLC0415

            module, attr, _ = _LAZY[cmd_name]
            loaded: click.Command = getattr(importlib.import_module(module), attr)
            return loaded
        return _connector_command(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Help lists lazy commands by their short text, without importing them."""
        rows = []
        for name in self.list_commands(ctx):
            if name in _LAZY:
                rows.append((name, _LAZY[name][2]))
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(formatter.width - 6 - len(name))))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _connector_command(name: str) -> click.Command | None:
    """A connector's command group (entry point ``trailrelay.commands``), loaded on use."""
    from importlib.metadata import entry_points  # noqa: PLC0415

    from trailrelay.services import provide_core_services  # noqa: PLC0415 - only connector commands use it

    provide_core_services()
    for ep in entry_points(group=COMMANDS_GROUP, name=name):
        try:
            group = ep.load()
        except Exception as exc:  # a broken extension must not break the rest of the CLI
            log.warning("the %r commands of %s failed to load: %s", name, ep.value, exc)
            return None
        return group if isinstance(group, click.Command) else None
    return None


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="trailrelay")
def cli() -> None:
    """Move AWS CloudTrail into Splunk, Elastic, OpenSearch or Microsoft Sentinel."""


def _load(path: Path) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        _fail("config error", f"in {path}: {exc}")
        raise SystemExit(EXIT_CONFIG) from None


@cli.command()
@click.option("-c", "--config", "config_path", required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--once", is_flag=True, help="Stop when the source is drained (an SQS queue: after one empty long poll)."
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Worker processes: on one SQS queue, or sharing a files/S3 backfill (each object read once).",
)
@click.option(
    "--shard", hidden=True, metavar="I/N", help="Read only worker I's share of N (set by --workers)."
)
@click.option("--health", metavar="HOST:PORT", help="Serve /healthz and /metrics (Prometheus) here.")
@click.option("--log-format", type=click.Choice(["auto", "text", "json"]), default="auto", show_default=True)
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on in a terminal).")
@click.option(
    "--summary-json", type=click.Path(path_type=Path, dir_okay=False), help="Write the final counters here."
)
def forward(  # noqa: PLR0917 - click passes options positionally by name
    config_path: Path,
    once: bool,
    workers: int,
    health: str | None,
    log_format: str,
    progress: bool | None,
    summary_json: Path | None,
    shard: str | None = None,
) -> None:
    """Forward CloudTrail from the configured source to every configured sink."""
    tty = sys.stderr.isatty()
    fmt = "json" if log_format == "json" or (log_format == "auto" and not tty) else "text"
    setup_logging(fmt)
    config = _load(config_path)
    listing = isinstance(config.source, (FilesSourceConfig, S3SourceConfig))
    if workers > 1 and not (listing or isinstance(config.source, SqsSourceConfig)):
        err.print(f"--workers works with files, s3 and sqs sources, not {config.source.type}")
        raise SystemExit(EXIT_CONFIG)
    if summary_json is not None:  # refused now, not after the whole run
        with output_errors(summary_json):
            check_writable(summary_json)
    try:
        _preflight(config, checkpoints=workers > 1 and listing)
        if health:
            from trailrelay.pipeline.health import check_listen  # noqa: PLC0415

            check_listen(health)
    except TrailrelayError as exc:
        _fail("error:", exc)
        raise SystemExit(EXIT_CONFIG) from None
    if workers > 1:
        from trailrelay.cli.fleet import can_fork, run_fleet  # noqa: PLC0415

        body = None
        shared = None
        if listing and can_fork():  # workers forked once start-up is done: none pays it again
            _preload(config)
            shared = _shared_windows(config, workers)

            def body(index: int, summary: Path) -> None:
                _forward_one(
                    config,
                    once=True,
                    shard=(index, workers),
                    health=None,
                    progress=False,
                    fmt=fmt,
                    tty=False,
                    summary_json=summary,
                    shared=(shared, index) if shared is not None else None,
                )

            _tune_gc()
        try:
            code, snapshot = run_fleet(
                config_path,
                workers,
                once=once or listing,
                health=health,
                log_format=fmt,
                shards=listing,
                max_idle=_max_idle(config),
                body=body,
                after_fork=shared.serve if shared is not None else None,
            )
        finally:
            if shared is not None:
                shared.close()
        if snapshot is not None:
            if summary_json:
                summary_json.write_bytes(orjson.dumps(snapshot, option=orjson.OPT_INDENT_2))
            if fmt == "text":
                print_summary(err, snapshot, dead_letters=str(config.dead_letter_path()))
            log.info("run finished", extra={"summary": snapshot})
            if code == EXIT_OK:  # not after a failure: the listing may not have run at all
                _warn_if_nothing_found(config, snapshot)
        raise SystemExit(code)
    _forward_one(
        config,
        once=once,
        shard=_shard(shard),
        health=health,
        progress=progress,
        fmt=fmt,
        tty=tty,
        summary_json=summary_json,
    )


def _preflight(config: Config, *, checkpoints: bool) -> None:
    """Say now, once (for a fleet too), what would otherwise fail later: ConfigError.

    A files source's missing path; a dead-letter folder that cannot be made (found at the first
    bad record, hours in, otherwise). ``checkpoints``: make the checkpoint database too, before
    a backfill's workers start (opening a new one together, they wait on each other).
    """
    from trailrelay.pipeline.build import files_source_path  # noqa: PLC0415

    path = files_source_path(config)
    if path is not None:
        _not_inside(config, path)
    if config.dead_letter.s3_uri is None:
        folder = config.dead_letter_path()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"cannot make the dead-letter folder {folder} ([dead_letter] path): {exc.strerror or exc}"
            ) from None
    if checkpoints:
        from trailrelay.state import Checkpoints  # noqa: PLC0415

        Checkpoints(config.state_path(), sinks=[sc.display_name for sc in config.sinks]).close()


def _not_inside(config: Config, source: Path) -> None:
    """ConfigError when a file sink or the dead-letter folder writes under the files source's path.

    The next run would read that output back as input (``.ndjson`` is a log file to the source):
    every record forwarded again, and again, each run.
    """
    from trailrelay.sinks.file_config import FileConfig  # noqa: PLC0415

    read = source.resolve()
    written = [(f"sink {sc.display_name!r}", sc.path) for sc in config.sinks if isinstance(sc, FileConfig)]
    if config.dead_letter.s3_uri is None:
        written.append(("[dead_letter] path", config.dead_letter_path()))
    for what, out in written:
        resolved = out.resolve()
        if resolved == read or read in resolved.parents:
            raise ConfigError(
                f"{what} writes {out} under the source path {source}: "
                "the next run would read it back as input"
            )


def _shared_windows(config: Config, workers: int) -> SharedWindows | None:
    """The supervisor's correlation windows for forked workers (None without correlation rules)."""
    detection = config.detection
    if not (detection.pack or detection.rules):
        return None
    from trailrelay.detection.evaluate import SigmaTagger  # noqa: PLC0415
    from trailrelay.detection.shared import SharedWindows  # noqa: PLC0415

    try:
        windows = SigmaTagger(detection, base_dir=config.base_dir).windows
    except TrailrelayError as exc:  # the workers report a bad rule themselves
        log.debug("no shared correlation windows: %s", exc)
        return None
    return SharedWindows(windows, workers) if windows else None


def _preload(config: Config) -> None:
    """Import what a run of ``config`` needs (pipeline, detection, its sinks' connectors)."""
    import trailrelay.pipeline.forwarder  # noqa: F401, PLC0415
    from trailrelay.plugins import load_sink  # noqa: PLC0415

    for sc in config.sinks:
        try:
            load_sink(sc.type)
        except TrailrelayError:  # not installed: each worker reports it as it would alone
            continue


def _forward_one(
    config: Config,
    *,
    once: bool,
    shard: tuple[int, int] | None,
    health: str | None,
    progress: bool | None,
    fmt: str,
    tty: bool,
    summary_json: Path | None,
    shared: tuple[SharedWindows, int] | None = None,
) -> None:
    """One forwarding process (or one forked worker of a fleet): raises SystemExit with its status.

    ``shared``: the supervisor's correlation windows and this worker's index (forked workers).
    """
    from trailrelay.pipeline.forwarder import build_pipeline  # noqa: PLC0415
    from trailrelay.pipeline.process import SUPERVISOR_ENV, stop_with_parent  # noqa: PLC0415
    from trailrelay.sources.base import CLAIMS_ENV  # noqa: PLC0415

    stop = threading.Event()
    _install_signal_handlers(stop)
    supervisor = os.environ.get(SUPERVISOR_ENV)
    if supervisor and supervisor.isdigit():  # a fleet's worker: it ends with its supervisor
        stop_with_parent(int(supervisor), stop)
    live = (SqsSourceConfig, FirehoseSourceConfig)
    show = progress if progress is not None else (tty and not isinstance(config.source, live))
    with progress_reporter(enabled=show) as on_progress:
        try:
            claims = os.environ.get(CLAIMS_ENV) if shard is not None else None  # set by the fleet
            built = build_pipeline(
                config,
                once=once,
                stop=stop,
                progress=on_progress,
                shard=shard,
                claims=Path(claims) if claims else None,
            )
        except SinkError as exc:
            _fail("sink error:", exc)
            raise SystemExit(EXIT_FATAL) from None
        except TrailrelayError as exc:
            _fail("error:", exc)
            raise SystemExit(EXIT_CONFIG) from None
        pipeline = built.pipeline
        if shared is not None and built.tagger is not None:
            shared[0].attach(shared[1], built.tagger)
        max_idle = _max_idle(config)
        server = None
        if health:  # http.server only when asked for: start-up stays lean
            from trailrelay.pipeline.health import HealthServer, pipeline_health  # noqa: PLC0415

            server = HealthServer(health, pipeline_health(pipeline, max_idle)).start()
        metrics_file = os.environ.get("TRAILRELAY_METRICS_FILE")
        writer_stop = threading.Event()
        if metrics_file:  # a fleet's worker: the supervisor reads its counters and idle verdict
            from trailrelay.pipeline.health import (  # noqa: PLC0415
                health_snapshot,
                pipeline_health,
                report_every,
                write_snapshots,
            )

            provider = health_snapshot(pipeline_health(pipeline, max_idle))
            write_snapshots(provider, metrics_file, writer_stop, report_every())
        _tune_gc()
        result = pipeline.run()
        writer_stop.set()
        if server is not None:
            server.stop()
    for sink in built.sinks.values():
        if not result.stuck:  # a sink whose request hangs may hang in close too (its lock, a flush)
            sink.close()
    if built.checkpoints is not None:
        built.checkpoints.close()
    snapshot = result.metrics.snapshot()
    snapshot["filtered_by_rule"] = dict(built.record_filter.dropped)
    privacy: Any = built.extras.get("privacy") or {}
    if privacy:
        snapshot["privacy"] = {name: pz.stats() for name, pz in privacy.items()}
    integrity: Any = built.extras.get("integrity")
    if integrity is not None:  # checks run, events sent, verdicts (integrity events are not records_in)
        snapshot["integrity"] = integrity.stats
    if metrics_file:
        Path(metrics_file).write_bytes(orjson.dumps(snapshot))
    if summary_json:
        summary_json.write_bytes(orjson.dumps(snapshot, option=orjson.OPT_INDENT_2))
    if fmt == "text":  # JSON logs (the default off a terminal) carry the summary in the line below
        print_summary(err, snapshot, dead_letters=str(config.dead_letter_path()))
    log.info("run finished", extra={"summary": snapshot})
    from trailrelay.sources.stdin import StdinSource  # noqa: PLC0415 - built above when configured

    source = pipeline.source
    unsent = source.lost if isinstance(source, StdinSource) else 0  # dead-lettered: no hand-back
    code = exit_status(result, snapshot, once=once, unsent=unsent)
    if shard is None and code == EXIT_OK:  # not after a failure; a fleet's supervisor looks at the totals
        _warn_if_nothing_found(config, snapshot)
    if result.fatal:
        _fail("stopped:", result.fatal)
    if result.stuck:  # a hung request would hold the interpreter's exit (its thread is joined)
        log.warning(
            "%d records were still in a request at the drain deadline: exiting without waiting "
            "for it (their units were not acknowledged and come again)",
            result.stuck,
        )
        logging.shutdown()
        sys.stderr.flush()  # not stdout: the hung request may be a write to it, holding its lock
        os._exit(code)
    raise SystemExit(code)


def _max_idle(config: Config) -> float:
    """Seconds without source activity after which ``/healthz`` says unhealthy."""
    if config.source.type == "firehose":  # a push source may be idle for hours and still healthy
        return float("inf")
    return 3 * getattr(config.source, "wait_seconds", 100) + 60


def _warn_if_nothing_found(config: Config, snapshot: dict[str, Any]) -> None:
    """Say so when a files or S3 listing found nothing at all: a wrong path or prefix looks like that.

    Not when everything listed was skipped (already forwarded, digests, other files): a second
    run of a backfill finds nothing new, and the summary counts why.
    """
    if snapshot.get("objects_read") or snapshot.get("skipped"):
        return
    source = config.source
    if isinstance(source, S3SourceConfig):
        where, keys = f"s3://{source.bucket}/{source.prefix}", "bucket and prefix"
    else:
        path = config.files_path()  # None for other sources and standard input
        if path is None:
            return
        where, keys = str(path), "path"
    log.warning(
        "the source found nothing to read under %s: check [source] %s (CloudTrail writes its "
        "logs under AWSLogs/ in the bucket, an organization trail under AWSLogs/o-.../)",
        where,
        keys,
    )


def exit_status(result: Any, snapshot: dict[str, Any], *, once: bool, unsent: int = 0) -> int:
    """The documented exit status of a forward run (see the EXIT_* constants).

    A worker (no ``--once``) stopped by a signal hands its in-flight units back by design;
    that is a clean end, not unfinished work. A ``--once`` run stopped before its source ran
    out left work unread even when nothing was in flight at the signal. ``unsent``: records a
    source that cannot offer them again (standard input) dead-lettered as not finished: there is
    no hand-back, so the run is unfinished, whatever ended it.
    """
    if result.fatal:
        return EXIT_FATAL
    if unsent > 0:
        return EXIT_UNFINISHED
    unfinished = snapshot.get("units_released", 0) > 0 or result.open_units > 0
    if unfinished and (once or not result.stopped):
        return EXIT_UNFINISHED
    if once and result.stopped and not result.drained:
        return EXIT_UNFINISHED
    if sum(snapshot.get("dead_lettered", {}).values()) > 0:
        return EXIT_DEAD_LETTERS
    return EXIT_OK


def _tune_gc() -> None:
    """Start-up is over: settle the allocator and keep start-up's objects out of collections."""
    from trailrelay.pipeline.process import freeze_startup, tune_allocator  # noqa: PLC0415

    tune_allocator()
    freeze_startup()


def _shard(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    index, _, count = value.partition("/")
    return int(index), int(count)


def _install_signal_handlers(stop: threading.Event) -> None:
    from trailrelay.pipeline.process import SAME_STOP_SECONDS  # noqa: PLC0415

    first: list[float] = []

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set():
            if time.monotonic() - first[0] < SAME_STOP_SECONDS:
                return
            log.warning("second signal: exiting now; unacknowledged work will be delivered again")
            os._exit(130)
        first.append(time.monotonic())
        log.warning("%s received: finishing in-flight work, then stopping", signal.Signals(signum).name)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)


@cli.command()
@click.option("-c", "--config", "config_path", required=True, type=click.Path(path_type=Path, dir_okay=False))
def check(config_path: Path) -> None:
    """Validate the config, build what forward builds, and reach the source and every sink (nothing is sent).

    Forward's detection rules, filters and pseudonymizers (with their key) are built as forward
    builds them: what would stop forward at start fails its line here, in forward's words.
    """
    setup_logging("text", "WARNING")
    config = _load(config_path)
    from rich.console import Console  # noqa: PLC0415

    from trailrelay.helpers import scrub  # noqa: PLC0415
    from trailrelay.pipeline.build import build_sink  # noqa: PLC0415
    from trailrelay.settings import secret_values  # noqa: PLC0415

    out = Console()
    ok = True
    src_ok, src_msg = _check_source(config)
    out.print(
        f"{'✓' if src_ok else '✗'} source ({config.source.type}): {src_msg}", highlight=False, markup=False
    )
    ok &= src_ok
    for part, part_ok, msg in _check_built(config):
        out.print(f"{'✓' if part_ok else '✗'} {part}: {msg}", highlight=False, markup=False)
        ok &= part_ok
    for sc in config.sinks:
        name = sc.display_name
        secrets = secret_values(sc)  # scrubbed from what an exception says: its text is shown
        try:
            sink = build_sink(sc)
            sink.open()
            try:
                result = sink.check()
            finally:
                sink.close()
            out.print(
                f"{'✓' if result.ok else '✗'} sink {name} ({sc.type}): {result.summary}",
                highlight=False,
                markup=False,
            )
            ok &= result.ok
        except TrailrelayError as exc:
            out.print(f"✗ sink {name} ({sc.type}): {scrub(str(exc), secrets)}", highlight=False, markup=False)
            ok = False
        except Exception as exc:  # a connector's bug: say so, and still check the other sinks
            said = f"{type(exc).__name__}: {exception_text(exc, secrets)}"
            hide = [str(exc)] if isinstance(exc, UnicodeError) else []  # it quotes a character
            trace = scrub("".join(traceback.format_exception(exc)), [*hide, *secrets])
            log.debug("check of sink %s failed (%s):\n%s", name, said, trace)
            out.print(
                f"✗ sink {name} ({sc.type}): the check failed unexpectedly: {said}",
                highlight=False,
                markup=False,
            )
            ok = False
    raise SystemExit(0 if ok else 1)


def _check_built(config: Config) -> list[tuple[str, bool, str]]:
    """(part, ok, what) for detection, the filters, checkpoints and privacy, as forward has them.

    The checkpoint database is read only: a new one is not made, an older one not upgraded.
    """
    from trailrelay.pipeline.build import build_privacy, build_transforms  # noqa: PLC0415
    from trailrelay.transforms.filters import FilterConfig, RecordFilter  # noqa: PLC0415

    lines = [("detection", *_built(lambda: _detection_summary(build_transforms(config)[2])))]

    def filters() -> str:
        tables: list[tuple[str, FilterConfig]] = [("[filter]", config.filter)]
        tables += [(f"sink {sc.display_name}", sc.filter) for sc in config.sinks]
        said = []
        for where, table in tables:
            RecordFilter(table)  # as forward builds it
            if table.rules or table.default == "drop":
                said.append(f"{where} {_rules(len(table.rules))}, default {table.default}")
        return "; ".join(said) or "none (every record goes to every sink)"

    lines.append(("filters", *_built(filters)))
    if isinstance(config.source, (FilesSourceConfig, S3SourceConfig)) or config.integrity.enabled:
        from trailrelay.state import describe  # noqa: PLC0415

        lines.append(("state", *_built(lambda: describe(config.state_path()))))
    if config.privacy is not None:

        def privacy() -> str:
            profiles = sorted(build_privacy(config).items())
            if not profiles:
                return "no sink gets a profile"
            return ", ".join(f"sink {name} gets profile {pz.name}" for name, pz in profiles)

        lines.append(("privacy", *_built(privacy)))
    return lines


def _built(build: Callable[[], str]) -> tuple[bool, str]:
    """(True, what ``build()`` says), or (False, why it failed: forward's message for a TrailrelayError)."""
    try:
        return True, build()
    except TrailrelayError as exc:
        return False, str(exc)
    except Exception as exc:
        log.debug("check failed:\n%s", "".join(traceback.format_exception(exc)))
        return False, f"failed unexpectedly: {type(exc).__name__}: {exc}"


def _detection_summary(tagger: SigmaTagger | None) -> str:
    if tagger is None:
        return "off (pack = false, no rules)"
    skipped = len(tagger.plan.skipped)
    return f"{_rules(len(tagger.rules))} loaded" + (
        f", {skipped} skipped (not for aws/cloudtrail)" if skipped else ""
    )


def _rules(n: int) -> str:
    return f"{n} rule" if n == 1 else f"{n} rules"


def _check_source(config: Config) -> tuple[bool, str]:
    """(ok, what) for the source: an S3 or SQS source's line is ✓ only when a log file can be read.

    S3: one log file under the prefix is found and its first byte read (a ranged GET). SQS: the
    queue's attributes, one receive that hides nothing (see :func:`_check_queue`) and, when a
    waiting message names an object, its first byte.
    """
    from trailrelay.sources.aws import AssumeRoleError, aws_client  # noqa: PLC0415

    src = config.source
    try:
        if isinstance(src, StdinSourceConfig) or (
            isinstance(src, FilesSourceConfig) and str(src.path) == "-"
        ):
            return True, "standard input: records are read from whatever is piped in"
        path = config.files_path()
        if path is not None:
            return (path.exists(), f"{path} {'exists' if path.exists() else 'does not exist'}")
        if isinstance(src, S3SourceConfig):
            from trailrelay.sources.s3 import find_log_object, read_denied  # noqa: PLC0415

            s3 = aws_client("s3", region=src.region, endpoint_url=src.endpoint_url, role_arn=src.role_arn)
            where = f"s3://{src.bucket}/{src.prefix}"
            key, seen = find_log_object(s3, src.bucket, src.prefix, insights=src.insights)
            if key is None:
                return False, (
                    f"listed {where}: {seen} (check [source] prefix: CloudTrail writes its logs "
                    "under AWSLogs/ in the bucket, an organization trail under AWSLogs/o-.../)"
                )
            denied = read_denied(s3, src.bucket, key)
            if denied is not None:
                return False, f"can list {where} but {denied}"
            return True, f"can list {where} and read s3://{src.bucket}/{key}"
        if isinstance(src, FirehoseSourceConfig):
            from trailrelay.sources.firehose import build_firehose_source  # noqa: PLC0415

            # what forward does first: load the TLS pair and listen; then let the address go at once
            build_firehose_source(src, base_dir=config.base_dir).close()
            tls = "TLS" if src.tls_cert else "plain HTTP (terminate TLS in front)"
            return True, f"can listen on {src.listen}, {len(src.secret_keys())} access key(s), {tls}"
        if isinstance(src, LambdaSourceConfig):
            return True, "lambda: each invocation's event is the source"
        assert isinstance(src, SqsSourceConfig)
        sqs = aws_client("sqs", region=src.region, endpoint_url=src.endpoint_url, role_arn=src.role_arn)
        attrs = sqs.get_queue_attributes(QueueUrl=src.queue_url, AttributeNames=["All"])["Attributes"]
        note = (
            "" if "RedrivePolicy" in attrs else " (warning: no redrive policy; poison messages retry forever)"
        )
        said = f"queue reachable, ~{attrs.get('ApproximateNumberOfMessages', '?')} messages"
        max_receives = _max_receive_count(attrs)
        if max_receives is not None and max_receives < CHECK_RECEIVE_MIN:
            what = (
                f"receiving not checked: the redrive policy's maxReceiveCount is {max_receives}, and a "
                f"check's receive counts toward it (checked from {CHECK_RECEIVE_MIN})"
            )
            return True, f"{said}, {what}"
        ok, what = _check_queue(src, sqs)
        return ok, f"{said}, {what}{note}" if ok else f"{said} but {what}"
    except TrailrelayError as exc:  # worded for people already, as forward shows it
        return False, str(exc)
    except AssumeRoleError as exc:  # names the role already, as forward shows it
        return False, str(exc)
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"


CHECK_RECEIVE_MIN = 5
"""``check`` receives a message only from a queue whose messages survive five receives before
they go to the dead-letter queue (AWS's advice for a queue behind Lambda): its receive counts."""


def _max_receive_count(attrs: dict[str, Any]) -> int | None:
    """The redrive policy's maxReceiveCount, or None without one (or when it cannot be read)."""
    try:
        return int(orjson.loads(attrs["RedrivePolicy"])["maxReceiveCount"])
    except (KeyError, TypeError, ValueError, orjson.JSONDecodeError):
        return None


def _check_queue(src: SqsSourceConfig, sqs: Any) -> tuple[bool, str]:
    """Whether the queue lets us receive, and the bucket of a waiting notification lets us read.

    One receive of at most one message with a visibility timeout of 0, not waiting: a message
    that comes back stays visible to every worker at once and is neither changed nor deleted
    (its receive count goes up by one, as SQS counts every receive).
    """
    from botocore.exceptions import ClientError  # noqa: PLC0415

    from trailrelay.sources.aws import aws_client, queue_region  # noqa: PLC0415
    from trailrelay.sources.notifications import cloudtrail_event, parse_notification  # noqa: PLC0415
    from trailrelay.sources.s3 import read_denied  # noqa: PLC0415

    try:
        resp = sqs.receive_message(
            QueueUrl=src.queue_url, MaxNumberOfMessages=1, WaitTimeSeconds=0, VisibilityTimeout=0
        )
    except ClientError as exc:
        return False, f"cannot receive messages: {exc}"
    messages = resp.get("Messages", [])
    if not messages:
        return True, "can receive (no message waiting: reading its bucket not checked)"
    body = messages[0].get("Body", "")
    if cloudtrail_event(body) is not None:
        return True, "can receive (the message waiting carries its record: no bucket to read)"
    try:
        notices = parse_notification(body)
    except TrailrelayError:
        notices = []
    if not notices:
        return True, "can receive (the message waiting names no object: reading its bucket not checked)"
    region = src.region or queue_region(src.queue_url)  # as forward builds its S3 client
    s3 = aws_client("s3", region=region, endpoint_url=src.endpoint_url, role_arn=src.role_arn)
    notice = notices[0]
    denied = read_denied(s3, notice.bucket, notice.key)
    if denied is not None:
        return False, f"can receive, {denied}"
    return True, f"can receive and read s3://{notice.bucket}/{notice.key} (a waiting message names it)"


@cli.command()
def sinks() -> None:
    """List the installed sink types with their distributions and versions."""
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    table = Table("sink type", "distribution", "version")
    for s in installed_sinks().values():
        table.add_row(s.name, s.distribution, s.version)
    Console().print(table)


@cli.command()
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
@click.option("--seed", default=7, show_default=True, help="Same seed, same bytes.")
@click.option("--day", type=click.DateTime(["%Y-%m-%d"]), default="2026-03-02", show_default=True)
@click.option(
    "--accounts", default=3, show_default=True, type=click.IntRange(1, 1000), help="Member accounts."
)
@click.option(
    "--events-per-hour",
    default=200,
    show_default=True,
    type=click.IntRange(0, 100_000),
    help="Background events per account and region.",
)
@click.option("--add", is_flag=True, help="Write into a folder that already holds files (another day, say).")
def generate(
    *, out: Path, seed: int, day: dt.datetime, accounts: int, events_per_hour: int, add: bool
) -> None:
    """Write a synthetic organization trail (a day of noise plus an attack) in the S3 key layout.

    OUT must be a new or empty folder unless --add is given (the trails would mix).
    """
    from trailrelay.generate import generate_trail  # noqa: PLC0415

    if not add and out.is_dir() and any(out.iterdir()):
        _fail(
            "error:",
            f"{out} is not empty: name a new or empty folder, or give --add to write this trail into it",
        )
        raise SystemExit(EXIT_CONFIG)
    with output_errors(out):
        out.mkdir(parents=True, exist_ok=True)  # a folder that cannot be made is named as given
        summary = generate_trail(
            out, seed=seed, day=day.date(), accounts=accounts, events_per_hour=events_per_hour
        )
    from rich.console import Console  # noqa: PLC0415

    Console().print(
        f"wrote {summary.records} records in {summary.objects} objects under {summary.root} "
        f"(org {summary.org_id}, accounts {', '.join(summary.accounts)})",
        highlight=False,
    )


@cli.command("replay-dead-letters")
@click.option("-c", "--config", "config_path", required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--from",
    "source",
    type=click.Path(path_type=Path, exists=True),
    help="A dead-letter file or folder (default: the config's dead-letter folder).",
)
@click.option("--sink", "only_sink", help="Replay only entries of this sink.")
def replay_dead_letters(config_path: Path, source: Path | None, only_sink: str | None) -> None:
    """Send dead-lettered records again, each to the sink that rejected it."""
    setup_logging("text")
    config = _load(config_path)
    names = [sc.display_name for sc in config.sinks]
    if only_sink is not None and only_sink not in names:
        raise click.BadParameter(
            f"{only_sink!r} is not a sink of {config_path} (its sinks: {', '.join(names)})",
            param_hint="'--sink'",
        )
    if source is None and config.dead_letter.s3_uri:
        _fail(
            "error:",
            f"the dead letters go to [dead_letter] s3_uri = {config.dead_letter.s3_uri}, and "
            "replay-dead-letters reads local dead-letter files only: download the objects, gunzip "
            "them, and name their folder (or one file) with --from",
        )
        raise SystemExit(EXIT_CONFIG)
    from trailrelay.cli.replay import replay  # noqa: PLC0415

    try:
        runs = replay(config, source or config.dead_letter_path(), only_sink, err)
    except ConfigError as exc:  # the privacy key, say: nothing was claimed or sent
        _fail("config error", f"in {config_path}: {exc}")
        raise SystemExit(EXIT_CONFIG) from None
    raise SystemExit(_replay_status(runs))


def _replay_status(runs: list[RunResult | None]) -> int:
    """The most serious of the sinks' ``forward`` statuses (None: the sink could not open); 0 for none."""
    severity = (EXIT_OK, EXIT_DEAD_LETTERS, EXIT_UNFINISHED, EXIT_FATAL)
    codes = [EXIT_FATAL if r is None else exit_status(r, r.metrics.snapshot(), once=True) for r in runs]
    return max(codes, key=severity.index, default=EXIT_OK)


@cli.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Keep the demo output here (a new or empty folder, or an earlier demo's: replaced).",
)
@click.option("--seed", default=7, show_default=True)
def demo(out: Path | None, seed: int) -> None:
    """Generate a synthetic trail and forward it through the whole pipeline, offline."""
    setup_logging("text", "WARNING")
    from rich.console import Console  # noqa: PLC0415

    from trailrelay.cli.demo import run_demo  # noqa: PLC0415

    console = Console() if sys.stdout.isatty() else Console(width=140)
    try:
        code = run_demo(out, seed, console)
    except ConfigError as exc:
        _fail("error:", exc)
        raise SystemExit(EXIT_CONFIG) from None
    raise SystemExit(code)


def main() -> None:
    """Console-script entry point."""
    cli()
