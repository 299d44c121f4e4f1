"""SQS worker fleet: several processes on one queue, kills, health and metrics endpoints."""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import orjson
import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def queue_with_objects(aws_env: str, make_events: Any) -> tuple[str, str, list[str]]:
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    bucket = f"fleet-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    url = sqs.create_queue(QueueName=f"fleet-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    ids: list[str] = []
    for i in range(30):
        evs = make_events(10, prefix=f"f{i}")
        ids += [e["eventID"] for e in evs]
        key = f"AWSLogs/111122223333/CloudTrail/us-east-1/2026/03/02/111122223333_CloudTrail_us-east-1_20260302T1000Z_{i:04d}.json.gz"
        s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(orjson.dumps({"Records": evs})))
        note = {
            "Records": [
                {
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": bucket}, "object": {"key": key}},
                }
            ]
        }
        sqs.send_message(QueueUrl=url, MessageBody=orjson.dumps(note).decode())
    return url, bucket, ids


def _config(tmp: Path, url: str, endpoint: str, extra: str = "") -> Path:
    cfg = tmp / "fleet.toml"
    cfg.write_text(
        f'[source]\ntype = "sqs"\nqueue_url = "{url}"\nwait_seconds = 1\nvisibility_timeout = 10\n'
        f'endpoint_url = "{endpoint}"\nregion = "us-east-1"\n'
        '[[sinks]]\ntype = "file"\npath = "out-${TRAILRELAY_WORKER:-solo}.ndjson"\n' + extra
    )
    return cfg


