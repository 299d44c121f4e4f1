"""CloudTrail record -> one ``AWSCloudTrail`` row (a dict of stream columns).

The hot path decodes only the fields a column needs with msgspec and keeps the JSON-bearing
fields (``requestParameters`` ...) as raw byte slices, which become the column's JSON text
without being parsed when they are already compact. Records whose fields have unexpected
types take the slow path over the parsed document; both paths give the same row.

Columns with no value are left out of the row (Log Analytics shows them empty, as it does for
Microsoft's own connector). See the README for every mapping decision.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Mapping
from typing import Any

import msgspec
import orjson

from trailrelay.contract import Record, bool_value, text_value
from trailrelay_sentinel.columns import JSON_TEXT_COLUMNS

__all__ = [
    "FIELD_LIMIT",
    "Row",
    "build_row",
    "encode_record",
    "map_document",
    "map_record",
    "row_dict",
    "trim_row",
]

FIELD_LIMIT = 64 * 1024
"""Azure Monitor truncates field values longer than 64 KB; trimming starts with those."""

_SG_EVENTS = frozenset(
    {
        "AuthorizeSecurityGroupIngress",
        "AuthorizeSecurityGroupEgress",
        "RevokeSecurityGroupIngress",
        "RevokeSecurityGroupEgress",
        "UpdateSecurityGroupRuleDescriptionsIngress",
        "UpdateSecurityGroupRuleDescriptionsEgress",
    }
)
_CATEGORY = {
    "management": "Management",
    "data": "Data",
    "insight": "Insight",
    "networkactivity": "NetworkActivity",
}


class _Attributes(msgspec.Struct, gc=False):
    creationDate: str | None = None  # noqa: N815 - CloudTrail's field names
    mfaAuthenticated: str | bool | None = None  # noqa: N815


class _Issuer(msgspec.Struct, gc=False):
    type: str | None = None
    principalId: str | None = None  # noqa: N815
    arn: str | None = None
    accountId: str | None = None  # noqa: N815
    userName: str | None = None  # noqa: N815


class _Session(msgspec.Struct, gc=False):
    sessionIssuer: _Issuer | None = None  # noqa: N815
    attributes: _Attributes | None = None
    ec2RoleDelivery: str | None = None  # noqa: N815


class _OnBehalfOf(msgspec.Struct, gc=False):
    userId: str | None = None  # noqa: N815
    identityStoreArn: str | None = None  # noqa: N815


class _Identity(msgspec.Struct, gc=False):
    type: str | None = None
    principalId: str | None = None  # noqa: N815
    arn: str | None = None
    accountId: str | None = None  # noqa: N815
    accessKeyId: str | None = None  # noqa: N815
    userName: str | None = None  # noqa: N815
    sessionContext: _Session | None = None  # noqa: N815
    invokedBy: str | None = None  # noqa: N815
    onBehalfOf: _OnBehalfOf | None = None  # noqa: N815


class _Tls(msgspec.Struct, gc=False):
    tlsVersion: str | None = None  # noqa: N815
    cipherSuite: str | None = None  # noqa: N815
    clientProvidedHostHeader: str | None = None  # noqa: N815


class _Event(msgspec.Struct, gc=False):
    # Fields in the order CloudTrail writes them: msgspec looks each key up starting after the
    # field that matched the previous key, so an event in this order finds its fields at once.
    eventVersion: str | None = None  # noqa: N815
    # Kept raw: its columns are mapped once per distinct identity (see _identity_columns).
    userIdentity: msgspec.Raw = msgspec.Raw()  # noqa: N815
    eventTime: str | None = None  # noqa: N815
    eventSource: str | None = None  # noqa: N815
    eventName: str | None = None  # noqa: N815
    awsRegion: str | None = None  # noqa: N815
    sourceIPAddress: str | None = None  # noqa: N815
    userAgent: str | None = None  # noqa: N815
    errorCode: str | None = None  # noqa: N815
    errorMessage: str | None = None  # noqa: N815
    requestParameters: msgspec.Raw = msgspec.Raw()  # noqa: N815
    responseElements: msgspec.Raw = msgspec.Raw()  # noqa: N815
    additionalEventData: msgspec.Raw = msgspec.Raw()  # noqa: N815
    requestID: str | None = None  # noqa: N815
    eventID: str | None = None  # noqa: N815
    readOnly: bool | str | None = None  # noqa: N815
    resources: msgspec.Raw = msgspec.Raw()
    eventType: str | None = None  # noqa: N815
    apiVersion: str | None = None  # noqa: N815
    managementEvent: bool | str | None = None  # noqa: N815
    recipientAccountId: str | None = None  # noqa: N815
    sharedEventID: str | None = None  # noqa: N815
    vpcEndpointId: str | None = None  # noqa: N815
    eventCategory: str | None = None  # noqa: N815
    tlsDetails: _Tls | None = None  # noqa: N815
    serviceEventDetails: msgspec.Raw = msgspec.Raw()  # noqa: N815
    insightDetails: msgspec.Raw = msgspec.Raw()  # noqa: N815


_DECODER = msgspec.json.Decoder(_Event)
_IDENTITY_DECODER = msgspec.json.Decoder(_Identity | None)
# Whitespace outside strings means the source was pretty-printed or spaced: re-serialise it.
# (A match inside a string value only costs a re-serialisation, never a wrong result.)
_NOT_COMPACT = re.compile(rb"[\n\r\t]|[:,\[{] | [\]}]")


class Row(msgspec.Struct, omit_defaults=True, gc=False):
    """One AWSCloudTrail row; fields follow :data:`~trailrelay_sentinel.columns.COLUMNS`."""

    TimeGenerated: str | None = None
    EventTime: str | None = None
    AwsEventId: str | None = None
    EventVersion: str | None = None
    EventSource: str | None = None
    EventName: str | None = None
    EventTypeName: str | None = None
    Category: str | None = None
    ManagementEvent: bool | None = None
    ReadOnly: bool | None = None
    UserIdentityType: str | None = None
    UserIdentityPrincipalid: str | None = None
    UserIdentityArn: str | None = None
    UserIdentityAccountId: str | None = None
    UserIdentityAccessKeyId: str | None = None
    UserIdentityUserName: str | None = None
    UserIdentityInvokedBy: str | None = None
    UserIdentityUserId: str | None = None
    UserIdentityStoreArn: str | None = None
    SessionMfaAuthenticated: bool | None = None
    SessionCreationDate: str | None = None
    SessionIssuerType: str | None = None
    SessionIssuerPrincipalId: str | None = None
    SessionIssuerArn: str | None = None
    SessionIssuerAccountId: str | None = None
    SessionIssuerUserName: str | None = None
    EC2RoleDelivery: str | None = None
    AWSRegion: str | None = None
    SourceIpAddress: str | None = None
    UserAgent: str | None = None
    ErrorCode: str | None = None
    ErrorMessage: str | None = None
    RequestParameters: str | None = None
    ResponseElements: str | None = None
    AdditionalEventData: str | None = None
    Resources: str | None = None
    ServiceEventDetails: str | None = None
    AwsRequestId_: str | None = None
    APIVersion: str | None = None
    RecipientAccountId: str | None = None
    SharedEventId: str | None = None
    VpcEndpointId: str | None = None
    TlsVersion: str | None = None
    CipherSuite: str | None = None
    ClientProvidedHostHeader: str | None = None
    IpProtocol: str | None = None
    SourcePort: str | None = None
    DestinationPort: str | None = None
    CidrIp: str | None = None
    TrailrelayDetections: list[dict[str, str]] | None = None


_ROW_FIELDS = Row.__struct_fields__
_ENCODER = msgspec.json.Encoder()


def encode_record(record: Record) -> bytes:
    """The record's row as JSON bytes (the hot path: no intermediate dict)."""
    return _ENCODER.encode(build_row(record))


