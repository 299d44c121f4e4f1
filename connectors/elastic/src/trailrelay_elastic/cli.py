"""``trailrelay elastic ...``: the connector's own commands (``setup``)."""

from __future__ import annotations

import logging
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import click
import orjson
from pydantic import ValidationError

from trailrelay.contract import ConfigError, SinkError
from trailrelay_elastic.admin import run_setup
from trailrelay_elastic.client import make_client
from trailrelay_elastic.config import ElasticConfig

__all__ = ["group", "load_config"]

_REF = re.compile(r"\$\{([^}]+)\}")


def _interpolate(value: Any) -> Any:
    """``${ENV}`` and ``${file:/path}`` in string values, as trailrelay's core reads its config."""
    if isinstance(value, str):

        def resolve(m: re.Match[str]) -> str:
            ref = m.group(1)
            if ref.startswith("file:"):
                path = Path(ref[5:])
                if not path.is_file():
                    raise ConfigError(f"${{file:...}}: no such file: {path}")
                return path.read_text(encoding="utf-8").strip()
            if ref not in os.environ:
                raise ConfigError(f"environment variable {ref} is not set")
            return os.environ[ref]

        return _REF.sub(resolve, value)
    if isinstance(value, dict):
        return {k: _interpolate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v) for v in value]
    return value


def load_config(path: Path, sink: str | None) -> ElasticConfig:
    """The ElasticConfig of one ``[[sinks]]`` table of a trailrelay TOML file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    tables = [t for t in data.get("sinks", []) if isinstance(t, dict) and t.get("type") == "elastic"]
    if sink is not None:
        tables = [t for t in tables if (t.get("name") or t.get("type")) == sink]
    if not tables:
        raise ConfigError(f"{path} has no elastic sink" + (f" named {sink}" if sink else ""))
    if len(tables) > 1:
        raise ConfigError(f"{path} has several elastic sinks: choose one with --sink NAME")
    try:
        return ElasticConfig.model_validate(_interpolate(tables[0]))
    except ValidationError as exc:
        raise ConfigError(f"invalid elastic sink in {path}: {exc}") from None


@click.group(name="elastic")
def group() -> None:
    """Elasticsearch connector commands."""


@group.command()
@click.option(
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
