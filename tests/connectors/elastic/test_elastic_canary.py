"""The Elasticsearch searcher (``_search`` for one eventID) and `trailrelay canary` end to end."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from elastic_helpers import API_KEY, free_port, make_config, make_sink
from elastic_standin import PRODUCT, StandIn

from trailrelay.cli.canary import canary, canary_event, canary_record
from trailrelay.contract import Batch, FatalSinkError, RetryableError, Searcher, Status
from trailrelay_elastic.plugin import plugin

READ_KEY = "cmVhZGVyLWlkOnJlYWRlci1zZWNyZXQtdmFsdWU="
"""A made-up read-only API key (encoded)."""
TARGET = "logs-aws.cloudtrail-default"


def _send_canary(standin: StandIn, **overrides: Any) -> str:
    record = canary_record(canary_event())
    sink = make_sink(standin.url, **overrides)
    assert [o.status for o in sink.send(Batch([record]))] == [Status.DELIVERED]
    sink.close()
    return str(record.event_id)


def _searches(standin: StandIn) -> list[dict[str, Any]]:
    return [r for r in standin.requests if r["path"].endswith("/_search")]


@pytest.mark.parametrize("mode", ["integration", "ecs"])
def test_searcher_finds_the_canary_in_either_mode(standin: StandIn, mode: str) -> None:
    since = dt.datetime.now(dt.UTC)
    searcher = plugin.searcher(make_config(standin.url, mode=mode))
    assert isinstance(searcher, Searcher)
    assert searcher.find("trailrelay-canary-missing", since) is None  # no data stream yet: no error
    event_id = _send_canary(standin, mode=mode)
    found = searcher.find(event_id, since)
    assert found is not None and abs((found - dt.datetime.now(dt.UTC)).total_seconds()) < 5
    request = _searches(standin)[-1]
    assert request["path"] == f"/{TARGET}/_search"
    assert request["query"]["ignore_unavailable"] == ["true"] and request["query"]["allow_no_indices"] == [
        "true"
    ]
    assert request["query"]["_source_includes"] == ["@timestamp,event.id,event.ingested,message"]
    body = json.loads(request["body"])
    assert body["size"] == 10
    should = body["query"]["bool"]["should"]
    assert {"term": {"event.id": event_id}} in should and {"match_phrase": {"message": event_id}} in should
    searcher.close()


def test_after_the_integration_pipeline_the_id_is_event_id(standin: StandIn) -> None:
    """Elastic's pipeline renames eventID to event.id, drops message and sets event.ingested."""
    event = canary_event()
    standin.docs[TARGET] = {
        "x1": {
            "@timestamp": event["eventTime"].replace("Z", ".000Z"),
            "event": {
                "id": event["eventID"],
                "ingested": "2030-01-02T03:04:05.678Z",
                "action": "StopLogging",
            },
        }
    }
    found = plugin.searcher(make_config(standin.url)).find(event["eventID"], dt.datetime.now(dt.UTC))
    assert found == dt.datetime(2030, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)
    # Outside the searched time range: an old document with the same id is not the canary.
    standin.docs[TARGET]["x1"]["@timestamp"] = "2020-01-01T00:00:00.000Z"
    assert plugin.searcher(make_config(standin.url)).find(event["eventID"], dt.datetime.now(dt.UTC)) is None


def test_searcher_finds_only_that_event(standin: StandIn) -> None:
    """A hit of another event (a phrase match on message, a proxy's answer) is not the canary."""
    event = canary_event()
    event_id = event["eventID"]
    other = "trailrelay-canary-00000000-0000-0000-0000-000000000000"
    when = event["eventTime"].replace("Z", ".000Z")
    mention = {**event, "eventID": other, "requestParameters": {"name": event_id}}
    standin.docs[TARGET] = {"x1": {"@timestamp": when, "message": json.dumps(mention)}}
    searcher = plugin.searcher(make_config(standin.url))
    assert searcher.find(event_id, dt.datetime.now(dt.UTC)) is None
    hit = {"_index": "x", "_id": "1", "_source": {"@timestamp": when, "event": {"id": other}}}
    standin.queue({"status": 200, "headers": PRODUCT, "body": {"hits": {"hits": [hit]}}})
    assert searcher.find(event_id, dt.datetime.now(dt.UTC)) is None
    standin.docs[TARGET]["x2"] = {"@timestamp": when, "message": json.dumps(event)}
    assert searcher.find(event_id, dt.datetime.now(dt.UTC)) is not None


def test_searcher_waits_for_a_refresh(standin: StandIn) -> None:
    standin.refresh_interval = 0.3
    event_id = _send_canary(standin)
    searcher = plugin.searcher(make_config(standin.url))
    since = dt.datetime.now(dt.UTC)
    assert searcher.find(event_id, since) is None
    time.sleep(0.35)
    assert searcher.find(event_id, since) is not None


