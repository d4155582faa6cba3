"""Several milter processes on one socket (``[milter] workers`` > 1).

A Python milter runs every callback under one interpreter lock, so one
process uses at most one core, and while one connection's end of message is
judged the others wait for the lock. With ``workers = N`` the supervisor
(:func:`run_workers`, the process ``sealgate milter`` started) registers with
libmilter and opens the listening socket once, then forks N workers. Each
worker loads its own gateway and quarantine store and serves that socket with
the usual milter (:func:`sealgate.milter_app.run`); the kernel hands each new
connection to one of them. The supervisor

- serves ``/metrics`` and ``/healthz``: every worker's counters and
  histograms added up (prometheus-client's multiprocess files, in a private
  temporary folder; a worker that exited still counts), the gauges and the
  health read in the supervisor;
- forwards SIGHUP: it reloads its own configuration (for ``/healthz``) and
  each worker reloads its own, each refusing a configuration that does not load;
- restarts a worker that dies, after 1 s, doubling up to a minute while
  workers keep dying within seconds of their start; after five such deaths in
  a row it stops and exits with an error;
- on SIGTERM or SIGINT closes its copy of the socket and stops the workers,
  each of which drains its messages in flight as a single milter does, then
  exits once all are gone (workers still busy after ``timeout`` + 15 s are
  killed; Postfix retries their messages).

A worker whose supervisor vanishes (SIGKILL) stops by itself within a second.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import shutil
import signal
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import Milter

from .errors import SealgateError
from .logging_setup import flush_logs
from .logging_setup import kv as _kv
from .metrics import Metrics, MetricsServer, share_metrics
from .milter_app import ACTIONS, Gateway, Live, reload_gateway, run, serve_metrics, share_socket
from .quarantine import QuarantineStore, open_store
from .wakeup import Wakeup

log = logging.getLogger("sealgate.workers")

# pymilter's C module (libmilter), literally named "milter": untyped, and
# shadowed for mypy by this project's source folder of the same name.
milter: Any = importlib.import_module("milter")

# A worker that exits sooner than this after its start failed to start.
STARTUP_SECONDS = 5.0
MAX_QUICK_DEATHS = 5  # in a row: the supervisor gives up
FIRST_BACKOFF, MAX_BACKOFF = 1.0, 60.0
# Beyond the workers' own drain (the milter timeout), how long a stop waits before SIGKILL.
STOP_GRACE = 15.0


def open_socket(socket: str, timeout: float) -> list[int]:
    """Register with libmilter and open its listening socket in this process, without serving it.

    ``Milter.runmilter`` sets the callbacks, registers, opens the socket and
    then serves it (``milter.main``); here it stops before serving: the
    workers forked afterwards serve the socket they inherit. Returns the
    socket's file descriptors, which the supervisor closes when it stops.
    """
    Milter.set_flags(ACTIONS)  # read by smfi_register
    before = _sockets()
    serve = milter.main
    milter.main = lambda: None
    try:
        Milter.runmilter("sealgate", socket, int(timeout))
    except milter.error as exc:
        raise SealgateError(f"the milter could not listen on {socket}: {exc}") from None
    finally:
        milter.main = serve
    return sorted(_sockets() - before)


def _sockets() -> set[int]:
    """This process's open file descriptors that are sockets."""
    found = set()
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own descriptor is gone by now
            if stat.S_ISSOCK(os.fstat(int(name)).st_mode):
                found.add(int(name))
    return found


@dataclass
class _Worker:
    number: int
    pid: int
    started: float


