"""Quarantine stores: where held messages are kept until reviewed (SPEC §4, §5).

``open_store`` picks the backend named in ``[quarantine]``; everything else
talks to the :class:`QuarantineStore` interface.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import StoreError
from .sqlite import SqliteQuarantine
from .store import HELD, EntryNotFound, QuarantineEntry, QuarantineStore

__all__ = ["HELD", "EntryNotFound", "QuarantineEntry", "QuarantineStore", "SqliteQuarantine",
           "StoreError", "open_store"]


def open_store(settings: Any) -> QuarantineStore:
    """The store for a config's ``[quarantine]`` section (``backend``, ``path``)."""
    backend = getattr(settings, "backend", "sqlite")
    if backend == "sqlite":
        return SqliteQuarantine(Path(settings.path))
    raise StoreError(f"quarantine backend {backend!r} is not available in this version "
                     "(use \"sqlite\")")
