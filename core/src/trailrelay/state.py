"""Checkpoints for listing and file sources, in an embedded SQLite file.

An object is recorded as done only after every record in it reached a final outcome in every
sink, so a crash loses nothing: objects in flight are read again on restart (at-least-once),
and objects that finished are never read twice. The SHA-256 of each object's bytes is kept
for later integrity checks against CloudTrail's digests.

Each object also records the sinks it was finished for (a row of ``sink_sets``). A run whose
config has a sink that an object was not finished for still skips the object (the other sinks
must not get it twice), but says so: one warning naming the sinks, and the skip counted as
``already-done-for-other-sinks``. Objects finished before the sinks were recorded count as
finished for the sinks of the first run that recorded its own.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path

import orjson

from trailrelay.errors import ConfigError

__all__ = ["SCHEMA_VERSION", "Checkpoints", "describe"]

SCHEMA_VERSION = 2
"""The database's ``PRAGMA user_version``. Versions before 2026-12-08 left it 0; 1 had the table
of 0; 2 records the sinks each object was finished for."""

_SCHEMA = [
    """CREATE TABLE objects (
        source  TEXT NOT NULL,
        key     TEXT NOT NULL,
        version TEXT NOT NULL,
        records INTEGER NOT NULL,
        sha256  TEXT,
        done_at REAL NOT NULL,
        sinks   INTEGER,
        PRIMARY KEY (source, key)
    )""",
    "CREATE TABLE sink_sets (id INTEGER PRIMARY KEY, names TEXT NOT NULL UNIQUE)",
]
"""Version 2. ``objects.sinks``: the ``sink_sets`` row of the sinks the object was finished for
(NULL: finished before sinks were recorded); ``names``: their names, a sorted JSON list."""

_TO_VERSION_2 = ["ALTER TABLE objects ADD COLUMN sinks INTEGER", _SCHEMA[1]]
"""From version 0 or 1 (adding a column rewrites nothing)."""

_V1_OBJECTS = ["source", "key", "version", "records", "sha256", "done_at"]
_TABLES = {
    0: {"objects": _V1_OBJECTS},
    1: {"objects": _V1_OBJECTS},
    2: {"objects": [*_V1_OBJECTS, "sinks"], "sink_sets": ["id", "names"]},
}
"""The tables (and their columns) of each schema version this trailrelay reads."""

log = logging.getLogger("trailrelay.state")

_FRESH_START = "or set [state] path to a new file (every object is then read and sent again)"


def _unusable(path: str, why: str) -> ConfigError:
    return ConfigError(f"cannot use the checkpoint database {path} ([state] path): {why}")


def _shape(db: sqlite3.Connection, path: str) -> str:
    """What the database is: new (empty), older (upgraded at open) or current.

    ConfigError for a database this trailrelay cannot use: one a newer trailrelay wrote (a higher
    version), or one whose table is not what any version made.
    """
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise _unusable(
            path,
            f"a newer trailrelay wrote it (schema version {version}, this one reads up to "
            f"{SCHEMA_VERSION}): run that version or a later one, {_FRESH_START}",
        )
    tables = db.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
    if version == 0 and not tables:
        return "new"
    for table, expected in _TABLES[version].items():
        columns = [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
        if columns != expected:
            found = f"it has no {table} table"
            if columns:
                found = f"its {table} table has the columns {', '.join(columns)}"
            raise _unusable(
                path, f"{found}: not a checkpoint database trailrelay made; move it aside {_FRESH_START}"
            )
    return "current" if version == SCHEMA_VERSION else "older"


def describe(path: Path | str) -> str:
    """What the checkpoint database at ``path`` holds, read only (``trailrelay check``).

    ConfigError when it cannot be used, in the words of :class:`Checkpoints`.
    """
    where = str(path)
    if not Path(where).exists():
        return f"{where} will be made at the first run"
    try:
        db = sqlite3.connect(f"{Path(where).resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            shape = _shape(db, where)
            done = 0 if shape == "new" else int(db.execute("SELECT COUNT(*) FROM objects").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise _unusable(where, str(exc)) from None
    upgrade = " (made by an older trailrelay: upgraded at the next run)" if shape == "older" else ""
    return f"{where}: {done:,} object{'' if done == 1 else 's'} finished{upgrade}"


def _while_locked(step: Callable[[], object], seconds: float = 30.0) -> None:
    """Run ``step``, again while another process holds the database (``--workers`` start together).

    Switching a new database to WAL can answer "database is locked" at once, without waiting
    on the connection's busy timeout, when another worker opens it at the same moment.
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


