"""The embedded quarantine store: message files in a folder, an SQLite index.

Layout under the configured folder::

    index.sqlite3           the index, decisions and audit (WAL, synchronous=FULL)
    messages/<id>.eml       the bytes exactly as received, or CMS DER when
                            encrypt_to is set; mode 0600

Order of a ``put`` (the durability argument): create ``messages/.tmp-<id>.eml``
and take an exclusive ``flock`` on it, write, fsync, rename it to
``<id>.eml``, fsync the folder, commit the index row, and only then close the
file (dropping the lock). A crash before the commit leaves an orphan file
that no listing shows; a committed row always has its complete file.
:meth:`SqliteQuarantine.recover` (run on every open) removes orphans whose
lock it can take: a file still locked belongs to a writer that is alive
(in this or another process), so recovery never races a ``put``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import io
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from ..errors import StoreError
from ..model import Envelope, Verdict
from .sealing import Sealer, read_bounded
from .sqlbase import INSERT, V2_COLUMNS, SqlStore, decision_inserts, row_values
from .store import UTC, Decision, EntryNotFound, QuarantineEntry, check_id, new_id

SCHEMA_VERSION = 2
CHUNK = 64 * 1024
INDEX_NAME = "index.sqlite3"
MESSAGES_DIR = "messages"
RECOVER_GRACE = 60.0  # seconds; see recover()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    received TEXT NOT NULL,          -- ISO 8601, UTC, microseconds
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
CREATE TABLE IF NOT EXISTS decisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL, direction TEXT NOT NULL, action TEXT NOT NULL, rule TEXT,
    codes TEXT NOT NULL, sender TEXT NOT NULL, recipient_domains TEXT NOT NULL,
    quarantine_id TEXT
);
CREATE INDEX IF NOT EXISTS decisions_at ON decisions (at);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL, reviewer TEXT NOT NULL, action TEXT NOT NULL, entry_id TEXT,
    reason TEXT NOT NULL, detail TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""


def _fsync_dir(path: Path) -> None:
    # POSIX: a rename is durable only once the folder holding it is synced.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SqliteQuarantine(SqlStore):
    """Thread-safe: files are written concurrently, index writes are serialised."""

    def __init__(self, path: Path | str, sealer: Sealer | None = None,
                 max_size: int | None = None, recover: bool = True) -> None:
        self.path = Path(path)
        self.where = str(self.path)
        self.messages = self.path / MESSAGES_DIR
        self.index = self.path / INDEX_NAME
        self.sealer = sealer
        self.max_size = max_size
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
            self._migrate()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the quarantine index {self.index}: {exc}") from exc
        if recover:
            # The grace spares a file another process created an instant ago
            # and has not locked yet (open and flock are two calls).
            self.recover(grace=RECOVER_GRACE)

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(f"the quarantine index {self.index} has schema version "
                             f"{version}; this sealgate knows up to {SCHEMA_VERSION}: upgrade")
        if version == SCHEMA_VERSION:
            return
        self._db.executescript(_SCHEMA)  # idempotent (IF NOT EXISTS)
        have = {r[1] for r in self._db.execute("PRAGMA table_info(messages)")}
        self._db.execute("BEGIN IMMEDIATE")
        for name, decl in V2_COLUMNS:
            if name not in have:
                self._db.execute(f"ALTER TABLE messages ADD COLUMN {name} {decl}")
        self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self._db.execute("COMMIT")

    def record_decisions(self, decisions: Sequence[Decision]) -> None:
        """Report lines, committed without an fsync of their own (WAL, synchronous=NORMAL).

        The milter writes one per message it judges: a full sync each would
        cost every accepted message a disk flush. A power cut may lose the last
        few lines, never a quarantined message (those stay synchronous=FULL); the
        PostgreSQL backend likewise commits decisions with synchronous_commit off.
        """
        try:
            with self._lock:
                self._db.execute("PRAGMA synchronous=NORMAL")
                try:
                    self._db.execute("BEGIN IMMEDIATE")
                    try:
                        for sql, values in decision_inserts(decisions):
                            self._db.execute(sql, values)
                    except BaseException:
                        self._db.execute("ROLLBACK")
                        raise
                    self._db.execute("COMMIT")
                finally:
                    self._db.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as exc:
            raise StoreError(f"quarantine index {self.index}: {exc}") from exc

    # ------------------------------------------------------------ SqlStore hooks

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[list[tuple[Any, ...]], int]:
        try:
            with self._lock:
                cur = self._db.execute(sql, args)
                return cur.fetchall(), cur.rowcount
        except sqlite3.Error as exc:
            raise StoreError(f"quarantine index {self.index}: {exc}") from exc

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self._lock:
            def run(sql: str, args: tuple[Any, ...]) -> tuple[list[tuple[Any, ...]], int]:
                cur = self._db.execute(sql, args)
                return cur.fetchall(), cur.rowcount
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield run
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"quarantine index {self.index}: {exc}") from exc

    def _drop_message(self, entry_id: str) -> None:
        path = self.messages / f"{check_id(entry_id)}.eml"
        try:
            path.unlink(missing_ok=True)
            _fsync_dir(self.messages)
        except OSError as exc:
            raise StoreError(f"cannot remove {path}: {exc.strerror or exc}") from exc

    # ------------------------------------------------------------ writing

    def put(self, source: IO[bytes], envelope: Envelope, verdict: Verdict,
            received: dt.datetime | None = None) -> str:
        received = (received or dt.datetime.now(UTC)).astimezone(UTC)
        entry_id = new_id(received)
        final = self.messages / f"{entry_id}.eml"
        if self.sealer is not None:
            # Clear bytes only in memory (bounded), never in a file.
            clear = read_bounded(source, self.max_size)
            size, digest = len(clear), hashlib.sha256(clear).hexdigest()
            source = io.BytesIO(self.sealer.seal(clear))
            del clear
        fd, written, written_digest = self._write_file(source, final)
        if self.sealer is None:
            size, digest = written, written_digest
        entry = QuarantineEntry.held(entry_id, received, envelope, verdict, size, digest,
                                     encrypted=self.sealer is not None)
        try:
            try:
                self._run(INSERT, row_values(entry))
            except StoreError as exc:
                # Without its row the file is an orphan; remove it if we still can.
                with contextlib.suppress(OSError):
                    final.unlink()
                raise StoreError(f"cannot record quarantined message {entry_id} in {self.index}: "
                                 f"{exc}") from exc
            self._checkpoint("row-committed")
        finally:
            os.close(fd)  # drops the flock: the entry is complete (or gone)
        return entry_id

    def _write_file(self, source: IO[bytes], final: Path) -> tuple[int, int, str]:
        """Write, sync and rename; return the still-open, locked descriptor, size and digest."""
        tmp = final.with_name(f".tmp-{final.name}")
        digest = hashlib.sha256()
        size = 0
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise StoreError(f"cannot create a message file in {self.messages}: "
                             f"{exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._checkpoint("temp-created")
            while chunk := source.read(CHUNK):
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
                digest.update(chunk)
                size += len(chunk)
                self._checkpoint("temp-writing")
            os.fsync(fd)
            self._checkpoint("temp-synced")
            os.rename(tmp, final)
            self._checkpoint("renamed")
            _fsync_dir(self.messages)
            self._checkpoint("folder-synced")
        except OSError as exc:
            os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StoreError(f"cannot write the message file {final}: "
                             f"{exc.strerror or exc}") from exc
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        return fd, size, digest.hexdigest()

    def recover(self, grace: float = 0.0) -> list[str]:  # type: ignore[valid-type]
        """Remove temporary files and message files without an index row, if no writer holds them.

        A writer holds an exclusive ``flock`` from creating its file until its
        row is committed: a file we can lock is abandoned. ``grace`` (seconds)
        additionally spares files modified that recently.
        """
        removed = []
        try:
            names = sorted(p.name for p in self.messages.iterdir())
        except OSError as exc:
            raise StoreError(f"cannot list {self.messages}: {exc.strerror or exc}") from exc
        rows, _ = self._run("SELECT id FROM messages WHERE state <> 'deleted'")
        indexed = {f"{r[0]}.eml" for r in rows}
        now = dt.datetime.now(UTC).timestamp()
        for name in names:
            if name in indexed or not name.endswith(".eml"):
                continue
            path = self.messages / name
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise StoreError(f"cannot check {path}: {exc.strerror or exc}") from exc
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live writer
                if now - os.fstat(fd).st_mtime < grace:
                    continue
                entry_id = name.removeprefix(".tmp-").removesuffix(".eml")
                if not name.startswith(".tmp-") and self._has_row(entry_id):
                    continue  # committed after we listed
                path.unlink(missing_ok=True)
                removed.append(name)
            finally:
                os.close(fd)
        if removed:
            _fsync_dir(self.messages)
        return removed

    def _has_row(self, entry_id: str) -> bool:
        rows, _ = self._run("SELECT state FROM messages WHERE id = ?", (entry_id,))
        return bool(rows) and rows[0][0] != "deleted"

    # ------------------------------------------------------------ reading

    def open_message(self, entry_id: str) -> IO[bytes]:
        entry = self.get(entry_id)  # only indexed messages exist for readers
        if entry.state == "deleted":
            raise EntryNotFound(f"quarantined message {entry_id} was deleted")
        path = self.messages / f"{entry_id}.eml"
        try:
            return open(path, "rb")  # noqa: SIM115 - the caller closes it
        except OSError as exc:
            raise StoreError(f"quarantined message {entry_id} is indexed but its file {path} "
                             f"cannot be read: {exc.strerror or exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()
