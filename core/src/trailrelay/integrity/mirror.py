"""``trailrelay mirror``: copy a trail's logs and digests to a folder, keeping what verifying needs.

Objects keep their keys as paths. Each digest gets a sidecar ``KEY.s3-metadata`` with its S3
user metadata (the signature lives there, not in the file), ``.trailrelay-mirror/manifest``
names the bucket, and the public keys the digests name are saved under
``.trailrelay-mirror/public-keys/REGION/FINGERPRINT.der`` so the copy verifies offline. Log files
a digest lists outside the window's day folders are fetched too, so the copy verifies exactly
as the bucket does. Files already there at the same size are not fetched again; each file is
written to ``NAME.part`` and renamed, so an interrupted run leaves no half files.
"""

from __future__ import annotations

import datetime as dt
import threading
import zlib
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec
import orjson

from trailrelay.integrity.digests import Folder, log_key_time, parse_digest, parse_digest_key
from trailrelay.integrity.keys import KeyRing
from trailrelay.integrity.store import (
    MANIFEST,
    MAX_DIGEST_BYTES,
    SIDECAR_SUFFIX,
    ObjectMissing,
    S3Store,
    day_folders,
    find_folders,
    safe_relative,
)
from trailrelay.integrity.verifier import Window

__all__ = ["KEYS_DIR", "mirror_trail"]

KEYS_DIR = ".trailrelay-mirror/public-keys"


class _Mirror:
    def __init__(
        self, store: S3Store, dest: Path, window: Window, pool: ThreadPoolExecutor, workers: int
    ) -> None:
        self.store, self.dest, self.window, self.pool = store, dest, window, pool
        self.counts: Counter[str] = Counter()
        self.errors: list[str] = []
        self.fingerprints: set[tuple[str, str, dt.datetime]] = set()
        self._inflight: deque[Future[None]] = deque()
        self._limit = 8 * workers
        self._lock = threading.Lock()
        self._followed: set[str] = set()
        """Log files fetched because a digest of this folder lists them (cleared per folder)."""

    def folder(self, folder: Folder) -> None:
        for day in day_folders(self.store, folder.digest_prefix):
            if self.window.day_in(day, digests=True):
                for key, size in self._list(f"{folder.digest_prefix}{day:%Y/%m/%d}/"):
                    name = parse_digest_key(key)
                    if name is not None and self.window.digest_in(name.end):
                        self._submit(self._digest, key, size)
        # The digests (and the log files they list) first, so listed log files are not fetched twice.
        self.drain(everything=True)
        for day in day_folders(self.store, folder.log_prefix):
            if self.window.day_in(day, digests=False):
                for key, size in self._list(f"{folder.log_prefix}{day:%Y/%m/%d}/"):
                    t = log_key_time(key)
                    if (t is None or self.window.log_in(t)) and key not in self._followed:
                        self._submit(self._log, key, size)
        self.drain(everything=True)
        self._followed.clear()

    def drain(self, *, everything: bool = False) -> None:
        q = self._inflight
        while q and (everything or len(q) > self._limit or q[0].done()):
            q.popleft().result()

    def _list(self, prefix: str) -> list[tuple[str, int]]:
        pages = self.store.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.store.bucket, Prefix=prefix, Delimiter="/"
        )
        return [(o["Key"], int(o.get("Size", -1))) for p in pages for o in p.get("Contents", [])]

    def _submit(self, fn: Callable[[str, int], None], key: str, size: int) -> None:
        self._inflight.append(self.pool.submit(self._guard, fn, key, size))
        if len(self._inflight) > self._limit:
            self.drain()

    def _guard(self, fn: Callable[[str, int], None], key: str, size: int) -> None:
        try:
            fn(key, size)
        except Exception as exc:  # one object's failure is reported; the copy goes on
            with self._lock:
                self.counts["errors"] += 1
                self.errors.append(f"s3://{self.store.bucket}/{key}: {type(exc).__name__}: {exc}")

    def _target(self, key: str) -> Path | None:
        if not safe_relative(key):
            with self._lock:
                self.counts["unsafe-keys"] += 1
                self.errors.append(f"not copied: key {key!r} cannot be a path under the mirror")
            return None
        return self.dest / key

    def _digest(self, key: str, size: int) -> None:
        path = self._target(key)
        if path is None:
            return
        sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
        if path.is_file() and sidecar.is_file() and path.stat().st_size == size:
            data = path.read_bytes()
            self._bump("digests-present")
        else:
            resp = self.store.client.get_object(Bucket=self.store.bucket, Key=key)
            data = resp["Body"].read(MAX_DIGEST_BYTES + 1)
            meta = {str(k).lower(): str(v) for k, v in (resp.get("Metadata") or {}).items()}
            side = {
                "metadata": meta,
                "bucket": self.store.bucket,
                "key": key,
                "etag": str(resp.get("ETag", "")).strip('"'),
                "last_modified": _iso(resp.get("LastModified")),
            }
            _write(path, data)
            _write(sidecar, orjson.dumps(side, option=orjson.OPT_INDENT_2))
            self._bump("digests", len(data))
        self._follow(key, data)

    def _follow(self, key: str, data: bytes) -> None:
        """Fetch the log files a digest lists (they may lie outside the window's day folders)."""
        try:
            doc = parse_digest(zlib.decompress(data, 31))
        except (zlib.error, ValueError, msgspec.MsgspecError):
            return  # verify reports it; a copy keeps it as it is
        name = parse_digest_key(key)
        if name is not None:
            with self._lock:
                self.fingerprints.add((doc.digest_public_key_fingerprint, name.chain.folder.region, name.end))
        for entry in doc.log_files:
            if entry.s3_bucket == self.store.bucket:
                with self._lock:
                    if entry.s3_object in self._followed:
                        continue
                    self._followed.add(entry.s3_object)
                self._log(entry.s3_object, -1)

    def _log(self, key: str, size: int) -> None:
        path = self._target(key)
        if path is None:
            return
        if path.is_file() and (size < 0 or path.stat().st_size == size):
            self._bump("logs-present")
            return
        try:
            chunks = self.store.log_chunks(self.store.bucket or "", key)
            written = _write_chunks(path, chunks)
        except ObjectMissing:
            self._bump("logs-missing")
            return
        self._bump("logs", written)

    def _bump(self, what: str, size: int = 0) -> None:
        with self._lock:
            self.counts[what] += 1
            self.counts["bytes"] += size


