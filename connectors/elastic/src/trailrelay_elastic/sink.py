"""The Elasticsearch sink: one ``_bulk`` request per cut of a batch, one outcome per record."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import orjson
from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import SerializationError, TransportError
from elasticsearch import ApiError, Elasticsearch, UnsupportedProductError
from isal import isal_zlib

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
from trailrelay_elastic.admin import check_cluster
from trailrelay_elastic.client import make_client, unreachable
from trailrelay_elastic.config import ElasticConfig
from trailrelay_elastic.encode import DocumentBuilder
from trailrelay_elastic.integrity import is_integrity
from trailrelay_elastic.responses import describe_error, item_outcome

__all__ = ["ElasticSink"]

_FILTER_PATH = "errors,items.*.status,items.*.error"
_BULK_HEADERS = {
    "accept": "application/json",
    "content-type": "application/x-ndjson",
    "content-encoding": "gzip",
}
_GZIP_LEVEL = 1
"""isa-l level 1: about as small as zlib's level 6 at a fraction of the CPU (10 MB bodies)."""


def gzip_body(body: bytes) -> bytes:
    """A gzip stream of ``body`` (what the sink sends with ``Content-Encoding: gzip``)."""
    compressor = isal_zlib.compressobj(_GZIP_LEVEL, isal_zlib.DEFLATED, 16 + isal_zlib.MAX_WBITS)
    return compressor.compress(body) + compressor.flush()


def _retry_after(error: ApiError) -> float | None:
    """The response's Retry-After (delay-seconds or an HTTP date) in seconds, or None."""
    return retry_after_seconds(error.meta.headers.get("retry-after") if error.meta is not None else None)


