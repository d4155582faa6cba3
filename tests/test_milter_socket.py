"""The real milter process on a unix socket, spoken to over the milter protocol.

The MTA side is the ``miltertest`` package, with its quirks worked around:
body chunks are sent as raw bytes (its ``buf`` codec wants str), the
negotiated no-reply / skip flags are honoured here, and end-of-message
replies are read past a quarantine reply up to the final one.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from miltertest import MilterConnection
from miltertest import constants as mc

from sealgate.quarantine import SqliteQuarantine

FAKE_GATEWAY = Path(__file__).with_name("fakegateway.py")
FINAL = {mc.SMFIR_ACCEPT, mc.SMFIR_CONTINUE, mc.SMFIR_REJECT, mc.SMFIR_TEMPFAIL,
         mc.SMFIR_REPLYCODE, mc.SMFIR_DISCARD}


@dataclass
class Milter:
    process: subprocess.Popen[str]
    socket: Path
    quarantine: Path
    marker: Path

    def output(self) -> tuple[str, str]:
        out, err = self.process.communicate(timeout=15)
        return out, err


@pytest.fixture
def milter(tmp_path: Path) -> Iterator[Milter]:
    sock = tmp_path / "sealgate.sock"
    quarantine = tmp_path / "quarantine"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, str(FAKE_GATEWAY), str(sock), str(quarantine)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.socket(socket.AF_UNIX) as probe:
                probe.connect(str(sock))
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"milter did not start: {proc.communicate()}") from None
            time.sleep(0.05)
    yield Milter(proc, sock, quarantine, tmp_path / "evaluating")
    if proc.poll() is None:
        proc.terminate()
    proc.communicate(timeout=15)


@dataclass
class Result:
    final: str
    reply: str | None = None
    modifications: list[tuple[str, dict[str, object]]] = field(default_factory=list)

    def added(self) -> list[tuple[int | None, str, str]]:
        return [(m.get("index"), str(m["name"]), str(m["value"])) for c, m in self.modifications  # type: ignore[misc]
                if c in (mc.SMFIR_ADDHEADER, mc.SMFIR_INSHEADER)]

    def changed(self) -> list[tuple[object, object, object]]:
        return [(m["index"], m["name"], m["value"]) for c, m in self.modifications
                if c == mc.SMFIR_CHGHEADER]

    def quarantine(self) -> str | None:
        return next((str(m["reason"]) for c, m in self.modifications
                     if c == mc.SMFIR_QUARANTINE), None)


class Session:
    """The MTA side of one milter connection, honouring the negotiated flags."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(20)
        self.sock.connect(str(path))
        self.conn = MilterConnection(self.sock)
        self.actions, self.protocol = self.conn.optneg_mta()
        if not self.protocol & mc.SMFIP_NOCONNECT:
            self._step(mc.SMFIP_NR_CONN, mc.SMFIC_CONNECT, hostname="client.test",
                       family=mc.SMFIA_INET, port=4567, address="192.0.2.7")

    def close(self) -> None:
        self.sock.close()

    def _step(self, no_reply: int, cmd: str, **args: object) -> tuple[str, dict[str, object]]:
        if self.protocol & no_reply:
            self.conn._send(cmd, **args)
            return (mc.SMFIR_CONTINUE, {})
        return self.conn.send_ar(cmd, **args)

    def _body(self, chunk: bytes) -> str:
        # miltertest's buf codec wants str: frame the raw bytes ourselves.
        self.sock.sendall(struct.pack("!Lc", len(chunk) + 1, mc.SMFIC_BODY.encode()) + chunk)
        if self.protocol & mc.SMFIP_NR_BODY:
            return mc.SMFIR_CONTINUE
        return self.conn.recv()[0]

    def begin(self, sender: str = "alice@example.com",
              rcpts: tuple[str, ...] = ("bob@example.com",)) -> Result | None:
        cmd, args = self._step(mc.SMFIP_NR_MAIL, mc.SMFIC_MAIL, args=[f"<{sender}>"])
        if cmd != mc.SMFIR_CONTINUE:
            return Result(cmd, f"{args['smtpcode']} {args['text']}"
                          if cmd == mc.SMFIR_REPLYCODE else None)
        for rcpt in rcpts:
            assert self._step(mc.SMFIP_NR_RCPT, mc.SMFIC_RCPT, args=[f"<{rcpt}>"])[0] == "c"
        return None

    def content(self, headers: list[tuple[str, str]], body: bytes) -> None:
        if not self.protocol & mc.SMFIP_NODATA:
            assert self._step(mc.SMFIP_NR_DATA, mc.SMFIC_DATA)[0] == mc.SMFIR_CONTINUE
        for name, value in headers:
            assert self._step(mc.SMFIP_NR_HDR, mc.SMFIC_HEADER, name=name, value=value)[0] \
                == mc.SMFIR_CONTINUE
        if not self.protocol & mc.SMFIP_NOEOH:
            assert self._step(mc.SMFIP_NR_EOH, mc.SMFIC_EOH)[0] == mc.SMFIR_CONTINUE
        for start in range(0, len(body), mc.MILTER_CHUNK_SIZE):
            reply = self._body(body[start:start + mc.MILTER_CHUNK_SIZE])
            if reply == mc.SMFIR_SKIP:
                break
            assert reply == mc.SMFIR_CONTINUE

    def send_eom(self, queue_id: str) -> None:
        self.conn.send_macro(mc.SMFIC_BODYEOB, i=queue_id)
        self.conn._send(mc.SMFIC_BODYEOB)

    def read_eom(self) -> Result:
        # Unlike miltertest's send_eom, read past 'q' to the final reply.
        result = Result("")
        while True:
            cmd, args = self.conn.recv()
            if cmd in FINAL:
                result.final = cmd
                if cmd == mc.SMFIR_REPLYCODE:
                    result.reply = f"{args['smtpcode']} {args['text']}"
                return result
            result.modifications.append((cmd, args))

    def message(self, headers: list[tuple[str, str]], body: bytes = b"Hello.\r\n",
                queue_id: str = "4QTEST", **envelope: object) -> Result:
        early = self.begin(**envelope)  # type: ignore[arg-type]
        if early is not None:
            return early
        self.content(headers, body)
        self.send_eom(queue_id)
        return self.read_eom()