def row_dict(row: Row) -> dict[str, Any]:
    """A Row as a dict of the columns that have a value."""
    return {f: v for f in _ROW_FIELDS if (v := getattr(row, f)) is not None}


def map_record(record: Record) -> dict[str, Any]:
    """The row for one record (stream column -> value); absent values are left out."""
    return row_dict(build_row(record))


def build_row(record: Record) -> Row:
    """The Row for one record: fast path over the raw bytes, slow path over the document."""
    if not record.modified:
        try:
            ev = _DECODER.decode(record.raw)
            last = _last_identity  # most records share the previous record's identity
            raw = ev.userIdentity
            ident = last[1] if raw == last[0] else _identity_columns(raw)
        except msgspec.ValidationError:
            row = _row_from_document(record.document(), record)
        else:
            row = _from_struct(ev, ident, record)
    else:
        row = _row_from_document(record.document(), record)
    _settle_event_time(row, record)
    return row


def _settle_event_time(row: Row, record: Record) -> None:
    """``TimeGenerated`` and ``EventTime`` as Azure reads a datetime: UTC, ``...Z``.

    CloudTrail's own text (``2023-07-10T11:45:00Z``) is kept as it is. Any other form the core
    could read (an offset, basic ISO, nine fractional digits, a Logstash ``@timestamp`` standing
    in for a missing or unreadable eventTime) is written from the core's event time. With no
    readable time at all, both are left out: Azure stamps the ingestion time, where text it
    cannot read would go into a datetime column.
    """
    t = record.routing.event_time
    text = row.TimeGenerated
    if t is None:
        row.TimeGenerated = row.EventTime = None
    elif text is None or len(text) != 20 or text[19] != "Z" or record.routing.shipped_time is not None:
        _event_time_from_routing(row, record)


