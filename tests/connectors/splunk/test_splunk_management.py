"""`trailrelay splunk setup` / `verify` through splunk-sdk against the management-API stand-in."""

from __future__ import annotations

import re
import socket
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from splunk_mgmt_standin import HEC, MgmtStandIn, fixture, search_reply

from trailrelay.contract import Secret, alert_definitions
from trailrelay_splunk.alerts import pack_alerts
from trailrelay_splunk.cli import group
from trailrelay_splunk.management import (
    ManagementError,
    ManagementTarget,
    SetupSpec,
    connect,
    plan_setup,
    verify_events,
)

PACK = alert_definitions("splunk", index="cloudtrail")


@pytest.fixture
def api() -> Iterator[MgmtStandIn]:
    server = MgmtStandIn().start()
    yield server
    server.stop()


def _run(api: MgmtStandIn, *args: str, password: str | None = None) -> Result:
    env = {
        "SPLUNK_MANAGEMENT_URL": api.url,
        "SPLUNK_USERNAME": api.username,
        "SPLUNK_PASSWORD": password or api.password,
    }
    return CliRunner().invoke(group, list(args), env=env, catch_exceptions=False)


def test_setup_creates_index_token_and_alerts(api: MgmtStandIn, tmp_path: Path) -> None:
    token_file = tmp_path / "hec.token"
    result = _run(api, "setup", "--index", "cloudtrail", "--token-file", str(token_file))
    assert result.exit_code == 0, result.output
    assert "cloudtrail" in api.indexes
    assert not api.hec_disabled
    token = api.tokens["trailrelay"]
    assert {k: token[k] for k in ("index", "indexes", "sourcetype", "useACK")} == {
        "index": "cloudtrail",
        "indexes": "cloudtrail",
        "sourcetype": "aws:cloudtrail",
        "useACK": "1",
    }
    assert token_file.read_text().strip() == token["token"]
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert token["token"] not in result.output  # only with --show-token
    # Exactly what `trailrelay rules export --siem splunk --index cloudtrail` makes, over REST.
    assert len(PACK) >= 15 and len(api.searches) == len(PACK)
    for alert in PACK:
        saved = api.searches[alert.name]
        assert {k: v for k, v in saved.items() if k != "name"} == alert.settings
        assert saved["search"] == alert.query
        assert saved["is_scheduled"] == "1" and saved["cron_schedule"] == "*/5 * * * *"
        assert saved["alert_type"] == "number of events" and saved["alert_comparator"] == "greater than"
        assert saved["realtime_schedule"] == "0"  # continuous scheduling: no index-time window skipped
        if "| streamstats " in saved["search"]:  # a correlation counts every event of its window
            assert saved["search"].startswith('index="cloudtrail" sourcetype="aws:cloudtrail" ')
        else:
            assert saved["search"].startswith(
                'index="cloudtrail" sourcetype="aws:cloudtrail" _index_earliest="-5m@m" _index_latest="@m" '
            )
    assert len(re.findall(r"^  \S+ +created ", result.output, re.MULTILINE)) == 2 + len(PACK)
    assert "enabled" in result.output


def test_setup_refuses_a_token_file_it_cannot_write_before_creating_the_token(
    api: MgmtStandIn, tmp_path: Path
) -> None:
    """Found after the token was made, it was a traceback and the new token was lost."""
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where a folder should be")
    result = CliRunner().invoke(
        group,
        ["setup", "--index", "cloudtrail", "--token-file", str(blocked / "hec.token")],
        env={
            "SPLUNK_MANAGEMENT_URL": api.url,
            "SPLUNK_USERNAME": api.username,
            "SPLUNK_PASSWORD": api.password,
        },
    )
    assert result.exit_code == 2, result.output
    assert "cannot write" in result.output and "Traceback" not in result.output
    assert not api.tokens and "cloudtrail" not in api.indexes  # nothing was created


def test_setup_is_idempotent(api: MgmtStandIn) -> None:
    assert _run(api, "setup").exit_code == 0
    before = len(api.writes())
    again = _run(api, "setup", "--show-token")
    assert again.exit_code == 0, again.output
    assert len(api.writes()) == before  # nothing written the second time
    assert not re.findall(r"^  \S+ +created ", again.output, re.MULTILINE)
    assert len(re.findall(r"^  \S+ +exists ", again.output, re.MULTILINE)) == 3 + len(PACK)
    assert f"HEC token: {api.tokens['trailrelay']['token']}" in again.output


