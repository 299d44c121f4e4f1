"""The shared sink contract, run against the stand-in cluster through the real client."""

from __future__ import annotations

import json
from typing import Any

import pytest
from elastic_helpers import API_KEY, free_port, make_config, make_sink
from elastic_standin import StandIn

from trailrelay.contract import Encoder, Sink
from trailrelay.testing import SinkContract
from trailrelay_elastic.plugin import plugin


class ElasticHarness:
    """The elastic sink wired to the stand-in, in one document mode."""

    secrets = (API_KEY,)

    def __init__(self, standin: StandIn, **overrides: Any) -> None:
        self.standin = standin
        self.overrides = overrides
        # A healthy cluster: the assets each mode needs are installed.
        standin.index_templates["logs-aws.cloudtrail"] = {"index_patterns": ["logs-aws.cloudtrail-*"]}
        standin.index_templates["trailrelay-ecs-logs-aws.cloudtrail-default"] = {"index_patterns": ["x"]}

    def make_sink(self) -> Sink:
        return make_sink(self.standin.url, **self.overrides)

    def unreachable_sink(self) -> Sink:
        return make_sink(f"http://127.0.0.1:{free_port()}", **self.overrides)

    def encoder(self) -> Encoder:
        return plugin.encoder(make_config(self.standin.url, **self.overrides))

    def stored_event_ids(self) -> list[str]:
        out = []
        for doc in self.standin.stored():
            if "message" in doc:
                out.append(json.loads(doc["message"])["eventID"])
            else:
                out.append(doc["event"]["id"])
        return out

    def fail_next(self, count: int, kind: str) -> None:
        self.standin.queue({"transient": "request-429-rejected", "auth": "request-401"}[kind], count)

    def reject_event(self, event_id: str) -> None:
        self.standin.rejected_event_ids.add(event_id)


class TestElasticIntegrationModeContract(SinkContract):
    @pytest.fixture
    def harness(self, standin: StandIn) -> ElasticHarness:
        return ElasticHarness(standin)


class TestElasticEcsModeContract(SinkContract):
    @pytest.fixture
    def harness(self, standin: StandIn) -> ElasticHarness:
        return ElasticHarness(standin, mode="ecs")
