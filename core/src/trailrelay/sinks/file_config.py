"""``[[sinks]] type = "file"`` and ``"stdout"``: the built-in sinks' models (no runtime code here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from trailrelay.contract import FilterConfig, SinkConfig

__all__ = ["FORMAT_OPTIONS", "FileConfig", "Format", "StdoutConfig"]

Format = Literal["raw", "splunk", "elastic-ecs", "sentinel"]

FORMAT_OPTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "splunk": (
        "splunk",
        ("index", "sourcetype", "source", "host", "fields", "integrity_sourcetype", "integrity_index"),
    ),
    "elastic-ecs": ("elastic", ("namespace", "data_stream", "index", "integrity_data_stream")),
    "sentinel": ("sentinel", ()),
}
"""Per ``format``: the connector whose encoder makes the documents, and the ``format_options``
keys that change them (everything else in a connector's table is about sending)."""


class FileConfig(SinkConfig):
    """``[[sinks]] type = "file"``."""

    type: Literal["file"] = "file"
    path: Path = Field(description="NDJSON file to append to (created with its folders).")
    fsync: bool = Field(default=False, description="fsync after every batch (slower, survives power loss).")
    batch_events: int = Field(default=1000, ge=1)
    filter: FilterConfig = Field(
        default_factory=FilterConfig, description="An archive keeps everything by default."
    )


class StdoutConfig(SinkConfig):
    """``[[sinks]] type = "stdout"``."""

    type: Literal["stdout"] = "stdout"
    batch_events: int = Field(default=1000, ge=1)
    filter: FilterConfig = Field(default_factory=FilterConfig, description="Everything by default.")
    format: Format = Field(
        default="raw",
        description="raw: the CloudTrail record; splunk / elastic-ecs / sentinel: the document that "
        "connector would send (its encoder, via the installed plugin).",
    )
    format_options: dict[str, Any] = Field(
        default_factory=dict,
        description="Keys of the connector's table that shape the documents (see FORMAT_OPTIONS), "
        'e.g. {index = "aws", sourcetype = "aws:cloudtrail"} for splunk.',
    )

    @model_validator(mode="after")
    def _format(self) -> StdoutConfig:
        if self.format == "raw":
            if self.format_options:
                raise ValueError(
                    'format_options applies only with format = "splunk", "elastic-ecs" or "sentinel"'
                )
            return self
        _, allowed = FORMAT_OPTIONS[self.format]
        unknown = sorted(set(self.format_options) - set(allowed))
        if unknown:
            keys = ", ".join(allowed) or "none"
            raise ValueError(
                f"format_options.{unknown[0]} does not change {self.format} documents (keys that do: {keys})"
            )
        return self
