"""The ``trailrelay verify`` and ``trailrelay mirror`` commands (click; the main group adds them)."""

from __future__ import annotations

import datetime as dt
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

# The verification modules (cryptography, boto3) load inside the commands: `--help` stays fast.

__all__ = ["EXIT_ERROR", "iso_time", "mirror_command", "verify_command"]

EXIT_ERROR = 3
"""The run could not be done (bucket not reachable, access denied)."""


def iso_time(_ctx: click.Context, param: click.Parameter, value: str | None) -> dt.datetime | None:
    """An ISO 8601 option (``2026-03-01T00:00:00Z``, ``2026-03-01``) as an aware UTC time; no zone is UTC."""
    if value is None:
        return None
    try:
        t = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 time such as 2026-03-01T00:00:00Z", param=param
        ) from None
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


class _Stdout(Console):
    """Standard output; when its reader goes away (``| head``) the printing stops, not the command.

    rich's own handling exits 1, which for ``verify`` reads as "did not verify": the command
    exits with its own status instead.
    """

    def on_broken_pipe(self) -> None:
        """Print nothing more (rich calls this on EPIPE)."""
        self.quiet = True
        _discard_stdout()


def _discard_stdout() -> None:
    """Point standard output at /dev/null after EPIPE, so the exit-time flush cannot fail.

    (What the Python documentation's note on SIGPIPE recommends.)
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # not a real file descriptor (a test's buffer): nothing to discard
        return


def _check_window(start: dt.datetime | None, end: dt.datetime | None) -> None:
    """A window that ends before it starts is bad usage (exit 2)."""
    if start and end and start > end:
        raise click.BadParameter("--start is after --end", param_hint="--start")


def _clients(role_arn: str | None) -> tuple[Callable[[], Any], Callable[[str], Any]]:
    from trailrelay.sources.aws import aws_client  # noqa: PLC0415 - boto3 loads slowly; keep --help fast

    cache: dict[str, Any] = {}
    lock = threading.Lock()

    def s3() -> Any:
        return aws_client("s3", role_arn=role_arn)

    def cloudtrail(region: str) -> Any:
        with lock:
            if region not in cache:
                cache[region] = aws_client("cloudtrail", region=region, role_arn=role_arn)
            return cache[region]

    return s3, cloudtrail


@contextmanager
def _progress(enabled: bool, what: str) -> Iterator[Callable[[dict[str, int]], None] | None]:
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: PLC0415

    with Progress(
        TextColumn(f"{what} folders"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}  {task.description}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("", total=None)
        lock = threading.Lock()
        last = [0.0]

        def update(stats: dict[str, int]) -> None:
            now = time.monotonic()
            with lock:
                if now - last[0] < 0.1 and stats.get("folders_done", 0) < stats.get("folders", 0):
                    return
                last[0] = now
            desc = "  ".join(
                f"{k} {v:,}" for k, v in stats.items() if k not in ("folders", "folders_done", "bytes")
            )
            if "bytes" in stats:
                desc += f"  {stats['bytes'] / 1e6:,.1f} MB"
            bar.update(task, completed=stats.get("folders_done", 0), total=stats.get("folders") or None)
            bar.update(task, description=desc)

        yield update


@click.command("verify")
@click.argument("target", metavar="s3://BUCKET[/PREFIX] | LOCAL_DIR")
@click.option(
    "--start", metavar="ISO8601", callback=iso_time, help="Verify from this time (UTC when no zone is given)."
)
@click.option("--end", metavar="ISO8601", callback=iso_time, help="Verify up to this time (default: now).")
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    metavar="FINGERPRINT=FILE",
    help="A public key file (DER PKCS#1 as ListPublicKeys returns it, or PEM) whose fingerprint (MD5 of "
    "its DER PKCS#1 form) must be FINGERPRINT; repeat for more. With it (or --offline) CloudTrail's "
    "ListPublicKeys is not called.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the full report as JSON on stdout.")
@click.option("--workers", type=click.IntRange(1, 128), default=8, show_default=True, help="Parallel reads.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on in a terminal).")
@click.option(
    "--offline",
    is_flag=True,
    help="Never call ListPublicKeys: keys from --public-key or the mirror itself (the verdict says so). "
    "Otherwise a mirror's keys are used only when ListPublicKeys confirms them.",
)
@click.option("--allow-gaps", is_flag=True, help="Exit 0, not 4, when the only finding is a chain restart.")
@click.option("--role-arn", help="Assume this role to read the bucket and the public keys.")
def verify_command(
    *,
    target: str,
    start: dt.datetime | None,
    end: dt.datetime | None,
    public_keys: tuple[str, ...],
    as_json: bool,
    workers: int,
    progress: bool | None,
    offline: bool,
    allow_gaps: bool,
    role_arn: str | None,
) -> None:
    """Prove CloudTrail log files are what AWS delivered, from the signed digest chains.

    Checks every digest's signature, walks each account/region/trail chain, hashes every log file
    the digests list, and reports modified, deleted and uncovered log files, deleted or forged
    digests, and chain restarts (logging stopped). Exit status: 0 everything verified and the
    digests cover the whole window; 1 something did not verify; 2 bad usage; 3 the check could not
    run, or digests could not be checked (their public keys could not be fetched); 4 everything
    verified but a chain restarted; 5 no digest found, nothing verified; 6 what was found verified,
    but the digests cover only part of the window (the report says how much).
    """
    import orjson  # noqa: PLC0415

    from trailrelay.integrity.keys import (  # noqa: PLC0415
        FILE,
        KeyFileError,
        KeyRing,
        LoadedKey,
        MirrorKeys,
        cloudtrail_fetcher,
        load_key_dir,
        parse_key_option,
    )
    from trailrelay.integrity.mirror import KEYS_DIR  # noqa: PLC0415
    from trailrelay.integrity.report import EXIT_GAPS, EXIT_OK  # noqa: PLC0415
    from trailrelay.integrity.store import MirrorStore, open_store  # noqa: PLC0415
    from trailrelay.integrity.verifier import Verifier  # noqa: PLC0415

    err = Console(stderr=True, soft_wrap=True)
    _check_window(start, end)
    given: dict[str, LoadedKey] = {}
    for spec in public_keys:
        try:
            fingerprint, key = parse_key_option(spec)
        except KeyFileError as exc:
            raise click.BadParameter(str(exc), param_hint="--public-key") from None
        given[fingerprint] = LoadedKey(key, FILE, spec.partition("=")[2])
    s3, cloudtrail = _clients(role_arn)
    try:
        store = open_store(target, s3_client=s3() if target.startswith("s3://") else None)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="TARGET") from None
    mirrored = load_key_dir(store.root / KEYS_DIR) if isinstance(store, MirrorStore) else MirrorKeys()
    fetcher = None if (offline or public_keys) else cloudtrail_fetcher(cloudtrail)
    keys = KeyRing(given, fetcher, mirror=mirrored, start=start, end=end)
    show = progress if progress is not None else sys.stderr.isatty()
    with _progress(show, "verify") as on_progress:
        try:
            report = Verifier(
                store, keys, start=start, end=end, workers=workers, on_progress=on_progress
            ).run()
        except Exception as exc:  # listing failed: bucket missing, access denied, no network
            err.print(
                f"[red]error:[/red] cannot verify {target}: {type(exc).__name__}: {exc}", highlight=False
            )
            raise SystemExit(EXIT_ERROR) from None
    if as_json:
        try:
            sys.stdout.buffer.write(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2) + b"\n")
            sys.stdout.flush()
        except BrokenPipeError:  # the reader went away (`| head`): the verdict still decides the status
            _discard_stdout()
    else:
        report.print(_Stdout())
    status = report.exit_status
    raise SystemExit(EXIT_OK if status == EXIT_GAPS and allow_gaps else status)


@click.command("mirror")
@click.argument("source", metavar="s3://BUCKET[/PREFIX]")
@click.argument("dest", metavar="LOCAL_DIR", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--start", metavar="ISO8601", callback=iso_time, help="Copy from this time (UTC when no zone is given)."
)
@click.option("--end", metavar="ISO8601", callback=iso_time, help="Copy up to this time (default: now).")
@click.option(
    "--workers", type=click.IntRange(1, 128), default=8, show_default=True, help="Parallel downloads."
)
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: on in a terminal).")
@click.option(
    "--public-keys/--no-public-keys",
    "save_keys",
    default=True,
    show_default=True,
    help="Save the public keys the digests name (ListPublicKeys), so the copy verifies offline.",
)
@click.option("--role-arn", help="Assume this role to read the bucket and the public keys.")
def mirror_command(
    *,
    source: str,
    dest: Path,
    start: dt.datetime | None,
    end: dt.datetime | None,
    workers: int,
    progress: bool | None,
    save_keys: bool,
    role_arn: str | None,
) -> None:
    """Copy a trail's log files and digests (with their signatures) to LOCAL_DIR for offline checks.

    Exit status: 0 the window's digests and log files are copied (and their public keys saved);
    1 an object could not be fetched or a public key not saved (the warnings say what); 2 bad
    usage; 3 the copy could not run; 5 no digest in the window, nothing to verify (as `verify`).
    """
    from trailrelay.integrity.keys import KeyRing, cloudtrail_fetcher  # noqa: PLC0415
    from trailrelay.integrity.mirror import mirror_trail  # noqa: PLC0415
    from trailrelay.integrity.report import EXIT_NOTHING, NO_DIGESTS  # noqa: PLC0415
    from trailrelay.integrity.store import S3Store, open_store  # noqa: PLC0415

    err = Console(stderr=True, soft_wrap=True)
    if not source.startswith("s3://"):
        raise click.BadParameter("the source is s3://BUCKET[/PREFIX]", param_hint="SOURCE")
    _check_window(start, end)
    s3, cloudtrail = _clients(role_arn)
    try:
        store = open_store(source, s3_client=s3())
    except ValueError as exc:  # s3:// with no bucket
        raise click.BadParameter(str(exc), param_hint="SOURCE") from None
    assert isinstance(store, S3Store)
    keys = KeyRing({}, cloudtrail_fetcher(cloudtrail), start=start, end=end) if save_keys else None
    show = progress if progress is not None else sys.stderr.isatty()
    with _progress(show, "mirror") as on_progress:
        try:
            counts, errors = mirror_trail(
                store, dest, start=start, end=end, workers=workers, keys=keys, on_progress=on_progress
            )
        except Exception as exc:
            err.print(
                f"[red]error:[/red] cannot copy {escape(str(source))}: "
                f"{type(exc).__name__}: {escape(str(exc))}",
                highlight=False,
            )
            raise SystemExit(EXIT_ERROR) from None
    out = _Stdout()
    out.print(
        f"copied {counts['digests']:,} digests and {counts['logs']:,} log files "
        f"({counts['bytes'] / 1e6:,.1f} MB) from {source} into {dest}; already there: "
        f"{counts['digests-present'] + counts['logs-present']:,}; listed by a digest but not in the "
        f"bucket: {counts['logs-missing']:,}; public keys saved: {counts['public-keys']:,}",
        highlight=False,
        markup=False,
    )
    for line in errors[:50]:
        err.print(f"[yellow]warning:[/yellow] {escape(str(line))}", highlight=False)
    if len(errors) > 50:
        err.print(f"… and {len(errors) - 50:,} more warnings")
    if counts["errors"]:
        raise SystemExit(1)
    if not counts["digests"] + counts["digests-present"]:
        what = "NO DIGEST COPIED" if counts["logs"] + counts["logs-present"] else "NOTHING COPIED"
        out.print(f"[red]{what}: {escape(NO_DIGESTS)}[/red]", highlight=False)
        raise SystemExit(EXIT_NOTHING)
    raise SystemExit(0)
