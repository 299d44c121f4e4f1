"""``check``, ``trailrelay opensearch setup`` (templates, ISM, detector) and the canary searcher."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from opensearch_helpers import (
    ACCESS_KEY,
    PASSWORD,
    REGION,
    SECRET_KEY,
    USER,
    make_config,
    make_sink,
    sigv4_config,
)
from opensearch_standin import JSON, SigV4Check, StandIn, fixture, no_permission

from trailrelay.cli.main import cli
from trailrelay.contract import Batch, FatalSinkError, RetryableError, Status
from trailrelay.testing import sample_records
from trailrelay_opensearch.admin import run_setup
from trailrelay_opensearch.cli import group
from trailrelay_opensearch.client import make_client
from trailrelay_opensearch.plugin import plugin
from trailrelay_opensearch.templates import ARRIVAL_FIELD, FLAT_OBJECT_FIELDS, INGESTED_PIPELINE


@pytest.fixture
def client(standin: StandIn) -> Any:
    c = make_client(make_config(standin.url), logging.getLogger("test"))
    yield c
    c.close()


def test_check_without_template_says_run_setup(standin: StandIn) -> None:
    sink = make_sink(make_config(standin.url))
    result = sink.check()
    sink.close()
    assert not result.ok
    assert "trailrelay opensearch setup" in result.summary
    assert result.details["distribution"] == "opensearch"
    assert result.details["user"] == "trailrelay"


def test_check_refuses_elasticsearch(standin: StandIn, client: Any) -> None:
    run_setup(client, make_config(standin.url))
    standin.info = fixture("info-elasticsearch")
    sink = make_sink(make_config(standin.url))
    result = sink.check()
    sink.close()
    assert not result.ok
    assert "not OpenSearch" in result.summary


@pytest.mark.parametrize("content_type", ["text/html", "application/json"])
def test_check_says_when_something_else_answers(standin: StandIn, content_type: str) -> None:
    """A proxy's or portal's 200 page: a failed check naming it, not a traceback from the client."""
    standin.queue({"status": 200, "headers": {"Content-Type": content_type}, "body": "<html>Sign in</html>"})
    sink = make_sink(make_config(standin.url))
    try:
        result = sink.check()
    finally:
        sink.close()
    assert not result.ok
    assert "did not answer as OpenSearch (a proxy or another service?)" in result.summary


def test_check_bad_password_is_fatal(standin: StandIn) -> None:
    sink = make_sink(make_config(standin.url, password="wrong-password"))
    with pytest.raises(FatalSinkError) as info:
        sink.check()
    sink.close()
    assert "wrong-password" not in str(info.value)


def test_check_auto_create_off(standin: StandIn) -> None:
    standin.auto_create_index = False
    sink = make_sink(make_config(standin.url, index="cloudtrail"))
    result = sink.check()
    sink.close()
    assert not result.ok
    assert "auto_create_index" in result.summary


def _check(config: Any) -> Any:
    sink = make_sink(config)
    try:
        return sink.check()
    finally:
        sink.close()


def test_check_fails_when_every_request_but_authinfo_is_refused(
    standin: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user whose roles allow nothing: check said ✓ "ready to write" (exit 0), having read neither
    the version, the target nor its settings. It now fails naming the permission, with the notes."""
    for path in ("/", "/_data_stream/*", "/_cluster/*", "/*/_settings/*", "/_index_template/*"):
        standin.refuse(path, no_permission(f"GET {path}"))
    result = CliRunner().invoke(cli, ["check", "-c", str(_setup_config(standin, tmp_path, monkeypatch))])
    output = " ".join(result.output.split())  # rich wraps long lines
    assert result.exit_code == 1, output
    assert (
        "✗ sink opensearch (opensearch): could not look up data stream logs-aws.cloudtrail-default: "
        "grant indices:admin/data_stream/get on it (HTTP 403 security_exception: no permissions for "
    ) in output
    assert "note: version not checked: GET / was refused (it needs cluster:monitor/main)" in output
    assert "ready to write" not in output


