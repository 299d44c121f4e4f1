"""Cross-check against the AWS CLI's own `aws cloudtrail validate-logs` code on the same bucket.

The AWS CLI v1 (``awscli`` on PyPI) carries the reference implementation in
``awscli/customizations/cloudtrail/validation.py``. Here its ``DigestTraverser`` and its log
check (``CloudTrailValidateLogs._download_log``) run against the moto bucket of each test trail,
and its verdicts (valid/invalid digests, valid/invalid log files, gaps) must be ours. Skipped
when ``awscli`` is not installed (it is not a dependency of trailrelay).
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from typing import Any

import boto3
import pytest

from trailrelay.integrity.keys import KeyRing, load_public_key
from trailrelay.integrity.store import S3Store
from trailrelay.integrity.verifier import Verifier
from trailrelay.testing.trail import TrailBuilder

validation = pytest.importorskip("awscli.customizations.cloudtrail.validation")

ACCOUNT, REGION, TRAIL, HOME = "111122223333", "us-east-1", "org-trail", "us-east-1"
START = dt.datetime(2026, 3, 1, 21, tzinfo=dt.UTC)


class _Clients:
    def __init__(self, s3: Any) -> None:
        self.s3 = s3

    def get_client(self, _bucket: str) -> Any:
        return self.s3


class _Keys:
    def __init__(self, b: TrailBuilder) -> None:
        self.b = b

    def get_public_keys(self, _start: Any, _end: Any) -> dict[str, dict[str, Any]]:
        # What the CLI's cloudtrail client hands over: the DER bytes as base64 text.
        return {
            self.b.fingerprint: {
                "Fingerprint": self.b.fingerprint,
                "Value": base64.b64encode(self.b.public_der),
            }
        }


def aws_cli_verdicts(b: TrailBuilder, s3: Any) -> dict[str, set[str]]:
    """Run the AWS CLI's validation code over the trail; its verdicts as sets of s3:// locations."""
    out: dict[str, set[str]] = {
        k: set() for k in ("digest-valid", "digest-invalid", "log-valid", "log-invalid")
    }
    gaps: list[str] = []

    def on_invalid(message: str = "", **_: Any) -> None:
        out["digest-invalid"].add(message.split("\t")[1])

    def on_missing(bucket: str, last_key: str, **_: Any) -> None:
        out["digest-invalid"].add(f"s3://{bucket}/{last_key}")

    def on_gap(**kw: Any) -> None:
        gaps.append(kw["last_key"])

    provider = validation.DigestProvider(
        s3_client_provider=_Clients(s3),
        account_id=ACCOUNT,
        trail_name=TRAIL,
        trail_home_region=HOME,
        trail_source_region=REGION,
        organization_id=b.org,
    )
    traverser = validation.DigestTraverser(
        digest_provider=provider,
        starting_bucket=b.bucket,
        starting_prefix=b.prefix.rstrip("/"),
        public_key_provider=_Keys(b),
        on_invalid=on_invalid,
        on_gap=on_gap,
        on_missing=on_missing,
    )
    command = validation.CloudTrailValidateLogs(session=None)
    command.s3_client_provider = _Clients(s3)
    statuses: list[str] = []
    command._write_status = lambda message, is_error=False: statuses.append(message)
    end = START + dt.timedelta(hours=12)
    for backfill in (False, True):
        for digest in traverser.traverse_digests(START - dt.timedelta(hours=1), end, is_backfill=backfill):
            out["digest-valid"].add(f"s3://{digest['digestS3Bucket']}/{digest['digestS3Object']}")
            for log in digest["logFiles"]:
                command._download_log(log)
    for message in statuses:
        _, location, verdict = message.split("\t")
        if location.startswith("s3://") and "/CloudTrail/" in location:
            out["log-valid" if verdict == "valid" else "log-invalid"].add(location)
    out["gaps"] = set(gaps)
    return out


