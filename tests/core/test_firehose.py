"""The Firehose HTTP endpoint: the delivery protocol end to end, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from trailrelay.config import parse_config
from trailrelay.contract import BatchLimits
from trailrelay.detection.evaluate import SigmaTagger
from trailrelay.errors import ConfigError
from trailrelay.pipeline.deadletter import FolderDeadLetters, read_entries
from trailrelay.pipeline.delivery import SinkRunner
from trailrelay.pipeline.forwarder import build_pipeline
from trailrelay.pipeline.metrics import Metrics
from trailrelay.pipeline.runner import Pipeline
from trailrelay.sources import firehose
from trailrelay.sources.firehose import FirehoseSource, FirehoseSourceConfig, build_firehose_source
from trailrelay.testing import SAMPLE_EVENTS

KEY = "fh-key-7c1d2e3f-0001"
OLD_KEY = "fh-key-retiring-0000"
ARN = "arn:aws:firehose:eu-west-1:111122223333:deliverystream/cloudtrail-to-trailrelay"


QUIET = [
    e for e in SAMPLE_EVENTS if e["eventName"] in ("DescribeInstances", "RotationSucceeded", "GetObject")
]


def _event(i: int, prefix: str = "fh", *, risky: bool = False) -> dict[str, Any]:
    base = SAMPLE_EVENTS[0] if risky else QUIET[i % len(QUIET)]
    return {**base, "eventID": f"{prefix}-{i:05d}"}


def _logs_payload(events: list[dict[str, Any]], kind: str = "DATA_MESSAGE") -> bytes:
    """A CloudWatch Logs subscription payload as CloudWatch sends it: gzip'd JSON."""
    doc = {
        "messageType": kind,
        "owner": "111122223333" if kind == "DATA_MESSAGE" else "CloudwatchLogs",
        "logGroup": "aws-cloudtrail-logs-111122223333" if kind == "DATA_MESSAGE" else "",
        "logStream": "111122223333_CloudTrail_eu-west-1" if kind == "DATA_MESSAGE" else "",
        "subscriptionFilters": ["to-firehose"] if kind == "DATA_MESSAGE" else [],
        "logEvents": [
            {"id": f"3{i:055d}", "timestamp": 1772446502000 + i, "message": orjson.dumps(e).decode()}
            for i, e in enumerate(events)
        ]
        if kind == "DATA_MESSAGE"
        else [
            {
                "id": "",
                "timestamp": 1772446502000,
                "message": "CWL CONTROL MESSAGE: Checking health of destination Firehose.",
            }
        ],
    }
    return gzip.compress(orjson.dumps(doc))


def _envelope(event: dict[str, Any]) -> bytes:
    """An EventBridge "AWS API Call via CloudTrail" event, newline-terminated as Firehose appends."""
    env = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws." + event["eventSource"].split(".")[0],
        "account": "111122223333",
        "time": event["eventTime"],
        "region": event["awsRegion"],
        "resources": [],
        "detail": event,
    }
    return orjson.dumps(env) + b"\n"


