"""Log output for the milter: key=value lines (default) or JSON lines.

Operators grep and ship these lines (STYLE §9): one line per message with
the Postfix queue id, rule, action and codes. The per-message line is logged
with its fields attached (``extra={"fields": {...}}``); the text format
renders them as ``key=value``, the JSON format as object members. Nothing
here ever sees a PIN, a key or a message body: callers pass only envelope
facts and the verdict.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import sys
import threading
import time
from typing import IO, Any

TEXT_FORMAT = "%(asctime)s sealgate[%(process)d] %(levelname)s %(name)s: %(message)s"
FORMATS = ("text", "json")
# Lines below WARNING wait at most this long before they are written (BatchedStreamHandler).
FLUSH_SECONDS = 0.2
# One write carries at most this many bytes of whole lines: POSIX makes a pipe write of
# up to PIPE_BUF (4096 on Linux) bytes atomic, so lines of several worker processes
# sharing one stderr pipe never tear into each other.
WRITE_CHUNK = 4096
# Records below WARNING held at most (then written at once by the thread that adds the last).
MAX_HELD = 256


# A value with one of these is quoted (key=value lines stay splittable on spaces).
_NEEDS_QUOTES = re.compile(r'[\s"=\\]').search


def kv(value: object) -> str:
    """A log value: bare when safe, else quoted (``key=value`` lines)."""
    # Plain str and int first: the per-message line is mostly those (an int never needs quotes).
    if type(value) is str:
        text = value or "-"
    elif type(value) is int:
        return str(value)
    elif value is None:
        return "-"
    else:
        if isinstance(value, (list, tuple)):
            value = ",".join([str(v) for v in value])
        text = "-" if value == "" else str(value)
    if _NEEDS_QUOTES(text) is None:
        return text
    # One line per record: newlines inside a value are written as \n.
    text = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + text.replace("\r", "\\r").replace("\n", "\\n") + '"'


def render_fields(fields: dict[str, Any]) -> str:
    return " ".join([f"{k}={kv(v)}" for k, v in fields.items()])


class FieldsText:
    """A log argument: ``key=value`` text of ``fields``, rendered when the line is formatted.

    ``log.info("message %s", FieldsText(fields), extra={"fields": fields})``
    leaves the rendering to whoever writes the line (BatchedStreamHandler's
    writer thread); the JSON format reads ``fields`` and never renders it.
    """

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields

    def __str__(self) -> str:
        return render_fields(self.fields)


class HeldCall:
    """A ``logger.log(level, msg, *args, extra=extra)`` made at ``created``, its record not made yet."""

    __slots__ = ("logger", "level", "msg", "args", "extra", "created")

    def __init__(self, logger: logging.Logger, level: int, msg: str, args: tuple[Any, ...],
                 extra: dict[str, Any] | None, created: float | None = None) -> None:
        self.logger, self.level, self.msg, self.args, self.extra = logger, level, msg, args, extra
        self.created = time.time() if created is None else created

    def record(self) -> logging.LogRecord:
        """The record ``logger.log`` would have made then (no caller file/line: ``_srcfile`` is off)."""
        record = self.logger.makeRecord(self.logger.name, self.level, "(unknown file)", 0, self.msg,
                                        self.args, None, "(unknown function)", self.extra)
        record.relativeCreated -= (record.created - self.created) * 1000
        record.created = self.created
        record.msecs = int((self.created - int(self.created)) * 1000) + 0.0  # as LogRecord does
        return record

    def stand_in(self) -> logging.LogRecord:
        """A bare record of this call, for reporting a failure to make or write its own."""
        return logging.makeLogRecord({"name": self.logger.name, "levelno": self.level,
                                      "levelname": logging.getLevelName(self.level),
                                      "msg": self.msg, "args": self.args, "created": self.created})


Held = logging.LogRecord | HeldCall


def _sole_batched_handler(logger: logging.Logger, level: int) -> BatchedStreamHandler | None:
    """The handler a record of ``logger`` at ``level`` would reach, when that is all that would happen.

    That is: no logger from ``logger`` up to the root filters or is disabled,
    each propagates, none but the root has a handler, and the root's only
    handler is a BatchedStreamHandler without filters that takes ``level``.
    Anything else (a test's capture handler, an added filter) gets None.
    """
    node: logging.Logger | None = logger
    while node is not None:
        if node.filters or node.disabled:
            return None
        if node.parent is None:  # the root
            handlers = node.handlers
            if len(handlers) == 1 and type(handlers[0]) is BatchedStreamHandler:
                handler = handlers[0]
                if not handler.filters and level >= handler.level:
                    return handler
            return None
        if node.handlers or not node.propagate:
            return None
        node = node.parent
    return None


def log_later(logger: logging.Logger, level: int, msg: str, *args: Any,
              extra: dict[str, Any] | None = None, created: float | None = None) -> None:
    """``logger.log(level, msg, *args, extra=extra)``; the record made when the line is written.

    For the milter's one line per message. When the line would only be held
    by the root's BatchedStreamHandler anyway, the record itself is made by
    whoever writes the held lines (mostly the writer thread), with this
    moment's time (or ``created``, a ``time.time()`` taken earlier); otherwise
    this is ``logger.log`` (a record made with ``created`` when given). The
    line is the same either way.
    """
    if not logger.isEnabledFor(level):
        return
    handler = _sole_batched_handler(logger, level)
    if handler is not None:
        handler.hold(HeldCall(logger, level, msg, args, extra, created))
    elif created is None:
        logger.log(level, msg, *args, extra=extra)
    else:
        logger.handle(HeldCall(logger, level, msg, args, extra, created).record())


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, and the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out["msg"] = record.msg if isinstance(record.msg, str) else str(record.msg)
            out["msg"] = out["msg"].split(" ", 1)[0]  # the event name; the rest are the fields
            for key, value in fields.items():
                out.setdefault(key, list(value) if isinstance(value, tuple) else value)
        else:
            out["msg"] = record.getMessage()
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class BatchedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes DEBUG and INFO lines in batches, at most ``interval`` late.

    The milter logs one INFO line per message. Written and flushed one by one,
    each line cost a write system call, during which the interpreter lock
    goes to another thread and must be won back: about a third of the
    adapter's own CPU per message, measured in one process. Here records
    gather in memory and go out together, in writes of whole lines of at
    most :data:`WRITE_CHUNK` bytes, ``interval`` seconds after the first one
    waiting or once :data:`MAX_HELD` records wait. A WARNING or worse is
    written at once, after the lines before it, so that order is kept and
    problems show without delay. ``flush()`` (called by ``logging.shutdown``
    at exit) and ``close()`` write what waits. What a hard kill (SIGKILL, a
    crash of the interpreter) loses is at most the last ``interval`` seconds
    of INFO lines.

    Held records are formatted when they are written, in one go, mostly by
    the writer thread: a message's callback only queues its record. Formatted
    one by one between messages, the line cost the milter several times what
    it costs in a batch, the formatter's code and data being out of the CPU
    caches by then (bench/, docs/benchmarks.md). As with logging's
    QueueHandler, what a record's arguments show is their value when the
    line is written: sealgate logs strings, numbers and values it does not
    change afterwards.
    """

    def __init__(self, stream: IO[str], interval: float = FLUSH_SECONDS) -> None:
        super().__init__(stream)
        self.interval = interval
        self._pending: list[Held] = []  # records, or calls to make them; formatted when written
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        os.register_at_fork(after_in_child=self._after_fork)

    def hold(self, call: HeldCall) -> None:
        """Hold a log call whose record is made when the line is written (see :func:`log_later`).

        Never raises: a failure to write is reported as logging reports its
        own (``handleError``), as for a record that went through ``emit``.
        """
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            try:
                self._queue(call, urgent=False)
            except Exception:  # noqa: BLE001 - logging reports its own failures
                self.handleError(call.stand_in())

    def emit(self, record: logging.LogRecord) -> None:  # called with self.lock held
        try:
            self._queue(record, urgent=record.levelno >= logging.WARNING)
        except Exception:  # noqa: BLE001 - logging reports its own failures (Handler.handleError)
            self.handleError(record)

    def _queue(self, held: Held, urgent: bool) -> None:
        """Hold ``held``; write everything now if urgent or MAX_HELD wait. Caller holds self.lock."""
        self._pending.append(held)
        if urgent or len(self._pending) >= MAX_HELD:
            self._write_pending()
        elif len(self._pending) == 1:
            self._wake_writer()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            if self._pending:
                self._write_pending()
            super().flush()

    def close(self) -> None:
        self._stopping.set()
        self._wake.set()
        try:
            self.flush()
        finally:
            super().close()

    def _write_pending(self) -> None:
        """Format the held records and write them in chunks of whole lines; the caller holds self.lock."""
        pending, self._pending = self._pending, []
        chunk: list[str] = []
        size = 0
        for held in pending:
            record = held if isinstance(held, logging.LogRecord) else None
            try:
                if record is None:
                    record = held.record()  # type: ignore[union-attr]  # a HeldCall
                line = self.format(record) + self.terminator
            except Exception:  # noqa: BLE001 - that record alone is reported and left out
                self.handleError(record if record is not None
                                 else held.stand_in())  # type: ignore[union-attr]
                continue
            length = len(line) if line.isascii() else len(line.encode("utf-8", "replace"))
            if chunk and size + length > WRITE_CHUNK:
                self._write("".join(chunk))
                chunk, size = [], 0
            chunk.append(line)
            size += length
        if chunk:
            self._write("".join(chunk))

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def _wake_writer(self) -> None:
        if self._stopping.is_set():  # closed: no writer thread to write later
            self._write_pending()
            return
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._writer, name="log-writer", daemon=True)
            self._thread.start()
        self._wake.set()

    def _writer(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait()
            self._wake.clear()
            if self._stopping.wait(self.interval):  # let lines gather
                return
            try:
                self.flush()
            except Exception:  # noqa: BLE001, S110 - a broken stream: logging has nowhere to report
                pass

    def _after_fork(self) -> None:
        # The writer thread does not exist in a forked child, and the lines that
        # waited at the fork are the parent's to write.
        self._thread = None
        self._pending = []
        # Fresh events: another thread of the parent may have held theirs at the fork.
        stopping = self._stopping.is_set()
        self._wake, self._stopping = threading.Event(), threading.Event()
        if stopping:
            self._stopping.set()


def flush_logs() -> None:
    """Write every line the root logger's handlers hold (before ``os._exit``, which skips atexit)."""
    for handler in logging.getLogger().handlers:
        handler.flush()


def setup(level: str = "info", fmt: str = "text", stream: IO[str] | None = None,
          *, flush_interval: float = FLUSH_SECONDS) -> None:
    """Configure the root logger once for the ``sealgate`` process.

    Lines below WARNING are written in batches, at most ``flush_interval``
    seconds late (:class:`BatchedStreamHandler`); 0 writes each line at once.
    """
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: use text or json")
    # Record attributes no sealgate format shows are not collected (Logging HOWTO,
    # "Optimization"): each log call would otherwise walk the stack for the caller's
    # file and line, and look up (or create, on libmilter's per-connection threads)
    # a threading.Thread object for the thread name.
    logging.logThreads = False
    logging.logMultiprocessing = False
    logging._srcfile = None
    handler: logging.StreamHandler = (  # type: ignore[type-arg]
        BatchedStreamHandler(stream or sys.stderr, flush_interval) if flush_interval > 0
        else logging.StreamHandler(stream or sys.stderr))
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
