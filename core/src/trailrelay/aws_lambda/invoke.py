"""One Lambda invocation: the event's units of work through the pipeline, answered in its protocol.

What a container keeps (:class:`App`, built on the first invocation): a
:class:`~trailrelay.pipeline.forwarder.Forwarder` (the object ``trailrelay forward`` and
``trailrelay.api`` run: configuration, transforms, opened sinks, dead-letter store) and AWS
clients. What each invocation builds: the forwarder's pipeline over the event's units with
fresh sink runners (threads), so nothing of one invocation's bookkeeping leaks into the next.

The deadline: a watcher sets the pipeline's stop once the invocation has less than
``stop_before_timeout`` seconds left; the pipeline then takes no new unit, gives in-flight ones
until ``finish_before_timeout`` seconds before the end and hands back what is still unfinished.
A unit is thus either acknowledged (every record final in every sink) or not at all:

- SQS: unfinished messages are returned in ``batchItemFailures`` and come back later (FIFO
  queues: every message after the first unfinished one too, to keep the order); the event
  source mapping needs ``ReportBatchItemFailures`` for that, so a batch none of whose messages
  finished fails the invocation instead (Lambda then retries the whole batch whatever the
  setting);
- asynchronous events (S3, SNS, EventBridge, CloudWatch Logs): the invocation fails, so Lambda
  retries the event (then sends it to the function's on-failure destination or DLQ);
- Firehose data transformation: the invocation fails and Firehose retries the batch.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from trailrelay.aws_lambda.events import (
    EventKind,
    IncompleteInvocationError,
    Ledger,
    ObjectReader,
    event_kind,
    units_for,
    unrecognised,
    unwrap_invocation_record,
)
from trailrelay.aws_lambda.models import LambdaSourceConfig
from trailrelay.aws_lambda.settings import load_lambda_config
from trailrelay.aws_lambda.transform import transform
from trailrelay.config import Config
from trailrelay.contract import Sink
from trailrelay.errors import SinkError
from trailrelay.pipeline.build import build_dead_letters
from trailrelay.pipeline.deadletter import DeadLetterStore
from trailrelay.pipeline.forwarder import Forwarder
from trailrelay.pipeline.process import tune_allocator
from trailrelay.pipeline.runner import RunResult
from trailrelay.sources.aws import aws_client
from trailrelay.sources.base import Work

__all__ = ["App", "IncompleteInvocationError", "app", "handle", "reset"]

log = logging.getLogger("trailrelay.aws_lambda")


@dataclass
class App:
    """What one container keeps between invocations: a :class:`Forwarder` and an object reader."""

    forwarder: Forwarder
    reader: ObjectReader

    @classmethod
    def from_config(cls, config: Config) -> App:
        """The forwarder (its sinks open when an event first needs them) and the S3 reader."""
        source = config.source
        src = source if isinstance(source, LambdaSourceConfig) else LambdaSourceConfig()
        dead_letters = build_dead_letters(config)
        if config.dead_letter.s3_uri is None:
            log.warning(
                "dead letters go to %s, which Lambda discards with the container: set [dead_letter] "
                "s3_uri; until then every entry is also written to this function's log",
                config.dead_letter_path(),
            )
            dead_letters = LoggedDeadLetters(dead_letters)

        def s3() -> Any:
            return aws_client("s3", region=src.region, endpoint_url=src.endpoint_url, role_arn=src.role_arn)

        reader = ObjectReader(s3, config.pipeline.max_object_bytes, src.insights)
        return cls(Forwarder(config, open_sinks=False, dead_letters=dead_letters), reader)

    @property
    def config(self) -> Config:
        """The configuration the forwarder was built from."""
        return self.forwarder.config

    @property
    def dead_letters(self) -> DeadLetterStore:
        """Where dead letters go."""
        return self.forwarder.dead_letters

    @property
    def source(self) -> LambdaSourceConfig:
        """The ``[source]`` table (defaults when the config left it out)."""
        src = self.config.source
        return src if isinstance(src, LambdaSourceConfig) else LambdaSourceConfig()

    def run(
        self,
        units: list[Work],
        context: Any,
        *,
        sinks: dict[str, Sink] | None = None,
        dead_letters: DeadLetterStore | None = None,
        backoff_base: float = 0.5,
    ) -> RunResult:
        """Run the units through the forwarder's pipeline until done or the deadline nears.

        ``sinks`` replaces the configured sinks (the Firehose transformation collects its output).
        """
        stop = threading.Event()
        reserve, finish = _margins(self.source, context)
        pipeline = self.forwarder.pipeline(
            _Units(units),
            stop=stop,
            dead_letters=dead_letters,
            sinks=sinks,
            drain_seconds=max(0.0, reserve - finish),
            backoff_base=backoff_base,
        )
        finished = threading.Event()
        watcher = threading.Thread(
            target=_watch_deadline, args=(context, reserve, stop, finished), daemon=True
        )
        watcher.start()
        try:
            return pipeline.run()
        finally:
            finished.set()
            watcher.join()

    def close(self) -> None:
        """Close the sinks (the container is being replaced); the dead-letter store stays usable."""
        self.forwarder.close_sinks()


class LoggedDeadLetters:
    """A dead-letter store that also writes each entry to the log (Lambda's /tmp does not last)."""

    def __init__(self, inner: DeadLetterStore) -> None:
        self.inner = inner
        self.count = inner.count

    def write(self, item: dict[str, Any]) -> None:
        """Store one entry and log it whole."""
        self.inner.write(item)
        self.count = self.inner.count
        log.error("dead letter: %s", orjson.dumps(item).decode())  # in the message: Lambda drops extras

    def sync(self) -> None:
        """Make the inner store's entries durable."""
        self.inner.sync()

    def close(self) -> None:
        """Flush the inner store."""
        self.inner.close()


class _Units:
    """The source of one invocation: the units its event holds."""

    def __init__(self, units: list[Work]) -> None:
        self.units = units

    def work(self, stop: threading.Event) -> Iterator[Work]:
        for unit in self.units:
            if stop.is_set():
                return
            yield unit

    def close(self) -> None:
        """Nothing to release."""


def _margins(src: LambdaSourceConfig, context: Any) -> tuple[float, float]:
    """(stop taking work, hand back in-flight work): seconds before the end of the invocation.

    A function whose whole timeout is short keeps at most a third of it in reserve, so the
    configured margins never leave it no time to work.
    """
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    reserve = src.stop_before_timeout
    if remaining is not None:
        reserve = min(reserve, remaining() / 3000.0)
    return reserve, min(src.finish_before_timeout, reserve / 2)


def _watch_deadline(context: Any, reserve: float, stop: threading.Event, finished: threading.Event) -> None:
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:  # invoked outside Lambda (tests, local runs): no deadline
        return
    while not finished.wait(0.02):
        if remaining() / 1000.0 <= reserve:
            if not stop.is_set():
                log.warning("invocation time running out: taking no new work, handing back the rest")
            stop.set()
            return


_APP: App | None = None
_APP_LOCK = threading.Lock()


def app() -> App:
    """The container's App, built on first use from ``TRAILRELAY_CONFIG``."""
    global _APP  # noqa: PLW0603 - one App per container is the point
    with _APP_LOCK:
        if _APP is None:
            logging.getLogger("trailrelay").setLevel(os.environ.get("TRAILRELAY_LOG_LEVEL", "INFO").upper())
            _APP = App.from_config(load_lambda_config())
            tune_allocator()  # each invocation reads objects: keep their buffers' pages
        return _APP


def reset() -> None:
    """Forget the container's App (the next invocation reads the config and secrets again)."""
    global _APP
    with _APP_LOCK:
        old, _APP = _APP, None
    if old is not None:
        old.close()


def handle(event: Any, context: Any) -> dict[str, Any]:
    """Process one invocation's event; the answer its invoker expects."""
    current = app()
    event, condition = unwrap_invocation_record(event)
    if condition is not None:
        log.info("an invocation record (%s): replaying the event it holds", condition)
    kind = event_kind(event)
    if kind is EventKind.FIREHOSE:
        return transform(current, event, context)
    ledger = Ledger()
    units = units_for(kind, event, current.reader, ledger)
    try:
        result = current.run(units, context)
    except SinkError:  # a sink could not even open (e.g. a revoked token): nothing was acknowledged
        reset()
        raise
    summary = result.metrics.snapshot()
    if result.fatal:
        reset()  # e.g. a rotated token: read the config and its secrets again next time
    unfinished = ledger.unfinished()
    outline = {"event": kind.value, "units": len(units), "unfinished": len(unfinished), "summary": summary}
    log.info("invocation finished: %s", orjson.dumps(outline).decode())
    if kind is EventKind.SQS:
        return _sqs_answer(event, ledger, unfinished)
    if unfinished:
        raise IncompleteInvocationError(
            f"{len(unfinished)} of {len(units)} units not finished ({_reasons(ledger, unfinished)})"
        )
    if kind is EventKind.UNKNOWN:  # not a success: nothing was forwarded
        error = f"{unrecognised(event)}: nothing forwarded, the event is dead-lettered"
        log.error(error)
        return {"event": kind.value, "error": error, "records": 0}
    return {"event": kind.value, "units": len(units), "records": summary["records_in"]}


def _reasons(ledger: Ledger, unfinished: list[str]) -> str:
    return "; ".join(f"{u}: {ledger.reason(u)}" for u in unfinished[:5])


def _sqs_answer(event: dict[str, Any], ledger: Ledger, unfinished: list[str]) -> dict[str, Any]:
    """The partial-batch response, or an error when no message of the batch may be deleted.

    Lambda honours ``batchItemFailures`` only when the event source mapping has
    ``ReportBatchItemFailures`` turned on; without it a normal return deletes every message. So a
    batch none of whose messages finished fails the invocation (Lambda retries it whatever the
    setting), and a partial failure is logged with what it relies on.
    """
    failures = _sqs_failures(event, ledger, unfinished)
    total = len(ledger.order)
    if failures and len(failures) == total:
        raise IncompleteInvocationError(
            f"none of the {total} messages of the SQS batch finished ({_reasons(ledger, unfinished)}): "
            "failing the invocation so Lambda retries the whole batch"
        )
    if failures:
        log.warning(
            "%d of %d messages of the SQS batch returned in batchItemFailures: Lambda retries them "
            "only if the event source mapping has ReportBatchItemFailures turned on (without it, "
            "Lambda deletes the whole batch)",
            len(failures),
            total,
        )
    return {"batchItemFailures": [{"itemIdentifier": u} for u in failures]}


def _sqs_failures(event: dict[str, Any], ledger: Ledger, unfinished: list[str]) -> list[str]:
    if not unfinished:
        return []
    first = event["Records"][0]
    if not str(first.get("eventSourceARN", "")).endswith(".fifo"):
        return unfinished
    cut = ledger.order.index(unfinished[0])  # FIFO: nothing after a failed message may be deleted
    return ledger.order[cut:]
