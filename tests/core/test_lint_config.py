"""mypy (strict) checks the core and the connectors, and the lint env installs what they import."""

from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _ini(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / name, encoding="utf-8")
    return parser


def test_mypy_strict_covers_the_core_and_the_connectors() -> None:
    mypy = _ini("mypy.ini")["mypy"]
    files = {f.strip() for f in mypy["files"].split(",")}
    assert mypy.getboolean("strict")
    assert {"core/src", "connectors/elastic/src", "connectors/sentinel/src"} <= files
    for entry in files:
        assert (ROOT / entry).is_dir(), entry


def test_the_lint_env_installs_every_distribution_mypy_checks() -> None:
    deps = _ini("tox.ini")["testenv:lint"]["deps"]
    files = {f.strip() for f in _ini("mypy.ini")["mypy"]["files"].split(",")}
    for entry in files:
        distribution = entry.removesuffix("/src")
        assert f"{{tox_root}}/{distribution}" in deps, distribution
