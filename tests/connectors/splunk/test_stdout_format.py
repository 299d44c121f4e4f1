"""``[[sinks]] type = "stdout"`` with ``format = "splunk"`` writes exactly the sink's HEC envelopes."""

from __future__ import annotations

import io

import pytest
from splunk_testkit import make_config

from trailrelay.contract import Batch, ConfigError
from trailrelay.sinks.file import FileSink, StdoutConfig, document_encoder
from trailrelay.testing import sample_records
from trailrelay_splunk.encode import EnvelopeEncoder


def test_stdout_splunk_format_is_the_envelope_the_sink_sends() -> None:
    records = sample_records(6)
    options = {"index": "aws", "sourcetype": "aws:cloudtrail", "host": "relay"}
    out = io.BytesIO()
    sink = FileSink(StdoutConfig(format="splunk", format_options=options), stream=out)
    sink.open()
    sink.send(Batch(records))
    expected = EnvelopeEncoder(make_config("https://x.invalid:8088", **options))
    assert out.getvalue().splitlines() == [expected.envelope(r) for r in records]


def test_connection_keys_are_refused_as_format_options() -> None:
    with pytest.raises(ValueError, match="does not change splunk documents"):
        StdoutConfig(format="splunk", format_options={"token": "x"})
    with pytest.raises(ConfigError, match="format_options"):
        document_encoder("splunk", {"fields": ["nonsense"]})
