"""Lower rules parsed by pySigma to a :class:`~trailrelay.detection.plan.Plan` (plain data).

Everything the in-stream evaluator cannot do is refused here, naming the file and the rule: a
rule that silently never matches is worse than a start-up error.

``python -m trailrelay.detection.lower`` rewrites the shipped pack's plan (``pack.plan.json``)
after a rule file of the pack changed; a test fails until it is.
"""

from __future__ import annotations

import re
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.correlations import SigmaCorrelationConditionOperator, SigmaCorrelationRule, SigmaCorrelationType
from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule
from sigma.types import (
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaRegularExpressionFlag,
    SigmaString,
    SigmaTimestampPart,
    SigmaType,
    SpecialChars,
)

from trailrelay.detection.compile import Unsupported
from trailrelay.detection.loader import RuleError, RuleSet, parse_sources, rule_key
from trailrelay.detection.plan import (
    PACK_PLAN,
    WILDCARD_MULTI,
    WILDCARD_SINGLE,
    CorrelationPlan,
    Plan,
    RulePlan,
)
from trailrelay.detection.rulefiles import digest, pack_sources

__all__ = ["lower", "rule_severity", "rule_technique"]

_TECHNIQUE = re.compile(r"^t\d{4}(?:\.\d{3})?$", re.IGNORECASE)
_FLAGS = {
    SigmaRegularExpressionFlag.IGNORECASE: "i",
    SigmaRegularExpressionFlag.MULTILINE: "m",
    SigmaRegularExpressionFlag.DOTALL: "s",
}
_PLACEHOLDERS = "placeholders (|expand) need a processing pipeline"


def rule_severity(rule: SigmaRule | SigmaCorrelationRule) -> str:
    """The rule's Sigma level in lower case (``medium`` when the rule has none)."""
    return str(rule.level.name).lower() if rule.level is not None else "medium"


def rule_technique(rule: SigmaRule | SigmaCorrelationRule) -> str | None:
    """The first ATT&CK technique tag (``attack.t1562.008`` -> ``T1562.008``)."""
    for tag in rule.tags:
        if tag.namespace == "attack" and _TECHNIQUE.match(tag.name):
            return tag.name.upper()
    return None


def lower(rule_set: RuleSet) -> Plan:
    """The rule set as a plan; RuleError naming the rule for anything the stream cannot evaluate."""
    rules = rule_set.rules
    correlations = [_correlation(r, rule_set) for r in rules if isinstance(r, SigmaCorrelationRule)]
    plain = [_rule(r, rule_set) for r in rules if isinstance(r, SigmaRule)]
    return Plan(plain, correlations, list(rule_set.skipped), digest(rule_set.sources))


def _rule(rule: SigmaRule, rule_set: RuleSet) -> RulePlan:
    origin = rule_set.origin(rule)
    try:
        condition = [_node(c.parsed) for c in rule.detection.parsed_condition]
    except Unsupported as exc:
        raise RuleError(
            f"{origin}: rule {rule.title!r} uses {exc}, which the in-stream evaluator does not support"
        ) from None
    except SigmaError as exc:
        raise RuleError(f"{origin}: rule {rule.title!r}: {exc}") from None
    return RulePlan(rule_key(rule), rule.title, rule_severity(rule), rule_technique(rule), origin, condition)


def _correlation(corr: SigmaCorrelationRule, rule_set: RuleSet) -> CorrelationPlan:
    where = f"{rule_set.origin(corr)}: correlation {corr.title!r}"
    kinds = {SigmaCorrelationType.EVENT_COUNT: "event_count", SigmaCorrelationType.VALUE_COUNT: "value_count"}
    kind = kinds.get(corr.type)
    if kind is None:
        raise RuleError(
            f"{where}: type {corr.type.name.lower()} is not supported in the stream "
            "(event_count and value_count are)"
        )
    cond = corr.condition
    op = getattr(cond, "op", None)
    ops = (SigmaCorrelationConditionOperator.GT, SigmaCorrelationConditionOperator.GTE)
    if not corr.rules or op not in ops:
        raise RuleError(f"{where}: only 'gt' and 'gte' conditions over listed rules work in a stream")
    if len(corr.aliases):
        raise RuleError(f"{where}: field aliases are not supported; use the same field name in each rule")
    bases: list[str] = []
    for ref in corr.rules:
        if not isinstance(ref.rule, SigmaRule):
            raise RuleError(f"{where}: correlations of correlations are not supported")
        bases.append(rule_key(ref.rule))
    counted = None
    if kind == "value_count":
        counted = getattr(cond, "fieldref", None)
        if not isinstance(counted, str):
            raise RuleError(f"{where}: value_count needs one 'field' in its condition")
    return CorrelationPlan(
        key=rule_key(corr),
        title=corr.title,
        severity=rule_severity(corr),
        technique=rule_technique(corr),
        origin=rule_set.origin(corr),
        kind=kind,
        bases=bases,
        generate=bool(corr.generate),
        group_by=list(corr.group_by or []),
        timespan=float(corr.timespan.seconds),
        threshold=int(cond.count),  # type: ignore[union-attr]
        strict=op is SigmaCorrelationConditionOperator.GT,
        field=counted,
    )


