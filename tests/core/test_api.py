"""The public Python API (trailrelay.api) and its worked examples in docs/, run as written."""

from __future__ import annotations

import gzip
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest

from trailrelay import api
from trailrelay.api import Forwarder, Problem, Record, read_records

ROOT = Path(__file__).resolve().parents[2]


def _example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "docs" / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _records(n: int, first: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "eventVersion": "1.08",
            "eventTime": "2026-03-02T10:00:00Z",
            "eventSource": "iam.amazonaws.com",
            "eventName": "ListUsers",
            "awsRegion": "us-east-1",
            "eventID": f"id-{first + i}",
            "recipientAccountId": "111122223333",
            "userIdentity": {"type": "IAMUser", "userName": "alice"},
        }
        for i in range(n)
    ]


def _config(tmp_path: Path) -> dict[str, Any]:
    return {
        "source": {"type": "stdin"},
        "sinks": [{"type": "file", "path": str(tmp_path / "out.ndjson")}],
        "dead_letter": {"path": str(tmp_path / "dl")},
    }


def _out(tmp_path: Path) -> list[str]:
    return [json.loads(x)["eventID"] for x in (tmp_path / "out.ndjson").read_text().splitlines()]


def test_api_version_and_public_names() -> None:
    assert api.API_VERSION.split(".")[0] == "1"
    assert set(api.__all__) == {
        "API_VERSION",
        "Forwarder",
        "Problem",
        "Record",
        "RecordOutcome",
        "Report",
        "read_records",
    }


def test_read_records_from_bytes_file_and_problems(tmp_path: Path) -> None:
    data = gzip.compress(json.dumps({"Records": _records(3)}).encode())
    assert [r.routing.event_id for r in read_records(data) if isinstance(r, Record)] == [
        "id-0",
        "id-1",
        "id-2",
    ]
    path = tmp_path / "x.ndjson"
    path.write_text(json.dumps(_records(1)[0]) + "\nnot json\n" + json.dumps(_records(1, 1)[0]) + "\n")
    items = list(read_records(path))
    assert [type(i) for i in items] == [Record, Problem, Record]


def test_read_records_of_a_digest_yields_nothing(tmp_path: Path) -> None:
    """An exported folder holds CloudTrail-Digest files beside the logs: they are skipped, as forward does."""
    digest = json.dumps({"digestStartTime": "2026-03-02T09:00:00Z", "logFiles": []}).encode()
    assert list(read_records(digest)) == []
    path = tmp_path / "111122223333_CloudTrail-Digest_us-east-1_t_us-east-1_20260302T101500Z.json.gz"
    path.write_bytes(gzip.compress(digest))
    assert list(read_records(path)) == []
    config = tmp_path / "trailrelay.toml"
    config.write_text(
        '[source]\ntype = "stdin"\n[[sinks]]\ntype = "file"\npath = "out.ndjson"\n[dead_letter]\npath = "dl"\n'
    )
    good = tmp_path / "a.json.gz"
    good.write_bytes(gzip.compress(json.dumps({"Records": _records(2)}).encode()))
    assert _example("batch_job").run(config, [good, path]) == 0
    assert _out(tmp_path) == ["id-0", "id-1"]


def test_read_records_takes_any_bytes_like_and_opens_files_when_iterated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = json.dumps({"Records": _records(2)}).encode()
    for given in (bytearray(data), memoryview(data)):
        assert [r.routing.event_id for r in read_records(given) if isinstance(r, Record)] == ["id-0", "id-1"]
    path = tmp_path / "x.json"
    path.write_bytes(data)
    opened: list[Any] = []
    real_open = Path.open

    def spy(self: Path, *args: Any, **kw: Any) -> Any:
        opened.append(real_open(self, *args, **kw))
        return opened[-1]

    monkeypatch.setattr(Path, "open", spy)
    unused = read_records(path)
    assert opened == []  # an iterator never used holds no file
    del unused
    items = read_records(path)
    first = next(items)
    assert isinstance(first, Record) and len(opened) == 1 and not opened[0].closed
    items.close()  # type: ignore[attr-defined]
    assert opened[0].closed


