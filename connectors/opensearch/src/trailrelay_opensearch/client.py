"""Build the opensearch-py client from the sink's configuration: auth, SigV4, TLS, gzip."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import boto3
import orjson
from botocore.credentials import Credentials, RefreshableCredentials
from isal import isal_zlib
from opensearchpy import OpenSearch, TransportError, Urllib3AWSV4SignerAuth, Urllib3HttpConnection
from opensearchpy.exceptions import SerializationError
from opensearchpy.serializer import JSONSerializer

from trailrelay.contract import ConfigError, tls_verify
from trailrelay_opensearch.config import OpenSearchConfig

__all__ = [
    "aws_credentials",
    "make_client",
    "not_opensearch",
    "response_headers",
    "unparsed",
]

_EVERY_STATUS = tuple(range(100, 600))


def response_headers(exc: TransportError) -> dict[str, str]:
    """The (lower-cased) response headers of an HTTP error answer; empty for other errors."""
    headers = getattr(exc, "response_headers", None)
    return headers if isinstance(headers, dict) else {}


def unparsed(error: SerializationError) -> str:
    """What the client could not parse (its first 200 characters) and why."""
    args = error.args
    if len(args) == 2 and isinstance(args[0], str):
        return f"{args[0][:200]!r} ({args[1]})"
    return str(error)[:300]


def not_opensearch(where: str, error: SerializationError) -> str:
    """Why a check or set-up stops when an answer was not OpenSearch's JSON (a proxy, a portal)."""
    return f"{where} did not answer as OpenSearch (a proxy or another service?): {unparsed(error)}"


class _OrjsonSerializer(JSONSerializer):
    """JSON answers parsed by orjson: a ``_bulk`` answer has an item per document (~10k a request)."""

    def loads(self, s: str) -> Any:
        """The parsed answer; SerializationError, as the stock serializer raises, when it is not JSON."""
        try:
            return orjson.loads(s)
        except orjson.JSONDecodeError as exc:
            raise SerializationError(s, exc) from None


class _Connection(Urllib3HttpConnection):
    """urllib3 connection that keeps the response headers (Retry-After) on HTTP errors."""

    def _gzip_compress(self, body: Any) -> bytes:
        """Request bodies gzip'd with ISA-L level 1: the client's own is zlib level 9 on 10 MB."""
        data = body if isinstance(body, bytes) else str(body).encode("utf-8")
        compressor = isal_zlib.compressobj(1, isal_zlib.DEFLATED, 16 + isal_zlib.MAX_WBITS)
        return compressor.compress(data) + compressor.flush()

    def perform_request(  # noqa: PLR0917 - the base class's signature
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None = None,
        body: bytes | None = None,
        timeout: float | None = None,
        ignore: Collection[int] = (),
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Send one request; an HTTP error raises opensearch-py's error with ``response_headers`` added."""
        status, response_headers, data = super().perform_request(
            method, url, params, body, timeout, _EVERY_STATUS, headers
        )
        if not 200 <= status < 300 and status not in ignore:
            try:
                self._raise_error(status, data, response_headers.get("content-type"))
            except TransportError as exc:
                # opensearch-py's errors leave the headers out; Retry-After is among them.
                exc.response_headers = {k.lower(): v for k, v in response_headers.items()}  # type: ignore[attr-defined]
                raise
        return status, response_headers, data


def aws_credentials(config: OpenSearchConfig) -> tuple[Credentials, str]:
    """Credentials for SigV4 from the boto3 chain (or an assumed role) and the signing region."""
    session = boto3.Session()
    region = config.region or config.url_region or session.region_name
    if not region:
        raise ConfigError("region: set it (or AWS_REGION) for aws_sigv4; the URL does not name one")
    if config.role_arn:
        sts = session.client("sts", region_name=region)
        role_arn = config.role_arn

        def refresh() -> dict[str, str]:
            creds = sts.assume_role(RoleArn=role_arn, RoleSessionName="trailrelay-opensearch")["Credentials"]
            return {
                "access_key": creds["AccessKeyId"],
                "secret_key": creds["SecretAccessKey"],
                "token": creds["SessionToken"],
                "expiry_time": creds["Expiration"].isoformat(),
            }

        return RefreshableCredentials.create_from_metadata(refresh(), refresh, "sts-assume-role"), region
    found = session.get_credentials()
    if found is None:
        raise ConfigError("aws_sigv4: no AWS credentials found (environment, profile, or instance role)")
    return found, region


def make_client(
    config: OpenSearchConfig, logger: logging.Logger, user_agent: str | None = None
) -> OpenSearch:
    """A client with gzip request bodies, no client-side retries and the configured auth and TLS.

    Retries are the pipeline's job (it backs off and dead-letters), so the client sends each
    request once. Raises ConfigError for a CA bundle that does not exist or missing AWS settings.
    """
    kwargs: dict[str, Any] = {
        "hosts": config.urls,
        "http_compress": True,
        "max_retries": 0,
        "retry_on_timeout": False,
        "timeout": config.timeout,
        "pool_maxsize": max(2, config.concurrency),
        "connection_class": _Connection,
        "serializer": _OrjsonSerializer(),
    }
    if config.aws_sigv4:
        credentials, region = aws_credentials(config)
        kwargs["http_auth"] = Urllib3AWSV4SignerAuth(credentials, region, config.aws_service)
    elif config.password is not None and config.username is not None:
        kwargs["http_auth"] = (config.username, config.password.get_secret_value())
    if config.ca_bundle and not Path(config.ca_bundle).is_file():
        raise ConfigError(f"ca_bundle: no such file: {config.ca_bundle}")
    verify = tls_verify(config.verify_tls, config.ca_bundle, logger)
    if isinstance(verify, str):
        kwargs["ca_certs"] = verify
    elif verify is False:
        kwargs["verify_certs"] = False
        kwargs["ssl_show_warn"] = False  # tls_verify already warned, once and loudly
    if user_agent:
        kwargs["headers"] = {"user-agent": user_agent}
    # opensearch-py warns with a full traceback on every failed request: dozens a second in an
    # outage, and two before `check`'s own line. The sink's outcomes and the check's result carry
    # the reason, and the pipeline says at most every 30 s what fails.
    logging.getLogger("opensearch").setLevel(logging.ERROR)
    return OpenSearch(**kwargs)
