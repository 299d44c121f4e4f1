"""``check`` and ``trailrelay elastic setup`` against the stand-in cluster."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from elastic_helpers import API_KEY, free_port, make_sink
from elastic_standin import StandIn

from trailrelay.contract import Batch, FatalSinkError, SinkError, Status
from trailrelay.testing import sample_records
from trailrelay_elastic.admin import run_setup
from trailrelay_elastic.cli import group, load_config
from trailrelay_elastic.templates import COMPONENT_TEMPLATE, INGESTED_PIPELINE, INTEGRATION_TEMPLATE


@pytest.fixture
def integration_installed(standin: StandIn) -> StandIn:
    standin.index_templates[INTEGRATION_TEMPLATE] = {
        "index_patterns": ["logs-aws.cloudtrail-*"],
        "template": {"settings": {"index": {"default_pipeline": "logs-aws.cloudtrail-2.30.0"}}},
        "_meta": {"package": {"name": "aws", "version": "2.30.0"}, "managed_by": "fleet"},
    }
    standin.pipelines.add("logs-aws.cloudtrail-2.30.0")
    return standin


def check(standin: StandIn, **overrides: Any) -> Any:
    sink = make_sink(standin.url, **overrides)
    try:
        return sink.check()
    finally:
        sink.close()


def test_check_healthy(integration_installed: StandIn) -> None:
    result = check(integration_installed)
    assert result.ok, result.summary
    assert result.details["version"] == "8.15.1"
    assert result.details["user"] == "trailrelay"
    assert "ready to write to logs-aws.cloudtrail-default" in result.summary
    assert integration_installed.bulk_requests() == []  # check sends no data


def test_check_bad_credentials(standin: StandIn) -> None:
    standin.expected_auth = "ApiKey something-else"
    with pytest.raises(FatalSinkError, match="bad credentials") as info:
        check(standin)
    assert API_KEY not in str(info.value)


def test_check_unreachable_is_an_error() -> None:
    """Saying what failed: elastic_transport's own text is a bare "Connection error"."""
    with pytest.raises(SinkError, match="cannot reach") as info:
        make_sink(f"http://127.0.0.1:{free_port()}").check()
    assert "Connection refused" in str(info.value)


def test_check_not_elasticsearch(standin: StandIn) -> None:
    standin.queue({"status": 200, "headers": {}, "body": {"name": "not-es"}})
    with pytest.raises(FatalSinkError, match="X-Elastic-Product"):
        check(standin)


def test_check_missing_data_stream_and_integration(standin: StandIn) -> None:
    result = check(standin)
    assert not result.ok
    assert "data stream logs-aws.cloudtrail-default is missing" in result.summary
    assert "Install AWS assets" in result.summary


def test_check_missing_data_stream_in_ecs_mode(standin: StandIn) -> None:
    result = check(standin, mode="ecs")
    assert not result.ok
    assert "run `trailrelay elastic setup`" in result.summary


def test_check_existing_data_stream_needs_no_template(standin: StandIn) -> None:
    standin.data_streams.add("logs-aws.cloudtrail-default")
    assert check(standin).ok


def test_check_missing_privileges(integration_installed: StandIn) -> None:
    integration_installed.privileges["create_doc"] = False
    result = check(integration_installed)
    assert not result.ok
    assert "lacks the index privilege(s) create_doc" in result.summary


def test_check_read_only_cluster(integration_installed: StandIn) -> None:
    integration_installed.cluster_settings["persistent"]["cluster.blocks.read_only"] = "true"
    result = check(integration_installed)
    assert not result.ok
    assert "the cluster is read-only" in result.summary


def test_check_read_only_data_stream(integration_installed: StandIn) -> None:
    integration_installed.data_streams.add("logs-aws.cloudtrail-default")
    integration_installed.index_blocks["logs-aws.cloudtrail-default"] = {"write": "true"}
    result = check(integration_installed)
    assert not result.ok
    assert "read-only (index.blocks.write = true)" in result.summary


def test_check_security_disabled_is_a_note(integration_installed: StandIn) -> None:
    integration_installed.security_enabled = False
    result = check(integration_installed)
    assert result.ok, result.summary
    assert any("privileges not checked" in n for n in result.details["notes"])


