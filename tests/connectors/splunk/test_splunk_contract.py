"""The shared sink contract, against the HEC stand-in with and without indexer acknowledgement."""

from __future__ import annotations

import pytest
from splunk_hec_standin import HecStandIn
from splunk_testkit import SplunkHarness

from trailrelay.testing import SinkContract


class TestSplunkContract(SinkContract):
    @pytest.fixture
    def harness(self, hec: HecStandIn) -> SplunkHarness:
        return SplunkHarness(hec)


class TestSplunkContractWithAck(SinkContract):
    @pytest.fixture
    def harness(self, hec_ack: HecStandIn) -> SplunkHarness:
        return SplunkHarness(hec_ack)
