"""Through Postfix: msgs/s and milter time, loaded by ``smtp-source``, relayed to ``smtp-sink``.

    .venv/bin/python -m bench.through_postfix [--size 10KB] [--messages 600] [--runs 3]

For each setup, a throwaway Postfix (:mod:`sealgate.devpostfix`, as root)
relays to Postfix's ``smtp-sink``; ``smtp-source -F`` sends the same
``openssl cms`` triple-wrapped message (alice to bob) ``--messages`` times
over ``--sessions`` parallel SMTP sessions, ``--runs`` times. Setups:

- ``no milter``: Postfix alone;
- ``no-op milter``: :class:`bench.milters.NoopMilter`, reads everything, accepts;
- ``sealgate files``: ``sealgate milter``, ``policies/strict.toml``, the
  ``files`` directory, ``[milter] workers`` = this machine's cores, each worker
  kept on its own core (``pin_workers = true``);
- ``sealgate ldap``: the same with the ``ldap`` backend on a throwaway slapd
  (:mod:`sealgate.devslapd`), when this tree has that backend;
- on request: ``sealgate files 1 worker`` (one milter process; any ``N workers``);
  ``sealgate files unpinned`` (the workers left to the scheduler);
  ``no-op milter +headers`` (the no-op milter prepending two header fields,
  as sealgate does: Postfix's share of the difference); ``no-op milter inet``
  and ``sealgate files inet``: the same milters on ``inet:PORT@127.0.0.1``
  instead of a unix socket.

Milters listen on a unix socket (``unix:sealgate/sealgate.sock`` under the
queue directory) unless the setup says ``inet``. msgs/s is messages over the wall time of ``smtp-source``
(Postfix answers 250 only after the milter's end-of-message reply); between
runs the queue is left to drain to the sink, and runs alternate between the
setups (all started up front) so that other load on the machine touches each
alike. The sealgate setups must log every message as accepted. Milter time
and milter CPU are measured inside the milter process (:mod:`bench.milters`,
``/proc``). Each figure is the median over the runs; p50/p99 and the mean
milter time (what a session waits for the milter on average, which with a
fixed number of sessions costs throughput) are per run, then the median of
those. ``all CPU`` is the whole machine's busy CPU time over a run (/proc/stat:
Postfix, smtp-source, smtp-sink, the milter, the kernel's threads) per
message: on this 2-core machine the load keeps both CPUs busy, and this is
then what sets msgs/s.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket as socket_module
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.serialization import Encoding

from sealgate import devmail
from sealgate.devpki import TestPKI
from sealgate.milterclient import wait_for_milter

from . import inputs
from .milters import read_times
from .timing import median, percentile

if TYPE_CHECKING:
    from sealgate.devpostfix import DevPostfix
    from sealgate.devslapd import Slapd

Log = Callable[[str], object]
SETUPS = ("no milter", "no-op milter", "sealgate files", "sealgate ldap")
# The same milters on inet:PORT@127.0.0.1 (SPEC §4 says why unix sockets are the default).
INET_SETUPS = ("no-op milter inet", "sealgate files inet")
OPTIONAL_SETUPS = ("sealgate files 1 worker", "sealgate files unpinned",
                   "no-op milter +headers") + INET_SETUPS
# sealgate's worker processes (``[milter] workers``): one per core, each kept on its own
# core (``pin_workers``), as deployed on a busy gateway.
WORKERS = os.cpu_count() or 1


@dataclass
class PostfixRow:
    setup: str
    runs: list[float] = field(default_factory=list)  # msgs/s per run
    p50: list[float] = field(default_factory=list)  # milter seconds, per run
    p99: list[float] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)  # what the SMTP sessions wait on average
    eom_p50: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # milter CPU seconds per message, per run
    machine: list[float] = field(default_factory=list)  # every process's CPU seconds per message
    judged: int = 0  # messages the milter timed
    note: str = ""  # why the setup did not run, or what it saw

    @property
    def rate(self) -> float:
        return median(self.runs)


def postfix_problem() -> str | None:
    """None when a throwaway Postfix can run here, else why not."""
    try:
        from sealgate.devpostfix import postfix_available
    except ImportError as exc:
        return f"sealgate.devpostfix is not available ({exc})"
    return postfix_available()


def ldap_problem(pki: TestPKI, work: Path) -> str | None:
    """None when this tree's gateway loads with ``directory.backend = "ldap"``."""
    try:
        from sealgate import devslapd
    except ImportError as exc:
        return f"sealgate.devslapd is not available ({exc})"
    if devslapd.missing_tools():
        return f"slapd is missing: {', '.join(devslapd.missing_tools())}"
    from sealgate.engine import load_gateway
    from sealgate.errors import SealgateError
    config = inputs.write_config(work / "ldap-probe", pki, directory="ldap",
                                 ldap_url="ldap://127.0.0.1:9", ldap_base="ou=people,dc=example,dc=com")
    try:
        load_gateway(config)
    except SealgateError as exc:
        return f"the ldap backend does not load: {exc}"
    except Exception as exc:  # noqa: BLE001 - a half-built backend may fail in any way
        return f"the ldap backend does not load: {type(exc).__name__}: {exc}"
    return None


