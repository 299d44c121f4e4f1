"""trailrelay: move AWS CloudTrail into Splunk, Elastic or Microsoft Sentinel."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("trailrelay")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0+unknown"

__all__ = ["__version__"]
