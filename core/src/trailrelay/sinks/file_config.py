"""``[[sinks]] type = "file"`` and ``"stdout"``: the built-in sinks' models (no runtime code here)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from trailrelay.contract import FilterConfig, SinkConfig

__all__ = ["FileConfig", "StdoutConfig"]


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
