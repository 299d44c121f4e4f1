"""`trailrelay sentinel template`, the config model and the entry points."""

from __future__ import annotations

import json
import re
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from trailrelay.contract import ConfigError
from trailrelay_sentinel.cli import group
from trailrelay_sentinel.columns import COLUMN_NAMES, COLUMNS
from trailrelay_sentinel.config import SentinelConfig
from trailrelay_sentinel.template import (
    MONITORING_METRICS_PUBLISHER,
    TemplateOptions,
    arm_template,
    bicep_template,
    transform_kql,
)

AWSCLOUDTRAIL_COLUMNS = {  # Azure Monitor table reference (AWSCloudTrail), types as documented
    "TimeGenerated": "datetime", "AwsEventId": "string", "EventVersion": "string", "EventSource": "string",
    "EventName": "string", "EventTypeName": "string", "Category": "string", "ManagementEvent": "bool",
    "ReadOnly": "bool", "UserIdentityType": "string", "UserIdentityPrincipalid": "string",
    "UserIdentityArn": "string", "UserIdentityAccountId": "string", "UserIdentityAccessKeyId": "string",
    "UserIdentityUserName": "string", "UserIdentityInvokedBy": "string", "UserIdentityUserId": "string",
    "UserIdentityStoreArn": "string", "SessionMfaAuthenticated": "bool", "SessionCreationDate": "datetime",
    "SessionIssuerType": "string", "SessionIssuerPrincipalId": "string", "SessionIssuerArn": "string",
    "SessionIssuerAccountId": "string", "SessionIssuerUserName": "string", "EC2RoleDelivery": "string",
    "AWSRegion": "string", "SourceIpAddress": "string", "UserAgent": "string", "ErrorCode": "string",
    "ErrorMessage": "string", "RequestParameters": "string", "ResponseElements": "string",
    "AdditionalEventData": "string", "Resources": "string", "ServiceEventDetails": "string",
    "AwsRequestId": "string", "AwsRequestId_": "string", "APIVersion": "string", "RecipientAccountId": "string",
    "SharedEventId": "string", "VpcEndpointId": "string", "TlsVersion": "string", "CipherSuite": "string",
    "ClientProvidedHostHeader": "string", "IpProtocol": "string", "SourcePort": "string",
    "DestinationPort": "string", "CidrIp": "string",
}  # fmt: skip
_STREAM_TO_TABLE_TYPE = {"string": "string", "boolean": "bool", "datetime": "datetime"}
CUSTOM_COLUMNS = {"EventTime_CF": "EventTime", "TrailrelayDetections_CF": "TrailrelayDetections"}


def kql_projection(kql: str) -> dict[str, str]:
    """output column -> source column of `source | project a, b = c, ...`."""
    assert kql.startswith("source | project ")
    out = {}
    for part in kql.removeprefix("source | project ").split(", "):
        name, _, src = part.partition(" = ")
        out[name.strip()] = (src or name).strip()
    return out


def resources(t: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r for r in t["resources"] if r["type"] == kind]


def test_arm_builtin_table_shape() -> None:
    t = arm_template(TemplateOptions())
    assert t["$schema"].endswith("deploymentTemplate.json#")
    (dcr,) = resources(t, "Microsoft.Insights/dataCollectionRules")
    assert dcr["kind"] == "Direct"
    props = dcr["properties"]
    declared = props["streamDeclarations"]["Custom-AWSCloudTrail"]["columns"]
    assert [c["name"] for c in declared] == list(COLUMN_NAMES)  # exactly the mapper's columns
    assert [c["type"] for c in declared] == [c.type for c in COLUMNS]
    (flow,) = props["dataFlows"]
    assert flow["streams"] == ["Custom-AWSCloudTrail"] and flow["outputStream"] == "Microsoft-AWSCloudTrail"
    assert flow["destinations"] == [props["destinations"]["logAnalytics"][0]["name"]]
    assert "dataCollectionEndpointId" in props
    (role,) = resources(t, "Microsoft.Authorization/roleAssignments")
    assert MONITORING_METRICS_PUBLISHER in role["properties"]["roleDefinitionId"]
    assert role["scope"].startswith("[format('Microsoft.Insights/dataCollectionRules/")
    (table,) = resources(t, "Microsoft.OperationalInsights/workspaces/tables")
    columns = table["properties"]["schema"]["columns"]
    assert columns.startswith("[concat(parameters('existingCustomColumns'), createArray(")
    assert "createObject('name', 'EventTime_CF', 'type', 'dateTime'" in columns
    assert "createObject('name', 'TrailrelayDetections_CF', 'type', 'dynamic'" in columns
    assert "existingCustomColumns" in t["parameters"]
    assert set(t["outputs"]) == {"rule_id", "endpoint", "stream"}