def mirror_trail(
    store: S3Store,
    dest: Path,
    *,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    workers: int = 8,
    keys: KeyRing | None = None,
    on_progress: Callable[[dict[str, int]], None] | None = None,
) -> tuple[Counter[str], list[str]]:
    """Copy the window's digests (with metadata sidecars) and log files; (counts, errors)."""
    dest.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {
        "bucket": store.bucket,
        "prefix": store.prefix,
        "start": _iso(start),
        "end": _iso(end),
        "mirrored_at": _iso(dt.datetime.now(dt.UTC)),
    }
    _write(dest / MANIFEST, orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    window = Window(start, end, dt.datetime.now(dt.UTC))
    folders = find_folders(store)
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="trailrelay-mirror") as pool:
        m = _Mirror(store, dest, window, pool, max(1, workers))
        for i, folder in enumerate(folders, 1):
            m.folder(folder)
            m.drain()
            if on_progress is not None:
                on_progress({"folders_done": i, "folders": len(folders), **m.counts})
        m.drain(everything=True)
    m.counts["folders"] = len(folders)
    if keys is not None and keys.can_fetch:
        _save_keys(dest, keys, m)
    return m.counts, m.errors


def _save_keys(dest: Path, keys: KeyRing, m: _Mirror) -> None:
    for fingerprint, region, when in sorted(m.fingerprints):
        keys.lookup(fingerprint, region, when)
    for info in keys.fetched:
        _write(dest / KEYS_DIR / info.region / f"{info.fingerprint}.der", info.der)
        m.counts["public-keys"] += 1
    for problem in keys.errors():  # a key not saved: the copy cannot be verified offline
        m.errors.append(f"public keys not saved: {problem}")
        m.counts["errors"] += 1


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    tmp.write_bytes(data)
    tmp.replace(path)


def _write_chunks(path: Path, chunks: Any) -> int:
    it = iter(chunks)
    first = next(it, b"")  # raises ObjectMissing before anything is created
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    size = 0
    with tmp.open("wb") as f:
        f.write(first)
        size += len(first)
        for chunk in it:
            f.write(chunk)
            size += len(chunk)
    tmp.replace(path)
    return size


def _tmp(path: Path) -> Path:
    """A partial file name unique to this thread (two workers may fetch the same log file)."""
    return path.with_name(f"{path.name}.{threading.get_ident()}.part")


def _iso(value: Any) -> str | None:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return None
