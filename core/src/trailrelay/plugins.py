"""Finding installed sinks and CLI extensions through entry points."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from trailrelay.contract import SinkPlugin
from trailrelay.errors import PluginNotFound

__all__ = ["COMMANDS_GROUP", "SINKS_GROUP", "InstalledSink", "installed_sinks", "load_sink"]

SINKS_GROUP = "trailrelay.sinks"
COMMANDS_GROUP = "trailrelay.commands"

_HINTS = {
    "splunk": "trailrelay-splunk",
    "elastic": "trailrelay-elastic",
    "sentinel": "trailrelay-sentinel",
}


@dataclass(frozen=True)
class InstalledSink:
    """One sink type an installed distribution provides."""

    name: str
    distribution: str
    version: str
    entry_point: EntryPoint


def installed_sinks() -> dict[str, InstalledSink]:
    """Every sink type found in the ``trailrelay.sinks`` group, by name."""
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


def load_sink(name: str) -> SinkPlugin:
    """The plugin for a sink type, or PluginNotFound naming what is installed."""
    sinks = installed_sinks()
    if name not in sinks:
        have = ", ".join(sinks) or "none"
        hint = f"; install it with: pip install {_HINTS[name]}" if name in _HINTS else ""
        raise PluginNotFound(f"no sink of type {name!r} is installed (installed: {have}){hint}")
    try:
        plugin: SinkPlugin = sinks[name].entry_point.load()
    except Exception as exc:  # a broken plugin must not look like a missing one
        raise PluginNotFound(f"sink {name!r} from {sinks[name].distribution} failed to load: {exc}") from exc
    return plugin