class FirehoseClient:
    """Sends like Firehose does: gzip bodies, the same request id on every attempt, retry until 200."""

    def __init__(
        self,
        address: tuple[str, int],
        key: str = KEY,
        *,
        compress: bool = True,
        attempts: int = 10,
        backoff: float = 0.05,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.address, self.key, self.compress = address, key, compress
        self.attempts, self.backoff, self.tls = attempts, backoff, tls
        self.statuses: list[int] = []
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            host, port = self.address
            if self.tls is not None:
                self._conn = http.client.HTTPSConnection(host, port, timeout=30, context=self.tls)
            else:
                self._conn = http.client.HTTPConnection(host, port, timeout=30)
        return self._conn

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        conn = self._connection()
        try:
            conn.request("POST", "/", body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except OSError:
            conn.close()
            self._conn = None
            raise
        if resp.getheader("Connection", "").lower() == "close":
            conn.close()
            self._conn = None
        assert resp.getheader("Content-Type") == "application/json"
        return resp.status, orjson.loads(data)

    def request(self, payloads: list[bytes], request_id: str | None = None) -> tuple[bytes, dict[str, str]]:
        rid = request_id or str(uuid.uuid4())
        doc = {
            "requestId": rid,
            "timestamp": int(time.time() * 1000),
            "records": [{"data": base64.b64encode(p).decode()} for p in payloads],
        }
        body = orjson.dumps(doc)
        headers = {
            "Content-Type": "application/json",
            "X-Amz-Firehose-Protocol-Version": "1.0",
            "X-Amz-Firehose-Request-Id": rid,
            "X-Amz-Firehose-Source-Arn": ARN,
            "X-Amz-Firehose-Access-Key": self.key,
        }
        if self.compress:
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        return body, headers

    def deliver(self, payloads: list[bytes]) -> dict[str, Any]:
        """Deliver one batch, retrying on anything but 200 (413 is final), as Firehose does."""
        body, headers = self.request(payloads)
        rid = headers["X-Amz-Firehose-Request-Id"]
        for attempt in range(self.attempts):
            try:
                status, answer = self.post(body, headers)
            except OSError:
                status, answer = 0, {}
            self.statuses.append(status)
            if status == 200:
                assert answer["requestId"] == rid
                assert isinstance(answer["timestamp"], int)
                return answer
            if status == 413:
                break
            time.sleep(self.backoff * (2**attempt))
        raise AssertionError(f"not delivered after {self.attempts} attempts: {self.statuses}")


def _config(tmp: Path, **source: Any) -> dict[str, Any]:
    return {
        "source": {"type": "firehose", "listen": "127.0.0.1:0", "access_key": KEY, **source},
        "sinks": [{"type": "file", "path": str(tmp / "out.ndjson"), "batch_seconds": 0.05}],
        "dead_letter": {"path": str(tmp / "dead")},
    }


class Running:
    """A pipeline running in a thread, with its Firehose source."""

    def __init__(self, pipeline: Pipeline, source: FirehoseSource) -> None:
        self.pipeline, self.source = pipeline, source
        self.result: Any = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self.result = self.pipeline.run()

    def stop(self) -> Any:
        self.pipeline.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()
        return self.result


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Running, Path]]:
    """The endpoint built exactly as ``trailrelay forward`` builds it, writing the file sink."""
    built = build_pipeline(parse_config(_config(tmp_path), base_dir=tmp_path), once=False)
    source = built.pipeline.source
    assert isinstance(source, FirehoseSource)
    running = Running(built.pipeline, source)
    yield running, tmp_path / "out.ndjson"
    running.stop()
    for sink in built.sinks.values():
        sink.close()


def _scripted_endpoint(tmp: Path, sink: Any, **kw: Any) -> Running:
    source = FirehoseSource(("127.0.0.1", 0), [KEY.encode()], **kw)
    stop = threading.Event()
    metrics = Metrics()
    dead = FolderDeadLetters(tmp / "dead")
    pipe = Pipeline(source, dead_letters=dead, metrics=metrics, stop=stop, drain_seconds=0.5)
    pipe.transforms = [SigmaTagger()]
    pipe.sinks["s"] = SinkRunner(
        "s", sink, dead_letters=dead, metrics=metrics, stop=stop, on_fatal=pipe.on_fatal, backoff_base=0.01
    )
    return Running(pipe, source)


def _ids(path: Path) -> Counter[str]:
    return Counter(orjson.loads(line)["eventID"] for line in path.read_bytes().splitlines())


