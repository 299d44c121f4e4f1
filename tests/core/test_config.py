"""Configuration: interpolation, typed validation, errors that name keys and never values."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from trailrelay.config import load_config, parse_config
from trailrelay.errors import ConfigError, PluginNotFound
from trailrelay.plugins import installed_sinks

SECRET = "s3cr3t-Value-That-Must-Not-Leak"


def _cfg(**over: object) -> dict[str, object]:
    base: dict[str, object] = {
        "source": {"type": "files", "path": "/tmp/in"},
        "sinks": [{"type": "file", "path": "/tmp/o"}],
    }
    base.update(over)
    return base


def test_env_and_file_interpolation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAIL_DIR", str(tmp_path))
    (tmp_path / "name.txt").write_text("from-file\n")
    cfg = parse_config(
        _cfg(
            source={"type": "files", "path": "${TRAIL_DIR}/in"},
            sinks=[
                {
                    "type": "file",
                    "path": "${TRAIL_DIR}/out.ndjson",
                    "name": "${file:" + str(tmp_path / "name.txt") + "}",
                }
            ],
            dead_letter={"path": "${DL_DIR:-dl}"},
        )
    )
    assert str(cfg.source.path) == f"{tmp_path}/in"  # type: ignore[union-attr]
    assert cfg.sinks[0].display_name == "from-file"
    assert cfg.dead_letter.path == Path("dl")


def test_a_trailing_newline_is_removed_from_environment_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Kubernetes secret made with ``echo`` ends in a newline: ``${NAME}`` drops it as
    ``${file:...}`` does (it ended up in the sink's Authorization header, and in the error)."""
    monkeypatch.setenv("SINK_NAME", "from-env\n")
    monkeypatch.setenv("OUT_DIR", "/tmp/out\r\n")
    cfg = parse_config(_cfg(sinks=[{"type": "file", "path": "${OUT_DIR}/x.ndjson", "name": "${SINK_NAME}"}]))
    assert cfg.sinks[0].display_name == "from-env"
    assert str(cfg.sinks[0].path) == "/tmp/out/x.ndjson"  # type: ignore[attr-defined]


def test_a_default_is_used_for_an_empty_variable_as_in_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """``SINK_FILE= trailrelay ...`` with ``${SINK_FILE:-default}`` wrote to ``out/.ndjson``."""
    monkeypatch.setenv("SINK_FILE", "")
    monkeypatch.setenv("SINK_NAME", "\n")  # empty too once the trailing newline is removed
    monkeypatch.setenv("SET_DIR", "/tmp/set")
    cfg = parse_config(
        _cfg(
            sinks=[
                {
                    "type": "file",
                    "path": "${SET_DIR:-/tmp/d}/${SINK_FILE:-default}.ndjson",
                    "name": "${SINK_NAME:-a}",
                }
            ]
        )
    )
    assert str(cfg.sinks[0].path) == "/tmp/set/default.ndjson"  # type: ignore[attr-defined]
    assert cfg.sinks[0].display_name == "a"
    empty = parse_config(_cfg(sinks=[{"type": "file", "path": "/tmp/o${SINK_FILE}"}]))
    assert str(empty.sinks[0].path) == "/tmp/o"  # type: ignore[attr-defined]  # no default: empty, as in the shell


def test_a_literal_reference_is_escaped_and_an_empty_one_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """``$${X}`` was interpolated all the same (no way to write ``${``), and ``${}`` was left as it
    was without a word."""
    monkeypatch.setenv("X", "interpolated")
    cfg = parse_config(_cfg(sinks=[{"type": "file", "path": "/tmp/$${X}/$${/a$$b$/${X}", "name": "$$${X}"}]))
    assert str(cfg.sinks[0].path) == "/tmp/${X}/${/a$$b$/interpolated"  # type: ignore[attr-defined]
    assert cfg.sinks[0].display_name == "$${X}"  # "$" then the escape
    with pytest.raises(
        ConfigError, match=r"^sinks\[0\]\.name: \$\{\} names nothing \(write \$\$\{ for a literal"
    ):
        parse_config(_cfg(sinks=[{"type": "file", "path": "/tmp/o", "name": "a${}b"}]))


def test_a_reference_never_closed_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """``${HEC_TOKEN`` (a lost brace) was taken as the literal text and sent as the token."""
    monkeypatch.setenv("HEC_TOKEN", "t")
    with pytest.raises(ConfigError, match=r"^sinks\[0\]\.name: \$\{ is never closed with \}"):
        parse_config(_cfg(sinks=[{"type": "file", "path": "/tmp/o", "name": "${HEC_TOKEN"}]))
    closed_later = parse_config(_cfg(sinks=[{"type": "file", "path": "/tmp/o", "name": "$${HEC_TOKEN"}]))
    assert closed_later.sinks[0].display_name == "${HEC_TOKEN"  # the escape stays a literal


def test_missing_env_var_names_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_NOT_SET", raising=False)
    with pytest.raises(ConfigError, match=r"sinks\[0\]\.path: environment variable NOPE_NOT_SET is not set"):
        parse_config(_cfg(sinks=[{"type": "file", "path": "${NOPE_NOT_SET}"}]))


