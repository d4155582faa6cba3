"""The quarantine store interface: keep a held message durably, find it, release it once.

A store keeps the message bytes exactly as received (or CMS-encrypted to the
reviewers, :mod:`.sealing`) and one index entry per message. ``put`` returns
only once both are on stable storage; a crash in between leaves at most an
orphan that no reader sees and that :meth:`QuarantineStore.recover` removes,
never an entry without its message.

Besides held messages a store keeps two append-only records:

* **decisions**: one line per verdict the milter gave (time, direction,
  action, rule, codes, sender, recipient domains; never content), read by
  ``sealgate report``;
* **audit**: one line per reviewer action (who, when, what, why), listable
  with ``sealgate quarantine audit`` and never updated or deleted.

Entry states (the release state machine, see :mod:`.release`)::

    held --begin_release--> releasing --finish_release--> released
      ^                        |
      +----cancel_release------+       held/released --delete--> deleted
"""

from __future__ import annotations

import builtins
import datetime as dt
import re
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import IO, Protocol

from ..errors import StoreError
from ..model import Envelope, Finding, Verdict

UTC = dt.UTC

HELD = "held"
RELEASING = "releasing"
RELEASED = "released"
DELETED = "deleted"
STATES = (HELD, RELEASING, RELEASED, DELETED)

# Release phases while RELEASING (what a retry may do, see release.py).
PREPARED = "prepared"  # nothing sent past the SMTP DATA command: safe to send again
DATA_SENT = "data-sent"  # the final "." went out: the receiver may have accepted it

# Ids are made by the store; anything else is refused before it reaches a path.
ID_PATTERN = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{12}\Z")


class EntryNotFound(StoreError):
    """No quarantined message has this id."""


class StateConflict(StoreError):
    """The entry is not in a state that allows this (released twice, deleted, ...)."""


def new_id(received: dt.datetime) -> str:
    """Sortable by time, unique by 48 random bits, safe as a file name."""
    return f"{received.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(6)}"


def timestamp(moment: dt.datetime) -> str:
    """One fixed ISO 8601 spelling (UTC, microseconds) so that text order is time order."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class QuarantineEntry:
    """One held message, as the index describes it."""

    id: str
    received: dt.datetime  # UTC
    sender: str
    recipients: tuple[str, ...]
    from_header: str | None
    client_address: str
    queue_id: str
    rule: str | None
    direction: str
    structure: str
    action: str
    codes: tuple[str, ...]
    violations: tuple[Finding, ...]
    size: int  # of the message as received (before encryption at rest)
    sha256: str  # of the message as received
    state: str = HELD
    encrypted: bool = False  # stored as CMS enveloped-data to the reviewers
    release_token: str | None = None
    release_phase: str | None = None
    state_changed: dt.datetime | None = None
    release_reply: str | None = None  # the receiver's reply to the released message

    @classmethod
    def held(cls, entry_id: str, received: dt.datetime, envelope: Envelope, verdict: Verdict,
             size: int, sha256: str, encrypted: bool) -> QuarantineEntry:
        """The entry a backend writes for a message it has just stored."""
        return cls(
            id=entry_id, received=received, sender=envelope.sender,
            recipients=tuple(envelope.recipients), from_header=envelope.from_header,
            client_address=envelope.client_address, queue_id=envelope.queue_id,
            rule=verdict.rule, direction=str(verdict.direction), structure=verdict.structure,
            action=str(verdict.action), codes=tuple(verdict.codes),
            violations=tuple(verdict.violations), size=size, sha256=sha256, state=HELD,
            encrypted=encrypted)

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id, "received": self.received.isoformat(), "sender": self.sender,
            "recipients": list(self.recipients), "from": self.from_header,
            "client_address": self.client_address, "queue_id": self.queue_id,
            "rule": self.rule, "direction": self.direction, "structure": self.structure,
            "action": self.action, "codes": list(self.codes),
            "violations": [v.as_dict() for v in self.violations],
            "size": self.size, "sha256": self.sha256, "state": self.state,
            "encrypted": self.encrypted, "release_token": self.release_token,
            "release_phase": self.release_phase,
            "state_changed": self.state_changed.isoformat() if self.state_changed else None,
            "release_reply": self.release_reply,
        }


@dataclass(frozen=True)
class Filter:
    """What ``list`` selects; every given field must match (address matches ignore case)."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    sender: str | None = None  # exact address, or "*@example.com" / "*example*" globs
    recipient: str | None = None
    code: str | None = None
    rule: str | None = None
    state: str | None = None

    def matches(self, entry: QuarantineEntry) -> bool:
        def addr(pattern: str, value: str) -> bool:
            return fnmatchcase(value.lower(), pattern.lower())

        return ((self.since is None or entry.received >= self.since)
                and (self.until is None or entry.received < self.until)
                and (self.sender is None or addr(self.sender, entry.sender))
                and (self.recipient is None
                     or any(addr(self.recipient, r) for r in entry.recipients))
                and (self.code is None or self.code in entry.codes)
                and (self.rule is None or entry.rule == self.rule)
                and (self.state is None or entry.state == self.state))


