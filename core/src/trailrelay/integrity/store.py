"""Where the trail is: an S3 bucket (prefix), or a local mirror of one.

Both answer the same few questions: which sub-folders a folder has, which objects are in one
day folder, a digest's bytes with its S3 user metadata (``signature``, ``signature-algorithm``,
``backfill-generation-timestamp``; on S3 they are the ``x-amz-meta-*`` headers, boto3 strips the
prefix), and a log file's bytes in chunks.

A mirror (what ``trailrelay mirror`` writes) keeps the bucket's keys as paths under its root, the
metadata of each digest in a sidecar ``KEY.s3-metadata`` (JSON), and the bucket name in
``.trailrelay-mirror/manifest``. A plain copy without sidecars still verifies: every digest but
the newest of a chain gets its signature from the next digest's ``previousDigestSignature``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from trailrelay.integrity.digests import Folder

__all__ = [
    "MANIFEST",
    "SIDECAR_SUFFIX",
    "MirrorStore",
    "ObjectMissing",
    "S3Store",
    "StoredDigest",
    "TrailStore",
    "day_folders",
    "find_folders",
    "open_store",
    "safe_relative",
]

SIDECAR_SUFFIX = ".s3-metadata"
"""A digest's S3 user metadata, next to it in a mirror (not ``.json``: file sources skip it)."""
MANIFEST = ".trailrelay-mirror/manifest"
"""Which bucket and prefix a mirror holds (JSON)."""
MAX_DIGEST_BYTES = 64 << 20
"""Digests are a few KB; anything past this is not one."""
READ_CHUNK = 1 << 20

_MAX_DEPTH = 6
_BASE = re.compile(r"^(?:.*/)?AWSLogs/(?:o-[a-z0-9]{10,32}/)?(?P<account>\d{12})/$")
_INSIDE = re.compile(
    r"^(?P<base>(?:.*/)?AWSLogs/(?:o-[a-z0-9]{10,32}/)?\d{12}/)(?:CloudTrail|CloudTrail-Digest)/(?P<rest>.*)$"
)


class ObjectMissing(LookupError):  # noqa: N818 - reads as the condition it names
    """The object does not exist (deleted, or never there)."""


@dataclass(frozen=True, slots=True)
class StoredDigest:
    """A digest object as stored: its (gzip'd) bytes and S3 user metadata."""

    key: str
    data: bytes
    metadata: dict[str, str]
    metadata_note: str = ""
    """Why no metadata could be read, when a sidecar exists but is unreadable."""


class TrailStore(Protocol):
    """Read access to a trail's objects, by S3 key."""

    location: str
    """``s3://bucket/prefix`` or a local path, for messages."""
    bucket: str | None
    """The bucket these objects are (None: a local copy of unknown origin)."""
    prefix: str
    """Where to start looking for ``AWSLogs/`` folders (a key prefix)."""
    signatures_optional: bool
    """True for local copies: a missing signature is taken from the chain instead."""

    def children(self, prefix: str) -> list[str]:
        """The sub-folders directly under ``prefix`` (each ending with ``/``)."""
        ...

    def list_keys(self, prefix: str) -> list[str]:
        """The object keys directly under ``prefix`` (one folder, not recursive)."""
        ...

    def get_digest(self, key: str) -> StoredDigest:
        """A digest's bytes and metadata; ObjectMissing when it is not there."""
        ...

    def log_chunks(self, bucket: str, key: str) -> Iterator[bytes]:
        """A log file's bytes in chunks; ObjectMissing (on the first chunk) when it is not there."""
        ...


