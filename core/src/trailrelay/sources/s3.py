"""S3 listing mode: read a trail bucket (or part of it) once, resuming from checkpoints.

With a time window, only the day folders of the window are listed, for every account and
region found under the prefix at any depth (organization trails included), instead of the whole
bucket; the objects read are those the listing without a window reads, less those outside it.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO, cast

from trailrelay.errors import InputError
from trailrelay.record import Origin
from trailrelay.sources.base import ObjectDone, ObjectRef, Work
from trailrelay.sources.layout import (
    account_folder,
    classify_key,
    day_prefixes,
    key_time,
    region_folder,
    trail_folder,
)
from trailrelay.state import Checkpoints

__all__ = ["S3Source", "fetch_object", "find_log_object", "open_object", "read_denied"]

DELIVERY_LAG = dt.timedelta(minutes=30)
"""CloudTrail delivers a file up to ~15 minutes after its events; objects named up to this long
after ``end_time`` are read too."""

LIST_CONCURRENCY = 8
"""LIST requests in flight at once while walking and listing a window."""
FIND_PAGES = 20
"""LIST requests :func:`find_log_object` sends at most looking for one log file."""
_SIDE_FOLDERS = ("/CloudTrail-Digest/", "/CloudTrail-Insight/")


def fetch_object(client: Any, bucket: str, key: str, limit: int) -> bytes:
    """The object's bytes; refuses objects larger than ``limit`` before downloading."""
    body = open_object(client, bucket, key, limit)
    try:
        data: bytes = body.read()
    finally:
        body.close()
    return data


def open_object(client: Any, bucket: str, key: str, limit: int) -> BinaryIO:
    """The object's body, to read in chunks (the caller closes it); refuses objects over ``limit``."""
    resp = client.get_object(Bucket=bucket, Key=key)
    length = resp.get("ContentLength")
    if isinstance(length, int) and length > limit:
        resp["Body"].close()
        raise InputError(f"object is {length} bytes, over the {limit}-byte limit (max_object_bytes)")
    return cast("BinaryIO", resp["Body"])  # botocore's StreamingBody: read(amt), close()


def find_log_object(
    client: Any, bucket: str, prefix: str, *, insights: bool = False
) -> tuple[str | None, str]:
    """The key of one log file under ``prefix`` the source would read, and what the listing saw.

    Digest and Insights folders (which sort before ``CloudTrail/``) are stepped over, not listed
    through; at most :data:`FIND_PAGES` LIST requests. Errors of the listing are raised.
    """
    seen: dict[str, int] = {}
    start_after = ""
    for _ in range(FIND_PAGES):
        kw = {"StartAfter": start_after} if start_after else {}
        page = client.list_objects_v2(Bucket=bucket, Prefix=prefix, **kw)
        contents = page.get("Contents", [])
        for obj in contents:
            key = obj["Key"]
            reason = classify_key(key, obj.get("Size"), insights=insights)
            if reason is None:
                return key, ""
            seen[reason] = seen.get(reason, 0) + 1
            start_after = key
            side = next((f for f in _SIDE_FOLDERS if f in key and reason in {"digest", "insight"}), None)
            if side is not None:  # the rest of this folder is more of the same: '~' sorts after it
                start_after = key[: key.index(side) + len(side)] + "~"
                break
        if not contents or (not page.get("IsTruncated") and start_after == contents[-1]["Key"]):
            break
    if not seen:
        return None, "no object at all"
    said = ", ".join(f"{n} {reason}" for reason, n in sorted(seen.items()))
    return None, f"no log file (.json.gz) among the objects listed ({said})"


def read_denied(client: Any, bucket: str, key: str) -> str | None:
    """None when the first byte of the object can be read (a ranged GET); else why not, in words."""
    from botocore.exceptions import ClientError  # noqa: PLC0415 - boto3 only when AWS is read

    try:
        client.get_object(Bucket=bucket, Key=key, Range="bytes=0-0")["Body"].close()
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        why = f"cannot read s3://{bucket}/{key}: {exc}"
        if code in {"AccessDenied", "403"} or code.startswith("KMS"):
            why += (
                " (is the object encrypted with a KMS key these credentials may not use (kms:Decrypt),"
                " or does a bucket policy refuse s3:GetObject?)"
            )
        return why
    return None


