"""The pymilter adapter: the only module that imports ``Milter``.

A :class:`SealgateMilter` per SMTP connection collects the envelope, spools
the message (headers as ``Name: value`` CRLF lines, then the body exactly as
Postfix sends it, CRLF line ends), asks the gateway for a verdict at end of
message and applies it. It decides nothing itself: the verdict says what to
do, :mod:`sealgate.headers` says what to write. Any unexpected exception in a
callback becomes a TEMPFAIL (``guarded``): Postfix retries, nothing is lost.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import functools
import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, Protocol, TypeVar, cast

import Milter

from . import headers, notify
from .batching import BatchThread
from .codes import Action
from .errors import SealgateError
from .logging_setup import FieldsText, log_later
from .logging_setup import kv as _kv
from .metrics import Metrics, MetricsServer, gateway_health
from .model import Envelope, Verdict
from .quarantine import HELD, Decision, QuarantineStore, open_store
from .quarantine.decisions import BufferedDecisions, DecisionWriter
from .spool import sealed_spool
from .wakeup import Wakeup

log = logging.getLogger("sealgate.milter")

# Bodies up to this size stay in memory; beyond, the spool is a temporary file.
SPOOL_MEMORY = 1024 * 1024
# The actions sealgate may take on a message (negotiated with the MTA).
ACTIONS = Milter.ADDHDRS | Milter.CHGHDRS  # quarantine = our store + DISCARD (no flag needed)
# A From: value longer than this is not kept for the envelope (still spooled).
MAX_FROM_HEADER = 8192


class Gateway(Protocol):
    """What the adapter needs from :class:`sealgate.engine.Gateway`."""

    @property
    def config(self) -> Any: ...  # .authserv_id, .milter.max_message_size, .quarantine

    def evaluate(self, source: IO[bytes], envelope: Envelope) -> Verdict: ...

    def too_large(self, envelope: Envelope, size: int) -> Verdict: ...


@dataclass(frozen=True)
class Settings:
    authserv_id: str
    max_message_size: int

    @classmethod
    def from_config(cls, config: Any) -> Settings:
        return cls(authserv_id=str(config.authserv_id),
                   max_message_size=int(config.milter.max_message_size))


class Tracker:
    """Messages in flight, so that a stop can wait for them to finish.

    ``begin``/``end`` (every message) take a plain lock; the condition that
    ``wait_idle`` sleeps on is notified only while someone waits on it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self._active = 0
        self._idle_waiters = 0
        self.stopping = False

    def begin(self) -> bool:
        with self._lock:
            if self.stopping:
                return False
            self._active += 1
            return True

    def end(self) -> None:
        with self._lock:
            self._active -= 1
            wake = self._active == 0 and self._idle_waiters > 0
        if wake:  # the one state wait_idle waits for
            with self._cond:
                self._cond.notify_all()

    @property
    def active(self) -> int:
        with self._lock:
            return self._active

    def stop(self) -> None:
        with self._lock:
            self.stopping = True

    def wait_idle(self, timeout: float) -> bool:
        with self._cond:
            # Counted before the first look at _active: an end() after that look
            # sees the waiter and notifies (under _cond, so not before the wait).
            with self._lock:
                self._idle_waiters += 1
            try:
                return self._cond.wait_for(lambda: self._active == 0, timeout)
            finally:
                with self._lock:
                    self._idle_waiters -= 1


class Live:
    """The gateway in use and its settings, swapped whole by a reload (SIGHUP).

    Each message takes one snapshot at MAIL FROM and keeps it to the end: a
    message in flight during a reload is judged entirely by the old
    configuration, every message begun after it by the new one.
    """

    def __init__(self, gateway: Gateway) -> None:
        self.current: tuple[Gateway, Settings] = (gateway, Settings.from_config(gateway.config))
        self.generation = 0

    @property
    def gateway(self) -> Gateway:
        return self.current[0]

    def swap(self, gateway: Gateway) -> None:
        self.current = (gateway, Settings.from_config(gateway.config))  # one atomic store
        self.generation += 1


F = TypeVar("F", bound=Callable[..., Any])


