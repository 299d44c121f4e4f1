"""Index and component templates and the ingest pipeline for ``ecs`` mode; the integration's template name.

The mappings cover every field :mod:`.ecs` writes: keywords for identifiers, ``date`` for
times, ``ip`` for addresses, and ``flattened`` for the request/response objects, whose keys
differ per API call (dynamic object mappings would explode and conflict across event types).

The index template names :data:`INGESTED_PIPELINE` as the indices' ``final_pipeline``: it sets
``event.ingested`` to the time Elasticsearch received the document, as the final pipeline
Fleet installs does for the integration's data streams. The exported detection rules select
documents by ``event.ingested`` (``timestamp_override``), so a CloudTrail event delivered
late is still alerted on; without the field Kibana would fall back to ``@timestamp``, the
event time.
"""

from __future__ import annotations

import hashlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import orjson

from trailrelay_elastic.config import ElasticConfig

__all__ = [
    "COMPONENT_TEMPLATE",
    "INGESTED_PIPELINE",
    "INTEGRATION_TEMPLATE",
    "component_template",
    "index_template",
    "index_template_name",
    "ingest_pipeline",
    "template_hash",
]

INTEGRATION_TEMPLATE = "logs-aws.cloudtrail"
"""The index template Elastic's AWS integration installs for its CloudTrail data stream."""
COMPONENT_TEMPLATE = "trailrelay-aws.cloudtrail-ecs@mappings"
INGESTED_PIPELINE = "trailrelay-aws.cloudtrail-ecs@ingested"
"""The ingest pipeline that stamps ``event.ingested`` (the index template's ``final_pipeline``)."""
PRIORITY = 250
"""Above the integration's templates (200) and Elasticsearch's built-in ``logs`` template (100)."""

_KW: dict[str, Any] = {"type": "keyword", "ignore_above": 1024}
_DATE: dict[str, Any] = {"type": "date"}
_IP: dict[str, Any] = {"type": "ip"}
_BOOL: dict[str, Any] = {"type": "boolean"}
_FLAT: dict[str, Any] = {"type": "flattened", "ignore_above": 8191}
"""Elastic's own mapping sets no limit (an inline policy or a certificate runs past 1,024
characters); 8191 keeps every leaf under Lucene's 32,766-byte term limit in any UTF-8."""
# Request/response text can be long: keep it whole for exact match up to 8191 chars (32 KiB of
# UTF-8, Lucene's term limit) and searchable as text beyond that.
_LONG_TEXT: dict[str, Any] = {
    "type": "keyword",
    "ignore_above": 8191,
    "fields": {"text": {"type": "match_only_text"}},
}
_TEXT_KW: dict[str, Any] = {
    "type": "keyword",
    "ignore_above": 1024,
    "fields": {"text": {"type": "match_only_text"}},
}


def _obj(**props: Any) -> dict[str, Any]:
    return {"properties": props}


def _kws(*names: str) -> dict[str, Any]:
    return dict.fromkeys(names, _KW)


