"""A small stand-in of Elasticsearch on 127.0.0.1 that the real client talks to.

It speaks the parts of the REST API the connector uses: ``GET /``, ``POST /_bulk`` (NDJSON,
gzip request bodies, ``create`` stores by ``_id`` and answers 409 for an existing one),
``_security/user/_has_privileges``, data stream, template and ingest pipeline look-ups and
writes (a matching index template's ``final_pipeline`` runs on ``_bulk`` documents: its ``set``
processors, ``{{{_ingest.timestamp}}}`` included; a missing one fails the item), cluster
settings, and ``_search`` over the stored documents (``bool``/``term``/``match_phrase``/
``range`` queries, ``size``, ``_source_includes``, ``ignore_unavailable``; a document becomes
visible ``refresh_interval`` seconds after it was stored, like Elasticsearch's near-real-time
refresh). Every response carries ``X-Elastic-Product: Elasticsearch`` as the official client
requires. Faults are injected per request (documented responses replayed verbatim) or per document.

Fault hook for the reliability harness (``reliability/``): ``fault`` is called once per request
with ``"bulk"`` (a ``_bulk`` request) or ``"other"`` and answers ``None`` or a kind: ``outage``
(connection reset before anything is read), ``reset`` (half the body read, then reset), ``5xx``
(the documented 503), ``429`` (the documented es_rejected_execution_exception), ``partial`` (HTTP 200
with every fourth item refused with 429 es_rejected_execution_exception, the rest stored) or
``slow`` (stored, then answered after ``slow_seconds``, beyond the client's timeout). ``compact``
keeps only each document's eventID, for runs of millions of documents.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import gzip
import json
import socket
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

FIXTURES = Path(__file__).parent / "fixtures"
PRODUCT = {"X-Elastic-Product": "Elasticsearch"}


def fixture(name: str) -> dict[str, Any]:
    """A documented response (written from Elastic's documentation): status, headers and body."""
    return json.loads((FIXTURES / f"{name}.json").read_text())


class StandIn:
    """State of the fake cluster; thread-safe; reset per test by building a new one."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.docs: dict[str, dict[str, dict[str, Any]]] = {}
        self.stored_at: dict[tuple[str, str], float] = {}
        self.refresh_interval = 0.0
        self.requests: list[dict[str, Any]] = []
        self.queued: deque[dict[str, Any]] = deque()
        self.rejected_event_ids: set[str] = set()
        self.expected_auth: str | None = None
        self.max_content_length: int | None = None
        self.index_templates: dict[str, dict[str, Any]] = {}
        self.component_templates: dict[str, dict[str, Any]] = {}
        self.data_streams: set[str] = set()
        self.pipelines: set[str] = set()
        self.pipeline_bodies: dict[str, dict[str, Any]] = {}
        self.privileges: dict[str, bool] = {"create_doc": True, "auto_configure": True}
        self.cluster_privileges: set[str] | None = None
        """The credentials' cluster privileges; None: every one (templates and pipelines answer)."""
        self.security_enabled = True
        self.cluster_settings: dict[str, dict[str, Any]] = {"persistent": {}, "transient": {}}
        self.index_blocks: dict[str, dict[str, str]] = {}
        self.version = "8.15.1"
        self.server: ThreadingHTTPServer | None = None
        self.scheme = "http"
        self.fault: Callable[[str], str | None] | None = None
        self.slow_seconds = 0.0
        self.compact = False
        self.slow_stored = 0  # documents stored by requests answered too late

    # -- control -------------------------------------------------------------------------
    def queue(self, name_or_response: str | dict[str, Any], count: int = 1) -> None:
        """Answer the next ``count`` requests (of any kind) with a documented response."""
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
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}"

    def start(self, tls: ssl.SSLContext | None = None) -> None:
        """Serve on an ephemeral port of 127.0.0.1 in a daemon thread (HTTPS with a server ``tls`` context)."""
        standin = self

        class Handler(_Handler):
            state = standin

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.scheme = "https" if tls is not None else "http"
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
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes,
        *,
        partial: bool = False,
    ) -> tuple[int, dict[str, str], Any]:
        """One request to (status, headers, JSON body or None); ``partial`` refuses some bulk items."""
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
        refused = self._unauthorized(method, parts)
        if refused is not None:
            return 403, dict(PRODUCT), refused
        if method == "GET" and not parts:
            info = fixture("info")["body"]
            info["version"]["number"] = self.version
            return 200, dict(PRODUCT), info
        if len(parts) == 2 and parts[1] == "_search" and method in ("GET", "POST"):
            return self._search(parts[0], query, body)
        if parts and parts[-1] == "_bulk" and method in ("POST", "PUT"):
            default_index = parts[0] if len(parts) == 2 else None
            return 200, dict(PRODUCT), self._bulk(body, default_index, partial=partial)
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
            name = parts[2]
            if method == "PUT":
                self.pipelines.add(name)
                self.pipeline_bodies[name] = json.loads(body)
                return 200, dict(PRODUCT), {"acknowledged": True}
            if name in self.pipelines:
                return 200, dict(PRODUCT), {name: self.pipeline_bodies.get(name, {"processors": []})}
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

    def _bulk(self, body: bytes, default_index: str | None, *, partial: bool = False) -> dict[str, Any]:
        lines = [line for line in body.split(b"\n") if line.strip()]
        items = []
        errors = False
        for n, (action_line, source_line) in enumerate(zip(lines[::2], lines[1::2], strict=True)):
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
            pipeline = self._final_pipeline(index)
            if pipeline is not None and pipeline not in self.pipelines:
                reason = f"pipeline with id [{pipeline}] does not exist"
                items.append({op: _item_error(index, doc_id, 400, "illegal_argument_exception", reason)})
                errors = True
                continue
            if pipeline is not None:
                _run_pipeline(self.pipeline_bodies.get(pipeline, {}), source)
            if partial and n % 4 == 0:  # indexing pressure: this item is refused, the rest go on
                reason = "rejected execution of primary operation [coordinating_and_primary_bytes=0]"
                items.append({op: _item_error(index, doc_id, 429, "es_rejected_execution_exception", reason)})
                errors = True
                continue
            if self.compact:
                source = {"event": {"id": event_id}}
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
                    self.stored_at[(index, doc_id)] = time.time()
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

    def _final_pipeline(self, index: str | None) -> str | None:
        """The ``final_pipeline`` of the highest-priority index template matching ``index``."""
        matching = [
            t for t in self.index_templates.values()
            if index is not None and any(fnmatch.fnmatchcase(index, p) for p in t.get("index_patterns", []))
        ]  # fmt: skip
        if not matching:
            return None
        best = max(matching, key=lambda t: t.get("priority", 0))
        pipeline = best.get("template", {}).get("settings", {}).get("index", {}).get("final_pipeline")
        return pipeline if isinstance(pipeline, str) else None

    def _search(
        self, expression: str, query: dict[str, list[str]], body: bytes
    ) -> tuple[int, dict[str, str], Any]:
        """``_search`` over stored documents that a refresh has made visible."""
        flag = {
            k: v[-1] == "true" for k, v in query.items() if k in ("ignore_unavailable", "allow_no_indices")
        }
        request = json.loads(body) if body else {}
        with self.lock:
            names = [
                n for pattern in expression.split(",") for n in self.docs if fnmatch.fnmatchcase(n, pattern)
            ]
            if not names and not flag.get("ignore_unavailable"):
                return (
                    404,
                    dict(PRODUCT),
                    _error(404, "index_not_found_exception", f"no such index [{expression}]"),
                )
            visible = time.time() - self.refresh_interval
            candidates = [
                (name, doc_id, doc)
                for name in names
                for doc_id, doc in self.docs[name].items()
                if self.stored_at.get((name, doc_id), 0.0) <= visible
            ]
        try:
            hits = [c for c in candidates if _matches(request.get("query", {"match_all": {}}), c[2])]
        except _UnknownQueryError as exc:
            return 400, dict(PRODUCT), _error(400, "parsing_exception", f"unknown query [{exc}]")
        includes = [f for v in query.get("_source_includes", []) for f in v.split(",") if f]
        size = int(request.get("size", query.get("size", ["10"])[-1]))
        return (
            200,
            dict(PRODUCT),
            {
                "took": 1,
                "timed_out": False,
                "_shards": {"total": 1, "successful": 1, "skipped": 0, "failed": 0},
                "hits": {
                    "total": {"value": len(hits), "relation": "eq"},
                    "max_score": 1.0 if hits else None,
                    "hits": [
                        {
                            "_index": _backing(name) if name.startswith("logs-") else name,
                            "_id": doc_id,
                            "_score": 1.0,
                            "_source": _select(doc, includes) if includes else doc,
                        }
                        for name, doc_id, doc in hits[:size]
                    ],
                },
            },
        )

    def _unauthorized(self, method: str, parts: list[str]) -> dict[str, Any] | None:
        """Elasticsearch's 403 for a template or pipeline API the cluster privileges do not grant."""
        if self.cluster_privileges is None or not parts:
            return None
        write = method in ("PUT", "POST", "DELETE")
        if parts[0] == "_ingest" and len(parts) == 3:
            action = f"cluster:admin/ingest/pipeline/{'put' if write else 'get'}"
            granting = ["manage_ingest_pipelines", "manage_pipeline", "manage", "all"]
            granting = granting if write else ["read_pipeline", *granting]
        elif parts[0] in ("_index_template", "_component_template") and len(parts) == 2:
            kind = (
                "indices:admin/index_template"
                if parts[0] == "_index_template"
                else "cluster:admin/component_template"
            )
            action = f"{kind}/{'put' if write else 'get'}"
            granting = (
                ["manage_index_templates", "manage", "all"]
                if write
                else ["manage_index_templates", "monitor", "manage", "all"]
            )
        else:
            return None
        if self.cluster_privileges.intersection(granting):
            return None
        return _error(
            403,
            "security_exception",
            f"action [{action}] is unauthorized for API key id [Hv3vuZ4BNW1oUqK7tDy_] of user [trailrelay], "
            f"this action is granted by the cluster privileges [{','.join(granting)}]",
        )

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
        backing = _backing(name)
        settings = {f"index.blocks.{k}": v for k, v in self.index_blocks.get(name, {}).items()}
        return 200, dict(PRODUCT), {backing: {"settings": settings}}


