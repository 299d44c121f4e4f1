"""moto in server mode on 127.0.0.1, and the input the forwarder reads from it.

The input is the real CloudTrail corpus (when present) plus a synthetic organization trail from
``trailrelay.generate``, uploaded to one bucket. What the forwarder must deliver is computed
from the same bytes with trailrelay's own reader, per object: the eventIDs (with their counts)
and the largest number of records in one object (which bounds what a kill can re-send).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import boto3
import orjson

from trailrelay.generate import generate_trail
from trailrelay.record import Origin, Record
from trailrelay.sources.decompress import decompress
from trailrelay.sources.parse import NotALogFile, iter_records
from trailrelay.testing import corpus_dir

__all__ = ["Aws", "Inputs", "build_inputs"]

REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


class Aws:
    """A moto server on an ephemeral port of 127.0.0.1 with clients for it."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer  # noqa: PLC0415 - test-only dependency

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"

    def client(self, service: Literal["s3", "sqs"]) -> Any:
        """A boto3 client for moto."""
        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=self.endpoint,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        )

    def env(self) -> dict[str, str]:
        """Environment for a forwarder subprocess (fake credentials, moto's endpoint)."""
        return {**CREDENTIALS, "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": self.endpoint}

    def source_table(self, *, bucket: str | None = None, queue_url: str | None = None) -> str:
        """The ``[source]`` TOML table for S3 listing mode (bucket) or SQS mode (queue_url)."""
        common = f'region = "{REGION}"\nendpoint_url = "{self.endpoint}"\n'
        if queue_url is not None:
            return (
                f'[source]\ntype = "sqs"\nqueue_url = "{queue_url}"\nwait_seconds = 1\n'
                "visibility_timeout = 10\n" + common
            )
        return f'[source]\ntype = "s3"\nbucket = "{bucket}"\n' + common

    def new_queue(self, bucket: str, keys: list[str]) -> str:
        """A fresh queue holding one S3 ObjectCreated notification per key."""
        sqs = self.client("sqs")
        url: str = sqs.create_queue(QueueName=f"rel-{uuid.uuid4().hex[:10]}")["QueueUrl"]
        for start in range(0, len(keys), 10):
            entries = [
                {"Id": str(i), "MessageBody": orjson.dumps(_notification(bucket, key)).decode()}
                for i, key in enumerate(keys[start : start + 10])
            ]
            sqs.send_message_batch(QueueUrl=url, Entries=entries)
        return url

    def queue_left(self, url: str) -> int:
        """Messages still in the queue, visible or in flight."""
        attrs = self.client("sqs").get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def stop(self) -> None:
        """Stop moto."""
        self._server.stop()


def _notification(bucket: str, key: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": REGION,
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": bucket}, "object": {"key": key}},
            }
        ]
    }


@dataclass
class Inputs:
    """What was uploaded and what the forwarder must account for."""

    bucket: str
    keys: list[str]
    expected: Counter[str] = field(default_factory=Counter)
    """eventID -> copies in the input (one eventID appears twice in the corpus)."""
    max_object_records: int = 0
    corpus_records: int = 0
    generated_records: int = 0
    objects: int = 0
    """Log objects (digest files are uploaded too, and skipped by the forwarder)."""

    @property
    def records(self) -> int:
        """Records in the input."""
        return sum(self.expected.values())


def _records_of(path: Path) -> list[Record]:
    try:
        items = list(iter_records(decompress(path.read_bytes()), Origin("file", str(path))))
    except (NotALogFile, Exception):  # digests and unreadable files deliver nothing
        return []
    return [r for r in items if isinstance(r, Record)]


def build_inputs(
    aws: Aws,
    workdir: Path,
    *,
    seed: int,
    events_per_hour: int,
    accounts: int = 2,
    regions: tuple[str, ...] = ("us-east-1", "eu-west-1"),
    with_corpus: bool = True,
    max_generated_objects: int | None = None,
) -> Inputs:
    """Generate a trail, add the corpus, upload both to a new bucket; count what must arrive.

    ``max_generated_objects`` keeps only the first log objects of the day (and their digests
    are dropped), for short runs.
    """
    gen_root = workdir / "generated"
    generate_trail(
        gen_root,
        seed=seed,
        day=dt.date(2026, 3, 2),
        accounts=accounts,
        regions=regions,
        events_per_hour=events_per_hour,
    )
    files: list[tuple[str, Path, str]] = [
        (p.relative_to(gen_root).as_posix(), p, "generated")
        for p in sorted(gen_root.rglob("*"))
        if p.is_file()
    ]
    if max_generated_objects is not None:
        files = [f for f in files if "/CloudTrail/" in f[0]][:max_generated_objects]
    corpus = corpus_dir() if with_corpus else None
    if corpus is not None:
        base = corpus / "cloudtrail"
        files += [
            (f"corpus/{p.relative_to(base).as_posix()}", p, "corpus")
            for p in sorted(base.rglob("*"))
            if p.is_file() and p.name.endswith((".json", ".json.gz"))
        ]
    bucket = f"reliability-{uuid.uuid4().hex[:10]}"
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=bucket)
    inputs = Inputs(bucket, [key for key, _, _ in files])

    def upload(item: tuple[str, Path, str]) -> None:
        s3.put_object(Bucket=bucket, Key=item[0], Body=item[1].read_bytes())

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(upload, files))
    for _, path, kind in files:
        records = _records_of(path)
        if not records:
            continue
        inputs.objects += 1
        inputs.max_object_records = max(inputs.max_object_records, len(records))
        inputs.expected.update(str(r.routing.event_id) for r in records)
        if kind == "corpus":
            inputs.corpus_records += len(records)
        else:
            inputs.generated_records += len(records)
    return inputs
