"""Where the pseudonymization key comes from: env, file, Secrets Manager, KMS (on moto server)."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest

from trailrelay.errors import ConfigError
from trailrelay.privacy import Key, PrivacyConfig, Tokenizer, load_key
from trailrelay.privacy.keys import decode_key

MATERIAL = secrets.token_urlsafe(32)  # 43 random characters


def cfg(**keys: Any) -> PrivacyConfig:
    return PrivacyConfig(default="standard", **keys)


def token_with(material: bytes) -> str:
    return Tokenizer(Key(material, "reference")).token("alice")


def test_key_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TR_KEY", MATERIAL)
    key = load_key(cfg(key_env="TR_KEY"))
    assert key is not None
    assert Tokenizer(key).token("alice") == token_with(MATERIAL.encode())
    assert "TR_KEY" in key.source


def test_missing_env_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TR_NOPE", raising=False)
    with pytest.raises(ConfigError, match="TR_NOPE is not set"):
        load_key(cfg(key_env="TR_NOPE"))


def test_key_file_relative_to_config_and_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "pseudo.key").write_text(MATERIAL + "\n")
    key = load_key(cfg(key_file=Path("secrets/pseudo.key")), tmp_path)
    assert key is not None
    assert Tokenizer(key).token("alice") == token_with(MATERIAL.encode())


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
def test_env_and_file_holding_the_same_line_are_the_same_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ending: str
) -> None:
    (tmp_path / "k.txt").write_bytes((MATERIAL + ending).encode())
    monkeypatch.setenv("TR_KEY", MATERIAL + ending)
    from_env = load_key(cfg(key_env="TR_KEY"))
    from_file = load_key(cfg(key_file=tmp_path / "k.txt"))
    assert from_env is not None
    assert from_file is not None
    assert from_env.fingerprint == from_file.fingerprint
    assert Tokenizer(from_env).token("alice") == token_with(MATERIAL.encode())


def test_reveal_with_key_env_finds_a_token_made_with_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from trailrelay.cli.main import cli

    (tmp_path / "k.txt").write_text(MATERIAL + "\n")
    key = load_key(cfg(key_file=tmp_path / "k.txt"))
    assert key is not None
    token = Tokenizer(key).token("alice")
    # the file's content with its newline (KEY="$(cat k.txt)" would drop it)
    monkeypatch.setenv("TR_KEY", (tmp_path / "k.txt").read_text())
    result = CliRunner().invoke(cli, ["reveal", token, "--key-env", "TR_KEY", "--value", "alice"])
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout.splitlines()[0]) == {"token": token, "value": "alice", "domain": ""}


def test_binary_key_file_is_used_byte_for_byte(tmp_path: Path) -> None:
    material = bytes(range(200, 232)) + b"\n"  # not UTF-8: the newline byte belongs to the key
    (tmp_path / "k.bin").write_bytes(material)
    key = load_key(cfg(key_file=tmp_path / "k.bin"))
    assert key is not None
    assert Tokenizer(key).token("alice") == token_with(material)


def test_missing_key_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"privacy.key_file: cannot read .*missing"):
        load_key(cfg(key_file=tmp_path / "missing"))


@pytest.mark.parametrize("encoding", ["base64", "hex"])
def test_key_encodings(monkeypatch: pytest.MonkeyPatch, encoding: str) -> None:
    material = secrets.token_bytes(32)
    text = base64.b64encode(material).decode() if encoding == "base64" else material.hex()
    monkeypatch.setenv("TR_KEY", text)
    key = load_key(cfg(key_env="TR_KEY", key_encoding=encoding))
    assert key is not None
    assert Tokenizer(key).token("alice") == token_with(material)


def test_bad_encoding_does_not_echo_the_key() -> None:
    with pytest.raises(ConfigError, match="not valid hex") as info:
        decode_key(b"zz-not-hex-but-secret-material-0123456789", "hex", "environment variable K")
    assert "secret-material" not in str(info.value)


@pytest.mark.parametrize(
    ("material", "reason"),
    [
        (b"short-key", "9 bytes; at least 32"),
        (b"", "0 bytes"),
        (b"changemechangemechangemechangeme", "repeats a handful"),
        (b"a" * 64, "repeats a handful"),
    ],
)
def test_weak_keys_refused_without_echo(material: bytes, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason) as info:
        Key(material, "environment variable K")
    if material:
        assert material.decode() not in str(info.value)
    assert "secrets.token_urlsafe" in str(info.value)


def test_base64_key_too_short_after_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TR_KEY", base64.b64encode(secrets.token_bytes(16)).decode())
    with pytest.raises(ConfigError, match="16 bytes"):
        load_key(cfg(key_env="TR_KEY", key_encoding="base64"))


def test_no_key_source_gives_none() -> None:
    assert (
        load_key(
            PrivacyConfig.validate(
                {"default": "ip", "profiles": {"ip": {"fields": [{"path": "x", "method": "drop"}]}}}
            )
        )
        is None
    )


# -- AWS, on moto server ------------------------------------------------------------------------


def test_key_from_secrets_manager_string(aws_env: str) -> None:
    sm = boto3.client("secretsmanager", region_name="eu-west-1")
    arn = sm.create_secret(Name="trailrelay/pseudo-key", SecretString=MATERIAL)["ARN"]
    key = load_key(cfg(key_secret_arn=arn))  # region taken from the ARN
    assert key is not None
    assert Tokenizer(key).token("alice") == token_with(MATERIAL.encode())
    assert "trailrelay/pseudo-key" in key.source


def test_key_from_secrets_manager_json_member_and_binary(aws_env: str) -> None:
    sm = boto3.client("secretsmanager", region_name="us-east-1")
    sm.create_secret(
        Name="tr-json", SecretString=orjson.dumps({"pseudonym_key": MATERIAL, "other": 1}).decode()
    )
    key = load_key(cfg(key_secret_arn="tr-json", key_secret_json_key="pseudonym_key", key_region="us-east-1"))
    assert key is not None
    assert Tokenizer(key).token("alice") == token_with(MATERIAL.encode())
    with pytest.raises(ConfigError, match="no string member 'nope'"):
        load_key(cfg(key_secret_arn="tr-json", key_secret_json_key="nope", key_region="us-east-1"))
    material = secrets.token_bytes(32)
    sm.create_secret(Name="tr-bin", SecretBinary=material)
    key = load_key(cfg(key_secret_arn="tr-bin", key_region="us-east-1"))
    assert key is not None
    assert Tokenizer(key).token("alice") == token_with(material)


def test_missing_secret_is_a_config_error(aws_env: str) -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope-AbCdEf"
    with pytest.raises(ConfigError, match="ResourceNotFoundException"):
        load_key(cfg(key_secret_arn=arn))


def test_key_from_kms_ciphertext(aws_env: str) -> None:
    kms = boto3.client("kms", region_name="us-east-1")
    key_id = kms.create_key(Description="trailrelay pseudonyms")["KeyMetadata"]["KeyId"]
    data_key = kms.generate_data_key(KeyId=key_id, KeySpec="AES_256", EncryptionContext={"app": "trailrelay"})
    blob = base64.b64encode(data_key["CiphertextBlob"]).decode()
    key = load_key(
        cfg(key_kms_ciphertext=blob, key_kms_context={"app": "trailrelay"}, key_region="us-east-1")
    )
    assert key is not None
    assert Tokenizer(key).token("alice") == token_with(data_key["Plaintext"])
    with pytest.raises(ConfigError, match="cannot decrypt the key with KMS") as info:
        load_key(cfg(key_kms_ciphertext=blob, key_kms_context={"app": "other"}, key_region="us-east-1"))
    assert blob not in str(info.value)
    with pytest.raises(ConfigError, match="not valid base64"):
        load_key(cfg(key_kms_ciphertext="!!!", key_region="us-east-1"))
