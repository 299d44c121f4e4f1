"""Firehose mode: an HTTP endpoint that Amazon Data Firehose delivers CloudTrail to.

It speaks the Firehose HTTP endpoint delivery protocol (version 1.0): a POST of
``{"requestId", "timestamp", "records": [{"data": base64}]}``, optionally gzip'd
(``Content-Encoding: gzip``), authenticated by the ``X-Amz-Firehose-Access-Key`` header.
Each accepted request is one unit of work. The handler thread holds the HTTP response until
the pipeline has acknowledged the unit (every record final in every sink), then answers 200
``{"requestId", "timestamp"}``; when the unit is released (a sink stopped, shutdown) it answers
an error status with ``errorMessage`` so Firehose retries the same batch later.

Answers: 401 for a missing or wrong access key (nothing is read or forwarded), 413 when the
body (compressed or not) exceeds ``max_body_bytes`` (Firehose treats 413 as permanent; its
buffer counts records before base64, so a request is about 4/3 of the buffer size: the default
of 96 MiB takes the largest buffer, 64 MiB), 400 for a body that is not a Firehose request,
404/405 for other paths and methods, 503 when busy or stopping, 500 when delivery failed. A
retry of a request that was already acknowledged (Firehose keeps the request id between
attempts) is answered 200 without forwarding the records again.

A connection has ``idle_timeout`` (75 s) for the headers of its next request, then as long for
the body, in all, or it is closed; when all 256 connections are open, the one that has waited
longest for a request makes room for a newcomer (see ``_Server``).

``max_body_bytes`` also bounds what the records of one request unpack to together (gzip inside a
record, as in CloudWatch Logs payloads): a record that would go past it is dead-lettered with the
reason and its bytes, and the others are delivered.
"""

from __future__ import annotations

import contextlib
import hmac
import http.server
import logging
import queue
import socket
import ssl
import sys
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import msgspec
import orjson

from trailrelay.errors import ConfigError, InputError
from trailrelay.record import Origin
from trailrelay.sources.base import ObjectDone, Work
from trailrelay.sources.decompress import DEFAULT_LIMIT, decompress, is_gzip
from trailrelay.sources.firehose_config import DEFAULT_MAX_BODY_BYTES, FirehoseSourceConfig, parse_listen
from trailrelay.sources.payloads import PayloadCollector

__all__ = ["FirehoseSource", "FirehoseSourceConfig", "build_firehose_source", "parse_listen"]

log = logging.getLogger("trailrelay.sources.firehose")

ACCESS_KEY_HEADER = "X-Amz-Firehose-Access-Key"
REQUEST_ID_HEADER = "X-Amz-Firehose-Request-Id"
SOURCE_ARN_HEADER = "X-Amz-Firehose-Source-Arn"
_RECENT_IDS = 4096
_MAX_CONNECTIONS = 256


def build_firehose_source(
    config: FirehoseSourceConfig, *, max_object_bytes: int = DEFAULT_LIMIT, base_dir: Path | None = None
) -> FirehoseSource:
    """Listen as configured; ConfigError when the address or the TLS files cannot be used."""
    tls = None
    if config.tls_cert is not None and config.tls_key is not None:
        base = base_dir or Path()
        cert = config.tls_cert if config.tls_cert.is_absolute() else base / config.tls_cert
        key = config.tls_key if config.tls_key.is_absolute() else base / config.tls_key
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            tls.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"source.tls_cert/tls_key: cannot load {cert} and its key: {exc}") from None
    return FirehoseSource(
        parse_listen(config.listen),
        config.secret_keys(),
        max_body_bytes=config.max_body_bytes,
        max_object_bytes=max_object_bytes,
        max_concurrent_requests=config.max_concurrent_requests,
        response_timeout=config.response_timeout,
        tls=tls,
    )


class _Record(msgspec.Struct):
    data: bytes | dict[str, Any] = b""  # msgspec decodes the base64 while it parses the JSON


class _Request(msgspec.Struct, rename="camel"):
    request_id: str
    records: list[_Record]
    timestamp: int | None = None


class _RawRequest(msgspec.Struct, rename="camel"):
    """The same request with its records left as JSON, to decode one by one: finds the bad ones."""

    request_id: str
    records: list[msgspec.Raw]
    timestamp: int | None = None


class _TextRecord(msgspec.Struct):
    data: str


_REQUEST = msgspec.json.Decoder(_Request)
_RAW_REQUEST = msgspec.json.Decoder(_RawRequest)
_RECORD = msgspec.json.Decoder(_Record)
_TEXT_RECORD = msgspec.json.Decoder(_TextRecord)


