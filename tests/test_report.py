"""``sealgate report``: numbers from the decisions, the same in JSON, CSV and the HTML page.

The HTML page is opened in a real headless Chromium: a screenshot is kept in
``test-artifacts/`` and the numbers read back from the rendered DOM are
compared with the JSON report.
"""

from __future__ import annotations

import csv
import datetime as dt
import email
import io
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
import quarantine_fixtures as qf
from click.testing import CliRunner
from gateway_helpers import write_config
from quarantine_fixtures import ENVELOPE, VERDICT, Recorder

from sealgate.cli import main
from sealgate.devpki import TestPKI
from sealgate.quarantine import Decision, SqliteQuarantine
from sealgate.report import build_report
from sealgate.report.html import to_html
from sealgate.report.render import to_csv

receiver = qf.receiver

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
UTC = dt.UTC
T0 = dt.datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def d(days: float, action: str, codes: tuple[str, ...] = (), *, sender: str = "alice@example.com",
      domains: tuple[str, ...] = ("example.com",), rule: str | None = "internal",
      direction: str = "internal") -> Decision:
    return Decision(T0 + dt.timedelta(days=days), direction, action, rule, codes, sender, domains)


DECISIONS = [
    d(0, "accept"), d(0, "accept"), d(0.1, "quarantine", ("unencrypted", "unsigned")),
    d(1, "tag", ("unsigned",), sender="ext@partner.test", rule="inbound", direction="inbound"),
    d(1, "reject", ("malformed",), sender="=cmd|calc@evil.test", domains=("example.com", "example.org"),
      rule="inbound", direction="inbound"),
    d(3, "tempfail", ("directory-unavailable",), sender="bob@example.com"),
    d(3.5, "quarantine", ("unencrypted",), sender="bob@example.com", domains=("gmail.test",),
      rule="outbound", direction="outbound"),
    d(9, "accept"),  # outside the window below
]
SINCE, UNTIL = T0 - dt.timedelta(hours=12), T0 + dt.timedelta(days=5)


def test_report_counts_per_message_code_rule_direction_sender_domain() -> None:
    r = build_report(DECISIONS, [], SINCE, UNTIL, top=2)
    assert r["totals"] == {"messages": 7, "with_violations": 5, "accept": 2, "tag": 1,
                           "quarantine": 2, "reject": 1, "tempfail": 1}
    # Most first; ties by name.
    assert r["by_code"] == [{"name": "unencrypted", "count": 2}, {"name": "unsigned", "count": 2},
                            {"name": "directory-unavailable", "count": 1},
                            {"name": "malformed", "count": 1}]
    assert {c["name"]: c["count"] for c in r["by_direction"]} == {"internal": 4, "inbound": 2,
                                                                   "outbound": 1}
    assert {c["name"]: c["count"] for c in r["by_rule"]} == {"internal": 4, "inbound": 2,
                                                              "outbound": 1}
    assert r["top_senders"] == [{"name": "alice@example.com", "count": 3},
                                {"name": "bob@example.com", "count": 2}]
    assert r["top_recipient_domains"][0] == {"name": "example.com", "count": 6}


def test_every_day_of_the_window_is_in_the_trend() -> None:
    r = build_report(DECISIONS, [], SINCE, UNTIL)
    days = {x["day"]: x for x in r["per_day"]}
    assert list(days) == ["2026-11-20", "2026-11-21", "2026-11-22", "2026-11-23", "2026-11-24",
                          "2026-11-25"]
    assert days["2026-11-20"]["total"] == 3 and days["2026-11-20"]["quarantine"] == 1
    assert days["2026-11-22"]["total"] == 0
    assert sum(x["total"] for x in r["per_day"]) == r["totals"]["messages"]


def test_csv_is_one_long_table_and_defuses_formulas() -> None:
    rows = list(csv.reader(io.StringIO(to_csv(build_report(DECISIONS, [], SINCE, UNTIL)))))
    assert rows[0] == ["section", "name", "count"]
    assert ["totals", "messages", "7"] in rows
    assert ["by_code", "unencrypted", "2"] in rows
    assert ["per_day", "2026-11-23 tempfail", "1"] in rows
    assert ["top_senders", "'=cmd|calc@evil.test", "1"] in rows


def test_html_escapes_what_comes_from_mail() -> None:
    evil = [d(0, "reject", ("malformed",), sender="<script>alert(1)</script>@x.test")]
    page = to_html(build_report(evil, [], SINCE, UNTIL))
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")  # nothing to fetch


# ---------------------------------------------------------------- end to end, in a browser

CHROMIUM = "/usr/bin/chromium"


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    if not shutil.which(CHROMIUM):
        qf.unavailable("chromium", "install the Debian package chromium (make deps)")
    argv = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)


