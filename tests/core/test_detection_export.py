"""``rules export``: native alert definitions for each SIEM, checked against golden files.

The golden files hold exactly what pySigma's backends produce through our pipelines, wrapped in
each SIEM's alert format. After a deliberate change (a rule, a pipeline, a backend upgrade),
regenerate them with ``TRAILRELAY_UPDATE_GOLDEN=1 pytest tests/core/test_detection_export.py``
and review the diff.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from trailrelay.detection.config import DetectionConfig
from trailrelay.detection.evaluate import SigmaTagger
from trailrelay.detection.export import SIEMS, export_rules, splunk_searches
from trailrelay.detection.loader import RuleError, RuleSet, load_rules
from trailrelay.detection.pipelines import elastic_field, opensearch_field, sentinel_target, splunk_field

GOLDEN = Path(__file__).parent.parent / "fixtures" / "detection"
FILES = {
    "splunk": "savedsearches.conf",
    "elastic": "elastic_rules.ndjson",
    "sentinel": "sentinel_rules.json",
    "opensearch": "opensearch_monitors.ndjson",
}
OUTPUT_RULES = 19  # 20 rules in the pack; the AccessDenied base rule is counted by its correlation only


@pytest.fixture(scope="module")
def pack() -> RuleSet:
    return load_rules(DetectionConfig())


@pytest.mark.parametrize("siem", SIEMS)
def test_export_matches_golden_file(pack: RuleSet, siem: str) -> None:
    text = export_rules(pack, siem)
    golden = GOLDEN / FILES[siem]
    if os.environ.get("TRAILRELAY_UPDATE_GOLDEN"):
        golden.write_text(text, encoding="utf-8")
    assert text == golden.read_text(encoding="utf-8"), f"{siem} export changed; see the module docstring"
    assert export_rules(pack, siem) == text  # deterministic


def test_splunk_stanzas(pack: RuleSet) -> None:
    text = (GOLDEN / FILES["splunk"]).read_text(encoding="utf-8")
    stanzas = re.findall(r"^\[trailrelay - (.+)\]$", text, flags=re.MULTILINE)
    assert len(stanzas) == OUTPUT_RULES
    searches = {s.name: s.settings for s in splunk_searches(pack)}
    stop = searches["trailrelay - AWS CloudTrail Logging Stopped"]
    assert stop["search"] == (
        'sourcetype="aws:cloudtrail" _index_earliest="-5m@m" _index_latest="@m" '
        'eventSource="cloudtrail.amazonaws.com" eventName="StopLogging" NOT errorCode=*'
    )
    assert (stop["cron_schedule"], stop["alert.severity"]) == ("*/5 * * * *", "6")
    burst = searches["trailrelay - AWS Principal Scanning With Many Denied Calls"]["search"]
    assert "| streamstats time_window=300s count as event_count" in burst
    assert "| where event_count>=10 AND trailrelay_arrived_in_window>0" in burst
    selectors = searches["trailrelay - AWS CloudTrail Event Selectors Reduce Coverage"]["search"]
    assert '"requestParameters.eventSelectors{}.includeManagementEvents"=false' in selectors
    # a multi-line search continues with a trailing backslash in the .conf file
    assert "search = " in text and " \\\n| addinfo \\\n" in text


def test_splunk_searches_see_events_however_late_they_arrive(pack: RuleSet) -> None:
    """CloudTrail reaches Splunk minutes to days after eventTime (_time).

    Every search keeps the events indexed in the last 5 minutes (_index_earliest) whose _time
    lies within 7 days (dispatch.earliest_time bounds _time: -24h@h missed anything a day
    late), and runs on the continuous scheduler, which never skips a run and its index-time window.
    """
    searches = {s.name: s.settings for s in splunk_searches(pack)}
    for name, settings in searches.items():
        assert settings["realtime_schedule"] == "0"
        assert settings["dispatch.latest_time"] == "now"
        if "Many Denied Calls" in name:
            assert settings["dispatch.earliest_time"] == "-605100s"  # 7 days and the 5-minute timespan
        else:
            assert settings["dispatch.earliest_time"] == "-7d@h"
            assert '_index_earliest="-5m@m" _index_latest="@m"' in settings["search"]
    assert splunk_searches(pack)[0].rest_params()["realtime_schedule"] == "0"


def test_splunk_correlation_counts_sliding_windows_holding_a_new_event(pack: RuleSet) -> None:
    """A burst split by a 5-minute mark (7 + 5 denied calls) still counts 12: no `bin _time`.

    The count runs over every event of the group in the 7 days (no _index_earliest on the
    base search), and only windows holding an event indexed since the last run alert.
    """
    burst = next(s for s in splunk_searches(pack) if "Many Denied Calls" in s.name).settings["search"]
    assert "bin _time" not in burst and "_index_earliest" not in burst
    assert burst == (
        'sourcetype="aws:cloudtrail" errorCode IN ("*AccessDenied*", "*UnauthorizedOperation*", '
        '"*UnauthorizedAccess*", "*AuthorizationError*")\n'
        "| where isnotnull('userIdentity.arn')\n"
        "| addinfo\n"
        '| eval trailrelay_arrived=if(_indextime>=relative_time(info_max_time, "-5m@m") '
        'AND _indextime<relative_time(info_max_time, "@m"), 1, 0)\n'
        "| streamstats time_window=300s count as event_count sum(trailrelay_arrived) as "
        "trailrelay_arrived_in_window by userIdentity.arn\n"
        "| where event_count>=10 AND trailrelay_arrived_in_window>0\n"
        "| stats max(event_count) as event_count min(_time) as first_seen max(_time) as last_seen "
        "by userIdentity.arn"
    )


def test_splunk_correlation_counts_over_its_own_timespan(tmp_path: Path) -> None:
    """A 1-hour correlation counts 1 hour of _time, not the 5 minutes of the schedule."""
    code, out, err = _export_cli(tmp_path, "splunk", LONG_WINDOW % "1h")
    assert code == 0, err
    assert "| streamstats time_window=3600s count as event_count" in out
    assert "| where event_count>=20 AND trailrelay_arrived_in_window>0" in out
    assert "dispatch.earliest_time = -608400s" in out  # 7 days and the hour
    code, out, err = _export_cli(tmp_path, "splunk", VALUE_COUNT)
    assert code == 0, err
    assert "| eval trailrelay_value='requestParameters.bucketName'" in out
    assert "| streamstats time_window=600s dc(trailrelay_value) as value_count" in out


def test_splunk_rest_parameters(pack: RuleSet) -> None:
    params = splunk_searches(pack, index="aws")[0].rest_params()
    assert params["is_scheduled"] == "1" and params["alert_type"] == "number of events"
    assert params["search"].startswith('index="aws" sourcetype="aws:cloudtrail"')


def test_elastic_rules_are_importable_ndjson(pack: RuleSet) -> None:
    lines = (GOLDEN / FILES["elastic"]).read_text(encoding="utf-8").splitlines()
    rules = [json.loads(line) for line in lines]
    assert len(rules) == OUTPUT_RULES
    for rule in rules:
        assert {"rule_id", "name", "description", "risk_score", "severity", "type", "query", "index"} <= set(
            rule
        )
        assert rule["language"] == "lucene" and rule["index"] == ["logs-aws.cloudtrail-*"]
        assert rule["threat"] and rule["threat"][0]["framework"] == "MITRE ATT&CK"
    by_name = {r["name"]: r for r in rules}
    burst = by_name["trailrelay - AWS Principal Scanning With Many Denied Calls"]
    assert burst["type"] == "threshold"
    assert burst["threshold"] == {"field": ["aws.cloudtrail.user_identity.arn"], "value": 10}
    assert burst["query"].startswith("aws.cloudtrail.error_code:(")
    guardduty = by_name["trailrelay - AWS GuardDuty Detector Deleted Or Disabled"]["query"]
    assert "aws.cloudtrail.flattened.request_parameters.enable:false" in guardduty
    assert "NOT _exists_:aws.cloudtrail.error_code" in guardduty


def test_elastic_threshold_counts_arrivals_over_its_timespan_and_a_run(tmp_path: Path, pack: RuleSet) -> None:
    """Threshold rules cannot slide over event time: they count what arrived (event.ingested).

    A 300 s window of arrivals split a burst CloudTrail delivered in two files, 5 minutes
    apart (7 + 5); the window is the timespan plus the 5-minute schedule.
    """
    rules = {r["name"]: r for r in map(json.loads, export_rules(pack, "elastic").splitlines())}
    burst = rules["trailrelay - AWS Principal Scanning With Many Denied Calls"]
    assert (burst["from"], burst["interval"], burst["timestamp_override"]) == (
        "now-600s",
        "5m",
        "event.ingested",
    )
    code, out, err = _export_cli(tmp_path, "elastic", LONG_WINDOW % "1h")
    assert code == 0, err
    assert json.loads(out)["from"] == "now-3900s"


def test_opensearch_monitors_are_alerting_api_bodies(pack: RuleSet) -> None:
    lines = (GOLDEN / FILES["opensearch"]).read_text(encoding="utf-8").splitlines()
    monitors = [json.loads(line) for line in lines]
    assert len(monitors) == OUTPUT_RULES
    for m in monitors:
        assert m["type"] == "monitor" and m["enabled"] is True
        assert m["schedule"] == {"period": {"interval": 5, "unit": "MINUTES"}}
        search = m["inputs"][0]["search"]
        assert search["indices"] == ["logs-aws.cloudtrail-*"]
        window, query = search["query"]["query"]["bool"]["filter"]
        arrived, unstamped = window["bool"]["should"]
        assert arrived["range"]["trailrelay.ingested"]["lte"] == "{{period_end}}"
        assert unstamped["bool"]["filter"][0]["range"]["@timestamp"]["lte"] == "{{period_end}}"
        assert query["query_string"]["query"]
        ((kind, trigger),) = m["triggers"][0].items()
        assert (
            kind
            == {"query_level_monitor": "query_level_trigger", "bucket_level_monitor": "bucket_level_trigger"}[
                m["monitor_type"]
            ]
        )
        assert trigger["severity"] in {"1", "2", "3", "4", "5"} and trigger["actions"] == []
    by_name = {m["name"]: m for m in monitors}
    stop = by_name["trailrelay - AWS CloudTrail Logging Stopped"]
    stop_query = stop["inputs"][0]["search"]["query"]["query"]["bool"]["filter"][1]["query_string"]["query"]
    assert stop_query == (
        "(eventSource:cloudtrail.amazonaws.com AND eventName:StopLogging) AND (NOT _exists_:errorCode)"
    )
    assert stop["triggers"][0]["query_level_trigger"]["severity"] == "1"  # critical
    burst = by_name["trailrelay - AWS Principal Scanning With Many Denied Calls"]
    assert burst["monitor_type"] == "bucket_level_monitor"
    search = burst["inputs"][0]["search"]["query"]
    assert search["aggregations"]["groups"]["composite"]["sources"] == [
        {"userIdentity.arn": {"terms": {"field": "userIdentity.arn"}}}
    ]
    arrived = search["query"]["bool"]["filter"][0]["bool"]["should"][0]
    assert arrived["range"]["trailrelay.ingested"]["gte"] == "{{period_end}}||-600s"  # 5 minutes + a run
    condition = burst["triggers"][0]["bucket_level_trigger"]["condition"]
    assert (
        condition["script"]["source"] == "params._count >= 10" and condition["parent_bucket_path"] == "groups"
    )
    selectors = by_name["trailrelay - AWS CloudTrail Event Selectors Reduce Coverage"]
    assert "requestParameters.eventSelectors.includeManagementEvents:false" in json.dumps(selectors)
    assert (
        export_rules(pack, "opensearch", index="wazuh-alerts-*").count('"indices":["wazuh-alerts-*"]')
        == OUTPUT_RULES
    )


def test_opensearch_monitors_select_documents_by_arrival(pack: RuleSet) -> None:
    """CloudTrail reaches OpenSearch minutes to days after eventTime (@timestamp).

    A monitor that looked at the last 10 minutes of @timestamp would never see a late event:
    the monitors select by trailrelay.ingested (when OpenSearch received the document, set by
    the pipeline `opensearch setup` installs), and by @timestamp only a document without it.
    """
    monitors = [json.loads(line) for line in export_rules(pack, "opensearch").splitlines()]
    for m in monitors:
        window = m["inputs"][0]["search"]["query"]["query"]["bool"]["filter"][0]
        lookback = "600s" if m["monitor_type"] == "bucket_level_monitor" else "10m"
        bounds = {
            "gte": f"{{{{period_end}}}}||-{lookback}",
            "lte": "{{period_end}}",
            "format": "epoch_millis",
        }
        assert window == {
            "bool": {
                "should": [
                    {"range": {"trailrelay.ingested": bounds}},
                    {
                        "bool": {
                            "must_not": [{"exists": {"field": "trailrelay.ingested"}}],
                            "filter": [{"range": {"@timestamp": bounds}}],
                        }
                    },
                ],
                "minimum_should_match": 1,
            }
        }


def test_opensearch_export_errors_are_one_clean_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from trailrelay.detection.cli import EXIT_RULES, rules

    rule = tmp_path / "odd.yml"
    rule.write_text(
        "title: Odd field\nid: 77777777-7777-4777-8777-777777777778\nlevel: low\n"
        "tags: [attack.t1078]\nlogsource: {product: aws, service: cloudtrail}\n"
        "detection:\n    sel:\n        EventName: StopLogging\n    condition: sel\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(rules, ["export", "--siem", "opensearch", "--no-pack", "--rules", str(rule)])
    assert result.exit_code == EXIT_RULES
    assert "odd.yml: rule 'Odd field' cannot be exported" in result.output and "EventName" in result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)


def test_sentinel_template(pack: RuleSet) -> None:
    template = json.loads((GOLDEN / FILES["sentinel"]).read_text(encoding="utf-8"))
    resources = template["resources"]
    assert len(resources) == OUTPUT_RULES
    assert template["parameters"] == {"workspace": {"type": "String"}}
    by_name = {r["properties"]["displayName"]: r["properties"] for r in resources}
    for res in resources:
        props = res["properties"]
        assert res["kind"] == "Scheduled" and "AWSCloudTrail\n" in props["query"]
        assert props["severity"] in {"High", "Medium", "Low", "Informational"}
        assert all(re.fullmatch(r"T\d{4}", t) for t in props["techniques"])
    login = by_name["trailrelay - AWS Console Login Without MFA"]["query"]
    assert 'tostring(parse_json(AdditionalEventData)["MFAUsed"])' in login
    stop = by_name["trailrelay - AWS CloudTrail Logging Stopped"]["query"]
    assert "isempty(ErrorCode)" in stop and "isnull" not in stop  # string columns are never null in KQL
    selectors = by_name["trailrelay - AWS CloudTrail Event Selectors Reduce Coverage"]["query"]
    assert 'RequestParameters contains "\\"includeManagementEvents\\":false"' in selectors
    burst = by_name["trailrelay - AWS Principal Scanning With Many Denied Calls"]["query"]
    assert "| where WindowStart between ((Arrival - 300s) .. Arrival)" in burst
    assert "| where TimeGenerated between (WindowStart .. (WindowStart + 300s))" in burst
    assert burst.endswith(
        "| summarize event_count = count() by WindowStart, UserIdentityArn\n| where event_count >= 10\n"
        "| summarize arg_max(event_count, WindowStart) by UserIdentityArn"
    )
    assert "bin(" not in burst  # sliding windows: a burst across a 5-minute boundary still counts


_KQL_REGEX = re.compile(r'RequestParameters matches regex "((?:[^"\\]|\\.)*)"')


def _kql_regexes(query: str) -> list[re.Pattern[str]]:
    """The ``matches regex`` patterns of a query on RequestParameters, KQL string escapes undone."""
    return [re.compile(re.sub(r"\\(.)", r"\1", m)) for m in _KQL_REGEX.findall(query)]


def test_sentinel_matches_elements_of_arrays_in_json_text(pack: RuleSet) -> None:
    """A field holding an array of strings (``equals``, ``excludeManagementEventSources``) is written
    ``"equals":["Data","Management"]`` in RequestParameters: a value is matched as one of its
    elements, not as ``"equals":"Management"`` text that never occurs."""
    template = json.loads(export_rules(pack, "sentinel"))
    by_name = {r["properties"]["displayName"]: r["properties"] for r in template["resources"]}
    selectors = by_name["trailrelay - AWS CloudTrail Event Selectors Reduce Coverage"]["query"]
    kms, rdsdata, management = _kql_regexes(selectors)

    def compact(value: object) -> str:  # RequestParameters as the Sentinel connector writes it
        return json.dumps(value, separators=(",", ":"))

    console = compact(
        {
            "advancedEventSelectors": [
                {"fieldSelectors": [{"field": "eventCategory", "equals": ["Management"]}]},
                {"fieldSelectors": [{"field": "eventCategory", "equals": ["Data"]}]},
            ]
        }
    )
    data_only = compact(
        {"advancedEventSelectors": [{"fieldSelectors": [{"field": "x", "equals": ["Data", "M"]}]}]}
    )
    assert management.search(console) and not management.search(data_only)
    assert not management.search(compact({"equals": ['Management"]', "ManagementX"], "x": "Management"}))
    excluded = compact(
        {
            "eventSelectors": [
                {"excludeManagementEventSources": ["rdsdata.amazonaws.com", "kms.amazonaws.com"]}
            ]
        }
    )
    assert kms.search(excluded) and rdsdata.search(excluded)
    assert not kms.search(compact({"excludeManagementEventSources": ["kmsXamazonaws.com"]}))


def test_sentinel_rules_select_rows_by_arrival(pack: RuleSet) -> None:
    """CloudTrail reaches the workspace minutes to days after eventTime (TimeGenerated).

    Each rule looks back over 2 days and 1 hour of TimeGenerated (Azure stores an older row
    with its ingestion time) and keeps the rows that arrived since the previous run, as
    Microsoft's ingestion-delay guidance does; a correlation looks back its timespan further.
    """
    resources = json.loads(export_rules(pack, "sentinel"))["resources"]
    for res in resources:
        props = res["properties"]
        assert props["queryFrequency"] == "PT5M"
        if "Many Denied Calls" in props["displayName"]:
            assert props["queryPeriod"] == "P2DT1H5M"
            assert "| where Arrived > ago(5m)" in props["query"]
            assert "Arrived = ingestion_time()" in props["query"]
        else:
            assert props["queryPeriod"] == "P2DT1H"
            assert props["query"].endswith("\n| where ingestion_time() > ago(5m)")


LONG_WINDOW = """title: Console Login Failure
id: 0e6b1d3c-5d1e-4c59-9d2a-0d7f4b8a1111
name: console_login_failure
logsource: {product: aws, service: cloudtrail}
detection:
    selection:
        eventSource: signin.amazonaws.com
        eventName: ConsoleLogin
        responseElements.ConsoleLogin: Failure
    condition: selection