def test_read_records_refuses_what_it_cannot_read_without_echoing_it() -> None:
    payload = json.dumps({"Records": _records(50)})
    with pytest.raises(ValueError, match="pass JSON data as bytes") as as_str:
        read_records(payload)
    assert len(str(as_str.value)) < 200
    with pytest.raises(FileNotFoundError) as missing:
        read_records("x" * 5000)
    assert len(str(missing.value)) < 200
    for size in (0, -1):
        with pytest.raises(ValueError, match="max_record_bytes"):
            read_records(payload.encode(), max_record_bytes=size)
    with pytest.raises(ValueError, match="s3://BUCKET/KEY"):
        read_records("s3://bucket")


def test_from_config_needs_no_source_table(tmp_path: Path) -> None:
    """The API is handed its records: [source] may be left out; `trailrelay forward` still needs it."""
    from trailrelay.config import load_config
    from trailrelay.errors import ConfigError

    table = _config(tmp_path)
    del table["source"]
    data = json.dumps({"Records": _records(2)}).encode()
    with Forwarder.from_config(table) as fw:
        assert fw.forward(read_records(data)).delivered == {"file": 2}
    path = tmp_path / "api.toml"
    path.write_text(
        f'[[sinks]]\ntype = "file"\npath = "{tmp_path / "out.ndjson"}"\n[dead_letter]\npath = "dl"\n'
    )
    with Forwarder.from_config(path) as fw:
        assert fw.forward(read_records(data)).ok
    assert _out(tmp_path) == ["id-0", "id-1", "id-0", "id-1"]
    with pytest.raises(ConfigError, match="source: required"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"source\.type"):
        Forwarder.from_config({**table, "source": {"type": "nope"}})


def test_forward_applies_the_sink_filter_and_counts_it(tmp_path: Path) -> None:
    table = _config(tmp_path)
    table["filter"] = {
        "rules": [{"name": "no-id-1", "action": "drop", "event_name": ["ListUsers"], "account": []}]
    }
    table.pop("filter")  # the filter shape is tested elsewhere; here: no filter, then a sink filter
    table["sinks"][0]["filter"] = {
        "rules": [{"name": "drop-all", "action": "drop", "event_name": ["ListUsers"]}]
    }
    with Forwarder.from_config(table) as fw:
        report = fw.forward(read_records(json.dumps({"Records": _records(4)}).encode()))
    assert report.records == 4
    assert report.filtered == 4
    assert report.delivered == {}
    assert report.ok


def _named(records: list[dict[str, Any]], names: list[str]) -> list[dict[str, Any]]:
    return [{**r, "eventName": n} for r, n in zip(records, names, strict=True)]


def test_every_record_not_delivered_has_an_outcome_saying_why(tmp_path: Path) -> None:
    """Filtered by [filter], by a sink's filter, dead-lettered: each listed with its sink and reason."""
    table = _config(tmp_path)
    table["filter"] = {"rules": [{"name": "no-list", "action": "drop", "event_name": ["ListUsers"]}]}
    table["sinks"] = [
        {"type": "file", "name": "all", "path": str(tmp_path / "out.ndjson")},
        {
            "type": "file",
            "name": "writes",
            "path": str(tmp_path / "writes.ndjson"),
            "filter": {"rules": [{"name": "no-gets", "action": "drop", "event_name": ["Get*"]}]},
        },
    ]
    data = json.dumps({"Records": _named(_records(3), ["ListUsers", "GetUser", "CreateUser"])}).encode()
    with Forwarder.from_config(table) as fw:
        report = fw.forward([*read_records(data), *read_records(b"{broken")])
    assert report.filtered == 2 and report.dead_lettered == 1
    assert report.delivered == {"all": 2, "writes": 1}
    got = {(o.event_id, o.status, o.sink) for o in report.outcomes}
    assert got == {
        ("id-0", "filtered", None),
        ("id-1", "filtered", "writes"),
        (None, "dead-lettered", None),
    }
    assert all(o.reason for o in report.outcomes)


def test_hand_built_records_of_one_origin_each_get_their_outcome(tmp_path: Path) -> None:
    """Record.from_bytes(raw, origin) gives every record index 0: the outcomes still tell them apart."""
    table = _config(tmp_path)
    table["sinks"] = [
        {
            "type": "file",
            "name": "writes",
            "path": str(tmp_path / "writes.ndjson"),
            "filter": {"rules": [{"name": "no-gets", "action": "drop", "event_name": ["Get*"]}]},
        }
    ]
    origin = api.Origin("api", "my-program")
    events = _named(_records(3), ["GetUser", "CreateUser", "GetRole"])
    records = [Record.from_bytes(json.dumps(e).encode(), origin) for e in events]
    with Forwarder.from_config(table) as fw:
        report = fw.forward(records)
    assert report.delivered == {"writes": 1}
    assert {(o.event_id, o.status) for o in report.outcomes} == {("id-0", "filtered"), ("id-2", "filtered")}


