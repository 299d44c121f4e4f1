"""S3 listing and SQS notification sources against moto in server mode (real HTTP)."""

from __future__ import annotations

import datetime as dt
import gzip
import logging
import sqlite3
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
from botocore.utils import parse_timestamp
from click.testing import CliRunner

from trailrelay.cli.main import cli
from trailrelay.config import parse_config
from trailrelay.contract import BatchLimits
from trailrelay.pipeline.deadletter import FolderDeadLetters, S3DeadLetters, read_entries
from trailrelay.pipeline.delivery import SinkRunner
from trailrelay.pipeline.forwarder import build_pipeline
from trailrelay.pipeline.metrics import Metrics
from trailrelay.pipeline.runner import Pipeline
from trailrelay.sources.aws import aws_client, parse_aws_timestamp
from trailrelay.sources.s3 import S3Source
from trailrelay.sources.sqs import DELETE_BATCH, SqsSource, _Deletions
from trailrelay.state import Checkpoints
from trailrelay.testing import SAMPLE_EVENTS

ORG = "o-abc1234567"
ACCOUNTS = ("111122223333", "444455556666")
REGIONS = ("us-east-1", "eu-west-1")


def _key(account: str, region: str, day: dt.date, hhmm: str, suffix: str) -> str:
    return (
        f"trail/AWSLogs/{ORG}/{account}/CloudTrail/{region}/{day:%Y/%m/%d}/"
        f"{account}_CloudTrail_{region}_{day:%Y%m%d}T{hhmm}Z_{suffix}.json.gz"
    )


@pytest.fixture
def bucket(aws_env: str) -> tuple[Any, str]:
    s3 = boto3.client("s3")
    name = f"trail-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name)
    return s3, name


def _put(s3: Any, bucket: str, key: str, events: list[dict[str, Any]]) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(orjson.dumps({"Records": events})))


def _org_trail(s3: Any, bucket: str, make_events: Any) -> dict[str, list[str]]:
    """Three days × two accounts × two regions, plus digests, insights, markers and empty objects."""
    by_day: dict[str, list[str]] = {}
    for d in (1, 2, 3):
        day = dt.date(2026, 3, d)
        for a in ACCOUNTS:
            for r in REGIONS:
                evs = make_events(4, prefix=f"{d}-{a}-{r}")
                _put(s3, bucket, _key(a, r, day, "1005", "aaaa"), evs)
                by_day.setdefault(str(day), []).extend(e["eventID"] for e in evs)
        digest = f"trail/AWSLogs/{ORG}/{ACCOUNTS[0]}/CloudTrail-Digest/us-east-1/2026/03/0{d}/x_CloudTrail-Digest_us-east-1_t_us-east-1_2026030{d}T101500Z.json.gz"
        s3.put_object(Bucket=bucket, Key=digest, Body=gzip.compress(b'{"digestStartTime":"x","logFiles":[]}'))
    s3.put_object(
        Bucket=bucket,
        Key=f"trail/AWSLogs/{ORG}/{ACCOUNTS[0]}/CloudTrail-Insight/us-east-1/2026/03/02/i.json.gz",
        Body=gzip.compress(b'{"Records":[]}'),
    )
    s3.put_object(
        Bucket=bucket, Key=f"trail/AWSLogs/{ORG}/{ACCOUNTS[0]}/CloudTrail/us-east-1/2026/03/02/", Body=b""
    )
    s3.put_object(
        Bucket=bucket, Key=_key(ACCOUNTS[1], "us-east-1", dt.date(2026, 3, 2), "1010", "empty"), Body=b""
    )
    return by_day


def _run(source: Any, tmp: Path, scripted: Any, **sink_kw: Any) -> tuple[Any, Any]:
    metrics, stop = Metrics(), threading.Event()
    dead = FolderDeadLetters(tmp / "dead")
    sink = scripted(**sink_kw)
    pipe = Pipeline(source, dead_letters=dead, metrics=metrics, stop=stop)
    pipe.sinks["s"] = SinkRunner(
        "s", sink, dead_letters=dead, metrics=metrics, stop=stop, on_fatal=pipe.on_fatal, backoff_base=0.001
    )
    return pipe.run(), sink


@pytest.mark.parametrize(
    "value",
    [
        "2026-12-01T00:05:00.000Z",  # S3 listing
        "2026-12-01T00:05:00Z",
        "Tue, 01 Dec 2026 00:05:00 GMT",  # a GET's Last-Modified header
        "Mon, 07 Dec 2026 11:00:00 +0200",  # not GMT: botocore's parser
        "2026-12-01T02:05:00+02:00",  # not Z: botocore's parser
        1764547500,  # epoch seconds (JSON protocols)
        1764547500.25,
        "1764547500",
    ],
)
def test_fast_timestamps_equal_botocores(value: Any) -> None:
    ours, theirs = parse_aws_timestamp(value), parse_timestamp(value)
    assert ours == theirs
    assert ours.utcoffset() == theirs.utcoffset()


@pytest.mark.parametrize("value", ["2026-13-45T00:00:00Z", "Tue, 45 Foo 2026 00:05:00 GMT", "soon", "TZ"])
def test_fast_timestamps_refuse_what_botocore_refuses(value: str) -> None:
    with pytest.raises(ValueError):
        parse_timestamp(value)
    with pytest.raises(ValueError):
        parse_aws_timestamp(value)


def test_s3_clients_parse_last_modified_with_the_fast_parser(bucket: tuple[Any, str]) -> None:
    """A listing's and a GET's LastModified: the instant botocore would give, read without dateutil."""
    s3, name = bucket
    s3.put_object(Bucket=name, Key="k.json.gz", Body=b"x")
    ours = aws_client("s3")
    listed = ours.list_objects_v2(Bucket=name)["Contents"][0]["LastModified"]
    got = ours.get_object(Bucket=name, Key="k.json.gz")["LastModified"]
    # dateutil's tzinfo objects are never the stdlib's UTC singleton: this is our parser's answer.
    assert listed.tzinfo is dt.UTC and got.tzinfo is dt.UTC
    assert listed == s3.list_objects_v2(Bucket=name)["Contents"][0]["LastModified"]
    assert got == s3.get_object(Bucket=name, Key="k.json.gz")["LastModified"]
    assert abs(listed - got) < dt.timedelta(seconds=1)


def test_s3_listing_whole_prefix_skips_non_logs(
    bucket: tuple[Any, str], tmp_path: Path, scripted: Any, make_events: Any
) -> None:
    s3, name = bucket
    by_day = _org_trail(s3, name, make_events)
    src = S3Source(aws_client("s3"), name, "trail/")
    result, sink = _run(src, tmp_path, scripted)
    assert Counter(sink.stored) == Counter(i for ids in by_day.values() for i in ids)
    skipped = result.metrics.snapshot()["skipped"]
    assert skipped == {"digest": 3, "insight": 1, "folder-marker": 1, "empty-object": 1}


def test_s3_time_window_lists_only_needed_days_across_accounts_and_regions(
    bucket: tuple[Any, str], tmp_path: Path, scripted: Any, make_events: Any
) -> None:
    s3, name = bucket
    by_day = _org_trail(s3, name, make_events)
    client = aws_client("s3")
    listed: list[str] = []
    client.meta.events.register(
        "before-parameter-build.s3.ListObjectsV2", lambda params, **_: listed.append(params.get("Prefix", ""))
    )
    src = S3Source(
        client,
        name,
        "trail/",
        start=dt.datetime(2026, 3, 2, tzinfo=dt.UTC),
        end=dt.datetime(2026, 3, 2, 23, 0, tzinfo=dt.UTC),
    )
    _, sink = _run(src, tmp_path, scripted)
    assert sorted(sink.stored) == sorted(by_day["2026-03-02"])
    day_listings = [p for p in listed if p.endswith("/2026/03/02/")]
    assert len(day_listings) == 4  # 2 accounts x 2 regions, one day each
    assert not any(p.endswith(("/2026/03/01/", "/2026/03/03/")) for p in listed)


