"""`trailrelay canary` with the built-in file sink (which cannot search)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from trailrelay.cli.canary import (
    CANARY_EVENT_PREFIX,
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_FATAL,
    canary,
    canary_event,
    canary_record,
    run_canary,
)
from trailrelay.config import load_config

SOURCE = '[source]\ntype = "files"\npath = "in"\n'


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "trailrelay.toml"
    path.write_text(SOURCE + body, encoding="utf-8")
    return path


def _run(path: Path, *args: str) -> Result:
    return CliRunner().invoke(canary, ["-c", str(path), *args], catch_exceptions=False)


def _json(result: Result) -> dict[str, Any]:
    return json.loads(result.output.strip().splitlines()[-1])


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_file_sink_delivers_and_says_search_is_not_available(tmp_path: Path) -> None:
    cfg = _config(tmp_path, '[[sinks]]\ntype = "file"\nname = "archive"\npath = "out/ct.ndjson"\n')
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    result = _run(cfg, "--sink", "archive", "--json")
    assert result.exit_code == 0, result.output
    report = _json(result)
    assert report["ok"] is True and report["reason"] is None
    assert report["sink"] == "archive" and report["type"] == "file"
    assert report["outcome"] == "delivered" and report["delivery_seconds"] is not None
    assert report["search"] == "unavailable" and report["end_to_end_seconds"] is None
    assert any("cannot search" in n for n in report["notes"])
    assert report["rules"] == ["a1dec8df-d230-4b22-83d6-e1097af6c067"]  # the pack's StopLogging rule
    assert report["detections"][0]["severity"] == "critical"
    (written,) = _lines(tmp_path / "out" / "ct.ndjson")
    assert written["eventID"] == report["event_id"] and written["eventID"].startswith(CANARY_EVENT_PREFIX)
    assert written["eventName"] == "StopLogging" and written["eventSource"] == "cloudtrail.amazonaws.com"
    assert written["userAgent"].startswith("trailrelay-canary/")
    assert written["sourceIPAddress"] == "192.0.2.1"
    assert written["requestParameters"] == {"name": "trailrelay-canary"}
    assert written["additionalEventData"]["trailrelayCanary"] is True
    assert "errorCode" not in written
    sent = dt.datetime.fromisoformat(written["eventTime"])
    assert before <= sent <= dt.datetime.now(dt.UTC)


def test_lines_output(tmp_path: Path) -> None:
    cfg = _config(tmp_path, '[[sinks]]\ntype = "file"\npath = "out.ndjson"\n')
    result = _run(cfg)  # one sink: --sink is optional
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"canary {CANARY_EVENT_PREFIX}") and lines[0].endswith("-> sink file (file)")
    assert "  detection: AWS CloudTrail Logging Stopped (critical, rule a1dec8df" in result.output
    assert "  delivery: delivered after " in result.output
    assert "  search: unavailable" in result.output
    assert lines[-1] == "OK"


def test_canary_events_are_distinct_and_tagged_by_the_pack(tmp_path: Path) -> None:
    a, b = canary_event(), canary_event(account="111122223333", region="eu-west-1")
    assert a["eventID"] != b["eventID"] and a["requestID"] != b["requestID"]
    assert b["recipientAccountId"] == "111122223333" and b["awsRegion"] == "eu-west-1"
    record = canary_record(b)
    assert record.routing.category == "Management" and record.routing.read_only is False
    cfg = load_config(_config(tmp_path, '[[sinks]]\ntype = "file"\npath = "o.ndjson"\n'))
    report = run_canary(cfg, account="111122223333", region="eu-west-1")
    assert report.ok and report.exit_code == 0
    assert _lines(tmp_path / "o.ndjson")[0]["recipientAccountId"] == "111122223333"


def test_global_filter_that_drops_the_canary_fails_and_sends_nothing(tmp_path: Path) -> None:
    cfg = _config(
        tmp_path,
        '[filter]\nrules = [{name = "no trail changes", action = "drop", event_source = ["cloudtrail.*"]}]\n'
        '[[sinks]]\ntype = "file"\npath = "out.ndjson"\n',
    )
    result = _run(cfg, "--json")
    assert result.exit_code == EXIT_FAILED
    report = _json(result)
    assert report["outcome"] == "filtered" and "'no trail changes'" in report["reason"]
    assert report["search"] == "not run"
    assert not (tmp_path / "out.ndjson").exists()


def test_sink_filter_that_drops_the_canary_fails(tmp_path: Path) -> None:
    cfg = _config(
        tmp_path,
        '[[sinks]]\ntype = "file"\npath = "out.ndjson"\n'
        'filter = {default = "drop", rules = [{name = "reads only", action = "keep", read_only = true}]}\n',
    )
    result = _run(cfg, "--json")
    assert result.exit_code == EXIT_FAILED
    report = _json(result)
    assert report["outcome"] == "filtered" and "the sink's filter" in report["reason"]
    assert "'(default)'" in report["reason"]


def test_untagged_canary_is_a_failure_but_still_delivered(tmp_path: Path) -> None:
    cfg = _config(tmp_path, '[detection]\npack = false\n[[sinks]]\ntype = "file"\npath = "out.ndjson"\n')
    result = _run(cfg, "--json")
    assert result.exit_code == EXIT_FAILED
    report = _json(result)
    assert report["rules"] == [] and "did not tag" in report["reason"]
    assert report["outcome"] == "delivered"
    assert len(_lines(tmp_path / "out.ndjson")) == 1


def test_privacy_profile_is_applied_as_in_forward(tmp_path: Path) -> None:
    cfg = _config(
        tmp_path,
        '[[sinks]]\ntype = "file"\npath = "out.ndjson"\n'
        '[privacy]\ndefault = "ip"\n[privacy.profiles.ip]\n'
        'fields = [{path = "sourceIPAddress", method = "truncate"}]\n',
    )
    result = _run(cfg, "--json")
    assert result.exit_code == 0, result.output
    assert any("privacy profile 'ip' applied" in n for n in _json(result)["notes"])
    (written,) = _lines(tmp_path / "out.ndjson")
    assert written["sourceIPAddress"] == "192.0.2.0"


def test_privacy_profile_that_removes_the_event_id_is_refused(tmp_path: Path) -> None:
    cfg = _config(
        tmp_path,
        '[[sinks]]\ntype = "file"\npath = "out.ndjson"\n'
        '[privacy]\ndefault = "p"\n[privacy.profiles.p]\nfields = [{path = "eventID", method = "drop"}]\n',
    )
    result = _run(cfg, "--json")
    assert result.exit_code == EXIT_FAILED
    assert "changes eventID" in _json(result)["reason"]
    assert not (tmp_path / "out.ndjson").exists()


def test_write_errors_are_retried_until_the_timeout(tmp_path: Path) -> None:
    cfg = _config(tmp_path, '[[sinks]]\ntype = "file"\npath = "/dev/full"\n')  # every write: ENOSPC
    result = _run(cfg, "--json", "--timeout", "0.5")
    assert result.exit_code == EXIT_FAILED
    report = _json(result)
    assert report["outcome"] == "not delivered"
    assert "not delivered within 0.5s" in report["reason"] and "write failed" in report["reason"]
    assert not list((tmp_path / "dead-letters").glob("*.ndjson"))  # a timeout is not a rejection


def test_records_the_pipeline_gives_up_on_are_dead_lettered(tmp_path: Path) -> None:
    cfg = _config(tmp_path, '[[sinks]]\ntype = "file"\npath = "/dev/full"\nmax_retry_seconds = 0.2\n')
    result = _run(cfg, "--json", "--timeout", "10")
    assert result.exit_code == EXIT_FAILED
    report = _json(result)
    assert report["outcome"] == "rejected" and "dead-lettered in" in report["reason"]
    (dead,) = (tmp_path / "dead-letters").glob("*.ndjson")
    entry = json.loads(dead.read_text().splitlines()[0])
    assert entry["sink"] == "file" and report["event_id"] in entry["raw"]
    assert "gave up after" in entry["reason"]


def test_a_sink_that_cannot_start_is_fatal(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("not a folder")
    cfg = _config(tmp_path, '[[sinks]]\ntype = "file"\npath = "afile/out.ndjson"\n')
    result = _run(cfg, "--json")
    assert result.exit_code == EXIT_FATAL
    assert "the sink cannot start" in _json(result)["reason"]


def test_sink_choice_errors_are_config_errors(tmp_path: Path) -> None:
    cfg = _config(
        tmp_path,
        '[[sinks]]\ntype = "file"\nname = "a"\npath = "a.ndjson"\n'
        '[[sinks]]\ntype = "file"\nname = "b"\npath = "b.ndjson"\n',
    )
    result = CliRunner().invoke(canary, ["-c", str(cfg)])
    assert result.exit_code == EXIT_CONFIG and "choose one with --sink" in result.output
    result = CliRunner().invoke(canary, ["-c", str(cfg), "--sink", "c"])
    assert (
        result.exit_code == EXIT_CONFIG and "no sink named 'c'" in result.output and "a, b" in result.output
    )
    assert _run(cfg, "--sink", "b").exit_code == 0
    assert not (tmp_path / "a.ndjson").exists() and (tmp_path / "b.ndjson").exists()


def test_keyed_pseudonyms_and_no_secret_in_the_output(tmp_path: Path) -> None:
    secret = "FAKESECRET-canary-key-0123456789-ABCDEFGHIJKLMN"
    (tmp_path / "key.txt").write_text(secret + "\n")
    cfg = _config(
        tmp_path,
        '[[sinks]]\ntype = "file"\npath = "out.ndjson"\n'
        f'[privacy]\nkey_file = "{tmp_path / "key.txt"}"\ndefault = "standard"\n',
    )
    for args in (["--json"], []):
        result = _run(cfg, *args)
        assert result.exit_code == 0, result.output
        assert secret not in result.output
    written = _lines(tmp_path / "out.ndjson")
    assert len(written) == 2 and all(w["eventID"].startswith(CANARY_EVENT_PREFIX) for w in written)
    assert all("tr1_" in json.dumps(w) for w in written)  # the standard profile pseudonymized it
    assert secret not in (tmp_path / "out.ndjson").read_text()