def test_errors_name_keys_and_hide_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("A_SECRET", SECRET)
    with pytest.raises(ConfigError) as info:
        parse_config(
            _cfg(
                sinks=[{"type": "file", "path": "/x", "batch_events": "${A_SECRET}", "tokne": "${A_SECRET}"}]
            )
        )
    text = str(info.value)
    assert "sinks[0].batch_events" in text
    assert "sinks[0].tokne: unknown key" in text
    assert SECRET not in text


@pytest.mark.parametrize(
    ("over", "needle"),
    [
        ({"source": {"type": "kafka"}}, "source"),
        ({"source": {"type": "s3"}}, "source.bucket: required"),
        ({"source": {"type": "sqs", "queue_url": "u", "wait_seconds": 30}}, "wait_seconds"),
        (
            {
                "source": {
                    "type": "s3",
                    "bucket": "b",
                    "start_time": "2026-03-02T00:00:00Z",
                    "end_time": "2026-03-01T00:00:00Z",
                }
            },
            "start_time is after end_time",
        ),
        ({"source": {"type": "s3", "bucket": "s3://trail-b"}}, 'write bucket = "trail-b"\n'),
        (
            {"source": {"type": "s3", "bucket": "s3://trail-b/AWSLogs/o-1/"}},
            'write bucket = "trail-b" and prefix = "AWSLogs/o-1/"',
        ),
        (
            {"source": {"type": "s3", "bucket": "trail-b/AWSLogs"}},
            'bucket = "trail-b" and prefix = "AWSLogs"',
        ),
        ({"sinks": []}, "at least one sink"),
        (
            {"sinks": [], "sink": [{"type": "file", "path": "x"}]},
            "the file has a 'sink' table: write [[sinks]]",
        ),
        ({"sinks": [{"path": "x"}]}, "sinks[0].type: required"),
        ({"sinks": [{"type": "file", "path": "a"}, {"type": "file", "path": "b"}]}, "names must be unique"),
        ({"filter": {"rules": [{"name": "r", "action": "drop", "category": ["Mgmt"]}]}}, "unknown category"),
        ({"privacy": {"fields": ["sourceIPAddress"]}}, "privacy.fields"),
    ],
)
def test_invalid_configs(over: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_cfg(**over))
    assert needle in str(info.value) + "\n"


def test_an_access_point_arn_is_a_bucket() -> None:
    arn = "arn:aws:s3:us-east-1:123456789012:accesspoint/trail-ap"
    assert parse_config(_cfg(source={"type": "s3", "bucket": arn})).source.bucket == arn  # type: ignore[union-attr]


def test_unknown_sink_type_lists_installed_and_hints() -> None:
    with pytest.raises(PluginNotFound) as info:
        parse_config(_cfg(sinks=[{"type": "splunkk"}]))
    assert "installed:" in str(info.value) and "file" in str(info.value)


def test_a_sink_without_a_type_lists_the_installed_types() -> None:
    """The list was a fixed text naming file, stdout, splunk, elastic or sentinel: an installed
    opensearch (or a third party's sink) was left out."""
    with pytest.raises(ConfigError) as info:
        parse_config(_cfg(sinks=[{"type": "file", "path": "a"}, {"path": "x"}]))
    message = str(info.value)
    assert message.startswith("sinks[1].type: required, one of the installed sink types: ")
    listed = message.rpartition(": ")[2].split(", ")
    assert listed == sorted({"file", "stdout", *installed_sinks()})


