"""The four connectors' local stand-ins, started on 127.0.0.1 behind one small interface.

The stand-in classes are the ones the connector tests use (``tests/connectors/<name>/``); this
module only starts them, wires a fault plan in, reads back what they stored, and writes the
``[[sinks]]`` table that points ``trailrelay forward`` at them (secrets through ``${ENV}``).
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reliability.faults import FaultPlan

__all__ = ["IDEMPOTENT", "SINKS", "SinkSettings", "StandIn", "start_standin"]

REPO = Path(__file__).resolve().parents[1]
SINKS = ("splunk", "elastic", "sentinel", "opensearch")
IDEMPOTENT = frozenset({"elastic", "opensearch"})
ACKED = frozenset({"splunk"})
"""Sinks whose deliveries settle later (indexer acknowledgement), parking what awaits its ack."""
"""Sinks that store a record once however often it is sent (deterministic ``_id`` + ``create``)."""

HEC_TOKEN = "5f0c7f1e-0c5b-4a7e-9d3e-reliability01"  # noqa: S105 - made up, for the stand-in
ELASTIC_API_KEY = "cmVsaWFiaWxpdHk6aGFybmVzcy1rZXktbm90LWEtc2VjcmV0"
TENANT = "0c0ffee0-0000-4000-8000-000000000001"
CLIENT = "0c0ffee0-0000-4000-8000-000000000002"
CLIENT_SECRET = "reliability-harness-client-secret~0123456789"  # noqa: S105 - made up
RULE = "dcr-0123456789abcdef0123456789abcdef"
STREAM = "Custom-AWSCloudTrail"
OPENSEARCH_USER = "trailrelay"
OPENSEARCH_PASSWORD = "reliability-harness-password-not-a-secret"  # noqa: S105 - made up


def _quiet_disconnects(httpd: Any) -> None:
    """Do not print a traceback when a client hangs up mid-request (a killed forwarder does)."""
    original = httpd.handle_error

    def handle_error(request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        original(request, client_address)

    httpd.handle_error = handle_error


def _module(sink: str, name: str) -> Any:
    folder = str(REPO / "tests" / "connectors" / sink)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(name)


@dataclass(frozen=True)
class SinkSettings:
    """The sink keys the harness sets (small batches make the duplicate bound meaningful)."""

    batch: int = 200
    concurrency: int = 2
    timeout: float = 2.0
    batch_seconds: float = 0.2
    max_retry_seconds: float = 1800.0
    max_pending_bytes: int = 256 * 1024
    """Splunk: the cap on records awaiting indexer acknowledgement (small, so the bound means something)."""

    def common(self, name: str) -> str:
        """Keys every sink table shares."""
        return (
            f'name = "{name}"\nconcurrency = {self.concurrency}\nbatch_seconds = {self.batch_seconds}\n'
            f"max_retry_seconds = {self.max_retry_seconds}\nfilter = {{}}\n"
        )


class StandIn:
    """One running stand-in: what it stored, its fault hook, and its ``[[sinks]]`` table."""

    name: str

    def event_ids(self) -> list[str]:
        """The eventID of every stored copy, in storage order."""
        raise NotImplementedError

    def stored_count(self) -> int:
        """How many copies are stored (cheap, for progress)."""
        raise NotImplementedError

    def unconfirmed(self) -> int:
        """Records stored whose success the client never learned (late replies, lost acks)."""
        raise NotImplementedError

    def set_faults(self, plan: FaultPlan | None, slow_seconds: float) -> None:
        """Install (or remove) the fault hook."""
        raise NotImplementedError

    def sink_table(self, settings: SinkSettings) -> str:
        """The ``[[sinks]]`` TOML table pointing at this stand-in."""
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """Secrets the sink table reads from the environment."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop serving."""
        raise NotImplementedError


