"""The Splunk HEC sink: gzip'd batches over a pooled requests session, with indexer acknowledgement.

One ``send`` turns a batch into envelopes (``encode``), cuts them into bodies within
``batch_bytes``/``batch_events``, and posts each body to ``/services/collector/event``. HEC's
answer decides each event's outcome (see :mod:`trailrelay_splunk.hec`):

* success: DELIVERED, or with ``ack = true`` the ``ackId`` is kept and ``/services/collector/ack``
  is polled on the same channel until HEC says the events are indexed (then DELIVERED) or
  ``ack_timeout`` passes (then RETRY, which can index the events twice; the reason says so);
* ``invalid-event-number`` k: HEC indexed the k events before the bad one and dropped the rest,
  so those k are DELIVERED, event k is REJECTED with HEC's text, the rest are sent again;
* 413: the body is split in two and each half sent; a single event that is still too large is
  REJECTED;
* busy, 429, 5xx, timeouts, refused or reset connections: the unsent events are RETRY (or a
  RetryableError when nothing in the batch got anywhere), with the server's Retry-After;
* a refused token, a wrong index, a token/ack mismatch: FatalSinkError naming the setting.

Each worker thread has its own session (sharing one connection pool) and its own request
channel, so acknowledgements are polled where they were earned.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
import requests
from isal import igzip
from requests.adapters import HTTPAdapter

from trailrelay.contract import (
    DELIVERED,
    Batch,
    BatchLimits,
    CheckResult,
    FatalSinkError,
    Outcome,
    RetryableError,
    SinkContext,
    tls_verify,
)
from trailrelay_splunk.config import SplunkConfig
from trailrelay_splunk.encode import EnvelopeEncoder, cut
from trailrelay_splunk.hec import FATAL_HINTS, HecReply, Verdict, classify, parse_reply

__all__ = ["SplunkSink"]

EVENT_PATH = "/services/collector/event"
ACK_PATH = "/services/collector/ack"
HEALTH_PATH = "/services/collector/health"


class _HecAuth(requests.auth.AuthBase):
    """Sets ``Authorization: Splunk <token>``; explicit so requests never consults .netrc."""

    def __init__(self, header: str) -> None:
        self._header = header

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._header
        return request

    def __repr__(self) -> str:
        return "_HecAuth(<hidden>)"


@dataclass(slots=True)
class _Worker:
    """Per-thread state: a session on the shared pool and the thread's request channel."""

    session: requests.Session
    channel: str


