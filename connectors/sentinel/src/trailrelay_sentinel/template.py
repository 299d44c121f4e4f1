"""ARM and Bicep for the data collection rule, its table column and the sender's role.

Generated from :data:`~trailrelay_sentinel.columns.COLUMNS`, so the DCR's input stream always
declares exactly the columns the mapper emits. Two targets:

* the built-in ``AWSCloudTrail`` table (output stream ``Microsoft-AWSCloudTrail``); the
  transform projects every column, copies ``AwsRequestId_`` into the deprecated
  ``AwsRequestId`` that Microsoft's ASIM audit parser still reads, and keeps ``eventTime`` in
  the custom column ``EventTime_CF`` and trailrelay's detection tags in the custom ``dynamic``
  column ``TrailrelayDetections_CF`` (both added to the table by the template);
* a custom ``<Name>_CL`` table with the same columns (output stream ``Custom-<Name>_CL``).

With ``integrity`` (``--integrity``) the same DCR also declares the stream of integrity events
(``Custom-TrailrelayIntegrity``) and sends it into the custom table ``TrailrelayIntegrity_CL``,
which the template creates with the columns of :data:`~trailrelay_sentinel.integrity.INTEGRITY_COLUMNS`.

The DCR is ``kind: Direct`` (it has its own logs-ingestion endpoint); pass a data collection
endpoint id to use a DCE instead (private link). The sending identity gets *Monitoring Metrics
Publisher* on the DCR, the role the Logs Ingestion API checks.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from trailrelay_sentinel.columns import (
    BUILTIN_COPIES,
    BUILTIN_TABLE,
    COLUMNS,
    DETECTIONS_COLUMN,
    EVENT_TIME_COLUMN,
    table_column_name,
)
from trailrelay_sentinel.integrity import INTEGRITY_COLUMNS, INTEGRITY_STREAM, INTEGRITY_TABLE

__all__ = [
    "DCR_API_VERSION",
    "MONITORING_METRICS_PUBLISHER",
    "TemplateOptions",
    "arm_json",
    "arm_template",
    "bicep_template",
    "integrity_stream_columns",
    "integrity_table_columns",
    "transform_kql",
]

MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
"""Built-in role definition id of *Monitoring Metrics Publisher*."""
DCR_API_VERSION = "2023-03-11"
TABLES_API_VERSION = "2022-10-01"
ROLE_API_VERSION = "2022-04-01"
_TABLE_TYPES = {
    "string": "string",
    "boolean": "boolean",
    "datetime": "dateTime",
    "dynamic": "dynamic",
    "int": "int",
}
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,40}_CL$")
_STREAM = re.compile(r"^Custom-[A-Za-z][A-Za-z0-9_]*$")
"""A DCR's declared stream: ``Custom-`` and a table-like name (a letter, then letters, digits, _)."""


@dataclass(frozen=True, slots=True)
class TemplateOptions:
    """What to generate: stream name, target table, and which custom columns AWSCloudTrail gets."""

    stream: str = "Custom-AWSCloudTrail"
    custom_table: str | None = None
    event_time_column: bool = True
    detections_column: bool = True
    integrity: bool = False
    """Also declare the integrity stream and create its table (``[integrity]`` events)."""
    integrity_stream: str = INTEGRITY_STREAM

    def __post_init__(self) -> None:
        for stream in (self.stream, self.integrity_stream):
            if not _STREAM.match(stream):
                raise ValueError(
                    f"stream {stream!r}: a DCR stream name is Custom- and a name of letters, digits "
                    "and _ starting with a letter (e.g. Custom-AWSCloudTrail)"
                )
        if self.integrity and self.integrity_stream == self.stream:
            raise ValueError("the integrity stream must differ from the CloudTrail stream")
        if self.custom_table is not None and not _NAME.match(self.custom_table):
            raise ValueError(
                "a custom table name must start with a letter and end in _CL (e.g. CloudTrail_CL)"
            )
        if self.integrity and (self.custom_table or "").casefold() == INTEGRITY_TABLE.casefold():
            raise ValueError(
                f"{self.custom_table} is the integrity events' table (--integrity creates it): "
                "name another table for CloudTrail"
            )

    @property
    def builtin(self) -> bool:
        """True when the target is Microsoft's AWSCloudTrail table."""
        return self.custom_table is None

    @property
    def output_stream(self) -> str:
        """``Microsoft-AWSCloudTrail`` or ``Custom-<Name>_CL``."""
        return f"Microsoft-{BUILTIN_TABLE}" if self.builtin else f"Custom-{self.custom_table}"

    @property
    def table(self) -> str:
        """Destination table name."""
        return BUILTIN_TABLE if self.custom_table is None else self.custom_table


