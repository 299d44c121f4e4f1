"""AWS reads for the checks: clients per service and region, and denials told apart from errors."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

__all__ = ["DENIED_CODES", "Clients", "Denied", "ReadFailed", "error_code", "read"]

DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AuthorizationError",
        "Forbidden",
        "UnauthorizedAccess",
        "UnauthorizedOperation",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
    }
)
"""Error codes meaning "this identity may not read that" (or its credentials are not accepted)."""


class Denied(Exception):  # noqa: N818 - reads as "Denied: needs s3:GetBucketPolicy"
    """A read was refused: the identity running doctor lacks ``permission``."""

    def __init__(self, permission: str, code: str) -> None:
        super().__init__(f"needs permission {permission} ({code})")
        self.permission = permission
        self.code = code


class ReadFailed(Exception):  # noqa: N818 - reads as "ReadFailed: ThrottlingException: …"
    """A read failed for another reason (throttling after retries, network, a server error)."""


def error_code(exc: ClientError) -> str:
    """The AWS error code of a ClientError ('' when there is none)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def read(call: Callable[..., Any], permission: str, *, expected: tuple[str, ...] = (), **kwargs: Any) -> Any:
    """``call(**kwargs)``; a denial raises :class:`Denied`, any other failure :class:`ReadFailed`.

    An error whose code is in ``expected`` (``NoSuchBucketPolicy``…: an answer, not a failure)
    is re-raised as the ClientError for the caller to read. HTTP 403 counts as a denial whatever
    the code: some services answer a denial in a format the client cannot parse into one.
    """
    try:
        return call(**kwargs)
    except ClientError as exc:
        code = error_code(exc)
        if code in expected:
            raise
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in DENIED_CODES or status == 403:
            raise Denied(permission, code or "HTTP 403") from None
        raise ReadFailed(f"{code or 'error'}: {exc.response.get('Error', {}).get('Message', exc)}") from None
    except BotoCoreError as exc:
        raise ReadFailed(f"{type(exc).__name__}: {exc}") from None


class Clients:
    """boto3 clients by (service, region), made once each; ``factory`` is the seam tests use."""

    def __init__(
        self,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        role_arn: str | None = None,
        factory: Callable[[str, str | None], Any] | None = None,
    ) -> None:
        self.region = region
        self.endpoint_url = endpoint_url
        self.role_arn = role_arn
        self._factory = factory or self._make
        self._cache: dict[tuple[str, str | None], Any] = {}
        self._lock = threading.Lock()

    def _make(self, service: str, region: str | None) -> Any:
        from trailrelay.sources.aws import aws_client  # noqa: PLC0415 - boto3 loads slowly; keep --help fast

        return aws_client(service, region=region, endpoint_url=self.endpoint_url, role_arn=self.role_arn)

    def get(self, service: str, region: str | None = None) -> Any:
        """The client for ``service`` in ``region`` (default: the configured region)."""
        key = (service, region or self.region)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = self._factory(service, key[1])
            return self._cache[key]
