"""Filter profiles compared side by side, and what each single rule saves.

A profile decides, per SIEM, which records that SIEM would receive. The built-in ones:
``all`` (everything), ``management`` (management events only), ``management-writes``
(management minus read-only calls) and ``siem-default`` (each connector's default sink filter:
data events stay out). With ``-c FILE`` the profile ``config`` is the file's global ``[filter]``
followed by each SIEM sink's own ``filter`` (a SIEM the file does not configure gets its
default). Decisions are those of :class:`~trailrelay.transforms.filters.RecordFilter`; the
deciders here also say which rule decided, so savings can be attributed rule by rule and add
up to the profile's total saving.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from trailrelay.contract import SIEM_DEFAULT_FILTER, FilterConfig, FilterRule, Record
from trailrelay.transforms.filters import RecordFilter

__all__ = ["DEFAULT", "Decider", "Profile", "RuleRef", "builtin_profiles", "config_profile"]

DEFAULT = "(default)"
"""The name under which a filter's default action is attributed."""


@dataclass(frozen=True, slots=True)
class RuleRef:
    """A rule in a profile: where it sits (``global`` or a sink's name) and its name."""

    scope: str
    name: str
    action: str


class _Step:
    """One rule compiled twice: to see whether it matches, and to decide as it would."""

    __slots__ = ("decide", "match", "ref")

    def __init__(self, rule: FilterRule, scope: str) -> None:
        self.ref = RuleRef(scope, rule.name, rule.action)
        # Whether it matches: dropping everything it matches, sparing nothing (a spared record
        # still matched, and the first matching rule decides; later rules never see it).
        self.match = RecordFilter(
            FilterConfig(rules=[rule.replace(action="drop", rate=None, spare_flagged=False)])
        )
        self.decide = RecordFilter(FilterConfig(rules=[rule]))


class Decider:
    """Applies filters in order (first matching rule decides in each); says which rule dropped."""

    def __init__(self, stages: Sequence[tuple[str, FilterConfig]]) -> None:
        self._stages = [
            ([_Step(r, scope) for r in config.rules], config.default, RuleRef(scope, DEFAULT, config.default))
            for scope, config in stages
        ]
        self.rules: list[RuleRef] = [s.ref for steps, _, _ in self._stages for s in steps]
        self.rules += [d for _, default, d in self._stages if default == "drop"]

    def decide(self, record: Record) -> RuleRef | None:
        """None when the record passes every stage; else the rule (or default) that dropped it."""
        for steps, default, default_ref in self._stages:
            for step in steps:
                if step.match.keep(record):
                    continue  # the rule does not match
                if step.decide.keep(record):
                    break  # kept by this stage: go on to the next one
                return step.ref
            else:
                if default == "drop":
                    return default_ref
        return None

    def alone(self, ref: RuleRef, record: Record) -> bool:
        """True when ``ref`` on its own (ignoring order) would drop the record."""
        for steps, default, default_ref in self._stages:
            if ref == default_ref:
                return default == "drop" and all(s.match.keep(record) for s in steps)
            for step in steps:
                if step.ref == ref:
                    return not step.decide.keep(record)
        return False


@dataclass(frozen=True)
class Profile:
    """A named way of filtering, with one decider per SIEM (``*`` for all SIEMs alike)."""

    name: str
    title: str
    deciders: Mapping[str, Decider]
    attribute: bool = False
    """True for the profile whose rules' savings are reported one by one."""
    notes: list[str] = field(default_factory=list)

    def decider(self, siem: str) -> Decider:
        """The decider used for a SIEM."""
        return self.deciders.get(siem) or self.deciders["*"]


_MANAGEMENT = FilterConfig(
    default="drop",
    rules=[FilterRule(name="management events", action="keep", category=["Management"])],
)
_MANAGEMENT_WRITES = FilterConfig(
    default="drop",
    rules=[
        FilterRule(name="read-only calls", action="drop", read_only=True),
        FilterRule(name="management events", action="keep", category=["Management"]),
    ],
)


def builtin_profiles(siems: Sequence[str], *, attribute_default: bool) -> list[Profile]:
    """The profiles every report shows."""
    defaults = {s: Decider([(s, SIEM_DEFAULT_FILTER)]) for s in siems}
    return [
        Profile("all", "everything", {"*": Decider([])}),
        Profile("management", "management events only", {"*": Decider([("profile", _MANAGEMENT)])}),
        Profile(
            "management-writes",
            "management minus read-only",
            {"*": Decider([("profile", _MANAGEMENT_WRITES)])},
        ),
        Profile(
            "siem-default",
            "connector defaults (data events out)",
            {"*": Decider([("default", SIEM_DEFAULT_FILTER)]), **defaults},
            attribute=attribute_default,
        ),
    ]


def config_profile(
    global_filter: FilterConfig, sink_filters: Mapping[str, tuple[str, FilterConfig]], siems: Sequence[str]
) -> Profile:
    """The user's config: its global ``[filter]``, then each SIEM sink's ``filter``.

    ``sink_filters`` maps a sink type to (sink name, its filter); SIEMs it does not name get
    their connector default, which the profile's notes say.
    """
    deciders: dict[str, Decider] = {"*": Decider([("global", global_filter)])}
    notes = []
    for siem in siems:
        name, sink_filter = sink_filters.get(siem, (f"{siem} (default)", SIEM_DEFAULT_FILTER))
        if siem not in sink_filters:
            notes.append(f"{siem} is not in your config: its default sink filter is assumed")
        deciders[siem] = Decider([("global", global_filter), (name, sink_filter)])
    return Profile("config", "your config's filters", deciders, attribute=True, notes=notes)
