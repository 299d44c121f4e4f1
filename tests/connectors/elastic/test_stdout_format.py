"""``[[sinks]] type = "stdout"`` with ``format = "elastic-ecs"`` writes exactly the sink's ECS documents."""

from __future__ import annotations

import io

import orjson
import pytest
from elastic_helpers import make_config

from trailrelay.contract import Batch
from trailrelay.sinks.file import FileSink, StdoutConfig
from trailrelay.testing import sample_records
from trailrelay_elastic.encode import BulkEncoder


def test_stdout_elastic_ecs_format_is_the_document_the_sink_indexes() -> None:
    records = sample_records(8)
    out = io.BytesIO()
    sink = FileSink(StdoutConfig(format="elastic-ecs", format_options={"namespace": "prod"}), stream=out)
    sink.open()
    sink.send(Batch(records))
    # the sink's own _bulk body for the same records: action lines and documents, alternating
    body = b"".join(
        BulkEncoder(make_config("https://x.invalid:9200", mode="ecs", namespace="prod")).encode(records)
    )
    lines = body.splitlines()
    actions, documents = lines[0::2], lines[1::2]
    assert all("_index" in next(iter(orjson.loads(a).values())) for a in actions)
    written = out.getvalue().splitlines()
    assert written == documents
    doc = orjson.loads(written[0])
    assert doc["event"]["id"] == records[0].event_id  # an ECS document, not the raw record
    assert "eventID" not in doc
    assert doc["data_stream"]["namespace"] == "prod"


def test_stdout_elastic_ecs_refuses_connection_keys() -> None:
    with pytest.raises(ValueError, match="does not change elastic-ecs documents"):
        StdoutConfig(format="elastic-ecs", format_options={"api_key": "x"})
