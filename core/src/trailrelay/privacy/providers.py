"""Masking providers: each turns one string value into its masked form.

A provider sees one value at a time, found by field path in the parsed event; it never sees
serialized text. It returns the value itself when it does not apply (a service name where an
IP was expected), so callers can tell "changed" from "left alone" by comparison.
"""

from __future__ import annotations

import re
from typing import Protocol

from trailrelay.privacy.ipaddr import truncate_ip
from trailrelay.privacy.tokens import EMAIL, Tokenizer

__all__ = ["ArnsInText", "EmailTokens", "PrincipalToken", "Provider", "Pseudonym", "Truncate"]

_CACHE_LIMIT = 100_000
_ARN_IN_TEXT = re.compile(r"\barn:[^\s\"'<>()\[\]{}]+")
_TRAILING = ".,;:!?"
"""Sentence punctuation after an ARN in a message (``…user/alice.``) is not part of it."""


class Provider(Protocol):
    """One masking method for string values."""

    numbers: bool
    """True when numbers are masked too (as their decimal text)."""

    def __call__(self, value: str) -> str:
        """The masked value, or ``value`` itself when the method does not apply."""
        ...


class Pseudonym:
    """The whole value becomes its keyed token."""

    numbers = True

    def __init__(self, tokenizer: Tokenizer, domain: str = "") -> None:
        self._tokenizer = tokenizer
        self._domain = domain
        self._cache = tokenizer.cache(domain)

    def __call__(self, value: str) -> str:
        """The token of ``value``."""
        found = self._cache.get(value)
        return found if found is not None else self._tokenizer.token(value, self._domain)


class PrincipalToken:
    """Only the person part of an ARN or principal id becomes a token; the rest stays readable.

    ``arn:…:user/path/alice`` → ``arn:…:user/path/<token>``; ``arn:…:assumed-role/Admin/alice``
    → ``arn:…:assumed-role/Admin/<token>``; ``arn:…:federated-user/bob`` likewise; ``root``,
    role and service ARNs stay as they are. A principal id ``AROA…:alice`` keeps its unique id
    and tokenizes the session name; one without ``:`` (``AIDA…``) is tokenized whole, except a
    role's bare unique id (``AROA…``, a session issuer), which stays like the role's ARN. The
    token of a name is the same as the token of the bare name in ``userName``, so both correlate.
    """

    numbers = True

    def __init__(self, tokenizer: Tokenizer, domain: str = "") -> None:
        self._token = Pseudonym(tokenizer, domain)
        self._cache: dict[str, str] = {}

    def __call__(self, value: str) -> str:
        """``value`` with its person part tokenized."""
        found = self._cache.get(value)
        if found is None:
            found = self._mask(value)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[value] = found
        return found

    def _mask(self, value: str) -> str:
        token = self._token
        if value.startswith("arn:"):
            parts = value.split(":", 5)
            if len(parts) < 6:
                return token(value)  # not a well-formed ARN: hide all of it
            prefix, resource = ":".join(parts[:5]), parts[5]
            kind, slash, rest = resource.partition("/")
            if not slash or not rest:
                return value
            if kind in ("user", "federated-user"):
                head, sep, name = rest.rpartition("/")
                return f"{prefix}:{kind}/{head}{sep}{token(name)}"
            if kind == "assumed-role":
                role, sep, session = rest.partition("/")
                return f"{prefix}:{kind}/{role}/{token(session)}" if sep and session else value
            return value
        head, sep, tail = value.partition(":")
        if sep and tail:
            return f"{head}:{token(tail)}"
        if value.startswith("AROA") and value.isalnum():
            return value  # a role's unique id names no person
        return token(value)


class ArnsInText:
    """In a text (an error message), the person part of every ARN becomes a token.

    Each ARN is masked as :class:`PrincipalToken` masks one (``User: arn:…:assumed-role/Admin/
    <token> is not authorized``); the rest of the text stays readable.
    """

    numbers = False

    def __init__(self, tokenizer: Tokenizer, domain: str = "") -> None:
        self._principal = PrincipalToken(tokenizer, domain)

    def __call__(self, value: str) -> str:
        """``value`` with the person part of each ARN in it tokenized."""
        if "arn:" not in value:
            return value
        return _ARN_IN_TEXT.sub(self._masked, value)

    def _masked(self, match: re.Match[str]) -> str:
        text = match.group(0)
        arn = text.rstrip(_TRAILING)
        return self._principal(arn) + text[len(arn) :]


class Truncate:
    """Every IP address in a value becomes the network address of its prefix; other text stays.

    :func:`~trailrelay.privacy.ipaddr.truncate_ip` says which shapes are found (CIDR,
    ``host:port``, ``[v6]``, lists, addresses in text, IPv4 inside IPv6).
    """

    numbers = False

    def __init__(self, ipv4_prefix: int = 24, ipv6_prefix: int = 48) -> None:
        self._v4 = ipv4_prefix
        self._v6 = ipv6_prefix
        self._cache: dict[str, str] = {}

    def __call__(self, value: str) -> str:
        """``value`` with its addresses truncated (``value`` itself when it holds none)."""
        found = self._cache.get(value)
        if found is None:
            found = truncate_ip(value, self._v4, self._v6) or value
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[value] = found
        return found


class EmailTokens:
    """Every e-mail address inside a string is replaced by its token (the rest of it stays)."""

    numbers = False

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._token = Pseudonym(tokenizer, "")

    def __call__(self, value: str) -> str:
        """``value`` with each e-mail address tokenized."""
        if "@" not in value:
            return value
        return EMAIL.sub(lambda m: self._token(m.group(0)), value)
