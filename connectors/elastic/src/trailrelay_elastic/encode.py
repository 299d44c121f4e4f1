"""Records to ``_bulk`` NDJSON: one ``create`` action and one document per record.

``integration`` documents are built by splicing: the record's one-line JSON goes into
``message`` as a JSON string (escaped once, by orjson) between pre-serialized fragments, so an
untouched record is never parsed here. ``ecs`` documents are mapped by :mod:`.ecs` and
serialized whole.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import orjson

from trailrelay.contract import INTEGRITY_KIND, Origin, Record, cut_runs, document_id
from trailrelay_elastic.config import ElasticConfig, Target
from trailrelay_elastic.ecs import date as _date
from trailrelay_elastic.ecs import iso_utc, to_ecs
from trailrelay_elastic.integrity import integrity_document, is_integrity

__all__ = ["RULESET", "BulkEncoder", "DocumentBuilder", "doc_id", "partition_of"]

DATASET = "aws.cloudtrail"
TAGS = ["forwarded", "aws-cloudtrail"]


def doc_id(record: Record) -> str:
    """The deterministic ``_id`` (:func:`trailrelay.contract.document_id`): recipientAccountId and eventID.

    The same event reaching us twice (a replay, or from S3 and Firehose both) gets the same id,
    so ``create`` answers 409 the second time. Records without an eventID (digest files) hash
    their content instead.
    """
    return document_id(record).decode("ascii")


def partition_of(region: str | None) -> str:
    """The AWS partition of a region name (``aws``, ``aws-us-gov``, ``aws-cn``)."""
    if region:
        if region.startswith("us-gov-"):
            return "aws-us-gov"
        if region.startswith("cn-"):
            return "aws-cn"
    return "aws"


def _fallback_timestamp(record: Record) -> str:
    """``@timestamp`` for records without eventTime: a digest's end time, else now (data streams need one)."""
    try:
        end = _date(record.document().get("digestEndTime"))
    except ValueError:
        end = None
    if end:
        return end
    return iso_utc(dt.datetime.now(dt.UTC))


RULESET = "trailrelay"
"""ECS ``rule.ruleset`` of every detection trailrelay adds."""


def _one_or_many(values: list[str]) -> str | list[str]:
    return values[0] if len(values) == 1 else values


def _detections(record: Record) -> dict[str, Any]:
    """Detection tags as ECS ``rule.*`` and ``threat.*``, and in full as ``trailrelay.detections``.

    ``rule.id``/``rule.name`` hold one value per matching rule (a plain value for one rule, an
    array for several; Elasticsearch maps both the same), so Kibana and detection rules can
    filter on ``rule.ruleset: trailrelay`` and ``rule.id``.
    """
    tags = record.tags
    out: dict[str, Any] = {
        "rule": {
            "id": _one_or_many([t.rule_id for t in tags]),
            "name": _one_or_many([t.title for t in tags]),
            "ruleset": RULESET,
        },
        "trailrelay": {"detections": [t.as_dict() for t in tags]},
    }
    techniques = sorted({t.technique for t in tags if t.technique})
    if techniques:
        out["threat"] = {"framework": "MITRE ATT&CK", "technique": {"id": techniques}}
    return out


