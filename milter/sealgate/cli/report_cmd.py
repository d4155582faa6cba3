"""``sealgate report``: the compliance report over the decisions and the quarantine (SPEC §7).

``--digest`` mails it instead: a short text summary with the HTML page
attached, to ``[quarantine] compliance_address`` (or ``--to``), submitted to
``release_smtp`` like the other mail sealgate sends.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import smtplib
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import click

from ..config import load_config
from ..errors import ConfigErrors, SealgateError
from ..quarantine import Filter, open_store
from ..report import build_report
from ..report.html import LABELS, to_html
from ..report.render import to_csv, to_json
from . import config_option, fail, main
from .quarantine_cmd import parse_when

EXIT_NOT_SENT = 1


def render(report: dict[str, Any], fmt: str) -> str:
    return {"json": to_json, "csv": to_csv, "html": to_html}[fmt](report)


def digest_message(report: dict[str, Any], sender: str, to: str) -> bytes:
    """Text summary plus the HTML report as an attachment (opens offline in any browser)."""
    t = report["totals"]
    lines = [f"sealgate compliance report, {report['since'][:10]} to {report['until'][:10]} (UTC)",
             "", f"  messages judged: {t['messages']}"]
    lines += [f"  {LABELS[a]:<12} {t[a]}" for a in LABELS]
    lines += ["", f"  held for review now: {report['quarantine']['held']}", "",
              "Top violation codes:"]
    lines += [f"  {c['name']:<24} {c['count']}" for c in report["by_code"][:5]] or ["  none"]
    lines += ["", "The full report with charts is attached (report.html)."]
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = (f"sealgate report {report['since'][:10]} – {report['until'][:10]}: "
                      f"{t['messages']} messages, {t['quarantine']} quarantined")
    msg["Date"] = email.utils.format_datetime(dt.datetime.now(dt.UTC))
    msg["Message-ID"] = email.utils.make_msgid("sealgate-report")
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834 §5
    msg.set_content("\n".join(lines) + "\n")
    msg.add_attachment(to_html(report).encode(), maintype="text", subtype="html",
                       filename="report.html")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


@main.command("report")
@config_option
@click.option("--since", default="7d", show_default=True, help="Start: 7d, 24h, or an ISO time.")
@click.option("--until", default=None, help="End (default: now): a duration ago or an ISO time.")
@click.option("--format", "fmt", type=click.Choice(["html", "csv", "json"]), default="json",
              show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write here instead of standard output.")
@click.option("--top", default=10, show_default=True, help="How many top senders and domains.")
@click.option("--digest", is_flag=True, help="Mail the report to the compliance address.")
@click.option("--to", "to", default=None, help="Digest recipient (default: compliance_address).")
def report_cmd(config_path: str, since: str, until: str | None, fmt: str, output: str | None,
               top: int, digest: bool, to: str | None) -> None:
    """Report decisions and quarantine over a time window (html, csv or json)."""
    start = parse_when(since, "--since")
    end = parse_when(until, "--until") or dt.datetime.now(dt.UTC)
    assert start is not None  # noqa: S101 - --since has a default
    if start >= end:
        raise click.BadParameter(f"the period is empty ({start:%Y-%m-%d %H:%M} is not before "
                                 f"{end:%Y-%m-%d %H:%M})", param_hint="--since")
    try:
        config = load_config(Path(config_path))
        store = open_store(config.quarantine)
        try:
            report = build_report(store.decisions(start, end),
                                  store.list(where=Filter(since=start, until=end)),
                                  start, end, top=top)
        finally:
            store.close()
    except ConfigErrors as exc:
        fail(str(exc))
        return
    except SealgateError as exc:
        fail(str(exc))
        return
    if digest:
        recipient = to or config.quarantine.compliance_address
        if not recipient:
            raise click.UsageError("no recipient: give --to or set [quarantine] compliance_address")
        sender = config.quarantine.notify_from or f"postmaster@{config.authserv_id}"
        target = config.quarantine.release_smtp
        host, _sep, port = target.rpartition(":")
        try:
            with smtplib.SMTP(host.strip("[]"), int(port), timeout=60) as smtp:
                smtp.sendmail(sender, [recipient], digest_message(report, sender, recipient))
        except (OSError, smtplib.SMTPException) as exc:
            fail(f"cannot mail the report to {recipient} through {target} "
                  f"([quarantine] release_smtp): {exc}", EXIT_NOT_SENT)
        click.echo(f"report mailed to {recipient} through {target}")
        return
    text = render(report, fmt)
    if output:
        try:
            Path(output).write_text(text, encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write {output}: {exc.strerror or exc}")
    else:
        click.echo(text, nl=False)
