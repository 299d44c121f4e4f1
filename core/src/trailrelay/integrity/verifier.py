"""One verification run: every chain under a prefix, day by day, with bounded memory.

The trail is visited folder by folder (``ACCOUNT/CloudTrail[-Digest]/REGION/``) and day by day.
Worker threads list a day and load and check its digests ahead of the walk; the walk (this
thread) judges each chain in time order and hands the log files of valid digests back to the
workers to be hashed. At any time memory holds a few days of one folder's keys, one digest per
chain, and at most a bounded number of log checks in flight.

Window: digests whose name time is in ``[start, end + 2h]`` (the last hour's log files are
digested after ``end``); log files whose name time is in ``[start, end]``, like
``aws cloudtrail validate-logs`` (which lists digests to ``end + 1h``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from trailrelay.integrity.chain import ChainWalker, DigestCheck, Link, Status, Verdict
from trailrelay.integrity.coverage import SLACK_DAYS, Coverage, Uncovered
from trailrelay.integrity.digests import (
    ChainId,
    DigestFormatError,
    DigestName,
    Folder,
    LogFileEntry,
    log_key_time,
    parse_digest,
    parse_digest_key,
    parse_time,
)
from trailrelay.integrity.keys import KeyRing
from trailrelay.integrity.logcheck import NOT_FORWARDED, VALID, HashingLogChecker, LogChecker, LogResult
from trailrelay.integrity.report import Problem, Severity, VerifyReport
from trailrelay.integrity.signing import SIGNATURE_ALGORITHM, signature_valid, signing_string
from trailrelay.integrity.span import ChainSpan
from trailrelay.integrity.store import MAX_DIGEST_BYTES, ObjectMissing, TrailStore, day_folders, find_folders

__all__ = ["DIGEST_LAG", "PENDING_GRACE", "DigestOutcome", "Verifier", "Window"]

DIGEST_LAG = dt.timedelta(hours=2)
BATCH = 32
"""Log files checked per worker task (one task per file costs more in hand-offs than in hashing)."""
PENDING_GRACE = dt.timedelta(hours=2)
"""A log file this recent may simply not be digested yet: a notice, not a failure."""
CLOCK_SKEW = dt.timedelta(minutes=15)
"""How far in the future a log file's name time may be (clocks differ) before it cannot be genuine."""

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Window:
    """The time window of a run (UTC); None means unbounded."""

    start: dt.datetime | None
    end: dt.datetime | None
    now: dt.datetime

    def digest_in(self, t: dt.datetime) -> bool:
        """A digest ending at ``t`` belongs to the run."""
        return (self.start is None or t >= self.start) and (self.end is None or t <= self.end + DIGEST_LAG)

    def log_in(self, t: dt.datetime) -> bool:
        """A log file named with time ``t`` belongs to the run."""
        return (self.start is None or t >= self.start) and (self.end is None or t <= self.end)

    def day_in(self, day: dt.date, *, digests: bool) -> bool:
        """A day folder may hold objects of the run."""
        last = self.end + DIGEST_LAG if (digests and self.end) else self.end
        return (self.start is None or day >= self.start.date()) and (last is None or day <= last.date())


@dataclass(eq=False)
class DigestOutcome:
    """Everything found about one digest (or one missing digest), for integrity events."""

    location: str
    chain: ChainId
    verdict: Verdict | None
    problems: list[Problem] = field(default_factory=list)
    logs: dict[str, int] = field(default_factory=dict)
    remaining: int = 0

    @property
    def valid(self) -> bool:
        """The digest verified and every log file it lists checked out (or was not forwarded)."""
        return self.verdict is not None and self.verdict.valid and not self.problems


@dataclass(frozen=True, slots=True)
class _Unit:
    folder: Folder
    day: dt.date
    digests: bool
    logs: bool


@dataclass(slots=True)
class _Day:
    unit: _Unit
    digests: list[DigestCheck]
    logs: list[tuple[str, dt.datetime | None]]
    ignored: int


@dataclass(eq=False)
class _FolderWalk:
    folder: Folder
    coverage: Coverage = field(default_factory=Coverage)
    walkers: dict[ChainId, ChainWalker] = field(default_factory=dict)
    spans: dict[ChainId, ChainSpan] = field(default_factory=dict)


