"""One corpus finder for every test, and a switch that makes a missing corpus fail, not skip."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trailrelay.testing import corpus_dir, require_corpus

TESTS = Path(__file__).resolve().parents[1]


def test_a_missing_corpus_fails_when_it_is_required(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAILRELAY_CORPUS", str(tmp_path / "nowhere"))
    monkeypatch.setenv("TRAILRELAY_REQUIRE_CORPUS", "1")
    with pytest.raises(pytest.fail.Exception, match="must not skip"):
        require_corpus()
    monkeypatch.delenv("TRAILRELAY_REQUIRE_CORPUS")
    with pytest.raises(pytest.skip.Exception, match="not found"):
        require_corpus()


def test_the_finder_takes_the_root_or_its_cloudtrail_folder_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "corpus" / "cloudtrail").mkdir(parents=True)
    (tmp_path / "corpus" / "elastic-pipeline-tests").mkdir()
    for given in (tmp_path / "corpus", tmp_path / "corpus" / "cloudtrail"):
        monkeypatch.setenv("TRAILRELAY_CORPUS", str(given))
        assert corpus_dir() == (tmp_path / "corpus").resolve()
        assert (
            require_corpus("elastic-pipeline-tests")
            == (tmp_path / "corpus" / "elastic-pipeline-tests").resolve()
        )
    monkeypatch.setenv("TRAILRELAY_CORPUS", str(tmp_path / "typo"))
    assert corpus_dir() is None  # an explicit wrong path is not replaced by another copy


def test_no_test_looks_for_the_corpus_on_its_own() -> None:
    """Only trailrelay.testing reads TRAILRELAY_CORPUS or builds the shared/corpus path."""
    own = re.compile(r"TRAILRELAY_CORPUS\"|'TRAILRELAY_CORPUS'|\"shared\" / \"corpus\"|shared/corpus\"")
    offenders = [
        str(p.relative_to(TESTS))
        for p in TESTS.rglob("*.py")
        if p.resolve() != Path(__file__).resolve() and own.search(p.read_text(encoding="utf-8"))
    ]
    assert offenders == []