def guarded(func: F) -> F:
    """Any unexpected exception in a callback → TEMPFAIL, logged with its traceback.

    Callbacks the MTA sends without waiting for a reply (``@Milter.noreply``)
    cannot answer TEMPFAIL: the failure is remembered and answered at end of
    message.
    """

    @functools.wraps(func)
    def wrapper(self: SealgateMilter, *args: Any) -> Any:
        try:
            return func(self, *args)
        except Exception:
            self._callback_failed(func.__name__)
            if func.__name__ == "eom":
                self._log_line(None, "tempfail", "internal-error")
            if func.__name__ in NOREPLY_CALLBACKS:
                return Milter.CONTINUE
            self._discard_message()
            return self._tempfail_reply("sealgate failed on this message")

    return cast(F, wrapper)


NOREPLY_CALLBACKS = frozenset({"header", "envrcpt"})


def _bracketless(address: str) -> str:
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    return address


_LINE_ENDS = re.compile(rb"\r\n|\r|\n")

# From: values whose address email.utils.parseaddr reads as exactly the addr-spec
# this matches: a bare addr-spec, or <addr-spec> after an optional display name
# of plain words and quoted-strings (dot-atom local part; domain of letters,
# digits, hyphens). That is most real From: fields; parseaddr (~6 us, a tenth of
# the adapter's own time per message) reads the rest. tests/test_milter.py
# checks the two agree. The display name is matched a character (or a whole
# quoted-string) at a time, so that a value that does not match fails in
# linear time.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ADDR_SPEC = rf"{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
_DISPLAY_NAME = r'(?:[A-Za-z0-9!#$%&\'*+/=?^_`{|}~. \t-]|"[^"\\\r\n]*")*'
_SIMPLE_FROM = re.compile(
    rf"[ \t]*(?:(?P<bare>{_ADDR_SPEC})|{_DISPLAY_NAME}<(?P<angle>{_ADDR_SPEC})>)[ \t]*\Z")


def from_address(value: str) -> str | None:
    """The addr-spec of a From: field value as ``email.utils.parseaddr`` reads it; None if none."""
    simple = _SIMPLE_FROM.match(value)
    if simple is not None:
        return simple.group("bare") or simple.group("angle")
    return email.utils.parseaddr(value)[1] or None


