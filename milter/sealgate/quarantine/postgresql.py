"""The shared quarantine store: PostgreSQL, for several gateways and their reviewers.

Where the message bytes go: **into the database**, as ``bytea`` in the table
``message_bytes``, written in the same transaction as the index row. Several
gateways then need nothing shared but the database (no shared folder whose
fsync and locking semantics vary across NFS servers), and crash safety is the
database's: a ``put`` either commits the row and the bytes together or
neither (no orphan, no half entry, nothing to recover). The cost is that a
message is held in memory while it is sent — bounded by
``milter.max_message_size``, which the milter enforces before any store.
Back the database up like the mail it holds: with ``encrypt_to`` set the
bytes are CMS-encrypted to the reviewers and the database never sees them
in clear.

Concurrency: gateways insert independently (ids are random); the release
state machine moves states with ``UPDATE ... WHERE state = ... AND
release_token = ...`` so two reviewers cannot both release a message.
The schema is created under an advisory lock by whichever gateway starts
first. Decisions are written with ``synchronous_commit = off``: a database
crash may lose the last few report lines, never a held message.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import threading
from collections.abc import Iterator, Sequence
from typing import IO, Any

import psycopg

from ..errors import StoreError
from ..model import Envelope, Verdict
from .sealing import Sealer, read_bounded
from .sqlbase import INSERT, SqlStore, decision_inserts, row_values
from .store import UTC, Decision, EntryNotFound, QuarantineEntry, new_id

SCHEMA_VERSION = 2
_LOCK_KEY = 0x5EA19A7E  # pg_advisory_xact_lock key for schema creation

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sealgate_schema (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    received TEXT NOT NULL,
    sender TEXT NOT NULL,
    recipients TEXT NOT NULL,
    from_header TEXT,
    client_address TEXT NOT NULL,
    queue_id TEXT NOT NULL,
    rule TEXT,
    direction TEXT NOT NULL,
    structure TEXT NOT NULL,
    action TEXT NOT NULL,
    codes TEXT NOT NULL,
    violations TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    state TEXT NOT NULL,
    encrypted INTEGER NOT NULL DEFAULT 0,
    release_token TEXT,
    release_phase TEXT,
    state_changed TEXT,
    release_reply TEXT
);
CREATE INDEX IF NOT EXISTS messages_received ON messages (received);
CREATE INDEX IF NOT EXISTS messages_state ON messages (state);
CREATE TABLE IF NOT EXISTS message_bytes (
    id TEXT PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    data BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS decisions (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at TEXT NOT NULL, direction TEXT NOT NULL, action TEXT NOT NULL, rule TEXT,
    codes TEXT NOT NULL, sender TEXT NOT NULL, recipient_domains TEXT NOT NULL,
    quarantine_id TEXT
);
CREATE INDEX IF NOT EXISTS decisions_at ON decisions (at);
CREATE TABLE IF NOT EXISTS audit (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at TEXT NOT NULL, reviewer TEXT NOT NULL, action TEXT NOT NULL, entry_id TEXT,
    reason TEXT NOT NULL, detail TEXT NOT NULL
);
CREATE OR REPLACE FUNCTION sealgate_audit_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
CREATE OR REPLACE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION sealgate_audit_append_only();
"""


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


def _safe_url(url: str) -> str:
    """The URL without its password, for error messages."""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, _sep, userinfo = head.partition("://")
    return f"{scheme}://{userinfo.split(':')[0]}@{tail}"