def _decode_request(body: bytes) -> _Request | _RawRequest:
    """The request, base64 decoded; a request with a record that does not decode comes back raw."""
    try:
        return _REQUEST.decode(body)
    except msgspec.ValidationError:
        return _RAW_REQUEST.decode(body)  # what is wrong with the request as a whole raises again


def _add_record(collector: PayloadCollector, record: _Record | msgspec.Raw, where: str) -> None:
    """One record to the collector; one that does not decode is dead-lettered with the reason."""
    decoded = _decode_record(collector, record, where) if isinstance(record, msgspec.Raw) else record
    if decoded is None:
        return
    if isinstance(decoded.data, bytes):
        collector.add_bytes(decoded.data, where)
    else:  # the protocol says base64; tolerate a JSON object
        collector.add_bytes(orjson.dumps(decoded.data), where)


def _decode_record(collector: PayloadCollector, raw: msgspec.Raw, where: str) -> _Record | None:
    """A record of a request that did not decode whole; None when it is bad (and dead-lettered)."""
    try:
        return _RECORD.decode(raw)
    except msgspec.ValidationError as exc:
        reason = f"{where}: not a Firehose record: {exc}"
    try:  # text but not base64: dead-lettered with base64's own reason
        collector.add_base64(_TEXT_RECORD.decode(raw).data, where)
    except msgspec.ValidationError:  # null, a number, not an object at all
        collector.invalid.append((reason, bytes(raw)))
    return None


class _Pending:
    """One accepted request waiting for its unit of work to be acknowledged or released."""

    __slots__ = ("done", "message", "request_id", "status", "taken", "work")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.taken = False
        self.done = threading.Event()
        self.status = 0
        self.message: str | None = None
        self.work: Work | None = None

    def finish(self, status: int, message: str | None) -> bool:
        """Record the answer once; False when it was already decided."""
        if self.done.is_set():
            return False
        self.status, self.message = status, message
        self.done.set()
        return True


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    message: str | None = None
    close: bool = False


