"""The command line, driven as a user drives it."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from trailrelay import __version__
from trailrelay.cli.main import _warn_if_nothing_found, cli
from trailrelay.config import load_config
from trailrelay.pipeline import build
from trailrelay.pipeline.deadletter import MAX_RAW, entry, read_entries
from trailrelay.testing import SAMPLE_EVENTS


def _config(tmp: Path, body: str) -> Path:
    p = tmp / "trailrelay.toml"
    p.write_text(body)
    return p


def _forward(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``trailrelay forward -c CFG --once ARGS`` as a process; stderr on one line a message."""
    return subprocess.run(
        [sys.executable, "-m", "trailrelay", "forward", "-c", str(cfg), "--once", "--no-progress", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "COLUMNS": "500"},  # rich wraps at 80 columns off a terminal
    )


def test_sinks_lists_builtins_with_versions() -> None:
    result = CliRunner().invoke(cli, ["sinks"])
    assert result.exit_code == 0
    assert "file" in result.output
    assert "stdout" in result.output
    assert __version__ in result.output


def test_forward_files_to_file_with_summary(tmp_path: Path, make_object: Any, make_events: Any) -> None:
    evs = make_events(30)
    make_object(tmp_path / "in" / "a.json.gz", evs)
    cfg = _config(
        tmp_path, '[source]\ntype = "files"\npath = "in"\n[[sinks]]\ntype = "file"\npath = "out/ct.ndjson"\n'
    )
    result = CliRunner().invoke(cli, ["forward", "-c", str(cfg), "--summary-json", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "out" / "ct.ndjson").read_bytes().splitlines()
    assert sorted(orjson.loads(x)["eventID"] for x in lines) == sorted(e["eventID"] for e in evs)
    summary = orjson.loads((tmp_path / "s.json").read_bytes())
    assert summary["records_in"] == 30
    assert summary["delivered"] == {"file": 30}
    again = CliRunner().invoke(cli, ["forward", "-c", str(cfg), "--summary-json", str(tmp_path / "s2.json")])
    assert again.exit_code == 0
    assert orjson.loads((tmp_path / "s2.json").read_bytes())["records_in"] == 0  # checkpointed


def test_forward_writes_a_pretty_printed_record_s_numbers_as_they_were(tmp_path: Path) -> None:
    """A record spread over several lines came out of the file sink with its 30-digit integer
    turned into 1.2345678901234568e+29 (exit 0), and one holding 1e400 was a dead letter."""
    big = dict(SAMPLE_EVENTS[0], eventID="big-1", requestParameters={"n": "N"})
    inf = dict(SAMPLE_EVENTS[1], eventID="inf-1", requestParameters={"n": "INF"})
    text = orjson.dumps({"Records": [big, inf]}, option=orjson.OPT_INDENT_2)
    text = text.replace(b'"N"', b"123456789012345678901234567890").replace(b'"INF"', b"1e400")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.json").write_bytes(text)
    cfg = _config(
        tmp_path, '[source]\ntype = "files"\npath = "in"\n[[sinks]]\ntype = "file"\npath = "out.ndjson"\n'
    )
    result = CliRunner().invoke(cli, ["forward", "-c", str(cfg), "--summary-json", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "out.ndjson").read_bytes().splitlines()
    assert len(lines) == 2
    assert b'"requestParameters":{"n":123456789012345678901234567890}' in lines[0]
    assert b'"requestParameters":{"n":1e400}' in lines[1]
    assert orjson.loads((tmp_path / "s.json").read_bytes())["delivered"] == {"file": 2}


def test_the_summary_says_what_a_sink_s_own_filter_kept_out(
    tmp_path: Path, make_object: Any, make_events: Any
) -> None:
    """SIEM sinks keep data events out by default: 540 of 200,000 records were "delivered" short
    of "read" with nothing in the table to say why (only --summary-json had it)."""
    evs = make_events(10)
    make_object(tmp_path / "in" / "a.json.gz", evs)
    sink = '[[sinks]]\ntype = "file"\npath = "out/ct.ndjson"\n'
    sink += 'filter = {rules = [{name = "no-gets", action = "drop", event_name = ["Get*"]}]}\n'
    cfg = _config(tmp_path, '[source]\ntype = "files"\npath = "in"\n' + sink)
    result = CliRunner().invoke(cli, ["forward", "-c", str(cfg), "--log-format", "text"])
    assert result.exit_code == 0, result.output
    dropped = sum(1 for e in evs if e["eventName"].startswith("Get"))
    assert 0 < dropped < len(evs)
    out = " ".join(result.output.split())
    assert f"not sent to file (its filter) │ {dropped}" in out, out
    assert f"delivered to file │ {len(evs) - dropped} (" in out


def test_forward_config_error_exit_code_and_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECRET_THING", "hunter2-secret-value")
    cfg = _config(
        tmp_path,
        '[source]\ntype = "files"\npath = "in"\n[[sinks]]\ntype = "file"\npath = "x"\nbatch_events = "${SECRET_THING}"\n',
    )
    result = CliRunner().invoke(cli, ["forward", "-c", str(cfg)])
    assert result.exit_code == 2
    assert "sinks[0].batch_events" in result.output
    assert "hunter2-secret-value" not in result.output


def test_check_reports_each_part(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    cfg = _config(
        tmp_path, '[source]\ntype = "files"\npath = "in"\n[[sinks]]\ntype = "file"\npath = "o/x.ndjson"\n'
    )
    ok = CliRunner().invoke(cli, ["check", "-c", str(cfg)])
    assert ok.exit_code == 0, ok.output
    assert "✓ source (files)" in ok.output
    assert "✓ sink file (file)" in ok.output
    bad = _config(tmp_path, '[source]\ntype = "files"\npath = "missing"\n[[sinks]]\ntype = "stdout"\n')
    result = CliRunner().invoke(cli, ["check", "-c", str(bad)])
    assert result.exit_code == 1
    assert "✗ source" in result.output


def test_check_builds_detection_filters_and_privacy_as_forward_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """check said ✓ on every line and exited 0 for a config forward refuses at start (exit 2): it
    loaded neither the [detection] rules nor the privacy key."""
    (tmp_path / "in").mkdir()
    (tmp_path / "bad.yml").write_text("title: [unclosed\n")
    base = (
        '[source]\ntype = "files"\npath = "in"\n[[sinks]]\ntype = "file"\nname = "a"\npath = "o.ndjson"\n'
        '[filter]\nrules = [{ name = "no-describes", action = "drop", event_name = ["Describe*"] }]\n'
    )
    body = base + '[privacy]\nkey_env = "CHECK_TEST_KEY"\ndefault = "standard"\n'
    monkeypatch.delenv("CHECK_TEST_KEY", raising=False)
    cfg = _config(tmp_path, body + '[detection]\nrules = ["bad.yml"]\n')
    result = CliRunner().invoke(cli, ["check", "-c", str(cfg)], env={"COLUMNS": "500"})
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert all(line.startswith(("✓ ", "✗ ")) for line in lines), result.output  # one line each
    detection = next(line for line in lines if line.startswith("✗ detection: "))
    assert detection.startswith(f"✗ detection: {tmp_path / 'bad.yml'}: cannot be parsed: ")
    forwarded = _forward(cfg)  # forward's own words
    assert (
        forwarded.returncode == 2
        and forwarded.stderr == f"error: {detection.removeprefix('✗ detection: ')}\n"
    )
    assert "✗ privacy: privacy.key_env: environment variable CHECK_TEST_KEY is not set" in lines
    assert "✓ filters: [filter] 1 rule, default keep" in lines
    key = "k" * 8 + "0123456789abcdef0123456789abcdef"
    monkeypatch.setenv("CHECK_TEST_KEY", key)
    cfg = _config(tmp_path, body + "[detection]\npack = false\n")
    result = CliRunner().invoke(cli, ["check", "-c", str(cfg)], env={"COLUMNS": "500"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "✓ detection: off (pack = false, no rules)" in lines
    assert "✓ privacy: sink a gets profile standard" in lines
    assert key not in result.output
    cfg = _config(tmp_path, base)  # the pack; no [privacy], no line for it
    result = CliRunner().invoke(cli, ["check", "-c", str(cfg)], env={"COLUMNS": "500"})
    assert result.exit_code == 0, result.output
    assert re.search(r"^✓ detection: \d+ rules loaded$", result.output, re.MULTILINE)
    assert "privacy" not in result.output


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one", "fleet"])
def test_an_unusable_checkpoint_database_is_a_clear_config_error(tmp_path: Path, workers: list[str]) -> None:
    """Not a traceback: the path, what is wrong with it, and exit status 2 (alone or as a fleet)."""
    (tmp_path / "in").mkdir()
    (tmp_path / "taken").write_text("a file where the state folder should be")
    cfg = _config(
        tmp_path,
        '[source]\ntype = "files"\npath = "in"\n[[sinks]]\ntype = "file"\npath = "o.ndjson"\n'
        '[state]\npath = "taken/state.sqlite"\n',
    )
    done = _forward(cfg, *workers)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"cannot use the checkpoint database {tmp_path / 'taken' / 'state.sqlite'}" in done.stderr
    assert "([state] path)" in done.stderr  # printed as text, not eaten as console markup


_OBJECTS_V0 = (
    "CREATE TABLE objects (source TEXT NOT NULL, key TEXT NOT NULL, version TEXT NOT NULL, "
    "records INTEGER NOT NULL, sha256 TEXT, done_at REAL NOT NULL, PRIMARY KEY (source, key))"
)
"""The checkpoint table as versions before schema versions made it (user_version 0)."""


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one", "fleet"])
@pytest.mark.parametrize(
    ("made", "said"),
    [
        (
            [_OBJECTS_V0.replace(", PRIMARY", ", sinks TEXT, PRIMARY"), "PRAGMA user_version = 99"],
            "a newer trailrelay wrote it (schema version 99, this one reads up to",
        ),
        (
            ["CREATE TABLE objects (source TEXT, key TEXT, done_at REAL, PRIMARY KEY (source, key))"],
            "its objects table has the columns source, key, done_at: not a checkpoint database",
        ),
        (["CREATE TABLE notes (text TEXT)"], "it has no objects table: not a checkpoint database"),
    ],
    ids=["newer", "unknown-shape", "another-database"],
)
def test_a_checkpoint_database_of_another_schema_is_refused_at_start_and_by_check(
    tmp_path: Path, make_object: Any, make_events: Any, workers: list[str], made: list[str], said: str
) -> None:
    """A newer schema (a column more) was used anyway: every insert failed, one warning an
    object, everything sent again on every run (exit 5); an older one without a version column
    was a traceback (exit 3) while ``check`` passed. Both are refused before anything is read,
    in one line saying what to do, and ``check`` fails on the same line."""
    import sqlite3

    make_object(tmp_path / "in" / "a.json.gz", make_events(3))
    (tmp_path / "st").mkdir()
    db = sqlite3.connect(tmp_path / "st" / "state.sqlite")
    for statement in made:
        db.execute(statement)
    db.commit()
    db.close()
    cfg = _config(
        tmp_path,
        '[source]\ntype = "files"\npath = "in"\n[[sinks]]\ntype = "file"\npath = "out.ndjson"\n'
        '[state]\npath = "st/state.sqlite"\n',
    )
    where = f"cannot use the checkpoint database {tmp_path / 'st' / 'state.sqlite'} ([state] path): "
    done = _forward(cfg, *workers)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count(where + said) == 1, done.stderr
    assert "set [state] path to a new file (every object is then read and sent again)" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out.ndjson").exists()
    checked = CliRunner().invoke(cli, ["check", "-c", str(cfg)], env={"COLUMNS": "500"})
    assert checked.exit_code == 1, checked.output
    assert f"✗ state: {where}{said}" in checked.output
    after = sqlite3.connect(tmp_path / "st" / "state.sqlite")
    assert after.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # left as it was


def test_a_checkpoint_database_from_before_schema_versions_is_stamped_and_kept(
    tmp_path: Path, make_object: Any, make_events: Any
) -> None:
    """What an older trailrelay finished stays finished: its database is upgraded in place."""
    import sqlite3

    obj = make_object(tmp_path / "in" / "a.json.gz", make_events(3))
    make_object(tmp_path / "in" / "b.json.gz", make_events(4, prefix="b"))
    st = obj.stat()
    db = sqlite3.connect(tmp_path / "state.sqlite")
    db.execute(_OBJECTS_V0)
    db.execute(
        "INSERT INTO objects VALUES (?, ?, ?, 3, NULL, 1.0)",
        (f"file:{(tmp_path / 'in').resolve()}", str(obj.resolve()), f"{st.st_size}:{st.st_mtime_ns}"),
    )
    db.commit()
    db.close()
    cfg = _config(
        tmp_path,
        '[source]\ntype = "files"\npath = "in"\n[[sinks]]\ntype = "file"\npath = "out.ndjson"\n'
        '[state]\npath = "state.sqlite"\n',
    )
    checked = CliRunner().invoke(cli, ["check", "-c", str(cfg)], env={"COLUMNS": "500"})
    assert checked.exit_code == 0, checked.output
    assert f"✓ state: {tmp_path / 'state.sqlite'}: 1 object finished (made by an older" in checked.output
    done = _forward(cfg)
    assert done.returncode == 0, done.stderr
    assert len((tmp_path / "out.ndjson").read_bytes().splitlines()) == 4  # b only: a was finished
    after = sqlite3.connect(tmp_path / "state.sqlite")
    assert after.execute("PRAGMA user_version").fetchone()[0] >= 1
    assert after.execute("SELECT COUNT(*) FROM objects").fetchone()[0] == 2


def _sinks_config(path: Path, *sinks: str, state: str = "") -> Path:
    """A files source (``in``) and one file sink ``NAME`` (writing ``NAME.ndjson``) per name."""
    body = '[source]\ntype = "files"\npath = "in"\n' + state
    body += "".join(f'[[sinks]]\ntype = "file"\nname = "{n}"\npath = "{n}.ndjson"\n' for n in sinks)
    path.write_text(body)
    return path


def _lines(path: Path) -> int:
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def test_two_configs_in_one_folder_each_deliver_everything(
    tmp_path: Path, make_object: Any, make_events: Any
) -> None:
    """One config per SIEM in one folder shared the default checkpoint file: the second config's
    SIEM got nothing (every object "already-done") and the run said exit 0."""
    make_object(tmp_path / "in" / "a.json.gz", make_events(3))
    make_object(tmp_path / "in" / "b.json.gz", make_events(4, prefix="b"))
    for name in ("one", "two"):
        done = _forward(_sinks_config(tmp_path / f"{name}.toml", name))
        assert done.returncode == 0, done.stderr
        assert _lines(tmp_path / f"{name}.ndjson") == 7, done.stderr
    assert sorted(p.name for p in (tmp_path / ".trailrelay").glob("*.sqlite")) == ["one.sqlite", "two.sqlite"]


def test_a_sink_that_did_not_get_finished_objects_is_warned_about_and_counted(
    tmp_path: Path, make_object: Any, make_events: Any
) -> None:
    """A sink added to a config that already ran never got the backfill, without a word. What was
    finished is still not sent again (the first sink would get it twice), but the run warns once,
    naming the sink and how to give it a backfill, and counts the objects apart."""
    make_object(tmp_path / "in" / "a.json.gz", make_events(3))
    make_object(tmp_path / "in" / "b.json.gz", make_events(4, prefix="b"))
    state = '[state]\npath = "st.sqlite"\n'
    assert _forward(_sinks_config(tmp_path / "c.toml", "first", state=state)).returncode == 0
    make_object(tmp_path / "in" / "c.json.gz", make_events(5, prefix="c"))
    summary = tmp_path / "s.json"
    both = _sinks_config(tmp_path / "c.toml", "first", "added", state=state)
    done = _forward(both, "--log-format", "text", "--summary-json", str(summary))
    assert done.returncode == 0, done.stderr
    assert (_lines(tmp_path / "first.ndjson"), _lines(tmp_path / "added.ndjson")) == (12, 5)
    assert orjson.loads(summary.read_bytes())["skipped"] == {"already-done-for-other-sinks": 2}
    warned = [line for line in done.stderr.splitlines() if "WARNING" in line]
    assert len(warned) == 1, done.stderr
    assert "finished for sink(s) first only are skipped: sink(s) added will not get them" in warned[0]
    assert "To give added a backfill, forward to it from a config of its own whose [state] path" in warned[0]
    again = _forward(both, "--summary-json", str(summary))  # c was finished for both: only a and b said
    assert again.returncode == 0, again.stderr
    assert orjson.loads(summary.read_bytes())["skipped"] == {
        "already-done-for-other-sinks": 2,
        "already-done": 1,
    }
    alone = _forward(_sinks_config(tmp_path / "c.toml", "first", state=state), "--summary-json", str(summary))
    assert alone.returncode == 0, alone.stderr
    assert orjson.loads(summary.read_bytes())["skipped"] == {"already-done": 3}
    assert "WARNING" not in alone.stderr and '"warning"' not in alone.stderr


def test_an_old_shared_checkpoint_file_is_kept_and_its_objects_count_for_the_first_sinks_seen(
    tmp_path: Path, make_object: Any, make_events: Any
) -> None:
    """Upgrading sends nothing again: ``.trailrelay/state.sqlite`` of an older version stays the
    default; what it finished counts as finished for the sinks of the first run after the
    upgrade, and another config's sinks are warned about."""
    import sqlite3

    obj = make_object(tmp_path / "in" / "a.json.gz", make_events(3))
    make_object(tmp_path / "in" / "b.json.gz", make_events(4, prefix="b"))
    (tmp_path / ".trailrelay").mkdir()
    db = sqlite3.connect(tmp_path / ".trailrelay" / "state.sqlite")
    db.execute(_OBJECTS_V0)
    st = obj.stat()
    db.execute(
        "INSERT INTO objects VALUES (?, ?, ?, 3, NULL, 1.0)",
        (f"file:{(tmp_path / 'in').resolve()}", str(obj.resolve()), f"{st.st_size}:{st.st_mtime_ns}"),
    )
    db.commit()
    db.close()
    summary = tmp_path / "s.json"
    done = _forward(_sinks_config(tmp_path / "one.toml", "one"), "--summary-json", str(summary))
    assert done.returncode == 0, done.stderr
    assert _lines(tmp_path / "one.ndjson") == 4  # b only
    assert orjson.loads(summary.read_bytes())["skipped"] == {"already-done": 1}
    other = _forward(_sinks_config(tmp_path / "two.toml", "two"), "--summary-json", str(summary))
    assert other.returncode == 0, other.stderr
    assert orjson.loads(summary.read_bytes())["skipped"] == {"already-done-for-other-sinks": 2}
    assert "sink(s) two will not get them" in other.stderr
    assert not (tmp_path / ".trailrelay" / "one.sqlite").exists()


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one", "fleet"])
@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (
            '[source]\ntype = "files"\npath = "no-such-folder"\n',
            "source path {tmp}/no-such-folder does not exist",
        ),
        (
            '[source]\ntype = "files"\npath = "in"\n[dead_letter]\npath = "taken/dl"\n',
            "cannot make the dead-letter folder {tmp}/taken/dl ([dead_letter] path)",
        ),
        (  # the next run would read its own output back as input, every run
            '[source]\ntype = "files"\npath = "."\n',
            "sink 'file' writes {tmp}/out.ndjson under the source path {tmp}: the next run would read it back",
        ),
        (
            '[source]\ntype = "files"\npath = "in"\n[dead_letter]\npath = "in/dl"\n',
            "[dead_letter] path writes {tmp}/in/dl under the source path {tmp}/in",
        ),
    ],
    ids=["missing-source", "dead-letters-unwritable", "sink-writes-into-source", "dead-letters-in-source"],
)
def test_what_would_fail_later_fails_at_start_once(
    tmp_path: Path, make_object: Any, make_events: Any, workers: list[str], extra: str, said: str
) -> None:
    """A typo'd source path used to finish "successfully" with nothing read; a dead-letter folder
    that cannot be made was found at the first bad record. Both: exit 2 before anything is read."""
    make_object(tmp_path / "in" / "a.json.gz", make_events(3))
    (tmp_path / "taken").write_text("a file where a folder should be")
    cfg = _config(tmp_path, extra + '[[sinks]]\ntype = "file"\npath = "out.ndjson"\n')
    done = _forward(cfg, *workers)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count(said.format(tmp=tmp_path)) == 1, done.stderr  # once, by the supervisor too
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out.ndjson").exists()


WINDOWS_RULE = """\
title: windows rule
id: 11111111-0000-0000-0000-00000000000f
logsource: {product: windows, service: security}
detection:
  sel:
    EventID: 4624
  condition: sel
"""


@pytest.mark.parametrize(
    ("rules", "said"),
    [(WINDOWS_RULE, " (1 skipped: `trailrelay rules list -c CONFIG` says why)"), ("", "")],
    ids=["not-for-cloudtrail", "empty-file"],
)
def test_detection_with_no_rule_that_applies_is_refused(
    tmp_path: Path, make_object: Any, make_events: Any, rules: str, said: str
) -> None:
    """pack = false with rules of which none is for CloudTrail ran silently and detected nothing,
    while ``rules test`` refused the same setup."""
    make_object(tmp_path / "in" / "a.json.gz", make_events(3))
    (tmp_path / "mine.yml").write_text(rules)
    cfg = _config(
        tmp_path,
        '[source]\ntype = "files"\npath = "in"\n[[sinks]]\ntype = "file"\npath = "out.ndjson"\n'
        '[detection]\npack = false\nrules = ["mine.yml"]\n',
    )
    done = _forward(cfg)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        "error: [detection] rules hold no rule for aws/cloudtrail and pack = false, so nothing would be "
        f"detected{said}: name CloudTrail rules, set pack = true, or leave rules out to turn detection off\n"
    )
    assert not (tmp_path / "out.ndjson").exists()
    cfg.write_text(cfg.read_text().replace('rules = ["mine.yml"]\n', ""))  # detection off: said nowhere
    off = _forward(cfg, "--log-format", "text")
    assert off.returncode == 0, off.stderr
    assert "detection" not in off.stderr and "warning" not in off.stderr.lower()
    assert len((tmp_path / "out.ndjson").read_bytes().splitlines()) == 3


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["one", "fleet"])
def test_a_health_address_in_use_is_a_config_error_before_anything_runs(
    tmp_path: Path, workers: list[str]
) -> None:
    """A traceback before; for a fleet, after its workers had started."""
    import socket

    (tmp_path / "in").mkdir()
    cfg = _config(
        tmp_path, '[source]\ntype = "files"\npath = "in"\n[[sinks]]\ntype = "file"\npath = "o.ndjson"\n'
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        where = f"127.0.0.1:{taken.getsockname()[1]}"
        done = _forward(cfg, "--health", where, *workers)
    assert done.returncode == 2, done.stderr
    assert f"--health {where}: cannot listen there" in done.stderr
    assert "Traceback" not in done.stderr


def test_messages_with_brackets_reach_the_terminal_whole(tmp_path: Path) -> None:
    """rich reads "[word]" as markup: a SIEM's "[indices:data/write/bulk]" or a "[detection]" key
    would vanish from an error, and "[/x]" would raise while printing it."""
    (tmp_path / "in").mkdir()
    cfg = _config(
        tmp_path,
        '[source]\ntype = "files"\npath = "in"\n[[sinks]]\ntype = "file"\npath = "[out]/x.ndjson"\n'
        '[detection]\nrules = ["no-such-rules"]\n',
    )
    result = CliRunner().invoke(cli, ["forward", "-c", str(cfg), "--once"])
    assert result.exit_code == 2
    assert "[detection] rules:" in result.output
    checked = CliRunner().invoke(cli, ["check", "-c", str(cfg)])
    assert "[out]" in checked.output
    from trailrelay.cli.main import _fail

    _fail("error:", "closing tag [/x] in a SIEM's answer")  # MarkupError before


def test_check_refuses_a_firehose_source_forward_would_refuse(tmp_path: Path) -> None:
    """check listens and loads the TLS pair as forward does first, and fails with forward's words."""
    firehose = '[source]\ntype = "firehose"\naccess_key = "fh-key"\n{}\n[[sinks]]\ntype = "stdout"\n'
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = _config(tmp_path, firehose.format(f'listen = "127.0.0.1:{port}"'))
        busy = CliRunner().invoke(cli, ["check", "-c", str(cfg)], env={"COLUMNS": "500"})
        forwarded = _forward(cfg)
    assert busy.exit_code == 1
    said = f"source.listen: cannot listen on 127.0.0.1:{port}: Address already in use"
    assert f"✗ source (firehose): {said}\n" in busy.output
    assert forwarded.returncode == 2 and said in forwarded.stderr
    no_cert = 'listen = "127.0.0.1:0"\ntls_cert = "missing.pem"\ntls_key = "missing.key"'
    cfg = _config(tmp_path, firehose.format(no_cert))
    result = CliRunner().invoke(cli, ["check", "-c", str(cfg)], env={"COLUMNS": "500"})
    assert result.exit_code == 1
    assert (
        f"✗ source (firehose): source.tls_cert/tls_key: cannot load {tmp_path / 'missing.pem'}"
        in result.output
    )
    free = CliRunner().invoke(
        cli, ["check", "-c", str(_config(tmp_path, firehose.format('listen = "127.0.0.1:0"')))]
    )
    assert free.exit_code == 0, free.output
    assert "✓ source (firehose): can listen on 127.0.0.1:0" in free.output


@pytest.mark.parametrize("source", ['type = "stdin"', 'type = "files"\npath = "-"'])
def test_check_accepts_standard_input(tmp_path: Path, source: str) -> None:
    cfg = _config(tmp_path, f'[source]\n{source}\n[[sinks]]\ntype = "stdout"\n')
    result = CliRunner().invoke(cli, ["check", "-c", str(cfg)])
    assert result.exit_code == 0, result.output
    assert "standard input" in result.output
    assert "does not exist" not in result.output


def _replay(tmp: Path, out: str = "o.ndjson", *args: str, more: str = "") -> Any:
    """``replay-dead-letters ARGS`` of ``tmp``'s dead-letters folder, to a file sink named ``out``.

    ``more``: TOML added to the config (other sinks, ``[dead_letter]``).
    """
    sink = f'[[sinks]]\ntype = "file"\nname = "out"\npath = "{out}"\n'
    cfg = _config(tmp, '[source]\ntype = "files"\npath = "in"\n' + sink + more)
    return CliRunner().invoke(cli, ["replay-dead-letters", "-c", str(cfg), *args])


def _sink_entry(sink: str, raw: str | dict[str, Any]) -> bytes:
    """One dead-letter line: ``raw`` (a record, or JSON text as it is) refused by ``sink``."""
    text = raw if isinstance(raw, str) else orjson.dumps(raw).decode()
    return orjson.dumps({"stage": "sink", "sink": sink, "reason": "503", "raw": text}) + b"\n"


def _ids(path: Path) -> list[str]:
    return [orjson.loads(x)["eventID"] for x in path.read_bytes().splitlines()]


def test_replay_dead_letters(tmp_path: Path) -> None:
    dl = tmp_path / "dead-letters"
    dl.mkdir()
    pretty = orjson.dumps(SAMPLE_EVENTS[0], option=orjson.OPT_INDENT_2).decode()
    entries = [
        {
            "stage": "sink",
            "sink": "out",
            "reason": "503",
            "raw": pretty,
            "origin": {"kind": "s3", "location": "s3://b/k"},
        },
        {"stage": "sink", "sink": "out", "reason": "503", "raw": orjson.dumps(SAMPLE_EVENTS[1]).decode()},
        {"stage": "parse", "reason": "not an object", "raw": "42"},
    ]
    (dl / "dead-letters-2026-03-02.ndjson").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in entries))
    result = _replay(tmp_path)
    assert result.exit_code == 0, result.output
    got = [orjson.loads(x) for x in (tmp_path / "o.ndjson").read_bytes().splitlines()]
    assert got == [SAMPLE_EVENTS[0], SAMPLE_EVENTS[1]]
    assert (dl / "dead-letters-2026-03-02.ndjson.replayed").exists()
    kept = (dl / "dead-letters-2026-03-02.kept.ndjson").read_bytes().splitlines()
    assert [orjson.loads(x)["stage"] for x in kept] == ["parse"]
    assert "1 entries were not replayed" in result.output


