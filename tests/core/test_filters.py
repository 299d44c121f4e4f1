"""Filters: a built-in default never hides what a detection rule tagged or a failed call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from trailrelay.cli.main import cli
from trailrelay.config import parse_config
from trailrelay.contract import (
    SIEM_DEFAULT_FILTER,
    FilterConfig,
    FilterRule,
    Origin,
    Record,
    RiskTag,
    SinkConfig,
)
from trailrelay.errors import ConfigError
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


@pytest.mark.parametrize("key", ["category", "event_source", "event_name", "account", "region", "error_code"])
@pytest.mark.parametrize("where", ["filter", "sinks[0].filter"])
def test_an_empty_list_is_refused_naming_the_rule_and_key(key: str, where: str) -> None:
    """``event_name = []`` matched every record (a drop rule dropped all 14), ``account = []`` none."""
    table = {"rules": [{"name": "keep-all", "action": "keep"}, {"name": "empty", "action": "drop", key: []}]}
    sink: dict[str, Any] = {"type": "file", "path": "/tmp/o"}
    doc: dict[str, Any] = {"source": {"type": "files", "path": "/tmp/in"}, "sinks": [sink]}
    if where == "filter":
        doc["filter"] = table
    else:
        sink["filter"] = table
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    assert f"{where}.rules[1]: rule 'empty': {key} is an empty list" in str(info.value)


def test_rate_is_refused_outside_a_sample_rule() -> None:
    """A drop rule with ``rate = 0.5`` dropped 4 of 4 records: the rate was silently ignored."""
    with pytest.raises(
        ConfigError, match=r"filter\.rules\[0\]: rule 'half': rate applies to action = \"sample\""
    ):
        FilterConfig.validate({"rules": [{"name": "half", "action": "drop", "rate": 0.5}]}, where="filter")
    sample = RecordFilter(FilterConfig.validate({"rules": [{"name": "all", "action": "sample"}]}))
    assert sample.keep(data_event("kept: a sample rule's rate is 1 unless it says otherwise"))
    none = RecordFilter(FilterConfig.validate({"rules": [{"name": "none", "action": "sample", "rate": 0}]}))
    assert not none.keep(data_event("dropped")) and none.dropped == {"none": 1}


def test_forward_refuses_an_empty_list_before_reading(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "c.toml").write_text(
        '[source]\ntype = "files"\npath = "in"\n[[sinks]]\ntype = "file"\npath = "out.ndjson"\n'
        '[filter]\nrules = [{ name = "empty-names", action = "drop", event_name = [] }]\n'
    )
    result = CliRunner().invoke(
        cli, ["forward", "-c", str(tmp_path / "c.toml"), "--once"], env={"COLUMNS": "500"}
    )
    assert result.exit_code == 2
    assert "filter.rules[0]: rule 'empty-names': event_name is an empty list" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out.ndjson").exists()
