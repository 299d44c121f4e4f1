"""Placeholder sink settings that let each connector build its encoder offline.

Used by ``trailrelay demo`` and ``trailrelay cost`` when no config names a real SIEM: the
encoders only need syntactically valid settings; nothing is ever sent to these addresses.
"""

from __future__ import annotations

from typing import Any

__all__ = ["DEMO_SINK_CONFIGS"]

DEMO_SINK_CONFIGS: dict[str, dict[str, Any]] = {
    "splunk": {"type": "splunk", "url": "https://splunk.example.invalid:8088", "token": "demo-not-a-token"},
    "elastic": {"type": "elastic", "url": "https://elastic.example.invalid:9200", "api_key": "ZGVtbzpkZW1v"},
    "sentinel": {
        "type": "sentinel",
        "endpoint": "https://demo.ingest.monitor.example.invalid",
        "rule_id": "dcr-00000000000000000000000000000000",
        "stream": "Custom-AWSCloudTrail",
        "tenant_id": "00000000-0000-0000-0000-000000000000",
        "client_id": "00000000-0000-0000-0000-000000000000",
        "client_secret": "demo-not-a-secret",
    },
}
