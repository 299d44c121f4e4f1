"""Run every benchmark in this folder, one after another (``tox -e bench``).

Each prints records/s and its ratio against a baseline measured in the same run; the exit
status is non-zero when any benchmark reports a missed target. Pass names to run a subset:
``python bench/run_all.py read splunk``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def main(argv: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in argv]
    failed = []
    for script in scripts:
        print(f"== {script.stem}", flush=True)
        code = subprocess.call([sys.executable, str(script)], cwd=HERE)
        if code:
            failed.append(script.stem)
    if failed:
        print(f"targets missed or errors in: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
