"""The index templates, ingest pipeline and ISM retention policy ``trailrelay opensearch setup`` installs.

CloudTrail's own field names are mapped as they are: keywords for identifiers, ``date`` for
times, booleans. The per-API objects (``requestParameters``, ``responseElements``,
``additionalEventData``, ``serviceEventDetails`` and the rarer free-form ones) are
``flat_object`` (OpenSearch 2.7+): one field each, searchable by dotted path
(``requestParameters.bucketName: finance``), where dynamic mapping would create thousands of
fields that conflict across APIs (one API's ``filter`` is a string, another's an object).

The CloudTrail template names :data:`INGESTED_PIPELINE` as the indices' ``final_pipeline``: it
sets ``trailrelay.ingested`` (:data:`ARRIVAL_FIELD`) to the time OpenSearch received the
document. The exported Alerting monitors select documents by it, so a CloudTrail event
delivered late (its ``@timestamp`` long past) is still alerted on. Serverless collections get
no pipeline (setup says so): there the monitors fall back to ``@timestamp``.
"""

from __future__ import annotations

import hashlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import orjson

from trailrelay_opensearch.config import OpenSearchConfig, Target

__all__ = [
    "ARRIVAL_FIELD",
    "FLAT_OBJECT_FIELDS",
    "INGESTED_PIPELINE",
    "PRIORITY",
    "cloudtrail_template",
    "content_hash",
    "ingest_pipeline",
    "integrity_template",
    "ism_policies",
    "policy_id",
    "template_name",
]

PRIORITY = 250
"""Above OpenSearch's and Wazuh's own templates for ``logs-*`` patterns."""
INGESTED_PIPELINE = "trailrelay-cloudtrail@ingested"
"""The ingest pipeline that stamps :data:`ARRIVAL_FIELD` (the CloudTrail template's ``final_pipeline``)."""
ARRIVAL_FIELD = "trailrelay.ingested"
"""When OpenSearch received the document: what the exported monitors select by."""

FLAT_OBJECT_FIELDS = (
    "requestParameters",
    "responseElements",
    "additionalEventData",
    "serviceEventDetails",
    "insightDetails",
    "edgeDeviceDetails",
)
"""Free-form CloudTrail objects whose keys differ per API: one flat_object each."""

_KW: dict[str, Any] = {"type": "keyword", "ignore_above": 1024}
_TEXT_KW: dict[str, Any] = {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 1024}}}
_DATE: dict[str, Any] = {"type": "date"}
_BOOL: dict[str, Any] = {"type": "boolean"}


def _obj(**props: Any) -> dict[str, Any]:
    return {"properties": props}


def _kws(*names: str) -> dict[str, Any]:
    return dict.fromkeys(names, _KW)


def _cloudtrail_mappings() -> dict[str, Any]:
    session_context = _obj(
        attributes=_obj(creationDate=_DATE, mfaAuthenticated=_KW),
        sessionIssuer=_obj(**_kws("type", "principalId", "arn", "accountId", "userName")),
        **_kws("sourceIdentity", "ec2RoleDelivery"),
    )
    return {
        # Everything else a record may carry (new CloudTrail fields, Logstash's additions) is a
        # keyword; numbers and booleans keep their dynamic types.
        "dynamic_templates": [
            {"strings_as_keyword": {"match_mapping_type": "string", "mapping": _KW}},
        ],
        "properties": {
            "@timestamp": _DATE,
            "eventTime": _DATE,
            **_kws(
                "eventVersion",
                "eventSource",
                "eventName",
                "eventID",
                "eventType",
                "eventCategory",
                "awsRegion",
                "sourceIPAddress",
                "errorCode",
                "requestID",
                "recipientAccountId",
                "sharedEventID",
                "apiVersion",
                "vpcEndpointId",
                "vpcEndpointAccountId",
                "sessionCredentialFromConsole",
            ),
            "userAgent": _TEXT_KW,
            "errorMessage": _TEXT_KW,
            "readOnly": _BOOL,
            "managementEvent": _BOOL,
            "userIdentity": _obj(
                **_kws(
                    "type",
                    "principalId",
                    "arn",
                    "accountId",
                    "accessKeyId",
                    "userName",
                    "invokedBy",
                    "identityProvider",
                    "credentialId",
                ),
                sessionContext=session_context,
            ),
            "resources": _obj(**_kws("ARN", "accountId", "type")),
            "tlsDetails": _obj(**_kws("tlsVersion", "cipherSuite", "clientProvidedHostHeader")),
            **{name: {"type": "flat_object"} for name in FLAT_OBJECT_FIELDS},
            "cloud": _obj(provider=_KW, region=_KW, account=_obj(id=_KW)),
            "trailrelay": _obj(
                origin=_KW,
                ingested=_DATE,
                rule_id=_KW,
                severity=_KW,
                technique=_KW,
                detections=_obj(**_kws("rule_id", "title", "severity", "technique")),
            ),
        },
    }


