"""The pieces of digest validation on their own: names, documents, signing, keys, hashing, chains."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import hashlib
import json
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from trailrelay.integrity.chain import ChainWalker, DigestCheck, Link, Status
from trailrelay.integrity.coverage import Coverage
from trailrelay.integrity.digests import (
    DigestFormatError,
    Folder,
    log_key_time,
    parse_digest,
    parse_digest_key,
)
from trailrelay.integrity.hashing import OUT_CHUNK, LogFormatError, hash_log
from trailrelay.integrity.keys import (
    KeyFileError,
    KeyRing,
    cloudtrail_fetcher,
    fingerprint_of,
    load_public_key,
    parse_key_option,
)
from trailrelay.integrity.signing import sign, signature_valid, signing_string
from trailrelay.integrity.store import MirrorStore, day_folders, find_folders, safe_relative
from trailrelay.testing.trail import TrailBuilder

KEY = (
    "logs/AWSLogs/o-abcdef1234/111122223333/CloudTrail-Digest/us-east-2/2015/08/17/"
    "111122223333_CloudTrail-Digest_us-east-2_my_trail.v2_us-east-1_20150817T150131Z.json.gz"
)
DOC = {
    "awsAccountId": "111122223333",
    "digestStartTime": "2015-08-17T14:01:31Z",
    "digestEndTime": "2015-08-17T15:01:31Z",
    "digestS3Bucket": "bucket",
    "digestS3Object": KEY,
    "digestPublicKeyFingerprint": "31e8b5433410dfb61a9dc45cc65b22ff",
    "digestSignatureAlgorithm": "SHA256withRSA",
    "newestEventTime": None,
    "oldestEventTime": None,
    "previousDigestS3Bucket": None,
    "previousDigestS3Object": None,
    "previousDigestHashValue": None,
    "previousDigestHashAlgorithm": None,
    "previousDigestSignature": None,
    "logFiles": [],
}


def test_digest_key_names_account_region_trail_and_time() -> None:
    name = parse_digest_key(KEY)
    assert name is not None
    assert name.chain.folder == Folder("logs/AWSLogs/o-abcdef1234/111122223333/", "111122223333", "us-east-2")
    assert (name.chain.trail, name.chain.home_region, name.chain.backfill) == (
        "my_trail.v2",
        "us-east-1",
        False,
    )
    assert name.end == dt.datetime(2015, 8, 17, 15, 1, 31, tzinfo=dt.UTC)
    assert name.chain.folder.org == "o-abcdef1234"
    backfill = parse_digest_key(KEY.replace(".json.gz", "_backfill.json.gz"))
    assert backfill is not None and backfill.chain.backfill and backfill.end == name.end
    assert parse_digest_key(KEY.replace("111122223333_Cloud", "999999999999_Cloud")) is None
    assert parse_digest_key("AWSLogs/111122223333/CloudTrail/us-east-1/2015/08/17/x.json.gz") is None
    plain = parse_digest_key(KEY.replace("logs/AWSLogs/o-abcdef1234/", "AWSLogs/"))
    assert plain is not None and plain.chain.folder.org is None


def test_log_key_time() -> None:
    key = "AWSLogs/111122223333/CloudTrail/us-east-2/2015/08/17/111122223333_CloudTrail_us-east-2_20150817T1445Z_9nYN7gp2eWAJHIfT.json.gz"
    assert log_key_time(key) == dt.datetime(2015, 8, 17, 14, 45, tzinfo=dt.UTC)
    assert log_key_time("AWSLogs/x/CloudTrail/y/notes.txt") is None


def test_digest_document_requires_the_fields_the_aws_cli_requires() -> None:
    doc = parse_digest(json.dumps(DOC).encode())
    assert doc.previous_digest_signature is None and doc.log_files == []
    for field in ("digestEndTime", "digestS3Object", "digestPublicKeyFingerprint", "previousDigestSignature"):
        broken = {k: v for k, v in DOC.items() if k != field}
        with pytest.raises(DigestFormatError, match=field):
            parse_digest(json.dumps(broken).encode())
    with pytest.raises(DigestFormatError, match="not JSON"):
        parse_digest(b"{")
    with pytest.raises(DigestFormatError):
        parse_digest(json.dumps({**DOC, "logFiles": [{"s3Bucket": "b"}]}).encode())


def test_signing_string_matches_the_documented_format() -> None:
    """The user guide's layout: end time, bucket/key, hex SHA-256 of the content, previous signature."""
    content = json.dumps(DOC).encode()
    first = signing_string(parse_digest(content), hashlib.sha256(content).hexdigest())
    assert (
        first == (f"2015-08-17T15:01:31Z\nbucket/{KEY}\n{hashlib.sha256(content).hexdigest()}\nnull").encode()
    )
    linked = {**DOC, "previousDigestSignature": "ab" * 256}
    text = signing_string(parse_digest(json.dumps(linked).encode()), "00" * 32).decode()
    assert text.splitlines() == ["2015-08-17T15:01:31Z", f"bucket/{KEY}", "00" * 32, "ab" * 256]


