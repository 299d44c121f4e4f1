"""``trailrelay doctor``: whether the trail behind the forwarding can be trusted, and what to fix.

Modules: ``findings`` (severity, finding, report, exit status), ``aws`` (clients, denials told
apart from errors), ``context`` (what checks share; "could not check" findings), ``trail``,
``bucket`` and ``forwarding`` (the checks), ``run`` (one run), ``render`` (the human report),
``events`` (findings as events for the sinks), ``config`` (``[doctor]``), ``cli`` (the command).
"""

from __future__ import annotations
