"""Logs for operators: one line per message (queue id, rule, action, codes), text or JSON.

Driven through the real ``sealgate milter`` process (MTA side:
sealgate.milterclient); never a key or a body in the log.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import time
from pathlib import Path

import pytest
from gateway_helpers import write_config

from sealgate import devmail as m
from sealgate.devpki import TestPKI
from sealgate.logging_setup import (
    MAX_HELD,
    WRITE_CHUNK,
    BatchedStreamHandler,
    FieldsText,
    JsonFormatter,
    flush_logs,
    kv,
    log_later,
    render_fields,
    setup,
)
from sealgate.milterclient import MilterProcess

MARKER = "body-marker-7f3a9c must never be logged"


def run_milter(folder: Path, pki: TestPKI, log_format: str,
               messages: list[tuple[bytes, str, list[str], str]]) -> str:
    """Start the milter, push ``messages`` (raw, sender, rcpts, queue id), stop it; its stderr."""
    config = write_config(folder, pki)
    log = folder / "milter.log"
    milter = MilterProcess(config, folder / "sealgate.sock", log, "--log-format", log_format)
    try:
        for raw, sender, rcpts, queue_id in messages:
            milter.send(raw, sender, rcpts, queue_id)
    finally:
        assert milter.stop() == 0
    return log.read_text()


@pytest.fixture(scope="module")
def mail(pki: TestPKI) -> list[tuple[bytes, str, list[str], str]]:
    body = m.text_entity(MARKER + "\r\n")
    return [
        (m.message(m.triple_wrap(body, pki["alice"], [pki["bob"], pki["alice"]]),
                   "alice@example.com", ["bob@example.com"]),
         "alice@example.com", ["bob@example.com"], "4QPASS"),
        (m.message(body, "alice@example.com", ["bob@example.com"]),
         "alice@example.com", ["bob@example.com"], "4QHOLD"),
        (m.message(body, "x@example.net", ["bob@example.com", "carol@example.com"]),
         "x@example.net", ["bob@example.com", "carol@example.com"], "4QTAG"),
    ]


def secrets(pki: TestPKI) -> list[str]:
    """Lines of every private key of the test PKI (none may appear in a log)."""
    lines = []
    for path in sorted((pki.root / "keys").glob("*.key")):
        lines += [line for line in path.read_text().splitlines() if not line.startswith("-----")]
    assert lines
    return lines


def test_json_log_has_one_line_per_message_with_queue_id_rule_action_codes(pki, mail, tmp_path):
    text = run_milter(tmp_path, pki, "json", mail)
    records = [json.loads(line) for line in text.splitlines()]  # every line is JSON
    messages = {r["queue_id"]: r for r in records if r["msg"] == "message"}
    assert set(messages) == {"4QPASS", "4QHOLD", "4QTAG"}
    assert (messages["4QPASS"]["rule"], messages["4QPASS"]["action"],
            messages["4QPASS"]["codes"]) == ("internal", "accept", [])
    assert (messages["4QHOLD"]["action"], messages["4QHOLD"]["codes"]) == (
        "quarantine", ["unencrypted", "unsigned"])
    assert messages["4QHOLD"]["quarantine_id"]
    assert (messages["4QTAG"]["rule"], messages["4QTAG"]["action"], messages["4QTAG"]["rcpts"],
            messages["4QTAG"]["direction"]) == ("inbound", "tag", 2, "inbound")
    assert all(r["level"] in ("info", "warning", "error") and r["ts"] for r in records)
    assert not [r for r in records if r["level"] in ("warning", "error")]


def test_text_log_is_key_value_one_line_per_message(pki, mail, tmp_path):
    text = run_milter(tmp_path, pki, "text", mail)
    lines = [line for line in text.splitlines() if " message queue_id=" in line]
    assert len(lines) == 3
    hold = next(line for line in lines if "queue_id=4QHOLD" in line)
    assert "rule=internal action=quarantine codes=unencrypted,unsigned" in hold
    assert "sender=alice@example.com" in hold


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_body_and_no_key_in_the_log(pki, mail, tmp_path, log_format):
    text = run_milter(tmp_path, pki, log_format, mail)
    assert "body-marker-7f3a9c" not in text
    for line in secrets(pki):
        assert line not in text


def test_values_are_quoted_and_kept_on_one_line():
    assert kv("plain") == "plain"
    assert kv("") == "-"
    assert kv(None) == "-"
    assert kv(("unsigned", "unencrypted")) == "unsigned,unencrypted"
    assert kv('a b"c') == '"a b\\"c"'
    assert kv("file.toml: x\nfile.toml: y") == '"file.toml: x\\nfile.toml: y"'
    assert render_fields({"queue_id": "4Q", "codes": ()}) == "queue_id=4Q codes=-"


def test_json_formatter_puts_fields_as_members_and_exceptions_as_text():
    stream = io.StringIO()
    setup("info", "json", stream)
    try:
        log = logging.getLogger("sealgate.test")
        log.info("message %s", "queue_id=4Q", extra={"fields": {"queue_id": "4Q", "codes": ("a",)}})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed on %s", "4Q")
    finally:
        logging.getLogger().handlers.clear()
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (first["msg"], first["queue_id"], first["codes"]) == ("message", "4Q", ["a"])
    assert second["msg"] == "failed on 4Q" and "ValueError: boom" in second["exc"]
    assert isinstance(JsonFormatter().format(logging.makeLogRecord({"msg": "x"})), str)


def test_unknown_log_format_is_refused():
    with pytest.raises(ValueError, match="log format 'xml'"):
        setup("info", "xml")


class Writes(io.StringIO):
    """A stream that keeps each write separately (what reached the file, in which pieces)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def batched(stream: io.StringIO, interval: float) -> tuple[logging.Logger, BatchedStreamHandler]:
    handler = BatchedStreamHandler(stream, interval)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    log = logging.getLogger(f"sealgate.test.batched.{id(handler)}")
    log.propagate = False
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    return log, handler


