"""The record: a CloudTrail event's raw bytes, its routing fields and where it came from.

A record is never materialised on the hot path. The splitter hands over the exact bytes the
source held; the routing fields (about a dozen) are decoded from those bytes by msgspec into a
small struct and normalized. A transform or connector that needs the whole event calls
:meth:`Record.document`, which parses once and caches.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from trailrelay.helpers import bool_value, exact_bytes, text_value

__all__ = [
    "BAD_JSON",
    "Identity",
    "Origin",
    "Record",
    "RiskTag",
    "Routing",
    "check_utf8",
    "decode_routing",
    "identity_of",
    "why_bad",
]

_UTC = dt.UTC


class Identity(msgspec.Struct, rename="camel", frozen=True, gc=False):
    """The parts of ``userIdentity`` used for routing and tagging (shared between records: frozen)."""

    type: str | None = None
    arn: str | None = None
    account_id: str | None = None
    principal_id: str | None = msgspec.field(default=None, name="principalId")
    user_name: str | None = None
    invoked_by: str | None = None


_NO_RAW = msgspec.Raw()
"""An absent JSON value (falsy)."""


class Routing(msgspec.Struct, rename="camel", gc=False):
    """Routing fields decoded from a record; normalized by :func:`decode_routing`.

    ``category`` is derived: ``Management``, ``Data``, ``Insight`` or ``NetworkActivity``,
    from ``eventCategory`` where present and from ``managementEvent``/``eventType`` on older
    event versions. ``read_only`` is a bool even when the source wrote ``"true"``.
    """

    event_time: dt.datetime | None = None
    event_source: str | None = None
    event_name: str | None = None
    event_id: str | None = msgspec.field(default=None, name="eventID")
    event_type: str | None = None
    event_version: str | None = None
    event_category: str | None = None
    management_event: bool | None = None
    read_only: bool | str | None = None
    error_code: str | None = None
    user_identity_json: msgspec.Raw = msgspec.field(default=_NO_RAW, name="userIdentity")
    """``userIdentity`` as the record's own JSON: decoded by :attr:`user_identity` when first asked for."""
    recipient_account_id: str | None = None
    aws_region: str | None = None
    source_ip: str | None = msgspec.field(default=None, name="sourceIPAddress")
    shipped_time: dt.datetime | None = msgspec.field(default=None, name="@timestamp")
    """Logstash/Beats ``@timestamp``: stands in for eventTime when a hop removed it."""
    category: str = ""

    @property
    def user_identity(self) -> Identity | None:
        """The routing parts of ``userIdentity`` (None when absent, null or not an object).

        Decoded on first use, not with the other fields: most records never need it, and its
        seven objects a record were the largest part of the routing decode. Records of one
        identity share one (frozen) Identity.
        """
        return identity_of(self.user_identity_json)

    @property
    def user_type(self) -> str | None:
        """``userIdentity.type``; ``AWSService`` for service events that omit it."""
        ident = self.user_identity
        if ident is None:
            return None
        if ident.type is None and ident.invoked_by:
            return "AWSService"
        return ident.type

    @property
    def user_arn(self) -> str | None:
        """``userIdentity.arn`` when present."""
        ident = self.user_identity
        return ident.arn if ident is not None else None


_ROUTING = msgspec.json.Decoder(Routing)
BAD_JSON = (msgspec.DecodeError, RecursionError, UnicodeDecodeError)
"""What decoding hostile bytes can raise: malformed JSON, nesting deeper than the decoder
allows, invalid UTF-8 inside strings."""
_ANY = msgspec.json.Decoder()
_IDENTITY = msgspec.json.Decoder(Identity | None)
_IdentityEntry = tuple[msgspec.Raw, Identity | None]
_IDENTITIES: dict[bytes, Identity | None] = {}
"""Decoded identities by their JSON text: a trail repeats a few principals over and over."""
_IDENTITIES_MAX = 4096
_IDENTITY_CACHED_BYTES = 4096
_NO_IDENTITY = Identity()
"""Marks a cache miss (never returned: compared by identity)."""
_last_identity: _IdentityEntry = (_NO_RAW, None)
"""The identity asked for last, with its own copy of the bytes (it never holds a source buffer):
consecutive records mostly share one, and comparing two Raw values is cheaper than a lookup."""


