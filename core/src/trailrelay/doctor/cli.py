"""``trailrelay doctor``: can the trail behind the forwarding be trusted? Findings, why, and the fix.

Exit status: 0 nothing at or above ``--fail-on`` (default high); 1 at least one finding at or
above it ("could not check" findings count at the severity of what they could not rule out);
2 bad usage or configuration; 3 ``--send`` could not deliver the findings to every sink.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import click
import orjson
from rich.console import Console
from rich.markup import escape

from trailrelay.doctor.findings import Severity
from trailrelay.errors import ConfigError

__all__ = ["EXIT_CONFIG", "EXIT_SEND", "doctor_command"]

EXIT_CONFIG = 2
EXIT_SEND = 3
_LEVELS = [s.label for s in sorted(Severity, reverse=True)]


@click.command("doctor")
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="trailrelay.toml: its source, [doctor] table and sinks (without it: trail and bucket checks only).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout.")
@click.option(
    "--fail-on",
    type=click.Choice([*_LEVELS, "never"]),
    default="high",
    show_default=True,
    help="Exit 1 when a finding is at or above this severity.",
)
@click.option(
    "--send/--no-send",
    default=None,
    help="Send each finding as an event to the configured sinks (default: [doctor] send).",
)
@click.option("--region", help="Region to call CloudTrail in (default: the config's, then the SDK's).")
@click.option("--trail", help="Name or ARN of the trail to check (default: [doctor] trail).")
@click.option("--bucket", help="The trail's log bucket (default: [doctor] bucket or the source's).")
@click.option(
    "--retention-days", type=click.IntRange(1, 36500), help="Retention asked of the bucket (default 365)."
)
@click.option("--permissions", is_flag=True, help="Print the read-only IAM policy doctor needs, and exit.")
def doctor_command(
    *,
    config_path: Path | None,
    as_json: bool,
    fail_on: str,
    send: bool | None,
    region: str | None,
    trail: str | None,
    bucket: str | None,
    retention_days: int | None,
    permissions: bool,
) -> None:
    """Check the trail, its log bucket and the forwarding set-up; say what to fix and how.

    Reads (never changes) the trails (logging, regions, organization, log file validation, global
    service events, management events captured, delivery errors), the log bucket (Object Lock
    mode and retention, lifecycle, public access, who may write, encryption) and, with a config,
    the SQS queue (dead-letter queue, visibility timeout against object sizes), the bucket's
    notifications to it, and the EventBridge fast path. A setting that cannot be read is a
    finding ("could not check X: needs permission Y"), never a pass. Exit status: 0 nothing at or
    above --fail-on; 1 something is; 2 bad usage or configuration; 3 --send failed.
    """
    from trailrelay.doctor.aws import Clients  # noqa: PLC0415 - boto3 loads slowly; keep --help fast
    from trailrelay.doctor.run import PERMISSIONS, run_doctor, settings_from  # noqa: PLC0415

    if permissions:
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "TrailrelayDoctor", "Effect": "Allow", "Action": list(PERMISSIONS), "Resource": "*"}
            ],
        }
        click.echo(json.dumps(policy, indent=2))
        return
    err = Console(stderr=True, soft_wrap=True)
    config = None
    if config_path is not None:
        from trailrelay.config import load_config  # noqa: PLC0415

        try:
            config = load_config(config_path)
        except ConfigError as exc:
            err.print(
                f"[red]config error[/red] in {escape(str(config_path))}: {escape(str(exc))}", highlight=False
            )
            raise SystemExit(EXIT_CONFIG) from None
    sending = send if send is not None else bool(config and config.doctor.send)
    if sending and config is None:
        raise click.UsageError("--send needs -c FILE: the findings go to its sinks")
    threshold = None if fail_on == "never" else Severity.parse(fail_on)
    settings, client = settings_from(
        config, region=region, trail=trail, bucket=bucket, retention_days=retention_days
    )
    clients = Clients(
        region=settings.region, endpoint_url=client["endpoint_url"], role_arn=client["role_arn"]
    )
    try:
        report = run_doctor(settings, clients)
    except ConfigError:  # the one a client can raise as it is made: no region
        raise click.UsageError(
            "no AWS region to read the trail in: pass --region, set region in the config's [source], "
            "or set AWS_REGION"
        ) from None
    status = report.exit_status(threshold)
    sent = True
    if sending and config is not None:
        sent = _send(report, config, err)
        status = status if sent else EXIT_SEND
    if as_json:
        doc = report.as_dict(threshold)
        doc["exit_status"] = status  # the process's: a failed --send included
        sys.stdout.buffer.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n")
        sys.stdout.flush()
    else:
        from trailrelay.doctor.render import print_report  # noqa: PLC0415

        print_report(report, Console(), threshold, sent=sent)
    raise SystemExit(status)


def _send(report: object, config: object, err: Console) -> bool:
    """Send the findings; False when a sink did not take them all."""
    from trailrelay.config import Config  # noqa: PLC0415
    from trailrelay.doctor.events import finding_event, send_findings  # noqa: PLC0415
    from trailrelay.doctor.findings import Report  # noqa: PLC0415

    assert isinstance(report, Report)
    assert isinstance(config, Config)
    now = dt.datetime.now(dt.UTC)
    org = report.context.get("organization")
    events = [
        finding_event(f, checked_at=now, account=_account(f.resource), organization=org)
        for f in report.sorted_findings()
    ]
    result = send_findings(events, config)
    for name, n in result.delivered.items():
        err.print(f"sent {n} of {len(events)} findings to sink {name}", highlight=False)
    for name, reason in result.failures.items():
        err.print(f"[red]sink {escape(name)}:[/red] {escape(str(reason))}", highlight=False)
    return result.ok


def _account(resource: str) -> str | None:
    parts = resource.split(":")
    return parts[4] if resource.startswith("arn:") and len(parts) > 4 and parts[4] else None
