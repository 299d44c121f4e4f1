"""``trailrelay reveal``: an investigator with the key finds which candidate a token stands for."""

from __future__ import annotations

import copy
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from trailrelay.privacy import FieldRule, Key, PrivacyProfile, Pseudonymizer, Tokenizer
from trailrelay.privacy.cli import reveal_command
from trailrelay.privacy.reveal import candidates, find_tokens, reveal
from trailrelay.record import Origin, Record
from trailrelay.testing import SAMPLE_EVENTS

MATERIAL = "reveal-test-key-0123456789-abcdefghijklmnop"
KEY = Key(MATERIAL.encode(), "test")


@pytest.fixture
def key_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TR_REVEAL_KEY", MATERIAL)
    return "TR_REVEAL_KEY"


def pseudonymized(**fields: str) -> dict[str, object]:
    """A sample event passed through a profile that pseudonymizes the given fields."""
    doc = copy.deepcopy(SAMPLE_EVENTS[0])
    prof = PrivacyProfile(
        fields=[
            FieldRule(path="sourceIPAddress", method="pseudonymize"),
            FieldRule(path="userIdentity.arn", method="principal"),
            FieldRule(
                path="requestParameters.userName", method="pseudonymize", domain=fields.get("domain", "")
            ),
        ]
    )
    doc["requestParameters"] = {"userName": fields.get("target", "mallory")}
    rec = Record.from_bytes(orjson.dumps(doc), Origin("file", "x"))
    return Pseudonymizer(prof, KEY).apply(rec).document()


def run(*args: str) -> tuple[int, list[dict[str, object]], str]:
    result = CliRunner().invoke(reveal_command, list(args))
    lines = [orjson.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return result.exit_code, lines, result.stderr


def test_reveal_from_typed_candidates(key_env: str) -> None:
    doc = pseudonymized()
    arn = doc["userIdentity"]["arn"]  # type: ignore[index]
    code, lines, err = run(arn, "--key-env", key_env, "--value", "bob", "--value", "alice")
    assert code == 0, err
    assert lines == [{"token": find_tokens([arn])[0], "value": "alice", "domain": ""}]
    assert "1 of 1 token(s) matched" in err
    assert KEY.fingerprint in err
    assert MATERIAL not in err


def test_reveal_ip_by_cidr(key_env: str) -> None:
    token = pseudonymized()["sourceIPAddress"]
    code, lines, err = run(str(token), "--key-env", key_env, "--cidr", "203.0.112.0/22")
    assert code == 0, err
    assert lines[0]["value"] == "203.0.113.7"


def test_reveal_from_candidate_file_with_email_normalization(key_env: str, tmp_path: Path) -> None:
    token = Tokenizer(KEY).token("carol@example.com")
    names = tmp_path / "staff.txt"
    names.write_text("alice\nbob\n\nCarol@Example.com\n")
    code, lines, _ = run(token, "--key-env", key_env, "--candidates", str(names))
    assert code == 0
    assert lines == [{"token": token, "value": "Carol@Example.com", "domain": ""}]


def test_reveal_with_config_tries_its_domains(key_env: str, tmp_path: Path) -> None:
    token = pseudonymized(target="mallory", domain="targets")["requestParameters"]["userName"]  # type: ignore[index]
    config = tmp_path / "trailrelay.toml"
    config.write_text(
        f"""
[source]
type = "files"
path = "in"

[[sinks]]
type = "not-installed-here"

[privacy]
key_env = "${{KEY_VAR_NAME:-{key_env}}}"
default = "p"

[privacy.profiles.p]
fields = [{{ path = "requestParameters.userName", method = "pseudonymize", domain = "targets" }}]
"""
    )
    code, lines, err = run(str(token), "-c", str(config), "--value", "mallory")
    assert code == 0, err
    assert lines == [{"token": token, "value": "mallory", "domain": "targets"}]
    code, lines, _ = run(str(token), "--key-env", key_env, "--value", "mallory")  # default domain only
    assert code == 1
    assert lines == [{"token": token, "value": None, "domain": None}]


def test_reveal_reports_unmatched_tokens(key_env: str) -> None:
    a, b = Tokenizer(KEY).token("alice"), Tokenizer(KEY).token("zed")
    code, lines, err = run(f"{a} {b}", "--key-env", key_env, "--value", "alice")
    assert code == 1
    assert {(x["token"], x["value"]) for x in lines} == {(a, "alice"), (b, None)}
    assert "1 of 2" in err


def test_wrong_key_finds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TR_OTHER", "another-key-entirely-0123456789-ABCDEFGHIJ")
    code, lines, _ = run(Tokenizer(KEY).token("alice"), "--key-env", "TR_OTHER", "--value", "alice")
    assert code == 1
    assert lines[0]["value"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["not-a-token", "--key-env", "TR_REVEAL_KEY", "--value", "x"], "no tr1_ token"),
        (["tr1_aaaaaaaaaaaaaaaaaaaa", "--key-env", "TR_REVEAL_KEY"], "give candidates"),
        (["tr1_aaaaaaaaaaaaaaaaaaaa", "--value", "x"], "no key"),
        (["tr1_aaaaaaaaaaaaaaaaaaaa", "--key-env", "TR_REVEAL_KEY", "--cidr", "10.0.0.0/7"], "the limit is"),
        (
            ["tr1_aaaaaaaaaaaaaaaaaaaa", "--key-env", "TR_REVEAL_KEY", "--cidr", "10.0.0.300/24"],
            "does not appear",
        ),
        (
            ["tr1_aaaaaaaaaaaaaaaaaaaa", "--key-env", "TR_UNSET_VAR", "--value", "x"],
            "TR_UNSET_VAR is not set",
        ),
        (
            ["tr1_aaaaaaaaaaaaaaaaaaaa", "-c", "x.toml", "--key-env", "TR_REVEAL_KEY", "--value", "x"],
            "not both",
        ),
        # the config's [privacy] table says how its key is written: the option would be ignored
        (["tr1_aaaaaaaaaaaaaaaaaaaa", "-c", "x.toml", "--key-encoding", "hex", "--value", "x"], "not both"),
        (
            ["tr1_aaaaaaaaaaaaaaaaaaaa", "-c", "x.toml", "--key-region", "eu-west-1", "--value", "x"],
            "not both",
        ),
        # a token run on or cut short is refused, not matched on a part of it
        (
            ["tr1_aaaaaaaaaaaaaaaaaaaaEXTRA", "--key-env", "TR_REVEAL_KEY", "--value", "x"],
            "'tr1_aaaaaaaaaaaaaaaaaaaaEXTRA' is not a token",
        ),
        (["user/tr1_aaaa", "--key-env", "TR_REVEAL_KEY", "--value", "x"], "'tr1_aaaa' is not a token"),
    ],
)
def test_reveal_usage_errors(key_env: str, args: list[str], message: str) -> None:
    code, _, err = run(*args)
    assert code == 2
    assert message in err
    assert MATERIAL not in err


def test_reveal_short_key_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TR_SHORT", "tiny")
    code, _, err = run("tr1_aaaaaaaaaaaaaaaaaaaa", "--key-env", "TR_SHORT", "--value", "x")
    assert code == 2
    assert "at least 32" in err
    assert "tiny" not in err


def test_reveal_function_stops_when_all_found() -> None:
    tok = Tokenizer(KEY)
    wanted = [tok.token("10.0.0.5")]
    result = reveal(wanted, candidates(cidrs=["10.0.0.0/16"]), tok)
    assert [m.value for m in result.matches] == ["10.0.0.5"]
    assert result.tried == 6
    assert result.unmatched == []