def identity_of(raw: msgspec.Raw) -> Identity | None:
    """The :class:`Identity` of a ``userIdentity`` value's JSON (what ``Routing.user_identity`` returns).

    An empty ``raw`` (absent), ``null`` or anything but an object gives None; a field of an
    unexpected type is read as :func:`text_value` reads it, as the whole routing decode does.
    """
    global _last_identity  # noqa: PLW0603 - one tuple, replaced whole (safe across threads)
    if not raw:
        return None
    last = _last_identity
    if raw == last[0]:
        return last[1]
    key = bytes(raw)
    identity = _IDENTITIES.get(key, _NO_IDENTITY)
    if identity is _NO_IDENTITY:
        identity = _decode_identity(key)
        if len(key) <= _IDENTITY_CACHED_BYTES:
            if len(_IDENTITIES) >= _IDENTITIES_MAX:
                _IDENTITIES.clear()  # keep memory flat over a long run
            _IDENTITIES[key] = identity  # dict get/set are atomic: threads may share the cache
    _last_identity = (msgspec.Raw(key), identity)
    return identity


def _decode_identity(data: bytes) -> Identity | None:
    try:
        return _IDENTITY.decode(data)
    except msgspec.ValidationError:
        pass
    except BAD_JSON:  # pragma: no cover - the bytes were part of a record decoded already
        return None
    ident = _ANY.decode(data)
    if not isinstance(ident, dict):
        return None
    return Identity(
        type=text_value(ident.get("type")),
        arn=text_value(ident.get("arn")),
        account_id=text_value(ident.get("accountId")),
        principal_id=text_value(ident.get("principalId")),
        user_name=text_value(ident.get("userName")),
        invoked_by=text_value(ident.get("invokedBy")),
    )


# S3 object-level APIs logged as data events; used only for old records lacking both
# eventCategory and managementEvent (eventVersion < 1.06).
_S3_DATA_EVENTS = frozenset(
    {
        "GetObject",
        "PutObject",
        "DeleteObject",
        "DeleteObjects",
        "HeadObject",
        "CopyObject",
        "ListObjects",
        "ListObjectsV2",
        "ListObjectVersions",
        "GetObjectAcl",
        "PutObjectAcl",
        "GetObjectTagging",
        "PutObjectTagging",
        "CreateMultipartUpload",
        "UploadPart",
        "CompleteMultipartUpload",
        "AbortMultipartUpload",
        "RestoreObject",
        "SelectObjectContent",
    }
)
_CATEGORY_NAMES = {
    "management": "Management",
    "data": "Data",
    "insight": "Insight",
    "networkactivity": "NetworkActivity",
}


_CATEGORY_EXACT = {v: v for v in _CATEGORY_NAMES.values()}


def decode_routing(raw: bytes) -> Routing:
    """Decode and normalize the routing fields of one record's JSON bytes.

    Raises :class:`ValueError` when ``raw`` is not a JSON object (or not valid UTF-8).
    """
    check_utf8(raw)
    try:
        routing = _ROUTING.decode(raw)
    except msgspec.ValidationError:
        routing = _lenient(raw)
    except BAD_JSON as exc:
        raise ValueError(f"record is not valid JSON: {why_bad(exc, raw)}") from None
    _normalize(routing)
    return routing


class _IdentityJson(msgspec.Struct):
    userIdentity: msgspec.Raw = _NO_RAW  # noqa: N815 - CloudTrail's field name


_IDENTITY_JSON = msgspec.json.Decoder(_IdentityJson)


