"""The CloudTrail S3 key layout."""

from __future__ import annotations

import datetime as dt

import pytest

from trailrelay.sources.layout import (
    account_folder,
    classify_key,
    day_prefixes,
    key_time,
    region_folder,
    split_layout,
    trail_folder,
)

LOG = "p/AWSLogs/o-abc1234567/111122223333/CloudTrail/us-east-1/2026/03/02/111122223333_CloudTrail_us-east-1_20260302T1005Z_aB3cD4eF5gH6iJ7k.json.gz"
DIGEST = "AWSLogs/111122223333/CloudTrail-Digest/us-east-1/2026/03/02/111122223333_CloudTrail-Digest_us-east-1_org_us-east-1_20260302T101530Z.json.gz"


@pytest.mark.parametrize(
    ("key", "size", "insights", "reason"),
    [
        (LOG, 100, False, None),
        (DIGEST, 100, False, "digest"),
        (LOG.replace("/CloudTrail/", "/CloudTrail-Insight/"), 100, False, "insight"),
        (LOG.replace("/CloudTrail/", "/CloudTrail-Insight/"), 100, True, None),
        ("AWSLogs/111122223333/CloudTrail/us-east-1/2026/03/02/", 0, False, "folder-marker"),
        (LOG, 0, False, "empty-object"),
        ("AWSLogs/111122223333/CloudTrail/us-east-1/notes.txt", 10, False, "not-a-log-file"),
    ],
)
def test_classify(key: str, size: int, insights: bool, reason: str | None) -> None:
    assert classify_key(key, size, insights=insights) == reason


def test_split_layout_org_and_plain() -> None:
    parts = split_layout(LOG)
    assert parts == {
        "base": "p/AWSLogs/o-abc1234567/111122223333/",
        "account": "111122223333",
        "kind": "CloudTrail",
        "region": "us-east-1",
        "date": "2026-03-02",
    }
    assert split_layout(DIGEST)["kind"] == "CloudTrail-Digest"  # type: ignore[index]
    assert split_layout("random/key.json") is None


def test_key_time() -> None:
    assert key_time(LOG) == dt.datetime(2026, 3, 2, 10, 5, tzinfo=dt.UTC)
    assert key_time(DIGEST) == dt.datetime(2026, 3, 2, 10, 15, 30, tzinfo=dt.UTC)
    assert key_time("x.json.gz") is None


def test_day_prefixes_span_midnight() -> None:
    start = dt.datetime(2026, 2, 28, 23, 0, tzinfo=dt.UTC)
    end = dt.datetime(2026, 3, 1, 1, 0, tzinfo=dt.UTC)
    assert list(day_prefixes("r/", start, end)) == ["r/2026/02/28/", "r/2026/03/01/"]


def test_the_folders_of_the_layout_at_any_depth() -> None:
    account = "logs/prod/AWSLogs/o-abc1234567/111122223333/"
    assert account_folder(account) and account_folder("AWSLogs/111122223333/")
    assert not account_folder(account + "CloudTrail/") and not account_folder("AWSLogs/o-abc1234567/")
    assert trail_folder(account + "CloudTrail/") and trail_folder(account + "CloudTrail-Digest/")
    assert not trail_folder(account + "elasticloadbalancing/") and not trail_folder("x/CloudTrail/")
    assert region_folder(account + "CloudTrail/eu-west-1/2026/03/0") == account + "CloudTrail/eu-west-1/"
    assert region_folder(account + "CloudTrail/eu-west-1/") == account + "CloudTrail/eu-west-1/"
    assert region_folder(account + "CloudTrail/eu-") is None
