"""Helpers shared by the Splunk connector tests (imported by conftest and test modules)."""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path
from typing import Any

from splunk_hec_standin import HecStandIn

from trailrelay.contract import SinkContext
from trailrelay.pipeline.deadletter import FolderDeadLetters
from trailrelay.pipeline.delivery import SinkRunner
from trailrelay.pipeline.metrics import Metrics
from trailrelay_splunk.config import SplunkConfig
from trailrelay_splunk.encode import EnvelopeEncoder
from trailrelay_splunk.sink import SplunkSink

TOKEN = "7d1c0a7e-5b8e-4c3f-9a51-0123456789ab"


def context() -> SinkContext:
    """A SinkContext for tests."""
    return SinkContext(
        "splunk", logging.getLogger("trailrelay.test.splunk"), "trailrelay/test trailrelay-splunk/test"
    )


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_config(url: str, **overrides: Any) -> SplunkConfig:
    """A SplunkConfig for the stand-in with fast ack polling."""
    table: dict[str, Any] = {
        "type": "splunk",
        "url": url,
        "token": TOKEN,
        "index": "cloudtrail",
        "timeout": 5,
        "ack_timeout": 2,
        "ack_poll_interval": 0.01,
    }
    table.update(overrides)
    return SplunkConfig.validate(table)


class SplunkHarness:
    """SinkHarness wiring SplunkSink to the HEC stand-in."""

    def __init__(self, hec: HecStandIn, **overrides: Any) -> None:
        self.hec = hec
        self.overrides = {"ack": hec.use_ack, **overrides}
        self.secrets = [TOKEN]

    def config(self, url: str | None = None) -> SplunkConfig:
        return make_config(url or self.hec.url, **self.overrides)

    def make_sink(self) -> SplunkSink:
        return SplunkSink(self.config(), context())

    def unreachable_sink(self) -> SplunkSink:
        return SplunkSink(self.config(f"http://127.0.0.1:{free_port()}"), context())

    def encoder(self) -> EnvelopeEncoder:
        return EnvelopeEncoder(self.config())

    def stored_event_ids(self) -> list[str]:
        return self.hec.event_ids()

    def fail_next(self, count: int, kind: str) -> None:
        if kind == "auth":
            self.hec.auth_fail_left = count
        else:
            self.hec.busy_left = count

    def reject_event(self, event_id: str) -> None:
        self.hec.poisoned.add(event_id)


def sink_runner(sink: SplunkSink, tmp_path: Path, metrics: Metrics | None = None, **kw: Any) -> SinkRunner:
    """Core's runner around a SplunkSink (no pipeline: records are handed to it directly)."""
    return SinkRunner(
        "splunk",
        sink,
        dead_letters=FolderDeadLetters(tmp_path / "dead"),
        metrics=metrics if metrics is not None else Metrics(),
        stop=threading.Event(),
        on_fatal=lambda *_: None,
        backoff_base=0.01,
        **kw,
    )
