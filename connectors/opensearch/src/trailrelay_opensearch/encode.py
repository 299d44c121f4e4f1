"""Records to ``_bulk`` NDJSON: one ``create`` action and one document per record.

A document is the raw record's own fields, as CloudTrail names them, with three added in front::

    {"@timestamp": "<eventTime>", "cloud": {"provider": "aws", "account": {"id": ...}, "region": ...},
     "trailrelay": {"origin": "s3://...", "detections": [...], "rule_id": [...], ...},
     "eventVersion": "1.09", "userIdentity": {...}, "eventName": "StopLogging", ...}

Built by splicing bytes: the added fields are serialized (per origin, account and region they
are cached), the record's own JSON follows without its opening brace, so an untouched record is
never parsed here. A pretty-printed record is put on one line by deleting each line break and
the indentation after it: a raw line break can only stand between JSON tokens (inside a string
it must be escaped), so this never touches a value and costs no parse. A record that already
has one of the added keys at its top level (``@timestamp`` from Logstash, ``cloud`` from Beats)
is parsed and merged instead, so no document carries a key twice. Finding out costs one
msgspec pass that skips every value it is not asked for (cheaper than three substring scans).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from typing import Any

import msgspec
import orjson

from trailrelay.contract import INTEGRITY_KIND, Origin, Record, cut_runs, document_id, exact_bytes
from trailrelay_opensearch.config import OpenSearchConfig, Target
from trailrelay_opensearch.integrity import integrity_document, is_integrity, iso_utc

__all__ = ["BulkEncoder", "DocumentBuilder", "detections", "doc_id", "one_line", "source_sizes"]

_BREAKS = re.compile(rb"[\r\n][\t\n\r ]*")
"""A line break and the indentation after it: whitespace between tokens, never inside a string."""


class _AddedKeys(msgspec.Struct):
    """The record's own top-level keys that the document adds too (absent: empty)."""

    timestamp: msgspec.Raw = msgspec.field(name="@timestamp", default=msgspec.Raw(b""))
    cloud: msgspec.Raw = msgspec.Raw(b"")
    trailrelay: msgspec.Raw = msgspec.Raw(b"")


_ADDED_KEYS = msgspec.json.Decoder(_AddedKeys)


def _has_added_keys(line: bytes) -> bool:
    """True when the JSON object has ``@timestamp``, ``cloud`` or ``trailrelay`` at its top level."""
    try:
        top = _ADDED_KEYS.decode(line)
    except msgspec.DecodeError:
        return True  # not an object we can splice: the careful path decides
    return bool(top.timestamp or top.cloud or top.trailrelay)


_SEVERITY_ORDER = {"informational": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}


def doc_id(record: Record) -> str:
    """The deterministic ``_id``: a hash of recipientAccountId and eventID (of the content without one)."""
    return document_id(record, _CONTENT_TAG).decode("ascii")


_CONTENT_TAG = b"c"
"""What OpenSearch's ids of records without an eventID hash before their compact JSON (never change)."""


