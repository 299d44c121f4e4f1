"""SQS worker fleet: several processes on one queue, kills, health and metrics endpoints."""

from __future__ import annotations

import gzip
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def queue_with_objects(aws_env: str, make_events: Any) -> tuple[str, str, list[str]]:
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    bucket = f"fleet-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    url = sqs.create_queue(QueueName=f"fleet-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    ids: list[str] = []
    for i in range(30):
        evs = make_events(10, prefix=f"f{i}")
        ids += [e["eventID"] for e in evs]
        key = f"AWSLogs/111122223333/CloudTrail/us-east-1/2026/03/02/111122223333_CloudTrail_us-east-1_20260302T1000Z_{i:04d}.json.gz"
        s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(orjson.dumps({"Records": evs})))
        note = {
            "Records": [
                {
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": bucket}, "object": {"key": key}},
                }
            ]
        }
        sqs.send_message(QueueUrl=url, MessageBody=orjson.dumps(note).decode())
    return url, bucket, ids


def _config(tmp: Path, url: str, endpoint: str, extra: str = "") -> Path:
    cfg = tmp / "fleet.toml"
    cfg.write_text(
        f'[source]\ntype = "sqs"\nqueue_url = "{url}"\nwait_seconds = 1\nvisibility_timeout = 10\n'
        f'endpoint_url = "{endpoint}"\nregion = "us-east-1"\n'
        '[[sinks]]\ntype = "file"\npath = "out-${TRAILRELAY_WORKER:-solo}.ndjson"\n' + extra
    )
    return cfg


def _delivered(tmp: Path) -> list[str]:
    return [
        orjson.loads(x)["eventID"]
        for f in sorted(tmp.glob("out-*.ndjson"))
        for x in f.read_bytes().splitlines()
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def test_two_workers_share_the_queue(
    tmp_path: Path, queue_with_objects: tuple[str, str, list[str]], aws_env: str
) -> None:
    url, _, ids = queue_with_objects
    cfg = _config(tmp_path, url, aws_env)
    proc = subprocess.run(
        [sys.executable, "-m", "trailrelay", "forward", "-c", str(cfg), "--workers", "2", "--once"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = _delivered(tmp_path)
    assert sorted(got) == sorted(ids)  # every record, none twice
    assert {p.name for p in tmp_path.glob("out-*.ndjson")} <= {"out-0.ndjson", "out-1.ndjson"}
    attrs = boto3.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0"
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_killed_worker_messages_are_finished_by_another(
    tmp_path: Path, queue_with_objects: tuple[str, str, list[str]], aws_env: str
) -> None:
    url, _, ids = queue_with_objects
    # worker A holds everything in a long batch window, then dies without acknowledging anything
    # (no detection: a tagged record would flush at once, which is the fast path working)
    (tmp_path / "a").mkdir()
    slow = _config(
        tmp_path / "a", url, aws_env, "batch_seconds = 60\nbatch_events = 100000\n[detection]\npack = false\n"
    )
    a = subprocess.Popen(
        [sys.executable, "-m", "trailrelay", "forward", "-c", str(slow), "--no-progress"],
        env={**_env(), "TRAILRELAY_WORKER": "a"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sqs = boto3.client("sqs")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        attrs = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
        )
        if int(attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"]) >= 30:
            break
        time.sleep(0.2)
    a.send_signal(signal.SIGKILL)
    a.wait(timeout=10)
    assert _delivered(tmp_path / "a") == []
    (tmp_path / "b").mkdir()
    b_cfg = _config(tmp_path / "b", url, aws_env)
    b = subprocess.Popen(
        [sys.executable, "-m", "trailrelay", "forward", "-c", str(b_cfg), "--no-progress"],
        env={**_env(), "TRAILRELAY_WORKER": "b"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(_delivered(tmp_path / "b")) < len(ids):
        time.sleep(0.5)
    b.send_signal(signal.SIGTERM)
    _, err = b.communicate(timeout=30)
    assert b.returncode == 0, err[-2000:]
    assert sorted(_delivered(tmp_path / "b")) == sorted(ids)


def test_health_and_metrics_endpoints(
    tmp_path: Path, queue_with_objects: tuple[str, str, list[str]], aws_env: str
) -> None:
    url, _, ids = queue_with_objects
    cfg = _config(tmp_path, url, aws_env)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "trailrelay", "forward", "-c", str(cfg), "--health", f"127.0.0.1:{port}"],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        body = ""
        while time.monotonic() < deadline:
            try:
                health = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
                if f'trailrelay_delivered_total{{sink="file"}} {len(ids)}' in body:
                    break
            except OSError:
                pass
            time.sleep(0.3)
        assert health.status == 200
        assert f"trailrelay_records_in_total {len(ids)}" in body
        assert f'trailrelay_delivered_total{{sink="file"}} {len(ids)}' in body
        assert "# TYPE trailrelay_units_acknowledged_total counter" in body
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
