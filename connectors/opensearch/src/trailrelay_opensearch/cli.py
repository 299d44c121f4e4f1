"""``trailrelay opensearch ...``: the connector's own commands (``setup``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click
import orjson
from opensearchpy import SerializationError

from trailrelay.contract import ConfigError, SinkError, load_sink_config, scrub
from trailrelay_opensearch.admin import run_setup
from trailrelay_opensearch.client import make_client, not_opensearch
from trailrelay_opensearch.config import OpenSearchConfig
from trailrelay_opensearch.plugin import user_agent

__all__ = ["group", "load_config"]


def load_config(path: Path, sink: str | None) -> OpenSearchConfig:
    """The OpenSearchConfig of one ``[[sinks]]`` table, read exactly as ``trailrelay forward`` reads it."""
    config: OpenSearchConfig = load_sink_config(path, "opensearch", sink)
    return config


@click.group(name="opensearch")
def group() -> None:
    """OpenSearch connector commands."""


@group.command()
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=lambda: os.environ.get("TRAILRELAY_CONFIG", "trailrelay.toml"),
    show_default="$TRAILRELAY_CONFIG or trailrelay.toml",
    help="trailrelay configuration file.",
)
@click.option("--sink", "sink_name", default=None, help="Name of the opensearch sink when there are several.")
@click.option("--dry-run", is_flag=True, help="Show what would be installed; change nothing.")
@click.option(
    "--detector", is_flag=True, help="Also create a Security Analytics detector (log type cloudtrail)."
)
def setup(config_path: Path, sink_name: str | None, dry_run: bool, detector: bool) -> None:
    """Install the index templates and the ISM retention policy (and a detector with --detector)."""
    try:
        config = load_config(config_path, sink_name)
        client = make_client(config, logging.getLogger("trailrelay.opensearch"), user_agent())
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        report = run_setup(client, config, dry_run=dry_run, detector=detector)
    except SinkError as exc:
        raise click.ClickException(str(exc)) from None
    except SerializationError as exc:  # a 2xx answer that is not OpenSearch's JSON
        reason = not_opensearch(", ".join(config.urls), exc)
        raise click.ClickException(scrub(reason, config.secret_values)) from None
    finally:
        client.close()
    click.echo(f"opensearch sink -> {config.target.name}{' [dry run]' if dry_run else ''}")
    for line in report.lines:
        click.echo(f"  {line}")
    for label, body in report.bodies.items():
        click.echo(f"\n{label}:")
        click.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())
    if not report.ok:
        raise SystemExit(1)
