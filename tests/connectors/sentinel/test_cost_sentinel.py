"""trailrelay cost on Sentinel: billed sizes from the real encoder equal those of the rows received.

Azure Monitor bills each stored record's columns by their string size (the standard columns
_ResourceId, _SubscriptionId, _ItemId, _IsBillable, _BilledSize and Type excluded). The
stand-in keeps the rows the real sink uploaded; their billed sizes, as the shipped DCR stores
them (into AWSCloudTrail it copies AwsRequestId_ into AwsRequestId), must equal, record for
record, what the cost meter computed from the encoder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import config_for
from sentinel_standin import Standin

from trailrelay.contract import Batch, Origin, Record, Status
from trailrelay.cost.billing import SENTINEL_UNBILLED_COLUMNS, Meter, sentinel_row_size
from trailrelay.testing import SAMPLE_EVENTS, load_records
from trailrelay_sentinel.billing import BILLING_RULE, row_size, stored_row
from trailrelay_sentinel.columns import BUILTIN_COPIES
from trailrelay_sentinel.plugin import plugin
from trailrelay_sentinel.template import TemplateOptions, transform_kql


def test_billed_sizes_match_the_rows_received(
    corpus: Path, make_sink: Any, standin: Standin, ca_file: str
) -> None:
    records = load_records(corpus / "cloudtrail")
    assert len(records) > 1000
    meter = Meter.for_plugin("sentinel", plugin, config_for(standin, ca_file))
    assert meter.rule is BILLING_RULE
    measured = [meter.measure(r)[0] for r in records]
    assert meter.failures == 0
    sink = make_sink()
    for i in range(0, len(records), 400):
        outcomes = sink.send(Batch(records[i : i + 400]))
        assert {o.status for o in outcomes} == {Status.DELIVERED}
    rows = standin.state.stored
    assert len(rows) == len(records)
    assert sorted(row_size(stored_row(r)) for r in rows) == sorted(measured)
    assert [row_size(r) for r in rows] == [sentinel_row_size(r) for r in rows]  # core's reference rule
    assert not SENTINEL_UNBILLED_COLUMNS & {k for r in rows for k in r}
    # Billed size is well under the JSON sent: column names and JSON syntax are not billed.
    sent = sum(meter.measure(r)[1] for r in records)
    assert sum(measured) < sent


def test_billed_size_is_that_of_the_row_the_shipped_dcr_stores(standin: Standin, ca_file: str) -> None:
    """AWSCloudTrail stores AwsRequestId_ twice (AwsRequestId is a copy): both are billed."""
    assert "AwsRequestId = AwsRequestId_" in transform_kql(TemplateOptions())
    assert " = AwsRequestId_" not in transform_kql(TemplateOptions(custom_table="Trail_CL"))
    assert BUILTIN_COPIES == {"AwsRequestId": "AwsRequestId_"}
    record = Record.from_document(dict(SAMPLE_EVENTS[0]), Origin("file", "x"), 0)
    request_id = str(SAMPLE_EVENTS[0]["requestID"])
    builtin = Meter.for_plugin("sentinel", plugin, config_for(standin, ca_file))
    custom = Meter.for_plugin("sentinel", plugin, config_for(standin, ca_file, table="Trail_CL"))
    assert (
        builtin.measure(record)[0] == custom.measure(record)[0] + len(request_id.encode()) > len(request_id)
    )
