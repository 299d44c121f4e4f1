"""A sink passed through, remembering why it last did not take a record (``canary``, ``doctor --send``).

Both commands send a few records through a :class:`~trailrelay.pipeline.delivery.SinkRunner`
and, when one is not taken, report the SIEM's own answer. The reason may come late: from the
receipt of a PENDING outcome (Splunk's indexer acknowledgement). Secrets are scrubbed from the
text of an exception before it is kept.
"""

from __future__ import annotations

from collections.abc import Sequence

from trailrelay.contract import Batch, BatchLimits, CheckResult, Outcome, Sink, Status, scrub

__all__ = ["ObservedSink"]

_TAKEN = (Status.DELIVERED, Status.DUPLICATE, Status.PENDING)


class ObservedSink:
    """``sink`` itself to the runner; :attr:`last` is its last reason for not taking a record."""

    def __init__(self, sink: Sink, secrets: Sequence[str] = ()) -> None:
        self.sink = sink
        self.secrets = secrets
        self.last: str | None = None

    @property
    def limits(self) -> BatchLimits:
        """The sink's own limits."""
        return self.sink.limits

    def open(self) -> None:
        """Open the sink."""
        self.sink.open()

    def send(self, batch: Batch) -> Sequence[Outcome]:
        """Send through the sink, noting why a record was not taken (now or when acknowledged)."""
        try:
            outcomes = self.sink.send(batch)
        except Exception as exc:
            self.last = f"{type(exc).__name__}: {scrub(str(exc), self.secrets)}"
            raise
        for out in outcomes:
            if out.receipt is not None:
                out.receipt.on_resolve(self._note)
            else:
                self._note(out)
        return outcomes

    def _note(self, outcome: Outcome) -> None:
        if outcome.status not in _TAKEN:
            self.last = outcome.reason or outcome.status.value

    def check(self) -> CheckResult:
        """The sink's check."""
        return self.sink.check()

    def close(self) -> None:
        """Close the sink."""
        self.sink.close()
