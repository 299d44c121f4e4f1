"""The ``[detection]`` table: which Sigma rules tag records in the stream."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DetectionConfig"]


class DetectionConfig(BaseModel):
    """``[detection]``: the shipped rule pack and the user's own Sigma rules."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    rules: list[Path] = Field(
        default_factory=list,
        description="Sigma rule files or folders (read recursively, *.yml, *.yaml), "
        "relative to the config file.",
    )
    pack: bool = Field(default=True, description="Use the rule pack shipped with trailrelay.")
