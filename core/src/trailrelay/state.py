"""Checkpoints for listing and file sources, in an embedded SQLite file.

An object is recorded as done only after every record in it reached a final outcome in every
sink, so a crash loses nothing: objects in flight are read again on restart (at-least-once),
and objects that finished are never read twice. The SHA-256 of each object's bytes is kept
for later integrity checks against CloudTrail's digests.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from trailrelay.errors import ConfigError

__all__ = ["SCHEMA_VERSION", "Checkpoints", "describe"]

SCHEMA_VERSION = 1
"""The database's ``PRAGMA user_version``. Versions before 2026-12-08 left it 0, with the same table."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    source  TEXT NOT NULL,
    key     TEXT NOT NULL,
    version TEXT NOT NULL,
    records INTEGER NOT NULL,
    sha256  TEXT,
    done_at REAL NOT NULL,
    PRIMARY KEY (source, key)
);
"""

_COLUMNS = ["source", "key", "version", "records", "sha256", "done_at"]
"""The objects table's columns, in both version 0 and version 1."""

_FRESH_START = "or set [state] path to a new file (every object is then read and sent again)"


def _unusable(path: str, why: str) -> ConfigError:
    return ConfigError(f"cannot use the checkpoint database {path} ([state] path): {why}")


def _shape(db: sqlite3.Connection, path: str) -> str:
    """What the database is: new (empty), unstamped (made before versions were stamped) or current.

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
    columns = [row[1] for row in db.execute("PRAGMA table_info(objects)")]
    if columns != _COLUMNS:
        found = "it has no objects table"
        if columns:
            found = f"its objects table has the columns {', '.join(columns)}"
        raise _unusable(
            path, f"{found}: not a checkpoint database trailrelay made; move it aside {_FRESH_START}"
        )
    return "unstamped" if version == 0 else "current"


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
    upgrade = " (made by an older trailrelay: upgraded at the next run)" if shape == "unstamped" else ""
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
    """Which objects of which source are finished; safe to use from several threads."""

    def __init__(self, path: Path | str) -> None:
        """Open (or create) the database; ConfigError naming ``path`` when it cannot be used.

        A new database is stamped with :data:`SCHEMA_VERSION`, one made before versions were
        stamped gets its stamp; one from a newer trailrelay, or of an unknown shape, is refused
        before anything in it changes.
        """
        self.path = str(path)
        self._lock = threading.Lock()
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
        """Make the table of a new database, stamp an unstamped one; refuse one of another shape."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            shape = _shape(self._db, self.path)
            if shape == "new":
                self._db.execute(_SCHEMA)
            if shape != "current":
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def is_done(self, source: str, key: str, version: str) -> bool:
        """True when this object, at this version (etag or size+mtime), was finished before."""
        with self._lock:
            row = self._db.execute(
                "SELECT version FROM objects WHERE source = ? AND key = ?", (source, key)
            ).fetchone()
        return row is not None and row[0] == version

    def mark_done(self, source: str, key: str, version: str, records: int, sha256: str | None) -> None:
        """Record an object as finished (durable when this returns)."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO objects (source, key, version, records, sha256, done_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (source, key, version, records, sha256, time.time()),
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
                    "INSERT INTO objects (source, key, version, records, sha256, done_at)"
                    " SELECT ?, key, version, records, sha256, done_at FROM objects"
                    " WHERE source > ? AND source < ? ORDER BY done_at"
                    " ON CONFLICT (source, key) DO UPDATE SET version = excluded.version,"
                    " records = excluded.records, sha256 = excluded.sha256, done_at = excluded.done_at"
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
