"""The exception tree of trailrelay.

Every error trailrelay raises on purpose derives from :class:`TrailrelayError`.
The pipeline decides what to do with a failure from its type alone::

    TrailrelayError
    ├── ConfigError               bad or missing configuration; names the key
    │   └── PluginNotFound        no installed sink of that type
    ├── InputError                malformed input (corrupt gzip, bad JSON, not CloudTrail):
    │                             the item is dead-lettered with the reason, the run goes on
    ├── FetchError                an object's bytes stopped arriving part-way (network, S3):
    │                             nothing is dead-lettered, the unit is released for redelivery
    └── SinkError                 a sink could not take a batch
        ├── RetryableError        transient (5xx, 429, reset connection): send again later,
        │                         honouring ``retry_after`` when the server gave one
        ├── PermanentError        this batch can never succeed as it is: dead-letter it
        └── FatalSinkError        the sink cannot work at all (bad token, missing index,
                                  wrong rule id): stop, ack nothing, tell the operator

Messages never contain secrets: sinks say *which* setting is wrong, not its value.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "FatalSinkError",
    "FetchError",
    "InputError",
    "PermanentError",
    "PluginNotFound",
    "RetryableError",
    "SinkError",
    "TrailrelayError",
]


class TrailrelayError(Exception):
    """Root of every error trailrelay raises deliberately."""


class ConfigError(TrailrelayError):
    """The configuration is invalid; the message names the key and what is wrong."""


class PluginNotFound(ConfigError):  # noqa: N818 - reads as the condition it names
    """A sink type was asked for that no installed distribution provides."""


class InputError(TrailrelayError):
    """Input that cannot be read as CloudTrail; the item is dead-lettered with this reason."""


class FetchError(TrailrelayError):
    """Reading an object's bytes failed part-way through a stream; the cause is chained."""


class SinkError(TrailrelayError):
    """A sink failed to take a batch; the subclass says whether to retry."""


class RetryableError(SinkError):
    """A transient failure: the same request may succeed later."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(SinkError):
    """The batch can never succeed as sent; its records are dead-lettered."""


class FatalSinkError(SinkError):
    """The sink cannot work with its configuration; the run stops without acknowledging."""
