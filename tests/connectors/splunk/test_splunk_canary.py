"""The Splunk searcher (oneshot search on the management port) and `trailrelay canary` end to end."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from splunk_hec_standin import HecStandIn
from splunk_mgmt_standin import MgmtStandIn, search_reply
from splunk_testkit import TOKEN, context, make_config
from splunklib import results

from trailrelay.cli.canary import canary, canary_event, canary_record
from trailrelay.contract import Batch, ConfigError, FatalSinkError, RetryableError, Searcher, Secret, Status
from trailrelay.testing import settled
from trailrelay_splunk.management import ManagementTarget, connect
from trailrelay_splunk.plugin import plugin
from trailrelay_splunk.sink import SplunkSink


@pytest.fixture
def api(hec: HecStandIn) -> Iterator[MgmtStandIn]:
    """The management stand-in, searching what the HEC stand-in indexed."""
    server = MgmtStandIn().start()
    server.events = hec.indexed
    yield server
    server.stop()


def _config(hec: HecStandIn, api: MgmtStandIn, **overrides: Any) -> Any:
    keys: dict[str, Any] = {
        "management_url": api.url,
        "username": api.username,
        "password": api.password,
        **overrides,
    }
    return make_config(hec.url, **keys)


def _send_canary(hec: HecStandIn, api: MgmtStandIn, **overrides: Any) -> str:
    record = canary_record(canary_event())
    sink = SplunkSink(_config(hec, api, **overrides), context())
    assert [o.status for o in settled(sink.send(Batch([record])))] == [Status.DELIVERED]
    sink.close()
    return str(record.event_id)


def test_searcher_finds_the_event_once_indexed(hec: HecStandIn, api: MgmtStandIn) -> None:
    searcher = plugin.searcher(_config(hec, api))
    assert isinstance(searcher, Searcher)
    since = dt.datetime.now(dt.UTC)
    assert searcher.find("trailrelay-canary-not-sent", since) is None
    event_id = _send_canary(hec, api)
    found = searcher.find(event_id, since)
    assert found is not None
    assert found == dt.datetime.fromtimestamp(int(hec.indexed_at[0]), dt.UTC)  # _indextime
    search = [s for s in api.seen if s.path.rstrip("/").endswith("/jobs")][-1]
    assert f'index="cloudtrail" sourcetype="aws:cloudtrail" eventID="{event_id}"' in search.params["search"]
    assert search.params["exec_mode"] == "oneshot" and search.params["output_mode"] == "json"
    assert float(search.params["earliest_time"]) < since.timestamp()  # lookback before the send
    assert float(search.params["latest_time"]) > dt.datetime.now(dt.UTC).timestamp()  # clock skew
    searcher.close()


def test_searcher_finds_only_that_event(hec: HecStandIn, api: MgmtStandIn) -> None:
    """A row of another event (a search term matching more than the field) is not the canary."""
    event_id = _send_canary(hec, api)
    other = "trailrelay-canary-00000000-0000-0000-0000-000000000000"
    api.search_replies.append(search_reply("oneshot_canary.json", event_id=other))
    searcher = plugin.searcher(_config(hec, api))
    assert searcher.find(event_id, dt.datetime.now(dt.UTC)) is None
    assert searcher.find(event_id, dt.datetime.now(dt.UTC)) is not None  # the stand-in's own search


def test_searcher_without_an_index_searches_every_index(hec: HecStandIn, api: MgmtStandIn) -> None:
    event_id = _send_canary(hec, api, index=None)
    searcher = plugin.searcher(_config(hec, api, index=None))
    assert searcher.find(event_id, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)) is not None
    search = [s for s in api.seen if s.path.rstrip("/").endswith("/jobs")][-1]
    assert search.params["search"].startswith('search index="*" sourcetype="aws:cloudtrail"')


def test_searcher_with_a_management_token(hec: HecStandIn, api: MgmtStandIn) -> None:
    event_id = _send_canary(hec, api)
    config = make_config(hec.url, management_url=api.url, management_token=api.bearer)
    assert plugin.searcher(config).find(event_id, dt.datetime.now(dt.UTC)) is not None


def test_searcher_needs_management_settings(hec: HecStandIn) -> None:
    with pytest.raises(ConfigError, match="management_url"):
        plugin.searcher(make_config(hec.url))
    with pytest.raises(ConfigError, match="management_token, or username"):
        plugin.searcher(make_config(hec.url, management_url="https://splunk.example:8089"))
    with pytest.raises(ConfigError, match="together"):
        make_config(hec.url, username="admin")


def test_refused_login_is_fatal_and_secret_free(hec: HecStandIn, api: MgmtStandIn) -> None:
    searcher = plugin.searcher(_config(hec, api, password="wrong-pass-123"))
    with pytest.raises(FatalSinkError, match="refused the login") as info:
        searcher.find("x", dt.datetime.now(dt.UTC))
    assert "wrong-pass-123" not in str(info.value)
    assert "wrong-pass-123" not in repr(_config(hec, api, password="wrong-pass-123"))


def test_a_failing_search_is_retryable_and_the_next_one_works(hec: HecStandIn, api: MgmtStandIn) -> None:
    event_id = _send_canary(hec, api)
    searcher = plugin.searcher(_config(hec, api))
    api.search_failures.append(503)
    with pytest.raises(RetryableError, match="503"):
        searcher.find(event_id, dt.datetime.now(dt.UTC))
    assert searcher.find(event_id, dt.datetime.now(dt.UTC)) is not None
    api.search_failures.append(400)
    with pytest.raises(FatalSinkError, match="400"):
        searcher.find(event_id, dt.datetime.now(dt.UTC))


def test_an_answer_that_is_not_search_results_is_one_line(hec: HecStandIn, api: MgmtStandIn) -> None:
    """A proxy's sign-in page answering 200 is a failed search in one line, not a JSONDecodeError."""
    api.search_replies.extend(["<html><title>Please sign in</title></html>", ""])
    searcher = plugin.searcher(_config(hec, api))
    with pytest.raises(RetryableError) as info:
        searcher.find("x", dt.datetime.now(dt.UTC))
    assert str(info.value) == (
        "splunk: the verification search failed: the answer was not splunkd's search results ('Please sign in')"
    )
    assert searcher.find("x", dt.datetime.now(dt.UTC)) is None  # empty: what splunkd answers for no results


