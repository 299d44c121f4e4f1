"""trailrelay-sentinel: AWS CloudTrail into Microsoft Sentinel's AWSCloudTrail table."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