class Supervisor:
    """Forks, watches, restarts and stops the workers (see the module docstring)."""

    def __init__(self, count: int, work: Callable[[int], int]) -> None:
        self.count = count
        self.work = work  # runs in the child: the worker's exit status
        self.workers: dict[int, _Worker] = {}  # by pid
        self.due: dict[int, float] = {}  # worker number -> when to start it again
        self.quick_deaths = 0
        self.backoff = FIRST_BACKOFF
        self.failed = ""

    def start_all(self) -> None:
        for number in range(1, self.count + 1):
            self.spawn(number)

    def spawn(self, number: int) -> None:
        for stream in (sys.stdout, sys.stderr):  # nothing buffered is written twice
            with contextlib.suppress(Exception):
                stream.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            status = 1
            try:
                status = self.work(number)
            except BaseException:  # its last words, then out without the parent's cleanup
                with contextlib.suppress(Exception):
                    log.exception("worker %d failed", number)
            finally:
                with contextlib.suppress(Exception):
                    flush_logs()  # os._exit skips logging.shutdown: batched lines go now
                    sys.stderr.flush()
                os._exit(status)
        self.workers[pid] = _Worker(number, pid, time.monotonic())
        log.info("event=worker-started worker=%d pid=%d", number, pid)

    def reap(self, stopping: bool) -> None:
        """Collect exited workers; schedule restarts unless stopping."""
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            how = f"signal {-code}" if code < 0 else f"status {code}"
            if stopping:
                log.info("event=worker-stopped worker=%d pid=%d %s", worker.number, pid,
                         "status=0" if code == 0 else f"exit={_kv(how)}")
                continue
            lived = time.monotonic() - worker.started
            if lived < STARTUP_SECONDS:
                self.quick_deaths += 1
                if self.quick_deaths >= MAX_QUICK_DEATHS:
                    self.failed = (f"worker {worker.number} exited with {how} "
                                   f"{lived:.1f} s after its start, {self.quick_deaths} "
                                   "quick exits in a row; see the log above")
                    return
                delay = self.backoff
                self.backoff = min(self.backoff * 2, MAX_BACKOFF)
            else:
                self.quick_deaths = 0
                self.backoff = FIRST_BACKOFF
                delay = FIRST_BACKOFF
            log.error("event=worker-died worker=%d pid=%d exit=%s: restarting it in %.0f s",
                      worker.number, pid, _kv(how), delay)
            self.due[worker.number] = time.monotonic() + delay

    def restart_due(self) -> None:
        now = time.monotonic()
        for number, when in sorted(self.due.items()):
            if when <= now:
                del self.due[number]
                self.spawn(number)

    def signal_all(self, signum: int) -> None:
        for pid in list(self.workers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def stop(self, grace: float) -> None:
        """SIGTERM every worker, wait up to ``grace`` seconds, then SIGKILL the rest."""
        self.due.clear()
        self.signal_all(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self.workers and time.monotonic() < deadline:
            self.reap(stopping=True)
            if self.workers:
                time.sleep(0.05)
        if self.workers:
            log.warning("event=workers-killed pids=%s: still busy %.0f s after SIGTERM; "
                        "Postfix retries their messages",
                        _kv(",".join(map(str, sorted(self.workers)))), grace)
            self.signal_all(signal.SIGKILL)
            for pid in list(self.workers):
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
            self.workers.clear()


def _exit_with_parent(parent: int) -> None:
    """In a worker: SIGTERM ourselves (drain, exit) once the supervisor is gone."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        log.error("event=supervisor-gone: stopping this worker")
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()


def _pin(number: int, cpus: list[int]) -> int | None:
    """Keep worker ``number`` (from 1) on one of ``cpus``, round robin; the CPU, or None.

    A worker that stays on one CPU keeps its caches there: with Postfix on the
    same cores, a worker the scheduler moves between CPUs starts each message
    cold (bench/through_postfix.py, six alternating runs: end-of-message p50
    0.6 ms pinned, 0.9 ms not; 84% of the no-op milter's throughput against
    80%). A CPU that cannot be had (taken away since start) leaves the worker
    unpinned, with a warning.
    """
    cpu = cpus[(number - 1) % len(cpus)]
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as exc:
        log.warning("event=worker-not-pinned worker=%d cpu=%d error=%s", number, cpu,
                    _kv(exc.strerror or str(exc)))
        return None
    return cpu


def run_workers(gateway: Gateway, load: Callable[[], Gateway], count: int, *,
                store: QuarantineStore | None = None, metrics_listen: str = "",
                drain_timeout: float | None = None, handle_signals: bool = True) -> None:
    """Serve the milter with ``count`` worker processes until SIGTERM/SIGINT (module docstring).

    ``gateway`` is the configuration the supervisor has loaded (its socket,
    timeout and health); each worker loads its own with ``load``. ``store``
    (default: opened from the configuration) only counts held messages for
    the metrics.
    """
    config = gateway.config
    socket, timeout = config.milter.socket, float(config.milter.timeout)
    shared = tempfile.mkdtemp(prefix="sealgate-metrics-")  # 0700
    store = store if store is not None else open_store(config.quarantine)
    supervisor_pid = os.getpid()
    # [milter] pin_workers: the CPUs this process may use, shared out among the workers.
    cpus = sorted(os.sched_getaffinity(0)) if config.milter.pin_workers else []
    try:
        share_metrics(shared)
        metrics = Metrics(shared_dir=shared)
        sockets = open_socket(socket, timeout)
        share_socket(socket, time.monotonic() + 10)

        def work(number: int) -> int:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
                signal.signal(signum, signal.SIG_DFL)  # run() installs the worker's own
            _exit_with_parent(supervisor_pid)
            cpu = _pin(number, cpus) if cpus else None
            try:
                mine = load()
                own_store = open_store(mine.config.quarantine)
            except SealgateError as exc:
                log.error("worker %d cannot start: %s", number, exc)
                return 2
            log.info("event=worker-ready worker=%d socket=%s cpu=%s", number, _kv(socket),
                     "-" if cpu is None else cpu)
            run(mine, socket, timeout, store=own_store, metrics=Metrics(shared_dir=shared),
                reload=load, serve=milter.main, drain_timeout=drain_timeout,
                handle_signals=True)
            return 0

        _supervise(Supervisor(count, work), gateway, load, store, metrics, metrics_listen,
                   sockets, timeout if drain_timeout is None else drain_timeout, handle_signals)
    finally:
        store.close()
        shutil.rmtree(shared, ignore_errors=True)


def _supervise(supervisor: Supervisor, gateway: Gateway, load: Callable[[], Gateway],
               store: QuarantineStore, metrics: Metrics, metrics_listen: str,
               sockets: list[int], drain: float, handle_signals: bool) -> None:
    live = Live(gateway)
    wake = Wakeup()  # not threading.Event: the signal handlers set it (sealgate.wakeup)
    hups: list[int] = []

    def on_stop(signum: int, frame: Any) -> None:
        wake.stop()

    def on_hup(signum: int, frame: Any) -> None:
        hups.append(signum)
        wake.set()

    def on_child(signum: int, frame: Any) -> None:
        wake.set()

    previous: dict[int, Any] = {}
    if handle_signals:
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, on_stop)
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, on_hup)
    previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, on_child)
    server: MetricsServer | None = None
    try:
        supervisor.start_all()  # before any thread of ours runs: a clean fork
        if metrics_listen:
            server = serve_metrics(metrics_listen, metrics, store, live)
        log.info("sealgate milter listening with %d workers", supervisor.count)
        while not wake.stopping:
            wake.wait(0.5)
            supervisor.reap(stopping=False)
            if supervisor.failed:
                raise SealgateError(supervisor.failed)
            supervisor.restart_due()
            while hups and not wake.stopping:
                hups.clear()
                reload_gateway(live, load, metrics)  # the supervisor's own, for /healthz
                supervisor.signal_all(signal.SIGHUP)
    finally:
        for fd in sockets:  # no new connection waits for a worker that is stopping
            with contextlib.suppress(OSError):
                os.close(fd)
        supervisor.stop(drain + STOP_GRACE)
        if server is not None:
            server.stop()
        for number, handler in previous.items():
            signal.signal(number, handler)
        wake.close()
        log.info("sealgate milter stopped")
