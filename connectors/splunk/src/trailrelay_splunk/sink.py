"""The Splunk HEC sink: gzip'd batches over a pooled requests session, with indexer acknowledgement.

One ``send`` turns a batch into envelopes (``encode``), cuts them into bodies within
``batch_bytes``/``batch_events``, and posts each body to ``/services/collector/event``. HEC's
answer decides each event's outcome (see :mod:`trailrelay_splunk.hec`):

* success without ``ackId``: DELIVERED ("HEC accepted it"; with ``ack`` unset this is how a token
  without indexer acknowledgement is detected, and said once in a warning);
* a receiver that is not Splunk (Vector, Fluent Bit, the OpenTelemetry Collector, Cribl): the same
  rule, detected from its answers. The JSON string ``"OK"`` (older OpenTelemetry Collectors) is
  a success without ``ackId``. A receiver that hands out ackIds but has no
  ``/services/collector/ack`` (404/405, or a 400 that is not HEC's JSON) cannot confirm them: the
  sink says so once, stops polling, resolves what waited DELIVERED and from then on treats every
  accepted request as DELIVERED ("accepted by the receiver"), the guarantee a re-send could not
  improve (it would get the same unverifiable answer and index the events twice). With
  ``ack = true`` that is a FatalSinkError instead. Only an ack endpoint that never answered like
  HEC is taken for missing: once a poll got HEC's ``acks`` (or code 11), a later 404/405 or
  foreign 400 is a proxy's or load balancer's glitch, retried like any failed poll;
* success with ``ackId``: PENDING. The ackId joins its channel's ledger and ``send`` returns at
  once; one poller asks HEC about every pending ackId of a channel in one request per interval
  (short while acks come quickly, longer while they do not) and resolves each request's
  :class:`~trailrelay.contract.Receipt`: DELIVERED once indexed, RETRY after ``ack_timeout``
  (which can index the events twice; the reason says so);
* a 2xx answer that is not HEC's (a proxy or load-balancer page, an empty body, JSON without
  HEC's ``code``): RETRY, naming what answered;
* ``invalid-event-number`` k: HEC kept the k events before the bad one and dropped the rest.
  Without acknowledgement those k are DELIVERED; with it no ackId vouches for them, so they are
  RETRY (the reason says they may be indexed twice). Event k is REJECTED with HEC's text, the
  rest are sent again;
* 413: the body is split in two and each half sent; a single event that is still too large is
  REJECTED;
* busy (also "too many pending acks"), 429, 5xx, timeouts, refused or reset connections: the
  unsent events are RETRY (or a RetryableError when nothing in the batch got anywhere), with the
  server's Retry-After;
* a refused token, a wrong index, a token/ack mismatch: FatalSinkError naming the setting;
* a redirect (never followed: requests would drop the token on the way, and a 302 turns the
  POST into a body-less GET) or a 4xx that is not HEC's JSON (a proxy's page, e.g. nginx's
  "plain HTTP request was sent to HTTPS port"): FatalSinkError naming what answered, so a
  configuration mistake stops the run instead of dead-lettering every event as refused.

Each sending thread has its own request channel and session (sharing one connection pool); the
poller uses the channel's cookies too, so a load balancer's sticky session sends ack queries to
the indexer that holds the channel, as Splunk requires.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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
    Receipt,
    RetryableError,
    SinkContext,
    cut_runs,
    scrub,
    tls_verify,
)
from trailrelay_splunk.config import SplunkConfig
from trailrelay_splunk.encode import EnvelopeEncoder
from trailrelay_splunk.hec import FATAL_HINTS, HecReply, Verdict, classify, parse_reply

__all__ = ["SplunkSink"]

EVENT_PATH = "/services/collector/event"
ACK_PATH = "/services/collector/ack"
HEALTH_PATH = "/services/collector/health"
MIN_POLL_INTERVAL = 0.05
"""Shortest pause between ack polls, while acknowledgements keep coming."""


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
class _Waiting:
    """One accepted request awaiting its indexer acknowledgement."""

    receipt: Receipt
    deadline: float


@dataclass(slots=True)
class _Channel:
    """A sending thread's request channel: its sessions (sharing cookies) and its ack ledger."""

    session: requests.Session
    poll_session: requests.Session
    id: str
    waiting: dict[int, _Waiting] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    post: tuple[dict[str, str], requests.PreparedRequest] | None = None
    """The event POST prepared (URL, headers, auth) for the headers it was prepared with; each
    request copies it with its body, and a change of headers (a new channel id) prepares anew."""


