"""A store interrupted anywhere is left consistent; a full disk tempfails, it loses nothing.

Each crash is a real child process that stores one message and is killed
with SIGKILL at one named step of the write (the store's ``_checkpoint``
hook); the parent then reopens the store and checks it. The full disk is a
small tmpfs mounted by the test (root only) under a real ``sealgate milter``.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import quarantine_fixtures as qf
from gateway_helpers import write_config
from quarantine_fixtures import ENVELOPE, VERDICT, StoreFactory

from sealgate import devmail as m
from sealgate.devpki import TestPKI
from sealgate.milterclient import MilterProcess
from sealgate.quarantine import SqliteQuarantine

backend, factory, pg_server = qf.backend, qf.factory, qf.pg_server

BIG = b"Subject: crash test\r\n\r\n" + os.urandom(300 * 1024).hex().encode() + b"\r\n"

STEPS = {
    # (step, whether the entry exists after a crash there)
    "sqlite": [("temp-created", False), ("temp-writing", False), ("temp-synced", False),
               ("renamed", False), ("folder-synced", False), ("row-committed", True)],
    "postgresql": [("transaction-open", False), ("row-inserted", False),
                   ("bytes-inserted", False), ("committed", True)],
}
CASES = [(b, step, exists) for b, steps in STEPS.items() for step, exists in steps]

_CHILD = textwrap.dedent("""
    import io, os, signal, sys
    from sealgate.codes import Action, Code, Direction
    from sealgate.model import Envelope, Finding, Verdict
    from sealgate.quarantine.sqlbase import SqlStore
    backend, location, kill_at, source = sys.argv[1:5]
    def checkpoint(self, step):
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    SqlStore._checkpoint = checkpoint
    if backend == "sqlite":
        from sealgate.quarantine.sqlite import SqliteQuarantine
        store = SqliteQuarantine(location)
    else:
        from sealgate.quarantine.postgresql import PostgresQuarantine
        store = PostgresQuarantine(location)
    with open(source, "rb") as fh:
        store.put(fh, Envelope("alice@example.com", ("bob@example.com",)),
                  Verdict(Action.QUARANTINE, "internal", Direction.INTERNAL, "plain",
                          [Finding(Code.UNSIGNED, "no signature")], [], []))
    print("not killed")
""")


@pytest.mark.parametrize(("backend", "step", "exists"), CASES,
                         ids=[f"{b}-{s}" for b, s, _ in CASES])
def test_store_killed_at_each_step_is_left_consistent(factory: StoreFactory, tmp_path: Path,
                                                      step: str, exists: bool) -> None:
    factory.open().close()  # the schema exists before the child starts
    source = tmp_path / "message.eml"
    source.write_bytes(BIG)
    result = subprocess.run([sys.executable, "-c", _CHILD, factory.backend, factory.location,
                             step, str(source)], capture_output=True, text=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, (step, result.returncode, result.stderr)

    store = factory.open()
    store.recover(0.0)
    entries = store.list()
    assert len(entries) == (1 if exists else 0), step
    for entry in entries:  # a complete entry: every byte, the right digest
        with store.open_message(entry.id) as fh:
            assert fh.read() == BIG
        assert entry.sha256 == hashlib.sha256(BIG).hexdigest()
    if isinstance(store, SqliteQuarantine):  # no orphan, no temporary file
        assert sorted(p.name for p in store.messages.iterdir()) == sorted(
            f"{e.id}.eml" for e in entries)
    # ... and the store still works.
    new = store.put(io.BytesIO(b"after\r\n"), ENVELOPE, VERDICT)
    assert store.get(new).size == 7


# ---------------------------------------------------------------- full disk


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs mounted for this test (needs root: mount(2))."""
    if os.geteuid() != 0:
        qf.unavailable("mounting a tmpfs", "run the tests as root (CI does)")
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs",
                           str(mount)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        qf.unavailable("mounting a tmpfs", done.stderr.strip())
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _milter(folder: Path, pki: TestPKI, quarantine: Path) -> MilterProcess:
    config = write_config(folder, pki)
    text = config.read_text().replace(f'path = "{folder}/quarantine"', f'path = "{quarantine}"')
    config.write_text(text)
    return MilterProcess(config, folder / "sealgate.sock", folder / "milter.log")


def test_full_disk_tempfails_in_the_milter_and_keeps_nothing_half(
        small_disk: Path, pki: TestPKI, tmp_path: Path) -> None:
    quarantine = small_disk / "quarantine"
    SqliteQuarantine(quarantine).close()  # index created while there is room
    proc = _milter(tmp_path / "milter", pki, quarantine)
    try:
        body = m.text_entity("x" * (900 * 1024))  # plain internal mail: strict policy holds it
        raw = m.message(body, "alice@example.com", ["bob@example.com"])
        result = proc.send(raw, "alice@example.com", ["bob@example.com"], queue_id="FULL1")
        assert result.outcome == "deferred", result
        assert result.reply is not None and result.reply.startswith("451 4.")

        # A small message still fits: the milter holds it, so nothing was wedged.
        small = m.message(m.text_entity("hello"), "alice@example.com", ["bob@example.com"])
        held = proc.send(small, "alice@example.com", ["bob@example.com"], queue_id="FULL2")
        assert held.outcome == "held", held
    finally:
        proc.stop()
    log = (tmp_path / "milter" / "milter.log").read_text()
    assert "No space left on device" in log
    store = SqliteQuarantine(quarantine)
    try:
        (entry,) = store.list()
        assert entry.queue_id == "FULL2"
        assert [p.name for p in store.messages.iterdir()] == [f"{entry.id}.eml"]
        decisions: list[Any] = list(store.decisions())
        assert [(d.action, d.quarantine_id) for d in decisions] == [
            ("tempfail", None), ("quarantine", entry.id)]
    finally:
        store.close()
