"""Typed configuration tables: msgspec Structs validated from TOML tables.

Every ``[table]`` of the configuration file (and every connector's ``[[sinks]]`` table) is a
:class:`Settings` subclass: frozen, unknown keys refused, fields checked and converted the way
a TOML or ``${ENV}`` value needs (``"8"`` → 8, ``"true"`` → True, a string → ``Path`` or
:class:`Secret`). Constraints are ``Annotated[int, Meta(ge=1)]``; a check across fields is a
``__post_init__`` that raises ``ValueError``.

They were pydantic models. Building 26 of them, and importing pydantic, was 0.13-0.19 s of every
``trailrelay forward`` start-up (and of every forked worker's share of a backfill); a Struct
class is built in microseconds.

:meth:`Settings.validate` raises :class:`~trailrelay.errors.ConfigError` naming the key and
what is wrong, never the value (which may be a secret).
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Self, dataclass_transform

import msgspec

from trailrelay.errors import ConfigError

__all__ = ["Meta", "Secret", "SentInHeader", "Settings", "describe", "field", "secret_values"]

Meta = msgspec.Meta
field = msgspec.field


class Secret:
    """A secret string: shown as ``**********`` in reprs, logs and errors; read it explicitly."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("a secret must be a string")
        self._value = value

    def get_secret_value(self) -> str:
        """The secret itself (send it, never log it)."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return "**********"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __len__(self) -> int:
        return len(self._value)


def secret_values(table: msgspec.Struct) -> list[str]:
    """Every :class:`Secret` of ``table`` and its nested tables and lists, as text may show it.

    Each value as it is, without the spaces around it, and as ``repr`` shows it (of the string,
    and of its UTF-8 bytes, as an HTTP library's error quotes a header), longest first: only to
    scrub them (``scrub``) from text that is shown, logged or stored, such as an unexpected
    exception's message.
    """
    found: set[str] = set()
    todo: list[Any] = [table]
    while todo:
        value = todo.pop()
        if isinstance(value, Secret):
            plain = value.get_secret_value()
            encoded = plain.encode("utf-8", "backslashreplace")
            found.update((plain, plain.strip(), repr(plain)[1:-1], repr(encoded)[2:-1]))
        elif isinstance(value, msgspec.Struct):
            todo.extend(getattr(value, name) for name in value.__struct_fields__)
        elif isinstance(value, list | tuple):
            todo.extend(value)
        elif isinstance(value, dict):
            todo.extend(value.values())
    return sorted((s for s in found if s.strip()), key=len, reverse=True)


class SentInHeader:
    """Marks a setting that is sent in an HTTP header: ``Annotated[Secret, Meta(...), SentInHeader()]``.

    :meth:`Settings.validate` refuses a value with a character outside ``charset`` by its key,
    never showing the value, instead of the HTTP library failing on every request with a codec
    error that quotes the character and its position. ``charset`` is what the header (or the
    library building it) can carry: Latin-1 for a header value as it is; ``ascii`` where a
    library encodes it so (say why in ``why``). The marker goes on the field of the connector
    that sends it: a secret posted in a form or a JSON body is not limited.
    """

    __slots__ = ("charset", "why")

    def __init__(self, charset: str = "latin-1", why: str = "which an HTTP header cannot carry") -> None:
        "".encode(charset)  # a LookupError now for an unknown codec, not at the first config
        self.charset = charset
        self.why = why

    def problem(self, value: str) -> str | None:
        """What is wrong with ``value`` (never quoting it), or None when it can be sent."""
        try:
            value.encode(self.charset)
        except UnicodeEncodeError:
            name = _CHARSET_NAMES.get(self.charset, self.charset)
            return f"contains a character outside {name}, {self.why}"
        return None

    def __repr__(self) -> str:
        return f"SentInHeader({self.charset!r})"


_CHARSET_NAMES = {"latin-1": "Latin-1", "ascii": "ASCII"}
_HEADER_FIELDS: dict[type, tuple[tuple[str, SentInHeader], ...]] = {}


def _header_fields(cls: type) -> tuple[tuple[str, SentInHeader], ...]:
    """The fields of a Settings class marked :class:`SentInHeader` (read once per class)."""
    found = _HEADER_FIELDS.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls, include_extras=True)
        found = tuple(
            (name, marker)
            for name in getattr(cls, "__struct_fields__", ())
            for marker in getattr(hints.get(name), "__metadata__", ())
            if isinstance(marker, SentInHeader)
        )
        _HEADER_FIELDS[cls] = found
    return found


def _unsendable(table: msgspec.Struct, where: str) -> Iterator[str]:
    """``key: why`` for each value of a marked field (in ``table`` or a table in it) it cannot send."""
    prefix = f"{where}." if where else ""
    marked = dict(_header_fields(type(table)))
    for name in table.__struct_fields__:
        value = getattr(table, name)
        items = list(enumerate(value)) if isinstance(value, list | tuple) else [(None, value)]
        for i, item in items:
            key = f"{prefix}{name}" if i is None else f"{prefix}{name}[{i}]"
            if isinstance(item, msgspec.Struct):
                yield from _unsendable(item, key)
                continue
            marker = marked.get(name)
            text = item.get_secret_value() if isinstance(item, Secret) else item
            if marker is not None and isinstance(text, str) and (why := marker.problem(text)):
                yield f"{key}: {why}"


class _SettingsMeta(msgspec.StructMeta):
    """Makes every subclass keyword-only too (msgspec does not inherit ``kw_only``).

    So a connector's required key may follow the base's optional ones.
    """

    def __new__(mcs, name: str, bases: tuple[type, ...], ns: dict[str, Any], **options: Any) -> Any:
        options.setdefault("kw_only", True)
        return super().__new__(mcs, name, bases, ns, **options)


# Type checkers learn from this that subclasses are frozen and keyword-only too.
@dataclass_transform(frozen_default=True, kw_only_default=True, field_specifiers=(msgspec.field,))
class Settings(msgspec.Struct, metaclass=_SettingsMeta, frozen=True, forbid_unknown_fields=True):
    """Base of every configuration table."""

    @classmethod
    def validate(cls, table: Mapping[str, Any] | Self, *, where: str = "") -> Self:
        """The table checked and converted; :class:`ConfigError` (keys, never values) if it is not valid.

        ``where`` prefixes the key paths in the message (``sinks[0]``). msgspec stops at the
        first problem; unknown keys of the table itself (typos, the usual mistake) are all listed
        with it.
        """
        if isinstance(table, cls):
            return table
        try:
            result = msgspec.convert(table, cls, strict=False, dec_hook=_decode)
        except msgspec.ValidationError as exc:
            problems = [describe(exc, where)]
        else:
            problems = list(_unsendable(result, where))
            if not problems:
                return result
            raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
        if isinstance(table, Mapping):
            known = set(cls.__struct_encode_fields__)
            prefix = f"{where}." if where else ""
            for key in table:
                if key not in known and (line := f"{prefix}{key}: {_UNKNOWN}") not in problems:
                    problems.append(line)
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed: ``__post_init__`` checks run, types are not converted."""
        return msgspec.structs.replace(self, **changes)


_UNSENDABLE = re.compile(r"[\x00-\x1f\x7f]")
"""Line breaks and other control characters: not for an HTTP header value (a tab is allowed
there, but in a token or password it is a mistake too)."""


def _decode(kind: type, value: Any) -> Any:
    """Types msgspec leaves to us: paths and secrets, from strings.

    A secret goes into HTTP headers (``Authorization: Splunk <token>``): one holding a line break
    or another control character is refused here, by its key, instead of failing in the HTTP
    library at the first request with the header, secret and all, in the message.
    """
    if kind is Path or kind is Secret:
        if isinstance(value, str):
            value = kind(value)
        elif not isinstance(value, kind):
            raise ValueError(f"Expected `str`, got `{type(value).__name__}`")
        if isinstance(value, Secret) and _UNSENDABLE.search(value.get_secret_value()):
            raise ValueError(
                "contains a line break or another control character, which no HTTP header can carry"
            )
        return value
    raise NotImplementedError


_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<loc>[^`]*)`)?$", re.DOTALL)
_UNKNOWN = "unknown key (not a setting of this table)"
_KEYED = re.compile(r"^Object (?:contains unknown|missing required) field `(?P<key>[^`]+)`$")


def describe(exc: msgspec.ValidationError, where: str = "") -> str:
    """``key.path: what is wrong`` from a msgspec error, with any echoed value left out."""
    m = _AT.match(str(exc))
    msg, loc = (m["msg"], m["loc"] or "") if m else (str(exc), "")
    if keyed := _KEYED.match(msg):
        loc += f".{keyed['key']}"
        msg = _UNKNOWN if "unknown" in msg else "required"
    elif msg.startswith("Invalid enum value"):
        msg = "not one of the allowed values"
    key = where + loc if where else loc.lstrip(".")
    return f"{key}: {msg}" if key else msg