def smtp_source(mta: DevPostfix, message: Path, *, messages: int, sessions: int) -> float:
    """``smtp-source -F``: the file's lines (LF ends) go out as CRLF lines; wall seconds."""
    from sealgate.devpostfix import SBIN
    args = [str(SBIN / "smtp-source"), "-s", str(sessions), "-m", str(messages), "-F", str(message),
            "-f", inputs.SENDER, "-t", inputs.RECIPIENTS[0], "-M", "client.example.com",
            f"127.0.0.1:{mta.smtp_port}"]
    started = time.monotonic()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=900, check=False)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"smtp-source failed ({proc.returncode}): {proc.stderr.strip()[-500:]}\n"
                           f"maillog tail:\n{mta.maillog()[-1500:]}")
    return elapsed


def machine_cpu_seconds() -> float:
    """CPU time the whole machine has spent busy since boot, all CPUs (/proc/stat).

    Busy is user, nice, system, irq and softirq time (not idle, iowait or
    the hypervisor's steal). While the load runs, Postfix,
    smtp-source, smtp-sink and the milter share the CPUs: per message, this
    is what the whole relay costs, and once the CPUs are saturated it is what
    sets the throughput.
    """
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = sum(fields[i] for i in (0, 1, 2, 5, 6))  # user nice system irq softirq
    return busy / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, its threads, and its child processes (/proc).

    Children count whether running (sealgate's workers) or exited and reaped.
    """
    def ticks(stat_path: str, with_reaped: bool) -> int:
        fields = Path(stat_path).read_text().rpartition(")")[2].split()
        own = int(fields[11]) + int(fields[12])
        return own + (int(fields[13]) + int(fields[14]) if with_reaped else 0)

    total = ticks(f"/proc/{pid}/stat", True)
    for entry in os.listdir("/proc"):
        if entry.isdigit() and entry != str(pid):
            try:
                text = Path(f"/proc/{entry}/stat").read_text()
                if int(text.rpartition(")")[2].split()[1]) == pid:
                    total += ticks(f"/proc/{entry}/stat", False)
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
    return total / os.sysconf("SC_CLK_TCK")


def _drained(mta: DevPostfix) -> bool:
    return not mta.queue()


def _start_milter(setup: str, mta: DevPostfix, work: Path, pki: TestPKI, times: Path,
                  ldap: Slapd | None = None,
                  inet_port: int | None = None) -> subprocess.Popen[bytes] | None:
    socket = f"inet:{inet_port}@127.0.0.1" if inet_port else f"unix:{mta.milter_socket}"
    if setup == "no milter":
        return None
    if setup.startswith("no-op milter"):
        argv = ["noop", "--socket", socket] + (["--headers"] if setup.endswith("+headers") else [])
    else:
        words = setup.split()
        workers = int(words[-2]) if words[-1] in ("worker", "workers") else WORKERS
        pin = workers > 1 and words[-1] != "unpinned"
        if ldap is not None:
            config = inputs.write_config(work / "gw-ldap", pki, directory="ldap", ldap_url=ldap.url,
                                         ldap_base=ldap.people_dn, socket=socket, workers=workers,
                                         pin_workers=pin)
        else:
            config = inputs.write_config(work / f"gw-{setup.replace(' ', '-')}", pki, socket=socket,
                                         workers=workers, pin_workers=pin)
        argv = ["sealgate", "--config", str(config)]
    with _log_path(work, setup).open("wb") as log:
        # umask 007: the socket must be writable by group postfix (the folder is setgid postfix).
        proc = subprocess.Popen([sys.executable, "-m", "bench.milters", *argv, "--times", str(times)],
                                stderr=log, stdout=log, umask=0o007, cwd=inputs.ROOT)
    try:
        if inet_port:
            _wait_tcp(inet_port, proc)
        else:
            wait_for_milter(mta.milter_socket, proc)
    except (RuntimeError, TimeoutError) as exc:
        stop_milter(proc)
        raise RuntimeError(f"{setup}: {exc}; its log:\n{_log_path(work, setup).read_text()[-1500:]}") \
            from None
    return proc


def _wait_tcp(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the milter exited with status {proc.returncode}")
        try:
            with socket_module.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"no milter listening on 127.0.0.1:{port} after {timeout:.0f} s")


def _log_path(work: Path, setup: str) -> Path:
    return work / f"{setup.replace(' ', '-')}.log"


def stop_milter(proc: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM a milter child, then SIGKILL if it has not exited within 30 s."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _with_slapd(pki: TestPKI, work: Path) -> Slapd:
    from sealgate.devslapd import Slapd
    ldap = Slapd(work / "slapd").start()
    try:
        for name, ident in pki.users.items():
            if name != "mallory":  # issued by the untrusted CA: not published
                ldap.add_person(ident.email, ident.cert.public_bytes(Encoding.DER))
        return ldap
    except BaseException:
        ldap.stop()
        raise


@dataclass
class _Running:
    """One setup, started: its Postfix, its milter (if any), its slapd (if any)."""

    row: PostfixRow
    mta: DevPostfix
    proc: subprocess.Popen[bytes] | None
    times: Path
    log: Path
    ldap: Slapd | None = None
    sent: int = 0

    def stop(self) -> None:
        stop_milter(self.proc)
        self.mta.stop()
        if self.ldap is not None:
            self.ldap.stop()


def known_setup(setup: str) -> bool:
    """One of SETUPS or OPTIONAL_SETUPS, or ``sealgate files N workers``."""
    return setup in SETUPS + OPTIONAL_SETUPS or bool(re.fullmatch(r"sealgate files \d+ workers?", setup))


def start_setup(setup: str, pki: TestPKI, work: Path) -> _Running | PostfixRow:
    """Postfix (+ milter, + slapd) for one setup; a PostfixRow with a note when it cannot run."""
    from sealgate.devpostfix import DevPostfix, free_port
    if not known_setup(setup):
        raise ValueError(f"unknown setup {setup!r}: use {', '.join(SETUPS + OPTIONAL_SETUPS)}")
    row = PostfixRow(setup)
    ldap = None
    if setup == "sealgate ldap":
        problem = ldap_problem(pki, work)
        if problem:
            row.note = problem
            return row
        ldap = _with_slapd(pki, work)
    times = work / f"{setup.replace(' ', '-')}.times"
    inet_port = free_port() if setup.endswith(" inet") else None
    milter = (None if setup == "no milter" else
              f"inet:127.0.0.1:{inet_port}" if inet_port else "unix:sealgate/sealgate.sock")
    mta = DevPostfix(milter=milter, sink="smtp-sink", reinject=False)
    try:
        mta.start()
        proc = _start_milter(setup, mta, work, pki, times, ldap, inet_port)
    except BaseException:
        mta.stop()
        if ldap is not None:
            ldap.stop()
        raise
    return _Running(row, mta, proc, times, _log_path(work, setup), ldap)


def run_once(r: _Running, message: Path, *, messages: int, sessions: int, label: str,
             record: bool = True) -> None:
    """One smtp-source run against a started setup, then wait for its queue to drain."""
    mta = r.mta
    before = len(read_times(r.times)[0])
    cpu_before = cpu_seconds(r.proc.pid) if r.proc is not None else 0.0
    machine_before = machine_cpu_seconds()
    elapsed = smtp_source(mta, message, messages=messages, sessions=sessions)
    machine = machine_cpu_seconds() - machine_before
    r.sent += messages
    if record:
        r.row.runs.append(messages / elapsed)
        r.row.machine.append(machine / messages)
        if r.proc is not None:
            r.row.cpu.append((cpu_seconds(r.proc.pid) - cpu_before) / messages)
        milter_s, eom_s = read_times(r.times)
        milter_s, eom_s = milter_s[before:], eom_s[before:]
        r.row.judged += len(milter_s)
        if milter_s:
            r.row.p50.append(percentile(milter_s, 50))
            r.row.p99.append(percentile(milter_s, 99))
            r.row.mean.append(sum(milter_s) / len(milter_s))
            r.row.eom_p50.append(percentile(eom_s, 50))
    mta.wait_for(lambda: _drained(mta), f"the queue of {r.row.setup} to drain after {label} "
                 "(held or deferred mail means the milter did not accept)", timeout=300)


def _accepted(r: _Running, expected: int, wait: float = 5.0) -> int:
    """Messages the sealgate milter logged as accepted (one log line per message).

    The milter writes its INFO lines in batches, up to 0.2 s late: wait up to
    ``wait`` seconds for the count to reach ``expected``.
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            count = r.log.read_text(errors="replace").count(" action=accept ")
        except OSError:
            count = 0
        if count >= expected or time.monotonic() > deadline:
            return count
        time.sleep(0.1)


KEPT_LOGS = inputs.ROOT / "bench" / "out"


def _keep_log(r: _Running) -> str:
    """What the milter logged besides acceptances, and a copy of its log to look into."""
    try:
        text = r.log.read_text(errors="replace")
    except OSError as exc:
        return f"log unreadable: {exc}"
    seen: Counter[str] = Counter()
    for line in text.splitlines():
        if " action=" in line:
            action = line.split(" action=", 1)[1].split(" ", 1)[0]
            error = line.split(" error=", 1)[1].split(" ", 1)[0] if " error=" in line else ""
            if action != "accept":
                seen[f"action={action}" + (f" error={error}" if error else "")] += 1
        elif " WARNING " in line or " ERROR " in line:
            seen[line.split(": ", 1)[-1][:100]] += 1
    KEPT_LOGS.mkdir(parents=True, exist_ok=True)
    copy = KEPT_LOGS / f"{time.strftime('%Y%m%dT%H%M%S')}-{r.row.setup.replace(' ', '-')}.log"
    shutil.copyfile(r.log, copy)
    shown = "; ".join(f"{n} x {what}" for what, n in seen.most_common(3)) or "nothing else logged"
    return f"{shown}; log kept as {copy}"


def measure(size: int, *, messages: int, sessions: int, runs: int, setups: tuple[str, ...] = SETUPS,
            work: Path | None = None, log: Log = print) -> tuple[int, list[PostfixRow]]:
    """Build the message, start every setup, and run them in turn ``runs`` times.

    Runs alternate between setups (a, b, c, d, a, b, ...) so that a change in
    the machine's other load touches every setup alike. Returns (size, rows).
    """
    problem = postfix_problem()
    with tempfile.TemporaryDirectory(prefix="sealgate-bench-postfix-") as tmp:
        root = work or Path(tmp)
        root.chmod(0o755)
        if problem:
            return 0, [PostfixRow(s, note=problem) for s in setups]
        pki = inputs.pki_in(root / "pki")
        raw = inputs.triple_wrapped(pki, size)
        message = root / "message.lf"
        # smtp-source -F sends each line with CRLF appended: give it LF line ends.
        message.write_bytes(devmail.to_lf(raw))
        started: list[_Running] = []
        rows: list[PostfixRow] = []
        try:
            for setup in setups:
                log(f"postfix: starting {setup}")
                got = start_setup(setup, pki, root)
                if isinstance(got, PostfixRow):
                    rows.append(got)
                    continue
                rows.append(got.row)
                started.append(got)
                run_once(got, message, messages=max(sessions * 2, 20), sessions=sessions,
                         label="the warm-up", record=False)
            for run in range(runs):
                for r in started:
                    run_once(r, message, messages=messages, sessions=sessions, label=f"run {run + 1}")
                    log(f"postfix: {r.row.setup}: run {run + 1}/{runs}: {r.row.runs[-1]:.0f} msgs/s")
            for r in started:
                if r.proc is not None and r.proc.poll() is not None:
                    r.row.note = f"the milter exited with status {r.proc.returncode}"
                elif r.row.setup.startswith("sealgate"):
                    accepted = _accepted(r, r.sent)
                    if accepted != r.sent:
                        r.row.note = (f"only {accepted} of {r.sent} messages logged as accepted: "
                                      + _keep_log(r))
        finally:
            for r in started:
                r.stop()
        return len(raw), rows


def report(size: int, rows: list[PostfixRow]) -> str:
    lines = [f"through Postfix, {size / 1000:.1f} KB triple-wrapped message, smtp-source -> "
             f"Postfix -> smtp-sink",
             f"{'setup':<16} {'msgs/s':>8} {'runs':>22} {'milter p50':>11} {'p99':>8} "
             f"{'mean':>8} {'eom p50':>8} {'CPU/msg':>8} {'all CPU':>8}"]
    for row in rows:
        if not row.runs:
            lines.append(f"{row.setup:<16} {'-':>8}  not run: {row.note}")
            continue
        runs = "/".join(f"{r:.0f}" for r in row.runs)
        ms = (f"{median(row.p50) * 1e3:9.2f}ms {median(row.p99) * 1e3:6.2f}ms "
              f"{median(row.mean) * 1e3:6.2f}ms "
              f"{median(row.eom_p50) * 1e3:6.2f}ms {median(row.cpu) * 1e3:6.2f}ms"
              ) if row.p50 else f"{'-':>11} {'-':>8} {'-':>8} {'-':>8} {'-':>8}"
        ms += f" {median(row.machine) * 1e3:6.2f}ms"
        lines.append(f"{row.setup:<16} {row.rate:8.1f} {runs:>22} {ms}"
                     + (f"  ({row.note})" if row.note else ""))
    return "\n".join(lines)


def main() -> None:
    from .check_rate import parse_sizes
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="10KB", type=lambda s: parse_sizes(s)[0])
    ap.add_argument("--messages", type=int, default=600)
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--setups", default=",".join(SETUPS),
                    type=lambda s: tuple(x.strip() for x in s.split(",")))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("through_postfix: Postfix must be started as root")
    size, rows = measure(args.size, messages=args.messages, sessions=args.sessions, runs=args.runs,
                         setups=args.setups)
    print(report(size, rows))


if __name__ == "__main__":
    main()
