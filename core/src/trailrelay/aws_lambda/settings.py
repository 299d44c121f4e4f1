"""The Lambda function's configuration: ``TRAILRELAY_CONFIG`` read once per container.

``TRAILRELAY_CONFIG`` holds one of:

- the TOML document itself (anything with a newline or an ``=`` in it);
- ``s3://bucket/key`` of the TOML document;
- ``ssm:/parameter/name`` or an SSM parameter ARN (``arn:aws:ssm:...:parameter/...``);
- a Secrets Manager secret ARN (``arn:aws:secretsmanager:...``) whose string is the document;
- otherwise, a path to the file (relative to the function's code, ``/var/task``).

The document is the same TOML as ``trailrelay forward`` reads, without ``[source]`` (or with
``[source] type = "lambda"`` for its options). Values may use ``${NAME}`` (environment),
``${file:/path}``, and the AWS references of :mod:`trailrelay.aws_lambda.secrets`. Relative
paths (a file sink, the dead-letter folder) are relative to the config file's folder, or to the
writable temporary folder (``/tmp``) for a document that is not a file.
"""

from __future__ import annotations

import os
import re
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from trailrelay.aws_lambda.secrets import AwsSecrets, resolve_aws_references
from trailrelay.config import Config, parse_config
from trailrelay.errors import ConfigError
from trailrelay.sources.aws import aws_client

__all__ = ["ENV_VAR", "describe_origin", "load_lambda_config"]

ENV_VAR = "TRAILRELAY_CONFIG"
_SSM_ARN = re.compile(r"^arn:aws[\w-]*:ssm:")
_SECRET_ARN = re.compile(r"^arn:aws[\w-]*:secretsmanager:")


def describe_origin(value: str) -> str:
    """Where a ``TRAILRELAY_CONFIG`` value points, for messages (never the document itself)."""
    kind = _kind(value)
    return "an inline TOML document" if kind == "inline" else f"{kind} {value}"


def load_lambda_config(value: str | None = None, *, secrets: AwsSecrets | None = None) -> Config:
    """Read and validate the configuration that ``TRAILRELAY_CONFIG`` holds or points to."""
    value = os.environ.get(ENV_VAR) if value is None else value
    if not value or not value.strip():
        raise ConfigError(
            f"{ENV_VAR} is not set: give it the TOML document, s3://bucket/key, ssm:/name, "
            "a Secrets Manager ARN or a file path"
        )
    secrets = secrets or AwsSecrets()
    text, base_dir = _fetch(value.strip(), secrets)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{ENV_VAR} ({describe_origin(value)}) is not valid TOML: {exc}") from None
    source = doc.setdefault("source", {"type": "lambda"})
    if not isinstance(source, dict) or source.setdefault("type", "lambda") != "lambda":
        raise ConfigError(
            '[source]: a Lambda function reads its events; leave [source] out or use type = "lambda"'
        )
    return parse_config(resolve_aws_references(doc, secrets), base_dir=base_dir)


def _kind(value: str) -> str:
    if value.startswith("s3://"):
        return "S3 object"
    if value.startswith("ssm:") or _SSM_ARN.match(value):
        return "SSM parameter"
    if _SECRET_ARN.match(value):
        return "secret"
    if "\n" in value or "=" in value:
        return "inline"
    return "file"


def _fetch(value: str, secrets: AwsSecrets) -> tuple[str, Path]:
    kind = _kind(value)
    scratch = Path(tempfile.gettempdir())
    if kind == "inline":
        return value, scratch
    if kind == "file":
        path = Path(value)
        try:
            return path.read_text(encoding="utf-8"), path.resolve().parent
        except OSError as exc:
            raise ConfigError(f"{ENV_VAR}: cannot read config file {path}: {exc.strerror}") from None
    if kind == "S3 object":
        return _s3_text(value), scratch
    ref = f"ssm:{value.removeprefix('ssm:')}" if kind == "SSM parameter" else f"aws-secret:{value}"
    return secrets.resolve(ref, ENV_VAR), scratch


def _s3_text(uri: str) -> str:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise ConfigError(f"{ENV_VAR}: {uri} is not s3://bucket/key")
    try:
        body: Any = aws_client("s3").get_object(Bucket=bucket, Key=key)["Body"]
        data: bytes = body.read()
    except Exception as exc:
        raise ConfigError(f"{ENV_VAR}: cannot read {uri}: {type(exc).__name__}: {exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{ENV_VAR}: {uri} is not UTF-8 text") from None
