"""The plugin's declared billing rule (``billing_rule()``) counts what core's reference rule counts."""

from __future__ import annotations

from pathlib import Path

from splunk_testkit import make_config

from trailrelay.cost.billing import Meter, splunk_event_sizes
from trailrelay.testing import load_records
from trailrelay_splunk.plugin import event_sizes, plugin


def test_declared_rule_equals_the_reference_on_the_corpus(corpus: Path) -> None:
    records = load_records(corpus / "cloudtrail")[:2000]
    config = make_config("https://splunk.example.invalid:8088", fields=["account", "region", "risk"])
    meter = Meter.for_plugin("splunk", plugin, config)
    assert meter.rule.sizes is event_sizes and meter.rule.unit == "indexed raw event bytes"
    bodies = plugin.encoder(config).encode(records)
    assert [s for b in bodies for s in event_sizes(b)] == [s for b in bodies for s in splunk_event_sizes(b)]
    assert [meter.measure(r)[0] for r in records[:200]] == [
        s for r in records[:200] for b in plugin.encoder(config).encode([r]) for s in splunk_event_sizes(b)
    ]
    text = b'{"time":2.0,"event":"caf\\u00e9 \xc3\xa9"}\n'
    assert event_sizes(text) == [len("café é".encode())]
