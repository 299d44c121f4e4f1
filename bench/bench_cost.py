"""trailrelay cost: measuring a sample takes no longer than forwarding it would.

Target (issue 9): measuring N bytes (uncompressed) of CloudTrail with every installed
connector's encoder takes no longer than forwarding the same bytes, in the same run, through
the pipeline (files source, risk tagging, filter) into the file sink and an encoded-payload
sink per connector (encode + gzip, what each connector does before its HTTP request).
The issue asks for 1 GB; the default here is 128 MB so the benchmark fits the CI machine:
``python bench/bench_cost.py --mb 1024`` runs the full size.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import pin_one_core

from trailrelay.contract import BatchLimits
from trailrelay.cost.measure import Limits, list_local, measure
from trailrelay.detection.evaluate import SigmaTagger
from trailrelay.generate import generate_trail
from trailrelay.pipeline.deadletter import FolderDeadLetters
from trailrelay.pipeline.delivery import SinkRunner
from trailrelay.pipeline.metrics import Metrics
from trailrelay.pipeline.runner import Pipeline
from trailrelay.plugins import installed_sinks, load_sink
from trailrelay.record import Record
from trailrelay.sinks.encoded import EncodedFolderSink
from trailrelay.sinks.file import FileConfig, FileSink
from trailrelay.sinks.placeholders import placeholder_config
from trailrelay.sources.files import FileSource
from trailrelay.transforms.filters import FilterConfig, RecordFilter


def make_trail(root: Path, megabytes: int) -> int:
    """Synthetic org trails (several days) until ``megabytes`` of uncompressed records exist."""
    total = 0
    day = 0
    while total < megabytes * 1_000_000:
        out = root / f"d{day}"
        generate_trail(out, seed=day, day=dt.date(2026, 3, 1) + dt.timedelta(days=day), events_per_hour=200)
        objects, _ = list_local(out)
        total += sum(len(gzip.decompress(obj.fetch())) for obj in objects)
        day += 1
    return total


def forward(trail: Path, out: Path) -> float:
    """Seconds to forward the trail into the file sink and every connector's encoder."""
    start = time.perf_counter()
    stop = threading.Event()
    metrics = Metrics()
    dead = FolderDeadLetters(out / "dead")
    pipeline = Pipeline(FileSource(trail), dead_letters=dead, metrics=metrics, stop=stop, readers=1)
    record_filter = RecordFilter(FilterConfig())

    def keep(record: Record) -> Record | None:
        return record if record_filter.keep(record) else None

    pipeline.transforms = [SigmaTagger(), keep]
    sinks: dict[str, object] = {"file": FileSink(FileConfig(type="file", path=out / "fwd.ndjson"))}
    filters = {}
    for name in installed_sinks():
        plugin = load_sink(name)
        placeholder = placeholder_config(name, plugin)
        if placeholder is not None:
            config = plugin.config_model.validate(placeholder)
            sinks[name] = EncodedFolderSink(
                plugin.encoder(config),
                out / name,
                BatchLimits(max_records=500, max_bytes=4 << 20, concurrency=1),
            )
            filters[name] = config.filter
    for name, sink in sinks.items():
        sink.open()  # type: ignore[attr-defined]
        f = filters.get(name)
        pipeline.sinks[name] = SinkRunner(
            name,
            sink,  # type: ignore[arg-type]
            dead_letters=dead,
            metrics=metrics,
            stop=stop,
            on_fatal=pipeline.on_fatal,
            max_age=0.2,
            record_filter=RecordFilter(f) if f is not None else None,
        )
    pipeline.run()
    return time.perf_counter() - start


def cost(trail: Path) -> tuple[float, int]:
    """Seconds to measure the trail with every installed connector; records measured."""
    start = time.perf_counter()
    objects, skipped = list_local(trail)
    m = measure(objects, source=str(trail), limits=Limits(max_bytes=1 << 40), skipped=skipped)
    return time.perf_counter() - start, m.records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=128, help="uncompressed megabytes to measure (issue: 1024)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    pin_one_core()
    with tempfile.TemporaryDirectory(prefix="bench-cost-") as tmp:
        root = Path(tmp)
        size = make_trail(root / "trail", args.mb)
        best_fwd = best_cost = float("inf")
        records = 0
        for i in range(args.rounds):  # alternate, so load on the machine hits both alike
            best_fwd = min(best_fwd, forward(root / "trail", root / f"out{i}"))
            seconds, records = cost(root / "trail")
            best_cost = min(best_cost, seconds)
        connectors = [n for n in installed_sinks() if placeholder_config(n, load_sink(n)) is not None]
        ratio = best_fwd / best_cost
        ok = ratio >= 1.0
        print(
            f"{'cost: measure vs forward':<48} {size / 1e6:,.0f} MB, {records:,} records, "
            f"connectors {', '.join(connectors) or 'none'}: measure {best_cost:.1f}s "
            f"({size / best_cost / 1e6:,.1f} MB/s), forward {best_fwd:.1f}s "
            f"({size / best_fwd / 1e6:,.1f} MB/s) -> {ratio:.2f}x "
            f"[{'PASS' if ok else 'MISS'}: measuring no slower than forwarding]"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
