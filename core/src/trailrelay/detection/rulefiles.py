"""Rule files: the shipped pack and the user's own, read as text (no YAML or Sigma parsing here).

Kept apart from :mod:`.loader` (which parses with pySigma) so that what only needs the files,
or the digest of the shipped pack (:mod:`.plan`), does not import pySigma.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from trailrelay.errors import ConfigError

__all__ = ["PACK_LABEL", "RuleError", "RuleSource", "digest", "pack_sources", "user_sources"]

PACK_LABEL = "pack"
"""How rules shipped with trailrelay are labelled in listings (instead of a file path)."""

_SUFFIXES = (".yml", ".yaml")
_MAX_RULE_BYTES = 1 << 20


class RuleError(ConfigError):
    """A Sigma rule cannot be read, parsed or evaluated; the message names the file and rule."""


@dataclass(frozen=True, slots=True)
class RuleSource:
    """One rule file's text and where it came from."""

    origin: str
    """A file path, or ``pack:<file name>`` for the shipped rules."""
    text: str


def pack_sources() -> list[RuleSource]:
    """The rule files shipped inside the package, sorted by name."""
    folder = resources.files("trailrelay.detection").joinpath("rules")
    out = [
        RuleSource(f"{PACK_LABEL}:{item.name}", item.read_text(encoding="utf-8"))
        for item in folder.iterdir()
        if item.name.endswith(_SUFFIXES)
    ]
    return sorted(out, key=lambda s: s.origin)


def user_sources(paths: Iterable[Path], base_dir: Path | None = None) -> list[RuleSource]:
    """Rule files under each path (a file or a folder, read recursively)."""
    out: list[RuleSource] = []
    for configured in paths:
        path = configured.expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if path.is_file():
            files = [path]
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(_SUFFIXES))
            if not files:
                raise RuleError(f"[detection] rules: no *.yml or *.yaml rule files under {path}")
        else:
            raise RuleError(f"[detection] rules: {path} does not exist")
        for f in files:
            if f.stat().st_size > _MAX_RULE_BYTES:
                raise RuleError(f"{f}: larger than {_MAX_RULE_BYTES} bytes; not a Sigma rule file")
            try:
                out.append(RuleSource(str(f), f.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError) as exc:
                raise RuleError(f"{f}: cannot be read: {exc}") from None
    return out


def digest(sources: Sequence[RuleSource]) -> str:
    """SHA-256 over the files' names and texts, in order: what a lowered plan was made from."""
    h = hashlib.sha256()
    for src in sources:
        h.update(src.origin.encode())
        h.update(b"\0")
        h.update(src.text.encode())
        h.update(b"\0")
    return h.hexdigest()