def test_check_names_what_it_could_not_check(standin: StandIn, client: Any) -> None:
    """Where the target was verified, a refused side check is said in the summary, not dropped."""
    assert run_setup(client, make_config(standin.url)).ok
    standin.data_streams.add("logs-aws.cloudtrail-default")
    standin.refuse("/_cluster/settings", no_permission("cluster:monitor/settings"))
    result = _check(make_config(standin.url))
    assert result.ok, result.summary
    assert result.summary.startswith(
        f"OpenSearch 2.19.1 at {standin.url}: ready to write to logs-aws.cloudtrail-default; "
        "note: user trailrelay (roles logstash) needs"
    )
    assert "; note: cluster read-only blocks not checked: HTTP 403 security_exception" in result.summary


def test_check_of_a_missing_target_whose_template_may_not_be_read(standin: StandIn) -> None:
    """GET _index_template refused: one line saying so, not "the check failed unexpectedly:
    AuthorizationException(403, ...)"."""
    standin.refuse("/_index_template/*", no_permission("indices:admin/index_template/get"))
    result = _check(make_config(standin.url))
    assert not result.ok
    assert result.summary.startswith(
        "data stream logs-aws.cloudtrail-default does not exist and whether template "
        "trailrelay-logs-aws.cloudtrail-default will create it is unknown (HTTP 403 security_exception: "
        "no permissions for [indices:admin/index_template/get]"
    ), result.summary
    assert "grant indices:admin/index_template/get to check it, or run `trailrelay opensearch setup`" in (
        result.summary
    )
    assert "AuthorizationException" not in result.summary


@pytest.mark.parametrize(
    ("service", "refusal", "said"),
    [
        (
            "aoss",
            None,  # the stand-in verifies signatures for "es": AWS's signature mismatch
            (
                "AWS refused the SigV4 signature (aws_sigv4 (aoss, the boto3 credential chain)): check the "
                "AWS credentials, region (eu-west-1) and aws_service: HTTP 403 error: The request signature "
                "we calculated does not match"
            ),
        ),
        (
            "es",
            "request-403-iam",
            (
                "AWS refused the request (aws_sigv4 (es, the boto3 credential chain)): the domain's access "
                "policy or the principal's IAM policy must allow es:ESHttpGet, es:ESHttpHead and "
                "es:ESHttpPost: HTTP 403 error: User: arn:aws:iam::111122223333:user/trail is not authorized "
                "to perform: es:ESHttpGet"
            ),
        ),
        (
            "aoss",
            "request-403-aoss-forbidden",
            (
                "AWS refused the request (aws_sigv4 (aoss, the boto3 credential chain)): the collection's "
                "data access policy must allow this principal aoss:DescribeIndex, aoss:CreateIndex and "
                "aoss:WriteDocument on the indices: HTTP 403 Forbidden: 403 Forbidden"
            ),
        ),
    ],
    ids=["serverless-signature", "domain-iam", "serverless-data-access-policy"],
)
def test_check_fails_when_aws_refuses_sigv4(
    aws_standin: StandIn, service: str, refusal: str | None, said: str
) -> None:
    """check said "ready to write" (exit 0) when AWS refused every request: the README's table has
    a refused SigV4 request a FatalSinkError naming the setting."""
    if service == "aoss" and refusal is not None:
        aws_standin.sigv4 = SigV4Check({ACCESS_KEY: SECRET_KEY}, REGION, "aoss")
    if refusal is not None:
        aws_standin.refuse("*", refusal)
    with pytest.raises(FatalSinkError) as info:
        _check(sigv4_config(aws_standin.url, aws_service=service))
    assert str(info.value).startswith(said), str(info.value)
    assert SECRET_KEY not in str(info.value)


def test_setup_installs_once_and_is_idempotent(standin: StandIn, client: Any) -> None:
    config = make_config(standin.url, retention_days=30)
    dry = run_setup(client, config, dry_run=True)
    assert dry.ok
    assert standin.index_templates == {}
    assert standin.policies == {}
    first = run_setup(client, config)
    assert first.ok, first.lines
    assert sum(line.startswith("installed") for line in first.lines) == 4
    template = standin.index_templates["trailrelay-logs-aws.cloudtrail-default"]
    assert template["data_stream"] == {}
    props = template["template"]["mappings"]["properties"]
    assert all(props[name] == {"type": "flat_object"} for name in FLAT_OBJECT_FIELDS)
    assert "trailrelay-logs-trailrelay.integrity-default" in standin.index_templates
    policy = standin.policies["trailrelay-default-retention"]["policy"]
    assert policy["states"][0]["transitions"][0]["conditions"] == {"min_index_age": "30d"}
    assert "logs-aws.cloudtrail-default" in policy["ism_template"][0]["index_patterns"]
    second = run_setup(client, config)
    assert all(line.startswith("unchanged") for line in second.lines), second.lines
    third = run_setup(client, make_config(standin.url, retention_days=60))
    assert any(line.startswith("updated: ISM policy") for line in third.lines), third.lines
    check = make_sink(config)
    assert check.check().ok
    check.close()


