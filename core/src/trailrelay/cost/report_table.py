"""The cost report in the terminal (rich tables)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = ["headline_profile", "human_bytes", "print_report", "problem_lines"]

_KIND_MARK = {"assumption": "†", "user": "‡", "third-party": "", "list": "", "derived": ""}


def human_bytes(n: float) -> str:
    """Decimal units, as the SIEMs bill (1 GB = 10^9 bytes)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:,.2f} {unit}"
    return f"{n:,.0f} B"


def headline_profile(report: dict[str, Any]) -> str:
    """The profile the cost details are shown for: the user's config, else connector defaults."""
    names = [p["name"] for p in report["profiles"]]
    return "config" if "config" in names else "siem-default"


def problem_lines(sample: dict[str, Any]) -> list[str]:
    """What could not be measured, for people: unreadable objects, then records left out.

    Each group is a line saying how many (the estimate rests on the rest), then one line per
    reason. Empty when everything read was measured.
    """
    problems: dict[str, int] = sample["problems"]
    lines: list[str] = []
    for kind in ("object", "record"):
        reasons = {why.split(": ", 1)[-1]: n for why, n in problems.items() if why.startswith(f"{kind}:")}
        if not reasons:
            continue
        bad = sum(reasons.values())
        if kind == "object":
            read = sample["objects_read"] + reasons.get("fetch failed", 0)
            lines.append(
                f"{bad:,} of {read:,} objects could not be read; "
                f"the estimate rests on the {read - bad:,} readable ones:"
            )
        else:
            lines.append(f"{bad:,} records could not be read and are left out of the estimate:")
        lines += [f"  {why}: {n:,}" for why, n in sorted(reasons.items())]
    return lines


def _money(v: float | None, currency: str) -> str:
    return "-" if v is None else f"{v:,.2f} {currency}"


