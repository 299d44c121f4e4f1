"""Small helpers every connector needs, kept once here and lent to them through the contract.

A leaf: it imports nothing of trailrelay and only the standard library, so ``record`` (which
uses :func:`text_value` and :func:`bool_value`) and ``contract`` (which re-exports all of it)
may both import it. Connectors use these names from :mod:`trailrelay.contract`, never from here.
"""

from __future__ import annotations

import binascii
import datetime as dt
import hashlib
import html
import math
import re
import ssl
import sys
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import accumulate, repeat
from operator import add
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

__all__ = [
    "bool_value",
    "check_writable",
    "cut_runs",
    "describe_answer",
    "exact_bytes",
    "exception_text",
    "hash_id",
    "output_errors",
    "refused_certificate",
    "retry_after_seconds",
    "scrub",
    "search_error",
    "search_unanswered",
    "text_value",
    "url_without_credentials",
]

_URLSAFE = bytes.maketrans(b"+/", b"-_")
_BLAKE2B_15 = hashlib.blake2b(digest_size=15)
"""The empty hash of :func:`hash_id`, copied for each id (never updated itself)."""


def cut_runs(
    sizes: Sequence[int],
    max_bytes: int,
    max_items: int | None = None,
    separator_bytes: int = 1,
    overhead_bytes: int = 0,
) -> list[range]:
    """Split items (by their byte sizes) into consecutive runs within both limits.

    A run's bytes are ``overhead_bytes`` (e.g. 2 for the brackets of a JSON array) plus its
    items' sizes plus ``separator_bytes`` between each two (a newline, a comma; 0 when each item
    already ends with its own newline). A run holds at most ``max_items`` items (no limit when
    None). A single item too large for ``max_bytes`` still gets a run of its own: the server
    decides about it, and says why.
    """
    runs: list[range] = []
    count = len(sizes)
    # ends[i]: bytes of items 0..i-1, each with a separator after it. Items start..end-1 take
    # overhead + (ends[end] - ends[start]) - separator bytes, so the greedy cut (items while they
    # fit) is found by bisecting these running totals, not by a Python step per item: every
    # connector cuts every batch with it.
    ends = list(accumulate(map(add, sizes, repeat(separator_bytes)), initial=0))
    room = max_bytes - overhead_bytes + separator_bytes
    start = 0
    while start < count:
        end = bisect_right(ends, ends[start] + room, start + 1) - 1
        if max_items is not None:
            end = min(end, start + max_items)
        end = max(end, start + 1)  # an item too large for any run still gets one of its own
        runs.append(range(start, end))
        start = end
    return runs


def retry_after_seconds(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date; None if unusable.

    A number (``"7"``, ``"1.5"``) is taken as seconds, a negative one as 0; a date is counted from
    ``now`` (default: the current time; a date in the past is 0). Anything else, NaN and infinity
    included, is None.
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    import email.utils  # noqa: PLC0415 - an HTTP date is rare; email (and socket) cost every start-up

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())


def hash_id(key: bytes) -> bytes:
    """A 20-character id for ``key``: its 15-byte BLAKE2b in URL-safe base64, as ASCII bytes.

    Deterministic across runs and hosts, so an event sent twice gets the same document id.
    Never change it: the ids of documents already stored would no longer match.
    """
    h = _BLAKE2B_15.copy()  # half the cost of building one: the constructor parses 9 keywords
    h.update(key)
    return binascii.b2a_base64(h.digest(), newline=False).translate(_URLSAFE)


def url_without_credentials(url: str, key: str) -> str:
    """``url`` as it is; ValueError when it carries ``user:password@``, a query or a fragment.

    Sinks name their URL in every error, log line and dead-letter reason, so credentials written
    into it would be echoed everywhere. They belong in the sink's credential keys, which are
    secrets (set from the environment or a file) and never printed. A query string is refused
    for the same reason (``?token=...``) and because sinks append API paths to a base URL, which
    a query would end up in front of. Neither is repeated in the error.
    """
    parts = urlsplit(url.strip())
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            f"{key} must not carry credentials (user:password@host): set them with the sink's "
            "credential keys instead, from the environment or a file"
        )
    if parts.query or parts.fragment or url.strip().endswith(("?", "#")):
        raise ValueError(
            f"{key} must be a base URL without a query string or fragment (?... or #...): "
            "API paths are appended to it, and credentials belong in the sink's credential keys"
        )
    return url


def refused_certificate(exc: BaseException | None, *also: str) -> str | None:
    """What a failed certificate check said, when ``exc`` comes from one; None for other errors.

    An unknown CA or a name the certificate does not cover is a setting to fix (``ca_bundle``),
    not a network blip: sending again cannot pass. HTTP clients wrap the ``ssl`` error in their
    own connection errors, so the chain is walked (causes, then contexts) and the innermost
    words are kept. ``also``: a client's own wording of such a refusal (a pinned fingerprint).
    """
    found: str | None = None
    for _ in range(10):
        if exc is None:
            break
        text = str(exc)
        if isinstance(exc, ssl.SSLCertVerificationError) or any(
            marker in text for marker in ("CERTIFICATE_VERIFY_FAILED", *also)
        ):
            found = text
        exc = exc.__cause__ or exc.__context__
    return found