def test_a_large_refused_record_is_kept_whole_and_replayed_whole(tmp_path: Path) -> None:
    """A record over 1 MiB refused by a sink lost everything past 1 MiB in its dead letter, and
    replay then sent the cut JSON; a read-stage excerpt is still capped, and never replayed."""
    big = {**SAMPLE_EVENTS[0], "requestParameters": {"policy": "x" * (3 << 20)}}
    raw = orjson.dumps(big)
    kept = entry("sink", "413", None, raw, sink="out")
    assert kept["raw"].encode() == raw and "raw_truncated_from" not in kept
    assert entry("parse", "not CloudTrail", None, raw)["raw"].encode() == raw
    cut = entry("read", "corrupt gzip", None, raw)
    assert len(cut["raw"]) == MAX_RAW and cut["raw_truncated_from"] == len(raw)
    dl = tmp_path / "dead-letters"
    dl.mkdir()
    partial = {**cut, "stage": "sink", "sink": "out"}  # written by an older version
    (dl / "d.ndjson").write_bytes(orjson.dumps(kept) + b"\n" + orjson.dumps(partial) + b"\n")
    result = _replay(tmp_path)
    assert result.exit_code == 0, result.output
    assert [orjson.loads(x) for x in (tmp_path / "o.ndjson").read_bytes().splitlines()] == [big]
    assert "only part of the record kept" in " ".join(result.output.split())
    assert orjson.loads((dl / "d.kept.ndjson").read_bytes())["raw_truncated_from"] == len(raw)


