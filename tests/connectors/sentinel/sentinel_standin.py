"""A local HTTPS stand-in for Microsoft Entra ID (token issuer) and the Logs Ingestion API.

One ``ThreadingHTTPServer`` on 127.0.0.1 (ephemeral port) with a certificate from a CA the
tests generate with ``trustme``. It serves what the real ``azure-identity`` and
``azure-monitor-ingestion`` clients ask for:

* ``GET /{tenant}/v2.0/.well-known/openid-configuration`` - OpenID discovery (MSAL reads
  ``token_endpoint`` from it when instance discovery is disabled);
* ``POST /{tenant}/oauth2/v2.0/token`` - client-credentials grant (secret or certificate
  assertion); a wrong secret gets Entra's documented ``invalid_client`` / AADSTS7000215 answer;
  ``token_script`` answers come first (an outage, throttling, a proxy's page in its place);
* ``POST /dataCollectionRules/{rule}/streams/{stream}?api-version=2023-01-01`` - the upload,
  answering 204 or a scripted response replayed from ``fixtures/*.json`` (status, headers
  including ``x-ms-error-code``, Azure error body);
* ``POST /v1/workspaces/{workspace}/query`` - the Log Analytics query API over the rows stored
  so far, for the one query shape the connector sends
  (``<table> | where AwsEventId == "<id>" | project ... | take N``), answering the documented
  ``{"tables": [{"name", "columns", "rows"}]}`` shape, or its documented errors (401
  AuthorizationRequiredError, 403 InsufficientAccessError, 404 PathNotFoundError, 400
  BadArgumentError). Its token audience is the stand-in's own URL (the client's default:
  its endpoint). A row becomes queryable ``query_latency`` seconds after it was ingested.

Everything the client sent is kept (requests, decoded rows) so tests can assert on it.

Fault hook for the reliability harness (``reliability/``): ``StandinState.fault`` is called once
per POST with ``"upload"`` or ``"token"`` and answers ``None`` or a kind: ``outage`` (connection
reset before anything is read), ``reset`` (half the body read, then reset), ``5xx`` (the documented
503), ``429`` (the documented 429 without Retry-After), ``partial`` (the documented 400
InvalidPayload: Azure refuses a whole body for one bad row, so the client splits it and sends the
halves) or ``slow`` (stored, then answered after ``slow_seconds``, beyond the client's timeout).
``compact`` keeps only each row's AwsEventId, for runs of millions of rows.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import json
import re
import secrets
import socket
import ssl
import struct
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"
MAX_CONTENT_LENGTH = 1024 * 1024  # the service's documented 1 MB request limit


def load_fixture(name: str) -> dict[str, Any]:
    """One documented response (written from Microsoft's documentation): ``{"response": {"status", "headers", "body"}}``."""
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


@dataclass
class Scripted:
    """A response the ingestion endpoint gives instead of its normal answer.

    ``body`` may be a function of the request's headers (lower-case names), for an answer that
    repeats something of the request.
    """

    status: int
    headers: dict[str, str]
    body: Any = None


@dataclass
class Upload:
    """One upload request as the stand-in received it."""

    rule_id: str
    stream: str
    api_version: str
    headers: dict[str, str]
    raw_size: int
    rows: list[dict[str, Any]] | None
    status: int


@dataclass
class StandinState:
    """What the stand-in knows and has seen; shared by the handler threads."""

    tenant_id: str
    client_id: str
    client_secret: str
    rule_id: str
    stream: str
    audience: str = "https://monitor.azure.com"
    lock: threading.Lock = field(default_factory=threading.Lock)
    tokens: set[str] = field(default_factory=set)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    discovery_requests: int = 0
    uploads: list[Upload] = field(default_factory=list)
    stored: list[dict[str, Any]] = field(default_factory=list)
    script: deque[Scripted] = field(default_factory=deque)
    reject_ids: set[str] = field(default_factory=set)
    oversize_ids: set[str] = field(default_factory=set)
    token_failures: int = 0
    token_script: deque[Scripted] = field(default_factory=deque)
    """Answers the token endpoint gives, in order, instead of its normal one (outages, throttling)."""
    accept_assertions: bool = True
    row_limit: int | None = None
    """When set, a body holding a row longer than this many bytes gets the 413 fixture."""
    identity_header: str = "msi-header-secret"
    workspace_id: str = "0b7d2f6a-9c1e-4c43-8d6a-3f1e2d4c5b6a"
    tables: tuple[str, ...] = ("AWSCloudTrail",)
    extra_audiences: set[str] = field(default_factory=set)
    token_audience: dict[str, str] = field(default_factory=dict)
    stored_at: list[float] = field(default_factory=list)
    """When each stored row was ingested (epoch seconds): its ingestion_time()."""
    query_latency: float = 0.0
    query_access: bool = True
    query_requests: list[dict[str, Any]] = field(default_factory=list)
    query_script: deque[Scripted] = field(default_factory=deque)
    fault: Callable[[str], str | None] | None = None
    slow_seconds: float = 0.0
    compact: bool = False
    slow_stored: int = 0
    """Rows stored by uploads answered too late (the client sends them again)."""

    def audiences(self) -> set[str]:
        """Token audiences the issuer accepts."""
        return {self.audience, *self.extra_audiences}


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # real servers set TCP_NODELAY; without it each answer waits ~40 ms

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    # --- plumbing -------------------------------------------------------------------------
    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if data and not any(k.lower() == "content-type" for k in (headers or {})):
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    # --- Entra ID -------------------------------------------------------------------------
    def do_GET(self) -> None:
        state = self.server.state
        path = urllib.parse.urlsplit(self.path).path
        base = f"https://127.0.0.1:{self.server.server_address[1]}/{state.tenant_id}"
        if path == "/msi/token":
            self._managed_identity()
            return
        if path == f"/{state.tenant_id}/v2.0/.well-known/openid-configuration":
            with state.lock:
                state.discovery_requests += 1
            self._send(
                200,
                {
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "issuer": f"{base}/v2.0",
                    "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
                    "response_types_supported": ["code", "id_token", "token"],
                    "tenant_region_scope": "WW",
                },
            )
            return
        self._send(404, {"error": "not_found"})

    def _managed_identity(self) -> None:
        """App Service managed identity endpoint (IDENTITY_ENDPOINT / X-IDENTITY-HEADER, 2019-08-01)."""
        state = self.server.state
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
        with state.lock:
            state.token_requests.append({"managed_identity": "1", **query})
        if self.headers.get("X-IDENTITY-HEADER") != state.identity_header:
            self._send(401, {"error": "unauthorized"})
            return
        if query.get("resource") not in state.audiences():
            self._send(400, {"error": "invalid_resource", "error_description": "bad resource"})
            return
        token = "mi-" + secrets.token_hex(16)
        with state.lock:
            state.tokens.add(token)
            state.token_audience[token] = str(query.get("resource"))
        self._send(
            200,
            {
                "access_token": token,
                "expires_on": str(int(time.time()) + 3600),
                "resource": state.audience,
                "token_type": "Bearer",
                "client_id": query.get("client_id", "system-assigned"),
            },
        )

    def _token(self) -> None:
        state = self.server.state
        form = dict(urllib.parse.parse_qsl(self._read_body().decode()))
        with state.lock:
            state.token_requests.append(form)
            scripted = state.token_script.popleft() if state.token_script else None
            fail = state.token_failures > 0
            if fail:
                state.token_failures -= 1
        if scripted is not None:
            self._send(scripted.status, scripted.body, scripted.headers)
            return
        ok_client = (
            form.get("client_id") == state.client_id and form.get("grant_type") == "client_credentials"
        )
        ok_secret = form.get("client_secret") == state.client_secret
        ok_assertion = state.accept_assertions and bool(form.get("client_assertion"))
        scope = form.get("scope", "").split(" ")[0]
        ok_scope = scope in {f"{a}/.default" for a in state.audiences()}
        if fail or not (ok_client and (ok_secret or ok_assertion)):
            # Entra's documented answer to a wrong client secret.
            self._send(
                401,
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the secret "
                    "being sent in the request is the client secret value, not the client secret ID.",
                    "error_codes": [7000215],
                    "timestamp": "2026-03-02 10:15:02Z",
                    "trace_id": "00000000-0000-0000-0000-000000000001",
                    "correlation_id": "00000000-0000-0000-0000-000000000002",
                },
            )
            return
        if not ok_scope:
            self._send(
                400,
                {
                    "error": "invalid_scope",
                    "error_description": f"AADSTS70011: The provided value for scope {form.get('scope')} is not valid.",
                    "error_codes": [70011],
                },
            )
            return
        token = "tok-" + secrets.token_hex(16)
        with state.lock:
            state.tokens.add(token)
            state.token_audience[token] = scope.removesuffix("/.default")
        self._send(
            200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}
        )

    # --- Logs Ingestion API ---------------------------------------------------------------
    def _reset(self, read: int) -> None:
        """Read ``read`` bytes of the body, then reset the connection (no reply)."""
        if read:
            self.rfile.read(read)
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _fault(self, label: str) -> str | None:
        """Ask the fault hook; answer outages, resets and refusals here. Returns what is left to do."""
        state = self.server.state
        fault = state.fault(label) if state.fault is not None else None
        length = int(self.headers.get("Content-Length") or 0)
        if fault == "outage" or (fault == "reset" and label == "upload"):
            self._reset(length // 2 if fault == "reset" else 0)
            return "done"
        if label == "upload" and fault in ("5xx", "429", "partial"):
            self._read_body()
            name = {
                "5xx": "upload_503_unavailable",
                "429": "upload_429_no_retry_after",
                "partial": "upload_400_invalid_payload",
            }[fault]
            resp = load_fixture(name)["response"]
            self._send(resp["status"], resp["body"], dict(resp["headers"]))
            return "done"
        return fault

    def do_POST(self) -> None:
        state = self.server.state
        url = urllib.parse.urlsplit(self.path)
        if url.path == f"/{state.tenant_id}/oauth2/v2.0/token":
            if self._fault("token") != "done":
                self._token()
            return
        if url.path.startswith("/v1/workspaces/"):
            self._query(url.path)
            return
        parts = url.path.strip("/").split("/")
        if len(parts) != 4 or parts[0] != "dataCollectionRules" or parts[2] != "streams":
            self._send(404, {"error": {"code": "NotFound", "message": "Resource not found."}})
            return
        fault = self._fault("upload")
        if fault == "done":
            return
        rule_id, stream = urllib.parse.unquote(parts[1]), urllib.parse.unquote(parts[3])
        query = dict(urllib.parse.parse_qsl(url.query))
        raw = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, body, extra, rows = self._ingest(rule_id, stream, query, headers, raw)
        if state.compact and rows:
            rows = [{"AwsEventId": r.get("AwsEventId")} if isinstance(r, dict) else r for r in rows]
        with state.lock:
            state.uploads.append(
                Upload(rule_id, stream, query.get("api-version", ""), headers, len(raw), rows, status)
            )
            if status == 204 and rows:
                state.stored.extend(rows)
                state.stored_at.extend([time.time()] * len(rows))
                if fault == "slow":
                    state.slow_stored += len(rows)
        if fault == "slow":
            time.sleep(state.slow_seconds)
            try:
                self._send(status, body, extra)
            except OSError:  # the client gave up waiting, as intended
                self.close_connection = True
            return
        self._send(status, body, extra)

    def _ingest(
        self, rule_id: str, stream: str, query: dict[str, str], headers: dict[str, str], raw: bytes
    ) -> tuple[int, Any, dict[str, str], list[dict[str, Any]] | None]:
        state = self.server.state
        auth = headers.get("authorization", "")
        with state.lock:
            scripted = state.script.popleft() if state.script else None
            known = auth.startswith("Bearer ") and auth[7:] in state.tokens
        if scripted is not None:
            body = scripted.body(headers) if callable(scripted.body) else scripted.body
            return scripted.status, body, scripted.headers, None
        if not known:
            return (
                401,
                _err("InvalidToken", "The access token is missing or invalid."),
                _code("InvalidToken"),
                None,
            )
        if rule_id != state.rule_id or stream != state.stream:
            fixture = load_fixture("upload_404_unknown_stream")["response"]
            return fixture["status"], fixture["body"], fixture["headers"], None
        if query.get("api-version") != "2023-01-01":
            return (
                400,
                _err("InvalidApiVersion", "Unsupported api-version."),
                _code("InvalidApiVersion"),
                None,
            )
        if len(raw) > MAX_CONTENT_LENGTH:
            fixture = load_fixture("upload_413_content_length")["response"]
            return fixture["status"], fixture["body"], fixture["headers"], None
        try:
            data = gzip.decompress(raw) if headers.get("content-encoding") == "gzip" else raw
            rows = json.loads(data)
        except (OSError, ValueError):
            return 400, _err("InvalidJson", "The request body is not valid JSON."), _code("InvalidJson"), None
        if not isinstance(rows, list):
            return (
                400,
                _err("InvalidJson", "The request body must be a JSON array."),
                _code("InvalidJson"),
                None,
            )
        if len(data) > MAX_CONTENT_LENGTH:
            fixture = load_fixture("upload_413_content_length")["response"]
            return fixture["status"], fixture["body"], fixture["headers"], None
        if state.row_limit is not None and any(
            len(json.dumps(r, separators=(",", ":"))) > state.row_limit for r in rows
        ):
            fixture = load_fixture("upload_413_content_length")["response"]
            return fixture["status"], fixture["body"], fixture["headers"], None
        ids = {str(r.get("AwsEventId")) for r in rows if isinstance(r, dict)}
        with state.lock:
            rejected = ids & state.reject_ids
            oversize = ids & state.oversize_ids
        if oversize:
            fixture = load_fixture("upload_413_content_length")["response"]
            return fixture["status"], fixture["body"], fixture["headers"], None
        if rejected:
            fixture = load_fixture("upload_400_invalid_payload")["response"]
            return fixture["status"], fixture["body"], fixture["headers"], None
        return 204, None, {}, rows

    # --- Log Analytics query API -------------------------------------------------------------
    def _query(self, path: str) -> None:
        state = self.server.state
        headers = {k.lower(): v for k, v in self.headers.items()}
        raw = self._read_body()
        with state.lock:
            state.query_requests.append({"path": path, "headers": headers, "body": raw})
            scripted = state.query_script.popleft() if state.query_script else None
        if scripted is not None:
            body = scripted.body(headers) if callable(scripted.body) else scripted.body
            self._send(scripted.status, body, scripted.headers)
            return
        auth = headers.get("authorization", "")
        own = f"https://127.0.0.1:{self.server.server_address[1]}"
        with state.lock:
            audience = state.token_audience.get(auth[7:]) if auth.startswith("Bearer ") else None
        if audience != own:
            self._send(
                401, _query_error("AuthorizationRequiredError", "Valid authentication was not provided")
            )
            return
        parts = path.strip("/").split("/")
        if len(parts) != 4 or parts[3] != "query" or parts[2] != state.workspace_id:
            self._send(404, _query_error("PathNotFoundError", "The requested path does not exist"))
            return
        if not state.query_access:
            self._send(
                403,
                _query_error(
                    "InsufficientAccessError",
                    "The provided credentials have insufficient access to perform the requested operation",
                ),
            )
            return
        try:
            request = json.loads(raw)
            status, body = self._run_query(str(request["query"]), request.get("timespan"))
        except (ValueError, KeyError, TypeError):
            status, body = 400, _query_error("BadArgumentError", "The request had some invalid properties")
        self._send(status, body)

    def _run_query(self, kql: str, timespan: str | None) -> tuple[int, dict[str, Any]]:
        state = self.server.state
        m = _KQL.fullmatch(kql.strip())
        if m is None:
            return 400, _query_error(
                "BadArgumentError",
                "The request had some invalid properties",
                {"code": "SyntaxError", "message": "A recognition error occurred in the query."},
            )
        table, event_id, projection, take = m.group(1), m.group(2), m.group(3), int(m.group(4))
        if table not in state.tables:
            return 400, _query_error(
                "BadArgumentError",
                "The request had some invalid properties",
                {
                    "code": "SemanticError",
                    "message": "A semantic error occurred.",
                    "innererror": {
                        "code": "SEM0100",
                        "message": f"'where' operator: Failed to resolve table or column expression named '{table}'",
                    },
                },
            )
        event_id = event_id.replace('\\"', '"').replace("\\\\", "\\")
        start, end = _timespan(timespan)
        visible = time.time() - state.query_latency
        columns: list[tuple[str, str]] = []
        for item in projection.split(","):
            name, _, expr = (x.strip() for x in item.partition("="))
            columns.append((name, expr or name))
        rows: list[list[Any]] = []
        with state.lock:
            stored = list(zip(state.stored, state.stored_at, strict=True))
        for row, ingested in stored:
            if row.get("AwsEventId") != event_id or ingested > visible:
                continue
            generated = dt.datetime.fromisoformat(str(row["TimeGenerated"]))
            if (start and generated < start) or (end and generated > end):
                continue
            rows.append([_cell(row, expr, ingested) for _, expr in columns])
        types = {"TimeGenerated": "datetime", "ingestion_time()": "datetime"}
        return 200, {
            "tables": [
                {
                    "name": "PrimaryResult",
                    "columns": [{"name": n, "type": types.get(expr, "string")} for n, expr in columns],
                    "rows": rows[:take],
                }
            ]
        }


_KQL = re.compile(r'(\w+) \| where AwsEventId == "((?:[^"\\]|\\.)*)" \| project ([\w ,=()]+?) \| take (\d+)')


def _timespan(value: str | None) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The start/end of an ISO 8601 interval ``start/end`` (the form the client sends)."""
    if not value or "/" not in value:
        return None, None
    start, _, end = value.partition("/")
    return dt.datetime.fromisoformat(start), dt.datetime.fromisoformat(end)


def _cell(row: dict[str, Any], expr: str, ingested: float) -> Any:
    if expr == "ingestion_time()":
        moment = dt.datetime.fromtimestamp(ingested, dt.UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"  # 7 digits, as Kusto
    return row.get(expr)


def _query_error(code: str, message: str, inner: dict[str, Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "code": code, "correlationId": secrets.token_hex(8)}
    if inner is not None:
        error["innererror"] = inner
    return {"error": error}


def _err(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _code(code: str) -> dict[str, str]:
    return {"x-ms-error-code": code}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: StandinState


class Standin:
    """Starts the HTTPS stand-in; ``url`` is its base address; ``stop()`` ends it."""

    def __init__(self, state: StandinState, server_cert: Any) -> None:
        self.state = state
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = state
        state.extra_audiences.add(self.url)  # the query API's audience: its endpoint
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_cert.configure_cert(ctx)
        self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()

    @property
    def url(self) -> str:
        """``https://127.0.0.1:<port>``."""
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # --- helpers for tests ----------------------------------------------------------------
    def push(self, *responses: Scripted) -> None:
        """Answer the next uploads with these responses, in order."""
        with self.state.lock:
            self.state.script.extend(responses)

    def push_fixture(self, name: str, count: int = 1) -> None:
        """Answer the next ``count`` uploads with a documented response."""
        resp = load_fixture(name)["response"]
        self.push(*[Scripted(resp["status"], dict(resp["headers"]), resp["body"]) for _ in range(count)])

    def stored_ids(self) -> list[str]:
        """``AwsEventId`` of every stored row."""
        with self.state.lock:
            return [str(r.get("AwsEventId")) for r in self.state.stored]

    def wait_idle(self, seconds: float = 0.0) -> None:
        """Give in-flight handler threads a moment (used only after concurrent sends)."""
        time.sleep(seconds)


def fake_jwt_claims(token: str) -> dict[str, Any]:
    """Decode the payload of a JWT without verifying it (for certificate-assertion tests)."""
    payload = token.split(".")[1]
    payload += "=" * (-len(payload) % 4)
    return json.loads(base64.urlsafe_b64decode(payload))
