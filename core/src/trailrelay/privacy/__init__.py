"""Pseudonymization of personal data by field path, per sink (``[privacy]`` in the config).

Fields are named by path (``userIdentity.userName``, ``resources.*.ARN``) and each gets one
method: a keyed HMAC-SHA256 pseudonym, the person part of an ARN or principal id, IP prefix
truncation, or removal. Values are changed in the parsed event, never by matching patterns in
its serialized text. ``trailrelay reveal`` re-identifies a token for a holder of the key.
"""

from __future__ import annotations

from trailrelay.privacy.config import STANDARD_PROFILE, FieldRule, PrivacyConfig, PrivacyProfile
from trailrelay.privacy.keys import Key, load_key
from trailrelay.privacy.pseudonymize import Pseudonymizer, build_pseudonymizers
from trailrelay.privacy.tokens import TOKEN_PATTERN, Tokenizer

__all__ = [
    "STANDARD_PROFILE",
    "TOKEN_PATTERN",
    "FieldRule",
    "Key",
    "PrivacyConfig",
    "PrivacyProfile",
    "Pseudonymizer",
    "Tokenizer",
    "build_pseudonymizers",
    "load_key",
]
