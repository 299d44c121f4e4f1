"""Secret references resolved from AWS: ``${aws-secret:...}`` and ``${ssm:...}`` in config values.

Syntax (alongside the config's ``${NAME}`` and ``${file:/path}``)::

    token = "${aws-secret:arn:aws:secretsmanager:eu-west-1:111122223333:secret:splunk-hec-AbCdEf}"
    token = "${aws-secret:splunk-hec#token}"       # a key of a JSON secret, by name or ARN
    token = "${ssm:/trailrelay/splunk-token}"      # a (SecureString) parameter, decrypted
    token = "${ssm:arn:aws:ssm:eu-west-1:111122223333:parameter/trailrelay/splunk-token}"

A Secrets Manager reference is the secret's name or ARN, optionally followed by ``#key`` to pick
one key of a JSON secret; the region of an ARN is used for the call. Values are fetched once per
process and cached. Errors name the config key and the reference (an ARN or a name, not a
secret), never a value.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import orjson

from trailrelay.errors import ConfigError
from trailrelay.sources.aws import aws_client

__all__ = ["AwsSecrets", "resolve_aws_references"]

_REF = re.compile(r"\$\{((?:aws-secret|ssm):[^}]+)\}")
_ARN_REGION = re.compile(r"^arn:aws[\w-]*:(?:secretsmanager|ssm):([a-z0-9-]+):")


class AwsSecrets:
    """Fetches and caches Secrets Manager secrets and SSM parameters by reference."""

    def __init__(self, clients: dict[tuple[str, str | None], Any] | None = None) -> None:
        self._clients: dict[tuple[str, str | None], Any] = clients or {}
        self._cache: dict[str, str] = {}
        self._lock = threading.Lock()

    def resolve(self, ref: str, where: str) -> str:
        """The value ``ref`` (``aws-secret:...`` or ``ssm:...``) names; ConfigError naming ``where``."""
        with self._lock:
            if ref in self._cache:
                return self._cache[ref]
        kind, _, name = ref.partition(":")
        if not name:
            raise ConfigError(f"{where}: ${{{kind}:}} names no secret")
        value = self._secret(name, where) if kind == "aws-secret" else self._parameter(name, where)
        with self._lock:
            self._cache[ref] = value
        return value

    def _client(self, service: str, region: str | None) -> Any:
        with self._lock:
            client = self._clients.get((service, region))
            if client is None:
                client = aws_client(service, region=region)
                self._clients[(service, region)] = client
            return client

    def _secret(self, name: str, where: str) -> str:
        secret_id, _, key = name.partition("#")
        client = self._client("secretsmanager", _region(secret_id))
        try:
            resp = client.get_secret_value(SecretId=secret_id)
        except Exception as exc:
            raise ConfigError(f"{where}: cannot read secret {secret_id}: {_aws_error(exc)}") from None
        text = resp.get("SecretString")
        if not isinstance(text, str):
            raise ConfigError(
                f"{where}: secret {secret_id} has no string value (binary secrets are not read)"
            )
        if not key:
            return text
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError:
            raise ConfigError(f"{where}: secret {secret_id} is not JSON, so #{key} cannot be read") from None
        value = doc.get(key) if isinstance(doc, dict) else None
        if not isinstance(value, str):
            raise ConfigError(f"{where}: secret {secret_id} has no string key {key!r}")
        return value

    def _parameter(self, name: str, where: str) -> str:
        client = self._client("ssm", _region(name))
        try:
            resp = client.get_parameter(Name=name, WithDecryption=True)
        except Exception as exc:
            raise ConfigError(f"{where}: cannot read SSM parameter {name}: {_aws_error(exc)}") from None
        value = resp.get("Parameter", {}).get("Value")
        if not isinstance(value, str):
            raise ConfigError(f"{where}: SSM parameter {name} has no value")
        return value


def resolve_aws_references(value: Any, secrets: AwsSecrets, where: str = "") -> Any:
    """``value`` (a parsed TOML table) with every ``${aws-secret:...}``/``${ssm:...}`` replaced."""
    if isinstance(value, dict):
        return {
            k: resolve_aws_references(v, secrets, f"{where}.{k}" if where else k) for k, v in value.items()
        }
    if isinstance(value, list):
        return [resolve_aws_references(v, secrets, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:

        def one(m: re.Match[str]) -> str:
            resolved = secrets.resolve(m.group(1), where)
            if "${" in resolved:  # it would be read as a reference by the next interpolation pass
                raise ConfigError(
                    f"{where}: the value of ${{{m.group(1)}}} contains '${{', which is not allowed"
                )
            return resolved

        return _REF.sub(one, value)
    return value


def _region(name: str) -> str | None:
    m = _ARN_REGION.match(name)
    return m.group(1) if m else None


def _aws_error(exc: Exception) -> str:
    """The AWS error code and message (they name the resource, never its value)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        err = response.get("Error", {})
        return f"{err.get('Code', type(exc).__name__)}: {err.get('Message', '')}".rstrip(": ")
    return type(exc).__name__
