"""``trailrelay splunk setup`` and ``trailrelay splunk verify`` (the ``trailrelay.commands`` entry point)."""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from trailrelay.contract import ConfigError, Secret, check_writable, load_sink_config, output_errors
from trailrelay_splunk.alerts import DEFAULT_SOURCETYPE
from trailrelay_splunk.config import SplunkConfig
from trailrelay_splunk.management import (
    INACTIVE,
    ManagementError,
    ManagementTarget,
    SetupIncompleteError,
    SetupSpec,
    Step,
    apply_setup,
    connect,
    plan_setup,
    verify_events,
)

__all__ = ["group"]

_log = logging.getLogger("trailrelay.splunk")


def _management_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by the commands that talk to splunkd's management port."""
    options = [
        click.option(
            "-c",
            "--config",
            "config_path",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Take the management settings, index and sourcetype from this trailrelay config's "
            "splunk sink (options given here win).",
        ),
        click.option("--sink", "sink_name", help="Name of the splunk sink when the config has several."),
        click.option(
            "--management-url",
            envvar="SPLUNK_MANAGEMENT_URL",
            help="splunkd management URL, e.g. https://splunk.example.com:8089 [env SPLUNK_MANAGEMENT_URL]",
        ),
        click.option("--username", envvar="SPLUNK_USERNAME", help="Splunk user [env SPLUNK_USERNAME]"),
        click.option("--password", envvar="SPLUNK_PASSWORD", help="Splunk password [env SPLUNK_PASSWORD]"),
        click.option(
            "--auth-token",
            envvar="SPLUNK_AUTH_TOKEN",
            help="Splunk authentication token [env SPLUNK_AUTH_TOKEN]",
        ),
        click.option(
            "--ca-bundle", type=click.Path(exists=True, dir_okay=False), help="CA bundle for splunkd's TLS."
        ),
        click.option(
            "--insecure", is_flag=True, help="Do not verify splunkd's TLS certificate (not for production)."
        ),
        click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds per request."),
        click.option(
            "--index", help="Index for CloudTrail events [default: the sink's, else aws_cloudtrail]."
        ),
        click.option(
            "--sourcetype", help=f"Sourcetype of the events [default: the sink's, else {DEFAULT_SOURCETYPE}]."
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _resolve(kw: dict[str, Any], *, searching: bool) -> None:
    """Fill unset options from the sink's config (``-c``), then the defaults; in place.

    A sink without ``index`` writes to its token's default index, which only Splunk knows:
    searches then look in every index (``*``), as ``trailrelay canary`` does.
    """
    sink: SplunkConfig | None = None
    if kw["config_path"] is not None:
        try:
            sink = load_sink_config(kw["config_path"], "splunk", kw["sink_name"])
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
    if sink is not None:
        kw["management_url"] = kw["management_url"] or sink.management_url
        if not (kw["auth_token"] or kw["password"]):
            if sink.management_token is not None:
                kw["auth_token"] = sink.management_token.get_secret_value()
            elif sink.password is not None:
                kw["username"] = kw["username"] or sink.username
                kw["password"] = sink.password.get_secret_value()
        kw["ca_bundle"] = kw["ca_bundle"] or sink.management_ca_bundle or sink.ca_bundle
        kw["insecure"] = kw["insecure"] or not sink.verify_tls
        kw["index"] = kw["index"] or sink.index or ("*" if searching else None)
        kw["sourcetype"] = kw["sourcetype"] or sink.sourcetype
    kw["index"] = kw["index"] or "aws_cloudtrail"
    kw["sourcetype"] = kw["sourcetype"] or DEFAULT_SOURCETYPE
    if not kw["management_url"]:
        raise click.UsageError(
            "give --management-url (or SPLUNK_MANAGEMENT_URL, or management_url in the sink's config with -c)"
        )


def _target(kw: dict[str, Any], *, searching: bool = False) -> ManagementTarget:
    _resolve(kw, searching=searching)
    if kw["insecure"]:
        _log.warning(
            "TLS CERTIFICATE VERIFICATION IS OFF for splunkd at %s (--insecure)", kw["management_url"]
        )
    return ManagementTarget(
        url=kw["management_url"],
        username=kw["username"],
        password=Secret(kw["password"]) if kw["password"] is not None else None,
        auth_token=Secret(kw["auth_token"]) if kw["auth_token"] else None,
        verify_tls=not kw["insecure"],
        ca_bundle=kw["ca_bundle"],
        timeout=kw["timeout"],
    )


@click.group(name="splunk")
def group() -> None:
    """Set up Splunk for trailrelay and verify that events arrive."""


@group.command()
@_management_options
@click.option("--token-name", default="trailrelay", show_default=True, help="Name of the HEC token.")
@click.option("--app", default="search", show_default=True, help="App that owns the alert searches.")
@click.option("--no-ack", is_flag=True, help="Create the token without indexer acknowledgement.")
@click.option("--dry-run", is_flag=True, help="Print what would be done; change nothing.")
@click.option(
    "--token-file", type=click.Path(dir_okay=False, path_type=Path), help="Write the HEC token here (0600)."
)
@click.option("--show-token", is_flag=True, help="Print the HEC token value on stdout.")
def setup(**kw: Any) -> None:
    """Create, if missing, the index, an HEC token bound to it, and the rule pack's alerts."""
    target = _target(kw)
    spec = SetupSpec(
        index=kw["index"],
        token_name=kw["token_name"],
        sourcetype=kw["sourcetype"],
        app=kw["app"],
        ack=not kw["no_ack"],
    )
    if kw["token_file"] is not None and not kw["dry_run"]:  # before the token exists, not after
        with output_errors(kw["token_file"]):
            check_writable(kw["token_file"])
    try:
        service = connect(target, app=spec.app)
        steps = plan_setup(service, spec)
        if kw["dry_run"]:
            click.echo(f"Plan for {kw['management_url']} (dry run, nothing changed):")
            _print_steps(steps, dry=True)
            _fail_if_inactive(steps)
            return
        done = apply_setup(service, steps)
    except SetupIncompleteError as exc:  # say what was made, and keep the new token
        click.echo(f"Set-up of {kw['management_url']} stopped by a failure; done before it:")
        _print_steps(exc.done, dry=False)
        _hand_over_token(exc.done, kw)
        raise click.ClickException(f"{exc} (run setup again once fixed; what exists is kept)") from None
    except ManagementError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Set-up of {kw['management_url']}:")
    _print_steps(done, dry=False)
    _hand_over_token(done, kw)
    _fail_if_inactive(done)


def _hand_over_token(steps: list[Step], kw: dict[str, Any]) -> None:
    """Write the HEC token to --token-file, print it with --show-token, else say it is hidden."""
    token = next((s.token for s in steps if s.kind == "hec-token" and s.token is not None), None)
    if token is None:
        return
    if kw["token_file"] is not None:
        _write_secret(kw["token_file"], token.get_secret_value())
        click.echo(f"HEC token written to {kw['token_file']} (mode 0600).")
    if kw["show_token"]:
        click.echo(f"HEC token: {token.get_secret_value()}")
    elif kw["token_file"] is None:
        click.echo("HEC token: hidden (use --token-file PATH or --show-token to get it).")


def _fail_if_inactive(steps: list[Step]) -> None:
    """Existing objects that cannot work (a disabled token, an alert that can never fire) fail setup."""
    inactive = [s for s in steps if s.action in INACTIVE]
    if not inactive:
        return
    said = {"unscheduled": "not scheduled"}
    names = "; ".join(f"{s.kind} {s.name!r} is {said.get(s.action, s.action)}" for s in inactive)
    they, them = ("they", "them") if len(inactive) > 1 else ("it", "it")
    raise click.ClickException(
        f"{names} (left as is: {they} cannot work); "
        f"enable {them} as shown above (in Splunk Web, or the REST call), then run setup again"
    )


def _print_steps(steps: list[Step], *, dry: bool) -> None:
    verbs = {"create": "would create", "enable": "would enable"} if dry else {}
    for step in steps:
        action = verbs.get(step.action, step.action)
        detail = f"  ({step.detail})" if step.detail else ""
        click.echo(f"  {step.kind:<10} {action:<13} {step.name}{detail}")


def _write_secret(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    path.chmod(0o600)


@group.command()
@_management_options
@click.option(
    "--minutes", default=15, show_default=True, help="Look at events indexed in the last N minutes."
)
@click.option("--event-id", help="Look for one event (e.g. the canary from `trailrelay canary`).")
@click.option("--wait", default=0.0, show_default=True, help="Keep searching up to this many seconds.")
@click.option("--lookback", default="-24h", show_default=True, help="Earliest eventTime searched.")
@click.option("--poll-interval", default=5.0, show_default=True, hidden=True)
def verify(**kw: Any) -> None:
    """Search Splunk for recent CloudTrail events (or a canary) and report the end-to-end delay."""
    target = _target(kw, searching=True)
    try:
        service = connect(target)
        report = verify_events(
            service,
            index=kw["index"],
            sourcetype=kw["sourcetype"],
            minutes=kw["minutes"],
            event_id=kw["event_id"],
            lookback=kw["lookback"],
            wait=kw["wait"],
            poll_interval=kw["poll_interval"],
        )
    except ManagementError as exc:
        raise click.ClickException(str(exc)) from None
    what = f"event {kw['event_id']}" if kw["event_id"] else f"events indexed in the last {kw['minutes']} min"
    if not report.found:
        raise click.ClickException(f"no {what} in index {kw['index']!r} (sourcetype {kw['sourcetype']!r})")
    click.echo(f"found {report.found} {what} in index {kw['index']!r}")
    if report.delays:
        parts = ", ".join(f"{k} {v:.1f}s" for k, v in report.delays.items())
        click.echo(f"end-to-end delay (eventTime -> indexed): {parts}")
    if report.last_indexed:
        when = dt.datetime.fromtimestamp(report.last_indexed, dt.UTC).isoformat(timespec="seconds")
        click.echo(f"last indexed at {when}")
