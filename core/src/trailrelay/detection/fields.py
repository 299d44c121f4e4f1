"""Reading a Sigma field from a record: decoded routing fields first, the parsed event otherwise.

Fields the reader already decoded (``eventSource``, ``eventName``, ``errorCode``,
``userIdentity.type`` ...) are read from ``record.routing`` without parsing the event. Any other
field is a dotted path into the parsed document (``record.document()``, parsed once and cached).
A path that meets a list continues into every element, so
``requestParameters.eventSelectors.readWriteType`` yields the value of each selector, the way
Splunk's ``{}`` fields and Elasticsearch's flattened fields behave. Empty lists and ``null`` yield
nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from trailrelay.record import Identity, Record, Routing

__all__ = ["CLOUDTRAIL_FIELDS", "FieldGetter", "field_getter", "scalar_text", "searchable_text"]

CLOUDTRAIL_FIELDS = frozenset(
    {
        "eventTime",
        "eventVersion",
        "userIdentity",
        "eventSource",
        "eventName",
        "awsRegion",
        "sourceIPAddress",
        "userAgent",
        "errorCode",
        "errorMessage",
        "requestParameters",
        "responseElements",
        "additionalEventData",
        "requestID",
        "eventID",
        "eventType",
        "apiVersion",
        "managementEvent",
        "readOnly",
        "resources",
        "recipientAccountId",
        "serviceEventDetails",
        "sharedEventID",
        "vpcEndpointId",
        "vpcEndpointAccountId",
        "eventCategory",
        "addendum",
        "sessionCredentialFromConsole",
        "edgeDeviceDetails",
        "tlsDetails",
        "eventContext",
        "insightDetails",
    }
)
"""The top-level fields of a CloudTrail record (the user guide's *CloudTrail record contents*,
management, data, network activity and Insights events). A rule field outside them is in no
CloudTrail record, so a condition on it never matches."""


def _ident(attr: str) -> Callable[[Routing], Any]:
    def get(r: Routing) -> Any:
        u: Identity | None = r.user_identity
        return getattr(u, attr) if u is not None else None

    return get


_ROUTING: dict[str, Callable[[Routing], Any]] = {
    "eventSource": lambda r: r.event_source,
    "eventName": lambda r: r.event_name,
    "eventID": lambda r: r.event_id,
    "eventType": lambda r: r.event_type,
    "eventVersion": lambda r: r.event_version,
    "eventCategory": lambda r: r.event_category,
    "managementEvent": lambda r: r.management_event,
    "readOnly": lambda r: r.read_only,
    "errorCode": lambda r: r.error_code,
    "recipientAccountId": lambda r: r.recipient_account_id,
    "awsRegion": lambda r: r.aws_region,
    "sourceIPAddress": lambda r: r.source_ip,
    "userIdentity.type": _ident("type"),
    "userIdentity.arn": _ident("arn"),
    "userIdentity.accountId": _ident("account_id"),
    "userIdentity.principalId": _ident("principal_id"),
    "userIdentity.userName": _ident("user_name"),
    "userIdentity.invokedBy": _ident("invoked_by"),
}


@dataclass(frozen=True, slots=True)
class FieldGetter:
    """How to read one field: ``one`` for a routing field (a value or None), else ``many``."""

    field: str
    one: Callable[[Record], Any] | None
    many: Callable[[Record], list[Any]] | None

    @property
    def routed(self) -> bool:
        """True when the field is read without parsing the event."""
        return self.one is not None


def field_getter(field: str) -> FieldGetter:
    """The reader for a Sigma field name (case-sensitive, as in the event)."""
    attr = _ROUTING.get(field)
    if attr is not None:
        return FieldGetter(field, _routing_reader(attr), None)
    return FieldGetter(field, None, _path_reader(field))


def _routing_reader(attr: Callable[[Routing], Any]) -> Callable[[Record], Any]:
    def one(record: Record) -> Any:
        return attr(record.routing)

    return one


def _path_reader(field: str) -> Callable[[Record], list[Any]]:
    parts = tuple(field.split("."))
    dotted = len(parts) > 1

    def many(record: Record) -> list[Any]:
        doc = record.document()
        out: list[Any] = []
        if dotted and field in doc:  # a producer that kept a dotted key (Logstash, flattened JSON)
            _leaves(doc[field], out)
        else:
            _walk(doc, parts, 0, out)
        return out

    return many


def _walk(node: Any, parts: tuple[str, ...], i: int, out: list[Any]) -> None:
    if i == len(parts):
        _leaves(node, out)
        return
    kind = type(node)
    if kind is dict:
        child = node.get(parts[i])
        if child is not None:
            _walk(child, parts, i + 1, out)
    elif kind is list:
        for item in node:
            _walk(item, parts, i, out)


def _leaves(node: Any, out: list[Any]) -> None:
    if node is None:
        return
    if type(node) is list:
        for item in node:
            _leaves(item, out)
    else:
        out.append(node)


def searchable_text(value: Any) -> str | None:
    """What a SIEM's string search sees: a scalar's text, an object's or list's compact JSON.

    Sentinel keeps ``RequestParameters`` as JSON text and Elastic indexes the object's JSON
    string, so ``requestParameters|contains: x`` matches there; it must match here too.
    """
    text = scalar_text(value)
    if text is None and isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return text


def scalar_text(value: Any) -> str | None:
    """A JSON scalar as the text a SIEM indexes (``true``/``false``, ``7``); None for objects."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[no-any-return]
    if kind is bool:
        return "true" if value else "false"
    if kind is int or kind is float:
        return str(value)
    return None
