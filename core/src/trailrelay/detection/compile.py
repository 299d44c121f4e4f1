"""Compile a Sigma rule's condition, once, into a Python predicate over a record.

pySigma parses the rule and resolves its condition (``1 of selection_*``, ``all of them``,
``not``, lists, modifiers) into a tree of AND/OR/NOT over ``field = value`` leaves, which
:mod:`.lower` stores as plain lists (:mod:`.plan`); this module needs no pySigma. Each leaf
becomes a closure specialised for its value type; AND/OR evaluate the cheapest arguments first
(routing fields before parsed-document fields), which never changes the result.

Matching follows the Sigma specification as the SIEM backends implement it:

* strings compare case-insensitively (``|cased`` makes them exact); ``*`` and ``?`` are
  wildcards; ``contains``/``startswith``/``endswith`` add them;
* numbers and booleans match the JSON value or its text (``false`` matches ``false`` and
  ``"false"``), the way SIEMs index JSON;
* ``null`` matches a field that is absent or null; ``|exists`` tests presence;
* ``|re`` searches (unanchored, flags ``i``/``m``/``s``), ``|cidr`` tests IPv4/IPv6 membership
  (an invalid address never matches), ``|gt``/``|gte``/``|lt``/``|lte``/``|neq`` compare numbers,
  ``|fieldref`` compares with another field;
* a field holding a list matches when any element does (see :mod:`.fields`);
* wildcards (so ``contains``/``startswith``/``endswith``) and ``|re`` applied to a field holding
  an object (``requestParameters``, ``responseElements``) search its compact JSON text, as the
  exported queries do in Sentinel and Elastic: one rule, one verdict;
* a keyword (a value without a field) is searched in the raw event text, case-insensitively.

Anything else (placeholders from ``|expand``, timestamp modifiers) raises
:class:`Unsupported` so the loader can name the rule instead of silently never matching.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from trailrelay.detection.fields import FieldGetter, field_getter, scalar_text, searchable_text
from trailrelay.detection.plan import WILDCARD_MULTI
from trailrelay.record import Record

__all__ = ["Compiled", "Constraint", "Predicate", "Unsupported", "compile_condition", "constraint"]

Predicate = Callable[[Record], bool]
Matcher = Callable[[Any], bool]
Node = list[Any]
"""A condition node of a plan (see :mod:`.plan`)."""
Value = list[Any]

_ROUTED_COST = 1
_DOCUMENT_COST = 5
_RAW_COST = 8


class Unsupported(Exception):  # noqa: N818 - reads as "Unsupported: <feature>"
    """A rule uses a Sigma feature the in-stream evaluator does not implement."""


@dataclass(frozen=True, slots=True)
class Compiled:
    """A predicate and its relative cost (routing-only leaves are cheapest)."""

    predicate: Predicate
    cost: int
    simple: Simple | None = None
    """Set on a routed ``field = plain string`` leaf, so OR can test a list of them at once."""


@dataclass(frozen=True, slots=True)
class Simple:
    """A routed leaf testing one field against one plain string (no ``?`` or inner ``*``)."""

    field: str
    one: Callable[[Record], Any]
    kind: str
    """``exact``, ``contains``, ``startswith`` or ``endswith``."""
    cased: bool
    text: str


def condition_fields(nodes: Sequence[Node]) -> set[str]:
    """Every field a condition reads (``|fieldref`` targets included)."""
    out: set[str] = set()
    todo = list(nodes)
    while todo:
        node = todo.pop()
        kind = node[0]
        if kind in ("and", "or"):
            todo.extend(node[1])
        elif kind == "not":
            todo.append(node[1])
        elif kind == "field":
            out.add(node[1])
            if node[2][0] == "ref":
                out.add(node[2][1])
    return out


def compile_condition(nodes: Sequence[Node]) -> Compiled:
    """One predicate for a rule's condition(s); several conditions are OR-ed, as Sigma defines."""
    parts = [_compile(n) for n in nodes]
    return parts[0] if len(parts) == 1 else _or(parts)


def _compile(node: Node) -> Compiled:
    kind = node[0]
    if kind == "and":
        return _and([_compile(a) for a in node[1]])
    if kind == "or":
        return _or([_compile(a) for a in node[1]])
    if kind == "not":
        inner = _compile(node[1])
        p = inner.predicate
        return Compiled(lambda rec: not p(rec), inner.cost)
    if kind == "field":
        return _field_leaf(node[1], node[2])
    if kind == "keyword":
        return _keyword_leaf(node[1])
    raise Unsupported(f"condition node {kind!r}")