def test_signature_check_accepts_only_the_right_key_and_message() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sig = sign(key, b"message")
    assert signature_valid(key.public_key(), sig, b"message")
    assert not signature_valid(key.public_key(), sig, b"messagf")
    assert not signature_valid(other.public_key(), sig, b"message")
    assert not signature_valid(key.public_key(), "zz" + sig[2:], b"message")
    assert not signature_valid(key.public_key(), sig[:-2], b"message")


def test_public_keys_load_from_der_pkcs1_spki_base64_and_pem(tmp_path: Path) -> None:
    public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    numbers = public.public_numbers()
    pkcs1 = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    forms = [
        pkcs1,
        base64.b64encode(pkcs1) + b"\n",
        public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1),
        public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
    ]
    for data in forms:
        assert load_public_key(data).public_numbers() == numbers
    with pytest.raises(ValueError, match="not an RSA public key"):
        load_public_key(b"hello")
    path = tmp_path / "k.der"
    path.write_bytes(pkcs1)
    fingerprint = fingerprint_of(public)
    fp, key = parse_key_option(f"{fingerprint.upper()}={path}")
    assert fp == fingerprint and key.public_numbers() == numbers
    with pytest.raises(KeyFileError, match=f"holds the key with fingerprint {fingerprint} .*, not abcdef"):
        parse_key_option(f"ABCDEF={path}")
    with pytest.raises(KeyFileError, match="FINGERPRINT=FILE"):
        parse_key_option(str(path))
    with pytest.raises(KeyFileError, match="cannot read"):
        parse_key_option(f"ab={tmp_path / 'nope'}")
    (tmp_path / "bad").write_bytes(b"junk")
    with pytest.raises(KeyFileError, match="bad"):
        parse_key_option(f"ab={tmp_path / 'bad'}")


def test_list_public_keys_is_asked_once_per_region_and_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    b = TrailBuilder()
    client = boto3.client("cloudtrail", region_name="eu-west-1")
    when = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
    with Stubber(client) as stub:
        page = {"Fingerprint": b.fingerprint, "Value": b.public_der, "ValidityStartTime": when}
        stub.add_response("list_public_keys", {"PublicKeyList": [], "NextToken": "t"})
        stub.add_response(
            "list_public_keys",
            {"PublicKeyList": [page]},
            {
                "StartTime": when - dt.timedelta(hours=1),
                "EndTime": when + dt.timedelta(hours=2),
                "NextToken": "t",
            },
        )
        stub.add_response(
            "list_public_keys", {"PublicKeyList": []}
        )  # the one retry for an unknown fingerprint
        ring = KeyRing(fetcher=cloudtrail_fetcher(lambda _region: client))
        key, why = ring.lookup(b.fingerprint, "eu-west-1", when)
        assert key is not None and why == ""
        assert ring.lookup(b.fingerprint.upper(), "eu-west-1", when)[0] is key  # cached
        missing, why = ring.lookup("00" * 16, "eu-west-1", when)
        assert missing is None and "has no key with fingerprint" in why
        assert ring.lookup("00" * 16, "eu-west-1", when)[0] is None  # not asked again
        stub.assert_no_pending_responses()
    assert [i.fingerprint for i in ring.fetched] == [b.fingerprint]


def test_list_public_keys_failure_is_named_not_raised() -> None:
    def fail(_region: str, _start: dt.datetime, _end: dt.datetime) -> list[object]:
        raise PermissionError("AccessDenied")

    ring = KeyRing(fetcher=fail)  # type: ignore[arg-type]
    key, why = ring.lookup("ab", "ap-south-1", dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    assert key is None and "ListPublicKeys in ap-south-1 failed: PermissionError" in why
    assert ring.errors() == ["ListPublicKeys in ap-south-1 failed: PermissionError: AccessDenied"]
    assert ring.unavailable("ab", "ap-south-1")  # not asked, so not known to be forged


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=3 * OUT_CHUNK), st.integers(1, 70_000))
def test_log_hash_is_the_sha256_of_the_content_whatever_the_chunks(content: bytes, step: int) -> None:
    data = gzip.compress(content)
    digest, size, compressed = hash_log(data[i : i + step] for i in range(0, len(data), step))
    assert digest == hashlib.sha256(content).hexdigest()
    assert (size, compressed) == (len(content), len(data))


def test_log_hash_refuses_what_is_not_one_intact_gzip_stream() -> None:
    data = gzip.compress(b'{"Records":[]}')
    for bad, reason in (
        (data + b"x", "after the end"),
        (data + data, "after the end"),
        (data[:-4], "truncated"),
        (b'{"Records":[]}', "not a valid gzip"),
        (b"", "empty"),
    ):
        with pytest.raises(LogFormatError, match=reason):
            hash_log([bad])


