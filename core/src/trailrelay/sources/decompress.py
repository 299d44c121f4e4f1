"""Gunzip with a hard limit on the output, so a gzip bomb is an error, not an outage."""

from __future__ import annotations

import zlib
from typing import Any

from trailrelay.errors import InputError

try:  # ISA-L is ~1.4x faster than zlib on the same bytes; identical output
    from isal import isal_zlib as _zlib
except ImportError:  # pragma: no cover - isal ships wheels for every supported platform
    _zlib: Any = zlib  # type: ignore[no-redef]

__all__ = ["DEFAULT_LIMIT", "TooLargeError", "bad_gzip_header", "decompress", "is_gzip"]

_ZLIB_ERROR: Any = _zlib.error

DEFAULT_LIMIT = 1 << 30
"""Largest decompressed object accepted by default (1 GiB); ``max_object_bytes`` overrides."""

_CHUNK = 64 << 20


class TooLargeError(InputError):
    """The data is, or unpacks to, more than the limit (a gzip bomb, an object too large)."""


def is_gzip(data: bytes) -> bool:
    """True when the bytes start with the gzip magic number."""
    return data[:2] == b"\x1f\x8b"


def bad_gzip_header(data: bytes) -> str | None:
    """Why ``data``, starting with the gzip magic number, is not a gzip header (None when it may be).

    zlib says so as soon as it has these bytes, ISA-L only once it holds a whole header: an object
    shorter than one would otherwise read as a truncated stream rather than a corrupt one.
    """
    if len(data) > 2 and data[2] != 8:  # 8: deflate, the only method gzip defines
        return "not a gzip header (unknown compression method)"
    if len(data) > 3 and data[3] & 0xE0:
        return "not a gzip header (unknown header flags set)"
    return None


def decompress(data: bytes, limit: int = DEFAULT_LIMIT) -> bytes:
    """Return ``data`` gunzipped (all members) when it is gzip, else as is; bounded by ``limit``."""
    if not is_gzip(data):
        if len(data) > limit:
            raise TooLargeError(f"object is {len(data)} bytes, over the {limit}-byte limit")
        return data
    parts: list[bytes] = []
    total = 0
    rest = data
    while rest:
        bad = bad_gzip_header(rest)
        if bad:
            raise InputError(f"corrupt gzip data: {bad}")
        d = _zlib.decompressobj(31)
        try:
            chunk = d.decompress(rest, min(_CHUNK, limit - total + 1))
            while True:
                total += len(chunk)
                if total > limit:
                    raise TooLargeError(f"gzip expands past the {limit}-byte limit (possible gzip bomb)")
                parts.append(chunk)
                if not d.unconsumed_tail:
                    break
                chunk = d.decompress(d.unconsumed_tail, min(_CHUNK, limit - total + 1))
            tail = d.flush()
        except (zlib.error, _ZLIB_ERROR) as exc:
            raise InputError(f"corrupt gzip data: {exc}") from None
        if tail:
            total += len(tail)
            if total > limit:
                raise TooLargeError(f"gzip expands past the {limit}-byte limit (possible gzip bomb)")
            parts.append(tail)
        if not d.eof:
            raise InputError(f"truncated gzip data: stream ends after {total} decompressed bytes")
        rest = d.unused_data
        if rest and not is_gzip(rest):
            if rest.strip(b"\x00"):
                raise InputError("trailing garbage after the gzip stream")
            break
    return parts[0] if len(parts) == 1 else b"".join(parts)
