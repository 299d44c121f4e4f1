"""Fast SIEM stand-ins for the whole-process benchmark: accept, acknowledge and count.

Run as its own process so its CPU is not charged to the forwarder::

    python -m whole.standins hec [--ack-delay 5]   # Splunk HEC (+ indexer acknowledgement)
    python -m whole.standins elastic               # Elasticsearch _bulk
    python -m whole.standins opensearch            # OpenSearch _bulk
    python -m whole.standins sentinel --cert C --key K   # Entra token + Logs Ingestion API (TLS)

It prints ``PORT <n>`` once listening. ``GET /_count`` answers ``{"events": N, "requests": M}``.
Bodies are gunzipped only to count events (newlines), never parsed: the stand-in must not be
the bottleneck, and what is measured is the forwarder.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import threading
import time
import urllib.parse
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import msgspec

_ROWS = msgspec.json.Decoder(list[msgspec.Raw])

_lock = threading.Lock()
_counts = {"events": 0, "requests": 0, "ack_polls": 0}
_acks: dict[str, dict[int, float]] = {}
_next_ack: dict[str, int] = {}
ACK_DELAY = 0.0


def _count(n: int) -> None:
    with _lock:
        _counts["events"] += n
        _counts["requests"] += 1


class _Base(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # real servers set TCP_NODELAY; without it each answer waits ~40 ms

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _body(self) -> bytes:
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding") == "gzip":
            data = zlib.decompress(data, 31)
        return data

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.startswith("/_count"):
            with _lock:
                self._reply(200, json.dumps(_counts).encode())
            return
        self._get()

    def _get(self) -> None:
        self._reply(404, b"{}")


class Hec(_Base):
    """``/services/collector/event`` and ``/ack``, with acks true ``ACK_DELAY`` s after the post."""

    def _get(self) -> None:
        if self.path.startswith("/services/collector/health"):
            self._reply(200, b'{"text":"HEC is healthy","code":17}')
        else:
            self._reply(404, b'{"text":"The requested URL was not found on this server.","code":404}')

    def do_POST(self) -> None:
        body = self._body()
        channel = self.headers.get("X-Splunk-Request-Channel")
        if self.path.startswith("/services/collector/ack"):
            asked = json.loads(body or b"{}").get("acks", [])
            now = time.monotonic()
            with _lock:
                _counts["ack_polls"] += 1
                pending = _acks.get(channel or "", {})
                done = {str(a): (a in pending and pending[a] <= now) for a in asked}
                for a, ok in done.items():
                    if ok:
                        pending.pop(int(a), None)
            self._reply(200, json.dumps({"acks": done}).encode())
            return
        if not self.path.startswith("/services/collector"):
            self._reply(404, b'{"text":"The requested URL was not found on this server.","code":404}')
            return
        if not body:
            self._reply(400, b'{"text":"No data","code":5}')
            return
        _count(body.count(b"\n") + 1)
        if channel:
            with _lock:
                ack_id = _next_ack.get(channel, 0)
                _next_ack[channel] = ack_id + 1
                _acks.setdefault(channel, {})[ack_id] = time.monotonic() + ACK_DELAY
            self._reply(200, b'{"text":"Success","code":0,"ackId":%d}' % ack_id)
        else:
            self._reply(200, b'{"text":"Success","code":0}')


_ES = {"X-Elastic-Product": "Elasticsearch"}
_ITEM = {
    "create": {
        "_index": "logs-aws.cloudtrail-default",
        "_id": "x",
        "_version": 1,
        "result": "created",
        "status": 201,
    }
}


def _filtered(value: Any, paths: list[list[str]]) -> Any:
    """``value`` reduced to ``paths`` (dotted, ``*`` for any key), as ``filter_path`` reduces a
    response; None when nothing is left."""
    if any(not p for p in paths):
        return value
    if isinstance(value, list):  # arrays are transparent to the paths, as in Elasticsearch
        kept = [k for k in (_filtered(v, paths) for v in value) if k is not None]
        return kept or None
    if not isinstance(value, dict):
        return None
    out = {}
    for key, inner in value.items():
        rest = [p[1:] for p in paths if p[0] in ("*", key)]
        if rest and (kept := _filtered(inner, rest)) is not None:
            out[key] = kept
    return out or None


class _Bulk(_Base):
    """``_bulk``: every item created. Elasticsearch and OpenSearch both honour ``filter_path``
    (a client that asks for ``items.*.status`` gets ~25 bytes an item, not ~110), so this does too."""

    _parts: ClassVar[dict[str, tuple[bytes, bytes | None]]] = {}
    headers_out: dict[str, str] | None = None

    def _bulk(self, body: bytes) -> None:
        n = body.count(b"\n", 0, len(body)) // 2
        _count(n)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        spec = query.get("filter_path", [""])[0]
        parts = self._parts.get(spec)
        if parts is None:  # the answer's shape for one item, worked out once per filter_path
            paths = [p.split(".") for p in spec.split(",") if p]
            one = {"took": 1, "errors": False, "items": [_ITEM]}
            shaped = (_filtered(one, paths) if paths else one) or {}
            items = shaped.pop("items", None)
            head = json.dumps(shaped, separators=(",", ":")).encode()[:-1]
            if items is None:
                parts = (head + b"}", None)
            else:
                parts = (
                    head + (b',"items":[' if shaped else b'"items":['),
                    json.dumps(items[0], separators=(",", ":")).encode(),
                )
            self._parts[spec] = parts
        head, item = parts
        self._reply(200, head if item is None else head + b",".join([item] * n) + b"]}", self.headers_out)


class Elastic(_Bulk):
    """``GET /`` (product check) and ``POST``/``PUT /_bulk``: every item created."""

    headers_out = _ES

    def _get(self) -> None:
        info = {
            "name": "bench",
            "cluster_name": "bench",
            "version": {"number": "8.15.0", "build_flavor": "default"},
            "tagline": "You Know, for Search",
        }
        self._reply(200, json.dumps(info).encode(), _ES)

    def do_POST(self) -> None:
        body = self._body()
        if "_bulk" not in self.path:
            self._reply(200, b"{}", _ES)
            return
        self._bulk(body)

    do_PUT = do_POST  # noqa: N815 - http.server names; elasticsearch-py 8 sends bulk() as PUT


class OpenSearch(_Bulk):
    """OpenSearch's ``GET /`` and ``POST /_bulk`` (no X-Elastic-Product): every item created."""

    def _get(self) -> None:
        info = {
            "name": "bench",
            "cluster_name": "bench",
            "version": {"distribution": "opensearch", "number": "2.15.0"},
            "tagline": "The OpenSearch Project: https://opensearch.org/",
        }
        self._reply(200, json.dumps(info).encode())

    def do_POST(self) -> None:
        body = self._body()
        if "_bulk" not in self.path:
            self._reply(200, b"{}")
            return
        self._bulk(body)

    do_PUT = do_POST  # noqa: N815 - http.server names


