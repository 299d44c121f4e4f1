"""The azure-identity credential a config asks for, with its cloud and TLS settings."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from azure.core.credentials import AccessToken, AccessTokenInfo, TokenCredential, TokenRequestOptions
from azure.identity import (
    CertificateCredential,
    ClientSecretCredential,
    DefaultAzureCredential,
    ManagedIdentityCredential,
    WorkloadIdentityCredential,
)

from trailrelay.contract import ConfigError, scrub
from trailrelay_sentinel.config import SentinelConfig

__all__ = ["IssuedTokens", "TokenAnswer", "TokenAnswers", "build_credential", "close_quietly", "scrub_tokens"]

_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"'<>,;]+")
"""A bearer credential in text (an ``Authorization`` header a server or proxy repeats)."""


@dataclass(frozen=True, slots=True)
class TokenAnswer:
    """What the token endpoint answered last: its status, OAuth error code and Retry-After."""

    status: int
    error: str | None
    """The OAuth ``error`` of a JSON answer (``invalid_client``, ``temporarily_unavailable``)."""
    json: bool
    """The body was JSON (Entra's own answer), not a proxy's or portal's page."""
    retry_after: str | None


class TokenAnswers:
    """Remembers the credential's latest HTTP answer (azure-core's ``raw_response_hook``).

    azure-identity raises ``ClientAuthenticationError`` without the response when Entra answers
    with an OAuth error or something that is not JSON, whatever the status: a 503 or a throttling
    429 reads like a refused secret. This answer says which it was. Token requests are few (one an
    hour per credential, and retries), so one latest answer, shared by the threads, is enough.
    """

    def __init__(self) -> None:
        self.last: TokenAnswer | None = None

    def __call__(self, pipeline_response: Any) -> None:
        """Note one answer of the credential's pipeline (called by azure-core for each)."""
        response = pipeline_response.http_response
        error: str | None = None
        try:
            body = json.loads(response.text())
        except (ValueError, UnicodeDecodeError):
            is_json = False
        else:
            is_json = True
            if isinstance(body, dict) and isinstance(body.get("error"), str):
                error = body["error"]  # never the body itself: a success holds the access token
        headers = response.headers
        self.last = TokenAnswer(int(response.status_code), error, is_json, headers.get("Retry-After"))


class IssuedTokens:
    """The sink's credential: the one it wraps, remembering every access token it hands out.

    Services and proxies may repeat a request's ``Authorization`` header in their error answer;
    those tokens are then taken out of every message (:func:`scrub_tokens`). A token is valid for
    about an hour and a run gets a few a day, so all of them are kept.

    ``build`` makes a new credential of the same kind, for :meth:`renew`; without it (a
    credential given to the sink) the wrapped one is kept.
    """

    def __init__(
        self, credential: TokenCredential, build: Callable[[], TokenCredential] | None = None
    ) -> None:
        self._credential = credential
        self._build = build
        self._retired: TokenCredential | None = None
        self._generation = 0
        self._lock = threading.Lock()
        self._tokens: dict[str, int] = {}
        """Each token handed out, with the generation of the credential that issued it."""

    @property
    def tokens(self) -> list[str]:
        """Every access token handed out so far (oldest first)."""
        with self._lock:
            return list(self._tokens)

    def _current(self) -> tuple[TokenCredential, int]:
        with self._lock:
            return self._credential, self._generation

    def _note(self, token: str, generation: int) -> None:
        with self._lock:
            self._tokens.setdefault(token, generation)

    def renew(self, refused: str | None) -> None:
        """Start over with a new credential, whose first request gets a new token from the issuer.

        azure-identity keeps a token in its credential object until it nearly expires, so asking
        the same credential again would hand back the token just refused; a new credential
        object has no cache. ``refused`` is the token the service refused: one from an earlier
        credential means another thread renewed already, and nothing is done.
        """
        if self._build is None:
            return
        with self._lock:
            if refused is not None and self._tokens.get(refused, self._generation) < self._generation:
                return
            fresh = self._build()
            # The one before is closed only now: a thread may still have been using it.
            retired, self._retired, self._credential = self._retired, self._credential, fresh
            self._generation += 1
        close_quietly(None, retired)

    def close(self) -> None:
        """Close the credentials this object built or was given to own (see ``build``)."""
        if self._build is not None:
            with self._lock:
                current, retired, self._retired = self._credential, self._retired, None
            close_quietly(None, retired)
            close_quietly(None, current)

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        """The wrapped credential's token (azure-core's ``TokenCredential``)."""
        credential, generation = self._current()
        token = credential.get_token(*scopes, **kwargs)
        self._note(token.token, generation)
        return token

    def get_token_info(self, *scopes: str, options: TokenRequestOptions | None = None) -> AccessTokenInfo:
        """The wrapped credential's token (azure-core's ``SupportsTokenInfo``, which its policy prefers)."""
        credential, generation = self._current()
        get_info = getattr(credential, "get_token_info", None)
        if get_info is not None:
            info: AccessTokenInfo = get_info(*scopes, options=options)
        else:
            kwargs: dict[str, Any] = dict(options or {})
            token = credential.get_token(*scopes, **kwargs)
            info = AccessTokenInfo(token.token, token.expires_on)
        self._note(info.token, generation)
        return info


def scrub_tokens(text: str, secrets: list[str], tokens: IssuedTokens | None) -> str:
    """``text`` without the secret values, the access tokens handed out, or any ``Bearer <token>``."""
    text = scrub(text, [*secrets, *(tokens.tokens if tokens is not None else ())])
    return _BEARER.sub(r"\1***", text)


def build_credential(config: SentinelConfig, verify: bool | str, **transport: Any) -> TokenCredential:
    """An azure-identity credential for the config; ``verify`` is the TLS setting for its calls.

    ``transport`` carries extra azure-core options (timeouts, retry settings, a
    ``raw_response_hook`` such as :class:`TokenAnswers`) to the credential's own HTTP pipeline.
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
