"""What every scenario shares: a work folder, moto, the input, and the checks it reports."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from reliability.aws import Aws, Inputs

__all__ = ["Check", "Lab", "log"]

log = logging.getLogger("reliability")


@dataclass(frozen=True)
class Check:
    """One pass/fail statement of a scenario, with the figures behind it."""

    name: str
    ok: bool
    detail: str


@dataclass
class Lab:
    """A work folder and the moto server the scenarios run against."""

    workdir: Path
    aws: Aws
    seed: int
    _folders: dict[str, int] = field(default_factory=dict)

    def folder(self, name: str) -> Path:
        """A fresh sub-folder of the work folder."""
        n = self._folders.get(name, 0)
        self._folders[name] = n + 1
        path = self.workdir / (name if n == 0 else f"{name}-{n}")
        path.mkdir(parents=True, exist_ok=True)
        return path


def wait_until(predicate: object, timeout: float, every: float = 0.05) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` seconds pass."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return bool(predicate())


def describe_inputs(inputs: Inputs) -> str:
    """One line about an input set."""
    return (
        f"{inputs.records:,} records in {inputs.objects:,} objects "
        f"({inputs.corpus_records:,} from the real corpus, {inputs.generated_records:,} generated; "
        f"at most {inputs.max_object_records} records in one object)"
    )
