"""The deployment templates: valid (cfn-lint), least-privilege, and consistent with the code they deploy."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

cfnlint_api = pytest.importorskip("cfnlint.api")
cfnlint_decode = pytest.importorskip("cfnlint.decode")
yaml = pytest.importorskip("yaml")

from trailrelay.aws_lambda.models import LambdaSourceConfig  # noqa: E402
from trailrelay.cli.package_cmd import RUNTIME_GLIBC  # noqa: E402
from trailrelay.detection.loader import pack_sources  # noqa: E402
from trailrelay.sources.firehose import FirehoseSourceConfig  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
TEMPLATES = sorted(DEPLOY.glob("*/template.yaml"))


def _load(path: Path) -> dict[str, Any]:
    template, errors = cfnlint_decode.decode(str(path))
    assert not errors, errors
    return dict(template)


def _resources(t: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in t["Resources"].items() if v["Type"] == kind}


def _default(t: dict[str, Any], name: str) -> Any:
    return t["Parameters"][name]["Default"]


def _field_default(model: type, name: str) -> Any:
    """A config key's default, as the model declares it."""
    return next(f.default for f in msgspec.structs.fields(model) if f.name == name)


def _statements(t: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every IAM statement of every role, conditional ones included."""
    for role in _resources(t, "AWS::IAM::Role").values():
        for policy in role["Properties"].get("Policies", []):
            for st in policy["PolicyDocument"]["Statement"]:
                yield from _branches(st)


def _branches(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict) and "Fn::If" in node:
        for branch in node["Fn::If"][1:]:
            yield from _branches(branch)
    elif isinstance(node, dict) and "Effect" in node:
        yield node


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_there_is_a_template_per_layout() -> None:
    assert [p.parent.name for p in TEMPLATES] == [
        "eventbridge-lambda",
        "firehose-endpoint",
        "sqs-lambda",
        "vpc-endpoints",
    ]


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.parent.name)
def test_cfn_lint_finds_nothing(path: Path) -> None:
    matches = cfnlint_api.lint_file(path)
    assert [str(m) for m in matches] == []


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.parent.name)
def test_iam_is_least_privilege(path: Path) -> None:
    """No wildcard actions or resources; every statement names what it may touch."""
    for st in _statements(_load(path)):
        assert st["Effect"] == "Allow"
        for action in _as_list(st["Action"]):
            assert "*" not in action, (path.parent.name, st.get("Sid"), action)
        for resource in _as_list(st["Resource"]):
            assert resource != "*", (path.parent.name, st.get("Sid"))


@pytest.mark.parametrize("name", ["sqs-lambda", "eventbridge-lambda"])
def test_lambda_functions_run_the_packaged_handler(name: str) -> None:
    t = _load(DEPLOY / name / "template.yaml")
    [fn] = _resources(t, "AWS::Serverless::Function").values()
    props = fn["Properties"]
    assert props["Handler"] == "trailrelay.aws_lambda.handler"
    assert props["Runtime"].removeprefix("python") in RUNTIME_GLIBC  # a runtime `package lambda` builds for
    assert props["CodeUri"] == "function.zip"
    assert props["ReservedConcurrentExecutions"] == {"Ref": "ReservedConcurrency"}
    assert props["Environment"]["Variables"]["TRAILRELAY_CONFIG"] == {"Fn::Sub": "ssm:${ConfigParameterName}"}
    assert props["Role"] == {"Fn::GetAtt": ["FunctionRole", "Arn"]}  # no SAM-added managed policies
    # the default deadline margin leaves the default function most of its time
    assert LambdaSourceConfig().stop_before_timeout <= _default(t, "Timeout") / 3


def test_sqs_layout_partial_batches_redrive_and_visibility() -> None:
    t = _load(DEPLOY / "sqs-lambda" / "template.yaml")
    fn = t["Resources"]["Function"]["Properties"]
    event = fn["Events"]["TrailObjects"]["Properties"]
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert event["Queue"] == {"Fn::GetAtt": ["ObjectQueue", "Arn"]}
    queue = t["Resources"]["ObjectQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    assert _default(t, "QueueVisibilityTimeout") >= 6 * _default(t, "Timeout")  # AWS's guidance
    by_sid = {st.get("Sid"): st for st in _statements(t)}
    assert by_sid["ReadTrailObjects"]["Action"] == "s3:GetObject"
    assert by_sid["ReadTrailObjects"]["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:s3:::${TrailBucketName}/${TrailPrefix}*"
    }
    assert by_sid["DecryptTrailObjects"]["Resource"] == {"Ref": "TrailKmsKeyArn"}
    assert "kms:ViaService" in by_sid["DecryptTrailObjects"]["Condition"]["StringEquals"]
    assert sorted(by_sid["ConsumeObjectQueue"]["Action"]) == [
        "sqs:ChangeMessageVisibility",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:ReceiveMessage",
    ]
    assert by_sid["ConsumeObjectQueue"]["Resource"] == {"Fn::GetAtt": ["ObjectQueue", "Arn"]}
    rule = t["Resources"]["ObjectCreatedRule"]["Properties"]["EventPattern"]
    assert rule["detail-type"] == ["Object Created"]  # what parse_notification reads from EventBridge


def _pack_calls() -> tuple[set[str], set[str]]:
    """(eventName, eventSource) values the shipped Sigma rules select on."""
    names: set[str] = set()
    sources: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                field = key.split("|")[0]
                if field in ("eventName", "eventSource"):
                    assert "|" not in key, f"{key}: an EventBridge pattern needs exact names"
                    (names if field == "eventName" else sources).update(_as_list(value))
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for source in pack_sources():
        for doc in yaml.safe_load_all(source.text):
            if isinstance(doc, dict) and "detection" in doc:
                walk(doc["detection"])
    return names, sources


def test_fast_path_rule_matches_the_detection_pack() -> None:
    """The EventBridge rule names the same API calls as the shipped detection rules."""
    t = _load(DEPLOY / "eventbridge-lambda" / "template.yaml")
    pattern = t["Resources"]["Function"]["Properties"]["Events"]["HighRiskCalls"]["Properties"]["Pattern"]
    assert pattern["detail-type"] == ["AWS API Call via CloudTrail", "AWS Console Sign In via CloudTrail"]
    names, sources = _pack_calls()
    assert names and sources
    missing = names - set(pattern["detail"]["eventName"])
    assert not missing, f"add {sorted(missing)} to deploy/eventbridge-lambda/template.yaml"
    assert set(pattern["detail"]["eventName"]) <= names
    assert set(pattern["detail"]["eventSource"]) == sources


def test_firehose_layout_matches_the_endpoint() -> None:
    t = _load(DEPLOY / "firehose-endpoint" / "template.yaml")
    http = t["Resources"]["DeliveryStream"]["Properties"]["HttpEndpointDestinationConfiguration"]
    assert http["RequestConfiguration"]["ContentEncoding"] == "GZIP"
    assert http["EndpointConfiguration"]["Url"] == {"Fn::Sub": "https://${EndpointHostName}/"}
    assert http["S3BackupMode"] == "FailedDataOnly"  # what Firehose could not deliver is kept
    assert http["SecretsManagerConfiguration"]["SecretARN"] == {"Ref": "AccessKeySecretArn"}
    # Firehose answers 413 as a permanent failure: its requests must stay under max_body_bytes.
    # The buffer counts records before base64: a request is 4/3 of it plus the JSON around each
    # record (~12 bytes; 1 MiB allows for 87,000 records of the 64 MiB, 770 bytes each).
    limit = _field_default(FirehoseSourceConfig, "max_body_bytes")
    assert t["Parameters"]["BufferSizeMiB"]["MaxValue"] * (1 << 20) * 4 // 3 + (1 << 20) <= limit
    [container] = t["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert {s["Name"] for s in container["Secrets"]} == {"FIREHOSE_ACCESS_KEY", "TRAILRELAY_CONFIG_TOML"}
    assert container["StopTimeout"] <= 120  # Fargate's maximum: the drain on SIGTERM must fit
    # Firehose waits 180 s for an answer; the endpoint answers by response_timeout
    response_timeout = _field_default(FirehoseSourceConfig, "response_timeout")
    lb = {
        a["Key"]: a["Value"] for a in t["Resources"]["LoadBalancer"]["Properties"]["LoadBalancerAttributes"]
    }
    assert int(lb["idle_timeout.timeout_seconds"]) > response_timeout
    tg = t["Resources"]["TargetGroup"]["Properties"]
    assert tg["HealthCheckPath"] == "/healthz" and tg["HealthCheckPort"] == "9090"
    delay = {a["Key"]: a["Value"] for a in tg["TargetGroupAttributes"]}[
        "deregistration_delay.timeout_seconds"
    ]
    assert int(delay) >= response_timeout
    assert t["Resources"]["Listener"]["Properties"]["Port"] == 443


def test_vpc_endpoints_cover_what_the_function_calls() -> None:
    t = _load(DEPLOY / "vpc-endpoints" / "template.yaml")
    services = {
        r["Properties"]["ServiceName"]["Fn::Sub"].rsplit(".", 1)[-1]: r["Properties"]["VpcEndpointType"]
        for r in _resources(t, "AWS::EC2::VPCEndpoint").values()
    }
    assert services["s3"] == "Gateway"  # free, and it carries the bytes
    assert {"ssm", "secretsmanager", "sts"} <= set(services)


def test_entrypoint_writes_the_config_and_runs_the_endpoint(tmp_path: Path) -> None:
    stub = tmp_path / "bin" / "trailrelay"
    stub.parent.mkdir()
    stub.write_text('#!/bin/sh\necho "args: $*"\ncat "$3"\nstat -c %a "$3"\n')
    stub.chmod(0o755)
    config = tmp_path / "trailrelay.toml"
    env = {
        "PATH": f"{stub.parent}:{os.environ['PATH']}",
        "TRAILRELAY_CONFIG_TOML": '[source]\ntype = "firehose"\naccess_key = "${FIREHOSE_ACCESS_KEY}"',
        "TRAILRELAY_CONFIG_FILE": str(config),
        "FIREHOSE_ACCESS_KEY": "not-written-anywhere",
    }
    out = subprocess.run(
        ["sh", str(DEPLOY / "firehose-endpoint" / "entrypoint.sh")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"args: forward -c {config} --health 0.0.0.0:9090 --log-format json" in out
    assert 'access_key = "${FIREHOSE_ACCESS_KEY}"' in out  # the reference, not the key
    assert "not-written-anywhere" not in config.read_text()
    assert out.strip().endswith("600")


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.parent.name)
def test_every_layout_has_a_guide(path: Path) -> None:
    guide = REPO / "docs" / "deploy" / f"{path.parent.name}.md"
    assert guide.is_file(), f"write {guide.relative_to(REPO)}"
    assert f"deploy/{path.parent.name}/template.yaml" in guide.read_text()
