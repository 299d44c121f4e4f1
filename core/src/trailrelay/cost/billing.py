"""What each SIEM bills for a record, read from the request bodies its connector would send.

Rules (checked against each vendor's documentation; see docs in ``trailrelay cost --help``):

* **Splunk** licenses the raw event data the indexer ingests (``_raw``), not the HEC envelope:
  for a JSON object ``event`` that is its JSON text, for a string ``event`` the string.
  Indexed ``fields``, ``time``, ``source``, ``sourcetype`` and ``host`` are metadata.
* **Microsoft Sentinel** (Azure Monitor Logs) bills, per record, the size of the string
  representation of the columns stored for it, in decimal GB, excluding the standard columns
  ``_ResourceId``, ``_SubscriptionId``, ``_ItemId``, ``_IsBillable``, ``_BilledSize`` and
  ``Type``. ``TenantId`` and ``TimeGenerated`` are stored and billed. We count each value's
  UTF-8 length as sent (datetimes as their ISO text), booleans as ``true``/``false``, plus the
  36-character ``TenantId`` the workspace adds.
* **Elastic** (serverless) meters the ingested document volume: we count each document
  source line of the ``_bulk`` body (not the action line); the enriched volume and the on-disk
  size are estimates from the price table's assumptions.

A connector declares its rule with the optional plugin hook ``billing_rule() -> BillingRule``
(:mod:`trailrelay.contract`): the unit, the documented rule, how to read each record's billable
bytes from a request body, and which price-table assumption turns them into an on-disk estimate.
It may also offer ``billable_bytes(record) -> int`` on its encoder, which is used when present.
The rules above are kept here only as the fallback for connector releases without the hook
(and as the reference the connectors' own tests compare with).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import msgspec

from trailrelay.contract import BillingRule, Encoder, Record

__all__ = [
    "SENTINEL_TENANT_ID_BYTES",
    "SENTINEL_UNBILLED_COLUMNS",
    "BillingRule",
    "Meter",
    "billing_rule",
    "elastic_source_sizes",
    "line_sizes",
    "plugin_billing_rule",
    "sentinel_row_size",
    "sentinel_row_sizes",
    "splunk_event_sizes",
]

SENTINEL_UNBILLED_COLUMNS = frozenset(
    {"_ResourceId", "_SubscriptionId", "_ItemId", "_IsBillable", "_BilledSize", "Type"}
)
"""Standard columns Azure Monitor leaves out of a record's billed size (cost-logs, "Excluded columns")."""

SENTINEL_TENANT_ID_BYTES = 36
"""``TenantId`` (the workspace GUID) is stored with every record and is not an excluded column."""


class _Envelope(msgspec.Struct):
    event: msgspec.Raw = msgspec.Raw(b"")


_ENVELOPE = msgspec.json.Decoder(_Envelope)
_ROWS = msgspec.json.Decoder(list[dict[str, Any]])
_STRING = msgspec.json.Decoder(str)


def _pieces(body: bytes) -> Iterable[bytes]:
    """Concatenated JSON objects of an HEC body (newline-separated, as every HEC client sends)."""
    for piece in body.split(b"\n"):
        if piece.strip():
            yield piece


def splunk_event_sizes(body: bytes) -> list[int]:
    """Licensed bytes of each event in an HEC ``/services/collector/event`` body."""
    out: list[int] = []
    for piece in _pieces(body):
        raw = bytes(_ENVELOPE.decode(piece).event)
        if raw[:1] == b'"':
            out.append(len(_STRING.decode(raw).encode("utf-8")))
        else:
            out.append(len(raw))
    return out