class SealgateMilter(Milter.Base):
    """One SMTP connection; one message at a time."""

    def __init__(self, gateway: Gateway, store: QuarantineStore, tracker: Tracker,
                 settings: Settings, *, live: Live | None = None,
                 metrics: Metrics | None = None,
                 outcomes: BatchThread[Callable[[], None]] | None = None) -> None:
        self.gateway = gateway
        self.store = store
        self.tracker = tracker
        self.settings = settings
        self.live = live
        self.metrics = metrics
        self.outcomes = outcomes  # makes each message's log line, counts and report row
        self.client_address = ""
        self.queue_id = ""
        self.failed = False
        self.spool: IO[bytes] | None = None
        self._in_flight = False
        self._reset_message()

    # ------------------------------------------------------------ negotiation

    def negotiate(self, opts: list[int]) -> Any:
        rc = super().negotiate(opts)
        if rc == Milter.CONTINUE:
            # Ask only for the actions we use (RFC-less, libmilter: smfi_register flags).
            opts[0] &= ACTIONS
            self._actions = opts[0]
        return rc

    # ------------------------------------------------------------ per-message state

    def _reset_message(self) -> None:
        self.sender = ""
        self.recipients: list[str] = []
        self.from_header: str | None = None
        self.size = 0
        self.too_large = False
        self.failed = False
        self.queue_id = ""
        self._ar_count = 0
        self._forged: list[int] = []  # 1-based indexes among Authentication-Results fields
        self._body_started = False
        self._message_envelope: Envelope | None = None
        self._started = time.monotonic()

    def _discard_message(self) -> None:
        if self.spool is not None:
            self.spool.close()
            self.spool = None
        if self._in_flight:
            self._in_flight = False
            self.tracker.end()

    def _spool(self) -> IO[bytes]:
        if self.spool is None:  # in memory, then encrypted on disk (sealgate.spool)
            self.spool = sealed_spool(SPOOL_MEMORY)
        return self.spool

    def _write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.settings.max_message_size:
            if not self.too_large:
                self.too_large = True
                if self.spool is not None:  # free the space: the verdict will not read it
                    self.spool.close()
                    self.spool = None
            return
        (self.spool if self.spool is not None else self._spool()).write(data)

    def _callback_failed(self, callback: str) -> None:
        """An unexpected error in a callback: logged with its traceback, answered TEMPFAIL.

        Called from an ``except`` clause (``guarded``, ``header_bytes``, ``envrcpt_bytes``).
        """
        log.exception("unexpected error in the %s callback (queue_id=%s): tempfail",
                      callback, self.queue_id or "-")
        self.failed = True

    def _tempfail_reply(self, reason: str) -> int:
        self.setreply(*headers.tempfail_reply(reason))
        return Milter.TEMPFAIL

    # ------------------------------------------------------------ callbacks

    @guarded
    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        # AF_INET/AF_INET6: (address, port, ...); AF_UNIX: the socket name.
        if isinstance(hostaddr, tuple) and hostaddr:
            self.client_address = str(hostaddr[0])
        else:
            self.client_address = str(hostaddr or "")
        return Milter.CONTINUE

    @guarded
    def envfrom(self, sender: str, *params: str) -> int:
        self._discard_message()
        self._reset_message()
        if not self.tracker.begin():
            return self._tempfail_reply("sealgate is shutting down")
        self._in_flight = True
        if self.live is not None:  # this message's configuration, kept to its end
            self.gateway, self.settings = self.live.current
        self.sender = _bracketless(sender)
        return Milter.CONTINUE

    @Milter.noreply
    @guarded
    def envrcpt(self, recipient: str, *params: str) -> int:
        self.recipients.append(_bracketless(recipient))
        return Milter.CONTINUE

    def envrcpt_bytes(self, recipient: bytes, *params: bytes) -> int:
        """What pymilter calls for RCPT TO: :meth:`envrcpt`'s work in one call (see header_bytes).

        The address is decoded as pymilter decodes it (UTF-8, surrogateescape).
        """
        try:
            self.recipients.append(_bracketless(recipient.decode("utf-8", "surrogateescape")))
        except Exception:
            self._callback_failed("envrcpt")
        return Milter.NOREPLY if self._protocol & Milter.P_NR_RCPT else Milter.CONTINUE

    @Milter.noreply
    @Milter.decode("bytes")
    @guarded
    def header(self, name: str, value: bytes) -> int:
        """pymilter's header callback (its @noreply negotiates no reply); see :meth:`header_bytes`."""
        self._header(name, value)
        return Milter.CONTINUE

    def header_bytes(self, name: str, value: bytes) -> int:
        """What pymilter calls for each header field: :meth:`header`'s work in one call.

        pymilter's own ``header_bytes`` goes through ``header``'s ``@noreply``
        and ``@guarded`` wrappers, three calls a field; this does what they
        do: an error is logged and answered (TEMPFAIL) at end of message, and
        the answer is NOREPLY once Postfix agreed to send headers without
        waiting for one.
        """
        try:
            self._header(name, value)
        except Exception:
            self._callback_failed("header")
        return Milter.NOREPLY if self._protocol & Milter.P_NR_HDR else Milter.CONTINUE

    def _header(self, name: str, value: bytes | str) -> None:
        if isinstance(value, str):  # a test harness may pass str
            value = value.encode("utf-8", "surrogateescape")
        # Postfix joins folded lines with LF (or CRLF): RFC 5322 wants CRLF.
        if b"\n" in value or b"\r" in value:
            value = _LINE_ENDS.sub(b"\r\n", value)
        self._write(name.encode("ascii", "surrogateescape") + b": " + value + b"\r\n")
        lname = name.lower()
        if lname == "authentication-results":
            self._ar_count += 1
            text = value.decode("utf-8", "replace")
            if headers.is_forged_authentication_results(text, self.settings.authserv_id):
                self._forged.append(self._ar_count)
        elif lname == "from" and self.from_header is None and len(value) <= MAX_FROM_HEADER:
            self.from_header = from_address(value.decode("utf-8", "replace"))

    @guarded
    def body(self, chunk: bytes) -> int:
        if not self._body_started:
            self._body_started = True
            self._write(b"\r\n")
        self._write(chunk)
        if self.too_large and self._protocol & Milter.P_SKIP:
            return Milter.SKIP  # the rest of the body changes nothing
        return Milter.CONTINUE

    @guarded
    def eom(self) -> int:
        try:
            return self._end_of_message()
        finally:
            self._discard_message()

    @guarded
    def abort(self) -> int:
        self._discard_message()
        self._reset_message()
        return Milter.CONTINUE

    @guarded
    def close(self) -> int:
        self._discard_message()
        return Milter.CONTINUE

    # ------------------------------------------------------------ end of message

    def _envelope(self) -> Envelope:
        """The message's envelope, made once at end of message (the queue id is known then)."""
        if self._message_envelope is None:
            self._message_envelope = Envelope(
                sender=self.sender, recipients=tuple(self.recipients),
                from_header=self.from_header, client_address=self.client_address,
                queue_id=self.queue_id)
        return self._message_envelope

    def _end_of_message(self) -> int:
        self.queue_id = str(self.getsymval("i") or "")
        if self.failed:  # an earlier no-reply callback failed (logged there)
            self._log_line(None, "tempfail", "internal-error")
            return self._tempfail_reply("sealgate failed on this message")
        if not self._body_started:
            self._write(b"\r\n")
        envelope = self._envelope()
        try:
            if self.too_large:
                verdict = self.gateway.too_large(envelope, self.size)
            else:
                spool = self._spool()
                spool.seek(0)
                verdict = self.gateway.evaluate(spool, envelope)
        except (OSError, SealgateError) as exc:
            log.error("cannot check message queue_id=%s: %s: tempfail",
                      _kv(self.queue_id), exc)
            self._log_line(None, "tempfail", "check-failed")
            return self._tempfail_reply("sealgate could not check this message now")
        return self._apply(verdict)

    def _apply(self, verdict: Verdict) -> int:
        action = verdict.action  # an Action (a str enum); a plain str compares the same
        if action in (Action.REJECT, Action.TEMPFAIL):
            self.setreply(*headers.reply_for(verdict))
            self._log_line(verdict, str(action))
            return Milter.REJECT if action == Action.REJECT else Milter.TEMPFAIL

        stored = ""
        if action == Action.QUARANTINE:
            # Durable first (SPEC §5): a message whose store fails is tempfailed.
            if self.spool is None:  # too large to keep: it cannot be held for review
                log.error("cannot quarantine message queue_id=%s: larger than "
                          "max_message_size (%d bytes), not kept: tempfail",
                          _kv(self.queue_id), self.settings.max_message_size)
                self._log_line(verdict, "tempfail", "store-failed")
                return self._tempfail_reply("sealgate could not quarantine this message")
            try:
                self.spool.seek(0)
                stored = self.store.put(self.spool, self._envelope(), verdict)
            except (OSError, SealgateError) as exc:
                log.error("cannot quarantine message queue_id=%s: %s: tempfail",
                          _kv(self.queue_id), exc)
                self._log_line(verdict, "tempfail", "store-failed")
                return self._tempfail_reply("sealgate could not quarantine this message")
            # Background and content-free (sealgate.notify); off unless configured.
            notify.notify_held(self.gateway.config, stored, self._envelope(), verdict,
                               on_error=lambda: self._count_error("notify"))

        # RFC 8601 §5: remove fields claiming our authserv-id; last first, so
        # that removing one never shifts the index of another.
        for index in reversed(self._forged):
            self.chgheader(headers.AUTHENTICATION_RESULTS, index, "")
        # RFC 8601 §2.1: prepended, like a trace field; Sealgate-Policy right below.
        self.addheader(headers.SEALGATE_POLICY, headers.sealgate_policy(verdict), 0)
        self.addheader(headers.AUTHENTICATION_RESULTS,
                       headers.authentication_results(self.settings.authserv_id, verdict), 0)
        self._log_line(verdict, str(action), quarantine_id=stored)
        if action == Action.QUARANTINE:
            # The store now holds the only copy: Postfix answers 250 and drops its
            # own (DISCARD), so no second, clear copy waits in Postfix's hold queue
            # (with encrypt_to, the store's copy is encrypted), and a release from
            # the store -- on any gateway sharing it -- is the one way out. The
            # headers above still show the verdict to a milter client (tests, demo).
            return Milter.DISCARD
        return Milter.CONTINUE

    def _log_line(self, verdict: Verdict | None, action: str, error: str = "",
                  quarantine_id: str = "") -> None:
        """The message's log line, counts and report row (:func:`message_done`).

        Made by the milter's outcome thread when there is one (``sealgate
        milter``): this thread only takes the message's facts as they are now.
        """
        done = functools.partial(
            message_done, time.time(), time.monotonic() - self._started, self.queue_id,
            self.sender, len(self.recipients), self.size,
            self._envelope() if verdict is not None else None, verdict, action, error,
            quarantine_id, self.store, self.metrics)
        if self.outcomes is not None:
            self.outcomes.record(done)
        else:
            done()

    def _count_error(self, kind: str) -> None:
        if self.metrics is not None:
            self.metrics.error(kind)