class FirehoseSource:
    """Serves the Firehose HTTP endpoint; ``work`` yields one unit per accepted request."""

    def __init__(
        self,
        address: tuple[str, int],
        access_keys: list[bytes],
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_object_bytes: int = DEFAULT_LIMIT,
        max_concurrent_requests: int = 8,
        response_timeout: float = 170.0,
        tls: ssl.SSLContext | None = None,
        idle_timeout: float = 75.0,
    ) -> None:
        if not access_keys:
            raise ConfigError("source.access_key: at least one access key is required")
        self._keys = list(access_keys)
        self.max_body_bytes = max_body_bytes
        self.max_object_bytes = max_object_bytes
        self.response_timeout = response_timeout
        self.stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_concurrent_requests)
        self._queue: queue.Queue[_Pending] = queue.Queue(maxsize=max_concurrent_requests)
        self._stopping = threading.Event()
        self._pipeline_stop: threading.Event | None = None
        self._inflight: dict[str, _Pending] = {}
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._ids_lock = threading.Lock()
        self._server = _make_server(address, self, tls, idle_timeout)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="firehose-http",
            daemon=True,
        )
        self._thread.start()
        scheme = "https" if tls is not None else "http"
        log.info("accepting Firehose deliveries on %s://%s:%d/", scheme, *self.address[:2])

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) actually bound (port 0 in the config picks a free one)."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    # -- the Source protocol ------------------------------------------------------------------

    def work(self, stop: threading.Event) -> Iterator[Work]:
        """One unit per accepted request, until ``stop`` is set."""
        self._pipeline_stop = stop  # from now on a stop (SIGTERM) also turns new requests away
        while not stop.is_set() and not self._stopping.is_set():
            try:
                pending = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if pending.work is not None:
                pending.taken = True
                yield pending.work
        self._begin_stop()

    def close(self) -> None:
        """Stop accepting; answer anything not yet taken with 503 so Firehose retries it."""
        self._begin_stop()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        log.info("Firehose endpoint closed: %s", dict(self.stats))

    def _closing(self) -> bool:
        stop = self._pipeline_stop
        return self._stopping.is_set() or (stop is not None and stop.is_set())

    def _begin_stop(self) -> None:
        self._stopping.set()
        while True:
            try:
                pending = self._queue.get_nowait()
            except queue.Empty:
                return
            self._settle(pending, 503, "the endpoint is shutting down; retry")

    # -- one request ----------------------------------------------------------------------------

    def handle(self, h: _Handler) -> None:
        """Answer one POST (called on the connection's thread)."""
        request_id = h.headers.get(REQUEST_ID_HEADER, "")
        reply, request_id = self._answer(h, request_id)
        self._count(str(reply.status))
        if reply.status != 200:
            log.warning("Firehose request %s answered %d: %s", request_id or "-", reply.status, reply.message)
        else:
            log.debug("Firehose request %s delivered", request_id)
        body: dict[str, Any] = {"requestId": request_id, "timestamp": int(time.time() * 1000)}
        if reply.message is not None:
            body["errorMessage"] = reply.message[:8192]
        _send(h, reply.status, orjson.dumps(body), close=reply.close)

    def _answer(self, h: _Handler, request_id: str) -> tuple[_Reply, str]:
        if urlsplit(h.path).path != "/":
            return _Reply(404, "deliveries are accepted at /", close=True), request_id
        if not self._authorized(h.headers.get(ACCESS_KEY_HEADER)):
            return _Reply(401, f"missing or wrong {ACCESS_KEY_HEADER}", close=True), request_id
        if self._closing():
            return _Reply(503, "the endpoint is shutting down; retry", close=True), request_id
        # the slot is taken before the body is read: at most max_concurrent_requests bodies in memory
        if not self._slots.acquire(timeout=min(30.0, self.response_timeout / 2)):
            return _Reply(503, "too many requests in progress; retry", close=True), request_id
        try:
            body, problem = self._read_body(h)
            if problem is not None:
                return problem, request_id
            assert body is not None
            try:
                req = _decode_request(body)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                return _Reply(400, f"not a Firehose delivery request: {exc}"), request_id
            request_id = req.request_id or request_id
            return self._deliver(h, req, request_id), request_id
        finally:
            self._slots.release()

    def _authorized(self, presented: str | None) -> bool:
        if presented is None:
            return False
        try:  # http.server decodes header bytes as latin-1: this gives back what was sent (UTF-8)
            given = presented.encode("latin-1")
        except UnicodeEncodeError:
            return False
        ok = False
        for key in self._keys:  # every key is compared, so timing does not tell which one matched
            ok |= hmac.compare_digest(given, key)
        return ok

    def _read_body(self, h: _Handler) -> tuple[bytes | None, _Reply | None]:
        if "chunked" in h.headers.get("Transfer-Encoding", "").lower():
            return None, _Reply(411, "chunked bodies are not accepted: send Content-Length", close=True)
        length_text = h.headers.get("Content-Length")
        if length_text is None:
            return None, _Reply(411, "Content-Length is required", close=True)
        length_text = length_text.strip()
        if not (length_text.isascii() and length_text.isdigit()):  # "²".isdigit(), int("²") fails
            return None, _Reply(400, "Content-Length must be a number of bytes", close=True)
        length = int(length_text)
        if length > self.max_body_bytes:
            return None, _Reply(413, f"body of {length} bytes exceeds {self.max_body_bytes}", close=True)
        h.server.expect_body(h.connection, h.client_address)
        data = h.rfile.read(length)
        h.server.unwatch(h.connection)
        h.body_read = True
        if len(data) != length:
            return None, _Reply(400, "body ended before Content-Length bytes", close=True)
        encoding = h.headers.get("Content-Encoding", "").strip().lower()
        if encoding in ("", "identity"):
            return data, None
        if encoding != "gzip":
            return None, _Reply(415, f"unsupported Content-Encoding {encoding!r} (gzip or none)")
        if not is_gzip(data):
            return None, _Reply(400, "Content-Encoding is gzip but the body is not gzip data")
        try:
            return decompress(data, self.max_body_bytes), None
        except InputError as exc:
            status = 413 if "limit" in str(exc) else 400
            return None, _Reply(status, f"gzip body: {exc}")

    def _deliver(self, h: _Handler, req: _Request | _RawRequest, request_id: str) -> _Reply:
        with self._ids_lock:
            if request_id and request_id in self._recent:
                self._count("duplicate-request")
                return _Reply(200)
            pending = self._inflight.get(request_id) if request_id else None
            joined = pending is not None
            if pending is None:
                pending = _Pending(request_id)
                if request_id:
                    self._inflight[request_id] = pending
        if not joined:  # a retry of a request still in flight waits for the same answer
            pending.work = self._work(h, req, pending)
            if not self._enqueue(pending):
                self._settle(pending, 503, "the endpoint is busy or shutting down; retry")
        deadline = time.monotonic() + self.response_timeout
        while not pending.done.wait(0.2):
            if self._closing() and not pending.taken:  # the pipeline will not take it any more
                self._settle(pending, 503, "the endpoint is shutting down; retry")
            elif time.monotonic() >= deadline:
                return _Reply(503, f"records not all delivered within {self.response_timeout:g}s; retry")
        return _Reply(pending.status, pending.message)

    def _enqueue(self, pending: _Pending) -> bool:
        deadline = time.monotonic() + min(30.0, self.response_timeout / 2)
        while not self._closing():
            try:
                self._queue.put(pending, timeout=0.1)
            except queue.Full:
                if time.monotonic() >= deadline:
                    return False
                continue
            return True
        return False

    def _work(self, h: _Handler, req: _Request | _RawRequest, pending: _Pending) -> Work:
        arn = h.headers.get(SOURCE_ARN_HEADER, "")
        stream = arn.rpartition("/")[2] or "firehose"
        location = f"firehose://{stream}/{pending.request_id or 'request'}"
        collector = PayloadCollector(
            Origin("firehose", location), self.max_object_bytes, budget=self.max_body_bytes
        )
        records: Sequence[_Record | msgspec.Raw] = req.records
        for i, record in enumerate(records):
            _add_record(collector, record, f"{location}#{i}")

        def ack(_: list[ObjectDone]) -> None:
            self._settle(pending, 200, None)

        def release(reason: str) -> None:
            status = 503 if reason.startswith("stopping") else 500
            self._settle(pending, status, f"records not delivered ({reason}); retry")

        return Work(
            collector.refs(),
            ack=ack,
            release=release,
            skipped=collector.skipped,
            invalid=collector.invalid,
            label=f"firehose request {pending.request_id}",
            urgent=True,
        )

    def _settle(self, pending: _Pending, status: int, message: str | None) -> None:
        """Decide a request's answer once; an acknowledged request id is remembered for retries."""
        with self._ids_lock:
            if not pending.finish(status, message):
                return
            if self._inflight.get(pending.request_id) is pending:
                del self._inflight[pending.request_id]
            if status == 200 and pending.request_id:
                self._recent[pending.request_id] = None
                while len(self._recent) > _RECENT_IDS:
                    self._recent.popitem(last=False)

    def _count(self, what: str) -> None:
        with self._stats_lock:
            self.stats[what] += 1


