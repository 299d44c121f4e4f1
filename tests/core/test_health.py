"""``/metrics``: the Prometheus text of a run's counters."""

from __future__ import annotations

from trailrelay.pipeline.health import prometheus_text
from trailrelay.pipeline.metrics import Metrics


def test_metrics_text_has_what_the_summary_table_has() -> None:
    m = Metrics()
    m.add("records_in", 200)
    m.bump("delivered", "splunk", 190)
    m.bump("filtered_by_sink", "splunk", 10)
    m.bump("dead_lettered", "parse", 1)
    m.latencies([0.5, 1.5])
    text = prometheus_text(m.snapshot())
    assert 'trailrelay_delivered_total{sink="splunk"} 190' in text
    assert 'trailrelay_filtered_by_sink_total{sink="splunk"} 10' in text  # why 200 became 190
    assert 'trailrelay_dead_lettered_total{stage="parse"} 1' in text
    assert 'trailrelay_event_delay_seconds{quantile="0.99"}' in text
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert len(names) == len(set(names))  # each metric declared once
