"""HEC event envelopes around records' own bytes, and the cutting of envelopes into request bodies.

One record becomes one envelope::

    {"time":1709374502.000,"source":"s3://bucket/key","sourcetype":"aws:cloudtrail",
     "index":"cloudtrail","host":"h","fields":{...},"event":<the record's JSON, unchanged>}

``event`` is spliced in from :meth:`Record.line` (the source's exact bytes unless a transform
replaced the record or the source held it on several lines), so nothing is re-serialised on the
hot path. A body is envelopes concatenated with a newline between them, which HEC accepts as a
batch; the newline keeps bodies readable and costs one byte per event.

Integrity events (``record.origin.kind == "integrity"``: one per CloudTrail digest checked,
not CloudTrail records) get their own sourcetype (``integrity_sourcetype``) and index
(``integrity_index``), ``time`` = the event's ``verified_at``, and ``source`` = the digest's S3 URI.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from trailrelay.contract import INTEGRITY_KIND, Record, cut_runs
from trailrelay_splunk.config import SplunkConfig

__all__ = ["FIELD_NAMES", "INTEGRITY_KIND", "EnvelopeEncoder", "verified_epoch"]


FIELD_NAMES = {
    "account": ("trailrelay_account",),
    "region": ("trailrelay_region",),
    "risk": ("trailrelay_rule", "trailrelay_severity", "trailrelay_technique"),
}
"""Indexed field names per ``fields`` group; prefixed so they never shadow the add-on's fields."""

_SEVERITY_ORDER = {"informational": 0, "info": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}
_SOURCE_CACHE_LIMIT = 4096
_HEAD_CACHE_LIMIT = 65536
_SOURCE_ESTIMATE = 200
"""Characters of ``source`` allowed for when cutting batches: an S3 URI of a CloudTrail object
is 130-190 (a 63-character bucket name, an organization ID). Erring long costs a batch a few
percent of its size; erring short costs a second, tiny request per batch."""
_TAGGED_ESTIMATE = 16
"""Bytes per record allowed for the risk fields of tagged ones (~150 bytes on a few percent)."""
_TIME_BYTES = len(b'{"time":1700000000.000,')


def verified_epoch(record: Record) -> float | None:
    """When an integrity event was verified (``verified_at``), as POSIX seconds."""
    if record.epoch is not None:  # core stamps the record with verified_at
        return record.epoch
    value = record.document().get("verified_at")
    if not isinstance(value, str):
        return None
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).timestamp()


