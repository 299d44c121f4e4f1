"""The plugin contract: the one module a connector imports from trailrelay.

A connector is a distribution that registers a :class:`SinkPlugin` under the entry-point
group ``trailrelay.sinks`` (and, optionally, a ``click`` command group under
``trailrelay.commands`` for its own sub-commands such as ``trailrelay splunk setup``)::

    [project.entry-points."trailrelay.sinks"]
    splunk = "trailrelay_splunk.plugin:plugin"

The pipeline gives a sink batches of :class:`Record` and expects one :class:`Outcome` per
record, in order. A sink never retries on its own beyond one request and never dead-letters:
it *says* what happened (delivered, duplicate, retry, rejected with a reason) and the pipeline
retries with backoff, dead-letters, and acknowledges the source. It may also raise one of the
errors in :mod:`trailrelay.errors` for the whole batch.

The pipeline may call :meth:`Sink.send` from several threads at once (``concurrency``), so a
sink keeps no per-batch state outside the call. ``open`` and ``close`` are called once each.

A sink that learns a record's fate only later (Splunk's indexer acknowledgement) answers
:meth:`Outcome.pending` with a :class:`Receipt` and resolves the receipt, from any thread, once
it knows: the pipeline keeps sending meanwhile, holds the records compactly, and treats the
resolved outcome exactly like one returned by ``send`` (retry, dead-letter, acknowledge).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Protocol, runtime_checkable

import orjson

from trailrelay.errors import (
    ConfigError,
    FatalSinkError,
    InputError,
    PermanentError,
    PluginNotFound,
    RetryableError,
    SinkError,
    TrailrelayError,
)
from trailrelay.helpers import (
    bool_value,
    check_writable,
    cut_runs,
    describe_answer,
    exact_bytes,
    exception_text,
    hash_id,
    output_errors,
    refused_certificate,
    retry_after_seconds,
    scrub,
    search_error,
    search_unanswered,
    text_value,
    url_without_credentials,
)
from trailrelay.record import Identity, Origin, Record, RiskTag, Routing
from trailrelay.settings import Meta, Secret, SentInHeader, Settings, field
from trailrelay.transforms.filters import FilterConfig, FilterRule

__all__ = [
    "DELIVERED",
    "DUPLICATE",
    "INTEGRITY_KIND",
    "SIEM_DEFAULT_FILTER",
    "AlertDefinition",
    "Batch",
    "BatchLimits",
    "BillingRule",
    "CheckResult",
    "ConfigError",
    "CoreServices",
    "Encoder",
    "FatalSinkError",
    "FilterConfig",
    "FilterRule",
    "Identity",
    "InputError",
    "Meta",
    "Origin",
    "Outcome",
    "PermanentError",
    "PluginNotFound",
    "Receipt",
    "Record",
    "RetryableError",
    "RiskTag",
    "Routing",
    "Searcher",
    "Secret",
    "SentInHeader",
    "Settings",
    "Sink",
    "SinkConfig",
    "SinkContext",
    "SinkError",
    "SinkPlugin",
    "Status",
    "TrailrelayError",
    "alert_definitions",
    "bool_value",
    "check_writable",
    "cut_runs",
    "describe_answer",
    "document_id",
    "exact_bytes",
    "exception_text",
    "field",
    "hash_id",
    "load_sink_config",
    "output_errors",
    "provide_core",
    "refused_certificate",
    "retry_after_seconds",
    "scrub",
    "search_error",
    "search_unanswered",
    "text_value",
    "tls_verify",
    "url_without_credentials",
]


class Status(enum.Enum):
    """What happened to one record in one sink."""

    DELIVERED = "delivered"
    """The SIEM accepted (and, where it can say so, durably stored) the record."""
    DUPLICATE = "duplicate"
    """The SIEM already held the record (e.g. an idempotent id conflict): final, not an error."""
    RETRY = "retry"
    """Not taken this time; the pipeline sends it again after a backoff."""
    REJECTED = "rejected"
    """The SIEM will never take the record as it is; the pipeline dead-letters it with reason."""
    PENDING = "pending"
    """Sent, outcome not known yet: the outcome's :class:`Receipt` will say (e.g. an indexer ack)."""

    @property
    def final(self) -> bool:
        """True when the record needs nothing more from this sink."""
        return self is not Status.RETRY and self is not Status.PENDING