class SplunkStandIn(StandIn):
    """HEC with indexer acknowledgement (an ack is ready at the first poll after the one that asks)."""

    name = "splunk"

    def __init__(self, *, compact: bool) -> None:
        hec_module = _module("splunk", "splunk_hec_standin")
        self.server = hec_module.HecStandIn(HEC_TOKEN, use_ack=True)
        self.server.ack_after_polls = 1
        self.server.compact = compact
        self.server.start()
        _quiet_disconnects(self.server._server)

    def event_ids(self) -> list[str]:
        """Stored eventIDs."""
        return [str(x) for x in self.server.event_ids()]

    def stored_count(self) -> int:
        """Stored copies."""
        return len(self.server.stored)

    def unconfirmed(self) -> int:
        """Late replies and acks never polled."""
        return int(self.server.unconfirmed())

    def set_faults(self, plan: FaultPlan | None, slow_seconds: float) -> None:
        """Install the hook."""
        self.server.fault = plan
        self.server.slow_seconds = slow_seconds

    def sink_table(self, settings: SinkSettings) -> str:
        """Splunk sink keys."""
        return (
            '[[sinks]]\ntype = "splunk"\n'
            + settings.common(self.name)
            + f'url = "{self.server.url}"\ntoken = "${{RELIABILITY_HEC_TOKEN}}"\nindex = "aws"\nack = true\n'
            f"batch_events = {settings.batch}\ntimeout = {settings.timeout}\nack_timeout = 10\n"
            f"ack_poll_interval = 0.05\nmax_pending_bytes = {settings.max_pending_bytes}\n"
        )

    def env(self) -> dict[str, str]:
        """The HEC token."""
        return {"RELIABILITY_HEC_TOKEN": HEC_TOKEN}

    def stop(self) -> None:
        """Stop."""
        self.server.stop()


class ElasticStandIn(StandIn):
    """Elasticsearch ``_bulk`` with ``create`` by deterministic ``_id`` (409 for a second copy)."""

    name = "elastic"

    def __init__(self, *, compact: bool) -> None:
        es_module = _module("elastic", "elastic_standin")
        self._event_id = es_module._event_id
        self.server = es_module.StandIn()
        self.server.expected_auth = f"ApiKey {ELASTIC_API_KEY}"
        self.server.compact = compact
        self.server.start()
        _quiet_disconnects(self.server.server)

    def event_ids(self) -> list[str]:
        """Stored eventIDs (one per document)."""
        return [str(self._event_id(doc)) for doc in self.server.stored()]

    def stored_count(self) -> int:
        """Stored documents."""
        with self.server.lock:
            return sum(len(d) for d in self.server.docs.values())

    def unconfirmed(self) -> int:
        """Late replies."""
        return int(self.server.slow_stored)

    def set_faults(self, plan: FaultPlan | None, slow_seconds: float) -> None:
        """Install the hook."""
        self.server.fault = plan
        self.server.slow_seconds = slow_seconds

    def sink_table(self, settings: SinkSettings) -> str:
        """Elastic sink keys."""
        return (
            '[[sinks]]\ntype = "elastic"\n'
            + settings.common(self.name)
            + f'url = "{self.server.url}"\napi_key = "${{RELIABILITY_ELASTIC_API_KEY}}"\n'
            f"batch_actions = {settings.batch}\ntimeout = {settings.timeout}\n"
        )

    def env(self) -> dict[str, str]:
        """The API key."""
        return {"RELIABILITY_ELASTIC_API_KEY": ELASTIC_API_KEY}

    def stop(self) -> None:
        """Stop."""
        self.server.stop()