def _event_time_from_routing(row: Row, record: Record) -> None:
    """The core's event time, normalized to UTC (eventTime, else a Logstash ``@timestamp``).

    Left empty, ``TimeGenerated`` would be stamped with the ingestion time by Azure, and every
    query over a time range would put the event where it was received, not where it happened.
    """
    t = record.routing.event_time
    if t is None:
        return
    if t.tzinfo is not dt.UTC:  # the core normalizes to UTC; a naive time counts as local
        t = t.astimezone(dt.UTC)
    if t.year >= 1000:  # strftime's text at half the cost (strftime does not pad a year < 1000)
        text = t.isoformat()[:-6] + "Z"  # "+00:00" -> "Z"; microseconds only when not 0, as %f
    else:
        text = t.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if t.microsecond else "%Y-%m-%dT%H:%M:%SZ")
    row.TimeGenerated = row.EventTime = text


def _detections(row: Row, record: Record) -> None:
    """Set the dynamic ``TrailrelayDetections`` column from the record's detection tags."""
    if record.tags:
        row.TrailrelayDetections = [t.as_dict() for t in record.tags]


def _json_text(raw: msgspec.Raw) -> str:
    """Compact JSON text of a raw value that is present and not null ({} and [] are kept).

    The caller skips absent and null values (an empty Raw is false; ``raw != _NULL``).
    """
    try:
        text = str(raw, "utf-8")
    except UnicodeDecodeError:
        return _json_text_bytes(bytes(raw))
    # Most values hold no whitespace at all and are kept as they are.
    if (" " in text or "\n" in text or "\t" in text or "\r" in text) and _not_compact(text):
        return orjson.dumps(orjson.loads(text)).decode()
    return text


def _not_compact(text: str) -> bool:
    """Whether :data:`_NOT_COMPACT` matches ``text``.

    Found with substring scans: the regex steps through the text a character at a time, about
    ten times slower on the values that hold a space.
    """
    return (
        "\n" in text
        or "\r" in text
        or "\t" in text
        or ": " in text
        or ", " in text
        or "[ " in text
        or "{ " in text
        or " ]" in text
        or " }" in text
    )


