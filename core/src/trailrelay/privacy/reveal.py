"""Re-identification for an investigator who holds the key and candidate values.

A pseudonym cannot be decrypted; it can only be recomputed. Given the key and candidate
values (typed, from a file, or every address of a CIDR range), each candidate is tokenized in
each pseudonym domain and compared with the tokens asked about.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from trailrelay.privacy.tokens import TOKEN_PATTERN, Tokenizer

__all__ = ["Match", "RevealResult", "candidates", "find_tokens", "reveal"]

DEFAULT_MAX_CANDIDATES = 1 << 24
_TOKEN_LIKE = re.compile(r"(?<!\w)tr1_\w*")
"""A ``tr1_`` that starts a word, with the rest of the word (a token is the whole word)."""


@dataclass(frozen=True, slots=True)
class Match:
    """A candidate whose token is one of those asked about."""

    token: str
    value: str
    domain: str


@dataclass(slots=True)
class RevealResult:
    """Matches found, tokens left unmatched, and how many candidates were tried."""

    matches: list[Match] = field(default_factory=list)
    unmatched: list[str] = field(default_factory=list)
    tried: int = 0


def find_tokens(texts: Iterable[str]) -> list[str]:
    """Every distinct ``tr1_`` token inside the given texts (a bare token or a whole ARN).

    Raises ValueError for a word that starts with ``tr1_`` but is not a token (cut short, or
    run on as in ``tr1_…EXTRA``), rather than answering for a part of it.
    """
    out: dict[str, None] = {}
    for text in texts:
        for m in _TOKEN_LIKE.finditer(text):
            word = m.group(0)
            if not TOKEN_PATTERN.fullmatch(word):
                shown = word if len(word) <= 40 else word[:40] + "…"
                raise ValueError(f"{shown!r} is not a token (tr1_ and 20 characters of a-z and 2-7)")
            out[word] = None
    return list(out)


def candidates(
    values: Iterable[str] = (),
    files: Iterable[Path] = (),
    cidrs: Iterable[str] = (),
    *,
    max_candidates: int = DEFAULT_MAX_CANDIDATES,
) -> Iterator[tuple[str, bool]]:
    """Candidate values with a flag "already normalized": typed ones, file lines, CIDR addresses.

    Raises ValueError for an invalid CIDR or one larger than ``max_candidates`` addresses.
    """
    networks = []
    for cidr in cidrs:
        net = ipaddress.ip_network(cidr.strip(), strict=False)
        if net.num_addresses > max_candidates:
            raise ValueError(
                f"{cidr} has {net.num_addresses:,} addresses; the limit is {max_candidates:,} "
                "(raise it with --max-candidates)"
            )
        networks.append(net)
    for value in values:
        yield value, False
    for path in files:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                text = line.rstrip("\r\n")
                if text:
                    yield text, False
    for net in networks:
        first = int(net.network_address)
        make = type(net.network_address)
        for n in range(first, first + net.num_addresses):
            yield str(make(n)), True


def reveal(
    tokens: Iterable[str],
    pool: Iterable[tuple[str, bool]],
    tokenizer: Tokenizer,
    domains: Iterable[str] = ("",),
) -> RevealResult:
    """Which candidate maps to each token, trying every domain; stops once all are found."""
    wanted = set(tokens)
    doms = sorted(set(domains))
    result = RevealResult()
    found: set[str] = set()
    for value, normalized in pool:
        result.tried += 1
        for domain in doms:
            token = tokenizer.compute(value, domain, normalized=normalized)
            if token in wanted:
                result.matches.append(Match(token, value, domain))
                found.add(token)
        if found == wanted:
            break
    result.unmatched = sorted(wanted - found)
    return result
