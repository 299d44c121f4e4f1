"""The Sentinel sink: records -> AWSCloudTrail rows -> gzip'd uploads through LogsIngestionClient.

One ``send`` maps the batch once, cuts it into bodies under the 1 MB request limit and uploads
each body with the official client. A failed body ("chunk") is reported to ``on_error`` with
the records it carried and then, by what Azure said:

* 400, 413 with Azure's error -> split in halves and resend, down to the single record, which
  is REJECTED with Azure's reason (a 413 single record is first trimmed; the row says what was
  trimmed);
* a 2xx other than 204, a 3xx, or a 4xx without Azure's error (a proxy's page) -> FatalSinkError
  naming what answered;
* 429, 408, 5xx, connection errors -> RETRY (with Retry-After when given), and the chunks
  not yet sent in this batch are RETRY too, so a throttled DCR is not hammered;
* 401 once uploads have worked -> a new token and the body sent once more;
* 401 (again, or before any upload worked), 403, 404, a refused credential -> FatalSinkError
  with what to fix.

Integrity events (``origin.kind == "integrity"``) become ``TrailrelayIntegrity_CL`` rows and go
in requests of their own to ``integrity_stream``; a batch holding both kinds makes one series of
requests per stream, and a failure that stops one stops the rest of the batch.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import HttpResponseError
from azure.core.pipeline.policies import RetryPolicy
from azure.monitor.ingestion import LogsIngestionClient
from isal import isal_zlib
from requests.utils import get_environ_proxies

from trailrelay.contract import (
    DELIVERED,
    INTEGRITY_KIND,
    Batch,
    BatchLimits,
    CheckResult,
    FatalSinkError,
    Outcome,
    Record,
    RetryableError,
    SinkContext,
    tls_verify,
)
from trailrelay_sentinel.columns import EVENT_TIME_COLUMN
from trailrelay_sentinel.config import SentinelConfig
from trailrelay_sentinel.credentials import (
    IssuedTokens,
    TokenAnswers,
    build_credential,
    close_quietly,
    scrub_tokens,
)
from trailrelay_sentinel.encode import MAX_BODY_BYTES, EncodedRow, body_of, cut_bodies, encode_batch
from trailrelay_sentinel.failures import Failure, _error_detail, classify
from trailrelay_sentinel.integrity import is_integrity
from trailrelay_sentinel.mapping import trim_row

__all__ = ["BACKFILL_AGE", "ChunkError", "SentinelSink", "UploadRetryPolicy"]

BACKFILL_AGE = 2 * 86400.0
"""Azure replaces a TimeGenerated older than 2 days (or over 1 day ahead) with the receive time."""
_FUTURE_AGE = -86400.0
CHUNK_LOG_EVERY = 30.0
"""Seconds between warnings about failed uploads (the first comes at once), as the pipeline's."""
_MARGIN = 600.0  # minutes in transit and queues: warn a little early rather than late


@dataclass(frozen=True, slots=True)
class ChunkError:
    """A request body that failed: the error, what it means, and the records it carried."""

    error: BaseException
    failure: Failure
    records: Sequence[Record]


class UploadRetryPolicy(RetryPolicy):  # type: ignore[type-arg]
    """azure-core's RetryPolicy, also retrying a POST answered 408/429/502 without Retry-After.

    The stock policy retries a POST only on 500/503/504 or when Retry-After is present, so a
    bare 429 from the ingestion API would not be retried inside the SDK at all.
    """

    def _is_method_retryable(self, settings: dict[str, Any], request: Any, response: Any = None) -> bool:
        if response is not None and response.status_code in (408, 429, 500, 502, 503, 504):
            return True
        return bool(super()._is_method_retryable(settings, request, response=response))


def _bearer_token(exc: HttpResponseError) -> str | None:
    """The access token of the request a response answered."""
    request = getattr(exc.response, "request", None)
    auth = str(getattr(request, "headers", {}).get("Authorization") or "")
    return auth[7:] if auth[:7].lower() == "bearer " else None