def test_dry_run_prints_the_plan_and_changes_nothing(api: MgmtStandIn) -> None:
    result = _run(api, "setup", "--dry-run", "--index", "aws_ct")
    assert result.exit_code == 0, result.output
    assert api.writes() == []
    assert "aws_ct" not in api.indexes and not api.tokens and not api.searches
    assert "would create" in result.output and "would enable" in result.output
    assert "index=aws_ct, sourcetype=aws:cloudtrail, useACK=1" in result.output
    for alert in PACK:
        assert f"would create  {alert.name}  (every '*/5 * * * *', severity " in result.output


def test_create_answering_409_counts_as_exists(api: MgmtStandIn) -> None:
    api.conflict_on_create = {"index", "hec", "search"}
    result = _run(api, "setup", "--show-token")
    assert result.exit_code == 0, result.output
    assert result.output.count("created meanwhile (HTTP 409)") == 2 + len(PACK)
    assert f"HEC token: {api.tokens['trailrelay']['token']}" in result.output
    assert [s.status for s in api.writes() if s.path != HEC + "/http/enable"] == [409] * (2 + len(PACK))


def test_a_failing_create_reports_what_was_made_and_keeps_the_new_token(
    api: MgmtStandIn, tmp_path: Path
) -> None:
    """The error alone was printed: what was created went unsaid, and the new token was lost."""
    api.forbidden_creates = {PACK[2].name: "schedule_search"}
    token_file = tmp_path / "hec.token"
    result = _run(api, "setup", "--index", "cloudtrail", "--token-file", str(token_file))
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert f"Set-up of {api.url} stopped by a failure; done before it:" in result.output
    created = re.findall(r"^  (\S+) +created +(.+?)(?:  \(|$)", result.output, re.MULTILINE)
    assert created == [
        ("index", "cloudtrail"),
        ("hec-token", "trailrelay"),
        ("alert", PACK[0].name),
        ("alert", PACK[1].name),
    ]
    assert "  hec        enabled       global settings" in result.output
    assert token_file.read_text().strip() == api.tokens["trailrelay"]["token"]
    assert f"HEC token written to {token_file} (mode 0600)." in result.output
    assert api.tokens["trailrelay"]["token"] not in result.output
    assert result.output.strip().splitlines()[-1] == (
        f"Error: creating alert {PACK[2].name!r} failed: HTTPError: HTTP 403 Forbidden -- You (user=admin) "
        "do not have permission to perform this operation (requires capability: schedule_search). "
        "(run setup again once fixed; what exists is kept)"
    )
    api.forbidden_creates = {}
    again = _run(api, "setup", "--index", "cloudtrail", "--token-file", str(token_file))
    assert again.exit_code == 0, again.output
    assert len(re.findall(r"^  alert +created ", again.output, re.MULTILINE)) == len(PACK) - 2
    assert token_file.read_text().strip() == api.tokens["trailrelay"]["token"]


def test_token_drift_is_reported_not_changed(api: MgmtStandIn) -> None:
    api.tokens["trailrelay"] = {
        "index": "main",
        "sourcetype": "aws:cloudtrail",
        "useACK": "0",
        "token": "t-1",
    }
    service = connect(ManagementTarget(api.url, api.username, _secret(api.password)))
    steps = plan_setup(service, SetupSpec(index="cloudtrail"))
    (token_step,) = [s for s in steps if s.kind == "hec-token"]
    assert token_step.action == "exists"
    assert "index=main (want cloudtrail)" in token_step.detail and "useACK=0 (want 1)" in token_step.detail


def test_login_failure_is_clear_and_secret_free(api: MgmtStandIn) -> None:
    result = CliRunner().invoke(
        group,
        ["setup"],
        env={
            "SPLUNK_MANAGEMENT_URL": api.url,
            "SPLUNK_USERNAME": "admin",
            "SPLUNK_PASSWORD": "wrong-pass-123",
        },
    )
    assert result.exit_code != 0
    assert "refused the login" in result.output
    assert "wrong-pass-123" not in result.output


def test_bearer_token_authentication(api: MgmtStandIn) -> None:
    service = connect(ManagementTarget(api.url, auth_token=_secret(api.bearer)))
    assert plan_setup(service, SetupSpec(index="main"))[0].action == "exists"