def stream_columns() -> list[dict[str, str]]:
    """The DCR input stream declaration: the mapper's columns and types."""
    return [{"name": c.name, "type": c.type} for c in COLUMNS]


def integrity_stream_columns() -> list[dict[str, str]]:
    """The integrity stream's declaration: the integrity row's columns and types."""
    return [{"name": c.name, "type": c.type} for c in INTEGRITY_COLUMNS]


def integrity_table_columns() -> list[dict[str, str]]:
    """The schema of ``TrailrelayIntegrity_CL``."""
    return [
        {"name": c.name, "type": _TABLE_TYPES[c.type], "description": c.description}
        for c in INTEGRITY_COLUMNS
    ]


def _declarations(options: TemplateOptions) -> dict[str, Any]:
    out: dict[str, Any] = {options.stream: {"columns": stream_columns()}}
    if options.integrity:
        out[options.integrity_stream] = {"columns": integrity_stream_columns()}
    return out


def _flows(options: TemplateOptions) -> list[dict[str, Any]]:
    flows: list[dict[str, Any]] = [
        {
            "streams": [options.stream],
            "destinations": ["workspace"],
            "transformKql": transform_kql(options),
            "outputStream": options.output_stream,
        }
    ]
    if options.integrity:
        flows.append(
            {
                "streams": [options.integrity_stream],
                "destinations": ["workspace"],
                "transformKql": "source",
                "outputStream": f"Custom-{INTEGRITY_TABLE}",
            }
        )
    return flows


def transform_kql(options: TemplateOptions) -> str:
    """The DCR transformation, one line: project every column into the destination table."""
    parts: list[str] = []
    custom = {"EventTime": options.event_time_column, "TrailrelayDetections": options.detections_column}
    for c in COLUMNS:
        if options.builtin and c.name in custom:
            if custom[c.name]:
                parts.append(f"{table_column_name(c.name, builtin=True)} = {c.name}")
            continue
        parts.append(c.name)
        if options.builtin:
            parts += [f"{copy} = {c.name}" for copy, src in BUILTIN_COPIES.items() if src == c.name]
    return "source | project " + ", ".join(parts)


def _table_columns(options: TemplateOptions) -> list[dict[str, str]]:
    """Columns the template creates: the custom table's schema, or AWSCloudTrail's _CF columns."""
    if options.builtin:
        out: list[dict[str, str]] = []
        if options.event_time_column:
            out.append(
                {
                    "name": EVENT_TIME_COLUMN,
                    "type": "dateTime",
                    "description": "CloudTrail eventTime as sent by trailrelay; TimeGenerated is replaced by "
                    "the ingestion time for events older than 2 days.",
                }
            )
        if options.detections_column:
            out.append(
                {
                    "name": DETECTIONS_COLUMN,
                    "type": "dynamic",
                    "description": "trailrelay detections that matched the event: a JSON array of "
                    "objects with rule_id, title, severity and technique.",
                }
            )
        return out
    return [
        {
            "name": table_column_name(c.name, builtin=False),
            "type": _TABLE_TYPES[c.type],
            "description": c.source,
        }
        for c in COLUMNS
    ]