def _mappings() -> dict[str, Any]:
    session_context = _obj(
        mfa_authenticated=_KW,
        creation_date=_DATE,
        ec2_role_delivery=_KW,
        source_identity=_KW,
        assumed_root=_KW,
        sign_in_session_arn=_KW,
        session_issuer=_obj(**_kws("type", "principal_id", "arn", "account_id")),
        web_id_federation_data=_obj(federated_provider=_KW, attributes=_FLAT),
    )
    user_identity = _obj(
        **_kws(
            "type", "arn", "access_key_id", "principal_id", "invoked_by", "credential_id", "identity_provider"
        ),
        session_context=session_context,
        on_behalf_of=_obj(**_kws("user_id", "identity_store_arn")),
        in_scope_of=_obj(**_kws("issuer_type", "credentials_issued_to", "source_arn", "source_account")),
        invoked_by_delegate=_obj(account_id=_KW),
    )
    cloudtrail = _obj(
        **_kws(
            "event_version",
            "event_type",
            "event_category",
            "error_code",
            "request_id",
            "api_version",
            "management_event",
            "recipient_account_id",
            "shared_event_id",
            "vpc_endpoint_id",
            "vpc_endpoint_account_id",
            "session_credential_from_console",
        ),
        error_message=_TEXT_KW,
        read_only=_BOOL,
        request_parameters=_LONG_TEXT,
        response_elements=_LONG_TEXT,
        additional_eventdata=_LONG_TEXT,
        service_event_details=_LONG_TEXT,
        flattened=_obj(
            request_parameters=_FLAT,
            response_elements=_FLAT,
            additional_eventdata=_FLAT,
            service_event_details=_FLAT,
            digest=_FLAT,
            insight_details=_FLAT,
        ),
        user_identity=user_identity,
        console_login=_obj(additional_eventdata=_obj(login_to=_KW, mfa_used=_BOOL, mobile_version=_BOOL)),
        resources=_obj(**_kws("arn", "account_id", "type")),
        addendum=_obj(**_kws("reason", "updated_fields", "original_request_id", "original_event_id")),
        tls_details=_obj(key_exchange=_KW),
    )
    return {
        "dynamic_templates": [
            {
                "strings_as_keyword": {
                    "match_mapping_type": "string",
                    "mapping": {"type": "keyword", "ignore_above": 1024},
                }
            }
        ],
        "properties": {
            "@timestamp": _DATE,
            "data_stream": _obj(
                type={"type": "constant_keyword"},
                dataset={"type": "constant_keyword"},
                namespace={"type": "constant_keyword"},
            ),
            "ecs": _obj(version=_KW),
            "tags": _KW,
            "message": {"type": "match_only_text"},
            "event": _obj(
                **_kws(
                    "action", "provider", "outcome", "id", "kind", "category", "type", "dataset", "module"
                ),
                created=_DATE,
                ingested=_DATE,
            ),
            "user": _obj(
                **_kws("name", "id", "email"),
                target=_obj(**_kws("name", "id")),
                changes=_obj(name=_KW),
            ),
            "group": _obj(**_kws("id", "name")),
            "source": _obj(address=_KW, ip=_IP),
            "cloud": _obj(account=_obj(id=_KW), region=_KW, provider=_KW, service=_obj(name=_KW)),
            "user_agent": _obj(
                original={
                    "type": "keyword",
                    "ignore_above": 1024,
                    "fields": {"text": {"type": "match_only_text"}},
                },
                name=_KW,
                version=_KW,
                os=_obj(**_kws("name", "version", "full")),
                device=_obj(name=_KW),
            ),
            "tls": _obj(version=_KW, version_protocol=_KW, cipher=_KW, client=_obj(server_name=_KW)),
            "related": _obj(user=_KW, hosts=_KW, hash=_KW, ip=_IP),
            "file": _obj(path=_KW),
            "log": _obj(file=_obj(path=_KW)),
            "rule": _obj(**_kws("id", "name", "ruleset")),
            "threat": _obj(framework=_KW, technique=_obj(id=_KW)),
            "trailrelay": _obj(detections=_obj(**_kws("rule_id", "title", "severity", "technique"))),
            "aws": _obj(
                s3=_obj(bucket=_obj(**_kws("name", "arn")), object=_obj(key=_KW)),
                cloudtrail=cloudtrail,
            ),
        },
    }


def _package_version() -> str:
    try:
        return version("trailrelay-elastic")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


def template_hash(body: dict[str, Any]) -> str:
    """A short content hash of a template body (without its ``_meta``), kept in ``_meta`` to spot changes."""
    content = {k: v for k, v in body.items() if k != "_meta"}
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _with_meta(body: dict[str, Any], description: str) -> dict[str, Any]:
    body["_meta"] = {
        "managed_by": "trailrelay",
        "description": description,
        "trailrelay_elastic_version": _package_version(),
        "content_hash": template_hash(body),
    }
    return body


def component_template() -> dict[str, Any]:
    """The component template with the ECS-mode mappings."""
    return _with_meta(
        {"template": {"mappings": _mappings()}},
        "Mappings for CloudTrail documents that trailrelay maps to ECS itself (mode = ecs).",
    )


def ingest_pipeline() -> dict[str, Any]:
    """The pipeline that sets ``event.ingested`` to the time Elasticsearch received the document."""
    return _with_meta(
        {
            "description": "trailrelay: event.ingested = when Elasticsearch received the document",
            "processors": [
                {
                    "set": {
                        "tag": "trailrelay-event-ingested",
                        "field": "event.ingested",
                        "value": "{{{_ingest.timestamp}}}",
                    }
                }
            ],
        },
        "Stamps the arrival time the exported detection rules select by (timestamp_override).",
    )


def index_template_name(config: ElasticConfig) -> str:
    """Name of the index template ``setup`` installs for the configured target."""
    return f"trailrelay-ecs-{config.target.name}"


def index_template(config: ElasticConfig) -> dict[str, Any]:
    """The index template for exactly the configured target (a data stream unless ``index`` is set)."""
    target = config.target
    body: dict[str, Any] = {
        "index_patterns": [target.name],
        "priority": PRIORITY,
        "composed_of": [COMPONENT_TEMPLATE],
        "template": {
            "settings": {
                "index": {"mapping": {"total_fields": {"limit": 2000}}, "final_pipeline": INGESTED_PIPELINE}
            }
        },
    }
    if target.data_stream is not None:
        body["data_stream"] = {}
    return _with_meta(body, f"trailrelay ECS-mode documents in {target.name}.")