class SentinelSink:
    """Delivers CloudTrail records to Microsoft Sentinel's AWSCloudTrail table."""

    def __init__(
        self,
        config: SentinelConfig,
        context: SinkContext,
        *,
        credential: TokenCredential | None = None,
        client_options: dict[str, Any] | None = None,
        credential_options: dict[str, Any] | None = None,
        on_error: Callable[[ChunkError], None] | None = None,
        max_body: int = MAX_BODY_BYTES,
        warn_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._context = context
        self._log = context.logger
        self._credential = credential
        self._own_credential = credential is None
        self._client_options = dict(client_options or {})
        self._credential_options = dict(credential_options or {})
        self._on_error = on_error or self._log_chunk_error
        self._max_body = max_body
        self._warn_interval = warn_interval
        self._clock = clock
        self._client: LogsIngestionClient | None = None
        self._lock = threading.Lock()
        self._backfill_pending = 0
        self._backfill_total = 0
        self._last_warning = float("-inf")
        self._token_answers = TokenAnswers()
        """The token endpoint's latest answer, for telling an Entra outage from a refused credential."""
        self._tokens: IssuedTokens | None = None
        """The credential the client uses: it remembers the access tokens, to keep them out of messages."""
        self._accepted = False
        """An upload succeeded in this run: the identity and audience are right, a 401 is a stale token."""
        self._failed_uploads = 0
        self._failed_records = 0
        self._last_failure_log = float("-inf")

    def __repr__(self) -> str:
        c = self.config
        return (
            f"SentinelSink(name={c.display_name!r}, endpoint={c.endpoint!r}, rule_id={c.rule_id!r}, "
            f"stream={c.stream!r})"
        )

    __str__ = __repr__

    @property
    def limits(self) -> BatchLimits:
        """Batches of up to ``max_records``; each becomes one or more ~1 MB requests."""
        return BatchLimits(
            max_records=self.config.max_records,
            max_bytes=4 * 1024 * 1024,
            max_age=self.config.batch_seconds,
            concurrency=self.config.concurrency,
        )

    # --- lifecycle ------------------------------------------------------------------------------

    def open(self) -> None:
        """Build the credential and the LogsIngestionClient (no network yet)."""
        with self._lock:
            if self._client is not None:
                return
            c = self.config
            if c.ca_bundle is not None and not Path(c.ca_bundle).is_file():
                raise FatalSinkError(f"sentinel: ca_bundle {c.ca_bundle!r} is not a readable file")
            # what requests would take from the environment, decided once (see use_env_settings)
            verify = tls_verify(c.verify_tls, c.ca_bundle, self._log, environment=True)
            transport = {"connection_timeout": c.timeout, "read_timeout": c.timeout}
            # azure-identity warns on every failed token request ("get_token failed"): the
            # failure's reason is in the outcomes already, and the pipeline says every 30 s.
            logging.getLogger("azure.identity").setLevel(logging.ERROR)
            build: Callable[[], TokenCredential] | None = None
            if self._credential is None:
                build = partial(
                    build_credential,
                    c,
                    verify,
                    raw_response_hook=self._token_answers,
                    **transport,
                    **self._credential_options,
                )
                self._credential = build()
            options: dict[str, Any] = {
                "credential_scopes": [c.scope],
                "connection_verify": verify,
                "user_agent": self._context.user_agent,
                # Proxies and the CA bundle are read from the environment here, once: with
                # use_env_settings, requests scans every environment variable on every upload
                # (about 1 ms of CPU each, half the client's cost per request).
                "use_env_settings": False,
                "proxies": get_environ_proxies(c.endpoint) or None,
                **transport,
            }
            options.update(self._client_options)
            retry = {k: options.pop(k) for k in list(options) if k.startswith("retry_")}
            retry.setdefault("retry_total", c.sdk_retries)
            options["retry_policy"] = UploadRetryPolicy(**retry)
            self._tokens = IssuedTokens(self._credential, build)
            self._client = LogsIngestionClient(c.endpoint, self._tokens, **options)

    def close(self) -> None:
        """Close the client and a credential we built; safe to call twice."""
        with self._lock:
            client, self._client = self._client, None
            if self._own_credential:
                self._credential = None
        close_quietly(client, self._tokens)  # closes the credentials only when the sink built them

    def _ready(self) -> LogsIngestionClient:
        if self._client is None:
            self.open()
        assert self._client is not None
        return self._client

    # --- sending --------------------------------------------------------------------------------

    def send(self, batch: Batch) -> Sequence[Outcome]:
        """Upload a batch; one outcome per record, in order."""
        records = batch.records
        if not records:
            return []
        client = self._ready()
        rows, plain = encode_batch(records, self._max_body)
        outcomes: list[Outcome | None] = [None] * len(records)
        by_stream: tuple[list[int], list[int]] = ([], [])  # CloudTrail rows, integrity rows
        trimmed = 0
        if plain:  # the usual batch: every row a CloudTrail row, none rejected or trimmed
            by_stream[0].extend(range(len(rows)))
        else:
            for i, row in enumerate(rows):
                if row.error is not None:
                    outcomes[i] = Outcome.rejected(row.error)
                else:
                    by_stream[records[i].origin.kind == INTEGRITY_KIND].append(i)
                    if row.trimmed:
                        trimmed += 1
        if trimmed:
            self._log.warning(
                f"sentinel: {trimmed} record(s) were over the request limit; their largest fields were "
                "trimmed (the row's field says trailrelay_trimmed, with the original size and SHA-256)"
            )
        self._note_backfill(records)
        stop: Failure | None = None
        c = self.config
        for stream, group in ((c.stream, by_stream[0]), (c.integrity_stream, by_stream[1])):
            for rng in cut_bodies([len(rows[i].data) for i in group], self._max_body):
                idxs = group[rng.start : rng.stop]
                if stop is not None:
                    for i in idxs:
                        outcomes[i] = Outcome.retry(
                            f"not sent: an earlier request failed ({stop.reason})", stop.retry_after
                        )
                    continue
                stop = self._deliver(client, idxs, rows, records, outcomes, stream)
        # Not `None in outcomes`: that would call Outcome.__eq__ (Python code) for every record.
        return [o if o is not None else Outcome.retry("internal: no outcome") for o in outcomes]

    def _deliver(  # noqa: PLR0917 - private helper, recursive
        self,
        client: LogsIngestionClient,
        idxs: list[int],
        rows: list[EncodedRow],
        records: Sequence[Record],
        outcomes: list[Outcome | None],
        stream: str,
    ) -> Failure | None:
        """Upload one body; split or settle on failure. Returns a Failure that should stop the batch."""
        try:
            self._upload(client, body_of([rows[i].data for i in idxs]), stream)
        except Exception as exc:
            failure = self._classify(exc, stream)
            self._on_error(ChunkError(exc, failure, [records[i] for i in idxs]))
            if failure.kind == "fatal":
                raise FatalSinkError(f"sentinel: {failure.reason}") from None
            if failure.kind == "retry":
                for i in idxs:
                    outcomes[i] = Outcome.retry(failure.reason, failure.retry_after)
                return failure
            if len(idxs) > 1:
                mid = len(idxs) // 2
                stop = self._deliver(client, idxs[:mid], rows, records, outcomes, stream)
                if stop is None:
                    return self._deliver(client, idxs[mid:], rows, records, outcomes, stream)
                for i in idxs[mid:]:
                    outcomes[i] = Outcome.retry(
                        f"not sent: an earlier request failed ({stop.reason})", stop.retry_after
                    )
                return stop
            return self._single_refused(client, idxs[0], rows, records, outcomes, failure, stream)
        for i in idxs:
            outcomes[i] = DELIVERED
        return None

    def _single_refused(  # noqa: PLR0917 - private helper mirroring _deliver's state
        self,
        client: LogsIngestionClient,
        i: int,
        rows: list[EncodedRow],
        records: Sequence[Record],
        outcomes: list[Outcome | None],
        failure: Failure,
        stream: str,
    ) -> Failure | None:
        """One record refused with 400/413: trim once on 413, else reject with Azure's reason."""
        row = rows[i]
        if failure.status == 413 and not row.trimmed and not is_integrity(records[i]):
            from trailrelay_sentinel.mapping import map_record  # noqa: PLC0415 - rare path

            data, trimmed = trim_row(map_record(records[i]), max(1024, len(row.data) // 2))
            if trimmed:
                rows[i] = EncodedRow(data, tuple(trimmed))
                return self._deliver(client, [i], rows, records, outcomes, stream)
        note = f" (after trimming {', '.join(row.trimmed)})" if row.trimmed else ""
        outcomes[i] = Outcome.rejected(f"Azure Monitor refused the record{note}: {failure.reason}")
        return None

    def _upload(self, client: LogsIngestionClient, body: bytes, stream: str | None = None) -> None:
        """Upload one body; after a 401 once uploads have worked, once more with a new token."""
        compressor = isal_zlib.compressobj(2, isal_zlib.DEFLATED, 16 + isal_zlib.MAX_WBITS)
        gz = compressor.compress(body) + compressor.flush()
        rule_id, stream = self.config.rule_id, stream or self.config.stream
        try:
            # A gzip stream: the client sends it as-is with Content-Encoding: gzip.
            client.upload(rule_id, stream, io.BytesIO(gz))
        except HttpResponseError as exc:
            if exc.status_code != 401 or not self._accepted or self._tokens is None:
                raise
            # The token expired early or was revoked (Continuous Access Evaluation, a reset
            # session). azure-core dropped it; a new credential gets a new one from Entra.
            code, message = _error_detail(exc)
            self._log.info(
                self._scrub(
                    f"sentinel: {self.config.endpoint} refused the access token that worked so far "
                    f"(HTTP 401 {code or ''}: {message}); sending again with a new one"
                )
            )
            self._tokens.renew(_bearer_token(exc))
            client.upload(rule_id, stream, io.BytesIO(gz))  # a 401 again is final
        self._accepted = True

    def _classify(self, exc: BaseException, stream: str | None = None) -> Failure:
        c = self.config
        failure = classify(
            exc,
            rule_id=c.rule_id,
            stream=stream or c.stream,
            endpoint=c.endpoint,
            credential=c.credential_kind,
            token_answer=self._token_answers.last,
            token_accepted=self._accepted,
        )
        return Failure(
            failure.kind, self._scrub(failure.reason), failure.status, failure.code, failure.retry_after
        )

    def _scrub(self, text: str) -> str:
        """Remove secret values and access tokens from text bound for logs, errors and dead letters."""
        return scrub_tokens(text, self.config.secret_values, self._tokens)

    def _log_chunk_error(self, err: ChunkError) -> None:
        """Warn that uploads fail: the first at once, then at most every CHUNK_LOG_EVERY seconds.

        In an outage every chunk of every batch fails, many a second; each later warning says how
        many failed since the one before and shows the latest reason.
        """
        f = err.failure
        now = self._clock()
        with self._lock:
            self._failed_uploads += 1
            self._failed_records += len(err.records)
            if now - self._last_failure_log < CHUNK_LOG_EVERY:
                return
            uploads, records = self._failed_uploads, self._failed_records
            self._failed_uploads = self._failed_records = 0
            self._last_failure_log = now
        if uploads == 1:
            self._log.warning(f"sentinel: upload of {records} record(s) failed ({f.kind}): {f.reason}")
        else:
            self._log.warning(
                f"sentinel: {uploads} uploads of {records} record(s) in all failed since the last message; "
                f"the latest ({f.kind}): {f.reason}"
            )

    def _note_backfill(self, records: Sequence[Record]) -> None:
        """Count records whose eventTime Azure will not keep as TimeGenerated, and say so."""
        now = self._clock()
        old = 0
        # Compared as datetimes (no float conversion per record): older than `oldest` or newer
        # than `newest` is `age > BACKFILL_AGE - _MARGIN or age < _FUTURE_AGE`.
        oldest = dt.datetime.fromtimestamp(now - (BACKFILL_AGE - _MARGIN), dt.UTC)
        newest = dt.datetime.fromtimestamp(now - _FUTURE_AGE, dt.UTC)
        for r in records:
            t = r.routing.event_time
            if t is None:
                continue
            if t.tzinfo is None:  # the core normalizes to UTC; a naive time counts as local, as epoch does
                age = now - t.timestamp()
                if age > BACKFILL_AGE - _MARGIN or age < _FUTURE_AGE:
                    old += 1
            elif t < oldest or t > newest:
                old += 1
        if not old:
            return
        with self._lock:
            self._backfill_pending += old
            self._backfill_total += old
            if now - self._last_warning < self._warn_interval:
                return
            pending, total = self._backfill_pending, self._backfill_total
            self._backfill_pending = 0
            self._last_warning = now
        self._log.warning(
            f"sentinel: {pending} record(s) have an eventTime more than 2 days old (or over a day ahead); "
            "Azure Monitor stores them with TimeGenerated = ingestion time. Their original eventTime is "
            f"in {EVENT_TIME_COLUMN} (AWSCloudTrail) or EventTime (custom table) - query that column for "
            f"backfilled data. {total} such record(s) since start."
        )

    # --- check ------------------------------------------------------------------------------------

    def check(self) -> CheckResult:
        """Get a token and upload an empty array: proves endpoint, rule, stream and role, writes nothing."""
        client = self._ready()
        c = self.config
        assert self._tokens is not None
        started = time.perf_counter()
        try:
            token = self._tokens.get_token(c.scope)
        except Exception as exc:
            self._raise_for(exc)
        token_ms = (time.perf_counter() - started) * 1000
        try:
            self._upload(client, b"[]")
        except Exception as exc:
            self._raise_for(exc)
        return CheckResult(
            ok=True,
            summary=f"token for {c.audience} obtained ({c.credential_kind}); {c.endpoint} accepted an empty "
            f"upload to {c.rule_id}/{c.stream}",
            details={
                "endpoint": c.endpoint,
                "rule_id": c.rule_id,
                "stream": c.stream,
                "credential": c.credential_kind,
                "token_expires_in_s": max(0, int(token.expires_on - time.time())),
                "token_ms": round(token_ms, 1),
            },
        )

    def _raise_for(self, exc: BaseException) -> None:
        failure = self._classify(exc)
        if failure.kind == "retry":
            raise RetryableError(f"sentinel: {failure.reason}", retry_after=failure.retry_after) from None
        raise FatalSinkError(f"sentinel: {failure.reason}") from None
