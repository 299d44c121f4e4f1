"""``trailrelay elastic ...``: the connector's own commands (``setup``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import click
import orjson

from trailrelay.contract import ConfigError, SinkError, load_sink_config
from trailrelay_elastic.admin import run_setup
from trailrelay_elastic.client import make_client
from trailrelay_elastic.config import ElasticConfig

__all__ = ["group", "load_config"]


def load_config(path: Path, sink: str | None) -> ElasticConfig:
    """The ElasticConfig of one ``[[sinks]]`` table, read exactly as ``trailrelay forward`` reads it."""
    config: ElasticConfig = load_sink_config(path, "elastic", sink)
    return config


@click.group(name="elastic")
def group() -> None:
    """Elasticsearch connector commands."""


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
@click.option("--sink", "sink_name", default=None, help="Name of the elastic sink when there are several.")
@click.option("--dry-run", is_flag=True, help="Show what would be installed; change nothing.")
def setup(config_path: Path, sink_name: str | None, dry_run: bool) -> None:
    """Prepare the cluster: install ECS templates (mode = ecs) or verify the AWS integration (integration)."""
    try:
        config = load_config(config_path, sink_name)
        client = make_client(config, logging.getLogger("trailrelay.elastic"))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        report = run_setup(client, config, dry_run=dry_run)
    except SinkError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        client.close()
    click.echo(
        f"elastic sink -> {config.target.name} (mode = {config.mode}){' [dry run]' if dry_run else ''}"
    )
    for line in report.lines:
        click.echo(f"  {line}")
    for label, body in report.bodies.items():
        click.echo(f"\n{label}:")
        click.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())
    if not report.ok:
        raise SystemExit(1)
