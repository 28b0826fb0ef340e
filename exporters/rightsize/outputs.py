"""The report as a terminal table, JSON, CSV or one self-contained HTML page (inline SVG, no CDN)."""

from __future__ import annotations

import csv
import html
import io
import json

RESOURCE_LABELS = {"cpu": "CPU", "memory": "Memory", "gpu": "GPU", "gpu_memory": "GPU memory"}


def subject(rec: dict) -> str:
    if rec["kind"] == "host":
        return rec["instance"]
    account = f"{rec['account']}:" if rec.get("account") else ""
    return f"{account}{rec['region']}/{rec['endpoint']}/{rec['variant']}"


def recommended(rec: dict) -> str:
    if not rec["options"]:
        return "-"
    best = rec["options"][0]
    return f"{best['instances']} x {best['instance_type']}"


def render_json(report: dict) -> str:
    return json.dumps(report, indent=2, sort_keys=False) + "\n"


def render_table(report: dict) -> str:
    head = ("SUBJECT", "CURRENT", "FINDING", "RECOMMENDED", "SAVES $/MONTH", "RISK", "CONFIDENCE")
    rows = []
    for rec in report["recommendations"]:
        cur = rec["current"]
        best = rec["options"][0] if rec["options"] else None
        rows.append((subject(rec), f"{cur['instances']} x {cur['instance_type']}", rec["finding"], recommended(rec),
                     f"{rec['estimated_monthly_savings_dollars']:,.2f}",
                     str(best["performance_risk"]) if best else "-", rec["confidence"]))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines = ["  ".join(str(x).ljust(w) if i != 4 else str(x).rjust(w) for i, (x, w) in enumerate(zip(r, widths)))
             .rstrip() for r in (head, *rows)]
    total = report["summary"]["estimated_monthly_savings_dollars"]
    lines.append(f"TOTAL estimated savings: ${total:,.2f}/month over {len(rows)} subjects "
                 f"(lookback {report['lookback_seconds'] / 86400:g}d, profile {report['profile']}, at {report['at']})")
    lines += [f"note: {subject(r)}: {r['message']}" for r in report["recommendations"] if r.get("message")]
    return "\n".join(lines) + "\n"


CSV_COLUMNS = ["kind", "account", "region", "endpoint", "variant", "instance", "current_instance_type",
               "current_instances", "current_hourly_cost_dollars", "finding", "reasons", "confidence",
               "history_hours", "recommended_instance_type", "recommended_instances",
               "recommended_hourly_cost_dollars", "estimated_monthly_savings_dollars", "savings_percent",
               "performance_risk", "cpu_p99", "memory_max", "gpu_p99", "gpu_memory_max", "message"]


def render_csv(report: dict) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for rec in report["recommendations"]:
        best = rec["options"][0] if rec["options"] else {}
        util = rec["utilization"]
        writer.writerow({
            "kind": rec["kind"], "account": rec.get("account", ""), "region": rec.get("region", ""),
            "endpoint": rec.get("endpoint", ""), "variant": rec.get("variant", ""), "instance": rec.get("instance", ""),
            "current_instance_type": rec["current"]["instance_type"], "current_instances": rec["current"]["instances"],
            "current_hourly_cost_dollars": rec["current"]["hourly_cost_dollars"], "finding": rec["finding"],
            "reasons": ";".join(rec["reasons"]), "confidence": rec["confidence"], "history_hours": rec["history_hours"],
            "recommended_instance_type": best.get("instance_type", ""),
            "recommended_instances": best.get("instances", ""),
            "recommended_hourly_cost_dollars": best.get("hourly_cost_dollars", ""),
            "estimated_monthly_savings_dollars": rec["estimated_monthly_savings_dollars"],
            "savings_percent": best.get("savings_percent", ""), "performance_risk": best.get("performance_risk", ""),
            "cpu_p99": util.get("cpu", {}).get("p99", ""), "memory_max": util.get("memory", {}).get("max", ""),
            "gpu_p99": util.get("gpu", {}).get("p99", ""), "gpu_memory_max": util.get("gpu_memory", {}).get("max", ""),
            "message": rec.get("message") or ""})
    return out.getvalue()