def test_a_protocol_client_delivers_every_shape_exactly_once(served: tuple[Running, Path]) -> None:
    running, out = served
    expected: list[str] = []
    batches: list[list[bytes]] = []
    for b in range(6):
        evs = [_event(i, f"b{b}") for i in range(30)]
        expected += [e["eventID"] for e in evs]
        batches.append(
            [orjson.dumps(e) for e in evs[:10]]  # plain records
            + [_envelope(e) for e in evs[10:20]]  # EventBridge envelopes
            + [_logs_payload(evs[20:29])]  # CloudTrail through CloudWatch Logs
            + [orjson.dumps(evs[29]) + b"\n" + b"\n"]  # NDJSON with blank lines
            + [_logs_payload([], "CONTROL_MESSAGE")]  # CloudWatch's reachability check
        )
    clients = [FirehoseClient(running.source.address, compress=i % 2 == 0) for i in range(3)]
    answers: list[dict[str, Any]] = []

    def send(client: FirehoseClient, mine: list[list[bytes]]) -> None:
        answers.extend(client.deliver(batch) for batch in mine)

    threads = [threading.Thread(target=send, args=(c, batches[i::3])) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 6
    assert all(c.statuses == [200, 200] for c in clients)
    assert _ids(out) == Counter(expected)  # everything, once
    result = running.stop()
    snap = result.metrics.snapshot()
    assert snap["units_acknowledged"] == 6
    assert snap["skipped"] == {"cloudwatch-control-message": 6}
    assert snap["dead_lettered"] == {}


def test_non_200_answers_are_retried_and_nothing_is_forwarded_twice(tmp_path: Path, scripted: Any) -> None:
    """A slow sink makes the first attempt time out (503); the retry gets the same request's 200."""
    sink = scripted(BatchLimits(max_records=100, max_bytes=1 << 20, max_age=0.01, concurrency=1))
    first = threading.Event()

    def slow_first(_: Any) -> None:
        if not first.is_set():
            first.set()
            time.sleep(0.8)

    sink.on_send = slow_first
    running = _scripted_endpoint(tmp_path, sink, response_timeout=0.3)
    client = FirehoseClient(running.source.address, backoff=0.1)
    events = [_event(i) for i in range(20)]
    client.deliver([orjson.dumps(e) for e in events])
    client.deliver([orjson.dumps(_event(i, "second")) for i in range(5)])
    running.stop()
    assert client.statuses[0] == 503
    assert client.statuses[-2:] == [200, 200]
    assert Counter(sink.stored) == Counter(
        [e["eventID"] for e in events] + [f"second-{i:05d}" for i in range(5)]
    )
    assert running.source.stats["duplicate-request"] + client.statuses.count(200) >= 2


def test_a_released_request_is_answered_with_an_error_so_firehose_retries(
    tmp_path: Path, scripted: Any
) -> None:
    sink = scripted(BatchLimits(max_records=100, max_bytes=1 << 20, max_age=0.01, concurrency=1))
    sink.fatal_after = 0  # the SIEM refuses the token: stop, acknowledge nothing
    running = _scripted_endpoint(tmp_path, sink)
    client = FirehoseClient(running.source.address)
    body, headers = client.request([orjson.dumps(_event(1))])
    status, answer = client.post(body, headers)
    result = running.stop()
    assert status in (500, 503)
    assert "not delivered" in answer["errorMessage"]
    assert answer["requestId"] == headers["X-Amz-Firehose-Request-Id"]
    assert result.fatal and result.metrics.snapshot()["units_acknowledged"] == 0
    assert sink.stored == []


def test_wrong_or_missing_access_key_is_401_and_nothing_is_forwarded(served: tuple[Running, Path]) -> None:
    running, out = served
    payload = [orjson.dumps(_event(i)) for i in range(5)]
    for key in ("wrong-key", "", KEY[:-1], KEY + "x"):
        client = FirehoseClient(running.source.address, key)
        body, headers = client.request(payload)
        if not key:
            del headers["X-Amz-Firehose-Access-Key"]
        status, answer = client.post(body, headers)
        assert status == 401
        assert answer["requestId"] == headers["X-Amz-Firehose-Request-Id"]
        assert "Access-Key" in answer["errorMessage"]
        assert KEY not in answer["errorMessage"]
    time.sleep(0.2)
    assert not out.exists() or out.read_bytes() == b""
    FirehoseClient(running.source.address).deliver(payload)  # the right key still works
    assert len(_ids(out)) == 5


def test_key_rotation_accepts_every_configured_key(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    del cfg["source"]["access_key"]
    cfg["source"]["access_keys"] = [KEY, OLD_KEY]
    built = build_pipeline(parse_config(cfg, base_dir=tmp_path), once=False)
    source = built.pipeline.source
    assert isinstance(source, FirehoseSource)
    running = Running(built.pipeline, source)
    try:
        for key in (KEY, OLD_KEY):
            FirehoseClient(source.address, key).deliver([orjson.dumps(_event(1, key))])
    finally:
        running.stop()
    assert set(_ids(tmp_path / "out.ndjson")) == {f"{KEY}-00001", f"{OLD_KEY}-00001"}


def test_a_non_ascii_access_key_matches_as_firehose_sends_it(tmp_path: Path) -> None:
    """Firehose sends the configured key as it is, UTF-8; http.server reads header bytes as latin-1."""
    key = "clé-secrète-ünïcode-42"
    cfg = _config(tmp_path, access_key=key)
    built = build_pipeline(parse_config(cfg, base_dir=tmp_path), once=False)
    source = built.pipeline.source
    assert isinstance(source, FirehoseSource)
    running = Running(built.pipeline, source)
    statuses = []
    try:
        for sent in (key, key.replace("ü", "u"), key.encode().decode("latin-1")):
            client = FirehoseClient(source.address, compress=False)
            body, headers = client.request([orjson.dumps(_event(len(statuses), "utf8"))])
            raw: dict[str, Any] = {**headers, "X-Amz-Firehose-Access-Key": sent.encode()}  # sent as is
            statuses.append(client.post(body, raw)[0])
    finally:
        running.stop()
    assert statuses == [200, 401, 401]
    assert set(_ids(tmp_path / "out.ndjson")) == {"utf8-00000"}


def test_oversized_bodies_are_413_with_a_clear_message(tmp_path: Path, scripted: Any) -> None:
    sink = scripted()
    running = _scripted_endpoint(tmp_path, sink, max_body_bytes=64 * 1024)
    try:
        big = [orjson.dumps(_event(i)) for i in range(100)]  # ~130 KB of JSON
        plain = FirehoseClient(running.source.address, compress=False)
        body, headers = plain.request(big)
        assert len(body) > 64 * 1024
        status, answer = plain.post(body, headers)
        assert status == 413
        assert "exceeds 65536" in answer["errorMessage"]
        # small on the wire, too large once decompressed (a gzip bomb is the extreme case)
        zipped = FirehoseClient(running.source.address)
        body, headers = zipped.request(big)
        assert len(body) < 64 * 1024
        status, answer = zipped.post(body, headers)
        assert status == 413
        assert "limit" in answer["errorMessage"]
    finally:
        running.stop()
    assert sink.stored == []


def test_the_default_body_limit_takes_firehoses_largest_buffer() -> None:
    """Firehose buffers up to 64 MiB of records, counted before base64: the request it sends is
    4/3 of that plus the JSON around each record, and a 413 for it is final (the batch is lost)."""
    smallest = min(SAMPLE_EVENTS, key=lambda e: len(orjson.dumps(e)))  # the most JSON per byte
    records = [orjson.dumps({**smallest, "eventID": f"buf-{i:05d}"}) for i in range(1000)]
    body, _ = FirehoseClient(("127.0.0.1", 0), compress=False).request(records)
    full_buffer_request = len(body) * (64 << 20) // sum(map(len, records))
    assert full_buffer_request > 64 << 20
    default = FirehoseSourceConfig.validate({"type": "firehose", "listen": ":8443", "access_key": KEY})
    assert full_buffer_request <= default.max_body_bytes <= 128 << 20  # and memory stays bounded


@pytest.mark.parametrize(
    ("body", "encoding", "status", "says"),
    [
        (b"this is not json", None, 400, "not a Firehose delivery request"),
        (b'{"requestId": "r1", "timestamp": 1}', None, 400, "records"),
        (b'{"requestId": "r1", "records": {"data": "eA=="}}', None, 400, "records"),
        (b'{"records": [{"data": "eA=="}]}', None, 400, "requestId"),
        (b"\x1f\x8b\x08\x00garbage", "gzip", 400, "gzip"),
        (b'{"requestId": "r1", "records": []}', "gzip", 400, "not gzip"),
        (b'{"requestId": "r1", "records": []}', "br", 415, "Content-Encoding"),
    ],
)
def test_malformed_bodies_get_a_clear_error(
    tmp_path: Path, scripted: Any, body: bytes, encoding: str | None, status: int, says: str
) -> None:
    sink = scripted()
    running = _scripted_endpoint(tmp_path, sink)
    try:
        client = FirehoseClient(running.source.address, compress=False)
        _, headers = client.request([])
        if encoding:
            headers["Content-Encoding"] = encoding
        got, answer = client.post(body, headers)
    finally:
        running.stop()
    assert got == status
    assert says in answer["errorMessage"]
    assert isinstance(answer["timestamp"], int)
    assert sink.stored == []


def _raw_exchange(address: tuple[str, int], request: bytes) -> tuple[int, dict[str, Any]]:
    """Send bytes as they are and read the answer (status, JSON body) until the server closes."""
    with socket.create_connection(address, timeout=10) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head, "the connection was closed without an answer"
    return int(head.split()[1]), orjson.loads(body)


@pytest.mark.parametrize(
    ("length", "status"),
    [(b"\xb2", 400), (b"\xb9\xb2", 400), (b"1_0", 400), (b"-5", 400), (b"0x10", 400), (None, 411)],
)
def test_a_content_length_that_is_not_a_number_gets_a_clear_answer(
    served: tuple[Running, Path], length: bytes | None, status: int
) -> None:
    running, _ = served
    head = f"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Firehose-Access-Key: {KEY}\r\n".encode()
    if length is not None:
        head += b"Content-Length: " + length + b"\r\n"
    got, answer = _raw_exchange(running.source.address, head + b"\r\n" + b'{"requestId": "r", "records": []}')
    assert got == status
    assert "Content-Length" in answer["errorMessage"]
    # other methods are answered 405 whatever the header says
    got, answer = _raw_exchange(running.source.address, b"GET / HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n")
    assert got == 405


def test_bad_records_are_dead_lettered_with_reasons_and_the_rest_delivered(
    tmp_path: Path, scripted: Any
) -> None:
    sink = scripted()
    running = _scripted_endpoint(tmp_path, sink)
    client = FirehoseClient(running.source.address)
    good = [_event(i) for i in range(3)]
    body, headers = client.request([orjson.dumps(e) for e in good])
    doc = orjson.loads(gzip.decompress(body))
    doc["records"] += [
        {"data": "%%% not base64 %%%"},
        {"data": base64.b64encode(b'{"Hello": "World"}').decode()},
        {"data": base64.b64encode(b"\x1f\x8b\x08\x00\x00\x00broken").decode()},
        {"data": ""},
        {"data": None},
        {"data": 7},
    ]
    status, _ = client.post(gzip.compress(orjson.dumps(doc)), headers)
    running.stop()
    assert status == 200
    assert sorted(sink.stored) == sorted(e["eventID"] for e in good)
    entries = list(read_entries(tmp_path / "dead"))
    reasons = [e["reason"] for e in entries]
    assert len(reasons) == 5
    assert any("not valid base64" in r for r in reasons)
    assert any("not a CloudTrail record" in r for r in reasons)
    (null,) = [e for e in entries if "got `null`" in e["reason"]]
    assert null["reason"].endswith(
        "#7: not a Firehose record: Expected `bytes | object`, got `null` - at `$.data`"
    )
    assert orjson.loads(null["raw"]) == {"data": None}  # the record as it came
    assert any(
        r.endswith("#8: not a Firehose record: Expected `bytes | object`, got `int` - at `$.data`")
        for r in reasons
    )
    # Once answered 200, Firehose keeps no copy: the broken gzip's own bytes are in its entry.
    (broken,) = [e for e in entries if "gzip" in e["reason"]]
    assert base64.b64decode(broken["raw_base64"]) == b"\x1f\x8b\x08\x00\x00\x00broken"


def test_what_a_requests_records_unpack_to_is_bounded_by_max_body_bytes(
    tmp_path: Path, scripted: Any
) -> None:
    """Gzip inside records (CloudWatch Logs payloads are) must not take more than max_body_bytes:
    a record that would is a dead letter with its bytes, and the rest of the request is delivered."""
    sink = scripted()
    running = _scripted_endpoint(tmp_path, sink, max_body_bytes=256 * 1024)
    swollen = gzip.compress(orjson.dumps(_event(7, "swollen")) + b" " * (1 << 20), 9)  # 1 KB -> 1 MB
    client = FirehoseClient(running.source.address, compress=False)
    body, headers = client.request([orjson.dumps(_event(1)), swollen, orjson.dumps(_event(2))])
    assert len(body) < 256 * 1024
    status, _ = client.post(body, headers)
    running.stop()
    assert status == 200
    assert sorted(sink.stored) == ["fh-00001", "fh-00002"]
    [entry] = read_entries(tmp_path / "dead")
    assert "unpacks past" in entry["reason"] and "262144" in entry["reason"]
    assert base64.b64decode(entry["raw_base64"]) == swollen


def test_requests_do_not_wait_out_the_batch_age(tmp_path: Path, scripted: Any) -> None:
    """Firehose waits for our answer, so a request's records are flushed at once (max_age is 30 s)."""
    sink = scripted(BatchLimits(max_records=1000, max_bytes=1 << 20, max_age=30.0, concurrency=1))
    sent: dict[str, float] = {}
    sink.on_send = lambda batch: sent.update({str(r.event_id): time.monotonic() for r in batch.records})
    running = _scripted_endpoint(tmp_path, sink)
    t0 = time.monotonic()
    FirehoseClient(running.source.address).deliver([orjson.dumps(_event(i)) for i in range(5)])
    answered = time.monotonic() - t0
    FirehoseClient(running.source.address).deliver([orjson.dumps(_event(99, "risky", risky=True))])
    running.stop()
    assert answered < 5.0  # far below the 30 s batch age (the benchmark measures p99)
    assert max(sent[f"fh-{i:05d}"] for i in range(5)) - t0 < 5.0
    assert len(sent) == 6


def test_tls_when_configured(tmp_path: Path, scripted: Any) -> None:
    pytest.importorskip("cryptography")
    cert, key = _self_signed(tmp_path)
    source_config = FirehoseSourceConfig.validate(
        {"type": "firehose", "listen": "127.0.0.1:0", "access_key": KEY, "tls_cert": cert, "tls_key": key}
    )
    source = build_firehose_source(source_config)
    sink = scripted()
    stop = threading.Event()
    dead = FolderDeadLetters(tmp_path / "dead")
    metrics = Metrics()
    pipe = Pipeline(source, dead_letters=dead, metrics=metrics, stop=stop)
    pipe.sinks["s"] = SinkRunner(
        "s", sink, dead_letters=dead, metrics=metrics, stop=stop, on_fatal=pipe.on_fatal
    )
    running = Running(pipe, source)
    trust = ssl.create_default_context(cafile=str(cert))
    try:
        FirehoseClient(source.address, tls=trust).deliver([orjson.dumps(_event(1, "tls"))])
        with socket.create_connection(source.address, timeout=5) as raw:  # plain HTTP is refused
            raw.sendall(b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
            assert not raw.recv(100).startswith(b"HTTP/1.1 200")
    finally:
        running.stop()
    assert sink.stored == ["tls-00001"]


def test_config_is_validated_and_never_shows_the_key() -> None:
    base = {"type": "firehose", "listen": "0.0.0.0:8443"}
    ok = FirehoseSourceConfig.validate({**base, "access_key": KEY})
    assert KEY not in repr(ok)
    assert ok.secret_keys() == [KEY.encode()]
    for bad, says in [
        ({**base}, "access_key"),
        ({**base, "access_key": KEY, "listen": "8443"}, "HOST:PORT"),
        ({**base, "access_key": KEY, "tls_cert": "/c.pem"}, "tls_cert and tls_key"),
        ({**base, "access_key": "x" * 5000}, "4096"),
    ]:
        with pytest.raises(ConfigError) as err:
            parse_config({"source": bad, "sinks": [{"type": "stdout"}]})
        assert says in str(err.value)
        assert KEY not in str(err.value)
        assert "xxxx" not in str(err.value)


def test_a_port_in_use_is_a_config_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = FirehoseSourceConfig.validate(
            {"type": "firehose", "listen": f"127.0.0.1:{port}", "access_key": KEY}
        )
        with pytest.raises(ConfigError, match="cannot listen"):
            build_firehose_source(config)


def test_trailrelay_forward_serves_firehose_until_sigterm(tmp_path: Path) -> None:
    """The CLI path users run: ``trailrelay forward -c FILE`` with a firehose source."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "trailrelay.toml"
    cfg.write_text(
        "[source]\n"
        'type = "firehose"\n'
        f'listen = "127.0.0.1:{port}"\n'
        'access_key = "${FIREHOSE_KEY}"\n'
        "[[sinks]]\n"
        'type = "file"\n'
        'path = "out.ndjson"\n'
        "batch_seconds = 0.05\n"
    )
    env = {**os.environ, "FIREHOSE_KEY": KEY}
    proc = subprocess.Popen(
        [sys.executable, "-m", "trailrelay", "forward", "-c", str(cfg), "--log-format", "json"],
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the endpoint did not come up"
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.1)
        FirehoseClient(("127.0.0.1", port)).deliver([orjson.dumps(_event(i, "cli")) for i in range(7)])
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert KEY.encode() not in err
    assert len(_ids(tmp_path / "out.ndjson")) == 7


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def _seconds_until_closed(address: tuple[str, int], start: bytes, trickle: bytes, limit: float) -> float:
    """Send ``start``, then ``trickle`` a byte every 0.2 s: how long until the server closes."""
    t0 = time.monotonic()
    with socket.create_connection(address, timeout=0.2) as conn:
        conn.sendall(start)
        for i in range(int(limit / 0.2)):
            try:
                if not conn.recv(65536):
                    break
            except TimeoutError:
                conn.sendall(trickle[i % len(trickle) : i % len(trickle) + 1])
            except OSError:  # reset
                break
    return time.monotonic() - t0


@pytest.mark.parametrize("part", ["headers", "body"])
def test_a_request_arriving_slowly_is_cut_off_however_it_trickles(
    tmp_path: Path, scripted: Any, part: str
) -> None:
    """``idle_timeout`` bounds the wait for the headers, then for the body, in all: a byte now and
    then (each read well within it) does not keep a connection, and its slot, forever."""
    running = _scripted_endpoint(tmp_path, scripted(), idle_timeout=1.0)
    body = b'{"requestId": "r", "records": []}'
    head = f"POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Firehose-Access-Key: {KEY}\r\n".encode()
    try:
        if part == "headers":
            took = _seconds_until_closed(running.source.address, head, b"X-Slow: still coming\r\n", 6.0)
        else:
            head += f"Content-Length: {len(body) + 100}\r\n\r\n".encode()
            took = _seconds_until_closed(running.source.address, head, body, 6.0)
        delivered = FirehoseClient(running.source.address).deliver([orjson.dumps(_event(1))])
    finally:
        running.stop()
    assert 0.9 < took < 3.0
    assert delivered and running.source.stats["connection-timed-out"] == 1


def test_idle_connections_make_room_for_a_delivery(
    tmp_path: Path, scripted: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connections that never finish a request fill the cap: the one that waited longest is closed
    for a newcomer, so a delivery still gets through (it was refused, and Firehose saw a reset)."""
    monkeypatch.setattr(firehose, "_MAX_CONNECTIONS", 4)
    sink = scripted()
    running = _scripted_endpoint(tmp_path, sink)  # idle_timeout: the default, 75 s
    flood = []
    try:
        for _ in range(6):
            conn = socket.create_connection(running.source.address, timeout=5)
            conn.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")  # and never the rest
            flood.append(conn)
        time.sleep(0.3)
        client = FirehoseClient(running.source.address, attempts=1)
        client.deliver([orjson.dumps(_event(1, "through"))])
        assert client.statuses == [200]
        closed = [_closed_by_server(conn) for conn in flood]
    finally:
        for conn in flood:
            conn.close()
        running.stop()
    assert sink.stored == ["through-00001"]
    # the oldest three made room for the 5th, the 6th and the delivery
    assert closed == [True, True, True, False, False, False]
    assert running.source.stats["connection-dropped-for-room"] == 3


def _closed_by_server(conn: socket.socket) -> bool:
    conn.settimeout(0.05)
    try:
        return conn.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_a_stopping_endpoint_turns_requests_away_at_once(tmp_path: Path, scripted: Any) -> None:
    """SIGTERM (the pipeline's stop): new requests get 503 at once, so Firehose retries elsewhere."""
    sink = scripted(BatchLimits(max_records=100, max_bytes=1 << 20, max_age=0.01, concurrency=1))
    sink.on_send = lambda _: time.sleep(1.0)
    running = _scripted_endpoint(tmp_path, sink)
    first: dict[str, Any] = {}

    def in_flight() -> None:
        client = FirehoseClient(running.source.address)
        first["status"], first["answer"] = client.post(*client.request([orjson.dumps(_event(1, "first"))]))

    t = threading.Thread(target=in_flight)
    t.start()
    time.sleep(0.3)
    running.pipeline.stop.set()
    t0 = time.monotonic()
    late = FirehoseClient(running.source.address)
    status, answer = late.post(*late.request([orjson.dumps(_event(2, "late"))]))
    assert status == 503 and "shutting down" in answer["errorMessage"]
    assert time.monotonic() - t0 < 1.0
    t.join(timeout=10)
    result = running.stop()
    assert first["status"] in (200, 503)  # delivered within the drain, or handed back
    assert "late-00002" not in sink.stored
    assert result.stopped


def test_answers_on_a_kept_alive_connection_are_not_held_back_by_nagle(
    served: tuple[Running, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The endpoint writes headers and body separately: without TCP_NODELAY the body waits for
    the client's delayed ACK (~40 ms per request on a reused connection, Firehose's normal case)."""
    running, _ = served
    options: list[int] = []
    handle = running.source.handle

    def noting(h: Any) -> None:
        options.append(h.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        handle(h)

    monkeypatch.setattr(running.source, "handle", noting)
    client = FirehoseClient(running.source.address)
    for b in range(3):
        client.deliver([orjson.dumps(_event(i, f"k{b}")) for i in range(3)])
    assert client.statuses == [200, 200, 200]
    assert len(options) == 3 and all(options), options