def _send(h: _Handler, status: int, body: bytes, *, close: bool) -> None:
    try:
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        if close:
            h.send_header("Connection", "close")
            h.close_connection = True
        h.end_headers()
        h.wfile.write(body)
        h.wfile.flush()
        if close and not h.body_read:
            _linger(h)
    except OSError as exc:  # the client went away; Firehose retries what it did not see answered
        log.info("could not answer a Firehose request: %s", exc)
        h.close_connection = True


def _linger(h: _Handler, seconds: float = 2.0) -> None:
    """Read and drop an unread body briefly before closing, so the client sees the answer.

    Closing a socket with unread data makes the kernel reset the connection, and a client that
    is still sending then reports "connection reset" instead of our 401 or 413.
    """
    conn = h.connection
    conn.shutdown(socket.SHUT_WR)
    deadline = time.monotonic() + seconds
    conn.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            if not conn.recv(65536):
                return
        except TimeoutError:
            continue
        except OSError:
            return


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: Firehose reuses connections
    disable_nagle_algorithm = True  # headers and body go out in two writes; don't hold the body back
    server_version = "trailrelay"
    sys_version = ""
    server: _Server
    body_read = False

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):  # handshake here, not on the accept thread
            self.connection.do_handshake()

    def handle_one_request(self) -> None:
        super().handle_one_request()
        self.server.expect_request(self.connection, self.client_address)  # the next, on a kept-alive one

    def parse_request(self) -> bool:
        parsed = super().parse_request()  # reads the headers
        self.server.unwatch(self.connection)  # they are in: what follows is up to us
        return parsed

    def do_POST(self) -> None:
        self.server.endpoint.handle(self)

    def _not_allowed(self) -> None:
        body = orjson.dumps(
            {"requestId": "", "timestamp": int(time.time() * 1000), "errorMessage": "use POST"}
        )
        self.send_response(405)
        self.send_header("Allow", "POST")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        if self.headers.get("Content-Length", "").strip() not in ("", "0"):  # a body may follow
            _linger(self)

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = _not_allowed  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        log.debug("%s %s", self.address_string(), format % args)


