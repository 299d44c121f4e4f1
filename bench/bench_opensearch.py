"""Encoding benchmark of the OpenSearch connector on the real CloudTrail corpus, one core.

Times ``BulkEncoder.encode`` (the exact ``_bulk`` bodies the sink sends) against the Elastic
connector's integration mode in the same run, when trailrelay-elastic is installed (issue 16:
the OpenSearch row at the same ratio as Elastic integration mode; target >= 0.9x), and against
a naive baseline (``json.loads`` of every record, ``json.dumps`` of every document).

    python bench/bench_opensearch.py [--rounds 5] [--min-records 30000]

The corpus is read from $TRAILRELAY_CORPUS or <repo>/../shared/corpus (never copied).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from trailrelay.contract import Record
from trailrelay.testing import corpus_dir, load_records
from trailrelay_opensearch.config import OpenSearchConfig
from trailrelay_opensearch.encode import BulkEncoder, doc_id
from trailrelay_opensearch.integrity import iso_utc

TARGET_RATIO = 0.9


def fresh(records: Sequence[Record]) -> list[Record]:
    """Copies without a cached parse, so every pass pays for what it parses."""
    return [Record(r.raw, r.routing, r.origin, r.index, r.tags) for r in records]


def baseline(records: Sequence[Record], target: str) -> list[bytes]:
    """The same documents via json.loads/json.dumps per record."""
    out = []
    for r in records:
        event = json.loads(r.raw)
        ident = event.get("userIdentity") or {}
        assert r.routing.event_time is not None
        doc = {
            "@timestamp": iso_utc(r.routing.event_time),
            "cloud": {
                "provider": "aws",
                "account": {"id": ident.get("accountId") or event.get("recipientAccountId")},
                "region": event.get("awsRegion"),
            },
            "trailrelay": {"origin": r.origin.location},
            **event,
        }
        action = {"create": {"_index": target, "_id": doc_id(r)}}
        out.append((json.dumps(action) + "\n" + json.dumps(doc, ensure_ascii=False) + "\n").encode())
    return [b"".join(out)]


def timed(fn: Callable[[list[Record]], list[bytes]], records: Sequence[Record], rounds: int) -> float:
    """Best records per CPU-second over ``rounds`` passes."""
    best = 0.0
    for _ in range(rounds):
        batch = fresh(records)
        start = time.process_time()
        fn(batch)
        best = max(best, len(batch) / (time.process_time() - start))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-records", type=int, default=30_000, help="cycle the corpus up to this many")
    args = parser.parse_args()
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    corpus = corpus_dir()
    if corpus is None:
        print(
            "corpus not found: set TRAILRELAY_CORPUS or place shared/corpus beside the repo", file=sys.stderr
        )
        return 2
    base = [r for r in load_records(Path(corpus) / "cloudtrail") if r.routing.event_time is not None]
    records = list(base)
    while len(records) < args.min_records:
        records.extend(base)
    pretty = sum(1 for r in base if b"\n" in r.raw)
    print(f"corpus: {len(base)} real records ({pretty} pretty-printed), cycled to {len(records)}")
    encoder = BulkEncoder(OpenSearchConfig.validate({"type": "opensearch", "url": "http://127.0.0.1:9200"}))
    ours = timed(encoder.encode, records, args.rounds)
    naive = timed(lambda b: baseline(b, encoder.config.target.name), records, args.rounds)
    line = (
        f"{'opensearch: encode':<48} {ours:>10,.0f} rec/s  ({ours / naive:.1f}x json baseline {naive:,.0f})"
    )
    try:
        from trailrelay_elastic.config import ElasticConfig
        from trailrelay_elastic.encode import BulkEncoder as ElasticEncoder
    except ImportError:
        print(line + "  [elastic not installed: no ratio]")
        return 0
    elastic = ElasticEncoder(ElasticConfig.validate({"type": "elastic", "url": "http://127.0.0.1:9200"}))
    theirs = timed(elastic.encode, records, args.rounds)
    ratio = ours / theirs
    ok = ratio >= TARGET_RATIO
    print(
        f"{line}; elastic integration {theirs:,.0f} rec/s -> {ratio:.2f}x "
        f"[{'PASS' if ok else 'MISS'}: >= {TARGET_RATIO}x of Elastic integration mode]"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
