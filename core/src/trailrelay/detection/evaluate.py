"""The in-stream Sigma evaluator: tag each record with the rules it matches.

:class:`SigmaTagger` loads the rules (the shipped pack and the user's files), compiles each once
(:mod:`.compile`), and indexes them by the ``eventSource``/``eventName``/error code they pin
down. For a record, the candidate rules are looked up from its decoded routing fields with one
dict access (cached per distinct source/name/error combination), so the great majority of
records is passed over without being parsed; only candidates are evaluated, and only rules
that look at other fields parse the event (once, cached on the record).

A match adds a :class:`~trailrelay.record.RiskTag` (rule id, title, Sigma level as severity,
first ATT&CK technique tag). Rules referenced by a correlation with ``generate: false`` (Sigma's
default) do not tag on their own: they feed the correlation's window (:mod:`.correlate`), and
the correlation tags.

An error while evaluating one rule against one record (an event that cannot be parsed in full,
say) never stops the stream: the record goes on without that rule's verdict, the failure is
counted in ``errors`` and logged (rate-limited).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trailrelay.detection.compile import (
    Constraint,
    Predicate,
    compile_condition,
    condition_fields,
    constraint,
)
from trailrelay.detection.config import DetectionConfig
from trailrelay.detection.correlate import Observation, Window
from trailrelay.detection.fields import CLOUDTRAIL_FIELDS, field_getter, scalar_text
from trailrelay.detection.plan import CorrelationPlan, Plan, RulePlan, shipped_pack_plan
from trailrelay.record import Record, RiskTag

if TYPE_CHECKING:
    from trailrelay.detection.loader import RuleSet

__all__ = ["RuleInfo", "SigmaTagger", "load_plan"]

log = logging.getLogger("trailrelay.detection")

_CACHE_LIMIT = 65_536
_LOGGED_ERRORS = 20
REMOTE_CHUNK = 2048
"""Records a forked worker's tagger asks to be given at a time (:attr:`SigmaTagger.chunk_records`)."""


@dataclass(frozen=True, slots=True)
class RuleInfo:
    """A loaded rule as ``trailrelay rules list`` shows it."""

    rule_id: str
    title: str
    severity: str
    technique: str | None
    kind: str
    """``rule``, ``correlation``, or ``base`` (feeds a correlation, does not tag on its own)."""
    origin: str

    def as_dict(self) -> dict[str, str | None]:
        """Plain-dict form for JSON output."""
        return {
            "rule_id": self.rule_id,
            "title": self.title,
            "severity": self.severity,
            "technique": self.technique,
            "kind": self.kind,
            "origin": self.origin,
        }


@dataclass(frozen=True, slots=True)
class _Rule:
    info: RuleInfo
    tag: RiskTag
    predicate: Predicate
    constraint: Constraint
    output: bool
    feeds: tuple[Window, ...]


def load_plan(config: DetectionConfig, base_dir: Path | None = None) -> Plan:
    """The configured rules, lowered: the shipped plan for the pack alone, else parsed with pySigma."""
    if config.pack and not config.rules:
        shipped = shipped_pack_plan()
        if shipped is not None:
            return shipped
    from trailrelay.detection.loader import load_rules  # noqa: PLC0415 - pySigma only when needed
    from trailrelay.detection.lower import lower  # noqa: PLC0415

    return lower(load_rules(config, base_dir))


