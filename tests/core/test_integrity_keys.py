"""Public keys are trusted by their fingerprint and their source, never because a mirror holds them.

Whoever can write a mirror can plant a key and re-sign digests with it. A key is used only when
its fingerprint (MD5 of the DER PKCS#1 key, as CloudTrail computes it) is the one it is filed
under; when ListPublicKeys answers it is the authority; and the report names each key's source.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from trailrelay.integrity.cli import verify_command
from trailrelay.integrity.keys import (
    MIRROR,
    KeyRing,
    LoadedKey,
    MirrorKeys,
    PublicKeyInfo,
    fingerprint_of,
    load_key_dir,
    load_public_key,
)
from trailrelay.integrity.mirror import KEYS_DIR
from trailrelay.integrity.report import EXIT_FAILED, EXIT_OK, EXIT_UNCHECKED
from trailrelay.integrity.store import MirrorStore
from trailrelay.integrity.verifier import Verifier
from trailrelay.testing.trail import TrailBuilder

ACCOUNT = "111122223333"
REGION = "us-east-1"
START = dt.datetime(2026, 3, 1, 21, tzinfo=dt.UTC)
NOW = START + dt.timedelta(hours=5)
END = "2026-03-02T01:00:00Z"

# The AWS CLI's own `list-public-keys` example (aws/aws-cli, awscli/examples/cloudtrail/
# list-public-keys.rst): the Fingerprint it shows is the MD5 of the DER PKCS#1 bytes in Value.
AWS_EXAMPLE_VALUE = (
    "MIIBCgKCAQEAlSS3cl92HDycr/MTj0moOhas8habjrraXw+KzlWF0axSI2tcF+3iJ9BKQAVSKxGwxwu3m0wG3J+kUl1xboEcEPHYoIYMbgf"
    "Sw7KGnuDKwkLzsQWhUJ0cIbOHASox1vv/5fNXkrHhGbDCHeVXm804c83nvHUEFYThr1PfyP/8HwrCtR3FX5OANtQCP61C1nJtSSkC8JSQUO"
    "rIP4CuwJjc+4WGDk+BGH5m9iuiAKkipEHWmUl8/P7XpfpWQuk4h8g3pXZOrNXr08lbh4d39svj7UqdhvOXoBISp9t/EXYuePGEtBdrKD9Dz"
    "+VHwyUPtBQvYr9BnkF88qBnaPNhS44rzwIDAQAB"
)
AWS_EXAMPLE_FINGERPRINT = "7f3f401420072e50a65a141430817ab3"


def _der(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)


def mirror_with(tmp: Path, *, planted_under_real_name: bool) -> tuple[TrailBuilder, Path, bytes]:
    """A mirror whose digests an attacker re-signed with their own key, and planted that key.

    ``planted_under_real_name``: the digests keep naming CloudTrail's fingerprint and the attacker's
    key is saved under that name; otherwise the digests name the attacker's key's own fingerprint.
    """
    b = TrailBuilder(f"trail-{uuid.uuid4().hex[:10]}")
    real = b.public_der
    evil = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    b.private_key = evil
    if not planted_under_real_name:
        b.fingerprint = fingerprint_of(evil.public_key())
    name = fingerprint_of(load_public_key(real)) if planted_under_real_name else b.fingerprint
    b.chain(ACCOUNT, REGION, start=START, hours=4)
    root = tmp / "mirror"
    b.write(root)
    planted = root / KEYS_DIR / REGION / f"{name}.der"
    planted.parent.mkdir(parents=True)
    planted.write_bytes(_der(evil))
    return b, root, real


def cloudtrail_lists(der: bytes) -> Any:
    def fetch(region: str, _start: dt.datetime, _end: dt.datetime) -> list[PublicKeyInfo]:
        return [PublicKeyInfo(fingerprint_of(load_public_key(der)), der, region)]

    return fetch


def verify(root: Path, ring: KeyRing) -> Any:
    return Verifier(MirrorStore(root), ring, workers=1, now=NOW).run()


def test_the_fingerprint_is_the_md5_of_the_der_pkcs1_key_as_cloudtrail_computes_it(tmp_path: Path) -> None:
    der = base64.b64decode(AWS_EXAMPLE_VALUE)
    assert fingerprint_of(load_public_key(der)) == AWS_EXAMPLE_FINGERPRINT
    pem = load_public_key(der).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert fingerprint_of(load_public_key(pem)) == AWS_EXAMPLE_FINGERPRINT  # whatever the file's form


def test_a_key_planted_under_cloudtrails_fingerprint_is_refused_offline(tmp_path: Path) -> None:
    _, root, _ = mirror_with(tmp_path, planted_under_real_name=True)
    mirrored = load_key_dir(root / KEYS_DIR)
    assert not mirrored.keys and "its key's fingerprint is" in mirrored.refused[0]
    report = verify(root, KeyRing(mirror=mirrored))
    assert report.exit_status == EXIT_FAILED
    assert {p.kind for p in report.problems} >= {"digest-unknown-key"}
    assert any("is not used" in note for note in report.notes)


def test_listpublickeys_is_the_authority_over_a_mirrors_keys(tmp_path: Path) -> None:
    _, root, real = mirror_with(tmp_path, planted_under_real_name=False)
    report = verify(root, KeyRing(fetcher=cloudtrail_lists(real), mirror=load_key_dir(root / KEYS_DIR)))
    assert report.exit_status == EXIT_FAILED
    details = {p.detail for p in report.problems if p.kind == "digest-unknown-key"}
    assert details and all("does not list that key: not trusted" in d for d in details)
    assert report.keys == []


def test_offline_with_mirror_keys_says_so_in_the_verdict(tmp_path: Path) -> None:
    b, root, _ = mirror_with(tmp_path, planted_under_real_name=False)
    result = CliRunner().invoke(
        verify_command, [str(root), "--offline", "--end", END, "--no-progress"], catch_exceptions=False
    )
    assert result.exit_code == EXIT_OK, result.output
    assert "WITH KEYS FROM THE MIRROR ONLY" in result.output
    assert f"key {b.fingerprint} ({REGION}, 4 digests): from the mirror itself" in result.output
    doc = json.loads(
        CliRunner()
        .invoke(verify_command, [str(root), "--offline", "--end", END, "--json", "--no-progress"])
        .stdout
    )
    assert doc["keys_confirmed"] is False
    assert [(k["source"], k["confirmed_by_cloudtrail"]) for k in doc["keys"]] == [("mirror", False)]


def test_a_mirror_key_cloudtrail_lists_is_confirmed_and_named(tmp_path: Path) -> None:
    b = TrailBuilder(f"trail-{uuid.uuid4().hex[:10]}")
    b.chain(ACCOUNT, REGION, start=START, hours=4)
    root = tmp_path / "m"
    b.write(root)
    saved = root / KEYS_DIR / REGION / f"{b.fingerprint}.der"
    saved.parent.mkdir(parents=True)
    saved.write_bytes(b.public_der)
    report = verify(
        root, KeyRing(fetcher=cloudtrail_lists(b.public_der), mirror=load_key_dir(root / KEYS_DIR))
    )
    assert report.exit_status == EXIT_OK and "MIRROR" not in report.verdict
    [key] = report.keys
    assert key["source"] == "cloudtrail" and key["confirmed_by_cloudtrail"] and key["digests"] == 4
    assert key["mirror_copy"] == str(saved)


def test_a_mirror_key_is_used_but_named_when_listpublickeys_cannot_be_reached(tmp_path: Path) -> None:
    b = TrailBuilder(f"trail-{uuid.uuid4().hex[:10]}")
    b.chain(ACCOUNT, REGION, start=START, hours=4)
    root = tmp_path / "m"
    b.write(root)
    saved = root / KEYS_DIR / REGION / f"{b.fingerprint}.der"
    saved.parent.mkdir(parents=True)
    saved.write_bytes(b.public_der)

    def down(_region: str, _start: dt.datetime, _end: dt.datetime) -> list[PublicKeyInfo]:
        raise ConnectionError("no route to host")

    report = verify(root, KeyRing(fetcher=down, mirror=load_key_dir(root / KEYS_DIR)))
    assert report.exit_status == EXIT_OK and report.mirror_keys_only == [b.fingerprint]
    assert "WITH KEYS FROM THE MIRROR ONLY" in report.verdict
    assert any("without confirmation" in n and "no route to host" in n for n in report.notes)


def test_digests_whose_key_cannot_be_fetched_are_not_checked_rather_than_forged(tmp_path: Path) -> None:
    """ListPublicKeys unreachable (an S3-only VPC endpoint) is "could not check" (3), not tampering (1)."""
    b = TrailBuilder(f"trail-{uuid.uuid4().hex[:10]}")
    b.chain(ACCOUNT, REGION, start=START, hours=4)
    root = tmp_path / "m"
    b.write(root)

    def down(_region: str, _start: dt.datetime, _end: dt.datetime) -> list[PublicKeyInfo]:
        raise ConnectionError("no route to host")

    report = verify(root, KeyRing(fetcher=down))
    assert report.exit_status == EXIT_UNCHECKED and report.failures == 0 and not report.verified
    assert report.verdict.startswith("NOT CHECKED: 4 digests could not be checked")
    assert report.counts["digests-unchecked"] == 4 and report.counts["digests-invalid"] == 0
    kinds = {p.kind for p in report.problems} - {"log-pending"}  # the newest log files: a notice
    assert kinds == {"digest-key-unavailable", "log-unchecked"}
    detail = next(p.detail for p in report.problems if p.kind == "digest-key-unavailable")
    assert "ListPublicKeys in us-east-1 failed: ConnectionError: no route to host" in detail
    assert f"--public-key {b.fingerprint}=FILE" in detail
    assert report.as_dict()["exit_status"] == EXIT_UNCHECKED
    # CloudTrail answered and does not list the key the digests name: that stays a failure.
    answered = verify(root, KeyRing(fetcher=cloudtrail_lists(TrailBuilder().public_der)))
    assert answered.exit_status == EXIT_FAILED
    assert answered.counts["digest-unknown-key"] == 4 and answered.counts["digests-unchecked"] == 0


def test_a_key_listpublickeys_did_not_list_stays_unknown_after_it_fails() -> None:
    """A later failure in the region neither excuses an unlisted key nor lets a mirror's copy of it in."""
    planted = TrailBuilder()
    calls: list[str] = []

    def flaky(region: str, _start: dt.datetime, _end: dt.datetime) -> list[PublicKeyInfo]:
        calls.append(region)
        if len(calls) > 2:  # the window's fetch and the first key's own retry answer; then it fails
            raise ConnectionError("no route to host")
        return []

    mirror = MirrorKeys(
        {planted.fingerprint: LoadedKey(load_public_key(planted.public_der), MIRROR, "k.der")}
    )
    ring = KeyRing(fetcher=flaky, mirror=mirror)
    key, why = ring.lookup(planted.fingerprint, REGION, START)
    assert key is None and "does not list that key: not trusted" in why
    other, why = ring.lookup("00" * 16, REGION, START + dt.timedelta(hours=1))
    assert other is None and "could not be fetched" in why and ring.unavailable("00" * 16, REGION)
    key, why = ring.lookup(planted.fingerprint, REGION, START + dt.timedelta(hours=2))
    assert key is None and "does not list that key: not trusted" in why
    assert not ring.unavailable(planted.fingerprint, REGION) and len(calls) == 3


