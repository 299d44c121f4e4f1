"""The Sentinel benchmark's exit status follows its target (it once printed "NOT met" and exited 0)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from trailrelay.testing import require_corpus

BENCH = Path(__file__).resolve().parents[3] / "bench" / "bench_sentinel.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_sentinel", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_sentinel"] = module
    spec.loader.exec_module(module)
    return module


def test_a_missed_target_is_a_non_zero_exit() -> None:
    require_corpus()
    bench = load_bench()
    assert bench.main(["--rounds", "1", "--copies", "1", "--target", "1e12"]) == 1
    assert bench.main(["--rounds", "1", "--copies", "1", "--target", "1"]) == 0