class Verifier:
    """Verifies every digest chain and log file of a store in a window."""

    def __init__(
        self,
        store: TrailStore,
        keys: KeyRing,
        *,
        start: dt.datetime | None = None,
        end: dt.datetime | None = None,
        workers: int = 4,
        log_checker: LogChecker | None = None,
        on_digest: Callable[[DigestOutcome], None] | None = None,
        on_progress: Callable[[dict[str, int]], None] | None = None,
        now: dt.datetime | None = None,
    ) -> None:
        self.store = store
        self.keys = keys
        self.window = Window(start, end, now or dt.datetime.now(dt.UTC))
        self.workers = max(1, workers)
        self.log_checker: LogChecker = log_checker or HashingLogChecker(store)
        self.on_digest = on_digest
        self.on_progress = on_progress
        self.report = VerifyReport(store.location, start, end)
        self._inflight: deque[tuple[Future[list[LogResult]], DigestOutcome]] = deque()
        self._limit = 4 * self.workers
        self._pool: ThreadPoolExecutor | None = None
        self._folders_done = 0
        self._folders_total = 0
        self._lock = threading.Lock()
        self._bucket_seen = ""

    def run(self) -> VerifyReport:
        """Verify everything in the window; the report says what was found."""
        folders = find_folders(self.store)
        c = self.report.counts
        c["folders"] = len(folders)
        c["accounts"] = len({f.account for f in folders})
        c["regions"] = len({f.region for f in folders})
        self._folders_total = len(folders)
        self._progress()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="trailrelay-verify") as pool:
            self._pool = pool
            walk: _FolderWalk | None = None
            for day in _ordered_map(pool, self._load_day, self._units(folders), ahead=2 * self.workers):
                if walk is None or walk.folder != day.unit.folder:
                    if walk is not None:
                        self._finish_folder(walk)
                    walk = _FolderWalk(day.unit.folder)
                self._walk_day(walk, day)
            if walk is not None:
                self._finish_folder(walk)
            self._drain(everything=True)
        self.report.notes.extend(self.keys.errors())
        self.report.keys = self.keys.used()
        if not folders:
            self.report.notes.append(
                f"no AWSLogs/…/CloudTrail[-Digest]/REGION/ folders found in {self.store.location}"
            )
        self._progress()
        return self.report

    # -- listing and loading (worker threads) ---------------------------------------------------

    def _units(self, folders: list[Folder]) -> Iterator[_Unit]:
        for folder in folders:
            digest_days = {
                d
                for d in day_folders(self.store, folder.digest_prefix)
                if self.window.day_in(d, digests=True)
            }
            log_days = {
                d for d in day_folders(self.store, folder.log_prefix) if self.window.day_in(d, digests=False)
            }
            days = sorted(digest_days | log_days)
            if not days:
                with self._lock:
                    self._folders_done += 1
            for day in days:
                yield _Unit(folder, day, day in digest_days, day in log_days)

    def _load_day(self, unit: _Unit) -> _Day:
        folder, day = unit.folder, unit.day
        digests: list[DigestCheck] = []
        ignored = 0
        if unit.digests:
            for key in self.store.list_keys(f"{folder.digest_prefix}{day:%Y/%m/%d}/"):
                name = parse_digest_key(key)
                if name is None or name.chain.folder != folder:
                    ignored += 1
                elif self.window.digest_in(name.end):
                    digests.append(self.check_digest(name))
        logs: list[tuple[str, dt.datetime | None]] = []
        if unit.logs:
            for key in self.store.list_keys(f"{folder.log_prefix}{day:%Y/%m/%d}/"):
                t = log_key_time(key)
                # The day folder is in the window: a name time that disagrees with it is judged too.
                if t is None or self.window.log_in(t) or _misdated(t, day, self.window.now):
                    logs.append((key, t))
        return _Day(unit, digests, logs, ignored)

    def check_digest(self, name: DigestName) -> DigestCheck:
        """Load one digest and check it on its own: format, location, key, signature."""
        bucket = self.store.bucket or ""
        check = DigestCheck(name, f"s3://{bucket or '?'}/{name.key}", bucket)
        try:
            stored = self.store.get_digest(name.key)
        except ObjectMissing:
            return self._bad(check, "digest-missing", "listed, then gone when read")
        except Exception as exc:
            return self._bad(check, "digest-unreadable", f"could not be read: {type(exc).__name__}: {exc}")
        try:
            content = _gunzip(stored.data)
            doc = parse_digest(content)
        except DigestFormatError as exc:
            return self._bad(check, "digest-invalid-format", str(exc))
        check.doc = doc
        if not bucket:  # a copy of unknown origin: trust the recorded bucket for locations only
            check.bucket = doc.digest_s3_bucket
            check.location = f"s3://{doc.digest_s3_bucket}/{name.key}"
        check.content_sha256 = hashlib.sha256(content).hexdigest()
        if doc.digest_s3_object != name.key or doc.digest_s3_bucket != check.bucket:
            return self._bad(
                check,
                "digest-moved",
                f"it records s3://{doc.digest_s3_bucket}/{doc.digest_s3_object} as its location",
            )
        meta = stored.metadata
        when = name.end
        if name.chain.backfill:
            generated = parse_time(meta.get("backfill-generation-timestamp"))
            if generated is None and not (self.store.signatures_optional and not meta):
                return self._bad(
                    check,
                    "digest-invalid-format",
                    "backfill digest without backfill-generation-timestamp metadata",
                )
            when = generated or when
        check.message = signing_string(doc, check.content_sha256)
        fingerprint, region = doc.digest_public_key_fingerprint, name.chain.folder.region
        check.public_key, check.key_problem = self.keys.lookup(fingerprint, region, when)
        check.key_unavailable = check.public_key is None and self.keys.unavailable(fingerprint, region)
        signature = meta.get("signature")
        if signature is None:
            if self.store.signatures_optional:
                check.status = Status.UNSIGNED
                return check
            return self._bad(
                check, "digest-signature-missing", "the object has no x-amz-meta-signature metadata"
            )
        check.signature = signature.lower()
        algorithm = meta.get("signature-algorithm")
        if algorithm != SIGNATURE_ALGORITHM:
            return self._bad(
                check,
                "digest-signature-invalid",
                f"signature algorithm {algorithm!r} is not {SIGNATURE_ALGORITHM}",
            )
        if check.public_key is None:
            kind = "digest-key-unavailable" if check.key_unavailable else "digest-unknown-key"
            return self._bad(check, kind, check.key_problem)
        if not signature_valid(check.public_key, signature, check.message):
            return self._bad(
                check,
                "digest-signature-invalid",
                f"the signature does not verify with key {doc.digest_public_key_fingerprint} "
                "(digest or signature altered)",
            )
        check.status = Status.VALID
        return check

    def _bad(self, check: DigestCheck, kind: str, detail: str) -> DigestCheck:
        folder = check.name.chain.folder
        check.status = Status.INVALID
        check.problem = Problem(
            kind,
            check.location,
            detail,
            folder.account,
            folder.region,
            check.name.chain.trail,
            check.location,
        )
        return check

    # -- the walk (this thread) ----------------------------------------------------------------

    def _walk_day(self, walk: _FolderWalk, day: _Day) -> None:
        self.report.counts["ignored-objects"] += day.ignored
        walk.coverage.listed(day.unit.day, day.logs)
        for d in sorted(day.digests, key=lambda d: (d.name.end, d.name.key)):
            walker = walk.walkers.get(d.name.chain)
            if walker is None:
                walker = walk.walkers[d.name.chain] = ChainWalker(d.name.chain, self.window.start)
            if not d.name.chain.backfill:  # backfill digests re-cover old hours; they prove no window
                begin = parse_time(d.doc.digest_start_time) if d.doc is not None else None
                span = walk.spans.setdefault(d.name.chain, ChainSpan())
                span.add(begin or d.name.end - dt.timedelta(hours=1), d.name.end)
            for verdict in walker.feed(d):
                self._verdict(walk, verdict)
            self._gaps(walker)
        for u in walk.coverage.release(day.unit.day - dt.timedelta(days=SLACK_DAYS)):
            self._uncovered(walk.folder, u)
        self._drain()
        self._progress()

    def _verdict(self, walk: _FolderWalk, v: Verdict) -> None:
        d = v.check
        c = self.report.counts
        # A digest whose key could not be fetched proves nothing either way, nor do its log files.
        unchecked = (
            not v.valid and bool(v.problems) and all(p.severity is Severity.UNCHECKED for p in v.problems)
        )
        c["digests-valid" if v.valid else "digests-unchecked" if unchecked else "digests-invalid"] += 1
        if v.link is Link.START:
            c["chain-starts"] += 1
        for p in v.problems:
            self.report.add(p)
        self._bucket_seen = self._bucket_seen or d.bucket
        outcome = DigestOutcome(d.location, d.name.chain, v, list(v.problems))
        if d.doc is not None:
            for entry in d.doc.log_files:
                walk.coverage.referenced(
                    entry.s3_object,
                    log_key_time(entry.s3_object),
                    valid=v.valid,
                    digest=d.location,
                    checked=not unchecked,
                )
            if v.valid:
                files = d.doc.log_files
                for i in range(0, len(files), BATCH):
                    self._submit(files[i : i + BATCH], outcome)
        if outcome.remaining == 0:
            self._emit(outcome)

    def _gaps(self, walker: ChainWalker) -> None:
        for p in walker.gap_problems:
            self.report.add(p)
            if p.kind == "digest-missing" and self.on_digest is not None:
                self.on_digest(DigestOutcome(p.location, walker.chain, None, [p]))
        walker.gap_problems.clear()

    def _uncovered(self, folder: Folder, u: Uncovered) -> None:
        bucket = self.store.bucket or self._bucket_seen or "?"
        location = f"s3://{bucket}/{u.key}"
        misdated = _misdated(u.time, u.day, self.window.now) if u.time and u.day else None
        if misdated:
            self.report.add(
                Problem(
                    "log-misdated",
                    location,
                    f"{misdated}, and no valid digest lists it: CloudTrail did not deliver it there",
                    folder.account,
                    folder.region,
                    digest=u.invalid_digest or "",
                )
            )
            return
        if u.time is not None and u.time >= self.window.now - PENDING_GRACE:
            self.report.add(
                Problem(
                    "log-pending",
                    location,
                    "delivered in the last two hours: its digest may not be due yet",
                    folder.account,
                    folder.region,
                )
            )
            return
        if u.invalid_digest:
            detail = f"listed only by {u.invalid_digest}, which did not verify"
        elif u.unchecked_digest:
            self.report.add(
                Problem(
                    "log-unchecked",
                    location,
                    f"listed only by {u.unchecked_digest}, which could not be checked",
                    folder.account,
                    folder.region,
                    digest=u.unchecked_digest,
                )
            )
            return
        else:
            detail = (
                "no digest in the window lists it (added after delivery, or delivered while "
                "validation was off)"
            )
        self.report.add(
            Problem(
                "log-not-covered",
                location,
                detail,
                folder.account,
                folder.region,
                digest=u.invalid_digest or "",
            )
        )

    def _finish_folder(self, walk: _FolderWalk) -> None:
        for chain, walker in walk.walkers.items():
            for verdict in walker.close():
                self._verdict(walk, verdict)
            self._gaps(walker)
            name = f"{chain.folder.account}/{chain.folder.region}/{chain.trail}" + (
                "/backfill" if chain.backfill else ""
            )
            self.report.chains[name] = _chain_info(chain, walker)
            span = walk.spans.get(chain)
            judged = span.judge(self.window.start, self._judged_end()) if span is not None else None
            if judged is not None:
                self.report.add_span(name, judged)
        for chain, walker in list(walk.walkers.items()):
            regular = replace(chain, backfill=False)
            if chain.backfill and regular not in walk.walkers:
                self._backfill_only(regular, walker)
        for u in walk.coverage.finish():
            self._uncovered(walk.folder, u)
        with self._lock:
            self._folders_done += 1

    def _backfill_only(self, chain: ChainId, backfill: ChainWalker) -> None:
        """Backfill digests but no regular one: they prove old hours, none of the window."""
        start = self.window.start or backfill.first_end
        judged = ChainSpan().judge(start, self._judged_end())
        if judged is None:
            return
        name = f"{chain.folder.account}/{chain.folder.region}/{chain.trail}"
        self.report.chains[name] = _chain_info(chain, None)
        self.report.add_span(name, judged)

    def _judged_end(self) -> dt.datetime:
        """The window's end for coverage: ``end`` or now, but no later than digests can have arrived."""
        due = self.window.now - PENDING_GRACE
        return min(self.window.end, due) if self.window.end is not None else due

    # -- log checks (submitted here, run on workers, results taken here) -----------------------

    def _submit(self, entries: list[LogFileEntry], outcome: DigestOutcome) -> None:
        assert self._pool is not None
        outcome.remaining += len(entries)
        self._inflight.append((self._pool.submit(self._check_logs, entries), outcome))
        if len(self._inflight) > self._limit:
            self._drain()

    def _check_logs(self, entries: list[LogFileEntry]) -> list[LogResult]:
        return [self.log_checker(entry) for entry in entries]

    def _drain(self, *, everything: bool = False) -> None:
        q = self._inflight
        while q and (everything or len(q) > self._limit or q[0][0].done()):
            future, outcome = q.popleft()
            for result in future.result():
                self._log_result(result, outcome)

    def _log_result(self, r: LogResult, outcome: DigestOutcome) -> None:
        c = self.report.counts
        outcome.logs[r.status] = outcome.logs.get(r.status, 0) + 1
        c["log-bytes"] += r.size
        c["log-bytes-compressed"] += r.compressed
        if r.status == VALID:
            c["logs-valid"] += 1
        elif r.status == NOT_FORWARDED:
            c["logs-not-forwarded"] += 1
        else:
            folder = outcome.chain.folder
            p = Problem(
                r.status,
                r.location,
                r.detail,
                folder.account,
                folder.region,
                outcome.chain.trail,
                outcome.location,
            )
            self.report.add(p)
            outcome.problems.append(p)
        outcome.remaining -= 1
        if outcome.remaining == 0:
            self._emit(outcome)
        self._progress()

    def _emit(self, outcome: DigestOutcome) -> None:
        if self.on_digest is not None:
            self.on_digest(outcome)

    def _progress(self) -> None:
        if self.on_progress is None:
            return
        c = self.report.counts
        with self._lock:
            done, total = self._folders_done, self._folders_total
        self.on_progress(
            {
                "folders_done": done,
                "folders": total,
                "digests": c["digests-valid"] + c["digests-invalid"] + c["digests-unchecked"],
                "logs": c["logs-valid"] + c["log-modified"] + c["log-missing"] + c["log-unreadable"],
                "problems": len(self.report.problems),
                "bytes": c["log-bytes"],
            }
        )