class Checkpoints:
    """Which objects of which source are finished, and for which sinks; safe to use from several threads.

    ``sinks``: the names of the run's sinks, recorded with every object it finishes and compared
    by :meth:`skip_reason` with those an object was finished for (None: not recorded, not compared).
    """

    def __init__(self, path: Path | str, sinks: Collection[str] | None = None) -> None:
        """Open (or create) the database; ConfigError naming ``path`` when it cannot be used.

        A new database is stamped with :data:`SCHEMA_VERSION`, an older one is upgraded in one
        transaction; one from a newer trailrelay, or of an unknown shape, is refused before
        anything in it changes.
        """
        self.path = str(path)
        self.sinks = frozenset(sinks) if sinks is not None else None
        self._lock = threading.Lock()
        self._set_id: int | None = None
        """The ``sink_sets`` row of ``sinks``."""
        self._sets: dict[int | None, frozenset[str] | None] = {}
        """Sink sets read so far; None (objects finished before sinks were recorded): the first set."""
        self._warned: set[frozenset[str]] = set()
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise _unusable(self.path, str(exc)) from None
        try:
            _while_locked(self._set_up)
            _while_locked(lambda: self._db.execute("PRAGMA journal_mode=WAL"))
            self._db.execute("PRAGMA synchronous=NORMAL")
        except (OSError, sqlite3.Error) as exc:
            self._db.close()
            raise _unusable(self.path, str(exc)) from None
        except ConfigError:
            self._db.close()
            raise

    def _set_up(self) -> None:
        """Make the tables of a new database, upgrade an older one, refuse one of another shape.

        Then record this run's sinks (their ``sink_sets`` row).
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            shape = _shape(self._db, self.path)
            steps = {"new": _SCHEMA, "older": _TO_VERSION_2, "current": []}[shape]
            for statement in steps:
                self._db.execute(statement)
            if steps:
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            if self.sinks is not None:
                names = orjson.dumps(sorted(self.sinks)).decode()
                self._db.execute("INSERT OR IGNORE INTO sink_sets (names) VALUES (?)", (names,))
                row = self._db.execute("SELECT id FROM sink_sets WHERE names = ?", (names,)).fetchone()
                self._set_id = int(row[0])
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def skip_reason(self, source: str, key: str, version: str) -> str | None:
        """Why this object is skipped; None when it was not finished at this version (etag or size+mtime).

        ``already-done``; or ``already-done-for-other-sinks`` when some of this run's sinks were not
        among those it was finished for: they will not get it (warned once a run).
        """
        with self._lock:
            row = self._db.execute(
                "SELECT version, sinks FROM objects WHERE source = ? AND key = ?", (source, key)
            ).fetchone()
            if row is None or row[0] != version:
                return None
            made_for = self._sink_set(row[1])
            if self.sinks is None or made_for is None or self.sinks <= made_for:
                return "already-done"
            missing = self.sinks - made_for
            warn = missing not in self._warned
            self._warned.add(missing)
        if warn:
            log.warning(
                "objects finished for sink(s) %s only are skipped: sink(s) %s will not get them "
                "(sending them again would duplicate them in the others; counted as "
                "already-done-for-other-sinks). To give %s a backfill, forward to it from a config "
                "of its own whose [state] path is a new file (this run's is %s)",
                ", ".join(sorted(made_for)),
                ", ".join(sorted(missing)),
                ", ".join(sorted(missing)),
                self.path,
            )
        return "already-done-for-other-sinks"

    def _sink_set(self, set_id: int | None) -> frozenset[str] | None:
        """The sink names of a ``sink_sets`` row (None: unknown, taken as every sink); lock held."""
        if set_id not in self._sets:
            if set_id is None:  # finished before sinks were recorded: for the first run that did
                row = self._db.execute("SELECT names FROM sink_sets ORDER BY id LIMIT 1").fetchone()
            else:
                row = self._db.execute("SELECT names FROM sink_sets WHERE id = ?", (set_id,)).fetchone()
            self._sets[set_id] = frozenset(orjson.loads(row[0])) if row is not None else None
        return self._sets[set_id]

    def mark_done(self, source: str, key: str, version: str, records: int, sha256: str | None) -> None:
        """Record an object as finished (durable when this returns)."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO objects (source, key, version, records, sha256, done_at, sinks)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (source, key, version, records, sha256, time.time(), self._set_id),
            )

    def adopt(self, source: str) -> int:
        """File under ``source`` the objects of every longer source id starting with it; how many.

        An S3 listing's id was once its bucket and prefix (``s3://b/AWSLogs/``); it is now the
        bucket's (``s3://b/``), whatever prefix found an object, so what earlier versions finished
        stays finished. Where two ids hold one key, the object finished last is kept.
        """
        above = (source, source + "\U0010ffff")  # the ids that start with ``source``, but itself
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO objects (source, key, version, records, sha256, done_at, sinks)"
                    " SELECT ?, key, version, records, sha256, done_at, sinks FROM objects"
                    " WHERE source > ? AND source < ? ORDER BY done_at"
                    " ON CONFLICT (source, key) DO UPDATE SET version = excluded.version,"
                    " records = excluded.records, sha256 = excluded.sha256, done_at = excluded.done_at,"
                    " sinks = excluded.sinks"
                    " WHERE excluded.done_at >= objects.done_at",
                    (source, *above),
                )
                gone = self._db.execute("DELETE FROM objects WHERE source > ? AND source < ?", above)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return int(gone.rowcount)

    def count(self, source: str | None = None) -> int:
        """Number of finished objects (of one source, or all)."""
        with self._lock:
            if source is None:
                return int(self._db.execute("SELECT COUNT(*) FROM objects").fetchone()[0])
            row = self._db.execute("SELECT COUNT(*) FROM objects WHERE source = ?", (source,)).fetchone()
            return int(row[0])

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