def _lenient(raw: bytes) -> Routing:
    """Slow path for records whose routing fields have unexpected types."""
    try:
        doc = _ANY.decode(raw)
    except BAD_JSON as exc:
        raise ValueError(f"record is not valid JSON: {why_bad(exc, raw)}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"record is a JSON {type(doc).__name__}, not an object")  # noqa: TRY004 - bad input
    mgmt = doc.get("managementEvent")
    return Routing(
        event_time=_time(doc.get("eventTime")),
        event_source=text_value(doc.get("eventSource")),
        event_name=text_value(doc.get("eventName")),
        event_id=text_value(doc.get("eventID")),
        event_type=text_value(doc.get("eventType")),
        event_version=text_value(doc.get("eventVersion")),
        event_category=text_value(doc.get("eventCategory")),
        management_event=mgmt if isinstance(mgmt, bool) else bool_value(mgmt),
        read_only=bool_value(doc.get("readOnly")),
        error_code=text_value(doc.get("errorCode")),
        user_identity_json=_IDENTITY_JSON.decode(raw).userIdentity,
        recipient_account_id=text_value(doc.get("recipientAccountId")),
        aws_region=text_value(doc.get("awsRegion")),
        source_ip=text_value(doc.get("sourceIPAddress")),
        shipped_time=_time(doc.get("@timestamp")),
    )


def check_utf8(raw: bytes) -> None:
    """ValueError unless ``raw`` is valid UTF-8 (msgspec does not check strings it skips)."""
    if not raw.isascii():
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"record is not valid JSON: invalid UTF-8 at byte {exc.start}") from None


_LONE_SURROGATE_AT_END = re.compile(rb'\\u[dD][89abAB][0-9a-fA-F]{2}"[\s}\]]*$')
"""A high-surrogate escape closing the text's last string: msgspec calls that "truncated"."""


def why_bad(exc: BaseException, data: bytes | None = None) -> str:
    """A short reason for a decoding failure (``data``: what was decoded, for a clearer one).

    msgspec reports a high-surrogate escape (U+D800 to U+DBFF) without its low surrogate as
    "Input data was truncated" when it closes the text's last string (elsewhere it says what is
    wrong); valid JSON syntax, but no Unicode text, so SIEMs and parsers refuse it too.
    """
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return f"invalid UTF-8 at byte {exc.start}"
    text = str(exc)
    if data is not None and text.endswith("truncated") and _LONE_SURROGATE_AT_END.search(data[-256:]):
        return "a UTF-16 high-surrogate escape without its low surrogate"
    return text


