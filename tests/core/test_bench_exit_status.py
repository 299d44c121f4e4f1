"""Every benchmark's exit status says whether its targets were met (run_all and CI read it)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
SCRIPTS = sorted(BENCH.glob("bench_*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.stem for s in SCRIPTS])
def test_a_bench_exits_with_what_main_returns(script: Path) -> None:
    """``main() -> int`` and ``sys.exit(main())``: a bench that only prints "NOT met" exits 0."""
    tree = ast.parse(script.read_text(encoding="utf-8"))
    main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
    assert isinstance(main.returns, ast.Name) and main.returns.id == "int", f"{script.name}: main() -> int"
    guard = next(n for n in tree.body if isinstance(n, ast.If) and "__main__" in ast.unparse(n.test))
    assert "sys.exit(main(" in ast.unparse(guard), f"{script.name}: sys.exit(main())"
