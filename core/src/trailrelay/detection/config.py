"""The ``[detection]`` table: which Sigma rules tag records in the stream."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from trailrelay.settings import Meta, Settings, field

__all__ = ["DetectionConfig"]


class DetectionConfig(Settings):
    """``[detection]``: the shipped rule pack and the user's own Sigma rules."""

    rules: Annotated[
        list[Path],
        Meta(
            description="Sigma rule files or folders (read recursively, *.yml, *.yaml), "
            "relative to the config file."
        ),
    ] = field(default_factory=list)
    pack: Annotated[bool, Meta(description="Use the rule pack shipped with trailrelay.")] = True
