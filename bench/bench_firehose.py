"""Firehose HTTP endpoint: throughput and receipt-to-send latency to a local sink stand-in.

A client process sends Firehose delivery requests (500 records each, gzip'd, the protocol's
headers, 8 connections at once) to the endpoint in this process, which runs the pipeline as
``trailrelay forward`` does (risk tagging, batching: 500 records or the batch age, 1 s by
default, then 0.05 s) into a stand-in sink that records when each record reaches it (2 ms per
request, like a fast SIEM on the LAN). Reported: records/s end to end (each request answered 200 only after its
records are delivered); p50/p99 from the client sending a request to the sink receiving each
of its records; the same for the high-risk records (one StopLogging every few requests), whose
p99 must stay <= 1 s under this load (the fast path). Then the Lambda handler on the same
records as CloudWatch Logs payloads, one invocation each. Baseline: the same records through the
same pipeline from memory (no HTTP, no base64, no gzip), in the same run.

With a 1 s batch age the run ends with a partial batch waiting out its age (the requests wait for
their acks), which shows in the short run's records/s; the 0.05 s run shows the steady rate.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import multiprocessing
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from common import report

from trailrelay.contract import DELIVERED, Batch, BatchLimits, CheckResult, Outcome
from trailrelay.detection.evaluate import SigmaTagger
from trailrelay.generate import generate_events
from trailrelay.pipeline.deadletter import FolderDeadLetters
from trailrelay.pipeline.delivery import SinkRunner
from trailrelay.pipeline.metrics import Metrics
from trailrelay.pipeline.runner import Pipeline
from trailrelay.sources.base import ObjectRef, Work
from trailrelay.sources.firehose import FirehoseSource
from trailrelay.sources.payloads import group_documents
from trailrelay.testing import SAMPLE_EVENTS

KEY = "bench-access-key-0123456789abcdef"
PER_REQUEST = 500
REQUESTS = 120
CONNECTIONS = 8  # the endpoint's default max_concurrent_requests
RISKY_EVERY = 3


class StandInSink:
    """Takes batches like a fast SIEM (2 ms a request) and notes when each record arrived."""

    def __init__(self, max_age: float = 1.0) -> None:
        self.limits = BatchLimits(max_records=500, max_bytes=4 << 20, max_age=max_age, concurrency=2)
        self.arrived: dict[str, float] = {}
        self.tagged: set[str] = set()
        self._lock = threading.Lock()

    def open(self) -> None:
        pass

    def send(self, batch: Batch) -> Sequence[Outcome]:
        now = time.time()
        body = b"".join(r.line() for r in batch.records)  # the work of building a request
        time.sleep(0.002 + len(body) / 2e9)
        with self._lock:
            for r in batch.records:
                self.arrived[str(r.event_id)] = now
                if r.tags:
                    self.tagged.add(str(r.event_id))
        return [DELIVERED] * len(batch.records)

    def check(self) -> CheckResult:
        return CheckResult(True, "ok")

    def close(self) -> None:
        pass


def payloads() -> list[list[bytes]]:
    """REQUESTS requests of PER_REQUEST records; eventID = "<request>-<index>"."""
    pool = list(generate_events(7, 5000))
    quiet = [e for e in pool if e.get("eventName") not in ("ConsoleLogin", "CreateAccessKey")]
    out = []
    for r in range(REQUESTS):
        records = []
        for i in range(PER_REQUEST):
            event = dict(quiet[(r * PER_REQUEST + i) % len(quiet)])
            if r % RISKY_EVERY == 0 and i == PER_REQUEST // 2:
                event = dict(SAMPLE_EVENTS[0])  # StopLogging: tagged high-risk
            event["eventID"] = f"{r}-{i}"
            records.append(orjson.dumps(event))
        out.append(records)
    return out


def encode(records: list[bytes]) -> tuple[bytes, dict[str, str]]:
    """One delivery request as Firehose sends it: base64 records, gzip'd JSON, its headers."""
    rid = str(uuid.uuid4())
    doc = {
        "requestId": rid,
        "timestamp": int(time.time() * 1000),
        "records": [{"data": base64.b64encode(p).decode()} for p in records],
    }
    headers = {
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
        "X-Amz-Firehose-Protocol-Version": "1.0",
        "X-Amz-Firehose-Request-Id": rid,
        "X-Amz-Firehose-Access-Key": KEY,
    }
    return gzip.compress(orjson.dumps(doc), 6), headers


