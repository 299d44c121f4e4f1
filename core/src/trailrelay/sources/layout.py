"""CloudTrail's S3 key layout: what a key is, and which prefixes hold a time window.

Log files live under ``[prefix/]AWSLogs/[o-org/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/``;
digests under ``.../CloudTrail-Digest/...`` and Insights under ``.../CloudTrail-Insight/...``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

__all__ = [
    "account_folder",
    "classify_key",
    "day_prefixes",
    "key_time",
    "region_folder",
    "split_layout",
    "trail_folder",
]

_ACCOUNT = r"^(?:.*/)?AWSLogs/(?:o-[a-z0-9]{10,32}/)?\d{12}/"
_ACCOUNT_FOLDER = re.compile(rf"{_ACCOUNT}$")
_TRAIL_FOLDER = re.compile(rf"{_ACCOUNT}CloudTrail(?:-[A-Za-z]+)?/$")
_REGION_FOLDER = re.compile(rf"{_ACCOUNT}CloudTrail(?:-[A-Za-z]+)?/[^/]+/")
_LAYOUT = re.compile(
    r"^(?P<base>(?:.*/)?AWSLogs/(?:o-[a-z0-9]{10,32}/)?(?P<account>\d{12})/)"
    r"(?P<kind>CloudTrail|CloudTrail-Digest|CloudTrail-Insight|CloudTrail-NetworkActivity)/"
    r"(?P<region>[a-z0-9-]+)/(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/"
)
_KEY_TIME = re.compile(r"_(\d{8}T\d{4,6}Z)[_.]")


def classify_key(key: str, size: int | None, *, insights: bool = False) -> str | None:
    """Why an S3 key is not a log file to read (``digest``, ``insight`` ...), or None to read it."""
    if key.endswith("/"):
        return "folder-marker"
    if size == 0:
        return "empty-object"
    if "/CloudTrail-Digest/" in key or key.endswith("_CloudTrail-Digest.json.gz"):
        return "digest"
    if "/CloudTrail-Insight/" in key and not insights:
        return "insight"
    name = key.rsplit("/", 1)[-1]
    if not (name.endswith((".json.gz", ".json"))):
        return "not-a-log-file"
    return None


def split_layout(key: str) -> dict[str, str] | None:
    """The layout parts of a key (base, account, kind, region, date), or None if not CloudTrail's."""
    m = _LAYOUT.match(key)
    if not m:
        return None
    return {
        "base": m["base"],
        "account": m["account"],
        "kind": m["kind"],
        "region": m["region"],
        "date": f"{m['y']}-{m['m']}-{m['d']}",
    }


def account_folder(folder: str) -> bool:
    """Whether ``folder`` (ending in ``/``) is an account's: ``.../AWSLogs/[o-org/]ACCOUNT/``."""
    return _ACCOUNT_FOLDER.match(folder) is not None


def trail_folder(folder: str) -> bool:
    """Whether ``folder`` holds one folder per region: ``.../ACCOUNT/CloudTrail[-Kind]/``."""
    return _TRAIL_FOLDER.match(folder) is not None


def region_folder(prefix: str) -> str | None:
    """The ``.../CloudTrail[-Kind]/REGION/`` folder ``prefix`` is in (or is), if it is in one."""
    m = _REGION_FOLDER.match(prefix)
    return m.group(0) if m else None


def key_time(key: str) -> dt.datetime | None:
    """The delivery time in a CloudTrail file name (``..._20230710T1205Z_...``), if any."""
    m = _KEY_TIME.search(key)
    if not m:
        return None
    text = m.group(1)
    fmt = "%Y%m%dT%H%M%SZ" if len(text) == 16 else "%Y%m%dT%H%MZ"
    return dt.datetime.strptime(text, fmt).replace(tzinfo=dt.UTC)


def day_prefixes(region_prefix: str, start: dt.datetime, end: dt.datetime) -> Iterator[str]:
    """``region_prefix`` + ``YYYY/MM/DD/`` for each UTC day touching [start, end]."""
    day = start.astimezone(dt.UTC).date()
    last = end.astimezone(dt.UTC).date()
    while day <= last:
        yield f"{region_prefix}{day:%Y/%m/%d}/"
        day += dt.timedelta(days=1)