def _misdated(t: dt.datetime, day: dt.date, now: dt.datetime) -> str:
    """Why a log file's name time cannot be CloudTrail's, lying in ``day``'s folder ("" when it can)."""
    if t > now + CLOCK_SKEW:
        return f"its name time {_iso(t)} is in the future"
    if t.date() != day:
        return f"its name time {_iso(t)} is not of the {day:%Y/%m/%d} folder it lies in"
    return ""


def _gunzip(data: bytes) -> bytes:
    """A digest's content: one gzip stream (trailing bytes ignored, as the AWS CLI does)."""
    d = zlib.decompressobj(31)
    try:
        out = d.decompress(data, MAX_DIGEST_BYTES)
    except zlib.error as exc:
        raise DigestFormatError(f"not gzip: {exc}") from None
    if d.unconsumed_tail:
        raise DigestFormatError(f"expands past {MAX_DIGEST_BYTES} bytes")
    if not d.eof:
        raise DigestFormatError("truncated gzip stream")
    return out


def _ordered_map(
    pool: ThreadPoolExecutor, fn: Callable[[T], R], items: Iterable[T], *, ahead: int
) -> Iterator[R]:
    """``map(fn, items)`` on the pool, in order, with at most ``ahead`` calls queued or running."""
    queue: deque[Future[R]] = deque()
    it = iter(items)
    for item in it:
        queue.append(pool.submit(fn, item))
        if len(queue) >= ahead:
            break
    while queue:
        future = queue.popleft()
        nxt: Any = next(it, _END)
        if nxt is not _END:
            queue.append(pool.submit(fn, nxt))
        yield future.result()


_END = object()


def _iso(value: dt.datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def _chain_info(chain: ChainId, walker: ChainWalker | None) -> dict[str, Any]:
    """What the report says of a chain; ``walker`` None for one with no digest of its own."""
    return {
        "account": chain.folder.account,
        "region": chain.folder.region,
        "trail": chain.trail,
        "home_region": chain.home_region,
        "organization": chain.folder.org,
        "backfill": chain.backfill,
        "digests": walker.seen if walker else 0,
        "first_digest_end": _iso(walker.first_end) if walker else None,
        "last_digest_end": _iso(walker.last_end) if walker else None,
        "last_digest": walker.last_location if walker else None,
        "restarts": walker.restarts if walker else 0,
    }