def one_line(record: Record) -> bytes:
    """The record's JSON on one line, spliced from its own bytes (no parse for pretty-printed ones)."""
    raw = record.raw
    if 10 in raw or 13 in raw:  # LF, CR (int operands: a memchr)
        raw = _BREAKS.sub(b"", raw)
    if raw[:1] != b"{" or raw[-1:] != b"}":
        raw = raw.strip(b" \t")
    return raw


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
        self._tails: dict[tuple[int, str | None, str | None], tuple[Origin, bytes]] = {}
        """(origin identity, region, account) -> ``,"cloud":...,"trailrelay":...,`` of untagged records."""

    def target_of(self, record: Record) -> Target:
        """The data stream or index this record is written to."""
        return self.integrity_target if is_integrity(record) else self.target

    def entry(self, record: Record, *, with_id: bool = True) -> bytes:
        """The two NDJSON lines (action and document) for one record."""
        if record.origin.kind == INTEGRITY_KIND:
            the_id, doc = integrity_document(record, detections(record) if record.tags else None)
            head = self._heads[self.integrity_target.name]
            if not with_id:
                return b"".join((head, b"}}\n", orjson.dumps(doc), b"\n"))
            return b"".join((head, b',"_id":"', the_id.encode("ascii"), b'"}}\n', orjson.dumps(doc), b"\n"))
        head = self._heads[self.target.name]
        if with_id and not record.tags:  # the common case, spliced in one join
            raw = record.raw
            if 10 in raw:  # a lone \r is JSON whitespace and no line break for _bulk
                raw = _BREAKS.sub(b"", raw)
            r = record.routing
            t = r.event_time
            if raw[:2] == b'{"' and raw[-1:] == b"}" and t is not None and not _has_added_keys(raw):
                ts = self._timestamps.get(t)
                if ts is None:
                    ts = self._timestamp(t)
                ident = r.user_identity
                account = (ident.account_id if ident is not None else None) or r.recipient_account_id
                origin = record.origin
                cached = self._tails.get((id(origin), r.aws_region, account))
                if cached is None or cached[0] is not origin:
                    tail = self._tail(record, r.aws_region, account)
                else:
                    tail = cached[1]
                return b"".join(
                    (
                        head,
                        b',"_id":"',
                        document_id(record, _CONTENT_TAG),
                        b'"}}\n{"@timestamp":',
                        ts,
                        tail,
                        raw[1:],
                        b"\n",
                    )
                )
        id_part = (b',"_id":"', document_id(record, _CONTENT_TAG), b'"}}\n') if with_id else (b"}}\n",)
        return b"".join((head, *id_part, *self._document_parts(record), b"\n"))

    def _timestamp(self, t: dt.datetime) -> bytes:
        # a fresh exact-size bytes: orjson's output keeps its whole ~4 KB buffer, and this is cached
        ts = b'"' + iso_utc(t).encode("ascii") + b'"'
        if len(self._timestamps) > 65536:
            self._timestamps.clear()
        self._timestamps[t] = ts
        return ts

    def _tail(self, record: Record, region: str | None, account: str | None) -> bytes:
        """``,"cloud":...,"trailrelay":...,`` of an untagged record, cached per origin, region, account."""
        cloud = self._clouds.get((region, account))
        if cloud is None:
            cloud = self._cloud(region, account)
        tail = b"".join((b',"cloud":', cloud, b',"trailrelay":', self._ours(record), b","))
        if len(self._tails) > 4096:  # many objects pass by; keep memory flat
            self._tails.clear()
        # Keyed by identity; the entry keeps the origin alive so its id cannot be reused meanwhile.
        self._tails[(id(record.origin), region, account)] = (record.origin, tail)
        return tail

    def document(self, record: Record) -> bytes:
        """One CloudTrail record's document: its own fields plus ``@timestamp``, ``cloud``, ``trailrelay``."""
        return b"".join(self._document_parts(record))

    def _document_parts(self, record: Record) -> tuple[bytes, ...]:
        line = one_line(record)
        if line[:1] != b"{":
            raise TypeError("record is not a JSON object")
        added = self._added(record)
        if _has_added_keys(line):
            event = orjson.loads(line)
            merged = {
                **orjson.loads(b"{" + added + b"}"),
                **{k: v for k, v in event.items() if k not in _KEYS},
            }
            return (orjson.dumps(merged),)
        if line[1:2] != b'"':  # whitespace after the brace, or an empty object
            rest = line[1:].lstrip()
            return (b"{", added, b"}") if rest == b"}" else (b"{", added, b",", rest)
        return (b"{", added, b",", line[1:])

    def _added(self, record: Record) -> bytes:
        """``"@timestamp":...,"cloud":{...},"trailrelay":{...}`` for one record (no braces)."""
        r = record.routing
        t = r.event_time
        ts = self._timestamps.get(t) if t is not None else None
        if ts is None:
            ts = self._timestamp(t) if t is not None else orjson.dumps(_fallback_timestamp(record))
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
        fragment = exact_bytes(orjson.dumps(ours))
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
        out = exact_bytes(orjson.dumps(cloud))
        if len(self._clouds) > 4096:
            self._clouds.clear()
        self._clouds[(region, account)] = out
        return out


_KEYS = frozenset({"@timestamp", "cloud", "trailrelay"})


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
        groups = cut_runs(
            [len(e) for e in entries], self.config.batch_bytes, self.config.batch_actions, separator_bytes=0
        )
        return [b"".join(entries[g.start : g.stop]) for g in groups]

    def billable_bytes(self, record: Record) -> int:
        """Ingested bytes as Amazon OpenSearch Serverless meters them: the document source, not the action."""
        entry = self.builder.entry(record)
        return len(entry) - entry.index(b"\n") - 2
