"""Find one event in the target with ``_search`` (``trailrelay canary``).

Documents keep CloudTrail's field names, so the query is a ``term`` on ``eventID`` within a time
range around the send. Only a hit whose ``eventID`` is that eventID counts (a proxy, or a
template that made the field text, may answer with others). OpenSearch has no ingest timestamp of
its own, so the moment the search finds the document is the moment it became searchable.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any

from opensearchpy import ConnectionError as OpenSearchConnectionError
from opensearchpy import OpenSearch, TransportError

from trailrelay.contract import (
    ConfigError,
    FatalSinkError,
    RetryableError,
    scrub,
    search_unanswered,
)
from trailrelay_opensearch.client import make_client
from trailrelay_opensearch.config import OpenSearchConfig
from trailrelay_opensearch.integrity import iso_utc
from trailrelay_opensearch.responses import describe_error

__all__ = ["OpenSearchSearcher", "event_query"]

_WINDOW = dt.timedelta(minutes=15)
"""Slack before the send time (eventTime is the canary's send time; clocks may differ)."""
_HITS = 10
"""Hits looked at per search."""


def event_query(event_id: str, since: dt.datetime) -> dict[str, Any]:
    """The query that finds one CloudTrail event by eventID."""
    return {
        "bool": {
            "filter": [
                {"term": {"eventID": event_id}},
                {"range": {"@timestamp": {"gte": iso_utc(since.astimezone(dt.UTC) - _WINDOW)}}},
            ]
        }
    }


class OpenSearchSearcher:
    """Looks an eventID up in the sink's data stream or index; a ``trailrelay.contract.Searcher``."""

    def __init__(
        self, config: OpenSearchConfig, logger: logging.Logger, user_agent: str | None = None
    ) -> None:
        self.config = config
        self._logger = logger
        self._user_agent = user_agent
        self._client: OpenSearch | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OpenSearchSearcher(target={self.config.target.name!r})"

    def _ready(self) -> OpenSearch:
        with self._lock:
            if self._client is None:
                try:
                    self._client = make_client(self.config, self._logger, self._user_agent)
                except (ConfigError, ValueError) as exc:
                    raise FatalSinkError(f"opensearch: {exc}") from None
            return self._client

    def find(self, event_id: str, since: dt.datetime) -> dt.datetime | None:
        """When the document with this eventID was found searchable, None while no search finds it."""
        client = self._ready()
        target = self.config.target.name
        body = {"query": event_query(event_id, since), "size": _HITS, "_source": ["@timestamp", "eventID"]}
        try:
            response = client.search(
                index=target, body=body, params={"ignore_unavailable": "true", "allow_no_indices": "true"}
            )
        except OpenSearchConnectionError as exc:
            raise RetryableError(
                scrub(
                    f"opensearch: cannot reach {self._where()}: {type(exc).__name__}: {exc}",
                    self.config.secret_values,
                )
            ) from None
        except TransportError as exc:
            raise self._failure(exc) from None
        problem = search_unanswered(response, self.config.secret_values)
        if problem is not None:  # the search did not run: retry, and say so if it never does
            raise RetryableError(
                scrub(f"opensearch: searching {target} failed: {problem}", self.config.secret_values)
            )
        hits = response["hits"].get("hits", [])
        for hit in hits if isinstance(hits, list) else []:
            source = hit.get("_source") if isinstance(hit, dict) else None
            if isinstance(source, dict) and source.get("eventID") == event_id:
                return dt.datetime.now(dt.UTC)
        return None

    def close(self) -> None:
        """Close the client; safe to call twice."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _failure(self, exc: TransportError) -> FatalSinkError | RetryableError:
        status = exc.status_code if isinstance(exc.status_code, int) else 0
        etype, reason = describe_error(exc.info if isinstance(exc.info, dict) else exc.error)
        text = scrub(f"HTTP {status} {etype}: {reason}".rstrip(": "), self.config.secret_values)
        target = self.config.target.name
        if status == 401:
            return FatalSinkError(
                f"opensearch: {self._where()} refused the credentials ({self.config.auth_setting})"
            )
        if status == 403:
            return FatalSinkError(
                f"opensearch: the credentials ({self.config.auth_setting}) may not search {target} "
                f"(grant indices:data/read/search on it): {text}"
            )
        if status == 429 or status >= 500:
            return RetryableError(f"opensearch: searching {target} failed: {text}")
        return FatalSinkError(f"opensearch: searching {target} failed: {text}")

    def _where(self) -> str:
        return ", ".join(self.config.urls)
