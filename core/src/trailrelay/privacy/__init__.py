"""Pseudonymization of personal data by field path, per sink (``[privacy]`` in the config).

Fields are named by path (``userIdentity.userName``, ``resources.*.ARN``) and each gets one
method: a keyed HMAC-SHA256 pseudonym, the person part of an ARN or principal id, IP prefix
truncation, or removal. Values are changed in the parsed event, never by matching patterns in
its serialized text. ``trailrelay reveal`` re-identifies a token for a holder of the key.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from trailrelay.privacy.config import STANDARD_PROFILE, FieldRule, PrivacyConfig, PrivacyProfile

if TYPE_CHECKING:
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

# The machinery (keys, HMAC, the pseudonymizer) is imported on first use, so loading a config,
# which imports ``privacy.config`` and with it this package, loads none of it.
_RUNTIME = {
    "Key": "keys",
    "load_key": "keys",
    "Pseudonymizer": "pseudonymize",
    "build_pseudonymizers": "pseudonymize",
    "TOKEN_PATTERN": "tokens",
    "Tokenizer": "tokens",
}


def __getattr__(name: str) -> Any:
    """The runtime names, imported from their modules on first use."""
    module = _RUNTIME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
