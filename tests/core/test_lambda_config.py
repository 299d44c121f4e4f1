"""Where the Lambda function's configuration and secrets come from (moto server for S3, SSM, Secrets Manager)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest

from trailrelay.aws_lambda import handler
from trailrelay.aws_lambda import invoke as lambda_invoke
from trailrelay.aws_lambda.models import LambdaSourceConfig
from trailrelay.aws_lambda.secrets import AwsSecrets, resolve_aws_references
from trailrelay.aws_lambda.settings import load_lambda_config
from trailrelay.errors import ConfigError
from trailrelay.pipeline.forwarder import build_pipeline
from trailrelay.testing import SAMPLE_EVENTS

SECRET = "hec-token-5b8e-4c3f-9a51-SECRET"


def _doc(tmp: Path, token_ref: str = "plain") -> str:
    return (
        "[[sinks]]\n"
        'type = "file"\n'
        'name = "archive"\n'
        f'path = "{tmp / "out.ndjson"}"\n'
        f"fsync = false\nbatch_seconds = 0.05\n# a value that needs a secret:\n"
        f'[dead_letter]\npath = "{tmp / "dead"}"\n'
        f'[pipeline]\nreaders = 1\n# token: "{token_ref}"\n'
    )


@pytest.fixture(autouse=True)
def _fresh_container() -> Any:
    lambda_invoke.reset()
    yield
    lambda_invoke.reset()


def test_inline_document_without_a_source_table(tmp_path: Path) -> None:
    config = load_lambda_config(_doc(tmp_path))
    assert isinstance(config.source, LambdaSourceConfig)
    assert config.source.stop_before_timeout == 20.0
    assert config.sinks[0].display_name == "archive"


def test_file_path_relative_paths_follow_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "conf" / "trailrelay.toml"
    cfg.parent.mkdir()
    cfg.write_text('[[sinks]]\ntype = "file"\npath = "out.ndjson"\n')
    config = load_lambda_config(str(cfg))
    assert config.dead_letter_path() == cfg.parent / "dead-letters"
    assert str(config.sinks[0].path) == str(cfg.parent / "out.ndjson")  # type: ignore[attr-defined]


def test_wrong_source_type_and_missing_config_are_clear(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigError, match='type = "lambda"'):
        load_lambda_config('[source]\ntype = "files"\npath = "x"\n' + _doc(tmp_path))
    monkeypatch.delenv("TRAILRELAY_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="TRAILRELAY_CONFIG is not set"):
        load_lambda_config()
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_lambda_config("[[sinks]\n=")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_lambda_config("/nonexistent/trailrelay.toml")
    with pytest.raises(ConfigError, match="finish_before_timeout"):
        load_lambda_config("[source]\nstop_before_timeout = 1\nfinish_before_timeout = 2\n" + _doc(tmp_path))


def test_lambda_source_is_refused_by_forward(tmp_path: Path) -> None:
    config = load_lambda_config(_doc(tmp_path))
    with pytest.raises(ConfigError, match="only inside AWS Lambda"):
        build_pipeline(config)


def test_document_from_s3_ssm_and_secrets_manager(aws_env: str, tmp_path: Path) -> None:
    doc = _doc(tmp_path)
    s3 = boto3.client("s3")
    bucket = f"cfg-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="trailrelay/lambda.toml", Body=doc.encode())
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name="/trailrelay/config", Value=doc, Type="SecureString")
    arn = boto3.client("secretsmanager").create_secret(Name="trailrelay-config", SecretString=doc)["ARN"]
    param_arn = ssm.get_parameter(Name="/trailrelay/config")["Parameter"]["ARN"]
    for value in (f"s3://{bucket}/trailrelay/lambda.toml", "ssm:/trailrelay/config", param_arn, arn):
        config = load_lambda_config(value)
        assert config.sinks[0].display_name == "archive", value
    with pytest.raises(ConfigError, match=r"cannot read s3://.*/missing.toml"):
        load_lambda_config(f"s3://{bucket}/missing.toml")


def test_secret_references_resolve_and_never_leak(aws_env: str, tmp_path: Path) -> None:
    ssm = boto3.client("ssm")
    ssm.put_parameter(Name="/trailrelay/hec-token", Value=SECRET, Type="SecureString")
    sm = boto3.client("secretsmanager")
    arn = sm.create_secret(
        Name="splunk-hec", SecretString=orjson.dumps({"token": SECRET, "user": "u"}).decode()
    )["ARN"]
    sm.create_secret(Name="plain-secret", SecretString=SECRET)
    secrets = AwsSecrets()
    doc = {
        "a": "${ssm:/trailrelay/hec-token}",
        "b": [f"${{aws-secret:{arn}#token}}", "Bearer ${aws-secret:plain-secret}"],
        "c": {"d": "${ENV_LEFT_FOR_LATER}", "e": 7},
    }
    out = resolve_aws_references(doc, secrets)
    assert out == {
        "a": SECRET,
        "b": [SECRET, f"Bearer {SECRET}"],
        "c": {"d": "${ENV_LEFT_FOR_LATER}", "e": 7},
    }
    for ref, says in [
        ("${ssm:/trailrelay/nope}", "cannot read SSM parameter /trailrelay/nope"),
        ("${aws-secret:nope}", "cannot read secret nope"),
        (f"${{aws-secret:{arn}#missing}}", "no string key 'missing'"),
        ("${aws-secret:plain-secret#token}", "is not JSON"),
    ]:
        with pytest.raises(ConfigError) as err:
            resolve_aws_references({"sinks": [{"token": ref}]}, secrets)
        assert says in str(err.value)
        assert "sinks[0].token" in str(err.value)
        assert SECRET not in str(err.value)


def test_handler_reads_secrets_from_the_config(
    aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sink value from SSM, end to end through the handler (the file path stands in for a token)."""
    boto3.client("ssm").put_parameter(
        Name="/trailrelay/out", Value=str(tmp_path / "from-ssm.ndjson"), Type="String"
    )
    monkeypatch.setenv(
        "TRAILRELAY_CONFIG",
        '[[sinks]]\ntype = "file"\npath = "${ssm:/trailrelay/out}"\nbatch_seconds = 0.05\n',
    )
    event = {
        "version": "0",
        "id": "1",
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.cloudtrail",
        "detail": {**SAMPLE_EVENTS[0], "eventID": "from-ssm"},
    }
    assert handler(event, None)["records"] == 1
    assert orjson.loads((tmp_path / "from-ssm.ndjson").read_bytes())["eventID"] == "from-ssm"