def client(
    address: tuple[str, int], bodies: list[tuple[bytes, dict[str, str]]], conn_id: int, out: Any
) -> None:
    """One connection sending its share of requests in turn, retrying until 200, like Firehose."""
    conn = http.client.HTTPConnection(*address, timeout=180)
    for r in range(conn_id, len(bodies), CONNECTIONS):
        body, headers = bodies[r]
        sent = time.time()
        while True:
            conn.request("POST", "/", body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                break
            time.sleep(0.5)
        out.put((r, sent, time.time()))
    conn.close()


def clients(address: tuple[str, int], requests: list[list[bytes]], out: Any, ready: Any) -> None:
    bodies = [encode(r) for r in requests]  # prepared before the clock starts
    ready.set()
    threads = [threading.Thread(target=client, args=(address, bodies, c, out)) for c in range(CONNECTIONS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def pipeline(source: Any, sink: StandInSink, tmp: str) -> Pipeline:
    stop = threading.Event()
    metrics = Metrics()
    dead = FolderDeadLetters(tmp)
    pipe = Pipeline(source, dead_letters=dead, metrics=metrics, stop=stop, readers=2)
    pipe.transforms = [SigmaTagger()]
    pipe.sinks["siem"] = SinkRunner(
        "siem", sink, dead_letters=dead, metrics=metrics, stop=stop, on_fatal=pipe.on_fatal
    )
    return pipe


def over_http(
    requests: list[list[bytes]], tmp: str, max_age: float
) -> tuple[float, list[float], list[float]]:
    sink = StandInSink(max_age)
    source = FirehoseSource(("127.0.0.1", 0), [KEY.encode()], max_concurrent_requests=CONNECTIONS)
    pipe = pipeline(source, sink, tmp)
    runner = threading.Thread(target=pipe.run, daemon=True)
    runner.start()
    ctx = multiprocessing.get_context("spawn")
    out, ready = ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=clients, args=(source.address, requests, out, ready))
    proc.start()
    ready.wait(300)
    results = [out.get(timeout=600) for _ in requests]
    proc.join()
    pipe.stop.set()
    runner.join(timeout=60)
    start = min(sent for _, sent, _ in results)
    end = max(done for _, _, done in results)
    sent_at = {r: sent for r, sent, _ in results}
    delays = [sink.arrived[eid] - sent_at[int(eid.split("-")[0])] for eid in sink.arrived]
    fast = [sink.arrived[eid] - sent_at[int(eid.split("-")[0])] for eid in sink.tagged]
    assert len(sink.arrived) == len(requests) * PER_REQUEST, "every record must reach the sink"
    return len(sink.arrived) / (end - start), delays, fast


class _Memory:
    def __init__(self, works: list[Work]) -> None:
        self.works = works

    def work(self, _stop: threading.Event) -> Any:
        yield from self.works

    def close(self) -> None:
        pass


def from_memory(requests: list[list[bytes]], tmp: str) -> float:
    from trailrelay.record import Origin

    sink = StandInSink(0.05)
    works = []
    for r, records in enumerate(requests):
        objects = group_documents(records)
        works.append(Work([ObjectRef(Origin("firehose", f"mem/{r}"), lambda o=o: o) for o in objects]))
    pipe = pipeline(_Memory(works), sink, tmp)
    t0 = time.perf_counter()
    pipe.run()
    elapsed = time.perf_counter() - t0
    assert len(sink.arrived) == len(requests) * PER_REQUEST
    return len(sink.arrived) / elapsed


def through_lambda(requests: list[list[bytes]], tmp: str) -> tuple[float, list[float]]:
    """The Lambda handler on CloudWatch Logs payloads (one per request): records/s, fast-path delays."""
    import os

    from trailrelay.aws_lambda import handler, invoke

    os.environ["TRAILRELAY_CONFIG"] = (
        f'[[sinks]]\ntype = "file"\nname = "siem"\npath = "{tmp}/unused.ndjson"\n[dead_letter]\npath = "{tmp}"\n'
    )
    invoke.reset()
    app = invoke.app()
    sink = StandInSink(1.0)
    app.forwarder.sinks = {"siem": sink}  # the stand-in instead of the file (opened sinks are reused)
    events = []
    for records in requests:
        doc = {
            "messageType": "DATA_MESSAGE",
            "owner": "111122223333",
            "logGroup": "cloudtrail",
            "logStream": "111122223333_CloudTrail_us-east-1",
            "subscriptionFilters": ["trailrelay"],
            "logEvents": [
                {"id": str(i), "timestamp": 0, "message": r.decode()} for i, r in enumerate(records)
            ],
        }
        events.append({"awslogs": {"data": base64.b64encode(gzip.compress(orjson.dumps(doc))).decode()}})
    received: dict[int, float] = {}
    t0 = time.time()
    for r, event in enumerate(events):
        received[r] = time.time()
        handler(event, None)
    elapsed = time.time() - t0
    invoke.reset()
    fast = [sink.arrived[eid] - received[int(eid.split("-")[0])] for eid in sink.tagged]
    assert len(sink.arrived) == len(requests) * PER_REQUEST
    return len(sink.arrived) / elapsed, fast


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))]


def main() -> int:
    import tempfile

    requests = payloads()
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        base = max(from_memory(requests, tmp) for _ in range(3))  # best of three: the machine is shared
        for max_age in (0.05, 1.0):
            rate, delays, fast = over_http(requests, tmp, max_age)
            report(f"firehose endpoint, batch age {max_age:g} s, {CONNECTIONS} connections", rate, base)
            print(
                f"{'  receipt to sink, all records':<48} p50 {pct(delays, 0.5):6.3f} s   p99 {pct(delays, 0.99):6.3f} s"
                f"   ({len(delays):,} records)"
            )
            p99 = pct(fast, 0.99)
            ok &= p99 <= 1.0
            print(
                f"{'  receipt to sink, high-risk (fast path)':<48} p50 {pct(fast, 0.5):6.3f} s   p99 {p99:6.3f} s"
                f"   ({len(fast)} records)  [{'PASS' if p99 <= 1.0 else 'MISS'}: p99 <= 1 s]"
            )
        rate, fast = through_lambda(requests, tmp)
        report("lambda handler, CloudWatch Logs payloads of 500", rate, base)
        p99 = pct(fast, 0.99)
        ok &= p99 <= 1.0
        print(
            f"{'  invocation to sink, high-risk (fast path)':<48} p50 {pct(fast, 0.5):6.3f} s   p99 {p99:6.3f} s"
            f"   ({len(fast)} records)  [{'PASS' if p99 <= 1.0 else 'MISS'}: p99 <= 1 s]"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
