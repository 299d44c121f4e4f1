"""Records to ``_bulk`` NDJSON: one ``create`` action and one document per record.

A document is the raw record's own fields, as CloudTrail names them, with three added in front::

    {"@timestamp": "<eventTime>", "cloud": {"provider": "aws", "account": {"id": ...}, "region": ...},
     "trailrelay": {"origin": "s3://...", "detections": [...], "rule_id": [...], ...},
     "eventVersion": "1.09", "userIdentity": {...}, "eventName": "StopLogging", ...}

Built by splicing: the added fields are serialized, the record's one-line JSON follows without
its opening brace, so an untouched record is never parsed here. A record that already has one of
the added keys at any depth (``@timestamp`` from Logstash, ``cloud`` from Beats) is parsed and
merged instead, so no document carries a key twice.
"""

from __future__ import annotations

import binascii
import datetime as dt
import hashlib
from collections.abc import Sequence
from typing import Any

import orjson

from trailrelay.contract import Origin, Record
from trailrelay_opensearch.config import OpenSearchConfig, Target
from trailrelay_opensearch.integrity import integrity_document, is_integrity, iso_utc

__all__ = ["BulkEncoder", "DocumentBuilder", "cut", "detections", "doc_id", "source_sizes"]

_URLSAFE = bytes.maketrans(b"+/", b"-_")
_ADDED_KEYS = (b'"@timestamp"', b'"cloud"', b'"trailrelay"')
_SEVERITY_ORDER = {"informational": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}


def doc_id(record: Record) -> str:
    """The deterministic ``_id``: a hash of recipientAccountId and eventID (of the content without one)."""
    r = record.routing
    key = (
        f"{r.recipient_account_id or ''}\x1f{r.event_id}".encode() if r.event_id else b"c\x1f" + record.line()
    )
    digest = hashlib.blake2b(key, digest_size=15).digest()
    return binascii.b2a_base64(digest, newline=False).translate(_URLSAFE).decode("ascii")


def detections(record: Record) -> dict[str, Any]:
    """Detection tags as ``trailrelay.*``: each tag in full, and rule ids, top severity, techniques."""
    tags = record.tags
    out: dict[str, Any] = {
        "detections": [t.as_dict() for t in tags],
        "rule_id": [t.rule_id for t in tags],
        "severity": max((t.severity for t in tags), key=lambda s: _SEVERITY_ORDER.get(s.lower(), -1)),
    }
    techniques = sorted({t.technique for t in tags if t.technique})
    if techniques:
        out["technique"] = techniques
    return out


def _fallback_timestamp(record: Record) -> str:
    """``@timestamp`` of a record without eventTime: a digest's end time, else now (data streams need one)."""
    value = record.document().get("digestEndTime")
    if isinstance(value, str):
        try:
            return iso_utc(dt.datetime.fromisoformat(value))
        except ValueError:
            pass
    return iso_utc(dt.datetime.now(dt.UTC))


