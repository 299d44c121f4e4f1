"""`trailrelay verify` and `trailrelay mirror` as a user runs them (click, moto S3)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from trailrelay.integrity.cli import mirror_command, verify_command
from trailrelay.integrity.keys import KeyRing
from trailrelay.integrity.mirror import KEYS_DIR, mirror_trail
from trailrelay.integrity.store import S3Store
from trailrelay.testing.trail import TrailBuilder

ACCOUNT = "111122223333"
START = dt.datetime(2026, 3, 1, 21, tzinfo=dt.UTC)
END = "2026-03-02T01:00:00Z"
"""The end of the test trails' last digest hour: a window their digests cover whole."""


@pytest.fixture
def trail(aws_env: str, tmp_path: Path) -> tuple[TrailBuilder, Any, str]:
    b = TrailBuilder(f"cli-{uuid.uuid4().hex[:10]}", prefix="ct")
    b.chain(ACCOUNT, "us-east-1", start=START, hours=4)
    s3 = boto3.client("s3")
    key_file = tmp_path / "key.der"
    key_file.write_bytes(b.public_der)
    return b, s3, f"{b.fingerprint}={key_file}"


@pytest.fixture
def no_retry_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore retries moto's HTTP 500 (ListPublicKeys is not implemented) without waiting in between."""
    monkeypatch.setattr("botocore.retries.standard.ExponentialBackoff.delay_amount", lambda *_: 0)


def run(*args: str) -> Any:
    return CliRunner().invoke(verify_command, [*args, "--no-progress"], catch_exceptions=False)


def test_verify_valid_trail_exits_zero_with_a_summary(trail: tuple[TrailBuilder, Any, str]) -> None:
    b, s3, key = trail
    b.upload(s3)
    result = run(f"s3://{b.bucket}/ct", "--public-key", key, "--end", END)
    assert result.exit_code == 0, result.output
    assert "VERIFIED" in result.output and "log files valid" in result.output


def test_verify_json_names_the_problem_and_exits_one(trail: tuple[TrailBuilder, Any, str]) -> None:
    b, s3, key = trail
    log = sorted(k for k in b.objects if "/CloudTrail/" in k)[1]
    b.change_log_byte(log)
    b.upload(s3)
    result = run(f"s3://{b.bucket}/ct", "--public-key", key, "--json", "--workers", "3", "--progress")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert [(p["kind"], p["location"]) for p in doc["problems"]] == [
        ("log-modified", f"s3://{b.bucket}/{log}")
    ]
    assert doc["counts"]["logs-valid"] == 7


def test_verify_window_and_restart_exit_codes(aws_env: str, tmp_path: Path) -> None:
    b = TrailBuilder(f"cli-{uuid.uuid4().hex[:10]}")
    b.chain(ACCOUNT, "us-east-1", start=START, hours=5, stopped_hours=[2])
    b.upload(boto3.client("s3"))
    (tmp_path / "k").write_bytes(b.public_der)
    key = f"{b.fingerprint}={tmp_path / 'k'}"
    assert run(f"s3://{b.bucket}", "--public-key", key, "--end", END).exit_code == 4
    assert run(f"s3://{b.bucket}", "--public-key", key, "--end", END, "--allow-gaps").exit_code == 0
    assert run(f"s3://{b.bucket}", "--public-key", key, "--end", "2026-03-01T22:30:00Z").exit_code == 0
    bad = run(f"s3://{b.bucket}", "--start", "2026-03-02", "--end", "2026-03-01", "--public-key", key)
    assert bad.exit_code == 2 and "--start is after --end" in bad.output
    assert run(f"s3://{b.bucket}", "--start", "yesterday").exit_code == 2


