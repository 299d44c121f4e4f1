"""Finding installed sinks and CLI extensions through entry points."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trailrelay.contract import SinkPlugin
from trailrelay.errors import PluginNotFound

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

__all__ = [
    "COMMANDS_GROUP",
    "SHIPPED_CONNECTORS",
    "SINKS_GROUP",
    "InstalledSink",
    "command_groups",
    "installed_sinks",
    "load_sink",
]

SINKS_GROUP = "trailrelay.sinks"
COMMANDS_GROUP = "trailrelay.commands"

SHIPPED_CONNECTORS = {
    "splunk": "trailrelay-splunk",
    "elastic": "trailrelay-elastic",
    "sentinel": "trailrelay-sentinel",
    "opensearch": "trailrelay-opensearch",
}
"""Sink types of the connectors this project ships, with their distributions: install hints and
the "not installed" lines of ``demo`` and ``cost``. Other connectors need no entry here."""


@dataclass(frozen=True)
class InstalledSink:
    """One sink type an installed distribution provides."""

    name: str
    distribution: str
    version: str
    entry_point: EntryPoint


def installed_sinks() -> dict[str, InstalledSink]:
    """Every sink type found in the ``trailrelay.sinks`` group, by name."""
    from importlib.metadata import entry_points  # noqa: PLC0415 - scanning distributions is slow

    found: dict[str, InstalledSink] = {}
    for ep in entry_points(group=SINKS_GROUP):
        dist = ep.dist
        found[ep.name] = InstalledSink(
            ep.name,
            dist.name if dist else "?",
            dist.version if dist else "?",
            ep,
        )
    return dict(sorted(found.items()))


BUILTIN_SINKS = {"file": "file_plugin", "stdout": "stdout_plugin"}
"""Sink types core ships itself (in ``trailrelay.sinks.file``); loaded without scanning entry points."""


def load_sink(name: str) -> SinkPlugin:
    """The plugin for a sink type, or PluginNotFound naming what is installed."""
    if name in BUILTIN_SINKS:
        from trailrelay.sinks import file  # noqa: PLC0415 - the built-ins need no entry-point scan

        builtin: SinkPlugin = getattr(file, BUILTIN_SINKS[name])
        return builtin
    sinks = installed_sinks()
    if name not in sinks:
        have = ", ".join(sinks) or "none"
        hint = (
            f"; install it with: pip install {SHIPPED_CONNECTORS[name]}" if name in SHIPPED_CONNECTORS else ""
        )
        raise PluginNotFound(f"no sink of type {name!r} is installed (installed: {have}){hint}")
    try:
        plugin: SinkPlugin = sinks[name].entry_point.load()
    except Exception as exc:  # a broken plugin must not look like a missing one
        raise PluginNotFound(f"sink {name!r} from {sinks[name].distribution} failed to load: {exc}") from exc
    return plugin


def command_groups() -> list[Any]:
    """Click command groups that connectors add to the CLI (``trailrelay.commands``)."""
    from importlib.metadata import entry_points  # noqa: PLC0415

    groups = []
    for ep in entry_points(group=COMMANDS_GROUP):
        try:
            groups.append(ep.load())
        except Exception:  # noqa: S112 - a broken extension must not break the CLI
            continue
    return groups
