"""A real Postfix in front of a real ``sealgate milter`` process, for the operations tests.

The Postfix instance (sealgate.devpostfix) loads ``deploy/postfix/main.cf`` and
``deploy/postfix/master.cf`` as shipped (only the re-injection port is
rewritten): that is how the deploy snippets are checked. The milter runs as
``python -m sealgate milter`` on the snippet's socket,
``unix:sealgate/sealgate.sock`` under the instance's queue directory.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gateway_helpers import write_config
from need import need

from sealgate.devpki import TestPKI
from sealgate.devpostfix import DevPostfix, free_port, postfix_available
from sealgate.milterclient import wait_for_milter

REPO = Path(__file__).resolve().parents[1]
DEPLOY_POSTFIX = REPO / "deploy" / "postfix"


def require_postfix() -> None:
    """Fail in CI, skip elsewhere, when no throwaway Postfix can run here."""
    need(postfix_available())


def start_postfix() -> DevPostfix:
    require_postfix()
    return DevPostfix(main_snippets=[DEPLOY_POSTFIX / "main.cf"],
                      master_snippets=[DEPLOY_POSTFIX / "master.cf"]).start()


class SealgateProcess:
    """``sealgate milter`` for a DevPostfix: config in the socket folder, log to a file."""

    def __init__(self, mta: DevPostfix, pki: TestPKI, *, policy: str = "strict.toml",
                 directory: Path | None = None, metrics: bool = True) -> None:
        self.folder = mta.milter_socket.parent
        self.socket = mta.milter_socket
        self.metrics_port = free_port() if metrics else None
        self.config = write_config(self.folder, pki, policy=policy, directory=directory)
        text = self.config.read_text()
        # The socket Postfix is given by deploy/postfix/main.cf.
        text = re.sub(r'^socket = .*$', f'socket = "unix:{self.socket}"', text, flags=re.M)
        if metrics:
            text = text.replace('listen = ""', f'listen = "127.0.0.1:{self.metrics_port}"')
        # Releases go to the milter-less smtpd of deploy/postfix/master.cf.
        text = text.replace("[quarantine]\n",
                            f'[quarantine]\nrelease_smtp = "127.0.0.1:{mta.reinject_port}"\n')
        self.config.write_text(text)
        self.log = self.folder.parent.parent / "sealgate.log"  # beside the instance's maillog
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> SealgateProcess:
        with self.log.open("ab") as log:
            # PYTHONFAULTHANDLER: a milter that does not stop is asked (SIGABRT) to write
            # every thread's stack into its log before it is killed (see stop()).
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sealgate", "milter", "--config", str(self.config),
                 "--log-format", "json"], stderr=log, env={**os.environ, "PYTHONFAULTHANDLER": "1"})
        try:
            wait_for_milter(self.socket, self.proc)
            # Postfix's smtpd (user postfix) needs write permission: sealgate sets 0660.
            deadline = time.monotonic() + 10
            while self.socket.stat().st_mode & 0o060 != 0o060:
                assert time.monotonic() < deadline, f"socket {self.socket} never became group-writable"
                time.sleep(0.02)
        except BaseException:
            self.proc.kill()  # never leave a half-started milter behind
            self.proc.wait(timeout=30)
            raise
        return self

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)  # faulthandler: thread stacks into the log
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # never leave it running; the caller sees a failure
                self.proc.wait(timeout=30)
            tail = self.log.read_text(errors="replace")[-6000:]
            raise AssertionError(f"sealgate milter did not stop within 30 s of SIGTERM; "
                                 f"the end of its log {self.log}:\n{tail}") from None

    def hup(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:  # a traceback from a crash: keep it visible
                records.append({"msg": "unparsed", "line": line})
        return records

    def message_records(self) -> list[dict[str, Any]]:
        return [r for r in self.log_records() if r.get("msg") == "message"]

    def message_record(self, queue_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """The one per-message log line for ``queue_id``.

        The milter writes INFO lines in batches (at most 0.2 s after the
        message: sealgate.logging_setup.BatchedStreamHandler), so the line
        may follow Postfix's reply: wait for it.
        """
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.message_records() if r.get("queue_id") == queue_id]
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(found) == 1, f"{len(found)} log lines for queue id {queue_id} in {self.log}"
        return found[0]

    def scrape(self, path: str = "/metrics") -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.metrics_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback http
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()


def copy_directory(pki: TestPKI, dest: Path) -> Path:
    """A private copy of the published certificates (a test may take it away)."""
    shutil.copytree(pki.directory, dest)
    return dest


@pytest.fixture(scope="module")
def mta() -> Iterator[DevPostfix]:
    instance = start_postfix()
    try:
        yield instance
    finally:
        instance.stop()


def sample_value(exposition: str, name: str, labels: dict[str, str] | None = None) -> float:
    """The value of one sample in a Prometheus text exposition (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name and (labels is None or all(
                    sample.labels.get(k) == v for k, v in labels.items())):
                return float(sample.value)
    return 0.0
