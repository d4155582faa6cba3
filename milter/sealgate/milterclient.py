"""The MTA side of the milter protocol (version 6), small and blocking.

Used by ``make demo`` and the benchmarks to push real messages through a
running ``sealgate milter`` the way Postfix would: option negotiation, the
SMTP stages as milter commands, the body in chunks, then end-of-message with
the milter's modifications collected until its final reply. It honours the
no-reply (``SMFIP_NR_*``) and skip-step (``SMFIP_NO*``) flags the milter
negotiates. It is not a general-purpose MTA: one message per connection.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

VERSION = 6
# Actions we (as the MTA) allow: add/change headers, quarantine, add/del rcpt, etc.
ALL_ACTIONS = 0x1FF
# Protocol steps we can do without (bit mask the milter may ask for).
ALL_PROTOCOL = 0x1FFFFF

NO_CONNECT, NO_HELO, NO_MAIL, NO_RCPT, NO_BODY, NO_HDRS, NO_EOH = (
    0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40)
NR_HDR, NO_DATA = 0x80, 0x200
NR_CONN, NR_HELO, NR_MAIL, NR_RCPT, NR_DATA, NR_EOH, NR_BODY = (
    0x1000, 0x2000, 0x4000, 0x8000, 0x10000, 0x40000, 0x80000)

FINAL = {b"a": "accept", b"c": "continue", b"r": "reject", b"t": "tempfail", b"d": "discard",
         b"y": "reply"}
CHUNK = 65535


class MilterProtocolError(Exception):
    pass


@dataclass
class MilterResult:
    """What the milter said about one message."""

    disposition: str  # accept | continue | reject | tempfail | discard | reply
    reply: str | None = None  # "550 5.7.1 ..." for setreply
    stage: str = "eom"  # the stage that decided
    added_headers: list[tuple[str, str]] = field(default_factory=list)
    changed_headers: list[tuple[int, str, str]] = field(default_factory=list)  # (index, name, value)
    quarantine: str | None = None

    @property
    def outcome(self) -> str:
        """Postfix's view: delivered, held, rejected or deferred.

        sealgate answers DISCARD only once its quarantine store holds the
        message (Postfix says 250 and drops its copy): that is "held".
        """
        if self.disposition == "reply" and self.reply:
            return "rejected" if self.reply.startswith("5") else "deferred"
        if self.disposition == "discard":
            return "held"
        if self.disposition == "reject":
            return "rejected"
        if self.disposition == "tempfail":
            return "deferred"
        return "held" if self.quarantine is not None else "delivered"


def _z(*parts: str | bytes) -> bytes:
    return b"".join((p.encode() if isinstance(p, str) else p) + b"\0" for p in parts)


class MilterClient:
    def __init__(self, address: str, timeout: float = 60.0) -> None:
        """``address``: ``unix:/path`` or ``inet:PORT@HOST`` (Postfix/pymilter spelling)."""
        kind, _, rest = address.partition(":")
        if kind in ("unix", "local"):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target: str | tuple[str, int] = rest
        elif kind == "inet":
            port, _, host = rest.partition("@")
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            target = (host or "127.0.0.1", int(port))
        else:
            raise ValueError(f"milter address {address!r}: use unix:/path or inet:PORT@HOST")
        self.sock.settimeout(timeout)
        self.sock.connect(target)
        self.buf = b""
        self.protocol = 0

    def close(self) -> None:
        try:
            self._send(b"Q")
        except OSError:
            pass
        self.sock.close()

    def __enter__(self) -> MilterClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- wire

    def _send(self, cmd: bytes, data: bytes = b"") -> None:
        self.sock.sendall(struct.pack("!I", len(data) + 1) + cmd + data)

    def _recv(self) -> tuple[bytes, bytes]:
        while True:
            if len(self.buf) >= 4:
                (length,) = struct.unpack("!I", self.buf[:4])
                if len(self.buf) >= 4 + length:
                    packet, self.buf = self.buf[4:4 + length], self.buf[4 + length:]
                    if packet[:1] == b"p":  # progress: keep waiting
                        continue
                    return packet[:1], packet[1:]
            data = self.sock.recv(65536)
            if not data:
                raise MilterProtocolError("milter closed the connection")
            self.buf += data

    def _step(self, cmd: bytes, data: bytes, no_reply_flag: int) -> tuple[bytes, bytes] | None:
        self._send(cmd, data)
        if self.protocol & no_reply_flag:
            return None
        return self._recv()

    # -- conversation

    def negotiate(self) -> None:
        self._send(b"O", struct.pack("!III", VERSION, ALL_ACTIONS, ALL_PROTOCOL))
        cmd, data = self._recv()
        if cmd != b"O" or len(data) < 12:
            raise MilterProtocolError(f"bad option negotiation reply {cmd!r}")
        _version, _actions, self.protocol = struct.unpack("!III", data[:12])

    def send_message(self, sender: str, recipients: Iterable[str],
                     headers: list[tuple[str, str]], body: bytes, *,
                     client: tuple[str, str] = ("localhost", "127.0.0.1"),
                     queue_id: str = "DEMO0001", helo: str = "client.example.net",
                     ) -> MilterResult:
        macros = _z("i", queue_id, "j", "mx.example.com", "{daemon_name}", "sealgate-demo")
        steps: list[tuple[str, bytes, bytes, int, int]] = [
            ("connect", b"C", _z(client[0]) + b"4" + struct.pack("!H", 25)
             + _z(client[1]), NO_CONNECT, NR_CONN),
            ("helo", b"H", _z(helo), NO_HELO, NR_HELO),
            ("mail", b"M", _z(f"<{sender}>"), NO_MAIL, NR_MAIL),
        ]
        steps += [("rcpt", b"R", _z(f"<{r}>"), NO_RCPT, NR_RCPT) for r in recipients]
        steps.append(("data", b"T", b"", NO_DATA, NR_DATA))
        steps += [("header", b"L", _z(k, v), NO_HDRS, NR_HDR) for k, v in headers]
        steps.append(("eoh", b"N", b"", NO_EOH, NR_EOH))
        for i in range(0, len(body), CHUNK):
            steps.append(("body", b"B", body[i:i + CHUNK], NO_BODY, NR_BODY))

        self._send(b"D", b"C" + macros)
        for stage, cmd, data, skip_flag, nr_flag in steps:
            if self.protocol & skip_flag:
                continue
            answer = self._step(cmd, data, nr_flag)
            if answer is None or answer[0] == b"c":
                continue
            if answer[0] == b"s":  # skip the rest of this stage (body)
                continue
            return self._final(answer, stage, MilterResult("continue"))
        self._send(b"D", b"E" + macros)
        self._send(b"E")
        result = MilterResult("continue")
        while True:
            answer = self._recv()
            if answer[0] in FINAL:
                return self._final(answer, "eom", result)
            self._modification(answer, result)

    def _final(self, answer: tuple[bytes, bytes], stage: str, result: MilterResult) -> MilterResult:
        cmd, data = answer
        if cmd not in FINAL:
            raise MilterProtocolError(f"unexpected reply {cmd!r} at {stage}")
        result.disposition = FINAL[cmd]
        result.stage = stage
        if cmd == b"y":
            result.reply = data.rstrip(b"\0").decode(errors="replace")
        return result

    @staticmethod
    def _modification(answer: tuple[bytes, bytes], result: MilterResult) -> None:
        cmd, data = answer
        if cmd == b"h":
            name, value = _pair(data)
            result.added_headers.append((name, value))
        elif cmd in (b"m", b"i"):
            (index,) = struct.unpack("!I", data[:4])
            name, value = _pair(data[4:])
            if cmd == b"m":
                result.changed_headers.append((index, name, value))
            else:
                result.added_headers.insert(0, (name, value))
        elif cmd == b"q":
            result.quarantine = data.rstrip(b"\0").decode(errors="replace")
        # other modifications (rcpt, body, from) are not used by sealgate


def _pair(data: bytes) -> tuple[str, str]:
    """``name NUL value NUL`` (an empty value deletes the header in chgheader)."""
    name, _, rest = data.partition(b"\0")
    value = rest.split(b"\0", 1)[0]
    return name.decode("ascii", "replace"), value.decode("utf-8", "replace")


def split_message(raw: bytes) -> tuple[list[tuple[str, str]], bytes]:
    """Headers (unfolded values keep their line breaks as Postfix sends them) and body."""
    sep = raw.find(b"\r\n\r\n")
    width = 4
    if sep < 0:
        sep, width = raw.find(b"\n\n"), 2
    head, body = (raw[:sep], raw[sep + width:]) if sep >= 0 else (raw, b"")
    headers: list[tuple[str, str]] = []
    for line in head.replace(b"\r\n", b"\n").split(b"\n"):
        if line[:1] in (b" ", b"\t") and headers:
            key, text = headers[-1]
            headers[-1] = (key, text + "\n" + line.decode("utf-8", "replace"))
        elif b":" in line:
            raw_name, _, raw_value = line.partition(b":")
            headers.append((raw_name.decode("ascii", "replace"),
                            raw_value.lstrip(b" ").decode("utf-8", "replace")))
    return headers, body


def wait_for_milter(path: Path, proc: subprocess.Popen | None = None, timeout: float = 20.0) -> None:
    """Wait until a milter accepts connections on the unix socket ``path``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"sealgate milter exited with status {proc.returncode}")
        if path.exists():
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(path))
                return
            except OSError:
                pass
        time.sleep(0.05)
    raise TimeoutError(f"no milter listening on {path} after {timeout:.0f} s")