def test_a_key_fetched_from_cloudtrail_must_have_its_fingerprint() -> None:
    b = TrailBuilder()
    other = TrailBuilder()

    def lying(region: str, _start: dt.datetime, _end: dt.datetime) -> list[PublicKeyInfo]:
        return [PublicKeyInfo(b.fingerprint, other.public_der, region)]

    ring = KeyRing(fetcher=lying)
    key, why = ring.lookup(b.fingerprint, REGION, START)
    assert key is None and "whose fingerprint is" in why


def test_a_public_key_option_for_another_fingerprint_is_a_usage_error(tmp_path: Path) -> None:
    b = TrailBuilder()
    other = tmp_path / "other.der"
    other.write_bytes(TrailBuilder().public_der)
    result = CliRunner().invoke(
        verify_command, [str(tmp_path), "--public-key", f"{b.fingerprint}={other}", "--no-progress"]
    )
    assert result.exit_code == 2
    assert f"not {b.fingerprint}" in result.output and "holds the key with fingerprint" in result.output


@pytest.mark.parametrize("form", ["der", "pem"])
def test_a_given_key_file_with_its_fingerprint_is_used_and_named(tmp_path: Path, form: str) -> None:
    b = TrailBuilder(f"trail-{uuid.uuid4().hex[:10]}")
    b.chain(ACCOUNT, REGION, start=START, hours=4)
    root = tmp_path / "m"
    b.write(root)
    key = load_public_key(b.public_der)
    data = (
        b.public_der
        if form == "der"
        else key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    path = tmp_path / f"k.{form}"
    path.write_bytes(data)
    result = CliRunner().invoke(
        verify_command,
        [str(root), "--public-key", f"{b.fingerprint}={path}", "--end", END, "--json", "--no-progress"],
    )
    assert result.exit_code == EXIT_OK, result.output
    doc = json.loads(result.stdout)
    assert doc["keys"][0]["source"] == "file" and doc["keys"][0]["where"] == str(path)
    assert doc["keys_confirmed"] is True
