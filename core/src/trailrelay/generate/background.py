"""Background noise: which templates and principals are active in one account and region."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from trailrelay.generate.catalog import TEMPLATES
from trailrelay.generate.events import Env, Template, assemble
from trailrelay.generate.world import Actor

__all__ = ["DIURNAL", "Pool", "build_pool", "root_visit", "window_records"]

_SERVICE_KINDS = frozenset({"slr", "service", "svcevent"})
_CURVE = (
    0.35, 0.3, 0.3, 0.3, 0.35, 0.45, 0.6, 0.9, 1.3, 1.6, 1.7, 1.7,
    1.5, 1.6, 1.7, 1.6, 1.4, 1.1, 0.8, 0.6, 0.5, 0.45, 0.4, 0.35,
)  # fmt: skip
DIURNAL = tuple(w * 24 / sum(_CURVE) for w in _CURVE)
"""Relative activity per UTC hour, mean 1: quiet nights, busy working hours."""


@dataclass(frozen=True, slots=True)
class Pool:
    """Templates usable in one account/region with cumulative weights, and their callers."""

    templates: tuple[Template, ...]
    cum: tuple[float, ...]
    callers: tuple[tuple[tuple[Actor, ...], tuple[float, ...]], ...]

    def draw(self, env: Env, ts: int) -> dict[str, Any]:
        """One background record at ``ts``."""
        rng = env.rng
        i = _bisect(self.cum, rng.random() * self.cum[-1])
        actors, cum = self.callers[i]
        j = _bisect(cum, rng.random() * cum[-1])
        return assemble(env, self.templates[i], actors[j], ts)


def _bisect(cum: tuple[float, ...], x: float) -> int:
    lo, hi = 0, len(cum) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if cum[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def build_pool(env: Env) -> Pool:
    """Build the weighted template/caller table for ``env``'s account and region."""
    org = env.org
    is_mgmt = env.acct is org.accounts[0]
    templates, weights, callers = [], [], []
    for t in TEMPLATES:
        if (t.mgmt_only and not is_mgmt) or (t.scope == "global" and env.region != org.global_region):
            continue
        if t.scope == "home" and env.region != org.home_region:
            continue
        actors = [
            a
            for kind in sorted(t.kinds)
            for a in env.by_kind.get(kind, ())
            if t.services is None or a.kind not in _SERVICE_KINDS or a.service in t.services
        ]
        if not actors:
            continue
        actors.sort(key=lambda a: a.index)
        templates.append(t)
        weights.append(t.weight)
        callers.append((tuple(actors), tuple(accumulate(a.weight for a in actors))))
    return Pool(tuple(templates), tuple(accumulate(weights)), tuple(callers))


def window_records(env: Env, pool: Pool, start: int, count: int) -> list[tuple[int, dict[str, Any]]]:
    """``count`` (second, record) pairs with times inside the 5-minute window from ``start``."""
    rng = env.rng
    out = []
    for _ in range(count):
        ts = start + int(rng.random() * 300)
        out.append((ts, pool.draw(env, ts)))
    return out


_BY_NAME = {t.name: t for t in TEMPLATES}


def root_visit(env: Env) -> list[tuple[int, dict[str, Any]]]:
    """Sign the management account's root user in once, with MFA, and look around."""
    root = next((a for a in env.acct.actors if a.kind == "root"), None)
    if root is None:
        return []
    rng = env.rng
    login = 9 * 3600 + rng.randrange(0, 2 * 3600)
    root.session_minute = (login // 60) % 60  # the console session starts at sign-in
    out = [(login, assemble(env, _BY_NAME["ConsoleLogin"], root, login))]
    ts = login
    for name in ("GetAccountSummary", "ListUsers", "GetAccountPasswordPolicy", "DescribeOrganization"):
        ts += rng.randrange(20, 120)
        out.append((ts, assemble(env, _BY_NAME[name], root, ts)))
    return out
