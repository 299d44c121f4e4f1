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
from importlib import resources
from typing import Any

import msgspec

from trailrelay.detection.rulefiles import digest, pack_sources

__all__ = ["FORMAT", "PACK_PLAN", "CorrelationPlan", "Plan", "RulePlan", "shipped_pack_plan"]

log = logging.getLogger("trailrelay.detection")

FORMAT = 1
"""Version of the plan's layout; a plan of another version is lowered afresh."""
PACK_PLAN = "pack.plan.json"
WILDCARD_MULTI = 0
WILDCARD_SINGLE = 1


# msgspec Structs, not dataclasses: built in microseconds at import (a frozen dataclass costs
# ~1 ms of start-up each), and the shipped plan decodes straight into them, typed.


class RulePlan(msgspec.Struct, frozen=True):
    """One Sigma rule: what it is (for tags and listings) and its condition(s), OR-ed."""

    key: str
    title: str
    severity: str
    technique: str | None
    origin: str
    condition: list[Any]


class CorrelationPlan(msgspec.Struct, frozen=True):
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


class Plan(msgspec.Struct, frozen=True):
    """Every kept rule and correlation of a rule set, and the rules skipped (not for CloudTrail)."""

    rules: list[RulePlan]
    correlations: list[CorrelationPlan]
    skipped: list[tuple[str, str]] = []
    sources: str = ""
    """:func:`~trailrelay.detection.rulefiles.digest` of the rule files it was made from."""
    format: int = FORMAT

    def to_json(self) -> bytes:
        """The plan as the JSON ``pack.plan.json`` holds (indented, so a change reads in a diff)."""
        return msgspec.json.format(msgspec.json.encode(self), indent=2) + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> Plan:
        """A plan from :meth:`to_json`'s bytes; ValueError for another format or a malformed file."""
        try:
            plan = _DECODER.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ValueError(f"not a rule plan: {exc}") from None
        if plan.format != FORMAT:
            raise ValueError(f"plan format {plan.format!r}, not {FORMAT}")
        return plan


_DECODER = msgspec.json.Decoder(Plan)


def shipped_pack_plan() -> Plan | None:
    """The pack as shipped, lowered; None when the plan is missing or stale (then lower afresh)."""
    try:
        data = resources.files("trailrelay.detection").joinpath(PACK_PLAN).read_bytes()
        plan = Plan.from_json(data)
    except (OSError, ValueError) as exc:
        log.debug("detection: no usable %s (%s); lowering the pack with pySigma", PACK_PLAN, exc)
        return None
    if plan.sources != digest(pack_sources()):
        log.info("detection: the installed rule pack differs from %s; lowering it with pySigma", PACK_PLAN)
        return None
    return plan
