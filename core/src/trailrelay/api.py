"""trailrelay as a library: read CloudTrail records, forward them with per-record outcomes.

Version ``API_VERSION``; what ``__all__`` lists is public and kept compatible within a major
version (``tests/core/test_meta.py`` checks the list). See docs/api.md for the worked examples.

- :func:`read_records` reads bytes, a file or an ``s3://`` object, whatever the shape (gzip,
  ``{"Records": [...]}``, arrays, NDJSON, EventBridge envelopes), streamed: an iterator of
  :class:`Record` (and :class:`Problem` for what cannot be read, with the reason); a digest
  yields nothing.
- :class:`Forwarder` is built from a config file or table (``Forwarder.from_config``); it is
  the very object ``trailrelay forward`` and the Lambda handler run
  (``trailrelay.pipeline.forwarder``), and :meth:`Forwarder.forward` sends records through the
  configured detection, filters and pseudonymization to every sink, returning a :class:`Report`
  with counts and one :class:`RecordOutcome` per record and sink it did not reach (filtered,
  dead-lettered or unfinished, with the reason).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from trailrelay.contract import Record
from trailrelay.pipeline.forwarder import Forwarder, RecordOutcome, Report
from trailrelay.record import Origin
from trailrelay.sources.parse import NotALogFile, Problem
from trailrelay.sources.stream import DEFAULT_MAX_RECORD_BYTES, read_stream

__all__ = ["API_VERSION", "Forwarder", "Problem", "Record", "RecordOutcome", "Report", "read_records"]

API_VERSION = "1.0"
"""Major.minor of this module's public surface (``__all__``)."""


def read_records(
    source: bytes | bytearray | memoryview | str | Path,
    *,
    s3_client: Any = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> Iterator[Record | Problem]:
    """Records (and problems) of bytes, a local file, or an ``s3://bucket/key`` object, streamed.

    The arguments are checked now; the file or object is opened on the first ``next()`` and
    closed when the iterator is exhausted or closed. A CloudTrail digest yields nothing (it holds
    no records; ``trailrelay forward`` skips it the same way).
    """
    if max_record_bytes < 1:
        raise ValueError(f"max_record_bytes must be at least 1, not {max_record_bytes}")
    opener: Callable[[], BinaryIO]
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        origin = Origin("bytes", "<bytes>")
        opener = partial(io.BytesIO, data)
    elif isinstance(source, str) and source.startswith("s3://"):
        bucket, _, key = source.removeprefix("s3://").partition("/")
        if not bucket or not key:
            raise ValueError(f"an S3 object is s3://BUCKET/KEY, not {_short(source)}")
        origin = Origin("s3", source, bucket=bucket, key=key)
        opener = partial(_s3_body, s3_client, bucket, key)
    elif isinstance(source, str | Path):
        path = Path(source)
        if not os.path.isfile(path):  # noqa: PTH113 - False, not OSError, for a name too long
            if isinstance(source, str) and source.lstrip()[:1] in ("{", "["):
                raise ValueError("a str is a path or an s3:// URI: pass JSON data as bytes (str.encode())")
            if os.path.isdir(path):  # noqa: PTH112
                raise IsADirectoryError(f"{_short(str(path))} is a folder: read its files one by one")
            raise FileNotFoundError(f"no file {_short(str(path))}")
        origin = Origin("file", str(path))
        opener = partial(_open_file, path)
    else:
        raise TypeError(f"read_records reads bytes, a path or an s3:// URI, not {type(source).__name__}")
    return _read(opener, origin, max_record_bytes)


def _read(
    opener: Callable[[], BinaryIO], origin: Origin, max_record_bytes: int
) -> Iterator[Record | Problem]:
    try:
        yield from read_stream(opener(), origin, max_record_bytes=max_record_bytes)
    except NotALogFile:
        return  # a digest: no records to read


def _open_file(path: Path) -> BinaryIO:
    return path.open("rb")


def _s3_body(client: Any, bucket: str, key: str) -> BinaryIO:
    if client is None:
        import boto3  # noqa: PLC0415 - only for S3

        client = boto3.client("s3")
    body: BinaryIO = client.get_object(Bucket=bucket, Key=key)["Body"]
    return body


def _short(text: str, limit: int = 120) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")
