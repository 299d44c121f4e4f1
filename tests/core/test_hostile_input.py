"""Hostile input: every parser either yields records/problems or raises its documented error.

Property-based (hypothesis) over the record parser, notification parser, decompression and
config loading, plus a malformed-input corpus driven through the whole pipeline: nothing
crashes, nothing hangs, every bad item is dead-lettered with its reason.
"""

from __future__ import annotations

import gzip
import json
import os
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trailrelay.config import parse_config
from trailrelay.errors import ConfigError, FetchError, InputError
from trailrelay.pipeline.deadletter import FolderDeadLetters, read_entries
from trailrelay.pipeline.delivery import SinkRunner
from trailrelay.pipeline.metrics import Metrics
from trailrelay.pipeline.runner import Pipeline
from trailrelay.record import Origin, Record
from trailrelay.sources.decompress import decompress
from trailrelay.sources.files import FileSource
from trailrelay.sources.notifications import parse_notification
from trailrelay.sources.parse import NotALogFile, Problem, iter_records
from trailrelay.testing import SAMPLE_EVENTS

ORIGIN = Origin("file", "hostile://input")
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=25,
)
ROUTING_KEYS = [
    "eventTime",
    "eventSource",
    "eventName",
    "eventID",
    "eventCategory",
    "managementEvent",
    "readOnly",
    "errorCode",
    "userIdentity",
    "recipientAccountId",
    "awsRegion",
    "sourceIPAddress",
    "eventType",
    "@timestamp",
]


def _consume(data: bytes) -> list[Record | Problem]:
    try:
        return list(iter_records(data, ORIGIN))
    except (InputError, NotALogFile):
        return []


@FAST
@given(st.binary(max_size=2048))
def test_parser_on_random_bytes(data: bytes) -> None:
    for item in _consume(data):
        assert isinstance(item, (Record, Problem))


@FAST
@given(json_values)
def test_parser_on_random_json(value: Any) -> None:
    for shape in (
        value,
        {"Records": value},
        [value],
        {"detail-type": "AWS API Call via CloudTrail", "detail": value},
    ):
        for item in _consume(json.dumps(shape).encode()):
            assert isinstance(item, (Record, Problem))
            if isinstance(item, Record):  # a record was accepted only with an id or a name
                assert item.routing.event_id is not None or item.routing.event_name is not None


@FAST
@given(st.dictionaries(st.sampled_from(ROUTING_KEYS), json_values, min_size=1))
def test_wrong_types_in_every_routing_field(fields: dict[str, Any]) -> None:
    fields.setdefault("eventID", "x")
    (item,) = _consume(json.dumps({"Records": [fields]}).encode())
    assert isinstance(item, (Record, Problem))
    if isinstance(item, Record):
        r = item.routing
        assert r.category in {"Management", "Data", "Insight", "NetworkActivity"} or r.category
        assert r.read_only in (True, False, None)
        assert r.event_time is None or r.event_time.tzinfo is not None


@FAST
@given(st.binary(max_size=512) | json_values.map(lambda v: json.dumps(v).encode()))
def test_notification_parser_only_raises_input_error(body: bytes) -> None:
    try:
        notices = parse_notification(body)
    except InputError:
        return
    assert all(n.bucket is not None and isinstance(n.key, str) for n in notices)


