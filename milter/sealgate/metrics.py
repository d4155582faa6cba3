"""Prometheus metrics (SPEC §8) and the ``/metrics`` + ``/healthz`` HTTP endpoint.

The metric names and labels are a contract with dashboards and alert rules
(``deploy/prometheus/``): they are defined here once, on a dedicated
:class:`~prometheus_client.CollectorRegistry` (never the process-global one,
so tests and two gateways in one process do not collide).

``/healthz`` answers 200 only when the gateway can judge mail: config,
policy and trust anchors loaded and, for every issuer whose revocation is
checked, a CRL that is valid now (before its nextUpdate). Otherwise 503 with
the reason in the body, so ``curl`` and the container healthcheck show why.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from asn1crypto import x509
from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from .batching import BatchThread

log = logging.getLogger("sealgate.metrics")

# Seconds per message: most take milliseconds; the tail is directory / CRL trouble.
MESSAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
DIRECTORY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)

# Values of sealgate_directory_lookups_total{result}.
FOUND, NOT_FOUND, ERROR = "found", "not-found", "error"


# Updates wait at most this long before they reach the counters (see Updates).
FLUSH_SECONDS = 0.25


class Updates:
    """Counter and histogram updates made on the message path, applied in batches.

    A message makes about a dozen updates (its counter and histogram, about
    three per directory lookup). Each is prometheus-client Python code, and a
    shared value (``workers``) is also a locked write to a memory-mapped
    file: under load, with the caches cold, they were about a tenth of the
    milter's own CPU per message. Here a message thread queues the update (a
    :class:`sealgate.batching.BatchThread`); that thread applies what
    gathered every ``flush_seconds`` while updates come (a counter once per
    batch, whatever it counted), and :meth:`flush` does at once (each
    scrape, the end of ``sealgate milter``).

    What this costs: a scrape from another process (the supervisor of
    ``workers``) sees a worker's updates up to ``flush_seconds`` late, and a
    worker killed outright (SIGKILL) loses at most its last ``flush_seconds``
    of updates; a SIGTERM drain flushes. Thread-safe; a forked child starts
    empty (its parent's pending updates are the parent's).
    """

    def __init__(self, flush_seconds: float = FLUSH_SECONDS) -> None:
        self._flush_seconds = flush_seconds
        self._reset()
        _ALL_UPDATES.add(self)

    def _reset(self) -> None:
        # (counter or histogram, amount, True for a counter's inc)
        self._batches: BatchThread[tuple[Any, float, bool]] = BatchThread(
            "metrics-flush", self._apply, gather=self._flush_seconds, hold_first=True,
            max_pending=1_000_000, on_full=lambda: log.warning(
                "event=metrics-update-dropped error=%s", "queue full: the flushes stopped"))

    @property
    def flush_seconds(self) -> float:
        return self._flush_seconds

    @flush_seconds.setter
    def flush_seconds(self, seconds: float) -> None:
        self._flush_seconds = self._batches.gather = seconds

    def inc(self, counter: Any, amount: float = 1.0) -> None:
        """``counter.inc(amount)``, applied with the next batch."""
        self._batches.record((counter, amount, True))

    def observe(self, histogram: Any, value: float) -> None:
        """``histogram.observe(value)``, applied with the next batch."""
        self._batches.record((histogram, value, False))

    def flush(self) -> None:
        """Apply every pending update now."""
        self._batches.drain()

    @staticmethod
    def _apply(batch: list[tuple[Any, float, bool]]) -> None:
        counts: dict[Any, float] = {}
        for metric, amount, counter in batch:
            if counter:
                counts[metric] = counts.get(metric, 0.0) + amount
            else:
                _applied(metric.observe, amount)
        for metric, amount in counts.items():
            _applied(metric.inc, amount)


def _applied(update: Callable[[float], None], amount: float) -> None:
    try:
        update(amount)
    except Exception:  # noqa: BLE001 - a metric must never stop the flushes
        log.exception("event=metrics-flush-failed")


_ALL_UPDATES: weakref.WeakSet[Updates] = weakref.WeakSet()


class Metrics:
    """Every sealgate metric, on its own registry.

    With ``shared_dir`` (several milter processes, :mod:`sealgate.workers`),
    counters and histograms live in prometheus-client's multiprocess files
    under that folder, one file per process; the exposition adds up every
    process's files, those of exited processes included, so totals never go
    back. :func:`share_metrics` must have switched the process to that mode
    before the first ``Metrics(shared_dir=...)``. The two gauges are read at
    scrape time in the process that serves ``/metrics``, in either mode.
    """

    def __init__(self, shared_dir: str | None = None) -> None:
        # Exactly the SPEC §8 series: no *_created companions (a process-wide
        # switch in prometheus-client; sealgate exposes no other registry).
        disable_created_metrics()
        self.shared_dir = shared_dir
        self.registry = CollectorRegistry(auto_describe=True)
        # Counters and histograms: on the registry, or (shared) in this process's files.
        r = None if shared_dir else self.registry
        self.messages = Counter("sealgate_messages", "Messages judged, by direction and action.",
                                ["direction", "action"], registry=r)
        self.violations = Counter("sealgate_violations",
                                  "Violations counted under the matching rule, by code.",
                                  ["code"], registry=r)
        self.message_seconds = Histogram("sealgate_message_seconds",
                                         "Time from MAIL FROM to the verdict, per message.",
                                         buckets=MESSAGE_BUCKETS, registry=r)
        self.directory_seconds = Histogram("sealgate_directory_seconds",
                                           "Time per directory lookup.",
                                           buckets=DIRECTORY_BUCKETS, registry=r)
        self.directory_lookups = Counter("sealgate_directory_lookups",
                                         "Directory lookups by result (found, not-found, error).",
                                         ["result"], registry=r)
        self.errors = Counter("sealgate_errors", "Failures by kind (each one tempfails or "
                              "is retried; none loses mail).", ["kind"], registry=r)
        if shared_dir:
            MultiProcessCollector(self.registry, path=shared_dir)
        self._gauges = _ScrapeGauges()
        self.registry.register(self._gauges)
        # Label children, looked up once each (labels() validates and locks on each call).
        self._message_children: dict[tuple[str, str], Any] = {}
        self._violation_children: dict[str, Any] = {}
        self._error_children: dict[str, Any] = {}
        # Updates from the message path (message(), error(), TimedDirectory) go in batches.
        self.updates = Updates()

    # ------------------------------------------------------------ recording

    def message(self, direction: str, action: str, codes: tuple[str, ...] | list[str],
                seconds: float, error: str = "") -> None:
        """One judged message (the milter's log line and these counters go together).

        Counted with the next batch of :attr:`updates` (:class:`Updates`).
        """
        updates = self.updates
        key = (direction or "unknown", action)
        child = self._message_children.get(key)
        if child is None:
            child = self._message_children[key] = self.messages.labels(*key)
        updates.inc(child)
        for code in codes:
            violation = self._violation_children.get(code)
            if violation is None:
                violation = self._violation_children[code] = self.violations.labels(code)
            updates.inc(violation)
        updates.observe(self.message_seconds, max(seconds, 0.0))
        if error:
            self.error(error)

    def error(self, kind: str) -> None:
        """One failure of ``kind``, counted with the next batch of :attr:`updates`."""
        child = self._error_children.get(kind)
        if child is None:
            child = self._error_children[kind] = self.errors.labels(kind=kind)
        self.updates.inc(child)

    def flush(self) -> None:
        """Apply the pending updates now (each scrape does; so does the end of the milter)."""
        self.updates.flush()

    def set_crl_next_updates(self, next_updates: dict[str, dt.datetime | None]) -> None:
        """Replace the per-issuer gauge (issuers dropped from the config disappear)."""
        self._gauges.crl_next_updates = {
            issuer: moment.timestamp() if moment is not None else math.inf
            for issuer, moment in next_updates.items()}

    def watch_quarantine(self, count: Callable[[], int]) -> None:
        """Read the held count from the store at each scrape (releases happen elsewhere)."""
        self._gauges.quarantine_count = count

    def exposition(self) -> bytes:
        self.flush()  # this process's own pending updates; other processes flush on their own
        return generate_latest(self.registry)


class _ScrapeGauges(Collector):
    """``sealgate_crl_next_update_timestamp_seconds`` and ``sealgate_quarantine_messages``.

    Both are states of the whole gateway, not sums over processes: the
    serving process reads them when scraped.
    """

    def __init__(self) -> None:
        self.crl_next_updates: dict[str, float] = {}
        self.quarantine_count: Callable[[], int] | None = None

    def collect(self) -> Iterable[Metric]:
        crl = GaugeMetricFamily("sealgate_crl_next_update_timestamp_seconds",
                                "nextUpdate of the newest loaded CRL per issuer (Unix time).",
                                labels=["issuer"])
        for issuer, moment in self.crl_next_updates.items():
            crl.add_metric([issuer], moment)
        yield crl
        held = GaugeMetricFamily("sealgate_quarantine_messages",
                                 "Messages held in the quarantine store.")
        held.add_metric([], self._held())
        yield held

    def _held(self) -> float:
        if self.quarantine_count is None:
            return 0.0
        try:
            return float(self.quarantine_count())
        except Exception as exc:  # a scrape must not fail because the store did
            log.error("event=metrics-quarantine-count-failed error=%r", str(exc))
            return math.nan


_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()
    # The child has no flusher thread, and another thread may have held a lock at the fork.
    for updates in list(_ALL_UPDATES):
        updates._reset()


os.register_at_fork(after_in_child=_forked)


def process_id() -> int:
    """This process's id, read from memory: kept current in forked children by ``os.register_at_fork``."""
    return _pid


def share_metrics(folder: str) -> None:
    """Switch this process (and the processes it forks) to multiprocess metric files in ``folder``.

    prometheus-client picks its value class from ``PROMETHEUS_MULTIPROC_DIR``
    when first imported; sealgate decides later (``[milter] workers``), so the
    class is picked again here, before any ``Metrics(shared_dir=folder)``.

    Each update of a shared value asks for the process id, to notice a fork
    and move to the child's own file; prometheus-client's default asks the
    kernel (``os.getpid``, a system call: about 12 a message). The value
    class here asks :func:`process_id`, which a fork updates.
    """
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    values.ValueClass = values.MultiProcessValue(process_id)


class TimedDirectory:
    """A directory wrapped to feed ``sealgate_directory_seconds`` and ``..._lookups_total``.

    It answers exactly as the wrapped one does (exceptions included).
    """

    def __init__(self, inner: Any, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics
        # About three lookups per message: the label children are looked up once, the
        # clock read directly (prometheus-client's Timer context manager and labels()
        # were ~4% of the milter's CPU per message), the updates go in batches (Updates).
        self._updates = metrics.updates
        self._seconds = metrics.directory_seconds
        self._found, self._not_found, self._error = (
            metrics.directory_lookups.labels(result=r) for r in (FOUND, NOT_FOUND, ERROR))
        # Optional parts of the Directory protocol, answered here rather than by
        # __getattr__ on each message (a missing one raised AttributeError each time).
        self.prefetch = getattr(inner, "prefetch", None)
        self.external_lookups = getattr(inner, "external_lookups", False)

    def _timed(self, call: Callable[[], Any], empty: Callable[[Any], bool]) -> Any:
        started = time.perf_counter()
        try:
            result = call()
        except Exception:
            self._updates.observe(self._seconds, time.perf_counter() - started)
            self._updates.inc(self._error)
            raise
        self._updates.observe(self._seconds, time.perf_counter() - started)
        self._updates.inc(self._not_found if empty(result) else self._found)
        return result

    def certificates_for(self, address: str) -> list[x509.Certificate]:
        return self._timed(lambda: self.inner.certificates_for(address),  # type: ignore[no-any-return]
                           lambda r: not r)

    def find_by_issuer_serial(self, issuer: x509.Name, serial: int) -> x509.Certificate | None:
        return self._timed(lambda: self.inner.find_by_issuer_serial(issuer, serial),  # type: ignore[no-any-return]
                           lambda r: r is None)

    def find_by_key_identifier(self, ski: bytes) -> x509.Certificate | None:
        return self._timed(lambda: self.inner.find_by_key_identifier(ski),  # type: ignore[no-any-return]
                           lambda r: r is None)

    def __getattr__(self, name: str) -> Any:  # close(), backend extras
        return getattr(self.inner, name)


# ---------------------------------------------------------------- health


@dataclass(frozen=True)
class Health:
    ready: bool
    reason: str


def gateway_health(gateway: Any, now: dt.datetime | None = None) -> Health:
    """Is this gateway able to judge mail now? (config, policy, anchors, valid CRLs)."""
    if gateway is None:
        return Health(False, "configuration not loaded")
    if getattr(gateway, "policy", None) is None:
        return Health(False, "policy not loaded")
    trust = gateway.current_trust() if hasattr(gateway, "current_trust") else gateway.trust
    if not trust.anchors:
        return Health(False, "no trust anchors loaded")
    now = now or dt.datetime.now(dt.UTC)
    next_updates = trust.crl_next_updates()
    if trust.require_crl and not next_updates:
        return Health(False, "no CRL loaded (trust.crls), and trust.require_crl is true")
    stale = [f"{issuer} (nextUpdate {moment.isoformat() if moment else 'missing'})"
             for issuer, moment in sorted(next_updates.items())
             if moment is not None and moment <= now]
    if stale:
        return Health(False, "CRL past its nextUpdate for " + "; ".join(stale))
    return Health(True, "ok")


class _Handler(BaseHTTPRequestHandler):
    server: MetricsServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self.server.before_scrape()
            self._send(200, self.server.metrics.exposition(), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            health = self.server.health()
            self._send(200 if health.ready else 503, (health.reason + "\n").encode(),
                       "text/plain; charset=utf-8")
        else:
            self._send(404, b"not found: use /metrics or /healthz\n", "text/plain; charset=utf-8")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - scrapes are not logged
        pass


class MetricsServer(ThreadingHTTPServer):
    """``/metrics`` and ``/healthz`` on ``[metrics] listen``, served from a daemon thread."""

    daemon_threads = True

    def __init__(self, listen: str, metrics: Metrics, health: Callable[[], Health],
                 before_scrape: Callable[[], None] = lambda: None) -> None:
        host, _, port = listen.rpartition(":")
        host = host.strip("[]")
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.metrics = metrics
        self.health = health
        self.before_scrape = before_scrape
        super().__init__((host, int(port)), _Handler)
        self._thread = threading.Thread(target=self.serve_forever, name="metrics-http",
                                        daemon=True)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