def test_replay_keeps_lines_that_are_not_entries_and_takes_up_an_interrupted_replay(tmp_path: Path) -> None:
    """A dead-letter file cut short by a crash made replay raise, and left it renamed
    ``*.replaying``, where no later replay looked: its entries were out of reach."""
    dl = tmp_path / "dead-letters"
    dl.mkdir()
    good = {"stage": "sink", "sink": "out", "reason": "503", "raw": orjson.dumps(SAMPLE_EVENTS[0]).decode()}
    (dl / "dead-letters-2026-03-02.ndjson").write_bytes(orjson.dumps(good) + b'\n42\n{"stage": "si')
    other = {**good, "raw": orjson.dumps(SAMPLE_EVENTS[1]).decode()}
    (dl / "dead-letters-2026-03-01.ndjson.replaying").write_bytes(orjson.dumps(other) + b"\n")
    result = _replay(tmp_path)
    assert result.exit_code == 0, result.output
    got = [orjson.loads(x) for x in (tmp_path / "o.ndjson").read_bytes().splitlines()]
    assert sorted(e["eventID"] for e in got) == sorted(e["eventID"] for e in SAMPLE_EVENTS[:2])
    assert (dl / "dead-letters-2026-03-01.ndjson.replayed").exists()
    assert (dl / "dead-letters-2026-03-02.kept.ndjson").read_bytes() == b'42\n{"stage": "si\n'
    assert "2 of those lines are not dead-letter entries" in " ".join(result.output.split())