@FAST
@given(st.binary(max_size=1024))
def test_decompress_only_raises_input_error(data: bytes) -> None:
    for candidate in (data, b"\x1f\x8b" + data, gzip.compress(data)[: max(2, len(data) // 2)]):
        try:
            out = decompress(candidate, limit=1 << 16)
        except InputError:
            continue
        assert len(out) <= 1 << 16


@FAST
@given(
    st.dictionaries(
        st.sampled_from(["source", "sinks", "filter", "state", "pipeline", "dead_letter", "x"]),
        json_values,
        max_size=5,
    )
)
def test_config_loading_only_raises_config_error(raw: dict[str, Any]) -> None:
    try:
        parse_config(raw)
    except ConfigError:
        pass


def _hostile_files(root: Path) -> dict[str, str]:
    """A malformed-input corpus; returns file name -> expected reason fragment."""
    root.mkdir(parents=True)
    good = orjson.dumps(SAMPLE_EVENTS[0])
    whole = gzip.compress(orjson.dumps({"Records": SAMPLE_EVENTS}))
    files = {
        "truncated.json.gz": (whole[: len(whole) // 2], "truncated gzip"),
        "corrupt.json.gz": (whole[:10] + b"\x00" * 40 + whole[50:], "gzip"),
        "bomb.json.gz": (gzip.compress(b" " * (8 << 20), 9), "limit"),
        "deep.json": (b'{"Records":[' + b"[" * 5000 + b"]" * 5000 + b"]}", "nested too deeply"),
        "deep-record.json": (
            b'{"Records":[{"eventID":"d","eventName":"n","x":' + b"[" * 5000 + b"]" * 5000 + b"}]}",
            "nested too deeply",
        ),
        "huge-string.json": (
            b'{"Records":[{"eventID":"h","eventName":"n","x":"' + b"a" * (2 << 20) + b'"}]}',
            None,
        ),
        "bad-utf8.json": (
            b'{"Records":[' + good + b',{"eventID":"u","eventName":"n","userAgent":"\xff\xfe"}]}',
            "invalid UTF-8",
        ),
        "duplicate-keys.json": (b'{"Records":[{"eventID":"a","eventID":"b","eventName":"n"}]}', None),
        "not-cloudtrail.json": (b'{"kind": "something else", "items": [1, 2, 3]}', "not a CloudTrail record"),
        "array-of-numbers.json": (b"[1, 2, 3]", "not an object"),
    }
    for name, (data, _) in files.items():
        (root / name).write_bytes(data)
    return {name: reason for name, (_, reason) in files.items() if reason}


def test_malformed_corpus_through_the_pipeline(tmp_path: Path, scripted: Any) -> None:
    expected = _hostile_files(tmp_path / "in")
    metrics, stop = Metrics(), threading.Event()
    dead = FolderDeadLetters(tmp_path / "dead")
    sink = scripted()
    pipe = Pipeline(
        FileSource(tmp_path / "in"), dead_letters=dead, metrics=metrics, stop=stop, max_object_bytes=4 << 20
    )
    pipe.sinks["s"] = SinkRunner(
        "s", sink, dead_letters=dead, metrics=metrics, stop=stop, on_fatal=pipe.on_fatal
    )
    result = pipe.run()
    assert result.ok
    entries = list(read_entries(tmp_path / "dead"))
    by_file: dict[str, list[str]] = {}
    for e in entries:
        by_file.setdefault(Path(e["origin"]["location"]).name, []).append(e["reason"])
    for name, fragment in expected.items():
        assert any(fragment in r for r in by_file.get(name, [])), (name, by_file.get(name))
    # bad-utf8's good record, the one record complete before truncated.json.gz breaks (within its
    # first 4 KiB: it used to be lost with the break), huge, and the last duplicate key wins
    assert sorted(sink.stored) == sorted([SAMPLE_EVENTS[0]["eventID"], SAMPLE_EVENTS[0]["eventID"], "h", "b"])
    assert result.metrics.snapshot()["units_acknowledged"] == len(list((tmp_path / "in").iterdir()))


@pytest.mark.parametrize("depth", [900, 5000])
def test_deep_nesting_is_a_problem_not_a_crash(depth: int) -> None:
    data = b'{"Records":[{"eventID":"d","eventName":"n","x":' + b"[" * depth + b"]" * depth + b"}]}"
    (item,) = _consume(data) or [None]
    if depth > 900:
        assert isinstance(item, Problem) or item is None
    else:
        assert isinstance(item, (Record, Problem))


# -- the files source: what is in the folder but cannot be read is never skipped quietly -----


def _log(path: Path, *ids: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps({"Records": [{**SAMPLE_EVENTS[0], "eventID": i} for i in ids]}))


def _run(source: FileSource, tmp_path: Path, scripted: Any) -> tuple[Any, Any, list[dict[str, Any]]]:
    metrics, stop = Metrics(), threading.Event()
    dead = FolderDeadLetters(tmp_path / "dead")
    sink = scripted()
    pipe = Pipeline(source, dead_letters=dead, metrics=metrics, stop=stop)
    pipe.sinks["s"] = SinkRunner(
        "s", sink, dead_letters=dead, metrics=metrics, stop=stop, on_fatal=pipe.on_fatal
    )
    result = pipe.run()
    entries = list(read_entries(tmp_path / "dead")) if (tmp_path / "dead").exists() else []
    return result, sink, entries


def test_symlinked_folders_are_followed_and_loops_read_once(tmp_path: Path, scripted: Any) -> None:
    root, elsewhere = tmp_path / "in", tmp_path / "elsewhere"
    _log(root / "a.json", "a")
    _log(elsewhere / "b.json", "b")
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)
    (elsewhere / "back").symlink_to(root, target_is_directory=True)  # a loop through both folders
    result, sink, entries = _run(FileSource(root), tmp_path, scripted)
    assert result.ok and not entries
    assert sorted(sink.stored) == ["a", "b"]


def test_a_file_name_that_is_not_utf8_is_read_and_named_with_escapes(tmp_path: Path, scripted: Any) -> None:
    """One such name stopped the whole run: its checkpoint key and origin could not be written."""
    from trailrelay.state import Checkpoints

    root = tmp_path / "in"
    _log(root / "a.json", "a")
    bad = Path(os.fsdecode(bytes(root) + b"/bad-\xff-name.json"))
    bad.write_bytes(orjson.dumps({"Records": [{**SAMPLE_EVENTS[0], "eventID": "b"}, 42]}))
    checkpoints = Checkpoints(tmp_path / "state.sqlite")
    result, sink, entries = _run(FileSource(root, checkpoints), tmp_path, scripted)
    assert result.ok
    assert sorted(sink.stored) == ["a", "b"]
    (entry,) = entries  # the 42 beside record b, named by a path every writer takes
    assert entry["origin"]["location"] == str(root) + "/bad-\\xff-name.json"
    assert checkpoints.count() == 2  # both files finished, so a second run reads neither again
    again, sink2, _ = _run(FileSource(root, checkpoints), tmp_path / "again", scripted)
    assert again.ok and sink2.stored == []


def test_what_looks_like_a_log_but_cannot_be_read_fails_its_unit_and_the_rest_goes_on(
    tmp_path: Path, scripted: Any, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "in"
    _log(root / "a.json", "a")
    _log(root / "z.json", "z")
    os.mkfifo(root / "fifo.json")  # opening it would wait for a writer forever
    (root / "broken.json").symlink_to(root / "nowhere.json")
    (root / "loop.json").symlink_to(root / "loop.json")
    (root / "notes.txt").write_text("not a log")
    result, sink, entries = _run(FileSource(root), tmp_path, scripted)
    assert sorted(sink.stored) == ["a", "z"]
    snap = result.metrics.snapshot()
    assert snap["skipped"] == {"fetch-failed": 3, "not-a-log-file": 1}
    assert snap["units_released"] == 3  # "unfinished": forward exits 5, not 0
    warned = caplog.text
    assert "fifo.json: not a regular file" in warned
    assert "broken.json: a broken symlink or a symlink loop" in warned
    assert "loop.json: a broken symlink or a symlink loop" in warned


def test_a_folder_that_cannot_be_listed_fails_its_unit(
    tmp_path: Path, scripted: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "in"
    _log(root / "a.json", "a")
    _log(root / "private" / "b.json", "b")
    real = os.scandir

    def scandir(path: Any) -> Any:  # chmod 000 does not stop root, who runs CI
        if Path(path).name == "private":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    result, sink, _ = _run(FileSource(root), tmp_path, scripted)
    assert sink.stored == ["a"]
    assert result.metrics.snapshot()["units_released"] == 1
    assert "private: cannot list the folder: Permission denied" in caplog.text


def test_a_file_gone_between_listing_and_reading_fails_alone(tmp_path: Path) -> None:
    root = tmp_path / "in"
    for name in ("a", "b", "c"):
        _log(root / f"{name}.json", name)
    units = FileSource(root).work(threading.Event())
    first = next(units)
    assert first.label.endswith("a.json")
    (root / "b.json").unlink()  # deleted while a.json is read: it used to end the whole run
    gone, last = next(units), next(units)
    with pytest.raises(FetchError, match="No such file"):
        gone.objects[0].reader()
    assert last.label.endswith("c.json")
    assert last.objects[0].reader().read()