class ElasticSink:
    """Sends records to a data stream or index with idempotent ``create`` actions."""

    def __init__(self, config: ElasticConfig, context: SinkContext) -> None:
        self.config = config
        self.context = context
        self.builder = DocumentBuilder(config)
        self._client: Elasticsearch | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        c = self.config
        return f"ElasticSink(name={self.context.name!r}, target={c.target.name!r}, mode={c.mode!r})"

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
        """Build the client (no request is made); FatalSinkError for unusable TLS settings."""
        with self._lock:
            if self._client is None:
                try:
                    self._client = make_client(self.config, self.context.logger, self.context.user_agent)
                except (ConfigError, ValueError) as exc:
                    raise FatalSinkError(f"elastic sink {self.context.name}: {exc}") from None

    def close(self) -> None:
        """Close connections; safe to call twice."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    @property
    def client(self) -> Elasticsearch:
        """The open client (opens on first use)."""
        if self._client is None:
            self.open()
        assert self._client is not None
        return self._client

    def check(self) -> CheckResult:
        """Reach the cluster, verify product and version, privileges and the target; send nothing."""
        return check_cluster(self.client, self.config)

    def send(self, batch: Batch) -> Sequence[Outcome]:
        """Deliver a batch in one or more ``_bulk`` requests; one outcome per record, in order."""
        records = batch.records
        outcomes: list[Outcome | None] = [None] * len(records)
        entries: list[bytes] = []
        positions: list[int] = []
        entry = self.builder.entry
        for i, record in enumerate(records):
            try:
                entries.append(entry(record))
            except Exception as exc:
                what = "integrity" if is_integrity(record) else self.config.mode
                outcomes[i] = Outcome.rejected(f"cannot build the {what} document: {exc}")
            else:
                positions.append(i)
        groups = cut_runs(
            [len(e) for e in entries], self.config.batch_bytes, self.config.batch_actions, separator_bytes=0
        )
        if len(groups) == 1 and len(positions) == len(records):  # the common case: one request
            self._send_group(positions, entries, outcomes, records)
        else:
            for group in groups:
                self._send_group(
                    [positions[k] for k in group], [entries[k] for k in group], outcomes, records
                )
        # Not `None in outcomes`: that would call Outcome.__eq__ (Python code) for every record.
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
        body = gzip_body(b"".join(entries))
        params = {"filter_path": _FILTER_PATH}
        if self.config.pipeline is not None:
            params["pipeline"] = self.config.pipeline
        try:
            # POST (the client's bulk() uses PUT; both are the documented _bulk API) with the
            # body compressed here: the client would gzip 10 MB at level 9.
            response = self.client.perform_request(
                "POST", "/_bulk", params=params, headers=_BULK_HEADERS, body=body, endpoint_id="bulk"
            )
        except UnsupportedProductError:
            raise FatalSinkError(
                f"{self._where()} did not identify itself as Elasticsearch (no X-Elastic-Product header)"
            ) from None
        except ApiError as exc:
            self._request_failed(exc, positions, entries, outcomes, records)
            return
        except (TransportConnectionError, SerializationError, TransportError) as exc:
            refused = refused_certificate(exc, "Fingerprints did not match")  # a pinned one
            if refused is not None:
                raise FatalSinkError(self._safe(self._tls_refused(refused))) from None
            reason = unreachable(self._where(), exc)
            for p in positions:
                outcomes[p] = Outcome.retry(self._safe(reason))
            return
        answer = response.body
        items = answer.get("items") if isinstance(answer, dict) else None
        if not isinstance(items, list):
            # A 2xx that is no bulk response (a proxy's page sent with the product header): nothing
            # says what happened to the documents, so they are sent again, as OpenSearch's sink does.
            raw = answer if isinstance(answer, str | bytes) else orjson.dumps(answer)
            what = describe_answer(raw, response.meta.headers.get("content-type"), self.config.secret_values)
            reason = (
                f"{self._where()} answered HTTP {response.meta.status} with no bulk response "
                f"(a proxy or load balancer answered?): {what}"
            )
            for p in positions:
                outcomes[p] = Outcome.retry(self._safe(reason))
            return
        if len(items) != len(positions):
            for p in positions:
                outcomes[p] = Outcome.retry(
                    f"bulk response had {len(items)} items for {len(positions)} documents"
                )
            return
        if answer.get("errors") is False:  # every item succeeded: no need to read them one by one
            if len(positions) == len(outcomes):
                outcomes[:] = [DELIVERED] * len(outcomes)
            else:
                for p in positions:
                    outcomes[p] = DELIVERED
            return
        for p, item in zip(positions, items, strict=True):
            outcomes[p] = item_outcome(item, self._target(records[p]))

    def _request_failed(
        self,
        exc: ApiError,
        positions: list[int],
        entries: list[bytes],
        outcomes: list[Outcome | None],
        records: Sequence[Record],
    ) -> None:
        """Map a whole-request error to outcomes, or raise when the sink cannot work."""
        status = exc.meta.status if exc.meta is not None else 0
        body = exc.body
        if isinstance(body, str):  # a proxy's page: masked before describe_error cuts it
            body = self._safe(body)
        etype, reason = describe_error(body.get("error") if isinstance(body, dict) else body)
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
                f"Elasticsearch at {self._where()} refused the credentials ({self._auth()}): {text}"
            )
        if status == 403:
            names = ", ".join(sorted({self._target(records[p]) for p in positions}))
            raise FatalSinkError(f"the credentials ({self._auth()}) may not write to {names}: {text}")
        if status == 404:
            raise FatalSinkError(f"{self._where()} has no _bulk endpoint (check url): {text}")
        if status in (408, 429) or status >= 500:  # 408: a proxy's Request Time-out
            after = _retry_after(exc)
            for p in positions:
                outcomes[p] = Outcome.retry(text, after)
            return
        if not (isinstance(exc.body, dict) and "error" in exc.body):
            # A redirect or a page (nginx's "plain HTTP request was sent to HTTPS port"): not
            # Elasticsearch refusing the documents but something else answering at `url`.
            raise FatalSinkError(self._safe(self._not_elasticsearch(exc, status)))
        for p in positions:
            outcomes[p] = Outcome.rejected(f"Elasticsearch refused the bulk request: {text}")

    def _not_elasticsearch(self, exc: ApiError, status: int) -> str:
        """Why the run stops when a 3xx or 4xx answer to ``_bulk`` is not Elasticsearch's JSON error."""
        meta = exc.meta
        node = getattr(getattr(meta, "node", None), "base_url", None) or self._where()
        headers = meta.headers if meta is not None else {}
        if 300 <= status < 400:
            location = headers.get("location") or "nowhere (no Location)"
            return f"HTTP {status} from {node}/_bulk: redirected to {location}: set url to the final address"
        body = exc.body
        if not isinstance(body, str | bytes):
            body = orjson.dumps(body) if body is not None else b""
        answer = describe_answer(body, headers.get("content-type"), self.config.secret_values)
        return (
            f"HTTP {status} from {node}/_bulk is not Elasticsearch's answer ({answer}): "
            "check url (scheme, host and port) and any proxy in front of the cluster"
        )

    def _where(self) -> str:
        return "Elastic Cloud" if self.config.cloud_id else ", ".join(self.config.urls)

    def _tls_refused(self, refused: str) -> str:
        """Why the run stops when the cluster's certificate failed the check, and what to set."""
        if self.config.ssl_assert_fingerprint:
            fix = "check ssl_assert_fingerprint (the SHA-256 of the certificate the cluster presents)"
        else:
            fix = "set ca_bundle to the PEM of the CA that signed the cluster's certificate"
        return f"TLS verification of {self._where()} failed ({refused}); {fix}"

    def _auth(self) -> str:
        c = self.config
        if c.api_key is not None:
            return "api_key"
        if c.username is not None:
            return f"username {c.username} + password"
        if c.bearer_token is not None:
            return "bearer_token"
        return "no credentials configured"

    def _safe(self, text: str) -> str:
        return scrub(text, self.config.secret_values)