class EnvelopeEncoder:
    """Builds HEC envelopes for records and joins them into request bodies; thread-safe."""

    content_type = "application/json"

    def __init__(self, config: SplunkConfig) -> None:
        self._max_bytes = config.batch_bytes
        self._max_events = config.batch_events
        tail = b'"sourcetype":' + orjson.dumps(config.sourcetype)
        if config.index:
            tail += b',"index":' + orjson.dumps(config.index)
        if config.host:
            tail += b',"host":' + orjson.dumps(config.host)
        self._tail = tail
        integrity = b'"sourcetype":' + orjson.dumps(config.integrity_sourcetype)
        if config.integrity_index or config.index:
            integrity += b',"index":' + orjson.dumps(config.integrity_index or config.index)
        if config.host:
            integrity += b',"host":' + orjson.dumps(config.host)
        self._integrity_tail = integrity
        self._fixed_source = b'"source":' + orjson.dumps(config.source) + b"," if config.source else None
        self._sources: dict[str, bytes] = {}
        self._heads: dict[dt.datetime, bytes] = {}
        """``{"time":<epoch>,`` per eventTime: a trail's records share few distinct seconds."""
        self._groups = tuple(config.fields)
        self._every_record = any(g in ("account", "region") for g in self._groups)
        """Indexed fields on every record (account, region); risk fields only on tagged ones."""

    @property
    def overhead(self) -> int:
        """Bytes an envelope adds to a record's own, as sent (estimated where the source varies).

        The pipeline counts it per record when it cuts batches, so a batch of ``batch_bytes``
        becomes one request instead of a full one and a small remainder.
        """
        source = len(self._fixed_source) if self._fixed_source else len(b'"source":"",') + _SOURCE_ESTIMATE
        fields = 0
        if "account" in self._groups:
            fields += len(b'"trailrelay_account":"123456789012",')
        if "region" in self._groups:
            fields += len(b'"trailrelay_region":"ap-southeast-2",')
        if fields:
            fields += len(b',"fields":{}')
        if "risk" in self._groups:
            fields += _TAGGED_ESTIMATE
        return _TIME_BYTES + source + len(self._tail) + fields + len(b',"event":}') + 1  # + the newline

    def envelope(self, record: Record) -> bytes:
        """The HEC envelope of one record; ValueError if the record cannot be encoded."""
        if record.origin.kind == INTEGRITY_KIND:
            return self._integrity_envelope(record)
        t = record.routing.event_time
        head = (self._heads.get(t) or self._head(t)) if t is not None else b"{"
        source = self._fixed_source or self._source(record.origin.location)
        fields = self._fields(record) if (self._every_record or record.tags) else b""
        return b"".join((head, source, self._tail, fields, b',"event":', record.line(), b"}"))

    def _integrity_envelope(self, record: Record) -> bytes:
        """An integrity event: its own sourcetype and index, stamped with when it was verified."""
        epoch = verified_epoch(record)
        head = b'{"time":%.3f,' % epoch if epoch is not None else b"{"
        source = self._source(record.origin.location)  # the digest: the thing that was checked
        fields = self._fields(record) if self._groups else b""
        return b"".join((head, source, self._integrity_tail, fields, b',"event":', record.line(), b"}"))

    def envelopes(self, records: Iterable[Record]) -> list[bytes]:
        """Envelopes for many records (ValueError on the first that cannot be encoded)."""
        return [self.envelope(r) for r in records]

    def bodies(self, envelopes: Sequence[bytes]) -> list[bytes]:
        """Uncompressed request bodies, cut within ``batch_bytes`` and ``batch_events``."""
        runs = cut_runs([len(e) for e in envelopes], self._max_bytes, self._max_events)
        return [b"\n".join(envelopes[run.start : run.stop]) for run in runs]

    def encode(self, records: Sequence[Record]) -> list[bytes]:
        """The uncompressed request bodies the sink would send for these records."""
        return self.bodies(self.envelopes(records))

    def _head(self, t: dt.datetime) -> bytes:
        head = b'{"time":%.3f,' % t.timestamp()
        if len(self._heads) >= _HEAD_CACHE_LIMIT:
            self._heads.clear()  # a long run passes through many seconds: keep memory flat
        self._heads[t] = head
        return head

    def _source(self, location: str) -> bytes:
        cached = self._sources.get(location)
        if cached is None:
            if len(self._sources) >= _SOURCE_CACHE_LIMIT:
                self._sources.clear()  # many small origins: keep memory bounded, not the hit rate
            cached = b'"source":' + orjson.dumps(location) + b","
            self._sources[location] = cached
        return cached

    def _fields(self, record: Record) -> bytes:
        routing = record.routing
        out: dict[str, Any] = {}
        for group in self._groups:
            if group == "account":
                account = routing.recipient_account_id
                if not account:  # userIdentity is decoded only here, when the recipient is missing
                    ident = routing.user_identity
                    account = ident.account_id if ident is not None else None
                if account:
                    out["trailrelay_account"] = account
            elif group == "region":
                if routing.aws_region:
                    out["trailrelay_region"] = routing.aws_region
            elif record.tags:
                # Indexed field values must be strings or flat lists of strings (HEC code 15).
                out["trailrelay_rule"] = [t.rule_id for t in record.tags]
                out["trailrelay_severity"] = max(
                    (t.severity for t in record.tags), key=lambda s: _SEVERITY_ORDER.get(s.lower(), -1)
                )
                techniques = sorted({t.technique for t in record.tags if t.technique})
                if techniques:
                    out["trailrelay_technique"] = techniques
        return b',"fields":' + orjson.dumps(out) if out else b""
