"""pySigma processing pipelines for ``product: aws, service: cloudtrail``, one per SIEM.

None of the pySigma backends ships one. Each pipeline renames the CloudTrail field names the
rules use to the names the SIEM holds *as trailrelay's connector delivers the events*:

* **Splunk** (``sourcetype="aws:cloudtrail"``): the connector sends the record unchanged, so
  the search-time JSON field names are CloudTrail's own; elements of arrays are addressed with
  ``{}`` (``requestParameters.eventSelectors{}.readWriteType``), which needs to know which
  fields are arrays (:data:`ARRAY_FIELDS`).
* **Elastic** (integration or ecs mode): ``event.provider``/``event.action``,
  ``aws.cloudtrail.*`` and the ``flattened`` copies of the request, response and additional data
  (``aws.cloudtrail.flattened.request_parameters.enable``), as Elastic's AWS integration pipeline
  and our ECS mapping write them.
* **Sentinel** (``AWSCloudTrail``): PascalCase columns. Boolean columns and fields inside the
  JSON-text columns (``RequestParameters`` ...) are compared as text through ``extend``
  (``tostring(parse_json(RequestParameters)["enable"])``); a field inside an array is matched as
  ``"name":value`` text in the compact JSON the connector writes. String columns are never null
  in Log Analytics, so Sigma ``null`` becomes ``isempty()``.
* **OpenSearch** (``logs-aws.cloudtrail-*``): the connector keeps CloudTrail's own names, so a
  field keeps its name; ``requestParameters``, ``responseElements`` and the other free-form
  subtrees are ``flat_object`` fields, searched by dotted path. Only a field whose first part
  is a CloudTrail record field (:data:`CLOUDTRAIL_FIELDS`) or one of the fields the connector
  adds (``@timestamp``, ``cloud.*``, ``trailrelay.*``) is accepted.

A field a pipeline cannot place is an error naming the field, never a query that silently
searches a field that does not exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson
from sigma.correlations import SigmaCorrelationRule
from sigma.exceptions import SigmaTransformationError
from sigma.processing.conditions import LogsourceCondition
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline, QueryPostprocessingItem
from sigma.processing.postprocessing import QueryPostprocessingTransformation
from sigma.processing.transformations.base import DetectionItemTransformation
from sigma.processing.transformations.condition import AddConditionTransformation
from sigma.processing.transformations.failure import RuleFailureTransformation
from sigma.processing.transformations.fields import FieldFunctionTransformation
from sigma.rule import SigmaDetection, SigmaDetectionItem, SigmaRule
from sigma.types import (
    SigmaBool,
    SigmaExists,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaString,
    SigmaType,
    SpecialChars,
)

from trailrelay.detection.fields import CLOUDTRAIL_FIELDS

__all__ = [
    "ARRAY_FIELDS",
    "CLOUDTRAIL_FIELDS",
    "ELASTIC_FIELDS",
    "SENTINEL_COLUMNS",
    "SENTINEL_TABLE",
    "SPLUNK_SOURCETYPE",
    "SentinelTarget",
    "elastic_field",
    "elastic_pipeline",
    "opensearch_field",
    "opensearch_pipeline",
    "sentinel_pipeline",
    "sentinel_table",
    "sentinel_target",
    "splunk_field",
    "splunk_pipeline",
]

SPLUNK_SOURCETYPE = "aws:cloudtrail"
SENTINEL_TABLE = "AWSCloudTrail"

ARRAY_FIELDS: frozenset[str] = frozenset(
    {
        "resources",
        "requestParameters.eventSelectors",
        "requestParameters.eventSelectors.dataResources",
        "requestParameters.eventSelectors.dataResources.values",
        "requestParameters.eventSelectors.excludeManagementEventSources",
        "requestParameters.advancedEventSelectors",
        "requestParameters.advancedEventSelectors.fieldSelectors",
        "requestParameters.advancedEventSelectors.fieldSelectors.equals",
        "requestParameters.advancedEventSelectors.fieldSelectors.notEquals",
        "requestParameters.advancedEventSelectors.fieldSelectors.startsWith",
        "requestParameters.advancedEventSelectors.fieldSelectors.notStartsWith",
        "requestParameters.ipPermissions.items",
        "requestParameters.ipPermissions.items.ipRanges.items",
        "requestParameters.instancesSet.items",
        "responseElements.instancesSet.items",
        "requestParameters.bucketPolicy.Statement",
        "requestParameters.policyDocument.Statement",
    }
)
"""CloudTrail fields known to hold arrays (Splunk addresses their elements with ``{}``)."""

_CLOUDTRAIL_ONLY = "trailrelay's pipelines convert rules for logsource product aws, service cloudtrail only"

# --- Splunk ---------------------------------------------------------------------------------


def splunk_field(name: str | None) -> str:
    """The search-time field name in ``sourcetype="aws:cloudtrail"``: CloudTrail's, ``{}`` on arrays."""
    if name is None:
        return name  # type: ignore[return-value]  # keywords stay keywords
    parts = name.split(".")
    out: list[str] = []
    path: list[str] = []
    for part in parts:
        path.append(part)
        out.append(part + "{}" if ".".join(path) in ARRAY_FIELDS else part)
    return ".".join(out)