@pytest.mark.parametrize(
    ("overrides", "streams", "plain"),
    [
        ({"integrity_index": "trailrelay-integrity"}, "logs-aws.cloudtrail-default", "trailrelay-integrity"),
        ({"index": "cloudtrail"}, "logs-trailrelay.integrity-default", "cloudtrail"),
    ],
    ids=["plain-integrity-index", "plain-cloudtrail-index"],
)
def test_setup_rolls_over_every_data_stream(
    standin: StandIn, client: Any, overrides: dict[str, str], streams: str, plain: str
) -> None:
    """ISM does not delete a data stream's write index: with one target a plain index, the one
    policy had no rollover, so the data stream was never deleted. Each kind now has its policy."""
    config = make_config(standin.url, retention_days=30, **overrides)
    report = run_setup(client, config)
    assert report.ok, report.lines
    assert set(standin.policies) == {"trailrelay-default-retention", "trailrelay-default-integrity-retention"}
    by_pattern = {
        tuple(p["policy"]["ism_template"][0]["index_patterns"]): p["policy"]
        for p in standin.policies.values()
    }
    rolled, whole = by_pattern[(streams, f".ds-{streams}-*")], by_pattern[(plain,)]
    assert rolled["states"][0]["actions"] == [
        {"rollover": {"min_index_age": "1d", "min_primary_shard_size": "30gb"}}
    ]
    assert whole["states"][0]["actions"] == []  # a plain index cannot roll over: deleted whole
    for policy in (rolled, whole):
        assert policy["states"][0]["transitions"] == [
            {"state_name": "delete", "conditions": {"min_index_age": "30d"}}
        ]
        assert policy["states"][1]["actions"] == [{"delete": {}}]
    assert "installed: ISM policy trailrelay-default-integrity-retention" in " ".join(report.lines)
    assert f"{plain}: delete each index whole 30 days after its creation" in " ".join(report.lines)
    assert all(line.startswith("unchanged") for line in run_setup(client, config).lines)


def test_setup_updates_objects_whose_installed_content_was_changed(standin: StandIn, client: Any) -> None:
    """Edited in place (their _meta and descriptions kept), the objects were reported "unchanged:
    ... up to date" and left as edited. Setup compares the installed content and updates it."""
    config = make_config(standin.url)
    assert run_setup(client, config).ok
    wanted = json.loads(json.dumps([standin.index_templates, standin.pipelines, standin.policies]))
    template = standin.index_templates["trailrelay-logs-aws.cloudtrail-default"]["template"]
    del template["settings"]["index"]["final_pipeline"]
    template["mappings"]["properties"]["eventName"] = {"type": "text"}
    standin.pipelines[INGESTED_PIPELINE]["processors"] = []
    hot = standin.policies["trailrelay-default-retention"]["policy"]["states"][0]
    hot["transitions"][0]["conditions"]["min_index_age"] = "1d"
    dry = run_setup(client, config, dry_run=True)
    assert dry.lines == [
        f"would update: ingest pipeline {INGESTED_PIPELINE}: installed content differs at processors",
        (
            "would update: index template trailrelay-logs-aws.cloudtrail-default: installed content lacks "
            "template.settings.index.final_pipeline"
        ),
        "unchanged: index template trailrelay-logs-trailrelay.integrity-default is up to date",
        (
            "would update: ISM policy trailrelay-default-retention (logs-aws.cloudtrail-default and "
            "logs-trailrelay.integrity-default: roll over daily, delete each backing index 90 days after its "
            "creation): installed content differs at states[0].transitions[0].conditions.min_index_age"
        ),
    ]
    report = run_setup(client, config)
    assert report.ok, report.lines
    assert [line.split(":")[0] for line in report.lines] == [
        "updated",
        "updated",
        "unchanged",
        "updated",
        "note",
    ]
    assert [standin.index_templates, standin.pipelines] == wanted[:2]
    policy = standin.policies["trailrelay-default-retention"]["policy"]
    assert policy == wanted[2]["trailrelay-default-retention"]["policy"]
    installed = standin.index_templates["trailrelay-logs-aws.cloudtrail-default"]["template"]
    installed["mappings"]["properties"]["eventName"] = {"type": "text"}  # the mapping alone differs
    assert (
        "updated: index template trailrelay-logs-aws.cloudtrail-default: installed content differs at "
        "template.mappings.properties.eventName.type"
    ) in run_setup(client, config).lines
    assert all(line.startswith("unchanged") for line in run_setup(client, config).lines)