@pytest.mark.parametrize("login", ["token", "password"])
def test_an_error_repeating_the_authorization_is_scrubbed(
    hec: HecStandIn, api: MgmtStandIn, login: str
) -> None:
    """A proxy's error page quoting the Authorization header: no token or session key in the error."""
    api.echo_auth = True
    api.search_failures.extend([503, 400])
    keys = {"management_token": api.bearer} if login == "token" else {}
    config = make_config(hec.url, management_url=api.url, **keys) if keys else _config(hec, api)
    searcher = plugin.searcher(config)
    with pytest.raises(RetryableError, match="503") as busy:
        searcher.find("x", dt.datetime.now(dt.UTC))
    with pytest.raises(FatalSinkError, match="400") as refused:
        searcher.find("x", dt.datetime.now(dt.UTC))
    for text in (str(busy.value), str(refused.value)):
        assert "Authorization: Bearer ***" in text or "Authorization: Splunk ***" in text
        assert api.bearer not in text and api.session not in text


@pytest.mark.filterwarnings("ignore:ResultsReader is deprecated")
def test_standin_xml_results_are_what_splunk_sdk_reads(hec: HecStandIn, api: MgmtStandIn) -> None:
    """The stand-in's default (XML) results format, read by splunk-sdk's own ResultsReader."""
    event_id = _send_canary(hec, api)
    service = connect(ManagementTarget(api.url, api.username, Secret(api.password)))
    stream = service.jobs.oneshot(f'search index="cloudtrail" eventID="{event_id}"', count=0)
    rows = [r for r in results.ResultsReader(stream) if isinstance(r, dict)]
    assert [r["eventID"] for r in rows] == [event_id]
    assert rows[0]["eventName"] == "StopLogging"


# -- trailrelay canary, end to end ---------------------------------------------------------------


def _toml(tmp_path: Path, hec: HecStandIn, api: MgmtStandIn, *, password: str) -> Path:
    path = tmp_path / "trailrelay.toml"
    path.write_text(
        '[source]\ntype = "files"\npath = "in"\n'
        "[[sinks]]\n"
        'type = "splunk"\nname = "siem"\n'
        f'url = "{hec.url}"\ntoken = "{TOKEN}"\nindex = "cloudtrail"\nack = true\n'
        "ack_poll_interval = 0.01\n"
        f'management_url = "{api.url}"\nusername = "{api.username}"\npassword = "{password}"\n',
        encoding="utf-8",
    )
    return path


@pytest.fixture
def api_ack(hec_ack: HecStandIn) -> Iterator[MgmtStandIn]:
    server = MgmtStandIn().start()
    server.events = hec_ack.indexed
    yield server
    server.stop()