def arm_template(options: TemplateOptions) -> dict[str, Any]:
    """The ARM deployment template (JSON-ready dict)."""
    dcr_id = "[resourceId('Microsoft.Insights/dataCollectionRules', parameters('dataCollectionRuleName'))]"
    table_id = (
        "[resourceId('Microsoft.OperationalInsights/workspaces/tables', parameters('workspaceName'), "
        f"'{options.table}')]"
    )
    parameters: dict[str, Any] = {
        "dataCollectionRuleName": {
            "type": "string",
            "defaultValue": "trailrelay-cloudtrail",
            "metadata": {"description": "Name of the data collection rule."},
        },
        "location": {
            "type": "string",
            "defaultValue": "[resourceGroup().location]",
            "metadata": {"description": "Region of the DCR; must be the workspace's region."},
        },
        "workspaceName": {
            "type": "string",
            "metadata": {
                "description": "Log Analytics workspace with Microsoft Sentinel, in this resource group."
            },
        },
        "dataCollectionEndpointId": {
            "type": "string",
            "defaultValue": "",
            "metadata": {
                "description": "Resource id of a data collection endpoint; empty to use the DCR's own."
            },
        },
        "principalId": {
            "type": "string",
            "metadata": {
                "description": "Object id of the identity trailrelay sends as (the app registration's "
                "service "
                "principal, or the managed identity)."
            },
        },
        "principalType": {
            "type": "string",
            "defaultValue": "ServicePrincipal",
            "allowedValues": ["ServicePrincipal", "User", "Group"],
        },
    }
    columns = _table_columns(options)
    table_columns: Any = columns
    if options.builtin and columns:
        parameters["existingCustomColumns"] = {
            "type": "array",
            "defaultValue": [],
            "metadata": {
                "description": "Custom (_CF) columns AWSCloudTrail already has, as {name, type} objects: the "
                "table update replaces the custom column list, so list them here to keep them."
            },
        }
        table_columns = f"[concat(parameters('existingCustomColumns'), {_arm_array(columns)})]"
    resources: list[dict[str, Any]] = []
    depends: list[str] = []
    if columns:
        table: dict[str, Any] = {
            "type": "Microsoft.OperationalInsights/workspaces/tables",
            "apiVersion": TABLES_API_VERSION,
            "name": f"[format('{{0}}/{options.table}', parameters('workspaceName'))]",
            "properties": {"schema": {"name": options.table, "columns": table_columns}},
        }
        if not options.builtin:
            table["properties"]["plan"] = "Analytics"
        resources.append(table)
        depends.append(table_id)
    if options.integrity:
        resources.append(
            {
                "type": "Microsoft.OperationalInsights/workspaces/tables",
                "apiVersion": TABLES_API_VERSION,
                "name": f"[format('{{0}}/{INTEGRITY_TABLE}', parameters('workspaceName'))]",
                "properties": {
                    "schema": {"name": INTEGRITY_TABLE, "columns": integrity_table_columns()},
                    "plan": "Analytics",
                },
            }
        )
        depends.append(
            "[resourceId('Microsoft.OperationalInsights/workspaces/tables', parameters('workspaceName'), "
            f"'{INTEGRITY_TABLE}')]"
        )
    resources.append(
        {
            "type": "Microsoft.Insights/dataCollectionRules",
            "apiVersion": DCR_API_VERSION,
            "name": "[parameters('dataCollectionRuleName')]",
            "location": "[parameters('location')]",
            "kind": "Direct",
            "dependsOn": depends,
            "properties": {
                "description": "trailrelay: AWS CloudTrail into " + options.table,
                "dataCollectionEndpointId": "[if(empty(parameters('dataCollectionEndpointId')), null(), "
                "parameters('dataCollectionEndpointId'))]",
                "streamDeclarations": _declarations(options),
                "destinations": {
                    "logAnalytics": [
                        {
                            "workspaceResourceId": "[resourceId('Microsoft.OperationalInsights/workspaces', "
                            "parameters('workspaceName'))]",
                            "name": "workspace",
                        }
                    ]
                },
                "dataFlows": _flows(options),
            },
        }
    )
    role = (
        "[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', "
        f"'{MONITORING_METRICS_PUBLISHER}')]"
    )
    resources.append(
        {
            "type": "Microsoft.Authorization/roleAssignments",
            "apiVersion": ROLE_API_VERSION,
            "scope": "[format('Microsoft.Insights/dataCollectionRules/{0}', "
            "parameters('dataCollectionRuleName'))]",
            "name": f"[guid({dcr_id[1:-1]}, parameters('principalId'), {role[1:-1]})]",
            "dependsOn": [dcr_id],
            "properties": {
                "roleDefinitionId": role,
                "principalId": "[parameters('principalId')]",
                "principalType": "[parameters('principalType')]",
            },
        }
    )
    reference = f"reference({dcr_id[1:-1]}, '{DCR_API_VERSION}')"
    return {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "metadata": {
            "description": f"trailrelay Sentinel connector: DCR for {options.table}, "
            "plus the Monitoring Metrics Publisher role for the sender."
        },
        "parameters": parameters,
        "resources": resources,
        "outputs": {
            "rule_id": {"type": "string", "value": f"[{reference}.immutableId]"},
            "endpoint": {"type": "string", "value": f"[{reference}.endpoints.logsIngestion]"},
            "stream": {"type": "string", "value": options.stream},
            **(
                {"integrity_stream": {"type": "string", "value": options.integrity_stream}}
                if options.integrity
                else {}
            ),
        },
    }


