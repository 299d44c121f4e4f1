"""Streaming reader vs the whole-object path on one large object (diagnostic; issue 20).

Reads the same gzip'd ``{"Records":[...]}`` object (about ``--mb`` MB uncompressed) three ways,
with the SHA-256 the checkpoints keep: ``read_stream`` (chunked gunzip, hash and split), today's
``decompress`` + ``hashlib.sha256`` + ``iter_records``, and the same records split across 100
small objects read the old way (the issue's baseline). Target: streaming >= 0.9x the
whole-object rate. Also small objects and the real corpus both ways (each object pays a fixed
cost of about 20 us for the stream's set-up). Then each way's peak RSS in a fresh process
reading the big object from a file.

    python bench/bench_stream.py [--mb 265] [--no-rss]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import compare, corpus_objects, pin_one_core, report

from trailrelay.generate import generate_events
from trailrelay.record import Origin, Record
from trailrelay.sources.decompress import decompress
from trailrelay.sources.parse import iter_records
from trailrelay.sources.stream import read_stream

ORIGIN = Origin("s3", "s3://bench/object")


def build(mb: int) -> tuple[bytes, list[bytes], int]:
    """The big object (one block of generated records, compressed once, repeated as gzip
    members), the same records as 100 small objects, and the record count."""
    import orjson

    events = [orjson.dumps(e) for e in generate_events(7, 4000)]
    block = b",".join(events)
    reps = max(1, (mb << 20) // (len(block) + 1))
    member = gzip.compress(block + b",", 6)
    last = gzip.compress(block + b"]}", 6)
    big = gzip.compress(b'{"Records":[') + member * (reps - 1) + last
    count = reps * len(events)
    per = max(1, count // 100)
    all_events = events * reps
    small = [
        gzip.compress(b'{"Records":[' + b",".join(all_events[i : i + per]) + b"]}", 6)
        for i in range(0, count, per)
    ]
    return big, small, count


def whole(objects: list[bytes]) -> int:
    n = 0
    for obj in objects:
        plain = decompress(obj)
        hashlib.sha256(plain).hexdigest()
        for item in iter_records(plain, ORIGIN):
            n += isinstance(item, Record)
    return n


def streamed(objects: list[bytes]) -> int:
    n = 0
    for obj in objects:
        for item in read_stream(io.BytesIO(obj), ORIGIN, hash_sha256=True):
            n += isinstance(item, Record)
    return n


def child(mode: str, path: str) -> None:
    """Read the object from a file one way; print records and peak RSS (MB)."""
    n = 0
    if mode == "stream":
        with Path(path).open("rb") as f:
            for item in read_stream(f, ORIGIN, hash_sha256=True):
                n += isinstance(item, Record)
    else:
        n = whole([Path(path).read_bytes()])
    print(f"{n} {peak_rss_mb():.0f}")


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited from the parent over exec)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss(path: str, mode: str) -> tuple[int, float, float]:
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, path], check=True, capture_output=True, text=True
    ).stdout.split()
    return int(out[0]), float(out[1]), time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=265)
    parser.add_argument("--no-rss", action="store_true")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0
    pin_one_core()
    big, small, count = build(args.mb)
    print(
        f"object: {len(big) / 1e6:.1f} MB gzip, about {args.mb} MB JSON, {count:,} records; "
        f"small: {len(small)} objects"
    )
    assert streamed([big]) == whole([big]) == whole(small) == count
    ok = True
    rate, base = compare(lambda: whole([big]), lambda: streamed([big]), rounds=3)
    ok &= report("stream vs whole object (same object)", rate, base, ratio_target=0.9)
    rate_small, _ = compare(lambda: whole(small), lambda: whole(small), rounds=1)
    report("stream vs 100 small objects, whole path", rate, rate_small)
    # every object goes through the stream once the pipeline uses it: small ones too
    mine, base = compare(lambda: whole(small), lambda: streamed(small), rounds=3)
    report("100 small objects: stream vs whole path", mine, base, ratio_target=0.9)
    corpus = corpus_objects()
    if corpus:
        assert streamed(corpus) == whole(corpus)
        mine, base = compare(lambda: whole(corpus), lambda: streamed(corpus), rounds=3)
        report("real corpus (tiny objects): stream vs whole", mine, base)
    if not args.no_rss:
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "big.json.gz")
            Path(path).write_bytes(big)
            del big, small
            for mode in ("stream", "whole"):
                n, peak, seconds = rss(path, mode)
                print(
                    f"peak RSS, {mode:<6} read of the object from a file: {peak:7.0f} MB  ({n:,} records in {seconds:.1f} s)"
                )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
