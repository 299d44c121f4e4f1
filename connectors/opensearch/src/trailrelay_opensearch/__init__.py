"""trailrelay sink for OpenSearch: self-managed, Amazon OpenSearch Service, Serverless and Wazuh."""

from __future__ import annotations

__all__: list[str] = []
