"""trailrelay as a stage of a shell pipeline: standard input in (every shape), standard output out.

These run the real command (``python -m trailrelay forward``) with input piped into it, as
``aws s3 cp s3://bucket/key.json.gz - | trailrelay forward -c FILE`` does.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from trailrelay.cli.main import EXIT_FATAL, EXIT_OK, EXIT_UNFINISHED
from trailrelay.config import StdinSourceConfig, parse_config
from trailrelay.contract import Batch, Origin, Record
from trailrelay.errors import ConfigError, FatalSinkError, RetryableError
from trailrelay.sinks.file import FileSink, StdoutConfig

PY = sys.executable


def _record(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "eventVersion": "1.08",
        "userIdentity": {"type": "IAMUser", "accountId": "111122223333", "userName": f"u{i}"},
        "eventTime": "2026-03-02T10:00:00Z",
        "eventSource": "s3.amazonaws.com",
        "eventName": "ListBuckets",
        "awsRegion": "eu-west-1",
        "eventID": f"00000000-0000-0000-0000-{i:012d}",
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": "111122223333",
        **extra,
    }


RECORDS = [_record(i) for i in range(25)]
IDS = [r["eventID"] for r in RECORDS]


def _ndjson() -> bytes:
    return ("\n".join(json.dumps(r) for r in RECORDS) + "\n").encode()


def _envelope() -> bytes:
    return json.dumps({"Records": RECORDS}).encode()


def _eventbridge() -> bytes:
    lines = [
        json.dumps(
            {"version": "0", "detail-type": "AWS API Call via CloudTrail", "source": "aws.s3", "detail": r}
        )
        for r in RECORDS
    ]
    return ("\n".join(lines) + "\n").encode()


SHAPES: dict[str, Callable[[], bytes]] = {
    "records-envelope": _envelope,
    "records-envelope-gzip": lambda: gzip.compress(_envelope()),
    "records-envelope-pretty": lambda: json.dumps({"Records": RECORDS}, indent=2).encode(),
    "array": lambda: json.dumps(RECORDS).encode(),
    "ndjson": _ndjson,
    "ndjson-gzip": lambda: gzip.compress(("\n".join(json.dumps(r) for r in RECORDS)).encode()),
    "eventbridge-ndjson": _eventbridge,
    # cat *.json.gz | trailrelay forward: CloudTrail files one after another, each its own gzip member
    "records-files-concatenated-gzip": lambda: b"".join(
        gzip.compress(json.dumps({"Records": RECORDS[i : i + 7]}, separators=(",", ":")).encode())
        for i in range(0, len(RECORDS), 7)
    ),
    # zcat *.json.gz: their JSON one after another, no line break between
    "records-files-concatenated": lambda: b"".join(
        json.dumps({"Records": RECORDS[i : i + 7]}, separators=(",", ":")).encode()
        for i in range(0, len(RECORDS), 7)
    ),
}


def _config(tmp_path: Path, source: str, sink: str) -> Path:
    path = tmp_path / "trailrelay.toml"
    path.write_text(f'{source}\n{sink}\n[dead_letter]\npath = "dl"\n')
    return path


FILE_SINK = '[[sinks]]\ntype = "file"\npath = "out.ndjson"\n'


def _forward(config: Path, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
    cmd = [PY, "-m", "trailrelay", "forward", "-c", str(config), "--log-format", "text"]
    cmd += ["--summary-json", str(config.parent / "summary.json")]
    return subprocess.run(cmd, capture_output=True, timeout=120, check=False, **kwargs)


def _out_ids(tmp_path: Path) -> list[str]:
    out = tmp_path / "out.ndjson"
    return [json.loads(line)["eventID"] for line in out.read_text().splitlines()] if out.exists() else []


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_every_shape_streams_from_stdin(tmp_path: Path, shape: str) -> None:
    config = _config(tmp_path, '[source]\ntype = "stdin"\nunit_records = 10', FILE_SINK)
    done = _forward(config, input=SHAPES[shape]())
    assert done.returncode == EXIT_OK, done.stderr.decode()[-2000:]
    assert sorted(_out_ids(tmp_path)) == sorted(IDS)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["units_acknowledged"] == 3  # 25 records in units of 10
    assert summary["dead_lettered"] == {}


def test_files_source_with_dash_reads_stdin_and_bad_lines_are_dead_letters(tmp_path: Path) -> None:
    config = _config(tmp_path, '[source]\ntype = "files"\npath = "-"', FILE_SINK)
    lines = [json.dumps(r) for r in RECORDS[:3]]
    lines.insert(1, "this is not json")
    done = _forward(config, input=("\n".join(lines) + "\n").encode())
    assert done.returncode == 4, done.stderr.decode()[-2000:]  # EXIT_DEAD_LETTERS: the bad line
    assert sorted(_out_ids(tmp_path)) == sorted(IDS[:3])
    entries = [json.loads(x) for f in (tmp_path / "dl").iterdir() for x in f.read_text().splitlines()]
    assert [e["raw"] for e in entries] == ["this is not json"]


_WRITER = r"""
import json, os, sys
i = 0
while True:
    rec = {"eventVersion": "1.08", "eventTime": "2026-03-02T10:00:00Z", "eventSource": "s3.amazonaws.com",
           "eventName": "ListBuckets", "awsRegion": "eu-west-1", "eventID": "e-%d" % i,
           "recipientAccountId": "111122223333", "userIdentity": {"type": "IAMUser"}, "pad": "x" * 400}
    os.write(1, (json.dumps(rec) + "\n").encode())  # one write per line: a kill never cuts one
    i += 1
