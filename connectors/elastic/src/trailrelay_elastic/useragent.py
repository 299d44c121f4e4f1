"""``user_agent.*`` the way Elasticsearch's ``user_agent`` ingest processor writes it.

Both use the uap-core rules (Elasticsearch bundles a copy; we use ``ua-parser``'s), so the
family names agree; where the rule sets' versions differ, newer rules may recognise more.
The ECS shaping follows the processor: ``name`` is ``Other`` when no rule matches,
``device.name`` is always present (``Other`` by default), ``os`` only when an OS matched,
and versions join major/minor/patch/patch-minor with dots.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import ua_parser

__all__ = ["user_agent"]


def _version(*parts: str | None) -> str | None:
    out: list[str] = []
    for part in parts:
        if part is None:
            break
        out.append(part)
    return ".".join(out) if out else None


@lru_cache(maxsize=8192)
def user_agent(original: str) -> dict[str, Any]:
    """The ECS ``user_agent`` object for one User-Agent string (cached; do not mutate)."""
    result = ua_parser.parse(original)
    out: dict[str, Any] = {"original": original}
    ua = result.user_agent
    if ua is not None:
        out["name"] = ua.family
        version = _version(ua.major, ua.minor, ua.patch, ua.patch_minor)
        if version:
            out["version"] = version
    else:
        out["name"] = "Other"
    os = result.os
    if os is not None:
        os_out: dict[str, str] = {"name": os.family}
        os_version = _version(os.major, os.minor, os.patch, os.patch_minor)
        if os_version:
            os_out["version"] = os_version
            os_out["full"] = f"{os.family} {os_version}"
        out["os"] = os_out
    device = result.device
    out["device"] = {"name": device.family if device is not None and device.family else "Other"}
    return out
