"""Pseudonymization wired into forwarding: per sink, never touching the other sinks' records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from trailrelay.config import parse_config
from trailrelay.pipeline.forwarder import build_pipeline

KEY = "k" * 8 + "0123456789abcdef0123456789abcdef"


def test_only_the_named_sink_gets_pseudonyms(
    tmp_path: Path, make_object: Any, make_events: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PSEUDO_KEY", KEY)
    evs = make_events(12)
    make_object(tmp_path / "in" / "a.json.gz", evs)
    config = parse_config(
        {
            "source": {"type": "files", "path": str(tmp_path / "in")},
            "sinks": [
                {"type": "file", "name": "abroad", "path": str(tmp_path / "abroad.ndjson")},
                {"type": "file", "name": "home", "path": str(tmp_path / "home.ndjson")},
            ],
            "privacy": {
                "key_env": "PSEUDO_KEY",
                "sinks": {"abroad": "standard"},
            },
        },
        base_dir=tmp_path,
    )
    built = build_pipeline(config)
    assert built.pipeline.run().ok
    for s in built.sinks.values():
        s.close()
    home = [orjson.loads(x) for x in (tmp_path / "home.ndjson").read_bytes().splitlines()]
    abroad = [orjson.loads(x) for x in (tmp_path / "abroad.ndjson").read_bytes().splitlines()]
    assert sorted(h["eventID"] for h in home) == sorted(e["eventID"] for e in evs)
    assert sorted(h["eventID"] for h in home) == sorted(a["eventID"] for a in abroad)
    by_id = {a["eventID"]: a for a in abroad}
    for original in home:
        masked = by_id[original["eventID"]]
        assert original in evs  # the unmasked sink got the events exactly
        if original["userIdentity"].get("userName"):
            assert masked["userIdentity"]["userName"].startswith("tr1_")
            assert masked["userIdentity"]["userName"] != original["userIdentity"]["userName"]
        ip = original["sourceIPAddress"]
        if ip[0].isdigit():
            assert masked["sourceIPAddress"] == ".".join([*ip.split(".")[:3], "0"])
    names = {a["userIdentity"].get("userName") for a in abroad if a["userIdentity"].get("userName")}
    assert len(names) == 1  # the same person maps to the same token in every event
    assert KEY not in (tmp_path / "abroad.ndjson").read_text()


def test_unknown_sink_in_privacy_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trailrelay.errors import ConfigError

    monkeypatch.setenv("PSEUDO_KEY", KEY)
    with pytest.raises(ConfigError, match="nosuch"):
        parse_config(
            {
                "source": {"type": "files", "path": "x"},
                "sinks": [{"type": "stdout"}],
                "privacy": {"key_env": "PSEUDO_KEY", "sinks": {"nosuch": "standard"}},
            }
        )


def test_forward_never_sends_a_value_hidden_behind_a_duplicate_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parse keeps a duplicate key's last value; the first one is not in the masked sink's bytes."""
    from click.testing import CliRunner

    from trailrelay.cli.main import cli

    monkeypatch.setenv("PSEUDO_KEY", KEY)
    (tmp_path / "in.json").write_bytes(
        b'{"Records":[{"eventVersion":"1.08","eventTime":"2026-03-02T10:00:00Z","eventID":"d1",'
        b'"eventSource":"iam.amazonaws.com","eventName":"GetUser",'
        b'"sourceIPAddress":"203.0.113.77","sourceIPAddress":"AWS Internal",'
        b'"userIdentity":{"type":"IAMUser","userName":"alice","userName":null}}]}'
    )
    (tmp_path / "c.toml").write_text(
        '[source]\ntype = "files"\npath = "in.json"\n'
        '[[sinks]]\ntype = "file"\nname = "masked"\npath = "masked.ndjson"\n'
        '[privacy]\nkey_env = "PSEUDO_KEY"\n[privacy.sinks]\nmasked = "standard"\n'
    )
    result = CliRunner().invoke(cli, ["forward", "-c", str(tmp_path / "c.toml"), "--once", "--no-progress"])
    assert result.exit_code == 0, result.output
    masked = (tmp_path / "masked.ndjson").read_bytes()
    assert b'"eventID":"d1"' in masked
    assert b"alice" not in masked
    assert b"203.0.113.77" not in masked


def test_a_sink_given_in_place_of_the_configured_ones_is_never_sent_unmasked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trailrelay.aws_lambda.transform import _Collect
    from trailrelay.errors import ConfigError
    from trailrelay.pipeline.forwarder import Forwarder, _Records

    monkeypatch.setenv("PSEUDO_KEY", KEY)
    config = parse_config(
        {
            "source": {"type": "files", "path": str(tmp_path)},
            "sinks": [{"type": "stdout"}],
            "privacy": {"key_env": "PSEUDO_KEY", "default": "standard"},
        }
    )
    forwarder = Forwarder(config, open_sinks=False)
    with pytest.raises(ConfigError, match="'elsewhere' gets privacy profile 'standard'"):
        forwarder.pipeline(_Records([]), sinks={"elsewhere": _Collect()})


def test_each_sink_reports_the_records_its_own_profile_changed(
    tmp_path: Path, make_object: Any, make_events: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two sinks on one profile: each summary counts that sink's records once, not both sinks' total."""
    from click.testing import CliRunner

    from trailrelay.cli.main import cli

    monkeypatch.setenv("PSEUDO_KEY", KEY)
    evs = make_events(12)
    make_object(tmp_path / "in" / "a.json.gz", evs)
    (tmp_path / "c.toml").write_text(
        '[source]\ntype = "files"\npath = "in"\n'
        '[[sinks]]\ntype = "file"\nname = "one"\npath = "one.ndjson"\n'
        '[[sinks]]\ntype = "file"\nname = "two"\npath = "two.ndjson"\n'
        '[privacy]\nkey_env = "PSEUDO_KEY"\n[privacy.sinks]\none = "standard"\ntwo = "standard"\n'
    )
    summary = tmp_path / "summary.json"
    result = CliRunner().invoke(
        cli,
        [
            "forward",
            "-c",
            str(tmp_path / "c.toml"),
            "--once",
            "--no-progress",
            "--summary-json",
            str(summary),
        ],
    )
    assert result.exit_code == 0, result.output
    stats = orjson.loads(summary.read_bytes())["privacy"]
    changed = sum(1 for e in evs if e["userIdentity"].get("userName") or e["sourceIPAddress"][0].isdigit())
    assert changed > 0
    assert stats["one"]["records_changed"] == stats["two"]["records_changed"] == changed