def test_a_gzip_bomb_is_hashed_in_bounded_slices() -> None:
    data = gzip.compress(b"\0" * (64 << 20), 9)
    digest, size, _ = hash_log([data])
    assert size == 64 << 20 and digest == hashlib.sha256(b"\0" * (64 << 20)).hexdigest()


def _check(name_end: int, key: str, prev: str | None, status: Status = Status.VALID) -> DigestCheck:
    full = KEY.replace("20150817T150131Z", f"20150817T{name_end:02d}0131Z").replace("my_trail.v2", key)
    name = parse_digest_key(full)
    assert name is not None
    doc = parse_digest(
        json.dumps(
            {
                **DOC,
                "digestS3Object": full,
                "previousDigestS3Bucket": "bucket" if prev else None,
                "previousDigestS3Object": prev,
                "previousDigestSignature": "aa" if prev else None,
                "previousDigestHashValue": "hh" if prev else None,
            }
        ).encode()
    )
    return DigestCheck(name, f"s3://bucket/{full}", "bucket", doc, "hh", "aa", status)


def test_chain_walker_links_restarts_and_missing() -> None:
    first = _check(1, "t", None)
    walker = ChainWalker(first.name.chain, None)
    assert [v.link for v in walker.feed(first)] == [Link.START]
    second = _check(2, "t", first.name.key)
    assert [v.link for v in walker.feed(second)] == [Link.LINKED]
    third = _check(4, "t", _check(3, "t", None).name.key)  # hour 3 is gone
    [v] = walker.feed(third)
    assert v.link is Link.BROKEN and v.valid
    assert [p.kind for p in walker.gap_problems] == ["digest-missing"]
    walker.gap_problems.clear()
    [v] = walker.feed(_check(5, "t", None))
    assert v.link is Link.RESTART and walker.restarts == 1
    assert [p.kind for p in walker.gap_problems] == ["chain-restart"]


def test_chain_walker_proves_an_unsigned_digest_with_its_successors_record() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    first = _check(1, "t", None, Status.UNSIGNED)
    first.signature = None
    first.public_key = key.public_key()
    first.message = b"signed string"
    second = _check(2, "t", first.name.key)
    assert second.doc is not None
    second.doc = second.doc.__class__(
        **{
            **{f: getattr(second.doc, f) for f in second.doc.__struct_fields__},
            "previous_digest_signature": sign(key, b"signed string"),
        }
    )
    walker = ChainWalker(first.name.chain, None)
    assert walker.feed(first) == []
    verdicts = walker.feed(second)
    assert [(v.check is first, v.valid) for v in verdicts] == [(True, True), (False, True)]
    third = _check(3, "t", second.name.key, Status.UNSIGNED)
    assert walker.feed(third) == []
    [last] = walker.close()
    assert not last.valid and last.problems[0].kind == "digest-signature-missing"


def test_coverage_keeps_only_unreferenced_log_files() -> None:
    cov = Coverage()
    t = dt.datetime(2026, 3, 1, 23, 50, tzinfo=dt.UTC)
    cov.listed(t.date(), [("a", t), ("b", t), ("c", t)])
    cov.referenced("a", t, valid=True, digest="d1")
    cov.referenced("b", t, valid=False, digest="bad")
    assert cov.release(t.date()) == []
    [b, c] = sorted(cov.release(t.date() + dt.timedelta(days=1)), key=lambda u: u.key)
    assert (b.key, b.invalid_digest, c.key, c.invalid_digest) == ("b", "bad", "c", None)
    assert cov.finish() == []


def test_keys_must_stay_inside_the_mirror() -> None:
    assert safe_relative("AWSLogs/1/CloudTrail/x.json.gz")
    for bad in ("", "/etc/passwd", "a/../../x", "a//b", "..", "a/./b", "a\\b"):
        assert not safe_relative(bad), bad


def test_folders_and_days_are_found_in_a_local_copy(tmp_path: Path) -> None:
    b = TrailBuilder(prefix="p")
    b.chain("111122223333", "us-east-1", start=dt.datetime(2026, 3, 1, 22, tzinfo=dt.UTC), hours=3)
    b.write(tmp_path)
    (tmp_path / "p/AWSLogs/README").write_text("not a folder")
    store = MirrorStore(tmp_path)
    assert store.bucket == b.bucket
    [folder] = find_folders(store)
    assert folder.base == "p/AWSLogs/o-abcdef1234/111122223333/" and folder.region == "us-east-1"
    assert day_folders(store, folder.digest_prefix) == [dt.date(2026, 3, 1), dt.date(2026, 3, 2)]
    inner = MirrorStore(tmp_path / "p/AWSLogs/o-abcdef1234")  # pointed inside: still the mirror's root
    assert inner.root == tmp_path.resolve() and find_folders(inner) == [folder]
