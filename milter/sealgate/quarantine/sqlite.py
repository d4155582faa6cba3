"""The embedded quarantine store: message files in a folder, an SQLite index.

Layout under the configured folder::

    index.sqlite3           the index (WAL, synchronous=FULL)
    messages/<id>.eml       the bytes exactly as received, mode 0600

Order of a ``put`` (the durability argument): write a temporary file in
``messages/``, fsync it, rename it to ``<id>.eml``, fsync the folder, and only
then commit the index row. A crash before the commit leaves an orphan file
that no listing shows; a committed row always has its complete file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from ..codes import Code
from ..errors import StoreError
from ..model import Envelope, Finding, Verdict
from .store import HELD, EntryNotFound, QuarantineEntry, check_id

UTC = dt.UTC
SCHEMA_VERSION = 1
CHUNK = 64 * 1024
INDEX_NAME = "index.sqlite3"
MESSAGES_DIR = "messages"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    received TEXT NOT NULL,          -- ISO 8601, UTC
    sender TEXT NOT NULL,
    recipients TEXT NOT NULL,        -- JSON array
    from_header TEXT,
    client_address TEXT NOT NULL,
    queue_id TEXT NOT NULL,
    rule TEXT,
    direction TEXT NOT NULL,
    structure TEXT NOT NULL,
    action TEXT NOT NULL,
    codes TEXT NOT NULL,             -- JSON array
    violations TEXT NOT NULL,        -- JSON array of {code, detail}
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_received ON messages (received);
CREATE INDEX IF NOT EXISTS messages_state ON messages (state);
"""

_COLUMNS = ("id, received, sender, recipients, from_header, client_address, queue_id, rule, "
            "direction, structure, action, codes, violations, size, sha256, state")
# Built once from constants (no input reaches the SQL text; values are bound).
_INSERT = f"INSERT INTO messages ({_COLUMNS}) VALUES ({', '.join('?' * 16)})"  # noqa: S608
_SELECT = f"SELECT {_COLUMNS} FROM messages"  # noqa: S608


def new_id(received: dt.datetime) -> str:
    """Sortable by time, unique by 48 random bits, safe as a file name."""
    return f"{received.astimezone(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(6)}"


def _fsync_dir(path: Path) -> None:
    # POSIX: a rename is durable only once the folder holding it is synced.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SqliteQuarantine:
    """Thread-safe: files are written concurrently, index writes are serialised."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.messages = self.path / MESSAGES_DIR
        self.index = self.path / INDEX_NAME
        self._lock = threading.Lock()
        try:
            self.messages.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise StoreError(f"cannot create the quarantine folder {self.messages}: "
                             f"{exc.strerror or exc}") from exc
        try:
            self._db = sqlite3.connect(self.index, timeout=30, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"the quarantine index {self.index} has schema version "
                                 f"{version}; this sealgate knows up to {SCHEMA_VERSION}: upgrade")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the quarantine index {self.index}: {exc}") from exc

    # ------------------------------------------------------------ writing

    def put(self, source: IO[bytes], envelope: Envelope, verdict: Verdict,
            received: dt.datetime | None = None) -> str:
        received = (received or dt.datetime.now(UTC)).astimezone(UTC)
        entry_id = new_id(received)
        final = self.messages / f"{entry_id}.eml"
        size, digest = self._write_file(source, final)
        row = (
            entry_id, received.isoformat(), envelope.sender, json.dumps(list(envelope.recipients)),
            envelope.from_header, envelope.client_address, envelope.queue_id, verdict.rule,
            str(verdict.direction), verdict.structure, str(verdict.action),
            json.dumps(verdict.codes), json.dumps([f.as_dict() for f in verdict.violations]),
            size, digest, HELD,
        )
        try:
            with self._lock:
                self._db.execute(_INSERT, row)
        except sqlite3.Error as exc:
            # Without its row the file is an orphan; remove it if we still can.
            with contextlib.suppress(OSError):
                final.unlink()
            raise StoreError(f"cannot record quarantined message {entry_id} in {self.index}: "
                             f"{exc}") from exc
        return entry_id

    def _write_file(self, source: IO[bytes], final: Path) -> tuple[int, str]:
        tmp = final.with_name(f".tmp-{final.name}")
        digest = hashlib.sha256()
        size = 0
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot create a message file in {self.messages}: "
                             f"{exc.strerror or exc}") from exc
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := source.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.rename(tmp, final)
            _fsync_dir(self.messages)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StoreError(f"cannot write the message file {final}: "
                             f"{exc.strerror or exc}") from exc
        return size, digest.hexdigest()

    # ------------------------------------------------------------ reading

    def _query(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        try:
            with self._lock:
                return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the quarantine index {self.index}: {exc}") from exc

    def get(self, entry_id: str) -> QuarantineEntry:
        check_id(entry_id)
        rows = self._query(_SELECT + " WHERE id = ?", (entry_id,))
        if not rows:
            raise EntryNotFound(f"no quarantined message {entry_id} in {self.path}")
        return _entry(rows[0])

    def list(self, state: str | None = None) -> list[QuarantineEntry]:
        if state is None:
            rows = self._query(_SELECT + " ORDER BY received, id")
        else:
            rows = self._query(_SELECT + " WHERE state = ? ORDER BY received, id", (state,))
        return [_entry(r) for r in rows]

    def __iter__(self) -> Iterator[QuarantineEntry]:
        return iter(self.list())

    def count(self, state: str | None = None) -> int:
        if state is None:
            rows = self._query("SELECT count(*) FROM messages")
        else:
            rows = self._query("SELECT count(*) FROM messages WHERE state = ?", (state,))
        return int(rows[0][0])  # type: ignore[call-overload]

    def open_message(self, entry_id: str) -> IO[bytes]:
        self.get(entry_id)  # only indexed messages exist for readers
        path = self.messages / f"{entry_id}.eml"
        try:
            return open(path, "rb")  # noqa: SIM115 - the caller closes it
        except OSError as exc:
            raise StoreError(f"quarantined message {entry_id} is indexed but its file {path} "
                             f"cannot be read: {exc.strerror or exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _entry(row: tuple[object, ...]) -> QuarantineEntry:
    (entry_id, received, sender, recipients, from_header, client_address, queue_id, rule,
     direction, structure, action, codes, violations, size, sha256, state) = row
    return QuarantineEntry(
        id=str(entry_id), received=dt.datetime.fromisoformat(str(received)),
        sender=str(sender), recipients=tuple(json.loads(str(recipients))),
        from_header=None if from_header is None else str(from_header),
        client_address=str(client_address), queue_id=str(queue_id),
        rule=None if rule is None else str(rule), direction=str(direction),
        structure=str(structure), action=str(action), codes=tuple(json.loads(str(codes))),
        violations=tuple(Finding(_code(v["code"]), v["detail"])
                         for v in json.loads(str(violations))),
        size=int(size), sha256=str(sha256), state=str(state),  # type: ignore[call-overload]
    )


def _code(value: str) -> Code:
    try:
        return Code(value)
    except ValueError:  # a code from a newer sealgate: keep the string
        return value  # type: ignore[return-value]