class Sentinel(_Base):
    """Entra ID token issuer (discovery + client credentials) and the Logs Ingestion API."""

    def _get(self) -> None:
        host = self.headers.get("Host")
        if self.path.endswith("/v2.0/.well-known/openid-configuration"):
            tenant = self.path.strip("/").split("/")[0]
            base = f"https://{host}/{tenant}"
            doc = {
                "issuer": f"{base}/v2.0",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint_auth_methods_supported": ["client_secret_post"],
                "response_types_supported": ["code", "id_token", "token"],
            }
            self._reply(200, json.dumps(doc).encode())
        else:
            self._reply(404, b"{}")

    def do_POST(self) -> None:
        body = self._body()
        if "/oauth2/v2.0/token" in self.path:
            self._reply(
                200,
                b'{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"bench-token"}',
            )
            return
        if "/streams/" not in self.path:
            self._reply(404, b"{}")
            return
        _count(len(_ROWS.decode(body)))
        self._reply(204, b"")


def main(argv: list[str]) -> None:
    global ACK_DELAY  # noqa: PLW0603 - a process-wide setting of this small server
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=["hec", "elastic", "opensearch", "sentinel"])
    p.add_argument("--ack-delay", type=float, default=0.0)
    p.add_argument("--cert")
    p.add_argument("--key")
    args = p.parse_args(argv)
    ACK_DELAY = args.ack_delay
    handler = {"hec": Hec, "elastic": Elastic, "opensearch": OpenSearch, "sentinel": Sentinel}[args.kind]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