class Receipt:
    """The promise of one outcome for the records a sink sent but cannot confirm yet.

    The sink creates one per request it awaits (e.g. per Splunk ackId), returns
    ``Outcome.pending(receipt)`` for each record of that request, and calls :meth:`resolve`
    exactly once, from any thread, with DELIVERED, DUPLICATE, RETRY or REJECTED. Later calls
    are ignored, so a time-out and a late confirmation cannot both count.
    """

    __slots__ = ("_callbacks", "_done", "_lock", "_outcome")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._outcome: Outcome | None = None
        self._callbacks: list[Callable[[Outcome], None]] = []

    def resolve(self, outcome: Outcome) -> bool:
        """Settle the receipt; False when it was settled already (this call changed nothing)."""
        if outcome.status is Status.PENDING:
            raise ValueError("a receipt resolves to a final outcome or RETRY, not PENDING")
        with self._lock:
            if self._outcome is not None:
                return False
            self._outcome = outcome
            callbacks, self._callbacks = self._callbacks, []
        self._done.set()
        for callback in callbacks:
            callback(outcome)
        return True

    def on_resolve(self, callback: Callable[[Outcome], None]) -> None:
        """Call ``callback(outcome)`` once resolved (at once, here, when it already is)."""
        with self._lock:
            outcome = self._outcome
            if outcome is None:
                self._callbacks.append(callback)
                return
        callback(outcome)

    def wait(self, timeout: float | None = None) -> Outcome | None:
        """Block until resolved; the outcome, or None after ``timeout`` seconds."""
        self._done.wait(timeout)
        return self._outcome

    @property
    def outcome(self) -> Outcome | None:
        """The outcome once resolved, else None."""
        return self._outcome

    def __repr__(self) -> str:
        return f"Receipt({self._outcome!r})"


@dataclass(frozen=True, slots=True)
class Outcome:
    """One record's outcome in one sink, with the reason for RETRY and REJECTED."""

    status: Status
    reason: str | None = None
    retry_after: float | None = None
    receipt: Receipt | None = None
    """For PENDING: the receipt that will carry the final outcome."""

    @staticmethod
    def retry(reason: str, after: float | None = None) -> Outcome:
        """A transient failure for this record; ``after`` is the server's Retry-After."""
        return Outcome(Status.RETRY, reason, after)

    @staticmethod
    def rejected(reason: str) -> Outcome:
        """A permanent failure for this record; the reason ends up in the dead-letter entry."""
        return Outcome(Status.REJECTED, reason)

    @staticmethod
    def pending(receipt: Receipt) -> Outcome:
        """Sent, but confirmed only when ``receipt`` resolves (the pipeline waits without blocking)."""
        return Outcome(Status.PENDING, receipt=receipt)


DELIVERED = Outcome(Status.DELIVERED)
DUPLICATE = Outcome(Status.DUPLICATE)

INTEGRITY_KIND = "integrity"
"""``Record.origin.kind`` of an integrity event (``[integrity]``): one JSON object per CloudTrail
digest with its verdict, not a CloudTrail record. Connectors send these natively (their own
sourcetype / data stream / table); ``origin.location`` is the digest's ``s3://`` URI."""


@dataclass(slots=True)
class Batch:
    """Records handed to one sink in one call; ``attempt`` counts from 1."""

    records: Sequence[Record]
    attempt: int = 1

    def __len__(self) -> int:
        return len(self.records)

    @property
    def size(self) -> int:
        """Sum of the records' raw byte lengths (an estimate of the payload)."""
        return sum(len(r.raw) for r in self.records)


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """How the pipeline should cut batches for a sink, and how many may be in flight."""

    max_records: int = 500
    max_bytes: int = 4 * 1024 * 1024
    max_age: float = 1.0
    """Seconds a partial batch may wait for more records (high-risk records do not wait)."""
    concurrency: int = 2
    """Batches in flight at once."""
    max_pending_bytes: int = 64 * 1024 * 1024
    """Bytes of records held while their outcome is PENDING (kept compressed); reading slows
    down when they reach it."""
    record_overhead: int = 0
    """Bytes the sink's encoding adds to each record (an envelope, an action line): counted with
    the record's own bytes against ``max_bytes``, so a full batch fits one request body."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What ``trailrelay check`` reports for a sink that could be reached."""

    ok: bool
    summary: str
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SinkContext:
    """What core hands a sink when it builds it."""

    name: str
    """The sink's name in the config (defaults to its type)."""
    logger: logging.Logger
    user_agent: str
    """``trailrelay/<version> <connector>/<version>`` for request headers."""


SIEM_DEFAULT_FILTER = FilterConfig(
    rules=[
        FilterRule(
            name="default: data events stay out of SIEMs",
            action="drop",
            category=["Data"],
            spare_flagged=True,
        )
    ]
)
"""What a SIEM sink gets unless its table says ``filter``: management, insight and network
activity events; S3/Lambda data events (usually the bulk of the bill) only when asked for, or
when a detection rule tagged one or it failed (error code): a default never hides those."""


