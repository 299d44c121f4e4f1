"""``trailrelay rules list|test|export`` through click's test runner."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import orjson
from click.testing import CliRunner

from trailrelay.detection.cli import EXIT_INPUT, EXIT_RULES, EXIT_SOME_NOT_EXPORTED, rules
from trailrelay.testing import SAMPLE_EVENTS

STOP_RULE = "a1dec8df-d230-4b22-83d6-e1097af6c067"
CONSOLE_RULE = "ab5887d0-c718-4141-a516-61f5501a5e57"
OWN_RULE = """\
title: Instances described
id: 88888888-8888-4888-8888-888888888888
level: low
tags: [attack.discovery, attack.t1580]
logsource: {product: aws, service: cloudtrail}
detection:
    sel:
        eventName: DescribeInstances
    condition: sel
falsepositives: [everything]
"""


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(rules, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def trail(tmp_path: Path) -> Path:
    folder = tmp_path / "AWSLogs"
    folder.mkdir()
    (folder / "one.json.gz").write_bytes(gzip.compress(orjson.dumps({"Records": SAMPLE_EVENTS})))
    (folder / "README.txt").write_text("not a log", encoding="utf-8")
    return folder


def test_list_shows_the_pack(tmp_path: Path) -> None:
    code, out, err = run("list")
    assert code == 0 and "20 rules" in err
    assert STOP_RULE in out and "AWS CloudTrail Logging Stopped" in out
    code, out, _ = run("list", "--json")
    infos = [json.loads(line) for line in out.splitlines()]
    assert {i["kind"] for i in infos} == {"rule", "base", "correlation"}
    assert all(i["origin"].startswith("pack:") for i in infos)


def test_test_prints_one_json_line_per_match_then_a_summary(tmp_path: Path) -> None:
    code, out, err = run("test", str(trail(tmp_path)))
    lines = [json.loads(line) for line in out.splitlines()]
    matches, summary = lines[:-1], lines[-1]["summary"]
    assert code == 0, err
    assert [(m["rule_id"], m["eventName"], m["severity"]) for m in matches] == [
        (STOP_RULE, "StopLogging", "critical"),
        (CONSOLE_RULE, "ConsoleLogin", "high"),
    ]
    assert matches[0]["eventID"] == SAMPLE_EVENTS[0]["eventID"] and matches[0]["title"]
    assert summary["records"] == len(SAMPLE_EVENTS) and summary["matches"] == 2 and summary["files"] == 1
    assert summary["by_rule"] == {"AWS CloudTrail Logging Stopped": 1, "AWS Console Login Without MFA": 1}
    assert summary["skipped_files"][0]["reason"] == "not-a-log-file" and summary["unreadable_files"] == []


def test_test_with_own_rules_and_without_the_pack(tmp_path: Path) -> None:
    rule = tmp_path / "own.yml"
    rule.write_text(OWN_RULE, encoding="utf-8")
    code, out, _ = run("test", "--no-pack", "--rules", str(rule), str(trail(tmp_path)))
    titles = [json.loads(line).get("title") for line in out.splitlines()[:-1]]
    assert code == 0 and titles == ["Instances described"]


def test_no_rules_loaded_is_nothing_checked_not_a_pass(tmp_path: Path) -> None:
    """--no-pack without --rules: test and export exited 0 with 0 rules tested or exported."""
    folder = trail(tmp_path)
    code, out, err = run("test", "--no-pack", str(folder))
    assert code == EXIT_RULES and out == ""
    assert err.startswith("error: no rules were loaded, so there is nothing to test")
    config = tmp_path / "trailrelay.toml"
    config.write_text("[detection]\npack = false\n", encoding="utf-8")
    for siem in ("splunk", "sentinel"):
        code, out, err = run("export", "-c", str(config), "--siem", siem)
        assert code == EXIT_RULES and out == ""
        assert "no rules were loaded, so there is nothing to export" in err
    code, _, err = run("list", "--no-pack")  # listing none is an answer, not a check
    assert code == 0 and "0 rules" in err


def test_a_fractional_or_negative_count_is_refused_by_test_and_export(tmp_path: Path) -> None:
    """``gte: 1.5`` tagged from the first event (pySigma rounds it down), the exports said ``>= 1``."""
    rule, folder = tmp_path / "corr.yml", trail(tmp_path)
    for condition in ("{gte: 1.5}", "{gt: -1}"):
        rule.write_text(
            OWN_RULE.replace("title: Instances described", "title: Instances described\nname: described")
            + "---\ntitle: Described twice\nid: 99999999-9999-4999-8999-999999999999\nlevel: high\n"
            "correlation:\n  type: event_count\n  rules: [described]\n  group-by: [userIdentity.arn]\n"
            f"  timespan: 10m\n  condition: {condition}\n",
            encoding="utf-8",
        )
        said = f"error: {rule}: correlation 'Described twice': condition {condition[1:-1]} is not a count of events"
        code, out, err = run("test", "--no-pack", "--rules", str(rule), str(folder))
        assert (code, out) == (EXIT_RULES, "") and err.startswith(said), err
        code, out, err = run("export", "--no-pack", "--rules", str(rule), "--siem", "splunk")
        assert (code, out) == (EXIT_RULES, "") and err.startswith(said), err


def test_config_file_detection_table(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "own.yml").write_text(OWN_RULE, encoding="utf-8")
    config = tmp_path / "trailrelay.toml"
    config.write_text('[detection]\nrules = ["rules"]\npack = false\n', encoding="utf-8")
    code, out, _ = run("list", "-c", str(config), "--json")
    assert code == 0 and [json.loads(line)["title"] for line in out.splitlines()] == ["Instances described"]
    config.write_text("[detection]\nrulez = []\n", encoding="utf-8")
    code, _, err = run("list", "-c", str(config))
    assert code == EXIT_RULES and "rulez" in err


def test_corrupt_input_is_reported_and_the_rest_is_read(tmp_path: Path) -> None:
    folder = trail(tmp_path)
    (folder / "broken.json.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    code, out, _ = run("test", str(folder))
    summary = json.loads(out.splitlines()[-1])["summary"]
    assert code == EXIT_INPUT
    assert summary["matches"] == 2 and summary["unreadable_files"][0]["file"].endswith("broken.json.gz")


def test_reading_no_records_is_a_failure_not_a_clean_test(tmp_path: Path) -> None:
    """A folder without log files tested nothing: that must not look like "no alerts"."""
    folder = tmp_path / "exports"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a log", encoding="utf-8")
    (folder / "empty.json.gz").write_bytes(gzip.compress(b'{"Records": []}'))
    code, out, err = run("test", str(folder))
    assert code == EXIT_INPUT
    assert "no CloudTrail records were read, so no rule was tested" in err
    summary = json.loads(out.splitlines()[-1])["summary"]
    assert summary["records"] == 0 and summary["skipped_files"][0]["reason"] == "not-a-log-file"
    code, _, err = run("test", str(trail(tmp_path)))
    assert code == 0 and "from 2 of" in err and "no rule was tested" not in err


def test_bad_rule_paths_exit_with_the_path_named(tmp_path: Path) -> None:
    code, _, err = run("list", "--rules", str(tmp_path / "nope"))
    assert code == EXIT_RULES and "nope does not exist" in err
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "title: x\nlogsource: {product: aws, service: cloudtrail}\ndetection: {}\n", encoding="utf-8"
    )
    code, _, err = run("test", "--rules", str(bad), str(trail(tmp_path)))
    assert code == EXIT_RULES and "bad.yml" in err


def test_export_to_stdout_and_file(tmp_path: Path) -> None:
    code, out, _ = run("export", "--siem", "elastic")
    assert code == 0 and len(out.splitlines()) == 19
    target = tmp_path / "rules.conf"
    code, out, err = run("export", "--siem", "splunk", "--index", "aws", "--out", str(target))
    assert code == 0 and out == "" and "wrote" in err
    assert 'search = index="aws" sourcetype="aws:cloudtrail"' in target.read_text(encoding="utf-8")
    code, out, _ = run("export", "--siem", "sentinel")
    assert code == 0 and json.loads(out)["resources"]


def test_export_to_a_file_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    target = tmp_path / "a-file" / "rules.conf"
    code, out, err = run("export", "--siem", "splunk", "--out", str(target))
    assert code == EXIT_RULES and out == ""
    assert err == f"error: cannot write {target}: Not a directory\n"


FIELDREF_RULE = """\
title: Password changed for another user
id: 7d1f3c2a-5b8e-4f60-9a11-2c3d4e5f6a7b
status: experimental
description: A console password changed by someone other than its owner (field reference, as SigmaHQ's aws_update_login_profile.yml).
logsource:
    product: aws
    service: cloudtrail
detection:
    selection:
        eventSource: iam.amazonaws.com
        eventName: UpdateLoginProfile
    filter_self:
        userIdentity.arn|fieldref: requestParameters.userName
    condition: selection and not filter_self
level: high
"""


def test_export_of_a_rule_a_backend_cannot_convert_is_a_clean_message(tmp_path: Path) -> None:
    """Kusto has no field references: no traceback, the rule named with the reason, nothing written."""
    rule = tmp_path / "fieldref.yml"
    rule.write_text(FIELDREF_RULE)
    for siem in ("sentinel", "elastic"):
        result = CliRunner().invoke(rules, ["export", "--siem", siem, "--no-pack", "--rules", str(rule)])
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        assert result.exit_code == EXIT_RULES, (siem, result.output)
        assert f"{rule}: rule 'Password changed for another user' cannot be exported" in result.stderr
        assert "Traceback" not in result.output and result.stdout == ""


def test_export_of_a_folder_exports_what_converts_and_names_the_rest(tmp_path: Path) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "fieldref.yml").write_text(FIELDREF_RULE)
    (folder / "own.yml").write_text(OWN_RULE)
    out = tmp_path / "template.json"
    result = CliRunner().invoke(
        rules, ["export", "--siem", "sentinel", "--no-pack", "--rules", str(folder), "--out", str(out)]
    )
    assert result.exit_code == EXIT_SOME_NOT_EXPORTED, result.output
    names = [r["properties"]["displayName"] for r in json.loads(out.read_text())["resources"]]
    assert len(names) == 1 and "Password changed" not in names[0]
    assert "fieldref.yml: rule 'Password changed for another user' cannot be exported" in result.stderr
    assert "1 rules could not be exported" in result.stderr


def test_a_bad_detection_table_names_every_problem(tmp_path: Path) -> None:
    cfg = tmp_path / "t.toml"
    cfg.write_text('[detection]\npack = "maybe"\npacks = true\nrule = []\n')
    code, _, err = run("list", "-c", str(cfg))
    assert code == EXIT_RULES
    assert "detection.pack: Expected `bool`" in err
    assert "detection.packs: unknown key" in err and "detection.rule: unknown key" in err
