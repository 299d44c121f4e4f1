"""The HTML cost report renders in a real browser (headless Chromium) with its charts.

Needs Debian's ``chromium`` package (.ci/run installs it); skips with the reason when absent.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from trailrelay.config import Config, FilesSourceConfig
from trailrelay.contract import FilterConfig, FilterRule
from trailrelay.cost.billing import Meter
from trailrelay.cost.measure import Meters, Target, list_local, measure
from trailrelay.cost.prices import load_prices
from trailrelay.cost.report import build_report
from trailrelay.cost.report_html import render_html
from trailrelay.generate import generate_trail
from trailrelay.sinks.file import LinesEncoder

CHARTS = ("cost-per-siem", "volume-by-event-source", "volume-by-event-name", "savings-per-rule")
BROWSER_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("headless Chromium not installed (Debian: apt-get install -y chromium); .ci/run installs it")


@pytest.fixture(scope="module")
def report_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("html")
    generate_trail(root / "trail", seed=5, events_per_hour=40, accounts=2)
    objects, skipped = list_local(root / "trail")
    sink = FilterConfig(rules=[FilterRule(name="no describes", action="drop", event_name=["Describe*"])])
    meters = Meters([Target("archive", "lines", Meter("lines", LinesEncoder()), sink)], [], {})
    config = Config(source=FilesSourceConfig(type="files", path=root / "trail"), sinks=[])
    m = measure(objects, source="trail", config=config, meters=meters, skipped=skipped)
    page = root / "cost.html"
    page.write_text(render_html(build_report(m, load_prices(), "EUR")), encoding="utf-8")
    return page


class _Charts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.charts: dict[str, int] = {}
        self._current: str | None = None
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "svg" and a.get("data-chart"):
            self._current = a["data-chart"]
            self.charts[self._current] = 0
        elif tag == "rect" and self._current and a.get("class") == "bar":
            self.charts[self._current] += 1
        for key in ("src", "href"):
            if a.get(key):
                self.external.append(str(a[key]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._current = None


def test_report_is_self_contained_and_has_every_chart(report_html: Path) -> None:
    text = report_html.read_text(encoding="utf-8")
    parser = _Charts()
    parser.feed(text)
    assert parser.external == [] and "<script" not in text  # no CDN, no network, nothing to load
    assert set(CHARTS) <= set(parser.charts)
    assert all(parser.charts[c] > 0 for c in CHARTS), parser.charts


def test_report_renders_in_headless_chromium(report_html: Path, tmp_path: Path) -> None:
    browser = _chromium()
    url = report_html.as_uri()
    dom = subprocess.run(
        [browser, *BROWSER_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    parser = _Charts()
    parser.feed(dom.stdout)
    for chart in CHARTS:
        assert parser.charts.get(chart, 0) > 0, f"chart {chart} missing from the rendered DOM"
    assert re.search(r"<h1>What trail would cost</h1>", dom.stdout)
    shot = tmp_path / "cost.png"
    subprocess.run(
        [browser, *BROWSER_FLAGS, f"--user-data-dir={tmp_path / 'profile2'}", f"--screenshot={shot}",
         "--window-size=1200,2400", url],
        capture_output=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert shot.exists() and shot.stat().st_size > 10_000  # something was drawn
