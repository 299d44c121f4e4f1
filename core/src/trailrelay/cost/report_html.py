"""The cost report as one self-contained HTML file with inline SVG charts (no scripts, no network)."""

from __future__ import annotations

import html
from typing import Any

from trailrelay.cost.report_table import headline_profile, human_bytes, problem_lines

__all__ = ["render_html"]

_COLORS = ("#2f6fb0", "#d9822b", "#3a9d5d", "#a23b72", "#6c6c6c", "#c0392b")
_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;
padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}.warn{color:#9a5b00}.muted{color:#666;font-size:.9em}
svg.chart text{font:12px system-ui,sans-serif;fill:#222}.legend span{display:inline-block;margin-right:1rem}
.legend i{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;vertical-align:-1px}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _svg_open(name: str, title: str, width: int, height: int) -> str:
    return (
        f'<svg class="chart" data-chart="{_e(name)}" role="img" aria-label="{_e(title)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">'
    )


def _hbar(name: str, title: str, rows: list[tuple[str, float, str]]) -> str:
    """A horizontal bar chart: one labelled bar per row (label, value, value text)."""
    height = 26 * len(rows) + 10
    top = max((v for _, v, _ in rows), default=0.0) or 1.0
    parts = [_svg_open(name, title, 1000, height), f"<title>{_e(title)}</title>"]
    for i, (label, value, text) in enumerate(rows):
        y = 5 + 26 * i
        width = 560 * value / top
        parts.append(f'<text x="300" y="{y + 15}" text-anchor="end">{_e(label[:48])}</text>')
        parts.append(
            f'<rect class="bar" x="310" y="{y}" width="{width:.1f}" height="20" fill="{_COLORS[0]}">'
            f"<title>{_e(label)}: {_e(text)}</title></rect>"
        )
        parts.append(f'<text x="{316 + width:.1f}" y="{y + 15}">{_e(text)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _grouped(  # noqa: PLR0917 - one chart's inputs
    name: str,
    title: str,
    groups: list[str],
    series: list[str],
    values: dict[tuple[str, str], float],
    unit: str,
) -> str:
    """Vertical grouped bars: one group per profile, one bar per SIEM."""
    width, height, base = 1000, 320, 260
    top = max(values.values(), default=0.0) or 1.0
    slot = (width - 80) / max(len(groups), 1)
    bar = min(40.0, (slot - 20) / max(len(series), 1))
    parts = [
        _svg_open(name, title, width, height),
        f"<title>{_e(title)}</title>",
        f'<line x1="60" y1="{base}" x2="{width - 10}" y2="{base}" stroke="#999"/>',
    ]
    for gi, group in enumerate(groups):
        x0 = 70 + gi * slot
        for si, s in enumerate(series):
            v = values.get((group, s), 0.0)
            h = (base - 30) * v / top
            x = x0 + si * bar
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{base - h:.1f}" width="{bar - 4:.1f}" height="{h:.1f}" '
                f'fill="{_COLORS[si % len(_COLORS)]}">'
                f"<title>{_e(group)} / {_e(s)}: {v:,.2f} {_e(unit)}</title></rect>"
            )
        parts.append(f'<text x="{x0:.1f}" y="{base + 18}">{_e(group[:22])}</text>')
    parts.append(f'<text x="5" y="20">{_e(unit)} (top: {top:,.2f})</text></svg>')
    legend = "".join(
        f'<span><i style="background:{_COLORS[i % len(_COLORS)]}"></i>{_e(s)}</span>'
        for i, s in enumerate(series)
    )
    return "".join(parts) + f'<div class="legend">{legend}</div>'


def _table(headers: list[str], rows: list[list[str]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=n' if i in numeric else ''}>{_e(c)}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(report: dict[str, Any]) -> str:
    """The whole report as a standalone HTML page."""
    cur = report["currency"]
    s = report["sample"]
    siems = report["connectors"]["measured"]
    profiles = [p["name"] for p in report["profiles"]]
    titles = {p["name"]: p["title"] for p in report["profiles"]}
    costs = {(c["profile"], c["siem"]): c.get("best_monthly") or 0.0 for c in report["costs"]}
    vol = {(r["profile"], r["siem"]): r for r in report["volumes"]}
    mode = (
        "every hour read (census)"
        if s["census"]
        else f"{s['units_read']} of {s['population_units']} hours sampled"
    )
    out = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>trailrelay cost: {_e(report['source'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>What {_e(report['source'])} would cost</h1>",
        (
            f"<p class=muted>generated {_e(report['generated_at'])}; {s['records']:,} records from "
            f"{s['objects_read']:,} objects ({_e(human_bytes(s['raw_bytes_read']))} uncompressed); "
            f"{mode}, spanning {s['span_hours']:,.0f} h.</p>"
        ),
    ]
    out += [f"<p class=warn>⚠ {_e(w)}</p>" for w in [*s["warnings"], *problem_lines(s)]]
    if report["connectors"]["missing"]:
        out.append(
            f"<p>Not measured (connector not installed): {_e(', '.join(report['connectors']['missing']))}</p>"
        )
    out.append("<h2>Cost per SIEM per profile</h2>")
    out.append(
        _grouped(
            "cost-per-siem",
            f"best plan, {cur} per month",
            [titles[p] for p in profiles],
            siems,
            {(titles[p], si): costs.get((p, si), 0.0) for p in profiles for si in siems},
            f"{cur}/month",
        )
    )
    rows = []
    for p in profiles:
        for si in siems:
            v = vol.get((p, si), {})
            rows.append(
                [
                    titles[p],
                    si,
                    human_bytes(v.get("billable_bytes_per_day", 0.0)),
                    f"±{v.get('relative_margin', 0.0):.0%}",
                    f"{costs.get((p, si), 0.0):,.2f} {cur}",
                ]
            )
    out.append(
        _table(["profile", "SIEM", "billable/day", "95 % margin", f"best {cur}/month"], rows, {2, 3, 4})
    )
    head = headline_profile(report)
    plan_rows = [
        [
            c["siem"],
            pl["plan"] + (" (best)" if pl["best"] else ""),
            f"{pl['monthly']:,.2f} {cur}",
            pl["detail"],
        ]
        for c in report["costs"]
        if c["profile"] == head
        for pl in c["plans"]
    ]
    out.append(
        f"<h3>Plans for profile '{_e(head)}'</h3>"
        + _table(["SIEM", "plan", "monthly", "how"], plan_rows, {2})
    )
    notes = report["assumptions"].get("notes", {})
    for siem, disk in report.get("on_disk_bytes_per_day", {}).items():
        if head in disk:
            name = report.get("on_disk_assumptions", {}).get(siem, "")
            out.append(
                f"<p>{_e(siem)} on disk (estimate): {_e(human_bytes(disk[head]))}/day for profile "
                f"'{_e(head)}'; {_e(notes.get(name, ''))}</p>"
            )
    out.append("<h2>Volume by eventSource</h2>")
    out.append(
        _hbar(
            "volume-by-event-source",
            "bytes per day by eventSource",
            [
                (n["name"], n["bytes_per_day"], human_bytes(n["bytes_per_day"]) + "/day")
                for n in report["noisy"]["event_sources"]
            ],
        )
    )
    out.append("<h2>Noisiest APIs (eventName)</h2>")
    out.append(
        _hbar(
            "volume-by-event-name",
            "bytes per day by eventSource and eventName",
            [
                (n["name"], n["bytes_per_day"], f"{human_bytes(n['bytes_per_day'])}/day, {n['share']:.1%}")
                for n in report["noisy"]["event_names"]
            ],
        )
    )
    out.append("<h2>Savings per rule</h2>")
    if report["rules"]:
        out.append(
            _hbar(
                "savings-per-rule",
                f"{cur} per month saved by each rule",
                [
                    (
                        f"{r['siem']}: {r['rule']}",
                        r["monthly_saving"] or 0.0,
                        "- (no price)"
                        if r["monthly_saving"] is None
                        else f"{r['monthly_saving']:,.2f} {cur}/month",
                    )
                    for r in report["rules"][:20]
                ],
            )
        )
    else:
        out.append("<p>No filter rules to attribute.</p>")
    out.append("<h2>AWS side</h2>")
    out.append(
        _table(
            ["item", f"{cur}/month", "how"],
            [[a["plan"], f"{a['monthly']:,.2f}", a["detail"]] for a in report["aws"]],
            {1},
        )
    )
    priv = report["privacy"]
    out.append("<h2>Pseudonymization</h2><p>" + _e(priv["profile"]) + "</p>")
    if priv["by_siem"]:
        out.append(
            _table(
                ["SIEM", "change in billable size"],
                [[k, f"{v['change']:+.1%}"] for k, v in priv["by_siem"].items()],
            )
        )
    out.append("<h2>How this was estimated</h2><p>" + _e(s["method"]) + "</p>")
    out.append(
        _table(
            ["SIEM", "billing unit", "rule"],
            [[k, report["connectors"]["units"][k], report["connectors"]["rules"][k]] for k in siems],
        )
    )
    out.append("<h2>Prices used</h2>")
    out.append(
        _table(
            ["id", "plan", "value", "unit", "kind", "as of", "source"],
            [
                [
                    p["id"],
                    p["plan"],
                    f"{p['value']:g} {p['currency']}",
                    p["unit"],
                    p["kind"],
                    p["as_of"],
                    f"{p['source_title']} <{p['source_url']}>",
                ]
                for p in report["prices"]
            ],
        )
    )
    fx = report["fx"]
    out.append(
        f"<p class=muted>Exchange rates per 1 {_e(fx['base'])} of {_e(fx['as_of'])} "
        f"({_e(fx['source_title'])}): "
        + _e(", ".join(f"{k} {v:g}" for k, v in sorted(fx["rates"].items())))
        + "</p>"
    )
    out.append("</body></html>")
    return "\n".join(out)