def splunk_pipeline(
    *, index: str | None = None, index_window_minutes: int | None = None
) -> ProcessingPipeline:
    """Field names for ``sourcetype="aws:cloudtrail"``; optionally an index and an index-time window.

    ``index_window_minutes`` adds ``_index_earliest=-Nm@m _index_latest=@m``: a scheduled alert
    then sees every event once, however late CloudTrail delivered it.
    """
    scope: dict[str, str | int | list[str]] = {"sourcetype": SPLUNK_SOURCETYPE}
    if index:
        scope = {"index": index, **scope}
    if index_window_minutes:
        scope["_index_earliest"] = f"-{index_window_minutes}m@m"
        scope["_index_latest"] = "@m"
    return ProcessingPipeline(
        name="trailrelay AWS CloudTrail to Splunk (aws:cloudtrail)",
        priority=20,
        items=[
            _cloudtrail_only(),
            ProcessingItem(
                identifier="trailrelay_splunk_fields",
                transformation=FieldFunctionTransformation(transform_func=splunk_field, mapping={}),
            ),
            ProcessingItem(
                identifier="trailrelay_splunk_scope",
                transformation=AddConditionTransformation(conditions=scope, name="_trailrelay_scope"),
            ),
        ],
    )


def _cloudtrail_only() -> ProcessingItem:
    return ProcessingItem(
        identifier="trailrelay_cloudtrail_only",
        transformation=RuleFailureTransformation(_CLOUDTRAIL_ONLY),
        rule_conditions=[LogsourceCondition(product="aws", service="cloudtrail")],
        rule_condition_negation=True,
    )


# --- Elastic --------------------------------------------------------------------------------

_CT = "aws.cloudtrail."
ELASTIC_FIELDS: dict[str, str] = {
    "eventTime": "@timestamp",
    "eventSource": "event.provider",
    "eventName": "event.action",
    "eventID": "event.id",
    "eventType": _CT + "event_type",
    "eventVersion": _CT + "event_version",
    "eventCategory": _CT + "event_category",
    "managementEvent": _CT + "management_event",
    "readOnly": _CT + "read_only",
    "errorCode": _CT + "error_code",
    "errorMessage": _CT + "error_message",
    "recipientAccountId": _CT + "recipient_account_id",
    "requestID": _CT + "request_id",
    "apiVersion": _CT + "api_version",
    "sharedEventID": _CT + "shared_event_id",
    "vpcEndpointId": _CT + "vpc_endpoint_id",
    "awsRegion": "cloud.region",
    "sourceIPAddress": "source.address",
    "userAgent": "user_agent.original",
    "userIdentity.type": _CT + "user_identity.type",
    "userIdentity.arn": _CT + "user_identity.arn",
    "userIdentity.accessKeyId": _CT + "user_identity.access_key_id",
    "userIdentity.invokedBy": _CT + "user_identity.invoked_by",
    "userIdentity.sessionContext.attributes.mfaAuthenticated": _CT
    + "user_identity.session_context.mfa_authenticated",
    "userIdentity.sessionContext.attributes.creationDate": _CT
    + "user_identity.session_context.creation_date",
    "userIdentity.sessionContext.sessionIssuer.type": _CT
    + "user_identity.session_context.session_issuer.type",
    "userIdentity.sessionContext.sessionIssuer.arn": _CT + "user_identity.session_context.session_issuer.arn",
    "userIdentity.sessionContext.sessionIssuer.principalId": _CT
    + "user_identity.session_context.session_issuer.principal_id",
    "userIdentity.sessionContext.sessionIssuer.accountId": _CT
    + "user_identity.session_context.session_issuer.account_id",
    "requestParameters": _CT + "request_parameters",
    "responseElements": _CT + "response_elements",
    "additionalEventData": _CT + "additional_eventdata",
    "serviceEventDetails": _CT + "service_event_details",
    "resources.ARN": _CT + "resources.arn",
    "resources.accountId": _CT + "resources.account_id",
    "resources.type": _CT + "resources.type",
}
"""CloudTrail field -> field of Elastic's ``aws.cloudtrail`` documents (integration and ecs mode)."""