@pytest.mark.usefixtures("no_retry_wait")
def test_verify_without_listpublickeys_says_not_checked_not_tampered(
    trail: tuple[TrailBuilder, Any, str],
) -> None:
    """S3 readable, CloudTrail's API failing (an S3-only VPC endpoint): exit 3 and why, not a forgery alarm."""
    b, s3, _ = trail
    b.upload(s3)
    result = run(f"s3://{b.bucket}/ct", "--end", END)
    assert result.exit_code == 3, result.output
    assert "NOT CHECKED: 4 digests could not be checked" in result.output
    assert "ListPublicKeys in us-east-1 failed: ClientError" in result.output
    assert f"--public-key {b.fingerprint}=FILE" in result.output
    assert "NOT VERIFIED" not in result.output and "<html" not in result.output
    doc = json.loads(run(f"s3://{b.bucket}/ct", "--end", END, "--json").stdout)
    assert doc["exit_status"] == 3 and doc["verified"] is False
    assert {p["severity"] for p in doc["problems"]} == {"unchecked"}
    assert doc["counts"]["digests-unchecked"] == 4 and doc["counts"]["log-unchecked"] == 8


@pytest.mark.parametrize("as_json", [False, True])
def test_verify_into_a_closed_pipe_exits_with_its_verdict(tmp_path: Path, as_json: bool) -> None:
    """``trailrelay verify … | head -1``: the reader going away is not a failed verification."""
    b = TrailBuilder(f"cli-{uuid.uuid4().hex[:10]}")
    b.chain(ACCOUNT, "us-east-1", start=START, hours=4)
    b.write(tmp_path / "copy")
    (tmp_path / "k").write_bytes(b.public_der)
    (tmp_path / "empty").mkdir()
    key = f"{b.fingerprint}={tmp_path / 'k'}"
    for target, verdict in ((tmp_path / "copy", 0), (tmp_path / "empty", 5)):
        r, w = os.pipe()
        os.close(r)  # the reader is gone before anything is written: every write is EPIPE
        args = [
            str(target),
            "--public-key",
            key,
            "--end",
            END,
            "--no-progress",
            *(["--json"] if as_json else []),
        ]
        cmd = [sys.executable, "-m", "trailrelay", "verify", *args]
        done = subprocess.run(cmd, stdout=w, stderr=subprocess.PIPE, timeout=120, check=False)
        os.close(w)
        err = done.stderr.decode()
        assert done.returncode == verdict, err
        assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception ignored" not in err


def test_verify_a_wrong_key_file_is_refused_by_its_fingerprint(
    trail: tuple[TrailBuilder, Any, str], tmp_path: Path
) -> None:
    b, s3, _ = trail
    b.upload(s3)
    other = TrailBuilder()
    (tmp_path / "other.der").write_bytes(other.public_der)
    result = run(f"s3://{b.bucket}/ct", "--public-key", f"{b.fingerprint}={tmp_path / 'other.der'}", "--json")
    assert result.exit_code == 2
    assert f"holds the key with fingerprint {other.fingerprint}" in result.output
    assert f"not {b.fingerprint}" in result.output


def test_verify_usage_and_access_errors(trail: tuple[TrailBuilder, Any, str], tmp_path: Path) -> None:
    _, _, key = trail
    assert run("s3://no-such-bucket-here", "--public-key", key).exit_code == 3
    assert run(str(tmp_path / "absent")).exit_code == 2
    result = run(str(tmp_path), "--public-key", "nofile")
    assert result.exit_code == 2 and "FINGERPRINT=FILE" in result.output