def _arm_array(items: list[dict[str, str]]) -> str:
    """An ARM expression building an array of flat objects (inside a [...] expression)."""
    objs = []
    for item in items:
        pairs = ", ".join(f"'{k}', '{_arm_str(v)}'" for k, v in item.items())
        objs.append(f"createObject({pairs})")
    return f"createArray({', '.join(objs)})"


def _arm_str(value: str) -> str:
    return value.replace("'", "''")


def _bicep_str(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _bicep_value(value: Any, indent: int) -> str:
    pad = "  " * indent
    if isinstance(value, dict):
        inner = "\n".join(f"{pad}  {_bicep_key(k)}: {_bicep_value(v, indent + 1)}" for k, v in value.items())
        return "{\n" + inner + f"\n{pad}}}"
    if isinstance(value, list):
        if not value:
            return "[]"
        inner = "\n".join(f"{pad}  {_bicep_value(v, indent + 1)}" for v in value)
        return "[\n" + inner + f"\n{pad}]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return _bicep_str(str(value))


def _bicep_key(key: str) -> str:
    return key if re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key) else _bicep_str(key)


def bicep_template(options: TemplateOptions) -> str:
    """The same deployment as Bicep source."""
    columns = _table_columns(options)
    lines = [
        "// Generated by `trailrelay sentinel template --format bicep`.",
        f"// DCR for {options.table} + Monitoring Metrics Publisher for the sending identity.",
        "@description('Name of the data collection rule.')",
        "param dataCollectionRuleName string = 'trailrelay-cloudtrail'",
        "@description('Region of the DCR; must be the workspace region.')",
        "param location string = resourceGroup().location",
        "@description('Log Analytics workspace with Microsoft Sentinel, in this resource group.')",
        "param workspaceName string",
        "@description('Resource id of a data collection endpoint; empty to use the DCR own endpoint.')",
        "param dataCollectionEndpointId string = ''",
        "@description('Object id of the identity trailrelay sends as.')",
        "param principalId string",
        "@allowed(['ServicePrincipal', 'User', 'Group'])",
        "param principalType string = 'ServicePrincipal'",
    ]
    if options.builtin and columns:
        lines += [
            (
                "@description('Custom (_CF) columns AWSCloudTrail already has ({name, type}); "
                "the update replaces the list.')"
            ),
            "param existingCustomColumns array = []",
        ]
    lines += [
        "",
        "resource workspace 'Microsoft.OperationalInsights/workspaces@2022-10-01' existing = {",
        "  name: workspaceName",
        "}",
        "",
    ]
    if columns:
        cols = _bicep_value(columns, 3)
        if options.builtin:
            cols = f"concat(existingCustomColumns, {cols})"
        lines += [
            f"resource table 'Microsoft.OperationalInsights/workspaces/tables@{TABLES_API_VERSION}' = {{",
            "  parent: workspace",
            f"  name: {_bicep_str(options.table)}",
            "  properties: {",
            "    schema: {",
            f"      name: {_bicep_str(options.table)}",
            f"      columns: {cols}",
            "    }",
            *([] if options.builtin else ["    plan: 'Analytics'"]),
            "  }",
            "}",
            "",
        ]
    if options.integrity:
        lines += [
            (
                "resource integrityTable "
                f"'Microsoft.OperationalInsights/workspaces/tables@{TABLES_API_VERSION}' = {{"
            ),
            "  parent: workspace",
            f"  name: {_bicep_str(INTEGRITY_TABLE)}",
            "  properties: {",
            "    schema: {",
            f"      name: {_bicep_str(INTEGRITY_TABLE)}",
            f"      columns: {_bicep_value(integrity_table_columns(), 3)}",
            "    }",
            "    plan: 'Analytics'",
            "  }",
            "}",
            "",
        ]
    decl = _bicep_value(_declarations(options), 2)
    flows = _bicep_value(_flows(options), 2)
    lines += [
        f"resource dcr 'Microsoft.Insights/dataCollectionRules@{DCR_API_VERSION}' = {{",
        "  name: dataCollectionRuleName",
        "  location: location",
        "  kind: 'Direct'",
        "  properties: {",
        f"    description: {_bicep_str('trailrelay: AWS CloudTrail into ' + options.table)}",
        "    dataCollectionEndpointId: empty(dataCollectionEndpointId) ? null : dataCollectionEndpointId",
        f"    streamDeclarations: {decl}",
        "    destinations: {",
        "      logAnalytics: [",
        "        {",
        "          workspaceResourceId: workspace.id",
        "          name: 'workspace'",
        "        }",
        "      ]",
        "    }",
        f"    dataFlows: {flows}",
        "  }",
    ]
    depends = (["table"] if columns else []) + (["integrityTable"] if options.integrity else [])
    if len(depends) == 1:
        lines.append(f"  dependsOn: [{depends[0]}]")
    elif depends:  # one item per line: older Bicep versions have no commas in arrays
        lines += ["  dependsOn: [", *(f"    {d}" for d in depends), "  ]"]
    lines += [
        "}",
        "",
        (
            "var monitoringMetricsPublisher = subscriptionResourceId("
            f"'Microsoft.Authorization/roleDefinitions', '{MONITORING_METRICS_PUBLISHER}')"
        ),
        "",
        f"resource sender 'Microsoft.Authorization/roleAssignments@{ROLE_API_VERSION}' = {{",
        "  scope: dcr",
        "  name: guid(dcr.id, principalId, monitoringMetricsPublisher)",
        "  properties: {",
        "    roleDefinitionId: monitoringMetricsPublisher",
        "    principalId: principalId",
        "    principalType: principalType",
        "  }",
        "}",
        "",
        "output rule_id string = dcr.properties.immutableId",
        "output endpoint string = dcr.properties.endpoints.logsIngestion",
        f"output stream string = {_bicep_str(options.stream)}",
        *(
            [f"output integrity_stream string = {_bicep_str(options.integrity_stream)}"]
            if options.integrity
            else []
        ),
        "",
    ]
    return "\n".join(lines)


def arm_json(options: TemplateOptions) -> str:
    """The ARM template as indented JSON text."""
    return json.dumps(arm_template(options), indent=2) + "\n"