def message_done(at: float, seconds: float, queue_id: str, sender: str, rcpts: int, size: int,
                 envelope: Envelope | None, verdict: Verdict | None, action: str, error: str,
                 quarantine_id: str, store: QuarantineStore, metrics: Metrics | None) -> None:
    """One message's log line, counts and report row, from its facts at end of message.

    ``at`` is the wall-clock time then (``time.time()``), ``seconds`` the
    milter time from MAIL FROM. Never raises on a report-row failure: the
    message's fate is already decided (logged and counted).
    """
    codes = tuple([str(c) for c in verdict.codes]) if verdict else ()
    direction = str(verdict.direction) if verdict else None
    fields: dict[str, Any] = {
        "queue_id": queue_id or None, "sender": sender, "rcpts": rcpts,
        "direction": direction,
        "rule": verdict.rule if verdict else None, "action": action,
        "codes": codes,
        "structure": verdict.structure if verdict else None,
        "size": size, "ms": int(seconds * 1000),
    }
    if quarantine_id:
        fields["quarantine_id"] = quarantine_id
    if error:
        fields["error"] = error
    # One line per message (STYLE §9): envelope facts and the verdict only, never content.
    # Rendered when written (sealgate.logging_setup.log_later), with the time it was decided.
    log_later(log, logging.INFO, "message %s", FieldsText(fields), extra={"fields": fields},
              created=at)
    if metrics is not None:
        metrics.message(direction or "unknown", action, codes, seconds, error)
    if verdict is None or direction is None or envelope is None:
        return
    try:  # every verdict, for `sealgate report`
        later = getattr(store, "record_decision_later", None)
        line = functools.partial(
            Decision.made, at=dt.datetime.fromtimestamp(at, dt.UTC), direction=direction,
            action=action, rule=verdict.rule, codes=codes, sender=envelope.sender,
            recipients=envelope.recipients, quarantine_id=quarantine_id or None)
        if later is not None:  # made by the decision writer's thread, with its batch
            later(line)
        else:
            store.record_decision(line())
    except Exception as exc:  # any failure: the message's fate is already decided
        log.warning("event=decision-not-recorded queue_id=%s error=%s", _kv(queue_id),
                    _kv(str(exc)))
        if metrics is not None:
            metrics.error("decision-record")