def _delivered(tmp: Path) -> list[str]:
    return [
        orjson.loads(x)["eventID"]
        for f in sorted(tmp.glob("out-*.ndjson"))
        for x in f.read_bytes().splitlines()
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def test_two_workers_share_the_queue(
    tmp_path: Path, queue_with_objects: tuple[str, str, list[str]], aws_env: str
) -> None:
    url, _, ids = queue_with_objects
    cfg = _config(tmp_path, url, aws_env)
    proc = subprocess.run(
        [sys.executable, "-m", "trailrelay", "forward", "-c", str(cfg), "--workers", "2", "--once"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = _delivered(tmp_path)
    assert sorted(got) == sorted(ids)  # every record, none twice
    assert {p.name for p in tmp_path.glob("out-*.ndjson")} <= {"out-0.ndjson", "out-1.ndjson"}
    attrs = boto3.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0"
    assert attrs["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_killed_worker_messages_are_finished_by_another(
    tmp_path: Path, queue_with_objects: tuple[str, str, list[str]], aws_env: str
) -> None:
    url, _, ids = queue_with_objects
    # worker A holds everything in a long batch window, then dies without acknowledging anything
    # (no detection: a tagged record would flush at once, which is the fast path working)
    (tmp_path / "a").mkdir()
    slow = _config(
        tmp_path / "a", url, aws_env, "batch_seconds = 60\nbatch_events = 100000\n[detection]\npack = false\n"
    )
    a = subprocess.Popen(
        [sys.executable, "-m", "trailrelay", "forward", "-c", str(slow), "--no-progress"],
        env={**_env(), "TRAILRELAY_WORKER": "a"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sqs = boto3.client("sqs")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        attrs = sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
        )
        if int(attrs["Attributes"]["ApproximateNumberOfMessagesNotVisible"]) >= 30:
            break
        time.sleep(0.2)
    a.send_signal(signal.SIGKILL)
    a.wait(timeout=10)
    assert _delivered(tmp_path / "a") == []
    (tmp_path / "b").mkdir()
    b_cfg = _config(tmp_path / "b", url, aws_env)
    b = subprocess.Popen(
        [sys.executable, "-m", "trailrelay", "forward", "-c", str(b_cfg), "--no-progress"],
        env={**_env(), "TRAILRELAY_WORKER": "b"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(_delivered(tmp_path / "b")) < len(ids):
        time.sleep(0.5)
    b.send_signal(signal.SIGTERM)
    _, err = b.communicate(timeout=30)
    assert b.returncode == 0, err[-2000:]
    assert sorted(_delivered(tmp_path / "b")) == sorted(ids)


def test_health_and_metrics_endpoints(
    tmp_path: Path, queue_with_objects: tuple[str, str, list[str]], aws_env: str
) -> None:
    url, _, ids = queue_with_objects
    cfg = _config(tmp_path, url, aws_env)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "trailrelay", "forward", "-c", str(cfg), "--health", f"127.0.0.1:{port}"],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        body = ""
        while time.monotonic() < deadline:
            try:
                health = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
                if f'trailrelay_delivered_total{{sink="file"}} {len(ids)}' in body:
                    break
            except OSError:
                pass
            time.sleep(0.3)
        assert health.status == 200
        assert f"trailrelay_records_in_total {len(ids)}" in body
        assert f'trailrelay_delivered_total{{sink="file"}} {len(ids)}' in body
        assert "# TYPE trailrelay_units_acknowledged_total counter" in body
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]


class _Running:
    """A worker process that is running (as the supervisor sees it)."""

    pid = 4242

    def poll(self) -> int | None:
        return None

    def send_signal(self, sig: int) -> None:
        pass

    def kill(self) -> None:
        pass


def test_fleet_counters_keep_what_a_restarted_worker_did_and_a_crash_loop_stays_unhealthy(
    tmp_path: Path,
) -> None:
    from trailrelay.cli.fleet import _CRASH_LOOP, _FleetHealth

    now = [1000.0]
    procs: dict[int, Any] = {0: _Running(), 1: _Running()}
    fleet = _FleetHealth(tmp_path, 2, procs, clock=lambda: now[0])

    def write(i: int, n: int) -> None:
        fleet.metrics_file(i).write_bytes(orjson.dumps({"records_in": n, "delivered": {"out": n}}))

    write(0, 150)
    write(1, 160)
    healthy, _, total = fleet()
    assert healthy and total["delivered"] == {"out": 310} and total["workers"] == 2
    fleet.retire(0)  # SIGKILLed: its counters stay in the fleet's
    assert fleet()[2]["delivered"] == {"out": 310}
    write(0, 4)  # the process started in its place counts from 0
    assert fleet()[2]["delivered"] == {"out": 314}
    assert fleet()[2]["workers"] == 2
    fleet.metrics_file(1).write_bytes(b'{"records_in": 1')  # killed while writing its last counters
    fleet.retire(1)
    assert fleet()[2]["records_in"] == 314  # what was read of it before

    count, seconds = _CRASH_LOOP
    for _ in range(count - 1):
        fleet.restarted(0)
        now[0] += 1
    assert fleet()[0]  # a restart or two: healthy while the new process runs
    fleet.restarted(0)
    for _ in range(10):  # in a crash loop: unhealthy between the restarts too, not in and out
        now[0] += 0.5
        healthy, reason, _ = fleet()
        assert not healthy and "workers [0] restarted" in reason
    now[0] += seconds
    assert fleet()[0]  # no restart for a while: healthy again


def test_a_worker_without_source_activity_makes_the_fleet_unhealthy(tmp_path: Path) -> None:
    """The workers' files carry their own verdict (the single worker's idle rule) to /healthz.

    The workers of an SQS fleet whose queue is unreachable log "could not receive" and do no
    work: /healthz answered 200 throughout (it only looked at exits and crash loops).
    """
    from trailrelay.cli.fleet import _FleetHealth
    from trailrelay.pipeline.health import HealthServer, health_snapshot, pipeline_health, write_snapshots
    from trailrelay.pipeline.metrics import Metrics

    fleet = _FleetHealth(tmp_path, 2, {0: _Running(), 1: _Running()})
    workers = [SimpleNamespace(metrics=Metrics(), fatal=None) for _ in range(2)]
    stop = threading.Event()
    for i, worker in enumerate(workers):  # what each worker process runs (cli.main._forward_one)
        provider = health_snapshot(pipeline_health(worker, max_idle=60.0))
        write_snapshots(provider, str(fleet.metrics_file(i)), stop, every=0.02)
    server = HealthServer("127.0.0.1:0", fleet).start()
    healthz = f"http://127.0.0.1:{server.address[1]}/healthz"

    def answer(start: str) -> tuple[int, str]:
        """/healthz once its body starts with ``start`` (the files are rewritten every 20 ms)."""
        deadline = time.monotonic() + 5
        while not (got := _get(healthz))[1].startswith(start) and time.monotonic() < deadline:
            time.sleep(0.02)
        return got

    try:
        workers[0].metrics.add("records_in", 5)
        assert answer("ok") == (200, "ok\n")
        workers[1].metrics.last_activity -= 73  # its receives fail: nothing from the source for 73 s
        status, body = answer("unhealthy")
        assert status == 503 and re.fullmatch(r"unhealthy: worker 1: no source activity for 7\ds\n", body)
        assert fleet()[2]["records_in"] == 5 and fleet()[2]["workers"] == 2  # still counted
        workers[0].metrics.last_activity -= 80
        status, body = answer("unhealthy: worker 0")
        assert status == 503 and re.fullmatch(
            r"unhealthy: worker 0: .* for 8\ds; worker 1: .* for 7\ds\n", body
        )
        for worker in workers:  # the queue answers again
            worker.metrics.last_activity = time.monotonic()
        assert answer("ok") == (200, "ok\n")
    finally:
        stop.set()
        server.stop()


def _children(pid: int) -> dict[int, int]:
    """The supervisor's worker processes: worker index -> pid (Linux /proc)."""
    found = {}
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile
            continue
        for var in environ:
            if var.startswith(b"TRAILRELAY_WORKER="):
                found[int(var.split(b"=", 1)[1])] = int(child)
    return found


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _health_fleet(cfg: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Two SQS workers with ``--health`` on a free port: the process and the port."""
    port = _free_port()
    cmd = [sys.executable, "-m", "trailrelay", "forward", "-c", str(cfg), "--workers", "2"]
    proc = subprocess.Popen(
        [*cmd, "--health", f"127.0.0.1:{port}", "--no-progress"],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, port


@pytest.mark.skipif(sys.platform != "linux", reason="finds the workers in /proc")
def test_fleet_metrics_never_go_down_when_a_worker_is_killed_and_restarted(
    tmp_path: Path, queue_with_objects: tuple[str, str, list[str]], aws_env: str
) -> None:
    url, _, ids = queue_with_objects
    proc, port = _health_fleet(_config(tmp_path, url, aws_env))
    delivered = f'trailrelay_delivered_total{{sink="file"}} {len(ids)}\n'
    metrics = f"http://127.0.0.1:{port}/metrics"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if delivered in _get(metrics)[1]:
                    break
            time.sleep(0.2)
        assert delivered in _get(metrics)[1]
        workers = _children(proc.pid)
        busy = next(i for i, pid in workers.items() if (tmp_path / f"out-{i}.ndjson").exists())
        os.kill(workers[busy], signal.SIGKILL)
        seen = []
        restarted_at = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (restarted_at is None or time.monotonic() < restarted_at + 3):
            body = _get(metrics)[1]
            seen.append(
                int(re.search(r'^trailrelay_delivered_total\{sink="file"\} (\d+)$', body, re.MULTILINE)[1])
            )
            if restarted_at is None and _children(proc.pid).get(busy, workers[busy]) != workers[busy]:
                restarted_at = time.monotonic()
            time.sleep(0.1)
        assert restarted_at is not None  # the killed worker was started again, and reported
        assert min(seen) == len(ids), seen  # its work still counted: nothing went down
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_a_crash_looping_fleet_stays_unhealthy(
    tmp_path: Path, queue_with_objects: tuple[str, str, list[str]], aws_env: str
) -> None:
    """The queue is deleted: the workers fail and are restarted over and over; /healthz says so throughout."""
    url, _, _ = queue_with_objects
    proc, port = _health_fleet(_config(tmp_path, url, aws_env))
    healthz = f"http://127.0.0.1:{port}/healthz"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if _get(healthz)[0] == 200:
                    break
            time.sleep(0.2)
        assert _get(healthz)[0] == 200
        boto3.client("sqs").delete_queue(QueueUrl=url)
        while time.monotonic() < deadline and "restarted" not in _get(healthz)[1]:
            time.sleep(0.2)
        answers = []
        for _ in range(20):  # through several restarts: 503 each time, never 200 in between
            answers.append(_get(healthz))
            time.sleep(0.2)
        assert {status for status, _ in answers} == {503}, answers
        assert all("restarted 3 times or more within 60s" in body for _, body in answers)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def _backfill(
    tmp_path: Path, make_object: Any, make_events: Any, *, objects: int, per: int
) -> tuple[list[str], Path]:
    """A trail folder ``in/`` of ``objects`` objects and a file-sink config with checkpoints."""
    ids: list[str] = []
    for i in range(objects):
        evs = make_events(per, prefix=f"o{i}")
        ids += [e["eventID"] for e in evs]
        make_object(
            tmp_path / "in" / f"AWSLogs/111122223333/CloudTrail/eu-west-1/2026/03/02/o{i:02d}.json.gz", evs
        )
    cfg = tmp_path / "t.toml"
    cfg.write_text(
        '[source]\ntype = "files"\npath = "in"\n[[sinks]]\ntype = "file"\npath = "out/ct.ndjson"\n'
        '[state]\npath = "state.sqlite"\n'
    )
    return ids, cfg


def test_two_workers_share_a_files_backfill_each_object_read_once(
    tmp_path: Path, make_object: Any, make_events: Any
) -> None:
    """--workers 2 on a folder: every object by exactly one worker, one summary, all checkpointed."""
    ids, cfg = _backfill(tmp_path, make_object, make_events, objects=12, per=25)
    (tmp_path / "in" / "notes.txt").write_text("not a log")
    cmd = [sys.executable, "-m", "trailrelay", "forward", "-c", str(cfg), "--workers", "2", "--no-progress"]
    summary = tmp_path / "summary.json"
    done = subprocess.run(
        [*cmd, "--summary-json", str(summary)], capture_output=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    lines = (tmp_path / "out" / "ct.ndjson").read_bytes().splitlines()
    assert sorted(orjson.loads(x)["eventID"] for x in lines) == sorted(ids)  # once each, none lost
    totals = orjson.loads(summary.read_bytes())
    assert totals["workers"] == 2
    assert totals["records_in"] == 300
    assert totals["objects_read"] == 12
    assert totals["skipped"] == {"not-a-log-file": 1}  # counted once, not per worker
    from trailrelay.state import Checkpoints

    assert Checkpoints(tmp_path / "state.sqlite").count() == 12
    again = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert again.returncode == 0
    assert len((tmp_path / "out" / "ct.ndjson").read_bytes().splitlines()) == 300  # nothing read twice


def test_fleet_totals_sum_counters_at_any_depth() -> None:
    """Every shape a worker's snapshot has: plain counters, counters by sink, privacy's by sink and rule."""
    from trailrelay.cli.fleet import _sum

    first = {
        "elapsed_seconds": 3.5,
        "records_per_second": 100.0,
        "records_in": 350,
        "bytes_read": 1024,
        "delivered": {"plain": 350, "abroad": 350},
        "skipped": {},
        "latency_seconds": {"p50": 0.1, "p99": 0.5, "max": 0.9},
        "filtered_by_rule": {"no-reads": 4},
        "privacy": {"abroad": {"records_changed": 350, "sourceIPAddress:hash": 300}},
        "integrity": {"checks": 2},
        "stuck": False,
    }
    second = {
        "elapsed_seconds": 2.0,
        "records_in": 150,
        "bytes_read": 512,
        "delivered": {"plain": 150, "abroad": 149},
        "skipped": {"not-a-log-file": 1},
        "filtered_by_rule": {},
        "privacy": {"abroad": {"records_changed": 149, "userIdentity.arn:hash": 20}, "other": {}},
    }
    assert _sum([first, second]) == {
        "workers": 2,
        "records_in": 500,
        "bytes_read": 1536,
        "delivered": {"plain": 500, "abroad": 499},
        "skipped": {"not-a-log-file": 1},
        "filtered_by_rule": {"no-reads": 4},
        "privacy": {
            "abroad": {"records_changed": 499, "sourceIPAddress:hash": 300, "userIdentity.arn:hash": 20},
            "other": {},
        },
        "integrity": {"checks": 2},
    }
    assert _sum([]) == {"workers": 0}


def test_a_backfill_fleet_with_privacy_ends_with_its_summary(
    tmp_path: Path, make_object: Any, make_events: Any
) -> None:
    """Each worker's summary has privacy counters by sink and rule: the supervisor adds them up."""
    ids, cfg = _backfill(tmp_path, make_object, make_events, objects=6, per=10)
    cfg.write_text(
        cfg.read_text()
        + '[[sinks]]\ntype = "file"\nname = "abroad"\npath = "out/abroad.ndjson"\n'
        + '[privacy]\nkey_env = "TEST_PSEUDONYM_KEY"\n[privacy.sinks]\nabroad = "standard"\n'
    )
    env = {**_env(), "TEST_PSEUDONYM_KEY": "0123456789abcdef" * 4}
    totals = {}
    for workers in ("2", "1"):  # the fleet's totals, then one process's: the same counts
        shutil.rmtree(tmp_path / "out", ignore_errors=True)
        (tmp_path / "state.sqlite").unlink(missing_ok=True)
        summary = tmp_path / f"summary-{workers}.json"
        cmd = [sys.executable, "-m", "trailrelay", "forward", "-c", str(cfg), "--workers", workers]
        done = subprocess.run(
            [*cmd, "--no-progress", "--summary-json", str(summary)],
            capture_output=True,
            timeout=120,
            check=False,
            env=env,
        )
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        totals[workers] = orjson.loads(summary.read_bytes())
        assert len((tmp_path / "out" / "abroad.ndjson").read_bytes().splitlines()) == len(ids)
    assert totals["2"]["workers"] == 2
    assert totals["2"]["records_in"] == totals["1"]["records_in"] == len(ids)
    assert totals["2"]["privacy"] == totals["1"]["privacy"]
    assert totals["1"]["privacy"]["abroad"]["records_changed"] > 0


def test_a_backfill_fleet_makes_the_checkpoint_database_before_its_workers_start(
    tmp_path: Path, make_object: Any, make_events: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers opening a new database together wait on each other ("database is locked"): the
    supervisor makes it, in WAL mode, before it starts them."""
    import sqlite3

    from click.testing import CliRunner

    from trailrelay.cli import fleet
    from trailrelay.cli.main import cli

    _, cfg = _backfill(tmp_path, make_object, make_events, objects=1, per=1)
    seen: list[str] = []

    def started(*_: Any, **__: Any) -> tuple[int, None]:
        db = tmp_path / "state.sqlite"
        if db.exists():
            with sqlite3.connect(db) as conn:
                seen.append(conn.execute("PRAGMA journal_mode").fetchone()[0])
                seen.extend(
                    row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                )
        return 0, None

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(fleet, "run_fleet", started)
    result = CliRunner().invoke(cli, ["forward", "-c", str(cfg), "--workers", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert seen == ["wal", "objects", "sink_sets"]


def test_sharding_gives_each_unit_to_exactly_one_worker() -> None:
    from trailrelay.sources.base import in_shard

    labels = [f"s3://b/AWSLogs/1/CloudTrail/r/2026/03/02/{i}.json.gz" for i in range(1000)]
    owners = [[w for w in range(3) if in_shard(label, w, 3)] for label in labels]
    assert all(len(o) == 1 for o in owners)
    share = [sum(1 for o in owners if o == [w]) for w in range(3)]
    assert min(share) > 250  # spread, not all on one worker


class _Listing:
    """A listing source: the same units, in the same order, for every worker."""

    def __init__(self, labels: list[str], skipped: tuple[str, ...] = (), why: str = "not-a-log-file") -> None:
        self.labels = labels
        self.skipped = skipped
        self.why = why

    def work(self, stop: Any) -> Any:
        from trailrelay.record import Origin
        from trailrelay.sources.base import ObjectRef, Work

        for label in self.labels:
            yield Work([ObjectRef(Origin("file", label), lambda: b"")], label=label)
        yield Work([], skipped=[(self.why, where) for where in self.skipped], label="skips")
        yield Work([], idle=True)

    def close(self) -> None:
        pass


def test_a_fleet_worker_takes_every_object_no_other_worker_has_taken(
    tmp_path: Path, make_object: Any, make_events: Any
) -> None:
    """The fleet's claims folder reaches the worker: alone in it, worker 0 of 2 reads all 12 objects
    (its hash share alone would be about half)."""
    ids, cfg = _backfill(tmp_path, make_object, make_events, objects=12, per=5)
    claims = tmp_path / "claims"
    claims.mkdir()
    cmd = [sys.executable, "-m", "trailrelay", "forward", "-c", str(cfg), "--once", "--no-progress"]
    env = {**os.environ, "TRAILRELAY_CLAIMS": str(claims)}
    done = subprocess.run([*cmd, "--shard", "0/2"], env=env, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    lines = (tmp_path / "out" / "ct.ndjson").read_bytes().splitlines()
    assert sorted(orjson.loads(x)["eventID"] for x in lines) == sorted(ids)
    assert len(list(claims.iterdir())) == 12


def test_claimed_units_go_to_whichever_worker_asks_first(tmp_path: Path) -> None:
    """With the fleet's claims a free worker takes what the other has not started: no fixed halves."""
    from trailrelay.sources.base import Claims, Sharded, in_shard

    labels = [f"s3://b/AWSLogs/1/CloudTrail/r/2026/03/02/{i}.json.gz" for i in range(40)]
    skipped = tuple(f"s3://b/other/{i}.txt" for i in range(10))
    claims = Claims(tmp_path)
    first, second = (Sharded(_Listing(labels, skipped), w, 2, claims=claims) for w in range(2))
    taken = [list(first.work(None)), list(second.work(None))]  # the first is done before the second starts
    assert [u.label for u in taken[0] if u.objects] == labels  # ... so it takes every object
    assert [u.label for u in taken[1] if u.objects] == []
    # What is counted rather than read is still split by hash (each counted once), idle polls by worker 0.
    for w in range(2):
        assert [where for u in taken[w] for _, where in u.skipped] == [
            s for s in skipped if in_shard(s, w, 2)
        ]
    assert [u.idle for u in taken[0]].count(True) == 1
    assert [u.idle for u in taken[1]].count(True) == 0


def test_an_object_another_worker_read_in_this_run_is_not_counted_as_skipped(tmp_path: Path) -> None:
    """A listing that reaches an object after another worker of the fleet read (and checkpointed)
    it reports it as already done: not a skip of this run, so no worker counts it. An object done
    before the run was claimed by nobody and is counted once."""
    from trailrelay.sources.base import Claims, Sharded, in_shard

    labels = [f"s3://b/AWSLogs/1/CloudTrail/r/2026/03/02/{i}.json.gz" for i in range(20)]
    claims = Claims(tmp_path)
    first = Sharded(_Listing(labels), 0, 2, claims=claims)
    assert [u.label for u in first.work(None) if u.objects] == labels
    earlier = "s3://b/AWSLogs/1/CloudTrail/r/2026/03/01/done-before.json.gz"
    done = (*labels, earlier)
    counted = [
        [
            where
            for u in Sharded(_Listing([], done, "already-done"), w, 2, claims=claims).work(None)
            for _, where in u.skipped
        ]
        for w in range(2)
    ]
    assert sorted(counted[0] + counted[1]) == [earlier]
    assert counted[0 if in_shard(earlier, 0, 2) else 1] == [earlier]


def test_claims_hold_across_processes(tmp_path: Path) -> None:
    """Workers racing through one listing in separate processes: every unit taken once, none lost."""
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from trailrelay.sources.base import Claims\n"
        "c = Claims(Path(sys.argv[1]) / 'claims')\n"
        "go = Path(sys.argv[1]) / 'go'\n"
        "while not go.exists():\n"
        "    time.sleep(0.001)\n"
        "print('\\n'.join(str(i) for i in range(2000) if c.take(f'unit {i}')))\n"
    )
    (tmp_path / "claims").mkdir()
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    time.sleep(0.5)  # all three started and waiting
    (tmp_path / "go").touch()
    got = [p.communicate(timeout=60)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    every = sorted(int(i) for share in got for i in share)
    assert every == list(range(2000))  # each exactly once
    assert sum(1 for share in got if share) >= 2  # raced, not one after the other (a check on the test)


_STARTED_IN_PARENT: list[int] = []


@pytest.mark.skipif(sys.platform != "linux", reason="backfill workers are forked on Linux only")
def test_backfill_workers_are_forked_after_start_up_and_report_their_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forked workers inherit what the supervisor loaded (no second start-up); statuses are summed."""
    from trailrelay.cli.fleet import run_fleet

    _STARTED_IN_PARENT.append(os.getpid())  # only a forked child can see this

    def body(index: int, summary: Path) -> None:
        seen = {
            "parent": _STARTED_IN_PARENT[-1],
            "pid": os.getpid(),
            "worker": os.environ["TRAILRELAY_WORKER"],
        }
        (tmp_path / f"seen-{index}.json").write_bytes(orjson.dumps(seen))
        summary.write_bytes(orjson.dumps({"records_in": 10 * (index + 1), "delivered": {"file": 10}}))
        raise SystemExit(4 if index == 1 else 0)  # worker 1 dead-lettered something

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    code, total = run_fleet(
        tmp_path / "unused.toml", 2, once=True, health=None, log_format="json", shards=True, body=body
    )
    assert list(scratch.iterdir()) == []  # the workers' scratch folder is removed
    seen = [orjson.loads((tmp_path / f"seen-{i}.json").read_bytes()) for i in range(2)]
    assert [s["parent"] for s in seen] == [os.getpid()] * 2
    assert {s["worker"] for s in seen} == {"0", "1"}
    assert all(s["pid"] != os.getpid() for s in seen)
    assert code == 4  # the most telling status of the fleet
    assert total is not None and total["records_in"] == 30 and total["delivered"] == {"file": 20}


def test_sigterm_drains_forked_backfill_workers_and_a_rerun_finishes(
    tmp_path: Path, make_object: Any, make_events: Any
) -> None:
    """SIGTERM to the supervisor reaches its forked workers: they stop, and nothing is lost."""
    ids, cfg = _backfill(tmp_path, make_object, make_events, objects=40, per=2000)
    out = tmp_path / "out" / "ct.ndjson"
    cmd = [sys.executable, "-m", "trailrelay", "forward", "-c", str(cfg), "--workers", "2", "--no-progress"]
    proc = subprocess.Popen([*cmd, "--log-format", "json"], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (out.exists() and out.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    # the workers finish what they hold (0, as a signalled single process does) or hand it back (5)
    assert proc.returncode in (0, 5), err.decode()[-2000:]
    first = len(out.read_bytes().splitlines())
    assert 0 < first < len(ids)  # the signal came mid-run and the workers stopped reading
    again = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert again.returncode == 0, again.stderr.decode()[-2000:]
    stored = [orjson.loads(x)["eventID"] for x in out.read_bytes().splitlines()]
    assert set(stored) == set(ids)  # at least once: what the stop left is read by the rerun
    assert len(stored) >= len(ids)


def test_forked_workers_count_correlations_together(tmp_path: Path, make_object: Any) -> None:
    """A burst of denied calls spread over objects that two workers share out is counted as one
    burst (in the supervisor's windows): the same tags as one worker, not two half-bursts."""
    from trailrelay.testing import SAMPLE_EVENTS

    sample = next(e for e in SAMPLE_EVENTS if e["eventName"] == "DescribeInstances")
    quiet = {k: v for k, v in sample.items() if k not in ("errorCode", "errorMessage")}  # allowed
    scanner = "arn:aws:iam::111122223333:user/scanner"
    for i in range(20):  # one denied call per object, one principal, 20 s apart: a burst of 20
        denied = {
            **quiet,
            "eventID": f"deny-{i:02d}",
            "eventTime": f"2026-03-02T10:00:{i:02d}Z",
            "errorCode": "Client.UnauthorizedOperation",
            "userIdentity": {**quiet["userIdentity"], "arn": scanner},
        }
        calm = [{**quiet, "eventID": f"calm-{i:02d}-{j}"} for j in range(3)]
        make_object(
            tmp_path / "in" / f"AWSLogs/111122223333/CloudTrail/eu-west-1/2026/03/02/o{i:02d}.json.gz",
            [*calm, denied],
        )
    tagged = {}
    for workers in (1, 2):
        (tmp_path / "state.sqlite").unlink(missing_ok=True)
        cfg = tmp_path / f"t{workers}.toml"
        cfg.write_text(
            f'[source]\ntype = "files"\npath = "in"\n[[sinks]]\ntype = "file"\npath = "out{workers}.ndjson"\n'
            '[state]\npath = "state.sqlite"\n'
        )
        summary = tmp_path / f"summary{workers}.json"
        cmd = [sys.executable, "-m", "trailrelay", "forward", "-c", str(cfg), "--once", "--no-progress"]
        done = subprocess.run(
            [*cmd, "--workers", str(workers), "--summary-json", str(summary)],
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        totals = orjson.loads(summary.read_bytes())
        assert totals["records_in"] == 80
        tagged[workers] = totals["records_tagged_high_risk"]
    assert tagged[1] == 11  # the 10th denied call and every one after it, within 5 minutes
    assert tagged[2] == tagged[1]  # two workers counting apart would tag at most 2 (10 + 10)


def _tgkill(pid: int, tid: int, sig: int) -> None:
    """Send ``sig`` to thread ``tid`` of process ``pid`` (the kernel may pick any thread for kill(2))."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.tgkill(pid, tid, sig) != 0:
        raise OSError(ctypes.get_errno(), "tgkill")


@pytest.mark.skipif(sys.platform != "linux", reason="signals one thread with tgkill")
def test_a_sigterm_the_kernel_hands_to_another_thread_still_stops_forward(
    tmp_path: Path, queue_with_objects: tuple[str, str, list[str]], aws_env: str
) -> None:
    """Python runs handlers in the main thread only: it used to sit in an endless join() of the
    reader threads, so a SIGTERM delivered to one of them was never acted on (a fleet's workers
    are the same ``forward``)."""
    url, _, ids = queue_with_objects
    cfg = _config(tmp_path, url, aws_env)
    with (tmp_path / "stderr").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "trailrelay", "forward", "-c", str(cfg), "--no-progress"],
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(_delivered(tmp_path)) < len(ids):
            time.sleep(0.2)
        assert len(_delivered(tmp_path)) == len(ids)
        other = next(int(t.name) for t in Path(f"/proc/{proc.pid}/task").iterdir() if int(t.name) != proc.pid)
        _tgkill(proc.pid, other, signal.SIGTERM)
        code = proc.wait(timeout=15)  # used to run on until a second SIGTERM
    finally:
        proc.kill()
        proc.wait()
    err = (tmp_path / "stderr").read_text()
    assert code == 0, err[-2000:]
    assert "SIGTERM received" in err


@pytest.mark.skipif(sys.platform != "linux", reason="finds the workers in /proc")
def test_a_backfill_worker_killed_mid_run_makes_the_fleet_unfinished_and_says_which(
    tmp_path: Path, make_object: Any, make_events: Any
) -> None:
    """A worker killed by a signal used to lose to its partner's 0 (max of [0, -9]): exit 0 with
    records missing, nothing logged, and a summary of "workers": 1. Now: 5, an error line naming
    the worker, its pid and the signal, and the summary lists it; a rerun delivers the rest."""
    from trailrelay.cli.fleet import fleet_status

    assert fleet_status([0, -9]) == fleet_status([-6, 4]) == fleet_status([1, 0]) == 5
    assert fleet_status([0, -15]) == 0  # stopped by SIGTERM before its handler was in place: no work yet
    assert fleet_status([3, -9]) == 3 and fleet_status([0, 4]) == 4 and fleet_status([0, 0]) == 0
    ids, cfg = _backfill(tmp_path, make_object, make_events, objects=40, per=2000)
    out = tmp_path / "out" / "ct.ndjson"
    summary = tmp_path / "summary.json"
    cmd = [sys.executable, "-m", "trailrelay", "forward", "-c", str(cfg), "--workers", "2", "--no-progress"]
    with (tmp_path / "stderr").open("wb") as log:
        proc = subprocess.Popen([*cmd, "--summary-json", str(summary)], stderr=log, cwd=tmp_path)
    deadline = time.monotonic() + 60
    while not (out.exists() and out.stat().st_size > 0) and time.monotonic() < deadline:
        time.sleep(0.01)
    victim = int(Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()[0])
    os.kill(victim, signal.SIGKILL)
    code = proc.wait(timeout=60)
    err = (tmp_path / "stderr").read_text()
    assert code == 5, err[-2000:]
    lost = re.search(rf"worker (\d) \(pid {victim}\) was killed by SIGKILL", err)
    assert lost, err[-2000:]
    totals = orjson.loads(summary.read_bytes())
    assert totals["workers"] == 2
    assert totals["workers_without_summary"] == [
        {"worker": int(lost[1]), "pid": victim, "ended": "killed by SIGKILL"}
    ]
    again = subprocess.run(cmd, capture_output=True, timeout=120, check=False, cwd=tmp_path)
    assert again.returncode == 0, again.stderr.decode()[-2000:]
    assert {orjson.loads(x)["eventID"] for x in out.read_bytes().splitlines()} == set(ids)


@pytest.mark.skipif(sys.platform != "linux", reason="finds the workers in /proc")
def test_a_queue_worker_that_exits_cleanly_is_restarted_and_unhealthy_until_then(
    tmp_path: Path, queue_with_objects: tuple[str, str, list[str]], aws_env: str
) -> None:
    """SIGTERM to one worker: it drains and exits 0. It used to be left dead (only a failure was
    restarted) with /healthz 200 and nothing logged: the fleet silently one worker short."""
    url, _, _ = queue_with_objects
    port = _free_port()
    cmd = [sys.executable, "-m", "trailrelay", "forward", "-c", str(_config(tmp_path, url, aws_env))]
    with (tmp_path / "stderr").open("wb") as log:
        proc = subprocess.Popen(
            [*cmd, "--workers", "2", "--health", f"127.0.0.1:{port}", "--no-progress"],
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    healthz = f"http://127.0.0.1:{port}/healthz"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(workers := _children(proc.pid)) < 2:
            time.sleep(0.05)
        while time.monotonic() < deadline:  # both report: their signal handlers are in place
            with contextlib.suppress(OSError):
                if "trailrelay_workers 2\n" in _get(f"http://127.0.0.1:{port}/metrics")[1]:
                    break
            time.sleep(0.05)
        assert _get(healthz) == (200, "ok\n")
        os.kill(workers[1], signal.SIGTERM)
        answers = []
        while time.monotonic() < deadline and _children(proc.pid).get(1, workers[1]) == workers[1]:
            answers.append(_get(healthz))
            time.sleep(0.05)
        assert _children(proc.pid)[1] != workers[1]  # started again
        assert (503, "unhealthy: worker 1 exited with 0, not running\n") in answers, answers
        while time.monotonic() < deadline and _get(healthz)[0] != 200:
            time.sleep(0.05)
        assert _get(healthz) == (200, "ok\n")  # back
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    err = (tmp_path / "stderr").read_text()
    assert code == 0, err[-2000:]
    assert f"worker 1 (pid {workers[1]}) exited with 0; restarting it" in err


@pytest.mark.skipif(sys.platform != "linux", reason="finds the workers in /proc")
def test_a_frozen_worker_makes_the_fleet_unhealthy(
    tmp_path: Path, queue_with_objects: tuple[str, str, list[str]], aws_env: str
) -> None:
    """A SIGSTOPped worker cannot report itself: /healthz trusted its last (healthy) report and
    answered 200 for as long as it stayed frozen. Now a report older than a few intervals is 503."""
    url, _, _ = queue_with_objects
    port = _free_port()
    cmd = [sys.executable, "-m", "trailrelay", "forward", "-c", str(_config(tmp_path, url, aws_env))]
    proc = subprocess.Popen(
        [*cmd, "--workers", "2", "--health", f"127.0.0.1:{port}", "--no-progress"],
        env={**_env(), "TRAILRELAY_METRICS_EVERY": "0.1"},  # a stale report: older than 0.5 s
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    healthz = f"http://127.0.0.1:{port}/healthz"
    frozen = None
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if "trailrelay_workers 2\n" in _get(f"http://127.0.0.1:{port}/metrics")[1]:
                    break
            time.sleep(0.05)
        assert _get(healthz) == (200, "ok\n")
        frozen = _children(proc.pid)[1]
        os.kill(frozen, signal.SIGSTOP)
        stopped = time.monotonic()
        while time.monotonic() < deadline and _get(healthz)[0] == 200:
            time.sleep(0.05)
        status, body = _get(healthz)
        assert status == 503 and re.search(
            rf"worker 1 \(pid {frozen}\): last report \d+s ago \(one is due every 0.1s\)", body
        ), body
        assert time.monotonic() - stopped < 10  # not after max_idle (63 s here)
        os.kill(frozen, signal.SIGCONT)
        while time.monotonic() < deadline and _get(healthz)[0] != 200:
            time.sleep(0.05)
        assert _get(healthz) == (200, "ok\n")  # it reports again
    finally:
        if frozen is not None:
            os.kill(frozen, signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def _gone(pid: int) -> bool:
    """The process has ended (reaped, or a zombie nobody reaps: not our child)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.skipif(sys.platform != "linux", reason="finds the workers in /proc")
def test_workers_drain_and_stop_when_their_supervisor_is_killed(
    tmp_path: Path, queue_with_objects: tuple[str, str, list[str]], aws_env: str
) -> None:
    """kill -9 of the supervisor used to leave its workers consuming the queue unsupervised (and
    writing the file-sink names a restarted fleet's workers use). Now they stop, as on SIGTERM."""
    url, _, ids = queue_with_objects
    port = _free_port()
    cmd = [sys.executable, "-m", "trailrelay", "forward", "-c", str(_config(tmp_path, url, aws_env))]
    with (tmp_path / "stderr").open("wb") as log:
        proc = subprocess.Popen(
            [*cmd, "--workers", "2", "--health", f"127.0.0.1:{port}", "--no-progress"],
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    workers: dict[int, int] = {}
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if "trailrelay_workers 2\n" in _get(f"http://127.0.0.1:{port}/metrics")[1]:
                    break
            time.sleep(0.05)
        workers = _children(proc.pid)
        assert len(workers) == 2
        while time.monotonic() < deadline and len(_delivered(tmp_path)) < len(ids):
            time.sleep(0.1)
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not all(_gone(pid) for pid in workers.values()):
            time.sleep(0.05)
        assert all(_gone(pid) for pid in workers.values())  # used to run on for good
    finally:
        for pid in workers.values():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    err = (tmp_path / "stderr").read_text()
    gone = f"the fleet's supervisor (pid {proc.pid}) is gone: finishing in-flight work, then stopping"
    assert err.count(gone) == 2, err[-2000:]  # said once each (the kernel may signal more than once)
    assert "second signal" not in err
    assert err.count('"message":"run finished"') == 2, err[-2000:]  # drained, not killed
    assert sorted(_delivered(tmp_path)) == sorted(ids)


def test_a_worker_whose_supervisor_is_already_gone_stops_at_once(tmp_path: Path) -> None:
    """The supervisor may die before its worker asks to be signalled then (no signal comes), or
    where the kernel cannot signal it (a thread looks at the parent): the worker stops either way."""
    script = (
        "import os, sys, threading, time\n"
        "from trailrelay.pipeline import process\n"
        "if sys.argv[1] == 'watch':\n"
        "    process._signalled = lambda parent, stop: False\n"
        "    process.PARENT_WATCH = 0.05\n"
        "stop = threading.Event()\n"
        "process.stop_with_parent(os.getppid() + 100000, stop)\n"  # not its parent: that one is gone
        "print(stop.wait(5))\n"
    )
    for how in ("prctl", "watch"):
        if how == "prctl" and sys.platform != "linux":
            continue
        done = subprocess.run(
            [sys.executable, "-c", script, how], capture_output=True, text=True, timeout=30, check=False
        )
        assert done.stdout == "True\n", (how, done.stderr[-2000:])
        assert "supervisor (pid" in done.stderr and "is gone" in done.stderr
