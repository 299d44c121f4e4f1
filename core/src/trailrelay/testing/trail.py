"""A signed test trail: log files and digest chains made and signed the way CloudTrail does.

For tests, benchmarks and demos: a fresh RSA key pair plays CloudTrail's regional key. The
signing string is written out here from the CloudTrail user guide, independently of
``trailrelay.integrity.signing``, so tests that verify these trails check our verifier against
the documented format rather than against itself.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from trailrelay.integrity.store import MANIFEST, SIDECAR_SUFFIX

__all__ = ["TrailBuilder", "TrailObject"]


@dataclass
class TrailObject:
    """One object of the trail: its key, stored bytes and S3 user metadata."""

    key: str
    body: bytes
    metadata: dict[str, str] = field(default_factory=dict)


def _gzip(raw: bytes) -> bytes:
    return gzip.compress(raw, compresslevel=6, mtime=0)


def _stamp(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


class TrailBuilder:
    """Builds an organization trail bucket's objects, signed with a generated key."""

    def __init__(self, bucket: str = "trail-bucket", *, prefix: str = "", org: str = "o-abcdef1234") -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.org = org
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_der = self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.PKCS1
        )
        """The public key as ListPublicKeys returns it (DER, PKCS#1)."""
        self.fingerprint = hashlib.md5(self.public_der).hexdigest()  # noqa: S324 - an id, not security
        self.objects: dict[str, TrailObject] = {}
        self._serial = 0

    # -- building ------------------------------------------------------------------------------

    def base(self, account: str) -> str:
        """``[prefix/]AWSLogs/ORG/ACCOUNT/``."""
        return f"{self.prefix}AWSLogs/{self.org}/{account}/"

    def log(
        self,
        account: str,
        region: str,
        delivered: dt.datetime,
        *,
        records: int = 3,
        pad: int = 0,
        events: list[dict[str, Any]] | None = None,
    ) -> str:
        """Write one log file delivered at ``delivered`` (``events``, or small made-up ones); its key."""
        self._serial += 1
        stamp = delivered.strftime("%Y%m%dT%H%MZ")
        key = (
            f"{self.base(account)}CloudTrail/{region}/{delivered:%Y/%m/%d}/"
            f"{account}_CloudTrail_{region}_{stamp}_{self._serial:016X}.json.gz"
        )
        events = events or [
            {
                "eventVersion": "1.09",
                "eventTime": _stamp(delivered - dt.timedelta(minutes=2, seconds=i)),
                "eventSource": "s3.amazonaws.com",
                "eventName": "GetObject",
                "awsRegion": region,
                "eventID": f"{self._serial:08d}-{i:04d}",
                "recipientAccountId": account,
                "requestParameters": {"bucketName": "data", "key": "x" * pad},
            }
            for i in range(records)
        ]
        self.objects[key] = TrailObject(key, _gzip(orjson.dumps({"Records": events})))
        return key

    def chain(
        self,
        account: str,
        region: str,
        *,
        start: dt.datetime,
        hours: int,
        trail: str = "org-trail",
        home_region: str = "us-east-1",
        logs_per_hour: int = 2,
        restart_after: Iterable[int] = (),
        stopped_hours: Iterable[int] = (),
        empty_hours: Iterable[int] = (),
        records: int = 3,
        pad: int = 0,
        make_events: Callable[[], list[dict[str, Any]]] | None = None,
    ) -> list[str]:
        """Hourly digests for ``hours`` hours from ``start``; returns the digest keys in order.

        Hour ``h`` in ``stopped_hours`` has no digest and no logs (logging stopped); the first
        digest after a stop, and hour ``h`` in ``restart_after``, starts the chain again
        (previous fields null), as CloudTrail does. Hours in ``empty_hours`` have no log files.
        """
        restart = set(restart_after)
        stopped = set(stopped_hours)
        empty = set(empty_hours)
        keys: list[str] = []
        prev: dict[str, str] | None = None
        offset = dt.timedelta(seconds=91)
        for h in range(hours):
            if h in stopped:
                prev = None
                continue
            begin = start + dt.timedelta(hours=h) + offset
            end = begin + dt.timedelta(hours=1)
            logs = []
            if h not in empty:
                for i in range(logs_per_hour):
                    delivered = begin + dt.timedelta(minutes=5 + i * (50 // max(1, logs_per_hour)))
                    events = make_events() if make_events else None
                    logs.append(self.log(account, region, delivered, records=records, pad=pad, events=events))
            if h in restart:
                prev = None
            key = self.digest(
                account,
                region,
                trail=trail,
                home_region=home_region,
                begin=begin,
                end=end,
                logs=logs,
                prev=prev,
            )
            keys.append(key)
            obj = self.objects[key]
            prev = {
                "key": key,
                "sha256": hashlib.sha256(gzip.decompress(obj.body)).hexdigest(),
                "signature": obj.metadata["signature"],
            }
        return keys

    def digest(
        self,
        account: str,
        region: str,
        *,
        trail: str,
        home_region: str,
        begin: dt.datetime,
        end: dt.datetime,
        logs: list[str],
        prev: dict[str, str] | None,
        fingerprint: str | None = None,
        backfill: bool = False,
    ) -> str:
        """Write one signed digest listing ``logs``; returns its key."""
        suffix = "_backfill" if backfill else ""
        key = (
            f"{self.base(account)}CloudTrail-Digest/{region}/{end:%Y/%m/%d}/{account}_CloudTrail-Digest_"
            f"{region}_{trail}_{home_region}_{end:%Y%m%dT%H%M%S}Z{suffix}.json.gz"
        )
        files = []
        for log_key in logs:
            content = gzip.decompress(self.objects[log_key].body)
            files.append(
                {
                    "s3Bucket": self.bucket,
                    "s3Object": log_key,
                    "hashValue": hashlib.sha256(content).hexdigest(),
                    "hashAlgorithm": "SHA-256",
                    "newestEventTime": _stamp(end),
                    "oldestEventTime": _stamp(begin),
                }
            )
        doc: dict[str, Any] = {
            "awsAccountId": account,
            "digestStartTime": _stamp(begin),
            "digestEndTime": _stamp(end),
            "digestS3Bucket": self.bucket,
            "digestS3Object": key,
            "digestPublicKeyFingerprint": fingerprint or self.fingerprint,
            "digestSignatureAlgorithm": "SHA256withRSA",
            "newestEventTime": _stamp(end) if files else None,
            "oldestEventTime": _stamp(begin) if files else None,
            "previousDigestS3Bucket": self.bucket if prev else None,
            "previousDigestS3Object": prev["key"] if prev else None,
            "previousDigestHashValue": prev["sha256"] if prev else None,
            "previousDigestHashAlgorithm": "SHA-256" if prev else None,
            "previousDigestSignature": prev["signature"] if prev else None,
            "logFiles": files,
        }
        content = json.dumps(doc).encode()
        self.objects[key] = TrailObject(key, _gzip(content), self.sign_metadata(doc, content))
        if backfill:
            self.objects[key].metadata["backfill-generation-timestamp"] = _stamp(end)
        return key

    def sign_metadata(self, doc: dict[str, Any], content: bytes) -> dict[str, str]:
        """The ``signature`` and ``signature-algorithm`` metadata for a digest, per the user guide."""
        previous = doc["previousDigestSignature"] if doc["previousDigestSignature"] is not None else "null"
        to_sign = (
            f"{doc['digestEndTime']}\n{doc['digestS3Bucket']}/{doc['digestS3Object']}\n"
            f"{hashlib.sha256(content).hexdigest()}\n{previous}"
        ).encode()
        signature = self.private_key.sign(to_sign, padding.PKCS1v15(), hashes.SHA256())
        return {"signature": signature.hex(), "signature-algorithm": "SHA256withRSA"}

    # -- tampering (what an attacker or an accident does) ----------------------------------------

    def change_log_byte(self, key: str, position: int = 20) -> None:
        """Change one byte of a log file's content (and gzip it again, so it is well-formed)."""
        content = bytearray(gzip.decompress(self.objects[key].body))
        content[position] = ord("X") if content[position] != ord("X") else ord("Y")
        self.objects[key].body = _gzip(bytes(content))

    def delete(self, key: str) -> None:
        """Remove an object."""
        del self.objects[key]

    def forge_signature(self, key: str) -> None:
        """Replace a digest's signature with one made by another key."""
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.objects[key].metadata["signature"] = other.sign(
            b"forged", padding.PKCS1v15(), hashes.SHA256()
        ).hex()

    def digest_doc(self, key: str) -> dict[str, Any]:
        """A digest's document."""
        doc: dict[str, Any] = json.loads(gzip.decompress(self.objects[key].body))
        return doc

    # -- output -------------------------------------------------------------------------------

    def upload(self, s3: Any) -> None:
        """Put every object into the bucket (created if needed), with its metadata."""
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=self.bucket)
        for obj in self.objects.values():
            s3.put_object(Bucket=self.bucket, Key=obj.key, Body=obj.body, Metadata=obj.metadata)

    def write(self, root: Path, *, sidecars: bool = True) -> None:
        """Write the objects under ``root`` as ``trailrelay mirror`` does (or as a plain copy)."""
        folders: set[Path] = set()
        for obj in self.objects.values():
            path = root / obj.key
            if path.parent not in folders:
                path.parent.mkdir(parents=True, exist_ok=True)
                folders.add(path.parent)
            path.write_bytes(obj.body)
            if sidecars and obj.metadata:
                sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
                sidecar.write_bytes(orjson.dumps({"metadata": obj.metadata}))
        if sidecars:
            (root / MANIFEST).parent.mkdir(parents=True, exist_ok=True)
            (root / MANIFEST).write_bytes(orjson.dumps({"bucket": self.bucket, "prefix": self.prefix}))