def test_a_wrong_token_is_refused_at_connect(api: MgmtStandIn) -> None:
    """With a token, login() sends nothing: connect asks server/info, so a bad token fails there."""
    with pytest.raises(ManagementError, match="refused the login") as info:
        connect(ManagementTarget(api.url, auth_token=_secret("not-the-token-42")))
    assert "not-the-token-42" not in str(info.value)


@pytest.mark.parametrize(
    "credentials",
    [
        {"SPLUNK_AUTH_TOKEN": "tok-123"},
        # login() posts the password and reads the page as XML: it was a ParseError traceback
        {"SPLUNK_USERNAME": "admin", "SPLUNK_PASSWORD": "tok-123"},
    ],
    ids=["token", "password"],
)
@pytest.mark.parametrize("command", ["setup", "verify"])
def test_a_url_without_splunkd_is_one_line(command: str, credentials: dict[str, str]) -> None:
    """Nothing listening, or a page instead of splunkd's feed: one line naming it, no traceback."""
    page = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=page.serve_forever, daemon=True).start()
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        nothing = f"http://127.0.0.1:{closed.getsockname()[1]}"
    try:
        for url, said in (
            (nothing, f"Splunk at {nothing}: ConnectionRefusedError"),
            (f"http://127.0.0.1:{page.server_address[1]}", "did not answer as Splunk's management API"),
        ):
            env = {"SPLUNK_MANAGEMENT_URL": url, **credentials}
            result = CliRunner().invoke(group, [command], env=env)
            assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
            assert said in result.output and "tok-123" not in result.output
            assert len(result.output.strip().splitlines()) == 1
    finally:
        page.shutdown()
        page.server_close()


class _Page(BaseHTTPRequestHandler):
    """A portal that answers every request with 200 and a page."""

    def do_GET(self) -> None:
        body = b'<!DOCTYPE html><html><head><meta charset="utf-8"><title>Sign in</title></head><body>Sign in<br></body></html>'
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.do_GET()

    def log_message(self, *args: object) -> None:
        """Quiet."""


def test_missing_credentials_are_refused() -> None:
    with pytest.raises(ManagementError, match="auth-token"):
        connect(ManagementTarget("https://splunk.example.com:8089"))


def test_verify_reports_count_and_delay(api: MgmtStandIn) -> None:
    api.search_replies.append(search_reply("oneshot_stats.json"))
    result = _run(api, "verify", "--index", "cloudtrail", "--minutes", "30")
    assert result.exit_code == 0, result.output
    assert "found 1342 events indexed in the last 30 min" in result.output
    assert "p50 312.5s" in result.output and "p99 801.0s" in result.output
    (search,) = [s for s in api.seen if s.path.rstrip("/").endswith("/jobs")]
    assert (
        search.path.rstrip("/") == "/servicesNS/nobody/search/search/v2/jobs"
    )  # v2 API chosen from server/info
    assert search.params["exec_mode"] == "oneshot" and search.params["output_mode"] == "json"
    assert search.params["earliest_time"] == "-24h"
    assert 'index="cloudtrail" sourcetype="aws:cloudtrail" _index_earliest=-30m' in search.params["search"]


def test_verify_waits_for_a_canary(api: MgmtStandIn) -> None:
    api.search_replies += [
        fixture("oneshot_empty.json"),
        search_reply("oneshot_canary.json", event_id="canary-1"),
    ]
    service = connect(ManagementTarget(api.url, api.username, _secret(api.password)))
    slept: list[float] = []
    report = verify_events(
        service,
        index="cloudtrail",
        sourcetype="aws:cloudtrail",
        event_id="canary-1",
        wait=60,
        poll_interval=2,
        sleep=slept.append,
    )
    assert report.found == 1 and report.delays == {"delay": 7.0}
    assert slept == [2]
    assert 'eventID="canary-1"' in report.query


def test_verify_with_nothing_found_fails(api: MgmtStandIn) -> None:
    result = _run(api, "verify", "--event-id", "nope")
    assert result.exit_code == 1
    assert "no event nope" in result.output


def test_an_alert_that_differs_from_the_pack_is_reported_not_changed(api: MgmtStandIn) -> None:
    stopped = next(a for a in PACK if "Logging Stopped" in a.name)
    api.searches[stopped.name] = {**stopped.settings, "search": 'index="cloudtrail" eventName=StopLogging'}
    result = _run(api, "setup", "--index", "cloudtrail")
    assert result.exit_code == 0, result.output
    assert f"exists        {stopped.name}  (differs: search differs from the rule pack's (left as is" in (
        result.output
    )
    assert api.searches[stopped.name]["search"] == 'index="cloudtrail" eventName=StopLogging'
    assert len(api.searches) == len(PACK)


