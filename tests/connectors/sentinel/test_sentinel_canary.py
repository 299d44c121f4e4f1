"""The Sentinel searcher (Log Analytics query API via azure-monitor-query) and `trailrelay canary`."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import CLIENT, RULE, SECRET, STREAM, TENANT, config_for, sink_for
from sentinel_standin import Scripted, Standin

from trailrelay.cli.canary import canary, canary_event, canary_record
from trailrelay.contract import Batch, ConfigError, FatalSinkError, RetryableError, Searcher, Status
from trailrelay_sentinel.config import SentinelConfig
from trailrelay_sentinel.plugin import plugin
from trailrelay_sentinel.search import canary_query, kql_string


def _config(standin: Standin, ca_file: str, **overrides: Any) -> SentinelConfig:
    keys = {"workspace_id": standin.state.workspace_id, "query_endpoint": standin.url, **overrides}
    return config_for(standin, ca_file, **keys)


def _send_canary(standin: Standin, ca_file: str) -> str:
    record = canary_record(canary_event())
    sink = sink_for(standin, ca_file)
    sink.open()
    assert [o.status for o in sink.send(Batch([record]))] == [Status.DELIVERED]
    sink.close()
    return str(record.event_id)


def test_kql_for_one_event() -> None:
    assert canary_query("AWSCloudTrail", "trailrelay-canary-1") == (
        'AWSCloudTrail | where AwsEventId == "trailrelay-canary-1" '
        "| project TimeGenerated, AwsEventId, IngestedAt = ingestion_time() | take 1"
    )
    assert kql_string('a"b\\c') == '"a\\"b\\\\c"'
    with pytest.raises(ValueError, match="line breaks"):
        kql_string("a\nb")


def test_searcher_finds_the_ingested_row(standin: Standin, ca_file: str) -> None:
    searcher = plugin.searcher(_config(standin, ca_file))
    assert isinstance(searcher, Searcher)
    since = dt.datetime.now(dt.UTC)
    assert searcher.find("trailrelay-canary-missing", since) is None
    event_id = _send_canary(standin, ca_file)
    found = searcher.find(event_id, since)
    assert found is not None
    assert abs(found.timestamp() - standin.state.stored_at[0]) < 0.001  # its ingestion_time()
    request = standin.state.query_requests[-1]
    assert request["path"] == f"/v1/workspaces/{standin.state.workspace_id}/query"
    body = json.loads(request["body"])
    assert body["query"] == canary_query("AWSCloudTrail", event_id)
    start, end = (dt.datetime.fromisoformat(x) for x in body["timespan"].split("/"))
    assert start < since < end
    # The query API's token is asked for its own audience (the client's default: its endpoint).
    scopes = {r.get("scope") for r in standin.state.token_requests}
    assert f"{standin.url}/.default" in scopes and "https://monitor.azure.com/.default" in scopes
    searcher.close()
    searcher.close()


def test_searcher_finds_only_that_event(standin: Standin, ca_file: str) -> None:
    """A row of another event (a proxy's or a cache's answer) is not the canary."""
    event_id = _send_canary(standin, ca_file)
    columns = [
        {"name": "TimeGenerated", "type": "datetime"},
        {"name": "AwsEventId", "type": "string"},
        {"name": "IngestedAt", "type": "datetime"},
    ]
    other = "trailrelay-canary-00000000-0000-0000-0000-000000000000"
    rows = [["2026-01-01T00:00:00Z", other, "2026-01-01T00:00:01Z"]]
    answer = {"tables": [{"name": "PrimaryResult", "columns": columns, "rows": rows}]}
    standin.state.query_script.append(Scripted(200, {}, answer))
    searcher = plugin.searcher(_config(standin, ca_file))
    since = dt.datetime.now(dt.UTC)
    assert searcher.find(event_id, since) is None
    assert searcher.find(event_id, since) is not None


def test_searcher_waits_for_the_ingestion_latency(standin: Standin, ca_file: str) -> None:
    standin.state.query_latency = 0.3
    event_id = _send_canary(standin, ca_file)
    searcher = plugin.searcher(_config(standin, ca_file))
    since = dt.datetime.now(dt.UTC)
    assert searcher.find(event_id, since) is None
    time.sleep(0.35)
    assert searcher.find(event_id, since) is not None


def test_searcher_needs_a_workspace_guid(standin: Standin, ca_file: str) -> None:
    with pytest.raises(ConfigError, match="workspace_id"):
        plugin.searcher(config_for(standin, ca_file))
    with pytest.raises(ConfigError, match="GUID"):
        _config(standin, ca_file, workspace_id="my-sentinel-workspace")
    with pytest.raises(ConfigError, match="table"):
        _config(standin, ca_file, table="AWSCloudTrail | take 1")


@pytest.mark.parametrize(
    ("state", "overrides", "words"),
    [
        ({"query_access": False}, {}, "Log Analytics Reader"),
        (
            {},
            {"workspace_id": "11111111-1111-1111-1111-111111111111"},
            "workspace_id is the workspace's GUID",
        ),
        ({"tables": ("CloudTrail_CL",)}, {}, "table = 'AWSCloudTrail'"),
    ],
)
def test_refusals_are_fatal_with_what_to_fix(
    standin: Standin, ca_file: str, state: dict[str, Any], overrides: dict[str, Any], words: str
) -> None:
    for key, value in state.items():
        setattr(standin.state, key, value)
    with pytest.raises(FatalSinkError) as info:
        plugin.searcher(_config(standin, ca_file, **overrides)).find("x", dt.datetime.now(dt.UTC))
    assert words in str(info.value)


def test_a_token_for_another_audience_is_refused(standin: Standin, ca_file: str) -> None:
    """What a query_endpoint of the wrong cloud looks like: the API refuses the token (401)."""
    searcher = plugin.searcher(_config(standin, ca_file))
    searcher._client_options["audience"] = "https://monitor.azure.com"  # a token the query API refuses
    with pytest.raises(FatalSinkError, match="Valid authentication was not provided") as info:
        searcher.find("x", dt.datetime.now(dt.UTC))
    assert "query_endpoint must be the Log Analytics API" in str(info.value)


def test_busy_service_is_retryable(standin: Standin, ca_file: str) -> None:
    busy = {"error": {"message": "Too many requests", "code": "ThrottledError"}}
    standin.state.query_script.append(Scripted(429, {"Retry-After": "7"}, busy))
    standin.state.query_script.append(Scripted(503, {}, {"error": {"code": "ServiceUnavailable"}}))
    searcher = plugin.searcher(_config(standin, ca_file))
    with pytest.raises(RetryableError, match="429") as info:
        searcher.find("x", dt.datetime.now(dt.UTC))
    assert info.value.retry_after == 7.0
    with pytest.raises(RetryableError, match="503"):
        searcher.find("x", dt.datetime.now(dt.UTC))
    assert searcher.find("x", dt.datetime.now(dt.UTC)) is None


def test_an_answer_repeating_the_access_token_is_scrubbed(standin: Standin, ca_file: str) -> None:
    def echo(headers: dict[str, str]) -> dict[str, Any]:
        return {"error": {"code": "BadArgumentError", "message": f"got {headers.get('authorization')}"}}

    standin.state.query_script.extend([Scripted(400, {}, echo), Scripted(503, {}, echo)])
    searcher = plugin.searcher(_config(standin, ca_file))
    with pytest.raises(FatalSinkError) as refused:
        searcher.find("x", dt.datetime.now(dt.UTC))
    with pytest.raises(RetryableError) as busy:
        searcher.find("x", dt.datetime.now(dt.UTC))
    (token,) = standin.state.tokens
    for text in (str(refused.value), str(busy.value)):
        assert "got Bearer ***" in text and token not in text


@pytest.mark.parametrize(
    ("headers", "body", "shown"),
    [
        ({"Content-Type": "text/html"}, b"<html><title>Sign in</title></html>", "text/html: 'Sign in'"),
        ({}, "sign in", "application/json: '\"sign in\"'"),
        ({}, [1, 2], "application/json: '[1, 2]'"),
    ],
)
def test_a_200_that_is_not_a_json_object_says_what_answered(
    standin: Standin, ca_file: str, headers: dict[str, str], body: Any, shown: str
) -> None:
    standin.state.query_script.append(Scripted(200, headers, body))
    with pytest.raises(FatalSinkError) as info:
        plugin.searcher(_config(standin, ca_file)).find("x", dt.datetime.now(dt.UTC))
    text = str(info.value)
    assert text.startswith("sentinel: querying workspace ") and "\n" not in text
    assert f"the answer was not the Log Analytics query API's (HTTP 200, {shown})" in text
    assert "check query_endpoint" in text


def test_a_200_without_result_tables_is_a_failed_query(standin: Standin, ca_file: str) -> None:
    """Not "no such row yet": no query ran, which the canary must say if it never does."""
    standin.state.query_script.append(Scripted(200, {}, {}))
    searcher = plugin.searcher(_config(standin, ca_file))
    with pytest.raises(RetryableError) as info:
        searcher.find("x", dt.datetime.now(dt.UTC))
    text = str(info.value)
    assert text.startswith("sentinel: querying workspace ")
    assert text.endswith("failed: the answer held no result tables (HTTP 200, application/json: '{}')")
    assert searcher.find("x", dt.datetime.now(dt.UTC)) is None  # the API's own answer: no row


def test_refused_secret_is_fatal_and_not_shown(standin: Standin, ca_file: str) -> None:
    config = _config(standin, ca_file, client_secret="wrong-secret-value-123")
    with pytest.raises(FatalSinkError, match="refused") as info:
        plugin.searcher(config).find("x", dt.datetime.now(dt.UTC))
    assert "wrong-secret-value-123" not in str(info.value)


# -- trailrelay canary, end to end ---------------------------------------------------------------


def test_canary_end_to_end(standin: Standin, ca_file: str, tmp_path: Path) -> None:
    standin.state.query_latency = 0.2
    cfg = tmp_path / "trailrelay.toml"
    cfg.write_text(
        '[source]\ntype = "files"\npath = "in"\n'
        "[[sinks]]\n"
        'type = "sentinel"\nname = "sentinel"\n'
        f'endpoint = "{standin.url}"\nrule_id = "{RULE}"\nstream = "{STREAM}"\n'
        f'tenant_id = "{TENANT}"\nclient_id = "{CLIENT}"\nclient_secret = "${{SENTINEL_SECRET}}"\n'
        f'authority_host = "{standin.url}"\ndisable_instance_discovery = true\nca_bundle = "{ca_file}"\n'
        f'workspace_id = "{standin.state.workspace_id}"\nquery_endpoint = "{standin.url}"\n',
        encoding="utf-8",
    )
    args = ["-c", str(cfg), "--json", "--timeout", "30", "--poll-interval", "0.05"]
    result = CliRunner().invoke(canary, args, env={"SENTINEL_SECRET": SECRET}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.splitlines()[-1])
    assert report["ok"] and report["outcome"] == "delivered" and report["search"] == "found"
    assert 0.2 <= report["end_to_end_seconds"] < 30  # no sooner than Log Analytics made it queryable
    (row,) = standin.state.stored
    assert row["AwsEventId"] == report["event_id"] and row["UserAgent"].startswith("trailrelay-canary/")
    assert row["TrailrelayDetections"] == [
        {
            "rule_id": "a1dec8df-d230-4b22-83d6-e1097af6c067",
            "title": "AWS CloudTrail Logging Stopped",
            "severity": "critical",
            "technique": "T1562.008",
        }
    ]
    assert SECRET not in result.output
