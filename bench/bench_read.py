"""Read-path throughput: decompress, split records, decode the routing fields (one core).

Target (issue 2): >= 150,000 records/s and >= 4x a same-run baseline that gunzips and
``json.loads`` the whole object, then reads the same routing fields from the dicts.
"""

from __future__ import annotations

import gzip
import json
import sys

from common import compare, corpus_objects, pin_one_core, report

from trailrelay.generate import build_object, generate_events
from trailrelay.record import Origin, Record
from trailrelay.sources.decompress import decompress
from trailrelay.sources.parse import iter_records

ORIGIN = Origin("s3", "s3://bench/object")
FIELDS = (
    "eventTime",
    "eventSource",
    "eventName",
    "eventID",
    "eventCategory",
    "readOnly",
    "errorCode",
    "recipientAccountId",
    "awsRegion",
    "sourceIPAddress",
)


def ours(objects: list[bytes]) -> int:
    n = 0
    for obj in objects:
        for item in iter_records(decompress(obj), ORIGIN):
            if isinstance(item, Record) and item.routing.category:
                n += 1
    return n


def baseline(objects: list[bytes]) -> int:
    n = 0
    for obj in objects:
        text = gzip.decompress(obj)
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:  # NDJSON
            doc = [json.loads(line) for line in text.splitlines() if line.strip()]
        if isinstance(doc, dict):
            records = doc.get("Records") or doc.get("Events") or [doc.get("detail", doc)]
        else:
            records = doc
        for rec in records:
            if isinstance(rec, dict):
                _ = [rec.get(f) for f in FIELDS]
                _ = (rec.get("userIdentity") or {}).get("type")
                n += 1
    return n


def main() -> int:
    pin_one_core()
    ok = True
    generated = [build_object(list(generate_events(7, 100_000)))]  # gzip, as CloudTrail delivers
    sets = {"generated 100k-record object": generated}
    corpus = corpus_objects()
    if corpus:
        sets["real corpus (all files, gzip'd)"] = corpus
    else:
        print("real corpus not found: set TRAILRELAY_CORPUS (skipping that set)")
    for name, objects in sets.items():
        assert ours(objects) == baseline(objects), "both sides must read the same records"
        rate, base = compare(lambda o=objects: baseline(o), lambda o=objects: ours(o))
        ok &= report(f"read+route: {name}", rate, base, target=150_000, ratio_target=4.0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
