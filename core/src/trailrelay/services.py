"""What core lends connectors through the contract: reading a sink's config, the rule pack's alerts.

The contract (:mod:`trailrelay.contract`) is a leaf and cannot import the config loader or the
detection package; core provides them with :func:`provide_core_services` before a connector's
command runs.
"""

from __future__ import annotations

from trailrelay.config import load_sink_config
from trailrelay.contract import CoreServices, provide_core
from trailrelay.detection.alerts import alert_definitions

__all__ = ["core_services", "provide_core_services"]


def core_services() -> CoreServices:
    """Core's implementations of what the contract offers connectors."""
    return CoreServices(load_sink_config=load_sink_config, alert_definitions=alert_definitions)


def provide_core_services() -> None:
    """Lend core's services to connectors (the CLI does before loading a connector's commands)."""
    provide_core(core_services())
