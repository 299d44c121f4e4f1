"""Find one event in the workspace with the Log Analytics query API (``trailrelay canary``).

``azure-monitor-query``'s ``LogsQueryClient`` runs ``<table> | where AwsEventId == "<id>"``
against ``workspace_id`` with the sink's own credential. The identity needs read access to the
workspace (*Log Analytics Reader*, or *Microsoft Sentinel Reader*), which the ingestion role
(*Monitoring Metrics Publisher* on the DCR) does not give. Only a row whose ``AwsEventId`` is
that eventID counts (a proxy may answer with another). The time the row became queryable is the
row's ``ingestion_time()``.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, HttpResponseError
from azure.monitor.query import LogsQueryClient, LogsQueryPartialResult

from trailrelay.contract import (
    ConfigError,
    FatalSinkError,
    RetryableError,
    SinkContext,
    describe_answer,
    tls_verify,
)
from trailrelay_sentinel.config import SentinelConfig
from trailrelay_sentinel.credentials import IssuedTokens, build_credential, close_quietly, scrub_tokens
from trailrelay_sentinel.failures import _error_detail, classify, headers_retry_after

__all__ = ["SentinelSearcher", "canary_query", "kql_string"]

_WINDOW = dt.timedelta(minutes=15)
"""Slack on both sides of the query's time range (clock skew between us and Azure)."""


def kql_string(value: str) -> str:
    """A double-quoted KQL string literal."""
    if "\n" in value or "\r" in value:
        raise ValueError("an event id cannot contain line breaks")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def canary_query(table: str, event_id: str) -> str:
    """The KQL that finds one event by its eventID, with the time it was ingested."""
    return (
        f"{table} | where AwsEventId == {kql_string(event_id)} "
        "| project TimeGenerated, AwsEventId, IngestedAt = ingestion_time() | take 1"
    )


