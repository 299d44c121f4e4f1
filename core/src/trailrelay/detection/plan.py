"""A rule set lowered to plain data: what the in-stream evaluator compiles, without pySigma.

pySigma reads a rule's YAML, applies its modifiers and resolves its condition (``1 of
selection_*``, ``all of them``) into a tree; :mod:`.lower` turns that tree, and each
correlation, into the JSON-ready form below, and :mod:`.compile` builds predicates from it.
The shipped pack is kept lowered inside the package (``pack.plan.json``, made by
``python -m trailrelay.detection.lower``), so a run with the pack alone never imports pySigma
(a tenth of a second of every start-up). The plan names the digest of the rule files it was
made from; if the installed files differ, it is not used and the rules are lowered afresh.

A condition node is a list:

* ``["and", [node, ...]]``, ``["or", [node, ...]]``, ``["not", node]``;
* ``["field", name, value]`` (``name = value``), ``["keyword", value]`` (a value without a field).

A value is a list too: ``["str", cased, parts]`` (parts: text, ``0`` for ``*``, ``1`` for
``?``), ``["any", [value, ...]]`` (a list of values), ``["null"]``, ``["exists", bool]``,
``["ref", field, "eq" | "startswith" | "endswith"]``, ``["bool", b]``, ``["num", n]``,
``["re", pattern, flags]`` (flags: some of ``ims``), ``["cidr", network]`` and
``["cmp", op, n]`` (op: ``lt``, ``lte``, ``gt``, ``gte``, ``neq``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from importlib import resources
from typing import Any

import orjson

from trailrelay.detection.rulefiles import digest, pack_sources

__all__ = ["FORMAT", "PACK_PLAN", "CorrelationPlan", "Plan", "RulePlan", "shipped_pack_plan"]

log = logging.getLogger("trailrelay.detection")

FORMAT = 1
"""Version of the plan's layout; a plan of another version is lowered afresh."""
PACK_PLAN = "pack.plan.json"
WILDCARD_MULTI = 0
WILDCARD_SINGLE = 1


@dataclass(frozen=True, slots=True)
class RulePlan:
    """One Sigma rule: what it is (for tags and listings) and its condition(s), OR-ed."""

    key: str
    title: str
    severity: str
    technique: str | None
    origin: str
    condition: list[Any]


@dataclass(frozen=True, slots=True)
class CorrelationPlan:
    """One ``event_count`` / ``value_count`` correlation over rules named by key."""

    key: str
    title: str
    severity: str
    technique: str | None
    origin: str
    kind: str
    bases: list[str]
    generate: bool
    group_by: list[str]
    timespan: float
    threshold: int
    strict: bool
    """True for ``gt`` (more than N), False for ``gte``."""
    field: str | None = None
    """The field whose distinct values a ``value_count`` counts."""


@dataclass(frozen=True, slots=True)
class Plan:
    """Every kept rule and correlation of a rule set, and the rules skipped (not for CloudTrail)."""

    rules: list[RulePlan]
    correlations: list[CorrelationPlan]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    sources: str = ""
    """:func:`~trailrelay.detection.rulefiles.digest` of the rule files it was made from."""

    def to_json(self) -> bytes:
        """The plan as the JSON ``pack.plan.json`` holds."""
        doc = {"format": FORMAT, **asdict(self)}
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)

    @classmethod
    def from_json(cls, data: bytes) -> Plan:
        """A plan from :meth:`to_json`'s bytes; ValueError for another format version."""
        doc = orjson.loads(data)
        if doc.get("format") != FORMAT:
            raise ValueError(f"plan format {doc.get('format')!r}, not {FORMAT}")
        return cls(
            rules=[RulePlan(**r) for r in doc["rules"]],
            correlations=[CorrelationPlan(**c) for c in doc["correlations"]],
            skipped=[(a, b) for a, b in doc["skipped"]],
            sources=doc["sources"],
        )


def shipped_pack_plan() -> Plan | None:
    """The pack as shipped, lowered; None when the plan is missing or stale (then lower afresh)."""
    try:
        data = resources.files("trailrelay.detection").joinpath(PACK_PLAN).read_bytes()
        plan = Plan.from_json(data)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.debug("detection: no usable %s (%s); lowering the pack with pySigma", PACK_PLAN, exc)
        return None
    if plan.sources != digest(pack_sources()):
        log.info("detection: the installed rule pack differs from %s; lowering it with pySigma", PACK_PLAN)
        return None
    return plan