class S3Source:
    """Lists a bucket prefix (optionally a time window) and yields one unit per log object."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str = "",
        *,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        insights: bool = False,
        checkpoints: Checkpoints | None = None,
        max_object_bytes: int = 1 << 30,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.start = start
        self.end = end
        self.insights = insights
        self.checkpoints = checkpoints
        self.max_object_bytes = max_object_bytes
        self.source_id = f"s3://{bucket}/"
        """Checkpoints are per object (bucket and key), whatever prefix found it."""

    def work(self, stop: threading.Event) -> Iterator[Work]:
        """One unit per object not yet finished; skipped keys are reported in batches."""
        skipped: list[tuple[str, str]] = []
        if self.checkpoints is not None:  # earlier versions kept them per prefix (s3://b/AWSLogs/)
            self.checkpoints.adopt(self.source_id)
        for obj in self._objects():
            if stop.is_set():
                return
            key, size, etag = obj["Key"], obj.get("Size"), obj.get("ETag", "").strip('"')
            reason = classify_key(key, size, insights=self.insights) or self._outside_window(key)
            if reason is None and self.checkpoints:
                reason = self.checkpoints.skip_reason(self.source_id, key, etag)
            if reason is not None:
                skipped.append((reason, f"s3://{self.bucket}/{key}"))
                if len(skipped) >= 1000:
                    yield Work([], skipped=skipped, label="skipped objects")
                    skipped = []
                continue
            origin = Origin("s3", f"s3://{self.bucket}/{key}", self.bucket, key, etag, size)
            ref = ObjectRef(origin, self._fetcher(key), self._opener(key))
            yield Work([ref], ack=self._acker(key, etag), label=origin.location)
        if skipped:
            yield Work([], skipped=skipped, label="skipped objects")

    def close(self) -> None:
        """Nothing to release (the client is shared)."""

    def _fetcher(self, key: str) -> Callable[[], bytes]:
        return lambda: fetch_object(self.client, self.bucket, key, self.max_object_bytes)

    def _opener(self, key: str) -> Callable[[], BinaryIO]:
        return lambda: open_object(self.client, self.bucket, key, self.max_object_bytes)

    def _acker(self, key: str, etag: str) -> Callable[[list[ObjectDone]], None]:
        def ack(done: list[ObjectDone]) -> None:
            if self.checkpoints is not None:
                records = sum(d.records for d in done)
                self.checkpoints.mark_done(
                    self.source_id, key, etag, records, done[0].sha256 if done else None
                )

        return ack

    def _outside_window(self, key: str) -> str | None:
        if self.start is None and self.end is None:
            return None
        t = key_time(key)
        if t is None:
            return None
        if self.start is not None and t < self.start:
            return "before-window"
        if self.end is not None and t > self.end + DELIVERY_LAG:
            return "after-window"
        return None

    def _objects(self) -> Iterator[dict[str, Any]]:
        if self.start is None and self.end is None:
            yield from self._list(self.prefix)
            return
        start = self.start or dt.datetime(2013, 11, 1, tzinfo=dt.UTC)  # CloudTrail's launch
        end = (self.end or dt.datetime.now(dt.UTC)) + DELIVERY_LAG
        # Only what is under the prefix, like the listing without a window: a prefix in a region
        # folder ("eu-west-1/2026/03/02/") lists that part of its days, not the whole days.
        days = [
            listed
            for region in self._region_prefixes()
            for day in day_prefixes(region, start, end)
            if (listed := _overlap(day, self.prefix)) is not None
        ]
        # LIST several day folders at once (an org trail has accounts x regions x days of them),
        # in order, with a bounded look-ahead so memory holds a few folders' listings, not all.
        with ThreadPoolExecutor(LIST_CONCURRENCY, thread_name_prefix="s3-list") as pool:
            ahead: deque[Future[list[dict[str, Any]]]] = deque()
            todo = iter(days)
            for prefix in itertools.islice(todo, 2 * LIST_CONCURRENCY):
                ahead.append(pool.submit(self._list_all, prefix))
            while ahead:
                objects = ahead.popleft().result()
                for prefix in itertools.islice(todo, 1):
                    ahead.append(pool.submit(self._list_all, prefix))
                yield from objects

    def _list(self, prefix: str) -> Iterator[dict[str, Any]]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            yield from page.get("Contents", [])

    def _list_all(self, prefix: str) -> list[dict[str, Any]]:
        return list(self._list(prefix))

    def _children(self, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix, Delimiter="/"
        )
        return [cp["Prefix"] for page in pages for cp in page.get("CommonPrefixes", [])]

    def _region_prefixes(self) -> list[str]:
        """Every ``.../CloudTrail/<region>/`` folder with keys under the prefix, at any depth, sorted.

        Walked level by level from the prefix's folder, listing all folders of a level at once (an
        organization trail has one folder per account), instead of one LIST after another. Every
        folder is walked to its end, as the listing without a window reads it, except that of an
        account folder only ``CloudTrail/`` (and ``CloudTrail-Insight/``) is entered.
        """
        here = region_folder(self.prefix)
        if here is not None:  # the prefix is in a region folder (or is one)
            return [here]
        entered = ("CloudTrail", "CloudTrail-Insight") if self.insights else ("CloudTrail",)
        found: list[str] = []
        frontier = [self.prefix[: self.prefix.rfind("/") + 1]]
        with ThreadPoolExecutor(LIST_CONCURRENCY, thread_name_prefix="s3-walk") as pool:
            while frontier:
                nxt: list[str] = []
                for folder, children in zip(frontier, pool.map(self._children, frontier), strict=True):
                    for child in children:
                        if _overlap(child, self.prefix) is None:
                            continue  # beside the prefix (a partial name: "eu-", "AWSLogs/o-")
                        if trail_folder(folder):
                            found.append(child)
                        elif not account_folder(folder) or child[len(folder) : -1] in entered:
                            nxt.append(child)
                frontier = nxt
        return sorted(found)


def _overlap(folder: str, prefix: str) -> str | None:
    """What to list for the keys in both ``folder`` and ``prefix``: the longer, or None if none can be."""
    if folder.startswith(prefix):
        return folder
    if prefix.startswith(folder):
        return prefix
    return None
