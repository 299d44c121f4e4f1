"""The API calls the shipped detection pack selects on, read from its rule files.

``trailrelay doctor`` checks that the EventBridge fast path matches these names and ``trailrelay
athena ddl`` writes hunting queries over them, so both follow the pack when a rule is added
instead of keeping a second list. Only exact ``eventName`` / ``eventSource`` values count (an
EventBridge pattern or a SQL ``IN`` list needs exact names; the deploy tests keep modifiers off
these fields).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from trailrelay.detection.loader import pack_sources

__all__ = [
    "BLINDING_TAGS",
    "DeniedBurst",
    "PackRule",
    "blinding_calls",
    "denied_burst",
    "high_risk_calls",
    "pack_rules",
]

BLINDING_TAGS = frozenset({"attack.defense-evasion", "attack.defense_evasion"})
"""Rules with these tags switch off or redirect what defenders see (T1562: impair defenses)."""


@dataclass(frozen=True, slots=True)
class PackRule:
    """One shipped rule: its title, tags and the exact calls it selects on."""

    title: str
    tags: frozenset[str]
    event_names: frozenset[str]
    event_sources: frozenset[str]


@dataclass(frozen=True, slots=True)
class DeniedBurst:
    """The pack's "many denied calls" correlation: error codes, window and threshold per principal."""

    error_codes: tuple[str, ...]
    """``errorCode`` substrings that mean "not allowed"."""
    window_seconds: int
    threshold: int
    group_by: tuple[str, ...]


def pack_rules() -> list[PackRule]:
    """Every detection rule shipped with trailrelay (correlation rules excluded)."""
    out: list[PackRule] = []
    for doc in _documents():
        detection = doc.get("detection")
        if not isinstance(detection, dict):
            continue
        names: set[str] = set()
        sources: set[str] = set()
        _collect(detection, names, sources)
        tags = frozenset(str(t) for t in doc.get("tags") or [])
        out.append(PackRule(str(doc.get("title", "")), tags, frozenset(names), frozenset(sources)))
    return out


def high_risk_calls() -> tuple[frozenset[str], frozenset[str]]:
    """(event names, event sources) of every call a shipped rule names: the fast path's pattern."""
    rules = pack_rules()
    names = frozenset().union(*(r.event_names for r in rules))
    sources = frozenset().union(*(r.event_sources for r in rules))
    return names, sources


def blinding_calls() -> frozenset[str]:
    """Event names of the rules for defense evasion: calls that stop or narrow logging and detection."""
    return frozenset().union(*(r.event_names for r in pack_rules() if r.tags & BLINDING_TAGS))


def denied_burst() -> DeniedBurst:
    """The pack's AccessDenied burst rule (error codes of the base rule, window and threshold)."""
    docs = list(_documents())
    for doc in docs:
        corr = doc.get("correlation")
        if not isinstance(corr, dict) or corr.get("type") != "event_count":
            continue
        base_names = {str(r) for r in corr.get("rules") or []}
        codes = [
            str(code)
            for base in docs
            if base.get("name") in base_names and isinstance(base.get("detection"), dict)
            for code in _error_codes(base["detection"])
        ]
        if codes:
            condition = corr.get("condition") or {}
            return DeniedBurst(
                error_codes=tuple(codes),
                window_seconds=_seconds(str(corr.get("timespan", "5m"))),
                threshold=int(condition.get("gte", 10)),
                group_by=tuple(str(g) for g in corr.get("group-by") or []),
            )
    raise LookupError("the detection pack has no event_count correlation over errorCode")


def _documents() -> Iterator[dict[str, Any]]:
    for source in pack_sources():
        for doc in yaml.safe_load_all(source.text):
            if isinstance(doc, dict):
                yield doc


def _collect(node: Any, names: set[str], sources: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            field, _, modifier = str(key).partition("|")
            if field in ("eventName", "eventSource") and not modifier:
                values = value if isinstance(value, list) else [value]
                (names if field == "eventName" else sources).update(str(v) for v in values if v is not None)
            else:
                _collect(value, names, sources)
    elif isinstance(node, list):
        for item in node:
            _collect(item, names, sources)


def _error_codes(detection: dict[str, Any]) -> Iterator[str]:
    for selection in detection.values():
        if isinstance(selection, dict):
            for key, value in selection.items():
                if str(key).split("|")[0] == "errorCode" and value is not None:
                    yield from (str(v) for v in (value if isinstance(value, list) else [value]))


def _seconds(span: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return int(span[:-1]) * units[span[-1]] if span and span[-1] in units else int(span)
