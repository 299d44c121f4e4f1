"""The pseudonymization key: where it comes from, how long it must be, and that it stays hidden.

The key is read once at start-up from exactly one place: an environment variable, a file,
an AWS Secrets Manager secret, or a KMS-encrypted blob (decrypted with ``kms:Decrypt``). It
must hold at least 32 bytes (256 bits) after decoding. Only the two HMAC pad states derived
from it are kept; reprs, logs and error messages show where the key came from and a short
fingerprint, never the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from pathlib import Path
from typing import Any, NoReturn

import orjson

from trailrelay.errors import ConfigError
from trailrelay.privacy.config import KeySettings

__all__ = ["MIN_KEY_BYTES", "Key", "decode_key", "load_key"]

MIN_KEY_BYTES = 32
_MIN_DISTINCT = 8
_BLOCK = 64  # SHA-256 block size, for HMAC's pads
_GENERATE = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"


class Key:
    """A secret HMAC-SHA256 key; computes MACs without keeping the key bytes themselves."""

    __slots__ = ("_inner", "_outer", "fingerprint", "length", "source")

    def __init__(self, material: bytes, source: str) -> None:
        if len(material) < MIN_KEY_BYTES:
            raise ConfigError(
                f"privacy key from {source} is {len(material)} bytes; at least {MIN_KEY_BYTES} "
                f"random bytes (256 bits) are required; {_GENERATE}"
            )
        if len(set(material)) < _MIN_DISTINCT:
            raise ConfigError(
                f"privacy key from {source} repeats a handful of characters; it must be random; {_GENERATE}"
            )
        self.source = source
        self.length = len(material)
        block = hashlib.sha256(material).digest() if len(material) > _BLOCK else material
        block = block.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        self.fingerprint = self.mac(b"trailrelay key fingerprint")[:4].hex()
        """Eight hex digits that tell keys apart (safe to show: the key has >= 256 bits)."""

    def mac(self, message: bytes) -> bytes:
        """HMAC-SHA256 of ``message`` under this key (RFC 2104; the pads are precomputed)."""
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def __repr__(self) -> str:
        return f"Key(source={self.source!r}, fingerprint={self.fingerprint}, {self.length} bytes hidden)"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("a privacy Key cannot be pickled")


def decode_key(data: bytes, encoding: str, source: str) -> Key:
    """A Key from its material as written (``raw``, ``base64`` or ``hex``)."""
    if encoding == "raw":
        return Key(data, source)
    try:
        text = data.decode("ascii").strip()
        if encoding == "hex":
            return Key(bytes.fromhex(text), source)
        text = text.replace("-", "+").replace("_", "/")
        return Key(base64.b64decode(text + "=" * (-len(text) % 4), validate=True), source)
    except (UnicodeDecodeError, ValueError, binascii.Error):
        raise ConfigError(f"privacy key from {source} is not valid {encoding}") from None


def load_key(config: KeySettings, base_dir: Path | None = None) -> Key | None:
    """Read the configured key (None when the config names no key source)."""
    enc = config.key_encoding
    if config.key_env is not None:
        name = config.key_env
        value = os.environ.get(name)
        if value is None:
            raise ConfigError(f"privacy.key_env: environment variable {name} is not set")
        return decode_key(_text_line(os.fsencode(value)), enc, f"environment variable {name}")
    if config.key_file is not None:
        path = config.key_file.expanduser()
        if base_dir is not None and not path.is_absolute():
            path = base_dir / path
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"privacy.key_file: cannot read {path}: {exc.strerror}") from None
        return decode_key(_text_line(data), enc, f"file {path}")
    if config.key_secret_arn is not None:
        return decode_key(_from_secrets_manager(config), enc, f"secret {config.key_secret_arn}")
    if config.key_kms_ciphertext is not None:
        return decode_key(_from_kms(config), enc, "KMS ciphertext")
    return None


def _text_line(data: bytes) -> bytes:
    """A trailing newline (CR/LF) of text is not part of the key; binary content is kept as is.

    The same for a file and an environment variable (``KEY=$(cat key.txt)`` or a file's
    content pasted with its newline), as for a ``${...}`` value in the config: one key, one
    fingerprint, the same tokens.
    """
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return data
    return data.rstrip(b"\r\n")


def _region_of(arn: str) -> str | None:
    parts = arn.split(":")
    return (parts[3] or None) if arn.startswith("arn:") and len(parts) > 3 else None


def _client(service: str, region: str | None) -> Any:
    from trailrelay.sources.aws import aws_client  # noqa: PLC0415 - boto3 only when a key lives in AWS

    return aws_client(service, region=region)


def _aws_failure(where: str, what: str, exc: Exception) -> ConfigError:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__
    return ConfigError(f"privacy.{where}: cannot {what}: {code}")


def _from_secrets_manager(config: KeySettings) -> bytes:
    arn = config.key_secret_arn
    assert arn is not None
    try:
        client = _client("secretsmanager", config.key_region or _region_of(arn))
        answer = client.get_secret_value(SecretId=arn)
    except Exception as exc:
        raise _aws_failure("key_secret_arn", "read the secret from Secrets Manager", exc) from None
    if "SecretBinary" in answer and answer["SecretBinary"] is not None:
        data: bytes = answer["SecretBinary"]
    else:
        data = str(answer.get("SecretString") or "").encode()
    member = config.key_secret_json_key
    if member is None:
        return data
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ConfigError("privacy.key_secret_json_key: the secret is not a JSON object") from None
    value = doc.get(member) if isinstance(doc, dict) else None
    if not isinstance(value, str):
        raise ConfigError(f"privacy.key_secret_json_key: the secret has no string member {member!r}")
    return value.encode()


def _from_kms(config: KeySettings) -> bytes:
    blob = config.key_kms_ciphertext
    assert blob is not None
    try:
        ciphertext = base64.b64decode(blob.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("privacy.key_kms_ciphertext: not valid base64") from None
    try:
        client = _client("kms", config.key_region)
        kwargs: dict[str, Any] = {"CiphertextBlob": ciphertext}
        if config.key_kms_context:
            kwargs["EncryptionContext"] = dict(config.key_kms_context)
        answer = client.decrypt(**kwargs)
    except Exception as exc:
        raise _aws_failure("key_kms_ciphertext", "decrypt the key with KMS", exc) from None
    plaintext: bytes = answer["Plaintext"]
    return plaintext