def test_replay_again_leaves_kept_entries_under_one_name_and_renames_nothing_it_did_not_replay(
    tmp_path: Path,
) -> None:
    """Each replay renamed *.kept.ndjson to *.kept.kept.ndjson (and a *.replayed copy), and a
    file none of whose entries was replayed became *.replayed."""
    dl = tmp_path / "dead-letters"
    dl.mkdir()
    read = orjson.dumps({"stage": "read", "reason": "truncated gzip data", "raw_base64": "H4sI"}) + b"\n"
    (dl / "dead-letters-2026-01-01.ndjson").write_bytes(read)
    parse = orjson.dumps({"stage": "parse", "reason": "not an object", "raw": "42"}) + b"\n"
    later = _sink_entry("out2", SAMPLE_EVENTS[1])  # a sink this config does not have yet
    (dl / "dead-letters-2026-01-02.ndjson").write_bytes(_sink_entry("out", SAMPLE_EVENTS[0]) + parse + later)
    first = _replay(tmp_path)
    assert first.exit_code == 0, first.output
    assert _ids(tmp_path / "o.ndjson") == [SAMPLE_EVENTS[0]["eventID"]]
    names = sorted(p.name for p in dl.iterdir())
    assert names == [
        "dead-letters-2026-01-01.ndjson",  # nothing in it was replayed: not touched
        "dead-letters-2026-01-02.kept.ndjson",
        "dead-letters-2026-01-02.ndjson.replayed",
    ]
    assert (dl / "dead-letters-2026-01-01.ndjson").read_bytes() == read
    assert (dl / "dead-letters-2026-01-02.kept.ndjson").read_bytes() == parse + later
    for _ in range(2):  # nothing new to replay: nothing moves
        again = _replay(tmp_path)
        assert again.exit_code == 0, again.output
        assert "nothing to replay" in again.output
        assert "3 entries were not replayed" in " ".join(again.output.split())
        assert sorted(p.name for p in dl.iterdir()) == names
    out2 = '[[sinks]]\ntype = "file"\nname = "out2"\npath = "o2.ndjson"\n'
    now = _replay(tmp_path, more=out2)  # the kept entry of out2 is replayed from the kept file
    assert now.exit_code == 0, now.output
    assert _ids(tmp_path / "o2.ndjson") == [SAMPLE_EVENTS[1]["eventID"]]
    assert (dl / "dead-letters-2026-01-02.kept.ndjson").read_bytes() == parse  # the same name
    assert sorted(p.name for p in dl.iterdir()) == sorted(
        [*names, "dead-letters-2026-01-02.kept.ndjson.replayed"]
    )


def test_replay_to_a_sink_that_cannot_open_leaves_its_entries_for_the_next_replay(tmp_path: Path) -> None:
    dl = tmp_path / "dead-letters"
    dl.mkdir()
    entry = {"stage": "sink", "sink": "out", "reason": "503", "raw": orjson.dumps(SAMPLE_EVENTS[0]).decode()}
    parse = orjson.dumps({"stage": "parse", "reason": "not an object", "raw": "42"}) + b"\n"
    (dl / "dead-letters-2026-03-02.ndjson").write_bytes(orjson.dumps(entry) + b"\n" + parse)
    (tmp_path / "taken").write_text("a file where the sink's folder should be")
    result = _replay(tmp_path, "taken/o.ndjson")
    assert result.exit_code == 3, result.output
    assert "out: not replayed" in result.output
    assert (dl / "dead-letters-2026-03-02.ndjson.replaying").read_bytes() == orjson.dumps(entry) + b"\n"
    again = _replay(tmp_path)
    assert again.exit_code == 0, again.output
    assert [orjson.loads(x)["eventID"] for x in (tmp_path / "o.ndjson").read_bytes().splitlines()] == [
        SAMPLE_EVENTS[0]["eventID"]
    ]
    kept = [x for p in dl.glob("*.kept*.ndjson") for x in p.read_bytes().splitlines()]
    assert kept == parse.splitlines()  # kept once: the parse entry left the *.replaying file