class Numbers(HTMLParser):
    """The text of every element that carries data-key: key -> set of the values shown."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, list[str]]] = []
        self._open: list[list[str] | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        key = dict(attrs).get("data-key")
        if key:
            self.found.append((key, []))
        self._open.append(self.found[-1][1] if key else None)

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        target = next((t for t in reversed(self._open) if t is not None), None)
        if target is not None and data.strip():
            target.append(data.strip())

    @property
    def values(self) -> dict[str, str]:
        shown: dict[str, set[str]] = {}
        for key, texts in self.found:
            shown.setdefault(key, set()).add("".join(texts))
        assert all(len(v) == 1 for v in shown.values()), shown  # one number per key everywhere
        return {k: v.pop() for k, v in shown.items()}


@pytest.fixture
def report_site(tmp_path: Path, pki: TestPKI) -> Path:
    config = write_config(tmp_path / "site", pki)
    text = config.read_text().replace(
        "[quarantine]\n", '[quarantine]\ncompliance_address = "compliance@example.com"\n')
    config.write_text(text)
    store = SqliteQuarantine(tmp_path / "site" / "quarantine")
    now = dt.datetime.now(UTC)
    senders = ["alice@example.com", "bob@example.com", "ext@partner.test", "carol@example.com"]
    actions = ["accept"] * 6 + ["tag"] * 2 + ["quarantine"] * 2 + ["reject", "tempfail"]
    codes = {"accept": (), "tag": ("unsigned",), "quarantine": ("unencrypted",),
             "reject": ("malformed",), "tempfail": ("crl-unavailable",)}
    for day in range(7):
        for i in range((day * 5) % 13 + 4):
            action = actions[(i * 7 + day) % len(actions)]
            sender = senders[(i + day) % len(senders)]
            store.record_decision(Decision(
                now - dt.timedelta(days=day, minutes=i), "inbound" if "partner" in sender
                else "internal", action, "inbound" if "partner" in sender else "internal",
                codes[action], sender, ("example.com",) if i % 3 else ("example.org",)))
    for _ in range(3):
        store.put(io.BytesIO(b"Subject: x\r\n\r\ny\r\n"), ENVELOPE, VERDICT)
    store.close()
    return config


def test_html_report_in_chromium_shows_the_json_numbers(report_site: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(main, ["report", "--config", str(report_site), "--since", "7d",
                               "--format", "json"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    page = tmp_path / "report.html"
    out = runner.invoke(main, ["report", "--config", str(report_site), "--since", "7d",
                               "--format", "html", "-o", str(page)], catch_exceptions=False)
    assert out.exit_code == 0, out.output

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    done = chromium(f"--screenshot={shot}", "--window-size=1200,1420", "--hide-scrollbars",
                    page.as_uri(), profile=tmp_path / "profile1")
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
    shutil.copy(page, ARTIFACTS / "report.html")
    dom = chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile2")
    assert dom.returncode == 0, dom.stderr[-2000:]
    parser = Numbers()
    parser.feed(dom.stdout)
    shown = parser.values

    t = report["totals"]
    assert t["messages"] > 0
    for key in ("messages", "accept", "tag", "quarantine", "reject", "tempfail", "with_violations"):
        assert shown[f"totals:{key}"] == str(t[key]), key
    for item in report["by_action"]:
        assert shown[f"by_action:{item['name']}"] == str(item["count"])
    for section in ("by_code", "by_rule", "by_direction", "top_senders", "top_recipient_domains"):
        assert report[section], section
        for item in report[section]:
            assert shown[f"{section}:{item['name']}"] == str(item["count"]), (section, item)
    for day in report["per_day"]:
        if day["total"]:
            assert shown[f"per_day:{day['day']}"] == str(day["total"])
    assert shown["quarantine:held"] == str(report["quarantine"]["held"]) == "3"
    svg_bars = re.findall(r"<rect [^>]*fill=", dom.stdout)
    assert len(svg_bars) >= sum(1 for x in report["per_day"] for a in
                                ("accept", "tag", "quarantine", "reject", "tempfail") if x[a])


def test_digest_mails_the_report_to_the_compliance_address(
        report_site: Path, receiver: tuple[Recorder, str]) -> None:
    recorder, target = receiver
    text = report_site.read_text().replace('release_smtp = "127.0.0.1:10026"', "")
    report_site.write_text(text.replace("[quarantine]\n", f'[quarantine]\nrelease_smtp = "{target}"\n'))
    out = CliRunner().invoke(main, ["report", "--config", str(report_site), "--digest"],
                             catch_exceptions=False)
    assert out.exit_code == 0, out.output
    (got,) = recorder.messages
    assert got.rcpt_tos == ["compliance@example.com"]
    msg = email.message_from_bytes(got.content)
    assert msg["Auto-Submitted"] == "auto-generated"
    parts = {p.get_content_type(): p for p in msg.walk()}
    assert "messages judged" in parts["text/plain"].get_payload(decode=True).decode()
    html = parts["text/html"].get_payload(decode=True).decode()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html
    assert os.path.basename(parts["text/html"].get_filename() or "") == "report.html"
