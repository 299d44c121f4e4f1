"""Fixtures for the short reliability runs: moto, a work folder, and the crash input."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: `reliability`

from reliability.aws import Aws, Inputs, build_inputs
from reliability.lab import Lab

logging.getLogger("werkzeug").setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """moto on 127.0.0.1 and a work folder for the scenarios."""
    aws = Aws()
    yield Lab(tmp_path_factory.mktemp("reliability"), aws, seed=7)
    aws.stop()


@pytest.fixture(scope="session")
def crash_inputs(lab: Lab) -> Inputs:
    """The real corpus (when present) plus a slice of a generated trail, uploaded once."""
    return build_inputs(
        lab.aws,
        lab.folder("input-crash"),
        seed=7,
        events_per_hour=100,
        accounts=1,
        regions=("us-east-1",),
        max_generated_objects=30,
    )