def _json_text_bytes(data: bytes) -> str:
    """:func:`_json_text` of bytes that are not valid UTF-8 (the same error as ever)."""
    if (32 in data or 10 in data or 9 in data or 13 in data) and _NOT_COMPACT.search(data):
        return orjson.dumps(orjson.loads(data)).decode()
    return data.decode()


_NULL = msgspec.Raw(b"null")

_IdentityColumns = tuple[
    str | None,  # UserIdentityType
    str | None,  # UserIdentityPrincipalid
    str | None,  # UserIdentityArn
    str | None,  # UserIdentityAccountId
    str | None,  # UserIdentityAccessKeyId
    str | None,  # UserIdentityUserName
    str | None,  # UserIdentityInvokedBy
    str | None,  # UserIdentityUserId
    str | None,  # UserIdentityStoreArn
    bool | None,  # SessionMfaAuthenticated
    str | None,  # SessionCreationDate
    str | None,  # SessionIssuerType
    str | None,  # SessionIssuerPrincipalId
    str | None,  # SessionIssuerArn
    str | None,  # SessionIssuerAccountId
    str | None,  # SessionIssuerUserName
    str | None,  # EC2RoleDelivery
]
_NO_IDENTITY: _IdentityColumns = (None,) * 17
_IdentityEntry = tuple[msgspec.Raw, _IdentityColumns]
_IDENTITIES: dict[bytes, _IdentityEntry] = {}
"""Identity columns by the exact bytes of ``userIdentity``: a trail repeats a few principals
and sessions over and over, so most records skip decoding and mapping them. Each entry keeps
the bytes as a Raw too, ready to become :data:`_last_identity` as it is."""
_IDENTITIES_MAX = 2048
_IDENTITY_MAX_BYTES = 2048
_last_identity: _IdentityEntry = (msgspec.Raw(), _NO_IDENTITY)
"""The previous record's identity: consecutive records mostly share it, and comparing two Raw
values costs less than the copy and hash a dict lookup needs."""


def _identity_columns(raw: msgspec.Raw) -> _IdentityColumns:
    """The 17 identity columns (``UserIdentityType`` .. ``EC2RoleDelivery``) of a raw ``userIdentity``.

    The caller has compared ``raw`` with :data:`_last_identity` already. Raises
    msgspec.ValidationError when a field has an unexpected type (the record then takes the slow
    path, as it would have if the whole event had been decoded at once).
    """
    global _last_identity  # noqa: PLW0603 - one tuple, replaced whole (safe across threads)
    if not raw:
        return _NO_IDENTITY
    key = bytes(raw)
    entry = _IDENTITIES.get(key)
    if entry is None:
        entry = (msgspec.Raw(key), _map_identity(_IDENTITY_DECODER.decode(key)))
        if len(key) <= _IDENTITY_MAX_BYTES:
            if len(_IDENTITIES) >= _IDENTITIES_MAX:
                _IDENTITIES.clear()
            _IDENTITIES[key] = entry
    _last_identity = entry
    return entry[1]


def _map_identity(ident: _Identity | None) -> _IdentityColumns:
    if ident is None:
        return _NO_IDENTITY
    utype = ident.type
    if utype is None and ident.invokedBy:
        utype = "AWSService"
    obo = ident.onBehalfOf
    user_id, store_arn = (obo.userId, obo.identityStoreArn) if obo is not None else (None, None)
    mfa = created = it = ip = ia = iacc = iname = ec2 = None
    sc = ident.sessionContext
    if sc is not None:
        attrs = sc.attributes
        if attrs is not None:
            mfa = bool_value(attrs.mfaAuthenticated)
            created = attrs.creationDate
        iss = sc.sessionIssuer
        if iss is not None:
            it, ip, ia, iacc, iname = iss.type, iss.principalId, iss.arn, iss.accountId, iss.userName
        ec2 = sc.ec2RoleDelivery
    return (
        utype,
        ident.principalId,
        ident.arn,
        ident.accountId,
        ident.accessKeyId,
        ident.userName,
        ident.invokedBy,
        user_id,
        store_arn,
        mfa,
        created,
        it,
        ip,
        ia,
        iacc,
        iname,
        ec2,
    )


