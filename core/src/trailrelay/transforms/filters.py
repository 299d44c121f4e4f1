"""Declarative keep/drop/sample rules over routing fields (``[filter]`` in the config).

The first rule that matches decides; a record no rule matches gets the default action.
Sampling is deterministic per eventID (the same event is kept or dropped everywhere) and
never drops a record with an error code or a high-risk tag. A drop rule with
``spare_flagged`` (the built-in SIEM default has it; a rule the user writes does not unless it
says so) never drops those either: a default must not hide what a detection rule flagged or a
failed call. Every drop is counted per rule.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from typing import Annotated, Literal

from trailrelay.record import Record
from trailrelay.settings import Meta, Settings, field

__all__ = ["FilterConfig", "FilterRule", "RecordFilter"]


_LISTS = ("category", "event_source", "event_name", "account", "region", "error_code")
"""The keys that list what a rule matches (any one of the values)."""


class FilterRule(Settings):
    """One rule: every given condition must hold for the rule to match."""

    name: Annotated[str, Meta(description="Shown in counters and the cost report.")]
    action: Literal["keep", "drop", "sample"]
    rate: (
        Annotated[float, Meta(ge=0.0, le=1.0, description="Share kept by a sample rule (default 1).")] | None
    ) = None
    category: Annotated[list[str] | None, Meta(description="Management, Data, Insight, NetworkActivity.")] = (
        None
    )
    read_only: bool | None = None
    event_source: Annotated[list[str] | None, Meta(description="Globs, e.g. s3.amazonaws.com.")] = None
    event_name: Annotated[list[str] | None, Meta(description="Globs, e.g. Describe*.")] = None
    account: list[str] | None = None
    region: list[str] | None = None
    error_code: Annotated[list[str] | None, Meta(description="Globs; '*' means any error.")] = None
    spare_flagged: Annotated[
        bool,
        Meta(
            description="Never drop a record a detection rule tagged or that has an error code "
            "(set by the built-in SIEM default; sampling always spares them)."
        ),
    ] = False

    def __post_init__(self) -> None:
        allowed = {"Management", "Data", "Insight", "NetworkActivity"}
        if self.category is not None and (bad := set(self.category) - allowed):
            raise ValueError(f"unknown category {sorted(bad)}; use {sorted(allowed)}")
        for key in _LISTS:
            if getattr(self, key) == []:
                raise ValueError(
                    f"rule {self.name!r}: {key} is an empty list; list what it should match, "
                    "or leave it out to match any"
                )
        if self.rate is not None and self.action != "sample":
            raise ValueError(
                f'rule {self.name!r}: rate applies to action = "sample" only, not {self.action!r}'
            )


class FilterConfig(Settings):
    """The ``[filter]`` table."""

    default: Literal["keep", "drop"] = "keep"
    rules: list[FilterRule] = field(default_factory=list)


@dataclass(frozen=True)
class _Compiled:
    rule: FilterRule
    sources: re.Pattern[str] | None
    names: re.Pattern[str] | None
    errors: re.Pattern[str] | None


def _globs(patterns: list[str] | None) -> re.Pattern[str] | None:
    if patterns is None:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


class RecordFilter:
    """Decides per record; counts what each rule dropped."""

    def __init__(self, config: FilterConfig) -> None:
        self.config = config
        self._rules = [
            _Compiled(r, _globs(r.event_source), _globs(r.event_name), _globs(r.error_code))
            for r in config.rules
        ]
        self.dropped: Counter[str] = Counter()

    def keep(self, record: Record) -> bool:
        """True to forward the record; a drop is counted under the rule's name."""
        for c in self._rules:
            if self._matches(c, record):
                return self._apply(c.rule, record)
        if self.config.default == "drop":
            self.dropped["(default)"] += 1
            return False
        return True

    def _apply(self, rule: FilterRule, record: Record) -> bool:
        if rule.action == "keep":
            return True
        flagged = bool(record.tags or record.routing.error_code)
        if rule.action == "sample" and (flagged or _sampled(record, 1.0 if rule.rate is None else rule.rate)):
            return True
        if rule.spare_flagged and flagged:
            return True
        self.dropped[rule.name] += 1
        return False

    @staticmethod
    def _matches(c: _Compiled, record: Record) -> bool:
        r = c.rule
        rt = record.routing
        if r.category is not None and rt.category not in r.category:
            return False
        if r.read_only is not None and rt.read_only is not r.read_only:
            return False
        if c.sources is not None and not c.sources.match(rt.event_source or ""):
            return False
        if c.names is not None and not c.names.match(rt.event_name or ""):
            return False
        if r.account is not None and rt.recipient_account_id not in r.account:
            return False
        if r.region is not None and rt.aws_region not in r.region:
            return False
        return not (c.errors is not None and not (rt.error_code and c.errors.match(rt.error_code)))


def _sampled(record: Record, rate: float) -> bool:
    """Deterministic: keep when the hash of the eventID falls under the rate."""
    key = (record.routing.event_id or record.raw[:256].decode("utf-8", "replace")).encode()
    bucket = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")
    return bucket < rate * (1 << 64)
