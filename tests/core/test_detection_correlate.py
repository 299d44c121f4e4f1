"""Count-in-window correlation in the stream: thresholds, disorder, duplicates, bounds, threads."""

from __future__ import annotations

import datetime as dt
import random
import threading
from pathlib import Path
from typing import Any

import pytest

from trailrelay.detection.config import DetectionConfig
from trailrelay.detection.evaluate import SigmaTagger
from trailrelay.detection.loader import RuleError
from trailrelay.record import Origin, Record

ORIGIN = Origin("file", "test://correlate")
T0 = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)

BASE_RULE = """\
title: Denied call
id: 10000000-0000-4000-8000-000000000001
name: denied_call
level: low
logsource: {product: aws, service: cloudtrail}
detection:
    sel:
        errorCode|contains: [AccessDenied, UnauthorizedOperation]
    condition: sel
"""


def correlation(condition: str, *, kind: str = "event_count", extra: str = "") -> str:
    return (
        "title: Burst\nid: 20000000-0000-4000-8000-000000000002\nlevel: high\n"
        "tags: [attack.discovery, attack.t1580]\n"
        f"correlation:\n  type: {kind}\n  rules: [denied_call]\n  group-by: [userIdentity.arn]\n"
        f"  timespan: 5m\n  condition: {condition}\n{extra}"
    )


def tagger(tmp_path: Path, condition: str = "{gte: 10}", **kwargs: Any) -> SigmaTagger:
    path = tmp_path / "burst.yml"
    path.write_text(BASE_RULE + "---\n" + correlation(condition, **kwargs.pop("corr", {})), encoding="utf-8")
    return SigmaTagger(DetectionConfig(rules=[path], pack=False), **kwargs)


