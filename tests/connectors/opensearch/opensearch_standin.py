"""A small stand-in of OpenSearch on 127.0.0.1 that the real opensearch-py client talks to.

It speaks what the connector uses: ``GET /`` (``"distribution": "opensearch"``, no
``X-Elastic-Product``), ``POST /_bulk`` (NDJSON, gzip bodies, ``create`` stores by ``_id`` and
answers 409 for an existing one, ``create`` without ``_id`` stores under a generated id),
index templates, ingest pipelines (a matching template's ``final_pipeline`` runs its ``set``
processors, ``{{{_ingest.timestamp}}}`` included, on ``_bulk`` documents; a missing one fails
the item), data streams, ISM policies (with ``if_seq_no``/``if_primary_term``), the
security plugin's ``authinfo``, cluster and index settings, Security Analytics mappings,
rules search and detectors, and ``_search`` over stored documents (``bool``/``term``/``range``).

Authentication is checked like the real services: basic credentials like the security plugin
(401 in plain text), or **SigV4 like Amazon OpenSearch**: the signature is recomputed from the
received request (method, path, query, signed headers, the SHA-256 of the gzip body as sent)
with botocore's signer and the secret of the access key, and a mismatch is a 403 with AWS's
message. A missing permission: ``refuse`` answers the requests whose path matches a pattern
with a documented 403 (``no_permission`` builds the security plugin's, the fixtures hold AWS's).
Faults: documented responses queued verbatim, ``item_429_rate`` (a deterministic
share of items refused with 429), ``max_content_length`` (413), ``no_custom_ids`` (Serverless
time series: items with an ``_id`` are refused).

Fault hook for the reliability harness (``reliability/``), as the Elasticsearch stand-in has it:
``fault`` is called once per request with ``"bulk"`` or ``"other"`` and answers ``None`` or a
kind: ``outage`` (connection reset before anything is read), ``reset`` (half the body read,
then reset), ``5xx`` / ``429`` (the documented 503 / back-pressure 429), ``partial`` (HTTP 200
with every fourth item refused with 429 ``rejected_execution_exception``, the rest stored) or
``slow`` (stored, then answered after ``slow_seconds``, beyond the client's timeout).
``compact`` keeps only each document's eventID, for runs of millions of documents.
"""

from __future__ import annotations

import base64
import datetime as dt
import fnmatch
import gzip
import hashlib
import hmac
import itertools
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

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

FIXTURES = Path(__file__).parent / "fixtures"
JSON = {"content-type": "application/json; charset=UTF-8"}


def fixture(name: str) -> dict[str, Any]:
    """A documented response: status, headers and body."""
    return json.loads((FIXTURES / f"{name}.json").read_text())


def no_permission(action: str, user: str = "trailrelay") -> dict[str, Any]:
    """The security plugin's documented 403 for a user whose roles lack ``action``."""
    response = fixture("request-403")
    reason = f"no permissions for [{action}] and User [name={user}, backend_roles=[], requestedTenant=null]"
    response["body"] = _error(403, "security_exception", reason)
    return response


def _error(status: int, etype: str, reason: str) -> dict[str, Any]:
    return {
        "error": {"root_cause": [{"type": etype, "reason": reason}], "type": etype, "reason": reason},
        "status": status,
    }


class SigV4Check:
    """Verifies a request's SigV4 signature against known test credentials (what AWS does)."""

    def __init__(self, keys: dict[str, str], region: str, service: str) -> None:
        self.keys = keys
        self.region = region
        self.service = service

    def verify(self, method: str, target: str, headers: dict[str, str], body: bytes) -> str | None:
        """None when the signature is valid, else the documented response name to answer with."""
        auth = headers.get("authorization", "")
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            return "request-403-signature"
        fields = dict(part.strip().split("=", 1) for part in auth[len("AWS4-HMAC-SHA256 ") :].split(","))
        akid, date, region, service, _ = fields["Credential"].split("/")
        secret = self.keys.get(akid)
        if secret is None:
            return "request-403-unknown-key"
        if (region, service) != (self.region, self.service):
            return "request-403-signature"
        if headers.get("x-amz-content-sha256") != hashlib.sha256(body).hexdigest():
            return "request-403-signature"  # the body changed after signing
        signed = fields["SignedHeaders"].split(";")
        request = AWSRequest(
            method=method,
            url=f"http://{headers['host']}{target}",
            data=body,
            headers={name: headers.get(name, "") for name in signed},
        )
        request.context["timestamp"] = headers.get("x-amz-date", "")
        if request.context["timestamp"][:8] != date:
            return "request-403-signature"
        signer = SigV4Auth(Credentials(akid, secret, headers.get("x-amz-security-token")), service, region)
        expected = signer.signature(
            signer.string_to_sign(request, signer.canonical_request(request)), request
        )
        return None if hmac.compare_digest(expected, fields["Signature"]) else "request-403-signature"


