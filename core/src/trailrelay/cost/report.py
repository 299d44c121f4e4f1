"""The cost report as one plain, JSON-ready document that the table and HTML views render."""

from __future__ import annotations

import datetime as dt
from typing import Any

import msgspec

from trailrelay.cost.costs import GB, PlanCost, aws_costs, siem_costs
from trailrelay.cost.estimate import Estimate, extrapolate, warnings_for
from trailrelay.cost.estimate import __doc__ as _method
from trailrelay.cost.measure import RAW, Measurement, per_sink
from trailrelay.cost.prices import PriceTable

__all__ = ["METHOD", "build_report"]

METHOD = " ".join((_method or "").split("\n\n", 1)[-1].split())
"""How the extrapolation works, in the report's words (from :mod:`trailrelay.cost.estimate`)."""

_TOP = 15


def _plans(plans: list[PlanCost]) -> list[dict[str, Any]]:
    return [
        {
            "plan": p.plan,
            "monthly": p.monthly,
            "detail": p.detail,
            "best": p.best,
            "prices": list(p.price_ids),
        }
        for p in plans
    ]


def _best(plans: list[PlanCost]) -> float | None:
    best = [p.monthly for p in plans if p.best]
    return best[0] if best else None


def _cost_at(siem: str, billable: float, prices: PriceTable, currency: str) -> float | None:
    """The best plan's monthly cost at that volume; None when the SIEM has no price."""
    return _best(siem_costs(siem, billable, prices, currency))


def _saving(more: float | None, base: float | None) -> float | None:
    return None if more is None or base is None else more - base


def _egress(sent: float, ratio: float, prices: PriceTable, currency: str) -> float:
    days = prices.assumption("days_per_month", 30.4167)
    per_gb = (prices.price("nat_gateway_gb", currency) or 0.0) + (
        prices.price("internet_egress_gb", currency) or 0.0
    )
    return sent * ratio / GB * days * per_gb


def _volumes(est: dict[tuple[str, str], Estimate], m: Measurement) -> list[dict[str, Any]]:
    rows = []
    for p in m.profiles:
        for s in [RAW, *m.siems]:
            e = est.get((p.name, s))
            if e is None:
                e = Estimate(0.0, 0.0, 0.0, 0.0, 0.0, 0, 0)
            rows.append(
                {
                    "profile": p.name,
                    "siem": s,
                    "events_per_day": e.events,
                    "events_margin": e.events_margin,
                    "billable_bytes_per_day": e.billable,
                    "billable_margin": e.billable_margin,
                    "relative_margin": e.relative_margin,
                    "gb_per_day": e.billable / GB,
                    "sent_bytes_per_day": e.sent,
                    "sample_events": e.sample_events,
                    "sample_billable_bytes": e.sample_billable,
                }
            )
    return rows


def _sinks(est: dict[tuple[str, str], Estimate], m: Measurement) -> list[dict[str, Any]]:
    """Each of the config's sinks measured: its share of the ``config`` profile's volume."""
    rows = []
    for name, siem in m.sinks:
        e = est.get((per_sink(name), siem)) or Estimate(0.0, 0.0, 0.0, 0.0, 0.0, 0, 0)
        rows.append(
            {
                "name": name,
                "siem": siem,
                "events_per_day": e.events,
                "billable_bytes_per_day": e.billable,
                "billable_margin": e.billable_margin,
                "gb_per_day": e.billable / GB,
                "sample_events": e.sample_events,
                "sample_billable_bytes": e.sample_billable,
            }
        )
    return rows


def _scale(est: dict[tuple[str, str], Estimate], siem: str) -> tuple[float, float]:
    """Sample-to-per-day factors (events, bytes) of a SIEM, from the ``all`` profile."""
    e = est.get(("all", siem))
    if e is None:
        return 0.0, 0.0
    events = e.events / e.sample_events if e.sample_events else 0.0
    size = e.billable / e.sample_billable if e.sample_billable else 0.0
    return events, size


def _rules(
    m: Measurement, est: dict[tuple[str, str], Estimate], prices: PriceTable, currency: str
) -> tuple[list[dict[str, Any]], dict[str, dict[str, int]]]:
    attributed = next((p for p in reversed(m.profiles) if p.attribute), None)
    rows: list[dict[str, Any]] = []
    check: dict[str, dict[str, int]] = {}
    if attributed is None:
        return rows, check
    for s in m.siems:
        fe, fb = _scale(est, s)
        kept = est.get((attributed.name, s))
        kept_bytes = kept.billable if kept else 0.0
        base = _cost_at(s, kept_bytes, prices, currency)
        in_order = 0
        for (siem, ref), (ev, by, ev_alone, by_alone) in m.rule_bytes.items():
            if siem != s:
                continue
            in_order += by
            rows.append(
                {
                    "siem": s,
                    "profile": attributed.name,
                    "scope": ref.scope,
                    "rule": ref.name,
                    "action": ref.action,
                    "events_per_day": ev * fe,
                    "billable_bytes_per_day": by * fb,
                    "alone_events_per_day": ev_alone * fe,
                    "alone_bytes_per_day": by_alone * fb,
                    "monthly_saving": _saving(_cost_at(s, kept_bytes + by * fb, prices, currency), base),
                    "alone_monthly_saving": _saving(
                        _cost_at(s, kept_bytes + by_alone * fb, prices, currency), base
                    ),
                }
            )
        everything = est.get(("all", s))
        check[s] = {
            "sample_all_bytes": everything.sample_billable if everything else 0,
            "sample_kept_bytes": kept.sample_billable if kept else 0,
            "sample_saved_by_rules": in_order,
        }
    rows.sort(key=lambda r: r["billable_bytes_per_day"], reverse=True)
    return rows, check