def test_s3_window_lists_folders_concurrently_in_order(
    bucket: tuple[Any, str], tmp_path: Path, scripted: Any, make_events: Any
) -> None:
    """The account and day folders of an org trail are LISTed several at a time, objects in order."""
    s3, name = bucket
    by_day = _org_trail(s3, name, make_events)
    client = aws_client("s3")
    lock = threading.Lock()
    inflight = [0, 0]  # now, peak

    def before(**_: Any) -> None:
        with lock:
            inflight[0] += 1
            inflight[1] = max(inflight[1], inflight[0])
        time.sleep(0.05)  # a slow LIST, so overlapping ones show

    def after(**_: Any) -> None:
        with lock:
            inflight[0] -= 1

    client.meta.events.register("before-send.s3.ListObjectsV2", before)
    client.meta.events.register("after-call.s3.ListObjectsV2", after)
    src = S3Source(
        client,
        name,
        "trail/",
        start=dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
        end=dt.datetime(2026, 3, 3, 23, 0, tzinfo=dt.UTC),
    )
    keys = [o["Key"] for o in src._objects()]
    assert keys == sorted(keys, key=lambda k: (k.split("/2026/")[0], k))  # folder by folder, in order
    assert inflight[1] > 1, "LISTs ran one after another"
    _, sink = _run(
        S3Source(
            aws_client("s3"),
            name,
            "trail/",
            start=dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
            end=dt.datetime(2026, 3, 3, 23, 0, tzinfo=dt.UTC),
        ),
        tmp_path,
        scripted,
    )
    assert sorted(sink.stored) == sorted(i for ids in by_day.values() for i in ids)


def _read_keys(src: S3Source) -> list[str]:
    """The keys of the objects ``src`` hands to the pipeline (not those it skips)."""
    stop = threading.Event()
    return [str(ref.origin.key) for unit in src.work(stop) for ref in unit.objects]


def test_s3_window_finds_trails_at_any_depth(
    bucket: tuple[Any, str], tmp_path: Path, scripted: Any, make_events: Any
) -> None:
    """A trail under a deep key prefix, next to one near the root: a window from the bucket's root
    reads both, as the listing without a window does (it used to stop walking 8 folders down)."""
    s3, name = bucket
    by_day = _org_trail(s3, name, make_events)
    deep = "logs/cloudtrail/prod/org/eu/"
    for obj in s3.list_objects_v2(Bucket=name, Prefix="trail/")["Contents"]:
        s3.copy_object(Bucket=name, Key=deep + obj["Key"], CopySource={"Bucket": name, "Key": obj["Key"]})
    elb = f"trail/AWSLogs/{ORG}/{ACCOUNTS[0]}/elasticloadbalancing/us-east-1/2026/03/02/x.log.gz"
    s3.put_object(Bucket=name, Key=elb, Body=b"not CloudTrail")
    client = aws_client("s3")
    listed: list[str] = []
    client.meta.events.register(
        "before-parameter-build.s3.ListObjectsV2", lambda params, **_: listed.append(params.get("Prefix", ""))
    )
    window = {
        "start": dt.datetime(2026, 3, 2, tzinfo=dt.UTC),
        "end": dt.datetime(2026, 3, 2, 23, tzinfo=dt.UTC),
    }
    _, sink = _run(S3Source(client, name, "", **window), tmp_path, scripted)
    assert Counter(sink.stored) == Counter(by_day["2026-03-02"] * 2)
    assert not [p for p in listed if "elasticloadbalancing" in p]  # an account's other logs are not walked
    deep_only = _read_keys(S3Source(aws_client("s3"), name, "logs/", **window))
    assert len(deep_only) == len(by_day["2026-03-02"]) // 4  # 4 events an object
    assert all(k.startswith(deep) and "/2026/03/02/" in k for k in deep_only)


_IN_A0 = f"trail/AWSLogs/{ORG}/{ACCOUNTS[0]}/CloudTrail/"
_NAME_A0 = f"us-east-1/2026/03/02/{ACCOUNTS[0]}_CloudTrail_us-east-1_20260302T1"


@pytest.mark.parametrize(
    ("prefix", "objects"),
    [
        ("tr", 12),  # 3 days x 2 accounts x 2 regions
        ("trail/AWSLogs", 12),
        (f"trail/AWSLogs/{ORG}/1111", 6),
        (f"trail/AWSLogs/{ORG}/{ACCOUNTS[0]}/Cloud", 6),
        (f"{_IN_A0}eu-", 3),
        (f"{_IN_A0}us-east-1/2026/03/02/", 1),
        (f"{_IN_A0}us-east-1/2026/03/0", 3),
        (f"{_IN_A0}{_NAME_A0}0", 1),
        (f"{_IN_A0}{_NAME_A0}1", 0),
    ],
)
def test_s3_window_reads_only_what_the_prefix_holds(
    bucket: tuple[Any, str], make_events: Any, prefix: str, objects: int
) -> None:
    """A prefix cut anywhere: a window holding the whole trail reads what the listing without
    one reads (a partial region name used to find nothing; a prefix inside a region folder used
    to read the whole region, days beside it included)."""
    s3, name = bucket
    _org_trail(s3, name, make_events)
    whole = _read_keys(S3Source(aws_client("s3"), name, prefix))
    assert len(whole) == objects
    window = {
        "start": dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
        "end": dt.datetime(2026, 3, 3, 23, tzinfo=dt.UTC),
    }
    assert sorted(_read_keys(S3Source(aws_client("s3"), name, prefix, **window))) == sorted(whole)


def test_s3_checkpoints_resume(
    bucket: tuple[Any, str], tmp_path: Path, scripted: Any, make_events: Any
) -> None:
    s3, name = bucket
    by_day = _org_trail(s3, name, make_events)
    ck = Checkpoints(tmp_path / "s.sqlite")
    _, first = _run(S3Source(aws_client("s3"), name, "trail/", checkpoints=ck), tmp_path, scripted)
    assert len(first.stored) == sum(len(v) for v in by_day.values())
    new = make_events(3, prefix="late")
    _put(s3, name, _key(ACCOUNTS[0], "eu-west-1", dt.date(2026, 3, 3), "2355", "late"), new)
    result, second = _run(S3Source(aws_client("s3"), name, "trail/", checkpoints=ck), tmp_path, scripted)
    assert sorted(second.stored) == sorted(e["eventID"] for e in new)
    assert result.metrics.snapshot()["objects_read"] == 1


def test_s3_checkpoints_are_per_object_whatever_prefix_found_it(
    bucket: tuple[Any, str], tmp_path: Path, scripted: Any, make_events: Any
) -> None:
    """The same backfill with its prefix written another way reads nothing again."""
    s3, name = bucket
    by_day = _org_trail(s3, name, make_events)
    ck = Checkpoints(tmp_path / "s.sqlite")
    _, first = _run(S3Source(aws_client("s3"), name, "trail/", checkpoints=ck), tmp_path, scripted)
    assert len(first.stored) == sum(len(v) for v in by_day.values())
    window = {
        "start": dt.datetime(2026, 3, 2, tzinfo=dt.UTC),
        "end": dt.datetime(2026, 3, 2, 23, tzinfo=dt.UTC),
    }
    for prefix, extra in [("trail", {}), (f"trail/AWSLogs/{ORG}/", {}), ("", window)]:
        result, again = _run(
            S3Source(aws_client("s3"), name, prefix, checkpoints=ck, **extra), tmp_path, scripted
        )
        assert again.stored == [], prefix
        assert result.metrics.snapshot()["objects_read"] == 0
        assert result.metrics.snapshot()["skipped"]["already-done"] == (4 if extra else 12)


