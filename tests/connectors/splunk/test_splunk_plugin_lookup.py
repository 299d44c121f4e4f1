"""How core finds the Splunk plugin, and what forwarding to Splunk imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from trailrelay import plugins
from trailrelay.errors import PluginNotFound


def test_a_shipped_connector_loads_from_its_own_distribution_without_a_scan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``load_sink("splunk")`` reads trailrelay-splunk's metadata, not every installed
    distribution's; it is the same plugin the full scan finds, loaded once per process."""
    full_scan = plugins.installed_sinks()["splunk"]
    assert full_scan.distribution == "trailrelay-splunk"
    monkeypatch.setattr(plugins, "_LOADED", {})

    def no_scan() -> None:
        raise AssertionError("scanned every distribution")

    monkeypatch.setattr(plugins, "installed_sinks", no_scan)
    plugin = plugins.load_sink("splunk")
    assert plugin is full_scan.entry_point.load()
    assert plugins.load_sink("splunk") is plugin
    with pytest.raises(
        AssertionError, match="scanned"
    ):  # an unknown type still scans (to list what is there)
        plugins.load_sink("no-such-sink")


def test_a_missing_type_names_what_is_installed() -> None:
    with pytest.raises(PluginNotFound, match=r"installed: .*splunk"):
        plugins.load_sink("no-such-sink")


def test_forwarding_does_not_load_splunklib_until_a_search_needs_it() -> None:
    """splunklib (the management API, ~40 ms to import) is for searches (canary, verify), not
    for every forwarding run; the searcher still gets it."""
    probe = (
        "import sys\n"
        "from trailrelay_splunk.plugin import plugin\n"
        "cfg = plugin.config_model.validate({'type': 'splunk', 'url': 'https://127.0.0.1:1', 'token': 't',"
        " 'management_url': 'https://127.0.0.1:2', 'management_token': 'm'})\n"
        "before = 'splunklib' in sys.modules\n"
        "plugin.searcher(cfg)\n"
        "print(before, 'splunklib' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "True"]
