"""Find one event in Splunk with a oneshot search (``trailrelay canary``).

The same search as ``trailrelay splunk verify --event-id``: ``eventID="<id>"`` in the sink's
index and sourcetype, through splunk-sdk on the management port, with the management settings
of the sink's ``[[sinks]]`` table (``management_url`` and ``management_token`` or ``username`` +
``password``). The moment the event became searchable is its ``_indextime``. Errors name no
secret: the sink's tokens and password, and the session's key, are masked (a proxy may echo the
request's Authorization header).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time

from splunklib import client

from trailrelay.contract import ConfigError, FatalSinkError, RetryableError, scrub, tls_verify
from trailrelay_splunk.config import SplunkConfig
from trailrelay_splunk.management import (
    LoginRefusedError,
    ManagementError,
    ManagementTarget,
    connect,
    verify_events,
)

__all__ = ["SplunkSearcher", "management_target"]

_LOOKBACK = 15 * 60
"""Seconds of ``_time`` searched before the send (the event's time is its eventTime)."""


def management_target(config: SplunkConfig, logger: logging.Logger) -> ManagementTarget:
    """How to reach splunkd's management port, from the sink's config; ConfigError if not set."""
    name = config.display_name
    if config.management_url is None:
        raise ConfigError(
            f"splunk sink {name}: set management_url (https://host:8089) with management_token or "
            "username + password to let trailrelay search Splunk"
        )
    if config.management_token is None and config.password is None:
        raise ConfigError(f"splunk sink {name}: set management_token, or username + password")
    ca_bundle = config.management_ca_bundle or config.ca_bundle
    verify = tls_verify(config.verify_tls, ca_bundle, logger)
    return ManagementTarget(
        url=config.management_url,
        username=config.username,
        password=config.password,
        auth_token=config.management_token,
        verify_tls=verify is not False,
        ca_bundle=verify if isinstance(verify, str) else None,
        timeout=config.timeout,
    )


class SplunkSearcher:
    """Looks an eventID up in the sink's index; a ``trailrelay.contract.Searcher``."""

    def __init__(self, config: SplunkConfig, logger: logging.Logger) -> None:
        self.target = management_target(config, logger)
        self.index = config.index or "*"
        self.sourcetype = config.sourcetype
        secrets = (config.management_token, config.password, config.token)
        self._secrets = [s.get_secret_value() for s in secrets if s is not None and s.get_secret_value()]
        self._service: client.Service | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SplunkSearcher(url={self.target.url!r}, index={self.index!r})"

    def find(self, event_id: str, since: dt.datetime) -> dt.datetime | None:
        """When the event with this eventID was indexed (``_indextime``), None while no search finds it."""
        with self._lock:
            try:
                if self._service is None:
                    self._service = connect(self.target)
                report = verify_events(
                    self._service,
                    index=self.index,
                    sourcetype=self.sourcetype,
                    event_id=event_id,
                    lookback=f"{since.timestamp() - _LOOKBACK:.0f}",
                    # _time is our eventTime: a clock ahead of splunkd's must not hide the event.
                    latest=f"{time.time() + _LOOKBACK:.0f}",
                )
            except LoginRefusedError as exc:
                raise FatalSinkError(self._scrub(f"splunk: {exc}")) from None
            except ManagementError as exc:
                text = self._scrub(f"splunk: {exc}")
                self._service = None  # log in again next time
                if exc.status is not None and 400 <= exc.status < 500 and exc.status != 429:
                    raise FatalSinkError(text) from None
                raise RetryableError(text) from None
        if not report.found:
            return None
        if report.last_indexed:
            return dt.datetime.fromtimestamp(report.last_indexed, dt.UTC)
        return dt.datetime.now(dt.UTC)

    def _scrub(self, text: str) -> str:
        """``text`` without the sink's secrets and the session's key or cookies."""
        session: list[str] = []
        if self._service is not None:
            token = self._service.token
            if isinstance(token, str):
                session.append(token.removeprefix("Splunk ").strip())
            session.extend(str(v) for v in self._service.get_cookies().values())
        longest_first = sorted([*self._secrets, *session], key=len, reverse=True)
        return scrub(text, longest_first)

    def close(self) -> None:
        """Forget the session (splunkd sessions expire on their own)."""
        with self._lock:
            self._service = None
