"""The forwarder a user would write in ten lines, per destination: the benchmark's baseline.

``json.loads`` per object, ``json.dumps`` per record into the destination's request format,
gzip, ``requests``; no filtering, tagging, retries or acknowledgement bookkeeping.

    python naive.py file TRAIL OUT.ndjson [I/N]   (I/N: only every N-th object, from the I-th)
    python naive.py s3 BUCKET OUT.ndjson ENDPOINT   (list the bucket, GET every log object, as file)
    python naive.py splunk TRAIL http://127.0.0.1:PORT
    python naive.py elastic TRAIL http://127.0.0.1:PORT       (integration mode: the event as message)
    python naive.py elastic-ecs TRAIL http://127.0.0.1:PORT   (ECS mode: a dozen ECS fields mapped too)
    python naive.py sentinel TRAIL https://127.0.0.1:PORT CA_BUNDLE
"""

from __future__ import annotations

import gzip
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import requests


def objects(trail: str, part: str = "0/1") -> Iterator[list[dict]]:
    first, step = (int(n) for n in part.split("/"))
    for path in sorted(Path(trail).rglob("*.json.gz"))[first::step]:
        yield json.loads(gzip.decompress(path.read_bytes()))["Records"]


def post_in_bodies(post: Callable[[bytes], None], items: Iterator[bytes], limit: int, join: bytes) -> None:
    body: list[bytes] = []
    size = 0
    for item in items:
        body.append(item)
        size += len(item)
        if size >= limit:
            post(join.join(body))
            body, size = [], 0
    if body:
        post(join.join(body))


def _message(r: dict) -> dict:
    """Elastic's integration mode: the event as ``message``, its time as ``@timestamp``."""
    return {"@timestamp": r.get("eventTime"), "message": json.dumps(r)}


def _ecs(r: dict) -> dict:
    """ECS mode: the fields a user would map into ECS by hand (beside ``message``)."""
    ident = r.get("userIdentity") or {}
    return {
        **_message(r),
        "event": {
            "id": r.get("eventID"),
            "action": r.get("eventName"),
            "provider": r.get("eventSource"),
            "outcome": "failure" if r.get("errorCode") else "success",
        },
        "cloud": {"region": r.get("awsRegion"), "account": {"id": r.get("recipientAccountId")}},
        "source": {"address": r.get("sourceIPAddress")},
        "user_agent": {"original": r.get("userAgent")},
        "user": {"name": ident.get("userName"), "id": ident.get("principalId")},
        "error": {"code": r.get("errorCode"), "message": r.get("errorMessage")},
        "aws": {
            "cloudtrail": {
                "event_type": r.get("eventType"),
                "user_identity": {"type": ident.get("type"), "arn": ident.get("arn")},
                "request_parameters": json.dumps(r.get("requestParameters")),
                "response_elements": json.dumps(r.get("responseElements")),
            }
        },
    }


def main(kind: str, trail: str, target: str, *extra: str) -> None:
    if kind == "file":
        with Path(target).open("w") as out:
            for records in objects(trail, *extra):
                out.writelines(json.dumps(r) + "\n" for r in records)
        return
    if kind == "s3":
        import boto3

        s3 = boto3.client("s3", endpoint_url=extra[0], region_name="us-east-1")
        with Path(target).open("w") as out:
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=trail):
                for obj in page.get("Contents", []):
                    if obj["Key"].endswith(".json.gz"):
                        body = s3.get_object(Bucket=trail, Key=obj["Key"])["Body"].read()
                        records = json.loads(gzip.decompress(body))["Records"]
                        out.writelines(json.dumps(r) + "\n" for r in records)
        return
    s = requests.Session()
    if kind == "splunk":
        s.headers.update({"Authorization": "Splunk bench-token", "Content-Encoding": "gzip"})

        def events() -> Iterator[bytes]:
            for records in objects(trail):
                for r in records:
                    yield json.dumps({"sourcetype": "aws:cloudtrail", "event": r}).encode()

        def post(body: bytes) -> None:
            s.post(target + "/services/collector/event", data=gzip.compress(body, 1)).raise_for_status()

        post_in_bodies(post, events(), 800_000, b"\n")
    elif kind in ("elastic", "elastic-ecs"):
        s.headers.update({"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"})
        action = json.dumps({"create": {"_index": "logs-aws.cloudtrail-default"}}).encode()
        document = _ecs if kind == "elastic-ecs" else _message

        def docs() -> Iterator[bytes]:
            for records in objects(trail):
                for r in records:
                    yield action + b"\n" + json.dumps(document(r)).encode() + b"\n"

        def post(body: bytes) -> None:
            r = s.post(target + "/_bulk", data=gzip.compress(body, 1))
            r.raise_for_status()
            assert not r.json()["errors"]

        post_in_bodies(post, docs(), 10_000_000, b"")
    elif kind == "sentinel":
        s.trust_env = False  # $REQUESTS_CA_BUNDLE would override verify below
        s.verify = extra[0]
        token = s.post(target + "/tenant/oauth2/v2.0/token", data={"grant_type": "client_credentials"}).json()
        s.headers.update(
            {
                "Authorization": "Bearer " + token["access_token"],
                "Content-Type": "application/json",
                "Content-Encoding": "gzip",
            }
        )

        def rows() -> Iterator[bytes]:
            for records in objects(trail):
                for r in records:
                    ident = r.get("userIdentity") or {}
                    row = {
                        "TimeGenerated": r.get("eventTime"),
                        "EventName": r.get("eventName"),
                        "EventSource": r.get("eventSource"),
                        "AWSRegion": r.get("awsRegion"),
                        "SourceIpAddress": r.get("sourceIPAddress"),
                        "UserAgent": r.get("userAgent"),
                        "UserIdentityType": ident.get("type"),
                        "UserIdentityArn": ident.get("arn"),
                        "UserIdentityAccountId": ident.get("accountId"),
                        "RecipientAccountId": r.get("recipientAccountId"),
                        "ErrorCode": r.get("errorCode"),
                        "ErrorMessage": r.get("errorMessage"),
                        "RequestParameters": json.dumps(r.get("requestParameters")),
                        "ResponseElements": json.dumps(r.get("responseElements")),
                        "AwsEventId": r.get("eventID"),
                        "EventTypeName": r.get("eventType"),
                    }
                    yield json.dumps(row).encode()

        url = target + "/dataCollectionRules/dcr-bench/streams/Custom-AWSCloudTrail?api-version=2023-01-01"

        def post(body: bytes) -> None:
            s.post(url, data=gzip.compress(b"[" + body + b"]", 1)).raise_for_status()

        post_in_bodies(post, rows(), 900_000, b",")
    else:
        raise SystemExit(f"unknown kind {kind}")


if __name__ == "__main__":
    main(*sys.argv[1:])
