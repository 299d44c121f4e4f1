"""Shared set-up for the atheris fuzz targets: run one target for a bounded number of inputs."""

from __future__ import annotations

import sys
from collections.abc import Callable

import atheris


def run(target: Callable[[bytes], None]) -> None:
    """Fuzz ``target``; ``-runs=N`` bounds the run (CI uses a short one)."""
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()
