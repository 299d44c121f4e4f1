"""Secrets never surface: every command run with recognizable fake secrets in config and env.

Logs, errors, dead-letter files, summaries, reprs, ``--help`` and ``check`` output are all
captured and searched for the secret values.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from trailrelay.cli.main import cli
from trailrelay.config import load_config

KEY = "FAKESECRET-pseudonym-key-0123456789-ABCDEFGHIJ"
FILE_SECRET = "FAKESECRET-from-a-file-9876543210-zyxwvutsrq"
SECRETS = (KEY, FILE_SECRET)


def _all_commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = [prefix]
    for name, cmd in sorted(getattr(group, "commands", {}).items()):
        out += _all_commands(cmd, (*prefix, name))
    return out


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_object: Any, make_events: Any) -> Path:
    monkeypatch.setenv("TRAILRELAY_PSEUDONYM_KEY", KEY)
    (tmp_path / "secret.txt").write_text(FILE_SECRET + "\n")
    make_object(tmp_path / "in" / "a.json.gz", make_events(10))
    (tmp_path / "in" / "bad.json").write_bytes(b'{"Records": [42]}')
    cfg = tmp_path / "trailrelay.toml"
    cfg.write_text(
        '[source]\ntype = "files"\npath = "in"\n'
        '[[sinks]]\ntype = "file"\npath = "out.ndjson"\n'
        f'[privacy]\nkey_file = "{tmp_path / "secret.txt"}"\ndefault = "standard"\n'
    )
    return cfg


def test_no_command_leaks_a_secret(setup: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    runner = CliRunner()
    texts = [runner.invoke(cli, [*path, "--help"]).output for path in _all_commands(cli)]
    runs = [
        ["check", "-c", str(setup)],
        ["forward", "-c", str(setup), "--summary-json", str(tmp_path / "summary.json")],
        ["replay-dead-letters", "-c", str(setup)],
        ["reveal", "tr1_aaaaaaaaaaaaaaaaaaaa", "-c", str(setup), "--value", "alice"],
        [
            "reveal",
            "tr1_aaaaaaaaaaaaaaaaaaaa",
            "--key-env",
            "TRAILRELAY_PSEUDONYM_KEY",
            "--cidr",
            "10.0.0.0/28",
        ],
        ["reveal", "tr1_aaaaaaaaaaaaaaaaaaaa", "--key-env", "NOT_SET_ANYWHERE", "--value", "x"],
        ["sinks"],
        ["canary", "-c", str(setup)],
        ["rules", "list"],
    ]
    for args in runs:
        result = runner.invoke(cli, args)
        texts.append(result.output)
        if result.exception and not isinstance(result.exception, SystemExit):
            texts.append(repr(result.exception))
    texts.append(caplog.text)
    assert (tmp_path / "summary.json").exists()  # the runs really used the secrets
    assert "tr1_" in (tmp_path / "out.ndjson").read_text()
    assert list((tmp_path / "dead-letters").glob("*"))
    texts += [
        p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file() and p.name != "secret.txt"
    ]
    config = load_config(setup)
    texts += [repr(config), str(config), repr(config.privacy)]
    assert len(texts) > 20
    joined = "\n".join(texts)
    assert "FAKESECRET" not in joined.replace(KEY, "").replace(FILE_SECRET, "")  # sanity of the search below
    for secret in SECRETS:
        assert secret not in joined


def test_invalid_value_is_named_not_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WRONG", KEY)
    cfg = tmp_path / "t.toml"
    cfg.write_text(
        '[source]\ntype = "files"\npath = "${WRONG}"\n[[sinks]]\ntype = "file"\npath = "o"\nconcurrency = "${WRONG}"\n'
    )
    result = CliRunner().invoke(cli, ["forward", "-c", str(cfg)])
    assert result.exit_code == 2
    assert "sinks[0].concurrency" in result.output
    assert KEY not in result.output