class DocumentBuilder:
    """Builds the action line and document of one record for one configuration (thread-safe)."""

    def __init__(self, config: OpenSearchConfig) -> None:
        self.target: Target = config.target
        self.integrity_target: Target = config.integrity_target
        self._heads = {
            name: b'{"create":{"_index":' + orjson.dumps(name)
            for name in (self.target.name, self.integrity_target.name)
        }
        # Small caches of serialized fragments; dict get/set is atomic, so threads may share them.
        self._clouds: dict[tuple[str | None, str | None], bytes] = {}
        self._timestamps: dict[dt.datetime, bytes] = {}
        self._origins: dict[int, tuple[Origin, bytes]] = {}

    def target_of(self, record: Record) -> Target:
        """The data stream or index this record is written to."""
        return self.integrity_target if is_integrity(record) else self.target

    def entry(self, record: Record, *, with_id: bool = True) -> bytes:
        """The two NDJSON lines (action and document) for one record."""
        if is_integrity(record):
            the_id, doc = integrity_document(record, detections(record) if record.tags else None)
            body = orjson.dumps(doc)
            head = self._heads[self.integrity_target.name]
        else:
            the_id, body = doc_id(record), self.document(record)
            head = self._heads[self.target.name]
        action = (
            b"".join((head, b',"_id":"', the_id.encode("ascii"), b'"}}\n')) if with_id else head + b"}}\n"
        )
        return b"".join((action, body, b"\n"))

    def document(self, record: Record) -> bytes:
        """One CloudTrail record's document: its own fields plus ``@timestamp``, ``cloud``, ``trailrelay``."""
        line = record.line().strip()
        if not line.startswith(b"{"):
            raise TypeError("record is not a JSON object")
        added = self._added(record)
        if any(key in line for key in _ADDED_KEYS):
            event = orjson.loads(line)
            merged = {
                **orjson.loads(b"{" + added + b"}"),
                **{k: v for k, v in event.items() if k not in _KEYS},
            }
            return orjson.dumps(merged)
        rest = line[1:].lstrip()
        return b"{" + added + (b"}" if rest == b"}" else b"," + rest)

    def _added(self, record: Record) -> bytes:
        """``"@timestamp":...,"cloud":{...},"trailrelay":{...}`` for one record (no braces)."""
        r = record.routing
        t = r.event_time
        ts = self._timestamps.get(t) if t is not None else None
        if ts is None:
            ts = orjson.dumps(iso_utc(t) if t is not None else _fallback_timestamp(record))
            if t is not None:
                if len(self._timestamps) > 65536:
                    self._timestamps.clear()
                self._timestamps[t] = ts
        ident = r.user_identity
        account = (ident.account_id if ident is not None else None) or r.recipient_account_id
        cloud = self._clouds.get((r.aws_region, account))
        if cloud is None:
            cloud = self._cloud(r.aws_region, account)
        return b"".join((b'"@timestamp":', ts, b',"cloud":', cloud, b',"trailrelay":', self._ours(record)))

    def _ours(self, record: Record) -> bytes:
        """The ``trailrelay`` object: where the record was read, and its detection tags."""
        origin = record.origin
        if not record.tags:  # the common case: one fragment per origin, shared by its records
            cached = self._origins.get(id(origin))
            if cached is not None and cached[0] is origin:
                return cached[1]
        ours: dict[str, Any] = {"origin": origin.location} if origin.location else {}
        if record.tags:
            ours.update(detections(record))
            return orjson.dumps(ours)
        fragment = orjson.dumps(ours)
        if len(self._origins) > 4096:  # many objects pass by; keep memory flat
            self._origins.clear()
        # Keyed by identity; the entry keeps the origin alive so its id cannot be reused meanwhile.
        self._origins[id(origin)] = (origin, fragment)
        return fragment

    def _cloud(self, region: str | None, account: str | None) -> bytes:
        cloud: dict[str, Any] = {"provider": "aws"}
        if account:
            cloud["account"] = {"id": account}
        if region:
            cloud["region"] = region
        out = orjson.dumps(cloud)
        if len(self._clouds) > 4096:
            self._clouds.clear()
        self._clouds[(region, account)] = out
        return out


_KEYS = frozenset({"@timestamp", "cloud", "trailrelay"})


def cut(sizes: Sequence[int], max_bytes: int, max_actions: int) -> list[range]:
    """Consecutive index ranges whose sizes sum to at most ``max_bytes`` and ``max_actions`` items."""
    groups: list[range] = []
    start = total = 0
    for i, size in enumerate(sizes):
        if i > start and (total + size > max_bytes or i - start >= max_actions):
            groups.append(range(start, i))
            start, total = i, 0
        total += size
    if start < len(sizes):
        groups.append(range(start, len(sizes)))
    return groups


def source_sizes(body: bytes) -> list[int]:
    """Bytes of each document source in a ``_bulk`` body (every second non-empty line)."""
    lines = [line for line in body.split(b"\n") if line.strip()]
    return [len(line) for line in lines[1::2]]


class BulkEncoder:
    """The offline encoder: the exact uncompressed ``_bulk`` bodies the sink would send."""

    content_type = "application/x-ndjson"

    def __init__(self, config: OpenSearchConfig) -> None:
        self.config = config
        self.builder = DocumentBuilder(config)

    def encode(self, records: Sequence[Record]) -> list[bytes]:
        """Bodies cut by ``batch_bytes`` and ``batch_actions``; unencodable records are left out."""
        entries: list[bytes] = []
        for record in records:
            try:
                entries.append(self.builder.entry(record))
            except Exception:  # noqa: S112 - the sink reports these as REJECTED; a preview skips them
                continue
        groups = cut([len(e) for e in entries], self.config.batch_bytes, self.config.batch_actions)
        return [b"".join(entries[g.start : g.stop]) for g in groups]

    def billable_bytes(self, record: Record) -> int:
        """Ingested bytes as Amazon OpenSearch Serverless meters them: the document source, not the action."""
        entry = self.builder.entry(record)
        return len(entry) - entry.index(b"\n") - 2
