"""The harness's own arithmetic: loss and duplicate accounting, pending records, the audit's sources."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from reliability.accounting import duplicates_after, tally
from reliability.audit import Finding, Vulnerability, affected, apply_ignores, audit, check_one, closure
from reliability.fault_run import pending

EXPECTED = Counter({"a": 1, "b": 1, "c": 2, "d": 1})


def _dead(sink: str, event_id: str, reason: str) -> dict[str, Any]:
    return {"stage": "sink", "sink": sink, "reason": reason, "raw": f'{{"eventID":"{event_id}"}}'}


def test_tally_loss_duplicates_and_dead_letters() -> None:
    stored = ["a", "a", "c", "c", "c", "zz"]
    dead = [
        _dead("splunk", "b", "Splunk HEC refused the event: HTTP 400, code 6"),
        _dead("splunk", "d", ""),  # no reason: accounts for nothing
        _dead("elastic", "d", "refused"),  # another sink's entry
    ]
    t = tally("splunk", EXPECTED, stored, dead)
    assert t.missing == ["d"]
    assert t.lost == 1
    assert t.dead_lettered == 1
    assert t.unexplained_dead_letters == 1
    assert t.duplicates == 2  # one extra "a", one extra "c" (the input holds "c" twice)
    assert t.unexpected == 1
    assert t.dead_letter_reasons == {"Splunk HEC refused the event": 1}


def test_duplicates_are_attributed_to_the_last_kill_before_them() -> None:
    stored = ["a", "b", "a", "c", "c", "b", "c", "a"]
    #          0    1    2    3    4    5    6    7      kills after 2 and 5 stored copies
    assert duplicates_after(EXPECTED, stored, [2, 5]) == [0, 1, 3]


def test_pending_counts_what_is_read_but_not_final() -> None:
    snap = {
        "records_in": 1000,
        "records_filtered": 10,
        "delivered": {"splunk": 700, "elastic": 900},
        "duplicates": {"elastic": 40},
        "rejected": {"splunk": 5},
        "filtered_by_sink": {"splunk": 25},
    }
    assert pending(snap, "splunk") == 1000 - 10 - 700 - 5 - 25
    assert pending(snap, "elastic") == 1000 - 10 - 900 - 40
    assert pending(snap, "sentinel") == 990


ADVISORY = {
    "id": "PYSEC-0000-1",
    "affected": [
        {
            "package": {"name": "Some_Pkg", "ecosystem": "PyPI"},
            "ranges": [
                {
                    "type": "ECOSYSTEM",
                    "events": [
                        {"introduced": "0"},
                        {"fixed": "1.2"},
                        {"introduced": "2.0"},
                        {"last_affected": "2.1"},
                    ],
                }
            ],
            "versions": ["3.0.0rc1"],
        }
    ],
}


@pytest.mark.parametrize(
    ("version", "hit"),
    [
        ("1.0", True),
        ("1.2", False),
        ("1.9", False),
        ("2.0", True),
        ("2.1", True),
        ("2.2", False),
        ("3.0.0rc1", True),
    ],
)
def test_osv_ranges(version: str, hit: bool) -> None:
    assert affected(version, ADVISORY, "some-pkg") is hit
    assert affected(version, {**ADVISORY, "withdrawn": "2024-01-01"}, "some-pkg") is False


def test_sources_in_order(tmp_path: Path) -> None:
    (tmp_path / "vulns" / "old-pkg").mkdir(parents=True)
    (tmp_path / "vulns" / "old-pkg" / "PYSEC-0000-2.yaml").write_text(
        "id: PYSEC-0000-2\naliases: [CVE-0000-2]\naffected:\n- package: {name: old-pkg, ecosystem: PyPI}\n"
        "  ranges:\n  - type: ECOSYSTEM\n    events:\n    - introduced: '0'\n    - fixed: '2.0'\n"
    )
    vuln = {"id": "GHSA-x", "aliases": ["CVE-1"], "fixed_in": ["9"], "withdrawn": None}
    pages: dict[str, dict[str, Any] | None] = {
        "https://pypi.org/pypi/served/1.0/json": {"vulnerabilities": [vuln]},
        "https://pypi.org/pypi/latest/json": {"info": {"version": "3.0"}, "vulnerabilities": []},
        "https://pypi.org/pypi/old-pkg/json": {"info": {"version": "5.0"}, "vulnerabilities": []},
        "https://pypi.org/pypi/lost/json": {"info": {"version": "5.0"}, "vulnerabilities": []},
    }

    def fetch(url: str) -> dict[str, Any] | None:
        return pages.get(url)

    served = check_one("served", "1.0", fetch, None)
    assert (served.status, served.source) == ("vulnerable", "PyPI release JSON")
    assert served.vulnerabilities == [Vulnerability("GHSA-x", ("CVE-1",), ("9",))]
    latest = check_one("latest", "3.0", fetch, None)
    assert (latest.status, latest.source) == ("clean", "PyPI project JSON (latest release)")
    old = check_one("old-pkg", "1.5", fetch, tmp_path)
    assert old.status == "vulnerable"
    assert old.vulnerabilities[0].id == "PYSEC-0000-2"
    assert check_one("old-pkg", "2.0", fetch, tmp_path).status == "clean"
    lost = check_one("lost", "1.0", fetch, None)
    assert lost.status == "unverified"
    assert (lost.source, lost.latest) == ("no source (installed below the latest release)", "5.0")
    twice = Finding(
        "x",
        "1",
        vulnerabilities=[
            Vulnerability("GHSA-a", ("PYSEC-b",), ()),
            Vulnerability("PYSEC-b", ("GHSA-a",), ()),
        ],
    )
    assert [v.id for v in twice.distinct()] == ["GHSA-a"]
    found = apply_ignores(audit({"served": "1.0", "lost": "1.0"}, fetch=fetch), {"CVE-1"})
    assert [(f.name, f.status) for f in found] == [("lost", "unverified"), ("served", "accepted")]
    with pytest.raises(ValueError, match="vulns"):
        audit({"x": "1"}, fetch=fetch, advisories=tmp_path / "vulns")


def test_closure_covers_the_four_distributions() -> None:
    packages = closure()
    assert {"boto3", "msgspec", "requests", "elasticsearch", "azure-monitor-ingestion"} <= set(packages)
    assert not {"trailrelay", "trailrelay-splunk", "trailrelay-elastic", "trailrelay-sentinel"} & set(
        packages
    )
    assert "pytest" not in packages  # test extras only on request
    assert "pytest" in closure(extras=("test",))


def test_the_duplicate_bound_counts_what_awaits_an_indexer_ack() -> None:
    """Splunk with acks may leave its parked records unconfirmed too; a synchronous sink may not."""
    from reliability.crash import bound_per_kill
    from reliability.standins import SinkSettings

    settings = SinkSettings(batch=200, concurrency=2, max_pending_bytes=40_000)
    assert bound_per_kill("sentinel", settings, 100) == 2 * 200 + 3 * 100
    # in flight, straddling objects, then parked (1,000 at 40 B each, plus the requests being
    # sent when the cap was reached) and one more open object per reader
    assert bound_per_kill("splunk", settings, 100) == 2 * 200 + 3 * 100 + 1_000 + 400 + 2 * 100


def test_each_kill_is_held_to_the_duplicate_bound_not_only_the_total() -> None:
    from reliability.crash import duplicate_checks

    def verdicts(mode: str, per_kill: list[int]) -> dict[str, bool]:
        return {c.name: c.ok for c in duplicate_checks("splunk", mode, sum(per_kill), per_kill, 1_000)}

    assert verdicts("s3", [0, 900, 10, 0]) == {
        "duplicates bounded": True,
        "duplicates bounded per kill": True,
    }
    # one kill over its bound fails even though the total is far below kills x bound
    assert verdicts("s3", [0, 1_500, 0, 0])["duplicates bounded per kill"] is False
    assert verdicts("sqs", [0, 1_500, 0, 0])["duplicates bounded per kill"] is True  # two kills' worth
    assert verdicts("s3", [3, 0, 0])["duplicates bounded per kill"] is False  # copies before any kill
    assert [c.name for c in duplicate_checks("elastic", "s3", 0, [0, 0], 1_000)] == ["no duplicates"]
