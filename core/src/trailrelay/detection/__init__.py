"""Sigma detection in the stream: the rule pack, the evaluator, SIEM exports, ``trailrelay rules``.

Importing this package is cheap (the configuration model only); pySigma is loaded by the
modules that need it: :mod:`.evaluate` (``SigmaTagger``), :mod:`.export`, :mod:`.cli`.
"""

from trailrelay.detection.config import DetectionConfig

__all__ = ["DetectionConfig"]
