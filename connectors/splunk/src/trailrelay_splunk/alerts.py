"""The scheduled Splunk alerts ``trailrelay splunk setup`` installs: trailrelay's Sigma rule pack.

They come from :func:`trailrelay.contract.alert_definitions`, the same conversion as
``trailrelay rules export --siem splunk`` (pySigma's Splunk backend with trailrelay's
``aws:cloudtrail`` field mapping). Each alert runs every 5 minutes over the events *indexed* in
the previous 5 minutes (``_index_earliest=-5m@m _index_latest=@m``), not the events whose
``eventTime`` falls in them: CloudTrail delivers minutes to days late, and an index-time window
sees every event exactly once if its ``eventTime`` is within the searches' 7-day ``_time`` bound
(``dispatch.earliest_time``). Continuous scheduling (``realtime_schedule = 0``) never skips a
run, so no index-time window goes unseen. The scanning correlation counts sliding ``_time``
windows (``streamstats time_window``) that hold an event indexed since the last run.
"""

from __future__ import annotations

from dataclasses import replace

from trailrelay.contract import AlertDefinition, alert_definitions

__all__ = ["DEFAULT_SOURCETYPE", "AlertDefinition", "pack_alerts", "spl_quote"]

DEFAULT_SOURCETYPE = "aws:cloudtrail"
"""The sourcetype the pack's searches name (the Splunk Add-on for AWS's)."""
_PACK_SOURCETYPE = f'sourcetype="{DEFAULT_SOURCETYPE}"'


def spl_quote(value: str) -> str:
    """A double-quoted SPL string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def pack_alerts(index: str | None, sourcetype: str = DEFAULT_SOURCETYPE) -> list[AlertDefinition]:
    """The rule pack as saved searches over ``index`` (the user's default indexes when None).

    A ``sourcetype`` other than ``aws:cloudtrail`` replaces the one the searches name, so the
    alerts look where ``setup`` points the HEC token.
    """
    alerts = alert_definitions("splunk", index=index)
    if sourcetype == DEFAULT_SOURCETYPE:
        return alerts
    wanted = f"sourcetype={spl_quote(sourcetype)}"
    out = []
    for alert in alerts:
        query = alert.query.replace(_PACK_SOURCETYPE, wanted, 1)
        out.append(replace(alert, query=query, settings={**alert.settings, "search": query}))
    return out
