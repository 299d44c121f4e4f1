"""trailrelay cost without connectors: billing rules, profiles, sampling, extrapolation, CLI.

The connector-specific checks (billable bytes against what each stand-in received) live in
tests/connectors/<name>/test_cost_<name>.py; here the file sink's own encoder stands in.
"""

from __future__ import annotations

import datetime as dt
import gzip
import math
import os
import shutil
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
from click.testing import CliRunner
from rich.console import Console

from trailrelay.cli.main import cli
from trailrelay.config import Config, FilesSourceConfig, load_config
from trailrelay.contract import FilterConfig, FilterRule, Record
from trailrelay.cost.billing import (
    SENTINEL_TENANT_ID_BYTES,
    Meter,
    elastic_source_sizes,
    sentinel_row_size,
    sentinel_row_sizes,
    splunk_event_sizes,
)
from trailrelay.cost.cli import cost
from trailrelay.cost.estimate import _total, extrapolate, t_quantile
from trailrelay.cost.measure import (
    RAW,
    Limits,
    Measurement,
    Meters,
    Target,
    list_local,
    list_s3,
    measure,
    per_sink,
)
from trailrelay.cost.prices import load_prices
from trailrelay.cost.profiles import Decider
from trailrelay.cost.report import build_report
from trailrelay.cost.report_table import print_report
from trailrelay.detection.evaluate import SigmaTagger
from trailrelay.generate import generate_trail
from trailrelay.sinks.file import LinesEncoder
from trailrelay.testing import SAMPLE_EVENTS, load_records
from trailrelay.transforms.filters import RecordFilter

GLOBAL = FilterConfig(
    rules=[
        FilterRule(name="keep errors", action="keep", error_code=["*"]),
        FilterRule(name="no describes", action="drop", event_name=["Describe*"]),
        FilterRule(name="sample s3 reads", action="sample", rate=0.2, category=["Data"]),
    ]
)
SINK = FilterConfig(rules=[FilterRule(name="no list calls", action="drop", event_name=["List*"])])


def config_of(trail: Path, global_filter: FilterConfig | None = None, **tables: Any) -> Config:
    """A config reading ``trail`` with that global filter and tables, its sinks given by the meters."""
    source = FilesSourceConfig(type="files", path=trail)
    return Config(source=source, sinks=[], filter=global_filter or FilterConfig(), **tables)


def lines_meters() -> Meters:
    return Meters([Target("archive", "lines", Meter("lines", LinesEncoder()), SINK)], [], {})


