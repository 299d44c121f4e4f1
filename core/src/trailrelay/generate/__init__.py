"""``trailrelay generate``: a realistic synthetic organization trail, deterministic from a seed.

A day of background activity for every account and region (people, CI, workloads, Lambda
functions, service-linked roles and AWS services calling a realistic, read-heavy mix of APIs)
plus one attack story (see :mod:`trailrelay.generate.story`), written in the S3 key layout of
an organization trail: gzip'd ``{"Records":[...]}`` objects about every five minutes per account
and region, and hourly ``CloudTrail-Digest/`` files. The same arguments give byte-identical
output: every random choice comes from RNG streams seeded by ``seed``; nothing reads the clock.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trailrelay.generate.background import DIURNAL, build_pool, root_visit, window_records
from trailrelay.generate.events import Env
from trailrelay.generate.ids import rng_for
from trailrelay.generate.story import ATTACK_STEPS, build_attack
from trailrelay.generate.world import Org, build_org
from trailrelay.generate.writer import LogObject, Place, Writer, build_object

__all__ = [
    "ATTACK_STEPS",
    "DEFAULT_DAY",
    "GenerateSummary",
    "build_object",
    "generate_events",
    "generate_trail",
]

DEFAULT_DAY = dt.date(2026, 3, 2)
_WINDOWS = 288  # five-minute delivery windows in a day


@dataclass(frozen=True)
class GenerateSummary:
    """What :func:`generate_trail` wrote."""

    root: Path
    objects: int
    """Log objects (``CloudTrail/``); digests are counted in ``digests``."""
    records: int
    attack_event_ids: dict[str, str]
    """eventName -> eventID of each attack step (see ``ATTACK_STEPS``)."""
    accounts: list[str]
    regions: list[str]
    org_id: str
    day: dt.date
    digests: int = 0
    bucket: str = ""
    """The organization trail's bucket name (for uploading the tree to S3 as-is)."""
    attack_account: str = ""
    attack_region: str = ""
    attack_user: str = ""
    attacker_ip: str = ""


def generate_trail(
    out_dir: Path,
    *,
    seed: int = 7,
    day: dt.date = DEFAULT_DAY,
    accounts: int = 3,
    regions: Sequence[str] = ("us-east-1", "eu-west-1"),
    events_per_hour: int = 200,
    include_digests: bool = True,
) -> GenerateSummary:
    """Write a day of organization trail, background plus attack, under ``out_dir/AWSLogs/``."""
    region_list = _regions(regions)
    if accounts < 1:
        raise ValueError("accounts must be at least 1")
    if events_per_hour < 0:
        raise ValueError("events_per_hour must not be negative")
    attack_index = 1 if accounts > 1 else 0
    org = build_org(rng_for(seed, "world"), accounts, region_list, attack_index)
    attack = build_attack(seed, org, day, attack_index)
    mgmt = org.accounts[0]
    root_env = Env(rng_for(seed, "root"), org, mgmt, org.global_region, day=day, seed=seed)
    scheduled: dict[tuple[str, str, int], list[tuple[int, dict[str, Any]]]] = {}
    for acct_id, region, timed in (
        (attack.account.id, attack.region, attack.records),
        (mgmt.id, org.global_region, root_visit(root_env)),
    ):
        for ts, rec in timed:
            scheduled.setdefault((acct_id, region, ts // 300), []).append((ts, rec))
    root = Path(out_dir)
    writer = Writer(root)
    for account in org.accounts:
        for region in org.regions:
            env = Env(rng_for(seed, f"{account.id}/{region}"), org, account, region, day=day, seed=seed)
            extra = {k: v for (a, r, k), v in scheduled.items() if (a, r) == (account.id, region)}
            logs = _write_day(writer, env, events_per_hour, extra)
            if include_digests:
                writer.put_digests(Place(org, account.id, region, day), env.rng, logs)
    return GenerateSummary(
        root=root,
        objects=writer.objects,
        records=writer.records,
        attack_event_ids=dict(attack.ids),
        accounts=[a.id for a in org.accounts],
        regions=list(org.regions),
        org_id=org.id,
        day=day,
        digests=writer.digests,
        bucket=org.bucket,
        attack_account=attack.account.id,
        attack_region=attack.region,
        attack_user=attack.user,
        attacker_ip=attack.ip,
    )


def generate_events(seed: int, count: int, *, day: dt.date = DEFAULT_DAY) -> Iterator[dict[str, Any]]:
    """Yield ``count`` background records of the default organization, in time order (benchmarks)."""
    org: Org = build_org(rng_for(seed, "world"), 3, ("us-east-1", "eu-west-1"), 1)
    rng = rng_for(seed, "events")
    envs = [Env(rng, org, a, r, day=day, seed=seed) for a in org.accounts for r in org.regions]
    pools = [build_pool(env) for env in envs]
    for i in range(count):
        j = int(rng.random() * len(envs))
        yield pools[j].draw(envs[j], i * 86400 // max(count, 1))


def _write_day(
    writer: Writer, env: Env, events_per_hour: int, extra: dict[int, list[tuple[int, dict[str, Any]]]]
) -> list[LogObject]:
    """Write one account/region's day of log objects: background plus ``extra`` by window."""
    rng = env.rng
    place = Place(env.org, env.acct.id, env.region, env.day)
    pool = build_pool(env)
    logs: list[LogObject] = []
    for k in range(_WINDOWS):
        lam = events_per_hour * DIURNAL[k // 12] / 12
        n = int(lam * (0.75 + 0.5 * rng.random()) + rng.random()) if lam else 0
        timed = window_records(env, pool, k * 300, n)
        timed.extend(extra.get(k, ()))
        if not timed:
            continue
        minute = min((k + 1) * 5, 1439)  # delivered after the window; the last one at 23:59
        logs.extend(writer.put_log(place, rng, minute, part) for part in _split(rng, timed))
    return logs


def _split(
    rng: random.Random, timed: list[tuple[int, dict[str, Any]]]
) -> list[list[tuple[int, dict[str, Any]]]]:
    """Deliver a window as one object, sometimes two, roughly but not strictly time-ordered."""
    timed.sort(key=lambda p: p[0] + rng.randrange(-45, 46))
    if len(timed) < 8 or rng.random() >= 0.2:
        return [timed]
    first: list[tuple[int, dict[str, Any]]] = []
    second: list[tuple[int, dict[str, Any]]] = []
    for item in timed:
        (first if rng.random() < 0.5 else second).append(item)
    return [part for part in (first, second) if part]


def _regions(regions: Sequence[str]) -> tuple[str, ...]:
    if isinstance(regions, str):
        regions = [regions]
    out = tuple(dict.fromkeys(regions))
    if not out:
        raise ValueError("at least one region is needed")
    return out
