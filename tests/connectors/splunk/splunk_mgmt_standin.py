"""A local stand-in of splunkd's management API for splunk-sdk, replaying fixtures/mgmt replies.

It keeps just enough state (indexes, HEC tokens, saved searches, HEC's global switch) to answer
GET (200 or 404), POST create (201, or 409 when the object exists) and login, and it logs every
request so tests can check what splunk-sdk sent.

Oneshot searches (``POST .../search/jobs`` with ``exec_mode=oneshot``) answer, in order: a
scripted reply (``search_replies``), a scripted failure (``search_failures``: HTTP statuses), or
the events of a linked HEC stand-in (``events``) that match the search's ``index=``,
``sourcetype=`` and ``eventID=`` terms and ``earliest_time``, as ``output_mode=json`` results
(the shape of ``fixtures/mgmt/oneshot_canary.json``) or the XML results format. With
``echo_auth``, a scripted failure's message repeats the request's Authorization header, as some
proxies' error pages do.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import json
import re
import ssl
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote_plus, urlsplit
from xml.sax.saxutils import escape

FIXTURES = Path(__file__).parent / "fixtures" / "mgmt"
HEC = "/servicesNS/nobody/splunk_httpinput/data/inputs/http"
SAVED_SEARCH_DEFAULTS = {
    "alert.digest_mode": "1",
    "alert.severity": "3",
    "alert.track": "0",
    "alert_comparator": "",
    "alert_threshold": "",
    "alert_type": "always",
    "cron_schedule": "",
    "description": "",
    "disabled": "0",
    "dispatch.earliest_time": "",
    "dispatch.latest_time": "",
    "is_scheduled": "0",
    "realtime_schedule": "1",
    "search": "",
}
"""What splunkd shows for a saved-search setting that was never set (savedsearches.conf.spec)."""


def fixture(file: str, /, **values: str) -> str:
    """A fixture with its {placeholders} filled (XML-escaped for .xml files)."""
    text = (FIXTURES / file).read_text()
    for key, value in values.items():
        text = text.replace("{" + key + "}", escape(value) if file.endswith(".xml") else value)
    return text


@dataclass
class Seen:
    """One request the stand-in answered."""

    method: str
    path: str
    params: dict[str, str]
    status: int


class MgmtStandIn:
    """splunkd's REST API on 127.0.0.1 for splunk-sdk; start() / stop()."""

    def __init__(self, username: str = "admin", password: str = "s3cret-pass") -> None:
        self.username = username
        self.password = password
        self.session = uuid.uuid4().hex
        self.bearer = "eyJraWQiOiJzcGx1bmsuc2VjcmV0In0.test-token"
        self.indexes: set[str] = {"main", "_internal"}
        self.tokens: dict[str, dict[str, str]] = {}
        self.searches: dict[str, dict[str, str]] = {}
        self.hec_disabled = True
        self.conflict_on_create: set[str] = set()  # kinds whose create answers 409 despite GET 404
        self.forbidden_creates: dict[str, str] = {}  # object name -> capability its create lacks (403)
        self.search_replies: list[str] = []
        self.search_failures: list[int] = []
        self.echo_auth = False
        self.events: Callable[[], list[tuple[dict[str, Any], float]]] | None = None
        """Indexed HEC envelopes with their index time (e.g. ``HecStandIn.indexed``)."""
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._scheme = "http"

    def start(self, tls: ssl.SSLContext | None = None) -> MgmtStandIn:
        """Listen on an ephemeral port of 127.0.0.1 (HTTPS with a server-side ``tls`` context)."""
        standin = self

        class Handler(_Handler):
            api = standin

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._scheme = "https" if tls is not None else "http"
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT"""
        assert self._server is not None
        return f"{self._scheme}://127.0.0.1:{self._server.server_address[1]}"

    def writes(self) -> list[Seen]:
        """The POSTs after login."""
        return [s for s in self.seen if s.method == "POST" and not s.path.endswith("/auth/login")]

    # -- routes ---------------------------------------------------------------------------

    def route(self, method: str, path: str, params: dict[str, str], auth: str | None) -> tuple[int, str, str]:
        """(status, content type, body) for one request."""
        path = path.rstrip("/") or "/"  # splunkd treats .../indexes/ like .../indexes
        if path == "/services/auth/login" and method == "POST":
            if params.get("username") == self.username and params.get("password") == self.password:
                return 200, "text/xml", fixture("login.xml", session=self.session)
            return 401, "text/xml", fixture("error.xml", message="Login failed")
        if auth not in (f"Splunk {self.session}", f"Bearer {self.bearer}"):
            return 401, "text/xml", fixture("error.xml", message="call not properly authenticated")
        if path == "/services/server/info":
            return 200, "text/xml", fixture("server_info.xml")
        if re.fullmatch(r"/(services|servicesNS/[^/]+/[^/]+)/search(/v2)?/jobs", path) and method == "POST":
            if self.search_replies:
                return 200, "application/json", self.search_replies.pop(0)
            if self.search_failures:
                status = self.search_failures.pop(0)
                message = f"Search failed (HTTP {status})"
                if self.echo_auth:
                    message += f": Authorization: {auth}"
                return status, "text/xml", fixture("error.xml", message=message)
            if self.events is not None:
                return self._search(params)
            return 200, "application/json", fixture("oneshot_empty.json")
        for base, kind in (
            ("/servicesNS/nobody/search/data/indexes", "index"),
            (HEC, "hec"),
            ("/servicesNS/nobody/search/saved/searches", "search"),
        ):
            if path == base and method == "POST":
                return self._create(kind, params)
            if path.startswith(base + "/"):
                return self._entity(
                    kind, method, unquote_plus(path[len(base) + 1 :])
                )  # splunk-sdk writes ' ' as '+'
        return 404, "text/xml", fixture("error.xml", message=f"Not Found: {path}")

    def _search(self, params: dict[str, str]) -> tuple[int, str, str]:
        """A oneshot search over the linked HEC's events: index, sourcetype, eventID, earliest_time."""
        assert self.events is not None
        query = params.get("search", "")
        terms = dict(re.findall(r'\b(index|sourcetype|eventID)="((?:[^"\\]|\\.)*)"', query))
        if "eventID" not in terms:
            return 200, "application/json", fixture("oneshot_empty.json")
        bounds = [params.get("earliest_time", ""), params.get("latest_time", "")]
        since, until = (float(b) if re.fullmatch(r"\d+(\.\d+)?", b) else None for b in bounds)
        rows: list[dict[str, str]] = []
        for env, indexed in self.events():
            event = env.get("event")
            if not isinstance(event, dict) or str(event.get("eventID")) != terms["eventID"]:
                continue
            if not fnmatch.fnmatchcase(str(env.get("index", "main")), terms.get("index", "*")):
                continue
            if not fnmatch.fnmatchcase(str(env.get("sourcetype", "")), terms.get("sourcetype", "*")):
                continue
            when = float(env.get("time", indexed))
            if (since is not None and when < since) or (until is not None and when >= until):
                continue
            rows.append(
                {
                    "_time": dt.datetime.fromtimestamp(when, dt.UTC).isoformat(timespec="milliseconds"),
                    "_indextime": str(int(indexed)),
                    "eventID": str(event["eventID"]),
                    "eventName": str(event.get("eventName", "")),
                    "delay": str(int(indexed) - int(when)),
                }
            )
        names = ["_time", "_indextime", "eventID", "eventName", "delay"]
        if params.get("output_mode") == "json":
            body = {
                "preview": False,
                "init_offset": 0,
                "messages": [],
                "fields": [{"name": n} for n in names],
                "results": rows,
                "highlighted": {},
            }
            return 200, "application/json", json.dumps(body)
        return 200, "text/xml", _results_xml(names, rows)

    def _create(self, kind: str, params: dict[str, str]) -> tuple[int, str, str]:
        name = params["name"]
        if name in self.forbidden_creates:
            message = (
                f"You (user={self.username}) do not have permission to perform this operation "
                f"(requires capability: {self.forbidden_creates[name]})."
            )
            return 403, "text/xml", fixture("error.xml", message=message)
        with self._lock:
            exists = (
                name in self.indexes
                if kind == "index"
                else name in self.tokens
                if kind == "hec"
                else name in self.searches
            )
            if exists or kind in self.conflict_on_create:
                message = {
                    "index": f"In handler 'indexes': Index name={name} already exists",
                    "hec": f"An object with name=http://{name} already exists",
                    "search": f"An object with name={name} already exists",
                }[kind]
                if kind == "hec" and not exists:  # created by someone else meanwhile
                    self.tokens[name] = {**params, "token": str(uuid.uuid4())}
                return 409, "text/xml", fixture("error.xml", message=message)
            if kind == "index":
                self.indexes.add(name)
            elif kind == "hec":
                self.tokens[name] = {**params, "token": str(uuid.uuid4())}
            else:
                self.searches[name] = params
        return 201, "text/xml", self._render(kind, name)

    def _entity(self, kind: str, method: str, name: str) -> tuple[int, str, str]:
        if kind == "hec" and name == "http/enable" and method == "POST":
            self.hec_disabled = False
            return 200, "text/xml", fixture("http_global.xml", disabled="0")
        if kind == "hec" and name == "http":
            return 200, "text/xml", fixture("http_global.xml", disabled="1" if self.hec_disabled else "0")
        known = self.indexes if kind == "index" else self.tokens if kind == "hec" else self.searches
        name = name.removeprefix("http://")
        if name not in known:
            return 404, "text/xml", fixture("error.xml", message=f"Could not find object id={name}")
        return 200, "text/xml", self._render(kind, name)

    def _render(self, kind: str, name: str) -> str:
        if kind == "index":
            return fixture("index_entry.xml", name=name)
        if kind == "hec":
            t = self.tokens[name]
            return fixture(
                "http_entry.xml",
                name=name,
                description=t.get("description", ""),
                index=t.get("index", "main"),
                sourcetype=t.get("sourcetype", ""),
                token=t["token"],
                useACK=t.get("useACK", "0"),
                disabled=t.get("disabled", "0"),
            )
        s = self.searches.get(name, {})
        return fixture(
            "saved_search_entry.xml",
            name=name,
            quoted=quote(name, safe=""),
            **{key: s.get(key, default) for key, default in SAVED_SEARCH_DEFAULTS.items()},
        )


