"""Documented HEC replies (fixtures/hec/*.json), served verbatim by the stand-in, and the sink's decision.

Each fixture holds one documented HEC response (status, headers, JSON body) and what the sink
must make of it: delivered, retry, fatal, rejected, one bad event, split, or a health verdict.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from splunk_hec_standin import HecStandIn, Scripted
from splunk_testkit import TOKEN, context, make_config

from trailrelay.contract import Batch, FatalSinkError, RetryableError, Status
from trailrelay.testing import sample_records, settled
from trailrelay_splunk.sink import SplunkSink

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "hec").glob("*.json"))


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _scripted(fx: dict[str, Any]) -> Scripted:
    r = fx["response"]
    return Scripted(fx["request"]["path"], r["status"], r["body"], r["headers"])


@pytest.fixture(params=FIXTURES, ids=[p.stem for p in FIXTURES])
def fixture(request: pytest.FixtureRequest) -> dict[str, Any]:
    return _load(request.param)


@pytest.fixture
def server(fixture: dict[str, Any]) -> Any:
    hec = HecStandIn(TOKEN, use_ack=fixture["ack"]).start()
    yield hec
    hec.stop()


def test_fixture_documents_hec_shape(fixture: dict[str, Any]) -> None:
    """Every fixture is an HEC reply: JSON {text, code} (or the undocumented 413 text) and a source."""
    assert fixture["source"]
    body = fixture["response"]["body"]
    if fixture["response"]["status"] != 413:
        doc = json.loads(body)
        assert ("text" in doc and "code" in doc) or "acks" in doc
        if fixture["request"]["path"].endswith("/ack") and fixture["response"]["status"] == 200:
            assert all(isinstance(v, bool) for v in doc["acks"].values())


def test_sink_decision_for_fixture(fixture: dict[str, Any], server: HecStandIn) -> None:
    expect = fixture["expect"]
    sink = SplunkSink(make_config(server.url, ack=fixture["ack"]), context())
    sink.open()
    records = sample_records(3)
    ids = [str(r.event_id) for r in records]
    try:
        if expect in ("healthy", "unhealthy"):
            server.script(_scripted(fixture))
            result = sink.check()
            assert result.ok is (expect == "healthy"), result.summary
            if expect == "unhealthy":
                assert json.loads(fixture["response"]["body"])["text"] in result.summary
            return
        server.script(_scripted(fixture))  # an /ack fixture answers the first poll
        if not fixture["request"]["path"].endswith("/ack") and fixture["ack"] and expect == "delivered":
            ack = _load(Path(__file__).parent / "fixtures" / "hec" / "ack_poll_true.json")
            server.script(_scripted(ack))
        if expect == "fatal":
            if fixture["request"]["path"].endswith("/ack"):
                # Acks are polled apart from sending: what waited is sent again, the next send stops.
                waited = settled(sink.send(Batch(records)))
                assert {o.status for o in waited} == {Status.RETRY}
            with pytest.raises(FatalSinkError) as info:
                settled(sink.send(Batch(records)))
            text = str(info.value)
            assert TOKEN not in text and TOKEN not in repr(info.value)
            reply = fixture["response"]["body"]
            if reply.startswith("{"):
                assert json.loads(reply)["text"] in text
            return
        if expect == "retry":
            with pytest.raises(RetryableError) as retry:
                settled(sink.send(Batch(records)))
            header = fixture["response"]["headers"].get("Retry-After")
            assert retry.value.retry_after == (float(header) if header else None)
            assert json.loads(fixture["response"]["body"])["text"] in str(retry.value)
            assert server.event_ids() == []
            return
        outcomes = settled(sink.send(Batch(records)))
        statuses = [o.status for o in outcomes]
        if expect in ("delivered", "pending"):
            assert statuses == [Status.DELIVERED] * 3
        elif expect == "rejected":
            assert statuses == [Status.REJECTED] * 3
            assert all("No data" in (o.reason or "") for o in outcomes)
        elif expect == "bad_event":
            # HEC indexed event 0, refused event 1, dropped event 2: the sink re-sends only event 2.
            assert statuses == [Status.DELIVERED, Status.REJECTED, Status.DELIVERED]
            assert json.loads(fixture["response"]["body"])["text"] in (outcomes[1].reason or "")
            assert server.event_ids() == [ids[2]]
        elif expect == "split":
            assert statuses == [Status.DELIVERED] * 3
            assert [r.events for r in server.event_requests()] == [0, 1, 2]
            assert sorted(server.event_ids()) == sorted(ids)
        else:  # pragma: no cover - a fixture with an unknown expectation is a test bug
            pytest.fail(f"unknown expectation {expect!r}")
    finally:
        sink.close()
