"""``/healthz`` and ``/metrics`` (Prometheus text format) for container platforms."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from trailrelay.errors import ConfigError

__all__ = ["HealthServer", "check_listen", "health_snapshot", "prometheus_text", "report_every"]

REPORT_EVERY_ENV = "TRAILRELAY_METRICS_EVERY"
"""Seconds between a fleet worker's reports (its metrics file); the supervisor and its workers
read the same variable, so the supervisor knows how old a live worker's last report may be."""
REPORT_EVERY = 2.0


def _address(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"--health {listen!r}: expected HOST:PORT (or :PORT)")
    return host or "127.0.0.1", int(port)


def _cannot_listen(listen: str, exc: OSError) -> ConfigError:
    return ConfigError(f"--health {listen}: cannot listen there: {exc.strerror or exc}")


def check_listen(listen: str) -> None:
    """ConfigError now, naming the address, when ``--health`` could not listen there.

    Checked before a run starts (and before a fleet forks), not when the server is made.
    """
    address = _address(listen)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the HTTP server binds
        try:
            probe.bind(address)
        except OSError as exc:
            raise _cannot_listen(listen, exc) from None


_COUNTERS = {
    "objects_read": "Objects (files, S3 objects) read",
    "bytes_read": "Bytes of objects read (as stored, before decompression)",
    "records_in": "Records read",
    "records_filtered": "Records dropped by filter rules",
    "records_tagged_high_risk": "Records tagged high-risk",
    "units_acknowledged": "Units of work acknowledged (SQS message deletes sent, checkpoints written)",
    "units_released": "Units of work left for redelivery (with SQS messages whose delete failed)",
}
_KEYED = {
    "delivered": ("sink", "Records delivered"),
    "duplicates": ("sink", "Records the SIEM already held"),
    "rejected": ("sink", "Records the SIEM refused (dead-lettered)"),
    "retries": ("sink", "Record sends retried"),
    "bytes_out": ("sink", "Raw record bytes delivered"),
    "filtered_by_sink": ("sink", "Records a sink's own filter kept out (data events, by default)"),
    "dead_lettered": ("stage", "Dead-letter entries"),
    "skipped": ("reason", "Objects or messages skipped"),
}


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def prometheus_text(snapshot: dict[str, Any]) -> str:
    """Render a metrics snapshot as Prometheus exposition text."""
    out: list[str] = []
    for key, help_text in _COUNTERS.items():
        name = f"trailrelay_{key}_total"
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} counter", f"{name} {snapshot.get(key, 0)}"]
    for key, (label, help_text) in _KEYED.items():
        name = f"trailrelay_{key}_total"
        out += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        out += [f'{name}{{{label}="{_label(k)}"}} {v}' for k, v in sorted(snapshot.get(key, {}).items())]
    lat = snapshot.get("latency_seconds")
    if lat:
        name = "trailrelay_event_delay_seconds"
        out += [f"# HELP {name} Delay from eventTime to a final outcome (sampled)", f"# TYPE {name} gauge"]
        out += [
            f'{name}{{quantile="{q}"}} {lat[k]}' for q, k in (("0.5", "p50"), ("0.99", "p99"), ("1", "max"))
        ]
    out += [
        "# HELP trailrelay_workers Worker processes reporting",
        "# TYPE trailrelay_workers gauge",
        f"trailrelay_workers {snapshot.get('workers', 1)}",
    ]
    return "\n".join(out) + "\n"


class HealthServer:
    """Serves health and metrics from a provider: ``() -> (healthy, reason, snapshot)``."""

    def __init__(self, listen: str, provider: Callable[[], tuple[bool, str, dict[str, Any]]]) -> None:
        address = _address(listen)
        self.provider = provider
        handler = self._handler()
        try:
            self._server = ThreadingHTTPServer(address, handler)
        except OSError as exc:
            raise _cannot_listen(listen, exc) from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        """The bound host and port (useful with port 0)."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> HealthServer:
        """Start serving in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self.provider

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                healthy, reason, snapshot = provider()
                if self.path == "/healthz":
                    self._send(200 if healthy else 503, ("ok" if healthy else f"unhealthy: {reason}") + "\n")
                elif self.path == "/metrics":
                    self._send(200, prometheus_text(snapshot), "text/plain; version=0.0.4")
                else:
                    self._send(404, "not found\n")

            def _send(self, status: int, body: str, ctype: str = "text/plain; charset=utf-8") -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002,ARG002 - stdlib signature
                return

        return Handler


def pipeline_health(pipeline: Any, max_idle: float) -> Callable[[], tuple[bool, str, dict[str, Any]]]:
    """Health of a running pipeline: no fatal error and the source active within ``max_idle`` s."""
    import time  # noqa: PLC0415 - local to keep the module's import surface small

    def provider() -> tuple[bool, str, dict[str, Any]]:
        snap: dict[str, Any] = pipeline.metrics.snapshot()
        if pipeline.fatal:
            return False, str(pipeline.fatal), snap
        idle = time.monotonic() - pipeline.metrics.last_activity
        if idle > max_idle:
            return False, f"no source activity for {idle:.0f}s", snap
        return True, "", snap

    return provider


def health_snapshot(provider: Callable[[], tuple[bool, str, dict[str, Any]]]) -> Callable[[], dict[str, Any]]:
    """The provider's snapshot, with ``unhealthy`` saying why when it is not (a fleet worker's file).

    The supervisor of ``--workers N`` serves ``/healthz`` from these files: a worker's own verdict
    (no source activity for ``max_idle``) reaches it without a second idle rule.
    """

    def snapshot() -> dict[str, Any]:
        healthy, reason, snap = provider()
        if not healthy:
            snap["unhealthy"] = reason
        return snap

    return snapshot


def report_every() -> float:
    """Seconds between a fleet worker's reports: ``TRAILRELAY_METRICS_EVERY``, or 2."""
    try:
        every = float(os.environ.get(REPORT_EVERY_ENV, REPORT_EVERY))
    except ValueError:
        return REPORT_EVERY
    return every if 0 < every < float("inf") else REPORT_EVERY


def write_snapshots(
    snapshot: Callable[[], dict[str, Any]], path: str, stop: threading.Event, every: float = REPORT_EVERY
) -> threading.Thread:
    """Write the snapshot as JSON to ``path`` every few seconds (atomically), for a supervisor."""
    import orjson  # noqa: PLC0415

    def loop() -> None:
        while True:
            tmp = Path(f"{path}.tmp")
            tmp.write_bytes(orjson.dumps(snapshot()))
            tmp.replace(path)
            if stop.wait(every):
                return

    thread = threading.Thread(target=loop, name="metrics-file", daemon=True)
    thread.start()
    return thread
