"""Apply a privacy profile to records, one sink at a time.

:meth:`Pseudonymizer.apply` never touches the record it is given (that object is shared by
every sink). When a rule changes something it returns a new record built from the changed
event, with the same origin, index, tags and ticket and freshly decoded routing fields (so
``routing.user_identity`` shows the tokens too). When nothing matches it returns the very same
record, whose source bytes then go out unchanged, but only when those bytes are exactly the
parsed event written out again: otherwise (a duplicate key, whose first value the parse
dropped but the bytes still hold; also mere spacing or escapes) the copy goes out re-written
from the parsed event. Integers beyond 64 bits are kept exactly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import orjson

from trailrelay.errors import ConfigError, InputError
from trailrelay.privacy.config import FieldRule, PrivacyConfig, PrivacyProfile, parse_path
from trailrelay.privacy.keys import Key, load_key
from trailrelay.privacy.providers import (
    ArnsInText,
    EmailTokens,
    PrincipalToken,
    Provider,
    Pseudonym,
    Truncate,
)
from trailrelay.privacy.tokens import Tokenizer
from trailrelay.record import BAD_JSON, Record, decode_routing, why_bad

__all__ = ["Pseudonymizer", "build_pseudonymizers"]

log = logging.getLogger("trailrelay.privacy")

_ANY = "*"
_DECODER = msgspec.json.Decoder()
"""Parses events for the profile: unlike orjson it keeps integers beyond 64 bits exactly."""
_ENCODER = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class _Rule:
    label: str
    keys: tuple[str, ...]
    provider: Provider | None
    """None: drop the field."""

    @property
    def plain(self) -> bool:
        """True when the path has no wildcard (the common case, walked without recursion)."""
        return _ANY not in self.keys


def _provider(rule: FieldRule, tokenizer: Tokenizer | None) -> Provider | None:
    if rule.method == "drop":
        return None
    if rule.method == "truncate":
        return Truncate(rule.ipv4_prefix, rule.ipv6_prefix)
    assert tokenizer is not None  # the constructor checked that keyed profiles have a key
    if rule.method == "principal":
        return PrincipalToken(tokenizer, rule.domain)
    if rule.method == "arns":
        return ArnsInText(tokenizer, rule.domain)
    return Pseudonym(tokenizer, rule.domain)


def _needle(keys: tuple[str, ...]) -> bytes | None:
    """The last literal key as it must appear in the JSON bytes, when that is certain."""
    for key in reversed(keys):
        if key != _ANY:
            plain = key.isascii() and key.isprintable() and not any(c in key for c in '"\\/')
            return f'"{key}"'.encode() if plain else None
    return None


class Pseudonymizer:
    """Applies one profile's field rules (and e-mail scanning) to records; counts what changed."""

    def __init__(
        self, profile: PrivacyProfile, key: Key | Tokenizer | None, *, name: str = "profile"
    ) -> None:
        tokenizer = Tokenizer(key) if isinstance(key, Key) else key
        if profile.keyed and tokenizer is None:
            raise ConfigError(f"privacy profile {name!r} pseudonymizes values but no key was given")
        self.name = name
        self.profile = profile
        self._rules = [_Rule(f"{r.path}:{r.method}", r.keys, _provider(r, tokenizer)) for r in profile.fields]
        if profile.emails:
            assert tokenizer is not None
            emails = EmailTokens(tokenizer)
            self._rules += [_Rule(f"{p}:emails", parse_path(p), emails) for p in profile.emails]
        needles = [_needle(r.keys) for r in self._rules if not r.label.endswith(":emails")]
        if profile.emails:
            needles.append(b"@")
        self._needles: tuple[bytes, ...] | None = (
            None if any(n is None for n in needles) else tuple(n for n in needles if n is not None)
        )
        self._plain = [(r.keys[:-1], r.keys[-1], r.provider) if r.plain else None for r in self._rules]
        self._groups = _by_top_key(self._rules)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._tallies: list[list[int]] = []
        """One list per thread: records changed, then values changed per rule (no lock per record)."""

    def apply(self, record: Record) -> Record:
        """The record with the profile applied: a new record if anything changed, else ``record``.

        Raises :class:`InputError` when the record cannot be parsed to apply the profile (it must
        then be dead-lettered for this sink, never sent unmasked).
        """
        raw = record.raw
        needles = self._needles
        if needles is not None and b"\\u" not in raw and not any(n in raw for n in needles):
            return record  # none of the fields can be present: skip the parse
        try:
            doc = _DECODER.decode(raw)
        except BAD_JSON as exc:
            raise InputError(
                f"privacy profile {self.name!r}: cannot parse the record: {why_bad(exc, raw)}"
            ) from None
        if not isinstance(doc, dict):
            raise InputError(f"privacy profile {self.name!r}: the record is not a JSON object")
        if not self.apply_document(doc) and _written(doc) == raw:
            return record  # the bytes are exactly the parsed event: no duplicate key hides a value
        try:
            new = _rebuilt(doc, record)
        except ValueError as exc:
            raise InputError(f"privacy profile {self.name!r}: cannot rebuild the record: {exc}") from None
        new.tags = record.tags
        new.ticket = record.ticket
        new.modified = True
        return new

    def apply_document(self, doc: dict[str, Any]) -> int:
        """Apply the profile to a parsed event in place; the number of values changed or removed."""
        total = 0
        tally: list[int] | None = None
        for top, members in self._groups:
            if top is not None:
                node = doc.get(top)
                if node.__class__ is not dict and node.__class__ is not list:
                    continue  # nothing below it (responseElements is null in most events)
            for i in members:
                plain = self._plain[i]
                if plain is None:
                    rule = self._rules[i]
                    n = _visit(doc, rule.keys, 0, rule.provider)
                else:
                    n = _at(doc, *plain)
                if n:
                    total += n
                    if tally is None:
                        tally = self._tally()
                    tally[i + 1] += n
        if tally is not None:
            tally[0] += 1
        return total

    def _tally(self) -> list[int]:
        tally: list[int] | None = getattr(self._local, "tally", None)
        if tally is None:
            tally = self._local.tally = [0] * (len(self._rules) + 1)
            with self._lock:
                self._tallies.append(tally)
        return tally

    def stats(self) -> dict[str, int]:
        """Records changed and values changed per rule (``path:method``) so far."""
        with self._lock:
            sums = [sum(col) for col in zip(*self._tallies, strict=True)] if self._tallies else []
        if not sums:
            return {}
        out = {"records_changed": sums[0]}
        for rule, n in zip(self._rules, sums[1:], strict=True):
            if n:
                out[rule.label] = out.get(rule.label, 0) + n
        return out

    def __repr__(self) -> str:
        return f"Pseudonymizer({self.name!r}, {len(self._rules)} rules)"


