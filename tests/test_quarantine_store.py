"""The embedded quarantine store keeps held messages durably and exactly."""

from __future__ import annotations

import hashlib
import io
import os
import sqlite3
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealgate.codes import Action, Code, Direction
from sealgate.errors import StoreError
from sealgate.model import Envelope, Finding, Verdict
from sealgate.quarantine import EntryNotFound, SqliteQuarantine, open_store

ENVELOPE = Envelope(sender="alice@example.com", recipients=("bob@example.com", "carol@example.com"),
                    from_header="alice@example.com", client_address="192.0.2.7",
                    queue_id="4XyZ1")
VERDICT = Verdict(action=Action.QUARANTINE, rule="internal", direction=Direction.INTERNAL,
                  structure="signed(plain)",
                  violations=[Finding(Code.UNENCRYPTED, "content is not encrypted"),
                              Finding(Code.SIGNER_NOT_SENDER, "no signer names alice")],
                  signers=[], recipients=[])
# Bytes an email parser would "fix": CRLF, a bare LF, 8-bit, NUL, no final newline.
MESSAGE = (b"From: alice@example.com\r\nSubject: =?utf-8?q?h=C3=A9?=\r\n\r\n"
           b"line one\r\nbare lf\n\xff\xfe\x00 binary\r\n.\r\nlast line without end")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteQuarantine]:
    s = SqliteQuarantine(tmp_path / "quarantine")
    yield s
    s.close()


def test_message_bytes_are_preserved_exactly(store: SqliteQuarantine) -> None:
    entry_id = store.put(io.BytesIO(MESSAGE), ENVELOPE, VERDICT)
    with store.open_message(entry_id) as fh:
        assert fh.read() == MESSAGE


def test_large_message_is_copied_from_where_the_source_stands(store: SqliteQuarantine) -> None:
    big = os.urandom(3 * 1024 * 1024 + 17)
    source = io.BytesIO(b"skipped" + big)
    source.seek(7)
    entry_id = store.put(source, ENVELOPE, VERDICT)
    entry = store.get(entry_id)
    assert entry.size == len(big)
    assert entry.sha256 == hashlib.sha256(big).hexdigest()
    with store.open_message(entry_id) as fh:
        assert fh.read() == big


def test_entry_records_envelope_and_verdict(store: SqliteQuarantine) -> None:
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
    assert entry.received.tzinfo is not None
    assert entry.as_dict()["codes"] == ["signer-not-sender", "unencrypted"]


def test_message_file_is_private(store: SqliteQuarantine) -> None:
    entry_id = store.put(io.BytesIO(MESSAGE), ENVELOPE, VERDICT)
    mode = stat.S_IMODE(os.stat(store.messages / f"{entry_id}.eml").st_mode)
    assert mode == 0o600


def test_index_is_wal_with_full_sync(store: SqliteQuarantine) -> None:
    store.put(io.BytesIO(MESSAGE), ENVELOPE, VERDICT)
    db = sqlite3.connect(store.index)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        db.close()


def test_entries_survive_reopening(tmp_path: Path) -> None:
    first = SqliteQuarantine(tmp_path / "q")
    ids = [first.put(io.BytesIO(MESSAGE + bytes([i])), ENVELOPE, VERDICT) for i in range(3)]
    first.close()
    again = SqliteQuarantine(tmp_path / "q")
    try:
        assert [e.id for e in again.list()] == ids  # oldest first
        assert again.count() == 3
        assert again.count("held") == 3
        assert again.count("released") == 0
    finally:
        again.close()


def test_orphan_file_without_index_row_is_not_listed(store: SqliteQuarantine) -> None:
    # What a crash between the rename and the index commit leaves behind.
    (store.messages / "20250101T000000Z-0123456789ab.eml").write_bytes(MESSAGE)
    (store.messages / ".tmp-20250101T000000Z-ba9876543210.eml").write_bytes(MESSAGE[:10])
    entry_id = store.put(io.BytesIO(MESSAGE), ENVELOPE, VERDICT)
    assert [e.id for e in store.list()] == [entry_id]
    assert store.count() == 1
    with pytest.raises(EntryNotFound):
        store.open_message("20250101T000000Z-0123456789ab")


def test_unknown_or_malformed_id_is_not_found(store: SqliteQuarantine) -> None:
    with pytest.raises(EntryNotFound, match="no quarantined message"):
        store.get("20250101T000000Z-0123456789ab")
    with pytest.raises(EntryNotFound, match="not a quarantine id"):
        store.open_message("../index.sqlite3")


def test_eight_threads_storing_at_once_are_all_accounted(store: SqliteQuarantine) -> None:
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
    for entry_id, data in results.items():
        with store.open_message(entry_id) as fh:
            assert fh.read() == data
    assert not [p for p in store.messages.iterdir() if p.name.startswith(".tmp-")]


def test_failing_source_leaves_no_entry_and_no_file(store: SqliteQuarantine) -> None:
    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, b: bytearray) -> int:  # type: ignore[override]
            raise OSError(5, "Input/output error")

    with pytest.raises(StoreError, match="cannot write the message file"):
        store.put(Broken(), ENVELOPE, VERDICT)  # type: ignore[arg-type]
    assert store.count() == 0
    assert list(store.messages.iterdir()) == []


def test_open_store_picks_sqlite(tmp_path: Path) -> None:
    class Section:
        backend = "sqlite"
        path = tmp_path / "q"

    store = open_store(Section())
    try:
        assert isinstance(store, SqliteQuarantine)
    finally:
        store.close()

    Section.backend = "postgresql"
    with pytest.raises(StoreError, match="postgresql"):
        open_store(Section())


# ---------------------------------------------------------------- read-only folders
#
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