level: low
---
title: Many Console Login Failures In One Hour
id: 0e6b1d3c-5d1e-4c59-9d2a-0d7f4b8a2222
correlation:
    type: event_count
    rules: [console_login_failure]
    group-by: [sourceIPAddress]
    timespan: %s
    condition: {gte: 20}
level: high
"""


def _export_cli(tmp_path: Path, siem: str, rule_text: str) -> tuple[int, str, str]:
    from click.testing import CliRunner

    from trailrelay.detection.cli import rules

    path = tmp_path / "rules.yml"
    path.write_text(rule_text, encoding="utf-8")
    result = CliRunner().invoke(rules, ["export", "--siem", siem, "--no-pack", "--rules", str(path)])
    return result.exit_code, result.stdout, result.stderr


def test_sentinel_correlation_looks_back_over_its_own_timespan(tmp_path: Path) -> None:
    """A 1-hour correlation counts 1 hour of event time, not the 5 minutes of the schedule."""
    code, out, err = _export_cli(tmp_path, "sentinel", LONG_WINDOW % "1h")
    assert code == 0, err
    (res,) = json.loads(out)["resources"]
    assert res["properties"]["queryPeriod"] == "P2DT2H"
    query = res["properties"]["query"]
    assert "| where WindowStart between ((Arrival - 3600s) .. Arrival)" in query
    assert "| where TimeGenerated between (WindowStart .. (WindowStart + 3600s))" in query
    assert "| where event_count >= 20" in query


VALUE_COUNT = """title: Object Read
id: 0e6b1d3c-5d1e-4c59-9d2a-0d7f4b8a3333
name: object_read
logsource: {product: aws, service: cloudtrail}
detection:
    selection:
        eventName: GetObject
    condition: selection
