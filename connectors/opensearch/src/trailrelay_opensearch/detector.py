"""The Security Analytics detector ``setup --detector`` creates: log type ``cloudtrail`` over the target.

Security Analytics' CloudTrail rules name fields by its ``cloudtrail`` log type's ECS names
(``aws.cloudtrail.event_name``, ...). Our documents keep CloudTrail's own names, so the
detector needs alias fields from those names to ours, made with the mappings API
(``POST _plugins/_security_analytics/mappings``, ``partial: true``). Aliases can only point at
concrete fields: the ``flat_object`` subtrees (``requestParameters.*``, ``responseElements.*``,
``additionalEventData.*``) get none, so the few pre-packaged rules that test them do not match
here (trailrelay's own detection tags those events before they are sent).
"""

from __future__ import annotations

from typing import Any

from trailrelay_opensearch.config import OpenSearchConfig

__all__ = [
    "DETECTOR_TYPE",
    "FIELD_ALIASES",
    "detector_body",
    "detector_name",
    "field_mappings",
    "rules_query",
]

DETECTOR_TYPE = "cloudtrail"

FIELD_ALIASES: dict[str, str] = {
    "aws.cloudtrail.event_name": "eventName",
    "aws.cloudtrail.event_source": "eventSource",
    "aws.cloudtrail.event_version": "eventVersion",
    "aws.cloudtrail.event_id": "eventID",
    "aws.cloudtrail.event_type": "eventType",
    "aws.cloudtrail.event_category": "eventCategory",
    "aws.cloudtrail.error_message": "errorMessage",
    "aws.cloudtrail.error_code": "errorCode",
    "aws.cloudtrail.api_version": "apiVersion",
    "aws.cloudtrail.aws_region": "awsRegion",
    "aws.cloudtrail.request_id": "requestID",
    "aws.cloudtrail.source_ip_address": "sourceIPAddress",
    "aws.cloudtrail.user_agent": "userAgent",
    "aws.cloudtrail.vpc_endpoint_id": "vpcEndpointId",
    "aws.cloudtrail.user_identity.type": "userIdentity.type",
    "aws.cloudtrail.user_identity.principalId": "userIdentity.principalId",
    "aws.cloudtrail.user_identity.arn": "userIdentity.arn",
    "aws.cloudtrail.user_identity.accountId": "userIdentity.accountId",
    "aws.cloudtrail.user_identity.accessKeyId": "userIdentity.accessKeyId",
    "aws.cloudtrail.user_identity.identityProvider": "userIdentity.identityProvider",
    "aws.cloudtrail.user_identity.userName": "userIdentity.userName",
    "aws.cloudtrail.user_identity.invokedBy": "userIdentity.invokedBy",
    "aws.cloudtrail.user_identity.session_context.session_issuer.type": (
        "userIdentity.sessionContext.sessionIssuer.type"
    ),
    "aws.cloudtrail.user_identity.session_context.session_issuer.arn": (
        "userIdentity.sessionContext.sessionIssuer.arn"
    ),
    "aws.cloudtrail.user_identity.session_context.attributes.creationDate": (
        "userIdentity.sessionContext.attributes.creationDate"
    ),
    "aws.cloudtrail.user_identity.session_context.attributes.mfaAuthenticated": (
        "userIdentity.sessionContext.attributes.mfaAuthenticated"
    ),
    "aws.cloudtrail.resources.ARN": "resources.ARN",
    "aws.cloudtrail.resources.type": "resources.type",
    "timestamp": "@timestamp",
}
"""Security Analytics' cloudtrail field (alias) -> the concrete field of our documents."""


def detector_name(config: OpenSearchConfig) -> str:
    """The detector's name (5-50 letters, digits, spaces, '-' or '_', as the API requires)."""
    return f"trailrelay cloudtrail {config.namespace.replace('.', '_')}"[:50]


def field_mappings(config: OpenSearchConfig) -> dict[str, Any]:
    """The body of ``POST _plugins/_security_analytics/mappings`` for the target."""
    return {
        "index_name": config.target.name,
        "rule_topic": DETECTOR_TYPE,
        "partial": True,
        "alias_mappings": {
            "properties": {alias: {"type": "alias", "path": path} for alias, path in FIELD_ALIASES.items()}
        },
    }


def rules_query(size: int = 1000) -> dict[str, Any]:
    """The rule search for every pre-packaged rule of the cloudtrail log type."""
    return {
        "from": 0,
        "size": size,
        "query": {
            "nested": {
                "path": "rule",
                "query": {"bool": {"must": [{"match": {"rule.category": DETECTOR_TYPE}}]}},
            }
        },
    }


def detector_body(config: OpenSearchConfig, rule_ids: list[str]) -> dict[str, Any]:
    """The body of ``POST _plugins/_security_analytics/detectors``: every rule, a high-severity trigger."""
    return {
        "type": "detector",
        "name": detector_name(config),
        "detector_type": DETECTOR_TYPE,
        "enabled": True,
        "schedule": {"period": {"interval": 5, "unit": "MINUTES"}},
        "inputs": [
            {
                "detector_input": {
                    "description": f"CloudTrail forwarded by trailrelay into {config.target.name}",
                    "indices": [config.target.name],
                    "pre_packaged_rules": [{"id": rid} for rid in sorted(rule_ids)],
                    "custom_rules": [],
                }
            }
        ],
        "triggers": [
            {
                "id": "trailrelay-high-severity",
                "name": "trailrelay high severity",
                "severity": "1",
                "types": [DETECTOR_TYPE],
                "sev_levels": ["high", "critical"],
                "ids": [],
                "tags": [],
                "actions": [],
            }
        ],
    }