"""


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as fh:
        return sum(1 for _ in fh)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads memory use from /proc")
def test_a_record_over_the_limit_is_a_dead_letter_that_says_what_size_it_was(tmp_path: Path) -> None:
    """Its entry kept the first 1 MiB with no ``raw_truncated_from``: nothing said it was cut."""
    big = json.dumps(_record(99, requestParameters={"blob": "x" * (3 << 20)})).encode()
    config = _config(tmp_path, '[source]\ntype = "stdin"\n[pipeline]\nmax_record_bytes = 1048576', FILE_SINK)
    done = _forward(config, input=_ndjson() + big + b"\n" + _ndjson())
    assert done.returncode == 4, done.stderr.decode()[-2000:]  # EXIT_DEAD_LETTERS: the big record
    assert len(_out_ids(tmp_path)) == 2 * len(IDS)
    (entry,) = [json.loads(x) for f in (tmp_path / "dl").iterdir() for x in f.read_text().splitlines()]
    assert entry["stage"] == "parse" and "over the 1048576-byte limit" in entry["reason"]
    assert entry["raw_truncated_from"] == len(big)
    assert len(entry["raw"]) == 1 << 20 and big.startswith(entry["raw"].encode())


def test_endless_ndjson_is_delivered_as_it_comes_in_bounded_memory(tmp_path: Path) -> None:
    config = _config(tmp_path, '[source]\ntype = "stdin"\nunit_records = 200\nunit_seconds = 0.2', FILE_SINK)
    out = tmp_path / "out.ndjson"
    writer = subprocess.Popen([PY, "-c", _WRITER], stdout=subprocess.PIPE)
    assert writer.stdout is not None
    cmd = [PY, "-m", "trailrelay", "forward", "-c", str(config), "--log-format", "text"]
    cmd += ["--summary-json", str(tmp_path / "summary.json")]
    relay = subprocess.Popen(cmd, stdin=writer.stdout, stderr=subprocess.PIPE)
    writer.stdout.close()  # the relay holds the only reading end: the writer sees EPIPE if it dies
    try:
        deadline = time.monotonic() + 90
        while _lines(out) < 20_000 and time.monotonic() < deadline:  # delivered while the writer writes
            assert relay.poll() is None, relay.stderr.read().decode()[-2000:] if relay.stderr else ""
            time.sleep(0.2)
        assert _lines(out) >= 20_000, "records are not delivered while the input is still open"
        early = _rss_kib(relay.pid)
        start = _lines(out)
        while _lines(out) < start + 100_000 and time.monotonic() < deadline:
            time.sleep(0.2)
        late = _rss_kib(relay.pid)
        assert _lines(out) >= start + 100_000
        # 100k more records (~45 MB) went through; memory must not follow them
        assert late - early < 40 * 1024, f"RSS grew from {early} KiB to {late} KiB"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    _, err = relay.communicate(timeout=60)  # the writer is gone: end of input, the relay finishes
    assert relay.returncode == EXIT_OK, err.decode()[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["delivered"]["file"] == summary["records_in"] == _lines(out)
    ids = sorted(int(json.loads(x)["eventID"][2:]) for x in out.read_text().splitlines())
    assert ids == list(range(len(ids)))  # none lost, none twice (units may finish out of order)


def test_a_closed_pipe_downstream_stops_cleanly_with_status_3(tmp_path: Path) -> None:
    """``trailrelay forward ... | head -1``: EPIPE is "downstream closed", exit 3, no traceback."""
    config = _config(tmp_path, '[source]\ntype = "stdin"', '[[sinks]]\ntype = "stdout"\nbatch_events = 100')
    data = ("\n".join(json.dumps(_record(i, pad="y" * 2000)) for i in range(20_000)) + "\n").encode()
    r, w = os.pipe()
    cmd = [PY, "-m", "trailrelay", "forward", "-c", str(config), "--log-format", "text"]
    relay = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=w, stderr=subprocess.PIPE)
    os.close(w)
    assert relay.stdin is not None and relay.stderr is not None

    def feed() -> None:  # the upstream writer, as a shell pipeline runs it: at the same time
        try:
            relay.stdin.write(data)  # type: ignore[union-attr]
            relay.stdin.close()  # type: ignore[union-attr]
        except BrokenPipeError:
            pass  # trailrelay stopped reading: expected once downstream went away

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    with os.fdopen(r, "rb") as head:  # `head -1`: read one line, then close the pipe
        first = head.readline()
    assert json.loads(first)["eventID"] == IDS[0]
    text = relay.stderr.read().decode()
    relay.wait(120)
    assert relay.returncode == EXIT_FATAL, text[-2000:]
    assert "downstream closed" in text
    assert "Traceback" not in text
    assert "Exception ignored" not in text
    assert "BrokenPipeError" not in text


def test_a_batch_the_reader_cut_short_is_not_delivered_and_the_next_run_sends_it(tmp_path: Path) -> None:
    """``forward | head -1`` while a batch is being written: the pipe took part of it (a short
    write, no error), so the batch was counted delivered and its file checkpointed, though most
    of it never left. A batch is delivered only when all its bytes were written."""
    records = [_record(i, pad="y" * 2000) for i in range(100)]  # one batch, ~230 KB: more than a pipe holds
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.json").write_text(json.dumps({"Records": records}))
    config = _config(
        tmp_path, '[source]\ntype = "files"\npath = "in"', '[[sinks]]\ntype = "stdout"\nbatch_events = 100'
    )
    cmd = [PY, "-m", "trailrelay", "forward", "-c", str(config), "--once", "--log-format", "text"]
    r, w = os.pipe()
    relay = subprocess.Popen(
        [*cmd, "--summary-json", str(tmp_path / "s1.json")], stdout=w, stderr=subprocess.PIPE
    )
    os.close(w)
    with os.fdopen(r, "rb") as head:  # `head -1`, the batch still being written
        first = head.readline()
    _, err = relay.communicate(timeout=120)
    assert relay.returncode == EXIT_FATAL, err.decode()[-2000:]
    assert json.loads(first)["eventID"] == IDS[0]
    summary = json.loads((tmp_path / "s1.json").read_text())
    assert (summary["delivered"], summary["units_acknowledged"]) == ({}, 0)
    again = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert again.returncode == EXIT_OK, again.stderr.decode()[-2000:]
    assert [json.loads(x)["eventID"] for x in again.stdout.splitlines()] == [r["eventID"] for r in records]


def test_a_batch_a_pipe_took_only_part_of_is_not_retried_after_the_partial_line() -> None:
    """Standard output on a non-blocking pipe nobody reads: the pipe takes what it holds, then
    EAGAIN. A partial line cannot be taken back from a pipe, so such a batch stops the run,
    unacknowledged, instead of being retried after it (two records on one line); a batch of
    which nothing was written is retried."""
    r, w = os.pipe()
    os.set_blocking(w, False)
    records = [
        Record.from_bytes(json.dumps(_record(i, pad="y" * 2000)).encode(), Origin("file", "x"), i)
        for i in range(100)
    ]
    with os.fdopen(r, "rb"), os.fdopen(w, "wb") as stream:
        sink = FileSink(StdoutConfig(), stream=stream)
        sink.open()
        with pytest.raises(FatalSinkError, match=r"failed after \d+ of \d+ bytes .*not acknowledged"):
            sink.send(Batch(records, 1))
        with pytest.raises(RetryableError, match="write failed"):  # the pipe is full: nothing written
            sink.send(Batch(records[:1], 2))


@pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")
def test_workers_appending_to_one_file_write_each_batch_under_a_lock(tmp_path: Path) -> None:
    """``forward --workers N`` appends to one file from N processes: a batch is written (and cut
    back when it fails) only while the sink holds an exclusive flock, so a cut never removes
    another worker's lines."""
    import fcntl

    from trailrelay.sinks.file import FileConfig

    out = tmp_path / "out.ndjson"
    out.write_bytes(b"")
    sink = FileSink(FileConfig(path=out))
    sink.open()
    other = os.open(out, os.O_WRONLY | os.O_APPEND)
    fcntl.flock(other, fcntl.LOCK_EX)  # another worker is writing its batch
    record = Record.from_bytes(json.dumps(_record(1)).encode(), Origin("file", "x"), 0)
    sending = threading.Thread(target=sink.send, args=(Batch([record], 1),))
    sending.start()
    time.sleep(0.3)
    assert out.read_bytes() == b""  # waits for the lock
    os.write(other, b'{"other":1}\n')
    fcntl.flock(other, fcntl.LOCK_UN)
    sending.join(5)
    os.close(other)
    sink.close()
    lines = out.read_bytes().splitlines()
    assert lines[0] == b'{"other":1}' and json.loads(lines[1])["eventID"] == _record(1)["eventID"]