def test_setup_gives_documents_their_arrival_time(standin: StandIn, client: Any) -> None:
    """The exported monitors select by arrival (CloudTrail reaches OpenSearch minutes to days late).

    Setup installs a pipeline that stamps trailrelay.ingested, before the template that names it
    as the indices' final pipeline, so every document written gets one.
    """
    config = make_config(standin.url)
    report = run_setup(client, config)
    assert report.ok, report.lines
    assert report.lines[0] == f"installed: ingest pipeline {INGESTED_PIPELINE}"
    (processor,) = standin.pipelines[INGESTED_PIPELINE]["processors"]
    assert (processor["set"]["field"], processor["set"]["value"]) == (
        ARRIVAL_FIELD,
        "{{{_ingest.timestamp}}}",
    )
    template = standin.index_templates["trailrelay-logs-aws.cloudtrail-default"]["template"]
    assert template["settings"]["index"]["final_pipeline"] == INGESTED_PIPELINE
    assert template["mappings"]["properties"]["trailrelay"]["properties"]["ingested"] == {"type": "date"}
    before = dt.datetime.now(dt.UTC)
    sink = make_sink(config)
    assert [o.status for o in sink.send(Batch(sample_records(3)))] == [Status.DELIVERED] * 3
    sink.close()
    docs = standin.stored("logs-aws.cloudtrail-default")
    assert len(docs) == 3
    for doc in docs:
        assert before <= dt.datetime.fromisoformat(doc["trailrelay"]["ingested"]) <= dt.datetime.now(dt.UTC)
        assert dt.datetime.fromisoformat(doc["@timestamp"]) < before  # @timestamp stays the eventTime
    assert all(line.startswith("unchanged") for line in run_setup(client, config).lines)


def test_setup_on_serverless_installs_no_pipeline(standin: StandIn, client: Any) -> None:
    config = sigv4_config(standin.url, aws_service="aoss")  # the stand-in's client stays on basic auth
    report = run_setup(client, config, dry_run=True)
    assert report.lines[0].startswith(f"skipped: ingest pipeline {INGESTED_PIPELINE} (Serverless)")
    body = report.bodies["index template trailrelay-logs-aws.cloudtrail-default"]
    assert "final_pipeline" not in body["template"]["settings"]["index"]


def test_setup_on_an_existing_data_stream_says_how_to_start_now(standin: StandIn, client: Any) -> None:
    standin.data_streams.add("logs-aws.cloudtrail-default")
    report = run_setup(client, make_config(standin.url))
    assert report.ok, report.lines
    assert (
        "note: logs-aws.cloudtrail-default already exists: its new documents get trailrelay.ingested "
        "from its next backing index on; to start now: POST logs-aws.cloudtrail-default/_rollover"
    ) in report.lines


def test_setup_detector(standin: StandIn, client: Any) -> None:
    config = make_config(standin.url)
    report = run_setup(client, config, detector=True)
    assert report.ok, report.lines
    [detector] = standin.detectors.values()
    assert detector["detector_type"] == "cloudtrail"
    assert detector["inputs"][0]["detector_input"]["indices"] == ["logs-aws.cloudtrail-default"]
    assert {r["id"] for r in detector["inputs"][0]["detector_input"]["pre_packaged_rules"]} == {
        "rule-ct-1",
        "rule-ct-2",
    }
    [mappings] = standin.sa_mappings
    assert mappings["alias_mappings"]["properties"]["aws.cloudtrail.event_name"] == {
        "type": "alias",
        "path": "eventName",
    }
    again = run_setup(client, config, detector=True)
    assert any("detector" in line and line.startswith("unchanged") for line in again.lines)
    assert len(standin.detectors) == 1