def _time(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed


def _normalize(r: Routing) -> None:
    """Derive the normalized fields in place (time in UTC, category, booleans)."""
    t = r.event_time or r.shipped_time
    if t is not None and t.tzinfo is not _UTC:  # CloudTrail writes Z; others are converted
        r.event_time = t.replace(tzinfo=_UTC) if t.tzinfo is None else t.astimezone(_UTC)
    elif t is not r.event_time:
        r.event_time = t
    ro = r.read_only
    if ro.__class__ is str:
        r.read_only = bool_value(ro)
    cat = r.event_category
    if cat:
        r.category = _CATEGORY_EXACT.get(cat) or _CATEGORY_NAMES.get(cat.lower(), cat)
    elif r.event_type == "AwsCloudTrailInsight":
        r.category = "Insight"
    elif r.management_event is not None:
        r.category = "Management" if r.management_event else "Data"
    elif r.event_source == "s3.amazonaws.com" and r.event_name in _S3_DATA_EVENTS:
        r.category = "Data"
    else:
        r.category = "Management"


_JSON_STRING = re.compile(rb'("[^"\\]*(?:\\.[^"\\]*)*")', re.DOTALL)
"""A JSON string, escapes and all (captured: ``split`` keeps the strings at the odd indexes)."""


def _one_line(raw: bytes) -> bytes:
    """``raw`` without the whitespace outside its strings, which JSON ignores.

    The record was validated: inside its strings, line breaks are escapes. Parsing and
    re-encoding instead would turn integers over 64 bits into floats and refuse numbers beyond
    a double, such as 1e400.
    """
    parts = _JSON_STRING.split(raw)
    parts[::2] = [between.translate(None, b" \t\n\r") for between in parts[::2]]
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a group of records came from: one S3 object, file, message or stream."""

    kind: str
    """``s3``, ``file``, ``sqs``, ``eventbridge``, ``firehose``, ``cloudwatch`` or ``replay``."""
    location: str
    """``s3://bucket/key``, a file path, or a stream name."""
    bucket: str | None = None
    key: str | None = None
    etag: str | None = None
    size: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain-dict form for dead-letter entries and logs."""
        return {k: v for k in self.__slots__ if (v := getattr(self, k)) is not None}


@dataclass(frozen=True, slots=True)
class RiskTag:
    """A detection that matched a record: rule id, title, severity and ATT&CK technique."""

    rule_id: str
    title: str
    severity: str
    technique: str | None = None

    def as_dict(self) -> dict[str, str]:
        """Plain-dict form, for connectors that attach tags as fields."""
        out = {"rule_id": self.rule_id, "title": self.title, "severity": self.severity}
        if self.technique:
            out["technique"] = self.technique
        return out


class Record(msgspec.Struct, eq=False):
    """One CloudTrail event as it travels through the pipeline.

    ``Record(raw, routing, origin, index=0, tags=())``. A msgspec Struct rather than a plain
    class only because one is made per event: building it costs half as much. Records compare
    by identity.
    """

    raw: bytes
    """The record's JSON bytes: the source's own bytes until a transform replaces them."""
    routing: Routing
    origin: Origin
    index: int = 0
    """Position of the record inside its origin (0-based)."""
    tags: tuple[RiskTag, ...] = ()
    modified: bool = False
    """True once a transform has replaced the document."""
    _doc: dict[str, Any] | None = None
    ticket: Any = None
    """Pipeline bookkeeping (which unit of work to acknowledge); sinks ignore it."""

    @classmethod
    def from_bytes(cls, raw: bytes, origin: Origin, index: int = 0) -> Record:
        """Build a record from one event's JSON bytes; ValueError if they are not an object."""
        return cls(raw, decode_routing(raw), origin, index)

    @classmethod
    def from_document(cls, doc: dict[str, Any], origin: Origin, index: int = 0) -> Record:
        """Build a record from an already-parsed event (EventBridge detail, tests)."""
        raw = exact_bytes(orjson.dumps(doc))
        rec = cls(raw, decode_routing(raw), origin, index)
        rec._doc = doc
        return rec

    def document(self) -> dict[str, Any]:
        """The whole event as a dict, parsed once and cached. Do not mutate it; use replace."""
        if self._doc is None:
            doc = orjson.loads(self.raw)
            if not isinstance(doc, dict):  # decode_routing already refused non-objects
                raise ValueError("record is not a JSON object")
            self._doc = doc
        return self._doc

    def replace(self, doc: dict[str, Any]) -> None:
        """Replace the event (a transform's output); raw bytes become compact JSON."""
        self._doc = doc
        self.raw = exact_bytes(orjson.dumps(doc))
        self.modified = True

    def line(self) -> bytes:
        """The event as one line of JSON: the source's own bytes.

        Bytes that span several lines lose the whitespace between tokens, nothing else: they are
        not re-encoded, so every value stays as written.
        """
        raw = self.raw
        if 10 in raw or 13 in raw:  # LF, CR (an int operand is ~10x faster than b"\n" here)
            return _one_line(raw)
        return raw

    @property
    def event_id(self) -> str | None:
        """``eventID`` of the event."""
        return self.routing.event_id

    @property
    def epoch(self) -> float | None:
        """``eventTime`` as POSIX seconds (UTC), or None when absent or invalid."""
        t = self.routing.event_time
        return t.timestamp() if t is not None else None

    @property
    def high_risk(self) -> bool:
        """True when a detection tagged the record (it takes the fast path)."""
        return bool(self.tags)

    def add_tags(self, tags: Iterable[RiskTag]) -> None:
        """Attach detection tags, keeping earlier ones."""
        self.tags = (*self.tags, *tags)

    def __repr__(self) -> str:
        r = self.routing
        return (
            f"Record({r.event_source}:{r.event_name} id={r.event_id} at {self.origin.location}#{self.index})"
        )
