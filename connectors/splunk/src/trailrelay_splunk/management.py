"""Splunk's management API (port 8089) through splunk-sdk: idempotent set-up and verification.

``plan_setup`` only reads; ``apply_setup`` creates what the plan says is missing. A create that
answers 409 (someone created the object between plan and apply) counts as "exists". HEC tokens
live at ``/servicesNS/nobody/splunk_httpinput/data/inputs/http`` (Splunk Enterprise; Splunk Cloud
manages tokens through its Admin Config Service instead).
"""

from __future__ import annotations

import io
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from splunklib import binding, client, results

from trailrelay.contract import ConfigError, Secret, describe_answer
from trailrelay_splunk.alerts import DEFAULT_SOURCETYPE, AlertDefinition, pack_alerts, spl_quote

__all__ = [
    "HEC_APP_PATH",
    "INACTIVE",
    "LoginRefusedError",
    "ManagementError",
    "ManagementTarget",
    "SetupIncompleteError",
    "SetupSpec",
    "Step",
    "VerifyReport",
    "apply_setup",
    "connect",
    "plan_setup",
    "verify_events",
]

HEC_APP_PATH = "/servicesNS/nobody/splunk_httpinput/data/inputs/http/"


class ManagementError(Exception):
    """The management API refused or could not be reached; the message names no secret."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        """The HTTP status splunkd answered, None when it could not be reached."""


class LoginRefusedError(ManagementError):
    """splunkd refused the credentials (a setting to fix, not a transient failure)."""


class SetupIncompleteError(ManagementError):
    """A step of ``apply_setup`` failed; ``done`` holds the steps carried out before it."""

    def __init__(self, message: str, status: int | None, done: list[Step]) -> None:
        super().__init__(message, status)
        self.done = done
        """The steps before the failure, as ``apply_setup`` returns them (a new token included)."""


@dataclass(frozen=True)
class ManagementTarget:
    """Where and how to reach splunkd's management port."""

    url: str
    username: str | None = None
    password: Secret | None = None
    auth_token: Secret | None = None
    verify_tls: bool = True
    ca_bundle: str | None = None
    timeout: float = 30.0


@dataclass(frozen=True)
class SetupSpec:
    """What ``trailrelay splunk setup`` makes sure exists."""

    index: str
    token_name: str = "trailrelay"  # noqa: S105 - the token's name, not a secret
    sourcetype: str = DEFAULT_SOURCETYPE
    app: str = "search"
    ack: bool = True
    alerts: tuple[AlertDefinition, ...] | None = None
    """The saved searches to install; None: the rule pack (:func:`pack_alerts`) for the index."""


INACTIVE = frozenset({"disabled", "unscheduled"})
"""Actions of an existing object that cannot work as it is (setup leaves it and fails)."""


@dataclass
class Step:
    """One object of the set-up: its kind, name, what to do (create/exists/enable) and a detail.

    An existing object that is disabled (or an alert that is not scheduled) has the action
    ``disabled`` or ``unscheduled`` (:data:`INACTIVE`): set-up leaves it as it is and fails.
    """

    kind: str
    name: str
    action: str
    detail: str = ""
    params: dict[str, str] = field(default_factory=dict, repr=False)
    token: Secret | None = field(default=None, repr=False)


@dataclass
class VerifyReport:
    """What a verification search found."""

    query: str
    found: int
    delays: dict[str, float]
    last_indexed: float | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)