class _Transient(Exception):  # noqa: N818 - internal control flow, never leaves this module
    """A transient failure of one request: its reason and the server's Retry-After."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class SplunkSink:
    """Delivers records to Splunk HEC; thread-safe ``send``."""

    def __init__(
        self,
        config: SplunkConfig,
        context: SinkContext,
        *,
        adapter: HTTPAdapter | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self._context = context
        self._log = context.logger
        self._encoder = EnvelopeEncoder(config)
        self._given_adapter = adapter
        self._adapter: HTTPAdapter | None = None
        self._clock = clock
        self._sleep = sleep
        self._verify: bool | str = True
        self._local = threading.local()
        self._workers: list[_Worker] = []
        self._lock = threading.Lock()
        self._warned_capacity = False
        self._auth = _HecAuth("Splunk " + config.token.get_secret_value())
        self._timeout = (min(10.0, config.timeout), config.timeout)

    def __repr__(self) -> str:
        c = self.config
        return f"SplunkSink(name={c.display_name!r}, url={c.url!r}, index={c.index!r}, ack={c.ack})"

    @property
    def limits(self) -> BatchLimits:
        """Batches of ``batch_events`` records / ``batch_bytes``; ``concurrency`` in flight."""
        c = self.config
        return BatchLimits(
            max_records=c.batch_events,
            max_bytes=c.batch_bytes,
            max_age=c.batch_seconds,
            concurrency=c.concurrency,
        )

    # -- lifecycle -------------------------------------------------------------------------

    def open(self) -> None:
        """Check the TLS settings and build the connection pool (no network traffic)."""
        c = self.config
        if c.ca_bundle and not Path(c.ca_bundle).is_file():
            raise FatalSinkError(f"sink {c.display_name!r}: ca_bundle {c.ca_bundle!r} is not a readable file")
        self._verify = tls_verify(c.verify_tls, c.ca_bundle, self._log)
        if self._adapter is None:
            self._adapter = self._given_adapter or HTTPAdapter(
                pool_connections=1, pool_maxsize=c.concurrency + 2, max_retries=0
            )

    def close(self) -> None:
        """Close every worker's session and the pool; safe to call twice."""
        with self._lock:
            workers, self._workers = self._workers, []
            adapter, self._adapter = self._adapter, None
        for w in workers:
            w.session.close()
        if adapter is not None:
            adapter.close()
        self._local = threading.local()

    def _worker(self) -> _Worker:
        worker: _Worker | None = getattr(self._local, "worker", None)
        if worker is not None:
            return worker
        if self._adapter is None:
            self.open()
        session = requests.Session()
        session.auth = self._auth
        session.verify = self._verify
        session.headers["User-Agent"] = self._context.user_agent
        assert self._adapter is not None
        session.mount("https://", self._adapter)
        session.mount("http://", self._adapter)
        worker = _Worker(session, str(uuid.uuid4()))
        self._local.worker = worker
        with self._lock:
            self._workers.append(worker)
        return worker

    # -- sending ---------------------------------------------------------------------------

    def send(self, batch: Batch) -> Sequence[Outcome]:
        """Deliver a batch to HEC; one outcome per record, in order."""
        records = batch.records
        if not records:
            return []
        outcomes: list[Outcome | None] = [None] * len(records)
        envelopes: list[bytes] = [b""] * len(records)
        good: list[int] = []
        for i, record in enumerate(records):
            try:
                envelopes[i] = self._encoder.envelope(record)
                good.append(i)
            except (ValueError, TypeError) as exc:
                outcomes[i] = Outcome.rejected(f"cannot encode the record as an HEC event: {exc}")
        sizes = [len(envelopes[i]) for i in good]
        queue: deque[list[int]] = deque(
            [good[j] for j in run] for run in cut(sizes, self.config.batch_bytes, self.config.batch_events)
        )
        worker = self._worker()
        pending: dict[int, list[int]] = {}
        transient: _Transient | None = None
        while queue:
            idxs = queue.popleft()
            try:
                reply = self._post_events(worker, b"\n".join(envelopes[i] for i in idxs))
                self._apply(reply, idxs, outcomes, queue, pending)
            except _Transient as exc:
                transient = exc
                queue.appendleft(idxs)
                break
        # Nothing accepted and nothing decided: the whole batch failed the same transient way.
        untouched = not pending and all(o is None for o in outcomes)
        if pending:
            self._await_acks(worker, pending, outcomes)
        if transient is not None:
            if untouched:
                raise RetryableError(transient.reason, retry_after=transient.retry_after)
            for idxs in queue:
                for i in idxs:
                    outcomes[i] = Outcome.retry(transient.reason, transient.retry_after)
        assert all(o is not None for o in outcomes)
        return [o for o in outcomes if o is not None]

    def _apply(
        self,
        reply: HecReply,
        idxs: list[int],
        outcomes: list[Outcome | None],
        queue: deque[list[int]],
        pending: dict[int, list[int]],
    ) -> None:
        """Record what HEC's reply means for the events of one request."""
        verdict = classify(reply)
        if verdict is Verdict.OK:
            if reply.warning:
                self._warn_capacity(reply)
            if not self.config.ack:
                for i in idxs:
                    outcomes[i] = DELIVERED
            elif reply.ack_id is None:
                raise FatalSinkError(self._fatal_text(reply, FATAL_HINTS[14]))
            else:
                pending[reply.ack_id] = idxs
        elif verdict is Verdict.FATAL:
            raise FatalSinkError(self._fatal_text(reply, FATAL_HINTS.get(reply.code or -1)))
        elif verdict is Verdict.RETRY:
            raise _Transient(f"Splunk HEC answered {reply.describe()}", reply.retry_after)
        elif verdict is Verdict.SPLIT:
            if len(idxs) == 1:
                outcomes[idxs[0]] = Outcome.rejected(
                    f"Splunk HEC refused the event as too large ({reply.describe()}); "
                    "raise max_content_length in limits.conf [http_input] or drop the event"
                )
            else:
                mid = len(idxs) // 2
                queue.extendleft([idxs[mid:], idxs[:mid]])
        elif (
            verdict is Verdict.BAD_EVENT
            and reply.invalid_event is not None
            and reply.invalid_event < len(idxs)
        ):
            k = reply.invalid_event
            for i in idxs[:k]:  # HEC indexed the events before the refused one
                outcomes[i] = DELIVERED
            outcomes[idxs[k]] = Outcome.rejected(f"Splunk HEC refused the event: {reply.describe()}")
            if idxs[k + 1 :]:
                queue.appendleft(idxs[k + 1 :])
        elif verdict is Verdict.BAD_EVENT and len(idxs) > 1:
            mid = len(idxs) // 2  # no usable event number: isolate the bad event by halving
            queue.extendleft([idxs[mid:], idxs[:mid]])
        else:
            for i in idxs:
                outcomes[i] = Outcome.rejected(f"Splunk HEC refused the request: {reply.describe()}")

    def _post_events(self, worker: _Worker, body: bytes) -> HecReply:
        """POST one gzip'd body; raise _Transient for what a later attempt may fix."""
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        if self.config.ack:
            headers["X-Splunk-Request-Channel"] = worker.channel
        data = igzip.compress(body, compresslevel=self.config.compress_level)
        reply = self._request(worker, "POST", EVENT_PATH, data, headers)
        if classify(reply) is Verdict.RETRY:
            raise _Transient(f"Splunk HEC answered {reply.describe()}", reply.retry_after)
        return reply

    def _request(
        self, worker: _Worker, method: str, path: str, data: bytes | None, headers: dict[str, str]
    ) -> HecReply:
        url = self.config.url + path
        try:
            # verify per request: a session-level value loses to $REQUESTS_CA_BUNDLE in requests
            response = worker.session.request(
                method, url, data=data, headers=headers, timeout=self._timeout, verify=self._verify
            )
            body = response.content
        except requests.exceptions.SSLError as exc:
            if "certificate" not in str(exc).lower():
                raise _Transient(
                    f"TLS handshake with Splunk HEC at {self.config.url} failed: {_brief(exc)}"
                ) from None
            raise FatalSinkError(
                f"sink {self.config.display_name!r}: TLS verification of {self.config.url} failed "
                f"({_brief(exc)}); set ca_bundle to the CA that signed HEC's certificate"
            ) from None
        except requests.RequestException as exc:
            raise _Transient(f"cannot reach Splunk HEC at {self.config.url}: {_brief(exc)}") from None
        return parse_reply(response.status_code, body, response.headers.get("Retry-After"))

    # -- acknowledgement -------------------------------------------------------------------

    def _await_acks(
        self, worker: _Worker, pending: dict[int, list[int]], outcomes: list[Outcome | None]
    ) -> None:
        """Poll the channel's ackIds until all are indexed or ``ack_timeout`` passes."""
        c = self.config
        deadline = self._clock() + c.ack_timeout
        while pending:
            try:
                acked = self._poll_acks(worker, sorted(pending))
            except _Transient as exc:
                self._log.debug("ack poll on channel %s failed: %s", worker.channel, exc.reason)
                acked = set()
            for ack_id in acked:
                for i in pending.pop(ack_id, []):
                    outcomes[i] = DELIVERED
            remaining = deadline - self._clock()
            if not pending or remaining <= 0:
                break
            self._sleep(min(c.ack_poll_interval, remaining))
        for ack_id, idxs in pending.items():
            reason = (
                f"no indexer acknowledgement from Splunk within {c.ack_timeout:g}s "
                f"(ackId {ack_id}, channel {worker.channel}); re-sending, which may index these events twice"
            )
            for i in idxs:
                outcomes[i] = Outcome.retry(reason)

    def _poll_acks(self, worker: _Worker, ack_ids: list[int]) -> set[int]:
        """Ask HEC which of these ackIds are indexed; FatalSinkError when ack is off for the token."""
        headers = {"Content-Type": "application/json", "X-Splunk-Request-Channel": worker.channel}
        body = orjson.dumps({"acks": ack_ids})
        path = f"{ACK_PATH}?channel={worker.channel}"
        url = self.config.url + path
        try:
            response = worker.session.post(
                url, data=body, headers=headers, timeout=self._timeout, verify=self._verify
            )
            raw = response.content
        except requests.RequestException as exc:
            raise _Transient(f"ack poll failed: {_brief(exc)}") from None
        if response.status_code != 200:
            reply = parse_reply(response.status_code, raw, response.headers.get("Retry-After"))
            if classify(reply) is Verdict.FATAL:
                raise FatalSinkError(self._fatal_text(reply, FATAL_HINTS.get(reply.code or -1)))
            raise _Transient(f"ack poll answered {reply.describe()}")
        try:
            acks = orjson.loads(raw).get("acks", {})
        except (orjson.JSONDecodeError, AttributeError):
            raise _Transient("ack poll answered with something other than {'acks': {...}}") from None
        done: set[int] = set()
        if isinstance(acks, dict):
            for key, value in acks.items():
                if value is True and str(key).isdigit():
                    done.add(int(key))
        return done

    # -- health ----------------------------------------------------------------------------

    def check(self) -> CheckResult:
        """Ask HEC's health endpoint, then probe the token with an empty request (HEC: code 5)."""
        worker = self._worker()
        c = self.config
        try:
            health = self._request(worker, "GET", HEALTH_PATH, None, {})
        except _Transient as exc:
            raise RetryableError(exc.reason) from None
        details: dict[str, object] = {"url": c.url, "health": health.describe(), "ack": c.ack}
        if health.status != 200:
            if health.status == 404:
                return CheckResult(False, f"no HEC health endpoint at {c.url} ({health.describe()})", details)
            return CheckResult(False, f"HEC is not healthy: {health.describe()}", details)
        headers = {"Content-Type": "application/json"}
        if c.ack:
            headers["X-Splunk-Request-Channel"] = worker.channel
        try:
            probe = self._request(worker, "POST", EVENT_PATH, b"", headers)
        except _Transient as exc:
            raise RetryableError(exc.reason) from None
        details["token"] = probe.describe()
        if probe.code != 5:
            verdict = classify(probe)
            hint = FATAL_HINTS.get(probe.code or -1, "")
            if verdict is Verdict.FATAL or probe.status in (401, 403):
                return CheckResult(
                    False, f"HEC refused the request: {probe.describe()} {hint}".strip(), details
                )
            if verdict is Verdict.RETRY:
                return CheckResult(False, f"HEC is busy: {probe.describe()}", details)
        if c.ack:
            # A fresh channel may be unknown to HEC (code 11): only code 14 means "ack is off".
            try:
                probe_ack = self._request(
                    worker,
                    "POST",
                    f"{ACK_PATH}?channel={worker.channel}",
                    b'{"acks":[0]}',
                    {"Content-Type": "application/json", "X-Splunk-Request-Channel": worker.channel},
                )
            except _Transient as exc:
                raise RetryableError(exc.reason) from None
            details["ack"] = probe_ack.describe() if probe_ack.status != 200 else "ack endpoint answers"
            if probe_ack.code == 14 or probe_ack.status in (401, 403):
                ack_hint = FATAL_HINTS.get(probe_ack.code or -1)
                return CheckResult(False, self._fatal_text(probe_ack, ack_hint), details)
        return CheckResult(True, f"HEC at {c.url} is healthy and accepts the token", details)

    # -- messages --------------------------------------------------------------------------

    def _fatal_text(self, reply: HecReply, hint: str | None) -> str:
        hint = hint or {
            401: "HEC refused the token: check `token`",
            403: "HEC refused the token: check `token`",
            404: "no HEC endpoint at this URL: check `url` (the HEC port, usually 8088)",
            405: "no HEC endpoint at this URL: check `url`",
        }.get(reply.status, "check the sink's settings")
        where = f"sink {self.config.display_name!r}: Splunk HEC at {self.config.url}"
        return f"{where} answered {reply.describe()}: {hint}"

    def _warn_capacity(self, reply: HecReply) -> None:
        with self._lock:
            if self._warned_capacity:
                return
            self._warned_capacity = True
        self._log.warning("Splunk HEC is near capacity (%s); expect busy responses", reply.describe())


def _brief(exc: BaseException) -> str:
    """The exception class and its first line; requests' messages never contain headers."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
