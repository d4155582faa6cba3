"""Telling a sender that their message is held, without repeating any of it.

When ``[quarantine] notify_sender`` allows it, the milter sends the envelope
sender a short bounce-like notice after the message is stored: which message
(recipients, time, queue id, quarantine id) and why (rule, and the meaning of
each violation code from SPEC §3). It carries **no content** of the held
message — no subject, no headers, no body, not even the violation details
(they may quote header values) — so a notice can never leak what the policy
held back.

Like a bounce it goes out with the null reverse-path (RFC 5321 §4.5.5) and
``Auto-Submitted: auto-replied`` (RFC 3834 §5), so that it can start no mail
loop; null senders and ``MAILER-DAEMON``/``postmaster`` senders are never
notified. It is submitted to ``release_smtp`` (an smtpd without milters) in
a background thread: a slow or failing notice never delays or fails the
message it is about.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import smtplib
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from .model import Envelope, Verdict

log = logging.getLogger("sealgate.notify")

NONE, INTERNAL, ALL = "none", "internal", "all"

# What each code means for the person who sent the message (SPEC §3, in plain words).
MEANINGS = {
    "unsigned": "the message was not digitally signed",
    "unencrypted": "the message was not encrypted",
    "signature-hidden": "the signature was inside the encryption, where it cannot be checked",
    "bad-signature": "the digital signature did not verify",
    "untrusted-signer": "the signing certificate is not trusted for S/MIME",
    "expired-signer": "the signing certificate has expired",
    "revoked-signer": "the signing certificate has been revoked",
    "signer-not-sender": "the signing certificate does not name the From: address",
    "signer-not-in-directory": "the signing certificate is not the one published in the directory",
    "recipient-unknown": "a recipient has no certificate in the directory",
    "recipient-not-covered": "the message was not encrypted to every recipient's current certificate",
    "recipient-revoked": "the message was encrypted to a revoked certificate",
    "weak-algorithm": "the message uses an algorithm that is no longer considered safe",
    "malformed": "the message structure could not be read",
    "too-complex": "the message is too large or too deeply nested to check",
    "directory-unavailable": "the directory could not be reached",
    "crl-unavailable": "certificate revocation status could not be checked",
}

_NO_REPLY_LOCALS = {"mailer-daemon", "postmaster", "noreply", "no-reply"}


@dataclass(frozen=True)
class NotifySettings:
    mode: str  # none | internal | all
    notify_from: str
    target: str  # host:port
    internal_domains: tuple[str, ...]
    retention_days: int

    @classmethod
    def from_config(cls, config: Any) -> NotifySettings:
        q = getattr(config, "quarantine", None)
        mode = str(getattr(q, "notify_sender", NONE) or NONE)
        notify_from = str(getattr(q, "notify_from", "") or "")
        if not notify_from:
            notify_from = f"postmaster@{getattr(config, 'authserv_id', 'localhost')}"
        return cls(mode=mode, notify_from=notify_from,
                   target=str(getattr(q, "release_smtp", "127.0.0.1:10026")),
                   internal_domains=tuple(getattr(config, "internal_domains", ()) or ()),
                   retention_days=int(getattr(q, "retention", 90 * 86400)) // 86400)


def should_notify(settings: NotifySettings, sender: str) -> bool:
    """Whether this envelope sender gets a notice (never the null sender: RFC 3834 §2)."""
    if settings.mode == NONE or not sender or "@" not in sender:
        return False
    local, _, domain = sender.rpartition("@")
    if local.lower() in _NO_REPLY_LOCALS or local.lower().startswith("owner-"):
        return False
    if settings.mode == INTERNAL:
        return domain.lower() in settings.internal_domains
    return settings.mode == ALL


def held_notice(entry_id: str, envelope: Envelope, verdict: Verdict, settings: NotifySettings,
                now: dt.datetime | None = None) -> bytes:
    """The notice as RFC 5322 bytes (CRLF). Built from the envelope and verdict only."""
    now = now or dt.datetime.now(dt.UTC)
    codes = list(verdict.codes)
    reasons = "\n".join(f"  - {MEANINGS.get(c, c)} ({c})" for c in codes) or "  - (no code)"
    msg = EmailMessage()
    msg["From"] = f"Mail Delivery System <{settings.notify_from}>"
    msg["To"] = envelope.sender
    msg["Subject"] = f"Your message is held for review (quarantine {entry_id})"
    msg["Date"] = email.utils.format_datetime(now)
    msg["Message-ID"] = email.utils.make_msgid("sealgate-notice",
                                               settings.notify_from.rpartition("@")[2] or None)
    msg["Auto-Submitted"] = "auto-replied"  # RFC 3834 §5
    msg["X-Sealgate-Quarantine-Id"] = entry_id
    msg.set_content(
        "This is the mail gateway. Your message was not delivered yet: it is held for\n"
        "review by the compliance team, because the mail policy requires it.\n\n"
        f"  Recipients:     {', '.join(_plain(envelope.recipients))}\n"
        f"  Received:       {now:%Y-%m-%d %H:%M} UTC\n"
        f"  Queue id:       {envelope.queue_id or '-'}\n"
        f"  Quarantine id:  {entry_id}\n"
        f"  Policy rule:    {verdict.rule or '-'}\n\n"
        f"Why:\n{reasons}\n\n"
        "A reviewer will either release it to the recipients or remove it; removed or\n"
        f"unreviewed messages are deleted after {settings.retention_days} days. Quote the quarantine\n"
        "id above if you contact the helpdesk. If you meant to send it protected, please\n"
        "send it again signed and encrypted.\n\n"
        "This notice contains no part of your message. Please do not reply to it.\n")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def _plain(addresses: Iterable[str]) -> list[str]:
    return [a.replace("\r", "").replace("\n", "") for a in addresses]


def send_notice(message: bytes, recipient: str, target: str, timeout: float = 30) -> str:
    """Submit with the null reverse-path; the receiver's reply to the end of data."""
    host, _sep, port = target.rpartition(":")
    with smtplib.SMTP(host.strip("[]"), int(port), timeout=timeout) as smtp:
        smtp.ehlo_or_helo_if_needed()
        refused = smtp.sendmail("<>", [recipient], message)
        if refused:
            raise smtplib.SMTPRecipientsRefused(refused)
        return "250"


def notify_held(config: Any, entry_id: str, envelope: Envelope, verdict: Verdict,
                on_error: Any = None) -> threading.Thread | None:
    """Send the notice in the background if the settings allow it; the thread, or None."""
    settings = NotifySettings.from_config(config)
    if not should_notify(settings, envelope.sender):
        return None
    message = held_notice(entry_id, envelope, verdict, settings)

    def work() -> None:
        try:
            send_notice(message, envelope.sender, settings.target)
            log.info("event=notice-sent quarantine_id=%s to=%s", entry_id, envelope.sender)
        except (OSError, smtplib.SMTPException) as exc:
            log.warning("event=notice-failed quarantine_id=%s to=%s target=%s error=%s",
                        entry_id, envelope.sender, settings.target, str(exc).replace(" ", "_"))
            if on_error is not None:
                on_error()

    thread = threading.Thread(target=work, name=f"notice-{entry_id}", daemon=True)
    thread.start()
    return thread
