"""Map one CloudTrail event to the ECS document Elastic's AWS CloudTrail pipeline produces.

The reference is the ingest pipeline of Elastic's ``aws`` integration (data stream
``aws.cloudtrail``), in its newest form we could read. We follow its steps in order, because
several fields are overwritten along the way (``user.name``, ``user.id``) and ``related.user``
keeps the order values were appended in. What we deliberately do differently, and what we do
not produce (GeoIP, entity/actor/target fields), is listed in the connector's README with the
reason. In short:

* ``aws.cloudtrail.request_parameters`` (and ``response_elements``, ``additional_eventdata``,
  ``service_event_details``) hold compact JSON, not Java's ``Map.toString`` text.
* ``source.geo``/``source.as`` need MaxMind databases: run a ``pipeline`` with ``geoip`` for them.
* ``event.created``/``event.original`` are not written (no shipper timestamp; the raw record is
  kept by ``integration`` mode).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from functools import lru_cache
from typing import Any

import orjson

from trailrelay_elastic.useragent import user_agent

__all__ = ["ECS_VERSION", "MAX_KEYWORD_CHARS", "date", "is_ip", "iso_utc", "prune", "to_ecs"]

ECS_VERSION = "8.11.0"
"""The ECS version the integration's pipeline stamps into ``ecs.version``."""

MAX_KEYWORD_CHARS = 32766
"""Above this length the pipeline keeps the text form only (no ``flattened`` copy)."""

_DROP_STRINGS = frozenset({"", "-", "none"})
_UTC = dt.UTC
_SESSION_ARN = re.compile(r"^arn:[a-z0-9-]+:sts:.*/(.*)$")

