"""Quarantine stores: where held messages are kept until reviewed (SPEC §4, §5).

``open_store`` picks the backend named in ``[quarantine]``; everything else
talks to the :class:`QuarantineStore` interface.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import StoreError
from .sealing import KeyFileUnsealer, Sealer, Unsealer, read_message
from .sqlite import SqliteQuarantine
from .store import (
    DELETED,
    HELD,
    RELEASED,
    RELEASING,
    AuditRecord,
    Decision,
    EntryNotFound,
    Filter,
    QuarantineEntry,
    QuarantineStore,
    StateConflict,
)

__all__ = ["DELETED", "HELD", "RELEASED", "RELEASING", "AuditRecord", "Decision", "EntryNotFound",
           "Filter", "KeyFileUnsealer", "QuarantineEntry", "QuarantineStore", "Sealer",
           "SqliteQuarantine", "StateConflict", "StoreError", "Unsealer", "open_store",
           "read_message"]


def open_store(settings: Any, max_size: int | None = None) -> QuarantineStore:
    """The store for a config's ``[quarantine]`` section (``backend``, ``path``, ``url``, ``encrypt_to``).

    ``max_size`` bounds what an encrypting (or PostgreSQL) store holds in memory
    per message: pass ``milter.max_message_size``.
    """
    backend = getattr(settings, "backend", "sqlite")
    encrypt_to = tuple(getattr(settings, "encrypt_to", ()) or ())
    sealer = Sealer.from_files(encrypt_to) if encrypt_to else None
    if backend == "sqlite":
        return SqliteQuarantine(Path(settings.path), sealer=sealer, max_size=max_size)
    if backend == "postgresql":
        from .postgresql import PostgresQuarantine  # psycopg only when used

        url = getattr(settings, "url", None)
        if not url:
            raise StoreError("quarantine.url is required with backend \"postgresql\"")
        return PostgresQuarantine(url, sealer=sealer, max_size=max_size)
    raise StoreError(f"quarantine backend {backend!r} is not known (use \"sqlite\" or \"postgresql\")")
