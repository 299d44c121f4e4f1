"""Find one event in the target with the ``_search`` API (``trailrelay canary``).

Where the eventID lives depends on who built the document:

* ``ecs`` mode, and ``integration`` mode once Elastic's ingest pipeline ran: ``event.id``
  (the pipeline renames ``json.eventID`` to ``event.id`` and drops ``message``, keeping the raw
  record in ``event.original`` only with the ``preserve_original_event`` tag);
* ``integration`` mode when no pipeline ran (the integration's assets are not installed, or
  ``pipeline`` names another one): the raw record is still in ``message``.

So the query matches either: a ``term`` on ``event.id`` or a ``match_phrase`` on ``message``,
within a time range around the send. Only a hit whose ``event.id`` (or the ``eventID`` of the
record in its ``message``) is that eventID counts: a phrase can match another document. The time
the event became searchable is its ``event.ingested`` when the pipeline set one, else the moment
the search found it.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from typing import Any

import orjson
from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import TransportError
from elasticsearch import ApiError, Elasticsearch, UnsupportedProductError

from trailrelay.contract import (
    ConfigError,
    FatalSinkError,
    RetryableError,
    scrub,
    search_unanswered,
)
from trailrelay_elastic.client import make_client
from trailrelay_elastic.config import ElasticConfig
from trailrelay_elastic.ecs import iso_utc
from trailrelay_elastic.responses import describe_error

__all__ = ["ElasticSearcher", "event_query"]

_WINDOW = dt.timedelta(minutes=15)
"""Slack before the send time (eventTime is the canary's send time; clocks may differ)."""
_SOURCE = ["@timestamp", "event.id", "event.ingested", "message"]
_HITS = 10
"""Hits looked at per search: the phrase on ``message`` may match documents that only mention the id."""


def event_query(event_id: str, since: dt.datetime) -> dict[str, Any]:
    """The query that finds one CloudTrail event by eventID, in either document shape."""
    return {
        "bool": {
            "filter": [{"range": {"@timestamp": {"gte": iso_utc(since.astimezone(dt.UTC) - _WINDOW)}}}],
            "should": [{"term": {"event.id": event_id}}, {"match_phrase": {"message": event_id}}],
            "minimum_should_match": 1,
        }
    }


class ElasticSearcher:
    """Looks an eventID up in the sink's data stream or index; a ``trailrelay.contract.Searcher``."""

    def __init__(self, config: ElasticConfig, logger: logging.Logger, user_agent: str | None = None) -> None:
        if config.search_api_key is not None:
            # A read key of its own: the writer's key needs no read privilege then.
            config = config.replace(
                api_key=config.search_api_key, username=None, password=None, bearer_token=None
            )
        self.config = config
        self._logger = logger
        self._user_agent = user_agent
        self._client: Elasticsearch | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ElasticSearcher(target={self.config.target.name!r})"

    def _ready(self) -> Elasticsearch:
        with self._lock:
            if self._client is None:
                try:
                    self._client = make_client(self.config, self._logger, self._user_agent)
                except (ConfigError, ValueError) as exc:
                    raise FatalSinkError(f"elastic: {exc}") from None
            return self._client

    def find(self, event_id: str, since: dt.datetime) -> dt.datetime | None:
        """When the document with this eventID was ingested, None while no search finds it."""
        client = self._ready()
        target = self.config.target.name
        try:
            response = client.search(
                index=target,
                query=event_query(event_id, since),
                size=_HITS,
                source_includes=_SOURCE,
                ignore_unavailable=True,
                allow_no_indices=True,
            )
        except UnsupportedProductError:
            raise FatalSinkError(
                f"elastic: {self._where()} did not identify itself as Elasticsearch"
            ) from None
        except ApiError as exc:
            raise self._failure(exc) from None
        except (TransportConnectionError, TransportError) as exc:
            raise RetryableError(
                self._safe(f"elastic: cannot reach {self._where()}: {type(exc).__name__}: {exc}")
            ) from None
        content_type = response.meta.headers.get("content-type")
        problem = search_unanswered(
            response.body, self.config.secret_values, response.meta.status, content_type
        )
        if problem is not None:  # the search did not run: retry, and say so if it never does
            raise RetryableError(self._safe(f"elastic: searching {target} failed: {problem}"))
        hits = response.body["hits"].get("hits", [])
        for hit in hits if isinstance(hits, list) else []:
            source = hit.get("_source") if isinstance(hit, dict) else None
            if not isinstance(source, dict) or _event_id(source) != event_id:
                continue
            event = source.get("event")
            ingested = event.get("ingested") if isinstance(event, dict) else None
            return _moment(ingested) or dt.datetime.now(dt.UTC)
        return None

    def close(self) -> None:
        """Close the client; safe to call twice."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _failure(self, exc: ApiError) -> FatalSinkError | RetryableError:
        status = exc.meta.status if exc.meta is not None else 0
        etype, reason = describe_error(exc.body.get("error") if isinstance(exc.body, dict) else exc.body)
        text = self._safe(f"HTTP {status} {etype}: {reason}".rstrip(": "))
        target = self.config.target.name
        if status == 401:
            return FatalSinkError(f"elastic: {self._where()} refused the credentials: {text}")
        if status == 403:
            return FatalSinkError(
                f"elastic: the credentials may not search {target} (grant the `read` index privilege, or "
                f"set search_api_key to a key that may): {text}"
            )
        if status == 429 or status >= 500:
            return RetryableError(f"elastic: searching {target} failed: {text}")
        return FatalSinkError(f"elastic: searching {target} failed: {text}")

    def _where(self) -> str:
        return "Elastic Cloud" if self.config.cloud_id else ", ".join(self.config.urls)

    def _safe(self, text: str) -> str:
        return scrub(text, self.config.secret_values)


def _event_id(source: dict[str, Any]) -> str | None:
    """The eventID of a hit: ``event.id``, else that of the raw record in ``message``."""
    event = source.get("event")
    if isinstance(event, dict) and isinstance(event.get("id"), str):
        return str(event["id"])
    message = source.get("message")
    if not isinstance(message, str):
        return None
    try:
        record = orjson.loads(message)
    except orjson.JSONDecodeError:
        return None
    value = record.get("eventID") if isinstance(record, dict) else None
    return value if isinstance(value, str) else None


def _moment(value: object) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.astimezone(dt.UTC) if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