# ECS categorization by event name: (event.category, event.type), as the integration assigns it.
# Events not listed get event.type ["info"] and no category.
_I, _A, _U, _G, _F = "iam", "authentication", "user", "group", "file"
_CATEGORIES: dict[str, tuple[list[str], list[str]]] = {
    "AddUserToGroup": ([_I], [_G, "change"]),
    "AssumeRole": ([_A], ["info"]),
    "AttachGroupPolicy": ([_I], [_G, "change"]),
    "AttachUserPolicy": ([_I], [_U, "change"]),
    "ChangePassword": ([_I], [_U, "change"]),
    "ConsoleLogin": ([_A], ["info"]),
    "CreateAccessKey": ([_I], [_U, "change"]),
    "CreateBucket": ([_F], ["creation"]),
    "CreateGroup": ([_I], [_G, "creation"]),
    "CreateKeyPair": ([_I], ["admin", "creation"]),
    "CreateUser": ([_I], [_U, "creation"]),
    "CreateVirtualMFADevice": ([_I], [_U, "change"]),
    "DeactivateMFADevice": ([_I], [_U, "change"]),
    "DeleteAccessKey": ([_I], [_U, "change"]),
    "DeleteBucket": ([_F], ["deletion"]),
    "DeleteGroup": ([_I], [_G, "deletion"]),
    "DeleteGroupPolicy": ([_I], [_G, "change"]),
    "DeleteSSHPublicKey": ([_I], [_U, "change"]),
    "DeleteUser": ([_I], [_U, "deletion"]),
    "DeleteUserPermissionsBoundary": ([_I], [_U, "change"]),
    "DeleteUserPolicy": ([_I], [_U, "change"]),
    "DeleteVirtualMFADevice": ([_I], [_U, "change"]),
    "DetachGroupPolicy": ([_I], [_G, "change"]),
    "DetachUserPolicy": ([_I], [_U, "change"]),
    "EnableMFADevice": ([_I], [_U, "change"]),
    "GetGroup": ([_I], [_G, "info"]),
    "GetGroupPolicy": ([_I], [_G, "info"]),
    "GetUser": ([_I], [_U, "info"]),
    "GetUserPolicy": ([_I], [_U, "info"]),
    "ListAttachedGroupPolicies": ([_I], [_G, "info"]),
    "ListAttachedUserPolicies": ([_I], [_U, "info"]),
    "ListGroupPolicies": ([_I], [_G, "info"]),
    "ListGroups": ([_I], [_G, "info"]),
    "ListGroupsForUser": ([_I], [_U, "info"]),
    "ListUserPolicies": ([_I], [_U, "info"]),
    "ListUsers": ([_I], [_U, "info"]),
    "ListUserTags": ([_I], [_U, "info"]),
    "PutGroupPolicy": ([_I], [_G, "change"]),
    "PutUserPermissionsBoundary": ([_I], [_U, "change"]),
    "PutUserPolicy": ([_I], [_U, "change"]),
    "RemoveUserFromGroup": ([_I], [_G, "change"]),
    "SetDefaultPolicyVersion": ([_I], ["admin", "change"]),
    "SetSecurityTokenServicePreferences": ([_I], ["admin", "change"]),
    "TagUser": ([_I], [_U, "change"]),
    "UntagUser": ([_I], [_U, "change"]),
    "UpdateAccessKey": ([_I], [_U, "change"]),
    "UpdateAccountPasswordPolicy": ([_I], ["admin", "change"]),
    "UpdateGroup": ([_I], [_G, "change"]),
    "UpdateLoginProfile": ([_I], [_U, "change"]),
    "UpdateRole": ([_I], ["admin", "change"]),
    "UpdateSSHPublicKey": ([_I], [_U, "change"]),
    "UpdateUser": ([_I], [_U, "change"]),
    "GetCallerIdentity": ([_A], ["info"]),
    "DescribeInstances": (["host"], ["info"]),
    "DescribeSecurityGroups": (["network"], ["info"]),
    "ListBuckets": ([_F], ["info"]),
    "DescribeNetworkInterfaces": (["network"], ["info"]),
    "DescribeRegions": (["api"], ["info"]),
    "ListRoles": ([_I], ["info"]),
    "DescribeVpcs": (["network"], ["info"]),
    "DescribeNetworkAcls": (["network"], ["info"]),
    "DescribeLoadBalancers": (["network"], ["info"]),
    "DescribeVolumes": (["host"], ["info"]),
    "DescribeTrails": (["configuration"], ["info"]),
    "ListFunctions": (["package"], ["info"]),
    "ListTables": (["database"], ["info"]),
    "ListInstanceAssociations": (["host"], ["info"]),
    "DescribeDBInstances": (["database"], ["info"]),
    "AuthorizeSecurityGroupIngress": (["network"], ["access"]),
    "CreateTopic": (["configuration"], ["creation"]),
    "Subscribe": (["configuration"], ["change"]),
    "Publish": (["api"], ["info"]),
    "SendCommand": (["process"], ["start"]),
    "GetPolicy": ([_I], ["info"]),
    "CreatePolicy": ([_I], ["creation"]),
    "ListAttachedRolePolicies": ([_I], ["info"]),
    "AttachRolePolicy": ([_I], ["change"]),
    "Converse": (["api"], ["info"]),
    "CreateDocument": ([_F], ["creation"]),
    "StartSession": (["session"], ["start"]),
    "CreateControlChannel": (["session"], ["start"]),
    "OpenControlChannel": (["session"], ["start"]),
    "CreateDataChannel": (["session"], ["start"]),
    "OpenDataChannel": (["session"], ["start"]),
    "TerminateSession": (["session"], ["end"]),
    "ListObjects": ([_F], ["info"]),
    "HeadObject": ([_F], ["info"]),
    "GetObject": ([_F], ["info"]),
    "PutObject": ([_F], ["change"]),
    "DeleteTrail": (["configuration"], ["deletion"]),
    "DeleteObject": ([_F], ["deletion"]),
}

