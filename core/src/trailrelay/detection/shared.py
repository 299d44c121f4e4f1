"""Correlation windows shared by forked backfill workers: every worker counts in the supervisor's.

A correlation rule (the pack's burst of denied calls, grouped by principal) must see every
matching event of its group, but ``forward --workers N`` gives each worker its own share of the
objects, and a principal's calls are spread over all of them. So, before forking, the
supervisor makes one channel per worker (a Unix socket pair); after forking it serves the
windows of its own tagger on them, and each worker's tagger counts there
(:attr:`SigmaTagger.remote`): for each chunk of records, what they feed into windows (time,
group, eventID, value) goes over in one message and the verdicts come back in one, so the
records carry the tags they would get in one process. Chunks without such records never cross,
and a worker's tagger asks for chunks of a whole object (:attr:`SigmaTagger.chunk_records`), so
an object costs one round trip, not one per 512 records.

If the supervisor cannot answer, the verdicts fail like a rule that cannot be evaluated: the
records go on untagged by the correlation, counted in the tagger's ``errors`` and logged.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import orjson

from trailrelay.detection.correlate import Observation, Window

if TYPE_CHECKING:
    from trailrelay.detection.evaluate import SigmaTagger

__all__ = ["SharedWindows"]

log = logging.getLogger("trailrelay.detection")

_LENGTH = struct.Struct("!I")
_HIT, _MISS, _FAILED = ord("1"), ord("0"), b"!"


class SharedWindows:
    """The supervisor's correlation windows and one channel per worker (made before forking)."""

    def __init__(self, windows: Sequence[Window], workers: int) -> None:
        self.windows = list(windows)
        self.rule_ids = [w.tag.rule_id for w in self.windows]
        self._channels = [socket.socketpair() for _ in range(workers)]

    # -- in the supervisor, after forking --------------------------------------------------

    def serve(self) -> None:
        """Answer every worker's chunks, one thread per channel, until the worker is gone."""
        for i, (mine, theirs) in enumerate(self._channels):
            theirs.close()  # the workers hold theirs: end of stream then means the worker ended
            threading.Thread(target=self._serve, args=(mine,), name=f"correlate-{i}", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        windows = self.windows
        while True:
            try:
                message = _receive(conn)
            except OSError:
                return
            if message is None:
                return
            try:
                reply = bytes(
                    _HIT if windows[n].count(t, tuple(key), event_id, value) else _MISS
                    for n, t, key, event_id, value in orjson.loads(message)
                )
            except Exception:  # a bad message must not end the service for the others
                log.exception("correlation: could not count a worker's observations")
                reply = _FAILED
            try:
                _send(conn, reply)
            except OSError:
                return

    def close(self) -> None:
        """Close the supervisor's ends (the serving threads then end)."""
        for mine, theirs in self._channels:
            mine.close()
            theirs.close()

    # -- in a worker -----------------------------------------------------------------------

    def attach(self, index: int, tagger: SigmaTagger) -> None:
        """Make worker ``index``'s tagger count correlations in the supervisor's windows."""
        ids = [w.tag.rule_id for w in tagger.windows]
        if ids != self.rule_ids:
            raise RuntimeError(f"correlation windows differ from the supervisor's: {ids} != {self.rule_ids}")
        for i, (mine, theirs) in enumerate(self._channels):
            mine.close()  # the supervisor's ends, inherited: not ours to use
            if i != index:
                theirs.close()
        tagger.remote = _Asker(self._channels[index][1])


class _Asker:
    """One worker's end of its channel; reader threads take turns (one question in flight)."""

    def __init__(self, conn: socket.socket) -> None:
        self._conn = conn
        self._lock = threading.Lock()

    def __call__(self, seen: list[tuple[int, Observation]]) -> list[bool]:
        message = orjson.dumps([(n, *observation) for n, observation in seen])
        with self._lock:
            _send(self._conn, message)
            reply = _receive(self._conn)
        if reply is None:
            raise RuntimeError("the supervisor is gone")
        if len(reply) != len(seen):
            raise RuntimeError("the supervisor could not count these observations")
        return [b == _HIT for b in reply]


def _send(conn: socket.socket, data: bytes) -> None:
    conn.sendall(_LENGTH.pack(len(data)) + data)


def _receive(conn: socket.socket) -> bytes | None:
    """One length-prefixed message; None at the end of the stream."""
    head = _exactly(conn, _LENGTH.size)
    if head is None:
        return None
    body = _exactly(conn, _LENGTH.unpack(head)[0])
    if body is None:
        raise OSError("the channel closed in the middle of a message")
    return body


def _exactly(conn: socket.socket, size: int) -> bytes | None:
    parts = []
    while size:
        chunk = conn.recv(min(size, 1 << 20))
        if not chunk:
            return None
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)
