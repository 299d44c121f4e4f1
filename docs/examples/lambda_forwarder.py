# ruff: noqa: INP001 - a standalone example module
"""An existing Lambda function that also forwards CloudTrail through trailrelay (docs/api.md).

The function already receives S3 notifications for the trail bucket and does its own work; it
adds trailrelay with three lines: build a Forwarder once per container, read each notified
object, forward, and fail the invocation (so Lambda retries) only when something is unfinished.
"""

from __future__ import annotations

import os
import urllib.parse
from typing import Any

from trailrelay.api import Forwarder, read_records

_forwarder: Forwarder | None = None


def forwarder() -> Forwarder:
    """One Forwarder per container (sinks keep their connections between invocations)."""
    global _forwarder  # noqa: PLW0603 - a Lambda container's cache
    if _forwarder is None:
        _forwarder = Forwarder.from_config(os.environ.get("TRAILRELAY_CONFIG_FILE", "trailrelay.toml"))
    return _forwarder


def handler(event: dict[str, Any], _context: Any = None, *, s3_client: Any = None) -> dict[str, Any]:
    """S3 ObjectCreated notifications in; a summary out (raise to have Lambda retry)."""
    summary: dict[str, Any] = {"objects": 0, "delivered": 0, "dead_lettered": 0}
    for rec in event.get("Records", []):
        bucket = rec["s3"]["bucket"]["name"]
        key = urllib.parse.unquote_plus(rec["s3"]["object"]["key"])
        report = forwarder().forward(read_records(f"s3://{bucket}/{key}", s3_client=s3_client))
        if report.fatal or report.unfinished:
            raise RuntimeError(f"s3://{bucket}/{key} not finished: {report.fatal or 'unfinished'}")
        summary["objects"] += 1
        summary["delivered"] += sum(report.delivered.values())
        summary["dead_lettered"] += report.dead_lettered  # in the dead-letter store, with reasons
    return summary