def test_mirror_then_verify_offline(trail: tuple[TrailBuilder, Any, str], tmp_path: Path) -> None:
    b, s3, key = trail
    b.delete(min(k for k in b.objects if "/CloudTrail/" in k))
    b.upload(s3)
    dest = tmp_path / "mirror"
    args = [f"s3://{b.bucket}/ct", str(dest), "--no-public-keys", "--no-progress"]
    result = CliRunner().invoke(mirror_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "copied 4 digests and 7 log files" in result.output
    assert "listed by a digest but not in the bucket: 1" in result.output
    sidecars = list(dest.rglob("*.s3-metadata"))
    assert len(sidecars) == 4 and json.loads(sidecars[0].read_bytes())["metadata"]["signature-algorithm"]
    again = CliRunner().invoke(mirror_command, args, catch_exceptions=False)
    assert "copied 0 digests and 0 log files" in again.output
    offline = run(str(dest), "--public-key", key, "--json")
    assert offline.exit_code == 1
    assert [p["kind"] for p in json.loads(offline.stdout)["problems"]] == ["log-missing"]


def mirror(*args: str) -> Any:
    return CliRunner().invoke(mirror_command, [*args, "--no-progress"], catch_exceptions=False)


def test_mirror_that_finds_no_digest_fails_as_verify_does(
    trail: tuple[TrailBuilder, Any, str], tmp_path: Path
) -> None:
    """A typo in the prefix or a window without digests copies nothing to verify: exit 5, not 0."""
    b, s3, key = trail
    b.upload(s3)
    assert run(f"s3://{b.bucket}/wrongprefix", "--public-key", key).exit_code == 5
    result = mirror(f"s3://{b.bucket}/wrongprefix", str(tmp_path / "w"))
    assert result.exit_code == 5, result.output
    assert "copied 0 digests and 0 log files" in result.output
    assert "NOTHING COPIED: no CloudTrail digest files in the window" in result.output
    early = mirror(f"s3://{b.bucket}/ct", str(tmp_path / "e"), "--end", "2026-01-02", "--no-public-keys")
    assert early.exit_code == 5 and "NOTHING COPIED" in early.output


def test_mirror_refuses_a_window_that_ends_before_it_starts(
    trail: tuple[TrailBuilder, Any, str], tmp_path: Path
) -> None:
    b, s3, _ = trail
    b.upload(s3)
    dest = tmp_path / "r"
    result = mirror(f"s3://{b.bucket}/ct", str(dest), "--start", "2026-03-02", "--end", "2026-03-01")
    assert result.exit_code == 2 and "--start is after --end" in result.output
    assert not dest.exists()


def test_mirror_of_s3_without_a_bucket_is_bad_usage(
    trail: tuple[TrailBuilder, Any, str], tmp_path: Path
) -> None:
    result = mirror("s3://", str(tmp_path / "r"))  # was a ValueError traceback
    assert result.exit_code == 2 and "no bucket in 's3://'" in result.output, result.output
    assert not (tmp_path / "r").exists()


@pytest.mark.usefixtures("no_retry_wait")
def test_mirror_that_cannot_save_the_public_keys_says_so_in_its_exit_status(
    trail: tuple[TrailBuilder, Any, str], tmp_path: Path
) -> None:
    """ListPublicKeys failing leaves a copy that cannot be verified offline: exit 1, the reason named."""
    b, s3, _ = trail
    b.upload(s3)
    result = mirror(f"s3://{b.bucket}/ct", str(tmp_path / "k"))
    assert result.exit_code == 1, result.output
    assert "copied 4 digests and 8 log files" in result.output and "public keys saved: 0" in result.output
    assert "public keys not saved: ListPublicKeys in us-east-1 failed: ClientError" in result.output


def test_mirror_saves_the_public_keys_for_offline_verification(
    trail: tuple[TrailBuilder, Any, str], tmp_path: Path
) -> None:
    b, s3, _ = trail
    b.upload(s3)
    asked: list[str] = []

    def fetch(region: str, _start: dt.datetime, _end: dt.datetime) -> list[Any]:
        from trailrelay.integrity.keys import PublicKeyInfo

        asked.append(region)
        return [PublicKeyInfo(b.fingerprint, b.public_der, region)]

    counts, errors = mirror_trail(
        S3Store(s3, b.bucket, "ct"), tmp_path, keys=KeyRing(fetcher=fetch), workers=2
    )
    assert not errors and counts["public-keys"] == 1 and asked == ["us-east-1"]
    assert (tmp_path / KEYS_DIR / "us-east-1" / f"{b.fingerprint}.der").read_bytes() == b.public_der
    result = run(str(tmp_path / "ct"), "--offline", "--end", END)
    assert result.exit_code == 0, result.output


def test_verify_a_location_without_digests_says_nothing_was_verified(
    trail: tuple[TrailBuilder, Any, str], tmp_path: Path
) -> None:
    """A typo in the prefix or an empty window checked nothing: not VERIFIED, its own status (5)."""
    b, s3, key = trail
    b.upload(s3)
    result = run(f"s3://{b.bucket}/typo", "--public-key", key)
    assert result.exit_code == 5, result.output
    assert "NOTHING VERIFIED" in result.output and "no CloudTrail digest files" in result.output
    doc = json.loads(run(f"s3://{b.bucket}/ct", "--public-key", key, "--json", "--end", "2026-01-02").stdout)
    assert doc["verified"] is False and doc["exit_status"] == 5
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(str(empty), "--public-key", key).exit_code == 5


def test_verify_with_every_digest_deleted_but_the_log_files_kept_fails(
    trail: tuple[TrailBuilder, Any, str],
) -> None:
    """Log files no digest covers are a failure (1), not 'nothing verified, a wrong prefix?' (5)."""
    b, s3, key = trail
    for digest in [k for k in b.objects if "CloudTrail-Digest" in k]:
        b.delete(digest)
    b.upload(s3)
    result = run(f"s3://{b.bucket}/ct", "--public-key", key, "--end", END)
    assert result.exit_code == 1, result.output
    assert "NOT VERIFIED: log files exist that no digest covers" in result.output
    assert "NOTHING VERIFIED" not in result.output
    doc = json.loads(run(f"s3://{b.bucket}/ct", "--public-key", key, "--end", END, "--json").stdout)
    assert doc["exit_status"] == 1 and doc["counts"]["log-not-covered"] == 8


def test_verify_a_window_whose_only_digest_is_a_backfill_is_not_covered(tmp_path: Path) -> None:
    """Logging stopped before the window; a backfill digest in it re-covers one late file, not the window."""
    b = TrailBuilder(f"cli-{uuid.uuid4().hex[:10]}", prefix="ct")
    b.chain(ACCOUNT, "us-east-1", start=START - dt.timedelta(hours=4), hours=2)
    late = START + dt.timedelta(hours=2)
    b.digest(
        ACCOUNT,
        "us-east-1",
        trail="org-trail",
        home_region="us-east-1",
        begin=late - dt.timedelta(minutes=10),
        end=late + dt.timedelta(minutes=50),
        logs=[b.log(ACCOUNT, "us-east-1", late)],
        prev=None,
        backfill=True,
    )
    b.write(tmp_path / "m")
    (tmp_path / "key.der").write_bytes(b.public_der)
    key = f"{b.fingerprint}={tmp_path / 'key.der'}"
    result = run(str(tmp_path / "m"), "--public-key", key, "--start", "2026-03-01T21:00:00Z", "--end", END)
    assert result.exit_code == 6, result.output
    assert "VERIFIED ONLY IN PART: digests cover 0.0% of the window" in result.output
    doc = json.loads(
        run(
            str(tmp_path / "m"),
            "--public-key",
            key,
            "--start",
            "2026-03-01T21:00:00Z",
            "--end",
            END,
            "--json",
        ).stdout
    )
    assert doc["window_covered"] == 0.0 and doc["partial_chains"] == [f"{ACCOUNT}/us-east-1/org-trail"]
    assert doc["counts"]["logs-valid"] == 1 and doc["problems"] == []


def test_verify_a_window_covered_in_part_says_how_much(trail: tuple[TrailBuilder, Any, str]) -> None:
    """Digests from 21:01:31 to 01:01:31 cover 66.2% of 19:00 to 01:00: exit 6, the stretch named."""
    b, s3, key = trail
    b.upload(s3)
    result = run(f"s3://{b.bucket}/ct", "--public-key", key, "--start", "2026-03-01T19:00:00Z", "--end", END)
    assert result.exit_code == 6, result.output
    assert "VERIFIED ONLY IN PART: digests cover 66.2% of the window" in result.output
    assert "2026-03-01T19:00:00Z to 2026-03-01T21:01:31Z" in result.output
    late = run(f"s3://{b.bucket}/ct", "--public-key", key, "--json", "--end", "2026-03-02T05:00:00Z")
    assert late.exit_code == 6
    doc = json.loads(late.stdout)
    assert doc["partial_chains"] == [f"{ACCOUNT}/us-east-1/org-trail"]
    coverage = doc["chains"][0]["coverage"]
    assert coverage["uncovered"] == [["2026-03-02T01:01:31Z", "2026-03-02T05:00:00Z"]]
    assert 0.5 < doc["window_covered"] < 0.51