def print_report(report: dict[str, Any], console: Console) -> None:
    """Print every section of the report."""
    cur = report["currency"]
    s = report["sample"]
    mode = "every hour (census)" if s["census"] else f"{s['units_read']} of {s['population_units']} hours"
    console.print(
        f"[bold]trailrelay cost[/bold] {report['source']}: read {mode}, {s['objects_read']:,} objects, "
        f"{s['records']:,} records ({human_bytes(s['raw_bytes_read'])} uncompressed) "
        f"spanning {s['span_hours']:,.0f} h",
        highlight=False,
    )
    for w in [*s["warnings"], *problem_lines(s)]:
        console.print(f"[yellow]! {escape(str(w))}[/yellow]", highlight=False)
    conn = report["connectors"]
    if conn["missing"]:
        console.print(f"not measured (not installed): {', '.join(conn['missing'])}", highlight=False)
    for name, why in conn.get("encode_failures", {}).items():
        console.print(f"[yellow]! {escape(name)}: {escape(str(why))}[/yellow]", highlight=False)
    for name, why in conn["failed"].items():
        console.print(
            f"[red]connector {escape(name)} could not be measured:[/red] {escape(str(why))}", highlight=False
        )
    siems = conn["measured"]
    vol = {(r["profile"], r["siem"]): r for r in report["volumes"]}
    cost = {(c["profile"], c["siem"]): c for c in report["costs"]}

    t = Table(title="per day and per month, by profile (± is the 95 % margin)", title_justify="left")
    t.add_column("profile", no_wrap=True)
    t.add_column("events/day", justify="right")
    for siem in siems:
        t.add_column(f"{siem}\n{conn['units'].get(siem, '')}/day", justify="right")
        t.add_column(f"{siem}\nbest {cur}/month", justify="right")
    for p in report["profiles"]:
        raw = vol.get((p["name"], "raw"), {})
        row = [p["title"], f"{raw.get('events_per_day', 0):,.0f}"]
        for siem in siems:
            v = vol.get((p["name"], siem), {})
            margin = v.get("relative_margin", 0.0)
            row.append(
                human_bytes(v.get("billable_bytes_per_day", 0)) + (f" ±{margin:.0%}" if margin else "")
            )
            row.append(_money(cost.get((p["name"], siem), {}).get("best_monthly"), cur))
        t.add_row(*row)
    console.print(t)
    for siem in siems:
        several = [x for x in report.get("sinks", []) if x["siem"] == siem]
        if len(several) > 1:
            parts = ", ".join(
                f"{escape(x['name'])} {human_bytes(x['billable_bytes_per_day'])}/day" for x in several
            )
            console.print(
                f"{siem} in profile 'config' adds up your {len(several)} sinks: {parts}", highlight=False
            )

    head = headline_profile(report)
    plans = Table(
        "SIEM", "plan", f"{cur}/month", "how", title=f"plans for profile '{head}'", title_justify="left"
    )
    for siem in siems:
        for pl in cost.get((head, siem), {}).get("plans", []):
            marks = "".join(sorted({_KIND_MARK.get(_kind(report, pid), "") for pid in pl["prices"]}))
            plans.add_row(
                siem,
                pl["plan"] + (" (best)" if pl["best"] else ""),
                _money(pl["monthly"], cur) + marks,
                pl["detail"],
            )
    console.print(plans)
    for siem, disk in report.get("on_disk_bytes_per_day", {}).items():
        if head not in disk:
            continue
        name = report.get("on_disk_assumptions", {}).get(siem, "")
        ratio = report["assumptions"].get(name, "?")
        why = report["assumptions"].get("notes", {}).get(name, "")
        console.print(
            f"{siem} on disk (estimate): {human_bytes(disk[head])}/day for profile '{head}', assuming "
            f"{ratio} x the billable bytes ({why})",
            highlight=False,
        )

    if report["rules"]:
        rt = Table(
            "SIEM",
            "rule",
            "saves/day",
            f"saves {cur}/month",
            "alone saves/day",
            title="what each rule saves (top savers first; 'alone' ignores rule order)",
            title_justify="left",
        )
        for r in report["rules"][:12]:
            rt.add_row(
                r["siem"],
                f"{r['scope']}: {r['rule']} ({r['action']})",
                human_bytes(r["billable_bytes_per_day"]),
                _money(r["monthly_saving"], cur),
                human_bytes(r["alone_bytes_per_day"]),
            )
        console.print(rt)

    nt = Table(
        "eventSource eventName",
        "events/day",
        "bytes/day",
        "share",
        title="noisiest APIs",
        title_justify="left",
    )
    for n in report["noisy"]["event_names"][:10]:
        nt.add_row(
            n["name"], f"{n['events_per_day']:,.0f}", human_bytes(n["bytes_per_day"]), f"{n['share']:.1%}"
        )
    console.print(nt)

    at = Table("AWS side", f"{cur}/month", "how", title="reading the trail in AWS", title_justify="left")
    for a in report["aws"]:
        at.add_row(a["plan"], _money(a["monthly"], cur), a["detail"])
    console.print(at)

    priv = report["privacy"]
    if priv["by_siem"] and priv.get("applied"):
        parts = ", ".join(f"{k} {v['change']:+.1%}" for k, v in priv["by_siem"].items())
        console.print(
            f"pseudonymization: {escape(priv['profile'])}; they change billable size by {parts} "
            f"(measured on every {_every(report)} record).",
            highlight=False,
        )
    elif priv["by_siem"]:
        parts = ", ".join(f"{k} {v['change']:+.1%}" for k, v in priv["by_siem"].items())
        console.print(
            f"pseudonymization ({priv['profile']}) changes billable size by {parts} "
            f"(measured on every {_every(report)} record); cost effect is within the margin unless large.",
            highlight=False,
        )
    else:
        console.print(f"pseudonymization: {priv['profile']}", highlight=False)
    console.print(
        "† assumption, no public list price: set yours with --prices FILE; ‡ your price file. "
        f"Prices: {', '.join(report['price_table']['origin'])}; exchange rates of {report['fx']['as_of']}.",
        highlight=False,
    )


def _kind(report: dict[str, Any], pid: str) -> str:
    for p in report["prices"]:
        if p["id"] == pid:
            return str(p["kind"])
    return ""


def _every(report: dict[str, Any]) -> str:
    by_siem: dict[str, dict[str, Any]] = report["privacy"]["by_siem"]
    records = next((int(v["records"]) for v in by_siem.values()), 0)
    total = report["sample"]["records"]
    return f"{round(total / records)}th" if records else "n-th"