# ---------------------------------------------------------------- running


def install(gateway: Gateway, store: QuarantineStore, tracker: Tracker, *,
            live: Live | None = None, metrics: Metrics | None = None,
            outcomes: BatchThread[Callable[[], None]] | None = None) -> None:
    """Point pymilter's connection factory at sealgate.

    ``outcomes`` (see :func:`outcome_thread`) makes each message's log line,
    counts and report row off the message's thread; without it they are made
    in the end-of-message callback.
    """
    settings = Settings.from_config(gateway.config)
    Milter.factory = lambda: SealgateMilter(gateway, store, tracker, settings, live=live,
                                            metrics=metrics, outcomes=outcomes)
    Milter.set_flags(ACTIONS)


def outcome_thread(metrics: Metrics | None) -> BatchThread[Callable[[], None]]:
    """The thread that makes each message's log line, counts and report row (:func:`message_done`).

    Made at end of message, they cost the message's thread about a quarter of
    the adapter's own CPU with the caches cold (as under Postfix load); here
    that thread queues one call, and this one makes them in batches, every
    0.1 s while mail comes. What a SIGKILL loses: the calls still queued (at
    most 0.1 s of messages' lines, counts and rows); :func:`run` makes them
    before it returns.
    """
    def handle(batch: list[Callable[[], None]]) -> None:
        for done in batch:
            try:
                done()
            except Exception:  # noqa: BLE001 - one message's line; the others are made
                log.exception("event=message-outcome-failed")

    def full() -> None:
        log.warning("event=message-outcome-dropped error=%s",
                    "queue full: the log line, counts and report row of a message are lost")
        if metrics is not None:
            metrics.error("decision-record")

    return BatchThread("message-outcomes", handle, on_full=full)


