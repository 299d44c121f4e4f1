"""Placeholder sink settings that let each connector build its encoder offline.

Used by ``trailrelay demo`` and ``trailrelay cost`` when no config names a real SIEM: the
encoders only need syntactically valid settings; nothing is ever sent to these addresses.

A connector gives its own with the optional plugin hook ``demo_config()`` (see
:mod:`trailrelay.contract`). :data:`DEMO_SINK_CONFIGS` is only the fallback for releases of the
first three connectors that predate the hook.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["DEMO_SINK_CONFIGS", "placeholder_config"]

DEMO_SINK_CONFIGS: dict[str, dict[str, Any]] = {
    "splunk": {"type": "splunk", "url": "https://splunk.example.invalid:8088", "token": "demo-not-a-token"},
    "elastic": {"type": "elastic", "url": "https://elastic.example.invalid:9200", "api_key": "ZGVtbzpkZW1v"},
    "sentinel": {
        "type": "sentinel",
        "endpoint": "https://demo.ingest.monitor.example.invalid",
        "rule_id": "dcr-00000000000000000000000000000000",
        "stream": "Custom-AWSCloudTrail",
        "tenant_id": "00000000-0000-0000-0000-000000000000",
        "client_id": "00000000-0000-0000-0000-000000000000",
        "client_secret": "demo-not-a-secret",
    },
}
"""Fallback placeholders for connector releases without ``demo_config()``."""

_log = logging.getLogger(__name__)


def placeholder_config(name: str, plugin: Any) -> dict[str, Any] | None:
    """The placeholder ``[[sinks]]`` table of sink type ``name``, or None when it has none.

    The plugin's ``demo_config()`` when it offers one (a copy, with ``type`` set), else the
    fallback table. A hook that fails counts as none: a broken connector must not break the demo.
    """
    hook = getattr(plugin, "demo_config", None)
    if callable(hook):
        try:
            table = hook()
        except Exception as exc:
            _log.warning("sink %s: demo_config() failed: %s", name, exc)
            return None
        if not isinstance(table, dict):
            _log.warning("sink %s: demo_config() returned %s, not a dict", name, type(table).__name__)
            return None
        return {**table, "type": table.get("type", name)}
    fallback = DEMO_SINK_CONFIGS.get(name)
    return dict(fallback) if fallback is not None else None
