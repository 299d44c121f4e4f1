"""Monthly cost of a daily volume at the price table, per SIEM plan and on the AWS side."""

from __future__ import annotations

from dataclasses import dataclass

from trailrelay.cost.prices import Price, PriceTable

__all__ = ["GB", "PlanCost", "aws_costs", "siem_costs"]

GB = 1e9
"""Decimal gigabyte: the unit Azure Monitor and Elastic meter in; used for every SIEM here."""


@dataclass(frozen=True, slots=True)
class PlanCost:
    """One priced line: plan name, monthly amount, how it was computed, and the prices used."""

    plan: str
    monthly: float
    detail: str
    price_ids: tuple[str, ...]
    best: bool = False


def _fmt(value: float, currency: str) -> str:
    return f"{value:,.4g} {currency}"


def siem_costs(siem: str, billable_per_day: float, prices: PriceTable, currency: str) -> list[PlanCost]:
    """Monthly cost of ``billable_per_day`` bytes in each of the SIEM's priced plans.

    Every price row of the SIEM is priced by its own unit. Rows with the same ``group`` are one
    plan named by the group (their costs add up); any other row is a plan of its own. The
    volume priced is the billable volume times ``<siem>_enrichment_factor`` (default 1: what
    the SIEM meters, when it enriches documents before metering them).
    """
    gb_day = billable_per_day / GB * prices.assumption(f"{siem}_enrichment_factor", 1.0)
    out: list[PlanCost] = []
    groups: dict[str, list[tuple[str, float, str]]] = {}
    tiers: list[tuple[str, Price]] = []
    for pid, p in sorted(prices.for_siem(siem).items()):
        if p.unit == "per_day" and not p.group:
            tiers.append((pid, p))
            continue
        line = (
            _tier(p, gb_day, prices, currency)
            if p.unit == "per_day"
            else _line(siem, p, gb_day, prices, currency)
        )
        if line is None:
            continue
        if p.group:
            groups.setdefault(p.group, []).append((pid, line[0], f"{p.plan}: {line[1]}"))
        else:
            out.append(PlanCost(p.plan, line[0], line[1], (pid,)))
    for group, lines in groups.items():
        out.append(
            PlanCost(
                group,
                sum(amount for _, amount, _ in lines),
                " + ".join(detail for _, _, detail in lines),
                tuple(pid for pid, _, _ in lines),
            )
        )
    tiers.sort(key=lambda t: t[1].capacity_gb_per_day or 0.0)
    for pid, p in tiers:
        amount, detail = _tier(p, gb_day, prices, currency)
        out.append(PlanCost(p.plan, amount, detail, (pid,)))
    return _mark_best(out)


def _tier(p: Price, gb_day: float, prices: PriceTable, currency: str) -> tuple[float, str]:
    """(monthly amount, how) of a commitment tier: its daily price, and volume over it at the tier rate."""
    days = prices.assumption("days_per_month", 30.4167)
    cap = p.capacity_gb_per_day or 1.0
    per_day = prices.convert(p.value, p.currency, currency)
    over = max(0.0, gb_day - cap) * per_day / cap
    how = f" + {gb_day - cap:.4g} GB/day over at the tier rate" if over else f" (using {gb_day:.4g})"
    return (per_day + over) * days, f"{_fmt(per_day, currency)}/day for {cap:g} GB/day{how}"


def _line(siem: str, p: Price, gb_day: float, prices: PriceTable, currency: str) -> tuple[float, str] | None:
    """(monthly amount, how) of one price row at ``gb_day``; None for units a SIEM plan lacks.

    ``per_gb_month`` prices the volume kept: ``<siem>_retention_days`` days of it (default 90),
    times ``<siem>_disk_ratio`` when the price is ``on_disk``, times ``units`` (copies).
    ``per_hour`` prices ``units`` always-on instances or capacity units.
    """
    days = prices.assumption("days_per_month", 30.4167)
    price = prices.convert(p.value, p.currency, currency)
    copies = f" x {p.units:g}" if p.units != 1 else ""
    if p.unit == "per_gb":
        return gb_day * days * price, f"{gb_day:.4g} GB/day x {days:g} days x {_fmt(price, currency)}/GB"
    if p.unit == "per_gb_day_year":
        return gb_day * price / 12, f"{gb_day:.4g} GB/day x {_fmt(price, currency)} per GB/day-year / 12"
    if p.unit == "per_gb_month":
        keep = prices.assumption(f"{siem}_retention_days", 90)
        ratio = prices.assumption(f"{siem}_disk_ratio", 1.0) if p.on_disk else 1.0
        kept = gb_day * keep * ratio * p.units
        how = "on disk" if p.on_disk else "kept"
        return kept * price, f"{kept:.4g} GB {how} ({keep:g} days{copies}) x {_fmt(price, currency)}/GB-month"
    if p.unit == "per_hour":
        hours = 24 * days
        return p.units * hours * price, f"{p.units:g} x {hours:,.0f} h x {_fmt(price, currency)}/h"
    return None