class DocumentBuilder:
    """Builds the action line and document of one record for one configuration (thread-safe)."""

    def __init__(self, config: ElasticConfig) -> None:
        self.mode = config.mode
        self.target: Target = config.target
        self.integrity_target: Target = config.integrity_target
        index = orjson.dumps(self.target.name)
        self._action_head = b'{"create":{"_index":' + index + b',"_id":"'
        integrity_index = orjson.dumps(self.integrity_target.name)
        self._integrity_head = b'{"create":{"_index":' + integrity_index + b',"_id":"'
        common: dict[str, Any] = {"event": {"dataset": DATASET}, "tags": TAGS}
        if self.target.data_stream is not None:
            kind, dataset, namespace = self.target.data_stream
            common["data_stream"] = {"type": kind, "dataset": dataset, "namespace": namespace}
        self._common = common
        # `,"event":{...},"tags":[...],"data_stream":{...}` spliced into every integration document.
        self._common_fragment = b"," + orjson.dumps(common)[1:-1]
        # Small caches of pre-serialized fragments; dict get/set is atomic, so threads may share them.
        self._origin_fragments: dict[tuple[int, str | None], tuple[Origin, bytes]] = {}
        self._clouds: dict[tuple[str | None, str | None], bytes] = {}
        self._timestamps: dict[dt.datetime, bytes] = {}
        self._origin_docs: dict[tuple[int, str | None], tuple[Origin, dict[str, Any]]] = {}

    def entry(self, record: Record) -> bytes:
        """The two NDJSON lines (action and document) for one record."""
        if record.origin.kind == INTEGRITY_KIND:
            return self._integrity_entry(record)
        if self.mode == "ecs":
            return b"".join(
                (
                    self._action_head,
                    document_id(record),
                    b'"}}\n',
                    orjson.dumps(self._ecs_document(record, shared=True)),
                    b"\n",
                )
            )
        return self._integration_entry(record)

    def _integration_entry(self, record: Record) -> bytes:
        """Action and integration document in one join (the hot path of ``integration`` mode)."""
        r = record.routing
        raw = record.raw
        # Record.line() inlined, with int operands: `10 in raw` is a memchr, `b"\n" in raw` first
        # fails to read b"\n" as an int (about 10x slower on a 1 KB record).
        line = record.line() if 10 in raw or 13 in raw else raw
        try:
            message = orjson.dumps(line.decode("utf-8"))
        except UnicodeDecodeError:  # msgspec validated UTF-8 already; keep going if a transform did not
            message = orjson.dumps(line.decode("utf-8", "replace"))
        t = r.event_time
        ts = self._timestamps.get(t) if t is not None else None
        if ts is None:
            ts = self._timestamp(record, t)
        ident = r.user_identity
        region = r.aws_region
        account = (ident.account_id if ident is not None else None) or r.recipient_account_id
        cloud = self._clouds.get((region, account))
        if cloud is None:
            cloud = self._cloud_fragment(region, account)
        origin = record.origin
        cached = self._origin_fragments.get((id(origin), region))
        fragment = (
            cached[1] if cached is not None and cached[0] is origin else self._origin_fragment(origin, region)
        )
        return b"".join(
            (
                self._action_head,
                document_id(record),
                b'"}}\n{"@timestamp":"',
                ts,
                b'","message":',
                message,
                self._common_fragment,
                cloud,
                fragment,
                b"," + orjson.dumps(_detections(record))[1:-1] + b"}\n" if record.tags else b"}\n",
            )
        )

    def _timestamp(self, record: Record, t: dt.datetime | None) -> bytes:
        ts = (iso_utc(t) if t is not None else _fallback_timestamp(record)).encode("ascii")
        if t is not None:
            if len(self._timestamps) > 65536:
                self._timestamps.clear()
            self._timestamps[t] = ts
        return ts

    def target_of(self, record: Record) -> Target:
        """The data stream or index this record is written to."""
        return self.integrity_target if is_integrity(record) else self.target

    def _integrity_entry(self, record: Record) -> bytes:
        """An integrity event: its own data stream, the same document in both modes."""
        doc_id_, doc = integrity_document(
            record, self.integrity_target, _detections(record) if record.tags else None
        )
        return b"".join((self._integrity_head, doc_id_.encode("ascii"), b'"}}\n', orjson.dumps(doc), b"\n"))

    def integration_document(self, record: Record) -> bytes:
        """The document Elastic's AWS integration expects: the raw event as ``message``."""
        return b"".join(self._integration_parts(record))

    def _integration_parts(self, record: Record) -> tuple[bytes, ...]:
        entry = self._integration_entry(record)
        return (entry[entry.index(b"\n") + 1 : -1],)

    def _cloud_fragment(self, region: str | None, account: str | None) -> bytes:
        cloud = b',"cloud":{"provider":"aws"'
        if region:
            cloud += b',"region":' + orjson.dumps(region)
        if account:
            cloud += b',"account":{"id":' + orjson.dumps(account) + b"}"
        cloud += b"}"
        if len(self._clouds) > 4096:
            self._clouds.clear()
        self._clouds[(region, account)] = cloud
        return cloud

    def ecs_document(self, record: Record) -> dict[str, Any]:
        """The ECS document (mapped here) with the data stream, provenance and detection fields."""
        return self._ecs_document(record, shared=False)

    def _ecs_document(self, record: Record, *, shared: bool) -> dict[str, Any]:
        """:meth:`ecs_document`; with ``shared``, for serializing only: parts may be cached and shared."""
        # A transform that changed the record has parsed it already (cached); otherwise parse
        # without caching, so a batch's memory does not hold every parsed event at once.
        if record.modified:
            event = record.document()
            parsed = False
        else:
            event = orjson.loads(record.raw)
            parsed = True
        if not isinstance(event, dict):
            raise TypeError("record is not a JSON object")
        # Only a fresh parse is known to hold JSON types alone (the mapping's caches need that).
        doc = to_ecs(event, shared=shared and parsed)
        if "@timestamp" not in doc:  # eventTime missing or unreadable: a data stream refuses it
            doc["@timestamp"] = _fallback_timestamp(record)
        doc["event"]["dataset"] = DATASET
        doc["tags"] = TAGS if shared else list(TAGS)
        if "data_stream" in self._common:
            doc["data_stream"] = self._common["data_stream"]
        origin = (
            self._shared_origin_fields(record.origin, record.routing.aws_region)
            if shared
            else _origin_fields(record.origin, partition_of(record.routing.aws_region))
        )
        if "aws" in origin:
            doc.setdefault("aws", {})["s3"] = origin["aws"]["s3"]
        if "log" in origin:
            doc["log"] = origin["log"]
        if record.tags:
            doc.update(_detections(record))
        return doc

    def _shared_origin_fields(self, origin: Origin, region: str | None) -> dict[str, Any]:
        """:func:`_origin_fields` of a record's origin, cached (records of one object share it; read-only)."""
        key = (id(origin), region)
        cached = self._origin_docs.get(key)
        if cached is not None and cached[0] is origin:
            return cached[1]
        fields = _origin_fields(origin, partition_of(region))
        if len(self._origin_docs) > 4096:  # many objects pass by; keep memory flat
            self._origin_docs.clear()
        # Keyed by identity, as _origin_fragments: the entry keeps the origin alive.
        self._origin_docs[key] = (origin, fields)
        return fields

    def _origin_fragment(self, origin: Origin, region: str | None) -> bytes:
        key = (id(origin), region)
        cached = self._origin_fragments.get(key)
        if cached is not None and cached[0] is origin:
            return cached[1]
        fields = _origin_fields(origin, partition_of(region))
        fragment = b"," + orjson.dumps(fields)[1:-1] if fields else b""
        if len(self._origin_fragments) > 4096:  # many objects pass by; keep memory flat
            self._origin_fragments.clear()
        # Keyed by identity (records of one object share their Origin); the entry keeps the
        # origin alive so its id cannot be reused while cached.
        self._origin_fragments[key] = (origin, fragment)
        return fragment


def _origin_fields(origin: Origin, partition: str) -> dict[str, Any]:
    """``aws.s3.*`` and ``log.file.path`` for where the record was read."""
    out: dict[str, Any] = {}
    if origin.bucket:
        s3: dict[str, Any] = {
            "bucket": {"name": origin.bucket, "arn": f"arn:{partition}:s3:::{origin.bucket}"}
        }
        if origin.key:
            s3["object"] = {"key": origin.key}
        out["aws"] = {"s3": s3}
    if origin.kind in ("s3", "file") and origin.location:
        out["log"] = {"file": {"path": origin.location}}
    return out


class BulkEncoder:
    """The offline encoder: the exact uncompressed ``_bulk`` bodies the sink would send."""

    content_type = "application/x-ndjson"

    def __init__(self, config: ElasticConfig) -> None:
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
