"""The forwarder a user would write in ten lines, per destination: the benchmark's baseline.

``json.loads`` per object, ``json.dumps`` per record into the destination's request format,
gzip, ``requests``; no filtering, tagging, retries or acknowledgement bookkeeping.

    python naive.py file TRAIL OUT.ndjson
    python naive.py splunk TRAIL http://127.0.0.1:PORT
    python naive.py elastic TRAIL http://127.0.0.1:PORT
    python naive.py sentinel TRAIL https://127.0.0.1:PORT CA_BUNDLE
"""

from __future__ import annotations

import gzip
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import requests


def objects(trail: str) -> Iterator[list[dict]]:
    for path in sorted(Path(trail).rglob("*.json.gz")):
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


def main(kind: str, trail: str, target: str, *extra: str) -> None:
    if kind == "file":
        with Path(target).open("w") as out:
            for records in objects(trail):
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
    elif kind == "elastic":
        s.headers.update({"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"})
        action = json.dumps({"create": {"_index": "logs-aws.cloudtrail-default"}}).encode()

        def docs() -> Iterator[bytes]:
            for records in objects(trail):
                for r in records:
                    doc = {"@timestamp": r.get("eventTime"), "message": json.dumps(r)}
                    yield action + b"\n" + json.dumps(doc).encode() + b"\n"

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