class StandIn:
    """State of the fake cluster; thread-safe; one per test."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.docs: dict[str, dict[str, dict[str, Any]]] = {}
        self.requests: list[dict[str, Any]] = []
        self.queued: deque[dict[str, Any]] = deque()
        self.refusals: list[tuple[str, dict[str, Any]]] = []
        self.basic: tuple[str, str] | None = None
        self.sigv4: SigV4Check | None = None
        self.rejected_event_ids: set[str] = set()
        self.item_429_rate = 0.0
        self.items_refused_429 = 0
        self.max_content_length: int | None = None
        self.no_custom_ids = False
        self.auto_create_index = True
        self.index_templates: dict[str, dict[str, Any]] = {}
        self.pipelines: dict[str, dict[str, Any]] = {}
        self.data_streams: set[str] = set()
        self.policies: dict[str, dict[str, Any]] = {}
        self.sa_mappings: list[dict[str, Any]] = []
        self.detectors: dict[str, dict[str, Any]] = {}
        self.prepackaged_rules = {"cloudtrail": ["rule-ct-1", "rule-ct-2"], "windows": ["rule-win-1"]}
        self.info = fixture("info")
        self._ids = itertools.count(1)
        self._item_counter = itertools.count()
        self.server: ThreadingHTTPServer | None = None
        self.scheme = "http"
        self.fault: Callable[[str], str | None] | None = None
        self.slow_seconds = 0.0
        self.compact = False
        self.slow_stored = 0  # documents stored by requests answered too late

    # -- control -------------------------------------------------------------------------
    def queue(self, name_or_response: str | dict[str, Any], count: int = 1) -> None:
        """Answer the next ``count`` requests with a documented response."""
        response = fixture(name_or_response) if isinstance(name_or_response, str) else name_or_response
        self.queued.extend([response] * count)

    def refuse(self, path_pattern: str, name_or_response: str | dict[str, Any]) -> None:
        """Answer authenticated requests whose path matches ``path_pattern`` (fnmatch) with a response."""
        response = fixture(name_or_response) if isinstance(name_or_response, str) else name_or_response
        self.refusals.append((path_pattern, response))

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
        self, method: str, target: str, headers: dict[str, str], sent: bytes, *, partial: bool = False
    ) -> tuple[int, dict[str, str], Any]:
        """One request (``sent`` as on the wire) to (status, headers, body)."""
        split = urlsplit(target)
        query = parse_qs(split.query)
        body = gzip.decompress(sent) if headers.get("content-encoding") == "gzip" and sent else sent
        with self.lock:
            if not self.compact:  # long runs keep no request bodies
                self.requests.append(
                    {
                        "method": method,
                        "target": target,
                        "path": split.path,
                        "query": query,
                        "headers": headers,
                        "body": body,
                        "sent": sent,
                    }
                )
            if self.queued:
                r = self.queued.popleft()
                return r["status"], dict(r["headers"]), r["body"]
        refusal = self._authenticate(method, target, headers, sent)
        if refusal is not None:
            r = fixture(refusal)
            return r["status"], dict(r["headers"]), r["body"]
        for pattern, r in self.refusals:
            if fnmatch.fnmatchcase(split.path, pattern):
                return r["status"], dict(r["headers"]), r["body"]
        if self.max_content_length is not None and len(body) > self.max_content_length:
            r = fixture("request-413")
            return r["status"], dict(r["headers"]), r["body"]
        parts = [unquote(p) for p in split.path.strip("/").split("/") if p]
        request = json.loads(body) if body and not split.path.endswith("/_bulk") else {}
        return self._route(method, parts, query, request, body, partial=partial)

    def _authenticate(self, method: str, target: str, headers: dict[str, str], sent: bytes) -> str | None:
        if self.sigv4 is not None:
            return self.sigv4.verify(method, target, headers, sent)
        if self.basic is not None:
            token = base64.b64encode(f"{self.basic[0]}:{self.basic[1]}".encode()).decode()
            if headers.get("authorization") != f"Basic {token}":
                return "request-401"
        return None

    def _route(
        self,
        method: str,
        parts: list[str],
        query: dict[str, list[str]],
        request: Any,
        body: bytes,
        *,
        partial: bool = False,
    ) -> tuple[int, dict[str, str], Any]:
        if not parts and method in ("GET", "HEAD"):
            return self.info["status"], dict(self.info["headers"]), self.info["body"]
        if parts and parts[-1] == "_bulk" and method in ("POST", "PUT"):
            return 200, dict(JSON), self._bulk(body, parts[0] if len(parts) == 2 else None, partial=partial)
        if len(parts) == 2 and parts[1] == "_search":
            return self._search(parts[0], query, request)
        if parts[:3] == ["_plugins", "_security", "authinfo"]:
            return 200, dict(JSON), {"user_name": "trailrelay", "roles": ["logstash"], "backend_roles": []}
        if parts == ["_cluster", "settings"]:
            persistent = {} if self.auto_create_index else {"action.auto_create_index": "false"}
            return 200, dict(JSON), {"persistent": persistent, "transient": {}}
        if parts[:1] == ["_index_template"] and len(parts) == 2:
            return self._template(method, parts[1], request)
        if parts[:2] == ["_ingest", "pipeline"] and len(parts) == 3:
            return self._pipeline(method, parts[2], request)
        if parts[:1] == ["_data_stream"] and len(parts) == 2:
            return self._data_stream(method, parts[1])
        if parts[:3] == ["_plugins", "_ism", "policies"] and len(parts) == 4:
            return self._policy(method, parts[3], query, request)
        if parts[:2] == ["_plugins", "_security_analytics"]:
            return self._security_analytics(method, parts[2:], query, request)
        if len(parts) >= 2 and parts[1] == "_settings":
            return 200, dict(JSON), {f".ds-{parts[0]}-000001": {"settings": {}}}
        if len(parts) == 1 and method == "HEAD":
            return (200 if parts[0] in self.docs else 404), dict(JSON), None
        if len(parts) == 1 and method == "PUT":
            self.docs.setdefault(parts[0], {})
            return 200, dict(JSON), {"acknowledged": True, "index": parts[0]}
        return (
            404,
            dict(JSON),
            _error(404, "resource_not_found_exception", f"no handler for {method} /{'/'.join(parts)}"),
        )

    def _bulk(self, body: bytes, default_index: str | None, *, partial: bool = False) -> dict[str, Any]:
        lines = [line for line in body.split(b"\n") if line.strip()]
        items: list[dict[str, Any]] = []
        for n, (action_line, source_line) in enumerate(zip(lines[::2], lines[1::2], strict=True)):
            ((op, meta),) = json.loads(action_line).items()
            index = meta.get("_index", default_index)
            doc_id = meta.get("_id")
            if partial and n % 4 == 0:  # indexing pressure: this item is refused, the rest go on
                reason = "rejected execution of primary operation [shard_detail=[logs][0]]"
                items.append(
                    {op: {"_index": index, "_id": doc_id, "status": 429,
                          "error": {"type": "rejected_execution_exception", "reason": reason}}}
                )  # fmt: skip
                continue
            source = json.loads(source_line)
            pipeline = self._final_pipeline(index)
            if pipeline is not None and pipeline not in self.pipelines:
                reason = f"pipeline with id [{pipeline}] does not exist"
                items.append(
                    {op: {"_index": index, "_id": doc_id, "status": 400,
                          "error": {"type": "illegal_argument_exception", "reason": reason}}}
                )  # fmt: skip
                continue
            if pipeline is not None:
                _run_pipeline(self.pipelines[pipeline], source)
            if self.compact:
                source = {"eventID": source.get("eventID")}
            items.append({op: self._store(index, doc_id, source)})
        return {
            "took": 3,
            "errors": any(i[k].get("status", 500) >= 300 for i in items for k in i),
            "items": items,
        }

    def _store(self, index: str, doc_id: str | None, source: dict[str, Any]) -> dict[str, Any]:
        def refused(status: int, etype: str, reason: str) -> dict[str, Any]:
            return {
                "_index": index,
                "_id": doc_id,
                "status": status,
                "error": {"type": etype, "reason": reason},
            }

        if self.no_custom_ids and doc_id is not None:
            return refused(
                400,
                "illegal_argument_exception",
                fixture("bulk-item-no-custom-id")["body"]["items"][0]["create"]["error"]["reason"],
            )
        n = next(self._item_counter)
        if self.item_429_rate and int((n + 1) * self.item_429_rate) != int(n * self.item_429_rate):
            self.items_refused_429 += 1
            return refused(
                429,
                "rejected_execution_exception",
                "rejected execution of primary operation [shard_detail=[logs][0]]",
            )
        if source.get("eventID") in self.rejected_event_ids:
            return refused(
                400,
                "mapper_parsing_exception",
                f"failed to parse field [readOnly] of type [boolean] in document with id '{doc_id}'. "
                "Preview of field's value: 'maybe'",
            )
        with self.lock:
            if index not in self.docs and not self.auto_create_index and index not in self.data_streams:
                return refused(404, "index_not_found_exception", f"no such index [{index}]")
            stored = self.docs.setdefault(index, {})
            if doc_id is not None and doc_id in stored:
                return refused(
                    409,
                    "version_conflict_engine_exception",
                    f"[{doc_id}]: version conflict, document already exists (current version [1])",
                )
            doc_id = doc_id if doc_id is not None else f"auto{next(self._ids)}"
            stored[doc_id] = source
            return {
                "_index": index,
                "_id": doc_id,
                "_version": 1,
                "result": "created",
                "status": 201,
                "_seq_no": len(stored),
            }

    def _search(
        self, expression: str, query: dict[str, list[str]], request: dict[str, Any]
    ) -> tuple[int, dict[str, str], Any]:
        with self.lock:
            names = [
                n for pattern in expression.split(",") for n in self.docs if fnmatch.fnmatchcase(n, pattern)
            ]
            if not names and query.get("ignore_unavailable") != ["true"]:
                return (
                    404,
                    dict(JSON),
                    _error(404, "index_not_found_exception", f"no such index [{expression}]"),
                )
            candidates = [(n, i, d) for n in names for i, d in self.docs[n].items()]
        hits = [c for c in candidates if _matches(request.get("query", {"match_all": {}}), c[2])]
        size = int(request.get("size", 10))
        return (
            200,
            dict(JSON),
            {
                "took": 1,
                "timed_out": False,
                "hits": {
                    "total": {"value": len(hits), "relation": "eq"},
                    "hits": [{"_index": n, "_id": i, "_score": 1.0, "_source": d} for n, i, d in hits[:size]],
                },
            },
        )

    def _pipeline(self, method: str, name: str, request: Any) -> tuple[int, dict[str, str], Any]:
        if method == "PUT":
            self.pipelines[name] = request
            return 200, dict(JSON), {"acknowledged": True}
        if name in self.pipelines:
            return 200, dict(JSON), {name: self.pipelines[name]}
        return 404, dict(JSON), {}

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

    def _template(self, method: str, name: str, request: Any) -> tuple[int, dict[str, str], Any]:
        if method in ("PUT", "POST"):
            self.index_templates[name] = request
            return 200, dict(JSON), {"acknowledged": True}
        if name in self.index_templates:
            stored = _as_stored_template(self.index_templates[name])
            return 200, dict(JSON), {"index_templates": [{"name": name, "index_template": stored}]}
        return (
            404,
            dict(JSON),
            _error(404, "resource_not_found_exception", f"index template matching [{name}] not found"),
        )

    def _data_stream(self, method: str, name: str) -> tuple[int, dict[str, str], Any]:
        if method == "PUT":
            self.data_streams.add(name)
            self.docs.setdefault(name, {})
            return 200, dict(JSON), {"acknowledged": True}
        if name in self.data_streams or name in self.docs:
            return (
                200,
                dict(JSON),
                {
                    "data_streams": [
                        {"name": name, "timestamp_field": {"name": "@timestamp"}, "status": "GREEN"}
                    ]
                },
            )
        return 404, dict(JSON), _error(404, "index_not_found_exception", f"no such index [{name}]")

    def _policy(
        self, method: str, pid: str, query: dict[str, list[str]], request: Any
    ) -> tuple[int, dict[str, str], Any]:
        current = self.policies.get(pid)
        if method == "GET":
            if current is None:
                return 404, dict(JSON), _error(404, "status_exception", "Policy not found")
            return 200, dict(JSON), _as_stored_policy(pid, current)
        if current is not None and (
            query.get("if_seq_no") != [str(current["_seq_no"])] or query.get("if_primary_term") != ["1"]
        ):
            return (
                409,
                dict(JSON),
                _error(409, "version_conflict_engine_exception", f"[{pid}]: version conflict"),
            )
        seq = current["_seq_no"] + 1 if current else 0
        self.policies[pid] = {"_id": pid, "_version": seq + 1, "_seq_no": seq, "_primary_term": 1, **request}
        return (
            (200 if current else 201),
            dict(JSON),
            {"_id": pid, "_seq_no": seq, "_primary_term": 1, **request},
        )

    def _security_analytics(
        self, method: str, rest: list[str], query: dict[str, list[str]], request: Any
    ) -> tuple[int, dict[str, str], Any]:
        if rest == ["mappings"] and method == "POST":
            if request["index_name"] not in self.docs:
                return (
                    404,
                    dict(JSON),
                    _error(404, "index_not_found_exception", f"no such index [{request['index_name']}]"),
                )
            self.sa_mappings.append(request)
            return 200, dict(JSON), {"acknowledged": True}
        if rest == ["rules", "_search"] and query.get("pre_packaged") == ["true"]:
            must = request["query"]["nested"]["query"]["bool"]["must"][0]["match"]["rule.category"]
            ids = self.prepackaged_rules.get(must, [])
            return (
                200,
                dict(JSON),
                {
                    "hits": {
                        "total": {"value": len(ids)},
                        "hits": [{"_id": i, "_source": {"category": must}} for i in ids],
                    }
                },
            )
        if rest == ["detectors", "_search"]:
            name = request["query"]["nested"]["query"]["match"]["detector.name"]
            hits = [{"_id": k, "_source": v} for k, v in self.detectors.items() if v["name"] == name]
            return 200, dict(JSON), {"hits": {"total": {"value": len(hits)}, "hits": hits}}
        if rest == ["detectors"] and method == "POST":
            index = request["inputs"][0]["detector_input"]["indices"][0]
            if not any(m["index_name"] == index for m in self.sa_mappings):
                return (
                    400,
                    dict(JSON),
                    _error(400, "security_analytics_exception", f"mappings for index [{index}] are missing"),
                )
            did = f"det{len(self.detectors) + 1}"
            self.detectors[did] = request
            return 201, dict(JSON), {"_id": did, "_version": 1, "detector": request}
        return 404, dict(JSON), _error(404, "resource_not_found_exception", "no such Security Analytics API")


def _as_stored_template(template: dict[str, Any]) -> dict[str, Any]:
    """An index template as GET _index_template answers: settings as strings, the data stream's field."""

    def strings(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strings(v) for k, v in value.items()}
        return str(value).lower() if isinstance(value, bool) else str(value)

    answer = json.loads(json.dumps(template))
    inner = answer.get("template", {})
    if "settings" in inner:
        inner["settings"] = strings(inner["settings"])
    if "data_stream" in answer:
        answer["data_stream"] = {"timestamp_field": {"name": "@timestamp"}}
    answer.setdefault("composed_of", [])
    return dict(answer)