level: low
---
title: One Principal Reads Many Buckets
id: 0e6b1d3c-5d1e-4c59-9d2a-0d7f4b8a4444
correlation:
    type: value_count
    rules: [object_read]
    group-by: [userIdentity.arn]
    timespan: 10m
    condition: {gte: 5, field: requestParameters.bucketName}
level: high
"""


def test_sentinel_value_count_computes_the_counted_column(tmp_path: Path) -> None:
    """A field inside RequestParameters is a computed column: the base rule alone never extends it."""
    code, out, err = _export_cli(tmp_path, "sentinel", VALUE_COUNT)
    assert code == 0, err
    query = json.loads(out)["resources"][0]["properties"]["query"]
    assert (
        "| project TimeGenerated, Arrived = ingestion_time(), UserIdentityArn, "
        'RequestParameters_bucketName = tostring(parse_json(RequestParameters)["bucketName"]));'
    ) in query
    assert (
        "| summarize value_count = dcount(RequestParameters_bucketName) by WindowStart, UserIdentityArn"
        in query
    )


def test_sentinel_correlation_longer_than_its_lookback_limit_is_refused(tmp_path: Path) -> None:
    code, out, err = _export_cli(tmp_path, "sentinel", LONG_WINDOW % "13d")
    assert code == 2 and out == ""
    assert "longer than the 14 days a Sentinel rule may look back" in err
    assert "Traceback" not in err


def test_sentinel_export_reads_the_custom_table_given_as_index() -> None:
    """`sentinel template --custom-table Name_CL` makes a table with AWSCloudTrail's columns;
    `--index Name_CL` was ignored, and every rule searched AWSCloudTrail (empty for those users)."""
    from click.testing import CliRunner

    from trailrelay.detection.cli import EXIT_RULES, rules

    result = CliRunner().invoke(rules, ["export", "--siem", "sentinel", "--index", "MyTrail_CL"])
    assert result.exit_code == 0, result.stderr
    queries = [r["properties"]["query"] for r in json.loads(result.stdout)["resources"]]
    assert len(queries) == OUTPUT_RULES
    assert all(q.startswith(("MyTrail_CL\n", "let events = materialize(MyTrail_CL\n")) for q in queries)
    assert not any("AWSCloudTrail" in q for q in queries)
    for bad in ("AWSCloudTrail | take 1", "MyTrail", "1Trail_CL"):
        refused = CliRunner().invoke(rules, ["export", "--siem", "sentinel", "--index", bad])
        assert refused.exit_code == EXIT_RULES and refused.stdout == ""
        assert refused.stderr.startswith(f"error: --index {bad!r} is not a Sentinel table for CloudTrail")
        assert "Traceback" not in refused.stderr


def test_field_names_per_siem() -> None:
    assert splunk_field("requestParameters.advancedEventSelectors.fieldSelectors.field") == (
        "requestParameters.advancedEventSelectors{}.fieldSelectors{}.field"
    )
    assert splunk_field("userIdentity.type") == "userIdentity.type"
    assert elastic_field("eventName") == "event.action"
    assert (
        elastic_field("additionalEventData.MFAUsed")
        == "aws.cloudtrail.flattened.additional_eventdata.MFAUsed"
    )
    assert opensearch_field("requestParameters.bucketName") == "requestParameters.bucketName"
    assert opensearch_field("@timestamp") == "@timestamp"
    assert sentinel_target("userIdentity.arn").column == "UserIdentityArn"
    assert sentinel_target("readOnly").extend == "tostring(ReadOnly)"
    assert (
        sentinel_target("requestParameters.x-amz-id").extend
        == 'tostring(parse_json(RequestParameters)["x-amz-id"])'
    )


def test_fields_without_a_counterpart_are_errors_naming_the_field(tmp_path: Path) -> None:
    rule = tmp_path / "odd.yml"
    rule.write_text(
        "title: Odd field\nid: 77777777-7777-4777-8777-777777777777\nlevel: low\n"
        "tags: [attack.t1078]\nlogsource: {product: aws, service: cloudtrail}\n"
        "detection:\n    sel:\n        insightDetails.state: Start\n    condition: sel\n",
        encoding="utf-8",
    )
    rules = load_rules(DetectionConfig(rules=[rule], pack=False))
    assert "insightDetails.state" in export_rules(rules, "splunk")  # Splunk keeps CloudTrail's names
    for siem in ("elastic", "sentinel"):
        with pytest.raises(
            RuleError, match=r"odd\.yml: rule 'Odd field' cannot be exported: .*insightDetails"
        ):
            export_rules(rules, siem)
    SigmaTagger(rule_set=rules)  # the in-stream evaluator has no such limit


def test_elastic_refuses_fields_whose_ecs_counterpart_holds_other_values(tmp_path: Path) -> None:
    """cloud.account.id falls back to recipientAccountId (an AWSService call from another account
    matched "userIdentity.accountId"); user.name is the session issuer's name on AssumedRole
    events (an assumed role matched "userIdentity.userName: Admin"). Neither is exported loosely."""
    rule = """title: Call Made By A Principal Of The Log Archive Account