def _wait_for(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_slow_writer_s_first_lines_are_delivered_while_the_pipe_stays_open(tmp_path: Path) -> None:
    """Three short lines (far less than the 4 KiB the shape used to wait for), then nothing."""
    config = _config(tmp_path, '[source]\ntype = "stdin"\nunit_seconds = 0.2', FILE_SINK)
    cmd = [PY, "-m", "trailrelay", "forward", "-c", str(config), "--log-format", "text"]
    with (tmp_path / "stderr").open("wb") as err:
        relay = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=err)
    assert relay.stdin is not None
    try:
        relay.stdin.write(b"".join(json.dumps(r).encode() + b"\n" for r in RECORDS[:3]))
        relay.stdin.flush()
        assert _wait_for(lambda: _lines(tmp_path / "out.ndjson") == 3, 30), "held back until the input ends"
    finally:
        relay.stdin.close()
    relay.wait(60)
    assert relay.returncode == EXIT_OK, (tmp_path / "stderr").read_text()[-2000:]
    assert _out_ids(tmp_path) == IDS[:3]


@pytest.mark.parametrize("how", ["renamed", "removed"])
def test_a_file_rotated_or_removed_during_a_run_is_opened_again(tmp_path: Path, how: str) -> None:
    """logrotate renames the file sink's file, or someone removes it, while a run goes on: what
    came after went to the old file (or to no file) and was counted delivered. The next batch
    now sees that the path names another file or none, and opens the path again."""
    config = _config(tmp_path, '[source]\ntype = "stdin"\nunit_seconds = 0.2', FILE_SINK)
    cmd = [PY, "-m", "trailrelay", "forward", "-c", str(config), "--log-format", "text"]
    out, rotated = tmp_path / "out.ndjson", tmp_path / "out.ndjson.1"
    with (tmp_path / "stderr").open("wb") as err:
        relay = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=err)
    assert relay.stdin is not None
    try:
        relay.stdin.write(b"".join(json.dumps(r).encode() + b"\n" for r in RECORDS[:3]))
        relay.stdin.flush()
        assert _wait_for(lambda: _lines(out) == 3, 30)
        if how == "renamed":
            out.rename(rotated)
        else:
            out.unlink()
        relay.stdin.write(b"".join(json.dumps(r).encode() + b"\n" for r in RECORDS[3:6]))
        relay.stdin.flush()
        assert _wait_for(lambda: _lines(out) == 3, 30), "written to a file the path no longer names"
    finally:
        relay.stdin.close()
    relay.wait(60)
    text = (tmp_path / "stderr").read_text()
    assert relay.returncode == EXIT_OK, text[-2000:]
    assert _out_ids(tmp_path) == IDS[3:6]
    if how == "renamed":
        assert [json.loads(x)["eventID"] for x in rotated.read_text().splitlines()] == IDS[:3]
    assert f"{out} was removed or renamed (rotated): reopening it" in text


