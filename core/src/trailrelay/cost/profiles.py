"""Filter profiles compared side by side, and what each single rule saves.

A profile decides, per sink, which records that sink would receive. The built-in ones:
``all`` (everything), ``management`` (management events only), ``management-writes``
(management minus read-only calls) and ``siem-default`` (each connector's default sink filter:
data events stay out). With ``-c FILE`` the profile ``config`` is the file's global ``[filter]``
followed by each SIEM sink's own ``filter`` (a SIEM the file does not configure gets its
default; a SIEM with several sinks is decided at each). Decisions are those of
:class:`~trailrelay.transforms.filters.RecordFilter`; the deciders here also say which rule
decided, so savings can be attributed rule by rule and add up to the profile's total saving.
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


Sinks = Sequence[tuple[str, str, FilterConfig | None]]
"""The sinks measured: (name, SIEM, its own filter, or None where the config names no such sink)."""


@dataclass(frozen=True)
class Profile:
    """A named way of filtering, with one decider per sink by name (``*`` for all sinks alike)."""

    name: str
    title: str
    deciders: Mapping[str, Decider]
    attribute: bool = False
    """True for the profile whose rules' savings are reported one by one."""
    notes: list[str] = field(default_factory=list)

    def decider(self, sink: str) -> Decider:
        """The decider used for a sink (by its name)."""
        return self.deciders.get(sink) or self.deciders["*"]


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


def builtin_profiles(sinks: Sinks, *, attribute_default: bool) -> list[Profile]:
    """The profiles every report shows."""
    defaults = {name: Decider([(siem, SIEM_DEFAULT_FILTER)]) for name, siem, _ in sinks}
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


def config_profile(global_filter: FilterConfig, sinks: Sinks) -> Profile:
    """The user's config: its global ``[filter]``, then each SIEM sink's ``filter``.

    A SIEM the config does not name (its sink's filter is None) gets its connector default, and
    a SIEM with several sinks is billed for each; the profile's notes say both.
    """
    deciders: dict[str, Decider] = {"*": Decider([("global", global_filter)])}
    notes = []
    names: dict[str, list[str]] = {}
    for name, siem, sink_filter in sinks:
        if sink_filter is None:
            notes.append(f"{siem} is not in your config: its default sink filter is assumed")
        else:
            names.setdefault(siem, []).append(name)
        deciders[name] = Decider([("global", global_filter), (name, sink_filter or SIEM_DEFAULT_FILTER)])
    for siem, several in names.items():
        if len(several) > 1:
            notes.append(
                f"{siem}: {len(several)} sinks ({', '.join(several)}), each billed; figures add them up"
            )
    return Profile("config", "your config's filters", deciders, attribute=True, notes=notes)
