"""The shipped pack, lowered ahead of time: the same plan pySigma makes, and no pySigma at run time."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import orjson
import pytest

from trailrelay.detection import plan as plans
from trailrelay.detection.config import DetectionConfig
from trailrelay.detection.evaluate import SigmaTagger, load_plan
from trailrelay.detection.loader import load_rules, parse_sources
from trailrelay.detection.lower import lower
from trailrelay.detection.plan import PACK_PLAN, Plan, shipped_pack_plan
from trailrelay.detection.rulefiles import RuleSource, pack_sources
from trailrelay.record import Origin, Record
from trailrelay.testing import SAMPLE_EVENTS


def _shipped_bytes() -> bytes:
    return resources.files("trailrelay.detection").joinpath(PACK_PLAN).read_bytes()


def test_the_shipped_plan_is_the_pack_lowered_now() -> None:
    """Fails after a pack rule changes until ``python -m trailrelay.detection.lower`` is run."""
    fresh = lower(parse_sources(pack_sources()))
    assert _shipped_bytes() == fresh.to_json(), "run: python -m trailrelay.detection.lower"
    shipped = shipped_pack_plan()
    assert shipped == fresh
    assert len(shipped.rules) == len(pack_sources()) and shipped.correlations


def test_the_tagger_for_the_pack_uses_the_shipped_plan_and_tags_as_pysigma_would() -> None:
    tagger = SigmaTagger()
    assert tagger.plan == shipped_pack_plan()
    parsed = SigmaTagger(rule_set=load_rules(DetectionConfig()))  # lowered from pySigma's parse now
    origin = Origin("file", "sample.json")
    for event in SAMPLE_EVENTS:
        raw = orjson.dumps(event)
        a, b = tagger(Record.from_bytes(raw, origin)), parsed(Record.from_bytes(raw, origin))
        assert [t.rule_id for t in a.tags] == [t.rule_id for t in b.tags]
    assert tagger.tagged == parsed.tagged > 0


def test_a_changed_pack_is_lowered_afresh_not_read_from_a_stale_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    shipped = pack_sources()
    renamed = [
        RuleSource(s.origin, s.text.replace("title: AWS CloudTrail Logging Stopped", "title: Logging Off"))
        for s in shipped
    ]
    assert renamed != shipped
    monkeypatch.setattr(plans, "pack_sources", lambda: renamed)
    assert shipped_pack_plan() is None
    monkeypatch.setattr("trailrelay.detection.loader.pack_sources", lambda: renamed)
    titles = {r.title for r in SigmaTagger().rules}
    assert "Logging Off" in titles and "AWS CloudTrail Logging Stopped" not in titles


def test_a_plan_of_another_format_is_refused() -> None:
    doc = orjson.loads(_shipped_bytes())
    doc["format"] = plans.FORMAT + 1
    with pytest.raises(ValueError, match="format"):
        Plan.from_json(orjson.dumps(doc))


def test_user_rules_are_lowered_with_pysigma(tmp_path: Path) -> None:
    rule = tmp_path / "mine.yml"
    rule.write_text(
        "title: Mine\nid: 0b3d2f6e-8f5e-4c55-9a8e-2a1a0b7c9d11\nstatus: test\n"
        "logsource:\n  product: aws\n  service: cloudtrail\n"
        "detection:\n  sel:\n    eventName: DescribeInstances\n  condition: sel\nlevel: low\n"
    )
    plan = load_plan(DetectionConfig(rules=[rule]))
    assert {r.title for r in plan.rules} == {r.title for r in shipped_pack_plan().rules} | {"Mine"}
