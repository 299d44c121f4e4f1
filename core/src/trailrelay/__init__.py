"""trailrelay: move AWS CloudTrail into Splunk, Elastic, Microsoft Sentinel or OpenSearch."""

__version__ = "0.1.0"
"""The distribution's version (pyproject reads it from here, so the two cannot differ)."""

__all__ = ["__version__"]
