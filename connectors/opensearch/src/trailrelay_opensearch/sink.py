"""The OpenSearch sink: one ``_bulk`` request per cut of a batch, one outcome per record."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import orjson
from opensearchpy import ConnectionError as OpenSearchConnectionError
from opensearchpy import OpenSearch, SerializationError, TransportError

from trailrelay.contract import (
    DELIVERED,
    Batch,
    BatchLimits,
    CheckResult,
    ConfigError,
    FatalSinkError,
    Outcome,
    Record,
    SinkContext,
    cut_runs,
    describe_answer,
    refused_certificate,
    retry_after_seconds,
    scrub,
)
from trailrelay_opensearch.admin import check_cluster
from trailrelay_opensearch.client import (
    make_client,
    not_opensearch,
    response_headers,
    unparsed,
)
from trailrelay_opensearch.config import OpenSearchConfig
from trailrelay_opensearch.encode import DocumentBuilder
from trailrelay_opensearch.integrity import is_integrity
from trailrelay_opensearch.responses import (
    describe_error,
    item_outcome,
    refuses_custom_ids,
)

__all__ = ["OpenSearchSink"]


_FILTER_PATH = "errors,items.*.status,items.*.error"


class OpenSearchSink:
    """Sends records to a data stream, index or alias with idempotent ``create`` actions."""

    def __init__(self, config: OpenSearchConfig, context: SinkContext) -> None:
        self.config = config
        self.context = context
        self.builder = DocumentBuilder(config)
        self.with_ids = True
        """False once the collection refused custom ids (Serverless time series): ids are left out."""
        self._client: OpenSearch | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"OpenSearchSink(name={self.context.name!r}, target={self.config.target.name!r})"

    @property
    def limits(self) -> BatchLimits:
        """Batches of ``batch_actions`` records; raw bytes at half ``batch_bytes`` (documents grow)."""
        return BatchLimits(
            max_records=self.config.batch_actions,
            max_bytes=max(64 * 1024, self.config.batch_bytes // 2),
            max_age=self.config.batch_seconds,
            concurrency=self.config.concurrency,
        )

    def open(self) -> None:
        """Build the client (no request is made); FatalSinkError for unusable settings."""
        with self._lock:
            if self._client is None:
                try:
                    self._client = make_client(self.config, self.context.logger, self.context.user_agent)
                except (ConfigError, ValueError) as exc:
                    raise FatalSinkError(f"opensearch sink {self.context.name}: {exc}") from None

    def close(self) -> None:
        """Close connections; safe to call twice."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    @property
    def client(self) -> OpenSearch:
        """The open client (opens on first use)."""
        if self._client is None:
            self.open()
        assert self._client is not None
        return self._client

    def check(self) -> CheckResult:
        """Reach the cluster, verify it is OpenSearch, the credentials and the target; send nothing."""
        try:
            return check_cluster(self.client, self.config)
        except SerializationError as exc:  # a 2xx answer that is not OpenSearch's JSON
            return CheckResult(False, self._safe(not_opensearch(self._where(), exc)), {})

    def send(self, batch: Batch) -> Sequence[Outcome]:
        """Deliver a batch in one or more ``_bulk`` requests; one outcome per record, in order."""
        records = batch.records
        outcomes: list[Outcome | None] = [None] * len(records)
        entries: list[bytes] = []
        positions: list[int] = []
        with_ids = self.with_ids
        for i, record in enumerate(records):
            try:
                entries.append(self.builder.entry(record, with_id=with_ids))
                positions.append(i)
            except Exception as exc:
                what = "integrity" if is_integrity(record) else "CloudTrail"
                outcomes[i] = Outcome.rejected(f"cannot build the {what} document: {exc}")
        sizes = [len(e) for e in entries]
        for group in cut_runs(sizes, self.config.batch_bytes, self.config.batch_actions, separator_bytes=0):
            self._send_group([positions[k] for k in group], [entries[k] for k in group], outcomes, records)
        return [o if o is not None else Outcome.retry("no outcome (internal error)") for o in outcomes]

    def _target(self, record: Record) -> str:
        return self.builder.target_of(record).name

    def _send_group(
        self,
        positions: list[int],
        entries: list[bytes],
        outcomes: list[Outcome | None],
        records: Sequence[Record],
    ) -> None:
        """Send one ``_bulk`` body and record each item's outcome (splitting on HTTP 413)."""
        try:
            response: Any = self.client.bulk(body=b"".join(entries), params={"filter_path": _FILTER_PATH})
        except OpenSearchConnectionError as exc:
            refused = refused_certificate(exc)
            if refused is not None:
                raise FatalSinkError(
                    self._safe(
                        f"TLS verification of {self._where()} failed ({refused}); set ca_bundle to the "
                        "PEM of the CA that signed the cluster's certificate"
                    )
                ) from None
            reason = self._safe(f"cannot reach OpenSearch at {self._where()}: {type(exc).__name__}: {exc}")
            for p in positions:
                outcomes[p] = Outcome.retry(reason)
            return
        except TransportError as exc:
            self._request_failed(exc, positions, entries, outcomes, records)
            return
        except SerializationError as exc:  # a 2xx answer that is not OpenSearch's JSON
            reason = self._safe(
                f"{self._where()} answered without OpenSearch's JSON (a proxy or load balancer "
                f"answered?): {unparsed(exc)}"
            )
            for p in positions:
                outcomes[p] = Outcome.retry(reason)
            return
        items = response.get("items") if isinstance(response, dict) else None
        if not isinstance(items, list) or len(items) != len(positions):
            count = len(items) if isinstance(items, list) else 0
            for p in positions:
                outcomes[p] = Outcome.retry(f"bulk response had {count} items for {len(positions)} documents")
            return
        if response.get("errors") is False:  # every item succeeded: no need to read them one by one
            for p in positions:
                outcomes[p] = DELIVERED
            return
        for p, item in zip(positions, items, strict=True):
            if refuses_custom_ids(item):
                self._drop_ids()
                outcomes[p] = Outcome.retry(
                    "the collection assigns document ids itself (OpenSearch Serverless time series); "
                    "sending again without an _id",
                    0.0,
                )
                continue
            outcomes[p] = item_outcome(item, self._target(records[p]))

    def _drop_ids(self) -> None:
        """Send without ``_id`` from now on, and say so once (replays may then store duplicates)."""
        with self._lock:
            if not self.with_ids:
                return
            self.with_ids = False
        self.context.logger.warning(
            "opensearch sink %s: %s refuses custom document ids (an OpenSearch Serverless time series "
            "or vector collection); sending without ids from now on, so a replayed record is stored again",
            self.context.name,
            self.config.target.name,
        )

    def _request_failed(
        self,
        exc: TransportError,
        positions: list[int],
        entries: list[bytes],
        outcomes: list[Outcome | None],
        records: Sequence[Record],
    ) -> None:
        """Map a whole-request error to outcomes, or raise when the sink cannot work."""
        status = exc.status_code if isinstance(exc.status_code, int) else 0
        error = exc.info if isinstance(exc.info, dict) else exc.error
        if isinstance(error, str):  # a proxy's page: masked before describe_error cuts it
            error = self._safe(error)
        etype, reason = describe_error(error)
        text = self._safe(f"HTTP {status} {etype}: {reason}".rstrip(": "))
        if status == 413:
            if len(positions) > 1:
                half = len(positions) // 2
                self._send_group(positions[:half], entries[:half], outcomes, records)
                self._send_group(positions[half:], entries[half:], outcomes, records)
            else:
                outcomes[positions[0]] = Outcome.rejected(
                    f"document of {len(entries[0])} bytes is larger than the cluster accepts "
                    f"(http.max_content_length): {text}"
                )
            return
        if status == 401:
            raise FatalSinkError(
                f"OpenSearch at {self._where()} refused the credentials ({self.config.auth_setting}): {text}"
            )
        if status == 403:
            names = ", ".join(sorted({self._target(records[p]) for p in positions}))
            raise FatalSinkError(
                f"the credentials ({self.config.auth_setting}) may not write to {names} "
                f"(for SigV4: the IAM policy or the data access policy, and region/aws_service): {text}"
            )
        if status == 404:
            raise FatalSinkError(f"{self._where()} has no _bulk endpoint (check url): {text}")
        if status in (0, 408, 429) or status >= 500:  # 408: a proxy's Request Time-out
            after = retry_after_seconds(response_headers(exc).get("retry-after"))
            for p in positions:
                outcomes[p] = Outcome.retry(text, after)
            return
        if not (isinstance(exc.info, dict) and "error" in exc.info):
            # A redirect or a page (nginx's "plain HTTP request was sent to HTTPS port"): not
            # OpenSearch refusing the documents but something else answering at `url`.
            raise FatalSinkError(self._safe(self._not_opensearch(exc, status)))
        for p in positions:
            outcomes[p] = Outcome.rejected(f"OpenSearch refused the bulk request: {text}")

    def _not_opensearch(self, exc: TransportError, status: int) -> str:
        """Why the run stops when a 3xx or 4xx answer to ``_bulk`` is not OpenSearch's JSON error."""
        urls = self.config.urls
        bulk = f"{urls[0].rstrip('/')}/_bulk" if len(urls) == 1 else f"_bulk at {self._where()}"
        headers = response_headers(exc)
        if 300 <= status < 400:
            location = headers.get("location") or "nowhere (no Location)"
            return f"HTTP {status} from {bulk}: redirected to {location}: set url to the final address"
        # opensearch-py keeps a JSON answer parsed in ``info``, any other answer's text in ``error``
        raw = exc.info if exc.info is not None else exc.error
        body = raw if isinstance(raw, str | bytes) else orjson.dumps(raw) if raw is not None else b""
        answer = describe_answer(body, headers.get("content-type"), self.config.secret_values)
        return (
            f"HTTP {status} from {bulk} is not OpenSearch's answer ({answer}): "
            "check url (scheme, host and port) and any proxy in front of the cluster"
        )

    def _where(self) -> str:
        return ", ".join(self.config.urls)

    def _safe(self, text: str) -> str:
        return scrub(text, self.config.secret_values)