_ELASTIC_NOT_EXACT = {
    "userIdentity.accountId": "cloud.account.id holds recipientAccountId when the caller has no "
    "account id (AWS services), so it would match events the rule does not",
    "userIdentity.userName": "user.name holds the session issuer's role name for assumed roles and "
    "federated users, so it would match events the rule does not",
}
"""Fields whose ECS counterpart holds other values too: refused rather than exported loosely."""

_ELASTIC_FLATTENED = {
    "requestParameters.": _CT + "flattened.request_parameters.",
    "responseElements.": _CT + "flattened.response_elements.",
    "additionalEventData.": _CT + "flattened.additional_eventdata.",
    "serviceEventDetails.": _CT + "flattened.service_event_details.",
}


def elastic_field(name: str | None) -> str:
    """The Elastic field for a CloudTrail field; SigmaTransformationError when there is none."""
    if name is None:
        return name  # type: ignore[return-value]
    mapped = ELASTIC_FIELDS.get(name)
    if mapped is not None:
        return mapped
    if name in _ELASTIC_NOT_EXACT:
        raise SigmaTransformationError(
            f"field {name!r} has no exact counterpart in Elastic's aws.cloudtrail documents (integration "
            f"or ecs mode): {_ELASTIC_NOT_EXACT[name]}; match userIdentity.arn instead (it holds the "
            "account id and the user or role name)"
        )
    for prefix, target in _ELASTIC_FLATTENED.items():
        if name.startswith(prefix):
            return target + name[len(prefix) :]
    raise SigmaTransformationError(
        f"field {name!r} has no counterpart in Elastic's aws.cloudtrail documents "
        "(see trailrelay.detection.pipelines.ELASTIC_FIELDS)"
    )


def elastic_pipeline() -> ProcessingPipeline:
    """Field names of the ``aws.cloudtrail`` data stream (Elastic's integration or trailrelay's ECS mode)."""
    return ProcessingPipeline(
        name="trailrelay AWS CloudTrail to Elastic (aws.cloudtrail)",
        priority=20,
        items=[
            _cloudtrail_only(),
            ProcessingItem(
                identifier="trailrelay_elastic_fields",
                transformation=FieldFunctionTransformation(transform_func=elastic_field, mapping={}),
            ),
        ],
    )


# --- Sentinel -------------------------------------------------------------------------------

SENTINEL_COLUMNS: dict[str, str] = {
    "eventSource": "EventSource",
    "eventName": "EventName",
    "eventID": "AwsEventId",
    "eventVersion": "EventVersion",
    "eventType": "EventTypeName",
    "eventCategory": "Category",
    "errorCode": "ErrorCode",
    "errorMessage": "ErrorMessage",
    "awsRegion": "AWSRegion",
    "sourceIPAddress": "SourceIpAddress",
    "userAgent": "UserAgent",
    "recipientAccountId": "RecipientAccountId",
    "requestID": "AwsRequestId_",
    "apiVersion": "APIVersion",
    "sharedEventID": "SharedEventId",
    "vpcEndpointId": "VpcEndpointId",
    "userIdentity.type": "UserIdentityType",
    "userIdentity.principalId": "UserIdentityPrincipalid",
    "userIdentity.arn": "UserIdentityArn",
    "userIdentity.accountId": "UserIdentityAccountId",
    "userIdentity.accessKeyId": "UserIdentityAccessKeyId",
    "userIdentity.userName": "UserIdentityUserName",
    "userIdentity.invokedBy": "UserIdentityInvokedBy",
    "userIdentity.sessionContext.sessionIssuer.type": "SessionIssuerType",
    "userIdentity.sessionContext.sessionIssuer.principalId": "SessionIssuerPrincipalId",
    "userIdentity.sessionContext.sessionIssuer.arn": "SessionIssuerArn",
    "userIdentity.sessionContext.sessionIssuer.accountId": "SessionIssuerAccountId",
    "userIdentity.sessionContext.sessionIssuer.userName": "SessionIssuerUserName",
    "userIdentity.sessionContext.ec2RoleDelivery": "EC2RoleDelivery",
    "tlsDetails.tlsVersion": "TlsVersion",
    "tlsDetails.cipherSuite": "CipherSuite",
    "tlsDetails.clientProvidedHostHeader": "ClientProvidedHostHeader",
}
"""CloudTrail field -> ``AWSCloudTrail`` string column."""

