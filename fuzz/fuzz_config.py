"""Fuzz config loading (TOML text → typed config): only ConfigError may escape."""

from __future__ import annotations

import atheris

with atheris.instrument_imports():
    import tomllib

    from trailrelay.config import parse_config
    from trailrelay.errors import ConfigError

from _common import run


def target(data: bytes) -> None:
    try:
        raw = tomllib.loads(data.decode("utf-8", "replace"))
    except tomllib.TOMLDecodeError:
        return
    try:
        parse_config(raw)
    except ConfigError:
        pass


if __name__ == "__main__":
    run(target)