@pytest.mark.parametrize("mode", ["ecs", "integration"])
def test_check_without_the_privilege_to_read_templates_names_it(standin: StandIn, mode: str) -> None:
    """HEAD _index_template answered 403: it was 'the check failed unexpectedly: AuthorizationException'."""
    standin.cluster_privileges = set()
    result = check(standin, mode=mode)
    assert not result.ok
    assert result.summary.startswith("data stream logs-aws.cloudtrail-default is missing and whether index ")
    assert "needs the cluster privilege manage_index_templates (or monitor, which may read them)" in (
        result.summary
    )
    standin.cluster_privileges = {"monitor"}
    assert "is missing and has no trailrelay index template" in check(standin, mode="ecs").summary


def test_check_old_version(integration_installed: StandIn) -> None:
    integration_installed.version = "7.17.22"
    result = check(integration_installed)
    assert not result.ok
    assert "too old" in result.summary


def test_setup_ecs_installs_then_is_idempotent(standin: StandIn) -> None:
    sink = make_sink(standin.url, mode="ecs")
    report = run_setup(sink.client, sink.config)
    assert report.ok
    assert report.lines == [
        f"installed: ingest pipeline {INGESTED_PIPELINE}",
        f"installed: component template {COMPONENT_TEMPLATE}",
        "installed: index template trailrelay-ecs-logs-aws.cloudtrail-default",
    ]
    index = standin.index_templates["trailrelay-ecs-logs-aws.cloudtrail-default"]
    assert index["index_patterns"] == ["logs-aws.cloudtrail-default"]
    assert index["data_stream"] == {}
    assert index["composed_of"] == [COMPONENT_TEMPLATE]
    props = standin.component_templates[COMPONENT_TEMPLATE]["template"]["mappings"]["properties"]
    flattened = props["aws"]["properties"]["cloudtrail"]["properties"]["flattened"]["properties"]
    assert flattened["request_parameters"]["type"] == "flattened"
    assert flattened["response_elements"]["type"] == "flattened"
    assert props["@timestamp"]["type"] == "date"
    assert props["source"]["properties"]["ip"]["type"] == "ip"
    assert props["event"]["properties"]["action"]["type"] == "keyword"
    puts = [r for r in standin.requests if r["method"] == "PUT"]
    again = run_setup(sink.client, sink.config)
    assert all(line.startswith("unchanged") for line in again.lines)
    assert [r for r in standin.requests if r["method"] == "PUT"] == puts
    assert check(standin, mode="ecs").ok
    sink.close()


def test_setup_ecs_dry_run_changes_nothing(standin: StandIn) -> None:
    sink = make_sink(standin.url, mode="ecs", namespace="prod")
    report = run_setup(sink.client, sink.config, dry_run=True)
    assert report.lines == [
        f"would install: ingest pipeline {INGESTED_PIPELINE}",
        f"would install: component template {COMPONENT_TEMPLATE}",
        "would install: index template trailrelay-ecs-logs-aws.cloudtrail-prod",
    ]
    assert set(report.bodies) == {
        f"ingest pipeline {INGESTED_PIPELINE}",
        f"component template {COMPONENT_TEMPLATE}",
        "index template trailrelay-ecs-logs-aws.cloudtrail-prod",
    }
    assert standin.index_templates == {} and standin.component_templates == {}
    assert standin.pipelines == set()
    sink.close()


def test_setup_ecs_documents_carry_their_arrival_time(standin: StandIn) -> None:
    """The exported rules select by event.ingested (CloudTrail arrives minutes to days late).

    ECS documents have no event.ingested of their own: setup installs a pipeline that stamps
    it and names it as the indices' final pipeline, so every document written gets one.
    """
    sink = make_sink(standin.url, mode="ecs")
    assert run_setup(sink.client, sink.config).ok
    (processor,) = standin.pipeline_bodies[INGESTED_PIPELINE]["processors"]
    assert processor["set"]["field"] == "event.ingested"
    assert processor["set"]["value"] == "{{{_ingest.timestamp}}}"
    settings = standin.index_templates["trailrelay-ecs-logs-aws.cloudtrail-default"]["template"]["settings"]
    assert settings["index"]["final_pipeline"] == INGESTED_PIPELINE
    before = dt.datetime.now(dt.UTC)
    outcomes = sink.send(Batch(sample_records(3)))
    assert [o.status for o in outcomes] == [Status.DELIVERED] * 3
    docs = standin.stored("logs-aws.cloudtrail-default")
    assert len(docs) == 3
    for doc in docs:
        ingested = dt.datetime.fromisoformat(doc["event"]["ingested"])
        assert before <= ingested <= dt.datetime.now(dt.UTC)
        assert dt.datetime.fromisoformat(doc["@timestamp"]) < before  # @timestamp stays the eventTime
    sink.close()


