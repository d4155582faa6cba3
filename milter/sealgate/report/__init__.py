"""Compliance reports over the decisions and the quarantine (SPEC §7 ``sealgate report``).

:func:`build_report` is a pure function from decision records and
quarantine entries to one plain dict — the JSON report. The CSV and HTML
renderings (:mod:`.render`, :mod:`.html`) are made from that dict only, so
every number on the HTML page is the number in the JSON.

Counted per message (one decision each): totals by action, by direction, by
rule; by violation code (a message with two codes counts once under each);
top senders and top recipient domains; and a per-day trend by action (UTC
days, every day of the window present, zero or not). The quarantine part
counts the entries received in the window by their state now.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable

from ..codes import Action
from ..quarantine.store import Decision, QuarantineEntry

ACTIONS = [str(a) for a in (Action.ACCEPT, Action.TAG, Action.QUARANTINE, Action.REJECT,
                            Action.TEMPFAIL)]
STATES = ["held", "releasing", "released", "deleted"]


def _ranked(counter: Counter[str], top: int | None = None) -> list[dict[str, object]]:
    items = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    return [{"name": k, "count": v} for k, v in (items[:top] if top else items)]


def build_report(decisions: Iterable[Decision], entries: Iterable[QuarantineEntry],
                 since: dt.datetime, until: dt.datetime, *, top: int = 10,
                 generated: dt.datetime | None = None, title: str = "sealgate compliance report"
                 ) -> dict[str, object]:
    """The report as plain data (the JSON format)."""
    by_action: Counter[str] = Counter({a: 0 for a in ACTIONS})
    by_direction: Counter[str] = Counter()
    by_rule: Counter[str] = Counter()
    by_code: Counter[str] = Counter()
    senders: Counter[str] = Counter()
    domains: Counter[str] = Counter()
    days: dict[str, Counter[str]] = {}
    day = since.astimezone(dt.UTC).date()
    while day <= (until - dt.timedelta(microseconds=1)).astimezone(dt.UTC).date():
        days[day.isoformat()] = Counter({a: 0 for a in ACTIONS})
        day += dt.timedelta(days=1)
    total = 0
    with_violations = 0
    for d in decisions:
        if not since <= d.at < until:
            continue
        total += 1
        by_action[d.action] += 1
        by_direction[d.direction] += 1
        by_rule[d.rule or "(no rule)"] += 1
        for code in d.codes:
            by_code[code] += 1
        with_violations += bool(d.codes)
        senders[d.sender or "<>"] += 1
        for domain in d.recipient_domains:
            domains[domain] += 1
        days.setdefault(d.at.astimezone(dt.UTC).date().isoformat(),
                        Counter({a: 0 for a in ACTIONS}))[d.action] += 1
    states: Counter[str] = Counter({s: 0 for s in STATES})
    for e in entries:
        if since <= e.received < until:
            states[e.state] += 1
    return {
        "title": title,
        "since": since.astimezone(dt.UTC).isoformat(timespec="seconds"),
        "until": until.astimezone(dt.UTC).isoformat(timespec="seconds"),
        "generated": (generated or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds"),
        "totals": {"messages": total, "with_violations": with_violations,
                   **{a: by_action[a] for a in by_action}},
        "by_action": _ranked(by_action),
        "by_direction": _ranked(by_direction),
        "by_rule": _ranked(by_rule),
        "by_code": _ranked(by_code),
        "top_senders": _ranked(senders, top),
        "top_recipient_domains": _ranked(domains, top),
        "per_day": [{"day": k, "total": sum(v.values()), **{a: v[a] for a in ACTIONS}}
                    for k, v in sorted(days.items())],
        "quarantine": {s: states[s] for s in states},
    }
