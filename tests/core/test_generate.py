"""trailrelay.generate: layout, record shapes, the attack story, digests and determinism."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import itertools
import re
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from trailrelay.generate import (
    ATTACK_STEPS,
    DEFAULT_DAY,
    GenerateSummary,
    build_object,
    generate_events,
    generate_trail,
)
from trailrelay.record import decode_routing

LOG_KEY = re.compile(
    r"AWSLogs/(?P<org>o-[a-z0-9]{10})/(?P<acct>\d{12})/CloudTrail/(?P<region>[a-z]{2}(?:-[a-z]+)+-\d)/"
    r"(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/"
    r"(?P=acct)_CloudTrail_(?P=region)_(?P<stamp>\d{8}T\d{4}Z)_[A-Za-z0-9]{16}\.json\.gz"
)
DIGEST_KEY = re.compile(
    r"AWSLogs/(?P<org>o-[a-z0-9]{10})/(?P<acct>\d{12})/CloudTrail-Digest/(?P<region>[a-z]{2}(?:-[a-z]+)+-\d)/"
    r"(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/"
    r"(?P=acct)_CloudTrail-Digest_(?P=region)_(?P<trail>[A-Za-z0-9_.-]+)_(?P<home>[a-z]{2}(?:-[a-z]+)+-\d)_"
    r"(?P<stamp>\d{8}T\d{6}Z)\.json\.gz"
)
DIGEST_FIELDS = [
    "awsAccountId",
    "digestStartTime",
    "digestEndTime",
    "digestS3Bucket",
    "digestS3Object",
    "digestPublicKeyFingerprint",
    "digestSignatureAlgorithm",
    "newestEventTime",
    "oldestEventTime",
    "previousDigestS3Bucket",
    "previousDigestS3Object",
    "previousDigestHashValue",
    "previousDigestHashAlgorithm",
    "previousDigestSignature",
    "logFiles",
]
USER_TYPES = {"IAMUser", "AssumedRole", "AWSService", "Root", "IdentityCenterUser"}
DAY_START = dt.datetime(DEFAULT_DAY.year, DEFAULT_DAY.month, DEFAULT_DAY.day, tzinfo=dt.UTC)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


class Trail:
    """A generated default trail, read back once."""

    def __init__(self, root: Path, summary: GenerateSummary, seconds: float) -> None:
        self.root = root
        self.summary = summary
        self.seconds = seconds
        self.files = _files(root)
        self.logs: dict[str, list[dict[str, Any]]] = {}
        self.raw: dict[str, bytes] = {}
        self.digests: dict[str, dict[str, Any]] = {}
        for key, body in self.files.items():
            if "/CloudTrail-Digest/" in key:
                self.digests[key] = orjson.loads(gzip.decompress(body))
            else:
                raw = gzip.decompress(body)
                self.raw[key] = raw
                self.logs[key] = orjson.loads(raw)["Records"]

    def records(self) -> list[tuple[str, dict[str, Any]]]:
        return [(key, rec) for key, recs in self.logs.items() for rec in recs]


@pytest.fixture(scope="module")
def trail(tmp_path_factory: pytest.TempPathFactory) -> Trail:
    root = tmp_path_factory.mktemp("trail")
    start = time.perf_counter()
    summary = generate_trail(root)
    return Trail(root, summary, time.perf_counter() - start)


# -- summary, layout, counts ----------------------------------------------------------------------
def test_summary_matches_what_was_written(trail: Trail) -> None:
    s = trail.summary
    assert s.root == trail.root
    assert s.day == DEFAULT_DAY
    assert s.regions == ["us-east-1", "eu-west-1"]
    assert len(s.accounts) == 3
    assert len(set(s.accounts)) == 3
    assert all(re.fullmatch(r"[1-9]\d{11}", a) for a in s.accounts)
    assert re.fullmatch(r"o-[a-z0-9]{10}", s.org_id)
    assert s.objects == len(trail.logs)
    assert s.digests == len(trail.digests)
    assert s.records == sum(len(recs) for recs in trail.logs.values())
    # 3 accounts x 2 regions x 24 h x 200/h, give or take the randomness and the story.
    assert 26_000 < s.records < 31_600
    # about one object every five minutes per account and region
    assert 6 * 250 < s.objects < 6 * 400


def test_default_generation_is_fast(trail: Trail) -> None:
    assert trail.seconds < 15, f"default dataset took {trail.seconds:.1f}s"


def test_every_key_follows_the_org_trail_layout(trail: Trail) -> None:
    s = trail.summary
    day_path = f"{s.day:%Y/%m/%d}"
    per_place: Counter[tuple[str, str]] = Counter()
    for key in trail.logs:
        m = LOG_KEY.fullmatch(key)
        assert m, key
        assert m["org"] == s.org_id
        assert m["acct"] in s.accounts
        assert m["region"] in s.regions
        assert f"{m['y']}/{m['m']}/{m['d']}" == day_path
        assert m["stamp"].startswith(f"{s.day:%Y%m%d}T")
        assert int(m["stamp"][-3:-1]) % 5 == 0 or m["stamp"].endswith("2359Z")
        per_place[m["acct"], m["region"]] += 1
    assert set(per_place) == {(a, r) for a in s.accounts for r in s.regions}
    for key in trail.digests:
        m = DIGEST_KEY.fullmatch(key)
        assert m, key
        assert m["org"] == s.org_id
        assert m["acct"] in s.accounts
        assert m["region"] in s.regions
        assert m["home"] == s.regions[0]
        assert f"{m['y']}/{m['m']}/{m['d']}" == day_path
    assert set(trail.files) == set(trail.logs) | set(trail.digests)


def test_objects_are_compact_records_envelopes(trail: Trail) -> None:
    out_of_order = 0
    for key, raw in trail.raw.items():
        assert raw.startswith(b'{"Records":[{"eventVersion":'), key
        assert orjson.dumps(orjson.loads(raw)) == raw  # compact, as CloudTrail writes
        gz = trail.files[key]
        assert gz[:2] == b"\x1f\x8b"
        assert gz[4:8] == b"\0\0\0\0"  # no mtime in the gzip header
        times = [r["eventTime"] for r in trail.logs[key]]
        out_of_order += times != sorted(times)
    assert out_of_order > 50  # like real delivery, records inside an object are not sorted


def test_records_decode_and_carry_the_expected_fields(trail: Trail) -> None:
    ids: set[str] = set()
    stamp_re = re.compile(r"_(\d{8}T\d{4}Z)_")
    for key, rec in trail.records():
        m = LOG_KEY.fullmatch(key)
        assert m
        r = decode_routing(orjson.dumps(rec))
        assert r.event_time is not None
        assert DAY_START <= r.event_time < DAY_START + dt.timedelta(days=1)
        stamp = stamp_re.search(key)
        assert stamp
        delivered = dt.datetime.strptime(stamp[1], "%Y%m%dT%H%MZ").replace(tzinfo=dt.UTC)
        assert r.event_time < delivered + dt.timedelta(minutes=1), key
        assert rec["eventTime"].endswith("Z")
        assert r.event_version in {"1.08", "1.09", "1.10"}
        assert r.event_source and r.event_source.endswith(".amazonaws.com")
        assert r.event_name
        assert r.event_id
        assert uuid.UUID(r.event_id).version == 4
        ids.add(r.event_id)
        assert r.recipient_account_id == m["acct"]
        assert r.aws_region == m["region"]
        assert isinstance(r.read_only, bool)
        assert r.category in {"Management", "Data"}
        assert r.management_event is (r.category == "Management")
        assert r.event_type in {"AwsApiCall", "AwsServiceEvent", "AwsConsoleSignIn"}
        assert r.user_type in USER_TYPES
        assert r.source_ip
        assert rec["userAgent"]
        if r.event_type == "AwsApiCall":
            assert rec["requestID"]
        if r.user_type != "AWSService":
            assert r.user_identity is not None
            assert r.user_identity.account_id == m["acct"]
        if rec.get("errorCode"):
            assert rec["errorMessage"]
            assert rec["responseElements"] is None
        if r.category == "Data":
            assert rec["eventSource"] == "s3.amazonaws.com"
            assert {res["type"] for res in rec["resources"]} >= {"AWS::S3::Bucket"}
    assert len(ids) == trail.summary.records  # eventIDs are unique


def test_background_is_a_realistic_mix(trail: Trail) -> None:
    recs = [rec for _, rec in trail.records()]
    read_only = sum(rec["readOnly"] for rec in recs) / len(recs)
    assert read_only > 0.8
    names = Counter(rec["eventName"] for rec in recs)
    assert names.most_common(1)[0][0].startswith(("Describe", "List", "Get"))
    for name in ("GetObject", "PutObject", "Decrypt", "AssumeRole", "ConsoleLogin", "GenerateDataKey"):
        assert names[name] > 0, name
    types = Counter(decode_routing(orjson.dumps(rec)).user_type for rec in recs)
    assert set(types) == USER_TYPES
    assert {rec["eventType"] for rec in recs} == {"AwsApiCall", "AwsServiceEvent", "AwsConsoleSignIn"}
    errors = Counter(rec.get("errorCode") for rec in recs)
    for code in ("AccessDenied", "ThrottlingException", "NoSuchBucketPolicy"):
        assert errors[code] > 0, code
    assert 0 < sum(n for code, n in errors.items() if code) / len(recs) < 0.05
    assert any(rec.get("tlsDetails") for rec in recs)
    assert any(rec["sourceIPAddress"].endswith(".amazonaws.com") for rec in recs)
    roles = [rec for rec in recs if rec["userIdentity"].get("type") == "AssumedRole"]
    for rec in roles[:500]:
        ctx = rec["userIdentity"]["sessionContext"]
        assert ctx["sessionIssuer"]["type"] == "Role"
        assert ctx["attributes"]["mfaAuthenticated"] in {"true", "false"}
    service_events = [rec for rec in recs if rec["eventType"] == "AwsServiceEvent"]
    assert all("type" not in rec["userIdentity"] for rec in service_events)
    assert all(rec["userIdentity"]["invokedBy"] for rec in service_events)
    mfa_logins = [
        rec
        for rec in recs
        if rec["eventName"] == "ConsoleLogin" and rec["additionalEventData"].get("MFAUsed") == "Yes"
    ]
    assert mfa_logins
    assert any(rec["userIdentity"]["type"] == "Root" for rec in mfa_logins)
    gets = [rec for rec in recs if rec["eventName"] == "GetObject"]
    assert all(rec["resources"][0]["type"] == "AWS::S3::Object" for rec in gets)
    assert all(rec["userAgent"].startswith("[") for rec in gets)


# -- the attack story ------------------------------------------------------------------------------
def _by_id(trail: Trail) -> dict[str, tuple[str, dict[str, Any]]]:
    return {rec["eventID"]: (key, rec) for key, rec in trail.records()}


def test_attack_steps_are_present_in_order(trail: Trail) -> None:
    s = trail.summary
    assert list(s.attack_event_ids) == list(ATTACK_STEPS)
    by_id = _by_id(trail)
    steps: list[dt.datetime] = []
    for name, event_id in s.attack_event_ids.items():
        key, rec = by_id[event_id]
        assert rec["eventName"] == name
        assert f"/{s.attack_account}/CloudTrail/{s.attack_region}/" in key
        assert rec["recipientAccountId"] == s.attack_account
        assert rec["awsRegion"] == s.attack_region
        assert rec["sourceIPAddress"] == s.attacker_ip
        assert rec["userIdentity"]["type"] == "IAMUser"
        assert rec["userIdentity"]["userName"] == s.attack_user
        assert "errorCode" not in rec
        assert rec["readOnly"] is False
        when = decode_routing(orjson.dumps(rec)).event_time
        assert when is not None
        steps.append(when)
    assert steps == sorted(steps)
    assert steps[-1] - steps[0] < dt.timedelta(minutes=25)
    assert 12 <= steps[0].hour < 18  # afternoon
    assert s.attack_account in s.accounts
    assert s.attack_account != s.accounts[0]  # a member account, not the management account
    assert s.attack_user.startswith("admin.")
    assert s.attacker_ip.startswith("203.0.113.")


def test_attack_records_have_the_telltale_fields(trail: Trail) -> None:
    s = trail.summary
    by_id = _by_id(trail)
    rec = {name: by_id[event_id][1] for name, event_id in s.attack_event_ids.items()}
    login = rec["ConsoleLogin"]
    assert login["eventSource"] == "signin.amazonaws.com"
    assert login["eventType"] == "AwsConsoleSignIn"
    assert login["additionalEventData"]["MFAUsed"] == "No"
    assert login["responseElements"] == {"ConsoleLogin": "Success"}
    key = rec["CreateAccessKey"]
    assert key["eventSource"] == "iam.amazonaws.com"
    assert key["userIdentity"]["sessionContext"]["attributes"]["mfaAuthenticated"] == "false"
    new_key = key["responseElements"]["accessKey"]["accessKeyId"]
    assert new_key.startswith("AKIA")
    assert key["responseElements"]["accessKey"]["userName"] == s.attack_user
    for name in ("StopLogging", "DeleteTrail", "DeleteFlowLogs", "UpdateDetector"):
        assert rec[name]["userIdentity"]["accessKeyId"] == new_key  # done with the new key
    assert rec["StopLogging"]["eventSource"] == "cloudtrail.amazonaws.com"
    assert rec["StopLogging"]["requestParameters"]["name"].startswith("arn:aws:cloudtrail:")
    assert rec["DeleteTrail"]["eventSource"] == "cloudtrail.amazonaws.com"
    assert rec["DeleteFlowLogs"]["eventSource"] == "ec2.amazonaws.com"
    flow = rec["DeleteFlowLogs"]["requestParameters"]["DeleteFlowLogsRequest"]["FlowLogId"]["content"]
    assert flow.startswith("fl-")
    detector = rec["UpdateDetector"]
    assert detector["eventSource"] == "guardduty.amazonaws.com"
    assert detector["requestParameters"]["enable"] is False
    assert re.fullmatch(r"[0-9a-f]{32}", detector["requestParameters"]["detectorId"])
    pab = rec["DeleteBucketPublicAccessBlock"]
    assert pab["eventSource"] == "s3.amazonaws.com"
    assert pab["resources"][0]["type"] == "AWS::S3::Bucket"
    assert pab["requestParameters"]["bucketName"] in pab["resources"][0]["ARN"]


def test_attacker_address_is_used_only_by_the_attack(trail: Trail) -> None:
    s = trail.summary
    hits = [rec for _, rec in trail.records() if rec["sourceIPAddress"].startswith("203.0.113.")]
    assert len(hits) > len(ATTACK_STEPS)  # the steps plus some reconnaissance
    assert all(rec["userIdentity"].get("userName") == s.attack_user for rec in hits)
    assert {rec["eventID"] for rec in hits} >= set(s.attack_event_ids.values())


# -- digests ---------------------------------------------------------------------------------------
def test_digests_are_shaped_and_chained(trail: Trail) -> None:
    s = trail.summary
    assert trail.digests
    covered: Counter[str] = Counter()
    chains: dict[str, list[dict[str, Any]]] = {}
    for key, doc in sorted(trail.digests.items()):
        assert list(doc) == DIGEST_FIELDS
        assert doc["digestS3Object"] == key
        assert doc["digestS3Bucket"] == s.bucket
        assert doc["digestSignatureAlgorithm"] == "SHA256withRSA"
        m = DIGEST_KEY.fullmatch(key)
        assert m
        assert doc["awsAccountId"] == m["acct"]
        assert re.fullmatch(r"[0-9a-f]{32}", doc["digestPublicKeyFingerprint"])
        assert doc["digestStartTime"] < doc["digestEndTime"]
        for log in doc["logFiles"]:
            assert set(log) == {
                "s3Bucket",
                "s3Object",
                "hashValue",
                "hashAlgorithm",
                "newestEventTime",
                "oldestEventTime",
            }
            assert log["s3Bucket"] == s.bucket
            assert log["hashAlgorithm"] == "SHA-256"
            assert log["hashValue"] == hashlib.sha256(trail.raw[log["s3Object"]]).hexdigest()
            assert log["oldestEventTime"] <= log["newestEventTime"]
            covered[log["s3Object"]] += 1
        if doc["logFiles"]:
            assert doc["oldestEventTime"] == min(x["oldestEventTime"] for x in doc["logFiles"])
            assert doc["newestEventTime"] == max(x["newestEventTime"] for x in doc["logFiles"])
        place = key.split("/CloudTrail-Digest/")[0] + "/" + key.split("/")[4]
        chains.setdefault(place, []).append(doc)
    assert max(covered.values()) == 1
    assert len(covered) > 0.8 * len(trail.logs)
    assert len(chains) == len(s.accounts) * len(s.regions)
    for docs in chains.values():
        assert docs[0]["previousDigestS3Object"] is None
        assert docs[0]["previousDigestSignature"] is None
        for prev, doc in itertools.pairwise(docs):
            assert doc["previousDigestS3Object"] == prev["digestS3Object"]
            assert doc["previousDigestS3Bucket"] == s.bucket
            assert doc["previousDigestHashAlgorithm"] == "SHA-256"
            prev_raw = gzip.decompress(trail.files[prev["digestS3Object"]])
            assert doc["previousDigestHashValue"] == hashlib.sha256(prev_raw).hexdigest()
            assert doc["digestStartTime"] == prev["digestEndTime"]


def test_digests_can_be_left_out(tmp_path: Path) -> None:
    s = generate_trail(tmp_path, accounts=1, regions=["us-east-1"], events_per_hour=10, include_digests=False)
    assert s.digests == 0
    assert not list(tmp_path.rglob("*CloudTrail-Digest*.json.gz"))
    assert len(list(tmp_path.rglob("*.json.gz"))) == s.objects


# -- determinism -----------------------------------------------------------------------------------
def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    a = generate_trail(tmp_path / "a", seed=11, accounts=2, events_per_hour=30)
    b = generate_trail(tmp_path / "b", seed=11, accounts=2, events_per_hour=30)
    files_a, files_b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert files_a == files_b
    assert a.attack_event_ids == b.attack_event_ids
    assert (a.objects, a.records, a.digests) == (b.objects, b.records, b.digests)


def test_different_seed_gives_different_trail(tmp_path: Path) -> None:
    a = generate_trail(tmp_path / "a", seed=1, accounts=2, events_per_hour=30)
    b = generate_trail(tmp_path / "b", seed=2, accounts=2, events_per_hour=30)
    assert a.org_id != b.org_id
    assert a.accounts != b.accounts
    assert a.attack_event_ids != b.attack_event_ids
    assert not set(_files(tmp_path / "a")) & set(_files(tmp_path / "b"))


# -- options ---------------------------------------------------------------------------------------
def test_single_account_outside_us_east_1(tmp_path: Path) -> None:
    day = dt.date(2025, 12, 31)
    s = generate_trail(tmp_path, seed=3, day=day, accounts=1, regions=["eu-central-1"], events_per_hour=20)
    assert s.regions == ["eu-central-1"]
    assert s.attack_account == s.accounts[0]
    assert s.attack_region == "eu-central-1"
    keys = [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.json.gz")]
    assert all("/2025/12/31/" in k for k in keys)
    logs = [k for k in keys if "/CloudTrail/" in k]
    assert len(logs) == s.objects
    total = 0
    ids = set()
    for key in logs:
        assert LOG_KEY.fullmatch(key)
        for rec in orjson.loads(gzip.decompress((tmp_path / key).read_bytes()))["Records"]:
            assert rec["awsRegion"] == "eu-central-1"
            assert rec["eventTime"].startswith("2025-12-31T")
            ids.add(rec["eventID"])
            total += 1
    assert total == s.records
    assert set(s.attack_event_ids.values()) <= ids


def test_zero_background_still_tells_the_story(tmp_path: Path) -> None:
    s = generate_trail(tmp_path, events_per_hour=0, include_digests=False)
    names: Counter[str] = Counter()
    for p in tmp_path.rglob("*.json.gz"):
        for rec in orjson.loads(gzip.decompress(p.read_bytes()))["Records"]:
            names[rec["eventName"]] += 1
    assert set(ATTACK_STEPS) <= set(names)
    assert s.records == sum(names.values()) < 30  # the attack and the root user's visit only


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"accounts": 0}, "accounts"),
        ({"regions": []}, "region"),
        ({"events_per_hour": -1}, "events_per_hour"),
    ],
)
def test_bad_arguments_are_refused(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_trail(tmp_path, **kwargs)


# -- benchmark helpers -----------------------------------------------------------------------------
def test_generate_events_yields_background_records() -> None:
    recs = list(generate_events(5, 2_000))
    assert len(recs) == 2_000
    assert recs == list(generate_events(5, 2_000))
    assert recs != list(generate_events(6, 2_000))
    times = [rec["eventTime"] for rec in recs]
    assert times == sorted(times)
    assert times[0].startswith(DEFAULT_DAY.isoformat())
    assert len({rec["eventID"] for rec in recs}) == 2_000
    for rec in recs:
        r = decode_routing(orjson.dumps(rec))
        assert r.event_name
        assert r.user_type in USER_TYPES
        assert not rec["sourceIPAddress"].startswith("203.0.113.")
    other_day = next(generate_events(5, 1, day=dt.date(2024, 2, 29)))
    assert other_day["eventTime"].startswith("2024-02-29T")
    assert list(generate_events(5, 0)) == []


def test_build_object_is_gzip_of_compact_records() -> None:
    recs = list(generate_events(9, 50))
    body = build_object(recs)
    assert body == build_object(recs)
    raw = gzip.decompress(body)
    assert orjson.loads(raw) == {"Records": recs}
    assert raw == orjson.dumps({"Records": recs})
    assert gzip.decompress(build_object([])) == b'{"Records":[]}'