def _integrity_mappings() -> dict[str, Any]:
    return {
        "dynamic_templates": [{"strings_as_keyword": {"match_mapping_type": "string", "mapping": _KW}}],
        "properties": {
            "@timestamp": _DATE,
            "message": {"type": "text"},
            "event": _obj(**_kws("kind", "outcome", "action")),
            "cloud": _obj(provider=_KW, region=_KW, account=_obj(id=_KW)),
            "trailrelay": _obj(
                integrity=_obj(
                    verified_at=_DATE,
                    window_start=_DATE,
                    window_end=_DATE,
                    digest_start=_DATE,
                    digest_end=_DATE,
                    problems={"type": "flat_object"},
                    counts={"type": "object"},
                ),
                rule_id=_KW,
                severity=_KW,
                technique=_KW,
            ),
        },
    }


def _package_version() -> str:
    try:
        return version("trailrelay-opensearch")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


def content_hash(body: dict[str, Any]) -> str:
    """A short hash of a body without its ``_meta``, kept in ``_meta`` to tell whether it changed."""
    content = {k: v for k, v in body.items() if k != "_meta"}
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def _template(
    target: Target, mappings: dict[str, Any], what: str, final_pipeline: str | None = None
) -> dict[str, Any]:
    index: dict[str, Any] = {"mapping": {"total_fields": {"limit": 2000}}}
    if final_pipeline is not None:
        index["final_pipeline"] = final_pipeline
    body: dict[str, Any] = {
        "index_patterns": [target.name],
        "priority": PRIORITY,
        "template": {"settings": {"index": index}, "mappings": mappings},
    }
    if target.data_stream:
        body["data_stream"] = {}
    body["_meta"] = {
        "managed_by": "trailrelay",
        "description": f"trailrelay {what} in {target.name}",
        "trailrelay_opensearch_version": _package_version(),
        "content_hash": content_hash(body),
    }
    return body


def template_name(target: Target) -> str:
    """Name of the index template for one target."""
    return f"trailrelay-{target.name}"


def cloudtrail_template(config: OpenSearchConfig) -> dict[str, Any]:
    """The index (or data stream) template for the CloudTrail target (with the arrival-time pipeline)."""
    pipeline = None if config.aws_service == "aoss" else INGESTED_PIPELINE
    return _template(
        config.target, _cloudtrail_mappings(), "CloudTrail records as CloudTrail names them", pipeline
    )


def ingest_pipeline() -> dict[str, Any]:
    """The pipeline that sets :data:`ARRIVAL_FIELD` to when OpenSearch received the document.

    Its content hash ends the description (as the ISM policy's does) to tell whether it changed.
    """
    body: dict[str, Any] = {
        "description": f"trailrelay: {ARRIVAL_FIELD} = when OpenSearch received the document",
        "processors": [
            {
                "set": {
                    "tag": "trailrelay-ingested",
                    "field": ARRIVAL_FIELD,
                    "value": "{{{_ingest.timestamp}}}",
                }
            }
        ],
    }
    body["description"] += f" [{content_hash(body)}]"
    return body


def integrity_template(config: OpenSearchConfig) -> dict[str, Any]:
    """The index (or data stream) template for integrity events."""
    return _template(config.integrity_target, _integrity_mappings(), "integrity events")


def policy_id(config: OpenSearchConfig) -> str:
    """Name of the ISM policy for the CloudTrail target (and the integrity target when of its kind)."""
    return f"trailrelay-{config.namespace}-retention"


def ism_policies(config: OpenSearchConfig) -> dict[str, dict[str, Any]]:
    """The ISM policies by id: one for both targets, or one each when only one is a data stream.

    ISM does not delete a data stream's write index, so data streams roll over (daily, or at
    30 GB per primary shard) and each backing index is deleted ``retention_days`` after its
    creation. A plain index cannot roll over without a rollover alias: it is deleted whole,
    everything in it, ``retention_days`` after its creation.
    """
    target, integrity = config.target, config.integrity_target
    if target.data_stream == integrity.data_stream:
        return {
            policy_id(config): _ism_policy(config, [target, integrity], "CloudTrail and integrity events")
        }
    return {
        policy_id(config): _ism_policy(config, [target], "CloudTrail events"),
        f"trailrelay-{config.namespace}-integrity-retention": _ism_policy(
            config, [integrity], "integrity events"
        ),
    }


def _ism_policy(config: OpenSearchConfig, targets: list[Target], what: str) -> dict[str, Any]:
    """A policy for targets of one kind: all data streams, or all plain indices."""
    streams = targets[0].data_stream
    hot_actions: list[dict[str, Any]] = []
    if streams:
        hot_actions.append({"rollover": {"min_index_age": "1d", "min_primary_shard_size": "30gb"}})
    policy: dict[str, Any] = {
        "description": f"trailrelay: keep {what} {config.retention_days} days",
        "default_state": "hot",
        "states": [
            {
                "name": "hot",
                "actions": hot_actions,
                "transitions": [
                    {"state_name": "delete", "conditions": {"min_index_age": f"{config.retention_days}d"}}
                ],
            },
            {"name": "delete", "actions": [{"delete": {}}], "transitions": []},
        ],
        # A data stream's backing indices are .ds-<name>-000001...
        "ism_template": [
            {
                "index_patterns": [
                    p for t in targets for p in ((t.name, f".ds-{t.name}-*") if streams else (t.name,))
                ],
                "priority": PRIORITY,
            }
        ],
    }
    policy["description"] += f" [{content_hash(policy)}]"
    return {"policy": policy}
