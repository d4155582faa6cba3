"""A throwaway Postfix instance on loopback, for tests, benchmarks and the demo.

Stable API (the benchmarks import it; keep these names and meanings)::

    with DevPostfix(milter="unix:sealgate/sealgate.sock") as mta:   # starts, stops, cleans up
        mta.milter_socket            # Path where a unix milter must listen (group postfix)
        mta.smtp_port                # smtpd WITH smtpd_milters (127.0.0.1)
        mta.reinject_port            # smtpd WITHOUT milters (release re-injection), or None
        mta.send(raw, sender, rcpts) # -> SendResult(code, text); never raises on 4xx/5xx
        mta.smtp_source(...)         # run Postfix's smtp-source load generator
        mta.sink.messages            # what reached the loopback sink (sink="record" only)
        mta.sent_count()             # deliveries Postfix logged as sent (any sink)
        mta.wait_for(cond, "what")   # poll a condition; TimeoutError names what was awaited
        mta.queue()                  # postqueue -j entries (deferred, hold, active, ...)
        mta.flush()                  # postqueue -f: retry deferred mail now
        mta.queue_id(result)         # "queued as 4QXYZ" -> "4QXYZ"
        mta.release_hold(qid), mta.delete(qid, "hold")   # postsuper -H / -d
        mta.maillog()                # the instance's own log file, as text

What it builds, in a fresh folder under the system temp dir (not pytest's
``tmp_path``: the ``postfix`` user must be able to traverse the path):

- ``etc/``: ``main.cf`` and ``master.cf`` written here, plus any snippets
  given (``main_snippets`` are appended to main.cf, later lines win;
  ``master_snippets`` are appended to master.cf with their ports rewritten to
  the ones picked here and the chroot column set to ``n``);
- ``spool/``: the ``queue_directory``; ``spool/sealgate/`` is the milter's
  socket folder, group ``postfix``, setgid, mode 2770 — the same layout as a
  production install under /var/spool/postfix, so ``unix:sealgate/sealgate.sock``
  (relative to the queue directory, chrooted or not) works unchanged;
- ``data/``: the ``data_directory`` (owned by ``postfix``: master's lock file);
- ``maillog``: the instance's log (``maillog_file``; there is no syslog here).

Mail is accepted from 127.0.0.0/8 for any domain and relayed to a sink on
loopback: by default a recording SMTP server (aiosmtpd) that keeps each
envelope and the exact bytes, or Postfix's ``smtp-sink`` (``sink="smtp-sink"``)
which only counts and is fast enough for throughput measurements.
``milter_default_action = tempfail``: with the milter down, mail waits in
Postfix (451), nothing is lost.

Runs as root (``postfix start`` needs it). Every port is picked free on
127.0.0.1 at construction; nothing listens anywhere else.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import re
import shutil
import smtplib
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
SBIN = Path(POSTFIX).parent
INSTALL_HINT = ("Postfix is needed: apt-get install postfix (preseed "
                "'postfix postfix/main_mailer_type select No configuration'), or `make deps` as root")
MILTER_SOCKET_NAME = "sealgate/sealgate.sock"  # relative to queue_directory, as in deploy/main.cf


def postfix_available() -> str | None:
    """None when a throwaway Postfix can run here, else why not (for skip/fail messages)."""
    if not Path(POSTFIX).exists():
        return f"postfix not found. {INSTALL_HINT}"
    if os.geteuid() != 0:
        return "a throwaway Postfix must be started as root"
    try:
        pwd.getpwnam("postfix")
        grp.getgrnam("postdrop")
    except KeyError:
        return f"the postfix user or postdrop group is missing. {INSTALL_HINT}"
    return None


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0, what: str = "server") -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} is not listening on 127.0.0.1:{port} "
                                   f"after {timeout:.0f} s") from None
            time.sleep(0.05)


# ---------------------------------------------------------------- sinks


@dataclass(frozen=True)
class Received:
    """One message as the sink got it: envelope and exact DATA bytes (CRLF)."""

    sender: str
    recipients: tuple[str, ...]
    data: bytes

    def header(self, name: str) -> list[str]:
        """Unfolded values of a header field in the received message."""
        head = self.data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
        head = re.sub(r"\r\n[ \t]", " ", head)
        prefix = name.lower() + ":"
        return [line[len(prefix):].strip() for line in head.split("\r\n")
                if line.lower().startswith(prefix)]


class RecordingSink:
    """An aiosmtpd server on 127.0.0.1 that keeps every message it receives."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[Received] = []
        self._lock = threading.Lock()
        self._controller: Any = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        with self._lock:
            self.messages.append(Received(envelope.mail_from or "",
                                          tuple(envelope.rcpt_tos), bytes(data)))
        return "250 2.0.0 Ok: recorded"

    def start(self) -> None:
        from aiosmtpd.controller import Controller  # test dependency: imported on use

        self._controller = Controller(self, hostname="127.0.0.1", port=self.port,
                                      data_size_limit=0, decode_data=False)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def count(self) -> int:
        with self._lock:
            return len(self.messages)


