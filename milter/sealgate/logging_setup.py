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
import re
import sys
from typing import IO, Any

TEXT_FORMAT = "%(asctime)s sealgate[%(process)d] %(levelname)s %(name)s: %(message)s"
FORMATS = ("text", "json")


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


def setup(level: str = "info", fmt: str = "text", stream: IO[str] | None = None) -> None:
    """Configure the root logger once for the ``sealgate`` process."""
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: use text or json")
    # Record attributes no sealgate format shows are not collected (Logging HOWTO,
    # "Optimization"): each log call would otherwise walk the stack for the caller's
    # file and line, and look up (or create, on libmilter's per-connection threads)
    # a threading.Thread object for the thread name.
    logging.logThreads = False
    logging.logMultiprocessing = False
    logging._srcfile = None
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