def _installed(api: MgmtStandIn) -> None:
    """Splunk already holds the index, an enabled HEC and every pack alert exactly as setup makes it."""
    api.indexes.add("cloudtrail")
    api.hec_disabled = False
    api.tokens["trailrelay"] = {
        "index": "cloudtrail",
        "sourcetype": "aws:cloudtrail",
        "useACK": "1",
        "token": "11111111-2222-3333-4444-555555555555",
    }
    for alert in PACK:
        api.searches[alert.name] = {**alert.settings, "search": alert.query}


def test_existing_alerts_show_splunks_settings_and_each_difference(api: MgmtStandIn) -> None:
    """The detail of an existing alert was the pack's schedule and severity, whatever Splunk held."""
    _installed(api)
    stopped = next(a for a in PACK if "Logging Stopped" in a.name)
    deleted = next(a for a in PACK if "Trail Deleted" in a.name)
    api.searches[stopped.name].update(
        {"cron_schedule": "0 3 * * *", "alert.severity": "2", "alert.track": "0"}
    )
    api.searches[deleted.name].update({"alert_threshold": "1000"})
    result = _run(api, "setup", "--index", "cloudtrail")
    assert result.exit_code == 0, result.output  # scheduled and enabled: it fires, differently
    assert (
        f"exists        {stopped.name}  (differs: cron_schedule='0 3 * * *' (want '*/5 * * * *'), "
        "alert.severity=2 (want 6), alert.track=0 (want 1) (left as is;"
    ) in result.output
    assert f"{deleted.name}  (differs: alert_threshold=1000 (want 0) (left as is;" in result.output
    root = next(a for a in PACK if "Root User Console Login" in a.name)
    assert f"exists        {root.name}  (every '*/5 * * * *', severity 5)" in result.output
    assert "index=cloudtrail, sourcetype=aws:cloudtrail, useACK=1" in result.output
    assert api.writes() == []  # reported, not changed


@pytest.mark.parametrize("dry_run", [False, True], ids=["setup", "dry-run"])
def test_a_disabled_alert_or_token_fails_setup(api: MgmtStandIn, tmp_path: Path, dry_run: bool) -> None:
    """A disabled or unscheduled alert can never fire, a disabled token takes no event: not 'exists'."""
    _installed(api)
    stopped = next(a for a in PACK if "Logging Stopped" in a.name)
    deleted = next(a for a in PACK if "Trail Deleted" in a.name)
    api.searches[stopped.name].update({"disabled": "1", "is_scheduled": "0"})
    api.searches[deleted.name].update({"is_scheduled": "0"})
    api.tokens["trailrelay"]["disabled"] = "1"
    token_file = tmp_path / "hec.token"
    args = ["setup", "--index", "cloudtrail", "--token-file", str(token_file)]
    result = _run(api, *args, *(["--dry-run"] if dry_run else []))
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert (
        f"alert      disabled      {stopped.name}  (disabled=1 (want 0), is_scheduled=0 (want 1); left as is: "
        "it can never fire; enable and schedule it in Splunk Web (Settings > Searches, reports, and alerts) "
        "or POST disabled=0 is_scheduled=1 cron_schedule='*/5 * * * *' to "
        "/servicesNS/nobody/search/saved/searches/trailrelay%20-%20AWS%20CloudTrail%20Logging%20Stopped)"
    ) in result.output
    assert f"alert      unscheduled   {deleted.name}  (is_scheduled=0 (want 1); left as is:" in result.output
    assert (
        "hec-token  disabled      trailrelay  (disabled=1 (want 0); left as is: HEC refuses its events; "
        "enable it in Splunk Web (Settings > Data inputs > HTTP Event Collector) or POST disabled=0 to "
        f"{HEC}/trailrelay)"
    ) in result.output
    assert result.output.strip().splitlines()[-1] == (
        f"Error: hec-token 'trailrelay' is disabled; alert {deleted.name!r} is not scheduled; "
        f"alert {stopped.name!r} is disabled (left as is: they cannot work); enable them as shown above "
        "(in Splunk Web, or the REST call), then run setup again"
    )
    assert len(re.findall(r"^  alert +exists ", result.output, re.MULTILINE)) == len(PACK) - 2
    assert api.writes() == []  # left as is
    assert api.tokens["trailrelay"]["token"] not in result.output


