"""Read-only checks (``trailrelay check``) and template set-up (``trailrelay elastic setup``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from elastic_transport import ConnectionError as TransportConnectionError
from elastic_transport import TransportError
from elasticsearch import ApiError, Elasticsearch, NotFoundError, UnsupportedProductError

from trailrelay.contract import CheckResult, FatalSinkError, RetryableError, SinkError, scrub
from trailrelay_elastic.client import unreachable
from trailrelay_elastic.config import ElasticConfig
from trailrelay_elastic.responses import describe_error
from trailrelay_elastic.templates import (
    COMPONENT_TEMPLATE,
    INGESTED_PIPELINE,
    INTEGRATION_TEMPLATE,
    component_template,
    index_template,
    index_template_name,
    ingest_pipeline,
)

__all__ = ["SetupReport", "check_cluster", "run_setup"]

INSTALL_INTEGRATION_HINT = (
    "install the assets of Elastic's AWS integration once: in Kibana open Management > Integrations > "
    "AWS > Settings and click 'Install AWS assets' (no Elastic Agent is needed), or call the Fleet API "
    "`POST kbn:/api/fleet/epm/packages/aws`; then run `trailrelay elastic setup` again"
)


def _where(config: ElasticConfig) -> str:
    return "Elastic Cloud" if config.cloud_id else ", ".join(config.urls)


def _error_text(exc: ApiError, config: ElasticConfig) -> str:
    status = exc.meta.status if exc.meta is not None else 0
    etype, reason = describe_error(exc.body.get("error") if isinstance(exc.body, dict) else exc.body)
    return scrub(f"HTTP {status} {etype}: {reason}", config.secret_values)


def _status(exc: ApiError) -> int:
    return exc.meta.status if exc.meta is not None else 0


def _info(client: Elasticsearch, config: ElasticConfig) -> dict[str, Any] | None:
    """``GET /``; None when the credentials lack the monitor privilege it needs."""
    try:
        return dict(client.info().body)
    except UnsupportedProductError:
        raise FatalSinkError(
            f"{_where(config)} did not identify itself as Elasticsearch (no X-Elastic-Product header)"
        ) from None
    except ApiError as exc:
        if _status(exc) == 401:
            raise FatalSinkError(
                f"bad credentials: Elasticsearch refused them: {_error_text(exc, config)}"
            ) from None
        if _status(exc) == 403:
            return None
        raise RetryableError(
            f"Elasticsearch at {_where(config)} answered {_error_text(exc, config)}"
        ) from None
    except (TransportConnectionError, TransportError) as exc:
        raise RetryableError(
            scrub(
                unreachable(_where(config), exc),
                config.secret_values,
            )
        ) from None


def _target_exists(client: Elasticsearch, config: ElasticConfig, notes: list[str]) -> bool | None:
    target = config.target
    try:
        if target.data_stream is not None:
            client.indices.get_data_stream(name=target.name)
            return True
        return bool(client.indices.exists(index=target.name))
    except NotFoundError:
        return False
    except ApiError as exc:
        notes.append(f"could not look up {target.name}: {_error_text(exc, config)}")
        return None


def _template_exists(client: Elasticsearch, name: str) -> bool:
    return bool(client.indices.exists_index_template(name=name))


# The cluster privilege each template and pipeline API needs (Elasticsearch's API reference):
# reading and writing index and component templates: manage_index_templates (monitor may read
# them on recent 8.x); reading an ingest pipeline: read_pipeline; writing one: manage_pipeline.
# manage_ingest_pipelines and manage, broader, cover these too.
_READ_TEMPLATES = "manage_index_templates (or monitor, which may read them)"
_WRITE = {
    "ingest pipeline": "manage_pipeline",
    "component": "manage_index_templates",
    "index": "manage_index_templates",
}


def _refused(exc: ApiError, config: ElasticConfig, doing: str, privilege: str) -> SinkError:
    """The error for an API call of setup or check that Elasticsearch refused, naming the privilege."""
    status = _status(exc)
    if status == 401:
        return FatalSinkError(f"bad credentials: Elasticsearch refused them: {_error_text(exc, config)}")
    if status == 403:
        reason = f": {_error_text(exc, config)}" if isinstance(exc.body, dict) else ""
        return FatalSinkError(
            f"Elasticsearch refused {doing} (HTTP 403): the credentials need the cluster privilege "
            f"{privilege}{reason}"
        )
    return RetryableError(f"{doing} failed: {_error_text(exc, config)}")


def check_cluster(client: Elasticsearch, config: ElasticConfig) -> CheckResult:
    """Connect, verify product and version, write privileges, the target and write blocks."""
    target = config.target.name
    problems: list[str] = []
    notes: list[str] = []
    details: dict[str, Any] = {"target": target, "mode": config.mode}
    info = _info(client, config)
    if info is None:
        notes.append("cannot read cluster info (the credentials lack the monitor privilege)")
    else:
        ver = info.get("version", {})
        number = str(ver.get("number", "?"))
        details["version"] = number
        details["build_flavor"] = ver.get("build_flavor")
        major = number.split(".", 1)[0]
        if major.isdigit() and int(major) < 8:
            problems.append(f"Elasticsearch {number} is too old: trailrelay needs 8.x or 9.x")

    exists = _target_exists(client, config, notes)
    details["target_exists"] = exists
    privileges = ["create_doc"] if exists else ["create_doc", "auto_configure"]
    try:
        resp = client.security.has_privileges(index=[{"names": [target], "privileges": privileges}]).body
        details["user"] = resp.get("username")
        granted = resp.get("index", {}).get(target, {})
        missing = [p for p in privileges if not granted.get(p)]
        if missing:
            problems.append(
                f"user {resp.get('username')} lacks the index privilege(s) {', '.join(missing)} on {target}"
            )
    except ApiError as exc:
        if _status(exc) == 401:
            raise FatalSinkError(
                f"bad credentials: Elasticsearch refused them: {_error_text(exc, config)}"
            ) from None
        notes.append(f"privileges not checked (security may be disabled): {_error_text(exc, config)}")

    if exists is False:
        template = INTEGRATION_TEMPLATE if config.mode == "integration" else index_template_name(config)
        try:
            has_template: bool | None = _template_exists(client, template)
        except ApiError as exc:
            if _status(exc) != 403:
                raise _refused(exc, config, f"reading index template {template}", _READ_TEMPLATES) from None
            has_template = None
        if config.target.data_stream is None:
            notes.append(f"index {target} does not exist yet; Elasticsearch creates it on first write")
        elif has_template:
            notes.append(
                f"data stream {target} does not exist yet; "
                f"index template {template} creates it on first write"
            )
        elif has_template is None:
            problems.append(
                f"data stream {target} is missing and whether index template {template} exists to "
                f"create it is unknown: reading it needs the cluster privilege {_READ_TEMPLATES} "
                "(Elasticsearch answered 403)"
            )
        elif config.mode == "integration":
            problems.append(
                f"data stream {target} is missing and so is the integration's index template: "
                f"{INSTALL_INTEGRATION_HINT}"
            )
        else:
            problems.append(
                f"data stream {target} is missing and has no trailrelay index template: "
                "run `trailrelay elastic setup`"
            )

    problems.extend(_write_blocks(client, config, notes, exists=bool(exists)))
    ok = not problems
    details["problems"] = problems
    details["notes"] = notes
    if ok:
        summary = (
            f"Elasticsearch {details.get('version', '?')} at {_where(config)}: ready to write to {target}"
        )
    else:
        summary = "; ".join(problems)
    return CheckResult(ok, summary, details)


def _truthy(value: Any) -> bool:
    return str(value).lower() == "true"


def _write_blocks(
    client: Elasticsearch, config: ElasticConfig, notes: list[str], *, exists: bool
) -> list[str]:
    """Problems from cluster-wide read-only settings and write blocks on the target."""
    problems: list[str] = []
    try:
        settings = client.cluster.get_settings(flat_settings=True).body
        problems.extend(
            f"the cluster is read-only ({key} = true in {scope} settings)"
            for scope in ("persistent", "transient")
            for key in ("cluster.blocks.read_only", "cluster.blocks.read_only_allow_delete")
            if _truthy(settings.get(scope, {}).get(key))
        )
    except ApiError as exc:
        notes.append(f"cluster settings not checked: {_error_text(exc, config)}")
    if exists:
        target = config.target.name
        try:
            indices = client.indices.get_settings(
                index=target, name="index.blocks.*", flat_settings=True
            ).body
            for index, body in indices.items():
                for key, value in body.get("settings", {}).items():
                    if key in (
                        "index.blocks.write",
                        "index.blocks.read_only",
                        "index.blocks.read_only_allow_delete",
                    ) and _truthy(value):
                        problems.append(f"{index} is read-only ({key} = true)")
        except ApiError as exc:
            notes.append(f"index blocks not checked: {_error_text(exc, config)}")
    return problems


@dataclass
class SetupReport:
    """What ``setup`` found and did: one line per step, and whether the sink is ready."""

    ok: bool = True
    lines: list[str] = field(default_factory=list)
    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)


def _existing_hash(client: Elasticsearch, kind: str, name: str) -> str | None:
    """The ``_meta.content_hash`` of an installed template or pipeline (``""`` without); None if absent."""
    try:
        if kind == "ingest pipeline":
            body = client.ingest.get_pipeline(id=name).body.get(name)
        elif kind == "component":
            found = client.cluster.get_component_template(name=name).body.get("component_templates", [])
            body = found[0]["component_template"] if found else None
        else:
            found = client.indices.get_index_template(name=name).body.get("index_templates", [])
            body = found[0]["index_template"] if found else None
    except NotFoundError:
        return None
    if body is None:
        return None
    return str(body.get("_meta", {}).get("content_hash", ""))


def run_setup(client: Elasticsearch, config: ElasticConfig, *, dry_run: bool = False) -> SetupReport:
    """Install (ecs) or verify (integration) what the target needs; idempotent; no change on dry run.

    ``GET /`` first, as ``check`` does: a URL where nothing listens or that is not Elasticsearch
    is one SinkError naming it, before any template is read.
    """
    _info(client, config)
    report = SetupReport()
    if config.mode == "integration":
        _verify_integration(client, config, report)
        return report
    steps = [  # the pipeline first: a template naming a missing final_pipeline would fail every write
        ("ingest pipeline", INGESTED_PIPELINE, ingest_pipeline()),
        ("component", COMPONENT_TEMPLATE, component_template()),
        ("index", index_template_name(config), index_template(config)),
    ]
    for kind, name, body in steps:
        wanted = body["_meta"]["content_hash"]
        label = f"{kind} {name}" if kind == "ingest pipeline" else f"{kind} template {name}"
        try:
            current = _existing_hash(client, kind, name)
        except ApiError as exc:  # setup installs what it reads: name the privilege that does both
            raise _refused(exc, config, f"reading {label}", _WRITE[kind]) from None
        if current == wanted:
            report.lines.append(f"unchanged: {label} is up to date")
            continue
        verb = "install" if current is None else "update"
        if dry_run:
            report.lines.append(f"would {verb}: {label}")
            report.bodies[label] = body
            continue
        try:
            if kind == "ingest pipeline":
                client.ingest.put_pipeline(
                    id=name,
                    description=body["description"],
                    processors=body["processors"],
                    meta=body["_meta"],
                )
            elif kind == "component":
                client.cluster.put_component_template(
                    name=name, template=body["template"], meta=body["_meta"]
                )
            else:
                client.indices.put_index_template(
                    name=name,
                    index_patterns=body["index_patterns"],
                    priority=body["priority"],
                    composed_of=body["composed_of"],
                    template=body["template"],
                    data_stream=body.get("data_stream"),
                    meta=body["_meta"],
                )
        except ApiError as exc:
            report.ok = False
            needs = (
                f"; the credentials need the cluster privilege {_WRITE[kind]}" if _status(exc) == 403 else ""
            )
            report.lines.append(f"failed to {verb} {label}: {_error_text(exc, config)}{needs}")
            return report
        report.lines.append(f"{'installed' if verb == 'install' else 'updated'}: {label}")
        if kind == "index" and _target_exists(client, config, []):
            report.lines.append(_existing_target_note(config))
    try:
        integration = _template_exists(client, INTEGRATION_TEMPLATE)
    except ApiError:  # only for the note below: setup itself is done
        integration = False
    if integration:
        report.lines.append(
            f"note: Elastic's AWS integration is installed too; {index_template_name(config)} "
            f"(priority 250) wins for {config.target.name}, so the integration's pipeline does not "
            "re-process these ECS documents"
        )
    return report


def _existing_target_note(config: ElasticConfig) -> str:
    """The template applies to indices created after it: how to give the existing target the pipeline."""
    target = config.target.name
    if config.target.data_stream is not None:
        how = f"from its next backing index on; to start now: POST {target}/_rollover"
    else:
        how = f'once you run PUT {target}/_settings {{"index.final_pipeline": "{INGESTED_PIPELINE}"}}'
    return f"note: {target} already exists: its new documents get event.ingested {how}"


def _verify_integration(client: Elasticsearch, config: ElasticConfig, report: SetupReport) -> None:
    """Check that Elastic's AWS integration template (and its ingest pipeline) are installed."""
    try:
        found = client.indices.get_index_template(name=INTEGRATION_TEMPLATE).body.get("index_templates", [])
    except NotFoundError:
        found = []
    except ApiError as exc:
        raise _refused(
            exc, config, f"reading index template {INTEGRATION_TEMPLATE}", _READ_TEMPLATES
        ) from None
    if not found:
        report.ok = False
        report.lines.append(f"missing: index template {INTEGRATION_TEMPLATE} of Elastic's AWS integration")
        report.lines.append(f"to fix: {INSTALL_INTEGRATION_HINT}")
        return
    template = found[0]["index_template"]
    package = template.get("_meta", {}).get("package", {})
    label = f"aws integration {package.get('version', '')}".strip()
    report.lines.append(f"found: index template {INTEGRATION_TEMPLATE} ({label})")
    pipeline = template.get("template", {}).get("settings", {}).get("index", {}).get("default_pipeline")
    if pipeline:
        try:
            client.ingest.get_pipeline(id=pipeline)
            report.lines.append(f"found: ingest pipeline {pipeline}")
        except NotFoundError:
            report.ok = False
            report.lines.append(
                f"missing: ingest pipeline {pipeline} named by the template; {INSTALL_INTEGRATION_HINT}"
            )
        except ApiError as exc:
            raise _refused(exc, config, f"reading ingest pipeline {pipeline}", "read_pipeline") from None
    report.lines.append("nothing to install: integration mode writes what the integration expects")
