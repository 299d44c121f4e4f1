"""Checking one log file a valid digest lists: by hashing it, or against what was forwarded.

``HashingLogChecker`` reads the file from the store and compares the SHA-256 of its uncompressed
content with the digest's ``hashValue`` (what ``aws cloudtrail validate-logs`` does).
``ForwardedLogChecker`` compares with the SHA-256 the forwarding pipeline kept for the object
in its checkpoints, so a periodic check proves what the SIEM received without reading it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from trailrelay.integrity.digests import LogFileEntry
from trailrelay.integrity.hashing import LogFormatError, hash_log
from trailrelay.integrity.store import ObjectMissing, TrailStore

__all__ = [
    "ForwardedHashes",
    "ForwardedLogChecker",
    "HashingLogChecker",
    "LogChecker",
    "LogResult",
]

VALID = "valid"
NOT_FORWARDED = "not-forwarded"


@dataclass(frozen=True, slots=True)
class LogResult:
    """The outcome for one listed log file: ``valid``, a problem kind, or ``not-forwarded``."""

    entry: LogFileEntry
    status: str
    detail: str = ""
    size: int = 0
    """Uncompressed bytes hashed."""
    compressed: int = 0

    @property
    def location(self) -> str:
        """``s3://bucket/key`` of the log file."""
        return f"s3://{self.entry.s3_bucket}/{self.entry.s3_object}"


class LogChecker(Protocol):
    """Checks one log file listed by a valid digest (called from worker threads)."""

    def __call__(self, entry: LogFileEntry) -> LogResult:
        """The outcome for ``entry``."""
        ...


class ForwardedHashes(Protocol):
    """The SHA-256 (of the uncompressed content) of objects the pipeline forwarded."""

    def sha256(self, bucket: str, key: str) -> str | None:
        """The kept hash of ``bucket/key``, or None when it was not forwarded."""
        ...


def _supported(entry: LogFileEntry) -> LogResult | None:
    if entry.hash_algorithm.upper().replace("-", "") != "SHA256":
        return LogResult(entry, "log-unreadable", f"hash algorithm {entry.hash_algorithm!r} is not supported")
    return None


class HashingLogChecker:
    """Hashes the log file as stored and compares it with the digest."""

    def __init__(self, store: TrailStore) -> None:
        self.store = store

    def __call__(self, entry: LogFileEntry) -> LogResult:
        """Read, inflate and hash the file; compare with ``hashValue``."""
        unsupported = _supported(entry)
        if unsupported is not None:
            return unsupported
        try:
            digest, size, compressed = hash_log(self.store.log_chunks(entry.s3_bucket, entry.s3_object))
        except ObjectMissing:
            return LogResult(entry, "log-missing", "not found: deleted after CloudTrail delivered it")
        except LogFormatError as exc:
            return LogResult(entry, "log-modified", f"no longer what CloudTrail wrote: {exc}")
        except Exception as exc:  # denied, network: not proven either way
            return LogResult(entry, "log-unreadable", f"could not be read: {type(exc).__name__}: {exc}")
        expected = entry.hash_value.lower()
        if digest != expected:
            return LogResult(
                entry,
                "log-modified",
                f"content hashes to {digest}; the digest recorded {expected}",
                size,
                compressed,
            )
        return LogResult(entry, VALID, "", size, compressed)


class ForwardedLogChecker:
    """Compares the digest's hash with the one kept when the object was forwarded."""

    def __init__(self, hashes: ForwardedHashes) -> None:
        self.hashes = hashes

    def __call__(self, entry: LogFileEntry) -> LogResult:
        """``valid`` when what was forwarded is what CloudTrail wrote."""
        unsupported = _supported(entry)
        if unsupported is not None:
            return unsupported
        try:
            kept = self.hashes.sha256(entry.s3_bucket, entry.s3_object)
        except Exception as exc:
            return LogResult(
                entry, "log-unreadable", f"checkpoint lookup failed: {type(exc).__name__}: {exc}"
            )
        if kept is None:
            return LogResult(entry, NOT_FORWARDED, "not forwarded (yet)")
        expected = entry.hash_value.lower()
        if kept.lower() != expected:
            return LogResult(
                entry,
                "log-modified",
                f"the forwarded object hashed to {kept}; the digest recorded {expected}",
            )
        return LogResult(entry, VALID)