def _category(event_category: str | None, record: Record) -> str | None:
    if event_category:
        return _CATEGORY.get(event_category.lower(), event_category)
    return record.routing.category or None


_CATEGORY_EXACT = {v: v for v in _CATEGORY.values()}


def _from_struct(ev: _Event, ident: _IdentityColumns, record: Record) -> Row:
    # Every column in a local, then one positional Row(...) of the first 30 columns (in COLUMNS
    # order, the identity's 17 from _identity_columns) and the rest set only when present: a
    # call with more than 30 arguments, or with *args, first builds a list and a tuple of them
    # all, which costs more than the Row itself; keyword arguments cost more still.
    category = ev.eventCategory
    if category:
        category = _CATEGORY_EXACT.get(category) or _CATEGORY.get(category.lower(), category)
    else:
        category = record.routing.category or None
    mgmt = ev.managementEvent
    if mgmt is not None and mgmt.__class__ is not bool:
        mgmt = bool_value(mgmt)
    read_only = ev.readOnly
    if read_only is not None and read_only.__class__ is not bool:
        read_only = bool_value(read_only)
    (
        user_type,
        user_principal,
        user_arn,
        user_account,
        user_key,
        user_name,
        user_invoked_by,
        user_id,
        user_store,
        mfa,
        created,
        issuer_type,
        issuer_principal,
        issuer_arn,
        issuer_account,
        issuer_name,
        ec2_delivery,
    ) = ident
    event_time = ev.eventTime
    row = Row(
        event_time,
        event_time,
        ev.eventID,
        ev.eventVersion,
        ev.eventSource,
        ev.eventName,
        ev.eventType,
        category,
        mgmt,
        read_only,
        user_type,
        user_principal,
        user_arn,
        user_account,
        user_key,
        user_name,
        user_invoked_by,
        user_id,
        user_store,
        mfa,
        created,
        issuer_type,
        issuer_principal,
        issuer_arn,
        issuer_account,
        issuer_name,
        ec2_delivery,
        ev.awsRegion,
        ev.sourceIPAddress,
        ev.userAgent,
    )
    if (value := ev.errorCode) is not None:
        row.ErrorCode = value
    if (value := ev.errorMessage) is not None:
        row.ErrorMessage = value
    # Absent and null payloads (most of them, on most events) skip the call: an empty Raw is
    # false, and comparing with a Raw of a different length stops at the lengths.
    null = _NULL
    params = None
    if (raw := ev.requestParameters) and raw != null:
        row.RequestParameters = params = _json_text(raw)
    if (raw := ev.responseElements) and raw != null:
        row.ResponseElements = _json_text(raw)
    if ((raw := ev.additionalEventData) and raw != null) or ((raw := ev.insightDetails) and raw != null):
        row.AdditionalEventData = _json_text(raw)
    if (raw := ev.resources) and raw != null:
        row.Resources = _json_text(raw)
    if (raw := ev.serviceEventDetails) and raw != null:
        row.ServiceEventDetails = _json_text(raw)
    if (value := ev.requestID) is not None:
        row.AwsRequestId_ = value
    if (value := ev.apiVersion) is not None:
        row.APIVersion = value
    if (value := ev.recipientAccountId) is not None:
        row.RecipientAccountId = value
    if (value := ev.sharedEventID) is not None:
        row.SharedEventId = value
    if (value := ev.vpcEndpointId) is not None:
        row.VpcEndpointId = value
    if (tls := ev.tlsDetails) is not None:
        row.TlsVersion = tls.tlsVersion
        row.CipherSuite = tls.cipherSuite
        row.ClientProvidedHostHeader = tls.clientProvidedHostHeader
    if record.tags:
        row.TrailrelayDetections = [t.as_dict() for t in record.tags]
    if params is not None and ev.eventName in _SG_EVENTS:
        _security_group_rule(row, orjson.loads(params))
    return row