class _Handler(BaseHTTPRequestHandler):
    api: MgmtStandIn
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # real servers set TCP_NODELAY; without it each answer waits ~40 ms

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def _serve(self, method: str) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        params = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        params.update({k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()})
        status, ctype, text = self.api.route(method, split.path, params, self.headers.get("Authorization"))
        with self.api._lock:
            self.api.seen.append(Seen(method, split.path, params, status))
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", f"{ctype}; charset=UTF-8")
        self.send_header("Server", "Splunkd")
        self.send_header("Content-Length", str(len(data)))
        # splunk-sdk asks for Connection: Close and splunkd honours it in the reply.
        keep = self.headers.get("Connection", "").lower() != "close"
        self.send_header("Connection", "Keep-Alive" if keep else "Close")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")


def _results_xml(names: list[str], rows: list[dict[str, str]]) -> str:
    """splunkd's XML search results (what ``output_mode=xml``, the default, returns)."""
    order = "".join(f"<field>{escape(n)}</field>" for n in names)
    results = "".join(
        f"<result offset='{i}'>"
        + "".join(
            f"<field k='{escape(k)}'><value><text>{escape(v)}</text></value></field>" for k, v in row.items()
        )
        + "</result>"
        for i, row in enumerate(rows)
    )
    return (
        "<?xml version='1.0' encoding='UTF-8'?>\n<results preview='0'>\n"
        f"<meta><fieldOrder>{order}</fieldOrder></meta>\n{results}\n</results>\n"
    )


def search_reply(file: str, /, **values: str) -> str:
    """A oneshot JSON results fixture, filled."""
    text = fixture(file, **values)
    json.loads(text)  # fixtures must stay valid JSON
    return text
