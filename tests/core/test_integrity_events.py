"""Integrity events from the forwarding checkpoints: one event per digest, alertable."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
from pathlib import Path
from typing import Any

from trailrelay.integrity.events import EVENT_TYPE, CheckpointHashes, run_integrity_check
from trailrelay.integrity.keys import KeyRing, load_public_key
from trailrelay.integrity.store import MirrorStore
from trailrelay.state import Checkpoints
from trailrelay.testing.trail import TrailBuilder

ACCOUNT = "111122223333"
START = dt.datetime(2026, 3, 1, 21, tzinfo=dt.UTC)
SOURCE = "s3://trail-bucket/"


def forwarded(b: TrailBuilder, db: Path, skip: int = 0, wrong: int = -1) -> Checkpoints:
    """What the pipeline records: each finished object with the SHA-256 of its uncompressed bytes."""
    cp = Checkpoints(db)
    logs = sorted(k for k in b.objects if "/CloudTrail/" in k)
    for i, key in enumerate(logs[skip:], skip):
        content = gzip.decompress(b.objects[key].body)
        sha = hashlib.sha256(content + (b"!" if i == wrong else b"")).hexdigest()
        cp.mark_done(SOURCE, key, "etag", 3, sha)
    return cp


def run(b: TrailBuilder, tmp: Path, cp: Checkpoints) -> tuple[list[dict[str, Any]], Any]:
    b.write(tmp / "m")
    events: list[dict[str, Any]] = []
    hashes = CheckpointHashes(cp.path, SOURCE)
    report = run_integrity_check(
        MirrorStore(tmp / "m"),
        KeyRing({b.fingerprint: load_public_key(b.public_der)}),
        events.append,
        forwarded=hashes,
        workers=2,
    )
    hashes.close()
    return events, report


def test_one_valid_event_per_digest_when_what_was_forwarded_is_what_aws_wrote(tmp_path: Path) -> None:
    b = TrailBuilder()
    b.chain(ACCOUNT, "us-east-1", start=START, hours=3)
    events, report = run(b, tmp_path, forwarded(b, tmp_path / "state.sqlite"))
    (stopped,) = [e for e in events if e["verdict"] == "window-not-covered"]  # the trail ended in 2026-03
    assert stopped["chain"] == "stopped"
    events = [e for e in events if e["digest"]]
    assert len(events) == 3 and report.verified
    for e in events:
        assert e["type"] == EVENT_TYPE and e["verdict"] == "valid" and e["signature"] == "valid"
        assert e["counts"] == {
            "log_files": 2,
            "valid": 2,
            "modified": 0,
            "missing": 0,
            "unreadable": 0,
            "not_forwarded": 0,
        }
        assert (e["account"], e["region"], e["trail"], e["organization"]) == (
            ACCOUNT,
            "us-east-1",
            "org-trail",
            "o-abcdef1234",
        )
        assert (
            e["digest"].startswith("s3://trail-bucket/AWSLogs/") and e["digest_start"] and e["problems"] == []
        )
    assert [e["chain"] for e in events] == ["start", "linked", "linked"]


def test_a_forwarded_object_that_differs_is_an_invalid_event(tmp_path: Path) -> None:
    b = TrailBuilder()
    b.chain(ACCOUNT, "us-east-1", start=START, hours=2)
    events, _ = run(b, tmp_path, forwarded(b, tmp_path / "state.sqlite", skip=1, wrong=3))
    first, second = [e for e in events if e["digest"]]
    assert first["verdict"] == "valid" and first["counts"]["not_forwarded"] == 1
    assert second["verdict"] == "invalid" and second["counts"]["modified"] == 1
    assert second["problems"][0]["kind"] == "log-modified"


def test_missing_digest_and_restart_events(tmp_path: Path) -> None:
    b = TrailBuilder()
    digests = b.chain(ACCOUNT, "us-east-1", start=START, hours=5, stopped_hours=[3])
    b.delete(digests[1])
    events, _ = run(b, tmp_path, forwarded(b, tmp_path / "state.sqlite"))
    by_digest = {e["digest"].rsplit("/", 1)[-1]: e for e in events if e["digest"]}
    missing = by_digest[digests[1].rsplit("/", 1)[-1]]
    assert missing["verdict"] == "missing" and missing["chain"] == "missing"
    restart = by_digest[digests[3].rsplit("/", 1)[-1]]
    assert restart["chain"] == "restart" and restart["problems"][0]["kind"] == "chain-restart"
    uncovered = [e for e in events if e["verdict"] == "log-not-covered"]
    assert len(uncovered) == 2  # the deleted digest's log files


def test_a_chain_that_stopped_is_an_event_with_its_coverage_and_last_digest(tmp_path: Path) -> None:
    """StopLogging never undone: the digests end early, and the SIEM is told so (not only 'valid')."""
    b = TrailBuilder()
    digests = b.chain(ACCOUNT, "us-east-1", start=START, hours=3)
    events, report = run(b, tmp_path, forwarded(b, tmp_path / "state.sqlite"))
    assert [e["verdict"] for e in events if e["digest"]] == ["valid"] * 3
    (stopped,) = [e for e in events if not e["digest"]]
    assert (stopped["verdict"], stopped["chain"], stopped["trail"]) == (
        "window-not-covered",
        "stopped",
        "org-trail",
    )
    assert stopped["last_digest_end"] == "2026-03-02T00:01:31Z"
    assert stopped["coverage"]["uncovered"][0][0] == "2026-03-02T00:01:31Z"
    assert stopped["coverage"]["covered_fraction"] == round(report.covered_fraction, 4) < 0.01
    (problem,) = stopped["problems"]
    assert problem["location"] == f"{SOURCE}{digests[-1]}"
    assert "the chain's last digest ended at 2026-03-02T00:01:31Z" in problem["detail"]


def test_a_check_that_finds_no_digest_says_nothing_was_verified(tmp_path: Path) -> None:
    b = TrailBuilder()
    b.chain(ACCOUNT, "us-east-1", start=START, hours=2)
    for key in [k for k in b.objects if "CloudTrail-Digest" in k]:
        b.delete(key)
    events, _ = run(b, tmp_path, forwarded(b, tmp_path / "state.sqlite"))
    assert sorted(e["verdict"] for e in events) == ["log-not-covered"] * 4 + ["nothing-verified"]
    (nothing,) = [e for e in events if e["verdict"] == "nothing-verified"]
    assert "no CloudTrail digest files in the window" in nothing["problems"][0]["detail"]
    assert nothing["problems"][0]["severity"] == "failure"