def instrument(gateway: Gateway, metrics: Metrics) -> Gateway:
    """Time the gateway's directory lookups for the metrics (no change to the answers)."""
    from .metrics import TimedDirectory

    directory = getattr(gateway, "directory", None)
    if directory is not None and not isinstance(directory, TimedDirectory):
        gateway.directory = TimedDirectory(directory, metrics)  # type: ignore[attr-defined]
    return gateway


# Settings a reload cannot change in a running process (they are bound at start).
RESTART_ONLY = (("milter.socket", lambda c: c.milter.socket),
                ("milter.timeout", lambda c: c.milter.timeout),
                ("quarantine", lambda c: c.quarantine),
                ("metrics.listen", lambda c: c.metrics.listen))


def reload_gateway(live: Live, load: Callable[[], Gateway],
                   metrics: Metrics | None = None) -> bool:
    """SIGHUP: load config, policy, anchors, CRLs and directory anew and swap them in.

    A configuration that does not load is refused: the running one stays, and
    the error (file and key) is logged. Connections stay open; messages in
    flight finish with the configuration they started with.
    """
    try:
        new = load()
    except Exception as exc:  # any failure keeps the old gateway: never stop serving
        log.error("event=reload-refused error=%s: keeping the configuration loaded",
                  _kv(str(exc)))
        if metrics is not None:
            metrics.error("reload")
        return False
    if metrics is not None:
        instrument(new, metrics)
    old_config = live.gateway.config
    for key, value_of in RESTART_ONLY:
        try:
            changed = value_of(old_config) != value_of(new.config)
        except AttributeError:  # a stand-in gateway without that section
            changed = False
        if changed:
            log.warning("event=reload-partial key=%s: changed, but only a restart applies it", key)
    live.swap(new)
    log.info("event=reload generation=%d config=%s", live.generation,
             _kv(str(getattr(new.config, "source", "-"))))
    return True


def share_socket(socket: str, deadline: float) -> bool:
    """Let group ``postfix`` connect to our unix socket (mode 0660); True once done.

    libmilter creates the socket with the process umask; Postfix's smtpd runs
    as ``postfix`` and needs write permission on it (the socket folder's group
    is ``postfix``, setgid, so the socket's group is too).
    """
    kind, _, path = socket.partition(":")
    if kind not in ("unix", "local"):
        return True
    try:
        os.chmod(path, 0o660)
        return True
    except FileNotFoundError:
        return time.monotonic() > deadline  # the listener has not bound yet
    except OSError as exc:
        log.warning("cannot chmod the milter socket %s: %s", path, exc)
        return True


def serve_metrics(listen: str, metrics: Metrics, store: QuarantineStore, live: Live) -> MetricsServer:
    """``/metrics`` and ``/healthz`` on ``listen`` ("HOST:PORT"), read from the live gateway.

    The held-message gauge asks ``store`` at each scrape; the CRL gauge and
    the health come from the gateway in use at that moment.
    """
    count = getattr(store, "count", None)
    if callable(count):
        metrics.watch_quarantine(lambda: int(count(HELD)))

    def before_scrape() -> None:
        current = live.gateway
        metrics.set_crl_next_updates(current.current_trust().crl_next_updates()
                                     if hasattr(current, "current_trust") else {})

    try:
        server = MetricsServer(listen, metrics, lambda: gateway_health(live.gateway),
                               before_scrape).start()
    except OSError as exc:
        raise SealgateError(f"cannot serve metrics on {listen} ([metrics] listen): "
                            f"{exc.strerror or exc}") from exc
    log.info("metrics on http://%s/metrics and /healthz", listen)
    return server


