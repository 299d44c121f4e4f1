"""trailrelay cost on OpenSearch: ingested bytes from the real encoder equal the documents received.

OpenSearch Serverless meters ingested data: the ``_bulk`` document source, not the action line.
The stand-in keeps every ``_bulk`` body the real sink sent; the document sizes in them must
equal, record for record, what the cost meter computed (with the plugin's declared rule). The
report prices OCUs or instances plus the storage of an on-disk estimate, and the connector shows
up in ``demo`` and ``cost`` through its own placeholder settings.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from opensearch_helpers import make_config, make_sink
from opensearch_standin import StandIn

from trailrelay.contract import Batch, Status
from trailrelay.cost.billing import Meter, elastic_source_sizes
from trailrelay.cost.costs import siem_costs
from trailrelay.cost.measure import build_meters, list_local, measure
from trailrelay.cost.prices import load_prices
from trailrelay.cost.report import build_report
from trailrelay.testing import load_records
from trailrelay_opensearch.encode import source_sizes
from trailrelay_opensearch.plugin import plugin


def test_ingested_bytes_match_the_documents_received(corpus: Path, standin: StandIn) -> None:
    records = load_records(corpus / "cloudtrail")
    assert len(records) > 1000
    config = make_config(standin.url)
    meter = Meter.for_plugin("opensearch", plugin, config)
    assert meter.rule.unit == "ingested document bytes"
    measured = [meter.measure(r)[0] for r in records]
    assert meter.failures == 0
    sink = make_sink(config)
    sink.open()
    try:
        for i in range(0, len(records), 500):
            outcomes = sink.send(Batch(records[i : i + 500]))
            assert {o.status for o in outcomes} <= {Status.DELIVERED, Status.DUPLICATE}
    finally:
        sink.close()
    received = [size for req in standin.bulk_requests() for size in source_sizes(req["body"])]
    assert sorted(received) == sorted(measured)
    assert sum(len(req["body"]) for req in standin.bulk_requests()) > sum(measured)  # actions are not billed


def test_the_rule_reads_bodies_like_the_encoder_hook(corpus: Path) -> None:
    records = load_records(corpus / "cloudtrail")[:300]
    encoder = plugin.encoder(plugin.demo_config())
    by_hook = [encoder.billable_bytes(r) for r in records]  # type: ignore[attr-defined]
    by_body = [s for body in encoder.encode(records) for s in plugin.billing_rule().sizes(body)]  # type: ignore[misc]
    assert by_body == by_hook
    assert by_body == [s for body in encoder.encode(records) for s in elastic_source_sizes(body)]


def test_plans_price_ocus_instances_and_the_storage_kept() -> None:
    prices = load_prices()
    plans = {p.plan: p for p in siem_costs("opensearch", 10e9, prices, "USD")}
    serverless = plans["Amazon OpenSearch Serverless (OCUs + storage)"]
    domain = plans["Amazon OpenSearch Service domain (3 data nodes + gp3 storage)"]
    days = prices.assumption("days_per_month", 30.4167)
    kept_gb = (
        10
        * prices.assumption("opensearch_retention_days", 90)
        * prices.assumption("opensearch_disk_ratio", 1)
    )
    assert serverless.monthly == pytest.approx(2 * 24 * days * 0.24 + kept_gb * 0.024)
    assert domain.monthly == pytest.approx(3 * 24 * days * 0.167 + 2 * kept_gb * 0.10)
    assert serverless.price_ids == ("opensearch_serverless_ocu", "opensearch_serverless_storage")
    assert sum(p.best for p in plans.values()) == 1
    for pid in (*serverless.price_ids, *domain.price_ids):
        price = prices.prices[pid]
        assert price.source_url.startswith("https://") and price.as_of.year >= 2026
        assert price.kind in {"list", "third-party", "assumption"}


def test_cost_report_measures_opensearch_from_its_placeholder(corpus: Path) -> None:
    meters = build_meters(None)
    assert "opensearch" in meters.meters and "opensearch" not in meters.missing
    objects, skipped = list_local(corpus / "cloudtrail")
    m = measure(objects[:5], source="corpus", skipped=skipped, meters=meters, limits=None, tag=False)
    assert m.units_of["opensearch"] == "ingested document bytes"
    report = build_report(m, load_prices(), "USD")
    on_disk = report["on_disk_bytes_per_day"]["opensearch"]
    billable = {
        v["profile"]: v["billable_bytes_per_day"] for v in report["volumes"] if v["siem"] == "opensearch"
    }
    assert on_disk == {p: b * report["assumptions"]["opensearch_disk_ratio"] for p, b in billable.items()}
    assert report["on_disk_assumptions"]["opensearch"] == "opensearch_disk_ratio"
    plans = next(c for c in report["costs"] if c["siem"] == "opensearch" and c["profile"] == "all")["plans"]
    assert {p["plan"] for p in plans} >= {"Amazon OpenSearch Serverless (OCUs + storage)"}
