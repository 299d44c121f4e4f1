"""trailrelay sink for Elasticsearch: Elastic's AWS CloudTrail integration format or ECS."""

from __future__ import annotations

__all__: list[str] = []
