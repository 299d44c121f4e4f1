"""Digest files: what a digest key says (account, region, trail, time) and what a digest holds.

A digest key is ``[prefix/]AWSLogs/[o-org/]ACCOUNT/CloudTrail-Digest/REGION/YYYY/MM/DD/``
``ACCOUNT_CloudTrail-Digest_REGION_TRAIL_HOMEREGION_YYYYMMDDTHHMMSSZ[_backfill].json.gz``;
the time is the digest's end. Backfill digests (late log files) form a chain of their own.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import msgspec

__all__ = [
    "ChainId",
    "DigestDoc",
    "DigestFormatError",
    "DigestName",
    "Folder",
    "LogFileEntry",
    "log_key_time",
    "parse_digest",
    "parse_digest_key",
    "parse_time",
]

_DIGEST_KEY = re.compile(
    r"^(?P<base>(?:.*/)?AWSLogs/(?:(?P<org>o-[a-z0-9]{10,32})/)?(?P<account>\d{12})/)CloudTrail-Digest/"
    r"(?P<region>[a-z0-9-]+)/(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/"
    r"(?P=account)_CloudTrail-Digest_(?P=region)_(?P<trail>.+)_(?P<home>[a-z0-9-]+)_"
    r"(?P<ts>\d{8}T\d{6}Z)(?P<backfill>_backfill)?\.json\.gz$"
)
_LOG_TIME = re.compile(r"_CloudTrail_[a-z0-9-]+_(\d{8}T\d{4}(?:\d{2})?Z)_[^/]*$")


class DigestFormatError(ValueError):
    """A digest that cannot be read as CloudTrail wrote it (gzip, JSON or a required field)."""


@dataclass(frozen=True, slots=True)
class Folder:
    """One account's CloudTrail folders in one region: ``BASE/CloudTrail[-Digest]/REGION/``."""

    base: str
    """Everything up to and including ``ACCOUNT/`` (prefix, ``AWSLogs/``, org id, account)."""
    account: str
    region: str

    @property
    def digest_prefix(self) -> str:
        """Where this folder's digests are."""
        return f"{self.base}CloudTrail-Digest/{self.region}/"

    @property
    def log_prefix(self) -> str:
        """Where this folder's log files are."""
        return f"{self.base}CloudTrail/{self.region}/"

    @property
    def org(self) -> str | None:
        """The organization id of an organization trail's folder, else None."""
        parts = self.base.rstrip("/").split("/")
        return parts[-2] if len(parts) >= 2 and parts[-2].startswith("o-") else None


@dataclass(frozen=True, slots=True)
class ChainId:
    """The digests of one trail in one account and region form one chain (backfills another)."""

    folder: Folder
    trail: str
    home_region: str
    backfill: bool


@dataclass(frozen=True, slots=True)
class DigestName:
    """What a digest's key says about it."""

    key: str
    chain: ChainId
    end: dt.datetime
    """The end time in the name (UTC, to the second)."""


def parse_digest_key(key: str) -> DigestName | None:
    """The parts of a digest key, or None when the key is not a CloudTrail digest's."""
    m = _DIGEST_KEY.match(key)
    if m is None:
        return None
    end = _basic_time(m["ts"])
    if end is None:
        return None
    folder = Folder(m["base"], m["account"], m["region"])
    return DigestName(key, ChainId(folder, m["trail"], m["home"], m["backfill"] is not None), end)


def log_key_time(key: str) -> dt.datetime | None:
    """The time in a log file's name (``..._CloudTrail_REGION_20260302T1205Z_x.json.gz``)."""
    m = _LOG_TIME.search(key)
    if m is None:
        return None
    return _basic_time(m.group(1))


def _basic_time(text: str) -> dt.datetime | None:
    """``YYYYMMDDTHHMM[SS]Z`` (already matched by a regex) as UTC; None when out of range."""
    try:
        return dt.datetime(
            int(text[0:4]),
            int(text[4:6]),
            int(text[6:8]),
            int(text[9:11]),
            int(text[11:13]),
            int(text[13:15]) if len(text) == 16 else 0,
            tzinfo=dt.UTC,
        )
    except ValueError:
        return None


def parse_time(text: str | None) -> dt.datetime | None:
    """A digest's ISO 8601 UTC time (``2015-08-17T15:01:31Z``), or None when absent or unreadable."""
    if not text:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class LogFileEntry(msgspec.Struct, rename="camel", kw_only=True, frozen=True):
    """One log file listed in a digest."""

    s3_bucket: str
    s3_object: str
    hash_value: str
    hash_algorithm: str = "SHA-256"
    newest_event_time: str | None = None
    oldest_event_time: str | None = None


class DigestDoc(msgspec.Struct, rename="camel", kw_only=True, frozen=True):
    """A digest file's content; the fields ``aws cloudtrail validate-logs`` requires have no default."""

    digest_start_time: str
    digest_end_time: str
    digest_s3_bucket: str
    digest_s3_object: str
    digest_public_key_fingerprint: str
    previous_digest_signature: str | None
    aws_account_id: str | None = None
    digest_signature_algorithm: str | None = None
    newest_event_time: str | None = None
    oldest_event_time: str | None = None
    previous_digest_s3_bucket: str | None = None
    previous_digest_s3_object: str | None = None
    previous_digest_hash_value: str | None = None
    previous_digest_hash_algorithm: str | None = None
    log_files: list[LogFileEntry] = msgspec.field(default_factory=list)


_DECODER = msgspec.json.Decoder(DigestDoc)


def parse_digest(content: bytes) -> DigestDoc:
    """The digest document in ``content`` (uncompressed JSON); DigestFormatError when malformed."""
    try:
        return _DECODER.decode(content)
    except msgspec.ValidationError as exc:
        raise DigestFormatError(f"not a CloudTrail digest: {exc}") from None
    except msgspec.DecodeError as exc:
        raise DigestFormatError(f"not JSON: {exc}") from None