def _mark_best(plans: list[PlanCost]) -> list[PlanCost]:
    """Flag the cheapest analytics-grade plan (pay-as-you-go or a commitment tier)."""
    candidates = [p for p in plans if "basic" not in p.plan and "auxiliary" not in p.plan]
    if not candidates:
        return plans
    best = min(candidates, key=lambda p: p.monthly)
    return [PlanCost(p.plan, p.monthly, p.detail, p.price_ids, p is best) for p in plans]


def aws_costs(
    *,
    objects_per_day: float,
    stored_bytes_per_day: float,
    raw_bytes_per_day: float,
    throughput: float,
    prices: PriceTable,
    currency: str,
) -> list[PlanCost]:
    """Monthly AWS cost of reading the trail: requests, Lambda, and the network path to S3."""
    days = prices.assumption("days_per_month", 30.4167)

    def p(pid: str) -> float:
        return prices.price(pid, currency) or 0.0

    objects_month = objects_per_day * days
    out = [
        PlanCost(
            "S3 GET (one per log object)",
            objects_month / 1000 * p("s3_get"),
            f"{objects_month:,.0f} GETs/month",
            ("s3_get",),
        ),
        PlanCost(
            "S3 LIST (listing mode: a page per 1,000 keys)",
            max(1.0, objects_month / 1000) * p("s3_list") / 1000,
            f"{max(1.0, objects_month / 1000):,.0f} LISTs/month",
            ("s3_list",),
        ),
    ]
    idle = prices.assumption("sqs_idle_receives_per_day", 4320)
    sqs_requests = (objects_per_day * 3 + idle) * days
    out.append(
        PlanCost(
            "SQS (notification mode: send, receive, delete per object + idle polls)",
            sqs_requests / 1e6 * p("sqs_requests"),
            f"{sqs_requests:,.0f} requests/month",
            ("sqs_requests",),
        )
    )
    memory_gb = prices.assumption("lambda_memory_mb", 1769) / 1024
    cpu_seconds = raw_bytes_per_day / throughput if throughput else 0.0
    wall = cpu_seconds + objects_per_day * prices.assumption("lambda_seconds_per_object", 0.05)
    gb_seconds = wall * memory_gb * days
    invocations = objects_month
    out.append(
        PlanCost(
            "Lambda (one invocation per object, at the throughput measured here)",
            gb_seconds * p("lambda_gb_second") + invocations / 1e6 * p("lambda_requests"),
            f"{gb_seconds:,.0f} GB-s + {invocations:,.0f} invocations/month "
            f"({throughput / 1e6:,.1f} MB/s measured, {memory_gb * 1024:,.0f} MB)",
            ("lambda_gb_second", "lambda_requests"),
        )
    )
    s3_gb_month = stored_bytes_per_day / GB * days
    nat_hours = prices.assumption("nat_gateways", 1) * 24 * days
    out.append(
        PlanCost(
            "reading S3 through a NAT gateway",
            s3_gb_month * p("nat_gateway_gb") + nat_hours * p("nat_gateway_hour"),
            f"{s3_gb_month:,.3g} GB/month processed + {nat_hours:,.0f} gateway-hours",
            ("nat_gateway_gb", "nat_gateway_hour"),
        )
    )
    out.append(
        PlanCost(
            "reading S3 through a gateway VPC endpoint",
            s3_gb_month * p("s3_gateway_endpoint_gb"),
            f"{s3_gb_month:,.3g} GB/month, no processing charge",
            ("s3_gateway_endpoint_gb",),
        )
    )
    return out