class _Transient(Exception):  # noqa: N818 - internal control flow, never leaves this module
    """A transient failure of one request: its reason and the server's Retry-After."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _ChannelLost(Exception):  # noqa: N818 - internal control flow
    """HEC no longer knows a channel (restart, idle expiry): its pending acks will never come."""


class _NoAckEndpoint(Exception):  # noqa: N818 - internal control flow
    """The receiver hands out ackIds but has no ack endpoint: nothing can ever confirm them."""


def _not_hec(url: str, what: str, reply: HecReply) -> str:
    """Why a check fails when something other than HEC answered (a proxy, a portal, another service)."""
    return f"{url} answered the {what} without HEC's JSON (a proxy or another service?): {reply.describe()}"


class SplunkSink:
    """Delivers records to Splunk HEC; thread-safe ``send``."""

    def __init__(
        self,
        config: SplunkConfig,
        context: SinkContext,
        *,
        adapter: HTTPAdapter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._context = context
        self._log = context.logger
        self._encoder = EnvelopeEncoder(config)
        self._given_adapter = adapter
        self._adapter: HTTPAdapter | None = None
        self._clock = clock
        self._verify: bool | str = True
        self._proxies: dict[str, str] = {}
        self._local = threading.local()
        self._channels: list[_Channel] = []
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._auth = _HecAuth("Splunk " + config.token.get_secret_value())
        self._timeout = (min(10.0, config.timeout), config.timeout)
        self._poller: threading.Thread | None = None
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._fatal: str | None = None
        self.ack_endpoint_missing = False
        """The receiver answered ack polls with 404 (not Splunk): ackIds are ignored from then on."""
        self.ack_endpoint_answered = False
        """An ack poll got HEC's own answer: the endpoint exists, a later 404 is a glitch."""
        self.poll_interval = MIN_POLL_INTERVAL
        """The ack poller's current pause (adapts between MIN_POLL_INTERVAL and ack_poll_interval)."""

    def __repr__(self) -> str:
        c = self.config
        ack = "auto" if c.ack is None else c.ack
        return f"SplunkSink(name={c.display_name!r}, url={c.url!r}, index={c.index!r}, ack={ack})"

    @property
    def limits(self) -> BatchLimits:
        """Batches of ``batch_events`` records / ``batch_bytes``; ``concurrency`` in flight."""
        c = self.config
        return BatchLimits(
            max_records=c.batch_events,
            max_bytes=c.batch_bytes,
            max_age=c.batch_seconds,
            concurrency=c.concurrency,
            max_pending_bytes=c.max_pending_bytes,
            record_overhead=self._encoder.overhead,
        )

    @property
    def pending_acks(self) -> int:
        """Requests accepted by HEC and not yet acknowledged (or timed out)."""
        with self._lock:
            channels = list(self._channels)
        return sum(len(ch.waiting) for ch in channels)

    # -- lifecycle -------------------------------------------------------------------------

    def open(self) -> None:
        """Check the TLS settings and build the connection pool (no network traffic)."""
        c = self.config
        if c.ca_bundle and not Path(c.ca_bundle).is_file():
            raise FatalSinkError(f"sink {c.display_name!r}: ca_bundle {c.ca_bundle!r} is not a readable file")
        # what requests would take from the environment, decided once
        self._verify = tls_verify(c.verify_tls, c.ca_bundle, self._log, environment=True)
        self._proxies = requests.utils.get_environ_proxies(c.url)
        if self._adapter is None:
            self._adapter = self._given_adapter or HTTPAdapter(
                pool_connections=1, pool_maxsize=2 * c.concurrency + 2, max_retries=0
            )

    def close(self) -> None:
        """Stop the ack poller, close every session and the pool; safe to call twice.

        Requests still awaiting acknowledgement are resolved RETRY (their units are not
        acknowledged), so nothing waits on a sink that is gone.
        """
        self._closed.set()
        self._wake.set()
        if self._poller is not None and self._poller is not threading.current_thread():
            self._poller.join(timeout=self.config.timeout + 5)
        with self._lock:
            channels, self._channels = self._channels, []
            adapter, self._adapter = self._adapter, None
        for ch in channels:
            with ch.lock:
                waiting, ch.waiting = ch.waiting, {}
            for w in waiting.values():
                w.receipt.resolve(Outcome.retry("the sink closed before Splunk acknowledged these events"))
            ch.session.close()
            ch.poll_session.close()
        if adapter is not None:
            adapter.close()
        self._local = threading.local()

    def _channel(self) -> _Channel:
        channel: _Channel | None = getattr(self._local, "channel", None)
        if channel is not None:
            return channel
        if self._adapter is None:
            self.open()
        session = self._session()
        poll_session = self._session()
        poll_session.cookies = session.cookies  # one jar: a sticky load balancer sees one client
        channel = _Channel(session, poll_session, str(uuid.uuid4()))
        self._local.channel = channel
        with self._lock:
            self._channels.append(channel)
        return channel

    def _session(self) -> requests.Session:
        session = requests.Session()
        # Proxies and the CA bundle were read from the environment once, at open: requests would
        # re-scan every environment variable on every request (milliseconds each).
        session.trust_env = False
        session.proxies = dict(self._proxies)
        session.auth = self._auth
        session.verify = self._verify
        session.headers["User-Agent"] = self._context.user_agent
        assert self._adapter is not None
        session.mount("https://", self._adapter)
        session.mount("http://", self._adapter)
        return session

    # -- sending ---------------------------------------------------------------------------

    def send(self, batch: Batch) -> Sequence[Outcome]:
        """Deliver a batch to HEC; one outcome per record, in order (PENDING while acks are due)."""
        if self._fatal is not None:
            raise FatalSinkError(self._fatal)
        records = batch.records
        if not records:
            return []
        outcomes: list[Outcome | None] = [None] * len(records)
        envelopes: list[bytes] = [b""] * len(records)
        good: list[int] = []
        envelope = self._encoder.envelope
        for i, record in enumerate(records):
            try:
                envelopes[i] = envelope(record)
                good.append(i)
            except (ValueError, TypeError) as exc:
                outcomes[i] = Outcome.rejected(f"cannot encode the record as an HEC event: {exc}")
        sizes = [len(envelopes[i]) for i in good]
        runs = cut_runs(sizes, self.config.batch_bytes, self.config.batch_events)
        queue: deque[list[int]] = deque([good[j] for j in run] for run in runs)
        channel = self._channel()
        accepted = False
        transient: _Transient | None = None
        while queue:
            idxs = queue.popleft()
            try:
                reply = self._post_events(channel, b"\n".join(envelopes[i] for i in idxs))
                accepted = self._apply(reply, idxs, outcomes, queue, channel) or accepted
            except _Transient as exc:
                transient = exc
                queue.appendleft(idxs)
                break
        if transient is not None:
            # Nothing accepted and nothing decided: the whole batch failed the same transient way.
            if not accepted and all(o is None for o in outcomes):
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
        channel: _Channel,
    ) -> bool:
        """Record what HEC's reply means for the events of one request; True when it took some."""
        verdict = classify(reply)
        if verdict is Verdict.OK:
            if reply.warning:
                self._warn_once(
                    "capacity", "Splunk HEC is near capacity (%s); expect busy responses", reply.describe()
                )
            if reply.ack_id is not None and self.config.ack is not False and not self.ack_endpoint_missing:
                pending = Outcome.pending(self._await(channel, reply.ack_id))
                for i in idxs:
                    outcomes[i] = pending
                return True
            if self.config.ack:
                raise FatalSinkError(self._fatal_text(reply, FATAL_HINTS[14]))
            if self.config.ack is None:
                self._warn_once(
                    "no-ack",
                    "sink %s: HEC at %s answers without ackId: the token has indexer acknowledgement "
                    "(useACK) off, or the receiver is not Splunk. DELIVERED means HEC accepted the "
                    "events, not that they were indexed; enable useACK for the stronger guarantee.",
                    self.config.display_name,
                    self.config.url,
                )
            for i in idxs:
                outcomes[i] = DELIVERED
            return True
        if verdict is Verdict.FATAL:
            raise FatalSinkError(self._fatal_text(reply, FATAL_HINTS.get(reply.code or -1)))
        if verdict is Verdict.RETRY:
            raise _Transient(f"Splunk HEC answered {reply.describe()}", reply.retry_after)
        if verdict is Verdict.SPLIT:
            if len(idxs) == 1:
                outcomes[idxs[0]] = Outcome.rejected(
                    f"Splunk HEC refused the event as too large ({reply.describe()}); "
                    "raise max_content_length in limits.conf [http_input] or drop the event"
                )
            else:
                mid = len(idxs) // 2
                queue.extendleft([idxs[mid:], idxs[:mid]])
            return False
        if (
            verdict is Verdict.BAD_EVENT
            and reply.invalid_event is not None
            and reply.invalid_event < len(idxs)
        ):
            k = reply.invalid_event
            kept = self._kept_before_bad_event(reply)
            for i in idxs[:k]:  # HEC indexed the events before the refused one
                outcomes[i] = kept
            outcomes[idxs[k]] = Outcome.rejected(f"Splunk HEC refused the event: {reply.describe()}")
            if idxs[k + 1 :]:
                queue.appendleft(idxs[k + 1 :])
            return k > 0
        if verdict is Verdict.BAD_EVENT and len(idxs) > 1:
            mid = len(idxs) // 2  # no usable event number: isolate the bad event by halving
            queue.extendleft([idxs[mid:], idxs[:mid]])
            return False
        for i in idxs:
            outcomes[i] = Outcome.rejected(f"Splunk HEC refused the request: {reply.describe()}")
        return False

    def _kept_before_bad_event(self, reply: HecReply) -> Outcome:
        """The events before a refused one: delivered, unless acks are asked for and none vouches."""
        if self.config.ack is False:
            return DELIVERED
        return Outcome.retry(
            f"Splunk HEC refused a later event of the request ({reply.describe()}) and gave no ackId, "
            "so nothing confirms these earlier events were indexed; re-sending, which may index them twice"
        )

    def _post_events(self, channel: _Channel, body: bytes) -> HecReply:
        """POST one gzip'd body; raise _Transient for what a later attempt may fix."""
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        if self.config.ack is not False:
            headers["X-Splunk-Request-Channel"] = channel.id
        data = igzip.compress(body, compresslevel=self.config.compress_level)
        post = channel.post
        if post is None or post[0] != headers:
            post = channel.post = (headers, self._prepare(channel.session, "POST", EVENT_PATH, headers))
        reply = self._request(channel.session, post[1], data)
        if 200 <= reply.status < 300 and not reply.hec:
            raise _Transient(
                f"HTTP {reply.status} from {self.config.url} without HEC's JSON answer "
                f"(a proxy or load balancer answered?): {reply.text!r}"
            )
        if classify(reply) is Verdict.RETRY:
            raise _Transient(f"Splunk HEC answered {reply.describe()}", reply.retry_after)
        return reply

    def _prepare(
        self, session: requests.Session, method: str, path: str, headers: dict[str, str]
    ) -> requests.PreparedRequest:
        """A request prepared as ``session.request`` would (URL, headers, auth), minus body and cookies.

        The event POST's is kept per channel: preparing (merging the session's settings, cookies
        and URL) is about a third of a millisecond of CPU, each request only copies it.
        """
        prepared = session.prepare_request(requests.Request(method, self.config.url + path, headers=headers))
        prepared.headers.pop("Cookie", None)
        prepared.headers.pop("Content-Length", None)
        return prepared

    def _request(
        self, session: requests.Session, prepared: requests.PreparedRequest, data: bytes | None
    ) -> HecReply:
        """One HEC request; raise _Transient or FatalSinkError for what is not an answer.

        A copy of ``prepared`` (from :meth:`_prepare`) with ``data`` and the session's current
        cookies (a load balancer's sticky one).
        """
        request = requests.PreparedRequest()
        request.method, request.url, request.hooks = prepared.method, prepared.url, prepared.hooks
        request.headers = prepared.headers.copy()
        request.prepare_body(data, None)
        request.prepare_cookies(session.cookies)
        try:
            # verify per request: a session-level value loses to $REQUESTS_CA_BUNDLE in requests
            response = session.send(
                request,
                timeout=self._timeout,
                verify=self._verify,
                proxies=session.proxies,
                stream=False,
                cert=None,
                allow_redirects=False,
            )
            body = response.content
        except requests.exceptions.SSLError as exc:
            if "certificate" not in str(exc).lower():
                raise _Transient(
                    f"TLS handshake with Splunk HEC at {self.config.url} failed: {_brief(exc)}"
                ) from None
            raise FatalSinkError(
                f"TLS verification of {self.config.url} failed "
                f"({_brief(exc)}); set ca_bundle to the CA that signed HEC's certificate"
            ) from None
        except requests.RequestException as exc:
            raise _Transient(f"cannot reach Splunk HEC at {self.config.url}: {_brief(exc)}") from None
        secrets = (self.config.token.get_secret_value(),)  # an error page may echo the token
        status = response.status_code
        if 300 <= status < 400:
            location = scrub(response.headers.get("Location") or "nowhere (no Location)", secrets)
            raise FatalSinkError(
                f"HTTP {status} from {request.url}: redirected to {location}: set `url` to the final address"
            )
        headers = response.headers
        return parse_reply(status, body, headers.get("Retry-After"), secrets, headers.get("Content-Type"))

    # -- acknowledgement -------------------------------------------------------------------

    def _await(self, channel: _Channel, ack_id: int) -> Receipt:
        """Put an accepted request's ackId on its channel's ledger; the poller resolves it."""
        receipt = Receipt()
        with channel.lock:
            channel.waiting[ack_id] = _Waiting(receipt, self._clock() + self.config.ack_timeout)
        if self._poller is None:
            with self._lock:
                if self._poller is None and not self._closed.is_set():
                    self._poller = threading.Thread(
                        target=self._poll_loop, name=f"ack-{self.config.display_name}", daemon=True
                    )
                    self._poller.start()
        return receipt

    def _poll_loop(self) -> None:
        """Ask HEC about every pending ackId, one request per channel per interval, until closed."""
        longest = self.config.ack_poll_interval
        while not self._closed.is_set():
            self._wake.wait(self.poll_interval)
            self._wake.clear()
            with self._lock:
                channels = [ch for ch in self._channels if ch.waiting]
            if not channels:
                self.poll_interval = longest  # idle: the next ackId starts a fresh cycle below
                continue
            settled = sum(self._poll_channel(ch) for ch in channels)
            # Acks coming: ask again soon. None: back off, so a busy indexer is not flooded.
            self.poll_interval = (
                max(MIN_POLL_INTERVAL, self.poll_interval / 2)
                if settled
                else min(longest, self.poll_interval * 1.5)
            )

    def _poll_channel(self, channel: _Channel) -> int:
        """Poll one channel; resolve what is indexed or overdue. Returns how many were resolved."""
        with channel.lock:
            ids = sorted(channel.waiting)
        if not ids:
            return 0
        try:
            acked = self._poll_acks(channel, ids)
        except _Transient as exc:
            self._log.debug("ack poll on channel %s failed: %s", channel.id, exc.reason)
            acked = set()
        except _ChannelLost as exc:
            return self._drop_channel(channel, str(exc))
        except _NoAckEndpoint as exc:
            return self._no_ack_endpoint(str(exc))
        except FatalSinkError as exc:
            self._fatal = str(exc)  # the next send raises it; what waits here is sent again later
            return self._drop_channel(channel, str(exc))
        now = self._clock()
        done: list[_Waiting] = []
        overdue: list[tuple[int, _Waiting]] = []
        with channel.lock:
            for ack_id in acked:
                w = channel.waiting.pop(ack_id, None)
                if w is not None:
                    done.append(w)
            for ack_id, w in list(channel.waiting.items()):
                if now >= w.deadline:
                    del channel.waiting[ack_id]
                    overdue.append((ack_id, w))
        for w in done:
            w.receipt.resolve(DELIVERED)
        for ack_id, w in overdue:
            w.receipt.resolve(
                Outcome.retry(
                    f"no indexer acknowledgement from Splunk within {self.config.ack_timeout:g}s "
                    f"(ackId {ack_id}, channel {channel.id}); re-sending, which may index these events twice"
                )
            )
        return len(done) + len(overdue)

    def _no_ack_endpoint(self, answer: str) -> int:
        """Ack polls get 404: stop polling; what waited was accepted, so it is DELIVERED (see module)."""
        c = self.config
        if c.ack:
            self._fatal = (
                f"ack = true, but the receiver at {c.url} has no "
                f"/services/collector/ack ({answer}): it is not Splunk; set ack = false or leave it unset"
            )
            with self._lock:
                channels = list(self._channels)
            for ch in channels:
                self._drop_channel(ch, self._fatal)
            return 0
        self.ack_endpoint_missing = True
        self._warn_once(
            "no-ack-endpoint",
            "sink %s: the receiver at %s hands out ackIds but answers %s to ack polls: it is not "
            "Splunk. Acknowledgement polling stops; DELIVERED means the receiver accepted the events.",
            c.display_name,
            c.url,
            answer,
        )
        with self._lock:
            channels = list(self._channels)
        settled = 0
        for ch in channels:
            with ch.lock:
                waiting, ch.waiting = ch.waiting, {}
            for w in waiting.values():
                w.receipt.resolve(DELIVERED)
            settled += len(waiting)
        return settled

    def _drop_channel(self, channel: _Channel, reason: str) -> int:
        """Resolve every ackId of a channel RETRY and send on a new channel from now on."""
        with channel.lock:
            waiting, channel.waiting = channel.waiting, {}
            channel.id = str(uuid.uuid4())
        for w in waiting.values():
            w.receipt.resolve(Outcome.retry(f"{reason}; re-sending, which may index these events twice"))
        return len(waiting)

    def _poll_acks(self, channel: _Channel, ack_ids: list[int]) -> set[int]:
        """Ask HEC which of these ackIds are indexed; FatalSinkError when ack is off for the token."""
        headers = {"Content-Type": "application/json", "X-Splunk-Request-Channel": channel.id}
        body = orjson.dumps({"acks": ack_ids})
        poll = self._prepare(channel.poll_session, "POST", f"{ACK_PATH}?channel={channel.id}", headers)
        reply_raw = self._request(channel.poll_session, poll, body)
        if reply_raw.acks is not None or reply_raw.code == 11:
            self.ack_endpoint_answered = True  # HEC's ack endpoint itself answered
        if reply_raw.status != 200:
            if reply_raw.status in (404, 405) or (reply_raw.status == 400 and not reply_raw.hec):
                if self.ack_endpoint_answered:
                    # It answered as HEC before: a proxy or load balancer in between, not a
                    # receiver without acks. What stays unconfirmed is sent again at ack_timeout.
                    raise _Transient(
                        f"ack poll answered {reply_raw.describe()}, though {ACK_PATH} answered as HEC "
                        "before (a proxy or load balancer in between?)"
                    )
                raise _NoAckEndpoint(reply_raw.describe())
            if reply_raw.code == 11:
                raise _ChannelLost(f"HEC no longer knows channel {channel.id} ({reply_raw.describe()})")
            if classify(reply_raw) is Verdict.FATAL:
                hint = FATAL_HINTS.get(reply_raw.code or -1)
                raise FatalSinkError(self._fatal_text(reply_raw, hint, ACK_PATH))
            raise _Transient(f"ack poll answered {reply_raw.describe()}")
        acks = reply_raw.acks
        if acks is None:
            raise _Transient("ack poll answered with something other than {'acks': {...}}")
        return {int(k) for k, v in acks.items() if v is True and str(k).isdigit()}

    # -- health ----------------------------------------------------------------------------

    def check(self) -> CheckResult:
        """Ask HEC's health endpoint, then probe the token with an empty request (HEC: code 5)."""
        channel = self._channel()
        c = self.config
        try:
            health = self._request(
                channel.session, self._prepare(channel.session, "GET", HEALTH_PATH, {}), None
            )
        except _Transient as exc:
            raise RetryableError(exc.reason) from None
        details: dict[str, object] = {"url": c.url, "health": health.describe(), "ack": _ack_word(c.ack)}
        if health.status != 200:
            if health.status == 404:
                return CheckResult(False, f"no HEC health endpoint at {c.url} ({health.describe()})", details)
            return CheckResult(False, f"HEC is not healthy: {health.describe()}", details)
        if not health.hec:  # a 200 that is not HEC's must not pass for a healthy HEC
            return CheckResult(False, _not_hec(c.url, "health check", health), details)
        headers = {"Content-Type": "application/json"}
        if c.ack is not False:
            headers["X-Splunk-Request-Channel"] = channel.id
        try:
            probe = self._request(
                channel.session, self._prepare(channel.session, "POST", EVENT_PATH, headers), b""
            )
        except _Transient as exc:
            raise RetryableError(exc.reason) from None
        details["token"] = probe.describe()
        if not probe.hec and 200 <= probe.status < 300:  # HEC refuses an empty POST (code 5)
            return CheckResult(False, _not_hec(c.url, "token probe", probe), details)
        if probe.code != 5:
            verdict = classify(probe)
            hint = FATAL_HINTS.get(probe.code or -1, "")
            # Fluent Bit refuses the empty probe with a plain-text 400 ("no payload found"): the
            # body is the probe's fault, so only a refusal of the request itself fails the check.
            foreign_400 = probe.status == 400 and not probe.hec
            if (verdict is Verdict.FATAL and not foreign_400) or probe.status in (401, 403):
                return CheckResult(
                    False, f"HEC refused the request: {probe.describe()} {hint}".strip(), details
                )
            if verdict is Verdict.RETRY:
                return CheckResult(False, f"HEC is busy: {probe.describe()}", details)
        if c.ack is not False:
            # A fresh channel may be unknown to HEC (code 11): only code 14 means "ack is off".
            try:
                ack_headers = {"Content-Type": "application/json", "X-Splunk-Request-Channel": channel.id}
                poll = self._prepare(channel.session, "POST", f"{ACK_PATH}?channel={channel.id}", ack_headers)
                probe_ack = self._request(channel.session, poll, b'{"acks":[0]}')
            except _Transient as exc:
                raise RetryableError(exc.reason) from None
            ack_off = probe_ack.code == 14 or probe_ack.status == 404
            details["ack"] = probe_ack.describe() if probe_ack.status != 200 else "ack endpoint answers"
            if probe_ack.status in (401, 403) or (ack_off and c.ack):
                ack_hint = FATAL_HINTS.get(probe_ack.code or -1)
                return CheckResult(False, self._fatal_text(probe_ack, ack_hint), details)
            if ack_off:
                return CheckResult(
                    True,
                    f"HEC at {c.url} accepts the token; indexer acknowledgement is off for it, so "
                    "DELIVERED will mean 'accepted by HEC' (enable useACK on the token for 'indexed')",
                    details,
                )
        return CheckResult(True, f"HEC at {c.url} is healthy and accepts the token", details)

    # -- messages --------------------------------------------------------------------------

    def _fatal_text(self, reply: HecReply, hint: str | None, path: str = EVENT_PATH) -> str:
        if hint is None and not reply.hec and reply.status not in (401, 403, 404, 405):
            # A proxy or another service answered in HEC's place: name it, not a setting of HEC.
            return (
                f"HTTP {reply.status} from {self.config.url}{path} is not HEC's answer ({reply.answer}): "
                "check `url` (scheme, host and HEC port) and any proxy in front of HEC"
            )
        hint = hint or {
            401: "HEC refused the token: check `token`",
            403: "HEC refused the token: check `token`",
            404: "no HEC endpoint at this URL: check `url` (the HEC port, usually 8088)",
            405: "no HEC endpoint at this URL: check `url`",
        }.get(reply.status, "check the sink's settings")
        # No sink name: the pipeline and `check` put it in front of every message already.
        return f"Splunk HEC at {self.config.url} answered {reply.describe()}: {hint}"

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        with self._lock:
            if key in self._warned:
                return
            self._warned.add(key)
        self._log.warning(message, *args)


def _ack_word(ack: bool | None) -> str:
    return "auto (used when the token has it)" if ack is None else ("on" if ack else "off")


def _brief(exc: BaseException) -> str:
    """The exception class and its first line; requests' messages never contain headers."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__
