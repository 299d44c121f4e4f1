"""Filters: a built-in default never hides what a detection rule tagged or a failed call."""

from __future__ import annotations

from typing import Any

import orjson

from trailrelay.contract import (
    SIEM_DEFAULT_FILTER,
    FilterConfig,
    FilterRule,
    Origin,
    Record,
    RiskTag,
    SinkConfig,
)
from trailrelay.transforms.filters import RecordFilter

TAG = RiskTag("test-rule", "a data event a detection flagged", "high")


def data_event(eid: str, **extra: Any) -> Record:
    doc = {
        "eventTime": "2026-03-01T12:00:00Z",
        "eventID": eid,
        "eventSource": "s3.amazonaws.com",
        "eventName": "GetObject",
        "eventCategory": "Data",
        "managementEvent": False,
        **extra,
    }
    return Record.from_bytes(orjson.dumps(doc), Origin("file", "x"))


def test_the_siem_default_keeps_tagged_and_failed_data_events() -> None:
    flt = RecordFilter(SIEM_DEFAULT_FILTER)
    tagged = data_event("tagged")
    tagged.add_tags([TAG])
    failed = data_event("failed", errorCode="AccessDenied")
    plain = data_event("plain")
    assert flt.keep(tagged) and flt.keep(failed)
    assert not flt.keep(plain)
    assert flt.dropped == {"default: data events stay out of SIEMs": 1}


def test_a_siem_sinks_default_filter_spares_flagged_records() -> None:
    default = SinkConfig(type="x").filter
    assert default == SIEM_DEFAULT_FILTER
    tagged = data_event("tagged")
    tagged.add_tags([TAG])
    assert RecordFilter(default).keep(tagged)


def test_a_rule_the_user_writes_keeps_its_meaning() -> None:
    """A user's drop rule drops what it matches, tagged or not, unless it says spare_flagged."""
    user = RecordFilter(FilterConfig(rules=[FilterRule(name="mine", action="drop", category=["Data"])]))
    tagged = data_event("tagged")
    tagged.add_tags([TAG])
    assert not user.keep(tagged) and not user.keep(data_event("failed", errorCode="AccessDenied"))
    assert user.dropped == {"mine": 2}
    spared = RecordFilter(
        FilterConfig(rules=[FilterRule(name="mine", action="drop", category=["Data"], spare_flagged=True)])
    )
    assert spared.keep(tagged) and not spared.keep(data_event("plain"))
