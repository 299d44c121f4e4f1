"""Pseudonym tokens: ``tr1_`` followed by 20 base32 characters of HMAC-SHA256.

Format. ``tr1_`` + the first 100 bits of ``HMAC-SHA256(key, "tr1" 0x00 domain 0x00 value)``
in lowercase RFC 4648 base32 (``a-z``, ``2-7``), e.g. ``tr1_k3xq7d5mz2a4pbf6hwy2``. The prefix
names the format version; the token has no ``:`` ``/`` ``@`` or ``.``, so it sits safely inside
an ARN or a principal id and never looks like an e-mail address or an IP.

Collisions. Two different values share a token with probability 2^-100; among ``n`` distinct
values the chance of any shared token is about n² / 2^101: for every IPv4 address
(n = 2^32) about 7e-12, for a billion user names about 4e-13.

Normalization before the MAC, so that one person gets one token: an IP address in any
spelling becomes its canonical text (``2001:DB8::1`` → ``2001:db8::1``, ``010.0.0.1`` →
``10.0.0.1``) and an e-mail address is lower-cased; anything else is used exactly. ``reveal``
normalizes candidates the same way. A value that already is a token is left as it is, so
applying a profile twice (replaying a dead letter) changes nothing.
"""

from __future__ import annotations

import base64
import re

from trailrelay.privacy.ipaddr import canonical_ip
from trailrelay.privacy.keys import Key

__all__ = ["EMAIL", "TOKEN_PATTERN", "TOKEN_PREFIX", "Tokenizer", "normalize"]

TOKEN_PREFIX = "tr1_"  # noqa: S105 - a format marker, not a secret
TOKEN_CHARS = 20
TOKEN_PATTERN = re.compile(r"tr1_[a-z2-7]{20}")
EMAIL = re.compile(
    r"(?:\"(?:[^\"\\\r\n]|\\.)+\"|[\w%+\-]+(?:['.]+[\w%+\-]+)*)"  # local part: any script, or quoted
    r"@(?:\[(?:IPv6:)?[0-9A-Fa-f:.]+\]"  # domain: an address literal ([10.0.0.1]) or a name
    r"|[\w\-]+(?:\.[\w\-]+)*\.(?:xn--[\w\-]+|[^\W\d_]{2,}))"  # with a top-level domain (IDN too)
)
"""An e-mail address inside a string value (a pragmatic subset of RFC 5322 addresses).

Local parts and domain names may be written in any script (``jürgen@müller.de``), the local
part may be quoted (``"carol"@example.com``) or hold an apostrophe (``o'brien@…``), and the
domain may be an address literal (``dave@[10.0.0.1]``). RFC 5322's rarer local-part characters
(``= / & ! # ? { }``…) end the match, as they separate an address from what precedes it in
text (``to=alice@example.com``, ``…/SSO/alice@example.com``). A domain without a dot
(``bob@localhost``) is not matched: it names a host-local mailbox rather than a person's
address, and the same shape is a package or version pin (``name@latest``).
"""

_CACHE_LIMIT = 200_000


def normalize(value: str) -> str:
    """The form of ``value`` that is MAC'd: canonical IP text, lower-case e-mail, else itself."""
    if "@" in value and EMAIL.fullmatch(value):
        return value.lower()
    if value[:1].isdigit() or ":" in value:
        ip = canonical_ip(value)
        if ip is not None:
            return ip
    return value


class Tokenizer:
    """Turns values into stable tokens under one key; caches recent values (thread-safe)."""

    __slots__ = ("_caches", "key")

    def __init__(self, key: Key) -> None:
        self.key = key
        self._caches: dict[str, dict[str, str]] = {}

    def compute(self, value: str, domain: str = "", *, normalized: bool = False) -> str:
        """The token of ``value`` in ``domain``, without the cache or the already-a-token check."""
        text = value if normalized else normalize(value)
        message = b"tr1\x00" + domain.encode() + b"\x00" + text.encode("utf-8", "surrogatepass")
        digest = self.key.mac(message)
        return TOKEN_PREFIX + base64.b32encode(digest[:13]).decode("ascii")[:TOKEN_CHARS].lower()

    def cache(self, domain: str = "") -> dict[str, str]:
        """The value → token cache of one domain (shared by the rules that use it)."""
        found = self._caches.get(domain)
        if found is None:
            found = self._caches.setdefault(domain, {})
        return found

    def token(self, value: str, domain: str = "") -> str:
        """The token of ``value``; a value that already is a token is returned unchanged."""
        cache = self.cache(domain)
        found = cache.get(value)
        if found is not None:
            return found
        result = value if TOKEN_PATTERN.fullmatch(value) else self.compute(value, domain)
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        cache[value] = result
        return result

    def __repr__(self) -> str:
        return f"Tokenizer({self.key!r})"