@dataclass(frozen=True)
class Decision:
    """One verdict as the report sees it: no content, no local parts of recipients."""

    at: dt.datetime
    direction: str
    action: str
    rule: str | None
    codes: tuple[str, ...]
    sender: str
    recipient_domains: tuple[str, ...]
    quarantine_id: str | None = None

    @classmethod
    def of(cls, verdict: Verdict, envelope: Envelope, *, action: str | None = None,
           at: dt.datetime | None = None, quarantine_id: str | None = None) -> Decision:
        return cls.made(at=at or dt.datetime.now(UTC), direction=str(verdict.direction),
                        action=str(action or verdict.action), rule=verdict.rule,
                        codes=tuple(verdict.codes), sender=envelope.sender,
                        recipients=envelope.recipients, quarantine_id=quarantine_id)

    @classmethod
    def made(cls, *, at: dt.datetime, direction: str, action: str, rule: str | None,
             codes: tuple[str, ...], sender: str, recipients: Sequence[str],
             quarantine_id: str | None) -> Decision:
        """The line of a verdict given by its parts (what the milter keeps until it is written)."""
        domains = sorted({r.rpartition("@")[2].lower() for r in recipients if r})
        return cls(at=at.astimezone(UTC), direction=direction, action=action, rule=rule,
                   codes=codes, sender=sender.lower(), recipient_domains=tuple(domains),
                   quarantine_id=quarantine_id or None)

    def as_dict(self) -> dict[str, object]:
        return {"at": self.at.isoformat(), "direction": self.direction, "action": self.action,
                "rule": self.rule, "codes": list(self.codes), "sender": self.sender,
                "recipient_domains": list(self.recipient_domains),
                "quarantine_id": self.quarantine_id}


@dataclass(frozen=True)
class AuditRecord:
    """One reviewer action: who, when, what (on which entry), why, and what came of it."""

    at: dt.datetime
    reviewer: str
    action: str  # show, release, release-confirm, delete, purge, export
    entry_id: str | None
    reason: str
    detail: dict[str, object] = field(default_factory=dict)
    seq: int | None = None  # assigned by the store

    def as_dict(self) -> dict[str, object]:
        return {"seq": self.seq, "at": self.at.isoformat(), "reviewer": self.reviewer,
                "action": self.action, "entry_id": self.entry_id, "reason": self.reason,
                "detail": self.detail}


@dataclass(frozen=True)
class ReleaseTicket:
    """What ``begin_release`` hands the releaser: the token and how far a previous try got."""

    entry: QuarantineEntry
    token: str
    phase: str  # PREPARED or DATA_SENT
    resumed: bool  # True: an earlier attempt with this token was interrupted


class QuarantineStore(Protocol):
    """What the milter, ``sealgate quarantine`` and ``sealgate report`` need from a backend.

    Every failure raises :class:`StoreError` naming what and where.
    """

    def put(self, source: IO[bytes], envelope: Envelope, verdict: Verdict,
            received: dt.datetime | None = None) -> str:
        """Store the message read from ``source`` (from where it stands); return its id."""
        ...

    def get(self, entry_id: str) -> QuarantineEntry:
        """The entry; :class:`EntryNotFound` if there is none."""
        ...

    def list(self, state: str | None = None,
             where: Filter | None = None) -> builtins.list[QuarantineEntry]:
        """Entries, oldest first; only those in ``state`` / matching ``where`` when given."""
        ...

    def open_message(self, entry_id: str) -> IO[bytes]:
        """The stored bytes (CMS DER when ``entry.encrypted``); the caller closes it."""
        ...

    def count(self, state: str | None = None) -> int:
        ...

    # -- release state machine (release.py drives it)
    def begin_release(self, entry_id: str) -> ReleaseTicket:
        ...

    def mark_data_sent(self, entry_id: str, token: str) -> None:
        ...

    def finish_release(self, entry_id: str, token: str, reply: str) -> None:
        ...

    def cancel_release(self, entry_id: str, token: str) -> None:
        ...

    def resend_release(self, entry_id: str, token: str) -> None:
        ...

    # -- retention
    def delete(self, entry_id: str) -> QuarantineEntry:
        """Remove the message bytes; the index row stays, state ``deleted`` (for the audit)."""
        ...

    def purge(self, before: dt.datetime) -> int:
        """Remove entries received before ``before`` (bytes and row); return how many."""
        ...

    def purge_decisions(self, before: dt.datetime) -> int:
        """Remove decision records older than ``before``; return how many."""
        ...

    def recover(self, grace: float = 0.0) -> builtins.list[str]:
        """Remove what interrupted writers left behind; return what was removed."""
        ...

    # -- records
    def record_decision(self, decision: Decision) -> None:
        ...

    def record_decisions(self, decisions: Sequence[Decision]) -> None:
        """Several report lines in one transaction (the milter's background writer)."""
        ...

    def decisions(self, since: dt.datetime | None = None,
                  until: dt.datetime | None = None) -> Iterator[Decision]:
        ...

    def audit(self, record: AuditRecord) -> AuditRecord:
        ...

    def audit_log(self, since: dt.datetime | None = None, entry_id: str | None = None,
                  reviewer: str | None = None) -> builtins.list[AuditRecord]:
        ...

    def close(self) -> None:
        ...


def check_id(entry_id: str) -> str:
    if not isinstance(entry_id, str) or not ID_PATTERN.match(entry_id):
        raise EntryNotFound(f"{entry_id!r} is not a quarantine id (like 20250101T120000Z-0123456789ab)")
    return entry_id
