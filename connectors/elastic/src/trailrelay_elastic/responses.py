"""What Elasticsearch's answers mean for each record.

A ``_bulk`` request normally answers HTTP 200 and reports failures per item (``errors: true``).
Per item:

* 2xx: delivered; 409 ``version_conflict_engine_exception``: our deterministic ``_id`` is already
  stored, so a duplicate;
* 429 (``es_rejected_execution_exception``, or a flood-stage disk block) and 5xx: retry;
* 401/403 ``security_exception``, a write block, a missing index or ingest pipeline: the sink
  cannot work as configured, so the run stops (every other record would fail the same way);
* anything else (400 ``document_parsing_exception`` / ``mapper_parsing_exception`` ...): the
  document itself is refused, so it is dead-lettered with Elasticsearch's reason.
"""

from __future__ import annotations

from typing import Any

from trailrelay.contract import DELIVERED, DUPLICATE, FatalSinkError, Outcome, search_error

__all__ = ["describe_error", "item_outcome"]

describe_error = search_error
"""``(type, reason)`` of an Elasticsearch error (``trailrelay.contract.search_error``)."""


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
        raise FatalSinkError(f"Elasticsearch refuses writes to {target} (read-only block): {text}")
    if status in (401, 403) or etype == "security_exception":
        raise FatalSinkError(
            f"the configured credentials may not write to {target} (grant the create_doc and "
            f"auto_configure index privileges): {text}"
        )
    if etype == "index_not_found_exception" or status == 404:
        raise FatalSinkError(
            f"{target} does not exist and cannot be created (run `trailrelay elastic setup`): {text}"
        )
    if etype == "illegal_argument_exception" and "pipeline with id" in reason:
        raise FatalSinkError(f"the configured ingest pipeline does not exist: {text}")
    if status == 429 or status >= 500:
        return Outcome.retry(text)
    return Outcome.rejected(text)
