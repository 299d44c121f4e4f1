"""What a failed upload means: retry, split and resend, reject, or stop the sink.

Azure answers with its error envelope ``{"error": {"code", "message"}}`` and mirrors the code
in ``x-ms-error-code``. azure-core raises ``HttpResponseError`` (``ClientAuthenticationError``
for 401, ``ResourceNotFoundError`` for 404); azure-identity raises
``ClientAuthenticationError`` when Entra refuses the credential, with the transport error as
its cause when Entra could not be reached at all, and also, without the response, when Entra's
token endpoint is down or throttling: the status, OAuth error and Retry-After of that answer
come from :class:`~trailrelay_sentinel.credentials.TokenAnswers`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.identity import CredentialUnavailableError

from trailrelay.contract import refused_certificate, retry_after_seconds
from trailrelay_sentinel.credentials import TokenAnswer

__all__ = ["Failure", "classify", "headers_retry_after"]

Kind = Literal["retry", "split", "fatal"]

_PASSING_OAUTH_ERRORS = frozenset({"temporarily_unavailable", "server_error"})
"""OAuth 2.0 errors (RFC 6749 4.1.2.1) that say the issuer cannot answer now, not that the
credential is wrong (Entra throttles with 429 ``temporarily_unavailable``)."""
_SNIPPET_BYTES = 400
"""How much of an answer that is not Azure's is read to say what it was."""
_MSAL_HTTP_ERROR = re.compile(r"HTTP Error: (\d{3})")
"""MSAL's words for a token endpoint's 5xx that is not JSON."""


@dataclass(frozen=True, slots=True)
class Failure:
    """One failed request: what to do about it and a reason fit for logs and dead letters."""

    kind: Kind
    reason: str
    status: int | None = None
    code: str | None = None
    retry_after: float | None = None