def test_s3_checkpoints_kept_per_prefix_by_earlier_versions_still_count(
    bucket: tuple[Any, str], tmp_path: Path, scripted: Any, make_events: Any
) -> None:
    """A state database from before checkpoints were per object (its id was s3://BUCKET/PREFIX):
    the backfill it finished is not sent again, and its objects' hashes are kept."""
    s3, name = bucket
    _org_trail(s3, name, make_events)
    ck = Checkpoints(tmp_path / "s.sqlite")
    logs = [
        o for o in s3.list_objects_v2(Bucket=name)["Contents"] if "/CloudTrail/" in o["Key"] and o["Size"]
    ]
    # What earlier versions wrote: a run with prefix "trail" when the first object was older,
    # then one with "trail/" (the object finished last is what counts).
    ck.mark_done(f"s3://{name}/trail", logs[0]["Key"], "an-older-etag", 4, None)
    for o in logs:
        ck.mark_done(f"s3://{name}/trail/", o["Key"], o["ETag"].strip('"'), 4, f"sha-{o['Key']}")
    ck.mark_done(f"s3://{name}-other/trail/", logs[0]["Key"], "x", 4, None)  # another bucket's: not ours
    new = make_events(3, prefix="late")
    _put(s3, name, _key(ACCOUNTS[0], "eu-west-1", dt.date(2026, 3, 3), "2355", "late"), new)
    result, sink = _run(S3Source(aws_client("s3"), name, "trail", checkpoints=ck), tmp_path, scripted)
    assert sorted(sink.stored) == sorted(e["eventID"] for e in new)
    assert result.metrics.snapshot()["objects_read"] == 1
    assert ck.count(f"s3://{name}/") == len(logs) + 1
    assert ck.count(f"s3://{name}/trail/") == ck.count(f"s3://{name}/trail") == 0
    assert ck.count(f"s3://{name}-other/trail/") == 1
    assert ck.count() == len(logs) + 2
    ck.close()
    with sqlite3.connect(tmp_path / "s.sqlite") as db:
        kept = db.execute(
            "SELECT sha256 FROM objects WHERE source = ? AND key = ?", (f"s3://{name}/", logs[1]["Key"])
        )
        assert kept.fetchone() == (f"sha-{logs[1]['Key']}",)