def _run_pipeline(pipeline: dict[str, Any], source: dict[str, Any]) -> None:
    """Apply a pipeline's ``set`` processors (the only kind the stand-in knows) to ``source``."""
    ingest = {"_ingest.timestamp": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")}
    for processor in pipeline.get("processors", []):
        ((kind, conf),) = processor.items()
        if kind != "set":
            raise ValueError(f"the stand-in cannot run a {kind} processor")
        value = conf["value"]
        for name, real in ingest.items():
            value = value.replace("{{{" + name + "}}}", real)
        *parents, leaf = conf["field"].split(".")
        node = source
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value


def _backing(name: str) -> str:
    return f".ds-{name}-2026.03.02-000001"


class _UnknownQueryError(Exception):
    """A query type the stand-in does not implement (Elasticsearch answers parsing_exception)."""


def _values(doc: Any, path: str) -> list[Any]:
    """Values at a dotted path (through lists), as Elasticsearch indexes them."""
    current = [doc]
    for key in path.split("."):
        nxt: list[Any] = []
        for item in current:
            if isinstance(item, dict) and key in item:
                value = item[key]
                nxt.extend(value if isinstance(value, list) else [value])
        current = nxt
    return current


def _date(value: Any) -> dt.datetime | None:
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _matches(query: dict[str, Any], doc: dict[str, Any]) -> bool:
    ((kind, spec),) = query.items()
    if kind == "match_all":
        return True
    if kind == "bool":
        must = [_matches(q, doc) for q in [*spec.get("must", []), *spec.get("filter", [])]]
        should = [_matches(q, doc) for q in spec.get("should", [])]
        must_not = [_matches(q, doc) for q in spec.get("must_not", [])]
        need = spec.get("minimum_should_match", 0 if must else 1 if should else 0)
        return all(must) and not any(must_not) and sum(should) >= int(need)
    ((field, arg),) = spec.items()
    values = _values(doc, field)
    if kind == "term":
        want = arg["value"] if isinstance(arg, dict) else arg
        return any(v == want for v in values)
    if kind == "match_phrase":
        phrase = str(arg["query"] if isinstance(arg, dict) else arg).lower()
        return any(phrase in str(v).lower() for v in values)
    if kind == "range":
        for v in values:
            when = _date(v)
            ok = when is not None
            for op, bound in arg.items():
                limit = _date(bound)
                if when is None or limit is None:
                    ok = False
                elif op == "gte":
                    ok = ok and when >= limit
                elif op == "gt":
                    ok = ok and when > limit
                elif op == "lte":
                    ok = ok and when <= limit
                elif op == "lt":
                    ok = ok and when < limit
            if ok:
                return True
        return False
    raise _UnknownQueryError(kind)


def _select(doc: dict[str, Any], includes: list[str]) -> dict[str, Any]:
    """``_source`` filtered to dotted paths (``_source_includes``)."""
    out: dict[str, Any] = {}
    for path in includes:
        keys = path.split(".")
        src: Any = doc
        for key in keys:
            src = src.get(key) if isinstance(src, dict) else None
        if src is None:
            continue
        target = out
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = src
    return out


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
    disable_nagle_algorithm = True  # real servers set TCP_NODELAY; without it each answer waits ~40 ms

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Keep test output quiet."""

    def _reset(self, read: int) -> None:
        """Read ``read`` bytes of the body, then reset the connection (no reply)."""
        if read:
            self.rfile.read(read)
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _serve(self, method: str) -> None:
        state = self.state
        length = int(self.headers.get("content-length") or 0)
        split = urlsplit(self.path)
        bulk = split.path.rstrip("/").endswith("/_bulk") and method in ("POST", "PUT")
        fault = state.fault("bulk" if bulk else "other") if state.fault is not None else None
        if fault == "outage" or (fault == "reset" and bulk):
            self._reset(length // 2 if fault == "reset" else 0)
            return
        body = self.rfile.read(length) if length else b""
        if fault in ("5xx", "429") and bulk:
            documented = fixture("request-503" if fault == "5xx" else "request-429-rejected")
            self._send(documented["status"], dict(documented["headers"]), documented["body"], method)
            return
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, out_headers, payload = state.handle(
            method, split.path, parse_qs(split.query), headers, body, partial=fault == "partial" and bulk
        )
        if fault == "slow" and bulk:
            stored = sum(
                1
                for item in (payload or {}).get("items", [])
                for result in item.values()
                if result.get("status") == 201
            )
            with state.lock:
                state.slow_stored += stored
            time.sleep(state.slow_seconds)
            try:
                self._send(status, out_headers, payload, method)
            except OSError:  # the client gave up waiting, as intended
                self.close_connection = True
            return
        self._send(status, out_headers, payload, method)

    def _send(self, status: int, out_headers: dict[str, str], payload: Any, method: str) -> None:
        if payload is None or method == "HEAD":
            data = b""
        elif isinstance(payload, str):  # a page (a proxy's, a portal's) is sent as it is
            data = payload.encode()
        else:
            data = json.dumps(payload).encode()
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