def utilization_svg(util: dict, target: float, low: float) -> str:
    """One row per resource: a p50-p95 box, p99 and max marks on a 0-100 % axis, with the target
    utilization (red) and the over-provisioned line (grey) drawn across."""
    width, left, row = 300, 78, 18
    names = [r for r in RESOURCE_LABELS if r in util]
    height = row * len(names) + 14
    scale = width - left - 14  # room for the 100 % label
    x = lambda v: left + max(0.0, min(1.0, v)) * scale  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="utilization against thresholds">']
    for i, name in enumerate(names):
        s, y = util[name], 4 + i * row
        parts.append(f'<text x="0" y="{y + 11}" font-size="11" fill="#333">{RESOURCE_LABELS[name]}</text>')
        parts.append(f'<rect x="{left}" y="{y + 5}" width="{scale}" height="2" fill="#eee"/>')
        parts.append(f'<rect x="{x(s["p50"]):.1f}" y="{y + 1}" width="{max(1.5, x(s["p95"]) - x(s["p50"])):.1f}" '
                     f'height="10" fill="#4a7bd0"><title>{RESOURCE_LABELS[name]} p50 {s["p50"]:.0%} to p95 '
                     f'{s["p95"]:.0%}</title></rect>')
        parts.append(f'<rect x="{x(s["p99"]) - 1:.1f}" y="{y}" width="2" height="12" fill="#1a3d7c"/>')
        parts.append(f'<circle cx="{x(s["max"]):.1f}" cy="{y + 6}" r="3" fill="none" stroke="#1a3d7c"/>')
    bottom = height - 12
    for value, colour in ((target, "#d33"), (low, "#999")):
        parts.append(f'<line x1="{x(value):.1f}" y1="0" x2="{x(value):.1f}" y2="{bottom}" stroke="{colour}" '
                     'stroke-dasharray="3,2"/>')
    for tick in (0, 0.5, 1):
        parts.append(f'<text x="{x(tick):.1f}" y="{height - 1}" font-size="9" fill="#666" '
                     f'text-anchor="middle">{tick:.0%}</text>')
    parts.append("</svg>")
    return "".join(parts)


STYLE = """body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}h1{font-size:20px;margin:0 0 4px}
.meta{color:#666;margin-bottom:16px}.total{font-size:28px;font-weight:600;margin:8px 0 16px}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #ddd;padding:6px 8px;text-align:left;
vertical-align:top}th{background:#f4f4f4}td.num{text-align:right;white-space:nowrap}.f-Overprovisioned{color:#b36b00}
.f-Underprovisioned{color:#c00}.f-Idle{color:#8a2be2}.f-Optimized{color:#2a7a2a}.f-InsufficientData{color:#666}
.small{font-size:12px;color:#555}.legend{font-size:12px;color:#555;margin-top:12px}"""


def render_html(report: dict) -> str:
    esc = html.escape
    settings = report.get("settings", {})
    target = settings.get("target_utilization", 1 / 1.2)
    low = settings.get("overprovisioned_below", 0.5) * target
    total = report["summary"]["estimated_monthly_savings_dollars"]
    rows = []
    for rec in report["recommendations"]:
        cur = rec["current"]
        best = rec["options"][0] if rec["options"] else None
        detail = esc(", ".join(rec["reasons"])) or "&nbsp;"
        if rec.get("message"):
            detail += f'<div class="small">{esc(rec["message"])}</div>'
        auto = rec.get("autoscaling") or {}
        if auto.get("target_value"):
            detail += (f'<div class="small">Autoscale on InvocationsPerInstance = {auto["target_value"]:g}/min, '
                       f'{auto["min_capacity"]}-{auto["max_capacity"]} instances</div>')
        chart = utilization_svg(rec["utilization"], target, low) if rec["utilization"] else ""
        rows.append(
            f'<tr><td>{esc(subject(rec))}<div class="small">{esc(rec["kind"])}, {rec["history_hours"]:g} h, '
            f'{esc(rec["confidence"])} confidence</div></td>'
            f'<td>{cur["instances"]} x {esc(str(cur["instance_type"]))}<div class="small">'
            f'{"$%.2f/h" % cur["hourly_cost_dollars"] if cur["hourly_cost_dollars"] is not None else "cost unknown"}'
            f'</div></td><td class="f-{esc(rec["finding"])}">{esc(rec["finding"])}<div class="small">{detail}</div></td>'
            f'<td>{esc(recommended(rec))}<div class="small">'
            f'{"risk %d" % best["performance_risk"] if best else ""}</div></td>'
            f'<td class="num">${rec["estimated_monthly_savings_dollars"]:,.2f}</td><td>{chart}</td></tr>')
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>MLScope rightsizing report</title><style>{STYLE}</style></head>
<body><h1>MLScope rightsizing report</h1>
<div class="meta">As of {esc(report["at"])} over {report["lookback_seconds"] / 86400:g} days, profile
{esc(report["profile"])}; generated {esc(report["generated_at"])}.</div>
<div class="total" id="total">Estimated savings: ${total:,.2f}/month</div>
<table><thead><tr><th>Subject</th><th>Current</th><th>Finding</th><th>Recommended</th><th>Saves/month</th>
<th>Utilization (p50&ndash;p95 box, p99 bar, max circle)</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
<div class="legend">Red dashed line: target utilization ({target:.0%}); grey dashed line: below it a resource is
over-provisioned ({low:.0%}). Savings are on-demand list prices (or your overrides), 730 hours a month.</div>
</body></html>
"""


RENDERERS = {"table": render_table, "json": render_json, "csv": render_csv, "html": render_html}