def test_replay_never_overwrites_a_leftover_replaying_file(tmp_path: Path) -> None:
    """A new file and a ``*.replaying`` one of the same day: renaming the new one overwrote the
    other (its entry lost), the renamed file was then read twice, and it said "delivered 2"."""
    dl = tmp_path / "dead-letters"
    dl.mkdir()
    a, b = SAMPLE_EVENTS[0], SAMPLE_EVENTS[1]
    (dl / "dead-letters-2026-03-02.ndjson").write_bytes(_sink_entry("out", a))
    (dl / "dead-letters-2026-03-02.ndjson.replaying").write_bytes(_sink_entry("out", b))
    result = _replay(tmp_path)
    assert result.exit_code == 0, result.output
    assert sorted(_ids(tmp_path / "o.ndjson")) == [a["eventID"], b["eventID"]]
    assert not list(dl.glob("*.replaying"))
    traces = [orjson.loads(x)["raw"] for p in dl.glob("*.replayed") for x in p.read_bytes().splitlines()]
    assert sorted(orjson.loads(raw)["eventID"] for raw in traces) == [a["eventID"], b["eventID"]]


def test_replay_keeps_the_entries_of_a_sink_that_failed_and_only_those(tmp_path: Path) -> None:
    """One file, entries for "out" and "out2"; out2 cannot open. The file was renamed
    ``*.replayed`` once "out" was done, so out2's entry was never sent; with two sinks that
    succeed, the second rename failed."""
    dl = tmp_path / "dead-letters"
    dl.mkdir()
    a, b, c = SAMPLE_EVENTS[0], SAMPLE_EVENTS[1], SAMPLE_EVENTS[2]
    parse = orjson.dumps({"stage": "parse", "reason": "not an object", "raw": "42"}) + b"\n"
    (dl / "dead-letters-2026-03-02.ndjson").write_bytes(
        _sink_entry("out", a) + _sink_entry("out2", b) + parse + _sink_entry("out", c)
    )
    (tmp_path / "taken").write_text("a file where out2's folder should be")
    out2 = '[[sinks]]\ntype = "file"\nname = "out2"\npath = "taken/o2.ndjson"\n'
    first = _replay(tmp_path, more=out2)
    assert first.exit_code == 3, first.output
    assert "out2: not replayed" in first.output
    assert _ids(tmp_path / "o.ndjson") == [a["eventID"], c["eventID"]]
    left = dl / "dead-letters-2026-03-02.ndjson.replaying"
    assert left.read_bytes() == _sink_entry("out2", b)  # only what is not final yet
    trace = dl / "dead-letters-2026-03-02.ndjson.replayed"
    assert sorted(trace.read_bytes().splitlines()) == sorted(
        (_sink_entry("out", a) + parse + _sink_entry("out", c)).splitlines()
    )
    (tmp_path / "taken").unlink()
    again = _replay(tmp_path, more=out2)
    assert again.exit_code == 0, again.output
    assert _ids(tmp_path / "o.ndjson") == [a["eventID"], c["eventID"]]  # not sent twice
    assert _ids(tmp_path / "taken" / "o2.ndjson") == [b["eventID"]]
    assert not list(dl.glob("*.replaying"))
    kept = [x for p in dl.glob("*.kept*.ndjson") for x in p.read_bytes().splitlines()]
    assert kept == parse.splitlines()  # kept once, not again from the *.replaying file


def test_replay_to_two_sinks_that_succeed_finishes_the_file_once(tmp_path: Path) -> None:
    dl = tmp_path / "dead-letters"
    dl.mkdir()
    a, b = SAMPLE_EVENTS[0], SAMPLE_EVENTS[1]
    body = _sink_entry("out", a) + _sink_entry("out2", b)
    (dl / "dead-letters-2026-03-02.ndjson").write_bytes(body)
    out2 = '[[sinks]]\ntype = "file"\nname = "out2"\npath = "o2.ndjson"\n'
    result = _replay(tmp_path, more=out2)
    assert result.exit_code == 0, result.output
    assert "acknowledging" not in result.output  # the second rename failed: FileNotFoundError
    assert _ids(tmp_path / "o.ndjson") == [a["eventID"]]
    assert _ids(tmp_path / "o2.ndjson") == [b["eventID"]]
    assert [p.name for p in dl.iterdir()] == ["dead-letters-2026-03-02.ndjson.replayed"]
    assert sorted((dl / "dead-letters-2026-03-02.ndjson.replayed").read_bytes().splitlines()) == sorted(
        body.splitlines()
    )


def test_replay_applies_the_sinks_privacy_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Records dead-lettered before [privacy] was added were replayed in clear to a sink whose
    profile is standard ("replayed 1, delivered 1", the user name and full IP at the sink)."""
    dl = tmp_path / "dead-letters"
    dl.mkdir()
    alice = SAMPLE_EVENTS[0]
    (dl / "d.ndjson").write_bytes(_sink_entry("out", alice))
    monkeypatch.setenv("REPLAY_TEST_KEY", "k" * 8 + "0123456789abcdef0123456789abcdef")
    more = '[privacy]\nkey_env = "REPLAY_TEST_KEY"\ndefault = "standard"\n'
    result = _replay(tmp_path, more=more)
    assert result.exit_code == 0, result.output
    assert "delivered 1" in result.output
    sent = (tmp_path / "o.ndjson").read_text()
    got = orjson.loads(sent)
    assert got["eventID"] == alice["eventID"]
    assert got["userIdentity"]["userName"].startswith("tr1_")
    assert got["sourceIPAddress"] == "203.0.113.0"
    assert "alice" not in sent and "203.0.113.7" not in sent
    (tmp_path / "o.ndjson").unlink()  # once more, of the pseudonymized record: it does not change
    (dl / "d2.ndjson").write_bytes(_sink_entry("out", got))
    assert _replay(tmp_path, more=more).exit_code == 0
    assert orjson.loads((tmp_path / "o.ndjson").read_bytes()) == got


def test_replay_with_a_privacy_key_that_cannot_load_claims_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dl = tmp_path / "dead-letters"
    dl.mkdir()
    (dl / "d.ndjson").write_bytes(_sink_entry("out", SAMPLE_EVENTS[0]))
    monkeypatch.delenv("REPLAY_TEST_KEY", raising=False)
    result = _replay(tmp_path, more='[privacy]\nkey_env = "REPLAY_TEST_KEY"\ndefault = "standard"\n')
    assert result.exit_code == 2, result.output
    assert "privacy.key_env: environment variable REPLAY_TEST_KEY is not set" in result.output
    assert [p.name for p in dl.iterdir()] == ["d.ndjson"]
    assert not (tmp_path / "o.ndjson").exists()


def test_replay_reads_each_entry_alone(tmp_path: Path) -> None:
    """The raws were joined into one JSON array: a truncated one swallowed the next entry into
    its dead letter (and an empty "read" one), and the run exited 0."""
    dl = tmp_path / "dead-letters"
    dl.mkdir()
    g1, g2 = SAMPLE_EVENTS[0], SAMPLE_EVENTS[1]
    broken = '{"eventID": "BROKEN"'
    (dl / "dead-letters-2026-03-02.ndjson").write_bytes(
        _sink_entry("out", g1) + _sink_entry("out", broken) + _sink_entry("out", g2)
    )
    result = _replay(tmp_path)
    assert result.exit_code == 4, result.output
    assert _ids(tmp_path / "o.ndjson") == [g1["eventID"], g2["eventID"]]
    again = [orjson.loads(x) for p in dl.glob("*.ndjson") for x in p.read_bytes().splitlines()]  # new ones
    assert [(e["stage"], e["raw"]) for e in again] == [("parse", broken)]
    assert "replayed 3, delivered 2, dead-lettered again 1" in result.output


def test_replay_that_delivers_nothing_does_not_exit_0(tmp_path: Path) -> None:
    dl = tmp_path / "dead-letters"
    dl.mkdir()
    (dl / "dead-letters-2026-03-02.ndjson").write_bytes(
        _sink_entry("out", SAMPLE_EVENTS[0]) + _sink_entry("out", SAMPLE_EVENTS[1])
    )
    cfg = _config(
        tmp_path,
        '[source]\ntype = "files"\npath = "in"\n'
        '[[sinks]]\ntype = "file"\nname = "out"\npath = "/dev/full"\nmax_retry_seconds = 0.2\n',
    )
    result = CliRunner().invoke(cli, ["replay-dead-letters", "-c", str(cfg)])
    assert result.exit_code == 4, result.output
    assert "replayed 2, delivered 0, dead-lettered again 2" in result.output
    again = [orjson.loads(x) for p in dl.glob("*.ndjson") for x in p.read_bytes().splitlines()]  # new ones
    assert [(e["stage"], e["sink"]) for e in again] == [("sink", "out"), ("sink", "out")]
    assert (dl / "dead-letters-2026-03-02.ndjson.replayed").exists()


def test_replay_refuses_a_sink_not_in_the_config(tmp_path: Path) -> None:
    dl = tmp_path / "dead-letters"
    dl.mkdir()
    (dl / "d.ndjson").write_bytes(_sink_entry("out", SAMPLE_EVENTS[0]))
    out2 = '[[sinks]]\ntype = "file"\nname = "out2"\npath = "o2.ndjson"\n'
    result = _replay(tmp_path, "o.ndjson", "--sink", "typo", more=out2)
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--sink'" in result.output
    assert "'typo' is not a sink of" in " ".join(result.output.split())
    assert "(its sinks: out, out2)" in " ".join(result.output.split())
    assert [p.name for p in dl.iterdir()] == ["d.ndjson"]  # untouched


def test_replay_says_it_reads_local_files_only_when_dead_letters_go_to_s3(tmp_path: Path) -> None:
    """With [dead_letter] s3_uri it looked in the local default folder, found nothing, exited 0."""
    (tmp_path / "dead-letters").mkdir()
    result = _replay(tmp_path, more='[dead_letter]\ns3_uri = "s3://dl-bucket/trailrelay/"\n')
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert "s3://dl-bucket/trailrelay/" in said and "reads local dead-letter files only" in said
    assert "--from" in said and "Traceback" not in said


def test_replay_with_nothing_to_replay_says_so(tmp_path: Path) -> None:
    result = _replay(tmp_path)  # no dead-letters folder at all
    assert result.exit_code == 0, result.output
    assert "no dead-letter files in" in " ".join(result.output.split())
    (tmp_path / "dead-letters").mkdir()
    (tmp_path / "dead-letters" / "d.ndjson").write_bytes(_sink_entry("elsewhere", SAMPLE_EVENTS[0]))
    result = _replay(tmp_path)
    assert result.exit_code == 0, result.output
    assert "nothing to replay" in result.output


@pytest.mark.parametrize(("option", "value"), [("--accounts", "0"), ("--events-per-hour", "-5")])
def test_generate_refuses_impossible_sizes_in_one_line(tmp_path: Path, option: str, value: str) -> None:
    """--accounts 0 was a ValueError traceback from inside the generator."""
    result = CliRunner().invoke(cli, ["generate", str(tmp_path / "t"), option, value])
    assert result.exit_code == 2
    assert f"Invalid value for '{option}'" in result.output and result.exception is not None
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("command", ["generate", "demo --out"])
def test_an_output_folder_that_cannot_be_made_is_one_line(tmp_path: Path, command: str) -> None:
    (tmp_path / "a-file").write_text("")
    out = tmp_path / "a-file" / "trail"
    result = CliRunner().invoke(cli, [*command.split(), str(out)])
    assert result.exit_code == 2, result.output
    assert result.stderr == f"error: cannot write {out}: Not a directory\n"


def test_generate_refuses_a_folder_that_holds_files_unless_told_to_add(tmp_path: Path) -> None:
    """A second trail written into the first one's folder mixed the two without a word."""
    args = ["--events-per-hour", "5", "--accounts", "1"]
    out = tmp_path / "trail"
    assert CliRunner().invoke(cli, ["generate", str(out), *args]).exit_code == 0
    before = sorted(out.rglob("*"))
    refused = CliRunner().invoke(cli, ["generate", str(out), "--seed", "8", *args], env={"COLUMNS": "500"})
    assert refused.exit_code == 2
    assert (
        refused.stderr
        == f"error: {out} is not empty: name a new or empty folder, or give --add to write this trail into it\n"
    )
    assert sorted(out.rglob("*")) == before
    day2 = ["generate", str(out), "--day", "2026-03-03", "--add", *args]
    assert CliRunner().invoke(cli, day2).exit_code == 0
    assert len(sorted(out.rglob("*.gz"))) > len([p for p in before if p.suffix == ".gz"])


