"""Finding installed sinks and CLI extensions through entry points."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trailrelay.contract import SinkPlugin
from trailrelay.errors import PluginNotFound

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

__all__ = [
    "BUILTIN_SINKS",
    "COMMANDS_GROUP",
    "SHIPPED_CONNECTORS",
    "SINKS_GROUP",
    "InstalledSink",
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


BUILTIN_SINKS = {"file": "trailrelay.sinks.file:file_plugin", "stdout": "trailrelay.sinks.file:stdout_plugin"}
"""Core's own entry points (as in its pyproject), loaded by name without scanning every installed
distribution's metadata, which is most of a file-sink run's plugin lookup."""


_LOADED: dict[str, SinkPlugin] = {}


def load_sink(name: str) -> SinkPlugin:
    """The plugin for a sink type, or PluginNotFound naming what is installed.

    A connector this project ships is looked up in its own distribution's metadata first (a few
    milliseconds); only other types, and a missing one, scan every installed distribution (tens
    of milliseconds with a few hundred installed). Loaded plugins are kept for the process.
    """
    if name in BUILTIN_SINKS:
        module, _, attr = BUILTIN_SINKS[name].partition(":")
        builtin: SinkPlugin = getattr(importlib.import_module(module), attr)
        return builtin
    if name in _LOADED:
        return _LOADED[name]
    found = _shipped(name)
    if found is None:
        sinks = installed_sinks()
        if name not in sinks:
            have = ", ".join(sinks) or "none"
            hint = (
                f"; install it with: pip install {SHIPPED_CONNECTORS[name]}"
                if name in SHIPPED_CONNECTORS
                else ""
            )
            raise PluginNotFound(f"no sink of type {name!r} is installed (installed: {have}){hint}")
        found = sinks[name].entry_point, sinks[name].distribution
    entry_point, distribution = found
    try:
        plugin: SinkPlugin = entry_point.load()
    except Exception as exc:  # a broken plugin must not look like a missing one
        raise PluginNotFound(f"sink {name!r} from {distribution} failed to load: {exc}") from exc
    _LOADED[name] = plugin
    return plugin


def _shipped(name: str) -> tuple[EntryPoint, str] | None:
    """The entry point of a shipped connector's sink, from its own distribution, when installed."""
    from importlib.metadata import PackageNotFoundError, distribution  # noqa: PLC0415 - see installed_sinks

    if name not in SHIPPED_CONNECTORS:
        return None
    try:
        dist = distribution(SHIPPED_CONNECTORS[name])
    except PackageNotFoundError:
        return None
    for ep in dist.entry_points:
        if ep.group == SINKS_GROUP and ep.name == name:
            return ep, dist.name
    return None