def subject(text: str) -> list[tuple[str, str]]:
    return [("From", "Alice <alice@example.com>"), ("To", "bob@example.com"),
            ("Subject", text)]


def test_negotiates_header_actions_only(milter: Milter) -> None:
    session = Session(milter.socket)
    try:
        assert session.actions == mc.SMFIF_ADDHDRS | mc.SMFIF_CHGHDRS
        assert session.protocol & mc.SMFIP_NOHELO
        assert session.protocol & mc.SMFIP_NR_HDR
        assert not session.protocol & mc.SMFIP_NOBODY
    finally:
        session.close()


def test_accept_over_the_socket_adds_headers_and_removes_forgery(milter: Milter) -> None:
    session = Session(milter.socket)
    try:
        headers = [("Authentication-Results", "mx.example.com; smime=pass"),
                   *subject("accept")]
        result = session.message(headers)
    finally:
        session.close()
    assert result.final == mc.SMFIR_CONTINUE
    assert result.changed() == [(1, "Authentication-Results", "")]
    assert result.added() == [
        (0, "Sealgate-Policy", "rule=internal; action=accept; codes=none"),
        (0, "Authentication-Results",
         "mx.example.com; smime=pass body.smime-identifier=alice@example.com "
         'body.smime-serial=1f body.smime-issuer="CN=Test CA"'),
    ]


def test_reject_and_tempfail_over_the_socket(milter: Milter) -> None:
    session = Session(milter.socket)
    try:
        rejected = session.message(subject("reject"))
        deferred = session.message(subject("tempfail"))
    finally:
        session.close()
    assert rejected.final == mc.SMFIR_REPLYCODE
    assert rejected.reply is not None and rejected.reply.startswith("550 5.7.1 ")
    assert "malformed" in rejected.reply
    assert deferred.final == mc.SMFIR_REPLYCODE
    assert deferred.reply is not None and deferred.reply.startswith("451 4.7.1 ")
    assert "directory-unavailable" in deferred.reply


def test_quarantine_over_the_socket_stores_then_discards(milter: Milter) -> None:
    body = b"exact\r\nbytes \xff\r\n"
    session = Session(milter.socket)
    try:
        result = session.message(subject("quarantine"), body=body, queue_id="4QHELD")
    finally:
        session.close()
    # DISCARD: Postfix says 250 and drops its copy; the store has the only one.
    assert result.final == mc.SMFIR_DISCARD
    assert result.quarantine() is None
    store = SqliteQuarantine(milter.quarantine)
    try:
        (entry,) = store.list()
        assert entry.codes == ("signature-hidden",)
        assert entry.queue_id == "4QHELD"
        with store.open_message(entry.id) as fh:
            assert fh.read().endswith(b"\r\n\r\n" + body)
    finally:
        store.close()


def test_sigterm_finishes_the_message_in_flight_and_exits_cleanly(milter: Milter) -> None:
    session = Session(milter.socket)
    try:
        assert session.begin() is None
        session.content(subject("slow"), b"in flight\r\n")
        session.send_eom("4QSLOW")
        deadline = time.monotonic() + 10
        while not milter.marker.exists():  # the gateway is now evaluating
            assert time.monotonic() < deadline
            time.sleep(0.02)
        milter.process.send_signal(signal.SIGTERM)
        result = session.read_eom()
        assert result.final == mc.SMFIR_CONTINUE
        assert any(name == "Sealgate-Policy" for _, name, _ in result.added())
        # A new message on the open connection is deferred, not lost.
        late_message = session.message(subject("accept"))
        assert late_message.final == mc.SMFIR_REPLYCODE
        assert late_message.reply is not None and late_message.reply.startswith("451 ")
    finally:
        session.close()
    started = time.monotonic()
    out, err = milter.output()
    assert milter.process.returncode == 0, err
    assert time.monotonic() - started < 5
    assert "drained" in out
    assert "queue_id=4QSLOW" in err and "action=accept" in err
    assert "Traceback" not in err


def test_sigterm_while_idle_exits_promptly(milter: Milter) -> None:
    started = time.monotonic()
    milter.process.send_signal(signal.SIGTERM)
    out, err = milter.output()
    assert milter.process.returncode == 0, err
    assert time.monotonic() - started < 3
    assert "sealgate milter stopped" in err


def test_concurrent_connections(milter: Milter) -> None:
    results: list[str] = []
    lock = threading.Lock()

    def one(n: int) -> None:
        session = Session(milter.socket)
        try:
            for i in range(3):
                r = session.message(subject("tag"), queue_id=f"4Q{n}x{i}")
                with lock:
                    results.append(r.final)
        finally:
            session.close()

    threads = [threading.Thread(target=one, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [mc.SMFIR_CONTINUE] * 12