def _noisy(m: Measurement, est: dict[tuple[str, str], Estimate]) -> dict[str, list[dict[str, Any]]]:
    fe, fb = _scale(est, RAW)
    total = sum(m.by_source.values()) or 1
    sources = [
        {
            "name": name,
            "events_per_day": m.by_source_events[name] * fe,
            "bytes_per_day": size * fb,
            "share": size / total,
        }
        for name, size in m.by_source.most_common(_TOP)
    ]
    names = [
        {
            "name": f"{src} {name}",
            "event_source": src,
            "event_name": name,
            "events_per_day": m.by_name_events[(src, name)] * fe,
            "bytes_per_day": size * fb,
            "share": size / total,
        }
        for (src, name), size in m.by_name.most_common(_TOP)
    ]
    return {"event_sources": sources, "event_names": names}


def build_report(m: Measurement, prices: PriceTable, currency: str) -> dict[str, Any]:
    """The whole report: sample, volumes, costs per plan, rule savings, AWS side, prices used."""
    currency = currency.upper()
    prices.convert(1.0, "USD", currency)  # unknown currency: ConfigError now, not half-way
    est = extrapolate(m)
    volumes = _volumes(est, m)
    ratio = {s: (c[1] / c[0] if c[0] else 1.0) for s, c in m.compression.items()}
    costs = []
    for p in m.profiles:
        for s in m.siems:
            e = est.get((p.name, s))
            billable = e.billable if e else 0.0
            margin = e.billable_margin if e else 0.0
            plans = siem_costs(s, billable, prices, currency)
            best = _best(plans)
            costs.append(
                {
                    "profile": p.name,
                    "siem": s,
                    "gb_per_day": billable / GB,
                    "plans": _plans(plans),
                    "best_monthly": best,
                    "best_monthly_low": _cost_at(s, max(0.0, billable - margin), prices, currency),
                    "best_monthly_high": _cost_at(s, billable + margin, prices, currency),
                    "aws_egress_monthly": _egress(e.sent if e else 0.0, ratio.get(s, 1.0), prices, currency),
                }
            )
    rules, check = _rules(m, est, prices, currency)
    span_days = max(m.span_hours, 1.0) / 24
    raw_all = est.get(("all", RAW))
    aws = aws_costs(
        objects_per_day=m.population_objects / span_days,
        stored_bytes_per_day=m.population_stored_bytes / span_days,
        raw_bytes_per_day=raw_all.billable if raw_all else 0.0,
        throughput=m.throughput,
        prices=prices,
        currency=currency,
    )
    on_disk = {
        s: {
            row["profile"]: row["billable_bytes_per_day"] * prices.assumption(assumption, 1.0)
            for row in volumes
            if row["siem"] == s
        }
        for s, assumption in sorted(m.disk_of.items())
    }
    privacy = {
        s: {
            "records": v[0],
            "billable_before": v[1],
            "billable_after": v[2],
            "change": (v[2] - v[1]) / v[1] if v[1] else 0.0,
        }
        for s, v in m.privacy.items()
    }
    return {
        "source": m.source,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "currency": currency,
        "sample": {
            "census": m.census,
            "units_read": len(m.units),
            "population_units": m.population_units,
            "span_hours": m.span_hours,
            "objects_read": m.objects_read,
            "population_objects": m.population_objects,
            "stored_bytes_read": m.stored_bytes_read,
            "population_stored_bytes": m.population_stored_bytes,
            "raw_bytes_read": m.raw_bytes_read,
            "records": m.records,
            "seconds": m.seconds_reading,
            "throughput_bytes_per_second": m.throughput,
            "method": METHOD,
            "warnings": warnings_for(m, est),
            "skipped": dict(m.skipped),
            "problems": dict(m.problems),
        },
        "connectors": {
            "measured": m.siems,
            "missing": m.missing,
            "failed": m.failed,
            "units": m.units_of,
            "rules": m.rules_of,
            "encode_failures": m.meter_failures,
        },
        "profiles": [{"name": p.name, "title": p.title, "notes": p.notes} for p in m.profiles],
        "volumes": volumes,
        "sinks": _sinks(est, m),
        "costs": costs,
        "rules": rules,
        "savings_check": check,
        "noisy": _noisy(m, est),
        "privacy": {"profile": m.privacy_note, "applied": m.privacy_applied, "by_siem": privacy},
        "compression": {s: {"body_bytes": c[0], "gzip_bytes": c[1]} for s, c in m.compression.items()},
        "on_disk_bytes_per_day": on_disk,
        "on_disk_assumptions": dict(sorted(m.disk_of.items())),
        "elastic_on_disk_bytes_per_day": on_disk.get("elastic", {}),
        "aws": _plans(aws),
        "prices": [{"id": pid, **msgspec.to_builtins(p)} for pid, p in sorted(prices.prices.items())],
        "price_table": {"version": prices.version, "origin": prices.origin},
        "fx": msgspec.to_builtins(prices.fx),
        "assumptions": prices.assumptions,
    }