def safe_relative(key: str) -> bool:
    """True when ``key`` can be a path under a folder (no ``..``, not absolute, no empty part)."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        return False
    parts = key.split("/")
    return all(p not in ("", ".", "..") for p in parts[:-1]) and parts[-1] not in (".", "..")


class S3Store:
    """A trail bucket on S3 (or an S3-compatible store), read with one boto3 client."""

    signatures_optional = False

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket: str | None = bucket
        self._bucket = bucket
        self.prefix = _folder_prefix(prefix)
        self.location = f"s3://{bucket}/{prefix}"

    def children(self, prefix: str) -> list[str]:
        """Common prefixes one level below ``prefix``."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=prefix, Delimiter="/"
        )
        return [cp["Prefix"] for page in pages for cp in page.get("CommonPrefixes", [])]

    def list_keys(self, prefix: str) -> list[str]:
        """Keys directly under ``prefix``."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=prefix, Delimiter="/"
        )
        return [o["Key"] for page in pages for o in page.get("Contents", []) if not o["Key"].endswith("/")]

    def get_digest(self, key: str) -> StoredDigest:
        """GetObject: the bytes and the user metadata (``x-amz-meta-*`` without the prefix)."""
        resp = self._get(self._bucket, key)
        body = resp["Body"]
        try:
            data: bytes = body.read(MAX_DIGEST_BYTES + 1)
        finally:
            body.close()
        if len(data) > MAX_DIGEST_BYTES:
            raise ValueError(f"over {MAX_DIGEST_BYTES} bytes: not a digest")
        meta = {str(k).lower(): str(v) for k, v in (resp.get("Metadata") or {}).items()}
        return StoredDigest(key, data, meta)

    def log_chunks(self, bucket: str, key: str) -> Iterator[bytes]:
        """GetObject, streamed in 1 MiB chunks."""
        resp = self._get(bucket, key)
        body = resp["Body"]
        try:
            yield from body.iter_chunks(READ_CHUNK)
        finally:
            body.close()

    def _get(self, bucket: str, key: str) -> Any:
        try:
            return self.client.get_object(Bucket=bucket, Key=key)
        except Exception as exc:
            code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                raise ObjectMissing(key) from None
            raise


class MirrorStore:
    """A local folder holding a bucket's objects at their keys (``trailrelay mirror`` or a copy)."""

    signatures_optional = True

    def __init__(self, path: Path) -> None:
        path = path.resolve()
        root = _mirror_root(path)
        self.root = root or path
        manifest = _read_manifest(self.root) if root else {}
        bucket = manifest.get("bucket")
        self.bucket = bucket if isinstance(bucket, str) and bucket else None
        start = path.relative_to(self.root).as_posix() if root and path != self.root else ""
        self.prefix = _folder_prefix(start)
        self.location = str(path)

    def path_of(self, key: str) -> Path | None:
        """The file holding ``key``, or None when the key cannot be a path under the root."""
        return self.root / key if safe_relative(key) else None

    def children(self, prefix: str) -> list[str]:
        """Sub-directories of ``prefix``."""
        folder = self.root / prefix if prefix else self.root
        try:
            with os.scandir(folder) as it:
                names = sorted(e.name for e in it if e.is_dir() and not e.name.startswith(".trailrelay"))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [f"{prefix}{n}/" for n in names]

    def list_keys(self, prefix: str) -> list[str]:
        """Files in ``prefix`` that are objects (not sidecars or partial downloads)."""
        try:
            with os.scandir(self.root / prefix) as it:
                names = sorted(
                    e.name
                    for e in it
                    if e.is_file() and not e.name.endswith((SIDECAR_SUFFIX, ".part")) and e.name[0] != "."
                )
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [f"{prefix}{n}" for n in names]

    def get_digest(self, key: str) -> StoredDigest:
        """The file's bytes and its sidecar's metadata (empty when there is none)."""
        path = self.path_of(key)
        if path is None or not path.is_file():
            raise ObjectMissing(key)
        if path.stat().st_size > MAX_DIGEST_BYTES:
            raise ValueError(f"over {MAX_DIGEST_BYTES} bytes: not a digest")
        data = path.read_bytes()
        side = path.with_name(path.name + SIDECAR_SUFFIX)
        if not side.exists():
            return StoredDigest(key, data, {})
        try:
            raw = json.loads(side.read_bytes())
        except (OSError, ValueError) as exc:
            return StoredDigest(key, data, {}, f"sidecar {side.name} unreadable: {exc}")
        meta = raw.get("metadata", raw) if isinstance(raw, dict) else None
        if not isinstance(meta, dict):
            return StoredDigest(key, data, {}, f"sidecar {side.name} holds no metadata object")
        return StoredDigest(key, data, {str(k).lower(): str(v) for k, v in meta.items()})

    def log_chunks(self, bucket: str, key: str) -> Iterator[bytes]:
        """The file, in 1 MiB chunks; missing when it is of another bucket than the mirror's."""
        path = self.path_of(key)
        if path is None or (self.bucket is not None and bucket != self.bucket):
            raise ObjectMissing(key)
        try:
            f = path.open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectMissing(key) from None
        with f:
            while chunk := f.read(READ_CHUNK):
                yield chunk


