"""Integrity events while forwarding: a signed test trail on moto S3, forwarded with ``[integrity]``.

The trail is forwarded for real (S3 listing, SQS notifications, or a local mirror), the object
hashes land in the state database, and the check that follows sends one event per digest to
every sink, as a unit of work of its own: acknowledged, retried and dead-lettered like records.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
from conftest import ScriptedSink

from trailrelay import contract
from trailrelay.config import parse_config
from trailrelay.contract import DELIVERED, Batch, Outcome, Record
from trailrelay.errors import ConfigError
from trailrelay.integrity.config import DIGEST_LAG_SECONDS, IntegrityConfig
from trailrelay.integrity.records import (
    CHAIN_TAG,
    FAILED_TAG,
    INTEGRITY_KIND,
    integrity_record,
    integrity_tags,
)
from trailrelay.integrity.sqs_hashes import SQS_HASHES_SOURCE
from trailrelay.integrity.verifier import DIGEST_LAG
from trailrelay.pipeline.delivery import SinkRunner
from trailrelay.pipeline.forwarder import Built, build_pipeline
from trailrelay.testing.trail import TrailBuilder

A1, A2 = "111122223333", "444455556666"
START = dt.datetime(2026, 3, 1, 21, tzinfo=dt.UTC)


# -- helpers ---------------------------------------------------------------------------------------


def trail() -> TrailBuilder:
    return TrailBuilder(f"trail-{uuid.uuid4().hex[:10]}", prefix="ct")


def key_file(b: TrailBuilder, tmp: Path) -> dict[str, str]:
    path = tmp / "keys" / f"{b.fingerprint}.der"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b.public_der)
    return {b.fingerprint: str(path)}


def s3_config(b: TrailBuilder, tmp: Path, **integrity: Any) -> dict[str, Any]:
    return {
        "source": {
            "type": "s3",
            "bucket": b.bucket,
            "prefix": b.prefix,
            "start_time": "2026-03-01T20:00:00Z",
            "end_time": "2026-03-02T02:00:00Z",
        },
        "sinks": [{"type": "file", "path": str(tmp / "out.ndjson"), "batch_seconds": 0.05}],
        "dead_letter": {"path": str(tmp / "dead")},
        "state": {"path": str(tmp / "state.sqlite")},
        "integrity": {"enabled": True, "public_keys": key_file(b, tmp), "workers": 2, **integrity},
    }


def build(table: dict[str, Any], tmp: Path, *, once: bool = True, extra: ScriptedSink | None = None) -> Built:
    built = build_pipeline(parse_config(table, base_dir=tmp), once=once, backoff_base=0.001)
    if extra is not None:
        p = built.pipeline
        p.sinks["scripted"] = SinkRunner(
            "scripted",
            extra,
            dead_letters=p.dead_letters,
            metrics=p.metrics,
            stop=p.stop,
            on_fatal=p.on_fatal,
            backoff_base=0.001,
            max_retry_seconds=5,
        )
    return built


def run(built: Built) -> Any:
    result = built.pipeline.run()
    for sink in built.sinks.values():
        sink.close()
    if built.checkpoints is not None:
        built.checkpoints.close()
    return result


def lines(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(x) for x in path.read_bytes().splitlines()] if path.exists() else []


COVERAGE = "window-not-covered"
"""The verdict of a chain whose digests do not cover the checked window."""


def integrity_lines(tmp: Path, *, coverage: bool = False) -> list[dict[str, Any]]:
    """The integrity events sent; with ``coverage``, those saying a window is not covered too.

    The test trails last a few hours of 2026-03; most windows checked are longer (or reach now).
    """
    return [
        x
        for x in lines(tmp / "out.ndjson")
        if x.get("type") == "trailrelay:integrity" and (coverage or x.get("verdict") != COVERAGE)
    ]


def dead_entries(tmp: Path) -> list[dict[str, Any]]:
    return [
        orjson.loads(x) for f in sorted((tmp / "dead").glob("*.ndjson")) for x in f.read_bytes().splitlines()
    ]


def digests(b: TrailBuilder, account: str | None = None) -> list[str]:
    return sorted(
        k for k in b.objects if "CloudTrail-Digest" in k and (account is None or f"/{account}/" in k)
    )


def logs(b: TrailBuilder, account: str | None = None) -> list[str]:
    return sorted(k for k in b.objects if "/CloudTrail/" in k and (account is None or f"/{account}/" in k))


class KindSink(ScriptedSink):
    """Keeps every record it accepts; integrity records are refused or retried as scripted."""

    def __init__(self, *, reject_integrity: bool = False, busy_integrity: int = 0) -> None:
        super().__init__()
        self.reject_integrity = reject_integrity
        self.busy_integrity = busy_integrity
        self.records: list[Record] = []
        self.attempts: list[int] = []

    def send(self, batch: Batch) -> Sequence[Outcome]:
        out: list[Outcome] = []
        for r in batch.records:
            if r.origin.kind == INTEGRITY_KIND:
                self.attempts.append(batch.attempt)
                if self.reject_integrity:
                    out.append(Outcome.rejected("integrity events refused (scripted)"))
                    continue
                if batch.attempt <= self.busy_integrity:
                    out.append(Outcome.retry("busy (scripted)", 0.0))
                    continue
            with self._lock:
                self.records.append(r)
            out.append(DELIVERED)
        return out

    def integrity(self, *, coverage: bool = False) -> list[Record]:
        return [
            r
            for r in self.records
            if r.origin.kind == INTEGRITY_KIND and (coverage or r.document()["verdict"] != COVERAGE)
        ]


@pytest.fixture
def s3(aws_env: str) -> Any:
    return boto3.client("s3")


# -- S3 listing: one event per digest, after everything was forwarded ------------------------------


def test_listing_forward_then_one_valid_event_per_digest(s3: Any, tmp_path: Path) -> None:
    b = trail()
    b.chain(A1, "us-east-1", start=START, hours=3)
    b.chain(A2, "eu-west-1", start=START, hours=2)
    b.upload(s3)
    sink = KindSink()
    built = build(s3_config(b, tmp_path), tmp_path, extra=sink)
    assert built.pipeline.hash_objects  # [integrity] implies [state] hash_objects
    result = run(built)
    assert result.ok and result.open_units == 0
    events = integrity_lines(tmp_path)
    expected = {f"s3://{b.bucket}/{k}" for k in digests(b)}
    assert {e["digest"] for e in events} == expected and len(events) == len(expected)
    for e in events:
        assert e["verdict"] == "valid" and e["signature"] == "valid"
        assert e["counts"]["valid"] == e["counts"]["log_files"] == 2 and e["counts"]["not_forwarded"] == 0
        assert (e["window_start"], e["window_end"]) == ("2026-03-01T20:00:00Z", "2026-03-02T02:00:00Z")
    # every CloudTrail record was forwarded too, and each log object's hash is in the checkpoints
    cloudtrail = [x for x in lines(tmp_path / "out.ndjson") if "eventID" in x]
    assert len(cloudtrail) == 3 * len(logs(b))
    db = sqlite3.connect(tmp_path / "state.sqlite")
    hashed = db.execute("SELECT COUNT(*) FROM objects WHERE sha256 IS NOT NULL").fetchone()[0]
    assert hashed == len(logs(b))
    # the records as the sinks got them: kind, origin, time, no tags
    got = sink.integrity()
    assert len(got) == len(expected)
    for r in got:
        assert r.origin.location in expected and r.origin.bucket == b.bucket
        assert r.tags == () and r.routing.event_time is not None
        assert r.document()["verdict"] == "valid"
    # the trails end at 00:01:31 and 23:01:31, the window at 02:00: a chain that stopped is an event
    stopped = {e["account"]: e for e in integrity_lines(tmp_path, coverage=True) if e["verdict"] == COVERAGE}
    assert set(stopped) == {A1, A2} and {e["chain"] for e in stopped.values()} == {"stopped"}
    assert stopped[A2]["last_digest_end"] == "2026-03-01T23:01:31Z"
    assert stopped[A2]["coverage"]["uncovered"][-1] == ["2026-03-01T23:01:31Z", "2026-03-02T02:00:00Z"]
    stats = built.extras["integrity"].stats  # type: ignore[attr-defined]
    assert stats["checks"] == 1 and stats["events"] == stats["events_delivered"] == len(expected) + 2


def test_a_changed_log_file_is_an_invalid_event_with_a_critical_tag(s3: Any, tmp_path: Path) -> None:
    b = trail()
    keys = b.chain(A1, "us-east-1", start=START, hours=3)
    changed = b.digest_doc(keys[1])["logFiles"][0]["s3Object"]
    b.change_log_byte(changed)  # the bucket now holds something CloudTrail did not write
    b.upload(s3)
    sink = KindSink()
    result = run(build(s3_config(b, tmp_path), tmp_path, extra=sink))
    assert result.ok
    by_digest = {e["digest"]: e for e in integrity_lines(tmp_path)}
    bad = by_digest[f"s3://{b.bucket}/{keys[1]}"]
    assert bad["verdict"] == "invalid" and bad["counts"]["modified"] == 1
    assert bad["problems"][0]["kind"] == "log-modified"
    assert bad["problems"][0]["location"] == f"s3://{b.bucket}/{changed}"
    assert [by_digest[f"s3://{b.bucket}/{k}"]["verdict"] for k in (keys[0], keys[2])] == ["valid", "valid"]
    (tagged,) = [r for r in sink.integrity() if r.tags]
    assert tagged.origin.location == f"s3://{b.bucket}/{keys[1]}"
    (tag,) = tagged.tags
    assert (tag.rule_id, tag.severity, tag.technique) == (FAILED_TAG, "critical", "T1070")
    assert "log-modified" in tag.title
    high = result.metrics.high_risk
    assert any(FAILED_TAG in h["rules"] for h in high)  # tagged: reported like other detections


def test_a_deleted_digest_is_a_missing_event_and_its_logs_are_not_covered(s3: Any, tmp_path: Path) -> None:
    b = trail()
    keys = b.chain(A1, "us-east-1", start=START, hours=4)
    orphaned = [f["s3Object"] for f in b.digest_doc(keys[1])["logFiles"]]
    b.delete(keys[1])
    b.upload(s3)
    sink = KindSink()
    assert run(build(s3_config(b, tmp_path), tmp_path, extra=sink)).ok
    events = integrity_lines(tmp_path)
    missing = [e for e in events if e["verdict"] == "missing"]
    assert [e["digest"] for e in missing] == [f"s3://{b.bucket}/{keys[1]}"]
    assert missing[0]["chain"] == "missing"
    broken = [e for e in events if e["chain"] == "broken"]
    assert [e["digest"] for e in broken] == [f"s3://{b.bucket}/{keys[2]}"]
    uncovered = sorted(e["problems"][0]["location"] for e in events if e["verdict"] == "log-not-covered")
    assert uncovered == sorted(f"s3://{b.bucket}/{k}" for k in orphaned)
    rules = {r.origin.location: {t.rule_id for t in r.tags} for r in sink.integrity()}
    assert rules[f"s3://{b.bucket}/{keys[1]}"] == {FAILED_TAG}
    assert CHAIN_TAG in rules[f"s3://{b.bucket}/{keys[2]}"]
    assert all(rules[f"s3://{b.bucket}/{k}"] == {FAILED_TAG} for k in orphaned)


def test_a_log_file_deleted_before_forwarding_is_missing_not_just_unforwarded(
    s3: Any, tmp_path: Path
) -> None:
    b = trail()
    keys = b.chain(A1, "us-east-1", start=START, hours=2)
    gone = b.digest_doc(keys[0])["logFiles"][1]["s3Object"]
    b.delete(gone)  # never in the bucket when the forwarder listed it
    b.upload(s3)
    assert run(build(s3_config(b, tmp_path), tmp_path)).ok
    by_digest = {e["digest"]: e for e in integrity_lines(tmp_path)}
    first = by_digest[f"s3://{b.bucket}/{keys[0]}"]
    assert first["verdict"] == "invalid" and first["counts"]["missing"] == 1 and first["counts"]["valid"] == 1
    assert first["problems"][0] == {
        "kind": "log-missing",
        "severity": "failure",
        "location": f"s3://{b.bucket}/{gone}",
        "detail": "not found: deleted after CloudTrail delivered it",
    }
    assert by_digest[f"s3://{b.bucket}/{keys[1]}"]["verdict"] == "valid"


def test_log_files_outside_the_forwarded_window_are_read_and_counted_not_forwarded(
    s3: Any, tmp_path: Path
) -> None:
    b = trail()
    keys = b.chain(A1, "us-east-1", start=START, hours=3)
    b.upload(s3)
    table = s3_config(b, tmp_path)
    # log files named up to 22:30 are forwarded (end + 30 min); digests ending up to 00:00 checked
    table["source"]["end_time"] = "2026-03-01T22:00:00Z"
    assert run(build(table, tmp_path)).ok
    events = {e["digest"]: e for e in integrity_lines(tmp_path)}
    assert set(events) == {f"s3://{b.bucket}/{k}" for k in keys[:2]}
    assert {e["verdict"] for e in events.values()} == {"valid"}
    later = events[f"s3://{b.bucket}/{keys[1]}"]  # its 22:31 log file was not forwarded
    assert later["counts"]["not_forwarded"] == 1 and later["counts"]["valid"] == 1


def test_a_restarted_chain_is_tagged_though_valid(s3: Any, tmp_path: Path) -> None:
    b = trail()
    keys = b.chain(A1, "us-east-1", start=START, hours=4, stopped_hours=[2])
    b.upload(s3)
    sink = KindSink()
    assert run(build(s3_config(b, tmp_path), tmp_path, extra=sink)).ok
    restart = next(r for r in sink.integrity() if r.origin.location == f"s3://{b.bucket}/{keys[2]}")
    assert restart.document()["chain"] == "restart" and restart.document()["verdict"] == "valid"
    assert [(t.rule_id, t.severity, t.technique) for t in restart.tags] == [(CHAIN_TAG, "high", "T1562.008")]


# -- delivery: the same guarantees as CloudTrail records -------------------------------------------


def test_integrity_events_refused_by_a_sink_are_dead_lettered_and_the_unit_settles(
    s3: Any, tmp_path: Path
) -> None:
    b = trail()
    keys = b.chain(A1, "us-east-1", start=START, hours=2)
    b.upload(s3)
    sink = KindSink(reject_integrity=True)
    built = build(s3_config(b, tmp_path), tmp_path, extra=sink)
    result = run(built)
    assert result.ok and result.open_units == 0
    dead = [e for e in dead_entries(tmp_path) if e.get("origin", {}).get("kind") == INTEGRITY_KIND]
    # one per digest, and one saying the chain stopped (at its last digest) before the window's end
    located = sorted(f"s3://{b.bucket}/{k}" for k in [*keys, keys[-1]])
    assert sorted(e["origin"]["location"] for e in dead) == located
    assert all(e["stage"] == "sink" and e["sink"] == "scripted" for e in dead)
    assert all(json.loads(e["raw"])["type"] == "trailrelay:integrity" for e in dead)
    assert len(integrity_lines(tmp_path, coverage=True)) == len(keys) + 1  # the file sink still has them
    stats = built.extras["integrity"].stats  # type: ignore[attr-defined]
    assert stats["events_delivered"] == len(keys) + 1  # final everywhere: the unit is acknowledged


def test_integrity_events_are_retried_like_records(s3: Any, tmp_path: Path) -> None:
    b = trail()
    b.chain(A1, "us-east-1", start=START, hours=2)
    b.upload(s3)
    sink = KindSink(busy_integrity=2)
    assert run(build(s3_config(b, tmp_path), tmp_path, extra=sink)).ok
    assert len(sink.integrity()) == 2 and max(sink.attempts) == 3
    assert not [e for e in dead_entries(tmp_path) if e.get("origin", {}).get("kind") == INTEGRITY_KIND]


def test_cloudtrail_filters_never_drop_integrity_events(s3: Any, tmp_path: Path) -> None:
    b = trail()
    b.chain(A1, "us-east-1", start=START, hours=2)
    b.upload(s3)
    table = s3_config(b, tmp_path)
    table["filter"] = {"default": "drop"}  # keeps no CloudTrail record at all
    table["sinks"][0]["filter"] = {"default": "drop"}
    assert run(build(table, tmp_path)).ok
    out = lines(tmp_path / "out.ndjson")
    assert out and all(x["type"] == "trailrelay:integrity" for x in out)
    assert len(out) == 3  # two digests, and the chain stopped before the window's end


def test_a_check_that_cannot_run_is_an_event_too(s3: Any, tmp_path: Path) -> None:
    b = trail()
    b.chain(A1, "us-east-1", start=START, hours=1)
    b.upload(s3)
    sink = KindSink()
    table = s3_config(b, tmp_path, bucket=f"no-such-bucket-{uuid.uuid4().hex[:8]}")
    assert run(build(table, tmp_path, extra=sink)).ok
    (event,) = integrity_lines(tmp_path)
    assert event["verdict"] == "check-failed" and "NoSuchBucket" in event["problems"][0]["detail"]
    (record,) = sink.integrity()
    assert [(t.rule_id, t.severity) for t in record.tags] == [(FAILED_TAG, "high")]


# -- a local mirror (offline) and an SQS queue (periodic) ------------------------------------------


def test_files_source_on_a_mirror_checks_offline_against_the_forwarded_files(tmp_path: Path) -> None:
    b = trail()
    keys = b.chain(A1, "us-east-1", start=START, hours=3)
    b.write(tmp_path / "mirror")
    modified = b.digest_doc(keys[2])["logFiles"][1]["s3Object"]
    path = tmp_path / "mirror" / modified
    content = bytearray(gzip.decompress(path.read_bytes()))
    content[30] ^= 1
    path.write_bytes(gzip.compress(bytes(content)))
    table = {
        "source": {"type": "files", "path": "mirror"},
        "sinks": [{"type": "file", "path": str(tmp_path / "out.ndjson")}],
        "dead_letter": {"path": "dead"},
        "state": {"path": "state.sqlite"},
        "integrity": {"enabled": True, "public_keys": key_file(b, tmp_path)},
    }
    assert run(build(table, tmp_path)).ok
    verdicts = {e["digest"]: e["verdict"] for e in integrity_lines(tmp_path)}
    assert verdicts == {
        f"s3://{b.bucket}/{keys[0]}": "valid",
        f"s3://{b.bucket}/{keys[1]}": "valid",
        f"s3://{b.bucket}/{keys[2]}": "invalid",
    }


def test_a_log_planted_with_a_future_name_is_an_event_not_skipped_as_pending(tmp_path: Path) -> None:
    b = trail()
    b.chain(A1, "us-east-1", start=START, hours=2)
    named = b.log(A1, "us-east-1", dt.datetime(2099, 1, 1, tzinfo=dt.UTC))
    planted = named.replace("/2099/01/01/", f"/{START:%Y/%m/%d}/")
    b.objects[planted] = b.objects.pop(named)
    b.objects[planted].key = planted
    b.write(tmp_path / "mirror")
    table = {
        "source": {"type": "files", "path": "mirror"},
        "sinks": [{"type": "file", "path": str(tmp_path / "out.ndjson")}],
        "dead_letter": {"path": "dead"},
        "state": {"path": "state.sqlite"},
        "integrity": {"enabled": True, "public_keys": key_file(b, tmp_path)},
    }
    built = build(table, tmp_path)
    assert run(built).ok
    (event,) = [e for e in integrity_lines(tmp_path) if e["verdict"] == "log-misdated"]
    assert event["problems"][0]["location"] == f"s3://{b.bucket}/{planted}"
    assert "2099-01-01T00:00:00Z is in the future" in event["problems"][0]["detail"]
    stats = built.extras["integrity"].stats  # type: ignore[attr-defined]
    assert stats.get("pending_skipped", 0) == 0 and stats["verdict:log-misdated"] == 1


def _note(bucket: str, key: str) -> str:
    return orjson.dumps(
        {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": bucket}, "object": {"key": key}},
                }
            ]
        }
    ).decode()


def test_sqs_source_keeps_hashes_and_checks_periodically(s3: Any, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    b = trail()
    keys = b.chain(A1, "us-east-1", start=now - dt.timedelta(hours=6), hours=3)
    b.upload(s3)
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    for key in logs(b):
        sqs.send_message(QueueUrl=url, MessageBody=_note(b.bucket, key))
    old = tmp_path / "state.sqlite"
    db = sqlite3.connect(old)  # a hash kept long ago: pruned after the check
    db.executescript(
        "CREATE TABLE objects (source TEXT NOT NULL, key TEXT NOT NULL, version TEXT NOT NULL, "
        "records INTEGER NOT NULL, sha256 TEXT, done_at REAL NOT NULL, PRIMARY KEY (source, key));"
    )
    db.execute("INSERT INTO objects VALUES (?, 'b/old', 'e', 1, 'ab', 0)", (SQS_HASHES_SOURCE,))
    db.commit()
    db.close()
    table = {
        "source": {"type": "sqs", "queue_url": url, "wait_seconds": 1},
        "sinks": [{"type": "file", "path": str(tmp_path / "out.ndjson"), "batch_seconds": 0.05}],
        "dead_letter": {"path": "dead"},
        "state": {"path": "state.sqlite"},
        "integrity": {
            "enabled": True,
            "bucket": b.bucket,
            "prefix": b.prefix,
            "every": 0.5,
            "lookback": 9 * 3600,
            "public_keys": key_file(b, tmp_path),
        },
    }
    built = build(table, tmp_path, once=False)
    done = threading.Thread(target=run, args=(built,))
    done.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(integrity_lines(tmp_path)) < 2 * len(keys):
        time.sleep(0.1)
    built.pipeline.stop.set()
    done.join(30)
    events = integrity_lines(tmp_path)
    assert len(events) >= 2 * len(keys)  # at least two checks, each one event per digest
    assert {e["digest"] for e in events} == {f"s3://{b.bucket}/{k}" for k in keys}
    latest = {e["digest"]: e for e in events}
    for e in latest.values():  # once forwarded, every log file compares with what was sent
        assert e["verdict"] == "valid" and e["counts"]["valid"] == 2, e
        assert e["window_start"] < e["window_end"]
    db = sqlite3.connect(tmp_path / "state.sqlite")
    kept = dict(
        db.execute("SELECT key, sha256 FROM objects WHERE source = ?", (SQS_HASHES_SOURCE,)).fetchall()
    )
    assert set(kept) == {f"{b.bucket}/{k}" for k in logs(b)}  # the ancient one was pruned
    assert kept[f"{b.bucket}/{logs(b)[0]}"] == b.digest_doc(keys[0])["logFiles"][0]["hashValue"]


# -- units: config, tags, records ------------------------------------------------------------------


def test_config_rules() -> None:
    assert IntegrityConfig().window_seconds == 3600 + 7200
    assert IntegrityConfig(every=600).window_seconds == 600 + 7200
    with pytest.raises(ValueError, match="lookback must be at least every"):
        IntegrityConfig(every=3600, lookback=7200)
    assert DIGEST_LAG.total_seconds() == DIGEST_LAG_SECONDS
    assert contract.INTEGRITY_KIND == INTEGRITY_KIND  # what connectors compare origin.kind with
    base = {"sinks": [{"type": "file", "path": "x.ndjson"}]}
    with pytest.raises(ConfigError, match=r"integrity\.bucket: required with an sqs source"):
        parse_config(
            {**base, "source": {"type": "sqs", "queue_url": "https://q"}, "integrity": {"enabled": True}}
        )
    with pytest.raises(ConfigError, match=r"integrity\.every"):
        parse_config({**base, "source": {"type": "files", "path": "."}, "integrity": {"every": 0}})
    with pytest.raises(ConfigError, match=r"integrity\.unknown"):
        parse_config({**base, "source": {"type": "files", "path": "."}, "integrity": {"unknown": 1}})
    off = parse_config({**base, "source": {"type": "sqs", "queue_url": "https://q"}})
    assert off.integrity.enabled is False


def _event(**changes: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "trailrelay:integrity",
        "verdict": "valid",
        "chain": "linked",
        "digest": "s3://b/AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/03/01/d.json.gz",
        "account": "111122223333",
        "region": "us-east-1",
        "problems": [],
        "verified_at": "2026-03-02T10:00:00Z",
        "window_start": "2026-03-02T07:00:00Z",
        "window_end": "2026-03-02T08:00:00Z",
    }
    event.update(changes)
    return event


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, []),
        ({"chain": "start"}, []),
        ({"chain": "continues"}, []),
        ({"chain": "restart"}, [(CHAIN_TAG, "high", "T1562.008")]),
        ({"verdict": "missing", "chain": "missing"}, [(FAILED_TAG, "critical", "T1070")]),
        (
            {"verdict": "invalid", "chain": "broken", "problems": [{"kind": "digest-signature-invalid"}]},
            [(FAILED_TAG, "critical", "T1070"), (CHAIN_TAG, "critical", "T1562.008")],
        ),
        ({"verdict": "invalid", "problems": [{"kind": "log-unreadable"}]}, [(FAILED_TAG, "high", None)]),
        ({"verdict": "invalid", "problems": [{"kind": "digest-unknown-key"}]}, [(FAILED_TAG, "high", None)]),
        ({"verdict": "log-not-covered", "chain": None}, [(FAILED_TAG, "critical", "T1070")]),
        ({"verdict": "log-misdated", "chain": None}, [(FAILED_TAG, "critical", "T1070")]),
        (
            {"verdict": "window-not-covered", "chain": "stopped"},
            [(FAILED_TAG, "high", None), (CHAIN_TAG, "high", "T1562.008")],
        ),
        ({"verdict": "nothing-verified", "chain": None}, [(FAILED_TAG, "high", None)]),
        ({"verdict": "check-failed", "chain": None}, [(FAILED_TAG, "high", None)]),
    ],
)
def test_tags(changes: dict[str, Any], expected: list[tuple[str, str, str | None]]) -> None:
    assert [(t.rule_id, t.severity, t.technique) for t in integrity_tags(_event(**changes))] == expected


def test_record_of_an_event() -> None:
    event = _event(verdict="invalid", problems=[{"kind": "log-modified", "location": "s3://b/k"}])
    r = integrity_record(event)
    assert r.origin.kind == INTEGRITY_KIND and r.origin.location == event["digest"]
    assert (r.origin.bucket, r.origin.key) == ("b", event["digest"][len("s3://b/") :])
    assert orjson.loads(r.raw) == event and r.line() == r.raw and b"\n" not in r.raw
    assert r.routing.event_time == dt.datetime(2026, 3, 2, 10, tzinfo=dt.UTC) and r.epoch is not None
    assert (r.routing.recipient_account_id, r.routing.aws_region) == ("111122223333", "us-east-1")
    assert r.event_id and r.event_id == integrity_record(dict(event)).event_id  # stable
    assert r.event_id != integrity_record({**event, "window_end": "2026-03-02T09:00:00Z"}).event_id
    assert r.tags and r.high_risk
    uncovered = integrity_record(
        _event(
            verdict="log-not-covered",
            digest=None,
            problems=[{"kind": "log-not-covered", "location": "s3://b/l"}],
        )
    )
    assert uncovered.origin.location == "s3://b/l"


def test_a_long_problem_list_is_cut_but_counted(s3: Any, tmp_path: Path) -> None:
    b = trail()
    keys = b.chain(A1, "us-east-1", start=START, hours=1, logs_per_hour=60, records=1)
    for f in b.digest_doc(keys[0])["logFiles"]:
        b.change_log_byte(f["s3Object"])
    b.upload(s3)
    assert run(build(s3_config(b, tmp_path), tmp_path)).ok
    (event,) = integrity_lines(tmp_path)
    assert event["counts"]["modified"] == 60
    assert len(event["problems"]) == 50 and event["problems_omitted"] == 10


# -- the wrapper on its own: ordering, chunks, what is not sent --------------------------------------


class ListSource:
    """Units of one in-memory object each; their acks are recorded."""

    def __init__(self, objects: int) -> None:
        self.objects = objects
        self.acked: list[str] = []
        self.closed = False

    def work(self, stop: threading.Event) -> Any:
        from trailrelay.record import Origin
        from trailrelay.sources.base import ObjectRef, Work
        from trailrelay.testing import SAMPLE_EVENTS

        for i in range(self.objects):
            body = gzip.compress(orjson.dumps({"Records": [{**SAMPLE_EVENTS[0], "eventID": f"ev-{i}"}]}))
            origin = Origin("s3", f"s3://b/k{i}", "b", f"k{i}", "etag")
            yield Work(
                [ObjectRef(origin, lambda body=body: body)],
                ack=lambda _done, i=i: self.acked.append(f"k{i}"),
                label=f"k{i}",
            )

    def close(self) -> None:
        self.closed = True


def test_final_check_waits_for_every_forwarded_unit_and_sends_events_in_chunks(tmp_path: Path) -> None:
    from trailrelay.integrity.checks import IntegrityChecks
    from trailrelay.pipeline.deadletter import FolderDeadLetters
    from trailrelay.pipeline.metrics import Metrics
    from trailrelay.pipeline.runner import Pipeline

    inner = ListSource(6)
    seen_at_check: list[int] = []
    windows: list[tuple[Any, Any]] = []

    def check(start: Any, end: Any, emit: Any) -> None:
        seen_at_check.append(len(inner.acked))
        windows.append((start, end))
        for i in range(5):
            emit(_event(digest=f"s3://b/d{i}", verdict="valid" if i else "invalid"))
        emit(_event(verdict="log-pending", digest=None))  # not digested yet: never sent

    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    wrapper = IntegrityChecks(
        inner,
        check,
        location="s3://b/",
        final=True,
        final_window=lambda: (start, None),
        chunk=2,
        wait_step=0.05,
    )
    metrics, stop = Metrics(), threading.Event()
    dead = FolderDeadLetters(tmp_path / "dead")
    sink = KindSink()
    sink.limits = type(sink.limits)(max_records=50, max_bytes=1 << 20, max_age=0.3, concurrency=2)
    pipe = Pipeline(wrapper, dead_letters=dead, metrics=metrics, stop=stop, readers=3)
    pipe.sinks["s"] = SinkRunner(
        "s", sink, dead_letters=dead, metrics=metrics, stop=stop, on_fatal=pipe.on_fatal
    )
    result = pipe.run()
    assert result.ok and result.open_units == 0 and inner.closed
    assert seen_at_check == [6]  # every forwarded object was acknowledged before the check ran
    assert windows == [(start, None)]
    got = sink.integrity()
    assert sorted(r.origin.location for r in got) == [f"s3://b/d{i}" for i in range(5)]
    assert all(orjson.loads(r.raw)["window_start"] == "2026-03-01T00:00:00Z" for r in got)
    stats = wrapper.stats
    assert stats["events"] == stats["events_delivered"] == 5 and stats["pending_skipped"] == 1
    assert stats["verdict:invalid"] == 1 and stats["verdict:valid"] == 4
    assert metrics.acked == 6 + 3  # six objects, three units of at most two events
    assert metrics.records_in == 6  # integrity events are not CloudTrail records


def test_a_stop_during_a_check_releases_nothing_and_leaves_no_unit_open(tmp_path: Path) -> None:
    from trailrelay.integrity.checks import IntegrityChecks
    from trailrelay.pipeline.deadletter import FolderDeadLetters
    from trailrelay.pipeline.metrics import Metrics
    from trailrelay.pipeline.runner import Pipeline

    metrics, stop = Metrics(), threading.Event()

    def check(_start: Any, _end: Any, emit: Any) -> None:
        stop.set()  # a signal arrives while the check runs
        for i in range(10):
            emit(_event(digest=f"s3://b/d{i}"))

    wrapper = IntegrityChecks(ListSource(2), check, location="s3://b/", final=True, chunk=3, wait_step=0.05)
    dead = FolderDeadLetters(tmp_path / "dead")
    sink = KindSink()
    pipe = Pipeline(wrapper, dead_letters=dead, metrics=metrics, stop=stop)
    pipe.sinks["s"] = SinkRunner(
        "s", sink, dead_letters=dead, metrics=metrics, stop=stop, on_fatal=pipe.on_fatal
    )
    result = pipe.run()
    assert result.stopped and result.open_units == 0
    assert sink.integrity() == []
    assert wrapper.stats["checks"] == 1 and wrapper.stats.get("events_delivered", 0) == 0


def test_dead_lettered_integrity_events_are_replayed_as_integrity_events(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from trailrelay.cli.main import cli
    from trailrelay.testing import SAMPLE_EVENTS

    event = _event(verdict="invalid", problems=[{"kind": "log-modified", "location": "s3://b/l"}])
    dl = tmp_path / "dead-letters"
    dl.mkdir()
    entries = [
        {
            "stage": "sink",
            "sink": "out",
            "reason": "503",
            "raw": orjson.dumps(event).decode(),
            "origin": {"kind": INTEGRITY_KIND, "location": event["digest"]},
        },
        {"stage": "sink", "sink": "out", "reason": "503", "raw": orjson.dumps(SAMPLE_EVENTS[0]).decode()},
    ]
    (dl / "dead-letters-2026-03-02.ndjson").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in entries))
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[source]\ntype = "files"\npath = "in"\n[[sinks]]\ntype = "file"\nname = "out"\npath = "o.ndjson"\n'
    )
    result = CliRunner().invoke(cli, ["replay-dead-letters", "-c", str(cfg)])
    assert result.exit_code == 0, result.output
    got = lines(tmp_path / "o.ndjson")
    assert sorted(got, key=lambda x: "eventID" in x) == [event, SAMPLE_EVENTS[0]]
    assert (dl / "dead-letters-2026-03-02.ndjson.replayed").exists()
    assert not list(dl.glob("*.kept.ndjson")) and len(list(dl.glob("*.ndjson"))) == 0


def test_forward_command_with_integrity_reports_the_checks(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from trailrelay.cli.main import cli

    b = trail()
    keys = b.chain(A1, "us-east-1", start=START, hours=2)
    b.write(tmp_path / "mirror")
    (tmp_path / "key.der").write_bytes(b.public_der)
    cfg = tmp_path / "trailrelay.toml"
    cfg.write_text(
        '[source]\ntype = "files"\npath = "mirror"\n'
        '[[sinks]]\ntype = "file"\npath = "out.ndjson"\n'
        "[integrity]\nenabled = true\n"
        f'public_keys = {{ {b.fingerprint} = "key.der" }}\n'
    )
    summary = tmp_path / "summary.json"
    result = CliRunner().invoke(cli, ["forward", "-c", str(cfg), "--once", "--summary-json", str(summary)])
    assert result.exit_code == 0, result.output
    stats = orjson.loads(summary.read_bytes())["integrity"]
    assert stats["checks"] == 1 and stats["events_delivered"] == len(keys) + 1
    assert stats["verdict:valid"] == len(keys) and stats[f"verdict:{COVERAGE}"] == 1  # ended in 2026-03
    assert len(integrity_lines(tmp_path)) == len(keys)


def test_forward_with_integrity_over_nothing_sends_an_event_and_never_says_all_valid(tmp_path: Path) -> None:
    """No digest and no log under the location (validation off, a wrong path): the SIEM hears of it."""
    from click.testing import CliRunner

    from trailrelay.cli.main import cli

    b = trail()
    (tmp_path / "mirror").mkdir()
    (tmp_path / "key.der").write_bytes(b.public_der)
    cfg = tmp_path / "trailrelay.toml"
    cfg.write_text(
        '[source]\ntype = "files"\npath = "mirror"\n'
        '[[sinks]]\ntype = "file"\npath = "out.ndjson"\n'
        "[integrity]\nenabled = true\n"
        f'public_keys = {{ {b.fingerprint} = "key.der" }}\n'
    )
    summary = tmp_path / "summary.json"
    result = CliRunner().invoke(cli, ["forward", "-c", str(cfg), "--once", "--summary-json", str(summary)])
    assert result.exit_code == 0, result.output
    (event,) = integrity_lines(tmp_path)
    assert event["verdict"] == "nothing-verified" and "no AWSLogs/" in event["problems"][0]["detail"]
    stats = orjson.loads(summary.read_bytes())["integrity"]
    assert stats["events_delivered"] == 1 and stats["verdict:nothing-verified"] == 1
    logged = [orjson.loads(line) for line in result.stderr.splitlines()]
    (said,) = [x for x in logged if x["message"].startswith("integrity check 1 of")]
    assert said["level"] == "warning" and "nothing was verified" in said["message"], result.stderr
    assert "all valid" not in result.stderr


def test_in_a_fleet_only_worker_zero_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    b = trail()
    b.chain(A1, "us-east-1", start=START, hours=1)
    b.write(tmp_path / "mirror")
    table = {
        "source": {"type": "files", "path": "mirror"},
        "sinks": [{"type": "file", "path": str(tmp_path / "out.ndjson"), "batch_seconds": 0.05}],
        "dead_letter": {"path": "dead"},
        "state": {"path": "state.sqlite"},
        "integrity": {"enabled": True, "public_keys": key_file(b, tmp_path)},
    }
    monkeypatch.setenv("TRAILRELAY_WORKER", "2")
    built = build(table, tmp_path)
    assert built.pipeline.hash_objects  # hashes are still kept for worker 0's checks
    assert run(built).ok
    assert integrity_lines(tmp_path) == [] and len(lines(tmp_path / "out.ndjson")) == 3 * 2