def test_canary_end_to_end(tmp_path: Path, hec_ack: HecStandIn, api_ack: MgmtStandIn) -> None:
    api_ack.search_failures.append(503)  # one transient search failure on the way
    cfg = _toml(tmp_path, hec_ack, api_ack, password=api_ack.password)
    args = ["-c", str(cfg), "--sink", "siem", "--json", "--timeout", "30", "--poll-interval", "0.05"]
    result = CliRunner().invoke(canary, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.splitlines()[-1])
    assert report["ok"] and report["outcome"] == "delivered" and report["search"] == "found"
    assert 0 < report["delivery_seconds"] <= report["end_to_end_seconds"] < 30
    assert report["indexed_at"] is not None
    (envelope,) = hec_ack.stored
    assert envelope["event"]["eventID"] == report["event_id"]
    assert envelope["source"] == "trailrelay-canary" and envelope["index"] == "cloudtrail"
    # The detection travels as indexed fields (the default `fields = ["risk"]`).
    assert envelope["fields"] == {
        "trailrelay_rule": ["a1dec8df-d230-4b22-83d6-e1097af6c067"],
        "trailrelay_severity": "critical",
        "trailrelay_technique": ["T1562.008"],
    }
    searches = [s for s in api_ack.seen if s.path.rstrip("/").endswith("/jobs")]
    assert len(searches) >= 2 and searches[0].status == 503


def test_canary_fails_when_the_search_finds_another_event(
    tmp_path: Path, hec_ack: HecStandIn, api_ack: MgmtStandIn
) -> None:
    other = "trailrelay-canary-00000000-0000-0000-0000-000000000000"
    api_ack.search_replies.extend([search_reply("oneshot_canary.json", event_id=other)] * 1000)
    cfg = _toml(tmp_path, hec_ack, api_ack, password=api_ack.password)
    args = ["-c", str(cfg), "--json", "--timeout", "0.5", "--poll-interval", "0.05"]
    result = CliRunner().invoke(canary, args, catch_exceptions=False)
    assert result.exit_code == 1, result.output
    report = json.loads(result.output.splitlines()[-1])
    assert report["outcome"] == "delivered" and report["search"] == "not found"
    assert report["indexed_at"] is None


def test_canary_logs_and_reports_search_errors_without_the_token(
    tmp_path: Path, hec_ack: HecStandIn, api_ack: MgmtStandIn
) -> None:
    api_ack.echo_auth = True
    api_ack.search_failures.extend([503] * 1000)
    cfg = tmp_path / "trailrelay.toml"
    cfg.write_text(
        '[source]\ntype = "files"\npath = "in"\n[[sinks]]\ntype = "splunk"\nname = "siem"\n'
        f'url = "{hec_ack.url}"\ntoken = "{TOKEN}"\nindex = "cloudtrail"\nack = true\n'
        f'ack_poll_interval = 0.01\nmanagement_url = "{api_ack.url}"\n'
        f'management_token = "{api_ack.bearer}"\n',
        encoding="utf-8",
    )
    args = ["-c", str(cfg), "--timeout", "0.5", "--poll-interval", "0.05"]
    result = CliRunner().invoke(canary, args, catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert "canary search failed (will retry)" in result.output
    assert "  search: error" in result.output
    assert "the search itself failed until the timeout: splunk: the verification" in result.output
    assert "Authorization: Bearer ***" in result.output
    assert api_ack.bearer not in result.output and TOKEN not in result.output


def test_canary_reports_a_search_timeout(tmp_path: Path, hec_ack: HecStandIn, api_ack: MgmtStandIn) -> None:
    api_ack.events = list  # a Splunk that never makes the event searchable
    cfg = _toml(tmp_path, hec_ack, api_ack, password=api_ack.password)
    args = ["-c", str(cfg), "--json", "--timeout", "0.5", "--poll-interval", "0.05"]
    result = CliRunner().invoke(canary, args, catch_exceptions=False)
    assert result.exit_code == 1
    report = json.loads(result.output.splitlines()[-1])
    assert report["outcome"] == "delivered" and report["search"] == "not found"
    assert "not searchable within the timeout" in report["reason"]


def test_canary_with_refused_management_login_is_fatal(
    tmp_path: Path, hec_ack: HecStandIn, api_ack: MgmtStandIn
) -> None:
    cfg = _toml(tmp_path, hec_ack, api_ack, password="wrong-pass-123")
    result = CliRunner().invoke(canary, ["-c", str(cfg), "--timeout", "5"], catch_exceptions=False)
    assert result.exit_code == 3
    assert "searching failed: splunk: Splunk at" in result.output and "refused the login" in result.output
    assert "wrong-pass-123" not in result.output
