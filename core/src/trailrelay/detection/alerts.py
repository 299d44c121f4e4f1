"""Native SIEM alerts from the shipped rule pack, for connectors' set-up commands."""

from __future__ import annotations

from trailrelay.contract import AlertDefinition
from trailrelay.errors import ConfigError

__all__ = ["alert_definitions"]


def alert_definitions(siem: str, index: str | None = None) -> list[AlertDefinition]:
    """Native alerts for the shipped rule pack (``splunk`` only for now), as ``rules export`` makes them."""
    # pySigma loads slowly: only the command that installs alerts pays for it
    from trailrelay.detection.config import DetectionConfig  # noqa: PLC0415
    from trailrelay.detection.export import splunk_searches  # noqa: PLC0415
    from trailrelay.detection.loader import load_rules  # noqa: PLC0415

    if siem != "splunk":
        raise ConfigError(f"alert definitions for {siem!r} are exported with `trailrelay rules export`")
    searches = splunk_searches(load_rules(DetectionConfig()), index=index)
    return [AlertDefinition(s.name, s.settings["search"], s.rest_params()) for s in searches]
