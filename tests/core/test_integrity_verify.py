"""Digest-chain validation end to end: a signed test trail on moto S3 and in a mirror of it.

Each scenario tampers with the trail the way an attacker or an accident would; the verifier must
name exactly what happened, and give the same verdicts on S3 and on a `trailrelay mirror` copy.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from trailrelay.integrity.keys import KeyRing, load_public_key
from trailrelay.integrity.mirror import mirror_trail
from trailrelay.integrity.report import EXIT_FAILED, EXIT_GAPS, EXIT_OK, EXIT_PARTIAL, VerifyReport
from trailrelay.integrity.store import MirrorStore, S3Store
from trailrelay.integrity.verifier import Verifier
from trailrelay.testing.trail import TrailBuilder, TrailObject

A1, A2 = "111122223333", "444455556666"
START = dt.datetime(2026, 3, 1, 21, tzinfo=dt.UTC)  # chains cross midnight: two day folders
NOW = START + dt.timedelta(hours=6)
"""A clock soon after the trail: its newest digests are the newest there can be (no window tail)."""


def make_trail(**chain_kw: Any) -> TrailBuilder:
    b = TrailBuilder(f"trail-{uuid.uuid4().hex[:10]}", prefix="cloudtrail")
    b.chain(A1, "us-east-1", start=START, hours=6, empty_hours=[3], **chain_kw)
    b.chain(A2, "eu-west-1", start=START, hours=4)
    return b


def digests_of(b: TrailBuilder, account: str) -> list[str]:
    return sorted(k for k in b.objects if "CloudTrail-Digest" in k and f"/{account}/" in k)


def logs_of(b: TrailBuilder, account: str) -> list[str]:
    return sorted(k for k in b.objects if "/CloudTrail/" in k and f"/{account}/" in k)


def loc(b: TrailBuilder, key: str) -> str:
    return f"s3://{b.bucket}/{key}"


def ring(b: TrailBuilder) -> KeyRing:
    return KeyRing({b.fingerprint: load_public_key(b.public_der)})


def findings(report: VerifyReport) -> set[tuple[str, str]]:
    return {(p.kind, p.location) for p in report.problems}


@pytest.fixture
def s3(aws_env: str) -> Any:
    return boto3.client("s3")


def verify_s3(b: TrailBuilder, s3: Any, **kw: Any) -> VerifyReport:
    b.upload(s3)
    kw.setdefault("now", NOW)
    return Verifier(S3Store(s3, b.bucket, b.prefix), ring(b), workers=2, **kw).run()


def verify_mirror(b: TrailBuilder, s3: Any, tmp: Path, **kw: Any) -> VerifyReport:
    b.upload(s3)
    counts, errors = mirror_trail(S3Store(s3, b.bucket, b.prefix), tmp, workers=2)
    assert not errors and counts["errors"] == 0
    kw.setdefault("now", NOW)
    return Verifier(MirrorStore(tmp), ring(b), workers=2, **kw).run()


# -- tampering scenarios: (tamper, expected findings) --------------------------------------------


def _none(b: TrailBuilder) -> set[tuple[str, str]]:
    return set()


def _changed_byte(b: TrailBuilder) -> set[tuple[str, str]]:
    log = logs_of(b, A1)[0]
    b.change_log_byte(log)
    return {("log-modified", loc(b, log))}


def _deleted_log(b: TrailBuilder) -> set[tuple[str, str]]:
    log = logs_of(b, A2)[0]
    b.delete(log)
    return {("log-missing", loc(b, log))}


def _deleted_digest(b: TrailBuilder) -> set[tuple[str, str]]:
    digest = digests_of(b, A1)[1]
    listed = [f["s3Object"] for f in b.digest_doc(digest)["logFiles"]]
    b.delete(digest)
    return {("digest-missing", loc(b, digest))} | {("log-not-covered", loc(b, k)) for k in listed}


def _forged_signature(b: TrailBuilder) -> set[tuple[str, str]]:
    digest = digests_of(b, A1)[2]
    listed = [f["s3Object"] for f in b.digest_doc(digest)["logFiles"]]
    b.forge_signature(digest)
    return {("digest-signature-invalid", loc(b, digest))} | {("log-not-covered", loc(b, k)) for k in listed}


def _unknown_fingerprint(b: TrailBuilder) -> set[tuple[str, str]]:
    digest = digests_of(b, A2)[-1]  # the newest: nothing records its hash, so only the key is wrong
    doc = b.digest_doc(digest)
    doc["digestPublicKeyFingerprint"] = "0123456789abcdef0123456789abcdef"
    content = json.dumps(doc).encode()
    b.objects[digest].body = gzip.compress(content)
    b.objects[digest].metadata = b.sign_metadata(doc, content)
    listed = [f["s3Object"] for f in doc["logFiles"]]
    return {("digest-unknown-key", loc(b, digest))} | {("log-not-covered", loc(b, k)) for k in listed}


def _added_log(b: TrailBuilder) -> set[tuple[str, str]]:
    log = b.log(A1, "us-east-1", START + dt.timedelta(hours=1, minutes=40))
    return {("log-not-covered", loc(b, log))}


def _moved_digest(b: TrailBuilder) -> set[tuple[str, str]]:
    digest = digests_of(b, A2)[0]
    moved = digest.replace("T220131Z", "T220132Z")
    original = b.objects[digest]
    b.objects[moved] = TrailObject(moved, original.body, dict(original.metadata))
    return {("digest-moved", loc(b, moved))}


SCENARIOS: dict[str, Callable[[TrailBuilder], set[tuple[str, str]]]] = {
    "valid": _none,
    "changed-byte": _changed_byte,
    "deleted-log": _deleted_log,
    "deleted-digest": _deleted_digest,
    "forged-signature": _forged_signature,
    "unknown-fingerprint": _unknown_fingerprint,
    "added-log": _added_log,
    "moved-digest": _moved_digest,
}


@pytest.mark.parametrize("where", ["s3", "mirror"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_each_tampering_is_detected_and_named(scenario: str, where: str, s3: Any, tmp_path: Path) -> None:
    b = make_trail()
    expected = SCENARIOS[scenario](b)
    report = verify_s3(b, s3) if where == "s3" else verify_mirror(b, s3, tmp_path)
    assert findings(report) == expected
    assert report.exit_status == (EXIT_OK if not expected else EXIT_FAILED)


def test_a_valid_trail_counts_every_digest_and_log_file(s3: Any) -> None:
    report = verify_s3(make_trail(), s3)
    c = report.counts
    assert report.verified and report.exit_status == EXIT_OK
    assert (c["digests-valid"], c["digests-invalid"]) == (10, 0)
    assert c["logs-valid"] == 2 * 5 + 2 * 4  # hour 3 of the first chain is an empty digest
    assert (c["accounts"], c["regions"], len(report.chains)) == (2, 2, 2)
    assert c["chain-starts"] == 2
    chain = report.chains[f"{A1}/us-east-1/org-trail"]
    assert chain["digests"] == 6 and chain["restarts"] == 0 and chain["organization"] == "o-abcdef1234"


@pytest.mark.parametrize("where", ["s3", "mirror"])
def test_a_restarted_chain_is_a_gap_not_a_failure(where: str, s3: Any, tmp_path: Path) -> None:
    b = make_trail(stopped_hours=[2])  # logging stopped for an hour: no digest, no logs
    restart = digests_of(b, A1)[2]
    report = verify_s3(b, s3) if where == "s3" else verify_mirror(b, s3, tmp_path)
    assert findings(report) == {("chain-restart", loc(b, restart))}
    assert "2026-03-01T23:01:31Z and 2026-03-02T00:01:31Z" in report.problems[0].detail
    assert report.verified and report.exit_status == EXIT_GAPS
    assert report.chains[f"{A1}/us-east-1/org-trail"]["restarts"] == 1


def test_s3_and_mirror_agree_on_a_trail_with_everything_wrong(s3: Any, tmp_path: Path) -> None:
    b = make_trail(stopped_hours=[4])
    expected: set[tuple[str, str]] = set()
    for tamper in (_changed_byte, _deleted_log, _deleted_digest, _added_log):
        expected |= tamper(b)
    on_s3 = verify_s3(b, s3)
    on_mirror = verify_mirror(b, s3, tmp_path)
    assert findings(on_s3) == findings(on_mirror)
    assert {k for k in findings(on_s3) if k[0] != "chain-restart"} == expected
    assert on_s3.counts == on_mirror.counts


def test_a_plain_copy_takes_signatures_from_the_chain(s3: Any, tmp_path: Path) -> None:
    """Without sidecars only the newest digest of each chain lacks a signature (the user guide's offline case)."""
    b = make_trail()
    b.write(tmp_path, sidecars=False)
    report = Verifier(MirrorStore(tmp_path), ring(b), workers=2).run()
    newest = [digests_of(b, A1)[-1], digests_of(b, A2)[-1]]
    listed = [f["s3Object"] for d in newest for f in b.digest_doc(d)["logFiles"]]
    assert findings(report) == {("digest-signature-missing", loc(b, d)) for d in newest} | {
        ("log-not-covered", loc(b, k)) for k in listed
    }
    assert report.counts["digests-valid"] == 8


def test_a_plain_copy_still_catches_an_altered_digest(tmp_path: Path) -> None:
    b = make_trail()
    target = digests_of(b, A1)[1]
    doc = b.digest_doc(target)
    doc["logFiles"] = doc["logFiles"][:1]  # hide a log file from the record
    b.objects[target].body = gzip.compress(json.dumps(doc).encode())
    b.write(tmp_path, sidecars=False)
    report = Verifier(MirrorStore(tmp_path), ring(b), workers=1).run()
    kinds = {(k, where) for k, where in findings(report) if where == loc(b, target)}
    assert ("digest-signature-invalid", loc(b, target)) in kinds


def test_the_window_limits_the_digests_and_log_files(s3: Any) -> None:
    b = make_trail()
    report = verify_s3(b, s3, start=START + dt.timedelta(hours=2), end=START + dt.timedelta(hours=3))
    assert report.verified, report.problems
    assert report.counts["chain-starts"] == 0  # the first digest in the window continues an earlier one
    assert 0 < report.counts["digests-valid"] < 10


def test_a_prefix_down_to_one_account_finds_only_its_regions(s3: Any) -> None:
    b = make_trail()
    b.upload(s3)
    store = S3Store(s3, b.bucket, b.base(A2))
    report = Verifier(store, ring(b), workers=1).run()
    assert report.verified and set(report.chains) == {f"{A2}/eu-west-1/org-trail"}


def test_backfill_digests_form_their_own_chain(s3: Any) -> None:
    b = make_trail()
    late = b.log(A1, "us-east-1", START + dt.timedelta(hours=2, minutes=59))
    end = START + dt.timedelta(hours=5, minutes=10)
    b.digest(
        A1,
        "us-east-1",
        trail="org-trail",
        home_region="us-east-1",
        begin=end - dt.timedelta(hours=1),
        end=end,
        logs=[late],
        prev=None,
        backfill=True,
    )
    report = verify_s3(b, s3)
    assert report.verified, report.problems
    assert report.chains[f"{A1}/us-east-1/org-trail/backfill"]["digests"] == 1
    assert report.counts["logs-valid"] == 19


def test_log_files_that_are_not_intact_gzip_are_modified(s3: Any) -> None:
    b = make_trail()
    first, second, third = logs_of(b, A1)[:3]
    b.objects[first].body += b"junk"
    b.objects[second].body = gzip.decompress(b.objects[second].body)
    b.objects[third].body = b.objects[third].body[:-8]
    report = verify_s3(b, s3)
    assert findings(report) == {("log-modified", loc(b, k)) for k in (first, second, third)}
    details = " ".join(p.detail for p in report.problems)
    assert "after the end" in details and "not a valid gzip" in details and "truncated" in details


def test_a_recent_log_file_without_digest_is_pending(s3: Any) -> None:
    b = make_trail()
    now = NOW
    recent = b.log(A2, "eu-west-1", now - dt.timedelta(minutes=20))
    report = verify_s3(b, s3, now=now)
    assert findings(report) == {("log-pending", loc(b, recent))}
    assert report.exit_status == EXIT_OK


def plant(b: TrailBuilder, named: dt.datetime, folder: dt.date) -> str:
    """A log file no digest lists, named with time ``named``, put in the day folder of ``folder``."""
    key = b.log(A1, "us-east-1", named)
    moved = key.replace(f"/{named:%Y/%m/%d}/", f"/{folder:%Y/%m/%d}/")
    b.objects[moved] = b.objects.pop(key)
    b.objects[moved].key = moved
    return moved


def test_a_planted_log_named_in_the_future_or_off_its_day_folder_is_a_failure_not_pending(
    tmp_path: Path,
) -> None:
    """Only a recent log file in its own day folder may wait for its digest; the others were planted."""
    b = make_trail()
    first_day = START.date()  # 2026/03/01; NOW is 2026-03-02T03:00
    future = plant(b, dt.datetime(2099, 1, 1, tzinfo=dt.UTC), first_day)
    recent = plant(b, NOW - dt.timedelta(minutes=30), first_day)
    pending = b.log(A2, "eu-west-1", NOW - dt.timedelta(minutes=20))
    b.write(tmp_path)
    report = Verifier(MirrorStore(tmp_path), ring(b), workers=2, now=NOW).run()
    assert findings(report) == {
        ("log-misdated", loc(b, future)),
        ("log-misdated", loc(b, recent)),
        ("log-pending", loc(b, pending)),
    }
    assert report.exit_status == EXIT_FAILED
    details = {p.location: p.detail for p in report.problems}
    assert "2099-01-01T00:00:00Z is in the future" in details[loc(b, future)]
    assert "not of the 2026/03/01 folder" in details[loc(b, recent)]


def test_a_log_in_a_window_day_folder_named_before_the_window_is_judged(tmp_path: Path) -> None:
    b = make_trail()
    old = plant(b, START - dt.timedelta(days=30), START.date())
    b.write(tmp_path)
    end = START + dt.timedelta(hours=4)
    report = Verifier(MirrorStore(tmp_path), ring(b), workers=2, start=START, end=end, now=NOW).run()
    assert findings(report) == {("log-misdated", loc(b, old))}
    assert report.exit_status == EXIT_FAILED


def test_digest_without_signature_metadata_on_s3_is_invalid(s3: Any) -> None:
    b = make_trail()
    digest = digests_of(b, A2)[1]
    b.objects[digest].metadata = {}
    report = verify_s3(b, s3)
    assert ("digest-signature-missing", loc(b, digest)) in findings(report)


def test_bad_digest_content_is_reported_not_raised(s3: Any) -> None:
    b = make_trail()
    broken, not_json = digests_of(b, A2)[1:3]
    b.objects[broken].body = b"\x1f\x8b garbage"
    b.objects[not_json].body = gzip.compress(b"[1, 2")
    report = verify_s3(b, s3)
    kinds = {k for k, _ in findings(report)}
    assert ("digest-invalid-format", loc(b, broken)) in findings(report)
    assert ("digest-invalid-format", loc(b, not_json)) in findings(report)
    assert "log-not-covered" in kinds and report.exit_status == EXIT_FAILED


def test_unknown_key_without_any_key_source_says_why(s3: Any) -> None:
    b = make_trail()
    b.upload(s3)
    report = Verifier(S3Store(s3, b.bucket, b.prefix), KeyRing(), workers=1).run()
    assert report.counts["digest-unknown-key"] == 10
    assert "--public-key" in report.problems[0].detail


def test_json_report_is_complete(s3: Any) -> None:
    b = make_trail()
    _deleted_log(b)
    doc = json.loads(json.dumps(verify_s3(b, s3).as_dict()))
    assert doc["verified"] is False and doc["exit_status"] == 1
    assert doc["counts"]["log-missing"] == 1 and doc["counts"]["logs-valid"] == 17
    assert doc["problems"][0]["kind"] == "log-missing" and doc["problems"][0]["severity"] == "failure"
    assert {c["chain"] for c in doc["chains"]} == {f"{A1}/us-east-1/org-trail", f"{A2}/eu-west-1/org-trail"}


def test_a_week_long_chain_streams_day_by_day(tmp_path: Path) -> None:
    """Log files are judged a few days behind the walk; nothing is lost at the day boundaries."""
    b = TrailBuilder(f"trail-{uuid.uuid4().hex[:10]}")
    b.chain(A1, "us-east-1", start=START, hours=24 * 7, logs_per_hour=1)
    added = b.log(A1, "us-east-1", START + dt.timedelta(days=2, minutes=40))
    b.write(tmp_path)
    open_sizes: list[int] = []
    verifier = Verifier(MirrorStore(tmp_path), ring(b), workers=2)
    original = verifier._walk_day

    def spy(walk: Any, day: Any) -> None:
        original(walk, day)
        open_sizes.append(len(walk.coverage._open))

    verifier._walk_day = spy  # type: ignore[method-assign]
    report = verifier.run()
    assert findings(report) == {("log-not-covered", loc(b, added))}
    assert report.counts["logs-valid"] == 24 * 7 and report.counts["digests-valid"] == 24 * 7
    assert max(open_sizes) <= 24 * 4 + 2  # about SLACK_DAYS + 1 days of log keys, not the week


def test_expired_oldest_digests_are_a_notice_without_window_and_missing_with_one(tmp_path: Path) -> None:
    b = TrailBuilder(f"trail-{uuid.uuid4().hex[:10]}")
    digests = b.chain(A1, "us-east-1", start=START, hours=4)
    gone = digests[0]
    for f in b.digest_doc(gone)["logFiles"]:
        b.delete(f["s3Object"])
    b.delete(gone)  # as a lifecycle rule expires the oldest objects
    b.write(tmp_path)
    everything = Verifier(MirrorStore(tmp_path), ring(b), workers=1, now=NOW).run()
    assert findings(everything) == {("chain-truncated", loc(b, digests[1]))}
    assert everything.exit_status == EXIT_OK
    windowed = Verifier(MirrorStore(tmp_path), ring(b), workers=1, start=START, now=NOW).run()
    assert findings(windowed) == {("digest-missing", loc(b, gone))}


def test_deleting_the_newest_digests_and_their_logs_is_not_a_clean_pass(tmp_path: Path) -> None:
    """StopLogging never followed by StartLogging, or the newest hours deleted: the chain just ends early."""
    b = TrailBuilder(f"trail-{uuid.uuid4().hex[:10]}")
    digests = b.chain(A1, "us-east-1", start=START, hours=6)
    for gone in digests[-2:]:
        for f in b.digest_doc(gone)["logFiles"]:
            b.delete(f["s3Object"])
        b.delete(gone)
    b.write(tmp_path)
    report = Verifier(MirrorStore(tmp_path), ring(b), workers=1, now=START + dt.timedelta(hours=8)).run()
    assert not report.problems and report.exit_status == EXIT_PARTIAL
    span = report.spans[f"{A1}/us-east-1/org-trail"]
    assert span.tail == dt.timedelta(hours=6) - dt.timedelta(hours=4, seconds=91)
    assert report.as_dict()["partial_chains"] == [f"{A1}/us-east-1/org-trail"]
    whole = Verifier(MirrorStore(tmp_path), ring(b), workers=1, now=START + dt.timedelta(hours=6)).run()
    assert whole.exit_status == EXIT_OK and whole.covered_fraction == 1.0
