"""The quarantine store interface: keep a held message durably, find it again.

A store keeps the message bytes exactly as received and one index entry per
message. ``put`` returns only once both are on stable storage; a crash in
between may leave an orphan file, never an entry without its message.
Backends: ``sqlite`` (embedded); PostgreSQL, release and encryption at rest
come later and fit behind the same few methods.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import IO, Protocol

from ..errors import StoreError
from ..model import Envelope, Finding, Verdict

HELD = "held"

# Ids are made by the store; anything else is refused before it reaches a path.
ID_PATTERN = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{12}\Z")


class EntryNotFound(StoreError):
    """No quarantined message has this id."""


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
    size: int
    sha256: str
    state: str = HELD

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id, "received": self.received.isoformat(), "sender": self.sender,
            "recipients": list(self.recipients), "from": self.from_header,
            "client_address": self.client_address, "queue_id": self.queue_id,
            "rule": self.rule, "direction": self.direction, "structure": self.structure,
            "action": self.action, "codes": list(self.codes),
            "violations": [v.as_dict() for v in self.violations],
            "size": self.size, "sha256": self.sha256, "state": self.state,
        }


class QuarantineStore(Protocol):
    """What the milter and ``sealgate quarantine`` need from a backend.

    Every failure raises :class:`StoreError` naming what and where.
    """

    def put(self, source: IO[bytes], envelope: Envelope, verdict: Verdict,
            received: dt.datetime | None = None) -> str:
        """Store the message read from ``source`` (from where it stands); return its id."""
        ...

    def get(self, entry_id: str) -> QuarantineEntry:
        """The entry; :class:`EntryNotFound` if there is none."""
        ...

    def list(self, state: str | None = None) -> list[QuarantineEntry]:
        """Entries, oldest first; only those in ``state`` when given."""
        ...

    def open_message(self, entry_id: str) -> IO[bytes]:
        """The stored bytes, exactly as received; the caller closes it."""
        ...

    def count(self, state: str | None = None) -> int:
        ...

    def close(self) -> None:
        ...


def check_id(entry_id: str) -> str:
    if not isinstance(entry_id, str) or not ID_PATTERN.match(entry_id):
        raise EntryNotFound(f"{entry_id!r} is not a quarantine id (like 20250101T120000Z-0123456789ab)")
    return entry_id
