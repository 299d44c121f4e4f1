"""From a sample to volumes per day, with an honest error margin.

Method: the source's hours (the sampling units) are the population; ``n`` of its ``N`` hours
with data are read in full (a seeded simple random sample, or all of them). For a total,
``T = N * mean(x_i)`` over the sampled hours; its standard error is
``N * s / sqrt(n) * sqrt(1 - n/N)`` (finite-population correction) and the margin is the
two-sided 95 % Student-t quantile with ``n - 1`` degrees of freedom times that. A census has no
sampling error. Per day is ``T * 24 / span``, ``span`` being the hours from the first to the
last hour with data, so quiet hours inside the span count as zero; when the objects' names
give no hour, ``span`` is that of the sampled records' eventTime, and with no time at all there
is no per-day figure.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from trailrelay.cost.measure import Measurement
from trailrelay.errors import InputError

__all__ = ["Estimate", "UnknownSpanError", "extrapolate", "t_quantile", "warnings_for"]

_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip

MIN_HOURS = 6
MIN_RECORDS = 1000
WIDE = 0.25


def t_quantile(df: int) -> float:
    """Two-sided 95 % Student-t quantile (1.96 beyond 30 degrees of freedom)."""
    if df < 1:
        return math.inf
    return _T975[df - 1] if df <= len(_T975) else 1.96


@dataclass(frozen=True, slots=True)
class Estimate:
    """Per-day volume of one (profile, SIEM) with its 95 % margins (absolute, same unit)."""

    events: float
    events_margin: float
    billable: float
    billable_margin: float
    sent: float
    sample_events: int
    sample_billable: int

    @property
    def relative_margin(self) -> float:
        """Billable margin as a fraction of the estimate (0 for a census)."""
        return self.billable_margin / self.billable if self.billable else 0.0


class UnknownSpanError(InputError):
    """Records were read, but neither their objects' names nor their eventTime say when."""


def _total(values: list[int], population: int, census: bool) -> tuple[float, float]:
    n = len(values)
    if census or n == 0:
        return float(sum(values)), 0.0
    mean = sum(values) / n
    total = population * mean
    if n < 2:
        return total, math.inf
    s = statistics.stdev(values)
    fpc = math.sqrt(max(0.0, 1 - n / population)) if population > 0 else 1.0
    return total, t_quantile(n - 1) * population * s / math.sqrt(n) * fpc


def extrapolate(m: Measurement) -> dict[tuple[str, str], Estimate]:
    """Per-day estimates for every (profile, SIEM) measured, including the raw records.

    Raises :class:`UnknownSpanError` when records were read over an unknown time span.
    """
    if m.records and m.span_hours <= 0:
        raise UnknownSpanError(
            f"the {m.records:,} record(s) read from {m.source} carry no eventTime and their objects' "
            "names no hour: the time they cover is unknown"
        )
    keys = sorted({k for u in m.units for k in u.volume})
    per_day = 24 / max(m.span_hours, 1.0)
    out: dict[tuple[str, str], Estimate] = {}
    for key in keys:
        cols = [u.volume.get(key, [0, 0, 0]) for u in m.units]
        events, e_margin = _total([c[0] for c in cols], m.population_units, m.census)
        billable, b_margin = _total([c[1] for c in cols], m.population_units, m.census)
        sent, _ = _total([c[2] for c in cols], m.population_units, m.census)
        out[key] = Estimate(
            events * per_day,
            e_margin * per_day,
            billable * per_day,
            b_margin * per_day,
            sent * per_day,
            sum(c[0] for c in cols),
            sum(c[1] for c in cols),
        )
    return out


def warnings_for(m: Measurement, estimates: dict[tuple[str, str], Estimate]) -> list[str]:
    """Plain-language flags about the sample's size and the extrapolation's reliability."""
    out: list[str] = []
    n = len(m.units)
    if not m.census and n < MIN_HOURS:
        out.append(f"sample too small: only {n} hour(s) read; read at least {MIN_HOURS} for a usable margin")
    if m.records < MIN_RECORDS:
        out.append(
            f"sample too small: {m.records:,} records (fewer than {MIN_RECORDS:,}); "
            "treat figures as indicative"
        )
    if m.span_from_records:
        out.append(
            f"the objects' names give no hour (not CloudTrail's file names): the time span "
            f"({m.span_hours:,.0f} h) is that of the sampled records' eventTime"
            + ("" if m.census else "; the whole may span more, so per-day figures may be a little high")
        )
    if m.span_hours < 24:
        out.append(
            f"the data spans {m.span_hours:.0f} hour(s), less than a day: per-day figures assume the "
            "rest of the day looks like it"
        )
    everything = estimates.get(("all", "raw"))
    if everything is not None and everything.relative_margin > WIDE:
        out.append(
            f"wide margin: +/-{everything.relative_margin:.0%} on the total volume; read more hours "
            "(a longer window in the config) to narrow it"
        )
    if m.objects_read == 0:
        out.append("nothing could be read from the source")
    return out