def run(gateway: Gateway, socket: str, timeout: float, *,
        store: QuarantineStore | None = None, drain_timeout: float | None = None,
        handle_signals: bool = True, metrics: Metrics | None = None, metrics_listen: str = "",
        reload: Callable[[], Gateway] | None = None,
        serve: Callable[[], None] | None = None) -> None:
    """Serve the milter on ``socket`` until SIGTERM/SIGINT, then drain and return.

    libmilter's listener runs in a thread; this (main) thread waits for a
    signal, then drains: messages already started (at MAIL FROM) finish, a new
    one on any connection gets 451 (Postfix retries it), and once none is in
    flight, or after ``drain_timeout`` (default: ``timeout``) seconds, it calls
    ``milter.stop()`` (the listening socket closes) and returns.

    SIGHUP calls ``reload`` (a new gateway from the config file) and swaps it
    in (:func:`reload_gateway`); without ``reload``, SIGHUP is logged and ignored.
    ``metrics_listen`` ("HOST:PORT") serves ``/metrics`` and ``/healthz``.
    ``serve`` replaces libmilter's set-up and main loop (default:
    ``Milter.runmilter`` on ``socket``); a worker (:mod:`sealgate.workers`)
    serves a socket its supervisor opened.
    """
    metrics = metrics if metrics is not None else Metrics()
    store = store if store is not None else open_store(gateway.config.quarantine)
    # Report lines leave the message path: queued, committed in batches (a SIGTERM
    # drain flushes them when the store is closed below).
    store = cast(QuarantineStore, BufferedDecisions(
        store, DecisionWriter(store, on_error=lambda: metrics.error("decision-record"))))
    instrument(gateway, metrics)
    live = Live(gateway)
    tracker = Tracker()
    outcomes = outcome_thread(metrics)
    install(gateway, store, tracker, live=live, metrics=metrics, outcomes=outcomes)
    wake = Wakeup()  # not threading.Event: the signal handlers set it (sealgate.wakeup)
    hups: list[int] = []
    failure: list[BaseException] = []

    def listen() -> None:
        try:
            if serve is not None:
                serve()
            else:
                Milter.runmilter("sealgate", socket, int(timeout))
        except BaseException as exc:  # reported by the main thread
            failure.append(exc)
        finally:
            wake.stop()

    def on_stop(signum: int, frame: Any) -> None:
        wake.stop()

    def on_hup(signum: int, frame: Any) -> None:
        hups.append(signum)  # the reload runs in the main loop, not in the handler
        wake.set()

    server: MetricsServer | None = None
    if metrics_listen:
        try:
            server = serve_metrics(metrics_listen, metrics, store, live)
        except SealgateError:
            store.close()
            wake.close()
            raise

    previous: dict[int, Any] = {}
    if handle_signals:
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, on_stop)
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, on_hup)
    listener = threading.Thread(target=listen, name="milter-listener", daemon=True)
    try:
        listener.start()
        log.info("sealgate milter listening on %s", socket)
        shared = share_socket(socket, time.monotonic() + 10)
        while not wake.stopping:
            wake.wait(0.05 if not shared else 0.5)
            if not shared:
                shared = share_socket(socket, time.monotonic() + 10)
            while hups and not wake.stopping:
                hups.clear()
                if reload is None:
                    log.warning("SIGHUP: no configuration file to reload from; ignored")
                else:
                    reload_gateway(live, reload, metrics)
        tracker.stop()  # from now on a new message gets 451 at MAIL FROM (Postfix retries it)
        if failure:
            raise SealgateError(f"the milter could not run on {socket}: {failure[0]}")
        # Drain before smfi_stop: once stopped, libmilter serves no further
        # command of a connection that is between two commands (a message
        # half sent would hang until the process exits), only callbacks
        # already running finish.
        active = tracker.active
        if active:
            log.info("stopping: waiting for %d message(s) in flight", active)
        drained = tracker.wait_idle(drain_timeout if drain_timeout is not None else timeout)
        if listener.is_alive():
            # smfi_stop waits for the listener's mutex, held until its poll
            # times out (seconds): stop from a side thread, do not wait for it.
            threading.Thread(target=Milter.stop, name="milter-stop", daemon=True).start()
        listener.join(timeout=0.2)
        if not drained:
            log.warning("stopping with %d message(s) unfinished: Postfix will retry them",
                        tracker.active)
        log.info("sealgate milter stopped")
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if not listener.is_alive():  # else it may still wake us: its pipe stays open
            wake.close()
        if server is not None:
            server.stop()
        outcomes.close()  # the lines, counts and rows of the last messages, then
        store.close()  # their rows are written
        metrics.flush()  # and their counts applied (sealgate.metrics.Updates)