def connect(target: ManagementTarget, app: str = "search") -> client.Service:
    """A logged-in splunk-sdk Service for the management API (TLS verified unless told not to)."""
    parts = urlsplit(target.url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ManagementError(f"management URL {target.url!r} must look like https://splunk.example.com:8089")
    context: ssl.SSLContext | None = None
    if parts.scheme == "https" and target.verify_tls:
        context = ssl.create_default_context(cafile=target.ca_bundle)
    handler = binding.handler(timeout=target.timeout, verify=target.verify_tls, context=context)
    kwargs: dict[str, Any] = {
        "scheme": parts.scheme,
        "host": parts.hostname,
        "port": parts.port or 8089,
        "owner": "nobody",
        "app": app,
        "autologin": True,
    }
    if target.auth_token is not None:
        kwargs["splunkToken"] = target.auth_token.get_secret_value()
    elif target.username and target.password is not None:
        kwargs["username"] = target.username
        kwargs["password"] = target.password.get_secret_value()
    else:
        raise ManagementError(
            "give --auth-token, or --username with --password (or their SPLUNK_* variables)"
        )
    service = client.Service(handler=handler, **kwargs)
    try:
        service.login()
    except binding.AuthenticationError:
        raise LoginRefusedError(
            f"Splunk at {target.url} refused the login (check the username and password, or the token)",
            401,
        ) from None
    except binding.HTTPError as exc:
        raise _refused_or(exc, target, f"cannot log in to Splunk at {target.url}") from None
    except OSError as exc:
        raise ManagementError(f"cannot log in to Splunk at {target.url}: {_brief(exc)}") from None
    except Exception as exc:  # splunk-sdk reading a login answer that is not splunkd's XML
        raise _not_splunkd(target, exc) from None
    _confirm_splunkd(service, target)
    return service


def _confirm_splunkd(service: client.Service, target: ManagementTarget) -> None:
    """Ask for ``/services/server/info``: splunkd answers it, and a token is first used here.

    With a token, ``login()`` sends nothing, so a port where nothing listens, a proxy's page or
    a refused token would otherwise surface later as a traceback from deep inside splunk-sdk.
    """
    try:
        version = service.info["version"]
    except binding.HTTPError as exc:
        raise _refused_or(exc, target, f"Splunk at {target.url} answered an error") from None
    except OSError as exc:
        raise ManagementError(f"cannot reach Splunk at {target.url}: {_brief(exc)}") from None
    except Exception as exc:  # splunk-sdk reading a page that is not splunkd's Atom feed
        raise _not_splunkd(target, exc) from None
    if not isinstance(version, str) or not version:
        raise ManagementError(f"{target.url} did not answer as Splunk's management API: no version")


def _not_splunkd(target: ManagementTarget, exc: Exception) -> ManagementError:
    """The error for an answer splunk-sdk cannot read (a web page, a proxy's sign-in form)."""
    return ManagementError(
        f"{target.url} did not answer as Splunk's management API (splunkd, usually port 8089): {_brief(exc)}"
    )


def _refused_or(exc: binding.HTTPError, target: ManagementTarget, failed: str) -> ManagementError:
    """The error to raise for an HTTP error answer: a refused login (401, 403), else ``failed``."""
    if exc.status in (401, 403):
        return LoginRefusedError(f"Splunk at {target.url} refused the login: {_brief(exc)}", exc.status)
    return ManagementError(f"{failed}: {_brief(exc)}", exc.status)


def _brief(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}" if str(exc) else type(exc).__name__


def _exists(collection: client.Collection, name: str) -> client.Entity | None:
    try:
        return collection[name]
    except KeyError:
        return None


def _hec_tokens(service: client.Service) -> client.Collection:
    return client.Collection(service, HEC_APP_PATH)


def _hec_params(spec: SetupSpec) -> dict[str, str]:
    return {
        "index": spec.index,
        "indexes": spec.index,
        "sourcetype": spec.sourcetype,
        "useACK": "1" if spec.ack else "0",
        "description": "trailrelay: AWS CloudTrail",
        "disabled": "0",
    }


def plan_setup(service: client.Service, spec: SetupSpec) -> list[Step]:
    """What set-up would do, read from Splunk without changing anything."""
    try:
        return _plan(service, spec)
    except binding.HTTPError as exc:
        raise ManagementError(f"reading Splunk's configuration failed: {_brief(exc)}", exc.status) from None
    except ConfigError as exc:  # the rule pack could not be converted to SPL
        raise ManagementError(f"the alert searches could not be made: {exc}") from None


def _plan(service: client.Service, spec: SetupSpec) -> list[Step]:
    steps: list[Step] = []
    index = _exists(service.indexes, spec.index)
    steps.append(Step("index", spec.index, "exists" if index is not None else "create"))

    hec = _hec_tokens(service)
    settings = _exists(hec, "http")
    if settings is not None and _true(settings.content.get("disabled")):
        steps.append(Step("hec", "global settings", "enable", "HTTP Event Collector is disabled"))
    else:
        steps.append(Step("hec", "global settings", "exists", "HTTP Event Collector is enabled"))

    params = _hec_params(spec)
    token = _exists(hec, spec.token_name)
    if token is None:
        steps.append(Step("hec-token", spec.token_name, "create", _token_detail(params), params))
    else:
        steps.append(_existing_token(token.content, spec, params))

    alerts = spec.alerts if spec.alerts is not None else pack_alerts(spec.index, spec.sourcetype)
    for alert in alerts:
        params = {**alert.settings, "search": alert.query}
        existing = _exists(service.saved_searches, alert.name)
        if existing is None:
            steps.append(Step("alert", alert.name, "create", _alert_detail(params), params))
        else:
            steps.append(_existing_alert(existing.content, alert, spec.app))
    return steps


_BOOLEANS = frozenset(
    {"disabled", "is_scheduled", "realtime_schedule", "alert.track", "alert.digest_mode", "useACK"}
)
"""Settings splunkd may show as 1/0 or true/false."""


def _true(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "t", "yes", "y", "on")


def _differences(content: Any, wanted: dict[str, str]) -> list[str]:
    """``key=splunk's value (want ours)`` for each wanted setting splunkd holds otherwise."""
    out = []
    for key, want in wanted.items():
        have = content.get(key)
        if have is None:
            out.append(f"{key} unset (want {_shown(want)})")
        elif (_true(have) != _true(want)) if key in _BOOLEANS else str(have).strip() != want.strip():
            out.append(f"{key}={_shown(str(have))} (want {_shown(want)})")
    return out


def _shown(value: str) -> str:
    return value if value and not any(c.isspace() for c in value) else repr(value)


def _existing_token(content: Any, spec: SetupSpec, params: dict[str, str]) -> Step:
    """An existing HEC token: Splunk's own settings, what differs, and whether it is disabled."""
    wanted = {"disabled": "0", "index": spec.index, "sourcetype": spec.sourcetype, "useACK": params["useACK"]}
    drift = _differences(content, wanted)
    shown = {key: str(content.get(key, "")) for key in ("index", "sourcetype", "useACK")}
    value = content.get("token")
    secret = Secret(value) if value else None
    if _true(content.get("disabled")):
        path = HEC_APP_PATH + quote(spec.token_name, safe="")
        detail = (
            f"{', '.join(drift)}; left as is: HEC refuses its events; enable it in Splunk Web "
            f"(Settings > Data inputs > HTTP Event Collector) or POST disabled=0 to {path}"
        )
        return Step("hec-token", spec.token_name, "disabled", detail, token=secret)
    detail = "differs: " + ", ".join(drift) + " (left as is)" if drift else _token_detail(shown)
    return Step("hec-token", spec.token_name, "exists", detail, token=secret)


def _existing_alert(content: Any, alert: AlertDefinition, app: str) -> Step:
    """An existing saved search: Splunk's own schedule and severity, what differs from the pack.

    Every setting the pack sets is compared (the schedule, the alert condition, severity and
    tracking, the time range, ``disabled``) except the description, and the search itself.
    """
    first = ("disabled", "is_scheduled", "cron_schedule")
    keys = [k for k in first if k in alert.settings]
    keys += [k for k in alert.settings if k not in (*first, "description", "search")]
    wanted = {k: alert.settings[k] for k in keys}
    drift = _differences(content, wanted)
    if str(content.get("search", "")).strip() != alert.query.strip():
        drift.append("search differs from the rule pack's")
    disabled = _true(content.get("disabled"))
    unscheduled = _true(alert.settings.get("is_scheduled")) and (
        not _true(content.get("is_scheduled")) or not str(content.get("cron_schedule") or "").strip()
    )
    if disabled or unscheduled:
        path = f"/servicesNS/nobody/{quote(app, safe='')}/saved/searches/{quote(alert.name, safe='')}"
        fix = " ".join(
            f"{key}={_shown(alert.settings[key])}"
            for key in ("disabled", "is_scheduled", "cron_schedule")
            if key in alert.settings
        )
        detail = (
            f"{', '.join(drift)}; left as is: it can never fire; enable and schedule it in Splunk Web "
            f"(Settings > Searches, reports, and alerts) or POST {fix} to {path}"
        )
        return Step("alert", alert.name, "disabled" if disabled else "unscheduled", detail)
    if drift:
        detail = "differs: " + ", ".join(drift) + " (left as is; delete it and run setup to replace it)"
    else:
        detail = _alert_detail(content)
    return Step("alert", alert.name, "exists", detail)


def _alert_detail(settings: Any) -> str:
    return f"every {settings.get('cron_schedule', '?')!r}, severity {settings.get('alert.severity', '?')}"


def _token_detail(params: dict[str, str]) -> str:
    return f"index={params['index']}, sourcetype={params['sourcetype']}, useACK={params['useACK']}"


def apply_setup(service: client.Service, steps: list[Step]) -> list[Step]:
    """Carry out a plan; returns the steps with ``action`` now created/enabled/exists.

    A failing step raises :class:`SetupIncompleteError`, which carries the steps done before it.
    """
    done: list[Step] = []
    for step in steps:
        if step.action not in ("create", "enable"):
            done.append(step)
            continue
        verb = "enabling" if step.action == "enable" else "creating"
        try:
            done.append(_apply(service, step))
        except binding.HTTPError as exc:
            if exc.status == 409:
                done.append(_already(service, step))
                continue
            failed = f"{verb} {step.kind} {step.name!r} failed: {_brief(exc)}"
            raise SetupIncompleteError(failed, exc.status, done) from None
        except OSError as exc:
            raise SetupIncompleteError(
                f"{verb} {step.kind} {step.name!r} failed: {_brief(exc)}", None, done
            ) from None
    return done


def _apply(service: client.Service, step: Step) -> Step:
    if step.kind == "index":
        service.indexes.create(step.name)
        return Step(step.kind, step.name, "created")
    if step.kind == "hec":
        service.post(HEC_APP_PATH + "http/enable")
        return Step(step.kind, step.name, "enabled", "HTTP Event Collector enabled")
    if step.kind == "hec-token":
        entity = _hec_tokens(service).create(step.name, **step.params)
        value = entity.content.get("token")
        return Step(step.kind, step.name, "created", step.detail, token=Secret(value) if value else None)
    if step.kind == "alert":
        params = dict(step.params)
        search = params.pop("search")
        service.saved_searches.create(step.name, search, **params)
        return Step(step.kind, step.name, "created", step.detail)
    raise ManagementError(f"unknown set-up step {step.kind!r}")


def _already(service: client.Service, step: Step) -> Step:
    """A create answered 409: the object appeared meanwhile; report it (and its token)."""
    token: Secret | None = None
    if step.kind == "hec-token":
        entity = _exists(_hec_tokens(service), step.name)
        value = entity.content.get("token") if entity is not None else None
        token = Secret(value) if value else None
    return Step(step.kind, step.name, "exists", "created meanwhile (HTTP 409)", token=token)


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _has_value(field: Any, value: str) -> bool:
    """Whether a result field (one value, or a list for a multivalue field) holds ``value``."""
    return field == value or (isinstance(field, list) and value in field)


def _oneshot(service: client.Service, query: str, **params: str) -> list[dict[str, Any]]:
    try:
        body = service.jobs.oneshot(query, output_mode="json", count=0, **params).read()
    except binding.HTTPError as exc:
        raise ManagementError(f"the verification search failed: {_brief(exc)}", exc.status) from None
    except OSError as exc:
        raise ManagementError(f"the verification search failed: {_brief(exc)}") from None
    try:  # an empty body is no results (splunkd answers so for a oneshot that found nothing)
        return [r for r in results.JSONResultsReader(io.BytesIO(body)) if isinstance(r, dict)]
    except (ValueError, TypeError, AttributeError):  # a proxy's page, say: not splunkd's JSON
        shown = describe_answer(body, None, _credentials(service))
        raise ManagementError(
            f"the verification search failed: the answer was not splunkd's search results ({shown})"
        ) from None


def _credentials(service: client.Service) -> list[str]:
    """What the service authenticates with (session key, token, password), to mask in messages."""
    values = [service.token, service.bearerToken, service.password]
    return [v.removeprefix("Splunk ") for v in values if isinstance(v, str) and v.strip()]


def verify_events(
    service: client.Service,
    *,
    index: str,
    sourcetype: str,
    minutes: int = 15,
    event_id: str | None = None,
    lookback: str = "-24h",
    latest: str = "now",
    wait: float = 0.0,
    poll_interval: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> VerifyReport:
    """Search for events indexed in the last ``minutes`` (or one canary eventID) and their delay.

    The delay of an event is ``_indextime - _time``: from its eventTime (trailrelay sends HEC
    ``time`` = eventTime) to the moment Splunk indexed it, so it covers CloudTrail's own delivery
    delay plus trailrelay's. With ``wait``, the search repeats until something is found.
    """
    base = f"search index={spl_quote(index)} sourcetype={spl_quote(sourcetype)}"
    if event_id:
        query = (
            f"{base} eventID={spl_quote(event_id)} | eval delay=_indextime-_time "
            "| table _time, _indextime, eventID, eventName, delay"
        )
    else:
        query = (
            f"{base} _index_earliest=-{minutes}m | eval delay=_indextime-_time "
            "| stats count AS events, min(delay) AS min, median(delay) AS p50, perc95(delay) AS p95, "
            "perc99(delay) AS p99, max(delay) AS max, max(_indextime) AS last_indexed"
        )
    deadline = clock() + wait
    while True:
        rows = _oneshot(service, query, earliest_time=lookback, latest_time=latest)
        report = _report(query, rows, event_id)
        if report.found or clock() >= deadline:
            return report
        sleep(min(poll_interval, max(0.0, deadline - clock())))


def _report(query: str, rows: list[dict[str, Any]], event_id: str | None) -> VerifyReport:
    if event_id:
        # Only a row that is that event counts: a search term can match more than the field.
        rows = [r for r in rows if _has_value(r.get("eventID"), event_id)]
        delays = [d for d in (_float(r.get("delay")) for r in rows) if d is not None]
        stats = {"delay": min(delays)} if delays else {}
        last = max((_float(r.get("_indextime")) or 0.0 for r in rows), default=None)
        return VerifyReport(query, len(rows), stats, last or None, rows)
    row = rows[0] if rows else {}
    count = int(_float(row.get("events")) or 0)
    stats = {k: v for k in ("min", "p50", "p95", "p99", "max") if (v := _float(row.get(k))) is not None}
    return VerifyReport(query, count, stats, _float(row.get("last_indexed")), rows)