class SinkConfig(Settings):
    """Base of every sink's typed configuration (one ``[[sinks]]`` table).

    Connectors subclass it and add their own keys (a :class:`Settings` is a frozen msgspec
    Struct: ``Annotated[int, Meta(ge=1)]`` for limits, ``__post_init__`` raising ``ValueError``
    for checks across keys); unknown keys are refused so a typo is an error, not a silently
    ignored setting. Secrets are :class:`Secret`; one sent in an HTTP header is marked
    :class:`SentInHeader` too, so a character the header cannot carry is a config error by key.
    """

    type: Annotated[str, Meta(description="Sink type, the entry-point name (file, stdout, splunk, ...).")]
    name: Annotated[str | None, Meta(description="Name for logs and routing; defaults to type.")] = None
    concurrency: Annotated[int, Meta(ge=1, le=64, description="Batches in flight at once.")] = 2
    batch_seconds: Annotated[float, Meta(gt=0, le=300, description="Max wait for a batch to fill.")] = 1.0
    max_retry_seconds: Annotated[
        float,
        Meta(gt=0, description="How long the pipeline keeps retrying a record before dead-lettering it."),
    ] = 1800.0
    filter: Annotated[
        FilterConfig,
        Meta(
            description="Rules for this sink only, applied after the global [filter]. "
            "Default: data events are kept out; `filter = {}` sends everything."
        ),
    ] = SIEM_DEFAULT_FILTER

    @property
    def display_name(self) -> str:
        """The configured name, or the type."""
        return self.name or self.type


@runtime_checkable
class Sink(Protocol):
    """A destination for records. Implementations need not inherit from anything."""

    @property
    def limits(self) -> BatchLimits:
        """How to cut batches for this sink."""
        ...

    def open(self) -> None:
        """Prepare connections; may raise :class:`FatalSinkError` for unusable settings."""
        ...

    def send(self, batch: Batch) -> Sequence[Outcome]:
        """Deliver a batch; return one outcome per record, in order, or raise a SinkError."""
        ...

    def check(self) -> CheckResult:
        """Reach the SIEM without sending data; raise a SinkError when it cannot be reached."""
        ...

    def close(self) -> None:
        """Release connections; safe to call twice."""
        ...


@runtime_checkable
class Encoder(Protocol):
    """Turns records into the exact request bodies a sink would send, without sending."""

    content_type: str
    """MIME type of one body, e.g. ``application/json`` or ``application/x-ndjson``."""

    def encode(self, records: Sequence[Record]) -> list[bytes]:
        """The uncompressed request bodies for these records, cut as the sink cuts them."""
        ...


class SinkPlugin(Protocol):
    """What a ``trailrelay.sinks`` entry point names: the factory for one sink type."""

    name: str
    config_model: type[SinkConfig]

    def create(self, config: Any, context: SinkContext) -> Sink:
        """Build a sink from its validated config (an instance of ``config_model``)."""
        ...

    def encoder(self, config: Any) -> Encoder:
        """Build the offline encoder (demo, cost) for a validated config."""
        ...


# Optional plugin hooks, looked up with getattr (a plugin without them still works):
#
# - ``searcher(config) -> Searcher``: used by ``trailrelay canary`` to wait until an event is
#   searchable.
# - ``demo_config() -> dict[str, Any]``: placeholder settings, a whole ``[[sinks]]`` table with
#   its ``type``, that validate against ``config_model`` and let ``trailrelay demo`` and
#   ``trailrelay cost`` build the offline encoder when no config names a real SIEM. Nothing is
#   ever sent to them: use ``.invalid`` hosts and obviously fake secrets. Without it the
#   connector is left out of the demo and measured by cost only if its config validates from
#   ``{"type": name}``.
# - ``billing_rule() -> BillingRule``: how the SIEM bills a record, for ``trailrelay cost``.
#   Without it core falls back to counting NDJSON lines (or whole bodies). An encoder may also
#   offer ``billable_bytes(record) -> int``, which then replaces ``BillingRule.sizes``.


@dataclass(frozen=True, slots=True)
class BillingRule:
    """How a SIEM bills what a connector sends (optional hook ``SinkPlugin.billing_rule()``)."""

    unit: str
    """The billing unit's name in the cost report, e.g. ``ingested document bytes``."""
    rule: str
    """The vendor's rule in one sentence, as documented (the report prints it)."""
    sizes: Callable[[bytes], list[int]] | None = None
    """Billable bytes of each record in one request body the encoder made; None when the
    encoder's ``billable_bytes(record)`` gives them (or to count NDJSON lines / whole bodies)."""
    disk_ratio: str | None = None
    """Name of a price-table assumption (``[assumptions]``): on-disk bytes per billable byte.
    When set, the cost report adds an on-disk estimate for this SIEM."""


