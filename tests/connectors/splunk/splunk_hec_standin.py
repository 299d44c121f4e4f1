"""A local stand-in of Splunk's HTTP Event Collector for tests: real HTTP on 127.0.0.1.

It answers the way HEC documents: auth first (codes 2/3/4), then the channel when the token
uses acknowledgement (code 10), then the body: gunzip, parse concatenated envelopes one by one,
store each, and on the first bad one answer code 6/12/13 with ``invalid-event-number`` having
kept the events before it. Success carries ``ackId`` (counting from 0 per channel) when the
token uses acknowledgement; ``/services/collector/ack`` answers ``{"acks": {"0": true}}``.

Faults for tests: busy for N requests, auth failure, connection reset mid-body, acks that
never come, poisoned eventIDs, a max_content_length, and scripted replies (documented responses)
served verbatim for the next requests. Indexer behaviour: ``ack_delay`` (or ``ack_delay_for``,
per ackId, for out-of-order acks) seconds before an ack turns true, ``lost_acks`` that never do,
``max_pending_acks`` per channel past which event requests get "Server is busy" (code 9, as HEC
answers when a channel has too many unacknowledged requests), ``cookie`` set on event replies
(a load balancer's sticky session) and ``forget_channels`` (HEC restarted: ack polls get code 11).

``profile`` reproduces a HEC-compatible receiver that is not Splunk, as its source documents it
(the README's recipes are tested against these):

- ``vector``: Vector's ``splunk_hec`` source (``src/sources/splunk_hec/mod.rs``). Events on
  ``/services/collector``, ``/event`` and ``/event/1.0``; a wrong token is 401 code 3; without
  ``acknowledgements.enabled`` (``use_ack`` here) the ack endpoint answers 400 code 14 and
  successes carry no ackId; with it, a channel is required (code 10) and ackIds and
  ``/services/collector/ack`` work like Splunk's.
- ``fluentbit``: Fluent Bit's ``splunk`` input (``plugins/in_splunk/splunk_prot.c``). Events only
  on ``/services/collector`` and ``/services/collector/event``; anything else (``/event/1.0``,
  ``/ack``) is 400 with the plain text ``error: invalid HTTP endpoint``; a wrong token is 401
  plain text; channels are ignored; a body that is not JSON is refused whole (400 code 6 without
  an event number); health answers ``{"text":"Success","code":200}``.
- ``otel``: the OpenTelemetry Collector's ``splunk_hec`` receiver
  (``receiver/splunkhecreceiver/receiver.go``), without the ack extension. Any path but the
  health and raw paths takes events (so a POST to ``/services/collector/ack`` is read as events
  and refused "Event field is required"); success is 200 with the JSON string ``"OK"``; error
  bodies are HEC's JSON wrapped in a JSON string; tokens are not checked.
- ``cribl``: Cribl Stream's Splunk HEC source (docs.cribl.io "Splunk HEC Source"): one endpoint,
  ``/services/collector`` with ``/event``, ``/raw``, ``/health``; gzip. Its documentation does
  not describe the ack endpoint or the reply bodies we could check: the stand-in answers like
  Splunk, and ``/services/collector/ack`` with 404 (the case of a receiver without acks).

``ack_endpoint_missing`` (any profile with ``use_ack``): ackIds are handed out but the ack
endpoint answers 404, as a receiver that imitates the replies but not the protocol would.

Fault hook for the reliability harness (``reliability/``): ``fault`` is called once per request
with ``"event"`` or ``"ack"`` and answers ``None`` or a kind: ``outage`` (connection reset before
anything is read), ``reset`` (half the body read, then reset), ``5xx`` (503 code 9), ``429``
(code 26), ``partial`` (code 6 with ``invalid-event-number`` in the middle: the events before it
are kept, the way HEC refuses one event of a batch) or ``slow`` (stored, then answered after
``slow_seconds``, beyond the client's timeout). ``compact`` keeps only each event's eventID, for
runs of millions of events.
"""

from __future__ import annotations