def test_s3_objects_finished_for_other_sinks_are_skipped_warned_about_and_counted_apart(
    bucket: tuple[Any, str], tmp_path: Path, scripted: Any, make_events: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A sink added after a backfill did not get it, without a word. The objects are still not
    sent again (the first sink would get them twice), but once a run a warning names the sink,
    and they are counted apart; what per-prefix checkpoints recorded is kept with its sinks."""
    s3, name = bucket
    _org_trail(s3, name, make_events)
    Checkpoints(tmp_path / "s.sqlite", sinks=["elsewhere"]).close()  # the first sinks recorded
    first = Checkpoints(tmp_path / "s.sqlite", sinks=["s"])
    _run(S3Source(aws_client("s3"), name, "trail/", checkpoints=first), tmp_path, scripted)
    with sqlite3.connect(tmp_path / "s.sqlite") as db:  # as if a version before 2026-12-08 had them
        db.execute("UPDATE objects SET source = ? WHERE source = ?", (f"s3://{name}/trail/", f"s3://{name}/"))
    first.close()
    added = Checkpoints(tmp_path / "s.sqlite", sinks=["s", "added"])
    with caplog.at_level(logging.WARNING, logger="trailrelay.state"):
        result, sink = _run(S3Source(aws_client("s3"), name, "trail", checkpoints=added), tmp_path, scripted)
    assert sink.stored == []
    assert result.metrics.snapshot()["skipped"]["already-done-for-other-sinks"] == 12
    assert "already-done" not in result.metrics.snapshot()["skipped"]
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "trailrelay.state"]
    assert warning.startswith(
        "objects finished for sink(s) s only are skipped: sink(s) added will not get them"
    )


def test_s3_missing_or_oversized_object(
    bucket: tuple[Any, str], tmp_path: Path, scripted: Any, make_events: Any
) -> None:
    s3, name = bucket
    key = _key(ACCOUNTS[0], "us-east-1", dt.date(2026, 3, 2), "1005", "big")
    _put(s3, name, key, make_events(50))
    src = S3Source(aws_client("s3"), name, "trail/", max_object_bytes=100)
    result, sink = _run(src, tmp_path, scripted)
    assert sink.stored == []
    (entry,) = read_entries(tmp_path / "dead")
    assert "over the 100-byte limit" in entry["reason"]
    assert entry["origin"]["location"] == f"s3://{name}/{key}"


def _queue(aws_env: str) -> tuple[Any, str]:
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:8]}", Attributes={"VisibilityTimeout": "30"})[
        "QueueUrl"
    ]
    return sqs, url


def _s3_note(bucket: str, key: str) -> str:
    return orjson.dumps(
        {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": bucket}, "object": {"key": key.replace(" ", "+")}},
                }
            ]
        }
    ).decode()


def test_sqs_every_notification_shape(
    bucket: tuple[Any, str], aws_env: str, tmp_path: Path, scripted: Any, make_events: Any
) -> None:
    s3, name = bucket
    sqs, url = _queue(aws_env)
    keys = [_key(ACCOUNTS[0], "us-east-1", dt.date(2026, 3, 2), f"10{i}0", f"k{i} x") for i in range(4)]
    expected: list[str] = []
    for i, k in enumerate(keys):
        evs = make_events(5, prefix=f"sqs{i}")
        expected += [e["eventID"] for e in evs]
        _put(s3, name, k, evs)
    sqs.send_message(QueueUrl=url, MessageBody=_s3_note(name, keys[0]))
    sqs.send_message(
        QueueUrl=url,
        MessageBody=orjson.dumps({"Type": "Notification", "Message": _s3_note(name, keys[1])}).decode(),
    )
    sqs.send_message(
        QueueUrl=url, MessageBody=orjson.dumps({"s3Bucket": name, "s3ObjectKey": [keys[2]]}).decode()
    )
    sqs.send_message(
        QueueUrl=url,
        MessageBody=orjson.dumps(
            {
                "version": "0",
                "detail-type": "Object Created",
                "source": "aws.s3",
                "detail": {"bucket": {"name": name}, "object": {"key": keys[3]}},
            }
        ).decode(),
    )
    sqs.send_message(QueueUrl=url, MessageBody='{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"x"}')
    sqs.send_message(QueueUrl=url, MessageBody="garbage that is not a notification")
    digest_key = f"AWSLogs/{ACCOUNTS[0]}/CloudTrail-Digest/us-east-1/2026/03/02/d.json.gz"
    sqs.send_message(QueueUrl=url, MessageBody=_s3_note(name, digest_key))
    src = SqsSource(
        aws_client("sqs"), aws_client("s3"), url, wait_seconds=1, visibility_timeout=30, once=True
    )
    result, sink = _run(src, tmp_path, scripted)
    assert Counter(sink.stored) == Counter(expected)
    snap = result.metrics.snapshot()
    assert snap["skipped"]["digest"] == 1
    assert snap["skipped"]["s3-test-event-or-no-object"] == 1
    (bad,) = read_entries(tmp_path / "dead")
    assert bad["stage"] == "notification"
    assert bad["raw"] == "garbage that is not a notification"
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0"
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0"  # all deleted, none left in flight


def test_forward_from_a_queue_takes_eventbridge_cloudtrail_events_whatever_their_source(
    aws_env: str, tmp_path: Path
) -> None:
    """A rule targeting the queue: an S3 API call is delivered like any other, not skipped as a test event."""
    sqs, url = _queue(aws_env)
    calls = {
        "s3-call": ("s3.amazonaws.com", "PutBucketPublicAccessBlock"),
        "trail-call": ("cloudtrail.amazonaws.com", "StopLogging"),
    }
    for event_id, (source, name) in calls.items():
        record = {**SAMPLE_EVENTS[0], "eventSource": source, "eventName": name, "eventID": event_id}
        envelope = {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "AWS API Call via CloudTrail",
            "source": "aws." + source.split(".")[0],
            "account": "111122223333",
            "time": record["eventTime"],
            "region": "us-east-1",
            "resources": [],
            "detail": record,
        }
        sqs.send_message(QueueUrl=url, MessageBody=orjson.dumps(envelope).decode())
    sqs.send_message(QueueUrl=url, MessageBody='{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"x"}')
    sqs.send_message(
        QueueUrl=url, MessageBody='{"source":"aws.s3","detail-type":"Bucket Gone Missing","detail":{}}'
    )
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[source]\ntype = "sqs"\nqueue_url = "{url}"\nwait_seconds = 1\nregion = "us-east-1"\n'
        f'[[sinks]]\ntype = "file"\npath = "out.ndjson"\n[dead_letter]\npath = "dead"\n'
    )
    summary = tmp_path / "s.json"
    result = CliRunner().invoke(cli, ["forward", "-c", str(cfg), "--once", "--summary-json", str(summary)])
    assert result.exit_code == 4, result.output  # the unknown S3 event is a dead letter
    got = [orjson.loads(x)["eventID"] for x in (tmp_path / "out.ndjson").read_bytes().splitlines()]
    assert sorted(got) == ["s3-call", "trail-call"]
    snap = orjson.loads(summary.read_bytes())
    assert snap["skipped"] == {"s3-test-event-or-no-object": 1}  # only the real test event
    (bad,) = read_entries(tmp_path / "dead")
    assert bad["stage"] == "notification" and "Bucket Gone Missing" in bad["reason"]
    assert _left(sqs, url) == 0


def test_sqs_message_deleted_only_after_delivery(
    bucket: tuple[Any, str], aws_env: str, tmp_path: Path, scripted: Any, make_events: Any
) -> None:
    s3, name = bucket
    sqs, url = _queue(aws_env)
    key = _key(ACCOUNTS[0], "us-east-1", dt.date(2026, 3, 2), "1000", "del")
    _put(s3, name, key, make_events(5, prefix="d"))
    sqs.send_message(QueueUrl=url, MessageBody=_s3_note(name, key))
    seen_while_sending: list[str] = []

    def look(_: Any) -> None:
        attrs = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
        )
        seen_while_sending.append(attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"])

    src = SqsSource(aws_client("sqs"), aws_client("s3"), url, wait_seconds=1, once=True)
    metrics, stop = Metrics(), threading.Event()
    dead = FolderDeadLetters(tmp_path / "dead")
    sink = scripted()
    sink.on_send = look
    pipe = Pipeline(src, dead_letters=dead, metrics=metrics, stop=stop)
    pipe.sinks["s"] = SinkRunner(
        "s", sink, dead_letters=dead, metrics=metrics, stop=stop, on_fatal=pipe.on_fatal
    )
    pipe.run()
    assert seen_while_sending == ["1"]  # in flight during delivery, not yet deleted
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
    assert attrs["ApproximateNumberOfMessages"] == "0"


def test_sqs_fatal_sink_leaves_message_and_missing_object_is_left_for_redrive(
    bucket: tuple[Any, str], aws_env: str, tmp_path: Path, scripted: Any, make_events: Any
) -> None:
    s3, name = bucket
    sqs, url = _queue(aws_env)
    sqs.send_message(
        QueueUrl=url,
        MessageBody=_s3_note(name, "AWSLogs/111122223333/CloudTrail/us-east-1/2026/03/02/gone.json.gz"),
    )
    src = SqsSource(
        aws_client("sqs"), aws_client("s3"), url, wait_seconds=1, visibility_timeout=10, once=True
    )
    result, sink = _run(src, tmp_path, scripted)
    assert result.metrics.snapshot()["skipped"]["fetch-failed"] == 1
    assert result.metrics.snapshot()["units_released"] == 1
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (
        int(attrs["ApproximateNumberOfMessagesNotVisible"]) + int(attrs["ApproximateNumberOfMessages"]) == 1
    )

    # A sink that cannot work at all (FatalSinkError: a revoked token) stops the run, and the
    # message of the object it was given stays on the queue for the next run, not deleted.
    sqs2, url2 = _queue(aws_env)
    key = _key(ACCOUNTS[0], "us-east-1", dt.date(2026, 3, 2), "1000", "fatal")
    _put(s3, name, key, make_events(3, prefix="fatal"))
    sqs2.send_message(QueueUrl=url2, MessageBody=_s3_note(name, key))
    fatal_src = SqsSource(
        aws_client("sqs"), aws_client("s3"), url2, wait_seconds=1, visibility_timeout=10, once=True
    )
    metrics, stop = Metrics(), threading.Event()
    dead = FolderDeadLetters(tmp_path / "dead-fatal")
    revoked = scripted()
    revoked.fatal_after = 0
    pipe = Pipeline(fatal_src, dead_letters=dead, metrics=metrics, stop=stop)
    pipe.sinks["s"] = SinkRunner(
        "s",
        revoked,
        dead_letters=dead,
        metrics=metrics,
        stop=stop,
        on_fatal=pipe.on_fatal,
        backoff_base=0.001,
    )
    fatal = pipe.run()
    assert fatal.fatal and "token revoked" in fatal.fatal
    assert revoked.stored == [] and not list((tmp_path / "dead-fatal").rglob("*.ndjson*"))
    assert fatal.metrics.snapshot()["units_acknowledged"] == 0
    left = sqs2.get_queue_attributes(QueueUrl=url2, AttributeNames=["All"])["Attributes"]
    assert int(left["ApproximateNumberOfMessagesNotVisible"]) + int(left["ApproximateNumberOfMessages"]) == 1


def test_sqs_visibility_is_extended_while_in_flight(
    bucket: tuple[Any, str], aws_env: str, tmp_path: Path, scripted: Any, make_events: Any
) -> None:
    s3, name = bucket
    sqs, url = _queue(aws_env)
    key = _key(ACCOUNTS[0], "us-east-1", dt.date(2026, 3, 2), "1000", "slow")
    _put(s3, name, key, make_events(3, prefix="slow"))
    sqs.send_message(QueueUrl=url, MessageBody=_s3_note(name, key))
    calls: list[int] = []
    src2 = SqsSource(
        aws_client("sqs"),
        aws_client("s3"),
        url,
        wait_seconds=1,
        visibility_timeout=10,
        once=True,
        heartbeat_seconds=0.2,
    )
    src2.sqs.meta.events.register("before-call.sqs.ChangeMessageVisibilityBatch", lambda **_: calls.append(2))
    metrics, stop = Metrics(), threading.Event()
    dead = FolderDeadLetters(tmp_path / "dead")
    slow = scripted()
    slow.on_send = lambda _: time.sleep(1.0)
    pipe = Pipeline(src2, dead_letters=dead, metrics=metrics, stop=stop)
    pipe.sinks["s"] = SinkRunner(
        "s", slow, dead_letters=dead, metrics=metrics, stop=stop, on_fatal=pipe.on_fatal
    )
    pipe.run()
    assert 2 in calls
    assert sorted(slow.stored) == sorted(f"slow-{i:06d}" for i in range(3))


def test_sqs_stop_hands_back_received_messages_never_started(
    bucket: tuple[Any, str], aws_env: str, tmp_path: Path, scripted: Any, make_events: Any
) -> None:
    """A stop (SIGTERM) in the middle of a receive of ten: the messages not started yet become
    visible again at once, not after the visibility timeout."""
    s3, name = bucket
    sqs, url = _queue(aws_env)
    for i in range(10):
        key = _key(ACCOUNTS[0], "us-east-1", dt.date(2026, 3, 2), f"{i:04d}", "stop")
        _put(s3, name, key, make_events(2, prefix=f"stop{i}"))
        sqs.send_message(QueueUrl=url, MessageBody=_s3_note(name, key))
    src = SqsSource(aws_client("sqs"), aws_client("s3"), url, wait_seconds=1, visibility_timeout=60)
    metrics, stop = Metrics(), threading.Event()
    dead = FolderDeadLetters(tmp_path / "dead")
    sink = scripted()

    def signal_after_the_first_message(_: Metrics) -> None:
        stop.set()

    pipe = Pipeline(
        src, dead_letters=dead, metrics=metrics, stop=stop, readers=1, progress=signal_after_the_first_message
    )
    pipe.sinks["s"] = SinkRunner(
        "s", sink, dead_letters=dead, metrics=metrics, stop=stop, on_fatal=pipe.on_fatal
    )
    result = pipe.run()
    snap = result.metrics.snapshot()
    assert result.stopped and snap["units_acknowledged"] + snap["units_released"] < 10  # some never started
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0"  # none held until the timeout
    assert int(attrs["ApproximateNumberOfMessages"]) == 10 - snap["units_acknowledged"]


def _received(sqs: Any, url: str, n: int) -> list[dict[str, Any]]:
    """``n`` messages sent and received (in flight, ready to delete)."""
    for i in range(n):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
    got: list[dict[str, Any]] = []
    while len(got) < n:
        got += sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        )
    return got


def _left(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def test_sqs_deletes_acknowledged_messages_in_batches(
    bucket: tuple[Any, str], aws_env: str, tmp_path: Path, scripted: Any, make_events: Any
) -> None:
    """25 messages: every one deleted, by DeleteMessageBatch requests of up to ten, none one by one."""
    s3, name = bucket
    sqs, url = _queue(aws_env)
    expected: list[str] = []
    for i in range(25):
        key = _key(ACCOUNTS[0], "us-east-1", dt.date(2026, 3, 2), f"{i:04d}", "batch")
        evs = make_events(2, prefix=f"b{i}")
        expected += [e["eventID"] for e in evs]
        _put(s3, name, key, evs)
        sqs.send_message(QueueUrl=url, MessageBody=_s3_note(name, key))
    src = SqsSource(aws_client("sqs"), aws_client("s3"), url, wait_seconds=1, once=True)
    batches: list[int] = []
    singles: list[int] = []
    src.sqs.meta.events.register(
        "before-parameter-build.sqs.DeleteMessageBatch",
        lambda params, **_: batches.append(len(params["Entries"])),
    )
    src.sqs.meta.events.register("before-call.sqs.DeleteMessage", lambda **_: singles.append(1))
    # One sink batch for all 50 records: the 25 acks come in one burst, whatever moto's pace.
    result, sink = _run(
        src, tmp_path, scripted, limits=BatchLimits(max_records=100, max_bytes=1 << 20, max_age=30.0)
    )
    assert sorted(sink.stored) == sorted(expected)
    assert result.metrics.snapshot()["units_acknowledged"] == 25
    assert _left(sqs, url) == 0
    assert singles == []
    assert sum(batches) == 25 and max(batches) <= DELETE_BATCH
    assert len(batches) < 25 // 2  # shared requests, not one per message


def _access_denied(**_: Any) -> Any:
    """SQS's answer to a role without sqs:DeleteMessage (JSON protocol), before anything is sent."""
    from botocore.awsrequest import AWSResponse

    class _Raw:
        def __init__(self, body: bytes) -> None:
            self.body = body

        def stream(self, **_: Any) -> Any:
            yield self.body

    body = orjson.dumps(
        {
            "__type": "com.amazon.coral.service#AccessDeniedException",
            "Message": "User: arn:aws:sts::123456789012:assumed-role/trailrelay/worker is not authorized to "
            "perform: sqs:deletemessage on resource: arn:aws:sqs:us-east-1:123456789012:q because no "
            "identity-based policy allows the sqs:deletemessage action",
        }
    )
    headers = {
        "x-amzn-requestid": str(uuid.uuid4()),
        "x-amzn-query-error": "AccessDenied;Sender",
        "content-type": "application/x-amz-json-1.0",
    }
    return AWSResponse("https://sqs.us-east-1.amazonaws.com/", 403, headers, _Raw(body))


def test_sqs_failed_deletions_count_as_released_units(
    bucket: tuple[Any, str], aws_env: str, tmp_path: Path, scripted: Any, make_events: Any
) -> None:
    """Deletes refused (no sqs:DeleteMessage): delivered, but the run reports the units unfinished."""
    s3, name = bucket
    sqs, url = _queue(aws_env)
    for i in range(3):
        key = _key(ACCOUNTS[0], "us-east-1", dt.date(2026, 3, 2), f"{i:04d}", "denied")
        _put(s3, name, key, make_events(2, prefix=f"denied{i}"))
        sqs.send_message(QueueUrl=url, MessageBody=_s3_note(name, key))
    src = SqsSource(aws_client("sqs"), aws_client("s3"), url, wait_seconds=1, once=True)
    src.sqs.meta.events.register("before-send.sqs.DeleteMessageBatch", _access_denied)
    result, sink = _run(src, tmp_path, scripted)
    assert len(sink.stored) == 6
    snap = result.metrics.snapshot()
    assert snap["units_acknowledged"] == 3
    assert snap["units_released"] == 3  # what the exit status and /metrics look at
    assert _left(sqs, url) == 3


def test_sqs_deletion_never_blocks_the_acknowledging_thread(aws_env: str) -> None:
    """SQS slow to answer: the ack returns at once; close() waits for the deletions it still owes."""
    sqs, url = _queue(aws_env)
    messages = _received(sqs, url, 3)
    client = aws_client("sqs")
    client.meta.events.register("before-call.sqs.DeleteMessageBatch", lambda **_: time.sleep(0.5))
    deletions = _Deletions(client, url, linger=0.01)
    t0 = time.monotonic()
    for m in messages:
        deletions.add(m["MessageId"], m["ReceiptHandle"])
    assert time.monotonic() - t0 < 0.1
    deletions.close()
    assert _left(sqs, url) == 0 and deletions.failed == 0


def test_sqs_acks_wait_when_too_many_deletions_are_waiting(aws_env: str) -> None:
    """SQS slower than the acks: past ``max_waiting`` an ack blocks, so a crash leaves few undeleted."""
    sqs, url = _queue(aws_env)
    messages = _received(sqs, url, 5)
    client = aws_client("sqs")
    client.meta.events.register("before-call.sqs.DeleteMessageBatch", lambda **_: time.sleep(0.5))
    deletions = _Deletions(client, url, linger=0.0, threads=1, max_waiting=3)
    waits = []
    for m in messages:
        t0 = time.monotonic()
        deletions.add(m["MessageId"], m["ReceiptHandle"])
        waits.append(time.monotonic() - t0)
        time.sleep(0.05)  # the sender takes the first one alone
    deletions.close()
    assert max(waits[:4]) < 0.2  # one in flight, three waiting
    assert waits[4] > 0.3  # the fifth waited for the first request to end
    assert _left(sqs, url) == 0 and deletions.failed == 0


def test_sqs_close_sends_waiting_deletions_without_lingering(aws_env: str) -> None:
    sqs, url = _queue(aws_env)
    messages = _received(sqs, url, 3)
    deletions = _Deletions(aws_client("sqs"), url, linger=30.0)
    for m in messages:
        deletions.add(m["MessageId"], m["ReceiptHandle"])
    t0 = time.monotonic()
    deletions.close()
    assert time.monotonic() - t0 < 5
    assert _left(sqs, url) == 0
    with pytest.raises(RuntimeError):
        deletions.add("late", "handle")


def test_sqs_failed_deletions_are_logged_and_counted(aws_env: str, caplog: pytest.LogCaptureFixture) -> None:
    """An entry SQS refuses (ReceiptHandleIsInvalid) is named; the rest of its batch is deleted."""
    sqs, url = _queue(aws_env)
    (good,) = _received(sqs, url, 1)
    deletions = _Deletions(aws_client("sqs"), url, linger=0.01)
    with caplog.at_level("WARNING", logger="trailrelay.sources.sqs"):
        deletions.add(good["MessageId"], good["ReceiptHandle"])
        deletions.add("m-bogus", "not-a-handle")
        deletions.close()
    assert deletions.failed == 1
    assert _left(sqs, url) == 0
    assert "m-bogus" in caplog.text and "ReceiptHandleIsInvalid" in caplog.text


def test_sqs_deleter_outlives_an_answer_of_unexpected_shape(
    aws_env: str, caplog: pytest.LogCaptureFixture
) -> None:
    sqs, url = _queue(aws_env)
    first, second = _received(sqs, url, 2)
    client = aws_client("sqs")
    odd = [True]

    def garble(parsed: dict[str, Any], **_: Any) -> None:
        if odd.pop() if odd else False:
            parsed["Failed"] = [{"Id": "not-a-number"}]

    client.meta.events.register("after-call.sqs.DeleteMessageBatch", garble)
    deletions = _Deletions(client, url, linger=0.01)
    with caplog.at_level("WARNING", logger="trailrelay.sources.sqs"):
        deletions.add(first["MessageId"], first["ReceiptHandle"])
        deadline = time.monotonic() + 5
        while deletions.failed == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        deletions.add(second["MessageId"], second["ReceiptHandle"])  # the thread still works
        deletions.close()
    assert deletions.failed == 1
    assert _left(sqs, url) == 0  # the first was deleted all the same; the second after it
    assert "will be delivered again" in caplog.text


def test_sqs_unreachable_for_deletions_logs_and_keeps_going(caplog: pytest.LogCaptureFixture) -> None:
    """SQS gone: each batch is logged as failed (the messages come back), nothing raises."""
    import socket

    from botocore.config import Config

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    client = boto3.client(
        "sqs",
        endpoint_url=dead,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
    )
    deletions = _Deletions(client, f"{dead}/123456789012/q", linger=0.01)
    with caplog.at_level("WARNING", logger="trailrelay.sources.sqs"):
        for i in range(12):
            deletions.add(f"m{i}", f"r{i}")
        deletions.close()
    assert deletions.failed == 12
    assert caplog.text.count("will be delivered again") >= 2


def test_forward_from_config_with_endpoint_url(
    bucket: tuple[Any, str], aws_env: str, tmp_path: Path, make_events: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3, name = bucket
    evs = make_events(7, prefix="cfg")
    _put(s3, name, _key(ACCOUNTS[0], "us-east-1", dt.date(2026, 3, 2), "1000", "cfg"), evs)
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    config = parse_config(
        {
            "source": {
                "type": "s3",
                "bucket": name,
                "prefix": "trail/",
                "endpoint_url": aws_env,
                "region": "us-east-1",
                "start_time": "2026-03-02T00:00:00Z",
                "end_time": "2026-03-02T23:59:59Z",
            },
            "sinks": [{"type": "file", "path": str(tmp_path / "out.ndjson")}],
        },
        base_dir=tmp_path,
    )
    built = build_pipeline(config)
    assert built.pipeline.run().ok
    for s in built.sinks.values():
        s.close()
    got = [orjson.loads(x)["eventID"] for x in (tmp_path / "out.ndjson").read_bytes().splitlines()]
    assert sorted(got) == sorted(e["eventID"] for e in evs)


def test_dead_letters_to_s3_prefix(bucket: tuple[Any, str], tmp_path: Path, make_events: Any) -> None:
    s3, name = bucket
    root = tmp_path / "in"
    root.mkdir()
    (root / "broken.json.gz").write_bytes(gzip.compress(b'{"Records": [1, 2]}'))
    config = parse_config(
        {
            "source": {"type": "files", "path": str(root)},
            "sinks": [{"type": "file", "path": str(tmp_path / "out.ndjson")}],
            "dead_letter": {"s3_uri": f"s3://{name}/dead/"},
        },
        base_dir=tmp_path,
    )
    built = build_pipeline(config)
    built.pipeline.run()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=name, Prefix="dead/")["Contents"]]
    assert len(keys) == 1
    assert keys[0].endswith(".ndjson.gz")
    lines = gzip.decompress(s3.get_object(Bucket=name, Key=keys[0])["Body"].read()).splitlines()
    entries = [orjson.loads(x) for x in lines]
    assert [e["raw"] for e in entries] == ["1", "2"]
    assert all(e["origin"]["location"].endswith("broken.json.gz") for e in entries)