def denied(
    n: int, seconds: float, *, who: str = "mallory", code: str = "AccessDenied", name: str = "GetUser"
) -> Record:
    doc: dict[str, Any] = {
        "eventTime": (T0 + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": "iam.amazonaws.com",
        "eventName": name,
        "errorCode": code,
        "eventID": f"ev-{who}-{n}",
        "userIdentity": {"type": "IAMUser", "arn": f"arn:aws:iam::111122223333:user/{who}"},
    }
    if who == "":
        del doc["userIdentity"]
    return Record.from_document(doc, ORIGIN)


def burst_tags(t: SigmaTagger, records: list[Record]) -> list[bool]:
    return [any(tag.title == "Burst" for tag in t(r).tags) for r in records]


def test_threshold_tags_the_record_that_reaches_it_and_those_after(tmp_path: Path) -> None:
    t = tagger(tmp_path)
    flags = burst_tags(t, [denied(i, i * 10) for i in range(12)])
    assert flags == [False] * 9 + [True] * 3
    # the base rule does not tag on its own (generate: false)
    assert all(tag.title == "Burst" for r in [denied(99, 150)] for tag in t(r).tags)


def test_window_slides(tmp_path: Path) -> None:
    t = tagger(tmp_path)
    early = [denied(i, i) for i in range(9)]  # 9 events in the first 9 seconds
    late = [denied(100 + i, 400 + i) for i in range(9)]  # 9 more, over 5 minutes later: 18, never 10 in 5 min
    assert not any(burst_tags(t, early + late))
    assert burst_tags(t, [denied(200, 409)]) == [True]  # the 10th within 5 minutes


def test_out_of_order_events_are_placed_by_event_time(tmp_path: Path) -> None:
    t = tagger(tmp_path)
    records = [denied(i, i) for i in range(10)]
    random.Random(7).shuffle(records)
    flags = burst_tags(t, records)
    assert flags == [False] * 9 + [True]


def test_redelivered_events_are_not_counted_twice(tmp_path: Path) -> None:
    t = tagger(tmp_path)
    first = [denied(i, i) for i in range(9)]
    assert not any(burst_tags(t, first))
    assert not any(burst_tags(t, [denied(i, i) for i in range(9)]))  # the same eventIDs again
    assert burst_tags(t, [denied(9, 9)]) == [True]


def test_groups_are_separate_and_events_without_the_group_field_do_not_count(tmp_path: Path) -> None:
    t = tagger(tmp_path)
    mixed = [denied(i, i, who="mallory" if i % 2 else "trent") for i in range(18)]
    assert not any(burst_tags(t, mixed))
    anonymous = [denied(i, i, who="") for i in range(20)]
    assert not any(burst_tags(t, anonymous))
    assert t.windows[0].ungrouped == 20


def test_events_too_late_for_their_group_are_ignored(tmp_path: Path) -> None:
    t = tagger(tmp_path, lateness=60)
    assert not any(burst_tags(t, [denied(i, 3600 + i) for i in range(9)]))
    assert burst_tags(t, [denied(50, 3600 - 400)]) == [False]  # older than 5 min + 60 s behind
    assert t.windows[0].late == 1
    assert burst_tags(t, [denied(51, 3600 - 200)]) == [True]  # late, but still in a 5 minute window


def test_gt_is_strict(tmp_path: Path) -> None:
    t = tagger(tmp_path, "{gt: 3}")
    assert burst_tags(t, [denied(i, i) for i in range(5)]) == [False, False, False, True, True]


@pytest.mark.parametrize(
    "condition", ["{gte: 1.5}", "{gt: -1}", "{gte: .nan}", "{gte: true}", "{gte: 3, lte: 4.5}"]
)
def test_a_count_that_is_not_a_whole_number_of_events_is_refused(tmp_path: Path, condition: str) -> None:
    """pySigma reads ``gte: 1.5`` as 1: the stream tagged from the first event, not the second."""
    with pytest.raises(
        RuleError, match=r"burst\.yml: correlation 'Burst': condition \w+: \S+ is not a count of events"
    ):
        tagger(tmp_path, condition)


def test_a_whole_count_written_as_a_float_counts_as_it_says(tmp_path: Path) -> None:
    t = tagger(tmp_path, "{gte: 2.0}")
    assert burst_tags(t, [denied(i, i) for i in range(3)]) == [False, True, True]
    assert burst_tags(tagger(tmp_path, "{gte: 0}"), [denied(0, 0)]) == [True]


def test_value_count_counts_distinct_values(tmp_path: Path) -> None:
    t = tagger(tmp_path, "{gte: 3, field: eventName}", corr={"kind": "value_count"})
    names = ["GetUser", "GetUser", "ListUsers", "ListUsers", "GetRole"]
    flags = burst_tags(t, [denied(i, i, name=n) for i, n in enumerate(names)])
    assert flags == [False, False, False, False, True]


def test_number_of_groups_is_bounded(tmp_path: Path) -> None:
    t = tagger(tmp_path, max_groups=50)
    for i in range(500):
        t(denied(i, i, who=f"user{i}"))
    assert len(t.windows[0].groups) <= 51


def test_reset_forgets_counts(tmp_path: Path) -> None:
    t = tagger(tmp_path)
    burst_tags(t, [denied(i, i) for i in range(9)])
    t.reset()
    assert burst_tags(t, [denied(100, 10)]) == [False]
    assert t.tagged == 0


def test_concurrent_readers_count_exactly(tmp_path: Path) -> None:
    t = tagger(tmp_path)
    per_user = 100
    records = {who: [denied(i, i % 200, who=who) for i in range(per_user)] for who in ("a", "b", "c", "d")}
    tagged: dict[str, int] = {}

    def feed(who: str) -> None:
        tagged[who] = sum(burst_tags(t, records[who]))

    threads = [threading.Thread(target=feed, args=(who,)) for who in records]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert tagged == dict.fromkeys(records, per_user - 9)


@pytest.mark.parametrize("condition", ["{gte: 10}", "{gt: 9}"])
def test_pack_style_threshold_equivalence(tmp_path: Path, condition: str) -> None:
    t = tagger(tmp_path, condition)
    assert burst_tags(t, [denied(i, i) for i in range(10)]).index(True) == 9


def test_a_chunk_is_tagged_as_its_records_one_by_one(tmp_path: Path) -> None:
    """The pipeline tags a chunk at once (``many``): the same tags, on the same records, as one by one."""
    records = [denied(i, i, who="mallory" if i % 3 else "trent") for i in range(30)]
    one_by_one = tagger(tmp_path)
    expected = [[t.rule_id for t in one_by_one(r).tags] for r in records]
    fresh = [Record(r.raw, r.routing, r.origin, r.index) for r in records]
    chunked = tagger(tmp_path)
    chunked.many(fresh)
    assert [[t.rule_id for t in r.tags] for r in fresh] == expected
    assert sum(map(bool, expected)) == 11 + 1  # mallory's 10th to 20th denied call, trent's 10th
    assert chunked.tagged == one_by_one.tagged and chunked.matches == one_by_one.matches


def test_a_worker_whose_supervisor_is_gone_forwards_its_records_untagged_by_correlations(
    tmp_path: Path,
) -> None:
    import socket

    from trailrelay.detection.shared import _Asker

    t = tagger(tmp_path)
    mine, theirs = socket.socketpair()
    mine.close()  # the supervisor ended
    t.remote = _Asker(theirs)
    records = t.many([denied(i, i) for i in range(12)])
    assert not any(r.tags for r in records)
    assert t.errors == 12  # each observation's verdict failed and was counted, nothing raised
    theirs.close()
