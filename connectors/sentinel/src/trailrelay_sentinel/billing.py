"""What Azure Monitor bills for a row: the plugin's ``billing_rule()`` for ``trailrelay cost``.

Azure Monitor Logs bills, per record, the size of the string representation of the columns
stored for it, in decimal GB, excluding the standard columns ``_ResourceId``,
``_SubscriptionId``, ``_ItemId``, ``_IsBillable``, ``_BilledSize`` and ``Type``. ``TenantId``
and ``TimeGenerated`` are stored and billed. We count each value's UTF-8 length as sent
(datetimes as their ISO text), booleans as ``true``/``false``, plus the 36-character
``TenantId`` the workspace adds.

What is billed is the row as stored: into ``AWSCloudTrail`` the shipped DCR's transform also
copies columns (:data:`~trailrelay_sentinel.columns.BUILTIN_COPIES`), and each copy is billed
too; a custom table stores the row as sent. The sink's ``table`` setting says which.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from trailrelay.contract import BillingRule
from trailrelay_sentinel.columns import BUILTIN_COPIES, BUILTIN_TABLE

__all__ = ["BILLING_RULE", "TENANT_ID_BYTES", "UNBILLED_COLUMNS", "row_size", "row_sizes", "stored_row"]

UNBILLED_COLUMNS = frozenset(
    {"_ResourceId", "_SubscriptionId", "_ItemId", "_IsBillable", "_BilledSize", "Type"}
)
"""Standard columns Azure Monitor leaves out of a record's billed size (cost-logs, "Excluded columns")."""

TENANT_ID_BYTES = 36
"""``TenantId`` (the workspace GUID) is stored with every record and is not an excluded column."""

_ROWS = msgspec.json.Decoder(list[dict[str, Any]])


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


def row_size(row: Mapping[str, Any]) -> int:
    """Billed bytes of one stored row: its columns' string sizes, without the unbilled columns."""
    return TENANT_ID_BYTES + sum(_value_size(v) for k, v in row.items() if k not in UNBILLED_COLUMNS)


def stored_row(row: Mapping[str, Any], table: str = BUILTIN_TABLE) -> dict[str, Any]:
    """The row as the shipped DCR stores it in ``table``: with its copied columns in ``AWSCloudTrail``."""
    if table.casefold() != BUILTIN_TABLE.casefold():
        return dict(row)
    return {**row, **{copy: row[src] for copy, src in BUILTIN_COPIES.items() if src in row}}


def row_sizes(body: bytes, table: str = BUILTIN_TABLE) -> list[int]:
    """Billed bytes of each row of a Logs Ingestion API body (a JSON array of rows) stored in ``table``."""
    return [row_size(stored_row(row, table)) for row in _ROWS.decode(body)]


BILLING_RULE = BillingRule(
    "billed column bytes",
    "Azure Monitor bills each stored column's string size (TimeGenerated and TenantId "
    "included; _ResourceId, _SubscriptionId, _ItemId, _IsBillable, _BilledSize, Type excluded)",
    row_sizes,
)