def test_s3_dead_letters_are_uploaded_before_their_unit_is_acknowledged(
    bucket: tuple[Any, str], aws_env: str, scripted: Any, make_events: Any
) -> None:
    """The S3 store uploads every 500 entries: an SQS message (or a checkpoint) with one bad
    record was acknowledged while its entry still waited in memory, so a crash lost it."""
    s3, name = bucket
    sqs, url = _queue(aws_env)
    good = _key(ACCOUNTS[0], "us-east-1", dt.date(2026, 3, 2), "1000", "good")
    bad = _key(ACCOUNTS[0], "us-east-1", dt.date(2026, 3, 2), "1005", "bad")
    _put(s3, name, good, make_events(3, prefix="g"))
    record = orjson.dumps(make_events(1, prefix="b")[0])
    s3.put_object(Bucket=name, Key=bad, Body=gzip.compress(b'{"Records": [' + record + b", 42]}"))
    sent = {
        key: sqs.send_message(QueueUrl=url, MessageBody=_s3_note(name, key))["MessageId"]
        for key in (good, bad)
    }
    store = S3DeadLetters(aws_client("s3"), name, "dead/")
    src = SqsSource(aws_client("sqs"), aws_client("s3"), url, wait_seconds=1, once=True)
    entries_in_s3_at_ack: dict[str, int] = {}

    def deleted(mid: str, receipt: str, add: Any = src._deletions.add) -> None:
        entries_in_s3_at_ack[mid] = len(s3.list_objects_v2(Bucket=name, Prefix="dead/").get("Contents", []))
        add(mid, receipt)

    src._deletions.add = deleted  # type: ignore[method-assign]  # look at S3 as each ack happens
    metrics, stop = Metrics(), threading.Event()
    pipe = Pipeline(src, dead_letters=store, metrics=metrics, stop=stop)
    sink = scripted()
    pipe.sinks["s"] = SinkRunner(
        "s", sink, dead_letters=pipe.dead_letters, metrics=metrics, stop=stop, on_fatal=pipe.on_fatal
    )
    result = pipe.run()
    assert result.fatal is None and store.count == 1
    assert set(entries_in_s3_at_ack) == set(sent.values())
    assert entries_in_s3_at_ack[sent[bad]] == 1  # in S3 before the message naming its object went
    (obj,) = s3.list_objects_v2(Bucket=name, Prefix="dead/")["Contents"]
    body = gzip.decompress(s3.get_object(Bucket=name, Key=obj["Key"])["Body"].read())
    assert [orjson.loads(x)["raw"] for x in body.splitlines()] == ["42"]