def test_setup_ecs_on_an_existing_data_stream_says_how_to_start_now(standin: StandIn) -> None:
    standin.data_streams.add("logs-aws.cloudtrail-default")
    sink = make_sink(standin.url, mode="ecs")
    report = run_setup(sink.client, sink.config)
    assert report.ok
    assert (
        "note: logs-aws.cloudtrail-default already exists: its new documents get event.ingested from its "
        "next backing index on; to start now: POST logs-aws.cloudtrail-default/_rollover"
    ) in report.lines
    sink.close()


def test_setup_integration_missing_explains_how_to_install(standin: StandIn) -> None:
    sink = make_sink(standin.url)
    report = run_setup(sink.client, sink.config)
    assert not report.ok
    assert any("Install AWS assets" in line for line in report.lines)
    assert standin.index_templates == {}
    sink.close()


def test_setup_integration_present(integration_installed: StandIn) -> None:
    sink = make_sink(integration_installed.url)
    report = run_setup(sink.client, sink.config)
    assert report.ok
    assert report.lines[0] == "found: index template logs-aws.cloudtrail (aws integration 2.30.0)"
    assert "found: ingest pipeline logs-aws.cloudtrail-2.30.0" in report.lines
    sink.close()


def write_config(tmp_path: Path, url: str, mode: str) -> Path:
    path = tmp_path / "trailrelay.toml"
    path.write_text(
        f"""
[source]
type = "files"
path = "in"

[[sinks]]
type = "elastic"
url = "{url}"
api_key = "${{TEST_ES_API_KEY}}"
mode = "{mode}"
"""
    )
    return path


