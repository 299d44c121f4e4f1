"""trailrelay cost on Elastic: ingested bytes from the real encoder equal the documents received.

Elastic meters the ingested document volume: the ``_bulk`` document source, not the action
line. The stand-in keeps every ``_bulk`` body the real sink sent; the document sizes in them
must equal, record for record, what the cost meter computed from the encoder.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from elastic_helpers import make_config, make_sink
from elastic_standin import StandIn

from trailrelay.contract import Batch, Status
from trailrelay.cost.billing import Meter, elastic_source_sizes
from trailrelay.testing import load_records
from trailrelay_elastic.plugin import plugin, source_sizes


@pytest.mark.parametrize("mode", ["integration", "ecs"])
def test_ingested_bytes_match_the_documents_received(corpus: Path, standin: StandIn, mode: str) -> None:
    records = load_records(corpus / "cloudtrail")
    assert len(records) > 1000
    meter = Meter.for_plugin("elastic", plugin, make_config(standin.url, mode=mode))
    assert meter.rule == plugin.billing_rule() and meter.rule.disk_ratio == "elastic_disk_ratio"
    measured = [meter.measure(r)[0] for r in records]
    assert meter.failures == 0
    sink = make_sink(standin.url, mode=mode)
    sink.open()
    try:
        for i in range(0, len(records), 500):
            outcomes = sink.send(Batch(records[i : i + 500]))
            assert {o.status for o in outcomes} <= {Status.DELIVERED, Status.DUPLICATE}
    finally:
        sink.close()
    received = [size for req in standin.bulk_requests() for size in elastic_source_sizes(req["body"])]
    assert sorted(received) == sorted(measured)
    assert [s for req in standin.bulk_requests() for s in source_sizes(req["body"])] == received
    assert sum(len(req["body"]) for req in standin.bulk_requests()) > sum(measured)  # actions are not billed
