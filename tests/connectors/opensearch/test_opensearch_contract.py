"""The shared sink contract, run against the stand-in through the real opensearch-py client."""

from __future__ import annotations

from typing import Any

import pytest
from opensearch_helpers import PASSWORD, free_port, make_config, make_sink, sigv4_config
from opensearch_standin import StandIn

from trailrelay.contract import Encoder, Sink
from trailrelay.testing import SinkContract
from trailrelay_opensearch.admin import run_setup
from trailrelay_opensearch.client import make_client
from trailrelay_opensearch.plugin import plugin


class OpenSearchHarness:
    """The opensearch sink wired to the stand-in, with basic auth or SigV4."""

    secrets = (PASSWORD,)

    def __init__(self, standin: StandIn, *, sigv4: bool = False) -> None:
        self.standin = standin
        self.sigv4 = sigv4
        config = self.config(standin.url)
        client = make_client(config, __import__("logging").getLogger("test"))
        assert run_setup(client, config).ok  # a healthy cluster has the templates
        client.close()

    def config(self, url: str) -> Any:
        return sigv4_config(url) if self.sigv4 else make_config(url)

    def make_sink(self) -> Sink:
        return make_sink(self.config(self.standin.url))

    def unreachable_sink(self) -> Sink:
        return make_sink(self.config(f"http://127.0.0.1:{free_port()}"))

    def encoder(self) -> Encoder:
        return plugin.encoder(self.config(self.standin.url))

    def stored_event_ids(self) -> list[str]:
        return [doc["eventID"] for doc in self.standin.stored()]

    def fail_next(self, count: int, kind: str) -> None:
        auth = "request-403-signature" if self.sigv4 else "request-401"
        self.standin.queue({"transient": "request-429", "auth": auth}[kind], count)

    def reject_event(self, event_id: str) -> None:
        self.standin.rejected_event_ids.add(event_id)


class TestOpenSearchBasicAuthContract(SinkContract):
    @pytest.fixture
    def harness(self, standin: StandIn) -> OpenSearchHarness:
        return OpenSearchHarness(standin)


class TestOpenSearchSigV4Contract(SinkContract):
    @pytest.fixture
    def harness(self, aws_standin: StandIn) -> OpenSearchHarness:
        return OpenSearchHarness(aws_standin, sigv4=True)