def test_cli_setup_dry_run_and_install(
    standin: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_ES_API_KEY", API_KEY)
    path = write_config(tmp_path, standin.url, "ecs")
    runner = CliRunner()
    dry = runner.invoke(group, ["setup", "--config", str(path), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would install: index template" in dry.output
    assert '"flattened"' in dry.output
    assert standin.index_templates == {}
    real = runner.invoke(group, ["setup", "--config", str(path)])
    assert real.exit_code == 0, real.output
    assert "installed: index template trailrelay-ecs-logs-aws.cloudtrail-default" in real.output
    assert API_KEY not in real.output


def test_cli_setup_says_what_is_wrong_with_the_url(
    standin: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing listening, or something other than Elasticsearch answering: one line, no traceback."""
    monkeypatch.setenv("TEST_ES_API_KEY", API_KEY)
    runner = CliRunner()
    closed = runner.invoke(
        group, ["setup", "--config", str(write_config(tmp_path, f"http://127.0.0.1:{free_port()}", "ecs"))]
    )
    assert closed.exit_code == 1 and isinstance(closed.exception, SystemExit), closed.output
    assert "cannot reach Elasticsearch at http://127.0.0.1:" in closed.output
    assert "Connection refused" in closed.output
    standin.queue({"status": 200, "headers": {"Content-Type": "text/html"}, "body": "<html>Kibana</html>"})
    other = runner.invoke(group, ["setup", "--config", str(write_config(tmp_path, standin.url, "ecs"))])
    assert other.exit_code == 1 and isinstance(other.exception, SystemExit), other.output
    assert "did not identify itself as Elasticsearch (no X-Elastic-Product header)" in other.output
    assert API_KEY not in closed.output + other.output


def test_cli_setup_integration_missing_exits_nonzero(
    standin: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_ES_API_KEY", API_KEY)
    result = CliRunner().invoke(
        group, ["setup", "--config", str(write_config(tmp_path, standin.url, "integration"))]
    )
    assert result.exit_code == 1
    assert "Install AWS assets" in result.output


@pytest.mark.parametrize(
    ("mode", "granted", "said"),
    [
        (
            "ecs",
            set(),
            (
                "Error: Elasticsearch refused reading ingest pipeline trailrelay-aws.cloudtrail-ecs@ingested "
                "(HTTP 403): the credentials need the cluster privilege manage_pipeline: HTTP 403 "
                "security_exception: action [cluster:admin/ingest/pipeline/get] is unauthorized"
            ),
        ),
        (
            "ecs",
            {"manage_pipeline"},
            (
                f"Error: Elasticsearch refused reading component template {COMPONENT_TEMPLATE} (HTTP 403): the "
                "credentials need the cluster privilege manage_index_templates: HTTP 403 security_exception: "
                "action [cluster:admin/component_template/get] is unauthorized"
            ),
        ),
        (
            "integration",
            set(),
            (
                "Error: Elasticsearch refused reading index template logs-aws.cloudtrail (HTTP 403): the "
                "credentials need the cluster privilege manage_index_templates (or monitor, which may read "
                "them): HTTP 403 security_exception: action [indices:admin/index_template/get] is unauthorized"
            ),
        ),
        (
            "integration",
            {"monitor"},
            (
                "Error: Elasticsearch refused reading ingest pipeline logs-aws.cloudtrail-2.30.0 (HTTP 403): "
                "the credentials need the cluster privilege read_pipeline: HTTP 403 security_exception: "
                "action [cluster:admin/ingest/pipeline/get] is unauthorized"
            ),
        ),
    ],
    ids=["ecs-none", "ecs-pipeline-only", "integration-none", "integration-monitor"],
)
def test_cli_setup_without_a_cluster_privilege_names_it(
    integration_installed: StandIn,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    granted: set[str],
    said: str,
) -> None:
    """Reading a template or pipeline answered 403: it was an AuthorizationException traceback."""
    monkeypatch.setenv("TEST_ES_API_KEY", API_KEY)
    integration_installed.cluster_privileges = granted
    path = write_config(tmp_path, integration_installed.url, mode)
    result = CliRunner().invoke(group, ["setup", "--config", str(path)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert len(result.output.strip().splitlines()) == 1 and result.output.startswith(said), result.output
    assert API_KEY not in result.output
    assert list(integration_installed.index_templates) == [INTEGRATION_TEMPLATE]  # none installed
    assert integration_installed.component_templates == {}


def test_cli_setup_refused_a_write_names_the_privilege(
    standin: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_ES_API_KEY", API_KEY)
    standin.cluster_privileges = {"read_pipeline", "manage_index_templates"}
    result = CliRunner().invoke(group, ["setup", "--config", str(write_config(tmp_path, standin.url, "ecs"))])
    assert result.exit_code == 1, result.output
    assert (
        f"failed to install ingest pipeline {INGESTED_PIPELINE}: HTTP 403 security_exception: action "
        "[cluster:admin/ingest/pipeline/put] is unauthorized"
    ) in result.output
    assert result.output.rstrip().endswith("; the credentials need the cluster privilege manage_pipeline")
    assert standin.index_templates == {} and standin.pipelines == set()


def test_cli_config_errors_are_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_ES_API_KEY", raising=False)
    path = write_config(tmp_path, "http://127.0.0.1:9", "ecs")
    result = CliRunner().invoke(group, ["setup", "--config", str(path)])
    assert result.exit_code != 0
    assert "TEST_ES_API_KEY is not set" in result.output


def test_load_config_picks_the_named_sink(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    secret = tmp_path / "key"
    secret.write_text(API_KEY + "\n")
    path.write_text(
        f"""
[source]
type = "files"
path = "in"

[[sinks]]
type = "elastic"
name = "a"
url = "https://a:9200"

[[sinks]]
type = "elastic"
name = "b"
cloud_id = "dep:ZXUtd2VzdC0xLmF3cy5mb3VuZC5pbyRhYmMkZGVm"
api_key = "${{file:{secret}}}"
"""
    )
    config = load_config(path, "b")
    assert config.api_key is not None and config.api_key.get_secret_value() == API_KEY
    with pytest.raises(Exception, match="need exactly one elastic sink"):
        load_config(path, None)