@pytest.mark.parametrize(
    ("url", "region"),
    [
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/trail-events", "eu-west-1"),
        ("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q", "cn-north-1"),
        ("https://us-east-2.queue.amazonaws.com/123456789012/q", "us-east-2"),
        ("https://queue.amazonaws.com/123456789012/q", "us-east-1"),  # the legacy form of us-east-1
        ("https://sqs-fips.us-gov-west-1.amazonaws.com/123456789012/q", "us-gov-west-1"),
        ("https://sqs.us-gov-west-1.amazonaws.com/123456789012/q", "us-gov-west-1"),
        ("https://sqs.eu-west-1.api.aws/123456789012/q", "eu-west-1"),  # dual-stack
        ("https://sqs-fips.us-east-2.api.aws/123456789012/q", "us-east-2"),
        ("https://vpce-0a1b2c3d-4e5f.sqs.eu-central-1.vpce.amazonaws.com/123456789012/q", "eu-central-1"),
        ("http://127.0.0.1:4566/000000000000/q", None),
        ("https://queue.example.com/q", None),
        ("https://sqs.example.com/q", None),
    ],
)
def test_the_region_an_sqs_queue_url_names(url: str, region: str | None) -> None:
    from trailrelay.sources.aws import queue_region

    assert queue_region(url) == region