def test_a_key_that_may_not_read_is_fatal_and_secret_free(standin: StandIn) -> None:
    event_id = _send_canary(standin)
    standin.queue("search-403")
    with pytest.raises(FatalSinkError, match=r"may not search logs-aws\.cloudtrail-default") as info:
        plugin.searcher(make_config(standin.url)).find(event_id, dt.datetime.now(dt.UTC))
    assert "search_api_key" in str(info.value) and "indices:data/read/search" in str(info.value)
    assert API_KEY not in str(info.value)


def test_an_error_quoting_the_api_keys_secret_half_is_scrubbed(standin: StandIn) -> None:
    """A proxy may quote the key's secret half (the part after ``id:`` in the decoded key)."""
    secret = base64.b64decode(READ_KEY).decode().partition(":")[2]
    error = {"error": {"type": "proxy_error", "reason": f"bad credentials {secret}"}, "status": 503}
    standin.queue({"status": 503, "headers": PRODUCT, "body": error})
    with pytest.raises(RetryableError, match="503") as info:
        plugin.searcher(make_config(standin.url, search_api_key=READ_KEY)).find("x", dt.datetime.now(dt.UTC))
    assert "bad credentials ***" in str(info.value) and secret not in str(info.value)


def test_search_api_key_is_used_for_searching(standin: StandIn) -> None:
    event_id = _send_canary(standin)
    standin.expected_auth = f"ApiKey {READ_KEY}"  # from now on only the read key is accepted
    config = make_config(standin.url, search_api_key=READ_KEY)
    assert READ_KEY not in repr(config)
    assert plugin.searcher(config).find(event_id, dt.datetime.now(dt.UTC)) is not None
    assert _searches(standin)[-1]["headers"]["authorization"] == f"ApiKey {READ_KEY}"
    with pytest.raises(FatalSinkError, match="refused the credentials"):
        plugin.searcher(make_config(standin.url)).find(event_id, dt.datetime.now(dt.UTC))


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({}, "the answer was not a search result (HTTP 200, application/json: '{}')"),
        (
            {
                "timed_out": True,
                "_shards": {
                    "total": 2,
                    "successful": 0,
                    "failed": 2,
                    "failures": [
                        {"shard": 0, "reason": {"type": "node_closed_exception", "reason": "closing"}}
                    ],
                },
                "hits": {"total": {"value": 0, "relation": "eq"}, "hits": []},
            },
            "no shard answered (2 of 2 failed, timed out): node_closed_exception: closing",
        ),
    ],
)
def test_an_answer_that_is_no_search_result_is_a_failed_search(
    standin: StandIn, body: dict[str, Any], words: str
) -> None:
    """Not "not found yet": the search did not run, which the canary must say if it never does."""
    standin.queue({"status": 200, "headers": PRODUCT, "body": body})
    with pytest.raises(RetryableError) as info:
        plugin.searcher(make_config(standin.url)).find("x", dt.datetime.now(dt.UTC))
    assert str(info.value) == f"elastic: searching {TARGET} failed: {words}"


def test_busy_or_unreachable_cluster_is_retryable(standin: StandIn) -> None:
    standin.queue("request-429-rejected")
    with pytest.raises(RetryableError, match="429"):
        plugin.searcher(make_config(standin.url)).find("x", dt.datetime.now(dt.UTC))
    with pytest.raises(RetryableError, match="cannot reach"):
        plugin.searcher(make_config(f"http://127.0.0.1:{free_port()}")).find("x", dt.datetime.now(dt.UTC))


# -- trailrelay canary, end to end ---------------------------------------------------------------


@pytest.mark.parametrize("mode", ["integration", "ecs"])
def test_canary_end_to_end(standin: StandIn, tmp_path: Path, mode: str) -> None:
    standin.refresh_interval = 0.2
    cfg = tmp_path / "trailrelay.toml"
    cfg.write_text(
        '[source]\ntype = "files"\npath = "in"\n'
        f'[[sinks]]\ntype = "elastic"\nurl = "{standin.url}"\napi_key = "${{ES_KEY}}"\nmode = "{mode}"\n',
        encoding="utf-8",
    )
    args = ["-c", str(cfg), "--json", "--timeout", "20", "--poll-interval", "0.05"]
    result = CliRunner().invoke(canary, args, env={"ES_KEY": API_KEY}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.splitlines()[-1])
    assert report["ok"] and report["outcome"] == "delivered" and report["search"] == "found"
    assert 0.2 <= report["end_to_end_seconds"] < 20  # no sooner than the refresh made it visible
    (doc,) = standin.stored(TARGET)
    assert doc["rule"] == {
        "id": "a1dec8df-d230-4b22-83d6-e1097af6c067",
        "name": "AWS CloudTrail Logging Stopped",
        "ruleset": "trailrelay",
    }
    assert doc["threat"]["technique"]["id"] == ["T1562.008"]
    assert API_KEY not in result.output