def _value_size(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        return 4 if value else 5
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    if isinstance(value, (int, float)):
        return len(repr(value))
    return len(msgspec.json.encode(value))  # dynamic column: its JSON text


def sentinel_row_size(row: Mapping[str, Any]) -> int:
    """Billed bytes of one stored row: its columns' string sizes, without the unbilled columns."""
    size = SENTINEL_TENANT_ID_BYTES
    for column, value in row.items():
        if column not in SENTINEL_UNBILLED_COLUMNS:
            size += _value_size(value)
    return size


def sentinel_row_sizes(body: bytes) -> list[int]:
    """Billed bytes of each row of a Logs Ingestion API body (a JSON array of rows)."""
    return [sentinel_row_size(row) for row in _ROWS.decode(body)]


def elastic_source_sizes(body: bytes) -> list[int]:
    """Bytes of each document source in a ``_bulk`` body (every second non-empty line)."""
    lines = [line for line in body.split(b"\n") if line.strip()]
    return [len(line) for line in lines[1::2]]


def line_sizes(body: bytes) -> list[int]:
    """Bytes of each NDJSON line (archives, stdout and unknown NDJSON sinks)."""
    return [len(line) for line in body.split(b"\n") if line.strip()]


_LEGACY_RULES: dict[str, BillingRule] = {
    "splunk": BillingRule(
        "indexed raw event bytes",
        "Splunk licenses _raw: the event JSON as indexed, not the HEC envelope or indexed fields",
        splunk_event_sizes,
    ),
    "sentinel": BillingRule(
        "billed column bytes",
        "Azure Monitor bills each stored column's string size (TimeGenerated and TenantId "
        "included; _ResourceId, _SubscriptionId, _ItemId, _IsBillable, _BilledSize, Type excluded)",
        sentinel_row_sizes,
    ),
    "elastic": BillingRule(
        "ingested document bytes",
        "Elastic meters ingested document volume: the _bulk document source, not the action line",
        elastic_source_sizes,
        disk_ratio="elastic_disk_ratio",
    ),
}
"""Rules of the first three connectors for releases without ``billing_rule()``."""


def _body_sizes(content_type: str) -> Callable[[bytes], list[int]]:
    return line_sizes if content_type.startswith("application/x-ndjson") else lambda b: [len(b)]


def _generic(content_type: str) -> BillingRule:
    if content_type.startswith("application/x-ndjson"):
        return BillingRule("line bytes", "no billing rule known: NDJSON line sizes", line_sizes)
    return BillingRule("request bytes", "no billing rule known: request body sizes", lambda b: [len(b)])


def billing_rule(siem: str, content_type: str) -> BillingRule:
    """The fallback rule of a sink type whose plugin declares none.

    The first three connectors' own (their releases before the hook), else NDJSON lines for
    NDJSON sinks and whole bodies for others.
    """
    known = _LEGACY_RULES.get(siem)
    return known if known is not None else _generic(content_type)


def plugin_billing_rule(plugin: Any) -> BillingRule | None:
    """The rule a plugin declares with its optional ``billing_rule()`` hook, or None."""
    hook = getattr(plugin, "billing_rule", None)
    if not callable(hook):
        return None
    rule = hook()
    if not isinstance(rule, BillingRule):
        raise TypeError(f"billing_rule() returned {type(rule).__name__}, not a BillingRule")
    return rule


class Meter:
    """Per-record billable and sent bytes for one sink type, from its real encoder.

    ``rule`` is the plugin's declared :class:`BillingRule` (:func:`plugin_billing_rule`); without
    one, :func:`billing_rule` supplies the fallback.
    """

    def __init__(self, siem: str, encoder: Encoder, rule: BillingRule | None = None) -> None:
        self.siem = siem
        self.encoder = encoder
        self.rule = rule or billing_rule(siem, encoder.content_type)
        hook = getattr(encoder, "billable_bytes", None)
        self._hook: Callable[[Record], int] | None = hook if callable(hook) else None
        self._sizes: Callable[[bytes], list[int]] = self.rule.sizes or _body_sizes(encoder.content_type)
        self.failures = 0
        self.last_error: str | None = None

    @classmethod
    def for_plugin(cls, siem: str, plugin: Any, config: Any) -> Meter:
        """A meter from a plugin and a validated config, with the plugin's declared rule."""
        return cls(siem, plugin.encoder(config), plugin_billing_rule(plugin))

    def measure(self, record: Record) -> tuple[int, int]:
        """(billable bytes, request-body bytes) for one record; (0, 0) when it cannot be encoded."""
        try:
            bodies = self.encoder.encode([record])
        except Exception as exc:  # a record the connector would reject is billed nothing
            self._fail(exc)
            return 0, 0
        sent = sum(len(b) for b in bodies)
        if not bodies:
            self._fail(ValueError("the encoder produced no request for the record"))
            return 0, 0
        if self._hook is not None:
            return int(self._hook(record)), sent
        try:
            return sum(s for body in bodies for s in self._sizes(body)), sent
        except (msgspec.DecodeError, ValueError) as exc:
            self._fail(exc)
            return 0, sent

    def _fail(self, exc: Exception) -> None:
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
