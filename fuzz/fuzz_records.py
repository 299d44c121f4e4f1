"""Fuzz the record parser: any bytes give records, problems, or its documented errors."""

from __future__ import annotations

import atheris

with atheris.instrument_imports():
    from trailrelay.errors import InputError
    from trailrelay.record import Origin, Record
    from trailrelay.sources.decompress import decompress
    from trailrelay.sources.parse import NotALogFile, Problem, iter_records

from _common import run

ORIGIN = Origin("file", "fuzz://records")


def target(data: bytes) -> None:
    try:
        for item in iter_records(decompress(data, 1 << 20), ORIGIN):
            assert isinstance(item, (Record, Problem))
            if isinstance(item, Record):
                item.line()
    except (InputError, NotALogFile):
        pass


if __name__ == "__main__":
    run(target)