def our_verdicts(b: TrailBuilder, s3: Any) -> dict[str, set[str]]:
    report_digests: dict[str, bool] = {}
    logs: dict[str, bool] = {}

    def on_digest(outcome: Any) -> None:
        if outcome.verdict is None:
            report_digests[outcome.location] = False
        else:
            report_digests[outcome.location] = outcome.verdict.valid

    store = S3Store(s3, b.bucket, b.prefix)
    keys = KeyRing({b.fingerprint: load_public_key(b.public_der)})
    window = {"start": START - dt.timedelta(hours=1), "end": START + dt.timedelta(hours=12)}  # the CLI's
    verifier = Verifier(store, keys, workers=2, on_digest=on_digest, **window)
    report = verifier.run()
    for p in report.problems:
        if p.kind in ("log-modified", "log-missing", "log-unreadable"):
            logs[p.location] = False
    listed_by_valid = {
        f"s3://{f['s3Bucket']}/{f['s3Object']}"
        for loc, ok in report_digests.items()
        if ok
        for f in b.digest_doc(loc.split("/", 3)[3])["logFiles"]
    }
    for location in listed_by_valid:
        logs.setdefault(location, True)
    return {
        "digest-valid": {k for k, ok in report_digests.items() if ok},
        "digest-invalid": {k for k, ok in report_digests.items() if not ok},
        "log-valid": {k for k, ok in logs.items() if ok},
        "log-invalid": {k for k, ok in logs.items() if not ok},
        "gaps": {p.location.split("/", 3)[3] for p in report.problems if p.kind == "chain-restart"},
        "report": {p.kind for p in report.problems},
    }


def trail() -> TrailBuilder:
    b = TrailBuilder(f"cli-{uuid.uuid4().hex[:10]}", prefix="logs")
    b.chain(ACCOUNT, REGION, start=START, hours=7, empty_hours=[1], stopped_hours=[5])
    return b


def _digests(b: TrailBuilder) -> list[str]:
    return sorted(k for k in b.objects if "CloudTrail-Digest" in k)


def _logs(b: TrailBuilder) -> list[str]:
    return sorted(k for k in b.objects if "/CloudTrail/" in k)


def _backfill(b: TrailBuilder) -> None:
    late = b.log(ACCOUNT, REGION, START + dt.timedelta(hours=2, minutes=58))
    end = START + dt.timedelta(hours=4, minutes=20)
    b.digest(
        ACCOUNT, REGION, trail=TRAIL, home_region=HOME, begin=end - dt.timedelta(hours=1), end=end,
        logs=[late], prev=None, backfill=True,
    )  # fmt: skip


TAMPER = {
    "valid": lambda b: None,
    "changed-byte": lambda b: b.change_log_byte(_logs(b)[2]),
    "deleted-log": lambda b: b.delete(_logs(b)[4]),
    "deleted-digest": lambda b: b.delete(_digests(b)[2]),
    "forged-signature": lambda b: b.forge_signature(_digests(b)[3]),
    "deleted-first-digest": lambda b: b.delete(_digests(b)[0]),
    "backfill": _backfill,
}


@pytest.mark.parametrize("scenario", list(TAMPER))
def test_same_verdicts_as_aws_cloudtrail_validate_logs(scenario: str, aws_env: str) -> None:
    s3 = boto3.client("s3")
    b = trail()
    TAMPER[scenario](b)
    b.upload(s3)
    theirs = aws_cli_verdicts(b, s3)
    ours = our_verdicts(b, s3)
    for verdict in ("digest-valid", "digest-invalid", "log-valid", "log-invalid", "gaps"):
        assert ours[verdict] == theirs[verdict], verdict
    # The chain restart (logging stopped for hour 5) is a gap for both, a failure for neither.
    assert len(theirs["gaps"]) == 1
    untouched = scenario in ("valid", "backfill")
    assert untouched == (not theirs["digest-invalid"] and not theirs["log-invalid"])
    assert len(theirs["digest-valid"]) >= 4 and len(theirs["log-valid"]) >= 6


def test_an_empty_digest_and_a_chain_start_verify_for_both(aws_env: str) -> None:
    s3 = boto3.client("s3")
    b = TrailBuilder(f"cli-{uuid.uuid4().hex[:10]}")
    b.chain(ACCOUNT, REGION, start=START, hours=2, empty_hours=[0, 1])
    b.upload(s3)
    theirs = aws_cli_verdicts(b, s3)
    ours = our_verdicts(b, s3)
    assert ours["digest-valid"] == theirs["digest-valid"] == {f"s3://{b.bucket}/{k}" for k in _digests(b)}
    assert ours["report"] == set()
