"""``[[sinks]] type = "stdout"`` with ``format = "sentinel"`` writes exactly the rows the sink uploads."""

from __future__ import annotations

import io

import orjson
import pytest

from trailrelay.contract import Batch
from trailrelay.sinks.file import FileSink, StdoutConfig
from trailrelay.testing import sample_records
from trailrelay_sentinel.encode import SentinelEncoder


def test_stdout_sentinel_format_is_the_row_the_sink_uploads() -> None:
    records = sample_records(8)
    out = io.BytesIO()
    sink = FileSink(StdoutConfig(format="sentinel"), stream=out)
    sink.open()
    sink.send(Batch(records))
    rows = [row for body in SentinelEncoder().encode(records) for row in orjson.loads(body)]
    written = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert written == rows
    assert len(written) == len(records)
    assert {r["EventName"] for r in written} == {
        r.routing.event_name for r in records
    }  # AWSCloudTrail columns


def test_stdout_sentinel_takes_no_format_options() -> None:
    with pytest.raises(ValueError, match="does not change sentinel documents"):
        StdoutConfig(format="sentinel", format_options={"rule_id": "dcr-x"})