class _Watch(NamedTuple):
    deadline: float
    waiting: bool  # for a request (its line and headers), not for the body of one
    client: Any


class _Server(http.server.ThreadingHTTPServer):
    """Serves each connection on a thread, and watches the time they take.

    A connection has ``idle_timeout`` seconds for the line and headers of its next request, and
    then as long for the body: in all, however the bytes trickle in, or it is closed. When all
    ``_MAX_CONNECTIONS`` are open, a newcomer takes the place of the connection that has waited
    longest for a request; it is refused only when every connection is busy with one.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    endpoint: FirehoseSource
    connections: threading.BoundedSemaphore
    idle_timeout: float
    watch_lock: threading.Lock
    watched: dict[Any, _Watch]

    def expect_request(self, conn: Any, client: Any) -> None:
        """``conn`` waits for a request: its headers must be in within ``idle_timeout``."""
        with self.watch_lock:
            self.watched[conn] = _Watch(time.monotonic() + self.idle_timeout, True, client)

    def expect_body(self, conn: Any, client: Any) -> None:
        """``conn``'s request body must be in within ``idle_timeout``."""
        with self.watch_lock:
            self.watched[conn] = _Watch(time.monotonic() + self.idle_timeout, False, client)

    def unwatch(self, conn: Any) -> None:
        """``conn`` is no longer waiting for the client."""
        with self.watch_lock:
            self.watched.pop(conn, None)

    def service_actions(self) -> None:
        """Close the connections past their deadline (``serve_forever`` calls this every poll)."""
        now = time.monotonic()
        with self.watch_lock:
            for conn, watch in list(self.watched.items()):
                if watch.deadline > now:
                    continue
                self._drop(conn)
                self.endpoint._count("connection-timed-out")
                if watch.waiting:  # also how an idle kept-alive connection ends: normal
                    log.debug(
                        "closed a connection from %s: no request within %gs", watch.client, self.idle_timeout
                    )
                else:  # the client is Firehose (it had the key): it retries the request
                    log.warning(
                        "closed a connection from %s: the request's body did not arrive within %gs",
                        watch.client,
                        self.idle_timeout,
                    )

    def _drop(self, conn: Any) -> None:
        """Shut ``conn`` down, waking its thread (called holding ``watch_lock``: it is not closed yet)."""
        del self.watched[conn]
        with contextlib.suppress(OSError):  # the plain socket's shutdown, also under TLS
            socket.socket.shutdown(conn, socket.SHUT_RDWR)

    def _make_room(self) -> bool:
        """Close the connection that has waited longest for a request; False when none waits."""
        with self.watch_lock:
            waiting = [(w.deadline, conn) for conn, w in self.watched.items() if w.waiting]
            if not waiting:
                return False
            conn = min(waiting, key=lambda item: item[0])[1]
            log.debug("closing a connection from %s to make room", self.watched[conn].client)
            self._drop(conn)
        self.endpoint._count("connection-dropped-for-room")
        return True

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.connections.acquire(blocking=False) and not (
            self._make_room() and self.connections.acquire(timeout=1.0)
        ):
            log.warning(
                "refusing a connection from %s: %d connections busy with requests",
                client_address,
                _MAX_CONNECTIONS,
            )
            self.shutdown_request(request)
            return
        self.expect_request(request, client_address)  # the TLS handshake counts in its time
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.unwatch(request)
            self.connections.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.connections.release()

    def shutdown_request(self, request: Any) -> None:
        self.unwatch(request)  # first: a watched connection is never a closed one
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:  # noqa: ARG002 - stdlib signature
        log.debug("connection from %s failed: %s", client_address, sys.exc_info()[1])


def _make_server(
    address: tuple[str, int], endpoint: FirehoseSource, tls: ssl.SSLContext | None, idle_timeout: float
) -> _Server:
    handler = type("FirehoseHandler", (_Handler,), {"timeout": idle_timeout})
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    server_class = type("FirehoseServer", (_Server,), {"address_family": family})
    try:
        server: _Server = server_class(address, handler)
    except OSError as exc:
        raise ConfigError(
            f"source.listen: cannot listen on {address[0]}:{address[1]}: {exc.strerror}"
        ) from None
    server.endpoint = endpoint
    server.connections = threading.BoundedSemaphore(_MAX_CONNECTIONS)
    server.idle_timeout = idle_timeout
    server.watch_lock = threading.Lock()
    server.watched = {}
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    return server