class SentinelSearcher:
    """Looks an eventID up in the workspace; a ``trailrelay.contract.Searcher``."""

    def __init__(
        self,
        config: SentinelConfig,
        context: SinkContext,
        *,
        credential: TokenCredential | None = None,
        client_options: dict[str, Any] | None = None,
        credential_options: dict[str, Any] | None = None,
    ) -> None:
        if config.workspace_id is None:
            raise ConfigError(
                f"sentinel sink {config.display_name}: set workspace_id (the Log Analytics workspace's "
                "GUID) so trailrelay can query for the event"
            )
        self.config = config
        self.workspace_id: str = config.workspace_id
        self._context = context
        self._credential = credential
        self._own_credential = credential is None
        self._client_options = dict(client_options or {})
        self._credential_options = dict(credential_options or {})
        self._client: LogsQueryClient | None = None
        self._tokens: IssuedTokens | None = None
        """The credential the client uses: it remembers the access tokens, to keep them out of messages."""
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        c = self.config
        return (
            f"SentinelSearcher(workspace_id={self.workspace_id!r}, table={c.table!r}, "
            f"endpoint={c.query_endpoint!r})"
        )

    def _ready(self) -> LogsQueryClient:
        with self._lock:
            if self._client is None:
                c = self.config
                if c.ca_bundle is not None and not Path(c.ca_bundle).is_file():
                    raise FatalSinkError(f"sentinel: ca_bundle {c.ca_bundle!r} is not a readable file")
                verify = tls_verify(c.verify_tls, c.ca_bundle, self._context.logger)
                transport = {"connection_timeout": c.timeout, "read_timeout": c.timeout}
                if self._credential is None:
                    self._credential = build_credential(c, verify, **transport, **self._credential_options)
                options: dict[str, Any] = {
                    # With "/v1" and an explicit audience, azure-monitor-query 1.x and 2.x build the
                    # same URL (<endpoint>/v1/workspaces/<id>/query) and the same token scope.
                    "endpoint": f"{c.query_endpoint}/v1",
                    "audience": c.query_endpoint,
                    "connection_verify": verify,
                    "user_agent": self._context.user_agent,
                    "retry_total": 0,  # the canary polls again; it knows its deadline
                    **transport,
                }
                options.update(self._client_options)
                self._tokens = IssuedTokens(self._credential)
                self._client = LogsQueryClient(self._tokens, **options)
            return self._client

    def find(self, event_id: str, since: dt.datetime) -> dt.datetime | None:
        """When the row with this AwsEventId was ingested, None while the workspace has none."""
        client = self._ready()
        query = canary_query(self.config.table, event_id)
        start = since.astimezone(dt.UTC) - _WINDOW
        end = dt.datetime.now(dt.UTC) + _WINDOW
        answers: list[Any] = []  # the raw HTTP answer, to say what answered when it was not the API
        try:
            result = client.query_workspace(
                self.workspace_id, query, timespan=(start, end), raw_response_hook=answers.append
            )
        except AzureError as exc:
            raise self._failure(exc) from None
        except Exception:  # azure-monitor-query reading an answer that is not a JSON object
            raise self._not_the_api(answers[-1] if answers else None) from None
        if answers and not _has_tables(answers[-1]):  # "{}": no query ran, which is not "no such row"
            raise RetryableError(
                self._scrub(
                    f"sentinel: querying workspace {self.workspace_id} at {self.config.query_endpoint} "
                    f"failed: the answer held no result tables ({self._answered(answers[-1])})"
                )
            )
        # A partial result (some shards timed out, say) still holds rows worth looking at.
        tables = result.partial_data if isinstance(result, LogsQueryPartialResult) else result.tables
        for table in tables or []:
            for row in table.rows:
                if _cell(row, "AwsEventId") != event_id:
                    continue
                ingested, generated = _cell(row, "IngestedAt"), _cell(row, "TimeGenerated")
                return _moment(ingested) or _moment(generated) or dt.datetime.now(dt.UTC)
        return None

    def close(self) -> None:
        """Close the client and a credential we built; safe to call twice."""
        with self._lock:
            client, self._client = self._client, None
            credential = self._credential if self._own_credential else None
            if self._own_credential:
                self._credential = None
        close_quietly(client, credential)

    def _failure(self, exc: BaseException) -> FatalSinkError | RetryableError:
        """What a failed query means, in a message that names the setting to fix (never a secret)."""
        c = self.config
        # LogsQueryClient re-raises every HttpResponseError as a plain one; a refused credential
        # (ClientAuthenticationError without a response) is then only the context of that one.
        while (
            isinstance(exc, HttpResponseError)
            and exc.response is None
            and isinstance(exc.__context__, HttpResponseError)
        ):
            exc = exc.__context__
        where = f"workspace {self.workspace_id} at {c.query_endpoint}"
        if isinstance(exc, HttpResponseError) and exc.status_code is not None and exc.response is not None:
            status = int(exc.status_code)
            code, message = _error_detail(exc)
            label = f"HTTP {status} {code or ''}".rstrip()
            if status == 401:
                hint = "the query_endpoint must be the Log Analytics API of the workspace's cloud"
            elif status == 403:
                hint = (
                    "give the identity 'Log Analytics Reader' (or 'Microsoft Sentinel Reader') on the "
                    "workspace; the ingestion role does not allow queries"
                )
            elif status == 404:
                hint = "workspace_id is the workspace's GUID ('Workspace ID' on its Overview page)"
            elif status == 400:
                hint = f"check that table = {c.table!r} is the table the DCR writes to"
            elif status in {408, 429} or status >= 500:
                return RetryableError(
                    self._scrub(f"sentinel: querying {where} failed ({label}: {message})"),
                    retry_after=headers_retry_after(getattr(exc.response, "headers", {})),
                )
            else:
                hint = "unexpected answer"
            return FatalSinkError(
                self._scrub(f"sentinel: querying {where} failed ({label}: {message}); {hint}")
            )
        failure = classify(
            exc, rule_id=c.rule_id, stream=c.stream, endpoint=c.query_endpoint, credential=c.credential_kind
        )
        if failure.kind == "retry":
            return RetryableError(self._scrub(f"sentinel: {failure.reason}"), retry_after=failure.retry_after)
        return FatalSinkError(self._scrub(f"sentinel: querying {where}: {failure.reason}"))

    def _not_the_api(self, answer: Any) -> FatalSinkError:
        """The one-line error for an answer the query API would not give (a proxy's page, say)."""
        c = self.config
        return FatalSinkError(
            self._scrub(
                f"sentinel: querying workspace {self.workspace_id} at {c.query_endpoint}: the answer was not "
                f"the Log Analytics query API's ({self._answered(answer)}); check query_endpoint (a proxy or "
                "another service answers there)"
            )
        )

    def _answered(self, answer: Any) -> str:
        """What answered (azure-core's pipeline response): ``HTTP 200, text/html: 'Sign in'``."""
        http = getattr(answer, "http_response", None)
        if http is None:
            return "no readable answer"
        shown = describe_answer(_body(http), http.headers.get("Content-Type"), self.config.secret_values)
        return f"HTTP {http.status_code}, {shown}"

    def _scrub(self, text: str) -> str:
        """Remove secret values and access tokens from text bound for logs and errors."""
        return scrub_tokens(text, self.config.secret_values, self._tokens)


def _body(http: Any) -> bytes:
    try:
        return bytes(http.body())
    except Exception:  # a body that cannot be read is described as empty
        return b""


def _has_tables(answer: Any) -> bool:
    """Whether the query API's JSON answer has its ``tables`` (a partial result's too)."""
    http = getattr(answer, "http_response", None)
    if http is None:
        return True  # nothing to judge by: the result speaks for itself
    try:
        document = json.loads(_body(http))
    except ValueError:
        return False
    return isinstance(document, dict) and "tables" in document


def _cell(row: Any, column: str) -> object:
    """A row's value in ``column``; None when the answer has no such column."""
    try:
        return row[column]
    except (KeyError, IndexError, ValueError):
        return None


def _moment(value: object) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, str) and value:
        try:
            parsed = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed.astimezone(dt.UTC) if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return None
