"""Detection throughput: the full Sigma rule pack in the stream, on one core.

Target (issue 7): reading and tagging the real corpus with the full pack >= 100,000 records/s.
Reported as a ratio against the read path alone (gunzip, split, decode routing fields: what
bench_read.py measures) in the same run, plus the evaluator's own rate on records already read.
"""

from __future__ import annotations

import sys

from common import best_rate, corpus_objects, pin_one_core, report

from trailrelay.detection.evaluate import SigmaTagger
from trailrelay.generate import build_object, generate_events
from trailrelay.record import Origin, Record
from trailrelay.sources.decompress import decompress
from trailrelay.sources.parse import iter_records

ORIGIN = Origin("s3", "s3://bench/object")


def read_only(objects: list[bytes]) -> int:
    n = 0
    for obj in objects:
        for item in iter_records(decompress(obj), ORIGIN):
            if isinstance(item, Record):
                n += 1
    return n


def read_and_detect(objects: list[bytes], tagger: SigmaTagger) -> int:
    n = 0
    for obj in objects:
        for item in iter_records(decompress(obj), ORIGIN):
            if isinstance(item, Record):
                tagger(item)
                n += 1
    return n


def detect_only(records: list[Record], tagger: SigmaTagger) -> int:
    for record in records:
        record.tags = ()
        tagger(record)
    return len(records)


def main() -> int:
    pin_one_core()
    tagger = SigmaTagger()
    print(f"rule pack: {len(tagger.rules)} rules")
    ok = True
    sets = {"generated 50k-record object": [build_object(list(generate_events(7, 50_000)))]}
    corpus = corpus_objects()
    if corpus:
        sets["real corpus (all files, gzip'd)"] = corpus
    else:
        # The target is stated for the real corpus: without it, it was not met, just not measured.
        print("real corpus not found: set TRAILRELAY_CORPUS; the target is NOT measured")
        ok = False
    for name, objects in sets.items():
        assert read_only(objects) == read_and_detect(objects, tagger), "both sides must read the same records"
        base = best_rate(lambda o=objects: read_only(o))
        rate = best_rate(lambda o=objects: read_and_detect(o, tagger))
        # the target is stated for the real corpus; the generated set is reported for comparison
        ok &= report(f"read+detect: {name}", rate, base, target=100_000 if objects is corpus else None)
        records = [
            r for obj in objects for r in iter_records(decompress(obj), ORIGIN) if isinstance(r, Record)
        ]
        only = best_rate(lambda r=records: detect_only(r, tagger))
        report(f"detect only (records already read): {name}", only, base)
        tagger.reset()
        tagged = detect_only(records, tagger) and sum(1 for r in records if r.tags)
        print(f"  one pass: {tagged} of {len(records)} records tagged; evaluation errors: {tagger.errors}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