def _by_top_key(rules: list[_Rule]) -> list[tuple[str | None, list[int]]]:
    """Rule indices grouped by the event key their path lies below (None: a top-level path).

    A rule below a key applies only when that key holds an object or a list, so one lookup
    skips all the rules below an absent or null ``responseElements``.
    """
    groups: dict[str | None, list[int]] = {}
    for i, rule in enumerate(rules):
        top = rule.keys[0] if len(rule.keys) > 1 and rule.keys[0] != _ANY else None
        groups.setdefault(top, []).append(i)
    return list(groups.items())


def _written(doc: dict[str, Any]) -> bytes:
    """The event as compact JSON (msgspec writes what orjson cannot: integers beyond 64 bits)."""
    try:
        return orjson.dumps(doc)
    except TypeError:
        return _ENCODER.encode(doc)


def _rebuilt(doc: dict[str, Any], record: Record) -> Record:
    """A record of ``doc`` in ``record``'s place; ValueError when it is not one."""
    try:
        return Record.from_document(doc, record.origin, record.index)
    except TypeError:  # an integer beyond 64 bits or deep nesting, which orjson cannot write
        raw = _ENCODER.encode(doc)
        # not cached as the document: code after this may hand it to orjson; it is parsed again
        return Record(raw, decode_routing(raw), record.origin, record.index)


def _at(doc: dict[str, Any], head: tuple[str, ...], last: str, provider: Provider | None) -> int:
    """Apply ``provider`` (None: drop) at a path without wildcards; count changes."""
    node: Any = doc
    for key in head:
        node = node.get(key) if node.__class__ is dict else None
    if node.__class__ is not dict or last not in node:
        return 0
    if provider is None:
        del node[last]
        return 1
    value = node[last]
    if value.__class__ is str:
        new = provider(value)
        if new == value:
            return 0
        node[last] = new
        return 1
    new, n = _mask(value, provider)
    if n:
        node[last] = new
    return n


def _visit(node: Any, keys: tuple[str, ...], i: int, provider: Provider | None) -> int:
    """Apply ``provider`` (None: drop) at the path ``keys[i:]`` below ``node``; count changes."""
    key = keys[i]
    last = i + 1 == len(keys)
    if node.__class__ is dict:
        if key == _ANY:
            targets: Iterable[Any] = list(node)
        elif key in node:
            targets = (key,)
        else:
            return 0
    elif node.__class__ is list and key == _ANY:
        if last and provider is None:
            n = len(node)
            node.clear()
            return n
        targets = range(len(node))
    else:
        return 0
    changed = 0
    for k in targets:
        if not last:
            changed += _visit(node[k], keys, i + 1, provider)
        elif provider is None:
            del node[k]
            changed += 1
        else:
            value = node[k]
            new, n = _mask(value, provider)
            if n:
                node[k] = new
                changed += n
    return changed


def _mask(value: Any, provider: Provider) -> tuple[Any, int]:
    """The masked form of a value: strings, numbers (if the provider takes them), containers."""
    cls = value.__class__
    if cls is str:
        new = provider(value)
        return (new, 1) if new != value else (value, 0)
    if cls is dict:
        count = 0
        for k, v in value.items():
            new, n = _mask(v, provider)
            if n:
                value[k] = new
                count += n
        return value, count
    if cls is list:
        count = 0
        for idx, v in enumerate(value):
            new, n = _mask(v, provider)
            if n:
                value[idx] = new
                count += n
        return value, count
    if (cls is int or cls is float) and provider.numbers:
        return provider(str(value)), 1
    return value, 0


def build_pseudonymizers(
    config: PrivacyConfig, sink_names: Iterable[str], base_dir: Path | None = None
) -> dict[str, Pseudonymizer]:
    """One pseudonymizer per sink that gets a profile, so each sink's stats are its own.

    Sinks sharing a profile share its key's tokenizer; each sink applies its profile itself.

    Reads the key (once) when a used profile needs it; raises :class:`ConfigError` for an
    unknown sink in ``[privacy.sinks]`` or an unusable key.
    """
    names = list(sink_names)
    config.check_sinks(names)
    wanted = {s: p for s in names if (p := config.profile_for(s)) is not None}
    needs_key = any(config.profile(p).keyed for p in wanted.values())
    key = load_key(config, base_dir) if needs_key else None
    tokenizer = Tokenizer(key) if key is not None else None
    for sink, profile in sorted(wanted.items()):
        log.info(
            "privacy: sink %s gets profile %s%s",
            sink,
            profile,
            f" (key {key.fingerprint} from {key.source})" if key is not None else "",
        )
    return {s: Pseudonymizer(config.profile(p), tokenizer, name=p) for s, p in wanted.items()}
