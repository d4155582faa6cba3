"""The report as one self-contained HTML page: inline CSS and SVG charts, no script, no network.

Every number is printed inside an element carrying ``data-key`` (for
example ``data-key="by_code:unencrypted"``), so that a test — or a
reviewer's script — can read the page back and compare it with the JSON.
Strings from mail (sender addresses, domains, rule names) are escaped.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any

from . import ACTIONS

COLORS = {"accept": "#2f9e66", "tag": "#d6a419", "quarantine": "#e07a2e", "reject": "#c9433b",
          "tempfail": "#7a6fd1"}
LABELS = {"accept": "accepted", "tag": "tagged", "quarantine": "quarantined",
          "reject": "rejected", "tempfail": "tempfailed"}
PALETTE = ["#3867d6", "#20bf6b", "#f7b731", "#eb3b5a", "#8854d0", "#0fb9b1", "#fa8231",
           "#4b6584", "#a5b1c2", "#2d98da"]

CSS = """
*{box-sizing:border-box}body{margin:0;background:#f3f5f8;color:#1f2933;
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif}
header{background:linear-gradient(120deg,#1f3a5f,#2d5f8b);color:#fff;padding:22px 32px}
header h1{margin:0;font-size:22px;font-weight:600}header p{margin:4px 0 0;opacity:.85}
main{max-width:1120px;margin:0 auto;padding:20px 24px 40px}
.kpis{display:grid;grid-template-columns:repeat(7,1fr);gap:12px;margin-bottom:18px}
.kpi{background:#fff;border-radius:10px;padding:12px 14px;box-shadow:0 1px 3px rgba(0,0,0,.08);
border-top:4px solid #8795a1}.kpi .n{display:block;font-size:26px;font-weight:650}
.kpi .l{color:#616e7c;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:16px}
.card{background:#fff;border-radius:10px;padding:16px 18px;box-shadow:0 1px 3px rgba(0,0,0,.08);
margin-bottom:16px}.card h2{font-size:15px;margin:0 0 10px;color:#323f4b}
.wide{grid-column:1 / -1}table{width:100%;border-collapse:collapse}
td{padding:4px 6px;border-bottom:1px solid #eef1f4;vertical-align:middle}
td.num{text-align:right;font-variant-numeric:tabular-nums;width:60px;font-weight:600}
td.name{max-width:330px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.bar{height:10px;border-radius:5px;background:#3867d6;min-width:2px}
.legend span{display:inline-block;margin-right:14px;font-size:12px;color:#52606d}
.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;
vertical-align:-1px}.empty{color:#9aa5b1;font-style:italic}
footer{color:#9aa5b1;font-size:12px;text-align:center;margin-top:10px}
"""


def _n(key: str, value: object, cls: str = "num", tag: str = "td") -> str:
    return f'<{tag} class="{cls}" data-key="{escape(key)}">{escape(str(value))}</{tag}>'


def _kpis(report: dict[str, Any]) -> str:
    t = report["totals"]
    cells = [("totals:messages", t["messages"], "messages", "#1f3a5f")]
    cells += [(f"totals:{a}", t[a], LABELS[a], COLORS[a]) for a in ACTIONS]
    cells.append(("quarantine:held", report["quarantine"]["held"], "held now", "#e07a2e"))
    return '<section class="kpis">' + "".join(
        f'<div class="kpi" style="border-top-color:{c}">'
        f'<span class="n" data-key="{k}">{v}</span><span class="l">{escape(label)}</span></div>'
        for k, v, label, c in cells) + "</section>"


def _legend() -> str:
    return '<div class="legend">' + "".join(
        f'<span><i style="background:{COLORS[a]}"></i>{LABELS[a]}</span>' for a in ACTIONS) + "</div>"


def _trend(report: dict[str, Any]) -> str:
    days = report["per_day"]
    if not days:
        return '<p class="empty">no days in the period</p>'
    width, height, left, bottom, top = 1040, 240, 44, 34, 12
    peak = max([d["total"] for d in days] + [1])
    step = _nice(peak)
    ymax = step * math.ceil(peak / step)
    plot_h = height - bottom - top
    slot = (width - left - 8) / len(days)
    bar = max(min(slot * 0.7, 46), 2)
    parts = [f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" '
             'aria-label="messages per day by action" xmlns="http://www.w3.org/2000/svg">']
    for i in range(int(ymax / step) + 1):
        y = top + plot_h - plot_h * (i * step) / ymax
        parts.append(f'<line x1="{left}" x2="{width - 4}" y1="{y:.1f}" y2="{y:.1f}" '
                     'stroke="#e4e7eb"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" fill="#7b8794" '
                     f'text-anchor="end">{i * step}</text>')
    label_every = max(1, math.ceil(len(days) / 14))
    for i, d in enumerate(days):
        x = left + i * slot + (slot - bar) / 2
        y = top + plot_h
        for a in ACTIONS:
            if d[a]:
                h = plot_h * d[a] / ymax
                y -= h
                parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                             f'fill="{COLORS[a]}"><title>{d["day"]}: {d[a]} {LABELS[a]}</title>'
                             '</rect>')
        if d["total"]:
            parts.append(f'<text x="{x + bar / 2:.1f}" y="{y - 4:.1f}" font-size="10" '
                         f'fill="#52606d" text-anchor="middle" data-key="per_day:{d["day"]}">'
                         f'{d["total"]}</text>')
        if i % label_every == 0:
            parts.append(f'<text x="{x + bar / 2:.1f}" y="{height - 12}" font-size="11" '
                         f'fill="#7b8794" text-anchor="middle">{d["day"][5:]}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _nice(peak: int) -> int:
    raw = peak / 4
    magnitude = 10 ** max(0, math.floor(math.log10(raw))) if raw >= 1 else 1
    for m in (1, 2, 5, 10):
        if raw <= m * magnitude:
            return int(m * magnitude)
    return int(10 * magnitude)


def _donut(report: dict[str, Any]) -> str:
    total = report["totals"]["messages"]
    r, c = 60, 2 * math.pi * 60
    parts = ['<svg viewBox="0 0 160 160" width="150" height="150" '
             'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="share by action">',
             f'<circle cx="80" cy="80" r="{r}" fill="none" stroke="#eef1f4" stroke-width="22"/>']
    offset = 0.0
    for a in ACTIONS:
        share = report["totals"][a] / total if total else 0
        if share:
            parts.append(f'<circle cx="80" cy="80" r="{r}" fill="none" stroke="{COLORS[a]}" '
                         f'stroke-width="22" stroke-dasharray="{share * c:.2f} {c:.2f}" '
                         f'stroke-dashoffset="{-offset * c:.2f}" transform="rotate(-90 80 80)">'
                         f'<title>{LABELS[a]}: {report["totals"][a]}</title></circle>')
            offset += share
    parts.append(f'<text x="80" y="78" text-anchor="middle" font-size="24" font-weight="650" '
                 f'fill="#1f2933">{total}</text><text x="80" y="97" text-anchor="middle" '
                 'font-size="11" fill="#7b8794">messages</text></svg>')
    rows = "".join(
        f'<tr><td><i style="display:inline-block;width:10px;height:10px;border-radius:2px;'
        f'background:{COLORS[a]}"></i> {LABELS[a]}</td>{_n(f"by_action:{a}", report["totals"][a])}'
        f'<td class="num" style="color:#7b8794;font-weight:400">'
        f'{(100 * report["totals"][a] / total if total else 0):.1f}%</td></tr>'
        for a in ACTIONS)
    return (f'<div style="display:flex;gap:22px;align-items:center">{"".join(parts)}'
            f'<table>{rows}</table></div>')


def _bars(section: str, items: list[dict[str, Any]], color: str | None = None) -> str:
    if not items:
        return '<p class="empty">none in this period</p>'
    peak = max(int(i["count"]) for i in items) or 1
    rows = []
    for n, item in enumerate(items):
        key = f"{section}:{item['name']}"
        fill = color or PALETTE[n % len(PALETTE)]
        pct = 100 * int(item["count"]) / peak
        rows.append(f'<tr><td class="name" title="{escape(str(item["name"]))}">'
                    f'{escape(str(item["name"]))}</td><td style="width:45%">'
                    f'<div class="bar" style="width:{pct:.1f}%;background:{fill}"></div></td>'
                    f'{_n(key, item["count"])}</tr>')
    return "<table>" + "".join(rows) + "</table>"


def _card(title: str, body: str, wide: bool = False) -> str:
    return f'<section class="card{" wide" if wide else ""}"><h2>{escape(title)}</h2>{body}</section>'


def to_html(report: dict[str, Any]) -> str:
    q = report["quarantine"]
    quarantine = "<table>" + "".join(
        f"<tr><td>{escape(state)}</td>{_n(f'quarantine:{state}', n)}</tr>"
        for state, n in q.items()) + "</table>"
    since, until = report["since"][:16].replace("T", " "), report["until"][:16].replace("T", " ")
    return "".join([
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        # No network: nothing may be fetched, not even a font or an image.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        'style-src \'unsafe-inline\'; img-src data:">',
        f"<title>{escape(report['title'])}</title><style>{CSS}</style></head><body>",
        f"<header><h1>{escape(report['title'])}</h1><p>{escape(since)} → {escape(until)} UTC"
        f" · generated {escape(report['generated'][:16].replace('T', ' '))} UTC · "
        f"<span data-key=\"totals:with_violations\">{report['totals']['with_violations']}</span>"
        " messages with violations</p></header><main>",
        _kpis(report),
        _card("Messages per day", _legend() + _trend(report), wide=True),
        '<div class="grid">',
        _card("Decisions by action", _donut(report)),
        _card("Violations by code", _bars("by_code", report["by_code"], "#e07a2e")),
        _card("By policy rule", _bars("by_rule", report["by_rule"])),
        _card("By direction", _bars("by_direction", report["by_direction"], "#2d5f8b")),
        _card("Top senders", _bars("top_senders", report["top_senders"], "#3867d6")),
        _card("Top recipient domains", _bars("top_recipient_domains",
                                             report["top_recipient_domains"], "#20bf6b")),
        _card("Quarantine entries received in the period, by state now", quarantine, wide=True),
        "</div><footer>sealgate · decisions are counted per message; a message with several "
        "violation codes counts once under each code</footer></main></body></html>\n",
    ])
