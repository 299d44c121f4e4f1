"""``trailrelay forward`` as a subprocess: start, sample its memory, kill, and collect how it ended."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

__all__ = ["READERS", "Forwarder", "RunResult", "write_config"]

READERS = 2
"""``[pipeline] readers`` of the harness's configurations (the bounds it checks depend on it)."""


def write_config(folder: Path, source: str, sinks: list[str], *, readers: int = READERS) -> Path:
    """A ``trailrelay.toml`` in ``folder`` with the source, the sinks, state and dead letters there."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "trailrelay.toml"
    path.write_text(
        source + "".join(sinks) + f'[state]\npath = "state.sqlite"\n[dead_letter]\npath = "dead-letters"\n'
        f"[pipeline]\nreaders = {readers}\ndrain_seconds = 5\n"
    )
    return path


@dataclass
class RunResult:
    """How one forwarder process ended."""

    code: int
    """Exit status; the negative signal number when killed by a signal."""
    seconds: float
    peak_rss_kb: int
    """The highest resident set size the kernel recorded for the process (VmHWM, sampled).

    Not wait4's ``ru_maxrss``: on Linux that also counts the parent's memory at the moment of
    fork/exec, so it would report the harness, not the forwarder.
    """
    samples: list[tuple[float, int]] = field(default_factory=list)
    """(seconds since start, RSS kB) sampled while it ran."""
    summary: dict[str, Any] | None = None
    """The final counters (``--summary-json``) when it finished on its own."""

    @property
    def killed(self) -> bool:
        """True when SIGKILL ended it."""
        return self.code == -signal.SIGKILL


class Forwarder:
    """One ``trailrelay forward`` process with RSS sampling."""

    def __init__(
        self, config: Path, env: dict[str, str], *, once: bool, tag: str, sample_every: float = 0.25
    ) -> None:
        self.config = config
        self.folder = config.parent
        self.summary_path = self.folder / f"summary-{tag}.json"
        self.metrics_path = self.folder / f"metrics-{tag}.json"
        self.log_path = self.folder / f"forward-{tag}.log"
        cmd = [
            sys.executable,
            "-m",
            "trailrelay",
            "forward",
            "-c",
            str(config),
            "--no-progress",
            "--log-format",
            "json",
            "--summary-json",
            str(self.summary_path),
        ]
        if once:
            cmd.append("--once")
        full_env = {
            **os.environ,
            **env,
            "PYTHONUNBUFFERED": "1",
            "TRAILRELAY_METRICS_FILE": str(self.metrics_path),
        }
        self._log = self.log_path.open("ab")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(  # noqa: S603 - our own interpreter running our own CLI
            cmd, cwd=self.folder, env=full_env, stdout=subprocess.DEVNULL, stderr=self._log
        )
        self.pid = self.proc.pid
        self.samples: list[tuple[float, int]] = []
        self.peak_kb = 0
        self._done = threading.Event()
        self._sample_every = sample_every
        self._sampler = threading.Thread(target=self._sample, name=f"rss-{tag}", daemon=True)
        self._sampler.start()
        self._result: RunResult | None = None

    def rss_kb(self) -> int | None:
        """Current resident set size in kB, or None once the process is gone."""
        return self._status().get("VmRSS")

    def _status(self) -> dict[str, int]:
        try:
            text = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return {}
        return {
            line.split(":", 1)[0]: int(line.split()[1])
            for line in text.splitlines()
            if line.startswith(("VmRSS:", "VmHWM:"))
        }

    def _sample(self) -> None:
        while not self._done.wait(self._sample_every):
            status = self._status()
            if "VmRSS" in status:
                self.samples.append((time.monotonic() - self.started, status["VmRSS"]))
                self.peak_kb = max(self.peak_kb, status.get("VmHWM", 0), status["VmRSS"])

    def alive(self) -> bool:
        """True while the process has not been reaped."""
        if self._result is not None:
            return False
        return self._reap(block=False) is None

    def metrics(self) -> dict[str, Any] | None:
        """The latest counters the process wrote (every ~2 s), if any."""
        try:
            data: dict[str, Any] = orjson.loads(self.metrics_path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        return data

    def kill(self) -> RunResult:
        """SIGKILL the process and reap it."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        return self.wait()

    def terminate(self) -> None:
        """Ask for a graceful stop (SIGTERM)."""
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)

    def wait(self, timeout: float | None = None) -> RunResult:
        """Wait for the process to end (``TimeoutError`` after ``timeout`` seconds)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            result = self._reap(block=False)
            if result is not None:
                return result
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"forwarder {self.pid} still running after {timeout}s")
            time.sleep(0.02)

    def _reap(self, *, block: bool) -> RunResult | None:
        if self._result is not None:
            return self._result
        pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        if pid == 0:
            return None
        self._done.set()
        self._log.close()
        code = os.waitstatus_to_exitcode(status)
        self.proc.returncode = code  # reaped here (so alive() never blocks), not by Popen
        summary = None
        if self.summary_path.exists():
            try:
                summary = orjson.loads(self.summary_path.read_bytes())
            except orjson.JSONDecodeError:
                summary = None
        self._result = RunResult(
            code, time.monotonic() - self.started, self.peak_kb, list(self.samples), summary
        )
        return self._result

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the process's log (for failure messages)."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""
