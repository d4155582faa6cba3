"""Fixtures for the quarantine tests: both store backends, an SMTP receiver, sample data.

The PostgreSQL server is real (sealgate.devpostgres, started once per test
session); each test gets its own database in it. Without PostgreSQL the
postgresql-parametrized tests skip outside CI and fail in CI.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Session
from aiosmtpd.smtp import Envelope as SmtpEnvelope
from need import unavailable as need_unavailable

from sealgate.codes import Action, Code, Direction
from sealgate.devpostgres import DevPostgres, PostgresUnavailable, free_port
from sealgate.model import Envelope, Finding, Verdict
from sealgate.quarantine import Sealer, SqliteQuarantine
from sealgate.quarantine.postgresql import PostgresQuarantine

BACKENDS = ("sqlite", "postgresql")

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


def unavailable(what: str, hint: str) -> None:
    """CI: fail with the install hint; elsewhere: skip."""
    need_unavailable(f"{what} is not available: {hint}")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[DevPostgres]:
    try:
        server = DevPostgres()
    except PostgresUnavailable as exc:
        unavailable("PostgreSQL", str(exc))
        raise AssertionError("unreachable") from exc
    try:
        server.start()
    except PostgresUnavailable as exc:
        server.stop()
        unavailable("PostgreSQL", str(exc))
        raise AssertionError("unreachable") from exc
    try:
        yield server
    finally:
        server.stop()


def fresh_database(server: DevPostgres) -> str:
    """A new empty database on the session's server; its URL."""
    name = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.url.rsplit("/", 1)[0] + "/" + name


@dataclass
class StoreFactory:
    """Opens (and reopens) the same store, for tests that close and come back."""

    backend: str
    location: str  # folder or URL
    sealer: Sealer | None = None
    server: DevPostgres | None = None  # postgresql: the server holding the database
    opened: list[Any] = field(default_factory=list)

    def open(self, **kw: Any) -> Any:
        store: Any
        if self.backend == "sqlite":
            store = SqliteQuarantine(Path(self.location), sealer=self.sealer, **kw)
        else:
            store = PostgresQuarantine(self.location, sealer=self.sealer, **kw)
        self.opened.append(store)
        return store

    def close_all(self) -> None:
        for store in self.opened:
            store.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def factory(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[StoreFactory]:
    if backend == "sqlite":
        made = StoreFactory("sqlite", str(tmp_path / "quarantine"))
    else:
        server = request.getfixturevalue("pg_server")
        made = StoreFactory("postgresql", fresh_database(server), server=server)
    yield made
    made.close_all()


@pytest.fixture
def store(factory: StoreFactory) -> Any:
    return factory.open()


# ---------------------------------------------------------------- SMTP receiver


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    mail_options: list[str]


class Recorder:
    """aiosmtpd handler keeping every message; ``fail_with`` answers DATA with that reply."""

    def __init__(self) -> None:
        self.messages: list[Received] = []
        self.fail_with: str | None = None
        self.lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: SmtpEnvelope) -> str:
        if self.fail_with:
            return self.fail_with
        with self.lock:
            self.messages.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos),
                                          bytes(envelope.original_content or b""),
                                          list(envelope.mail_options)))
        return "250 2.0.0 Ok: queued as TESTQ"


@pytest.fixture
def receiver() -> Iterator[tuple[Recorder, str]]:
    """A real SMTP server on 127.0.0.1 (aiosmtpd); yields (recorder, "host:port")."""
    recorder = Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, decode_data=False)
    controller.start()
    try:
        yield recorder, f"127.0.0.1:{port}"
    finally:
        controller.stop()


def ago(**kw: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(**kw)