_SENTINEL_BOOLEANS = {
    "readOnly": "ReadOnly",
    "managementEvent": "ManagementEvent",
    "userIdentity.sessionContext.attributes.mfaAuthenticated": "SessionMfaAuthenticated",
}
_SENTINEL_JSON = {
    "requestParameters": "RequestParameters",
    "responseElements": "ResponseElements",
    "additionalEventData": "AdditionalEventData",
    "resources": "Resources",
    "serviceEventDetails": "ServiceEventDetails",
}
_EXTEND_STATE = "trailrelay_sentinel_extend"
_UNSAFE = re.compile(r"\W")


@dataclass(frozen=True, slots=True)
class SentinelTarget:
    """Where a CloudTrail field lives in ``AWSCloudTrail`` and how to compare it."""

    column: str
    """The column (or extended column) the query compares."""
    extend: str | None = None
    """KQL expression for ``| extend column = ...`` when the column is computed."""
    json_text: bool = False
    """True when the field is inside an array: matched as ``"name":value`` text in ``column``."""
    leaf: str | None = None


def sentinel_target(name: str) -> SentinelTarget:
    """How a CloudTrail field is reached in ``AWSCloudTrail``; SigmaTransformationError if it is not."""
    if name in SENTINEL_COLUMNS:
        return SentinelTarget(SENTINEL_COLUMNS[name])
    if name in _SENTINEL_BOOLEANS:
        flag = _SENTINEL_BOOLEANS[name]
        return SentinelTarget(f"{flag}_text", f"tostring({flag})")
    head, _, rest = name.partition(".")
    column = _SENTINEL_JSON.get(head)
    if column is None:
        raise SigmaTransformationError(
            f"field {name!r} has no AWSCloudTrail column "
            "(see trailrelay.detection.pipelines.SENTINEL_COLUMNS)"
        )
    if not rest:
        return SentinelTarget(column)
    keys = rest.split(".")
    path = head
    for key in keys[:-1]:
        path += "." + key
        if path in ARRAY_FIELDS:
            return SentinelTarget(column, json_text=True, leaf=keys[-1])
    access = "".join(f"[{orjson.dumps(k).decode()}]" for k in keys)
    extended = _UNSAFE.sub("_", f"{column}_{'_'.join(keys)}")
    return SentinelTarget(extended, f"tostring(parse_json({column}){access})")


def _text_value(value: SigmaType) -> SigmaType:
    """Booleans and numbers as the text ``tostring()`` gives; Sigma null as "empty"."""
    if isinstance(value, SigmaBool):
        return SigmaString("true" if value.boolean else "false")
    if isinstance(value, SigmaNumber):
        return SigmaString(str(value.number))
    return value


def _json_fragment(leaf: str, value: SigmaType, name: str) -> SigmaString | SigmaRegularExpression:
    """``*"leaf":<json value>*``: a contains-match on compact JSON text (an element match for arrays)."""
    if isinstance(value, SigmaBool):
        literal: Any = value.boolean
    elif isinstance(value, SigmaNumber):
        literal = value.number
    elif isinstance(value, SigmaString) and not value.contains_special():
        literal = "".join(p for p in value.s if isinstance(p, str))
    else:
        raise SigmaTransformationError(
            f"field {name!r} is inside an array in RequestParameters-style JSON text; the Sentinel export "
            "can only match exact strings, numbers and booleans there"
        )
    if name in ARRAY_FIELDS:  # the leaf holds an array: the value is one of its elements
        return _element_regex(leaf, literal)
    text = orjson.dumps({leaf: literal}).decode()[1:-1]
    out = SigmaString("")
    out.s = [SpecialChars.WILDCARD_MULTI, text, SpecialChars.WILDCARD_MULTI]
    return out


_JSON_ELEMENT = r'(?:"(?:[^"\\]|\\.)*"|[^\[\]{},"]+)'
"""One string, number, boolean or null element of a compact JSON array (no nested arrays or objects)."""


def _element_regex(leaf: str, literal: Any) -> SigmaRegularExpression:
    """``"leaf":[..., <literal>, ...]`` in compact JSON text: the elements before it, then it."""
    key = re.escape(orjson.dumps(leaf).decode())
    value = re.escape(orjson.dumps(literal).decode())
    return SigmaRegularExpression(f"{key}:\\[(?:{_JSON_ELEMENT},)*{value}[,\\]]")