class SigmaTagger:
    """Callable transform ``(Record) -> Record`` adding a RiskTag per matching Sigma rule."""

    def __init__(
        self,
        config: DetectionConfig | None = None,
        *,
        base_dir: Path | None = None,
        rule_set: RuleSet | None = None,
        lateness: float | None = None,
        max_groups: int = 100_000,
    ) -> None:
        """Load and compile the rules; raise :class:`RuleError` (a ConfigError) naming any bad rule.

        ``rule_set``: rules already parsed (lowered here); otherwise ``config``'s rules, from the
        shipped plan when that is the pack alone (no pySigma at all).
        """
        self._config = config or DetectionConfig()
        self._base_dir = base_dir
        self._rule_set = rule_set
        if rule_set is not None:
            from trailrelay.detection.lower import lower  # noqa: PLC0415 - imports pySigma

            self.plan = lower(rule_set)
        else:
            self.plan = load_plan(self._config, base_dir)
        self.windows: list[Window] = []
        self._window_info: dict[str, RuleInfo] = {}
        self.warnings: list[str] = []
        """Rules that can never match what they say (a field no CloudTrail record has); logged too."""
        self._rules = self._compile(self.plan, lateness, max_groups)
        self._window_pos = {id(w): n for n, w in enumerate(self.windows)}
        self.remote: Callable[[list[tuple[int, Observation]]], list[bool]] | None = None
        """Where correlation observations are counted instead of here (a forked worker's supervisor)."""
        for warning in self.warnings:
            log.warning("detection: %s", warning)
        self._cache: dict[tuple[str | None, str | None, bool], tuple[_Rule, ...]] = {}
        self._lock = threading.Lock()
        self.matches: Counter[str] = Counter()
        """Tags added, per rule id."""
        self.tagged = 0
        """Records that received at least one tag."""
        self.errors = 0
        """(rule, record) evaluations that failed; the record went on without that verdict."""

    @property
    def rule_set(self) -> RuleSet:
        """The rules as pySigma parsed them (listings and exports); parsed on first use."""
        if self._rule_set is None:
            from trailrelay.detection.loader import load_rules  # noqa: PLC0415 - imports pySigma

            self._rule_set = load_rules(self._config, self._base_dir)
        return self._rule_set

    @property
    def rules(self) -> list[RuleInfo]:
        """Every loaded rule, including correlations and the base rules they count."""
        seen = {r.info.rule_id: r.info for r in self._rules}
        for w in self.windows:
            seen.setdefault(w.tag.rule_id, self._window_info[w.tag.rule_id])
        return list(seen.values())

    def candidates(self, record: Record) -> list[RuleInfo]:
        """The rules the index selects for a record (the only ones evaluated on it)."""
        r = record.routing
        key = (r.event_source, r.event_name, r.error_code is not None)
        found = self._cache.get(key)
        return [rule.info for rule in (found if found is not None else self._candidates(key))]

    def reset(self) -> None:
        """Forget correlation state and counters (tests, benchmarks)."""
        for w in self.windows:
            w.reset()
        with self._lock:
            self.matches.clear()
            self.tagged = 0
            self.errors = 0

    def __call__(self, record: Record) -> Record:
        """Attach a tag for every matching rule; returns the record."""
        self.many([record])
        return record

    @property
    def chunk_records(self) -> int:
        """The fewest records the pipeline should tag at a time: more while correlations are remote.

        Each chunk with correlation observations is a round trip to the supervisor, which shares
        the cores with the workers and answers in about 0.4 ms: at the pipeline's 512 records a
        chunk, about 12% of a worker's time on the benchmark's trail went waiting. A chunk of a
        whole CloudTrail object (up to ~2,000 records) asks once per object instead.
        """
        return REMOTE_CHUNK if self.remote is not None else 0

    def many(self, records: list[Record]) -> list[Record]:
        """Tag a chunk of records (the pipeline's way): correlations are counted for the chunk at once.

        Plain rules are evaluated record by record; what the chunk's records feed into correlation
        windows is then counted in one go (in this process, or with forked workers in the
        supervisor's windows, one round trip per chunk: see :mod:`.shared`). Returns ``records``.
        """
        cache = self._cache
        found: dict[int, list[RiskTag]] = {}
        fed: list[tuple[int, Window]] = []
        for pos, record in enumerate(records):
            r = record.routing
            key = (r.event_source, r.event_name, r.error_code is not None)
            candidates = cache.get(key)
            if candidates is None:
                candidates = self._candidates(key)
            if not candidates:
                continue
            windows: list[Window] = []
            for rule in candidates:
                try:
                    hit = rule.predicate(record)
                except Exception as exc:
                    self._failed(rule, record, exc)
                    continue
                if hit:
                    if rule.output:
                        found.setdefault(pos, []).append(rule.tag)
                    windows.extend(w for w in rule.feeds if w not in windows)
            fed.extend((pos, w) for w in windows)
        if fed:
            for pos, tag in self._correlate(records, fed):
                found.setdefault(pos, []).append(tag)
        if found:
            for pos, tags in found.items():
                records[pos].add_tags(tags)
            with self._lock:
                self.tagged += len(found)
                self.matches.update(t.rule_id for tags in found.values() for t in tags)
        return records

    def _correlate(
        self, records: Sequence[Record], fed: list[tuple[int, Window]]
    ) -> list[tuple[int, RiskTag]]:
        """Count what the records feed into windows; the (position, tag) of each window over its threshold."""
        seen: list[tuple[int, Window, Observation]] = []
        for pos, w in fed:
            try:
                observation = w.observation(records[pos])
            except Exception as exc:
                self._failed(self._window_info[w.tag.rule_id], records[pos], exc)
                continue
            if observation is not None:
                seen.append((pos, w, observation))
        if not seen:
            return []
        remote = self.remote
        if remote is not None:
            try:
                hits = remote([(self._window_pos[id(w)], o) for _, w, o in seen])
            except Exception as exc:  # the supervisor is gone: these records go on without the verdict
                for pos, w, _ in seen:
                    self._failed(self._window_info[w.tag.rule_id], records[pos], exc)
                return []
            return [(pos, w.tag) for (pos, w, _), hit in zip(seen, hits, strict=True) if hit]
        out = []
        for pos, w, observation in seen:
            try:
                if w.count(*observation):
                    out.append((pos, w.tag))
            except Exception as exc:
                self._failed(self._window_info[w.tag.rule_id], records[pos], exc)
        return out

    def _candidates(self, key: tuple[str | None, str | None, bool]) -> tuple[_Rule, ...]:
        source = (key[0] or "").lower()
        name = (key[1] or "").lower()
        found = tuple(
            rule
            for rule in self._rules
            if (rule.constraint.names is None or name in rule.constraint.names)
            and (rule.constraint.sources is None or source in rule.constraint.sources)
            and (key[2] or not rule.constraint.needs_error)
        )
        if len(self._cache) >= _CACHE_LIMIT:  # hostile or broken input with endless distinct names
            self._cache.clear()
        self._cache[key] = found
        return found

    def _failed(self, rule: _Rule | RuleInfo, record: Record, exc: Exception) -> None:
        with self._lock:
            self.errors += 1
            count = self.errors
        if count <= _LOGGED_ERRORS:
            log.warning(
                "detection: rule %r could not be evaluated on %r (%s); the record goes on without it%s",
                rule.title if isinstance(rule, RuleInfo) else rule.info.title,
                record,
                type(exc).__name__,
                "" if count < _LOGGED_ERRORS else " (further failures are only counted)",
            )

    # --- compilation ----------------------------------------------------------------------

    def _compile(self, plan: Plan, lateness: float | None, max_groups: int) -> list[_Rule]:
        feeds: dict[str, list[Window]] = {}
        silent: set[str] = set()
        for corr in plan.correlations:
            info = self._info(corr, "correlation")
            window = self._window(corr, info, lateness, max_groups)
            self.windows.append(window)
            self._window_info[info.rule_id] = info
            for base in corr.bases:
                feeds.setdefault(base, []).append(window)
                if not corr.generate:
                    silent.add(base)
        out = []
        for rule in plan.rules:
            kind = "base" if rule.key in silent else "rule"
            out.append(self._rule(rule, kind, tuple(feeds.get(rule.key, ()))))
        return out

    def _info(self, rule: RulePlan | CorrelationPlan, kind: str) -> RuleInfo:
        return RuleInfo(rule.key, rule.title, rule.severity, rule.technique, kind, rule.origin)

    def _tag(self, info: RuleInfo) -> RiskTag:
        return RiskTag(info.rule_id, info.title, info.severity, info.technique)

    def _rule(self, rule: RulePlan, kind: str, feeds: tuple[Window, ...]) -> _Rule:
        info = self._info(rule, kind)
        compiled = compile_condition(rule.condition)
        self._check_fields(info, condition_fields(rule.condition))
        pinned = constraint(rule.condition)
        return _Rule(info, self._tag(info), compiled.predicate, pinned, kind == "rule", feeds)

    def _check_fields(self, info: RuleInfo, fields: set[str]) -> None:
        """Warn about fields no CloudTrail record has: a rule on them is silent, not broken."""
        unknown = sorted(f for f in fields if f.split(".", 1)[0] not in CLOUDTRAIL_FIELDS)
        if unknown:
            names = ", ".join(repr(f) for f in unknown)
            self.warnings.append(
                f"{info.origin}: rule {info.title!r} reads {names}, which no CloudTrail record has "
                "(not a top-level field of CloudTrail's record contents): a condition on it never "
                "matches, so the rule may never fire"
            )

    def _window(
        self, corr: CorrelationPlan, info: RuleInfo, lateness: float | None, max_groups: int
    ) -> Window:
        return Window(
            self._tag(info),
            group_by=[_first_value(f) for f in corr.group_by],
            timespan=corr.timespan,
            threshold=corr.threshold,
            strict=corr.strict,
            value_of=_first_value(corr.field) if corr.field is not None else None,
            lateness=lateness,
            max_groups=max_groups,
        )


def _first_value(field: str) -> Callable[[Record], Any]:
    """A hashable text value of a field (its first one when it holds several), or None."""
    getter = field_getter(field)
    one, many = getter.one, getter.many
    if one is not None:
        return lambda rec: None if (v := one(rec)) is None else scalar_text(v)
    assert many is not None

    def first(rec: Record) -> str | None:
        for v in many(rec):
            text = scalar_text(v)
            if text is not None:
                return text
        return None

    return first
