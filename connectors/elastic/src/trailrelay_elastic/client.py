"""Build the official Elasticsearch client from the sink's configuration."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from elasticsearch import Elasticsearch
from elasticsearch.serializer import NdjsonSerializer, OrjsonSerializer

from trailrelay.contract import ConfigError, tls_verify
from trailrelay_elastic.config import ElasticConfig

__all__ = ["make_client", "unreachable"]


class _BytesNdjsonSerializer(NdjsonSerializer):
    """NDJSON that passes a ready body (bytes) through untouched.

    The sink hands over ``_bulk`` bodies it already gzip-compressed itself; the stock
    serializer would copy them and append a newline to the compressed stream.
    """

    def dumps(self, data: Any) -> bytes:
        if isinstance(data, bytes):
            return data
        return super().dumps(data)


def unreachable(where: str, exc: Exception) -> str:
    """``cannot reach Elasticsearch at URL: ConnectionError: <what failed>``.

    elastic_transport's errors print as a bare "Connection error"; what failed (refused, a name
    that does not resolve, a TLS handshake) is in their ``message``.
    """
    detail = getattr(exc, "message", None)
    if not isinstance(detail, str) or not detail:
        detail = str(exc)
    return f"cannot reach Elasticsearch at {where}: {type(exc).__name__}: {detail}"


def make_client(
    config: ElasticConfig, logger: logging.Logger, user_agent: str | None = None
) -> Elasticsearch:
    """A client with no client-side retries and the configured auth and TLS.

    Retries are the pipeline's job (it backs off and dead-letters), so the client sends each
    request once. ``_bulk`` bodies are gzip-compressed by the sink (the client would compress
    them at level 9: most of a run's CPU); other requests are small and go uncompressed, while
    answers may come gzip'd. Responses are parsed with orjson. Raises ConfigError for a CA
    bundle that does not exist.
    """
    kwargs: dict[str, Any] = {
        "http_compress": False,
        "serializers": {
            "application/json": OrjsonSerializer(),
            "application/x-ndjson": _BytesNdjsonSerializer(),
        },
        "max_retries": 0,
        "retry_on_timeout": False,
        "request_timeout": config.timeout,
        "connections_per_node": max(2, config.concurrency),
    }
    if config.cloud_id:
        kwargs["cloud_id"] = config.cloud_id
    else:
        kwargs["hosts"] = config.urls
    if config.api_key is not None:
        kwargs["api_key"] = config.api_key.get_secret_value()
    elif config.password is not None and config.username is not None:
        kwargs["basic_auth"] = (config.username, config.password.get_secret_value())
    elif config.bearer_token is not None:
        kwargs["bearer_auth"] = config.bearer_token.get_secret_value()
    if config.ca_bundle and not Path(config.ca_bundle).is_file():
        raise ConfigError(f"ca_bundle: no such file: {config.ca_bundle}")
    verify = tls_verify(config.verify_tls, config.ca_bundle, logger)
    if config.ssl_assert_fingerprint:
        # Pinning replaces CA verification: the certificate must match the fingerprint exactly.
        kwargs["ssl_assert_fingerprint"] = config.ssl_assert_fingerprint
    elif isinstance(verify, str):
        kwargs["ca_certs"] = verify
    elif verify is False:
        kwargs["verify_certs"] = False
        kwargs["ssl_show_warn"] = False  # tls_verify already warned, once and loudly
    headers = {"accept-encoding": "gzip"}
    if user_agent:
        headers["user-agent"] = user_agent
    kwargs["headers"] = headers
    # elastic_transport warns on every failed request ("Node ... has failed for N times in a
    # row"): dozens a second in an outage. The sink's outcomes carry the reason, and the pipeline
    # says at most every 30 s what fails.
    logging.getLogger("elastic_transport").setLevel(logging.ERROR)
    return Elasticsearch(**kwargs)