id: 5a0d8f0e-1111-4c1e-9c8e-000000000001
logsource: {product: aws, service: cloudtrail}
detection:
    selection:
        userIdentity.accountId: '111111111111'
    condition: selection
level: medium
---
title: IAM User Named Admin
id: 5a0d8f0e-1111-4c1e-9c8e-000000000002
logsource: {product: aws, service: cloudtrail}
detection:
    selection:
        userIdentity.userName: Admin
    condition: selection
level: medium
"""
    code, out, err = _export_cli(tmp_path, "elastic", rule)
    assert code == 2 and out == ""
    assert "cloud.account.id" not in out and "user.name:" not in out
    assert "rule 'Call Made By A Principal Of The Log Archive Account' cannot be exported" in err
    assert "'userIdentity.accountId' has no exact counterpart" in err and "recipientAccountId" in err
    assert "rule 'IAM User Named Admin' cannot be exported" in err
    assert "'userIdentity.userName' has no exact counterpart" in err and "session issuer" in err
    assert "Traceback" not in err
    code, out, err = _export_cli(tmp_path, "sentinel", rule)  # Sentinel has both columns as they are
    assert code == 0, err
    assert "UserIdentityAccountId" in out and "UserIdentityUserName" in out


def test_unknown_siem_is_refused(pack: RuleSet) -> None:
    with pytest.raises(ValueError, match="unknown SIEM"):
        export_rules(pack, "qradar")


def test_contract_alert_definitions_for_splunk_setup() -> None:
    """Connectors get the exported searches through the contract (the Splunk setup installs them)."""
    from trailrelay.contract import AlertDefinition, ConfigError, alert_definitions

    alerts = alert_definitions("splunk", index="aws")
    assert len(alerts) == len({a.name for a in alerts}) >= 15
    assert all(isinstance(a, AlertDefinition) for a in alerts)
    stop = next(a for a in alerts if "Logging Stopped" in a.name)
    assert 'index="aws"' in stop.query
    assert "StopLogging" in stop.query
    assert stop.settings["search"] == stop.query
    assert stop.settings["is_scheduled"] == "1"
    with pytest.raises(ConfigError):
        alert_definitions("elastic")