def _as_stored_policy(pid: str, stored: dict[str, Any]) -> dict[str, Any]:
    """An ISM policy as GET _plugins/_ism/policies answers: with the ids, times and retry ISM adds."""
    answer = json.loads(json.dumps(stored))
    policy = answer.get("policy")
    if not isinstance(policy, dict):
        return dict(answer)
    policy.update(policy_id=pid, last_updated_time=1767225600000, schema_version=21, error_notification=None)
    for state in policy.get("states", []):
        state["actions"] = [
            {"retry": {"count": 3, "backoff": "exponential", "delay": "1m"}, **action}
            for action in state.get("actions", [])
        ]
    for template in policy.get("ism_template") or []:
        template["last_updated_time"] = 1767225600000
    return dict(answer)


class _UnknownQueryError(Exception):
    """A query type the stand-in does not implement."""


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


def _values(doc: Any, path: str) -> list[Any]:
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
        return all(_matches(q, doc) for q in [*spec.get("must", []), *spec.get("filter", [])])
    ((name, arg),) = spec.items()
    values = _values(doc, name)
    if kind == "term":
        return any(v == (arg["value"] if isinstance(arg, dict) else arg) for v in values)
    if kind == "range":
        limit = _date(arg.get("gte"))
        return any((d := _date(v)) is not None and limit is not None and d >= limit for v in values)
    raise _UnknownQueryError(kind)


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
        bulk = urlsplit(self.path).path.rstrip("/").endswith("/_bulk") and method in ("POST", "PUT")
        fault = state.fault("bulk" if bulk else "other") if state.fault is not None else None
        if fault == "outage" or (fault == "reset" and bulk):
            self._reset(length // 2 if fault == "reset" else 0)
            return
        sent = self.rfile.read(length) if length else b""
        if fault in ("5xx", "429") and bulk:
            recorded = fixture("request-503" if fault == "5xx" else "request-429")
            self._send(recorded["status"], dict(recorded["headers"]), recorded["body"], method)
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, out_headers, payload = state.handle(
            method, self.path, headers, sent, partial=fault == "partial" and bulk
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
        elif isinstance(payload, str):
            data = payload.encode()
        else:
            data = json.dumps(payload).encode()
        self.send_response(status)
        for key, value in out_headers.items():
            if key.lower() != "content-length":
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