def open_store(target: str, *, s3_client: Any = None) -> TrailStore:
    """The store for ``s3://BUCKET[/PREFIX]`` (with ``s3_client``) or a local folder."""
    if target.startswith("s3://"):
        bucket, _, prefix = target[5:].partition("/")
        if not bucket:
            raise ValueError(f"no bucket in {target!r}")
        if s3_client is None:
            raise ValueError("an S3 target needs an S3 client")
        return S3Store(s3_client, bucket, prefix)
    path = Path(target).expanduser()
    if not path.is_dir():
        raise ValueError(f"{target} is not a folder (and not s3://BUCKET/PREFIX)")
    return MirrorStore(path)


def find_folders(store: TrailStore) -> list[Folder]:
    """Every ``AWSLogs/[o-org/]ACCOUNT/CloudTrail[-Digest]/REGION/`` at or below the store's prefix."""
    found: set[Folder] = set()
    prefix = store.prefix
    inside = _INSIDE.match(prefix)
    if inside:
        base = inside["base"]
        account = _account(base)
        region = inside["rest"].split("/", 1)[0]
        if region:
            found.add(Folder(base, account, region))
        else:
            found.update(_regions(store, base, account))
    elif _BASE.match(prefix):
        found.update(_regions(store, prefix, _account(prefix)))
    else:
        _walk(store, prefix, 0, found)
    return sorted(found, key=lambda f: (f.base, f.region))


def day_folders(store: TrailStore, region_prefix: str) -> list[dt.date]:
    """The ``YYYY/MM/DD/`` folders under a region folder, as dates, in order."""
    days: list[dt.date] = []
    for year in store.children(region_prefix):
        if not _is_number(year, 4):
            continue
        for month in store.children(year):
            if not _is_number(month, 2):
                continue
            for day in store.children(month):
                if not _is_number(day, 2):
                    continue
                parts = day.rstrip("/").rsplit("/", 3)[-3:]
                try:
                    days.append(dt.date(int(parts[0]), int(parts[1]), int(parts[2])))
                except ValueError:
                    continue
    return sorted(days)


def _walk(store: TrailStore, prefix: str, depth: int, found: set[Folder]) -> None:
    if _BASE.match(prefix):
        found.update(_regions(store, prefix, _account(prefix)))
        return
    if depth > _MAX_DEPTH:
        return
    for child in store.children(prefix):
        name = child.rstrip("/").rsplit("/", 1)[-1]
        if not name.startswith("CloudTrail"):
            _walk(store, child, depth + 1, found)


def _regions(store: TrailStore, base: str, account: str) -> set[Folder]:
    out: set[Folder] = set()
    for kind in ("CloudTrail-Digest/", "CloudTrail/"):
        for child in store.children(base + kind):
            region = child.rstrip("/").rsplit("/", 1)[-1]
            out.add(Folder(base, account, region))
    return out


def _account(base: str) -> str:
    m = _BASE.match(base)
    return m["account"] if m else ""


def _is_number(prefix: str, width: int) -> bool:
    name = prefix.rstrip("/").rsplit("/", 1)[-1]
    return len(name) == width and name.isdigit()


def _folder_prefix(prefix: str) -> str:
    prefix = prefix.lstrip("/")
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def _mirror_root(path: Path) -> Path | None:
    for candidate in (path, *path.parents):
        if (candidate / MANIFEST).is_file():
            return candidate
    return None


def _read_manifest(root: Path) -> dict[str, Any]:
    try:
        data = json.loads((root / MANIFEST).read_bytes())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