def test_records_a_fatal_sink_never_took_are_unfinished(tmp_path: Path, scripted: Any) -> None:
    table = _config(tmp_path)
    table["sinks"] = [
        {"type": "file", "name": "archive", "path": str(tmp_path / "out.ndjson")},
        {"type": "file", "name": "siem", "path": str(tmp_path / "siem.ndjson")},
    ]
    with Forwarder.from_config(table) as fw:
        siem = scripted()
        siem.fatal_after = 0  # the token was revoked: the first send fails fatally
        fw.sinks["siem"] = siem
        report = fw.forward(read_records(json.dumps({"Records": _records(4)}).encode()))
    assert report.fatal is not None and "token revoked" in report.fatal
    assert not report.ok and siem.stored == []
    unfinished = {(o.event_id, o.sink) for o in report.outcomes if o.status == "unfinished"}
    archived = set(_out(tmp_path)) if (tmp_path / "out.ndjson").exists() else set()
    for eid in ("id-0", "id-1", "id-2", "id-3"):  # never read, or: missing in the SIEM, archived or not
        assert (eid, None) in unfinished or (
            (eid, "siem") in unfinished and (eid in archived) != ((eid, "archive") in unfinished)
        ), eid
    assert unfinished and all("token revoked" in str(o.reason) for o in report.outcomes)


