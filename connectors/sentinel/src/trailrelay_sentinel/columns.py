"""The columns we send: one list that drives the mapper, the DCR stream and the table schema.

Names and types follow the ``AWSCloudTrail`` table reference (Azure Monitor) and were checked
against the workspace schema that Microsoft's own S3 connector fills (the ``getschema`` column
list and the ingested-log samples in Microsoft's Azure-Sentinel repository). Types are the
DCR stream types (``string``, ``boolean``, ``datetime``, ``dynamic``); the table stores JSON-bearing fields
(``RequestParameters`` ...) as ``string``, so we send them as compact JSON text.

``EventTime`` has no ``AWSCloudTrail`` column: the DCR transform writes it to the custom column
``EventTime_CF`` so the original ``eventTime`` stays queryable when Azure replaces a too-old
``TimeGenerated`` with the ingestion time (backfill). ``TrailrelayDetections`` (trailrelay's
detection tags, a ``dynamic`` JSON array) lands in the custom column ``TrailrelayDetections_CF``
the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BUILTIN_COPIES",
    "BUILTIN_TABLE",
    "COLUMNS",
    "COLUMN_NAMES",
    "DETECTIONS_COLUMN",
    "EVENT_TIME_COLUMN",
    "JSON_TEXT_COLUMNS",
    "Column",
    "table_column_name",
]

BUILTIN_TABLE = "AWSCloudTrail"
EVENT_TIME_COLUMN = "EventTime_CF"
"""Custom column added to ``AWSCloudTrail`` (custom columns on Azure tables must end in ``_CF``)."""
DETECTIONS_COLUMN = "TrailrelayDetections_CF"
"""Custom ``dynamic`` column of ``AWSCloudTrail`` with the detection tags of a record."""
BUILTIN_COPIES = {"AwsRequestId": "AwsRequestId_"}
"""``AWSCloudTrail`` columns the DCR transform fills with a copy of another stream column (both
are stored, and billed): the deprecated ``AwsRequestId`` that Microsoft's ASIM audit parser reads."""


@dataclass(frozen=True, slots=True)
class Column:
    """One column of the stream: its name, DCR type and where it comes from in CloudTrail."""

    name: str
    type: str
    source: str


COLUMNS: tuple[Column, ...] = (
    Column("TimeGenerated", "datetime", "eventTime"),
    Column("EventTime", "datetime", "eventTime (kept for backfill; EventTime_CF in AWSCloudTrail)"),
    Column("AwsEventId", "string", "eventID"),
    Column("EventVersion", "string", "eventVersion"),
    Column("EventSource", "string", "eventSource"),
    Column("EventName", "string", "eventName"),
    Column("EventTypeName", "string", "eventType"),
    Column("Category", "string", "eventCategory (derived for old events)"),
    Column("ManagementEvent", "boolean", "managementEvent"),
    Column("ReadOnly", "boolean", "readOnly"),
    Column("UserIdentityType", "string", "userIdentity.type"),
    Column("UserIdentityPrincipalid", "string", "userIdentity.principalId"),
    Column("UserIdentityArn", "string", "userIdentity.arn"),
    Column("UserIdentityAccountId", "string", "userIdentity.accountId"),
    Column("UserIdentityAccessKeyId", "string", "userIdentity.accessKeyId"),
    Column("UserIdentityUserName", "string", "userIdentity.userName"),
    Column("UserIdentityInvokedBy", "string", "userIdentity.invokedBy"),
    Column("UserIdentityUserId", "string", "userIdentity.onBehalfOf.userId (IAM Identity Center)"),
    Column(
        "UserIdentityStoreArn", "string", "userIdentity.onBehalfOf.identityStoreArn (IAM Identity Center)"
    ),
    Column("SessionMfaAuthenticated", "boolean", "userIdentity.sessionContext.attributes.mfaAuthenticated"),
    Column("SessionCreationDate", "datetime", "userIdentity.sessionContext.attributes.creationDate"),
    Column("SessionIssuerType", "string", "userIdentity.sessionContext.sessionIssuer.type"),
    Column("SessionIssuerPrincipalId", "string", "userIdentity.sessionContext.sessionIssuer.principalId"),
    Column("SessionIssuerArn", "string", "userIdentity.sessionContext.sessionIssuer.arn"),
    Column("SessionIssuerAccountId", "string", "userIdentity.sessionContext.sessionIssuer.accountId"),
    Column("SessionIssuerUserName", "string", "userIdentity.sessionContext.sessionIssuer.userName"),
    Column("EC2RoleDelivery", "string", "userIdentity.sessionContext.ec2RoleDelivery"),
    Column("AWSRegion", "string", "awsRegion"),
    Column("SourceIpAddress", "string", "sourceIPAddress"),
    Column("UserAgent", "string", "userAgent"),
    Column("ErrorCode", "string", "errorCode"),
    Column("ErrorMessage", "string", "errorMessage"),
    Column("RequestParameters", "string", "requestParameters (compact JSON text)"),
    Column("ResponseElements", "string", "responseElements (compact JSON text)"),
    Column("AdditionalEventData", "string", "additionalEventData, or insightDetails (compact JSON text)"),
    Column("Resources", "string", "resources (compact JSON text)"),
    Column("ServiceEventDetails", "string", "serviceEventDetails (compact JSON text)"),
    Column("AwsRequestId_", "string", "requestID"),
    Column("APIVersion", "string", "apiVersion"),
    Column("RecipientAccountId", "string", "recipientAccountId"),
    Column("SharedEventId", "string", "sharedEventID"),
    Column("VpcEndpointId", "string", "vpcEndpointId"),
    Column("TlsVersion", "string", "tlsDetails.tlsVersion"),
    Column("CipherSuite", "string", "tlsDetails.cipherSuite"),
    Column("ClientProvidedHostHeader", "string", "tlsDetails.clientProvidedHostHeader"),
    Column("IpProtocol", "string", "requestParameters: first security-group rule's ipProtocol"),
    Column("SourcePort", "string", "requestParameters: first security-group rule's fromPort"),
    Column("DestinationPort", "string", "requestParameters: first security-group rule's toPort"),
    Column("CidrIp", "string", "requestParameters: first security-group rule's cidrIp"),
    Column(
        "TrailrelayDetections",
        "dynamic",
        "trailrelay detection tags: [{rule_id, title, severity, technique}] (TrailrelayDetections_CF in "
        "AWSCloudTrail)",
    ),
)

COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)

JSON_TEXT_COLUMNS: frozenset[str] = frozenset(
    {"RequestParameters", "ResponseElements", "AdditionalEventData", "Resources", "ServiceEventDetails"}
)


_BUILTIN_CUSTOM = {"EventTime": EVENT_TIME_COLUMN, "TrailrelayDetections": DETECTIONS_COLUMN}


def table_column_name(name: str, *, builtin: bool) -> str:
    """The destination-table column a stream column lands in."""
    if builtin:
        return _BUILTIN_CUSTOM.get(name, name)
    return name