def test_info_lines_wait_for_the_interval_then_go_out_together():
    stream = Writes()
    log, handler = batched(stream, 0.3)
    try:
        for n in range(5):
            log.info("message %d", n)
        assert stream.getvalue() == ""  # held: nothing written yet
        deadline = time.monotonic() + 10
        while not stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert stream.getvalue() == "".join(f"INFO message {n}\n" for n in range(5))
        assert len(stream.writes) == 1  # one write for all five
    finally:
        handler.close()


def test_a_warning_goes_out_at_once_after_the_lines_before_it():
    stream = Writes()
    log, handler = batched(stream, 60.0)
    try:
        log.info("first")
        log.debug("second")
        assert stream.getvalue() == ""
        log.warning("third")
        assert stream.getvalue() == "INFO first\nDEBUG second\nWARNING third\n"
        log.info("fourth")
        handler.flush()
        assert stream.getvalue().endswith("WARNING third\nINFO fourth\n")
    finally:
        handler.close()


def test_batched_writes_are_whole_lines_of_at_most_one_pipe_buffer():
    stream = Writes()
    log, handler = batched(stream, 60.0)
    try:
        lines = [f"line {n} " + "é" * (n * 37 % 300) for n in range(200)]  # non-ASCII: bytes > chars
        lines.append("long " + "x" * (2 * WRITE_CHUNK))  # longer than a chunk: alone, whole
        for line in lines:
            log.info("%s", line)
        handler.close()  # writes what waits
        assert stream.getvalue() == "".join(f"INFO {line}\n" for line in lines)
        assert len(stream.writes) > 2
        for text in stream.writes:
            assert text.endswith("\n")
            assert len(text.encode()) <= WRITE_CHUNK or text.count("\n") == 1
        # After close a line is written at once (no writer thread is left to do it).
        log.info("after close")
        assert stream.getvalue().endswith("INFO after close\n")
    finally:
        handler.close()