def test_builtin_transform_writes_awscloudtrail_columns_with_matching_types() -> None:
    proj = kql_projection(transform_kql(TemplateOptions()))
    assert set(proj.values()) == set(COLUMN_NAMES)  # every stream column is used
    table_cols = {k for k in proj if k not in CUSTOM_COLUMNS}
    assert table_cols == set(AWSCLOUDTRAIL_COLUMNS)  # every output is a real AWSCloudTrail column
    assert {k: proj[k] for k in CUSTOM_COLUMNS} == CUSTOM_COLUMNS  # the rest go to our _CF columns
    assert proj["AwsRequestId"] == "AwsRequestId_"
    types = {c.name: c.type for c in COLUMNS}
    for out, src in proj.items():
        if out not in CUSTOM_COLUMNS:
            assert _STREAM_TO_TABLE_TYPE[types[src]] == AWSCLOUDTRAIL_COLUMNS[out], out
    assert not {"TenantId", "Type", "SourceSystem"} & set(proj)  # reserved / system columns


def test_without_event_time_column() -> None:
    opts = TemplateOptions(event_time_column=False)
    assert "EventTime_CF" not in transform_kql(opts) and "TrailrelayDetections_CF" in transform_kql(opts)
    (table,) = resources(arm_template(opts), "Microsoft.OperationalInsights/workspaces/tables")
    assert "EventTime_CF" not in table["properties"]["schema"]["columns"]
    opts = TemplateOptions(event_time_column=False, detections_column=False)
    t = arm_template(opts)
    assert not resources(t, "Microsoft.OperationalInsights/workspaces/tables")
    assert "_CF" not in transform_kql(opts)
    (dcr,) = resources(t, "Microsoft.Insights/dataCollectionRules")
    assert dcr["dependsOn"] == []
    # The stream still declares every column the mapper emits; the transform just leaves them out.
    declared = dcr["properties"]["streamDeclarations"]["Custom-AWSCloudTrail"]["columns"]
    assert [c["name"] for c in declared] == list(COLUMN_NAMES)


def test_without_detections_column() -> None:
    opts = TemplateOptions(detections_column=False)
    assert "TrailrelayDetections" not in transform_kql(opts) and "EventTime_CF = EventTime" in transform_kql(
        opts
    )
    (table,) = resources(arm_template(opts), "Microsoft.OperationalInsights/workspaces/tables")
    assert "TrailrelayDetections_CF" not in table["properties"]["schema"]["columns"]
    text = bicep_template(opts)
    assert "TrailrelayDetections_CF" not in text and "EventTime_CF" in text


def test_custom_table() -> None:
    opts = TemplateOptions(custom_table="TrailrelayCloudTrail_CL", stream="Custom-Trail")
    t = arm_template(opts)
    (table,) = resources(t, "Microsoft.OperationalInsights/workspaces/tables")
    cols = table["properties"]["schema"]["columns"]
    assert [c["name"] for c in cols] == list(COLUMN_NAMES)
    assert {c["type"] for c in cols} == {"string", "boolean", "dateTime", "dynamic"}
    assert {c["name"]: c["type"] for c in cols}["TrailrelayDetections"] == "dynamic"
    (dcr,) = resources(t, "Microsoft.Insights/dataCollectionRules")
    (flow,) = dcr["properties"]["dataFlows"]
    assert flow["outputStream"] == "Custom-TrailrelayCloudTrail_CL" and flow["streams"] == ["Custom-Trail"]
    assert kql_projection(flow["transformKql"]) == {n: n for n in COLUMN_NAMES}
    with pytest.raises(ValueError, match="_CL"):
        TemplateOptions(custom_table="NoSuffix")
    with pytest.raises(ValueError, match="Custom-"):
        TemplateOptions(stream="AWSCloudTrail")


@pytest.mark.parametrize("opts", [TemplateOptions(), TemplateOptions(custom_table="Ct_CL")])
def test_bicep_matches_arm(opts: TemplateOptions) -> None:
    text = bicep_template(opts)
    arm = arm_template(opts)
    (dcr,) = resources(arm, "Microsoft.Insights/dataCollectionRules")
    assert f"transformKql: '{dcr['properties']['dataFlows'][0]['transformKql']}'" in text
    decl = text.split("streamDeclarations:", 1)[1].split("destinations:", 1)[0]
    assert re.findall(r"name: '(\w+)'", decl) == list(COLUMN_NAMES)
    assert f"outputStream: '{opts.output_stream}'" in text
    assert MONITORING_METRICS_PUBLISHER in text and "scope: dcr" in text and "kind: 'Direct'" in text
    assert text.count("{") == text.count("}") and text.count("[") == text.count("]")


