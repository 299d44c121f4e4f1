"""Benchmark of the Splunk connector on the real CloudTrail corpus.

1. HEC body encoding, one core, records untouched: the connector's envelope encoder (raw bytes
   spliced into the envelope) against a baseline in the same run that does json.loads +
   json.dumps per record. Both produce the same events; the ratio is what matters.
2. End to end, loopback, indexer acknowledgement on: a reader hands batches to sink workers
   sending to the HEC stand-in (in its own process); records/s and p50/p99 delay from the
   moment a batch is read to the moment HEC acknowledged it.

Run: python bench/bench_splunk.py [--records 100000] [--e2e-records 60000] [--concurrency 4]
The corpus comes from $TRAILRELAY_CORPUS or ../shared/corpus (never copied into the repo).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import queue
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from isal import igzip

from trailrelay.contract import Batch, Outcome, Receipt, SinkContext, Status
from trailrelay.testing import corpus_dir, load_records
from trailrelay_splunk.config import SplunkConfig
from trailrelay_splunk.encode import EnvelopeEncoder
from trailrelay_splunk.sink import SplunkSink

HERE = Path(__file__).resolve().parent
STANDIN_DIR = HERE.parent / "tests" / "connectors" / "splunk"
TOKEN = "bench-token-0000"


def corpus_records(n: int) -> list:
    root = corpus_dir()
    if root is None:
        sys.exit("corpus not found: set TRAILRELAY_CORPUS")
    base = load_records(root / "cloudtrail")
    return [base[i % len(base)] for i in range(n)], len(base)


def baseline(records: list, cfg: SplunkConfig) -> list[bytes]:
    """The naive encoder: parse every record and serialise the whole envelope again."""
    out = []
    for r in records:
        env = {
            "time": round(r.epoch, 3) if r.epoch is not None else None,
            "source": r.origin.location,
            "sourcetype": cfg.sourcetype,
            "index": cfg.index,
            "event": json.loads(r.raw),
        }
        out.append(json.dumps(env, separators=(",", ":")).encode())
    return [b"\n".join(out)]


def best_of(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def encoding(n: int) -> None:
    records, distinct = corpus_records(n)
    cfg = SplunkConfig.validate(
        {"type": "splunk", "url": "https://splunk.invalid:8088", "token": TOKEN, "index": "cloudtrail"}
    )
    enc = EnvelopeEncoder(cfg)
    # same events either way
    ours = [json.loads(line)["event"] for line in enc.encode(records[:500])[0].split(b"\n")]
    theirs = [json.loads(line)["event"] for line in baseline(records[:500], cfg)[0].split(b"\n")]
    assert ours == theirs
    untouched = sum(1 for r in records if not r.modified)
    t_ours = best_of(lambda: enc.encode(records))
    t_base = best_of(lambda: baseline(records, cfg))
    bodies = enc.encode(records)
    t_gzip = best_of(lambda: [igzip.compress(b, compresslevel=cfg.compress_level) for b in bodies])
    raw = sum(len(b) for b in bodies)
    packed = sum(len(igzip.compress(b, compresslevel=cfg.compress_level)) for b in bodies)
    print(
        f"corpus: {distinct} distinct records, cycled to {n} ({untouched} untouched), "
        f"{raw / n:.0f} B/envelope, {len(bodies)} bodies of <= {cfg.batch_bytes} B"
    )
    print(f"encode (envelopes, spliced raw) : {n / t_ours:>10,.0f} records/s")
    print(f"baseline json.loads + json.dumps: {n / t_base:>10,.0f} records/s")
    print(f"ratio                           : {t_base / t_ours:>10.1f}x")
    print(
        f"gzip the bodies (ISA-L level {cfg.compress_level}) : {n / t_gzip:>10,.0f} records/s, "
        f"{raw / packed:.1f}x smaller"
    )
    print(f"encode + gzip                   : {n / (t_ours + t_gzip):>10,.0f} records/s")


def _serve(conn) -> None:  # runs in the child process
    sys.path.insert(0, str(STANDIN_DIR))
    from splunk_hec_standin import HecStandIn

    hec = HecStandIn(TOKEN, use_ack=True).start()
    conn.send(hec.url)
    conn.recv()  # wait for "stop"
    conn.send(len(hec.stored))
    hec.stop()


def end_to_end(n: int, concurrency: int, batch_events: int) -> bool:
    """Send ``n`` records through the sink with ack on; True when HEC acknowledged every one."""
    records, _ = corpus_records(n)
    parent, child = mp.Pipe()
    proc = mp.Process(target=_serve, args=(child,), daemon=True)
    proc.start()
    url = parent.recv()
    cfg = SplunkConfig.validate(
        {
            "type": "splunk",
            "url": url,
            "token": TOKEN,
            "index": "cloudtrail",
            "ack": True,
            "concurrency": concurrency,
            "batch_events": batch_events,
            "ack_poll_interval": 0.005,
        }
    )
    sink = SplunkSink(cfg, SinkContext("splunk", logging.getLogger("bench"), "trailrelay-bench"))
    sink.open()
    batches: queue.Queue = queue.Queue(maxsize=concurrency * 2)
    delays: list[float] = []
    lock = threading.Lock()
    failed = 0

    receipts: list[tuple[Receipt, int]] = []

    def settled(read_at: float, count: int) -> Callable[[Outcome], None]:
        def note(outcome: Outcome) -> None:  # the indexer acknowledged (or gave up on) the request
            nonlocal failed
            with lock:
                delays.extend([time.perf_counter() - read_at] * count)
                if outcome.status is not Status.DELIVERED:
                    failed += count

        return note

    def worker() -> None:
        nonlocal failed
        while (item := batches.get()) is not None:
            read_at, recs = item
            outcomes = sink.send(Batch(recs))
            pending = Counter(id(o.receipt) for o in outcomes if o.status is Status.PENDING)
            for o in {id(o.receipt): o for o in outcomes if o.receipt is not None}.values():
                assert o.receipt is not None
                count = pending[id(o.receipt)]
                with lock:
                    receipts.append((o.receipt, count))
                o.receipt.on_resolve(settled(read_at, count))
            settled_now = [o for o in outcomes if o.status is not Status.PENDING]
            if settled_now:
                with lock:
                    delays.extend([time.perf_counter() - read_at] * len(settled_now))
                    failed += sum(o.status is not Status.DELIVERED for o in settled_now)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for i in range(0, n, batch_events):
        batches.put((time.perf_counter(), records[i : i + batch_events]))
    for _ in threads:
        batches.put(None)
    for t in threads:
        t.join()
    unresolved = sum(n for r, n in receipts if r.wait(timeout=120) is None)  # acks still on their way
    elapsed = time.perf_counter() - start
    failed += unresolved
    sink.close()
    parent.send("stop")
    stored = parent.recv()
    proc.join()
    q = statistics.quantiles(delays, n=100)
    print(
        f"end-to-end, ack on, {concurrency} workers, batches of {batch_events}: {n / elapsed:,.0f} records/s "
        f"({stored} stored, {failed} not delivered)"
    )
    print(f"delay read -> acknowledged: p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms")
    complete = failed == 0 and stored >= n
    if not complete:
        print(f"MISS: every record delivered and acknowledged ({n - failed:,} of {n:,} delivered)")
    return complete


def main(argv: list[str] | None = None) -> int:
    """Run both parts; non-zero when a record was not delivered and acknowledged end to end."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--e2e-records", type=int, default=60_000)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--batch-events", type=int, default=500)
    args = ap.parse_args(argv)
    encoding(args.records)
    return 0 if end_to_end(args.e2e_records, args.concurrency, args.batch_events) else 1


if __name__ == "__main__":
    sys.exit(main())