def test_a_forked_child_does_not_write_the_lines_its_parent_holds(tmp_path):
    path = tmp_path / "log"
    with path.open("a", encoding="utf-8") as stream:
        log, handler = batched(stream, 60.0)  # type: ignore[arg-type]
        try:
            log.info("parent, before the fork")
            pid = os.fork()
            if pid == 0:  # the child: its own line only, written at its exit
                log.info("child")
                flush_logs_of(handler)
                os._exit(0)
            assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
            handler.flush()
        finally:
            handler.close()
    assert path.read_text().splitlines() == ["INFO child", "INFO parent, before the fork"]


def flush_logs_of(handler: logging.Handler) -> None:
    try:
        handler.flush()
    except BaseException:  # in the forked child: never return into pytest
        os._exit(1)


def test_flush_logs_writes_what_the_root_handlers_hold():
    stream = io.StringIO()
    setup("info", "text", stream, flush_interval=60.0)
    try:
        logging.getLogger("sealgate.test").info("held")
        assert stream.getvalue() == ""
        flush_logs()
        assert "INFO sealgate.test: held" in stream.getvalue()
    finally:
        logging.getLogger().handlers.clear()


class Counted:
    """A log argument that counts how often it is rendered."""

    def __init__(self) -> None:
        self.rendered = 0

    def __str__(self) -> str:
        self.rendered += 1
        return "counted"


def test_held_lines_are_formatted_when_written_not_when_logged():
    stream = Writes()
    log, handler = batched(stream, 60.0)
    try:
        arg = Counted()
        log.info("value %s", arg)
        assert arg.rendered == 0  # only queued
        handler.flush()
        assert (arg.rendered, stream.getvalue()) == (1, "INFO value counted\n")
    finally:
        handler.close()


def test_a_line_that_cannot_be_formatted_is_reported_and_the_others_are_written(capsys):
    stream = Writes()
    log, handler = batched(stream, 60.0)
    try:
        log.info("first")
        log.info("%d needs a number", "not a number")
        log.info("third")
        handler.flush()
        assert stream.getvalue() == "INFO first\nINFO third\n"
        err = capsys.readouterr().err
        assert "--- Logging error ---" in err and "Message: '%d needs a number'" in err
    finally:
        handler.close()


def test_at_most_max_held_lines_wait():
    stream = Writes()
    log, handler = batched(stream, 60.0)
    try:
        for n in range(MAX_HELD - 1):
            log.info("line %d", n)
        assert stream.getvalue() == ""
        log.info("line %d", MAX_HELD - 1)  # the last one the handler holds: all go out now
        assert stream.getvalue().count("\n") == MAX_HELD
    finally:
        handler.close()


def root_batched(fmt: str = "text") -> io.StringIO:
    stream = io.StringIO()
    setup("info", fmt, stream, flush_interval=60.0)
    return stream


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_log_later_writes_the_line_log_info_writes_with_the_time_of_the_call(fmt):
    stream = root_batched(fmt)
    try:
        log = logging.getLogger("sealgate.test.later")
        fields = {"queue_id": "4Q", "codes": ("unsigned",), "ms": 3}
        handler = logging.getLogger().handlers[0]
        called = time.time()
        log_later(log, logging.INFO, "message %s", FieldsText(fields), extra={"fields": fields})
        assert stream.getvalue() == "" and len(handler._pending) == 1  # type: ignore[attr-defined]
        time.sleep(1.1)  # the line is written later; its time stays the call's
        log.info("message %s", FieldsText(fields), extra={"fields": fields})
        flush_logs()
    finally:
        logging.getLogger().handlers.clear()
    later, direct = stream.getvalue().splitlines()
    if fmt == "json":
        a, b = json.loads(later), json.loads(direct)
        assert (a["msg"], a["queue_id"], a["codes"], a["pid"]) == ("message", "4Q", ["unsigned"], os.getpid())
        assert {k: v for k, v in a.items() if k != "ts"} == {k: v for k, v in b.items() if k != "ts"}
        stamp = a["ts"]
    else:
        assert later.split(" ", 2)[2] == direct.split(" ", 2)[2]  # all but the date and time
        assert later.split(" ", 2)[2] == (f"sealgate[{os.getpid()}] INFO sealgate.test.later: "
                                          "message queue_id=4Q codes=unsigned ms=3")
        stamp = " ".join(later.split(" ", 2)[:2])
    # The held line carries the time of its call, not that of its writing a second later.
    assert stamp != (" ".join(direct.split(" ", 2)[:2]) if fmt == "text" else json.loads(direct)["ts"])
    held_at = dt.datetime.fromisoformat(stamp) if fmt == "json" else dt.datetime.strptime(
        stamp, "%Y-%m-%d %H:%M:%S,%f").astimezone()
    assert abs(held_at.timestamp() - called) < 0.5