def send_raw(socket_path: Path, raw: bytes, sender: str, recipients: Iterable[str],
             queue_id: str = "TEST1", timeout: float = 60.0) -> MilterResult:
    """One message (exact bytes) over a new milter connection, as Postfix per SMTP session."""
    headers, body = split_message(raw)
    with MilterClient(f"unix:{socket_path}", timeout=timeout) as client:
        client.negotiate()
        return client.send_message(sender, list(recipients), headers, body, queue_id=queue_id)


def children_of(pid: int) -> set[int]:
    """Live processes whose parent is ``pid`` (a supervisor's workers), from /proc."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.add(int(entry))
    return found


class MilterProcess:
    """``sealgate milter --config CONFIG`` as a child process (tests, benchmarks, the demo).

    Started and ready (listening on ``socket``) when the constructor returns;
    stderr goes to ``log``. ``stop`` sends SIGTERM (the milter drains and exits)
    and kills it only if it does not exit in time, so nothing is left running.
    """

    def __init__(self, config: Path, socket_path: Path, log: Path, *extra_args: str) -> None:
        self.config, self.socket, self.log = config, socket_path, log
        with log.open("ab") as out:
            # PYTHONFAULTHANDLER: a milter that does not stop is asked (SIGABRT) to
            # write every thread's stack into its log before it is killed (stop()).
            self.proc = subprocess.Popen([sys.executable, "-m", "sealgate", "milter", "--config",
                                          str(config), *extra_args], stderr=out,
                                         env={**os.environ, "PYTHONFAULTHANDLER": "1"})
        try:
            wait_for_milter(socket_path, self.proc)
        except BaseException as exc:
            self.kill()
            if isinstance(exc, RuntimeError | TimeoutError):
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{exc}; its log:\n{tail}") from None
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, raw: bytes, sender: str, recipients: Iterable[str],
             queue_id: str = "TEST1") -> MilterResult:
        return send_raw(self.socket, raw, sender, recipients, queue_id)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait; the exit status.

        A milter (or one of its worker processes) still running ``timeout``
        seconds later is asked for its threads' stacks (SIGABRT: they go to its
        log), then killed, and TimeoutExpired is raised with the end of the log.
        """
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            for pid in (*children_of(self.proc.pid), self.proc.pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGABRT)
            time.sleep(2)
            self.kill()
            tail = self.log.read_text(errors="replace")[-6000:]
            raise subprocess.TimeoutExpired(self.proc.args, timeout,
                                            output=f"the end of its log {self.log}:\n{tail}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)

    def __enter__(self) -> MilterProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