@dataclass
class SentinelFieldsTransformation(DetectionItemTransformation):
    """Rename fields to AWSCloudTrail columns, computing extended columns where needed."""

    def apply_detection_item(
        self, detection_item: SigmaDetectionItem
    ) -> SigmaDetection | SigmaDetectionItem | None:
        """Rewrite one ``field: values`` item for the AWSCloudTrail table."""
        name = detection_item.field
        if name is None:
            raise SigmaTransformationError(
                "keyword searches (values without a field) are not exported to Sentinel"
            )
        target = sentinel_target(name)
        values = detection_item.value
        if target.json_text:
            assert target.leaf is not None
            if any(isinstance(v, (SigmaNull, SigmaExists)) for v in values):
                raise SigmaTransformationError(
                    f"field {name!r} is inside an array; "
                    "null/exists tests on it cannot be exported to Sentinel"
                )
            values = [_json_fragment(target.leaf, v, name) for v in values]
        else:
            values = [SigmaExists(exists=False) if isinstance(v, SigmaNull) else v for v in values]
            if target.extend is not None:
                values = [_text_value(v) for v in values]
                if self._pipeline is not None:
                    self._pipeline.state.setdefault(_EXTEND_STATE, {})[target.column] = target.extend
        return SigmaDetectionItem(
            field=target.column,
            modifiers=[],
            value=values,
            value_linking=detection_item.value_linking,
            negated=detection_item.negated,
        )


@dataclass
class SentinelQueryTransformation(QueryPostprocessingTransformation):
    """Prefix each query with the table and the ``extend`` of computed columns."""

    table: str = field(default=SENTINEL_TABLE)

    def apply(self, rule: SigmaRule | SigmaCorrelationRule, query: Any) -> Any:
        """``AWSCloudTrail | extend ... | where <query>``."""
        super().apply(rule, query)
        state = self._pipeline.state if self._pipeline is not None else {}
        extend: dict[str, str] = state.get(_EXTEND_STATE, {})
        lines = [self.table]
        if extend:
            lines.append("| extend " + ", ".join(f"{k} = {v}" for k, v in sorted(extend.items())))
        lines.append(f"| where {query}")
        return "\n".join(lines)


_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")


def sentinel_table(name: str | None) -> str:
    """The table the queries read: ``AWSCloudTrail`` or a custom ``Name_CL`` with its columns.

    ValueError for a name that is not a Log Analytics table name (it would go into the KQL as is).
    """
    if name is None:
        return SENTINEL_TABLE
    if not _TABLE_NAME.match(name) or not (name == SENTINEL_TABLE or name.endswith("_CL")):
        raise ValueError(
            f"--index {name!r} is not a Sentinel table for CloudTrail: use {SENTINEL_TABLE} (the default) "
            "or the custom table `trailrelay sentinel template --custom-table` made (letters, digits "
            "and _, ending in _CL)"
        )
    return name


def sentinel_pipeline(table: str = SENTINEL_TABLE) -> ProcessingPipeline:
    """Columns of ``AWSCloudTrail`` (or a custom table with its columns) as the connector fills them."""
    return ProcessingPipeline(
        name="trailrelay AWS CloudTrail to Microsoft Sentinel (AWSCloudTrail)",
        priority=20,
        items=[
            _cloudtrail_only(),
            ProcessingItem(
                identifier="trailrelay_sentinel_fields", transformation=SentinelFieldsTransformation()
            ),
        ],
        postprocessing_items=[
            QueryPostprocessingItem(
                identifier="trailrelay_sentinel_table",
                transformation=SentinelQueryTransformation(table=table),
            )
        ],
    )


# --- OpenSearch -----------------------------------------------------------------------------


_OPENSEARCH_ADDED = frozenset({"@timestamp", "cloud", "trailrelay"})


def opensearch_field(name: str | None) -> str:
    """The field of trailrelay's OpenSearch documents for a CloudTrail field: the same name."""
    if name is None:
        return name  # type: ignore[return-value]  # keywords stay keywords
    head = name.split(".", 1)[0]
    if head in CLOUDTRAIL_FIELDS or head in _OPENSEARCH_ADDED:
        return name
    raise SigmaTransformationError(
        f"field {name!r} is not a CloudTrail record field, so trailrelay's OpenSearch documents "
        "do not hold it (see trailrelay.detection.pipelines.CLOUDTRAIL_FIELDS)"
    )


def opensearch_pipeline() -> ProcessingPipeline:
    """Field names of trailrelay's OpenSearch documents (CloudTrail's own, in ``logs-aws.cloudtrail-*``)."""
    return ProcessingPipeline(
        name="trailrelay AWS CloudTrail to OpenSearch (CloudTrail field names)",
        priority=20,
        items=[
            _cloudtrail_only(),
            ProcessingItem(
                identifier="trailrelay_opensearch_fields",
                transformation=FieldFunctionTransformation(transform_func=opensearch_field, mapping={}),
            ),
        ],
    )