def test_log_later_is_plain_logging_when_anything_else_would_see_the_record():
    stream = root_batched()
    seen: list[logging.LogRecord] = []
    capture = logging.Handler()
    capture.emit = seen.append  # type: ignore[method-assign]
    log = logging.getLogger("sealgate.test.later.plain")
    try:
        log.addHandler(capture)
        log_later(log, logging.INFO, "message %s", "x")
        assert [r.getMessage() for r in seen] == ["message x"]  # at once, as logger.log does
        log.removeHandler(capture)
        log.addFilter(lambda r: False)
        log_later(log, logging.INFO, "filtered %s", "y")  # the filter decides, as always
        flush_logs()
        assert "filtered" not in stream.getvalue() and "message x" in stream.getvalue()
        log.filters.clear()
        log.setLevel(logging.WARNING)
        log_later(log, logging.INFO, "below the level")
        flush_logs()
        assert "below the level" not in stream.getvalue()
    finally:
        log.setLevel(logging.NOTSET)
        log.filters.clear()
        logging.getLogger().handlers.clear()


def test_log_later_with_a_given_time_stamps_the_record_with_it_either_way():
    stream = root_batched()
    seen: list[logging.LogRecord] = []
    capture = logging.Handler()
    capture.emit = seen.append  # type: ignore[method-assign]
    log = logging.getLogger("sealgate.test.later.created")
    decided = time.time() - 30.0  # as the milter's outcome thread passes the message's time
    try:
        log_later(log, logging.INFO, "held %s", "a", created=decided)  # the batched handler's
        log.addHandler(capture)
        log_later(log, logging.INFO, "plain %s", "b", created=decided)  # plain logging's
        log.removeHandler(capture)
        flush_logs()
    finally:
        logging.getLogger().handlers.clear()
    assert [(r.getMessage(), r.created) for r in seen] == [("plain b", decided)]
    held, plain = stream.getvalue().splitlines()
    assert held.endswith("held a") and plain.endswith("plain b")
    stamp = dt.datetime.strptime(" ".join(held.split(" ", 2)[:2]), "%Y-%m-%d %H:%M:%S,%f")
    assert abs(stamp.astimezone().timestamp() - decided) < 0.01


class BrokenStream(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError("stderr is gone")


def test_log_later_never_raises_and_a_record_it_cannot_make_is_reported(capsys):
    stream = root_batched()
    log = logging.getLogger("sealgate.test.later.bad")
    try:
        # logging refuses extra keys that name a record attribute ("message"): that
        # line is reported when it is made, and the others are written.
        log_later(log, logging.INFO, "first")
        log_later(log, logging.INFO, "bad %s", "x", extra={"message": "clash"})
        log_later(log, logging.INFO, "third")
        flush_logs()
        assert [line.split(": ", 1)[1] for line in stream.getvalue().splitlines()] == [
            "first", "third"]
        assert "Message: 'bad %s'" in capsys.readouterr().err
        # A stream that fails: the call still returns (the milter's message goes on).
        handler = logging.getLogger().handlers[0]
        handler.stream = BrokenStream()  # type: ignore[attr-defined]
        handler.close()  # no writer thread left: a held line is written at once
        log_later(log, logging.INFO, "into a broken stream")
        assert "stderr is gone" in capsys.readouterr().err
    finally:
        logging.getLogger().handlers.clear()
