"""The short reliability run: a few kills per mode and sink, a short outage, a few thousand records.

The same scenarios as ``python -m reliability`` (which publishes the full figures in
``docs/RELIABILITY.md``), sized for CI.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reliability.__main__ import main
from reliability.aws import Inputs
from reliability.crash import run_crash
from reliability.lab import Lab
from reliability.standins import IDEMPOTENT, SINKS, SinkSettings
from trailrelay.testing import require_corpus

KILLS = 3


def test_crash_input_holds_the_real_corpus(crash_inputs: Inputs) -> None:
    require_corpus()
    assert crash_inputs.corpus_records > 3000
    assert crash_inputs.generated_records > 0


@pytest.mark.parametrize("sink", SINKS)
@pytest.mark.parametrize("mode", ["s3", "sqs"])
def test_crash_consistency(lab: Lab, crash_inputs: Inputs, mode: str, sink: str) -> None:
    # the short input forwards in about two seconds now: timed kills must come within it
    result = run_crash(
        lab, crash_inputs, mode, sink, kills=KILLS, seed=7, settings=SinkSettings(), max_timed_seconds=1.2
    )
    failed = [c for c in result.checks if not c.ok]
    assert not failed, failed
    assert len(result.kills) == KILLS
    assert result.tally is not None
    assert result.tally.lost == 0
    if sink in IDEMPOTENT:
        assert result.tally.duplicates == 0


def test_faults_soak_and_report(tmp_path: Path) -> None:
    out = tmp_path / "RELIABILITY.md"
    argv = ["--profile", "short", "--only", "faults,soak", "--outage-seconds", "6", "--out", str(out)]
    argv += ["--workdir", str(tmp_path / "work")]
    code = main(argv)
    text = out.read_text()
    failing = [line for line in text.splitlines() if "**FAIL**" in line]
    assert code == 0, failing
    assert not failing
    assert "python -m reliability --profile short --only faults,soak" in text
    for heading in ("## Faults", "## Soak", "## Machine", "## Every check"):
        assert heading in text
    assert "**6 s**" in text  # the outage the run was given
    assert "records/s" in text