# --- slow path: a parsed document (modified records, odd field types) -------------------------


def _dumps(value: object) -> str | None:
    if value is None:
        return None
    return orjson.dumps(value).decode()


def _sub(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = doc.get(key)
    return value if isinstance(value, Mapping) else {}


def _put(row: Row, key: str, value: object) -> None:
    if value is not None:
        setattr(row, key, value)


def map_document(doc: Mapping[str, Any], record: Record) -> dict[str, Any]:
    """The row for a parsed event (slow path); same output as the fast path for valid input."""
    row = _row_from_document(doc, record)
    _settle_event_time(row, record)
    return row_dict(row)


def _row_from_document(doc: Mapping[str, Any], record: Record) -> Row:
    row = Row()
    put = _put
    t = text_value
    put(row, "TimeGenerated", t(doc.get("eventTime")))
    put(row, "EventTime", t(doc.get("eventTime")))
    put(row, "AwsEventId", t(doc.get("eventID")))
    put(row, "EventVersion", t(doc.get("eventVersion")))
    put(row, "EventSource", t(doc.get("eventSource")))
    put(row, "EventName", t(doc.get("eventName")))
    put(row, "EventTypeName", t(doc.get("eventType")))
    put(row, "Category", _category(t(doc.get("eventCategory")), record))
    put(row, "ManagementEvent", bool_value(doc.get("managementEvent")))
    put(row, "ReadOnly", bool_value(doc.get("readOnly")))
    ident = doc.get("userIdentity")
    if isinstance(ident, Mapping):
        utype = t(ident.get("type"))
        if utype is None and ident.get("invokedBy"):
            utype = "AWSService"
        put(row, "UserIdentityType", utype)
        put(row, "UserIdentityPrincipalid", t(ident.get("principalId")))
        put(row, "UserIdentityArn", t(ident.get("arn")))
        put(row, "UserIdentityAccountId", t(ident.get("accountId")))
        put(row, "UserIdentityAccessKeyId", t(ident.get("accessKeyId")))
        put(row, "UserIdentityUserName", t(ident.get("userName")))
        put(row, "UserIdentityInvokedBy", t(ident.get("invokedBy")))
        if isinstance(ident.get("onBehalfOf"), Mapping):
            obo = _sub(ident, "onBehalfOf")
            put(row, "UserIdentityUserId", t(obo.get("userId")))
            put(row, "UserIdentityStoreArn", t(obo.get("identityStoreArn")))
        if isinstance(ident.get("sessionContext"), Mapping):
            sc = _sub(ident, "sessionContext")
            if isinstance(sc.get("attributes"), Mapping):
                attrs = _sub(sc, "attributes")
                put(row, "SessionMfaAuthenticated", bool_value(attrs.get("mfaAuthenticated")))
                put(row, "SessionCreationDate", t(attrs.get("creationDate")))
            if isinstance(sc.get("sessionIssuer"), Mapping):
                iss = _sub(sc, "sessionIssuer")
                put(row, "SessionIssuerType", t(iss.get("type")))
                put(row, "SessionIssuerPrincipalId", t(iss.get("principalId")))
                put(row, "SessionIssuerArn", t(iss.get("arn")))
                put(row, "SessionIssuerAccountId", t(iss.get("accountId")))
                put(row, "SessionIssuerUserName", t(iss.get("userName")))
            put(row, "EC2RoleDelivery", t(sc.get("ec2RoleDelivery")))
    put(row, "AWSRegion", t(doc.get("awsRegion")))
    put(row, "SourceIpAddress", t(doc.get("sourceIPAddress")))
    put(row, "UserAgent", t(doc.get("userAgent")))
    put(row, "ErrorCode", t(doc.get("errorCode")))
    put(row, "ErrorMessage", t(doc.get("errorMessage")))
    params = doc.get("requestParameters")
    put(row, "RequestParameters", _dumps(params))
    put(row, "ResponseElements", _dumps(doc.get("responseElements")))
    extra = doc.get("additionalEventData")
    put(row, "AdditionalEventData", _dumps(extra if extra is not None else doc.get("insightDetails")))
    put(row, "Resources", _dumps(doc.get("resources")))
    put(row, "ServiceEventDetails", _dumps(doc.get("serviceEventDetails")))
    put(row, "AwsRequestId_", t(doc.get("requestID")))
    put(row, "APIVersion", t(doc.get("apiVersion")))
    put(row, "RecipientAccountId", t(doc.get("recipientAccountId")))
    put(row, "SharedEventId", t(doc.get("sharedEventID")))
    put(row, "VpcEndpointId", t(doc.get("vpcEndpointId")))
    if isinstance(doc.get("tlsDetails"), Mapping):
        tls = _sub(doc, "tlsDetails")
        put(row, "TlsVersion", t(tls.get("tlsVersion")))
        put(row, "CipherSuite", t(tls.get("cipherSuite")))
        put(row, "ClientProvidedHostHeader", t(tls.get("clientProvidedHostHeader")))
    if isinstance(params, Mapping) and doc.get("eventName") in _SG_EVENTS:
        _security_group_rule(row, params)
    _detections(row, record)
    return row


def _security_group_rule(row: Row, params: object) -> None:
    """Fill IpProtocol/SourcePort/DestinationPort/CidrIp from the first rule of a SG change."""
    if not isinstance(params, Mapping):
        return
    rule: Mapping[str, Any] = params
    perms = params.get("ipPermissions")
    items = perms.get("items") if isinstance(perms, Mapping) else None
    if isinstance(items, list) and items and isinstance(items[0], Mapping):
        rule = items[0]
    cidr = rule.get("cidrIp")
    if cidr is None:
        for key, inner in (("ipRanges", "cidrIp"), ("ipv6Ranges", "cidrIpv6")):
            ranges = rule.get(key)
            found = ranges.get("items") if isinstance(ranges, Mapping) else None
            if isinstance(found, list) and found and isinstance(found[0], Mapping) and found[0].get(inner):
                cidr = found[0][inner]
                break
    _put(row, "IpProtocol", text_value(rule.get("ipProtocol")))
    _put(row, "SourcePort", text_value(rule.get("fromPort")))
    _put(row, "DestinationPort", text_value(rule.get("toPort")))
    _put(row, "CidrIp", text_value(cidr))


# --- trimming -----------------------------------------------------------------------------------

_HEAD = 8 * 1024


def trim_row(row: dict[str, Any], budget: int) -> tuple[bytes, list[str]]:
    """Shrink the largest text fields of a row until its JSON fits ``budget`` bytes.

    Each trimmed JSON column becomes a small JSON object that says so (``trailrelay_trimmed``
    with the original size and SHA-256, plus the first 8 KiB of the original text); a plain
    text column keeps its first 8 KiB followed by a ``[trimmed by trailrelay ...]`` note.
    Returns the encoded row and the names of the trimmed columns (empty if it did not fit).
    """
    trimmed: list[str] = []
    encoded = orjson.dumps(row)
    candidates = sorted(
        (k for k, v in row.items() if isinstance(v, str) and len(v) > _HEAD + 256),
        key=lambda k: len(row[k]),
        reverse=True,
    )
    for key in candidates:
        if len(encoded) <= budget:
            break
        original: str = row[key]
        raw = original.encode()
        note = {
            "field": key,
            "original_bytes": len(raw),
            "sha256": hashlib.sha256(raw).hexdigest(),
            "reason": "record over the Logs Ingestion API request limit",
        }
        head = raw[:_HEAD].decode(errors="ignore")
        if key in JSON_TEXT_COLUMNS:
            row[key] = orjson.dumps({"trailrelay_trimmed": note, "head": head}).decode()
        else:
            row[key] = f"{head} [trimmed by trailrelay: {len(raw)} bytes, sha256 {note['sha256']}]"
        trimmed.append(key)
        encoded = orjson.dumps(row)
    return encoded, trimmed