def test_setup_command_says_when_something_else_answers(
    standin: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page instead of OpenSearch's JSON: one line naming it (it was a SerializationError traceback)."""
    monkeypatch.setenv("OS_PASSWORD", PASSWORD)
    cfg = tmp_path / "trailrelay.toml"
    cfg.write_text(
        f'[source]\ntype = "files"\npath = "."\n\n[[sinks]]\ntype = "opensearch"\nurl = "{standin.url}"\n'
        f'username = "{USER}"\npassword = "${{OS_PASSWORD}}"\n'
    )
    standin.queue(
        {"status": 200, "headers": {"Content-Type": "text/html"}, "body": "<html>Sign in</html>"}, 5
    )
    result = CliRunner().invoke(group, ["setup", "-c", str(cfg)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert "did not answer as OpenSearch (a proxy or another service?)" in result.output
    assert PASSWORD not in result.output


def _compatibility_mode() -> dict[str, Any]:
    """GET / of OpenSearch 1.3 with compatibility.override_main_response_version = true."""
    info = fixture("info")
    info["body"]["version"].update(
        number="7.10.2", lucene_version="8.10.1", minimum_wire_compatibility_version="6.8.0"
    )
    return info


def test_check_refuses_opensearch_in_compatibility_mode(standin: StandIn, client: Any) -> None:
    """It answers 7.10.2 whatever it runs (1.x has no flat_object): check said "OpenSearch 7.10.2
    ... ready to write"."""
    run_setup(client, make_config(standin.url))
    standin.info = _compatibility_mode()
    result = _check(make_config(standin.url))
    assert not result.ok
    assert result.summary.startswith(
        "OpenSearch answering as 7.10.2 is in compatibility mode (OpenSearch 1.x, or 2.x with "
        "compatibility.override_main_response_version = true), which hides its version: trailrelay's "
        "template needs 2.7 or later (flat_object); on 2.7+, set that setting to false and run again"
    ), result.summary


def _setup_config(standin: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("OS_PASSWORD", PASSWORD)
    cfg = tmp_path / "os.toml"
    cfg.write_text(
        f'[source]\ntype = "files"\npath = "."\n\n[[sinks]]\ntype = "opensearch"\nurl = "{standin.url}"\n'
        f'username = "{USER}"\npassword = "${{OS_PASSWORD}}"\n'
    )
    return cfg


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (fixture("info-elasticsearch")["body"], "8.15.1 at this URL is not OpenSearch"),
        ({"ok": True}, "is not OpenSearch: its answer to GET / has no version"),
        (_compatibility_mode()["body"], "OpenSearch answering as 7.10.2 is in compatibility mode"),
    ],
    ids=["elasticsearch", "anything", "compatibility-mode"],
)
def test_setup_command_refuses_what_is_not_opensearch(
    standin: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer: dict[str, Any], said: str
) -> None:
    """A server answering every request 200 with Elasticsearch's cluster info, or with {"ok": true}:
    setup reported templates installed and an ISM policy updated (PUT ...?if_seq_no=None), exit 0.
    It now stops at GET /, as `check` does, with one line and exit 1, and writes nothing."""
    cfg = _setup_config(standin, tmp_path, monkeypatch)
    standin.queue({"status": 200, "headers": {"Content-Type": "application/json"}, "body": answer}, 50)
    result = CliRunner().invoke(group, ["setup", "-c", str(cfg)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert result.output.startswith("Error: ") and said in result.output, result.output
    assert "installed" not in result.output and "updated" not in result.output
    assert [(r["method"], r["path"]) for r in standin.requests] == [("GET", "/")]
    assert PASSWORD not in result.output


def test_setup_stops_when_the_ism_policy_answer_has_no_version(standin: StandIn, client: Any) -> None:
    """An existing policy is replaced naming its _seq_no and _primary_term; an answer without them
    (not ISM's) is a failed step, never a PUT with ``if_seq_no=None``."""
    config = make_config(standin.url)
    assert run_setup(client, config).ok
    standin.policies["trailrelay-default-retention"] = {"policy": {"description": "from elsewhere"}}
    standin.requests.clear()
    report = run_setup(client, make_config(standin.url, retention_days=60))
    assert not report.ok
    assert report.lines[-1] == (
        "failed to read ISM policy trailrelay-default-retention: the answer to "
        "GET /_plugins/_ism/policies/trailrelay-default-retention has no _seq_no and _primary_term "
        "(is the ISM plugin installed?)"
    )
    assert not [r for r in standin.requests if r["method"] == "PUT" and "_ism" in r["path"]]


def test_check_of_an_untrusted_certificate_is_one_line_without_tracebacks(
    tls_standin: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """opensearch-py logged two warnings with full tracebacks before check's own line."""
    monkeypatch.setenv("OS_PASSWORD", PASSWORD)
    cfg = tmp_path / "trailrelay.toml"
    cfg.write_text(
        f'[source]\ntype = "files"\npath = "."\n\n[[sinks]]\ntype = "opensearch"\nurl = "{tls_standin.url}"\n'
        f'username = "{USER}"\npassword = "${{OS_PASSWORD}}"\n'
    )
    result = CliRunner().invoke(cli, ["check", "-c", str(cfg)])
    output = " ".join(result.output.split())  # rich wraps long lines
    assert result.exit_code == 1, output
    assert "✗ sink opensearch (opensearch): cannot reach OpenSearch" in output
    assert "CERTIFICATE_VERIFY_FAILED" in output
    assert "Traceback" not in output


def test_setup_command(standin: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OS_PASSWORD", PASSWORD)
    cfg = tmp_path / "trailrelay.toml"
    cfg.write_text(
        f'[source]\ntype = "files"\npath = "."\n\n[[sinks]]\ntype = "opensearch"\nurl = "{standin.url}"\n'
        f'username = "{USER}"\npassword = "${{OS_PASSWORD}}"\n'
    )
    from click import Context

    from trailrelay.cli.main import cli

    assert cli.get_command(Context(cli), "opensearch") is group  # registered under trailrelay.commands
    result = CliRunner().invoke(group, ["setup", "-c", str(cfg), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "would install: index template trailrelay-logs-aws.cloudtrail-default" in result.output
    assert PASSWORD not in result.output
    result = CliRunner().invoke(group, ["setup", "-c", str(cfg)])
    assert result.exit_code == 0, result.output
    assert "installed: ISM policy" in result.output


def test_searcher_finds_a_delivered_event(standin: StandIn) -> None:
    config = make_config(standin.url)
    sink = make_sink(config)
    records = sample_records(3)
    sink.send(Batch(records))
    sink.close()
    searcher = plugin.searcher(config)
    since = dt.datetime(2026, 3, 2, 10, 10, tzinfo=dt.UTC)
    assert searcher.find(str(records[1].event_id), since) is not None
    assert searcher.find("no-such-event", since) is None
    searcher.close()
    searcher.close()


def test_searcher_finds_only_that_event(standin: StandIn) -> None:
    """A hit of another event (a proxy's answer, a text eventID field) is not the canary."""
    config = make_config(standin.url)
    sink = make_sink(config)
    records = sample_records(2)
    sink.send(Batch(records))
    sink.close()
    event_id, other = str(records[0].event_id), str(records[1].event_id)
    hit = {"_index": "x", "_id": "1", "_source": {"@timestamp": "2026-03-02T10:15:00Z", "eventID": other}}
    standin.queue({"status": 200, "headers": JSON, "body": {"hits": {"hits": [hit]}}})
    searcher = plugin.searcher(config)
    since = dt.datetime(2026, 3, 2, 10, 10, tzinfo=dt.UTC)
    assert searcher.find(event_id, since) is None
    assert searcher.find(event_id, since) is not None
    searcher.close()


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({}, "the answer was not a search result ('{}')"),
        (
            {
                "timed_out": True,
                "_shards": {"total": 5, "successful": 0, "failed": 5},
                "hits": {"total": {"value": 0, "relation": "eq"}, "hits": []},
            },
            "no shard answered (5 of 5 failed, timed out)",
        ),
    ],
)
def test_an_answer_that_is_no_search_result_is_a_failed_search(
    standin: StandIn, body: dict[str, Any], words: str
) -> None:
    """Not "not found yet": the search did not run, which the canary must say if it never does."""
    config = make_config(standin.url)
    standin.queue({"status": 200, "headers": JSON, "body": body})
    with pytest.raises(RetryableError) as info:
        plugin.searcher(config).find("x", dt.datetime.now(dt.UTC))
    assert str(info.value) == f"opensearch: searching {config.target.name} failed: {words}"
