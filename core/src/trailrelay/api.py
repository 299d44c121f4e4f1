"""trailrelay as a library: read CloudTrail records, forward them with per-record outcomes.

Version ``API_VERSION``; what ``__all__`` lists is public and kept compatible within a major
version (``tests/core/test_meta.py`` checks the list). See docs/api.md for the worked examples.

- :func:`read_records` reads bytes, a file or an ``s3://`` object, whatever the shape (gzip,
  ``{"Records": [...]}``, arrays, NDJSON, EventBridge envelopes), streamed: an iterator of
  :class:`Record` (and :class:`Problem` for what cannot be read, with the reason).
- :class:`Forwarder` is built from a config file or table (``Forwarder.from_config``); it is
  the very object ``trailrelay forward`` and the Lambda handler run
  (``trailrelay.pipeline.forwarder``), and :meth:`Forwarder.forward` sends records through the
  configured detection, filters and pseudonymization to every sink, returning a :class:`Report`
  with counts and one :class:`RecordOutcome` per record that did not reach its sinks.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trailrelay.contract import Record
from trailrelay.pipeline.forwarder import Forwarder, RecordOutcome, Report
from trailrelay.record import Origin
from trailrelay.sources.parse import Problem
from trailrelay.sources.stream import read_stream

__all__ = ["API_VERSION", "Forwarder", "Problem", "Record", "RecordOutcome", "Report", "read_records"]

API_VERSION = "1.0"
"""Major.minor of this module's public surface (``__all__``)."""


def read_records(
    source: bytes | str | Path,
    *,
    s3_client: Any = None,
    max_record_bytes: int = 16 << 20,
) -> Iterator[Record | Problem]:
    """Records (and problems) of bytes, a local file, or an ``s3://bucket/key`` object, streamed."""
    if isinstance(source, bytes):
        return iter(
            read_stream(io.BytesIO(source), Origin("bytes", "<bytes>"), max_record_bytes=max_record_bytes)
        )
    text = str(source)
    if text.startswith("s3://"):
        bucket, _, key = text.removeprefix("s3://").partition("/")
        client = s3_client
        if client is None:
            import boto3  # noqa: PLC0415 - only for S3

            client = boto3.client("s3")
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        origin = Origin("s3", text, bucket=bucket, key=key)
        return iter(read_stream(body, origin, max_record_bytes=max_record_bytes))
    path = Path(text)
    return iter(read_stream(path.open("rb"), Origin("file", str(path)), max_record_bytes=max_record_bytes))