import gzip
import json
import socket
import ssl
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

HEC_HEADERS = {
    "Content-Type": "application/json; charset=UTF-8",
    "Server": "Splunkd",
    "Vary": "Authorization",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "SAMEORIGIN",
}
EVENT_PATHS = ("/services/collector", "/services/collector/event", "/services/collector/event/1.0")
PROFILES = ("splunk", "vector", "fluentbit", "otel", "cribl")
ACK_PATH = "/services/collector/ack"
_DECODER = json.JSONDecoder()


@dataclass
class Scripted:
    """A documented reply served verbatim to the next request on ``path``."""

    path: str
    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Logged:
    """What the stand-in saw of one request."""

    method: str
    path: str
    headers: dict[str, str]
    body_size: int
    events: int
    status: int
    code: int | None


class HecStandIn:
    """A threaded HEC on 127.0.0.1 with fault injection; start() / stop()."""

    def __init__(
        self,
        token: str = "11111111-2222-3333-4444-555555555555",
        *,
        use_ack: bool = False,
        profile: str = "splunk",
        ack_endpoint_missing: bool = False,
    ) -> None:
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}")
        self.token = token
        self.use_ack = use_ack
        self.profile = profile
        self.ack_endpoint_missing = ack_endpoint_missing or profile == "cribl"
        self.allowed_indexes: set[str] | None = None
        self.max_content_length: int | None = None
        self.stored: list[dict[str, Any]] = []
        self.indexed_at: list[float] = []  # when each stored envelope was indexed (epoch seconds)
        self.log: list[Logged] = []
        self.busy_left = 0
        self.busy_status = 503
        self.busy_retry_after: str | None = None
        self.auth_fail_left = 0
        self.reset_left = 0
        self.acks_never = False
        self.ack_after_polls = 0
        self.ack_delay = 0.0
        self.ack_delay_for: Callable[[int], float] | None = None
        self.lost_acks: set[int] = set()
        self.max_pending_acks: int | None = None
        self.cookie: str | None = None
        self.forget_channels = False
        self.poisoned: set[str] = set()
        self.scripted: deque[Scripted] = deque()
        self.fault: Callable[[str], str | None] | None = None
        self.slow_seconds = 0.0
        self.compact = False
        self.slow_stored = 0  # events stored by requests answered too late (no ack: sent again)
        self._channels: dict[str, int] = {}
        self._acks: dict[tuple[str, int], int] = {}  # (channel, ackId) -> polls still to wait
        self._ack_ready: dict[tuple[str, int], float] = {}  # (channel, ackId) -> when it turns true
        self._ack_events: dict[tuple[str, int], int] = {}  # (channel, ackId) -> events, until acked
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._scheme = "http"

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, tls: ssl.SSLContext | None = None) -> HecStandIn:
        """Listen on an ephemeral port of 127.0.0.1 (HTTPS with a server-side ``tls`` context)."""
        standin = self

        class Handler(_Handler):
            hec = standin

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        self._scheme = "https" if tls is not None else "http"
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        """Base URL, e.g. http://127.0.0.1:PORT."""
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"{self._scheme}://{host}:{port}"

    # -- inspection -------------------------------------------------------------------------

    def event_ids(self) -> list[str]:
        """eventID of every stored event, once per stored copy."""
        with self._lock:
            return [str(e["event"].get("eventID")) for e in self.stored if isinstance(e.get("event"), dict)]

    def indexed(self) -> list[tuple[dict[str, Any], float]]:
        """Every stored envelope with the time it was indexed (what a search can find)."""
        with self._lock:
            return list(zip(self.stored, self.indexed_at, strict=True))

    def event_requests(self) -> list[Logged]:
        """Logged requests to the event endpoint."""
        return [r for r in self.log if r.path in EVENT_PATHS]

    def unconfirmed(self) -> int:
        """Events stored whose success the client never learned (late replies, acks never polled)."""
        with self._lock:
            return self.slow_stored + sum(self._ack_events.values())

    def script(self, *replies: Scripted) -> None:
        """Serve these documented replies, in order, to the next matching requests."""
        self.scripted.extend(replies)

    # -- protocol ---------------------------------------------------------------------------

    def _take_script(self, path: str) -> Scripted | None:
        with self._lock:
            if self.scripted and self.scripted[0].path == path:
                return self.scripted.popleft()
        return None

    def _auth(self, headers: Any) -> tuple[int, dict[str, Any]] | None:
        auth = headers.get("Authorization")
        if not auth:
            return 401, {"text": "Token is required", "code": 2}
        parts = auth.split()
        if len(parts) != 2 or parts[0] != "Splunk":
            return 401, {"text": "Invalid authorization", "code": 3}
        with self._lock:
            if self.auth_fail_left > 0:
                self.auth_fail_left -= 1
                return 403, {"text": "Invalid token", "code": 4}
        if parts[1] != self.token:
            return 403, {"text": "Invalid token", "code": 4}
        return None

    def _busy(self) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        with self._lock:
            if self.busy_left <= 0:
                return None
            self.busy_left -= 1
        extra = {"Retry-After": self.busy_retry_after} if self.busy_retry_after else {}
        if self.busy_status == 429:
            body = {"text": "HEC queue is at capacity and cannot process any more requests", "code": 26}
            return 429, body, extra
        return 503, {"text": "Server is busy", "code": 9}, extra

    def handle_events(
        self, body: bytes, channel: str | None, refuse_at: int | None = None
    ) -> tuple[int, dict[str, Any], int]:
        """Parse and store a batch; (status, reply, events stored); ``refuse_at``: refuse that event."""
        if not body.strip():
            return 400, {"text": "No data", "code": 5}, 0
        text = body.decode("utf-8", "replace")
        pos, n, kept = 0, 0, 0
        while True:
            while pos < len(text) and text[pos] in " \t\r\n":
                pos += 1
            if pos >= len(text):
                break
            try:
                env, pos = _DECODER.raw_decode(text, pos)
            except json.JSONDecodeError:
                self._kept_unconfirmed(kept, channel)
                return 400, {"text": "Invalid data format", "code": 6, "invalid-event-number": n}, kept
            bad = self._check(env, n)
            if bad is None and n == refuse_at:
                bad = {"text": "Invalid data format", "code": 6, "invalid-event-number": n}
            if bad is not None:
                self._kept_unconfirmed(kept, channel)
                return 400, bad, kept
            if self.compact:
                event = env.get("event")
                env = {"event": {"eventID": event.get("eventID") if isinstance(event, dict) else None}}
            with self._lock:
                self.stored.append(env)
                self.indexed_at.append(time.time())
            kept += 1
            n += 1
        if self.use_ack and channel:
            with self._lock:
                ack_id = self._channels.get(channel, 0)
                self._channels[channel] = ack_id + 1
                never = self.acks_never or ack_id in self.lost_acks
                self._acks[(channel, ack_id)] = -1 if never else self.ack_after_polls
                delay = self.ack_delay_for(ack_id) if self.ack_delay_for else self.ack_delay
                self._ack_ready[(channel, ack_id)] = time.monotonic() + delay
                self._ack_events[(channel, ack_id)] = kept
            return 200, {"text": "Success", "code": 0, "ackId": ack_id}, kept
        return 200, {"text": "Success", "code": 0}, kept

    def _kept_unconfirmed(self, kept: int, channel: str | None) -> None:
        """Events kept ahead of a refused one get no ackId: a client using acks cannot count them."""
        if kept and self.use_ack and channel:
            with self._lock:
                self.slow_stored += kept

    def _check(self, env: Any, n: int) -> dict[str, Any] | None:
        if not isinstance(env, dict) or "event" not in env:
            return {"text": "Event field is required", "code": 12, "invalid-event-number": n}
        event = env["event"]
        if event is None or (isinstance(event, str) and not event.strip()):
            return {"text": "Event field cannot be blank", "code": 13, "invalid-event-number": n}
        if isinstance(event, dict) and str(event.get("eventID")) in self.poisoned:
            return {"text": "Invalid data format", "code": 6, "invalid-event-number": n}
        index = env.get("index")
        if self.allowed_indexes is not None and index is not None and index not in self.allowed_indexes:
            return {"text": "Incorrect index", "code": 7, "invalid-event-number": n}
        fields = env.get("fields")
        if fields is not None and (
            not isinstance(fields, dict)
            or any(
                isinstance(v, dict) or (isinstance(v, list) and any(isinstance(x, dict | list) for x in v))
                for v in fields.values()
            )
        ):
            return {"text": "Error in handling indexed fields", "code": 15, "invalid-event-number": n}
        return None

    def pending_acks(self, channel: str) -> int:
        """Requests of a channel accepted and not yet reported acknowledged."""
        with self._lock:
            return sum(1 for (ch, _), wait in self._acks.items() if ch == channel)

    def handle_ack(self, body: bytes, channel: str | None) -> tuple[int, dict[str, Any]]:
        """Answer an ack poll."""
        if not self.use_ack:
            return 400, {"text": "ACK is disabled", "code": 14}
        if not channel:
            return 400, {"text": "Data channel is missing", "code": 10}
        try:
            ids = json.loads(body)["acks"]
        except (ValueError, KeyError, TypeError):
            return 400, {"text": "Invalid data format", "code": 6}
        if self.forget_channels:
            return 400, {"text": "Invalid data channel", "code": 11}
        out: dict[str, bool] = {}
        now = time.monotonic()
        with self._lock:
            for ack_id in ids:
                wait = self._acks.get((channel, int(ack_id)))
                if wait is None or wait < 0 or self._ack_ready.get((channel, int(ack_id)), 0.0) > now:
                    out[str(ack_id)] = False
                elif wait == 0:
                    out[str(ack_id)] = True
                    del self._acks[(channel, int(ack_id))]  # HEC forgets an ack once reported
                    self._ack_ready.pop((channel, int(ack_id)), None)
                    self._ack_events.pop((channel, int(ack_id)), None)
                else:
                    self._acks[(channel, int(ack_id))] = wait - 1
                    out[str(ack_id)] = False
        return 200, {"acks": out}


