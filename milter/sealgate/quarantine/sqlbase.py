"""What the SQLite and PostgreSQL stores share: the index schema, states, records.

Both backends keep the same three tables (``messages``, ``decisions``,
``audit``) with the same columns; SQL here is written with ``?`` placeholders
and the PostgreSQL backend rewrites them to ``%s``. Times are stored as fixed
ISO 8601 text in UTC (:func:`.store.timestamp`), so text order is time order
on both. Backends supply ``_run`` (one statement in its own transaction),
``_transaction`` (several statements, atomically), and the message bytes.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as dt
import json
import secrets
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..codes import Code
from ..model import Finding
from .store import (
    DATA_SENT,
    DELETED,
    HELD,
    PREPARED,
    RELEASED,
    RELEASING,
    UTC,
    AuditRecord,
    Decision,
    EntryNotFound,
    Filter,
    QuarantineEntry,
    ReleaseTicket,
    StateConflict,
    check_id,
    timestamp,
)

COLUMNS = ("id, received, sender, recipients, from_header, client_address, queue_id, rule, "
           "direction, structure, action, codes, violations, size, sha256, state, encrypted, "
           "release_token, release_phase, state_changed, release_reply")
# Built once from constants (no input reaches the SQL text; values are bound).
INSERT = f"INSERT INTO messages ({COLUMNS}) VALUES ({', '.join('?' * 21)})"  # noqa: S608
SELECT = f"SELECT {COLUMNS} FROM messages"  # noqa: S608

# Columns added after schema version 1 (the first SQLite-only store).
V2_COLUMNS = (("encrypted", "INTEGER NOT NULL DEFAULT 0"), ("release_token", "TEXT"),
              ("release_phase", "TEXT"), ("state_changed", "TEXT"), ("release_reply", "TEXT"))

Run = Callable[[str, tuple[Any, ...]], tuple[list[tuple[Any, ...]], int]]


def row_values(entry: QuarantineEntry) -> tuple[Any, ...]:
    return (entry.id, timestamp(entry.received), entry.sender, json.dumps(list(entry.recipients)),
            entry.from_header, entry.client_address, entry.queue_id, entry.rule, entry.direction,
            entry.structure, entry.action, json.dumps(list(entry.codes)),
            json.dumps([f.as_dict() for f in entry.violations]), entry.size, entry.sha256,
            entry.state, int(entry.encrypted), entry.release_token, entry.release_phase,
            timestamp(entry.state_changed) if entry.state_changed else None, entry.release_reply)


def entry_of(row: tuple[Any, ...]) -> QuarantineEntry:
    (entry_id, received, sender, recipients, from_header, client_address, queue_id, rule,
     direction, structure, action, codes, violations, size, sha256, state, encrypted,
     token, phase, changed, reply) = row
    return QuarantineEntry(
        id=str(entry_id), received=dt.datetime.fromisoformat(str(received)),
        sender=str(sender), recipients=tuple(json.loads(str(recipients))),
        from_header=None if from_header is None else str(from_header),
        client_address=str(client_address), queue_id=str(queue_id),
        rule=None if rule is None else str(rule), direction=str(direction),
        structure=str(structure), action=str(action), codes=tuple(json.loads(str(codes))),
        violations=tuple(Finding(_code(v["code"]), v["detail"])
                         for v in json.loads(str(violations))),
        size=int(size), sha256=str(sha256), state=str(state), encrypted=bool(encrypted),
        release_token=token, release_phase=phase,
        state_changed=dt.datetime.fromisoformat(changed) if changed else None,
        release_reply=reply,
    )


def _code(value: str) -> Code:
    try:
        return Code(value)
    except ValueError:  # a code from a newer sealgate: keep the string
        return value  # type: ignore[return-value]


def _now() -> str:
    return timestamp(dt.datetime.now(UTC))


DECISION_INSERT = ("INSERT INTO decisions (at, direction, action, rule, codes, sender, "
                   "recipient_domains, quarantine_id) VALUES ")
_DECISION_ROW = "(?, ?, ?, ?, ?, ?, ?, ?)"
# Rows per INSERT statement: 8 parameters each, 4,000 in all, well under the
# bound-parameter limits of SQLite (32,766) and PostgreSQL (65,535).
DECISION_ROWS = 500


def decision_values(decision: Decision) -> tuple[Any, ...]:
    return (timestamp(decision.at), decision.direction, decision.action, decision.rule,
            json.dumps(list(decision.codes)), decision.sender,
            json.dumps(list(decision.recipient_domains)), decision.quarantine_id)


def decision_inserts(decisions: Sequence[Decision]) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """Multi-row INSERT statements with their parameters for ``decisions``.

    One statement per :data:`DECISION_ROWS` lines, not one per line: the
    database driver releases the interpreter lock around each statement it
    runs, and the milter's writer thread then waits for the lock back while
    the connection threads hold it. Measured in one process (10 KB messages,
    milter callbacks replayed without libmilter): a statement per line cost
    the milter ~70 us of CPU per message; with a statement per batch (and
    the log lines batched too) the writer costs about 6 us.
    """
    for start in range(0, len(decisions), DECISION_ROWS):
        chunk = decisions[start:start + DECISION_ROWS]
        values = tuple(v for d in chunk for v in decision_values(d))
        yield DECISION_INSERT + ", ".join([_DECISION_ROW] * len(chunk)), values


class SqlStore:
    """The backend-independent part of a SQL quarantine store."""

    where: str = "the quarantine"  # names the store in error messages

    # ------------------------------------------------------------ backend hooks

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[list[tuple[Any, ...]], int]:
        raise NotImplementedError

    def _transaction(self) -> contextlib.AbstractContextManager[Run]:
        raise NotImplementedError

    def _drop_message(self, entry_id: str) -> None:
        """Remove the stored bytes of ``entry_id`` (missing is fine)."""
        raise NotImplementedError

    def _checkpoint(self, step: str) -> None:
        """Called between the durable steps of a write; tests kill the process here."""

    # ------------------------------------------------------------ reading

    def get(self, entry_id: str) -> QuarantineEntry:
        check_id(entry_id)
        rows, _ = self._run(SELECT + " WHERE id = ?", (entry_id,))
        if not rows:
            raise EntryNotFound(f"no quarantined message {entry_id} in {self.where}")
        return entry_of(rows[0])

    def list(self, state: str | None = None, where: Filter | None = None) -> list[QuarantineEntry]:
        sql, args = SELECT, []
        clauses = []
        if state is not None:
            clauses.append("state = ?")
            args.append(state)
        if where is not None and where.since is not None:
            clauses.append("received >= ?")
            args.append(timestamp(where.since))
        if where is not None and where.until is not None:
            clauses.append("received < ?")
            args.append(timestamp(where.until))
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        rows, _ = self._run(sql + " ORDER BY received, id", tuple(args))
        entries = [entry_of(r) for r in rows]
        return [e for e in entries if where is None or where.matches(e)]

    def __iter__(self) -> Iterator[QuarantineEntry]:
        return iter(self.list())

    def count(self, state: str | None = None) -> int:
        if state is None:
            rows, _ = self._run("SELECT count(*) FROM messages")
        else:
            rows, _ = self._run("SELECT count(*) FROM messages WHERE state = ?", (state,))
        return int(rows[0][0])

    # ------------------------------------------------------------ release state machine

    def begin_release(self, entry_id: str) -> ReleaseTicket:
        """held → releasing with a fresh token; releasing → the same token (a retry)."""
        check_id(entry_id)
        with self._transaction() as run:
            rows, _ = run(SELECT + " WHERE id = ?", (entry_id,))
            if not rows:
                raise EntryNotFound(f"no quarantined message {entry_id} in {self.where}")
            entry = entry_of(rows[0])
            if entry.state == RELEASING and entry.release_token:
                return ReleaseTicket(entry, entry.release_token, entry.release_phase or PREPARED,
                                     resumed=True)
            if entry.state != HELD:
                raise StateConflict(f"quarantined message {entry_id} is {entry.state}, "
                                    "not held: nothing to release")
            token = f"sg-{secrets.token_hex(12)}"
            _, n = run("UPDATE messages SET state = ?, release_token = ?, release_phase = ?, "
                       "state_changed = ? WHERE id = ? AND state = ?",
                       (RELEASING, token, PREPARED, _now(), entry_id, HELD))
            if n != 1:
                raise StateConflict(f"quarantined message {entry_id} changed state meanwhile")
        return ReleaseTicket(self.get(entry_id), token, PREPARED, resumed=False)

    def _move(self, entry_id: str, token: str, sets: str, args: tuple[Any, ...], what: str) -> None:
        _, n = self._run(f"UPDATE messages SET {sets}, state_changed = ? "  # noqa: S608 - constants
                         "WHERE id = ? AND state = ? AND release_token = ?",
                         (*args, _now(), entry_id, RELEASING, token))
        if n != 1:
            raise StateConflict(f"cannot {what} quarantined message {entry_id}: it is no longer "
                                f"being released with token {token}")

    def mark_data_sent(self, entry_id: str, token: str) -> None:
        self._move(entry_id, token, "release_phase = ?", (DATA_SENT,), "mark as sent")

    def resend_release(self, entry_id: str, token: str) -> None:
        self._move(entry_id, token, "release_phase = ?", (PREPARED,), "re-arm the release of")

    def finish_release(self, entry_id: str, token: str, reply: str) -> None:
        self._move(entry_id, token, "state = ?, release_phase = NULL, release_reply = ?",
                   (RELEASED, reply), "finish the release of")

    def cancel_release(self, entry_id: str, token: str) -> None:
        self._move(entry_id, token, "state = ?, release_phase = NULL, release_token = NULL",
                   (HELD,), "cancel the release of")

    # ------------------------------------------------------------ retention

    def delete(self, entry_id: str) -> QuarantineEntry:
        entry = self.get(entry_id)
        if entry.state == RELEASING:
            raise StateConflict(f"quarantined message {entry_id} is being released "
                                f"(token {entry.release_token}): finish or cancel that first")
        if entry.state != DELETED:
            _, n = self._run("UPDATE messages SET state = ?, state_changed = ? "
                             "WHERE id = ? AND state = ?", (DELETED, _now(), entry_id, entry.state))
            if n != 1:
                raise StateConflict(f"quarantined message {entry_id} changed state meanwhile")
        # Row first, bytes second: a crash in between leaves bytes that recover() drops.
        self._drop_message(entry_id)
        return self.get(entry_id)

    def purge(self, before: dt.datetime) -> int:
        rows, _ = self._run("SELECT id FROM messages WHERE received < ? AND state <> ?",
                            (timestamp(before), RELEASING))
        for (entry_id,) in rows:
            self._run("DELETE FROM messages WHERE id = ?", (entry_id,))
            self._drop_message(str(entry_id))
        return len(rows)

    def purge_decisions(self, before: dt.datetime) -> int:
        """Drop decision records older than ``before`` (they name senders: keep them no longer
        than the messages); return how many."""
        _, n = self._run("DELETE FROM decisions WHERE at < ?", (timestamp(before),))
        return int(n)

    # ------------------------------------------------------------ decisions

    def record_decision(self, decision: Decision) -> None:
        self.record_decisions([decision])

    def record_decisions(self, decisions: Sequence[Decision]) -> None:
        with self._transaction() as run:
            for sql, values in decision_inserts(decisions):
                run(sql, values)

    def decisions(self, since: dt.datetime | None = None,
                  until: dt.datetime | None = None) -> Iterator[Decision]:
        rows, _ = self._run(
            "SELECT at, direction, action, rule, codes, sender, recipient_domains, quarantine_id "
            "FROM decisions WHERE at >= ? AND at < ? ORDER BY at",
            (timestamp(since or dt.datetime(1970, 1, 1, tzinfo=UTC)),
             timestamp(until or dt.datetime(9999, 1, 1, tzinfo=UTC))))
        for at, direction, action, rule, codes, sender, domains, qid in rows:
            yield Decision(dt.datetime.fromisoformat(at), direction, action, rule,
                           tuple(json.loads(codes)), sender, tuple(json.loads(domains)), qid)

    # ------------------------------------------------------------ audit

    def audit(self, record: AuditRecord) -> AuditRecord:
        rows, _ = self._run("INSERT INTO audit (at, reviewer, action, entry_id, reason, detail) "
                            "VALUES (?, ?, ?, ?, ?, ?) RETURNING seq",
                            (timestamp(record.at), record.reviewer, record.action,
                             record.entry_id, record.reason,
                             json.dumps(record.detail, sort_keys=True)))
        return AuditRecord(record.at, record.reviewer, record.action, record.entry_id,
                           record.reason, record.detail, seq=int(rows[0][0]))

    def audit_log(self, since: dt.datetime | None = None, entry_id: str | None = None,
                  reviewer: str | None = None) -> builtins.list[AuditRecord]:
        rows, _ = self._run("SELECT seq, at, reviewer, action, entry_id, reason, detail "
                            "FROM audit WHERE at >= ? ORDER BY seq",
                            (timestamp(since or dt.datetime(1970, 1, 1, tzinfo=UTC)),))
        records = [AuditRecord(dt.datetime.fromisoformat(at), who, action, eid, reason,
                               json.loads(detail), seq=int(seq))
                   for seq, at, who, action, eid, reason, detail in rows]
        return [r for r in records if (entry_id is None or r.entry_id == entry_id)
                and (reviewer is None or r.reviewer == reviewer)]
