"""SQS notifications: time from an object's notification to its records reaching the SIEM.

moto in server mode on 127.0.0.1 (S3 and SQS, so boto3 really speaks HTTP); the SQS source as
``trailrelay forward`` builds it (long polling, 10 messages a receive); the pipeline with the
detection pack into the stand-in sink of ``bench_firehose`` (2 ms a request; it notes when each
record arrived). A producer puts OBJECTS objects of 500 records (a StopLogging in every third)
into the bucket at RATE a second, each followed at once by its S3 event notification on the
queue, as S3 sends it. Reported: p50/p99 from the notification to each record's arrival, for
all records and for the high-risk ones, whose p99 must stay <= 1 s (the fast path).
"""

from __future__ import annotations

import gzip
import logging
import os
import sys
import tempfile
import threading
import time
from typing import Any

import boto3
import orjson
from bench_firehose import PER_REQUEST, StandInSink, payloads, pct, pipeline

from trailrelay.config import parse_config
from trailrelay.pipeline.build import build_source

OBJECTS = 45
RATE = 10.0
BUCKET = "trail"
REGION = "us-east-1"


def _notification(key: str, size: int) -> bytes:
    """An S3 ``ObjectCreated:Put`` event notification, as S3 puts it on a queue."""
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": REGION,
        "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": BUCKET}, "object": {"key": key, "size": size}},
    }
    return orjson.dumps({"Records": [record]})


def run(endpoint: str, tmp: str) -> tuple[list[float], list[float]]:
    clients: dict[str, Any] = {
        name: boto3.client(name, endpoint_url=endpoint, region_name=REGION) for name in ("s3", "sqs")
    }
    s3, sqs = clients["s3"], clients["sqs"]
    s3.create_bucket(Bucket=BUCKET)
    queue_url = sqs.create_queue(QueueName="cloudtrail-notes")["QueueUrl"]
    config = parse_config(
        {
            "source": {"type": "sqs", "queue_url": queue_url, "region": REGION, "endpoint_url": endpoint},
            "sinks": [{"type": "file", "path": f"{tmp}/unused.ndjson"}],
            "dead_letter": {"path": tmp},
        }
    )
    sink = StandInSink(1.0)
    pipe = pipeline(build_source(config, once=False, checkpoints=None), sink, tmp)
    runner = threading.Thread(target=pipe.run, daemon=True)
    runner.start()
    objects = payloads()[:OBJECTS]
    bodies = [gzip.compress(b'{"Records":[' + b",".join(records) + b"]}") for records in objects]
    sent: dict[int, float] = {}
    for r, body in enumerate(bodies):
        key = f"AWSLogs/111122223333/CloudTrail/{REGION}/2026/03/02/111122223333_CloudTrail_{r:04d}.json.gz"
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        sqs.send_message(QueueUrl=queue_url, MessageBody=_notification(key, len(body)).decode())
        sent[r] = time.time()
        time.sleep(1 / RATE)
    deadline = time.monotonic() + 120
    while len(sink.arrived) < OBJECTS * PER_REQUEST and time.monotonic() < deadline:
        time.sleep(0.05)
    pipe.stop.set()
    runner.join(timeout=60)
    assert len(sink.arrived) == OBJECTS * PER_REQUEST, (
        f"{len(sink.arrived)} of {OBJECTS * PER_REQUEST} arrived"
    )
    left = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"])
    assert left["Attributes"]["ApproximateNumberOfMessages"] == "0", "every notification deleted"
    delays = [sink.arrived[eid] - sent[int(eid.split("-")[0])] for eid in sink.arrived]
    fast = [sink.arrived[eid] - sent[int(eid.split("-")[0])] for eid in sink.tagged]
    assert fast, "no high-risk record was tagged"
    return delays, fast


def main() -> int:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        with tempfile.TemporaryDirectory() as tmp:
            delays, fast = run(f"http://{host}:{port}", tmp)
    finally:
        server.stop()
    p99 = pct(fast, 0.99)
    print(f"sqs notifications, {OBJECTS} objects of {PER_REQUEST} records at {RATE:g}/s (moto server)")
    print(
        f"{'  notification to sink, all records':<48} p50 {pct(delays, 0.5):6.3f} s   "
        f"p99 {pct(delays, 0.99):6.3f} s   ({len(delays):,} records)"
    )
    print(
        f"{'  notification to sink, high-risk (fast path)':<48} p50 {pct(fast, 0.5):6.3f} s   "
        f"p99 {p99:6.3f} s   ({len(fast)} records)  [{'PASS' if p99 <= 1.0 else 'MISS'}: p99 <= 1 s]"
    )
    return 0 if p99 <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
