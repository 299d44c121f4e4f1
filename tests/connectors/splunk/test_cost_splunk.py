"""trailrelay cost on Splunk: billable bytes from the real encoder equal what HEC received.

Splunk licenses ``_raw``: the event JSON as indexed, not the HEC envelope or indexed fields.
The stand-in captures each request body the real sink sent; the licensed bytes parsed out of
them must equal, record for record, what the cost meter computed from the encoder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from splunk_hec_standin import HecStandIn
from splunk_testkit import TOKEN, context, make_config

from trailrelay.cli.main import cli
from trailrelay.contract import Batch, Status
from trailrelay.cost.billing import Meter, splunk_event_sizes
from trailrelay.cost.cli import cost
from trailrelay.generate import generate_trail
from trailrelay.testing import load_records, settled
from trailrelay_splunk.plugin import plugin
from trailrelay_splunk.sink import SplunkSink


class CapturingHec(HecStandIn):
    """The HEC stand-in, keeping every (decompressed) event body it was sent."""

    def __init__(self) -> None:
        super().__init__(TOKEN)
        self.bodies: list[bytes] = []

    def handle_events(self, body: bytes, channel: str | None) -> tuple[int, dict[str, Any], int]:
        self.bodies.append(body)
        return super().handle_events(body, channel)


@pytest.fixture
def capturing() -> Iterator[CapturingHec]:
    server = CapturingHec()
    server.start()
    yield server
    server.stop()


def test_billable_bytes_match_what_hec_received(corpus: Path, capturing: CapturingHec) -> None:
    records = load_records(corpus / "cloudtrail")
    assert len(records) > 1000
    config = make_config(capturing.url, fields=["account", "region", "risk"], batch_events=300)
    meter = Meter("splunk", plugin.encoder(config))
    measured = [meter.measure(r)[0] for r in records]
    assert meter.failures == 0
    sink = SplunkSink(config, context())
    sink.open()
    try:
        for i in range(0, len(records), 300):
            outcomes = settled(sink.send(Batch(records[i : i + 300])))
            assert {o.status for o in outcomes} == {Status.DELIVERED}
    finally:
        sink.close()
    received = [size for body in capturing.bodies for size in splunk_event_sizes(body)]
    assert sorted(received) == sorted(measured)
    # Within the licensing rule: the indexed event is the record itself, the envelope is not billed.
    assert sum(measured) == sum(len(r.line()) for r in records)
    assert sum(len(b) for b in capturing.bodies) > sum(measured)
    stored = [e["event"] for e in capturing.stored]
    assert stored == [orjson.loads(r.line()) for r in records]


def test_cost_counts_every_splunk_sink_of_the_config(tmp_path: Path, capturing: CapturingHec) -> None:
    """Two Splunk sinks (two indexes, each licensed): the estimate is what forward sent to both."""
    trail = tmp_path / "trail"
    generate_trail(trail, seed=4, events_per_hour=20, accounts=1)
    sink = f'type = "splunk"\nurl = "{capturing.url}"\ntoken = "{TOKEN}"\nack = false\n'
    cfg = tmp_path / "trailrelay.toml"
    cfg.write_text(
        f'[source]\ntype = "files"\npath = "{trail}"\n'
        f'[[sinks]]\nname = "security"\nindex = "security"\n{sink}'
        f'[[sinks]]\nname = "s3-audit"\nindex = "s3audit"\n{sink}'
        'filter = { default = "drop", rules = [{ name = "data", action = "keep", category = ["Data"] }] }\n'
        '[state]\npath = "state.sqlite"\n[dead_letter]\npath = "dead"\n',
        encoding="utf-8",
    )
    forwarded = CliRunner().invoke(cli, ["forward", "-c", str(cfg), "--once", "--no-progress"])
    assert forwarded.exit_code == 0, forwarded.output
    licensed: dict[str, list[int]] = {"security": [], "s3audit": []}
    for body in capturing.bodies:
        pieces = [p for p in body.split(b"\n") if p.strip()]
        for piece, size in zip(pieces, splunk_event_sizes(body), strict=True):
            licensed[orjson.loads(piece)["index"]].append(size)
    assert licensed["security"] and licensed["s3audit"]
    result = CliRunner().invoke(cost, [str(trail), "-c", str(cfg), "--json"])
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    total = next(v for v in report["volumes"] if v["profile"] == "config" and v["siem"] == "splunk")
    assert total["sample_events"] == sum(len(v) for v in licensed.values())
    assert total["sample_billable_bytes"] == sum(sum(v) for v in licensed.values())
    sinks = {x["name"]: x for x in report["sinks"]}
    assert sinks["security"]["sample_billable_bytes"] == sum(licensed["security"])
    assert sinks["s3-audit"]["sample_billable_bytes"] == sum(licensed["s3audit"])