_PAYLOADS = (
    ("requestParameters", "request_parameters"),
    ("responseElements", "response_elements"),
    ("additionalEventData", "additional_eventdata"),
    ("serviceEventDetails", "service_event_details"),
)
_USER_IDENTITY_PLAIN = (
    ("invokedBy", "invoked_by"),
    ("credentialId", "credential_id"),
    ("identityProvider", "identity_provider"),
)
_IN_SCOPE_OF = (
    ("issuerType", "issuer_type"),
    ("credentialsIssuedTo", "credentials_issued_to"),
    ("sourceArn", "source_arn"),
    ("sourceAccount", "source_account"),
)
_SESSION_PLAIN = (
    ("ec2RoleDelivery", "ec2_role_delivery"),
    ("sourceIdentity", "source_identity"),
    ("assumedRoot", "assumed_root"),
    ("signInSessionArn", "sign_in_session_arn"),
)
_DIGEST_PLAIN = (
    ("previousDigestS3Object", "previous_s3_object"),
    ("previousDigestSignature", "previous_signature"),
    ("previousDigestHashValue", "previous_hash_value"),
    ("logFiles", "log_files"),
    ("digestS3Bucket", "s3_bucket"),
    ("previousDigestS3Bucket", "previous_s3_bucket"),
    ("previousDigestHashAlgorithm", "previous_hash_algorithm"),
    ("digestSignatureAlgorithm", "signature_algorithm"),
)
_DIGEST_DATES = (
    ("digestStartTime", "start_time"),
    ("digestEndTime", "end_time"),
    ("newestEventTime", "newest_event_time"),
    ("oldestEventTime", "oldest_event_time"),
)
_HOST_KEYS = ("instanceId", "target", "resourceId")
_DIGEST_KEYS = frozenset(
    {"digestS3Object", "digestPublicKeyFingerprint", "publicKeyFingerprint"}
    | {src for src, _ in _DIGEST_PLAIN}
    | {src for src, _ in _DIGEST_DATES}
)


def prune(value: Any) -> Any:
    """A copy without null, empty, ``"-"`` and ``"none"`` values, recursively (the pipeline's first step)."""
    kind = type(value)
    if kind is dict:
        return _prune_dict(value)
    if kind is list:
        return _prune_list(value)
    return value


_KEEP_NONE: frozenset[str] = frozenset()


def _prune_dict(value: dict[str, Any], keep: frozenset[str] = _KEEP_NONE) -> dict[str, Any]:
    """:func:`prune` of a dict; a non-empty object under a key in ``keep`` stays as it is."""
    out: dict[str, Any] = {}
    for k, v in value.items():
        t = type(v)
        if t is str:  # most values: tested first
            if v in _DROP_STRINGS:
                continue
        elif t is dict:
            if k not in keep:
                v = _prune_dict(v)  # noqa: PLW2901 - the pruned copy replaces the original
            if not v:
                continue
        elif t is list:
            v = _prune_list(v)  # noqa: PLW2901
            if not v:
                continue
        elif v is None:
            continue
        out[k] = v
    return out


def _prune_list(value: list[Any]) -> list[Any]:
    items: list[Any] = []
    for v in value:
        t = type(v)
        if t is str:
            if v in _DROP_STRINGS:
                continue
        elif t is dict:
            v = _prune_dict(v)  # noqa: PLW2901
            if not v:
                continue
        elif t is list:
            v = _prune_list(v)  # noqa: PLW2901
            if not v:
                continue
        elif v is None:
            continue
        items.append(v)
    return items


_DATES: dict[str, str | None] = {}
"""Recent answers of :func:`date` (events of one second share their eventTime text)."""
_MISSING = object()


def date(value: Any) -> str | None:
    """An ISO-8601 (or basic ISO) timestamp as Elasticsearch's date processor writes it, in UTC."""
    if not isinstance(value, str) or not value:
        return None
    cached = _DATES.get(value, _MISSING)
    if cached is not _MISSING:
        return cached  # type: ignore[return-value]
    out = _parse_date(value)
    if len(_DATES) >= 65536:  # keep memory flat over a long run
        _DATES.clear()
    _DATES[value] = out  # dict get/set are atomic: threads may share the cache
    return out


def _parse_date(value: str) -> str | None:
    text = value.strip()
    parsed: dt.datetime | None = None
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        for fmt in ("%Y%m%dT%H%M%S%z", "%Y%m%dT%H%M%S.%f%z"):
            try:
                parsed = dt.datetime.strptime(text, fmt)  # noqa: DTZ007 - %z is in the format
                break
            except ValueError:
                continue
    if parsed is None:
        return None
    return iso_utc(parsed.replace(tzinfo=_UTC) if parsed.tzinfo is None else parsed.astimezone(_UTC))