def test_a_stop_dead_letters_what_was_read_and_replay_delivers_it(tmp_path: Path) -> None:
    """SIGTERM while read records wait for their unit: they are traced, counted, and replayable.

    The pipe stays open, so the parser thread is still waiting in a read at exit: that used to
    abort the interpreter ("could not acquire lock for <_io.BufferedReader name='<stdin>'>").
    """
    config = _config(tmp_path, '[source]\ntype = "stdin"\nunit_seconds = 60', FILE_SINK)
    cmd = [PY, "-m", "trailrelay", "forward", "-c", str(config), "--log-format", "text"]
    cmd += ["--summary-json", str(tmp_path / "summary.json")]
    with (tmp_path / "stderr").open("wb") as err:
        relay = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=err)
    assert relay.stdin is not None
    relay.stdin.write(_ndjson())
    relay.stdin.flush()
    time.sleep(2)  # read and parsed at once; the unit would be cut only after 60 s
    relay.send_signal(signal.SIGTERM)
    relay.wait(60)  # the pipe is still open: the relay exits while its parser waits for more
    relay.stdin.close()
    text = (tmp_path / "stderr").read_text()
    assert relay.returncode == EXIT_UNFINISHED, text[-2000:]  # read, never delivered: unfinished
    assert "Fatal Python error" not in text and "Traceback" not in text
    assert _lines(tmp_path / "out.ndjson") == 0
    entries = [json.loads(x) for f in sorted((tmp_path / "dl").iterdir()) for x in f.read_text().splitlines()]
    assert sorted(json.loads(e["raw"])["eventID"] for e in entries) == IDS
    assert {(e["stage"], e["sink"]) for e in entries} == {("sink", "file")}
    assert all("standard input cannot be read again" in e["reason"] for e in entries)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["records_in"] == len(IDS), summary
    assert summary["dead_lettered"] == {"sink": len(IDS)}
    replay = subprocess.run(
        [PY, "-m", "trailrelay", "replay-dead-letters", "-c", str(config)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert replay.returncode == EXIT_OK, replay.stderr.decode()[-2000:]
    assert sorted(_out_ids(tmp_path)) == IDS


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux) for a failing sink")
def test_a_stop_with_records_not_delivered_exits_unfinished_not_dead_letters(tmp_path: Path) -> None:
    """SIGTERM while the sink keeps failing: standard input has no hand-back, so the run is unfinished.

    The records of the released units are dead-lettered (stdin cannot be read again); that is
    status 5, as the README's standard-input section says, not 4 (records a sink refused).
    """
    config = _config(
        tmp_path,
        '[source]\ntype = "stdin"\nunit_records = 5\n[pipeline]\ndrain_seconds = 0.5',
        '[[sinks]]\ntype = "file"\nname = "siem"\npath = "/dev/full"\n',  # every write: ENOSPC, retried
    )
    cmd = [PY, "-m", "trailrelay", "forward", "-c", str(config), "--log-format", "text"]
    cmd += ["--summary-json", str(tmp_path / "summary.json")]
    with (tmp_path / "stderr").open("wb") as err:
        relay = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=err)
    assert relay.stdin is not None
    relay.stdin.write(_ndjson())
    relay.stdin.flush()  # the pipe stays open: an endless stream
    time.sleep(2)  # units cut and in flight, their sends failing
    relay.send_signal(signal.SIGTERM)
    relay.wait(60)
    relay.stdin.close()
    text = (tmp_path / "stderr").read_text()
    assert relay.returncode == EXIT_UNFINISHED, text[-2000:]
    entries = [json.loads(x) for f in sorted((tmp_path / "dl").iterdir()) for x in f.read_text().splitlines()]
    assert sorted(json.loads(e["raw"])["eventID"] for e in entries) == IDS
    assert all("standard input cannot be read again" in e["reason"] for e in entries)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["units_released"] > 0, summary


def test_stdin_config_model() -> None:
    config = parse_config({"source": {"type": "stdin", "unit_records": 5}, "sinks": [{"type": "stdout"}]})
    assert isinstance(config.source, StdinSourceConfig)
    assert config.source.unit_records == 5
    with pytest.raises(ConfigError, match="unit_seconds"):
        parse_config({"source": {"type": "stdin", "unit_seconds": 0}, "sinks": [{"type": "stdout"}]})
    with pytest.raises(ConfigError, match="format_options"):
        parse_config(
            {"source": {"type": "stdin"}, "sinks": [{"type": "stdout", "format_options": {"index": "x"}}]}
        )
    with pytest.raises(ConfigError, match=r"format_options\.url does not change splunk"):
        parse_config(
            {
                "source": {"type": "stdin"},
                "sinks": [{"type": "stdout", "format": "splunk", "format_options": {"url": "https://x"}}],
            }
        )