@pytest.fixture(scope="module")
def trail(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trail")
    generate_trail(out, seed=3, events_per_hour=60, accounts=2)
    return out


# -- billing rules ------------------------------------------------------------------------------


def test_splunk_bills_the_event_not_the_envelope() -> None:
    body = b"\n".join(
        [
            b'{"time":1.0,"sourcetype":"aws:cloudtrail","fields":{"a":"b"},"event":{"eventID":"x","n":1}}',
            b'{"time":2.0,"index":"i","event":"caf\\u00e9 \xc3\xa9"}',
        ]
    )
    assert splunk_event_sizes(body) == [len(b'{"eventID":"x","n":1}'), len("café é".encode())]


def test_sentinel_bills_column_values_without_the_unbilled_columns() -> None:
    row = {
        "TimeGenerated": "2026-03-02T10:15:02Z",
        "EventName": "StopLogging",
        "ReadOnly": False,
        "Type": "AWSCloudTrail",
    }
    expected = len("2026-03-02T10:15:02Z") + len("StopLogging") + len("false") + SENTINEL_TENANT_ID_BYTES
    assert sentinel_row_size(row) == expected
    assert sentinel_row_sizes(orjson.dumps([row, {"_ItemId": "abc"}])) == [expected, SENTINEL_TENANT_ID_BYTES]


def test_elastic_bills_document_sources_not_actions() -> None:
    body = b'{"create":{"_index":"i","_id":"1"}}\n{"message":"abc"}\n{"create":{"_id":"2"}}\n{"m":1}\n'
    assert elastic_source_sizes(body) == [len(b'{"message":"abc"}'), len(b'{"m":1}')]


def test_meter_uses_a_connector_hook_when_it_has_one() -> None:
    class Hooked(LinesEncoder):
        def billable_bytes(self, record: Record) -> int:
            return 7

    rec = load_records_from(SAMPLE_EVENTS[:1])[0]
    assert Meter("x", Hooked()).measure(rec) == (7, len(rec.line()) + 1)


def test_meter_counts_records_the_encoder_refuses_as_billed_nothing() -> None:
    class Refuses(LinesEncoder):
        def encode(self, records: Any) -> list[bytes]:
            raise ValueError("cannot map")

    meter = Meter("x", Refuses())
    assert meter.measure(load_records_from(SAMPLE_EVENTS[:1])[0]) == (0, 0)
    assert meter.failures == 1 and "cannot map" in str(meter.last_error)


def load_records_from(events: list[dict[str, Any]]) -> list[Record]:
    from trailrelay.contract import Origin

    return [Record.from_document(dict(e), Origin("file", "x"), i) for i, e in enumerate(events)]


# -- profiles -----------------------------------------------------------------------------------


def test_deciders_agree_with_the_pipelines_filters(trail: Path) -> None:
    records = load_records(trail)
    tagger = SigmaTagger()
    decider = Decider([("global", GLOBAL), ("archive", SINK)])
    kept = 0
    for r in records:
        tagger(r)
        pipeline_keeps = RecordFilter(GLOBAL).keep(r) and RecordFilter(SINK).keep(r)
        assert (decider.decide(r) is None) == pipeline_keeps, r
        kept += pipeline_keeps
    assert 0 < kept < len(records)


SPARING = FilterConfig(
    default="drop",
    rules=[
        FilterRule(name="read-only noise", action="drop", read_only=True, spare_flagged=True),
        FilterRule(name="writes", action="keep", read_only=False),
    ],
)
"""A spared record matched the first rule, which keeps it: the drop default never sees it."""


def test_a_spared_record_is_kept_by_the_rule_that_matched_it(trail: Path) -> None:
    records = load_records(trail)
    tagger = SigmaTagger()
    decider = Decider([("global", SPARING)])
    pipeline = RecordFilter(SPARING)
    spared = 0
    for r in records:
        tagger(r)
        keeps = pipeline.keep(r)
        assert (decider.decide(r) is None) == keeps, r
        spared += keeps and r.routing.read_only is True
    assert spared > 0  # flagged read-only calls: kept, not dropped by the default
    objects, _ = list_local(trail)
    m = measure(objects, source=str(trail), config=config_of(trail, SPARING), meters=lines_meters())
    saved = {ref.name: v[0] for (siem, ref), v in m.rule_bytes.items() if siem == "lines"}
    assert saved["read-only noise"] == pipeline.dropped["read-only noise"] > 0
    assert saved["(default)"] == pipeline.dropped["(default)"]


def test_profile_savings_add_up_and_billable_equals_the_bytes_encoded(trail: Path) -> None:
    objects, skipped = list_local(trail)
    m = measure(
        objects, source=str(trail), config=config_of(trail, GLOBAL), meters=lines_meters(), skipped=skipped
    )
    assert m.census and m.records > 1000 and skipped["digest"] > 0
    # Every 10th record is also pseudonymized (standard profile) and compressed: measured, not assumed.
    records_seen, before, after = m.privacy["lines"]
    assert records_seen == m.records // 10 and before > 0 and after > 0 and after != before
    assert 0 < m.compression["lines"][1] < m.compression["lines"][0]
    report = build_report(m, load_prices(), "USD")
    check = report["savings_check"]["lines"]
    assert check["sample_all_bytes"] - check["sample_kept_bytes"] == check["sample_saved_by_rules"] > 0
    vol = {(v["profile"], v["siem"]): v for v in report["volumes"]}
    # The lines encoder sends each record's own line: billable equals the raw records, profile by profile.
    for p in ("all", "management", "config"):
        assert vol[(p, "lines")]["sample_billable_bytes"] <= vol[("all", RAW)]["sample_billable_bytes"]
    assert vol[("all", "lines")]["sample_billable_bytes"] == vol[("all", RAW)]["sample_billable_bytes"]
    records = load_records(trail)
    assert vol[("all", RAW)]["sample_billable_bytes"] == sum(len(r.line()) for r in records)
    assert vol[("all", RAW)]["sample_events"] == len(records)
    # Management profiles are nested: everything >= management >= management minus read-only.
    sizes = [vol[(p, "lines")]["sample_billable_bytes"] for p in ("all", "management", "management-writes")]
    assert sizes == sorted(sizes, reverse=True) and sizes[2] > 0
    rules = {r["rule"]: r for r in report["rules"]}
    assert {"no describes", "sample s3 reads", "no list calls"} <= set(rules)
    assert rules["no describes"]["alone_bytes_per_day"] >= rules["no describes"]["billable_bytes_per_day"] > 0
    assert report["rules"] == sorted(report["rules"], key=lambda r: -r["billable_bytes_per_day"])
    names = report["noisy"]["event_names"]
    assert names and names[0]["bytes_per_day"] >= names[-1]["bytes_per_day"]


# -- the config, as forward runs it -----------------------------------------------------------------

S3_WATCH = """
title: Watch S3 object reads
id: 0b7d7e0e-1c1a-4f7b-9a54-7d2f7c1b1c01
status: experimental
logsource:
    product: aws
    service: cloudtrail
detection:
    selection:
        eventSource: s3.amazonaws.com
    condition: selection
level: medium
"""

FLAGGED_ONLY = """
[filter]
rules = [{ name = "unflagged", action = "drop", spare_flagged = true }]
"""


ARCHIVE = '[[sinks]]\nname = "archive"\ntype = "file"\npath = "archive.ndjson"\n'


def forward_and_cost(
    trail: Path, tmp_path: Path, tables: str, sinks: str = ARCHIVE, status: int = 0
) -> tuple[dict[str, tuple[int, int]], Measurement]:
    """What ``forward --once`` wrote to each file sink (lines, bytes without newlines) by name,
    and the cost measurement of the same config, each file sink measured by its own encoder."""
    cfg = tmp_path / "trailrelay.toml"
    cfg.write_text(
        f'[source]\ntype = "files"\npath = "{trail}"\n{sinks}'
        '[state]\npath = "state.sqlite"\n[dead_letter]\npath = "dead"\n' + tables,
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["forward", "-c", str(cfg), "--once", "--no-progress"])
    assert result.exit_code == status, result.output
    config = load_config(cfg)
    sent = {}
    for sc in config.sinks:
        lines = sc.path.read_bytes().splitlines() if sc.path.exists() else []  # type: ignore[attr-defined]
        sent[sc.display_name] = (len(lines), sum(map(len, lines)))
    targets = [
        Target(sc.display_name, "lines", Meter("lines", LinesEncoder()), sc.filter) for sc in config.sinks
    ]
    objects, _ = list_local(trail)
    return sent, measure(objects, source=str(trail), config=config, meters=Meters(targets, [], {}))


def config_volume(m: Measurement, profile: str = "config", siem: str = "lines") -> tuple[int, int]:
    """(events, billable bytes) a profile measured for ``siem`` in the sample."""
    cols = [u.volume.get((profile, siem), [0, 0, 0]) for u in m.units]
    return sum(c[0] for c in cols), sum(c[1] for c in cols)


def test_the_users_own_sigma_rules_tag_as_in_forward(trail: Path, tmp_path: Path) -> None:
    """A filter keeping only flagged records: what the user's rule tags is sent, and estimated."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "s3_watch.yml").write_text(S3_WATCH, encoding="utf-8")
    sent, m = forward_and_cost(trail, tmp_path, FLAGGED_ONLY + '[detection]\nrules = ["rules"]\n')
    assert config_volume(m) == sent["archive"]
    (tmp_path / "pack").mkdir()
    pack_only, _ = forward_and_cost(trail, tmp_path / "pack", FLAGGED_ONLY)
    assert pack_only["archive"][0] < sent["archive"][0]  # the user's rule tagged (and so kept) more


def test_every_sink_of_a_siem_is_measured_and_added_up(trail: Path, tmp_path: Path) -> None:
    """Two sinks of one type (two indexes, each billed): each is estimated by its name, the SIEM's total adds them."""
    data_only = 'filter = { default = "drop", rules = [{ name = "data events", action = "keep", category = ["Data"] }] }\n'
    sinks = ARCHIVE + '[[sinks]]\nname = "data"\ntype = "file"\npath = "data.ndjson"\n' + data_only
    sent, m = forward_and_cost(trail, tmp_path, "", sinks)
    assert 0 < sent["data"][0] < sent["archive"][0]
    assert [(name, siem) for name, siem in m.sinks] == [("archive", "lines"), ("data", "lines")]
    for name in ("archive", "data"):
        assert config_volume(m, per_sink(name)) == sent[name]
    both = config_volume(m)
    assert both == (sent["archive"][0] + sent["data"][0], sent["archive"][1] + sent["data"][1])
    report = build_report(m, load_prices(), "USD")
    assert [(x["name"], x["sample_events"]) for x in report["sinks"]] == [
        ("archive", sent["archive"][0]),
        ("data", sent["data"][0]),
    ]
    notes = next(p["notes"] for p in report["profiles"] if p["name"] == "config")
    assert "lines: 2 sinks (archive, data), each billed; figures add them up" in notes
    # Everything sent to both, less what the rules dropped, is what was kept: the savings add up.
    check = report["savings_check"]["lines"]
    assert check["sample_all_bytes"] - check["sample_kept_bytes"] == check["sample_saved_by_rules"] > 0
    assert check["sample_kept_bytes"] == both[1]


def test_the_configs_reading_limits_apply_as_in_forward(trail: Path, tmp_path: Path) -> None:
    """[pipeline] max_record_bytes and max_object_bytes: what forward leaves out is not billed."""
    limits = "[pipeline]\nmax_record_bytes = 2048\nmax_object_bytes = 8192\n"
    sent, m = forward_and_cost(trail, tmp_path, limits, status=4)  # 4: some were dead-lettered
    assert config_volume(m) == sent["archive"]
    assert m.problems["record: record is over the 2048-byte limit (max_record_bytes); skipped unread"] > 0
    assert any(why.startswith("object: ") for why in m.problems)  # objects cut at 8 KiB
    assert sent["archive"][0] + m.problems.total() > m.records


SLIM = """
[privacy]
key_file = "key.hex"
key_encoding = "hex"
default = "standard"
sinks = { archive = "slim" }
[privacy.profiles.slim]
fields = [
  { path = "requestParameters", method = "drop" },
  { path = "responseElements", method = "drop" },
  { path = "userAgent", method = "drop" },
]
"""


def test_each_sinks_privacy_profile_is_applied_as_in_forward(trail: Path, tmp_path: Path) -> None:
    """The config's [privacy]: fields dropped at one sink, the keyed standard profile at another.

    The estimate uses a throw-away key (it needs no access to the real one): a token has the
    same length under any key, so the bytes are those forward sent.
    """
    (tmp_path / "key.hex").write_text(os.urandom(32).hex(), encoding="utf-8")
    sinks = ARCHIVE + '[[sinks]]\nname = "masked"\ntype = "file"\npath = "masked.ndjson"\n'
    sent, m = forward_and_cost(trail, tmp_path, SLIM, sinks)
    for name in ("archive", "masked"):
        assert config_volume(m, per_sink(name)) == sent[name]
    records = load_records(trail)
    unmasked = sum(len(r.line()) for r in records)
    assert sent["archive"][1] < unmasked != sent["masked"][1]  # tokens are not as long as the values
    # Every profile is measured as the sinks would send it; only the filters change.
    assert config_volume(m, "all") == config_volume(m)
    report = build_report(m, load_prices(), "USD")
    privacy = report["privacy"]
    assert privacy["applied"] and "your config's [privacy]" in privacy["profile"]
    assert privacy["by_siem"]["lines"]["change"] < 0


def test_a_siem_without_a_price_shows_no_amount_saved_either(trail: Path) -> None:
    """No price for the SIEM (the lines encoder has none): '-' for its cost and its rules' savings."""
    objects, _ = list_local(trail)
    m = measure(objects, source=str(trail), config=config_of(trail, GLOBAL), meters=lines_meters())
    report = build_report(m, load_prices(), "USD")
    assert report["rules"] and all(c["best_monthly"] is None for c in report["costs"])
    assert all(r["monthly_saving"] is None and r["alone_monthly_saving"] is None for r in report["rules"])
    console = Console(record=True, width=200)
    print_report(report, console)
    text = console.export_text()
    rules = text[text.index("what each rule saves") : text.index("noisiest APIs")]
    rows = [line for line in rules.splitlines() if line.startswith("│")]
    assert any("no describes" in row for row in rows)
    assert all("USD" not in row and "│ -  " in row for row in rows)


# -- extrapolation ------------------------------------------------------------------------------


def test_total_and_margin_follow_the_documented_formula() -> None:
    assert _total([1, 2, 3], 3, census=True) == (6.0, 0.0)
    total, margin = _total([1, 2, 3, 4], 8, census=False)
    assert total == 20.0
    expected = t_quantile(3) * 8 * statistics.stdev([1, 2, 3, 4]) / 2 * math.sqrt(0.5)
    assert margin == pytest.approx(expected)
    assert t_quantile(3) == pytest.approx(3.182) and t_quantile(100) == 1.96
    assert _total([5], 10, census=False)[1] == math.inf


def _put_trail(client: Any, bucket: str, days: int, counts: Callable[[int], int]) -> int:
    """CloudTrail-layout objects, one per hour; returns the number of records written."""
    client.create_bucket(Bucket=bucket)
    total = 0
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    for h in range(24 * days):
        t = start + dt.timedelta(hours=h)
        n = counts(h)
        events = []
        for i in range(n):
            e = dict(SAMPLE_EVENTS[i % len(SAMPLE_EVENTS)])
            e["eventID"] = f"ev-{h:04d}-{i:04d}"
            e["eventTime"] = (t + dt.timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
            events.append(e)
        total += n
        key = (
            f"AWSLogs/111122223333/CloudTrail/us-east-1/{t:%Y/%m/%d}/"
            f"111122223333_CloudTrail_us-east-1_{t:%Y%m%dT%H%M}Z_abc{h:04d}.json.gz"
        )
        client.put_object(Bucket=bucket, Key=key, Body=gzip.compress(orjson.dumps({"Records": events})))
    return total


def test_s3_sample_extrapolates_within_its_stated_margin(aws_env: str) -> None:
    client = boto3.client("s3", region_name="us-east-1", endpoint_url=aws_env)
    total = _put_trail(client, "trail-sample", 3, lambda h: 5 + (h * 7) % 11)
    start, end = dt.datetime(2026, 3, 1, tzinfo=dt.UTC), dt.datetime(2026, 3, 4, tzinfo=dt.UTC)
    objects, _ = list_s3(client, "trail-sample", "", start, end)
    assert len(objects) == 72
    sampled = measure(objects, source="s3", limits=Limits(max_hours=12), meters=lines_meters(), threads=4)
    est = extrapolate(sampled)[("all", RAW)]
    assert not sampled.census and len(sampled.units) == 12 and sampled.population_units == 72
    truth_per_day = total / 3
    assert 0 < est.events_margin < est.events
    assert abs(est.events - truth_per_day) <= est.events_margin
    full = measure(objects, source="s3", limits=Limits(max_hours=100), meters=lines_meters(), threads=4)
    exact = extrapolate(full)[("all", RAW)]
    assert full.census and exact.events == pytest.approx(truth_per_day) and exact.events_margin == 0.0
    report = build_report(sampled, load_prices(), "EUR")
    assert report["sample"]["units_read"] == 12 and "Student-t" in report["sample"]["method"]
    small = measure(objects, source="s3", limits=Limits(max_hours=3), meters=lines_meters())
    warnings = build_report(small, load_prices(), "USD")["sample"]["warnings"]
    assert any("sample too small" in w for w in warnings)


def _put_export(folder: Path, days: int, counts: Callable[[int], int]) -> int:
    """Hourly objects named as no CloudTrail file is (an export): returns the records written."""
    folder.mkdir()
    total = 0
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    for h in range(24 * days):
        t = start + dt.timedelta(hours=h)
        events = []
        for i in range(counts(h)):
            e = dict(SAMPLE_EVENTS[i % len(SAMPLE_EVENTS)])
            e["eventID"] = f"ev-{h:04d}-{i:04d}"
            e["eventTime"] = (t + dt.timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
            events.append(e)
        total += len(events)
        (folder / f"export-{h:04d}.json.gz").write_bytes(gzip.compress(orjson.dumps({"Records": events})))
    return total


def test_a_sampled_folder_without_cloudtrail_names_takes_its_span_from_the_records(tmp_path: Path) -> None:
    """Objects with no hour in their names: the span is the records' own, never a factor of 24."""
    total = _put_export(tmp_path / "export", 3, lambda h: 5 + (h * 7) % 11)
    objects, _ = list_local(tmp_path / "export")
    assert all(o.hour is None for o in objects)
    half = sum(o.size for o in objects) // 2
    m = measure(objects, source="export", limits=Limits(max_bytes=half), meters=lines_meters())
    assert not m.census and m.span_from_records and 60 <= m.span_hours <= 72
    # The sample's records span a little less than the whole: per day may be a little high.
    est = extrapolate(m)[("all", RAW)]
    assert total / 3 <= est.events <= total / 3 * 72 / m.span_hours + est.events_margin
    warnings = build_report(m, load_prices(), "USD")["sample"]["warnings"]
    assert any("records' eventTime" in w and "may be a little high" in w for w in warnings)


def test_cli_refuses_a_per_day_figure_when_no_record_says_when(tmp_path: Path) -> None:
    event = {k: v for k, v in SAMPLE_EVENTS[0].items() if k != "eventTime"}
    (tmp_path / "export.json").write_bytes(orjson.dumps({"Records": [event]}))
    result = CliRunner().invoke(cost, [str(tmp_path), "--json"])
    assert result.exit_code == 1, result.output
    assert result.stdout == "" and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: nothing to price per day: the 1 record(s) read from")
    assert "carry no eventTime" in result.stderr


# -- command line -------------------------------------------------------------------------------


def test_cli_local_json_and_html(trail: Path, tmp_path: Path) -> None:
    html = tmp_path / "cost.html"
    result = CliRunner().invoke(cost, [str(trail), "--json", "--currency", "inr", "--html", str(html)])
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    assert report["currency"] == "INR" and report["sample"]["records"] > 1000
    assert {"volumes", "costs", "rules", "noisy", "aws", "prices", "fx", "privacy"} <= set(report)
    assert html.read_text(encoding="utf-8").startswith("<!doctype html>")


def test_cli_table_with_config_and_user_prices(trail: Path, tmp_path: Path) -> None:
    config = tmp_path / "trailrelay.toml"
    config.write_text(
        f"""
[source]
type = "files"
path = "{trail}"
[[sinks]]
type = "file"
path = "out.ndjson"
[filter]
[[filter.rules]]
name = "no describes"
action = "drop"
event_name = ["Describe*"]
""",
        encoding="utf-8",
    )
    mine = tmp_path / "mine.toml"
    mine.write_text("[prices.splunk_ingest]\nvalue = 1.0\n", encoding="utf-8")
    result = CliRunner().invoke(cost, [str(trail), "-c", str(config), "--prices", str(mine)])
    assert result.exit_code == 0, result.output
    assert "your config's filters" in result.output and "noisiest APIs" in result.output


def test_cli_refuses_an_unknown_currency_and_a_missing_source(tmp_path: Path) -> None:
    bad = CliRunner().invoke(cost, [str(tmp_path), "--currency", "XYZ"])
    assert bad.exit_code == 2 and "no exchange rate for XYZ" in " ".join(bad.output.split())
    missing = CliRunner().invoke(cost, [str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "does not exist" in " ".join(missing.output.split())


def test_cli_s3_source_reads_the_configs_window(aws_env: str, tmp_path: Path) -> None:
    client = boto3.client("s3", region_name="us-east-1", endpoint_url=aws_env)
    total = _put_trail(client, "trail-cli", 2, lambda h: 3 + h % 4)
    config = tmp_path / "trailrelay.toml"
    config.write_text(
        """
[source]
type = "s3"
bucket = "trail-cli"
start_time = "2026-03-01T00:00:00Z"
end_time = "2026-03-01T23:59:59Z"
[[sinks]]
type = "file"
path = "out.ndjson"
""",
        encoding="utf-8",
    )
    result = CliRunner().invoke(cost, ["s3://trail-cli/AWSLogs/", "-c", str(config), "--json"])
    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    first_day = sum(3 + h % 4 for h in range(24))
    assert first_day < total
    # The window is the first day (plus the delivery lag): 24 or 25 hourly objects, not 48.
    assert report["sample"]["population_objects"] in (24, 25)
    raw = next(v for v in report["volumes"] if v["profile"] == "all" and v["siem"] == "raw")
    assert raw["sample_events"] >= first_day
    assert report["aws"][0]["plan"].startswith("S3 GET")


def test_cli_refuses_to_price_when_no_record_could_be_measured(tmp_path: Path) -> None:
    """Every object corrupt: no $0 estimate on stdout, one line saying why, exit status 1."""
    (tmp_path / "x.json.gz").write_bytes(b"garbage\n")
    (tmp_path / "y.json").write_bytes(b'{"Records": 5}\n')
    for args in ([], ["--json"]):
        result = CliRunner().invoke(cost, [str(tmp_path), *args])
        assert result.exit_code == 1, result.output
        assert result.stdout == ""
        assert result.stderr.count("\n") == 1
        assert "nothing to price: no CloudTrail record in the 2 objects read" in result.stderr
        assert "not JSON: 1" in result.stderr and "not a CloudTrail log: 1" in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = CliRunner().invoke(cost, [str(empty)])
    assert nothing.exit_code == 1 and nothing.stdout == ""
    assert "nothing to price: no CloudTrail log object in" in nothing.stderr


def test_cli_table_says_which_objects_the_estimate_left_out(trail: Path, tmp_path: Path) -> None:
    copy = tmp_path / "trail"
    shutil.copytree(trail, copy)
    (copy / "AWSLogs" / "corrupt.json.gz").write_bytes(b"garbage\n")
    (copy / "AWSLogs" / "odd.json").write_bytes(b'{"Records": [5, {"eventVersion": "1.08"}]}\n')
    read = len(list_local(copy)[0])
    result = CliRunner().invoke(cost, [str(copy)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert (
        f"! 1 of {read:,} objects could not be read; the estimate rests on the {read - 1:,} readable" in out
    )
    assert "!   not JSON: 1" in out
    assert "! 2 records could not be read and are left out of the estimate:" in out


def test_cli_refuses_an_unwritable_html_path_before_measuring(
    trail: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    html = tmp_path / "a-file" / "cost.html"

    def measured(*_: Any, **__: Any) -> None:
        raise AssertionError("the sample was read before the output path was checked")

    monkeypatch.setattr("trailrelay.cost.cli._run", measured)
    result = CliRunner().invoke(cost, [str(trail), "--html", str(html)])
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: cannot write {html}: Not a directory\n"
    assert result.stdout == ""


def test_cli_names_a_bucket_it_cannot_list(aws_env: str) -> None:
    result = CliRunner().invoke(cost, ["s3://no-such-trail-bucket/AWSLogs/"])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: cannot list s3://no-such-trail-bucket/AWSLogs/: ")
    assert "NoSuchBucket" in result.stderr and result.stderr.count("\n") == 1
