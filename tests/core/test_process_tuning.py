"""The allocator settings a forwarding run makes (``trailrelay.pipeline.process``).

Measured where it matters: minor page faults of a child process that allocates and frees the
megabyte buffers reading makes, with the settings and without (the operator's own
``GLIBC_TUNABLES`` turns them off).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from trailrelay.pipeline import process

CHILD = """
import resource
from trailrelay.pipeline.process import tune_allocator
tuned = tune_allocator()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(100):  # four 1 MiB buffers at a time, as decompressing and cutting make them
    bufs = [b"x" * (1 << 20) for _ in range(4)]
    del bufs
print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="the thresholds are glibc's; elsewhere tune_allocator changes nothing",
)


def _child(**env: str) -> tuple[bool, int]:
    clean = {k: v for k, v in os.environ.items() if k not in process._USER_SETTINGS}
    out = subprocess.run(
        [sys.executable, "-c", CHILD], env={**clean, **env}, capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0] == "True", int(out[1])


@glibc
def test_buffers_are_reused_instead_of_faulted_in_again() -> None:
    tuned, faults = _child()
    untuned, baseline = _child(GLIBC_TUNABLES="")
    assert tuned and not untuned
    assert baseline > 50_000  # glibc's defaults hand the pages back and fault them in again
    assert faults < baseline / 10, (faults, baseline)


@glibc
def test_an_operators_own_allocator_settings_win() -> None:
    tuned, _ = _child(MALLOC_TRIM_THRESHOLD_="131072")
    assert not tuned


def test_off_linux_nothing_is_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process, "_tuned", None)
    monkeypatch.setattr(process.sys, "platform", "darwin")
    assert process.tune_allocator() is False