def test_cli_template(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(group, ["template"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["resources"]
    out = tmp_path / "dcr.bicep"
    res = runner.invoke(group, ["template", "--format", "bicep", "--custom-table", "Ct_CL", "-o", str(out)])
    assert res.exit_code == 0 and "resource dcr" in out.read_text()
    res = runner.invoke(group, ["template", "--custom-table", "bad"])
    assert res.exit_code != 0 and "_CL" in res.output
    res = runner.invoke(group, ["template", "--no-detections-column"])
    assert res.exit_code == 0 and "TrailrelayDetections_CF" not in res.output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--stream", "Custom-a b"], "stream 'Custom-a b': a DCR stream name is Custom- and a name of"),
        (["--stream", "AWSCloudTrail"], "stream 'AWSCloudTrail'"),
        (["--stream", "Custom-"], "stream 'Custom-'"),
        (["--stream", "Custom-1st"], "stream 'Custom-1st'"),
        (
            ["--custom-table", "TrailrelayIntegrity_CL", "--integrity"],
            "TrailrelayIntegrity_CL is the integrity events' table (--integrity creates it)",
        ),
        (["--custom-table", "TRAILRELAYINTEGRITY_CL", "--integrity"], "the integrity events' table"),
    ],
)
def test_cli_template_refuses_what_azure_would_refuse(args: list[str], says: str) -> None:
    """A stream name Azure refuses, or two tables of one name: a clear refusal, not a failed deployment."""
    res = CliRunner().invoke(group, ["template", *args])
    assert res.exit_code == 2
    assert says in " ".join(res.output.split()) and "resources" not in res.output


def test_cli_template_to_a_file_that_cannot_be_written_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    out = tmp_path / "a-file" / "dcr.json"
    res = CliRunner().invoke(group, ["template", "-o", str(out)])
    assert res.exit_code == 2
    assert res.stderr == f"error: cannot write {out}: Not a directory\n" and res.stdout == ""


def test_entry_points_are_registered() -> None:
    (sink,) = [ep for ep in entry_points(group="trailrelay.sinks") if ep.name == "sentinel"]
    plugin = sink.load()
    assert plugin.name == "sentinel" and plugin.config_model is SentinelConfig
    (cmd,) = [ep for ep in entry_points(group="trailrelay.commands") if ep.name == "sentinel"]
    assert cmd.load().name == "sentinel"


BASE = {
    "type": "sentinel",
    "endpoint": "https://dcr-x.eastus-1.ingest.monitor.azure.com",
    "rule_id": "dcr-0123456789abcdef0123456789abcdef",
    "tenant_id": "t",
    "client_id": "c",
}


def test_config_keys_and_validation() -> None:
    cfg = SentinelConfig.validate({**BASE, "client_secret": "x"})
    assert cfg.credential_kind == "client_secret" and cfg.stream == "Custom-AWSCloudTrail"
    assert cfg.scope == "https://monitor.azure.com/.default"
    gov = SentinelConfig.validate(
        {**BASE, "credential": "workload_identity", "authority_host": "https://login.microsoftonline.us",
         "audience": "https://monitor.azure.us", "disable_instance_discovery": True, "ca_bundle": "/etc/ca.pem"}
    )  # fmt: skip
    assert gov.scope == "https://monitor.azure.us/.default"
    assert SentinelConfig.validate({**BASE, "certificate_path": "/x.pem"}).credential_kind == "certificate"
    for kind in ("managed_identity", "default"):
        assert SentinelConfig.validate({**BASE, "credential": kind}).credential_kind == kind
    bad = [
        {**BASE, "client_secret": "x", "certificate_path": "/x"},
        {**BASE, "credential": "default", "client_secret": "x"},
        {**BASE, "client_secret": "x", "rule_id": "/subscriptions/s/resourceGroups/r/providers/x/dcr-1"},
        {**BASE, "client_secret": "x", "stream": "AWSCloudTrail"},
        {**BASE, "client_secret": "x", "endpoint": "http://insecure.example"},
        {**BASE, "client_secret": "x", "authority_host": "login.microsoftonline.us"},
        {**BASE, "client_secret": "x", "unknown_key": 1},
        {**{k: v for k, v in BASE.items() if k != "tenant_id"}, "client_secret": "x"},
    ]
    for table in bad:
        with pytest.raises(ConfigError):
            SentinelConfig.validate(table)
    err = None
    try:
        SentinelConfig.validate({**BASE, "client_secret": "hunter2-secret", "stream": "nope"})
    except ConfigError as exc:
        err = str(exc)
    assert err and "hunter2-secret" not in err
    with pytest.raises(ConfigError, match="no credential"):
        _ = SentinelConfig.validate(BASE).credential_kind
