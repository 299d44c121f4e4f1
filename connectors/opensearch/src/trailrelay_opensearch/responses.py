"""What OpenSearch's answers mean for each record.

A ``_bulk`` request normally answers HTTP 200 and reports failures per item (``errors: true``).
Per item:

* 2xx: delivered; 409 ``version_conflict_engine_exception``: our deterministic ``_id`` is already
  stored, so a duplicate;
* 400 ``illegal_argument_exception`` "Document ID is not supported in create/index operation
  request": an OpenSearch Serverless time series (or vector) collection, which assigns ids
  itself; the sink falls back to sending without ids (see :mod:`.sink`);
* 429 (``rejected_execution_exception``, a flood-stage disk block) and 5xx: retry;
* 401/403 ``security_exception``, a write block, a missing index that may not be created: the
  sink cannot work as configured, so the run stops (every other record would fail the same way);
* anything else (400 ``mapper_parsing_exception`` / ``document_parsing_exception`` /
  ``illegal_argument_exception`` ...): the document itself is refused, so it is dead-lettered
  with OpenSearch's reason.
"""

from __future__ import annotations

from typing import Any

from trailrelay.contract import DELIVERED, DUPLICATE, FatalSinkError, Outcome, search_error

__all__ = [
    "NO_CUSTOM_IDS",
    "describe_error",
    "item_outcome",
    "refuses_custom_ids",
]

NO_CUSTOM_IDS = "Document ID is not supported in create/index operation request"
"""OpenSearch Serverless's item error for an ``_id`` in a time series or vector search collection."""

describe_error = search_error
"""``(type, reason)`` of an OpenSearch error (``trailrelay.contract.search_error``)."""


def refuses_custom_ids(item: Any) -> bool:
    """True for the item error of a Serverless collection that does not accept our ``_id``."""
    body: Any = next(iter(item.values()), None) if isinstance(item, dict) and item else None
    error = body.get("error") if isinstance(body, dict) else None
    return isinstance(error, dict) and NO_CUSTOM_IDS.lower() in str(error.get("reason", "")).lower()


def item_outcome(item: Any, target: str) -> Outcome:
    """The outcome of one ``_bulk`` item; raises FatalSinkError when no document could succeed."""
    body: Any = next(iter(item.values()), None) if isinstance(item, dict) and item else None
    if not isinstance(body, dict):
        return Outcome.retry(f"unreadable bulk item in the response: {str(item)[:200]}")
    status = body.get("status")
    if not isinstance(status, int):
        return Outcome.retry("bulk item without a status in the response")
    if 200 <= status < 300:
        return DELIVERED
    etype, reason = describe_error(body.get("error"))
    text = f"HTTP {status} {etype}: {reason}"
    if status == 409 and etype == "version_conflict_engine_exception":
        return DUPLICATE
    if etype == "cluster_block_exception":
        if status == 429:  # flood-stage disk watermark: clears when disk space is freed
            return Outcome.retry(text)
        raise FatalSinkError(f"OpenSearch refuses writes to {target} (read-only block): {text}")
    if status in (401, 403) or etype == "security_exception":
        raise FatalSinkError(
            f"the configured credentials may not write to {target} (grant indices:data/write/bulk* "
            f"and indices:admin/create on it, e.g. the role `logstash` or a custom one): {text}"
        )
    if etype == "index_not_found_exception" or status == 404:
        raise FatalSinkError(
            f"index {target} does not exist and may not be created here (action.auto_create_index): "
            f"run `trailrelay opensearch setup` or create it, or set `index`: {text}"
        )
    if status == 429 or status >= 500:
        return Outcome.retry(text)
    return Outcome.rejected(text)