def iso_utc(moment: dt.datetime) -> str:
    """``2026-03-02T10:15:02.000Z``: ISO 8601 in UTC with milliseconds, as Elasticsearch writes dates."""
    text = moment.isoformat(timespec="milliseconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def is_ip(value: object) -> bool:
    """True for a strict IPv4/IPv6 literal (leading zeros refused, as Elasticsearch refuses them)."""
    return isinstance(value, str) and bool(value) and _is_ip_text(value)


@lru_cache(maxsize=4096)
def _is_ip_text(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _text(value: Any) -> str:
    """How a Mustache template renders a value (strings as they are, booleans lower-case)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)


def _append(target: list[Any], value: Any) -> None:
    """Append without duplicates (``allow_duplicates: false``); empty values are skipped."""
    if value is None or value == "":
        return
    if value not in target:
        target.append(value)


_NO_DICT: dict[str, Any] = {}  # shared, never written to


def _dict(value: Any) -> dict[str, Any]:
    return value if type(value) is dict else _NO_DICT


def _dedupe_resources(resources: Any) -> Any:
    """Resources with ``ARN``/``accountId`` renamed, duplicates (same arn, account, type) dropped."""
    if not isinstance(resources, list):
        return resources
    unique: dict[str, dict[str, Any]] = {}
    for original in resources:
        if not isinstance(original, dict):
            continue
        resource = dict(original)
        if "ARN" in resource:
            resource["arn"] = resource.pop("ARN")
        if "accountId" in resource:
            resource["account_id"] = resource.pop("accountId")
        key = f"{resource.get('arn', '')}_{resource.get('account_id', '')}_{resource.get('type', '')}"
        unique[key] = resource
    return list(unique.values())


_INSTANCE_KEYS = frozenset({*_HOST_KEYS, "instanceIds", "instancesSet"})
"""Keys of request parameters or response elements that can name EC2 instances."""


def _instance_ids(resources: Any, request: Any, response: Any) -> list[str]:
    """EC2 instance ids named by resources, request parameters or response elements."""
    found: list[str] = []
    if isinstance(resources, list):
        for resource in resources:
            arn = resource.get("arn") if isinstance(resource, dict) else None
            if isinstance(arn, str) and ":instance/" in arn:
                value = arn[arn.rfind("/") + 1 :]
                if len(value) >= 10 and value.startswith("i-") and value not in found:
                    found.append(value)
    for container in (request, response):
        if not isinstance(container, dict) or _INSTANCE_KEYS.isdisjoint(container):
            continue
        candidates: list[Any] = [container.get(key) for key in _HOST_KEYS]
        ids = container.get("instanceIds")
        if isinstance(ids, list):
            candidates.extend(ids)
        items = _dict(container.get("instancesSet")).get("items")
        if isinstance(items, list):
            candidates.extend(item.get("instanceId") for item in items if isinstance(item, dict))
        for value in candidates:
            if isinstance(value, str) and len(value) >= 10 and value.startswith("i-") and value not in found:
                found.append(value)
    return found


_SERVICES: dict[str, str] = {}
"""``cloud.service.name`` by eventSource (``""``: none); a handful of services pass by."""


def _service_of(source: str) -> str:
    """``cloud.service.name`` of an eventSource: ``iam`` of ``iam.amazonaws.com`` (``""``: none)."""
    service = _SERVICES.get(source)
    if service is None:
        service = source[: source.find(".amazonaws.com")] if source.endswith(".amazonaws.com") else ""
        if len(_SERVICES) >= 4096:
            _SERVICES.clear()
        _SERVICES[source] = service
    return service


_Identity = tuple[dict[str, Any], dict[str, Any], Any, list[Any]]
"""``user_identity``, ``user``, ``cloud.account.id`` (or None), ``related.user``: see :func:`_identity`."""
_Tls = tuple[dict[str, Any], dict[str, Any] | None]
"""``tls`` and ``aws.cloudtrail.tls_details`` (or None): see :func:`_tls`."""

_RAW_PARTS = frozenset({"userIdentity", "tlsDetails"})
"""Objects the shared mapping leaves unpruned at the top: their mapping is cached by their JSON text."""
_CACHE_SIZE = 4096
"""Entries per cache before it is emptied (memory stays flat over a long run)."""
_IDENTITIES: dict[bytes, _Identity] = {}
_TLS: dict[bytes, _Tls] = {}


def _shared_identity(raw: dict[str, Any]) -> _Identity:
    """:func:`_identity` of an unpruned ``userIdentity`` from JSON, cached by its JSON text (read-only)."""
    key = orjson.dumps(raw)
    mapped = _IDENTITIES.get(key)
    if mapped is None:
        mapped = _identity(_prune_dict(raw))
        if len(_IDENTITIES) >= _CACHE_SIZE:  # keep memory flat over a long run
            _IDENTITIES.clear()
        _IDENTITIES[key] = mapped  # dict get/set are atomic: threads may share the cache
    return mapped


def _shared_tls(raw: dict[str, Any]) -> _Tls:
    """:func:`_tls` of an unpruned ``tlsDetails`` from JSON, cached by its JSON text (read-only)."""
    key = orjson.dumps(raw)
    mapped = _TLS.get(key)
    if mapped is None:
        mapped = _tls(_prune_dict(raw))
        if len(_TLS) >= _CACHE_SIZE:
            _TLS.clear()
        _TLS[key] = mapped
    return mapped


def _identity(ident: dict[str, Any]) -> _Identity:
    """What a (pruned) ``userIdentity`` maps to, before the rest of the event adds to it.

    ``user_identity``, the ``user`` fields, ``cloud.account.id`` (or None) and the first
    ``related.user`` values. The order of the steps matters: several write one field in turn.
    """
    ui: dict[str, Any] = {}
    user: dict[str, Any] = {}
    related_user: list[Any] = []
    account_id = None
    uitype = ident.get("type")
    if uitype is not None:
        ui["type"] = uitype
    if "userName" in ident:
        user["name"] = ident["userName"]
    if "principalId" in ident:
        user["id"] = ui["principal_id"] = ident["principalId"]
    arn = ident.get("arn")
    if arn is not None:
        ui["arn"] = arn
    if "accountId" in ident:
        account_id = ident["accountId"]
    if "accessKeyId" in ident:
        ui["access_key_id"] = ident["accessKeyId"]
    sc = ident.get("sessionContext")
    sc_out: dict[str, Any] = {}
    issuer_out: dict[str, Any] = {}
    if type(sc) is dict and sc:
        attributes = sc.get("attributes")
        if type(attributes) is dict and attributes:
            if "mfaAuthenticated" in attributes:
                sc_out["mfa_authenticated"] = attributes["mfaAuthenticated"]
            created = date(attributes.get("creationDate"))
            if created:
                sc_out["creation_date"] = created
        issuer = sc.get("sessionIssuer")
        if type(issuer) is dict and issuer:
            if "type" in issuer:
                issuer_out["type"] = issuer["type"]
            if uitype in ("AssumedRole", "FederatedUser") and "userName" in issuer:
                user["name"] = issuer["userName"]
            if "principalId" in issuer:
                issuer_out["principal_id"] = issuer["principalId"]
            if "arn" in issuer:
                issuer_out["arn"] = issuer["arn"]
            if "accountId" in issuer:
                issuer_out["account_id"] = issuer["accountId"]
        for src, dst in _SESSION_PLAIN:
            if src in sc:
                sc_out[dst] = sc[src]
        web = sc.get("webIdFederationData")
        if type(web) is dict and web:
            web_out = {
                dst: web[src]
                for src, dst in (
                    ("federatedProvider", "federated_provider"),
                    ("attributes", "attributes"),
                )
                if src in web
            }
            if web_out:
                sc_out["web_id_federation_data"] = web_out
        if issuer_out:
            sc_out["session_issuer"] = issuer_out
    if (
        uitype in ("AssumedRole", "FederatedUser", "IdentityCenterUser")
        and isinstance(arn, str)
        and ":sts:" in arn
        and "/" in arn
    ):
        m = _SESSION_ARN.match(arn)
        if m and m.group(1):
            session_name = m.group(1)
            _append(related_user, session_name)
            if "@" in session_name:
                _append(related_user, session_name.split("@", 1)[0])
                user.setdefault("email", session_name)
    obo = ident.get("onBehalfOf")
    if type(obo) is dict and obo:
        if "userId" in obo or "identityStoreArn" in obo:
            ui["on_behalf_of"] = {
                k: obo[s]
                for s, k in (("userId", "user_id"), ("identityStoreArn", "identity_store_arn"))
                if s in obo
            }
        if uitype == "IdentityCenterUser" and "id" not in user and "userId" in obo:
            user["id"] = obo["userId"]
    if uitype in ("IAMUser", "Root") and arn:
        user["id"] = arn
    if uitype == "AssumedRole" and issuer_out.get("arn"):
        user["id"] = issuer_out["arn"]
    for src, dst in _USER_IDENTITY_PLAIN:
        if src in ident:
            ui[dst] = ident[src]
    delegate = ident.get("invokedByDelegate")
    if type(delegate) is dict and "accountId" in delegate:
        ui["invoked_by_delegate"] = {"account_id": delegate["accountId"]}
    scope = ident.get("inScopeOf")
    if type(scope) is dict and scope:
        in_scope_of = {dst: scope[src] for src, dst in _IN_SCOPE_OF if src in scope}
        if in_scope_of:
            ui["in_scope_of"] = in_scope_of
    if sc_out:
        ui["session_context"] = sc_out
    return ui, user, account_id, related_user


def to_ecs(event: dict[str, Any], *, shared: bool = False) -> dict[str, Any]:
    """The ECS document for one CloudTrail event (a fresh dict; ``event`` is not modified).

    ``shared=True`` is for an event straight from ``orjson.loads`` (JSON types only) whose
    document is only serialized: what a ``userIdentity`` or ``tlsDetails`` maps to is then
    cached by its JSON text and shared between documents (read-only), not mapped again.
    """
    j: dict[str, Any] = _prune_dict(event, _RAW_PARTS) if shared and type(event) is dict else prune(event)
    out: dict[str, Any] = {}
    ev: dict[str, Any] = {}
    ct: dict[str, Any] = {}
    ui: dict[str, Any] = {}
    user: dict[str, Any] = {}
    cloud: dict[str, Any] = {}
    account: dict[str, Any] = {}
    related_user: list[Any] = []

    ts = date(j.get("eventTime"))
    if ts:
        out["@timestamp"] = ts
    out["ecs"] = {"version": ECS_VERSION}
    if "eventVersion" in j:
        ct["event_version"] = j["eventVersion"]

    ident = j.get("userIdentity")
    if type(ident) is dict and ident:
        if shared:
            ui, user, account_id, related_user = _shared_identity(ident)
            user = dict(user)  # copies of what the rest of the mapping adds to
            related_user = list(related_user)
        else:
            ui, user, account_id, related_user = _identity(ident)
        if account_id is not None:
            account["id"] = account_id
    if "sessionCredentialFromConsole" in j:
        ct["session_credential_from_console"] = j["sessionCredentialFromConsole"]
    if ui:
        ct["user_identity"] = ui

    source_name = j.get("eventSource")
    if isinstance(source_name, str):
        service = _service_of(source_name)
        if service:
            cloud["service"] = {"name": service}
    if source_name is not None:
        ev["provider"] = source_name
    action = j.get("eventName")
    if action is not None:
        if type(action) is not str:
            action = _text(action)
        if action:
            ev["action"] = action
    if "eventCategory" in j:
        ct["event_category"] = j["eventCategory"]
    extra = j.get("additionalEventData")
    if type(extra) is not dict:
        extra = _NO_DICT
    if action == "UserAuthentication" and "name" not in user and "UserName" in extra:
        user["name"] = extra["UserName"]
    cloud["provider"] = "aws"
    if "awsRegion" in j:
        cloud["region"] = j["awsRegion"]

    source: dict[str, Any] = {}
    if "sourceIPAddress" in j:
        address = source["address"] = j["sourceIPAddress"]
        if isinstance(address, str) and _is_ip_text(address):
            source["ip"] = address
        out["source"] = source
    agent = j.get("userAgent")
    if isinstance(agent, str):
        out["user_agent"] = user_agent(agent)
    if "errorCode" in j:
        ct["error_code"] = j["errorCode"]
    if "errorMessage" in j:
        ct["error_message"] = j["errorMessage"]

    flattened: dict[str, Any] = {}
    for src, dst in _PAYLOADS:
        value = j.get(src)
        if value is None:
            continue
        text = ct[dst] = value if isinstance(value, str) else orjson.dumps(value).decode()
        if isinstance(value, dict) and len(text) < MAX_KEYWORD_CHARS:
            flattened[dst] = value

    if "requestID" in j:
        ct["request_id"] = j["requestID"]
    if "eventID" in j:
        ev["id"] = j["eventID"]
    if "eventType" in j:
        ct["event_type"] = j["eventType"]
    if "apiVersion" in j:
        ct["api_version"] = j["apiVersion"]
    if "managementEvent" in j:
        ct["management_event"] = _text(j["managementEvent"])
    if "readOnly" in j:
        ct["read_only"] = j["readOnly"]
    if "resources" in j:
        ct["resources"] = _dedupe_resources(j["resources"])
    if "recipientAccountId" in j:
        ct["recipient_account_id"] = j["recipientAccountId"]
        account.setdefault("id", j["recipientAccountId"])
    shared_id = j.get("sharedEventID", j.get("sharedEventId"))
    if shared_id is not None:
        ct["shared_event_id"] = shared_id
    if "vpcEndpointId" in j:
        ct["vpc_endpoint_id"] = j["vpcEndpointId"]
    if "vpcEndpointAccountId" in j:
        ct["vpc_endpoint_account_id"] = j["vpcEndpointAccountId"]
    addendum = j.get("addendum")
    if type(addendum) is dict and addendum:
        addendum_out = {
            dst: addendum[src]
            for src, dst in (
                ("reason", "reason"),
                ("updatedFields", "updated_fields"),
                ("originalRequestID", "original_request_id"),
                ("originalEventID", "original_event_id"),
            )
            if src in addendum
        }
        if addendum_out:
            ct["addendum"] = addendum_out

    request = j.get("requestParameters")
    response = j.get("responseElements")
    req = request if type(request) is dict else _NO_DICT
    resp = response if type(response) is dict else _NO_DICT
    resp_user = resp.get("user") if resp else None
    if type(resp_user) is not dict:
        resp_user = _NO_DICT
    if req or resp_user:
        for value in (req.get("userName"), req.get("newUserName"), resp_user.get("userId")):
            if value is not None:
                _append(related_user, _text(value))

    if action == "ConsoleLogin":
        login: dict[str, Any] = {}
        if "MobileVersion" in extra:
            login["mobile_version"] = extra["MobileVersion"] != "No"
        if "LoginTo" in extra:
            login["login_to"] = extra["LoginTo"]
        if "MFAUsed" in extra:
            login["mfa_used"] = extra["MFAUsed"] != "No"
        if login:
            ct["console_login"] = {"additional_eventdata": login}

    ev["kind"] = "event"
    ev["type"] = ["info"]
    ev["outcome"] = "failure" if ("error_code" in ct or "error_message" in ct) else "success"
    if action is not None:
        if action == "ConsoleLogin" and isinstance(resp.get("ConsoleLogin"), str):
            ev["outcome"] = resp["ConsoleLogin"].lower()
        categorized = _CATEGORIES.get(action)
        if categorized is not None:
            ev["category"] = list(categorized[0])
            ev["type"] = list(categorized[1])

    if "awsAccountId" in j:
        account.setdefault("id", j["awsAccountId"])
    digest_hash = None
    if not _DIGEST_KEYS.isdisjoint(j):
        _digest(j, out, flattened)
        digest_hash = _dict(flattened.get("digest")).get("previous_hash_value")
    if resp or req:
        group: dict[str, Any] = {}
        if "group" in resp and "groupId" in _dict(resp["group"]):
            group["id"] = resp["group"]["groupId"]
        if "userId" in resp_user:
            user.setdefault("target", {})["id"] = resp_user["userId"]
        if "newUserName" in req:
            user["changes"] = {"name": req["newUserName"]}
        if "groupName" in req:
            group["name"] = req["groupName"]
        if "userName" in req:
            user.setdefault("target", {})["name"] = req["userName"]
        if group:
            out["group"] = group
    if "insightDetails" in j:
        flattened["insight_details"] = j["insightDetails"]
    if flattened:
        ct["flattened"] = flattened

    details = j.get("tlsDetails")
    tls = _NO_DICT
    if type(details) is dict and details:
        tls, exchange = _shared_tls(details) if shared else _tls(details)
        if exchange is not None:
            ct["tls_details"] = exchange
    if tls:
        out["tls"] = tls

    name = user.get("name")
    if "email" not in user and isinstance(name, str) and name.find("@") > 0:
        user["email"] = name
    changes = user.get("changes")
    on_behalf_of = ui.get("on_behalf_of")
    for value in (
        ui.get("principal_id"),
        user.get("id"),
        name,
        changes.get("name") if type(changes) is dict else None,
        on_behalf_of.get("user_id") if type(on_behalf_of) is dict else None,
    ):
        if value is not None:
            if type(value) is not str:
                value = _text(value)  # noqa: PLW2901 - as a template renders it
            if value and value not in related_user:
                related_user.append(value)
    related: dict[str, Any] = {}
    if related_user:
        related["user"] = related_user
    ips: list[str] = []
    if "ip" in source:
        ips.append(source["ip"])
    service_details = j.get("serviceEventDetails")
    if type(service_details) is dict:
        service_ip = service_details.get("sourceIpAddress")
        if is_ip(service_ip):
            _append(ips, service_ip)
    if ips:
        related["ip"] = ips
    # related.hosts: a non-AWS TLS host name, a DNS-name source, the computer name, instance ids.
    hosts: list[Any] = []
    client = tls.get("client")
    if client is not None:
        server_name = client.get("server_name")
        if isinstance(server_name, str) and not server_name.endswith(".amazonaws.com"):
            _append(hosts, server_name)
    if "ip" not in source:
        address = source.get("address")
        if (
            isinstance(address, str)
            and "." in address
            and " " not in address
            and not address.endswith(".amazonaws.com")
        ):
            _append(hosts, address)
    if "computerName" in req:
        _append(hosts, _text(req["computerName"]))
    resources = ct.get("resources")
    if (
        isinstance(resources, list)
        or (isinstance(request, dict) and not _INSTANCE_KEYS.isdisjoint(request))
        or (isinstance(response, dict) and not _INSTANCE_KEYS.isdisjoint(response))
    ):  # most events name no instance: skip the search
        for instance in _instance_ids(resources, request, response):
            _append(hosts, instance)
    if hosts:
        related["hosts"] = hosts
    if digest_hash is not None:
        related["hash"] = [digest_hash]
    if related:
        out["related"] = related

    if account:
        cloud["account"] = account
    out["cloud"] = cloud
    out["event"] = ev
    if user:
        out["user"] = user
    if ct:
        out.setdefault("aws", {})["cloudtrail"] = ct
    return out


def _digest(j: dict[str, Any], out: dict[str, Any], flattened: dict[str, Any]) -> None:
    """Digest-file fields (``aws.cloudtrail.flattened.digest``, ``file.path``, ``@timestamp``)."""
    if "digestS3Object" in j:
        out["file"] = {"path": j["digestS3Object"]}
    digest: dict[str, Any] = {src_dst[1]: j[src_dst[0]] for src_dst in _DIGEST_PLAIN if src_dst[0] in j}
    for src, dst in _DIGEST_DATES:
        value = date(j.get(src))
        if value:
            digest[dst] = value
    fingerprint = j.get("digestPublicKeyFingerprint", j.get("publicKeyFingerprint"))
    if fingerprint is not None:
        digest["public_key_fingerprint"] = fingerprint
    if "end_time" in digest:
        out["@timestamp"] = digest["end_time"]
    if digest:
        flattened["digest"] = digest


def _tls(details: dict[str, Any]) -> _Tls:
    """``tls.*`` and ``aws.cloudtrail.tls_details`` (or None) from a (pruned) ``tlsDetails``.

    ``TLSv1.3`` becomes protocol ``tls``, version ``1.3``.
    """
    if not details or details.get("tlsVersion") == "tlsVersion":
        return {}, None
    tls: dict[str, Any] = {}
    version = details.get("tlsVersion")
    if isinstance(version, str):
        protocol, sep, number = version.partition("v")
        if sep:
            if protocol:
                tls["version_protocol"] = protocol.lower()
            if number:
                tls["version"] = number
        else:
            tls["version"] = version
    elif version is not None:
        tls["version"] = version
    if "cipherSuite" in details:
        tls["cipher"] = details["cipherSuite"]
    if "clientProvidedHostHeader" in details:
        tls["client"] = {"server_name": details["clientProvidedHostHeader"]}
    exchange = {"key_exchange": details["keyExchange"]} if "keyExchange" in details else None
    return tls, exchange