def test_load_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[source\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_relative_paths_follow_the_config_file(tmp_path: Path) -> None:
    f = tmp_path / "conf" / "t.toml"
    f.parent.mkdir()
    f.write_text('[source]\ntype = "files"\npath = "in"\n[[sinks]]\ntype = "stdout"\n')
    cfg = load_config(f)
    assert cfg.dead_letter_path() == f.parent / "dead-letters"
    assert cfg.state_path() == f.parent / ".trailrelay" / "t.sqlite"


def test_each_config_file_has_its_own_checkpoints_unless_its_folder_has_the_old_shared_file(
    tmp_path: Path,
) -> None:
    """Two configs in one folder (one per SIEM) shared ``.trailrelay/state.sqlite``: the second
    skipped everything the first had finished. The default is now one file per config; a folder
    that has the old shared file keeps it for configs without their own (nothing sent again)."""
    body = '[source]\ntype = "files"\npath = "in"\n[[sinks]]\ntype = "stdout"\n'
    for name in ("a.toml", "b.toml"):
        (tmp_path / name).write_text(body)
    a, b = load_config(tmp_path / "a.toml"), load_config(tmp_path / "b.toml")
    assert (a.state_path(), b.state_path()) == (
        tmp_path / ".trailrelay" / "a.sqlite",
        tmp_path / ".trailrelay" / "b.sqlite",
    )
    (tmp_path / ".trailrelay").mkdir()
    (tmp_path / ".trailrelay" / "a.sqlite").touch()
    (tmp_path / ".trailrelay" / "state.sqlite").touch()  # made by an older version
    assert (a.state_path(), b.state_path()) == (
        tmp_path / ".trailrelay" / "a.sqlite",
        tmp_path / ".trailrelay" / "state.sqlite",
    )
    with_path = parse_config(
        {
            "source": {"type": "files", "path": "in"},
            "sinks": [{"type": "stdout"}],
            "state": {"path": "s/x.db"},
        },
        base_dir=tmp_path,
        file_stem="a",
    )
    assert with_path.state_path() == tmp_path / "s" / "x.db"


def test_a_relative_file_reference_follows_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``${file:name.txt}`` was read from the working directory: the config worked from its own
    folder only."""
    f = tmp_path / "conf" / "t.toml"
    f.parent.mkdir()
    (f.parent / "name.txt").write_text("from-file\n")
    f.write_text(
        '[source]\ntype = "files"\npath = "in"\n'
        '[[sinks]]\ntype = "file"\nname = "${file:name.txt}"\npath = "out/${file:./name.txt}.ndjson"\n'
    )
    monkeypatch.chdir(tmp_path)
    cfg = load_config("conf/t.toml")
    assert cfg.sinks[0].display_name == "from-file"
    assert cfg.sinks[0].path == f.parent / "out" / "from-file.ndjson"  # type: ignore[attr-defined]
    f.write_text(f.read_text().replace("${file:name.txt}", "${file:missing.txt}"))
    said = f"sinks[0].name: cannot read secret file {f.parent / 'missing.txt'}: No such file"
    with pytest.raises(ConfigError, match=re.escape(said)):
        load_config(f)


def test_load_sink_config_for_connector_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trailrelay.contract import load_sink_config

    monkeypatch.setenv("OUT_DIR", str(tmp_path))
    f = tmp_path / "t.toml"
    f.write_text(
        '[source]\ntype = "files"\npath = "in"\n'
        '[[sinks]]\ntype = "file"\nname = "a"\npath = "${OUT_DIR}/a.ndjson"\n'
        '[[sinks]]\ntype = "file"\nname = "b"\npath = "b.ndjson"\n[[sinks]]\ntype = "stdout"\n'
    )
    assert load_sink_config(f, "stdout").type == "stdout"
    assert str(load_sink_config(f, "file", "a").path) == f"{tmp_path}/a.ndjson"
    with pytest.raises(ConfigError, match="need exactly one file sink"):
        load_sink_config(f, "file")
    with pytest.raises(ConfigError, match="need exactly one splunk sink"):
        load_sink_config(f, "splunk")


def test_loading_the_config_loads_no_machinery() -> None:
    """`import trailrelay.config` loads the models only: no pipeline, sources, sinks, boto3 or Sigma."""
    code = "import sys, trailrelay.config; print('\\n'.join(sorted(sys.modules)))"
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    models = {
        "trailrelay",
        "trailrelay.config",
        "trailrelay.contract",
        "trailrelay.errors",
        "trailrelay.helpers",
        "trailrelay.record",
        "trailrelay.plugins",
        "trailrelay.settings",
        "trailrelay.transforms",
        "trailrelay.transforms.filters",
        "trailrelay.aws_lambda",
        "trailrelay.aws_lambda.models",
        "trailrelay.detection",
        "trailrelay.detection.config",
        "trailrelay.doctor",
        "trailrelay.doctor.config",
        "trailrelay.integrity",
        "trailrelay.integrity.config",
        "trailrelay.privacy",
        "trailrelay.privacy.config",
        "trailrelay.sinks",
        "trailrelay.sinks.file_config",
        "trailrelay.sources",
        "trailrelay.sources.firehose_config",
    }
    assert {m for m in loaded if m.split(".")[0] == "trailrelay"} <= models
    heavy = {
        "boto3",
        "botocore",
        "requests",
        "urllib3",
        "sigma",
        "cryptography",
        "isal",
        "rich",
        "click",
        "pytest",
    }
    assert not {m.split(".")[0] for m in loaded} & heavy


def test_every_source_and_state_key_is_documented() -> None:
    """[source] insights, max_messages and [state] hash_objects were accepted but in no .md file."""
    import msgspec

    from trailrelay.config import _SOURCES, PipelineConfig, StateConfig

    root = Path(__file__).resolve().parents[2]
    docs = "\n".join(
        p.read_text(encoding="utf-8") for p in [root / "README.md", *(root / "docs").rglob("*.md")]
    )
    models = [*_SOURCES.values(), StateConfig, PipelineConfig]
    keys = {f.name for model in models for f in msgspec.structs.fields(model)}
    undocumented = sorted(k for k in keys if not re.search(rf"(`|^|\s){k}(`| =)", docs, re.MULTILINE))
    assert undocumented == []
    readme = (root / "README.md").read_text(encoding="utf-8")
    for key in ("insights", "max_messages", "hash_objects"):  # in the configuration reference
        assert re.search(rf"`(\[state\] )?{key}`|# {key}|{key} = ", readme), key
