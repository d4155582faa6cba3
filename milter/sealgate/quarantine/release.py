"""Release: re-inject a held message, byte for byte, with its envelope, at most once.

The state machine (held → releasing → released) is recorded in the store
*before* each point of no return, so that a crash anywhere leaves enough to
decide what a retry may do:

1. ``begin_release``: held → releasing, phase ``prepared``, with a fresh
   release token (a retry of an interrupted release gets the same token).
2. SMTP ``MAIL FROM:<original sender>`` (with ``ENVID=<token>``, RFC 3461,
   when the receiver offers DSN: it stays with the message there), one
   ``RCPT TO`` per original recipient, ``DATA``, the message bytes
   (dot-stuffed, RFC 5321 §4.5.2) — all of it undone by the receiver if the
   connection drops here (§4.1.1.4: no end of data, no transaction).
3. ``mark_data_sent`` (phase ``data-sent``) is committed **before** the final
   ``.`` goes out.
4. ``.``; on 250 ``finish_release`` (released, with the receiver's reply);
   on a 4xx/5xx reply ``cancel_release`` (back to held: the receiver said no).

The guarantee: **a message is never handed to the receiver twice by
sealgate.** A retry whose phase is ``prepared`` sends again (nothing can have
been accepted). A retry whose phase is ``data-sent`` — the crash came after
the end of data, before or after the receiver's 250 — does not send: the
receiver may hold it. It reports the message's Message-ID (Postfix's
cleanup logs ``message-id=``) and the token, and stops; the reviewer checks
the receiver's log (or asks the recipient) and then either
``--confirm-delivered`` (released, nothing sent) or ``--resend`` (phase back
to prepared, sent again). So: exactly once when nothing crashes after the end
of data; at most once, with a human decision, when something does.
"""

from __future__ import annotations

import datetime as dt
import re
import smtplib
import socket
from dataclasses import dataclass

from ..errors import StoreError
from .sealing import Unsealer, read_message
from .store import DATA_SENT, UTC, AuditRecord, QuarantineEntry, QuarantineStore, StateConflict


class ReleaseUnconfirmed(StoreError):
    """A previous attempt sent the end of data; whether the receiver accepted it is unknown."""


class ReleaseFailed(StoreError):
    """The receiver refused the message or could not be reached; the entry is held again."""


@dataclass(frozen=True)
class ReleaseResult:
    entry_id: str
    token: str
    reply: str  # the receiver's reply, or what the reviewer confirmed
    sent: bool  # False: confirmed without sending


def _checkpoint(step: str) -> None:
    """Called at each point of no return; tests kill the process here."""


def dot_stuff(data: bytes) -> bytes:
    """RFC 5321 §4.5.2: a line starting with "." gets one more; end with CRLF."""
    if data.startswith(b"."):
        data = b"." + data
    data = data.replace(b"\r\n.", b"\r\n..")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"  # SMTP cannot carry a message without a final line end
    return data


def parse_target(target: str) -> tuple[str, int]:
    host, _sep, port = target.rpartition(":")
    return host.strip("[]"), int(port)