def _and(parts: list[Compiled]) -> Compiled:
    parts = sorted(parts, key=lambda c: c.cost)
    preds = tuple(c.predicate for c in parts)
    cost = sum(c.cost for c in parts)
    if len(preds) == 1:
        return parts[0]
    if len(preds) == 2:
        a, b = preds
        return Compiled(lambda rec: a(rec) and b(rec), cost)

    def all_of(rec: Record) -> bool:
        return all(p(rec) for p in preds)

    return Compiled(all_of, cost)


def _or(parts: list[Compiled]) -> Compiled:
    parts = sorted(_merge_lists(parts), key=lambda c: c.cost)
    preds = tuple(c.predicate for c in parts)
    cost = sum(c.cost for c in parts)
    if len(preds) == 1:
        return parts[0]
    if len(preds) == 2:
        a, b = preds
        return Compiled(lambda rec: a(rec) or b(rec), cost)

    def any_of(rec: Record) -> bool:
        return any(p(rec) for p in preds)

    return Compiled(any_of, cost)


MERGE_LISTS = True
"""OR of plain-string leaves on one field becomes one test (switched off only to compare)."""


def _merge_lists(parts: list[Compiled]) -> list[Compiled]:
    """One test for a list of plain strings on one field (``field|contains: [a, b, c]``).

    The field is read and its text folded once for the whole list instead of once per value;
    the verdicts are the same. Exact, ``contains``, ``startswith`` and ``endswith`` lists merge.
    """
    if not MERGE_LISTS:
        return parts
    out: list[Compiled] = []
    groups: dict[tuple[str, str, bool], list[Simple]] = {}
    for part in parts:
        if part.simple is None:
            out.append(part)
        else:
            s = part.simple
            groups.setdefault((s.field, s.kind, s.cased), []).append(s)
    for (_, kind, cased), leaves in groups.items():
        one, test = leaves[0].one, _text_test(kind, cased, [s.text for s in leaves])

        def any_value(rec: Record, one: Callable[[Record], Any] = one, test: Matcher = test) -> bool:
            v = one(rec)
            return v is not None and test(v)

        out.append(Compiled(any_value, _ROUTED_COST))
    return out


# --- field = value leaves -------------------------------------------------------------------


def _field_leaf(field: str, value: Value) -> Compiled:
    getter = field_getter(field)
    cost = _ROUTED_COST if getter.routed else _DOCUMENT_COST
    kind = value[0]
    if kind == "null":
        return Compiled(_absent(getter), cost)
    if kind == "exists":
        present = _absent(getter)
        if value[1]:
            return Compiled(lambda rec: not present(rec), cost)
        return Compiled(present, cost)
    if kind == "ref":
        return Compiled(_field_reference(getter, value[1], value[2]), cost + _DOCUMENT_COST)
    match = _matcher(value)
    one, many = getter.one, getter.many
    if one is not None:

        def routed(rec: Record) -> bool:
            v = one(rec)
            return v is not None and match(v)

        return Compiled(routed, cost, _simple(getter.field, one, value))
    assert many is not None

    def parsed(rec: Record) -> bool:
        return any(match(v) for v in many(rec))

    return Compiled(parsed, cost)


def _simple(field: str, one: Callable[[Record], Any], value: Value) -> Simple | None:
    """The plain-string test of a leaf, when it is one (see :func:`_merge_lists`)."""
    if value[0] != "str":
        return None
    pattern = _plain_pattern(value[2])
    if pattern is None:
        return None
    kind, text = pattern
    return Simple(field, one, kind, bool(value[1]), text)


def _absent(getter: FieldGetter) -> Predicate:
    one, many = getter.one, getter.many
    if one is not None:
        return lambda rec: one(rec) is None
    assert many is not None
    return lambda rec: not many(rec)


def _field_reference(getter: FieldGetter, field: str, mode: str) -> Predicate:
    other = field_getter(field)

    def texts(g: FieldGetter, rec: Record) -> list[str]:
        if g.one is not None:
            v = g.one(rec)
            values = [] if v is None else [v]
        else:
            assert g.many is not None
            values = g.many(rec)
        return [t.lower() for v in values if (t := scalar_text(v)) is not None]

    def compare(a: str, b: str) -> bool:
        if mode == "startswith":
            return a.startswith(b)
        if mode == "endswith":
            return a.endswith(b)
        return a == b

    def pred(rec: Record) -> bool:
        mine = texts(getter, rec)
        theirs = texts(other, rec)
        return any(compare(a, b) for a in mine for b in theirs)

    return pred