class _Handler(BaseHTTPRequestHandler):
    hec: HecStandIn
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # real servers set TCP_NODELAY; without it each answer waits ~40 ms

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def _reply(self, status: int, payload: dict[str, Any] | str, extra: dict[str, str] | None = None) -> None:
        body = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
        data = body.encode()
        self.send_response(status)
        given = {k: v for k, v in (extra or {}).items() if k.lower() not in ("connection", "content-length")}
        headers = {**HEC_HEADERS, **given}
        if not body.startswith("{") and "content-type" not in {k.lower() for k in given}:
            headers["Content-Type"] = "text/plain; charset=UTF-8"
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "Keep-Alive")
        self.end_headers()
        self.wfile.write(data)

    def _log(self, path: str, size: int, events: int, status: int, payload: Any) -> None:
        code = payload.get("code") if isinstance(payload, dict) else None
        with self.hec._lock:
            self.hec.log.append(Logged(self.command, path, dict(self.headers), size, events, status, code))

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        profile = self.hec.profile
        if profile == "fluentbit":
            if path == "/services/collector/health":
                self._reply(200, {"text": "Success", "code": 200})
            else:
                self._reply(400, "error: invalid HTTP endpoint\n")
            return
        if profile == "otel" and path in ("/services/collector/health", "/services/collector/health/1.0"):
            self._reply(200, '{"text": "HEC is healthy", "code": 17}')
            return
        if path in ("/services/collector/health", "/services/collector/health/1.0"):
            scripted = self.hec._take_script(path)
            if scripted:
                self._log(path, 0, 0, scripted.status, None)
                self._reply(scripted.status, scripted.body, scripted.headers)
                return
            self._log(path, 0, 0, 200, {"code": 17})
            self._reply(200, {"text": "HEC is healthy", "code": 17})
            return
        self._reply(404, {"text": "The requested URL was not found on this server.", "code": 404})

    def _reset(self, path: str, length: int, read: int) -> None:
        """Read ``read`` bytes of the body, then reset the connection (no reply)."""
        if read:
            self.rfile.read(read)
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self._log(path, length, 0, 0, None)
        self.connection.close()

    def do_POST(self) -> None:
        hec = self.hec
        split = urlsplit(self.path)
        path = split.path
        length = int(self.headers.get("Content-Length") or 0)
        if hec.profile == "fluentbit":
            self._fluentbit(path, length)
            return
        if hec.profile == "otel":
            self._otel(path, length)
            return
        if hec.ack_endpoint_missing and path == ACK_PATH:
            self.rfile.read(length)
            self._log(path, length, 0, 404, None)
            self._reply(404, "Not Found")
            return
        if hec.profile == "vector" and path in (*EVENT_PATHS, ACK_PATH):
            auth = self.headers.get("Authorization")
            if auth is not None and auth != f"Splunk {hec.token}":
                self.rfile.read(length)
                self._log(path, length, 0, 401, {"code": 3})
                self._reply(401, {"text": "Invalid authorization", "code": 3})
                return
        fault = None
        if hec.fault is not None and path in (*EVENT_PATHS, "/services/collector/ack"):
            fault = hec.fault("event" if path in EVENT_PATHS else "ack")
        if fault == "outage":
            self._reset(path, length, 0)
            return
        with hec._lock:
            reset = hec.reset_left > 0
            if reset:
                hec.reset_left -= 1
        if (reset or fault == "reset") and path in EVENT_PATHS:
            self._reset(path, length, length // 2)  # take half the batch, then reset the connection
            return
        if fault in ("5xx", "429"):
            self.rfile.read(length)
            payload = (
                {"text": "Server is busy", "code": 9}
                if fault == "5xx"
                else {"text": "HEC queue is at capacity and cannot process any more requests", "code": 26}
            )
            status = 503 if fault == "5xx" else 429
            self._log(path, length, 0, status, payload)
            self._reply(status, payload)
            return
        raw = self.rfile.read(length)
        scripted = hec._take_script(path)
        if scripted:
            self._log(
                path,
                length,
                0,
                scripted.status,
                json.loads(scripted.body) if scripted.body.startswith("{") else None,
            )
            self._reply(scripted.status, scripted.body, scripted.headers)
            return
        if path not in (*EVENT_PATHS, "/services/collector/ack"):
            self._reply(404, {"text": "The requested URL was not found on this server.", "code": 404})
            return
        denied = hec._auth(self.headers)
        if denied:
            self._log(path, length, 0, *denied)
            self._reply(*denied)
            return
        busy = hec._busy()
        if busy:
            self._log(path, length, 0, busy[0], busy[1])
            self._reply(*busy)
            return
        channel = (
            self.headers.get("X-Splunk-Request-Channel") or parse_qs(split.query).get("channel", [None])[0]
        )
        if path == "/services/collector/ack":
            status, payload = hec.handle_ack(raw, channel)
            self._log(path, length, 0, status, payload)
            self._reply(status, payload)
            return
        if hec.use_ack and not channel:
            self._log(path, length, 0, 400, {"code": 10})
            self._reply(400, {"text": "Data channel is missing", "code": 10})
            return
        if hec.max_pending_acks is not None and channel and hec.pending_acks(channel) >= hec.max_pending_acks:
            self._log(path, length, 0, 503, {"code": 9})
            self._reply(503, {"text": "Server is busy", "code": 9})
            return
        if hec.max_content_length is not None and length > hec.max_content_length:
            self._log(path, length, 0, 413, None)
            # Splunk decides on Content-Length; the exact body is not documented, so plain text.
            self._reply(413, f"Content-Length of {length} too large (maximum is {hec.max_content_length})")
            return
        try:
            body = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
        except (OSError, EOFError, zlib.error):
            self._log(path, length, 0, 400, {"code": 6})
            self._reply(400, {"text": "Invalid data format", "code": 6})
            return
        if fault == "partial":
            status, payload, kept = hec.handle_events(body, channel, refuse_at=_count_envelopes(body) // 2)
        else:
            status, payload, kept = hec.handle_events(body, channel)
        self._log(path, length, kept, status, payload)
        cookie = {"Set-Cookie": f"{hec.cookie}; Path=/"} if hec.cookie else None
        if fault == "slow":
            if not hec.use_ack:  # with ack, the ackId the client never learned counts instead
                with hec._lock:
                    hec.slow_stored += kept
            time.sleep(hec.slow_seconds)
            try:
                self._reply(status, payload)
            except OSError:  # the client gave up waiting, as intended
                self.close_connection = True
            return
        self._reply(status, payload, cookie)

    def _body(self, length: int) -> bytes | None:
        raw = self.rfile.read(length)
        if self.headers.get("Content-Encoding") == "gzip":
            try:
                return gzip.decompress(raw)
            except (OSError, EOFError, zlib.error):
                return None
        return raw

    def _fluentbit(self, path: str, length: int) -> None:
        """Fluent Bit's splunk input (see the module docstring)."""
        hec = self.hec
        body = self._body(length)
        if self.headers.get("Authorization") != f"Splunk {hec.token}":
            self._log(path, length, 0, 401, None)
            self._reply(401, "error: unauthorized\n")
            return
        if path not in ("/services/collector", "/services/collector/event"):
            self._log(path, length, 0, 400, None)
            self._reply(400, "error: invalid HTTP endpoint\n")
            return
        if not body:
            self._reply(400, "error: no payload found\n")
            return
        try:  # the whole body is packed at once: one bad value refuses all of it
            envelopes = _all_values(body.decode("utf-8"))
        except ValueError:
            self._log(path, length, 0, 400, {"code": 6})
            self._reply(400, {"text": "Invalid data format", "code": 6})
            return
        with hec._lock:
            hec.stored.extend(envelopes)
            hec.indexed_at.extend([time.time()] * len(envelopes))
        self._log(path, length, len(envelopes), 200, {"code": 0})
        self._reply(200, {"text": "Success", "code": 0})

    def _otel(self, path: str, length: int) -> None:
        """The OpenTelemetry Collector's splunk_hec receiver without the ack extension."""
        hec = self.hec
        body = self._body(length)
        if body is None:
            self._reply(400, json.dumps("Error on gzip body"))
            return
        if not body:
            self._reply(400, json.dumps('{"text":"No data","code":5}'))
            return
        try:
            envelopes = _all_values(body.decode("utf-8"))
        except ValueError:
            self._log(path, length, 0, 400, {"code": 6})
            self._reply(400, json.dumps('{"text":"Invalid data format","code":6}'))
            return
        if any(not isinstance(e, dict) or "event" not in e for e in envelopes):
            self._log(path, length, 0, 400, {"code": 12})
            self._reply(400, json.dumps('{"text":"Event field is required","code":12}'))
            return
        with hec._lock:
            hec.stored.extend(envelopes)
            hec.indexed_at.extend([time.time()] * len(envelopes))
        self._log(path, length, len(envelopes), 200, None)
        self._reply(200, json.dumps("OK"))


def _all_values(text: str) -> list[Any]:
    """Every JSON value of a body of concatenated values; ValueError if any is malformed."""
    out: list[Any] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos >= len(text):
            return out
        value, pos = _DECODER.raw_decode(text, pos)
        out.append(value)


def _count_envelopes(body: bytes) -> int:
    """How many JSON values a request body holds (to refuse the middle one)."""
    text = body.decode("utf-8", "replace")
    pos, n = 0, 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos >= len(text):
            return n
        try:
            _, pos = _DECODER.raw_decode(text, pos)
        except json.JSONDecodeError:
            return n
        n += 1
