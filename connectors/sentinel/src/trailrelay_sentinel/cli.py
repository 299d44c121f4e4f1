"""``trailrelay sentinel ...``: commands of the Sentinel connector."""

from __future__ import annotations

from pathlib import Path

import click

from trailrelay.contract import output_errors
from trailrelay_sentinel.template import TemplateOptions, arm_json, bicep_template

__all__ = ["group"]


@click.group(name="sentinel")
def group() -> None:
    """Microsoft Sentinel (Azure Monitor Logs Ingestion API) helpers."""


@group.command("template")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["arm", "bicep"]),
    default="arm",
    show_default=True,
    help="Template language.",
)
@click.option(
    "--stream",
    default="Custom-AWSCloudTrail",
    show_default=True,
    help="Input stream name to declare in the DCR.",
)
@click.option(
    "--custom-table",
    metavar="NAME_CL",
    default=None,
    help="Send to this custom table (created by the template) instead of the built-in AWSCloudTrail.",
)
@click.option(
    "--event-time-column/--no-event-time-column",
    default=True,
    show_default=True,
    help="Add EventTime_CF to AWSCloudTrail to keep eventTime for events older than 2 days.",
)
@click.option(
    "--detections-column/--no-detections-column",
    default=True,
    show_default=True,
    help="Add TrailrelayDetections_CF (dynamic) to AWSCloudTrail for trailrelay's detection tags.",
)
@click.option(
    "--integrity/--no-integrity",
    default=False,
    show_default=True,
    help="Also create the TrailrelayIntegrity_CL table and the Custom-TrailrelayIntegrity stream, for the "
    "integrity events of [integrity] (one per CloudTrail digest checked).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to this file instead of standard output.",
)
def template(  # noqa: PLR0917 - click passes options positionally by name
    fmt: str,
    stream: str,
    custom_table: str | None,
    event_time_column: bool,
    detections_column: bool,
    integrity: bool,
    output: Path | None,
) -> None:
    """Print an ARM (or Bicep) template for the DCR, its table column and the sender's role.

    Deploy it into the workspace's resource group, e.g.
    `az deployment group create -g RG -f dcr.json -p workspaceName=WS principalId=OBJECT_ID`;
    its outputs are the `endpoint`, `rule_id` and `stream` for the [[sinks]] table.
    """
    try:
        options = TemplateOptions(
            stream=stream,
            custom_table=custom_table,
            event_time_column=event_time_column,
            detections_column=detections_column,
            integrity=integrity,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    text = arm_json(options) if fmt == "arm" else bicep_template(options)
    if output is None:
        click.echo(text, nl=False)
    else:
        with output_errors(output):
            output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