@runtime_checkable
class Searcher(Protocol):
    """Looks an event up in the SIEM (``trailrelay canary``); optional, via ``SinkPlugin.searcher``."""

    def find(self, event_id: str, since: dt.datetime) -> dt.datetime | None:
        """When the event with this eventID became searchable (or was indexed), None if not yet."""
        ...


@dataclass(frozen=True, slots=True)
class AlertDefinition:
    """One native alert generated from trailrelay's detection rules."""

    name: str
    query: str
    settings: dict[str, str]
    """SIEM-specific settings (for Splunk: the ``saved/searches`` REST parameters)."""


@dataclass(frozen=True, slots=True)
class CoreServices:
    """What core lends a connector's own commands (``trailrelay splunk setup``), set at start.

    The contract imports nothing of core's machinery; core hands these over through
    :func:`provide_core` before a connector's command runs (the ``trailrelay`` CLI does when it
    loads a ``trailrelay.commands`` group; a connector's tests call
    ``trailrelay.testing.provide_core_services()``).
    """

    load_sink_config: Callable[[str | Path, str, str | None], Any]
    """``(path, sink_type, name)``: the validated ``[[sinks]]`` table, as :func:`load_sink_config`."""
    alert_definitions: Callable[[str, str | None], list[AlertDefinition]]
    """``(siem, index)``: native alerts for the rule pack, as :func:`alert_definitions`."""


_core: CoreServices | None = None


def provide_core(services: CoreServices) -> None:
    """Lend core's services to connectors (called by core, once, before connector commands run)."""
    global _core  # noqa: PLW0603 - one process-wide lender, set once by core at start
    _core = services


def _services() -> CoreServices:
    if _core is None:
        raise RuntimeError(
            "trailrelay core has not provided its services: run connector commands through the "
            "`trailrelay` command, or call trailrelay.testing.provide_core_services() first (tests)"
        )
    return _core


def alert_definitions(siem: str, *, index: str | None = None) -> list[AlertDefinition]:
    """Native alerts for the shipped rule pack (``splunk`` only for now), as ``rules export`` makes them."""
    return _services().alert_definitions(siem, index)


def load_sink_config(path: str | Path, sink_type: str, name: str | None = None) -> Any:
    """The validated ``[[sinks]]`` table of ``sink_type`` (by ``name`` when there are several).

    For connector commands (``trailrelay splunk setup -c FILE``): the file is read exactly as
    ``trailrelay forward`` reads it, with ``${ENV}`` and ``${file:...}`` interpolation, so a
    command and the forwarder can never disagree about a setting.
    """
    return _services().load_sink_config(path, sink_type, name)


def tls_verify(
    verify_tls: bool, ca_bundle: str | None, logger: logging.Logger, *, environment: bool = False
) -> bool | str:
    """The ``verify`` value for an HTTP client: a CA bundle path, True, or (loudly) False.

    ``environment``: without ``ca_bundle``, take ``$REQUESTS_CA_BUNDLE`` or ``$CURL_CA_BUNDLE``
    as requests would. For a requests-based client that reads the environment once, at open,
    instead of on every request (``trust_env`` off: requests then re-scans every variable).
    """
    if not verify_tls:
        logger.warning(
            "TLS CERTIFICATE VERIFICATION IS OFF (verify_tls = false): anyone on the network "
            "path can read and alter what this sink sends. Use ca_bundle for a private CA instead."
        )
        return False
    if ca_bundle is None and environment:
        return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    return ca_bundle or True


def document_id(record: Record, content_tag: bytes = b"content") -> bytes:
    """A record's deterministic document id (20 URL-safe ASCII characters, as bytes).

    The hash (:func:`hash_id`) of recipientAccountId and eventID: the same event reaching a SIEM
    twice (a replay, or from S3 and Firehose both) gets the same id, so an idempotent ``create``
    refuses the second copy. A record without an eventID (a digest file) hashes
    ``content_tag`` and its compact JSON instead. The Elasticsearch and OpenSearch connectors
    store documents under these ids (OpenSearch with ``content_tag=b"c"``): never change the
    bytes hashed, or replays of already-stored events would be stored twice.
    """
    r = record.routing
    if r.event_id:
        key = ((r.recipient_account_id or "") + "\x1f" + r.event_id).encode()
    else:
        raw = record.raw  # orjson's compact JSON of a record on several lines, as ever (not line())
        key = content_tag + b"\x1f" + (orjson.dumps(record.document()) if 10 in raw or 13 in raw else raw)
    return hash_id(key)