def _matcher(value: Value) -> Matcher:
    """A test of one JSON scalar against a Sigma value."""
    kind = value[0]
    if kind == "any":
        inner = [_matcher(v) for v in value[1]]
        return lambda v: any(m(v) for m in inner)
    if kind == "str":
        return _string_matcher(value[2], cased=bool(value[1]))
    if kind == "bool":
        return _bool_matcher(bool(value[1]))
    if kind == "num":
        return _number_matcher(value[1])
    if kind == "re":
        return _regex_matcher(value[1], value[2])
    if kind == "cidr":
        return _cidr_matcher(value[1])
    if kind == "cmp":
        return _compare_matcher(value[1], value[2])
    raise Unsupported(f"value {kind!r} here")


def _string_matcher(parts: Sequence[Any], *, cased: bool) -> Matcher:
    pattern = _plain_pattern(parts)
    if pattern is not None:
        return _text_test(pattern[0], cased, [pattern[1]])
    # Other wildcards (``?``, an inner ``*``): a regex over the text, an object's JSON text too.
    rx = _wildcard_regex(parts, cased=cased)
    return lambda v: (t := searchable_text(v)) is not None and rx.fullmatch(t) is not None


def _plain_pattern(parts: Sequence[Any]) -> tuple[str, str] | None:
    """``(kind, text)`` of plain text with at most a leading and a trailing ``*``, else None.

    The kinds: ``exact``, ``contains`` (``*x*``), ``startswith`` (``x*``) and ``endswith``
    (``*x``), what Sigma's string modifiers make.
    """
    plain = [p for p in parts if isinstance(p, str)]
    specials = [p for p in parts if not isinstance(p, str)]
    if not specials:
        return "exact", "".join(plain)
    multi = WILDCARD_MULTI
    if len(plain) != 1 or any(p != multi for p in specials):
        return None
    if len(parts) == 3 and parts[0] == multi and parts[2] == multi:
        return "contains", plain[0]
    if len(parts) == 2 and parts[1] == multi:
        return "startswith", plain[0]
    if len(parts) == 2 and parts[0] == multi:
        return "endswith", plain[0]
    return None


def _text_test(kind: str, cased: bool, texts: list[str]) -> Matcher:
    """A value's text against plain strings, any of them: equal, containing, starting, ending.

    Case-insensitive unless ``cased``. Wildcard kinds (contains, startswith, endswith) search an
    object's compact JSON text, as SIEMs do.
    """
    fold: Callable[[str], str] = (lambda t: t) if cased else str.lower
    if kind == "exact":
        exact = frozenset(texts)
        folded = frozenset(fold(t) for t in texts)
        return lambda v: (t := scalar_text(v)) is not None and (t in exact or fold(t) in folded)
    needles = tuple(fold(t) for t in texts)
    text_of = searchable_text
    if kind == "startswith":
        return lambda v: (t := text_of(v)) is not None and fold(t).startswith(needles)
    if kind == "endswith":
        return lambda v: (t := text_of(v)) is not None and fold(t).endswith(needles)
    if len(needles) == 1:
        (needle,) = needles
        return lambda v: (t := text_of(v)) is not None and needle in fold(t)

    def contains_any(v: Any) -> bool:
        t = text_of(v)
        if t is None:
            return False
        t = fold(t)
        return any(n in t for n in needles)

    return contains_any


def _wildcard_regex(parts: Sequence[Any], *, cased: bool) -> re.Pattern[str]:
    pieces = []
    for p in parts:
        if isinstance(p, str):
            pieces.append(re.escape(p))
        elif p == WILDCARD_MULTI:
            pieces.append(".*")
        else:
            pieces.append(".")
    flags = re.DOTALL if cased else re.DOTALL | re.IGNORECASE
    return re.compile("".join(pieces), flags)


def _bool_matcher(b: bool) -> Matcher:
    text = "true" if b else "false"

    def match(v: Any) -> bool:
        if type(v) is bool:
            return v is b
        return type(v) is str and v.lower() == text

    return match


def _number_matcher(n: float) -> Matcher:
    def match(v: Any) -> bool:
        kind = type(v)
        if kind is int or kind is float:
            return bool(v == n)
        if kind is str:
            return _as_number(v) == n
        return False

    return match