class SmtpSinkProcess:
    """Postfix's ``smtp-sink`` on 127.0.0.1: accepts and discards, for throughput runs."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(
            [str(SBIN / "smtp-sink"), "-u", "postfix", f"127.0.0.1:{self.port}", "256"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, what="smtp-sink")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
            self._proc = None


# ---------------------------------------------------------------- the instance


@dataclass(frozen=True)
class SendResult:
    """Postfix's answer to one SMTP transaction (final reply; 250 when accepted)."""

    code: int
    text: str
    refused: dict[str, tuple[int, bytes]] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return 200 <= self.code < 300


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _chroot_off(line: str) -> str:
    """A master.cf service line with the chroot column set to n (test instance)."""
    fields = line.split()
    if len(fields) >= 8 and not line[:1].isspace() and not line.startswith("#"):
        fields[4] = "n"
        return " ".join(fields)
    return line


MASTER_CF = """\
# master.cf of a throwaway sealgate test instance (sealgate.devpostfix)
127.0.0.1:{smtp_port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class DevPostfix:
    """One throwaway Postfix instance; see the module docstring for the API.

    ``milter``: the ``smtpd_milters`` value (None: whatever the snippets
    say; with no snippets, no milter at all, e.g. a baseline benchmark).
    ``main_snippets`` / ``master_snippets``: files appended to main.cf /
    master.cf (deploy/postfix/*.cf are loaded this way by the end-to-end
    tests). In master snippets, the port of every ``HOST:PORT inet``
    service is replaced by :attr:`reinject_port` (one re-injection service
    is expected). ``settings``: main.cf lines written last (they win).
    ``sink``: ``"record"`` or ``"smtp-sink"``.
    """

    def __init__(self, *, milter: str | None = None,
                 main_snippets: Sequence[Path] = (), master_snippets: Sequence[Path] = (),
                 settings: dict[str, str] | None = None, sink: str = "record",
                 reinject: bool = True, parent: Path | None = None) -> None:
        problem = postfix_available()
        if problem:
            raise RuntimeError(problem)
        self.milter = milter
        self.main_snippets = [Path(p) for p in main_snippets]
        self.master_snippets = [Path(p) for p in master_snippets]
        self.settings = dict(settings or {})
        self.base = Path(tempfile.mkdtemp(prefix="sealgate-postfix-", dir=parent))
        self.base.chmod(0o755)  # the postfix user walks into spool/ and etc/
        self.etc = self.base / "etc"
        self.spool = self.base / "spool"
        self.data = self.base / "data"
        self.log_path = self.base / "maillog"
        self.smtp_port = free_port()
        self.sink_port = free_port()
        self.reinject_port: int | None = free_port() if reinject else None
        if sink == "record":
            self.sink: RecordingSink | SmtpSinkProcess = RecordingSink(self.sink_port)
        elif sink == "smtp-sink":
            self.sink = SmtpSinkProcess(self.sink_port)
        else:
            raise ValueError(f"sink {sink!r}: use \"record\" or \"smtp-sink\"")
        self.running = False

    # ------------------------------------------------------------ paths

    @property
    def milter_socket(self) -> Path:
        """Where a unix-socket milter listens for ``unix:sealgate/sealgate.sock``."""
        return self.spool / MILTER_SOCKET_NAME

    # ------------------------------------------------------------ config

    def main_cf(self) -> str:
        lines = [
            "# main.cf of a throwaway sealgate test instance (sealgate.devpostfix)",
            "compatibility_level = 3.6",
            f"queue_directory = {self.spool}",
            f"data_directory = {self.data}",
            "mail_owner = postfix",
            "setgid_group = postdrop",
            "myhostname = mx.example.com",
            "mydomain = example.com",
            "myorigin = $myhostname",
            "inet_interfaces = 127.0.0.1",
            "inet_protocols = ipv4",
            "mydestination =",
            "local_recipient_maps =",
            "mynetworks = 127.0.0.0/8",
            "smtpd_relay_restrictions = permit_mynetworks, reject",
            "smtpd_recipient_restrictions = permit_mynetworks, reject",
            f"relayhost = [127.0.0.1]:{self.sink_port}",
            "smtp_dns_support_level = disabled",
            "smtpd_peername_lookup = no",
            "biff = no",
            "message_size_limit = 104857600",
            "smtp_tls_security_level = none",
            "smtpd_tls_security_level = none",
            f"maillog_file = {self.log_path}",
            f"maillog_file_prefixes = {self.base}",
            "alias_maps =",
            "alias_database =",
            # Retry deferred mail quickly (tests flush explicitly anyway).
            "queue_run_delay = 5s",
            "minimal_backoff_time = 5s",
            "maximal_backoff_time = 10s",
            "milter_default_action = tempfail",
        ]
        for snippet in self.main_snippets:
            lines += ["", f"# ---- {snippet}", snippet.read_text().rstrip(), ""]
        if self.milter is not None:
            lines.append(f"smtpd_milters = {self.milter}")
        lines += [f"{k} = {v}" for k, v in self.settings.items()]
        return "\n".join(lines) + "\n"

    def master_cf(self) -> str:
        text = MASTER_CF.format(smtp_port=self.smtp_port)
        if self.reinject_port is not None and not self.master_snippets:
            # No deploy snippet given: a plain milter-less smtpd for re-injection.
            text += (f"127.0.0.1:{self.reinject_port} inet n - n - - smtpd\n"
                     "  -o smtpd_milters=\n  -o receive_override_options=no_milters\n")
        for snippet in self.master_snippets:
            body = snippet.read_text()
            if self.reinject_port is not None:
                body = re.sub(r"^(\S+):(\d+)(\s+inet\s)",
                              lambda m: f"127.0.0.1:{self.reinject_port}{m.group(3)}",
                              body, flags=re.MULTILINE)
            body = "\n".join(_chroot_off(line) for line in body.splitlines())
            text += f"\n# ---- {snippet}\n{body}\n"
        return text

    def _prepare(self) -> None:
        postfix_uid = pwd.getpwnam("postfix").pw_uid
        postfix_gid = grp.getgrnam("postfix").gr_gid
        self.etc.mkdir()
        self.spool.mkdir(mode=0o755)
        self.data.mkdir(mode=0o700)
        os.chown(self.data, postfix_uid, postfix_gid)
        (self.etc / "main.cf").write_text(self.main_cf())
        (self.etc / "master.cf").write_text(self.master_cf())
        sockdir = self.milter_socket.parent
        sockdir.mkdir(parents=True)
        os.chown(sockdir, 0, postfix_gid)
        sockdir.chmod(0o2770)  # setgid: the socket gets group postfix

    # ------------------------------------------------------------ lifecycle

    def postfix(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([POSTFIX, "-c", str(self.etc), *args], capture_output=True,
                              text=True, timeout=60, check=False)
        if check and proc.returncode != 0:
            raise RuntimeError(f"postfix -c {self.etc} {' '.join(args)} failed "
                               f"({proc.returncode}): {proc.stderr.strip()}\n"
                               f"maillog:\n{self.maillog()[-3000:]}")
        return proc

    def start(self) -> DevPostfix:
        try:
            self._prepare()
            self.sink.start()
            self.postfix("start")  # runs `postfix check` (creates the queue folders) itself
            self.running = True
            wait_port(self.smtp_port, what=f"Postfix smtpd ({self.log_path})")
            if self.reinject_port is not None:
                wait_port(self.reinject_port, what=f"Postfix re-injection smtpd ({self.log_path})")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, keep: bool = False) -> None:
        """Stop Postfix and the sink; remove the folder unless ``keep``."""
        if self.running:
            self.postfix("stop", check=False)
            self._wait_master_gone()
            self.running = False
        self.sink.stop()
        if not keep:
            shutil.rmtree(self.base, ignore_errors=True)

    def _wait_master_gone(self, timeout: float = 20.0) -> None:
        pid_file = self.spool / "pid" / "master.pid"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                pid = int(pid_file.read_text().split()[0])
                os.kill(pid, 0)
            except (OSError, ValueError, IndexError):
                return
            time.sleep(0.05)

    def __enter__(self) -> DevPostfix:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------ mail

    def send(self, raw: bytes, sender: str, recipients: Iterable[str], *,
             port: int | None = None, timeout: float = 60.0) -> SendResult:
        """Submit one message over SMTP; 4xx/5xx come back as a SendResult, not raised."""
        rcpts = list(recipients)
        with smtplib.SMTP("127.0.0.1", port or self.smtp_port, timeout=timeout,
                          local_hostname="client.test") as smtp:
            for step in (lambda: smtp.ehlo(), lambda: smtp.mail(sender)):
                code, text = step()
                if code >= 400:
                    return SendResult(code, _text(text))
            refused: dict[str, tuple[int, bytes]] = {}
            for rcpt in rcpts:
                code, text = smtp.rcpt(rcpt)
                if code >= 400:
                    refused[rcpt] = (code, text)
            if len(refused) == len(rcpts):
                code, text = next(iter(refused.values()))
                return SendResult(code, _text(text), refused)
            try:
                code, text = smtp.data(raw)
            except smtplib.SMTPResponseException as exc:  # the DATA command itself refused
                return SendResult(exc.smtp_code, _text(exc.smtp_error), refused)
            return SendResult(code, _text(text), refused)

    @staticmethod
    def queue_id(result: SendResult) -> str:
        """The queue id from Postfix's "250 2.0.0 Ok: queued as 4QXYZ" reply."""
        match = re.search(r"queued as (\w+)", result.text)
        if not match:
            raise ValueError(f"no queue id in the reply {result.code} {result.text!r}")
        return match.group(1)

    def smtp_source(self, *, messages: int, sessions: int = 1, size: int = 1024,
                    sender: str = "alice@example.com", recipient: str = "bob@example.com",
                    per_session: int | None = None, port: int | None = None,
                    timeout: float = 600.0) -> float:
        """Run ``smtp-source``; return the seconds it took (wall clock, for benchmarks)."""
        args = [str(SBIN / "smtp-source"), "-s", str(sessions), "-m", str(messages),
                "-l", str(size), "-f", sender, "-t", recipient, "-M", "example.com"]
        if per_session:
            args += ["-r", str(per_session)]
        args.append(f"127.0.0.1:{port or self.smtp_port}")
        started = time.monotonic()
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"smtp-source failed ({proc.returncode}): {proc.stderr.strip()}")
        return time.monotonic() - started

    # ------------------------------------------------------------ queue

    def queue(self) -> list[dict[str, Any]]:
        """The instance's queue, one dict per message (``postqueue -j``)."""
        proc = subprocess.run([str(SBIN / "postqueue"), "-c", str(self.etc), "-j"],
                              capture_output=True, text=True, timeout=30, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"postqueue -j failed: {proc.stderr.strip()}")
        return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]

    def flush(self) -> None:
        """Ask Postfix to retry deferred mail now."""
        subprocess.run([str(SBIN / "postqueue"), "-c", str(self.etc), "-f"],
                       capture_output=True, timeout=30, check=False)

    def release_hold(self, queue_id: str = "ALL") -> None:
        """``postsuper -H``: release mail Postfix holds (milter quarantine)."""
        subprocess.run([str(SBIN / "postsuper"), "-c", str(self.etc), "-H", queue_id],
                       capture_output=True, timeout=30, check=True)

    def sent_count(self) -> int:
        """Deliveries Postfix logged as sent (``status=sent``), whatever the sink."""
        return self.maillog().count(" status=sent ")

    def delete(self, queue_id: str, queue: str = "hold") -> None:
        """``postsuper -d QUEUE_ID QUEUE``: remove a message (e.g. the held copy after a release)."""
        subprocess.run([str(SBIN / "postsuper"), "-c", str(self.etc), "-d", queue_id, queue],
                       capture_output=True, timeout=30, check=True)

    def maillog(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_for(self, condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
        """Poll ``condition`` until truthy; TimeoutError names ``what`` and shows the log tail."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {timeout:.0f} s for {what}; maillog tail:\n"
                                   f"{self.maillog()[-2000:]}")
            time.sleep(0.05)


@contextlib.contextmanager
def running(**kwargs: Any) -> Any:
    """``with running(milter=...) as mta:`` — the same as ``with DevPostfix(...)``."""
    mta = DevPostfix(**kwargs)
    with mta:
        yield mta