def headers_retry_after(headers: object, now: dt.datetime | None = None) -> float | None:
    """Seconds from ``retry-after-ms``, ``x-ms-retry-after-ms`` or ``Retry-After`` (seconds or date)."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        value = get(name)
        if value:
            try:
                return max(0.0, float(value) / 1000.0)
            except ValueError:
                pass
    return retry_after_seconds(get("Retry-After"), now)


def _error_detail(exc: HttpResponseError) -> tuple[str | None, str]:
    """The Azure error code and message of a response (body first, then x-ms-error-code)."""
    code: str | None = None
    message = ""
    response = exc.response
    if response is not None:
        try:
            body = json.loads(response.text() or "null")
        except (ValueError, UnicodeDecodeError):
            body = None
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            code = body["error"].get("code")
            message = str(body["error"].get("message") or "")
        elif isinstance(body, dict) and "error_description" in body:  # Entra's token errors
            code = str(body.get("error"))
            message = str(body.get("error_description"))
        code = code or getattr(response, "headers", {}).get("x-ms-error-code")
    if not message:
        message = (exc.message or str(exc)).splitlines()[0]
    return code, message[:600]


def _from_azure(response: Any) -> bool:
    """The answer is Azure's: its ``x-ms-error-code`` header, or a JSON object with an ``error``."""
    if getattr(response, "headers", {}).get("x-ms-error-code"):
        return True
    try:
        body = json.loads(response.text() or "null")
    except (AttributeError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(body, dict) and "error" in body


def _not_the_api(endpoint: str, status: int, response: Any) -> str:
    """Why an answer is not the Logs Ingestion API's: its status, content type and first bytes."""
    headers = getattr(response, "headers", {})
    try:
        raw = bytes(response.body()[:_SNIPPET_BYTES])
    except Exception:  # a body that cannot be read (a stream not read) is described as empty
        raw = b""
    text = " ".join(raw.decode("utf-8", "replace").split())[:160]
    what = headers.get("Content-Type") or "no Content-Type"
    if 300 <= status < 400 and headers.get("Location"):
        what += f", to {headers['Location']}"
    what += f', starting "{text}"' if text else ", empty"
    expected = "which answers 204" if status < 300 else "whose errors are JSON"
    return (
        f"{endpoint} answered HTTP {status} ({what}): that is not the Logs Ingestion API, {expected}; "
        "a proxy, load balancer or other service answers there - check endpoint (the DCR's logs "
        "ingestion endpoint or its data collection endpoint, https://...ingest.monitor.azure.com)"
    )


def _transport_cause(exc: BaseException) -> BaseException | None:
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 10:
        if isinstance(cur, (ServiceRequestError, ServiceResponseError)):
            return cur
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return None


def _token_outage(exc: ClientAuthenticationError, answer: TokenAnswer | None) -> Failure | None:
    """RETRY for a token endpoint that is down, throttling or hidden behind a page; else None.

    ``answer`` is the endpoint's latest answer; without one, MSAL's message may name a 5xx.
    """
    if answer is None:
        match = _MSAL_HTTP_ERROR.search(_first_line(exc))
        if match is None:
            return None
        answer = TokenAnswer(int(match.group(1)), None, False, None)
    status, error = answer.status, answer.error
    label = f"HTTP {status} {error or ''}".rstrip()
    if status in {408, 429} or status >= 500 or error in _PASSING_OAUTH_ERRORS:
        why = f"Microsoft Entra ID cannot issue a token now ({label})"
    elif 200 <= status < 300 and not answer.json:
        why = f"Microsoft Entra ID's token endpoint answered {label} without JSON (a proxy or portal page?)"
    else:
        return None
    return Failure(
        "retry", f"{why}: {_first_line(exc)}", status, error, retry_after_seconds(answer.retry_after)
    )


def classify(
    exc: BaseException,
    *,
    rule_id: str,
    stream: str,
    endpoint: str,
    credential: str,
    token_answer: TokenAnswer | None = None,
    token_accepted: bool = False,
) -> Failure:
    """Map an exception from one upload (or token request) to what the sink should do.

    ``token_answer``: the token endpoint's latest answer (see :class:`TokenAnswers`), which tells
    an outage or throttling of Entra from a refused credential. ``token_accepted``: uploads
    worked earlier in this run, so a 401 (the sink's second, with a new token) is not a wrong
    audience or tenant.
    """
    transport = _transport_cause(exc)
    if transport is not None and refused_certificate(transport) is not None:
        return Failure(
            "fatal",
            f"TLS certificate verification failed: {_first_line(transport)} "
            "(set ca_bundle to the PEM of the CA that signed the server or proxy certificate)",
        )
    if isinstance(exc, CredentialUnavailableError):
        return Failure("fatal", f"the {credential} credential is not available here: {_first_line(exc)}")
    if isinstance(exc, ClientAuthenticationError) and exc.response is None:
        if transport is not None:
            return Failure("retry", f"cannot reach Microsoft Entra ID for a token: {_first_line(transport)}")
        outage = _token_outage(exc, token_answer)
        if outage is not None:
            return outage
        return Failure(
            "fatal",
            f"Microsoft Entra ID refused the {credential} credential: {_first_line(exc)} "
            "(check tenant_id, client_id, the secret or certificate, and authority_host for sovereign "
            "clouds)",
        )
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        status = int(exc.status_code)
        code, message = _error_detail(exc)
        label = f"HTTP {status} {code or ''}".rstrip()
        headers = getattr(exc.response, "headers", {})
        if status < 300 or (status < 500 and status not in {408, 429} and not _from_azure(exc.response)):
            # Not Azure refusing the rows: splitting would reject every record for a wrong URL.
            return Failure("fatal", _not_the_api(endpoint, status, exc.response), status, code)
        if status == 401 and token_accepted:
            return Failure(
                "fatal",
                f"{endpoint} refused a new access token too ({label}: {message}) after accepting this "
                f"identity's uploads earlier in the run; check in Microsoft Entra ID that the {credential} "
                "identity is still enabled and its sessions or credentials were not revoked",
                status,
                code,
            )
        if status == 401:
            return Failure(
                "fatal",
                f"{endpoint} refused the token ({label}: {message}); check that audience matches the "
                "endpoint's cloud and that the identity belongs to the DCR's tenant",
                status,
                code,
            )
        if status == 403:
            return Failure(
                "fatal",
                f"not allowed to ingest into DCR {rule_id} ({label}: {message}); give the sending identity "
                "the 'Monitoring Metrics Publisher' role on the DCR (assignments take up to 30 minutes "
                "to apply)",
                status,
                code,
            )
        if status == 404:
            return Failure(
                "fatal",
                f"DCR {rule_id} or its stream {stream} was not found at {endpoint} ({label}: {message}); "
                "check rule_id (the immutable dcr-... id), stream, and that endpoint is the DCR's own "
                "ingestion endpoint or its data collection endpoint",
                status,
                code,
            )
        if status in (400, 413):
            return Failure("split", f"{label}: {message}", status, code)
        if status in {429, 408} or status >= 500:
            return Failure("retry", f"{label}: {message}", status, code, headers_retry_after(headers))
        return Failure("fatal", f"unexpected answer from {endpoint} ({label}: {message})", status, code)
    if transport is not None or isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return Failure("retry", f"cannot reach {endpoint}: {_first_line(transport or exc)}")
    if isinstance(exc, AzureError):
        return Failure("retry", f"Azure SDK error: {_first_line(exc)}")
    raise exc


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", None) or exc) or type(exc).__name__
    return text.strip().splitlines()[0][:600]
