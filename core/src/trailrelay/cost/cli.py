"""``trailrelay cost SOURCE [-c FILE] [--prices FILE] [--currency CODE] [--json] [--html FILE]``."""

from __future__ import annotations

import datetime as dt
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import click
import orjson
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from trailrelay.errors import TrailrelayError
from trailrelay.helpers import check_writable, output_errors

__all__ = ["DEFAULT_DAYS", "cost"]

DEFAULT_DAYS = 7
"""Window read from S3 when the config gives none: the last seven days."""

EXIT_NOTHING_MEASURED = 1
"""No record could be measured (nothing found, or nothing readable), or none says when it
happened: there is nothing to price per day."""
EXIT_CONFIG = 2


def _objects(source: str, config: Any) -> tuple[list[Any], Counter[str], int]:
    """The source's log objects, skip counts, and fetch threads to use."""
    from trailrelay.config import S3SourceConfig  # noqa: PLC0415
    from trailrelay.cost.measure import list_local, list_s3  # noqa: PLC0415

    if not source.startswith("s3://"):
        objects, skipped = list_local(Path(source))
        return objects, skipped, 1
    bucket, _, prefix = source.removeprefix("s3://").partition("/")
    if not bucket:
        raise TrailrelayError(f"{source}: no bucket (use s3://BUCKET/PREFIX)")
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 - boto only for S3

    from trailrelay.sources.aws import aws_client  # noqa: PLC0415

    src = config.source if config is not None else None
    s3cfg = src if isinstance(src, S3SourceConfig) else None
    end = (s3cfg.end_time if s3cfg else None) or dt.datetime.now(dt.UTC)
    start = (s3cfg.start_time if s3cfg else None) or end - dt.timedelta(days=DEFAULT_DAYS)
    try:
        client = aws_client(
            "s3",
            region=s3cfg.region if s3cfg else None,
            endpoint_url=s3cfg.endpoint_url if s3cfg else None,
            role_arn=s3cfg.role_arn if s3cfg else None,
        )
        objects, skipped = list_s3(client, bucket, prefix, start, end)
    except (BotoCoreError, ClientError) as exc:  # no such bucket, access denied, no credentials
        raise TrailrelayError(f"cannot list s3://{bucket}/{prefix}: {exc}") from None
    return objects, skipped, 8


@click.command("cost")
@click.argument("source")
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Your trailrelay config: its sinks' settings and filters (and an S3 window).",
)
@click.option(
    "--prices",
    "prices_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Your prices (TOML, same keys as the shipped table) laid over the shipped ones.",
)
@click.option(
    "--currency", default="USD", show_default=True, help="Report in this currency (USD, EUR, INR ...)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of tables.")
@click.option(
    "--html",
    "html_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write a self-contained HTML report with charts here.",
)
def cost(  # noqa: PLR0917 - click passes options by name
    source: str,
    config_path: Path | None,
    prices_path: Path | None,
    currency: str,
    as_json: bool,
    html_path: Path | None,
) -> None:
    """What SOURCE (s3://BUCKET/PREFIX or a local path) would cost in each SIEM, measured.

    Records are encoded by each installed connector exactly as it would send them and measured
    in that SIEM's billing unit, under several filter profiles, then priced from a dated table.
    Exit status 1 when no record could be measured or none says when (nothing to price per
    day), 2 for bad usage.
    """
    from trailrelay.cost.estimate import UnknownSpanError  # noqa: PLC0415 - the command's own imports

    err = Console(stderr=True)
    if html_path is not None:  # before the sample is read, which takes minutes from S3
        with output_errors(html_path):
            check_writable(html_path)
    try:
        report = _run(
            source, config_path, prices_path, currency, show_progress=not as_json and sys.stderr.isatty()
        )
    except UnknownSpanError as exc:
        err.print(
            f"[red]error:[/red] nothing to price per day: {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        raise SystemExit(EXIT_NOTHING_MEASURED) from None
    except TrailrelayError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise SystemExit(EXIT_CONFIG) from None
    if report["sample"]["records"] == 0:  # a $0 estimate would be a false answer
        err.print(f"[red]error:[/red] {escape(_nothing_measured(report))}", highlight=False, soft_wrap=True)
        raise SystemExit(EXIT_NOTHING_MEASURED)
    if html_path is not None:
        from trailrelay.cost.report_html import render_html  # noqa: PLC0415

        with output_errors(html_path):
            html_path.write_text(render_html(report), encoding="utf-8")
        err.print(f"HTML report written to {escape(str(html_path))}", highlight=False)
    if as_json:
        sys.stdout.write(
            orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode() + "\n"
        )
    else:
        from trailrelay.cost.report_table import print_report  # noqa: PLC0415

        print_report(report, Console() if sys.stdout.isatty() else Console(width=160))


def _nothing_measured(report: dict[str, Any]) -> str:
    """Why no record was measured, in one line: nothing found, or what each object read was."""
    s = report["sample"]
    source = report["source"]
    read = s["objects_read"] + s["problems"].get("object: fetch failed", 0)
    if read == 0:
        skipped = ", ".join(f"{n:,} {why}" for why, n in sorted(s["skipped"].items()))
        found = f"no CloudTrail log object in {source}" + (f" (skipped: {skipped})" if skipped else "")
    else:
        reasons = "; ".join(f"{why.split(': ', 1)[-1]}: {n:,}" for why, n in sorted(s["problems"].items()))
        found = f"no CloudTrail record in the {read:,} objects read from {source}" + (
            f" ({reasons})" if reasons else ""
        )
    return f"nothing to price: {found}"


def _run(
    source: str, config_path: Path | None, prices_path: Path | None, currency: str, *, show_progress: bool
) -> dict[str, Any]:
    from trailrelay.config import load_config  # noqa: PLC0415
    from trailrelay.cost.measure import measure  # noqa: PLC0415
    from trailrelay.cost.prices import load_prices  # noqa: PLC0415
    from trailrelay.cost.report import build_report  # noqa: PLC0415

    prices = load_prices(prices_path)
    prices.convert(1.0, "USD", currency.upper())
    config = load_config(config_path) if config_path is not None else None
    objects, skipped, threads = _objects(source, config)
    columns = (TextColumn("measuring"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), disable=not show_progress, transient=True) as bar:
        from trailrelay.cost.measure import Limits, plan_sample  # noqa: PLC0415

        planned, _, _ = plan_sample(objects, Limits())
        task = bar.add_task("read", total=sum(o.size for unit in planned for o in unit))
        m = measure(
            objects,
            source=source,
            config=config,
            threads=threads,
            progress=lambda n: bar.advance(task, n),
            skipped=skipped,
        )
    return build_report(m, prices, currency)