def _node(node: Any) -> list[Any]:
    if isinstance(node, ConditionAND):
        return ["and", [_node(a) for a in node.args]]
    if isinstance(node, ConditionOR):
        return ["or", [_node(a) for a in node.args]]
    if isinstance(node, ConditionNOT):
        return ["not", _node(node.args[0])]
    if isinstance(node, ConditionFieldEqualsValueExpression):
        return ["field", node.field, _field_value(node.value)]
    if isinstance(node, ConditionValueExpression):
        return ["keyword", _keyword(node.value)]
    raise Unsupported(f"condition element {type(node).__name__} (an empty detection?)")


def _field_value(value: SigmaType) -> list[Any]:
    if isinstance(value, SigmaNull):
        return ["null"]
    if isinstance(value, SigmaExists):
        return ["exists", bool(value.exists)]
    if isinstance(value, SigmaFieldReference):
        mode = "startswith" if value.starts_with else "endswith" if value.ends_with else "eq"
        return ["ref", value.field, mode]
    return _value(value)


def _value(value: SigmaType) -> list[Any]:
    """A value tested against a field's JSON scalar (also each value of a list)."""
    if isinstance(value, SigmaExpansion):
        return ["any", [_value(v) for v in value.values]]
    if isinstance(value, SigmaString):
        return _string(value)
    if isinstance(value, SigmaTimestampPart):
        raise Unsupported("timestamp modifiers (|minute, |hour, ...)")
    if isinstance(value, SigmaBool):
        return ["bool", bool(value.boolean)]
    if isinstance(value, SigmaNumber):
        return ["num", value.number]
    if isinstance(value, SigmaRegularExpression):
        if value.contains_placeholder():
            raise Unsupported(_PLACEHOLDERS)
        return ["re", str(value.regexp), "".join(sorted(_FLAGS[f] for f in value.flags))]
    if isinstance(value, SigmaCIDRExpression):
        return ["cidr", str(value.network)]
    if isinstance(value, SigmaCompareExpression):
        return ["cmp", value.op.name.lower(), float(value.number.number)]
    raise Unsupported(f"value type {type(value).__name__}")


def _string(value: SigmaString) -> list[Any]:
    if value.contains_placeholder():
        raise Unsupported(_PLACEHOLDERS)
    parts: list[str | int] = []
    for p in value.s:
        if isinstance(p, str):
            parts.append(p)
        elif p is SpecialChars.WILDCARD_MULTI:
            parts.append(WILDCARD_MULTI)
        elif p is SpecialChars.WILDCARD_SINGLE:
            parts.append(WILDCARD_SINGLE)
        else:
            raise Unsupported(f"string part {p!r}")
    return ["str", isinstance(value, SigmaCasedString), parts]


def _keyword(value: SigmaType) -> list[Any]:
    if isinstance(value, SigmaNumber) and not isinstance(value, SigmaTimestampPart):
        value = SigmaString(str(value.number))
    if not isinstance(value, SigmaString):
        raise Unsupported(f"keyword of type {type(value).__name__}")
    return _string(value)


def pack_plan_path() -> Path:
    """Where the shipped pack's plan lives in this checkout or installation."""
    return Path(str(resources.files("trailrelay.detection").joinpath(PACK_PLAN)))


def main() -> int:
    """Rewrite the shipped pack's plan from its rule files."""
    plan = lower(parse_sources(pack_sources()))
    path = pack_plan_path()
    path.write_bytes(plan.to_json())
    sys.stdout.write(f"wrote {path}: {len(plan.rules)} rules, {len(plan.correlations)} correlations\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