def test_a_client_without_a_region_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's NoRegionError was a traceback out of `forward` with an SQS source."""
    from trailrelay.errors import ConfigError
    from trailrelay.sources.aws import aws_client

    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "config").write_text("[default]\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    with pytest.raises(ConfigError, match=r"no AWS region for sqs: set region in the config's \[source\]"):
        aws_client("sqs")
    assert aws_client("sqs", region="eu-west-1").meta.region_name == "eu-west-1"


def test_an_sqs_source_without_a_region_reads_it_from_its_queue_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trailrelay.config import parse_config
    from trailrelay.pipeline.build import build_source

    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "config").write_text("[default]\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    config = parse_config(
        {
            "source": {"type": "sqs", "queue_url": "https://sqs.ap-southeast-2.amazonaws.com/123456789012/q"},
            "sinks": [{"type": "file", "path": str(tmp_path / "o.ndjson")}],
        },
        base_dir=tmp_path,
    )
    source = build_source(config, once=True, checkpoints=None)
    assert source.sqs.meta.region_name == "ap-southeast-2"  # type: ignore[attr-defined]


def test_a_queue_worker_outlives_an_outage_of_sqs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, scripted: Any, make_events: Any, caplog: Any
) -> None:
    """No connection to SQS for a while (a network or endpoint outage) ended the run with a
    traceback; a worker without --once now polls again after a backoff and goes on."""
    from moto.server import ThreadedMotoServer

    monkeypatch.setattr("trailrelay.sources.sqs.RECEIVE_BACKOFF", (0.05, 0.2))
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    port = server.get_host_and_port()[1]
    endpoint = f"http://127.0.0.1:{port}"
    sqs = aws_client("sqs", endpoint_url=endpoint)
    url = sqs.create_queue(QueueName="outage")["QueueUrl"]
    src = SqsSource(sqs, aws_client("s3", endpoint_url=endpoint), url, wait_seconds=0)
    metrics, stop = Metrics(), threading.Event()
    dead = FolderDeadLetters(tmp_path / "dead")
    sink = scripted()
    pipe = Pipeline(src, dead_letters=dead, metrics=metrics, stop=stop)
    pipe.sinks["s"] = SinkRunner(
        "s", sink, dead_letters=dead, metrics=metrics, stop=stop, on_fatal=pipe.on_fatal
    )
    runner = threading.Thread(target=pipe.run)
    runner.start()
    try:
        server.stop()  # SQS gone: polls fail with "could not connect"
        deadline = time.monotonic() + 30
        while "could not receive from" not in caplog.text:
            assert time.monotonic() < deadline and runner.is_alive(), "no failed poll was reported"
            time.sleep(0.05)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()  # back, empty (moto keeps nothing): the same queue and an object again
        s3 = aws_client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="back")
        key = _key(ACCOUNTS[0], "us-east-1", dt.date(2026, 3, 2), "1000", "back")
        events = make_events(3, prefix="back")
        _put(s3, "back", key, events)
        assert sqs.create_queue(QueueName="outage")["QueueUrl"] == url
        sqs.send_message(QueueUrl=url, MessageBody=_s3_note("back", key))
        while sorted(sink.stored) != sorted(e["eventID"] for e in events):
            assert time.monotonic() < deadline and runner.is_alive(), "nothing delivered after the outage"
            time.sleep(0.05)
    finally:
        stop.set()
        runner.join(30)
        server.stop()
    assert pipe.fatal is None
    assert "receiving from" in caplog.text and "again after" in caplog.text
    assert "Traceback" not in caplog.text


ROLE = "arn:aws:iam::123456789012:role/reader"


def _answer(
    monkeypatch: pytest.MonkeyPatch, event: str, status: int, body: str, times: int = -1
) -> list[int]:
    """Every client trailrelay makes gets this error answer to ``event`` (``times`` times, or always)."""
    from botocore.awsrequest import AWSResponse

    calls: list[int] = []

    class _Raw:
        def __init__(self, body: bytes) -> None:
            self.body = body

        def stream(self, **_: Any) -> Any:
            yield self.body

    def answer(**_: Any) -> Any:
        calls.append(1)
        if times != -1 and len(calls) > times:
            return None  # to moto
        return AWSResponse("https://aws.test/", status, {"content-type": "text/xml"}, _Raw(body.encode()))

    _hook(monkeypatch, event, answer)
    return calls


def _hook(monkeypatch: pytest.MonkeyPatch, event: str, handler: Any) -> None:
    """Every client trailrelay makes from now on has ``handler`` registered for ``event``."""
    from trailrelay.sources import aws

    made = aws._session

    def session() -> Any:
        core = made()
        core.register(event, handler)
        return core

    monkeypatch.setattr(aws, "_session", session)


def _sts_answers(monkeypatch: pytest.MonkeyPatch, status: int, code: str, times: int = -1) -> list[int]:
    """STS answers AssumeRole with this error (moto lets anyone assume any role); calls are counted."""
    body = (
        '<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
        f"<Code>{code}</Code><Message>User: arn:aws:iam::123456789012:user/probe is not authorized "
        "to perform: sts:AssumeRole</Message></Error><RequestId>x</RequestId></ErrorResponse>"
    )
    return _answer(monkeypatch, "before-send.sts.AssumeRole", status, body, times)


def _role_config(tmp_path: Path, source: str) -> Path:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[source]\n{source}\nregion = "us-east-1"\nrole_arn = "{ROLE}"\n'
        '[[sinks]]\ntype = "file"\npath = "out.ndjson"\n[dead_letter]\npath = "dead"\n'
    )
    return cfg


@pytest.mark.parametrize(("status", "code"), [(403, "AccessDenied"), (503, "ServiceUnavailable")])
@pytest.mark.parametrize("kind", ["s3", "sqs"])
def test_an_assume_role_failing_at_start_is_one_line_with_exit_3(
    bucket: tuple[Any, str],
    aws_env: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    status: int,
    code: str,
) -> None:
    """AssumeRole refused (trust policy) or STS unavailable at start was a botocore traceback, exit 1."""
    _, name = bucket
    if kind == "s3":
        source = f'type = "s3"\nbucket = "{name}"'
    else:
        source = f'type = "sqs"\nqueue_url = "{_queue(aws_env)[1]}"\nwait_seconds = 1'
    _sts_answers(monkeypatch, status, code)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # STS's client: no retries of its own to wait for
    result = CliRunner().invoke(cli, ["forward", "-c", str(_role_config(tmp_path, source)), "--once"])
    assert result.exit_code == 3, result.output
    assert f"cannot assume role_arn {ROLE}: An error occurred ({code})" in result.output
    assert "Traceback" not in result.output


def _role_worker_delivers(
    tmp_path: Path, url: str, sink: Any, events: list[dict[str, Any]], why: str
) -> Pipeline:
    """A queue worker with role_arn, run until ``sink`` has every event (``why`` if it stops first)."""
    from trailrelay.pipeline.build import build_source

    config = parse_config(
        {
            "source": {"type": "sqs", "queue_url": url, "wait_seconds": 0, "role_arn": ROLE},
            "sinks": [{"type": "file", "path": str(tmp_path / "o.ndjson")}],
        },
        base_dir=tmp_path,
    )
    src = build_source(config, once=False, checkpoints=None)
    metrics, stop = Metrics(), threading.Event()
    dead = FolderDeadLetters(tmp_path / "dead")
    pipe = Pipeline(src, dead_letters=dead, metrics=metrics, stop=stop)
    pipe.sinks["s"] = SinkRunner(
        "s", sink, dead_letters=dead, metrics=metrics, stop=stop, on_fatal=pipe.on_fatal
    )
    runner = threading.Thread(target=pipe.run)
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while sorted(sink.stored) != sorted(e["eventID"] for e in events):
            assert time.monotonic() < deadline and runner.is_alive(), why
            time.sleep(0.05)
    finally:
        stop.set()
        runner.join(30)
    return pipe


