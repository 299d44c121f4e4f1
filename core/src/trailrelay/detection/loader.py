"""Find and parse Sigma rules: the shipped pack and the user's files, with pySigma.

Only rules for ``logsource: product: aws, service: cloudtrail`` are kept; others found in a
user's folder are listed as skipped (so a checkout of a whole rule repository can be pointed
at). Anything wrong with a rule that *is* for CloudTrail is a :class:`RuleError` naming the file:
a rule that silently does not run is worse than a start-up error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sigma.collection import SigmaCollection
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaError
from sigma.filters import SigmaFilter
from sigma.rule import SigmaRule

from trailrelay.detection.config import DetectionConfig
from trailrelay.detection.rulefiles import PACK_LABEL, RuleError, RuleSource, pack_sources, user_sources

__all__ = [
    "PACK_LABEL",
    "RuleError",
    "RuleSet",
    "RuleSource",
    "load_rules",
    "pack_sources",
    "parse_sources",
    "rule_key",
    "user_sources",
]


@dataclass(slots=True)
class RuleSet:
    """Parsed CloudTrail rules plus what was skipped and why."""

    sources: list[RuleSource]
    collection: SigmaCollection
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(origin: title, reason) of rules ignored because they are not for CloudTrail."""
    origins: dict[str, str] = field(default_factory=dict)
    """Rule key (see :func:`rule_key`) -> the file it came from."""

    def origin(self, rule: SigmaRule | SigmaCorrelationRule) -> str:
        """The file a rule came from (``pack:<name>`` for shipped rules)."""
        return self.origins.get(rule_key(rule), "?")

    @property
    def rules(self) -> list[SigmaRule | SigmaCorrelationRule]:
        """Every kept rule, referenced rules before the correlations that use them."""
        return list(self.collection.rules)

    def fresh(self, *, correlations: bool = True) -> SigmaCollection:
        """A newly parsed copy (pySigma processing pipelines change the rules they convert).

        With ``correlations=False`` only the plain rules, unlinked from correlations, so each
        converts to a complete query of its own (for SIEMs whose correlations we build ourselves).
        """
        collection = parse_sources(self.sources).collection
        if correlations:
            return collection
        keep = {rule_key(r) for r in collection.rules if isinstance(r, SigmaRule)}
        parsed = [
            SigmaCollection.from_yaml(s.text, collect_filters=True, resolve_references=False)
            for s in self.sources
        ]
        plain: list[SigmaRule | SigmaCorrelationRule | SigmaFilter] = [
            r for c in parsed for r in c.rules if isinstance(r, SigmaRule) and rule_key(r) in keep
        ]
        plain.extend(f for c in parsed for f in c.filters)
        return SigmaCollection(plain, resolve_references=False)


def rule_key(rule: SigmaRule | SigmaCorrelationRule) -> str:
    """The identifier a rule's tags carry: its id, else its name, else its title."""
    if rule.id is not None:
        return str(rule.id)
    return rule.name or rule.title


_YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader where PyYAML has it (~10x faster, same documents): what pySigma's
``from_yaml`` would do with ``yaml.safe_load_all``."""


def parse_sources(sources: Sequence[RuleSource]) -> RuleSet:
    """Parse rule files into one collection with correlation references resolved."""
    found: list[SigmaRule | SigmaCorrelationRule] = []
    filters: list[SigmaFilter] = []
    origins: dict[str, str] = {}
    for src in sources:
        try:
            docs = list(yaml.load_all(src.text, Loader=_YAML_LOADER))
            for doc in docs:
                _check_counts(doc, src.origin)
            parsed = SigmaCollection.from_dicts(docs, collect_filters=True, resolve_references=False)
        except RuleError:
            raise
        except SigmaError as exc:
            raise RuleError(f"{src.origin}: not a valid Sigma rule: {exc}") from None
        except Exception as exc:  # YAML errors and pySigma's own bugs: name the file either way
            said = " ".join(str(exc).split())  # YAML's message spans lines: one line, as every error
            raise RuleError(f"{src.origin}: cannot be parsed: {type(exc).__name__}: {said}") from None
        for rule in parsed.rules:
            key = rule_key(rule)
            if key in origins:
                raise RuleError(f"rule id {key} is defined twice: in {origins[key]} and in {src.origin}")
            origins[key] = src.origin
            found.append(rule)
        filters.extend(parsed.filters)
    kept, skipped = _cloudtrail_only(found, origins)
    try:
        collection = SigmaCollection([*kept, *filters])  # filters apply to every file's rules
    except SigmaError as exc:
        raise RuleError(f"a correlation rule or filter cannot be applied: {exc}") from None
    return RuleSet(list(sources), collection, skipped, origins)


def _check_counts(doc: Any, origin: str) -> None:
    """RuleError for a correlation count that is not a whole number of events, 0 or more.

    pySigma reads ``gte: 1.5`` as 1 (the stream and every SIEM would count from 1) and takes
    ``gt: -1``; so the document is checked before it parses it.
    """
    correlation = doc.get("correlation") if isinstance(doc, dict) else None
    condition = correlation.get("condition") if isinstance(correlation, dict) else None
    if not isinstance(condition, dict):
        return
    for op, count in condition.items():
        if op == "field":  # value_count: the counted field
            continue
        try:
            number = float(count)
        except (TypeError, ValueError):
            continue  # pySigma names what is wrong with it
        if isinstance(count, bool) or not number.is_integer() or number < 0:
            raise RuleError(
                f"{origin}: correlation {doc.get('title')!r}: condition {op}: {count} is not a "
                "count of events (a whole number, 0 or more)"
            )


def load_rules(config: DetectionConfig, base_dir: Path | None = None) -> RuleSet:
    """The pack (unless ``pack = false``) plus the configured rule paths, parsed."""
    sources = pack_sources() if config.pack else []
    sources += user_sources(config.rules, base_dir)
    return parse_sources(sources)


def _is_cloudtrail(rule: SigmaRule) -> bool:
    ls = rule.logsource
    return (ls.product or "").lower() == "aws" and (ls.service or "").lower() == "cloudtrail"


def _cloudtrail_only(
    rules: Sequence[SigmaRule | SigmaCorrelationRule], origins: dict[str, str]
) -> tuple[list[SigmaRule | SigmaCorrelationRule], list[tuple[str, str]]]:
    kept: list[SigmaRule | SigmaCorrelationRule] = []
    skipped: list[tuple[str, str]] = []
    dropped: set[str] = set()
    for rule in rules:
        if isinstance(rule, SigmaRule) and not _is_cloudtrail(rule):
            ls = rule.logsource
            skipped.append(
                (
                    f"{origins[rule_key(rule)]}: {rule.title}",
                    f"logsource is {ls.product}/{ls.service}, not aws/cloudtrail",
                )
            )
            dropped.update(x for x in (rule.name, str(rule.id) if rule.id else None) if x)
        else:
            kept.append(rule)
    out: list[SigmaRule | SigmaCorrelationRule] = []
    for rule in kept:
        if isinstance(rule, SigmaCorrelationRule):
            refs = {ref.reference for ref in rule.rules or []}
            if refs & dropped:
                skipped.append(
                    (
                        f"{origins[rule_key(rule)]}: {rule.title}",
                        "correlates rules that are not for aws/cloudtrail",
                    )
                )
                continue
        out.append(rule)
    return out, skipped
