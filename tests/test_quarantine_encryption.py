"""Encryption at rest: held messages are CMS enveloped-data to the reviewers, nothing in clear.

The stored object is opened by an independent implementation (``openssl
cms -decrypt``) with a reviewer key; the store folder, the PostgreSQL data
directory (tables and WAL) and the temporary folder are searched for a
marker string from the message body.
"""

from __future__ import annotations

import io
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import quarantine_fixtures as qf
from quarantine_fixtures import ENVELOPE, VERDICT, StoreFactory

from sealgate.devpki import TestPKI
from sealgate.errors import StoreError
from sealgate.quarantine import KeyFileUnsealer, Sealer, SqliteQuarantine, read_message

backend, pg_server = qf.backend, qf.pg_server

MARKER = b"SEALGATE-CLEAR-MARKER-5d1e"
# Random (incompressible) around the marker, so that a clear copy could not hide in compression.
SECRET = (b"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: salaries\r\n\r\n"
          + os.urandom(40_000).hex().encode() + b"\r\n" + MARKER + b"\r\n"
          + os.urandom(40_000).hex().encode() + b"\r\n")


@pytest.fixture
def sealed(backend: str, pki: TestPKI, tmp_path: Path, request: pytest.FixtureRequest,
           monkeypatch: pytest.MonkeyPatch) -> Any:
    # Any temporary file the store (or a library under it) made would land here.
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    sealer = Sealer.from_files([pki["grace"].cert_path, pki["bob"].cert_path])
    if backend == "sqlite":
        made = StoreFactory("sqlite", str(tmp_path / "quarantine"), sealer)
    else:
        server = request.getfixturevalue("pg_server")
        made = StoreFactory("postgresql", qf.fresh_database(server), sealer, server=server)
    yield made
    made.close_all()


def _files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_stored_message_is_cms_that_openssl_decrypts_with_a_reviewer_key(
        sealed: StoreFactory, pki: TestPKI, tmp_path: Path) -> None:
    store = sealed.open()
    entry_id = store.put(io.BytesIO(SECRET), ENVELOPE, VERDICT)
    entry = store.get(entry_id)
    assert entry.encrypted and entry.size == len(SECRET)
    with store.open_message(entry_id) as fh:
        stored = fh.read()
    assert stored[:1] == b"\x30" and MARKER not in stored  # DER SEQUENCE, no clear text
    der = tmp_path / "stored.p7m"
    der.write_bytes(stored)
    for reviewer in ("grace", "bob"):
        out = subprocess.run(
            ["openssl", "cms", "-decrypt", "-binary", "-inform", "DER", "-in", str(der),
             "-inkey", str(pki[reviewer].key_path), "-recip", str(pki[reviewer].cert_path)],
            capture_output=True, check=False)
        assert out.returncode == 0, out.stderr.decode()
        assert out.stdout == SECRET
    info = subprocess.run(["openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in", str(der)],
                          capture_output=True, text=True, check=True).stdout
    assert "pkcs7-envelopedData" in info and "aes-256-cbc" in info


def test_nothing_in_clear_in_the_store_or_temporary_files(sealed: StoreFactory,
                                                          tmp_path: Path) -> None:
    store = sealed.open()
    for _ in range(3):
        store.put(io.BytesIO(SECRET), ENVELOPE, VERDICT)
    assert _files_containing(tmp_path / "tmp", MARKER) == []
    if sealed.backend == "sqlite":
        assert isinstance(store, SqliteQuarantine)
        assert _files_containing(store.path, MARKER) == []
    else:
        store._run("CHECKPOINT")  # tables and WAL on disk, as a thief would find them
        assert sealed.server is not None
        assert _files_containing(sealed.server.data, MARKER) == []


def test_the_gateway_cannot_read_back_what_it_stored(sealed: StoreFactory) -> None:
    store = sealed.open()
    entry = store.get(store.put(io.BytesIO(SECRET), ENVELOPE, VERDICT))
    with pytest.raises(StoreError, match="encrypted to the reviewers"):
        read_message(store, entry)


def test_a_reviewer_key_file_reads_it_back_exactly(sealed: StoreFactory, pki: TestPKI) -> None:
    store = sealed.open()
    entry = store.get(store.put(io.BytesIO(SECRET), ENVELOPE, VERDICT))
    unsealer = KeyFileUnsealer(pki["grace"].key_path,
                               candidates=[pki["bob"].cert_path, pki["grace"].cert_path])
    assert read_message(store, entry, unsealer) == SECRET


def test_a_key_that_is_not_a_reviewer_is_refused(sealed: StoreFactory, pki: TestPKI) -> None:
    store = sealed.open()
    entry = store.get(store.put(io.BytesIO(SECRET), ENVELOPE, VERDICT))
    alice = KeyFileUnsealer(pki["alice"].key_path, pki["alice"].cert_path)
    with pytest.raises(StoreError, match="cannot decrypt with this key"):
        read_message(store, entry, alice)


def test_control_without_encryption_the_marker_is_found(tmp_path: Path) -> None:
    # The search above would have found a clear copy: here is one.
    store = SqliteQuarantine(tmp_path / "clear")
    try:
        store.put(io.BytesIO(SECRET), ENVELOPE, VERDICT)
        assert _files_containing(store.path, MARKER) != []
    finally:
        store.close()


def test_non_rsa_reviewer_certificate_is_refused_naming_the_file(pki: TestPKI) -> None:
    with pytest.raises(StoreError, match=str(pki["frank"].cert_path)):
        Sealer.from_files([pki["frank"].cert_path])