class SentinelStandIn(StandIn):
    """Logs Ingestion API and its Entra ID token endpoint over HTTPS (a trustme CA)."""

    name = "sentinel"

    def __init__(self, *, compact: bool, workdir: Path) -> None:
        import trustme  # noqa: PLC0415 - only the Sentinel stand-in needs a CA

        module = _module("sentinel", "sentinel_standin")
        ca = trustme.CA()
        self.ca_file = workdir / "sentinel-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        self.state = module.StandinState(TENANT, CLIENT, CLIENT_SECRET, RULE, STREAM)
        self.state.compact = compact
        self.server = module.Standin(self.state, ca.issue_cert("127.0.0.1", "localhost"))
        _quiet_disconnects(self.server._server)

    def event_ids(self) -> list[str]:
        """Stored AwsEventId values."""
        return [str(x) for x in self.server.stored_ids()]

    def stored_count(self) -> int:
        """Stored rows."""
        with self.state.lock:
            return len(self.state.stored)

    def unconfirmed(self) -> int:
        """Late replies."""
        return int(self.state.slow_stored)

    def set_faults(self, plan: FaultPlan | None, slow_seconds: float) -> None:
        """Install the hook."""
        self.state.fault = plan
        self.state.slow_seconds = slow_seconds

    def sink_table(self, settings: SinkSettings) -> str:
        """Sentinel sink keys."""
        url = self.server.url
        return (
            '[[sinks]]\ntype = "sentinel"\n'
            + settings.common(self.name)
            + f'endpoint = "{url}"\nrule_id = "{RULE}"\nstream = "{STREAM}"\n'
            f'tenant_id = "{TENANT}"\nclient_id = "{CLIENT}"\n'
            'client_secret = "${RELIABILITY_AZURE_CLIENT_SECRET}"\n'
            f'authority_host = "{url}"\ndisable_instance_discovery = true\n'
            f'ca_bundle = "{self.ca_file}"\nmax_records = {settings.batch}\ntimeout = {settings.timeout}\n'
        )

    def env(self) -> dict[str, str]:
        """The client secret."""
        return {"RELIABILITY_AZURE_CLIENT_SECRET": CLIENT_SECRET}

    def stop(self) -> None:
        """Stop."""
        self.server.stop()


class OpenSearchStandIn(StandIn):
    """OpenSearch ``_bulk`` with ``create`` by deterministic ``_id`` (409 for a second copy), basic auth."""

    name = "opensearch"

    def __init__(self, *, compact: bool) -> None:
        module = _module("opensearch", "opensearch_standin")
        self.server = module.StandIn()
        self.server.basic = (OPENSEARCH_USER, OPENSEARCH_PASSWORD)
        self.server.compact = compact
        self.server.start()
        _quiet_disconnects(self.server.server)

    def event_ids(self) -> list[str]:
        """Stored eventIDs (one per document)."""
        return [str(doc.get("eventID")) for doc in self.server.stored()]

    def stored_count(self) -> int:
        """Stored documents."""
        with self.server.lock:
            return sum(len(d) for d in self.server.docs.values())

    def unconfirmed(self) -> int:
        """Late replies."""
        return int(self.server.slow_stored)

    def set_faults(self, plan: FaultPlan | None, slow_seconds: float) -> None:
        """Install the hook."""
        self.server.fault = plan
        self.server.slow_seconds = slow_seconds

    def sink_table(self, settings: SinkSettings) -> str:
        """OpenSearch sink keys."""
        return (
            '[[sinks]]\ntype = "opensearch"\n'
            + settings.common(self.name)
            + f'url = "{self.server.url}"\nusername = "{OPENSEARCH_USER}"\n'
            'password = "${RELIABILITY_OPENSEARCH_PASSWORD}"\n'
            f"batch_actions = {settings.batch}\ntimeout = {settings.timeout}\n"
        )

    def env(self) -> dict[str, str]:
        """The password."""
        return {"RELIABILITY_OPENSEARCH_PASSWORD": OPENSEARCH_PASSWORD}

    def stop(self) -> None:
        """Stop."""
        self.server.stop()


_START_LOCK = threading.Lock()


def start_standin(sink: str, workdir: Path, *, compact: bool = False) -> StandIn:
    """Start the stand-in of ``sink`` (splunk, elastic, sentinel, opensearch) on an ephemeral port."""
    with _START_LOCK:  # imports and sys.path edits are not thread-safe
        if sink == "splunk":
            return SplunkStandIn(compact=compact)
        if sink == "elastic":
            return ElasticStandIn(compact=compact)
        if sink == "sentinel":
            return SentinelStandIn(compact=compact, workdir=workdir)
        if sink == "opensearch":
            return OpenSearchStandIn(compact=compact)
    raise ValueError(f"unknown sink {sink!r}; choose from {', '.join(SINKS)}")


def stop_all(standins: Iterator[StandIn] | list[StandIn]) -> None:
    """Stop every stand-in, ignoring ones already stopped."""
    for s in standins:
        try:
            s.stop()
        except Exception:  # noqa: S112 - best effort at teardown
            continue
