"""Read-only checks (``trailrelay check``) and set-up (``trailrelay opensearch setup``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opensearchpy import ConnectionError as OpenSearchConnectionError
from opensearchpy import NotFoundError, OpenSearch, TransportError

from trailrelay.contract import CheckResult, FatalSinkError, RetryableError, scrub
from trailrelay_opensearch.config import OpenSearchConfig, Target
from trailrelay_opensearch.detector import detector_body, detector_name, field_mappings, rules_query
from trailrelay_opensearch.responses import describe_error
from trailrelay_opensearch.templates import (
    ARRIVAL_FIELD,
    INGESTED_PIPELINE,
    cloudtrail_template,
    content_hash,
    ingest_pipeline,
    integrity_template,
    ism_policies,
    template_name,
)

__all__ = ["SetupReport", "check_cluster", "run_setup"]

_MIN_VERSION = (2, 7)
"""flat_object, used by the template for the request/response subtrees, arrived in 2.7."""
_SA = "/_plugins/_security_analytics"


def _where(config: OpenSearchConfig) -> str:
    return ", ".join(config.urls)


def _status(exc: TransportError) -> int:
    return exc.status_code if isinstance(exc.status_code, int) else 0


def _text(exc: TransportError, config: OpenSearchConfig) -> str:
    error = exc.info if isinstance(exc.info, dict) else exc.error
    if isinstance(error, dict) and "Message" in error and "message" not in error:
        error = {"message": error["Message"]}  # IAM's refusals spell it with a capital M
    etype, reason = describe_error(error)
    return scrub(f"HTTP {_status(exc)} {etype}: {reason}".rstrip(": "), config.secret_values)


def _request(client: OpenSearch, method: str, path: str, body: Any = None, params: Any = None) -> Any:
    return client.transport.perform_request(method, path, body=body, params=params)


_AWS_CREDENTIAL_REFUSALS = (
    "signature we calculated does not match",
    "security token included in the request is invalid",
    "security token included in the request is expired",
    "credential should be scoped",
    "signature expired",
)
"""What AWS answers (403) when it cannot accept a SigV4 signature: the credentials, region or service."""


def _refused(exc: TransportError, config: OpenSearchConfig) -> None:
    """Raise FatalSinkError when nothing could pass with these settings (401, AWS refusing SigV4).

    A 403 from OpenSearch's security plugin (``security_exception``) is a missing permission
    on one API, for the caller to name; any other 403 to a signed request is AWS's own refusal,
    of the signature or by the access / IAM / data access policy.
    """
    text = _text(exc, config)
    if _status(exc) == 401:
        raise FatalSinkError(f"OpenSearch refused the credentials ({config.auth_setting}): {text}") from None
    if not config.aws_sigv4 or _status(exc) != 403 or "security_exception" in text:
        return
    if any(s in text.lower() for s in _AWS_CREDENTIAL_REFUSALS):
        region = config.region or config.url_region or "from the boto3 session"
        raise FatalSinkError(
            f"AWS refused the SigV4 signature ({config.auth_setting}): check the AWS credentials, "
            f"region ({region}) and aws_service: {text}"
        ) from None
    if config.aws_service == "aoss":
        grant = (
            "the collection's data access policy must allow this principal aoss:DescribeIndex, "
            "aoss:CreateIndex and aoss:WriteDocument on the indices"
        )
    else:
        grant = (
            "the domain's access policy or the principal's IAM policy must allow es:ESHttpGet, "
            "es:ESHttpHead and es:ESHttpPost"
        )
    raise FatalSinkError(f"AWS refused the request ({config.auth_setting}): {grant}: {text}") from None


def _info(client: OpenSearch, config: OpenSearchConfig) -> dict[str, Any] | None:
    """``GET /``; None where it may not be read (403, or Serverless, which has no such API)."""
    if config.aws_service == "aoss":
        return None
    try:
        return dict(client.info())
    except OpenSearchConnectionError as exc:
        raise RetryableError(
            scrub(
                f"cannot reach OpenSearch at {_where(config)}: {type(exc).__name__}: {exc}",
                config.secret_values,
            )
        ) from None
    except TransportError as exc:
        _refused(exc, config)
        if _status(exc) == 403:
            return None
        raise RetryableError(f"OpenSearch at {_where(config)} answered {_text(exc, config)}") from None


def _version_problem(info: dict[str, Any], details: dict[str, Any]) -> str | None:
    ver = info.get("version") if isinstance(info.get("version"), dict) else {}
    assert isinstance(ver, dict)
    details["distribution"] = ver.get("distribution")
    details["version"] = number = str(ver.get("number", "?"))
    if "number" not in ver:
        return "this URL is not OpenSearch: its answer to GET / has no version (a proxy or another service?)"
    if ver.get("distribution") != "opensearch":
        return (
            f"{details['version']} at this URL is not OpenSearch (cluster info says distribution "
            f"{ver.get('distribution')!r}); use the elastic sink for Elasticsearch"
        )
    parts = tuple(int(p) for p in number.split(".")[:2] if p.isdigit())
    if parts[:1] == (7,):  # compatibility.override_main_response_version: 1.x (or a 2.x) posing as 7.10.2
        return (
            f"OpenSearch answering as {number} is in compatibility mode (OpenSearch 1.x, or 2.x with "
            "compatibility.override_main_response_version = true), which hides its version: trailrelay's "
            "template needs 2.7 or later (flat_object); on 2.7+, set that setting to false and run again"
        )
    if len(parts) == 2 and parts < _MIN_VERSION:
        return f"OpenSearch {number} is too old: trailrelay's template needs 2.7 or later (flat_object)"
    return None


def _exists(client: OpenSearch, target: Target) -> bool:
    try:
        if target.data_stream:
            _request(client, "GET", f"/_data_stream/{target.name}")
            return True
        return bool(client.indices.exists(index=target.name))
    except NotFoundError:
        return False


def _installed_template(client: OpenSearch, name: str) -> dict[str, Any] | None:
    try:
        found = _request(client, "GET", f"/_index_template/{name}").get("index_templates", [])
    except NotFoundError:
        return None
    return found[0]["index_template"] if found else None


def _kind(target: Target) -> str:
    return f"data stream {target.name}" if target.data_stream else f"index {target.name}"


def check_cluster(client: OpenSearch, config: OpenSearchConfig) -> CheckResult:
    """Connect, verify it is OpenSearch (2.7+), the credentials, the target and write blocks.

    Fails when the target could not be looked up: "ready to write" names only what was read.
    The summary ends with the notes: what was not checked, and why.
    """
    target = config.target
    problems: list[str] = []
    notes: list[str] = []
    details: dict[str, Any] = {"target": target.name, "data_stream": target.data_stream}
    info = _info(client, config)
    if info is None:
        notes.append(
            "version not checked: Serverless has no cluster info"
            if config.aws_service == "aoss"
            else "version not checked: GET / was refused (it needs cluster:monitor/main)"
        )
    else:
        problem = _version_problem(info, details)
        if problem:
            problems.append(problem)
    _whoami(client, config, details, notes)
    try:
        exists: bool | None = _exists(client, target)
    except TransportError as exc:
        _refused(exc, config)
        permission = "indices:admin/data_stream/get" if target.data_stream else "indices:admin/get"
        need = f": grant {permission} on it" if _status(exc) == 403 else ""
        problems.append(f"could not look up {_kind(target)}{need} ({_text(exc, config)})")
        exists = None
    details["target_exists"] = exists
    if exists is False:
        problems.extend(_missing_target(client, config, notes))
    if not problems:
        problems.extend(_write_blocks(client, config, notes, exists=bool(exists)))
    details["problems"] = problems
    details["notes"] = notes
    said = "".join(f"; note: {n}" for n in notes)
    if problems:
        return CheckResult(False, "; ".join(problems) + said, details)
    version = f" {details['version']}" if "version" in details else ""
    return CheckResult(
        True, f"OpenSearch{version} at {_where(config)}: ready to write to {target.name}{said}", details
    )


def _whoami(client: OpenSearch, config: OpenSearchConfig, details: dict[str, Any], notes: list[str]) -> None:
    """The user and roles the security plugin sees (there is no privileges API to ask more)."""
    if config.aws_sigv4:
        notes.append(
            "SigV4: write permission is decided by IAM / the data access policy, checked on first send"
        )
        return
    try:
        who = _request(client, "GET", "/_plugins/_security/authinfo")
    except TransportError as exc:
        _refused(exc, config)
        notes.append(f"user not checked (security plugin absent or hidden): {_text(exc, config)}")
        return
    if isinstance(who, dict):
        details["user"] = who.get("user_name")
        details["roles"] = who.get("roles")
        notes.append(
            f"user {who.get('user_name')} (roles {', '.join(who.get('roles') or []) or 'none'}) needs "
            "indices:data/write/bulk* and indices:admin/create on the targets; checked on first send"
        )


def _missing_target(client: OpenSearch, config: OpenSearchConfig, notes: list[str]) -> list[str]:
    """Problems when the target does not exist yet (no template, or auto-creation is off)."""
    target = config.target
    if _auto_create_off(client, config, notes):
        fix = "run `trailrelay opensearch setup`"
        return [f"{target.name} does not exist and action.auto_create_index is off: {fix}"]
    name = template_name(target)
    try:
        template = _installed_template(client, name)
    except TransportError as exc:
        _refused(exc, config)
        unknown = f"whether template {name} will create it is unknown ({_text(exc, config)})"
        if not target.data_stream:
            notes.append(f"index {target.name} does not exist yet; {unknown}")
            return []
        return [
            (
                f"data stream {target.name} does not exist and {unknown}: grant "
                "indices:admin/index_template/get to check it, or run `trailrelay opensearch setup`"
            )
        ]
    if template is not None:
        notes.append(f"{target.name} does not exist yet; template {name} creates it on first write")
        return []
    if target.data_stream:
        return [
            (
                f"data stream {target.name} is missing and no trailrelay template matches it (a first "
                "write would make a plain index with dynamic mappings): run `trailrelay opensearch setup`"
            )
        ]
    notes.append(
        f"index {target.name} does not exist yet; OpenSearch creates it with dynamic mappings on first write"
    )
    return []


def _auto_create_off(client: OpenSearch, config: OpenSearchConfig, notes: list[str]) -> bool:
    try:
        settings = client.cluster.get_settings(params={"flat_settings": "true"})
    except TransportError as exc:
        _refused(exc, config)
        notes.append(f"action.auto_create_index not checked: {_text(exc, config)}")
        return False
    values = [settings.get(s, {}).get("action.auto_create_index") for s in ("transient", "persistent")]
    return any(str(v).lower() == "false" for v in values)


def _write_blocks(
    client: OpenSearch, config: OpenSearchConfig, notes: list[str], *, exists: bool
) -> list[str]:
    """Problems from cluster-wide read-only settings and write blocks on the target."""
    if config.aws_service == "aoss":
        return []
    problems: list[str] = []
    try:
        settings = client.cluster.get_settings(params={"flat_settings": "true"})
        problems.extend(
            f"the cluster is read-only ({key} = true in {scope} settings)"
            for scope in ("persistent", "transient")
            for key in ("cluster.blocks.read_only", "cluster.blocks.read_only_allow_delete")
            if str(settings.get(scope, {}).get(key)).lower() == "true"
        )
    except TransportError as exc:
        _refused(exc, config)
        notes.append(f"cluster read-only blocks not checked: {_text(exc, config)}")
    if exists:
        try:
            indices = _request(
                client,
                "GET",
                f"/{config.target.name}/_settings/index.blocks.*",
                params={"flat_settings": "true"},
            )
            for index, body in indices.items():
                problems.extend(
                    f"{index} is read-only ({key} = true)"
                    for key, value in body.get("settings", {}).items()
                    if key
                    in ("index.blocks.write", "index.blocks.read_only", "index.blocks.read_only_allow_delete")
                    and str(value).lower() == "true"
                )
        except TransportError as exc:
            _refused(exc, config)
            notes.append(f"write blocks on {config.target.name} not checked: {_text(exc, config)}")
    return problems


@dataclass
class SetupReport:
    """What ``setup`` found and did: one line per step, and whether the sink is ready."""

    ok: bool = True
    lines: list[str] = field(default_factory=list)
    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)

    def fail(self, line: str) -> SetupReport:
        """Record a failed step."""
        self.ok = False
        self.lines.append(line)
        return self


def run_setup(
    client: OpenSearch, config: OpenSearchConfig, *, dry_run: bool = False, detector: bool = False
) -> SetupReport:
    """Install the templates, the ISM policy and (``detector``) a Security Analytics detector; idempotent.

    ``GET /`` first, as ``check`` does: a URL where nothing listens, or whose cluster is not
    OpenSearch 2.7 or later, is one SinkError naming it, before anything is read or written.
    """
    info = _info(client, config)
    problem = _version_problem(info, {}) if info is not None else None
    if problem:
        raise FatalSinkError(f"{_where(config)}: {problem}")
    report = SetupReport()
    if config.aws_service == "aoss":
        report.lines.append(
            f"skipped: ingest pipeline {INGESTED_PIPELINE} (Serverless): documents get no "
            f"{ARRIVAL_FIELD}, so the exported monitors select them by @timestamp, the event time"
        )
    else:  # before the template: a template naming a missing final_pipeline would fail every write
        try:
            _put_pipeline(client, report, dry_run=dry_run)
        except TransportError as exc:
            return report.fail(f"failed to install ingest pipeline {INGESTED_PIPELINE}: {_text(exc, config)}")
    for target, body, cloudtrail in (
        (config.target, cloudtrail_template(config), True),
        (config.integrity_target, integrity_template(config), False),
    ):
        name = template_name(target)
        try:
            if _put_template(client, name, body, report, dry_run=dry_run) and cloudtrail:
                _existing_target_note(client, config, report)
        except TransportError as exc:
            return report.fail(f"failed to install index template {name}: {_text(exc, config)}")
    if config.aws_service == "aoss":
        report.lines.append(
            "skipped: ISM (OpenSearch Serverless keeps data by its data lifecycle policy; "
            "set retention there)"
        )
    else:  # the CloudTrail target's first: it may hand the integrity target's patterns over
        for pid, body in ism_policies(config).items():
            try:
                _put_policy(client, config, pid, body, report, dry_run=dry_run)
            except TransportError as exc:
                return report.fail(f"failed to install ISM policy {pid}: {_text(exc, config)}")
            if not report.ok:
                return report
    if detector:
        try:
            _put_detector(client, config, report, dry_run=dry_run)
        except TransportError as exc:
            return report.fail(f"failed to create the Security Analytics detector: {_text(exc, config)}")
    return report


def _put_template(
    client: OpenSearch, name: str, body: dict[str, Any], report: SetupReport, *, dry_run: bool
) -> bool:
    """Install or update the template if it differs; whether it was written."""
    current = _installed_template(client, name)
    label = f"index template {name}"
    wanted = {k: v for k, v in body.items() if k != "_meta"}  # _meta says who wrote it, not what it does
    done = _plan(report, label, body, current, _difference(current, wanted), dry_run=dry_run)
    if done is None:
        return False
    client.indices.put_index_template(name=name, body=body)
    report.lines.append(done)
    return True


def _put_pipeline(client: OpenSearch, report: SetupReport, *, dry_run: bool) -> None:
    body = ingest_pipeline()
    try:
        current = client.ingest.get_pipeline(id=INGESTED_PIPELINE).get(INGESTED_PIPELINE)
    except NotFoundError:
        current = None
    label = f"ingest pipeline {INGESTED_PIPELINE}"
    done = _plan(report, label, body, current, _difference(current, body), dry_run=dry_run)
    if done is None:
        return
    client.ingest.put_pipeline(id=INGESTED_PIPELINE, body=body)
    report.lines.append(done)


def _existing_target_note(client: OpenSearch, config: OpenSearchConfig, report: SetupReport) -> None:
    """A template applies to indices created after it: say how the existing target gets the pipeline."""
    if config.aws_service == "aoss" or not _exists(client, config.target):
        return
    target = config.target.name
    if config.target.data_stream:
        how = f"from its next backing index on; to start now: POST {target}/_rollover"
    else:
        how = f'once you run PUT {target}/_settings {{"index.final_pipeline": "{INGESTED_PIPELINE}"}}'
    report.lines.append(f"note: {target} already exists: its new documents get {ARRIVAL_FIELD} {how}")


def _plan(
    report: SetupReport,
    label: str,
    body: dict[str, Any],
    current: Any,
    difference: str | None,
    *,
    dry_run: bool,
) -> str | None:
    """The line to report once the caller has written ``body``; None (reported) if current or dry run."""
    if current is not None and difference is None:
        report.lines.append(f"unchanged: {label} is up to date")
        return None
    done = f"installed: {label}" if current is None else f"updated: {label}: {difference}"
    if dry_run:
        report.lines.append(f"would {'install' if current is None else 'update'}: {done.split(': ', 1)[1]}")
        report.bodies[label] = body
        return None
    return done


def _difference(installed: Any, wanted: Any, path: str = "") -> str | None:
    """Where ``installed`` differs from what trailrelay sets (``wanted``); None when it has all of it.

    What the server adds (ISM's ``retry`` and timestamps, a data stream's ``timestamp_field``) is
    not a difference; settings come back as strings (``"2000"``), so scalars compare as text.
    """
    where = path or "the top level"
    if isinstance(wanted, dict):
        if not isinstance(installed, dict):
            return f"installed content differs at {where}"
        for key, value in wanted.items():
            if key not in installed:
                return f"installed content lacks {path + '.' if path else ''}{key}"
            found = _difference(installed[key], value, f"{path + '.' if path else ''}{key}")
            if found:
                return found
        return None
    if isinstance(wanted, list):
        if not isinstance(installed, list) or len(installed) != len(wanted):
            return f"installed content differs at {where}"
        for n, (have, want) in enumerate(zip(installed, wanted, strict=True)):
            found = _difference(have, want, f"{path}[{n}]")
            if found:
                return found
        return None
    if _scalar(installed) != _scalar(wanted):
        return f"installed content differs at {where}"
    return None


def _scalar(value: Any) -> Any:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if isinstance(value, int | float | str) else value


def _put_policy(
    client: OpenSearch,
    config: OpenSearchConfig,
    pid: str,
    body: dict[str, Any],
    report: SetupReport,
    *,
    dry_run: bool,
) -> None:
    days = config.retention_days
    names = [p for p in body["policy"]["ism_template"][0]["index_patterns"] if not p.startswith(".ds-")]
    if body["policy"]["states"][0]["actions"]:
        keeps = f"roll over daily, delete each backing index {days} days after its creation"
    else:
        keeps = f"delete each index whole {days} days after its creation"
    label = f"ISM policy {pid} ({' and '.join(names)}: {keeps})"
    try:
        current = _request(client, "GET", f"/_plugins/_ism/policies/{pid}")
    except NotFoundError:
        current = None
    if current is not None and not (
        isinstance(current, dict)
        and isinstance(current.get("_seq_no"), int)
        and isinstance(current.get("_primary_term"), int)
    ):
        report.fail(
            f"failed to read ISM policy {pid}: the answer to GET /_plugins/_ism/policies/{pid} has no "
            "_seq_no and _primary_term (is the ISM plugin installed?)"
        )
        return
    installed = current.get("policy") if current is not None else None
    done = _plan(report, label, body, current, _difference(installed, body["policy"]), dry_run=dry_run)
    if done is None:
        return
    params = None
    if current is not None:  # ISM updates are optimistic: name the version being replaced
        params = {"if_seq_no": current["_seq_no"], "if_primary_term": current["_primary_term"]}
    _request(client, "PUT", f"/_plugins/_ism/policies/{pid}", body=body, params=params)
    report.lines.append(done)
    report.lines.append(
        f"note: the policy applies to indices created from now on (ISM ism_template, {content_hash(body)})"
    )


def _put_detector(
    client: OpenSearch, config: OpenSearchConfig, report: SetupReport, *, dry_run: bool
) -> None:
    name = detector_name(config)
    found = _request(
        client,
        "POST",
        f"{_SA}/detectors/_search",
        body={"query": {"nested": {"path": "detector", "query": {"match": {"detector.name": name}}}}},
    )
    hits = [h for h in found.get("hits", {}).get("hits", []) if h.get("_source", {}).get("name") == name]
    if hits:
        report.lines.append(
            f"unchanged: Security Analytics detector '{name}' exists (id {hits[0].get('_id')})"
        )
        return
    rules = _request(
        client, "POST", f"{_SA}/rules/_search", body=rules_query(), params={"pre_packaged": "true"}
    )
    rule_ids = [h["_id"] for h in rules.get("hits", {}).get("hits", []) if h.get("_id")]
    if not rule_ids:
        report.fail("no pre-packaged cloudtrail rules found: is the Security Analytics plugin installed?")
        return
    mappings, body = field_mappings(config), detector_body(config, rule_ids)
    if dry_run:
        report.lines.append(f"would create: field mappings for log type cloudtrail on {config.target.name}")
        report.lines.append(f"would create: Security Analytics detector '{name}' with {len(rule_ids)} rules")
        report.bodies["field mappings"] = mappings
        report.bodies["detector"] = body
        return
    if not _exists(client, config.target):  # aliases need the index (or data stream) to exist
        if config.target.data_stream:
            _request(client, "PUT", f"/_data_stream/{config.target.name}")
        else:
            client.indices.create(index=config.target.name)
        report.lines.append(f"created: {config.target.name} (the detector's field mappings need it)")
    _request(client, "POST", f"{_SA}/mappings", body=mappings)
    report.lines.append(f"created: field mappings (aliases) for log type cloudtrail on {config.target.name}")
    created = _request(client, "POST", f"{_SA}/detectors", body=body)
    report.lines.append(
        f"created: Security Analytics detector '{name}' (id {created.get('_id')}) with {len(rule_ids)} rules"
    )