def test_a_queue_worker_rides_out_sts_failing_at_start(
    bucket: tuple[Any, str],
    aws_env: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    scripted: Any,
    make_events: Any,
    caplog: Any,
) -> None:
    """STS 503 when a worker (no --once) starts: it polls again, as for an SQS outage, and goes on."""

    s3, name = bucket
    sqs, url = _queue(aws_env)
    key = _key(ACCOUNTS[0], "us-east-1", dt.date(2026, 3, 2), "1000", "sts")
    events = make_events(3, prefix="sts")
    _put(s3, name, key, events)
    sqs.send_message(QueueUrl=url, MessageBody=_s3_note(name, key))
    monkeypatch.setattr("trailrelay.sources.sqs.RECEIVE_BACKOFF", (0.05, 0.2))
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    calls = _sts_answers(monkeypatch, 503, "ServiceUnavailable", times=3)
    pipe = _role_worker_delivers(tmp_path, url, scripted(), events, "nothing delivered after STS came back")
    assert pipe.fatal is None
    assert len(calls) > 3
    assert f"cannot assume role_arn {ROLE}" in caplog.text and "polling again" in caplog.text
    assert "Traceback" not in caplog.text


_S3_DENIED = (
    "<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>x</RequestId></Error>"
)


def _check(tmp_path: Path, source: str) -> Any:
    cfg = tmp_path / "check.toml"
    cfg.write_text(
        f'[source]\n{source}\nregion = "us-east-1"\n'
        '[[sinks]]\ntype = "file"\npath = "out.ndjson"\n[dead_letter]\npath = "dead"\n'
    )
    return CliRunner().invoke(cli, ["check", "-c", str(cfg)], env={"COLUMNS": "500"})


def test_check_of_an_s3_source_reads_one_log_file(
    bucket: tuple[Any, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_events: Any
) -> None:
    """check said ✓ after one LIST: for a prefix with nothing under it, and for objects it may not read."""
    s3, name = bucket
    digest = f"AWSLogs/{ACCOUNTS[0]}/CloudTrail-Digest/us-east-1/2026/03/02/x_CloudTrail-Digest_us-east-1_t.json.gz"
    s3.put_object(Bucket=name, Key=digest, Body=gzip.compress(b'{"logFiles":[]}'))
    source = f'type = "s3"\nbucket = "{name}"'
    result = _check(tmp_path, source)
    assert result.exit_code == 1, result.output
    assert (
        f"✗ source (s3): listed s3://{name}/: no log file (.json.gz) among the objects listed (1 digest)"
        in (result.output)
    )
    key = f"AWSLogs/{ACCOUNTS[0]}/CloudTrail/us-east-1/2026/03/02/{ACCOUNTS[0]}_CloudTrail_us-east-1_20260302T1000Z_a.json.gz"
    _put(s3, name, key, make_events(2))
    result = _check(tmp_path, source)
    assert result.exit_code == 0, result.output
    assert f"✓ source (s3): can list s3://{name}/ and read s3://{name}/{key}" in result.output
    result = _check(tmp_path, f'{source}\nprefix = "AWSLogz/"')  # a typo
    assert result.exit_code == 1, result.output
    assert f"✗ source (s3): listed s3://{name}/AWSLogz/: no object at all" in result.output
    _answer(monkeypatch, "before-send.s3.GetObject", 403, _S3_DENIED)  # a KMS key the role may not use
    result = _check(tmp_path, source)
    assert result.exit_code == 1, result.output
    assert f"✗ source (s3): can list s3://{name}/ but cannot read s3://{name}/{key}: " in result.output
    assert "(AccessDenied)" in result.output and "kms:Decrypt" in result.output


def test_check_of_an_sqs_source_receives_without_hiding_a_message(
    bucket: tuple[Any, str], aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_events: Any
) -> None:
    """check said ✓ after GetQueueAttributes alone: for a role that may not receive, or not read the bucket."""
    s3, name = bucket
    sqs, url = _queue(aws_env)
    source = f'type = "sqs"\nqueue_url = "{url}"'
    result = _check(tmp_path, source)
    assert result.exit_code == 0, result.output
    assert "can receive (no message waiting: reading its bucket not checked)" in result.output
    key = _key(ACCOUNTS[0], "us-east-1", dt.date(2026, 3, 2), "1000", "chk")
    _put(s3, name, key, make_events(2))
    sqs.send_message(QueueUrl=url, MessageBody=_s3_note(name, key))
    result = _check(tmp_path, source)
    assert result.exit_code == 0, result.output
    assert f"can receive and read s3://{name}/{key}" in result.output
    # the message was neither hidden nor deleted: the next receive gets it at once
    assert (
        len(sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0, VisibilityTimeout=0).get("Messages", []))
        == 1
    )
    _answer(monkeypatch, "before-send.s3.GetObject", 403, _S3_DENIED)
    result = _check(tmp_path, source)
    assert result.exit_code == 1, result.output
    assert f"but can receive, cannot read s3://{name}/{key}: " in result.output
    _hook(monkeypatch, "before-send.sqs.ReceiveMessage", _access_denied)
    result = _check(tmp_path, source)
    assert result.exit_code == 1, result.output
    assert "✗ source (sqs): queue reachable, ~1 messages but cannot receive messages: " in result.output
    assert _left(sqs, url) == 1


def test_check_does_not_receive_from_a_queue_whose_messages_go_to_the_dlq_soon(
    aws_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A check's receive counts toward maxReceiveCount: with 2, two checks would send a waiting
    notification to the dead-letter queue before any worker read it."""
    sqs, url = _queue(aws_env)
    dlq = sqs.create_queue(QueueName="check-dlq")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = orjson.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": 2}).decode()
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": policy})
    received: list[str] = []
    _hook(monkeypatch, "before-send.sqs.ReceiveMessage", lambda **kw: received.append("receive"))
    result = _check(tmp_path, f'type = "sqs"\nqueue_url = "{url}"')
    assert result.exit_code == 0, result.output
    assert "receiving not checked: the redrive policy's maxReceiveCount is 2" in result.output
    assert received == []


def test_a_queue_worker_assumes_its_role_again_when_sqs_says_the_session_is_over(
    bucket: tuple[Any, str],
    aws_env: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    scripted: Any,
    make_events: Any,
    caplog: Any,
) -> None:
    """ExpiredToken from SQS (the session ended before the expiry botocore knew) stopped the worker
    with "source failed", exit 3: it now assumes the role again and goes on."""
    from botocore.awsrequest import AWSResponse

    s3, name = bucket
    sqs, url = _queue(aws_env)
    key = _key(ACCOUNTS[0], "us-east-1", dt.date(2026, 3, 2), "1000", "expired")
    events = make_events(3, prefix="expired")
    _put(s3, name, key, events)
    sqs.send_message(QueueUrl=url, MessageBody=_s3_note(name, key))
    monkeypatch.setattr("trailrelay.sources.sqs.RECEIVE_BACKOFF", (0.05, 0.2))
    assumed = _sts_answers(monkeypatch, 200, "", times=0)  # every AssumeRole goes to moto, counted
    expired: list[int] = []

    class _Raw:
        def stream(self, **_: Any) -> Any:
            yield orjson.dumps(
                {
                    "__type": "com.amazon.coral.service#ExpiredTokenException",
                    "message": "The security token included in the request is expired",
                }
            )

    def expire_once(**_: Any) -> Any:
        if expired:
            return None
        expired.append(1)
        headers = {"x-amzn-query-error": "ExpiredToken;Sender", "content-type": "application/x-amz-json-1.0"}
        return AWSResponse("https://sqs.us-east-1.amazonaws.com/", 400, headers, _Raw())

    _hook(monkeypatch, "before-send.sqs.ReceiveMessage", expire_once)
    pipe = _role_worker_delivers(tmp_path, url, scripted(), events, "the worker stopped at ExpiredToken")
    assert pipe.fatal is None and expired == [1]
    assert len(assumed) >= 3  # the SQS client's role assumed twice, the S3 client's once
    assert "Traceback" not in caplog.text
