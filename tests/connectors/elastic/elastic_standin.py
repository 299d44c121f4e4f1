"""A small stand-in of Elasticsearch on 127.0.0.1 that the real client talks to.

It speaks the parts of the REST API the connector uses: ``GET /``, ``POST /_bulk`` (NDJSON,
gzip request bodies, ``create`` stores by ``_id`` and answers 409 for an existing one),
``_security/user/_has_privileges``, data stream and template look-ups and writes, cluster
settings. Every response carries ``X-Elastic-Product: Elasticsearch`` as the official client
requires. Faults are injected per request (recorded fixtures replayed verbatim) or per document.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

FIXTURES = Path(__file__).parent / "fixtures"
PRODUCT = {"X-Elastic-Product": "Elasticsearch"}


def fixture(name: str) -> dict[str, Any]:
    """A recorded response: status, headers and body."""
    return json.loads((FIXTURES / f"{name}.json").read_text())


class StandIn:
    """State of the fake cluster; thread-safe; reset per test by building a new one."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.docs: dict[str, dict[str, dict[str, Any]]] = {}
        self.requests: list[dict[str, Any]] = []
        self.queued: deque[dict[str, Any]] = deque()
        self.rejected_event_ids: set[str] = set()
        self.expected_auth: str | None = None
        self.max_content_length: int | None = None
        self.index_templates: dict[str, dict[str, Any]] = {}
        self.component_templates: dict[str, dict[str, Any]] = {}
        self.data_streams: set[str] = set()
        self.pipelines: set[str] = set()
        self.privileges: dict[str, bool] = {"create_doc": True, "auto_configure": True}
        self.security_enabled = True
        self.cluster_settings: dict[str, dict[str, Any]] = {"persistent": {}, "transient": {}}
        self.index_blocks: dict[str, dict[str, str]] = {}
        self.version = "8.15.1"
        self.server: ThreadingHTTPServer | None = None

    # -- control -------------------------------------------------------------------------
    def queue(self, name_or_response: str | dict[str, Any], count: int = 1) -> None:
        """Answer the next ``count`` requests (of any kind) with a recorded fixture."""
        response = fixture(name_or_response) if isinstance(name_or_response, str) else name_or_response
        for _ in range(count):
            self.queued.append(response)

    def stored(self, index: str | None = None) -> list[dict[str, Any]]:
        """Every stored document (of one index, or all)."""
        with self.lock:
            names = [index] if index else list(self.docs)
            return [doc for n in names for doc in self.docs.get(n, {}).values()]

    def bulk_requests(self) -> list[dict[str, Any]]:
        """The ``_bulk`` requests received so far."""
        return [r for r in self.requests if r["path"].endswith("/_bulk")]

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> None:
        """Serve on an ephemeral port of 127.0.0.1 in a daemon thread."""
        standin = self

        class Handler(_Handler):
            state = standin

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    def stop(self) -> None:
        """Stop serving and free the port."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    # -- behaviour -----------------------------------------------------------------------
    def handle(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        """One request to (status, headers, JSON body or None)."""
        with self.lock:
            self.requests.append(
                {"method": method, "path": path, "query": query, "headers": headers, "body": body}
            )
            if self.queued:
                response = self.queued.popleft()
                return response["status"], dict(response["headers"]), response["body"]
        if self.expected_auth is not None and headers.get("authorization") != self.expected_auth:
            r = fixture("request-401")
            return r["status"], dict(r["headers"]), r["body"]
        if self.max_content_length is not None and len(body) > self.max_content_length:
            return 413, {**PRODUCT, "content-length": "0"}, None
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
        if method == "GET" and not parts:
            info = fixture("info")["body"]
            info["version"]["number"] = self.version
            return 200, dict(PRODUCT), info
        if parts and parts[-1] == "_bulk" and method in ("POST", "PUT"):
            default_index = parts[0] if len(parts) == 2 else None
            return 200, dict(PRODUCT), self._bulk(body, default_index)
        if parts[:3] == ["_security", "user", "_has_privileges"]:
            return self._has_privileges(body)
        if parts[:1] == ["_data_stream"] and len(parts) == 2:
            return self._data_stream(parts[1])
        if parts[:1] == ["_index_template"] and len(parts) == 2:
            return self._template(
                self.index_templates, "index_templates", "index_template", method, parts[1], body
            )
        if parts[:1] == ["_component_template"] and len(parts) == 2:
            return self._template(
                self.component_templates, "component_templates", "component_template", method, parts[1], body
            )
        if parts[:2] == ["_ingest", "pipeline"] and len(parts) == 3:
            if parts[2] in self.pipelines:
                return 200, dict(PRODUCT), {parts[2]: {"processors": []}}
            return 404, dict(PRODUCT), {}
        if parts == ["_cluster", "settings"]:
            return 200, dict(PRODUCT), self.cluster_settings
        if len(parts) >= 2 and parts[1] == "_settings":
            return self._index_settings(parts[0])
        if method == "HEAD" and len(parts) == 1:
            return (200 if parts[0] in self.docs else 404), dict(PRODUCT), None
        return (
            404,
            dict(PRODUCT),
            _error(404, "resource_not_found_exception", f"no handler for {method} {path}"),
        )

    def _bulk(self, body: bytes, default_index: str | None) -> dict[str, Any]:
        lines = [line for line in body.split(b"\n") if line.strip()]
        items = []
        errors = False
        for action_line, source_line in zip(lines[::2], lines[1::2], strict=True):
            action = json.loads(action_line)
            ((op, meta),) = action.items()
            index = meta.get("_index", default_index)
            doc_id = meta.get("_id")
            try:
                source = json.loads(source_line)
            except ValueError as exc:
                items.append({op: _item_error(index, doc_id, 400, "document_parsing_exception", str(exc))})
                errors = True
                continue
            event_id = _event_id(source)
            with self.lock:
                stored = self.docs.setdefault(index, {})
                if event_id in self.rejected_event_ids:
                    items.append(
                        {
                            op: _item_error(
                                index,
                                doc_id,
                                400,
                                "document_parsing_exception",
                                f"[1:2] failed to parse field [aws.cloudtrail.read_only] of type [boolean] in document with id '{doc_id}'. Preview of field's value: 'maybe'",
                            )
                        }
                    )
                    errors = True
                elif op == "create" and doc_id in stored:
                    items.append(
                        {
                            op: _item_error(
                                index,
                                doc_id,
                                409,
                                "version_conflict_engine_exception",
                                f"[{doc_id}]: version conflict, document already exists (current version [1])",
                            )
                        }
                    )
                    errors = True
                else:
                    stored[doc_id] = source
                    seq = len(stored)
                    items.append(
                        {
                            op: {
                                "_index": index,
                                "_id": doc_id,
                                "_version": 1,
                                "result": "created",
                                "_shards": {"total": 2, "successful": 1, "failed": 0},
                                "_seq_no": seq,
                                "_primary_term": 1,
                                "status": 201,
                            }
                        }
                    )
        return {"took": 3, "errors": errors, "items": items}

    def _has_privileges(self, body: bytes) -> tuple[int, dict[str, str], Any]:
        if not self.security_enabled:
            return (
                500,
                dict(PRODUCT),
                _error(
                    500,
                    "exception",
                    "Security must be explicitly enabled when using a [basic] license. "
                    "Enable security by setting [xpack.security.enabled] to [true] in the elasticsearch.yml file "
                    "and restart the node.",
                ),
            )
        request = json.loads(body)
        index: dict[str, dict[str, bool]] = {}
        for entry in request.get("index", []):
            for name in entry["names"]:
                index[name] = {p: self.privileges.get(p, False) for p in entry["privileges"]}
        granted = all(all(v.values()) for v in index.values())
        return (
            200,
            dict(PRODUCT),
            {
                "username": "trailrelay",
                "has_all_requested": granted,
                "cluster": {},
                "index": index,
                "application": {},
            },
        )

    def _data_stream(self, name: str) -> tuple[int, dict[str, str], Any]:
        if name in self.data_streams or name in self.docs:
            return (
                200,
                dict(PRODUCT),
                {
                    "data_streams": [
                        {
                            "name": name,
                            "timestamp_field": {"name": "@timestamp"},
                            "indices": [],
                            "generation": 1,
                            "status": "GREEN",
                        }
                    ]
                },
            )
        return 404, dict(PRODUCT), _error(404, "index_not_found_exception", f"no such index [{name}]")

    def _template(
        self, store: dict[str, Any], plural: str, singular: str, method: str, name: str, body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        if method in {"PUT", "POST"}:
            store[name] = json.loads(body)
            return 200, dict(PRODUCT), {"acknowledged": True}
        if name in store:
            if method == "HEAD":
                return 200, dict(PRODUCT), None
            return 200, dict(PRODUCT), {plural: [{"name": name, singular: store[name]}]}
        if method == "HEAD":
            return 404, dict(PRODUCT), None
        return (
            404,
            dict(PRODUCT),
            _error(404, "resource_not_found_exception", f"index template matching [{name}] not found"),
        )

    def _index_settings(self, name: str) -> tuple[int, dict[str, str], Any]:
        backing = f".ds-{name}-2026.03.02-000001"
        settings = {f"index.blocks.{k}": v for k, v in self.index_blocks.get(name, {}).items()}
        return 200, dict(PRODUCT), {backing: {"settings": settings}}


def _error(status: int, etype: str, reason: str) -> dict[str, Any]:
    return {
        "error": {"root_cause": [{"type": etype, "reason": reason}], "type": etype, "reason": reason},
        "status": status,
    }


def _item_error(
    index: str | None, doc_id: str | None, status: int, etype: str, reason: str
) -> dict[str, Any]:
    return {"_index": index, "_id": doc_id, "status": status, "error": {"type": etype, "reason": reason}}


def _event_id(source: dict[str, Any]) -> str | None:
    """The eventID of a stored document, in either mode."""
    event = source.get("event")
    if isinstance(event, dict) and event.get("id"):
        return str(event["id"])
    message = source.get("message")
    if isinstance(message, str):
        try:
            return json.loads(message).get("eventID")
        except ValueError:
            return None
    return None


class _Handler(BaseHTTPRequestHandler):
    state: StandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Keep test output quiet."""

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        split = urlsplit(self.path)
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, out_headers, payload = self.state.handle(
            method, split.path, parse_qs(split.query), headers, body
        )
        data = b"" if payload is None or method == "HEAD" else json.dumps(payload).encode()
        self.send_response(status)
        out_headers = {k.lower(): v for k, v in out_headers.items()}
        out_headers.pop("content-length", None)
        if data:
            out_headers.setdefault("content-type", "application/json")
        for key, value in out_headers.items():
            self.send_header(key, value)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_HEAD(self) -> None:
        self._serve("HEAD")

    def do_DELETE(self) -> None:
        self._serve("DELETE")
