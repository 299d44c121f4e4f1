"""The ``[[sinks]]`` table of a ``type = "sentinel"`` sink, validated at start-up."""

from __future__ import annotations

import re
import uuid
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from trailrelay.contract import SinkConfig

__all__ = ["PUBLIC_AUDIENCE", "PUBLIC_QUERY_ENDPOINT", "CredentialKind", "SentinelConfig"]

PUBLIC_AUDIENCE = "https://monitor.azure.com"
PUBLIC_QUERY_ENDPOINT = "https://api.loganalytics.io"
_TABLE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")

CredentialKind = Literal["client_secret", "certificate", "managed_identity", "workload_identity", "default"]


def _https(value: str, key: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"{key} must be an https:// URL")
    return value.rstrip("/")


class SentinelConfig(SinkConfig):
    """Microsoft Sentinel through the Azure Monitor Logs Ingestion API."""

    type: Literal["sentinel"] = "sentinel"
    endpoint: str = Field(
        description="Logs ingestion endpoint: the DCR's own (kind Direct) or a data collection endpoint, "
        "e.g. https://my-dcr-a1b2.eastus-1.ingest.monitor.azure.com."
    )
    rule_id: str = Field(
        description="Immutable id of the data collection rule (dcr-...), not its resource id."
    )
    stream: str = Field(
        default="Custom-AWSCloudTrail", description="Input stream declared in the DCR (starts with Custom-)."
    )
    integrity_stream: str = Field(
        default="Custom-TrailrelayIntegrity",
        description="Input stream of integrity events ([integrity]), declared in the DCR by "
        "`trailrelay sentinel template --integrity`; it writes to TrailrelayIntegrity_CL.",
    )
    tenant_id: str | None = Field(default=None, description="Microsoft Entra tenant (directory) id.")
    client_id: str | None = Field(
        default=None,
        description="Application (client) id; for managed_identity, the client id of a user-assigned "
        "identity.",
    )
    client_secret: SecretStr | None = Field(
        default=None, description="Client secret of the app registration."
    )
    certificate_path: str | None = Field(
        default=None,
        description="PEM or PKCS12 file with the app registration's certificate and private key.",
    )
    certificate_password: SecretStr | None = Field(
        default=None, description="Password of certificate_path, if any."
    )
    credential: CredentialKind | None = Field(
        default=None,
        description="managed_identity, workload_identity or default (DefaultAzureCredential); "
        "client_secret / certificate are implied by the keys above.",
    )
    authority_host: str | None = Field(
        default=None,
        description="Entra authority for sovereign clouds, e.g. https://login.microsoftonline.us "
        "(US Gov) or https://login.chinacloudapi.cn (China); any https authority.",
    )
    disable_instance_discovery: bool = Field(
        default=False, description="Skip Entra instance discovery (needed for authorities it does not know)."
    )
    audience: str = Field(
        default=PUBLIC_AUDIENCE,
        description="Token audience: https://monitor.azure.com, https://monitor.azure.us (US Gov), "
        "https://monitor.azure.cn (China).",
    )
    ca_bundle: str | None = Field(
        default=None, description="PEM bundle to trust for both the token and the ingestion calls."
    )
    verify_tls: bool = Field(default=True, description="Verify TLS certificates (leave on; use ca_bundle).")
    timeout: float = Field(
        default=30.0, gt=0, le=600, description="Connect/read timeout per request, seconds."
    )
    sdk_retries: int = Field(
        default=0,
        ge=0,
        le=10,
        description="Retries the Azure SDK makes inside one send (429/5xx/connection). 0 leaves retrying "
        "with backoff to the pipeline, which knows the record's age and its dead-letter deadline.",
    )
    max_records: int = Field(
        default=2000, ge=1, le=50_000, description="Records per batch handed to the sink."
    )
    workspace_id: str | None = Field(
        default=None,
        description="Log Analytics workspace id (a GUID, 'Workspace ID' on the workspace's Overview page); "
        "lets `trailrelay canary` query for its event.",
    )
    query_endpoint: str = Field(
        default=PUBLIC_QUERY_ENDPOINT,
        description="Log Analytics query API: https://api.loganalytics.io, https://api.loganalytics.us "
        "(US Gov), https://api.loganalytics.azure.cn (China).",
    )
    table: str = Field(
        default="AWSCloudTrail",
        description="Table the DCR writes to (AWSCloudTrail, or the custom _CL table): where "
        "`trailrelay canary` looks for its event.",
    )

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        return _https(value, "endpoint")

    @field_validator("query_endpoint")
    @classmethod
    def _query_endpoint(cls, value: str) -> str:
        return _https(value, "query_endpoint")

    @field_validator("workspace_id")
    @classmethod
    def _workspace_id(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            return str(uuid.UUID(value.strip()))
        except ValueError:
            raise ValueError(
                "workspace_id must be the workspace's GUID ('Workspace ID' on its Overview page), "
                "not its name or resource id"
            ) from None

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        if not _TABLE_NAME.match(value):
            raise ValueError("table must be a Log Analytics table name, e.g. AWSCloudTrail or CloudTrail_CL")
        return value

    @field_validator("authority_host")
    @classmethod
    def _authority(cls, value: str | None) -> str | None:
        return None if value is None else _https(value, "authority_host")

    @field_validator("audience")
    @classmethod
    def _audience(cls, value: str) -> str:
        value = _https(value, "audience")
        return value.removesuffix("/.default")

    @field_validator("rule_id")
    @classmethod
    def _rule_id(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith("dcr-") or "/" in value:
            raise ValueError("rule_id must be the DCR's immutable id (dcr-...), not its resource id")
        return value

    @field_validator("stream", "integrity_stream")
    @classmethod
    def _stream(cls, value: str) -> str:
        if not value.startswith("Custom-"):
            raise ValueError("stream must be the DCR's input stream name, which starts with Custom-")
        return value

    @model_validator(mode="after")
    def _one_credential(self) -> SentinelConfig:
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
        return self

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
