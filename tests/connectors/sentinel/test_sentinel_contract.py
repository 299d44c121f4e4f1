"""The shared SinkContract suite, run against the stand-in through the real Azure clients."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from conftest import SECRET, config_for, dead_port, sink_for
from sentinel_standin import Standin

from trailrelay.contract import Encoder, Sink
from trailrelay.testing import SinkContract
from trailrelay_sentinel.encode import SentinelEncoder


class SentinelHarness:
    """Wires the sink to the HTTPS stand-in (Entra token endpoint + Logs Ingestion API)."""

    def __init__(self, standin: Standin, ca_file: str) -> None:
        self.standin = standin
        self.ca_file = ca_file
        self.secrets: Sequence[str] = [SECRET]

    def make_sink(self) -> Sink:
        return sink_for(self.standin, self.ca_file)

    def unreachable_sink(self) -> Sink:
        cfg = config_for(self.standin, self.ca_file, endpoint=f"https://127.0.0.1:{dead_port()}")
        return sink_for(self.standin, self.ca_file, config=cfg)

    def encoder(self) -> Encoder:
        return SentinelEncoder()

    def stored_event_ids(self) -> list[str]:
        return self.standin.stored_ids()

    def fail_next(self, count: int, kind: str) -> None:
        name = {"transient": "upload_503_unavailable", "auth": "upload_403_missing_role"}[kind]
        self.standin.push_fixture(name, count)

    def reject_event(self, event_id: str) -> None:
        with self.standin.state.lock:
            self.standin.state.reject_ids.add(event_id)


class TestSentinelContract(SinkContract):
    @pytest.fixture
    def harness(self, standin: Standin, ca_file: str) -> Any:
        return SentinelHarness(standin, ca_file)
