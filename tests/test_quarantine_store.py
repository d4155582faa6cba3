"""Both quarantine stores (SQLite on disk, a real PostgreSQL) keep held messages durably and exactly.

Every test taking ``store`` or ``factory`` runs once per backend.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import io
import os
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import quarantine_fixtures as qf
from quarantine_fixtures import ENVELOPE, MESSAGE, VERDICT, StoreFactory, ago

from sealgate.codes import Action, Direction
from sealgate.errors import StoreError
from sealgate.model import Envelope
from sealgate.quarantine import (
    AuditRecord,
    Decision,
    EntryNotFound,
    Filter,
    SqliteQuarantine,
    StateConflict,
    open_store,
)

# Fixtures used here (assigned, not imported, so that test arguments do not shadow imports).
backend, factory, store, pg_server = qf.backend, qf.factory, qf.store, qf.pg_server


def test_message_bytes_are_preserved_exactly(store: Any) -> None:
    entry_id = store.put(io.BytesIO(MESSAGE), ENVELOPE, VERDICT)
    with store.open_message(entry_id) as fh:
        assert fh.read() == MESSAGE


def test_large_message_is_copied_from_where_the_source_stands(store: Any) -> None:
    big = os.urandom(3 * 1024 * 1024 + 17)
    source = io.BytesIO(b"skipped" + big)
    source.seek(7)
    entry_id = store.put(source, ENVELOPE, VERDICT)
    entry = store.get(entry_id)
    assert entry.size == len(big)
    assert entry.sha256 == hashlib.sha256(big).hexdigest()
    with store.open_message(entry_id) as fh:
        assert fh.read() == big


def test_entry_records_envelope_and_verdict(store: Any) -> None:
    entry_id = store.put(io.BytesIO(MESSAGE), ENVELOPE, VERDICT)
    entry = store.get(entry_id)
    assert entry.id == entry_id
    assert entry.sender == "alice@example.com"
    assert entry.recipients == ("bob@example.com", "carol@example.com")
    assert entry.from_header == "alice@example.com"
    assert entry.client_address == "192.0.2.7"
    assert entry.queue_id == "4XyZ1"
    assert entry.rule == "internal"
    assert entry.action == "quarantine"
    assert entry.direction == "internal"
    assert entry.structure == "signed(plain)"
    assert entry.codes == ("signer-not-sender", "unencrypted")
    assert entry.violations == tuple(VERDICT.violations)
    assert entry.size == len(MESSAGE)
    assert entry.sha256 == hashlib.sha256(MESSAGE).hexdigest()
    assert entry.state == "held"
    assert entry.encrypted is False
    assert entry.received.tzinfo is not None
    assert entry.as_dict()["codes"] == ["signer-not-sender", "unencrypted"]


def test_entries_survive_reopening(factory: StoreFactory) -> None:
    first = factory.open()
    ids = [first.put(io.BytesIO(MESSAGE + bytes([i])), ENVELOPE, VERDICT) for i in range(3)]
    first.close()
    again = factory.open()
    assert [e.id for e in again.list()] == ids  # oldest first
    assert again.count() == 3
    assert again.count("held") == 3
    assert again.count("released") == 0


def test_unknown_or_malformed_id_is_not_found(store: Any) -> None:
    with pytest.raises(EntryNotFound, match="no quarantined message"):
        store.get("20250101T000000Z-0123456789ab")
    with pytest.raises(EntryNotFound, match="not a quarantine id"):
        store.open_message("../index.sqlite3")


def test_eight_threads_storing_at_once_are_all_accounted(store: Any) -> None:
    per_thread = 12
    bodies = {(t, i): os.urandom(1000 + 97 * i) for t in range(8) for i in range(per_thread)}
    results: dict[str, bytes] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def work(t: int) -> None:
        start.wait()
        try:
            for i in range(per_thread):
                data = bodies[t, i]
                entry_id = store.put(io.BytesIO(data), ENVELOPE, VERDICT)
                store.record_decision(Decision.of(VERDICT, ENVELOPE, quarantine_id=entry_id))
                with lock:
                    results[entry_id] = data
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert len(results) == 8 * per_thread
    assert store.count() == 8 * per_thread
    assert {e.id for e in store.list()} == set(results)
    assert {d.quarantine_id for d in store.decisions()} == set(results)
    for entry_id, data in results.items():
        with store.open_message(entry_id) as fh:
            assert fh.read() == data
    if isinstance(store, SqliteQuarantine):
        assert not [p for p in store.messages.iterdir() if p.name.startswith(".tmp-")]


def test_failing_source_leaves_no_entry(store: Any) -> None:
    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, b: Any) -> int:
            raise OSError(5, "Input/output error")

    with pytest.raises((StoreError, OSError)):
        store.put(Broken(), ENVELOPE, VERDICT)
    assert store.count() == 0
    if isinstance(store, SqliteQuarantine):
        assert list(store.messages.iterdir()) == []


def test_list_filters_by_time_sender_recipient_code_rule_state(store: Any) -> None:
    old = store.put(io.BytesIO(b"a\r\n"), ENVELOPE, VERDICT, received=ago(days=10))
    other = Envelope("mallory@evil.test", ("dave@example.org",))
    tag = dataclasses.replace(VERDICT, rule="inbound", violations=VERDICT.violations[:1])
    new = store.put(io.BytesIO(b"b\r\n"), other, tag, received=ago(hours=1))
    assert [e.id for e in store.list(where=Filter(since=ago(days=2)))] == [new]
    assert [e.id for e in store.list(where=Filter(until=ago(days=2)))] == [old]
    assert [e.id for e in store.list(where=Filter(sender="*@EVIL.test"))] == [new]
    assert [e.id for e in store.list(where=Filter(recipient="carol@example.com"))] == [old]
    assert [e.id for e in store.list(where=Filter(code="signer-not-sender"))] == [old]
    assert [e.id for e in store.list(where=Filter(rule="inbound"))] == [new]
    store.delete(old)
    assert [e.id for e in store.list(where=Filter(state="held"))] == [new]
    assert [e.id for e in store.list(state="deleted")] == [old]


def test_delete_removes_the_bytes_and_keeps_the_row(store: Any) -> None:
    entry_id = store.put(io.BytesIO(MESSAGE), ENVELOPE, VERDICT)
    assert store.delete(entry_id).state == "deleted"
    with pytest.raises(EntryNotFound):
        store.open_message(entry_id)
    assert store.get(entry_id).sha256 == hashlib.sha256(MESSAGE).hexdigest()
    with pytest.raises(StateConflict, match="not held"):
        store.begin_release(entry_id)


def test_a_delete_interrupted_before_the_bytes_went_is_finished_by_recovery(store: Any) -> None:
    entry_id = store.put(io.BytesIO(MESSAGE), ENVELOPE, VERDICT)
    store._run("UPDATE messages SET state = ? WHERE id = ?", ("deleted", entry_id))  # step 1 only
    assert len(store.recover(0.0)) == 1
    with pytest.raises(EntryNotFound):
        store.open_message(entry_id)
    assert store.recover(0.0) == []


def test_purge_removes_entries_older_than_the_cutoff(store: Any) -> None:
    old = [store.put(io.BytesIO(b"x\r\n"), ENVELOPE, VERDICT, received=ago(days=100 + i))
           for i in range(3)]
    keep = store.put(io.BytesIO(b"y\r\n"), ENVELOPE, VERDICT, received=ago(days=5))
    assert store.purge(ago(days=90)) == 3
    assert [e.id for e in store.list()] == [keep]
    for entry_id in old:
        with pytest.raises(EntryNotFound):
            store.get(entry_id)


def test_purge_of_decisions_keeps_the_recent_ones(store: Any) -> None:
    for days in (200, 100, 1):
        store.record_decision(Decision.of(VERDICT, ENVELOPE, at=ago(days=days)))
    assert store.purge_decisions(ago(days=90)) == 2
    assert [d.at.date() for d in store.decisions()] == [ago(days=1).date()]


def test_two_gateways_with_four_threads_each_are_all_accounted(factory: StoreFactory) -> None:
    gateways = [factory.open(), factory.open()]  # two connections, as two hosts would have
    stored: list[tuple[str, bytes]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def work(store: Any, t: int) -> None:
        start.wait()
        try:
            for i in range(10):
                data = f"gateway message {t}.{i}\r\n".encode() + os.urandom(500)
                entry_id = store.put(io.BytesIO(data), ENVELOPE, VERDICT)
                with lock:
                    stored.append((entry_id, data))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(gateways[t % 2], t)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    reader = factory.open()
    assert reader.count() == len(stored) == 80
    for entry_id, data in stored:
        with reader.open_message(entry_id) as fh:
            assert fh.read() == data


def test_release_state_machine_allows_one_release(store: Any) -> None:
    entry_id = store.put(io.BytesIO(MESSAGE), ENVELOPE, VERDICT)
    ticket = store.begin_release(entry_id)
    assert (ticket.phase, ticket.resumed) == ("prepared", False)
    assert store.get(entry_id).state == "releasing"
    again = store.begin_release(entry_id)  # a retry gets the same token
    assert (again.token, again.resumed) == (ticket.token, True)
    with pytest.raises(StateConflict):
        store.finish_release(entry_id, "sg-wrongtoken", "250 ok")
    store.mark_data_sent(entry_id, ticket.token)
    assert store.begin_release(entry_id).phase == "data-sent"
    store.finish_release(entry_id, ticket.token, "250 2.0.0 Ok")
    entry = store.get(entry_id)
    assert (entry.state, entry.release_reply) == ("released", "250 2.0.0 Ok")
    with pytest.raises(StateConflict, match="released, not held"):
        store.begin_release(entry_id)


def test_two_reviewers_racing_get_one_release(factory: StoreFactory) -> None:
    a, b = factory.open(), factory.open()
    entry_id = a.put(io.BytesIO(MESSAGE), ENVELOPE, VERDICT)
    first = a.begin_release(entry_id)
    second = b.begin_release(entry_id)  # sees the release under way: same token
    assert second.token == first.token and second.resumed


def test_decisions_are_recorded_without_content(store: Any) -> None:
    when = ago(hours=3)
    store.record_decision(Decision.of(VERDICT, ENVELOPE, at=when))
    accept = dataclasses.replace(VERDICT, action=Action.ACCEPT, violations=[],
                                 direction=Direction.INBOUND, rule="inbound")
    store.record_decision(Decision.of(accept, Envelope("Ext@Other.test", ("x@EXAMPLE.com",))))
    got = list(store.decisions(since=ago(days=1)))
    assert [d.action for d in got] == ["quarantine", "accept"]
    assert got[0].recipient_domains == ("example.com",)
    assert got[0].codes == ("signer-not-sender", "unencrypted")
    assert got[1].sender == "ext@other.test"
    assert got[1].recipient_domains == ("example.com",)
    assert list(store.decisions(since=ago(hours=2), until=ago(hours=0))) == got[1:]


def test_a_batch_of_decisions_spanning_several_statements_is_recorded_whole_and_in_order(
        store: Any) -> None:
    from sealgate.quarantine.sqlbase import DECISION_ROWS

    count = 2 * DECISION_ROWS + 3  # two full multi-row statements and a short one
    base = ago(hours=2)
    batch = [Decision.of(VERDICT, Envelope(f"s{i}@example.com", (f"r@d{i % 7}.test",)),
                         at=base + dt.timedelta(seconds=i),
                         quarantine_id=f"q{i}" if i % 5 == 0 else None)
             for i in range(count)]
    store.record_decisions(batch)
    got = list(store.decisions(since=ago(days=1)))
    assert got == batch
    # A failing batch leaves none of its lines (one transaction for all statements).
    broken = [*batch[:DECISION_ROWS + 1],
              dataclasses.replace(batch[0], action=None)]  # NOT NULL violated
    with pytest.raises(StoreError):
        store.record_decisions(broken)
    assert len(list(store.decisions(since=ago(days=1)))) == count


def test_audit_log_is_append_only_and_listable(store: Any) -> None:
    first = store.audit(AuditRecord(ago(minutes=5), "rita", "show", "20250101T000000Z-0123456789ab",
                                    "ticket 42", {"body": True}))
    second = store.audit(AuditRecord(ago(minutes=1), "sam", "delete", None, "retention"))
    assert second.seq is not None and first.seq is not None and second.seq > first.seq
    log = store.audit_log()
    assert [(r.reviewer, r.action, r.reason) for r in log] == [("rita", "show", "ticket 42"),
                                                               ("sam", "delete", "retention")]
    assert log[0].detail == {"body": True}
    assert [r.reviewer for r in store.audit_log(reviewer="sam")] == ["sam"]
    # Not even SQL can rewrite history.
    with pytest.raises(StoreError, match="append-only"):
        store._run("UPDATE audit SET reviewer = ?", ("mallory",))
    with pytest.raises(StoreError, match="append-only"):
        store._run("DELETE FROM audit")
    assert len(store.audit_log()) == 2


def test_open_store_picks_the_backend(tmp_path: Path, pg_server: Any) -> None:
    from quarantine_fixtures import fresh_database

    from sealgate.quarantine.postgresql import PostgresQuarantine

    @dataclasses.dataclass
    class Section:
        backend: str
        path: Path
        url: str | None = None
        encrypt_to: tuple[Path, ...] = ()

    s = open_store(Section("sqlite", tmp_path / "q"))
    assert isinstance(s, SqliteQuarantine)
    s.close()
    p = open_store(Section("postgresql", tmp_path, fresh_database(pg_server)))
    assert isinstance(p, PostgresQuarantine)
    p.close()
    with pytest.raises(StoreError, match="quarantine.url"):
        open_store(Section("postgresql", tmp_path))


def test_unreachable_database_is_a_store_error_naming_it() -> None:
    from sealgate.devpostgres import free_port
    from sealgate.quarantine.postgresql import PostgresQuarantine

    url = f"postgresql://sealgate:secret@127.0.0.1:{free_port()}/sealgate"
    with pytest.raises(StoreError, match="cannot connect") as info:
        PostgresQuarantine(url)
    assert "secret" not in str(info.value)
    assert "127.0.0.1" in str(info.value)


# ---------------------------------------------------------------- SQLite specifics


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Any:
    s = SqliteQuarantine(tmp_path / "quarantine")
    yield s
    s.close()


def test_message_file_is_private(sqlite_store: SqliteQuarantine) -> None:
    entry_id = sqlite_store.put(io.BytesIO(MESSAGE), ENVELOPE, VERDICT)
    mode = stat.S_IMODE(os.stat(sqlite_store.messages / f"{entry_id}.eml").st_mode)
    assert mode == 0o600


def test_index_is_wal_with_full_sync(sqlite_store: SqliteQuarantine) -> None:
    sqlite_store.put(io.BytesIO(MESSAGE), ENVELOPE, VERDICT)
    db = sqlite3.connect(sqlite_store.index)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


def test_orphan_file_is_not_listed_and_recovery_removes_it(sqlite_store: SqliteQuarantine) -> None:
    # What a crash between the rename and the index commit leaves behind.
    (sqlite_store.messages / "20250101T000000Z-0123456789ab.eml").write_bytes(MESSAGE)
    (sqlite_store.messages / ".tmp-20250101T000000Z-ba9876543210.eml").write_bytes(MESSAGE[:10])
    entry_id = sqlite_store.put(io.BytesIO(MESSAGE), ENVELOPE, VERDICT)
    assert [e.id for e in sqlite_store.list()] == [entry_id]
    with pytest.raises(EntryNotFound):
        sqlite_store.open_message("20250101T000000Z-0123456789ab")
    assert sorted(sqlite_store.recover()) == [".tmp-20250101T000000Z-ba9876543210.eml",
                                              "20250101T000000Z-0123456789ab.eml"]
    assert sorted(p.name for p in sqlite_store.messages.iterdir()) == [f"{entry_id}.eml"]


def test_recovery_spares_a_file_a_live_writer_holds(sqlite_store: SqliteQuarantine) -> None:
    import fcntl

    busy = sqlite_store.messages / ".tmp-20250101T000000Z-0123456789ab.eml"
    fd = os.open(busy, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert sqlite_store.recover() == []
        assert busy.exists()
    finally:
        os.close(fd)
    assert sqlite_store.recover() == [busy.name]


def test_version_1_index_is_upgraded(tmp_path: Path) -> None:
    folder = tmp_path / "q"
    (folder / "messages").mkdir(parents=True)
    db = sqlite3.connect(folder / "index.sqlite3")
    db.executescript("""CREATE TABLE messages (id TEXT PRIMARY KEY, received TEXT NOT NULL,
        sender TEXT NOT NULL, recipients TEXT NOT NULL, from_header TEXT,
        client_address TEXT NOT NULL, queue_id TEXT NOT NULL, rule TEXT, direction TEXT NOT NULL,
        structure TEXT NOT NULL, action TEXT NOT NULL, codes TEXT NOT NULL,
        violations TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL, state TEXT NOT NULL);
        INSERT INTO messages VALUES ('20250101T000000Z-0123456789ab', '2025-01-01T00:00:00+00:00',
        'a@example.com', '["b@example.com"]', NULL, '', '', 'r', 'internal', 'plain',
        'quarantine', '[]', '[]', 3, 'x', 'held');
        PRAGMA user_version=1;""")
    db.close()
    store = SqliteQuarantine(folder)
    try:
        (entry,) = store.list()
        assert (entry.id, entry.encrypted, entry.release_token) == (
            "20250101T000000Z-0123456789ab", False, None)
        store.put(io.BytesIO(MESSAGE), ENVELOPE, VERDICT)
        assert store.count() == 2
    finally:
        store.close()


# root ignores permission bits: as root the attempt runs in a child process
# without the capabilities that bypass them (setpriv), otherwise in a child too.

_ATTEMPT = """
import io, sys
from pathlib import Path
from sealgate.codes import Action, Direction
from sealgate.errors import StoreError
from sealgate.model import Envelope, Verdict
from sealgate.quarantine import SqliteQuarantine
try:
    store = SqliteQuarantine(Path(sys.argv[1]))
    store.put(io.BytesIO(b"Subject: x\\r\\n\\r\\nbody\\r\\n"),
              Envelope("a@example.com", ("b@example.com",)),
              Verdict(Action.QUARANTINE, "r", Direction.INTERNAL, "plain", [], [], []))
except StoreError as exc:
    print("StoreError:", exc)
else:
    print("stored")
"""


def _attempt_put(folder: Path) -> str:
    argv = [sys.executable, "-c", _ATTEMPT, str(folder)]
    if os.geteuid() == 0:
        argv = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", *argv]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_read_only_folder_gives_store_error(tmp_path: Path) -> None:
    folder = tmp_path / "quarantine"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        out = _attempt_put(folder)
    finally:
        folder.chmod(0o755)
    assert out.startswith("StoreError:"), out
    assert str(folder) in out


def test_read_only_message_folder_gives_store_error_and_no_entry(tmp_path: Path) -> None:
    folder = tmp_path / "quarantine"
    SqliteQuarantine(folder).close()
    (folder / "messages").chmod(0o555)
    try:
        out = _attempt_put(folder)
    finally:
        (folder / "messages").chmod(0o700)
    assert out.startswith("StoreError:"), out
    assert str(folder / "messages") in out
    store = SqliteQuarantine(folder)
    try:
        assert store.count() == 0
        assert list(store.messages.iterdir()) == []
    finally:
        store.close()
