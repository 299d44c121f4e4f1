"""Gunzip: multi-member, truncated, corrupt, bombs."""

from __future__ import annotations

import gzip
import zlib

import pytest

from trailrelay.errors import InputError
from trailrelay.sources.decompress import decompress, is_gzip


def test_plain_bytes_pass_through() -> None:
    assert decompress(b'{"Records":[]}') == b'{"Records":[]}'
    assert not is_gzip(b"{}")


def test_multi_member_gzip() -> None:
    data = gzip.compress(b"abc") + gzip.compress(b"def")
    assert decompress(data) == b"abcdef"


def test_truncated_gzip() -> None:
    data = gzip.compress(b"x" * 100_000)
    with pytest.raises(InputError, match="truncated"):
        decompress(data[: len(data) // 2])


def test_corrupt_gzip() -> None:
    data = bytearray(gzip.compress(b"hello world" * 100))
    data[20:30] = b"\x00" * 10
    with pytest.raises(InputError, match=r"corrupt|truncated"):
        decompress(bytes(data))


def test_a_gzip_magic_number_before_no_gzip_header_is_corrupt_not_truncated() -> None:
    with pytest.raises(InputError, match=r"^corrupt gzip data: not a gzip header"):
        decompress(b"\x1f\x8bgarbage")
    with pytest.raises(InputError, match=r"^corrupt gzip data: not a gzip header"):
        decompress(gzip.compress(b"ok") + b"\x1f\x8bgarbage")
    with pytest.raises(InputError, match=r"^truncated gzip data"):
        decompress(gzip.compress(b"ok")[:5])


def test_gzip_bomb_is_stopped_at_the_limit() -> None:
    bomb = gzip.compress(b"\x00" * (50 << 20), 9)
    assert len(bomb) < 100_000
    with pytest.raises(InputError, match="limit"):
        decompress(bomb, limit=1 << 20)


def test_exactly_at_limit_is_fine() -> None:
    assert len(decompress(gzip.compress(b"a" * 1000), limit=1000)) == 1000


def test_plain_over_limit() -> None:
    with pytest.raises(InputError, match="limit"):
        decompress(b"{" * 2000, limit=1000)


def test_trailing_garbage_and_zero_padding() -> None:
    assert decompress(gzip.compress(b"ok") + b"\x00\x00\x00") == b"ok"
    with pytest.raises(InputError, match="trailing garbage"):
        decompress(gzip.compress(b"ok") + b"junk")


def test_zlib_stream_is_not_gzip() -> None:
    data = zlib.compress(b"hello")
    assert decompress(data) == data  # not gzip: handed on as bytes; the parser will refuse it