def test_help_names_every_shipped_siem() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert "Splunk, Elastic, OpenSearch or Microsoft Sentinel" in result.output


def test_generate_is_deterministic(tmp_path: Path) -> None:
    args = ["--events-per-hour", "5", "--accounts", "2"]
    assert CliRunner().invoke(cli, ["generate", str(tmp_path / "a"), *args]).exit_code == 0
    assert CliRunner().invoke(cli, ["generate", str(tmp_path / "b"), *args]).exit_code == 0
    fa = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.gz"))
    fb = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.gz"))
    assert fa == fb
    assert fa
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in fa)


def test_demo_runs_offline_and_reports_the_attack(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "trailrelay", "demo", "--out", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for step in ("StopLogging", "DeleteTrail", "DeleteFlowLogs", "UpdateDetector", "CreateAccessKey"):
        assert step in out
    assert "dead-lettered (read)" in out
    assert "skipped (digest)" in out
    assert "attack steps not tagged" not in out
    forwarded = tmp_path / "demo" / "forwarded" / "cloudtrail.ndjson"
    assert forwarded.stat().st_size > 1_000_000


def test_demo_replaces_its_earlier_output_and_leaves_other_folders_alone(tmp_path: Path) -> None:
    """A second run into the same --out appended to the first: 57,514 lines forwarded, 28,757 reported."""
    out = tmp_path / "demo"
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, "-m", "trailrelay", "demo", "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
    delivered = re.search(r"delivered to the file sink\W+([\d,]+)", proc.stdout)
    assert delivered is not None, proc.stdout
    lines = (out / "forwarded" / "cloudtrail.ndjson").read_bytes().count(b"\n")
    assert lines == int(delivered[1].replace(",", "")) > 20_000
    dead = [line for p in (out / "dead-letters").iterdir() for line in p.read_bytes().splitlines()]
    assert len(dead) == 2  # the two bad objects of this run, not of both
    # a file put among the demo's own is never removed: the next run is refused instead
    (out / "forwarded" / "my-notes.txt").write_text("mine")
    kept = CliRunner().invoke(cli, ["demo", "--out", str(out)], env={"COLUMNS": "500"})
    assert kept.exit_code == 2
    assert "holds files an earlier demo did not write (forwarded/my-notes.txt)" in kept.output
    assert (out / "forwarded" / "my-notes.txt").read_text() == "mine"
    assert (out / "forwarded" / "cloudtrail.ndjson").read_bytes().count(b"\n") == lines
    theirs = tmp_path / "theirs"
    (theirs / "trail").mkdir(parents=True)
    (theirs / "trail" / "keep.json").write_text("{}")
    refused = CliRunner().invoke(cli, ["demo", "--out", str(theirs)], env={"COLUMNS": "500"})
    assert refused.exit_code == 2
    assert f"error: --out {theirs} is not empty and holds no earlier demo's output" in refused.output
    assert [p.name for p in theirs.rglob("*")] == ["trail", "keep.json"]


@pytest.mark.parametrize("doubled", [False, True])
def test_sigterm_drains_and_exits_cleanly(tmp_path: Path, doubled: bool) -> None:
    """SIGTERM during a run: in-flight work finishes or is handed back; a rerun completes the rest.

    ``doubled``: SIGINT and SIGTERM at once, as Ctrl-C to a fleet's process group (the supervisor
    passes SIGTERM on) or systemd's stop of a whole cgroup deliver them: one stop, still drained,
    not the "second signal: exiting now" of a user pressing Ctrl-C again."""
    subprocess.run(
        [sys.executable, "-m", "trailrelay", "generate", str(tmp_path / "trail"), "--events-per-hour", "400"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    cfg = _config(
        tmp_path,
        '[source]\ntype = "files"\npath = "trail"\n[[sinks]]\ntype = "file"\npath = "out.ndjson"\n'
        "batch_seconds = 0.05\n[pipeline]\nreaders = 1\n",
    )
    cmd = [sys.executable, "-m", "trailrelay", "forward", "-c", str(cfg), "--summary-json"]
    proc = subprocess.Popen([*cmd, str(tmp_path / "s1.json")], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60  # signal once records are flowing (the handler is installed by then)
    while not (tmp_path / "out.ndjson").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    if doubled:
        proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "second signal" not in err
    first = orjson.loads((tmp_path / "s1.json").read_bytes())
    second_run = subprocess.run(
        [*cmd, str(tmp_path / "s2.json")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
        check=False,
    )
    assert second_run.returncode == 0, second_run.stderr
    second = orjson.loads((tmp_path / "s2.json").read_bytes())
    ids = [orjson.loads(x)["eventID"] for x in (tmp_path / "out.ndjson").read_bytes().splitlines()]
    total = first["records_in"] + second["records_in"]
    assert (
        len(set(ids)) == len(ids) == total
    )  # nothing lost, nothing twice (file sink: all delivered on drain)
    assert first["objects_read"] < first["objects_read"] + second["objects_read"]


# -- exit statuses of forward (documented in the README) ----------------------------------------


def test_forward_exit_status_says_dead_letters(tmp_path: Path, make_object: Any, make_events: Any) -> None:
    make_object(tmp_path / "in" / "good.json.gz", make_events(5))
    (tmp_path / "in" / "corrupt.json.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")
    cfg = _config(
        tmp_path, '[source]\ntype = "files"\npath = "in"\n[[sinks]]\ntype = "file"\npath = "out/ct.ndjson"\n'
    )
    result = CliRunner().invoke(cli, ["forward", "-c", str(cfg), "--once"])
    assert result.exit_code == 4, result.output  # finished, with dead letters
    assert len((tmp_path / "out" / "ct.ndjson").read_bytes().splitlines()) == 5


def test_forward_refuses_a_summary_json_it_cannot_write_before_the_run(
    tmp_path: Path, make_object: Any, make_events: Any
) -> None:
    make_object(tmp_path / "in" / "a.json.gz", make_events(3))
    (tmp_path / "blocker").write_text("a file where a folder should be")
    cfg = _config(
        tmp_path, '[source]\ntype = "files"\npath = "in"\n[[sinks]]\ntype = "file"\npath = "out/ct.ndjson"\n'
    )
    result = CliRunner().invoke(
        cli, ["forward", "-c", str(cfg), "--once", "--summary-json", str(tmp_path / "blocker" / "s.json")]
    )
    assert result.exit_code == 2, result.output  # it was a traceback, after the whole run
    assert "cannot write" in result.output
    assert not (tmp_path / "out").exists()  # refused before anything was forwarded


def test_forward_exit_status_says_fatal(tmp_path: Path, make_object: Any, make_events: Any) -> None:
    make_object(tmp_path / "in" / "a.json.gz", make_events(3))
    (tmp_path / "blocker").write_text("a file where a folder should be")
    cfg = _config(
        tmp_path,
        '[source]\ntype = "files"\npath = "in"\n[[sinks]]\ntype = "file"\npath = "blocker/x.ndjson"\n',
    )
    assert CliRunner().invoke(cli, ["forward", "-c", str(cfg), "--once"]).exit_code == 3


def test_forward_exit_status_says_work_was_left_unfinished(
    tmp_path: Path, make_object: Any, make_events: Any
) -> None:
    """SIGTERM while the sink is stuck: what was not delivered is handed back, exit 5."""
    for i in range(40):
        make_object(tmp_path / "in" / f"o{i:02d}.json.gz", make_events(200, prefix=f"o{i}"))
    cfg = _config(
        tmp_path,
        '[source]\ntype = "files"\npath = "in"\n[[sinks]]\ntype = "stdout"\n[pipeline]\ndrain_seconds = 0.5\n',
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "trailrelay", "forward", "-c", str(cfg), "--once", "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    assert proc.stdout is not None
    proc.stdout.read(1024)  # the sink wrote; now it blocks on the full pipe
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    time.sleep(1.0)  # the drain time passes while the pipe stays full
    rest = proc.stdout.read()  # unblock the writer so the process can end
    code = proc.wait(30)
    assert code == 5
    assert rest.count(b"\n") < 40 * 200  # it really stopped early


def test_a_request_hanging_past_the_drain_deadline_does_not_hold_the_exit(
    tmp_path: Path, make_object: Any, make_events: Any
) -> None:
    """SIGTERM while a send hangs and never returns (nobody reads the pipe, as a server that
    trickles its answer): the process exits soon after drain_seconds, its work handed back."""
    for i in range(40):
        make_object(tmp_path / "in" / f"o{i:02d}.json.gz", make_events(200, prefix=f"o{i}"))
    cfg = _config(
        tmp_path,
        '[source]\ntype = "files"\npath = "in"\n[[sinks]]\ntype = "stdout"\n[pipeline]\ndrain_seconds = 0.5\n',
    )
    with (tmp_path / "stderr").open("wb") as log:  # a file: a full stderr pipe must not be what blocks
        proc = subprocess.Popen(
            [sys.executable, "-m", "trailrelay", "forward", "-c", str(cfg), "--once", "--no-progress"],
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=tmp_path,
        )
    assert proc.stdout is not None
    proc.stdout.read(1024)  # the sink wrote; now it blocks on the full pipe, for good
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(30)  # used to wait for the hung write forever
    finally:
        proc.kill()
    err = (tmp_path / "stderr").read_text()
    assert code == 5, err[-2000:]
    assert "still in a request at the drain deadline" in err
    assert "Traceback" not in err


def test_exit_status_of_a_worker_stopped_by_a_signal_is_clean() -> None:
    from trailrelay.cli.main import EXIT_OK, EXIT_UNFINISHED, exit_status
    from trailrelay.pipeline.metrics import Metrics
    from trailrelay.pipeline.runner import RunResult

    stopped = RunResult(Metrics(), stopped=True, open_units=2)
    assert exit_status(stopped, {"units_released": 2}, once=False) == EXIT_OK
    assert exit_status(stopped, {"units_released": 2}, once=True) == EXIT_UNFINISHED


def test_exit_status_of_a_backfill_stopped_between_objects_is_unfinished() -> None:
    """Nothing in flight at the signal, but objects were never read: not a clean end."""
    from trailrelay.cli.main import EXIT_OK, EXIT_UNFINISHED, exit_status
    from trailrelay.pipeline.metrics import Metrics
    from trailrelay.pipeline.runner import RunResult

    between = RunResult(Metrics(), stopped=True, drained=False)
    assert exit_status(between, {"units_released": 0}, once=True) == EXIT_UNFINISHED
    assert exit_status(between, {"units_released": 0}, once=False) == EXIT_OK  # a worker's normal end
    after_the_last = RunResult(Metrics(), stopped=True, drained=True)
    assert exit_status(after_the_last, {"units_released": 0}, once=True) == EXIT_OK


def test_forward_to_a_file_loads_no_connector_or_network_library(tmp_path: Path) -> None:
    """Start-up stays lean: a file-sink run imports none of the SIEM clients, boto3, rich,
    pySigma (the pack is shipped lowered) or pydantic (the config tables are msgspec Structs)."""
    (tmp_path / "in").mkdir()
    cfg = _config(
        tmp_path, '[source]\ntype = "files"\npath = "in"\n[[sinks]]\ntype = "file"\npath = "out/ct.ndjson"\n'
    )
    probe = (
        "import sys\n"
        "from trailrelay.cli.main import cli\n"
        f"try:\n    cli(['forward', '-c', {str(cfg)!r}, '--once', '--no-progress'])\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\n"
        "heavy = ['elasticsearch', 'opensearchpy', 'splunklib', 'azure', 'requests', 'boto3', 'rich',\n"
        "         'sigma', 'pyparsing', 'yaml', 'pydantic', 'pydantic_core',\n"
        "         'trailrelay_splunk', 'trailrelay_elastic', 'trailrelay_sentinel', 'trailrelay_opensearch']\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_forward_warns_when_the_source_finds_nothing_at_all(
    tmp_path: Path, make_object: Any, make_events: Any
) -> None:
    """A wrong path or prefix is a run that reads nothing: said once, naming the key to check.

    A second run of the same trail finds only objects already forwarded: no warning, since the
    summary's skipped counts say why nothing was read.
    """
    (tmp_path / "in").mkdir()
    cfg = _config(
        tmp_path, '[source]\ntype = "files"\npath = "in"\n[[sinks]]\ntype = "file"\npath = "out/ct.ndjson"\n'
    )
    warning = "the source found nothing to read under"
    for args in ((), ("--workers", "2")):
        result = _forward(cfg, *args)
        assert result.returncode == 0, result.stderr
        assert result.stderr.count(warning) == 1, (args, result.stderr)
        assert f"{tmp_path / 'in'}: check [source] path" in result.stderr
    make_object(tmp_path / "in" / "AWSLogs" / "a.json.gz", make_events(3))
    for _ in range(2):  # forwards the object, then finds it done
        result = _forward(cfg)
        assert result.returncode == 0, result.stderr
        assert warning not in result.stderr


def test_the_nothing_found_warning_names_an_s3_listing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = load_config(
        _config(
            tmp_path,
            '[source]\ntype = "s3"\nbucket = "trail-bucket"\nprefix = "AWSLogs/1234/"\nregion = "eu-west-1"\n'
            '[[sinks]]\ntype = "stdout"\n',
        )
    )
    with caplog.at_level("WARNING", logger="trailrelay.cli"):
        _warn_if_nothing_found(cfg, {"objects_read": 0, "skipped": {}})
        _warn_if_nothing_found(cfg, {"objects_read": 0, "skipped": {"already-done": 4}})
        _warn_if_nothing_found(cfg, {"objects_read": 2, "skipped": {}})
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1, said
    assert "under s3://trail-bucket/AWSLogs/1234/: check [source] bucket and prefix" in said[0]


def test_no_nothing_found_warning_when_the_listing_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listing that could not run found nothing for another reason: the failure is what is said."""

    class Denied(BaseHTTPRequestHandler):  # S3's answer to a listing the credentials may not make
        def do_GET(self) -> None:
            body = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
            self.send_response(403)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Denied)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    for key, value in {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}.items():
        monkeypatch.setenv(key, value)
    cfg = _config(
        tmp_path,
        f'[source]\ntype = "s3"\nbucket = "trail"\nregion = "us-east-1"\n'
        f'endpoint_url = "http://127.0.0.1:{server.server_address[1]}"\n'
        '[[sinks]]\ntype = "file"\npath = "out/ct.ndjson"\n',
    )
    try:
        result = _forward(cfg)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 3, result.stderr
    assert "source failed" in result.stderr and "AccessDenied" in result.stderr
    assert "nothing to read" not in result.stderr
    # An expected failure of S3 is one line, not a traceback of botocore's internals.
    assert "Traceback" not in result.stderr
    (said,) = [line for line in result.stderr.splitlines() if '"source failed: ' in line]
    assert "(AccessDenied) when calling the ListObjectsV2 operation" in said


def test_check_reports_a_sink_whose_check_breaks_and_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connector's bug in check() is one failed line, not a traceback hiding the other sinks."""
    real = build.build_sink

    def build_sink(config: Any) -> Any:
        sink = real(config)
        if config.display_name == "broken":

            def check() -> Any:
                raise RuntimeError("unexpected answer shape")

            sink.check = check
        return sink

    monkeypatch.setattr(build, "build_sink", build_sink)
    (tmp_path / "in").mkdir()
    cfg = _config(
        tmp_path,
        '[source]\ntype = "files"\npath = "in"\n'
        '[[sinks]]\ntype = "file"\nname = "broken"\npath = "a.ndjson"\n'
        '[[sinks]]\ntype = "file"\nname = "fine"\npath = "b.ndjson"\n',
    )
    result = CliRunner().invoke(cli, ["check", "-c", str(cfg)], env={"COLUMNS": "500"})
    assert result.exit_code == 1, result.output
    assert (
        "✗ sink broken (file): the check failed unexpectedly: RuntimeError: unexpected answer shape"
        in result.output
    )
    assert "✓ sink fine (file)" in result.output


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux) to fill a disk")
def test_dead_letters_that_cannot_be_written_stop_the_run_and_ack_nothing(
    tmp_path: Path, make_object: Any, make_events: Any
) -> None:
    """A full disk under the dead-letter folder killed the reader thread with a traceback and
    printed "found nothing to read"; the run now stops at once with the reason, exit 3, and
    the unit whose record has no trace is not checkpointed: the next run reads it again."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a-bad.json.gz").write_bytes(b"not gzip, not json")
    make_object(tmp_path / "in" / "b-good.json.gz", make_events(5))
    cfg = _config(
        tmp_path, '[source]\ntype = "files"\npath = "in"\n[[sinks]]\ntype = "file"\npath = "out.ndjson"\n'
    )
    dead = tmp_path / "dead-letters"
    dead.mkdir()
    today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    (dead / f"dead-letters-{today}.ndjson").symlink_to("/dev/full")  # every write: ENOSPC
    result = CliRunner().invoke(cli, ["forward", "-c", str(cfg), "--log-format", "text"])
    out = " ".join(result.output.split())
    assert result.exit_code == 3, out
    assert "stopped: dead letters cannot be written: OSError: [Errno 28] No space left on device" in out
    assert "Traceback" not in out and "found nothing to read" not in out
    (dead / f"dead-letters-{today}.ndjson").unlink()  # room again
    again = CliRunner().invoke(cli, ["forward", "-c", str(cfg), "--summary-json", str(tmp_path / "s.json")])
    assert again.exit_code == 4, again.output  # finished, with a dead letter
    (entry_,) = read_entries(dead)
    assert entry_["raw"] == "not gzip, not json"
    assert orjson.loads((tmp_path / "s.json").read_bytes())["delivered"] == {"file": 5}


def test_a_disk_that_fills_mid_dead_letter_leaves_whole_lines_and_the_next_run_appends_whole(
    tmp_path: Path,
) -> None:
    """A full disk took part of a dead-letter entry: the run stopped (exit 3), but the file ended
    in a partial line, and the next run's first entry was glued onto it (a line that is no
    entry, and an entry that can no longer be replayed). The part is now cut off again. The
    process's file size limit (RLIMIT_FSIZE) fills the disk, as in the file sink's test."""
    (tmp_path / "in").mkdir()
    bad = [orjson.dumps({"notcloudtrail": i, "pad": "x" * 10_000}) for i in range(20)]
    (tmp_path / "in" / "bad.ndjson").write_bytes(b"\n".join(bad) + b"\n")
    cfg = _config(
        tmp_path,
        '[source]\ntype = "files"\npath = "in"\n[[sinks]]\ntype = "file"\npath = "out.ndjson"\n'
        '[dead_letter]\npath = "dl"\n',
    )
    limit = 55_555  # five entries of ~10.3 KB and part of the sixth
    limited = (
        f"import os, resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
        "os.execv(sys.executable, [sys.executable, '-m', 'trailrelay', *sys.argv[1:]])"
    )
    args = ["forward", "-c", str(cfg), "--once", "--no-progress"]
    full = subprocess.run(
        [sys.executable, "-c", limited, *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert full.returncode == 3, full.stderr[-2000:]
    assert "dead letters cannot be written" in full.stderr
    (dl,) = (tmp_path / "dl").iterdir()
    first = dl.read_bytes()
    assert first.endswith(b"\n") and len(first.splitlines()) == 5  # whole entries only

    room = _forward(cfg)  # the unit was not acknowledged: all of it again
    assert room.returncode == 4, room.stderr[-2000:]
    raws = [orjson.loads(line)["raw"].encode() for line in dl.read_bytes().splitlines()]
    assert raws == bad[:5] + bad  # every line an entry


def test_a_disk_that_fills_mid_batch_leaves_whole_lines_and_loses_nothing(
    tmp_path: Path, make_object: Any, make_events: Any
) -> None:
    """A full disk took part of a batch (a short write), refused the rest, and the retry was
    appended after the half-written line: a corrupt line, a record missing, exit 0. The part
    is now cut off the file before the batch is retried; what never fits is dead-lettered.
    The process's file size limit (RLIMIT_FSIZE) fills the disk: the kernel writes up to the
    limit, then refuses with EFBIG, as a full disk does with ENOSPC."""
    evs = [{**e, "pad": "y" * 4000} for e in make_events(30)]  # ~5.3 KB a line, 53 KB a batch
    make_object(tmp_path / "in" / "a.json.gz", evs)
    cfg = _config(
        tmp_path,
        '[source]\ntype = "files"\npath = "in"\n'
        '[[sinks]]\ntype = "file"\npath = "out.ndjson"\nbatch_events = 10\nmax_retry_seconds = 0.5\n'
        '[dead_letter]\npath = "dl"\n',
    )
    limit = 125_000  # two batches and part of the third; the dead letters of one batch fit too
    limited = (
        f"import os, resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
        "os.execv(sys.executable, [sys.executable, '-m', 'trailrelay', *sys.argv[1:]])"
    )
    summary = tmp_path / "s.json"
    args = ["forward", "-c", str(cfg), "--once", "--no-progress", "--summary-json", str(summary)]
    result = subprocess.run(
        [sys.executable, "-c", limited, *args], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 4, result.stderr[-2000:]  # finished, with dead letters
    lines = (tmp_path / "out.ndjson").read_bytes().splitlines(keepends=True)
    assert all(line.endswith(b"\n") for line in lines)
    written = [orjson.loads(line)["eventID"] for line in lines]  # every line a whole record
    dead = [orjson.loads(e["raw"])["eventID"] for e in read_entries(tmp_path / "dl")]
    assert (len(written), len(dead)) == (20, 10)
    assert sorted(written + dead) == sorted(e["eventID"] for e in evs)  # each once, in one place
    counts = orjson.loads(summary.read_bytes())
    assert (counts["delivered"], counts["dead_lettered"]) == ({"file": 20}, {"sink": 10})


def test_an_error_is_one_line_on_stderr_that_is_not_a_terminal(tmp_path: Path) -> None:
    """rich wrapped messages at 80 columns when stderr was a pipe or a journal: one error, three lines."""
    deep = tmp_path / ("rules-folder-with-a-long-name-" * 3) / "missing.yml"
    (tmp_path / "in").mkdir()
    cfg = _config(
        tmp_path,
        f'[source]\ntype = "files"\npath = "in"\n[[sinks]]\ntype = "stdout"\n[detection]\nrules = ["{deep}"]\n',
    )
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    result = subprocess.run(
        [sys.executable, "-m", "trailrelay", "forward", "-c", str(cfg), "--once", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )
    assert result.returncode == 2, result.stderr
    assert len(result.stderr) > 100 and str(deep) in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error:"), result.stderr
