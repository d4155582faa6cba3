"""The report as JSON and as CSV (one long table a spreadsheet can pivot)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from . import ACTIONS

SECTIONS = ("by_action", "by_direction", "by_rule", "by_code", "top_senders",
            "top_recipient_domains")


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=1) + "\n"


def to_csv(report: dict[str, Any]) -> str:
    """Columns: section, name, count — then one ``per_day`` row per day and action.

    Cells that a spreadsheet would run as a formula (``=``, ``+``, ``-``,
    ``@`` first) are prefixed with ``'``: sender addresses come from strangers.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["section", "name", "count"])
    writer.writerow(["period", f"{report['since']}/{report['until']}", ""])
    for key, value in report["totals"].items():
        writer.writerow(["totals", key, value])
    for section in SECTIONS:
        for item in report[section]:
            writer.writerow([section, _cell(str(item["name"])), item["count"]])
    for day in report["per_day"]:
        for action in ACTIONS:
            writer.writerow(["per_day", f"{day['day']} {action}", day[action]])
    for state, count in report["quarantine"].items():
        writer.writerow(["quarantine", state, count])
    return out.getvalue()


def _cell(text: str) -> str:
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