def test_concurrent_forward_calls_count_their_own_records(tmp_path: Path) -> None:
    """Two threads share one forwarder: each report holds only its own records."""
    import threading

    table = _config(tmp_path)
    table["filter"] = {"rules": [{"name": "no-list", "action": "drop", "event_name": ["ListUsers"]}]}
    dropped = json.dumps({"Records": _records(3000)}).encode()
    sent = json.dumps({"Records": _named(_records(3000, 5000), ["CreateUser"] * 3000)}).encode()
    reports: dict[str, Any] = {}
    with Forwarder.from_config(table) as fw:
        start = threading.Barrier(2)

        def run(name: str, data: bytes) -> None:
            start.wait()
            reports[name] = fw.forward(read_records(data))

        threads = [threading.Thread(target=run, args=a) for a in (("dropped", dropped), ("sent", sent))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert (reports["dropped"].filtered, reports["dropped"].delivered) == (3000, {})
    assert (reports["sent"].filtered, reports["sent"].delivered) == (0, {"file": 3000})
    assert len(reports["dropped"].outcomes) == 3000 and reports["sent"].outcomes == []


def test_example_batch_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    batch_job = _example("batch_job")
    good = tmp_path / "a.json.gz"
    good.write_bytes(gzip.compress(json.dumps({"Records": _records(5)}).encode()))
    config = tmp_path / "trailrelay.toml"
    config.write_text(
        '[source]\ntype = "stdin"\n[[sinks]]\ntype = "file"\npath = "out.ndjson"\n[dead_letter]\npath = "dl"\n'
    )
    assert batch_job.run(config, [good]) == 0
    assert sorted(_out(tmp_path)) == [f"id-{i}" for i in range(5)]
    bad = tmp_path / "b.ndjson"
    bad.write_text(json.dumps(_records(1, 9)[0]) + "\n{broken\n")
    assert batch_job.run(config, [bad]) == 1
    assert "id-9" in _out(tmp_path)


def test_example_lambda_forwarder_against_s3(
    tmp_path: Path, aws_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=aws_env)
    s3.create_bucket(Bucket="trail")
    s3.put_object(
        Bucket="trail",
        Key="AWSLogs/1/x.json.gz",
        Body=gzip.compress(json.dumps({"Records": _records(7)}).encode()),
    )
    config = tmp_path / "trailrelay.toml"
    config.write_text(
        '[source]\ntype = "stdin"\n[[sinks]]\ntype = "file"\npath = "out.ndjson"\n[dead_letter]\npath = "dl"\n'
    )
    monkeypatch.setenv("TRAILRELAY_CONFIG_FILE", str(config))
    lam = _example("lambda_forwarder")
    event = {"Records": [{"s3": {"bucket": {"name": "trail"}, "object": {"key": "AWSLogs/1/x.json.gz"}}}]}
    assert lam.handler(event, None, s3_client=s3) == {"objects": 1, "delivered": 7, "dead_lettered": 0}
    assert sorted(_out(tmp_path)) == sorted(f"id-{i}" for i in range(7))
    lam.forwarder().close()


def test_the_cli_and_the_lambda_handler_send_through_this_forwarder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``trailrelay forward`` and the Lambda handler run ``api.Forwarder``: change it, change them."""
    from click.testing import CliRunner

    from trailrelay.aws_lambda import handler
    from trailrelay.aws_lambda import invoke as lambda_invoke
    from trailrelay.cli.main import cli

    used: list[tuple[Forwarder, str]] = []
    real = Forwarder.pipeline

    def watched(self: Forwarder, source: Any, **kw: Any) -> Any:
        used.append((self, type(source).__name__))
        return real(self, source, **kw)

    monkeypatch.setattr(Forwarder, "pipeline", watched)
    (tmp_path / "in.json").write_text(json.dumps({"Records": _records(3)}))
    cfg = tmp_path / "trailrelay.toml"
    cfg.write_text(
        f'[source]\ntype = "files"\npath = "{tmp_path / "in.json"}"\n'
        f'[[sinks]]\ntype = "file"\npath = "{tmp_path / "out.ndjson"}"\n'
        f'[dead_letter]\npath = "{tmp_path / "dl"}"\n'
    )
    result = CliRunner().invoke(cli, ["forward", "-c", str(cfg)])
    assert result.exit_code == 0, result.output
    assert _out(tmp_path) == ["id-0", "id-1", "id-2"]
    assert [kind for _, kind in used] == ["FileSource"]

    monkeypatch.setenv(
        "TRAILRELAY_CONFIG",
        f'[source]\ntype = "lambda"\n[[sinks]]\ntype = "file"\npath = "{tmp_path / "out.ndjson"}"\n'
        f'batch_seconds = 0.05\n[dead_letter]\npath = "{tmp_path / "dl"}"\n',
    )
    lambda_invoke.reset()
    try:
        record = _records(1, first=3)[0]
        event = {"version": "0", "id": "e1", "detail-type": "AWS API Call via CloudTrail"}
        event |= {"source": "aws.iam", "account": "111122223333", "time": record["eventTime"]}
        event |= {"region": "us-east-1", "resources": [], "detail": record}
        assert handler(event, None)["records"] == 1
        app = lambda_invoke.app()
        assert isinstance(app.forwarder, Forwarder)
        assert used[-1] == (app.forwarder, "_Units")
    finally:
        lambda_invoke.reset()
    assert _out(tmp_path) == ["id-0", "id-1", "id-2", "id-3"]


class _NoWork:
    """A source with nothing to read."""

    def work(self, stop: object) -> Iterator[object]:
        return iter(())

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("source", "readers", "expected"),
    [
        ({"type": "files", "path": "in"}, None, 1),  # local reading is all CPU: one thread
        ({"type": "stdin"}, None, 1),
        ({"type": "s3", "bucket": "trail", "region": "us-east-1"}, None, 8),  # readers wait on S3 GETs
        (
            {"type": "sqs", "queue_url": "https://sqs.us-east-1.amazonaws.com/1/q", "region": "us-east-1"},
            None,
            8,
        ),
        # Firehose requests bring their records: nothing to wait for but the CPU and the network
        ({"type": "firehose", "listen": "127.0.0.1:0", "access_key": "k" * 16}, None, 2),
        ({"type": "files", "path": "in"}, 3, 3),  # what the config says wins
    ],
)
def test_reader_threads_follow_the_source(
    tmp_path: Path, source: dict[str, Any], readers: int | None, expected: int
) -> None:
    config = {**_config(tmp_path), "source": source}
    if readers is not None:
        config["pipeline"] = {"readers": readers}
    forwarder = Forwarder.from_config(config)
    try:
        pipeline = forwarder.pipeline(_NoWork())
        assert pipeline.readers == expected
        for runner in pipeline.sinks.values():
            runner.close()  # its clock thread
    finally:
        forwarder.close()
