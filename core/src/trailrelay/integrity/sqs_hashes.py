"""The hashes an SQS source keeps of the objects it forwarded, and their pruning.

A listing source's checkpoints already hold each object's hash; an SQS source has none, so
with ``[integrity]`` the state database keeps them under :data:`SQS_HASHES_SOURCE`, and rows
older than any check will ask for are deleted after each check.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trailrelay.sources.base import ObjectDone

__all__ = ["PRUNE_MARGIN", "SQS_HASHES_SOURCE", "hash_keeper", "pruner"]

SQS_HASHES_SOURCE = "integrity:forwarded"
"""Checkpoint ``source`` under which the hashes of objects forwarded from SQS are kept."""
PRUNE_MARGIN = 86400.0
"""Kept SQS hashes older than ``lookback`` plus this are deleted after each check."""


def hash_keeper(kept: Any) -> Callable[[list[ObjectDone]], None]:
    """Keeps each acknowledged object's hash (SQS sources have no checkpoints of their own)."""

    def keep(done: list[ObjectDone]) -> None:
        for d in done:
            o = d.origin
            if d.sha256 and o.bucket and o.key:
                kept.mark_done(SQS_HASHES_SOURCE, f"{o.bucket}/{o.key}", o.etag or "", d.records, d.sha256)

    return keep


def pruner(state: Path, keep_seconds: float) -> Callable[[], None]:
    """Deletes kept SQS hashes older than any check will ask for."""

    def prune() -> None:
        db = sqlite3.connect(state, timeout=30, isolation_level=None)
        try:
            db.execute(
                "DELETE FROM objects WHERE source = ? AND done_at < ?",
                (SQS_HASHES_SOURCE, time.time() - keep_seconds),
            )
        finally:
            db.close()

    return prune
