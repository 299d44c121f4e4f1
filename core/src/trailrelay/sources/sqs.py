"""SQS mode: S3 object notifications from a queue, deleted only after delivery.

Each message is one unit of work: the objects an S3 notification names (directly, through SNS or
EventBridge), or the record an EventBridge "... via CloudTrail" event carries (a rule that
targets the queue, whatever the event's source); anything else is dead-lettered. While its
objects are in flight, a heartbeat thread keeps extending the message's visibility timeout so no
other worker picks it up. The message is deleted only after every record reached a final
outcome in every sink. If an object cannot be fetched the message is left alone: it becomes
visible again and, after the queue's ``maxReceiveCount``, goes to the queue's dead-letter queue
(its redrive policy).

A worker outlives SQS and network outages: when ``ReceiveMessage`` fails in a way that passes
(no connection, a timeout, a 5xx, throttling, credentials not fetched, an assumed role's session
over: it is assumed again), after botocore's own retries, the source logs it and polls again
after a backoff (1 s doubling to 60 s) instead of ending the run; ``/healthz`` says unhealthy
while nothing comes in. A failure that does not pass (no such queue, access denied, bad
credentials) ends the run, as does any failure with ``--once``.

Deletions leave in batches of up to ten (``DeleteMessageBatch``) from their own threads: the
sink thread that settles a unit does not wait for SQS (unless too many deletions already wait),
and a busy queue costs one request per ten messages instead of one each. A deletion that fails
is logged and counted as a released unit; the message comes back after its visibility timeout
and is delivered again (at least once; the sinks' ids make it a duplicate).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from trailrelay.errors import InputError
from trailrelay.record import Origin
from trailrelay.sources.base import ObjectDone, ObjectRef, Work
from trailrelay.sources.layout import classify_key
from trailrelay.sources.notifications import cloudtrail_event, parse_notification
from trailrelay.sources.payloads import PayloadCollector
from trailrelay.sources.s3 import fetch_object, open_object

__all__ = ["SqsSource"]

log = logging.getLogger("trailrelay.sources.sqs")

DELETE_BATCH = 10
"""Entries a ``DeleteMessageBatch`` request takes at most (the SQS limit)."""
DELETE_LINGER = 0.002
"""Seconds a deletion waits for others to share its request: the acks of one settled batch
come in a burst, and this catches the burst without widening the window a crash leaves."""
DELETE_THREADS = 4
"""``DeleteMessageBatch`` requests in flight at once."""
RECEIVE_BACKOFF = (1.0, 60.0)
"""Seconds before polling again after a passing ``ReceiveMessage`` failure: first, most (doubling)."""
_PASSING_CODES = frozenset(
    {
        "RequestThrottled",
        "Throttling",
        "ThrottlingException",
        "ServiceUnavailable",
        "InternalError",
        "InternalFailure",
        "RequestTimeout",
        "KMS.ThrottlingException",
    }
)
MAX_WAITING_DELETES = 100
"""Acknowledged messages waiting for a free request before an ack blocks: what a crash can
leave undeleted (and so delivered again) stays bounded however slow SQS answers."""


class _Deletions:
    """Deletes acknowledged messages in batches, off the caller's thread; ``close`` sends the rest."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        linger: float = DELETE_LINGER,
        threads: int = DELETE_THREADS,
        max_waiting: int = MAX_WAITING_DELETES,
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.linger = linger
        self.max_waiting = max_waiting
        self.failed = 0
        """Messages whose deletion failed (they will be received again)."""
        self.on_failed: Callable[[int], None] = lambda _: None
        """Told how many deletions just failed (the pipeline counts them as released units)."""
        self._pending: list[tuple[str, str]] = []  # (message id, receipt handle)
        self._sending = 0
        self._cond = threading.Condition()
        self._closing = False
        self._threads = [
            threading.Thread(target=self._loop, name=f"sqs-delete-{i}", daemon=True) for i in range(threads)
        ]
        for t in self._threads:
            t.start()

    def add(self, mid: str, receipt: str) -> None:
        """Delete this message soon: returns at once unless ``max_waiting`` deletions already wait."""
        with self._cond:
            self._cond.wait_for(lambda: self._closing or len(self._pending) < self.max_waiting)
            if self._closing:
                raise RuntimeError("the SQS source is closed")
            self._pending.append((mid, receipt))
            if len(self._pending) == 1 or len(self._pending) >= DELETE_BATCH:
                self._cond.notify_all()

    def close(self, timeout: float = 60.0) -> None:
        """Send every deletion still waiting, then stop."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            left = len(self._pending) + self._sending
        if left:
            log.warning(
                "%d acknowledged SQS messages were not deleted within %gs; they will be delivered again",
                left,
                timeout,
            )

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending:  # closing, nothing left
                    return
                if not self._closing and len(self._pending) < DELETE_BATCH:
                    self._cond.wait_for(
                        lambda: self._closing or len(self._pending) >= DELETE_BATCH, timeout=self.linger
                    )
                    if not self._pending:  # another thread took them
                        continue
                batch = self._pending[:DELETE_BATCH]
                del self._pending[:DELETE_BATCH]
                self._sending += len(batch)
                self._cond.notify_all()  # room for blocked acks
            try:
                self._delete(batch)
            except Exception:  # an answer of an unexpected shape: this thread must outlive it
                self._count_failed(len(batch))
                log.exception(
                    "deleting %d acknowledged SQS messages failed; they will be delivered again", len(batch)
                )
            with self._cond:
                self._sending -= len(batch)

    def _count_failed(self, n: int) -> None:
        with self._cond:
            self.failed += n
        try:
            self.on_failed(n)
        except Exception:
            log.exception("counting failed SQS deletions")

    def _delete(self, batch: list[tuple[str, str]]) -> None:
        entries = [{"Id": str(i), "ReceiptHandle": receipt} for i, (_, receipt) in enumerate(batch)]
        try:
            resp = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        except Exception as exc:  # botocore retried already; the messages come back after the timeout
            self._count_failed(len(batch))
            log.warning(
                "could not delete %d acknowledged SQS messages (%s); they will be delivered again",
                len(batch),
                exc,
            )
            return
        failures = [(batch[int(f["Id"])][0], f) for f in resp.get("Failed", [])]
        if failures:
            self._count_failed(len(failures))
        for mid, failure in failures:
            log.warning(
                "could not delete SQS message %s (%s: %s); it will be delivered again",
                mid,
                failure.get("Code"),
                failure.get("Message"),
            )


class SqsSource:
    """Long-polls a queue of S3 notifications; one unit of work per message."""

    def __init__(
        self,
        sqs: Any,
        s3: Any,
        queue_url: str,
        *,
        wait_seconds: int = 20,
        visibility_timeout: int = 300,
        max_messages: int = 10,
        once: bool = False,
        insights: bool = False,
        max_object_bytes: int = 1 << 30,
        heartbeat_seconds: float | None = None,
    ) -> None:
        self.sqs = sqs
        self.s3 = s3
        self.queue_url = queue_url
        self.wait_seconds = wait_seconds
        self.visibility_timeout = visibility_timeout
        self.max_messages = max_messages
        self.once = once
        self.insights = insights
        self.max_object_bytes = max_object_bytes
        self.redelivered = 0
        self._inflight: dict[str, str] = {}  # message id -> receipt handle
        self._received: dict[str, str] = {}  # received, not yet handed out as work: id -> receipt
        self._lock = threading.Lock()
        self._heartbeat_interval = heartbeat_seconds or max(1.0, visibility_timeout / 3)
        self._deletions = _Deletions(sqs, queue_url)
        self._stop_heartbeat = threading.Event()
        self._heartbeat = threading.Thread(target=self._extend_loop, name="sqs-visibility", daemon=True)
        self._heartbeat.start()

    def work(self, stop: threading.Event) -> Iterator[Work]:
        """Units of work until stopped, or (``once``) until a long poll comes back empty."""
        failures = 0
        while not stop.is_set():
            try:
                resp = self.sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=self.max_messages,
                    WaitTimeSeconds=self.wait_seconds,
                    VisibilityTimeout=self.visibility_timeout,
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                )
            except Exception as exc:
                if self.once or not (_passing(exc) or _renewed(exc, self.sqs)):
                    raise
                first, most = RECEIVE_BACKOFF
                delay = min(most, first * 2**failures)
                failures += 1
                log.warning(
                    "could not receive from %s (%s: %s); polling again in %.0f s",
                    self.queue_url,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                stop.wait(delay)
                continue
            if failures:
                log.warning("receiving from %s again after %d failed polls", self.queue_url, failures)
                failures = 0
            messages = resp.get("Messages", [])
            if not messages:
                if self.once:
                    return
                yield Work([], idle=True, label="empty poll")
                continue
            with self._lock:
                self._received.update((m["MessageId"], m["ReceiptHandle"]) for m in messages)
            for msg in messages:  # a stop may come before the last: close() hands those back
                yield self._unit(msg)

    def report_failed_acks(self, report: Callable[[int], None]) -> None:
        """Have ``report(n)`` told when ``n`` acknowledged messages could not be deleted.

        An acknowledgement returns before its message is deleted (deletions go in batches), so
        a failure comes later: the pipeline counts those messages as released units.
        """
        self._deletions.on_failed = report

    def close(self) -> None:
        """Hand back messages never started; send the deletions still waiting; stop the heartbeat."""
        self._hand_back_unstarted()
        self._deletions.close()
        self._stop_heartbeat.set()
        self._heartbeat.join(timeout=5)

    def _hand_back_unstarted(self) -> None:
        """Messages of a receive the run stopped in the middle of become visible again at once."""
        with self._lock:
            waiting = list(self._received.values())
            self._received.clear()
        for i in range(0, len(waiting), 10):
            chunk = waiting[i : i + 10]
            entries = [
                {"Id": str(n), "ReceiptHandle": rh, "VisibilityTimeout": 0} for n, rh in enumerate(chunk)
            ]
            try:
                resp = self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)
            except Exception as exc:  # they reappear after the visibility timeout anyway
                log.warning("could not hand back %d received messages not started: %s", len(chunk), exc)
                continue
            for failure in resp.get("Failed", []):
                log.warning(
                    "could not hand back a received message not started (%s: %s)",
                    failure.get("Code"),
                    failure.get("Message"),
                )
        if waiting:
            log.info("handed back %d received messages the run stopped before starting", len(waiting))

    def _unit(self, msg: dict[str, Any]) -> Work:
        mid, receipt, body = msg["MessageId"], msg["ReceiptHandle"], msg.get("Body", "")
        if int(msg.get("Attributes", {}).get("ApproximateReceiveCount", "1")) > 1:
            self.redelivered += 1
        with self._lock:
            self._received.pop(mid, None)
            self._inflight[mid] = receipt
        label = f"sqs message {mid}"
        event_json = cloudtrail_event(body)
        if event_json is not None:  # an EventBridge rule that targets the queue: the record itself
            collector = PayloadCollector(Origin("sqs", label), self.max_object_bytes)
            collector.add_bytes(event_json, label)
            return Work(
                collector.refs(),
                ack=self._deleter(mid, receipt),
                release=self._releaser(mid, receipt),
                skipped=collector.skipped,
                invalid=collector.invalid,
                label=label,
            )
        try:
            notices = parse_notification(body)
        except InputError as exc:
            return Work(
                [],
                ack=self._deleter(mid, receipt),
                release=self._releaser(mid, receipt),
                invalid=[(f"{label}: {exc}", body.encode())],
                label=label,
            )
        objects: list[ObjectRef] = []
        skipped: list[tuple[str, str]] = []
        if not notices:
            skipped.append(("s3-test-event-or-no-object", label))
        for n in notices:
            location = f"s3://{n.bucket}/{n.key}"
            reason = classify_key(n.key, n.size, insights=self.insights)
            if reason:
                skipped.append((reason, location))
                continue
            origin = Origin("s3", location, n.bucket, n.key, n.etag, n.size)
            objects.append(ObjectRef(origin, self._fetcher(n.bucket, n.key), self._opener(n.bucket, n.key)))
        return Work(
            objects,
            ack=self._deleter(mid, receipt),
            release=self._releaser(mid, receipt),
            skipped=skipped,
            label=label,
        )

    def _fetcher(self, bucket: str, key: str) -> Callable[[], bytes]:
        return lambda: fetch_object(self.s3, bucket, key, self.max_object_bytes)

    def _opener(self, bucket: str, key: str) -> Callable[[], BinaryIO]:
        return lambda: open_object(self.s3, bucket, key, self.max_object_bytes)

    def _deleter(self, mid: str, receipt: str) -> Callable[[list[ObjectDone]], None]:
        def delete(_: list[ObjectDone]) -> None:
            with self._lock:
                self._inflight.pop(mid, None)
            self._deletions.add(mid, receipt)

        return delete

    def _releaser(self, mid: str, receipt: str) -> Callable[[str], None]:
        def release(reason: str) -> None:
            with self._lock:
                self._inflight.pop(mid, None)
            if reason == "stopping":  # hand it straight to another worker
                try:
                    self.sqs.change_message_visibility(
                        QueueUrl=self.queue_url, ReceiptHandle=receipt, VisibilityTimeout=0
                    )
                except Exception as exc:  # it reappears after the timeout anyway
                    log.warning("could not hand back %s: %s", mid, exc)
            # otherwise leave it: it reappears after the timeout and counts towards redrive

        return release

    def _extend_loop(self) -> None:
        next_run = time.monotonic() + self._heartbeat_interval
        while not self._stop_heartbeat.wait(timeout=max(0.0, next_run - time.monotonic())):
            next_run = time.monotonic() + self._heartbeat_interval
            with self._lock:
                handles = list(self._inflight.items())
            for i in range(0, len(handles), 10):
                entries = [
                    {"Id": str(n), "ReceiptHandle": rh, "VisibilityTimeout": self.visibility_timeout}
                    for n, (_, rh) in enumerate(handles[i : i + 10])
                ]
                try:
                    self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)
                except Exception as exc:  # the next beat tries again
                    log.warning("visibility extension failed: %s", exc)


_EXPIRED_CODES = frozenset({"ExpiredToken", "ExpiredTokenException", "RequestExpired"})


def _renewed(exc: BaseException, client: Any) -> bool:
    """Whether ``exc`` says the session is over and the client's credentials will be renewed.

    An assumed role's session can end before the expiry botocore knows of: it is assumed again
    at the next poll, instead of the run stopping.
    """
    from botocore.exceptions import ClientError  # noqa: PLC0415

    from trailrelay.sources.aws import renew_credentials  # noqa: PLC0415

    if not isinstance(exc, ClientError):
        return False
    code = str(exc.response.get("Error", {}).get("Code", "")).rpartition("#")[2]
    return code in _EXPIRED_CODES and renew_credentials(client)


def _passing(exc: BaseException) -> bool:
    """Whether a failed ``ReceiveMessage`` may succeed later without anyone changing anything."""
    from botocore import exceptions as boto  # noqa: PLC0415

    if isinstance(exc, boto.SSLError):  # a certificate that does not verify stays so
        return False
    if isinstance(exc, (boto.ConnectionError, boto.HTTPClientError, boto.CredentialRetrievalError)):
        return True  # no connection, a timeout, a connection closed mid-answer, IMDS not answering
    if isinstance(exc, boto.ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return status >= 500 or exc.response.get("Error", {}).get("Code") in _PASSING_CODES
    return False
