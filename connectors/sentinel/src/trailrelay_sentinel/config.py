"""The ``[[sinks]]`` table of a ``type = "sentinel"`` sink, validated at start-up."""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Literal
from urllib.parse import urlsplit

import msgspec

from trailrelay.contract import Meta, Secret, SinkConfig, url_without_credentials

__all__ = ["PUBLIC_AUDIENCE", "PUBLIC_QUERY_ENDPOINT", "CredentialKind", "SentinelConfig"]

PUBLIC_AUDIENCE = "https://monitor.azure.com"
PUBLIC_QUERY_ENDPOINT = "https://api.loganalytics.io"
_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")

CredentialKind = Literal["client_secret", "certificate", "managed_identity", "workload_identity", "default"]


def _https(value: str, key: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"{key} must be an https:// URL")
    return url_without_credentials(value, key).rstrip("/")


class SentinelConfig(SinkConfig):
    """Microsoft Sentinel through the Azure Monitor Logs Ingestion API."""

    type: Literal["sentinel"] = "sentinel"
    endpoint: Annotated[
        str,
        Meta(
            description="Logs ingestion endpoint: the DCR's own (kind Direct) or a data collection endpoint, "
            "e.g. https://my-dcr-a1b2.eastus-1.ingest.monitor.azure.com."
        ),
    ]
    rule_id: Annotated[
        str, Meta(description="Immutable id of the data collection rule (dcr-...), not its resource id.")
    ]
    stream: Annotated[str, Meta(description="Input stream declared in the DCR (starts with Custom-).")] = (
        "Custom-AWSCloudTrail"
    )
    integrity_stream: Annotated[
        str,
        Meta(
            description="Input stream of integrity events ([integrity]), declared in the DCR by "
            "`trailrelay sentinel template --integrity`; it writes to TrailrelayIntegrity_CL."
        ),
    ] = "Custom-TrailrelayIntegrity"
    tenant_id: Annotated[str | None, Meta(description="Microsoft Entra tenant (directory) id.")] = None
    client_id: Annotated[
        str | None,
        Meta(
            description="Application (client) id; for managed_identity, the client id of a user-assigned "
            "identity."
        ),
    ] = None
    client_secret: Annotated[Secret | None, Meta(description="Client secret of the app registration.")] = None
    certificate_path: Annotated[
        str | None,
        Meta(description="PEM or PKCS12 file with the app registration's certificate and private key."),
    ] = None
    certificate_password: Annotated[
        Secret | None, Meta(description="Password of certificate_path, if any.")
    ] = None
    credential: Annotated[
        CredentialKind | None,
        Meta(
            description="managed_identity, workload_identity or default (DefaultAzureCredential); "
            "client_secret / certificate are implied by the keys above."
        ),
    ] = None
    authority_host: Annotated[
        str | None,
        Meta(
            description="Entra authority for sovereign clouds, e.g. https://login.microsoftonline.us "
            "(US Gov) or https://login.chinacloudapi.cn (China); any https authority."
        ),
    ] = None
    disable_instance_discovery: Annotated[
        bool, Meta(description="Skip Entra instance discovery (needed for authorities it does not know).")
    ] = False
    audience: Annotated[
        str,
        Meta(
            description="Token audience: https://monitor.azure.com, https://monitor.azure.us (US Gov), "
            "https://monitor.azure.cn (China)."
        ),
    ] = PUBLIC_AUDIENCE
    ca_bundle: Annotated[
        str | None, Meta(description="PEM bundle to trust for both the token and the ingestion calls.")
    ] = None
    verify_tls: Annotated[bool, Meta(description="Verify TLS certificates (leave on; use ca_bundle).")] = True
    timeout: Annotated[
        float, Meta(gt=0, le=600, description="Connect/read timeout per request, seconds.")
    ] = 30.0
    sdk_retries: Annotated[
        int,
        Meta(
            ge=0,
            le=10,
            description="Retries the Azure SDK makes inside one send (429/5xx/connection). 0 leaves retrying "
            "with backoff to the pipeline, which knows the record's age and its dead-letter deadline.",
        ),
    ] = 0
    max_records: Annotated[
        int, Meta(ge=1, le=50_000, description="Records per batch handed to the sink.")
    ] = 2000
    workspace_id: Annotated[
        str | None,
        Meta(
            description="Log Analytics workspace id (a GUID, 'Workspace ID' on the workspace's "
            "Overview page); lets `trailrelay canary` query for its event."
        ),
    ] = None
    query_endpoint: Annotated[
        str,
        Meta(
            description="Log Analytics query API: https://api.loganalytics.io, https://api.loganalytics.us "
            "(US Gov), https://api.loganalytics.azure.cn (China)."
        ),
    ] = PUBLIC_QUERY_ENDPOINT
    table: Annotated[
        str,
        Meta(
            description="Table the DCR writes to (AWSCloudTrail, or the custom _CL table): where "
            "`trailrelay canary` looks for its event."
        ),
    ] = "AWSCloudTrail"

    def __post_init__(self) -> None:
        """Check and normalize the keys (in table order), then the credential keys together."""
        normalized = {
            "endpoint": _https(self.endpoint, "endpoint"),
            "rule_id": _rule_id(self.rule_id),
            "stream": _stream(self.stream),
            "integrity_stream": _stream(self.integrity_stream),
            "authority_host": _authority(self.authority_host),
            "audience": _https(self.audience, "audience").removesuffix("/.default"),
            "workspace_id": _workspace_id(self.workspace_id),
            "query_endpoint": _https(self.query_endpoint, "query_endpoint"),
            "table": _table(self.table),
        }
        for key, value in normalized.items():
            # a frozen Struct: normalized values are stored with force_setattr
            msgspec.structs.force_setattr(self, key, value)
        kind = self.credential_kind
        given = [
            k
            for k, v in (("client_secret", self.client_secret), ("certificate_path", self.certificate_path))
            if v is not None
        ]
        if len(given) > 1:
            raise ValueError("set only one of client_secret and certificate_path")
        if self.credential is not None and given:
            raise ValueError(f"credential = {self.credential!r} does not take {given[0]}")
        if kind in ("client_secret", "certificate") and not (self.tenant_id and self.client_id):
            raise ValueError(f"{kind} authentication needs tenant_id and client_id")

    @property
    def credential_kind(self) -> CredentialKind:
        """Which azure-identity credential this config asks for."""
        if self.credential is not None:
            return self.credential
        if self.certificate_path is not None:
            return "certificate"
        if self.client_secret is not None:
            return "client_secret"
        raise ValueError(
            "no credential: set client_secret, certificate_path, or credential = "
            '"managed_identity" | "workload_identity" | "default"'
        )

    @property
    def secret_values(self) -> list[str]:
        """Plain secret values, only to scrub them from messages before they are shown."""
        secrets = (self.client_secret, self.certificate_password)
        return [s.get_secret_value() for s in secrets if s is not None and s.get_secret_value()]

    @property
    def scope(self) -> str:
        """OAuth scope for the ingestion API in this cloud."""
        return f"{self.audience}/.default"


def _authority(value: str | None) -> str | None:
    return None if value is None else _https(value, "authority_host")


def _workspace_id(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        raise ValueError(
            "workspace_id must be the workspace's GUID ('Workspace ID' on its Overview page), "
            "not its name or resource id"
        ) from None


def _table(value: str) -> str:
    if not _TABLE_NAME.match(value):
        raise ValueError("table must be a Log Analytics table name, e.g. AWSCloudTrail or CloudTrail_CL")
    return value


def _rule_id(value: str) -> str:
    value = value.strip()
    if not value.startswith("dcr-") or "/" in value:
        raise ValueError("rule_id must be the DCR's immutable id (dcr-...), not its resource id")
    return value


def _stream(value: str) -> str:
    if not value.startswith("Custom-"):
        raise ValueError("stream must be the DCR's input stream name, which starts with Custom-")
    return value
