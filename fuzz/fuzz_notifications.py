"""Fuzz the S3/SNS/EventBridge notification parser: only InputError may escape."""

from __future__ import annotations

import atheris

with atheris.instrument_imports():
    from trailrelay.errors import InputError
    from trailrelay.sources.notifications import parse_notification

from _common import run


def target(data: bytes) -> None:
    try:
        parse_notification(data)
    except InputError:
        pass


if __name__ == "__main__":
    run(target)
