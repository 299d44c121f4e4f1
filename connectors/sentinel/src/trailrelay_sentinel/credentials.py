"""The azure-identity credential a config asks for, with its cloud and TLS settings."""

from __future__ import annotations

from typing import Any

from azure.core.credentials import TokenCredential
from azure.identity import (
    CertificateCredential,
    ClientSecretCredential,
    DefaultAzureCredential,
    ManagedIdentityCredential,
    WorkloadIdentityCredential,
)

from trailrelay.contract import ConfigError
from trailrelay_sentinel.config import SentinelConfig

__all__ = ["build_credential", "close_quietly"]


def build_credential(config: SentinelConfig, verify: bool | str, **transport: Any) -> TokenCredential:
    """An azure-identity credential for the config; ``verify`` is the TLS setting for its calls.

    ``transport`` carries extra azure-core options (timeouts, retry settings) to the
    credential's own HTTP pipeline.
    """
    options: dict[str, Any] = {"connection_verify": verify, **transport}
    if config.authority_host:
        options["authority"] = config.authority_host
    kind = config.credential_kind
    discovery = {"disable_instance_discovery": config.disable_instance_discovery}
    try:
        if kind == "client_secret":
            assert config.client_secret is not None
            assert config.tenant_id
            assert config.client_id
            return ClientSecretCredential(
                config.tenant_id,
                config.client_id,
                config.client_secret.get_secret_value(),
                **discovery,
                **options,
            )
        if kind == "certificate":
            assert config.certificate_path is not None
            assert config.tenant_id
            assert config.client_id
            password = config.certificate_password.get_secret_value() if config.certificate_password else None
            return CertificateCredential(
                config.tenant_id,
                config.client_id,
                config.certificate_path,
                password=password,
                **discovery,
                **options,
            )
        if kind == "workload_identity":
            return WorkloadIdentityCredential(
                tenant_id=config.tenant_id or None,
                client_id=config.client_id or None,
                disable_instance_discovery=config.disable_instance_discovery,
                **options,
            )
        if kind == "managed_identity":
            options.pop("authority", None)  # managed identity talks to the local identity endpoint
            return ManagedIdentityCredential(client_id=config.client_id, **options)
        # Only pass what is set: an explicit None would hide AZURE_CLIENT_ID / AZURE_TENANT_ID.
        if config.client_id:
            options["managed_identity_client_id"] = config.client_id
            options["workload_identity_client_id"] = config.client_id
        if config.tenant_id:
            options["workload_identity_tenant_id"] = config.tenant_id
        if config.disable_instance_discovery:
            options["disable_instance_discovery"] = True
        return DefaultAzureCredential(exclude_interactive_browser_credential=True, **options)
    except (ValueError, OSError) as exc:
        # azure-identity says which argument or file is wrong; it never echoes a secret value.
        raise ConfigError(f"sentinel: cannot build the {kind} credential: {exc}") from None


def close_quietly(client: Any, credential: Any) -> None:
    """Close an SDK client and (when given) the credential we built for it."""
    if client is not None:
        client.close()
    close = getattr(credential, "close", None)
    if callable(close):
        close()