class PostgresQuarantine(SqlStore):
    """One connection, serialised by a lock; reconnects after the server went away."""

    def __init__(self, url: str, sealer: Sealer | None = None,
                 max_size: int | None = None) -> None:
        self.url = url
        self.where = _safe_url(url)
        self.sealer = sealer
        self.max_size = max_size
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        with self._transaction() as run:
            run("SELECT pg_advisory_xact_lock(%s)" % _LOCK_KEY, ())  # noqa: S608,UP031 - constant
            for statement in _split(_SCHEMA):
                run(statement, ())
            rows, _ = run("SELECT max(version) FROM sealgate_schema", ())
            version = rows[0][0]
            if version is not None and version > SCHEMA_VERSION:
                raise StoreError(f"the quarantine database {self.where} has schema version "
                                 f"{version}; this sealgate knows up to {SCHEMA_VERSION}: upgrade")
            if version is None:
                run("INSERT INTO sealgate_schema (version) VALUES (?)", (SCHEMA_VERSION,))

    # ------------------------------------------------------------ connection

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            try:
                self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
            except psycopg.Error as exc:
                raise StoreError(f"cannot connect to the quarantine database {self.where}: "
                                 f"{exc}") from exc
        return self._conn

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[list[tuple[Any, ...]], int]:
        with self._transaction() as run:
            return run(sql, args)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self._lock:
            conn = self._connection()
            try:
                with conn.transaction(), conn.cursor() as cur:
                    def run(sql: str, args: tuple[Any, ...]) -> tuple[list[tuple[Any, ...]], int]:
                        cur.execute(_pg(sql) if args else sql, args or None)
                        rows = cur.fetchall() if cur.description is not None else []
                        return rows, cur.rowcount
                    yield run
            except psycopg.Error as exc:
                raise StoreError(f"quarantine database {self.where}: {exc}") from exc

    def _drop_message(self, entry_id: str) -> None:
        self._run("DELETE FROM message_bytes WHERE id = ?", (entry_id,))

    # ------------------------------------------------------------ writing

    def put(self, source: IO[bytes], envelope: Envelope, verdict: Verdict,
            received: dt.datetime | None = None) -> str:
        received = (received or dt.datetime.now(UTC)).astimezone(UTC)
        entry_id = new_id(received)
        clear = read_bounded(source, self.max_size)
        size, digest = len(clear), hashlib.sha256(clear).hexdigest()
        stored = self.sealer.seal(clear) if self.sealer is not None else clear
        del clear
        entry = QuarantineEntry.held(entry_id, received, envelope, verdict, size, digest,
                                     encrypted=self.sealer is not None)
        with self._transaction() as run:
            self._checkpoint("transaction-open")
            run(INSERT, row_values(entry))
            self._checkpoint("row-inserted")
            run("INSERT INTO message_bytes (id, data) VALUES (?, ?)", (entry_id, stored))
            self._checkpoint("bytes-inserted")
        self._checkpoint("committed")
        return entry_id

    def record_decisions(self, decisions: Sequence[Decision]) -> None:
        with self._transaction() as run:
            # A lost report line after a database crash is acceptable; a slow milter is not.
            run("SET LOCAL synchronous_commit TO OFF", ())
            for sql, values in decision_inserts(decisions):  # one round trip per 500 lines
                run(sql, values)

    def recover(self, grace: float = 0.0) -> list[str]:  # type: ignore[valid-type]
        """A put is one transaction: nothing to undo. A delete interrupted between its two
        steps (state, then bytes) leaves bytes of a deleted entry: remove them."""
        rows, _ = self._run("DELETE FROM message_bytes WHERE id IN "
                            "(SELECT id FROM messages WHERE state = ?) RETURNING id", ("deleted",))
        return [str(r[0]) for r in rows]

    # ------------------------------------------------------------ reading

    def open_message(self, entry_id: str) -> IO[bytes]:
        entry = self.get(entry_id)
        rows, _ = self._run("SELECT data FROM message_bytes WHERE id = ?", (entry_id,))
        if not rows:
            raise EntryNotFound(f"quarantined message {entry_id} is {entry.state}: its bytes "
                                f"are no longer in {self.where}")
        return io.BytesIO(bytes(rows[0][0]))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _split(script: str) -> list[str]:
    """Statements of the schema script (the function body's ``;`` is inside $$ quotes)."""
    out, current, quoted = [], [], False
    for line in script.strip().splitlines():
        current.append(line)
        quoted ^= line.count("$$") % 2 == 1
        if line.rstrip().endswith(";") and not quoted:
            out.append("\n".join(current))
            current = []
    return out
