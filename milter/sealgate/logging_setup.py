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
from typing import IO, Any

TEXT_FORMAT = "%(asctime)s sealgate[%(process)d] %(levelname)s %(name)s: %(message)s"
FORMATS = ("text", "json")
# Lines below WARNING wait at most this long before they are written (BatchedStreamHandler).
FLUSH_SECONDS = 0.2
# One write carries at most this many bytes of whole lines: POSIX makes a pipe write of
# up to PIPE_BUF (4096 on Linux) bytes atomic, so lines of several worker processes
# sharing one stderr pipe never tear into each other.
WRITE_CHUNK = 4096


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
    adapter's own CPU per message, measured in one process. Here lines
    gather in memory and go out together, in writes of whole lines of at
    most :data:`WRITE_CHUNK` bytes, when that much has gathered or
    ``interval`` seconds after the first one waiting. A WARNING or worse is
    written at once, after the lines before it, so that order is kept and
    problems show without delay. ``flush()`` (called by ``logging.shutdown``
    at exit) and ``close()`` write what waits. What a hard kill (SIGKILL, a
    crash of the interpreter) loses is at most the last ``interval`` seconds
    of INFO lines.
    """

    def __init__(self, stream: IO[str], interval: float = FLUSH_SECONDS) -> None:
        super().__init__(stream)
        self.interval = interval
        self._pending: list[tuple[str, int]] = []  # (line, its length in UTF-8 bytes)
        self._pending_bytes = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        os.register_at_fork(after_in_child=self._after_fork)

    def emit(self, record: logging.LogRecord) -> None:  # called with self.lock held
        try:
            line = self.format(record) + self.terminator
            length = len(line) if line.isascii() else len(line.encode("utf-8", "replace"))
            self._pending.append((line, length))
            self._pending_bytes += length
            if record.levelno >= logging.WARNING or self._pending_bytes >= WRITE_CHUNK:
                self._write_pending()
            elif len(self._pending) == 1:
                self._wake_writer()
        except Exception:  # noqa: BLE001 - logging reports its own failures (Handler.handleError)
            self.handleError(record)

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
        """Write the waiting lines in chunks of whole lines; the caller holds self.lock."""
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        chunk: list[str] = []
        size = 0
        for line, length in pending:
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
        self._pending, self._pending_bytes = [], 0
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
