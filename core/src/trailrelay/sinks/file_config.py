"""``[[sinks]] type = "file"`` and ``"stdout"``: the built-in sinks' models (no runtime code here)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from trailrelay.contract import FilterConfig, Meta, SinkConfig, field

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
    path: Annotated[Path, Meta(description="NDJSON file to append to (created with its folders).")]
    fsync: Annotated[bool, Meta(description="fsync after every batch (slower, survives power loss).")] = False
    batch_events: Annotated[int, Meta(ge=1)] = 1000
    filter: Annotated[FilterConfig, Meta(description="An archive keeps everything by default.")] = field(
        default_factory=FilterConfig
    )


class StdoutConfig(SinkConfig):
    """``[[sinks]] type = "stdout"``."""

    type: Literal["stdout"] = "stdout"
    batch_events: Annotated[int, Meta(ge=1)] = 1000
    filter: Annotated[FilterConfig, Meta(description="Everything by default.")] = field(
        default_factory=FilterConfig
    )
    format: Annotated[
        Format,
        Meta(
            description="raw: the CloudTrail record; splunk / elastic-ecs / sentinel: the document that "
            "connector would send (its encoder, via the installed plugin)."
        ),
    ] = "raw"
    format_options: Annotated[
        dict[str, Any],
        Meta(
            description="Keys of the connector's table that shape the documents (see FORMAT_OPTIONS), "
            'e.g. {index = "aws", sourcetype = "aws:cloudtrail"} for splunk.'
        ),
    ] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.format == "raw":
            if self.format_options:
                raise ValueError(
                    'format_options applies only with format = "splunk", "elastic-ecs" or "sentinel"'
                )
            return
        _, allowed = FORMAT_OPTIONS[self.format]
        unknown = sorted(set(self.format_options) - set(allowed))
        if unknown:
            keys = ", ".join(allowed) or "none"
            raise ValueError(
                f"format_options.{unknown[0]} does not change {self.format} documents (keys that do: {keys})"
            )