def test_alerts_follow_the_token_sourcetype(api: MgmtStandIn) -> None:
    result = _run(api, "setup", "--index", "cloudtrail", "--sourcetype", "aws:cloudtrail:org")
    assert result.exit_code == 0, result.output
    assert api.tokens["trailrelay"]["sourcetype"] == "aws:cloudtrail:org"
    for alert in pack_alerts("cloudtrail", "aws:cloudtrail:org"):
        saved = api.searches[alert.name]
        assert saved["search"].startswith('index="cloudtrail" sourcetype="aws:cloudtrail:org" ')
        assert 'sourcetype="aws:cloudtrail"' not in saved["search"]


def test_alert_search_is_the_exported_one() -> None:
    """The installed StopLogging alert is the pack's Sigma rule as pySigma's Splunk backend writes it."""
    (stopped,) = [a for a in PACK if a.name == "trailrelay - AWS CloudTrail Logging Stopped"]
    assert stopped.query == (
        'index="cloudtrail" sourcetype="aws:cloudtrail" _index_earliest="-5m@m" _index_latest="@m" '
        'eventSource="cloudtrail.amazonaws.com" eventName="StopLogging" NOT errorCode=*'
    )
    assert stopped.settings["alert.severity"] == "6"  # critical
    queries = " ".join(a.query for a in PACK)
    for event in (
        "StopLogging",
        "DeleteTrail",
        "DeleteFlowLogs",
        "DeleteDetector",
        "UpdateDetector",
        "DeleteBucketPublicAccessBlock",
        "CreateAccessKey",
        "ConsoleLogin",
        "DisableKey",
        "ScheduleKeyDeletion",
    ):
        assert event in queries


def test_verify_takes_management_settings_from_the_sink_config(api: MgmtStandIn, tmp_path: Path) -> None:
    cfg = tmp_path / "trailrelay.toml"
    cfg.write_text(
        '[source]\ntype = "files"\npath = "in"\n'
        '[[sinks]]\ntype = "splunk"\nurl = "https://hec.example:8088"\ntoken = "t"\nindex = "ct_idx"\n'
        f'management_url = "{api.url}"\nusername = "{api.username}"\npassword = "${{SPLUNK_TEST_PW}}"\n'
    )
    api.search_replies.append(search_reply("oneshot_canary.json", event_id="trailrelay-canary-1"))
    result = CliRunner().invoke(
        group,
        ["verify", "-c", str(cfg), "--event-id", "trailrelay-canary-1"],
        env={"SPLUNK_TEST_PW": api.password, "SPLUNK_MANAGEMENT_URL": None, "SPLUNK_PASSWORD": None},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "found 1 event trailrelay-canary-1 in index 'ct_idx'" in result.output
    (search,) = [s for s in api.seen if s.path.rstrip("/").endswith("/jobs")]
    assert (
        'index="ct_idx" sourcetype="aws:cloudtrail" eventID="trailrelay-canary-1"' in search.params["search"]
    )


def test_verify_of_a_sink_without_index_searches_every_index(api: MgmtStandIn, tmp_path: Path) -> None:
    cfg = tmp_path / "trailrelay.toml"
    cfg.write_text(
        '[source]\ntype = "files"\npath = "in"\n'
        '[[sinks]]\ntype = "splunk"\nurl = "https://hec.example:8088"\ntoken = "t"\n'
        f'management_url = "{api.url}"\nmanagement_token = "{api.bearer}"\n'
    )
    api.search_replies.append(search_reply("oneshot_canary.json", event_id="trailrelay-canary-2"))
    args = ["verify", "-c", str(cfg), "--event-id", "trailrelay-canary-2"]
    result = CliRunner().invoke(group, args, env={"SPLUNK_MANAGEMENT_URL": None}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (search,) = [s for s in api.seen if s.path.rstrip("/").endswith("/jobs")]
    assert search.params["search"].startswith('search index="*" sourcetype="aws:cloudtrail" eventID=')


def test_verify_without_a_management_url_is_a_usage_error() -> None:
    result = CliRunner().invoke(group, ["verify"], env={"SPLUNK_MANAGEMENT_URL": None})
    assert result.exit_code == 2 and "--management-url" in result.output


def _secret(value: str) -> Secret:
    return Secret(value)
