"""A throwaway PostgreSQL server for tests, benchmarks and the demo.

``initdb`` into a fresh temporary folder, ``postgres`` listening on
127.0.0.1 on a free port (and a unix socket inside that folder), trust
authentication for the loopback only, then stopped and removed. PostgreSQL
refuses to run as root: when we are root, the folder is given to the
``postgres`` system user (the Debian package creates it) and every server
command runs as that user through ``runuser``.

    with DevPostgres() as pg:
        store = PostgresQuarantine(pg.url)
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PG_BIN_DIRS = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin",
               "/usr/lib/postgresql/15/bin")
INSTALL_HINT = "install the Debian package postgresql (make deps)"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL binaries here, or the server would not start (the message says why)."""


def find_bin() -> Path:
    for folder in PG_BIN_DIRS:
        if (Path(folder) / "initdb").is_file():
            return Path(folder)
    raise PostgresUnavailable(f"no initdb under {', '.join(PG_BIN_DIRS)}: {INSTALL_HINT}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DevPostgres:
    """One server; ``url`` names database ``sealgate`` as superuser ``sealgate``."""

    def __init__(self, user: str = "sealgate", database: str = "sealgate") -> None:
        self.bin = find_bin()
        self.user = user
        self.database = database
        self.port = free_port()
        # As root the server runs as postgres: its folder must not sit under a
        # private (0700) temporary folder such as pytest's, whatever TMPDIR says.
        root = os.geteuid() == 0
        # mkdtemp makes a fresh 0700 folder (no race on the shared /tmp).
        shared_tmp = "/tmp"  # noqa: S108
        self.folder = Path(tempfile.mkdtemp(prefix="sealgate-pg-", dir=shared_tmp if root else None))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self._as: list[str] = []
        self.started = False
        if root:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable(f"running as root and there is no postgres user to run "
                                          f"the server as: {INSTALL_HINT}") from None
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _cmd(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*self._as, *argv], capture_output=True, text=True,
                                timeout=timeout, check=False)
        if result.returncode != 0:
            raise PostgresUnavailable(f"{' '.join(argv[:2])} failed ({result.returncode}): "
                                      f"{(result.stderr or result.stdout).strip()[-2000:]}")
        return result

    def start(self) -> DevPostgres:
        self._cmd(str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user,
                  "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                       f"unix_socket_directories = '{self.folder}'\n"
                       "max_connections = 40\nshared_buffers = 16MB\n")
        self._cmd(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                  "-w", "-t", "60", "start")
        self.started = True
        self._cmd(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                  "-U", self.user, self.database)
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1",
                                     "-p", str(self.port)], capture_output=True, check=False)
            if result.returncode == 0:
                return
            time.sleep(0.1)
        raise PostgresUnavailable(f"PostgreSQL on 127.0.0.1:{self.port} not ready; see {self.log}")

    def stop(self) -> None:
        if self.started:
            with contextlib.suppress(PostgresUnavailable, subprocess.TimeoutExpired):
                self._cmd(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                          "-w", "stop")
            self.started = False
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> DevPostgres:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
