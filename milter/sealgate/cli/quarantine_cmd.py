"""``sealgate quarantine``: review held mail, release it once, delete, purge, export, audit.

Every action a reviewer takes — showing a message, releasing, deleting,
purging, exporting — is written to the store's append-only audit log with
who (``--reviewer``, default the OS user), when, what and why
(``--reason``). Encrypted entries (``[quarantine] encrypt_to``) need a
reviewer key: ``--key-file`` (a PEM key; its certificate is found among
``encrypt_to``) or ``--card`` (the reviewer's card, through PKCS#11).

Exit status: 0 done; 1 the action did not complete (receiver refused, release
unconfirmed, entry in the wrong state); 2 usage, configuration or store error.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import mailbox
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..config import load_config
from ..quarantine import (
    AuditRecord,
    EntryNotFound,
    Filter,
    KeyFileUnsealer,
    QuarantineEntry,
    QuarantineStore,
    StateConflict,
    Unsealer,
    open_store,
    read_message,
)
from ..quarantine.release import ReleaseFailed, ReleaseUnconfirmed, release
from ..units import parse_duration
from . import config_option, exit_on_errors, main
from .endpoint_common import card_options, open_card

EXIT_NOT_DONE = 1
UTC = dt.UTC
F = TypeVar("F", bound=Callable[..., Any])


def parse_when(value: str | None, option: str) -> dt.datetime | None:
    """``7d``/``12h`` (that long ago) or an ISO 8601 time (UTC unless it says otherwise)."""
    if value is None:
        return None
    try:
        return dt.datetime.now(UTC) - dt.timedelta(seconds=parse_duration(value))
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is neither a duration (7d, 12h) nor an ISO time "
                                 "(2026-11-01 or 2026-11-01T08:00:00Z)", param_hint=option) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _filters(func: F) -> F:
    options = [
        click.option("--since", help="Received at or after: 7d, 12h, or an ISO time."),
        click.option("--until", help="Received before: 7d, 12h, or an ISO time."),
        click.option("--sender", help="Envelope sender, or a glob: '*@example.com'."),
        click.option("--recipient", help="Any envelope recipient, or a glob."),
        click.option("--code", help="Violation code (SPEC §3), e.g. unencrypted."),
        click.option("--rule", help="Policy rule name."),
        click.option("--state", type=click.Choice(["held", "releasing", "released", "deleted"]),
                     help="Entry state."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _filter(kw: dict[str, Any]) -> Filter:
    return Filter(since=parse_when(kw.pop("since"), "--since"),
                  until=parse_when(kw.pop("until"), "--until"), sender=kw.pop("sender"),
                  recipient=kw.pop("recipient"), code=kw.pop("code"), rule=kw.pop("rule"),
                  state=kw.pop("state"))


def _reviewer_options(func: F) -> F:
    func = click.option("--reason", required=True,
                        help="Why (ticket, request): kept in the audit log.")(func)
    return click.option("--reviewer", default=None,
                        help="Who acts (default: the OS user).")(func)


def _key_options(func: F) -> F:
    func = card_options(func)
    func = click.option("--card", "use_card", is_flag=True,
                        help="Decrypt with the reviewer's card (PKCS#11).")(func)
    func = click.option("--cert-file", type=click.Path(exists=True, dir_okay=False),
                        help="Certificate of --key-file (default: found among encrypt_to).")(func)
    return click.option("--key-file", type=click.Path(exists=True, dir_okay=False),
                        help="Reviewer private key (PEM) for encrypted entries.")(func)


_errors = exit_on_errors(
    ((ReleaseUnconfirmed, ReleaseFailed, StateConflict, EntryNotFound), EXIT_NOT_DONE))


class Session:
    """The config, the store and the reviewer for one command."""

    def __init__(self, config_path: str, reviewer: str | None = None) -> None:
        self.config = load_config(Path(config_path))
        self.store: QuarantineStore = open_store(self.config.quarantine,
                                                 max_size=self.config.milter.max_message_size)
        self.reviewer = reviewer or getpass.getuser()
        click.get_current_context().call_on_close(self.store.close)

    def audit(self, action: str, entry_id: str | None, reason: str, **detail: object) -> None:
        self.store.audit(AuditRecord(dt.datetime.now(UTC), self.reviewer, action, entry_id,
                                     reason, dict(detail)))

    def unsealer(self, kw: dict[str, Any]) -> Unsealer | None:
        key_file, cert_file, use_card = kw.pop("key_file"), kw.pop("cert_file"), kw.pop("use_card")
        card_kw = {k: kw.pop(k) for k in ("module", "token", "key_label", "pin_file", "pin_env")}
        if key_file:
            return KeyFileUnsealer(key_file, cert_file, candidates=self.config.quarantine.encrypt_to)
        if use_card:
            card = open_card(self.config, **card_kw)
            click.get_current_context().call_on_close(card.close)
            return CardUnsealer(card)
        return None


class CardUnsealer:
    """Decrypts on the reviewer's card through the endpoint's CMS code (one key operation)."""

    def __init__(self, card: Any) -> None:
        self.card = card
        self.key = card.key()

    def decrypt(self, der: bytes) -> bytes:
        from ..endpoint.cmsbuild import decrypt_enveloped

        return decrypt_enveloped(der, self.key)


def _line(e: QuarantineEntry) -> str:
    return (f"{e.id}  {e.received:%Y-%m-%d %H:%M}  {e.state:<9} {e.sender or '<>'} -> "
            f"{', '.join(e.recipients)}  rule={e.rule or '-'} codes={','.join(e.codes) or '-'} "
            f"size={e.size}{' encrypted' if e.encrypted else ''}")


@main.group("quarantine")
def quarantine_group() -> None:
    """Review and act on quarantined mail (every action is audited)."""


@quarantine_group.command("list")
@config_option
@_filters
@click.option("--json", "as_json", is_flag=True, help="One JSON array of entries.")
@_errors
def list_cmd(config_path: str, as_json: bool, **kw: Any) -> None:
    """List quarantined messages, oldest first."""
    session = Session(config_path)
    entries = session.store.list(where=_filter(kw))
    if as_json:
        click.echo(json.dumps([e.as_dict() for e in entries], indent=1))
    else:
        for e in entries:
            click.echo(_line(e))


def split_headers(data: bytes) -> tuple[bytes, bytes]:
    for sep in (b"\r\n\r\n", b"\n\n"):
        head, found, body = data.partition(sep)
        if found:
            return head + sep[: len(sep) // 2], body
    return data, b""


@quarantine_group.command("show")
@config_option
@click.argument("entry_id")
@click.option("--body", is_flag=True, help="Also print the body (raw, as received).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@click.option("--reviewer", default=None, help="Who looks (default: the OS user).")
@click.option("--reason", default="review", show_default=True, help="Why: kept in the audit log.")
@_key_options
@_errors
def show_cmd(config_path: str, entry_id: str, body: bool, as_json: bool, reviewer: str | None,
             reason: str, **kw: Any) -> None:
    """Print the verdict and the headers of ENTRY_ID (the body with --body)."""
    session = Session(config_path, reviewer)
    entry = session.store.get(entry_id)
    unsealer = session.unsealer(kw)
    head = rest = None
    if entry.state not in ("deleted",) and (unsealer is not None or not entry.encrypted):
        head, rest = split_headers(read_message(session.store, entry, unsealer))
        session.audit("show", entry_id, reason, body=body)
    if as_json:
        out: dict[str, Any] = entry.as_dict()
        out["headers"] = head.decode("utf-8", "replace") if head is not None else None
        if body:
            out["body"] = rest.decode("utf-8", "replace") if rest is not None else None
        click.echo(json.dumps(out, indent=1))
        return
    click.echo(_line(entry))
    click.echo(f"  client {entry.client_address or '-'}  queue id {entry.queue_id or '-'}  "
               f"direction {entry.direction}  structure {entry.structure}  sha256 {entry.sha256}")
    for v in entry.violations:
        click.echo(f"  violation {v.code}: {v.detail}")
    if entry.state == "releasing":
        click.echo(f"  release under way: token {entry.release_token}, phase {entry.release_phase}")
    if entry.release_reply:
        click.echo(f"  released: {entry.release_reply}")
    click.echo("")
    if head is None:
        click.echo("(encrypted at rest: give --key-file or --card to see the headers)"
                   if entry.encrypted and entry.state != "deleted" else "(message deleted)")
        return
    sys.stdout.flush()
    sys.stdout.buffer.write(head)
    if body and rest is not None:
        sys.stdout.buffer.write(b"\r\n" + rest)
    sys.stdout.buffer.flush()


@quarantine_group.command("release")
@config_option
@click.argument("entry_ids", nargs=-1, required=True)
@_reviewer_options
@click.option("--to", "target", default=None,
              help="host:port to re-inject to (default: [quarantine] release_smtp).")
@click.option("--resend", is_flag=True,
              help="After an unconfirmed release: send again (you checked it did not arrive).")
@click.option("--confirm-delivered", is_flag=True,
              help="After an unconfirmed release: record it delivered without sending.")
@_key_options
@_errors
def release_cmd(config_path: str, entry_ids: tuple[str, ...], reviewer: str | None, reason: str,
                target: str | None, resend: bool, confirm_delivered: bool, **kw: Any) -> None:
    """Re-inject ENTRY_IDS with their original envelope and bytes, each exactly once."""
    if resend and confirm_delivered:
        raise click.UsageError("--resend and --confirm-delivered exclude each other")
    session = Session(config_path, reviewer)
    unsealer = session.unsealer(kw)
    where = target or session.config.quarantine.release_smtp
    failed = 0
    for entry_id in entry_ids:
        try:
            result = release(session.store, entry_id, where, reviewer=session.reviewer,
                             reason=reason, unsealer=unsealer, resend=resend,
                             confirm_delivered=confirm_delivered)
        except (ReleaseUnconfirmed, ReleaseFailed, StateConflict, EntryNotFound) as exc:
            click.echo(f"sealgate: {exc}", err=True)
            failed += 1
            continue
        verb = "released to " + where if result.sent else "recorded as delivered"
        click.echo(f"{entry_id}: {verb}: {result.reply}")
    if failed:
        sys.exit(EXIT_NOT_DONE)


@quarantine_group.command("delete")
@config_option
@click.argument("entry_ids", nargs=-1, required=True)
@_reviewer_options
@_errors
def delete_cmd(config_path: str, entry_ids: tuple[str, ...], reviewer: str | None,
               reason: str) -> None:
    """Delete ENTRY_IDS: the message is gone, its index row and the audit remain."""
    session = Session(config_path, reviewer)
    for entry_id in entry_ids:
        entry = session.store.delete(entry_id)
        session.audit("delete", entry_id, reason, sha256=entry.sha256)
        click.echo(f"{entry_id}: deleted")


@quarantine_group.command("purge")
@config_option
@click.option("--older-than", default=None,
              help="Age: 90d, 12h (default: [quarantine] retention).")
@click.option("--reviewer", default=None, help="Who acts (default: the OS user).")
@click.option("--reason", default="retention", show_default=True, help="Why: kept in the audit log.")
@click.option("--dry-run", is_flag=True, help="Only count what would go.")
@_errors
def purge_cmd(config_path: str, older_than: str | None, reviewer: str | None, reason: str,
              dry_run: bool) -> None:
    """Remove entries and decision records older than the retention period.

    Entries being released are kept; the audit log is never purged.
    """
    session = Session(config_path, reviewer)
    try:
        age = parse_duration(older_than) if older_than else session.config.quarantine.retention
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from None
    cutoff = dt.datetime.now(UTC) - dt.timedelta(seconds=age)
    if dry_run:
        n = len([e for e in session.store.list(where=Filter(until=cutoff))
                 if e.state != "releasing"])
        click.echo(f"{n} entries received before {cutoff:%Y-%m-%d %H:%M} UTC would be purged")
        return
    n = session.store.purge(cutoff)
    decisions = session.store.purge_decisions(cutoff)
    session.audit("purge", None, reason, before=cutoff.isoformat(), count=n, decisions=decisions)
    click.echo(f"purged {n} entries and {decisions} decision records from before "
               f"{cutoff:%Y-%m-%d %H:%M} UTC")


@quarantine_group.command("export")
@config_option
@_filters
@click.option("--format", "fmt", type=click.Choice(["mbox", "eml"]), default="mbox",
              show_default=True, help="One mbox file, or a folder of ID.eml files.")
@click.option("-o", "--output", required=True, type=click.Path(), help="The mbox file or folder.")
@_reviewer_options
@_key_options
@_errors
def export_cmd(config_path: str, fmt: str, output: str, reviewer: str | None, reason: str,
               **kw: Any) -> None:
    """Export matching messages (decrypted, exact bytes) for legal hold."""
    session = Session(config_path, reviewer)
    where = _filter(kw)
    unsealer = session.unsealer(kw)
    entries = [e for e in session.store.list(where=where) if e.state != "deleted"]
    written = export_entries(session.store, entries, Path(output), fmt, unsealer)
    session.audit("export", None, reason, format=fmt, output=str(output),
                  ids=[e.id for e in entries])
    click.echo(f"exported {written} messages to {output}")


def export_entries(store: QuarantineStore, entries: list[QuarantineEntry], output: Path,
                   fmt: str, unsealer: Unsealer | None) -> int:
    """mbox (From_ line with the envelope sender; mboxrd quoting by Python's mailbox) or .eml files."""
    if fmt == "eml":
        output.mkdir(parents=True, exist_ok=True, mode=0o700)
        for e in entries:
            path = output / f"{e.id}.eml"
            path.touch(mode=0o600)
            path.write_bytes(read_message(store, e, unsealer))
        return len(entries)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.touch(mode=0o600)
    box = mailbox.mbox(output, create=True)
    box.lock()
    try:
        for e in entries:
            msg = mailbox.mboxMessage(read_message(store, e, unsealer))
            msg.set_from(e.sender or "MAILER-DAEMON", e.received.timetuple())
            box.add(msg)
        box.flush()
    finally:
        box.unlock()
        box.close()
    return len(entries)


@quarantine_group.command("audit")
@config_option
@click.option("--since", help="7d, 12h, or an ISO time.")
@click.option("--entry", "entry_id", help="Only actions on this entry.")
@click.option("--reviewer", help="Only actions by this reviewer.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
@_errors
def audit_cmd(config_path: str, since: str | None, entry_id: str | None, reviewer: str | None,
              as_json: bool) -> None:
    """List the audit log: who did what to which entry, when and why."""
    session = Session(config_path)
    records = session.store.audit_log(parse_when(since, "--since"), entry_id, reviewer)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in records], indent=1))
        return
    for r in records:
        detail = " ".join(f"{k}={v}" for k, v in sorted(r.detail.items()) if k != "ids")
        click.echo(f"{r.seq:>5}  {r.at:%Y-%m-%d %H:%M:%S}  {r.reviewer:<12} {r.action:<19} "
                   f"{r.entry_id or '-'}  reason={json.dumps(r.reason)} {detail}".rstrip())


@quarantine_group.command("fsck")
@config_option
@_errors
def fsck_cmd(config_path: str) -> None:
    """Remove what interrupted writes left behind (files no live writer holds)."""
    session = Session(config_path)
    removed = session.store.recover(0.0)
    click.echo(f"removed {len(removed)} leftover file(s)" + (": " + ", ".join(removed)
                                                              if removed else ""))