def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """``text`` with every secret value replaced by ``***`` (server messages are echoed to operators)."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "***")
    return text


_TITLE = re.compile(r"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>|<!--.*?-->", re.DOTALL)
_ANSWER_SCANNED = 64 * 1024


def describe_answer(
    body: bytes | str, content_type: str | None = None, secrets: Iterable[str | None] = ()
) -> str:
    """What answered, when it was not the SIEM: ``text/html: '400 The plain HTTP request ...'``.

    The content type without its parameters and a short excerpt of the body: an HTML page's
    title (else its text without tags), whitespace collapsed, cut to 120 characters. Secrets are
    masked before the cut (a proxy's page may echo the request's Authorization header).
    """
    text = body[:_ANSWER_SCANNED].decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = scrub(text[:_ANSWER_SCANNED], secrets)
    if "<" in text:
        title = _TITLE.search(text)
        stripped = _TAG.sub(" ", title.group(1) if title and title.group(1).strip() else text)
        text = html.unescape(stripped)
    excerpt = " ".join(text.split())[:120]
    kind = (content_type or "").split(";")[0].strip().lower()
    shown = repr(excerpt) if excerpt else "an empty body"
    return f"{kind}: {shown}" if kind else shown


def exception_text(exc: BaseException, secrets: Iterable[str | None]) -> str:
    """What an unexpected exception says, fit to show: secrets scrubbed (:func:`scrub`).

    A codec error names the codec and why, never the character or where it sits: that
    character may be one of a secret's (a token sent in a header), which scrubbing the whole
    secret does not find.
    """
    if isinstance(exc, UnicodeEncodeError | UnicodeDecodeError | UnicodeTranslateError):
        codec = f"{exc.encoding!r} codec" if not isinstance(exc, UnicodeTranslateError) else "translation"
        verb = "decode a byte" if isinstance(exc, UnicodeDecodeError) else "encode a character"
        return f"{codec} can't {verb}: {exc.reason} (which one and where are not shown: it may be a secret's)"
    return scrub(str(exc), secrets)


def text_value(value: object) -> str | None:
    """A JSON scalar as text (``true``/``false`` for booleans); None for null, objects and arrays."""
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def bool_value(value: object) -> bool | None:
    """A JSON boolean, or the string ``"true"``/``"false"`` (any case, spaces around); else None."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("true", "false"):
            return low == "true"
    return None


def exact_bytes(data: bytes) -> bytes:
    """An exact-size copy of ``data``, for bytes that are kept a while (a cache, a waiting record).

    orjson's output keeps its whole working buffer: ~4 KB behind a 30-byte string, ~8 KB behind
    a 1 KB event.
    """
    return bytes(memoryview(data))


_MAX_REASON = 600


def search_error(error: Any) -> tuple[str, str]:
    """``(type, reason)`` of an Elasticsearch/OpenSearch error, with the first ``caused_by`` appended.

    Takes the error object, a whole error body (``{"error": {...}, "status": N}``), an AWS
    gateway's ``{"message": "..."}`` or IAM's ``{"Message": "..."}`` (a SigV4 request refused);
    the reason is cut to 600 characters.
    """
    if isinstance(error, dict) and "error" in error and "type" not in error:
        error = error["error"]
    if isinstance(error, dict) and "type" not in error and ("message" in error or "Message" in error):
        return ("error", str(error.get("message", error.get("Message")))[:_MAX_REASON])
    if not isinstance(error, dict):
        return ("error", str(error or "")[:_MAX_REASON])
    etype = str(error.get("type") or "error")
    reason = str(error.get("reason") or "")
    cause = error.get("caused_by")
    if isinstance(cause, dict) and cause.get("reason"):
        reason = f"{reason} (caused by {cause.get('type', 'error')}: {cause['reason']})"
    return etype, reason[:_MAX_REASON]


def search_unanswered(
    body: object, secrets: Iterable[str | None], status: int | None = None, content_type: str | None = None
) -> str | None:
    """Why a 2xx Elasticsearch/OpenSearch ``_search`` answer is no result, or None when it is one.

    Not a search result at all (a proxy's page, ``{}``), or every shard failed (timed out).
    """
    if not isinstance(body, dict) or not isinstance(body.get("hits"), dict):
        raw = orjson.dumps(body) if isinstance(body, dict | list) else str(body or "")
        answer = describe_answer(raw, content_type, secrets)
        return f"the answer was not a search result ({f'HTTP {status}, ' if status else ''}{answer})"
    shards = body.get("_shards")
    if not isinstance(shards, dict):
        return None
    total, failed = shards.get("total"), shards.get("failed")
    if not isinstance(total, int) or total <= 0 or shards.get("successful") != 0:
        return None
    what = f"no shard answered ({failed if isinstance(failed, int) else 0} of {total} failed"
    what += ", timed out)" if body.get("timed_out") is True else ")"
    failures = shards.get("failures")
    if isinstance(failures, list) and failures and isinstance(failures[0], dict):
        etype, reason = search_error(failures[0].get("reason"))
        what += f": {etype}: {reason}".rstrip(": ")
    return what


_EXIT_BAD_OUTPUT = 2
"""An output that cannot be written is a bad argument: the CLI's ``EXIT_CONFIG``."""


@contextmanager
def output_errors(path: Path) -> Iterator[None]:
    """For a command writing ``path``: an OSError in the block is one line and exit status 2.

    ``error: cannot write PATH: REASON`` on standard error, PATH being the file or folder the
    operating system named (else ``path``), never a traceback. Commands wrap the writing of an
    output file or folder in it, and :func:`check_writable` before a long job.
    """
    try:
        yield
    except OSError as exc:
        where = path if exc.filename is None else exc.filename
        sys.stderr.write(f"error: cannot write {where}: {exc.strerror or exc}\n")
        raise SystemExit(_EXIT_BAD_OUTPUT) from None


def check_writable(path: Path) -> None:
    """Raise the OSError that writing a file at ``path`` would meet; leaves nothing behind.

    It opens the file for appending (creating it, then removing it again, when it was not there)
    so that a command refuses an output it cannot write before the work, not after it.
    """
    existed = path.exists()
    with path.open("ab"):
        pass
    if not existed:
        path.unlink()