def _as_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


_RE_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}


def _regex_matcher(pattern: str, flag_letters: str) -> Matcher:
    flags = 0
    for letter in flag_letters:
        flags |= _RE_FLAGS[letter]
    rx = re.compile(pattern, flags)
    return lambda v: (t := searchable_text(v)) is not None and rx.search(t) is not None


@lru_cache(maxsize=4096)
def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _cidr_matcher(cidr: str) -> Matcher:
    network = ipaddress.ip_network(cidr)

    def match(v: Any) -> bool:
        if type(v) is not str:
            return False
        addr = _address(v)
        return addr is not None and addr.version == network.version and addr in network

    return match


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "lt": lambda a, b: a < b,
    "lte": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "gte": lambda a, b: a >= b,
    "neq": lambda a, b: a != b,
}


def _compare_matcher(op_name: str, bound: float) -> Matcher:
    op = _COMPARE[op_name]

    def match(v: Any) -> bool:
        kind = type(v)
        if kind is int or kind is float:
            return op(float(v), bound)
        if kind is str:
            n = _as_number(v)
            return n is not None and op(n, bound)
        return False

    return match


# --- keywords -------------------------------------------------------------------------------


def _keyword_leaf(value: Value) -> Compiled:
    cased, parts = bool(value[1]), value[2]
    if any(not isinstance(p, str) for p in parts):
        rx = _wildcard_regex(parts, cased=cased)
        return Compiled(lambda rec: rx.search(_raw_text(rec)) is not None, _RAW_COST)
    text = _plain(parts)
    needle = text if cased else text.lower()
    if cased:
        return Compiled(lambda rec: needle in _raw_text(rec), _RAW_COST)
    return Compiled(lambda rec: needle in _raw_text(rec).lower(), _RAW_COST)


def _plain(parts: Sequence[Any]) -> str:
    """The literal text of a string's parts, wildcards left out."""
    return "".join(p for p in parts if isinstance(p, str))


def _raw_text(record: Record) -> str:
    return record.raw.decode("utf-8", "replace")


# --- what a rule pins down, for the candidate index ----------------------------------------


@dataclass(frozen=True, slots=True)
class Constraint:
    """Values a matching record must have: lower-cased names/sources (None: any), an error code."""

    names: frozenset[str] | None = None
    sources: frozenset[str] | None = None
    needs_error: bool = False


_ANY = Constraint()


def constraint(nodes: Sequence[Node]) -> Constraint:
    """What every record matching the condition(s) must have; used to skip rules without evaluating."""
    parts = [_constraint(n) for n in nodes]
    return parts[0] if len(parts) == 1 else _union(parts)


def _constraint(node: Node) -> Constraint:
    kind = node[0]
    if kind == "and":
        return _intersection([_constraint(a) for a in node[1]])
    if kind == "or":
        return _union([_constraint(a) for a in node[1]])
    if kind == "field":
        return _leaf_constraint(node[1], node[2])
    return _ANY  # NOT, keywords: no promise about the fields


def _leaf_constraint(field: str, value: Value) -> Constraint:
    kind = value[0]
    if field == "errorCode":
        return Constraint(needs_error=kind not in ("null", "exists") or (kind == "exists" and value[1]))
    if field not in ("eventName", "eventSource"):
        return _ANY
    values = value[1] if kind == "any" else [value]
    if not all(v[0] == "str" and all(isinstance(p, str) for p in v[2]) for v in values):
        return _ANY
    texts = frozenset(_plain(v[2]).lower() for v in values)
    return Constraint(names=texts) if field == "eventName" else Constraint(sources=texts)


def _intersection(parts: list[Constraint]) -> Constraint:
    names: frozenset[str] | None = None
    sources: frozenset[str] | None = None
    for p in parts:
        if p.names is not None:
            names = p.names if names is None else names & p.names
        if p.sources is not None:
            sources = p.sources if sources is None else sources & p.sources
    return Constraint(names, sources, any(p.needs_error for p in parts))


def _union(parts: list[Constraint]) -> Constraint:
    names: frozenset[str] | None = frozenset()
    sources: frozenset[str] | None = frozenset()
    for p in parts:
        names = None if names is None or p.names is None else names | p.names
        sources = None if sources is None or p.sources is None else sources | p.sources
    return Constraint(names, sources, all(p.needs_error for p in parts))
