"""``trailrelay demo`` with the Splunk connector installed: its table shows real requests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec

from trailrelay_splunk.config import SplunkConfig


def test_demo_cuts_splunk_bodies_as_a_forward_run_would(tmp_path: Path) -> None:
    """The demo batches with the connector's own limits: full ~800 kB bodies, not pairs of a
    full body and a sliver (what generic 500-record batches made of the envelopes)."""
    out = tmp_path / "demo"
    subprocess.run(
        [sys.executable, "-m", "trailrelay", "demo", "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    limit = next(f.default for f in msgspec.structs.fields(SplunkConfig) if f.name == "batch_bytes")
    sizes = sorted(p.stat().st_size for p in (out / "payloads" / "splunk").iterdir())
    assert sizes and max(sizes) <= limit
    fewest = -(-sum(sizes) // limit)
    assert len(sizes) <= 1.1 * fewest + 1, (len(sizes), fewest)
    assert sum(s < limit // 2 for s in sizes) <= 1  # only the last, partial batch is small