def release(store: QuarantineStore, entry_id: str, target: str, *, reviewer: str,
            reason: str, unsealer: Unsealer | None = None, resend: bool = False,
            confirm_delivered: bool = False, timeout: float = 60,
            helo: str | None = None) -> ReleaseResult:
    """Release ``entry_id`` to ``target`` ("host:port"); every outcome goes to the audit log."""
    ticket = store.begin_release(entry_id)
    entry, token = ticket.entry, ticket.token
    audit = {"token": token, "target": target, "resumed": ticket.resumed}

    def record(action: str, **detail: object) -> None:
        store.audit(AuditRecord(dt.datetime.now(UTC), reviewer, action, entry_id, reason,
                                {**audit, **detail}))

    if ticket.phase == DATA_SENT:
        if confirm_delivered:
            store.finish_release(entry_id, token, f"confirmed delivered by {reviewer}")
            record("release-confirm")
            return ReleaseResult(entry_id, token, f"confirmed delivered by {reviewer}", False)
        if not resend:
            record("release-unconfirmed")
            raise ReleaseUnconfirmed(
                f"quarantined message {entry_id} was sent to {target} by an earlier release "
                f"(token {token}) that stopped before it recorded the receiver's answer: it may "
                f"have been delivered. Look for {_trace(store, entry, unsealer, token)} in the "
                "receiver's log, then run release again with --confirm-delivered or --resend")
        store.resend_release(entry_id, token)
        audit["resend"] = True
    elif confirm_delivered:
        raise StateConflict(f"quarantined message {entry_id} has no unconfirmed release to confirm")

    try:
        data = read_message(store, entry, unsealer)
    except StoreError:
        store.cancel_release(entry_id, token)
        raise
    host, port = parse_target(target)
    try:
        reply = _send(host, port, entry.sender, entry.recipients, data, token, timeout, helo,
                      lambda: store.mark_data_sent(entry_id, token))
    except _Refused as exc:
        store.cancel_release(entry_id, token)
        record("release-failed", reply=str(exc))
        raise ReleaseFailed(f"{target} refused quarantined message {entry_id}: {exc}; "
                            "it is held again") from None
    except _NoAnswer as exc:
        record("release-unconfirmed", error=str(exc))
        raise ReleaseUnconfirmed(
            f"quarantined message {entry_id}: the end of data went to {target} but no answer "
            f"came back ({exc}); it may have been delivered. Look for "
            f"{_trace(store, entry, unsealer, token)} in the receiver's log, then run release "
            "again with --confirm-delivered or --resend") from None
    except (OSError, smtplib.SMTPException) as exc:
        store.cancel_release(entry_id, token)
        record("release-failed", error=str(exc))
        raise ReleaseFailed(f"cannot release quarantined message {entry_id} to {target}: {exc}; "
                            "nothing was delivered, it is held again") from None
    _checkpoint("smtp-accepted")
    store.finish_release(entry_id, token, reply)
    record("release", reply=reply, sha256=entry.sha256, size=entry.size)
    return ReleaseResult(entry_id, token, reply, True)


def _trace(store: QuarantineStore, entry: QuarantineEntry, unsealer: Unsealer | None,
           token: str) -> str:
    """What identifies the message in the receiver's log: its Message-ID (Postfix's cleanup
    logs ``message-id=``) when readable, and the release token (sent as ENVID)."""
    try:
        head = read_message(store, entry, unsealer).split(b"\r\n\r\n", 1)[0]
    except StoreError:
        return f"the release token {token} (ENVID)"
    match = re.search(rb"^message-id:[ \t]*(<[^>\r\n]{1,300}>)", head, re.I | re.M)
    if not match:
        return f"the release token {token} (ENVID)"
    return f"message-id={match.group(1).decode('ascii', 'replace')} or the release token {token}"


class _Refused(Exception):
    """A definite negative SMTP reply: nothing was accepted."""


class _NoAnswer(Exception):
    """The connection failed after the end of data was sent."""


def _send(host: str, port: int, sender: str, recipients: tuple[str, ...], data: bytes,
          token: str, timeout: float, helo: str | None, before_dot: object) -> str:
    """One SMTP transaction, split so that ``before_dot`` runs right before the final "."."""
    smtp = smtplib.SMTP(timeout=timeout)
    in_data = False
    try:
        code, msg = smtp.connect(host, port)
        if code != 220:
            raise _Refused(f"{code} {msg.decode(errors='replace')}")
        smtp.ehlo(helo or socket.getfqdn())
        options = [f"ENVID={token}"] if smtp.has_extn("dsn") else []
        if smtp.has_extn("size"):
            options.append(f"SIZE={len(data)}")
        code, msg = smtp.mail(sender, options)
        if code != 250:
            raise _Refused(f"MAIL FROM:<{sender}>: {code} {msg.decode(errors='replace')}")
        for rcpt in recipients:
            code, msg = smtp.rcpt(rcpt)
            if code not in (250, 251):
                smtp.rset()
                raise _Refused(f"RCPT TO:<{rcpt}>: {code} {msg.decode(errors='replace')}")
        code, msg = smtp.docmd("DATA")
        if code != 354:
            raise _Refused(f"DATA: {code} {msg.decode(errors='replace')}")
        in_data = True  # from here, only a dropped connection aborts (RFC 5321 §4.1.1.4)
        smtp.send(dot_stuff(data))
        before_dot()  # type: ignore[operator]
        _checkpoint("data-sent")
        try:
            smtp.send(b".\r\n")
            code, msg = smtp.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            raise _NoAnswer(str(exc) or type(exc).__name__) from None
        in_data = False
        text = f"{code} {msg.decode(errors='replace')}"
        if code != 250:
            raise _Refused(text)
        return text
    finally:
        if in_data:  # QUIT would be taken as message text: drop the connection instead
            smtp.close()
        else:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()
