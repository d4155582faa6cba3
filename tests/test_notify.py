"""Sender notification: a short bounce-like notice naming the held message and why, no content.

The end-to-end tests run the real ``sealgate milter`` with notifications on,
send it a message that the strict policy quarantines, and read the notice
that arrives at a real SMTP receiver on loopback.
"""

from __future__ import annotations

import contextlib
import email
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import quarantine_fixtures as qf
from gateway_helpers import write_config
from quarantine_fixtures import ENVELOPE, VERDICT, Recorder

from sealgate import devmail as m
from sealgate.devpki import TestPKI
from sealgate.devpostgres import free_port
from sealgate.milterclient import MilterProcess, send_raw
from sealgate.model import Finding
from sealgate.notify import NotifySettings, held_notice, should_notify
from sealgate.quarantine import SqliteQuarantine

receiver = qf.receiver

SETTINGS = NotifySettings(mode="internal", notify_from="postmaster@example.com",
                          target="127.0.0.1:1", internal_domains=("example.com",),
                          retention_days=90)
MARK_SUBJECT = "MARK-SUBJECT-91ab"
MARK_BODY = "MARK-BODY-77cd"


def test_who_is_notified() -> None:
    assert should_notify(SETTINGS, "alice@example.com")
    assert not should_notify(SETTINGS, "")  # null sender: RFC 3834 §2
    assert not should_notify(SETTINGS, "MAILER-DAEMON@example.com")
    assert not should_notify(SETTINGS, "owner-list@example.com")
    assert not should_notify(SETTINGS, "ext@partner.test")  # "internal": no backscatter
    everyone = NotifySettings("all", "p@example.com", "x:1", ("example.com",), 90)
    assert should_notify(everyone, "ext@partner.test")
    nobody = NotifySettings("none", "p@example.com", "x:1", ("example.com",), 90)
    assert not should_notify(nobody, "alice@example.com")


def test_notice_names_the_message_and_the_codes_but_not_the_details() -> None:
    import dataclasses

    verdict = dataclasses.replace(VERDICT, violations=[
        Finding(VERDICT.violations[0].code, f"detail quoting {MARK_SUBJECT}")])
    raw = held_notice("20261125T120000Z-0123456789ab", ENVELOPE, verdict, SETTINGS)
    msg = email.message_from_bytes(raw)
    text = msg.get_payload(decode=True).decode()
    assert msg["To"] == "alice@example.com"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert "20261125T120000Z-0123456789ab" in msg["Subject"]
    assert "bob@example.com, carol@example.com" in text
    assert "4XyZ1" in text and "internal" in text
    assert "the message was not encrypted (unencrypted)" in text
    assert MARK_SUBJECT not in raw.decode()
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")


@pytest.fixture
def notifying_milter(tmp_path: Path, pki: TestPKI,
                     receiver: tuple[Recorder, str]) -> Iterator[tuple[Path, Recorder, Path]]:
    with _milter(tmp_path, pki, receiver[1], receiver[0]) as running:
        yield running


@contextlib.contextmanager
def _milter(tmp_path: Path, pki: TestPKI, target: str,
            recorder: Any) -> Iterator[tuple[Path, Any, Path]]:
    folder = tmp_path / "milter"
    config = write_config(folder, pki)
    config.write_text(config.read_text().replace(
        "[quarantine]\n", f'[quarantine]\nnotify_sender = "internal"\nrelease_smtp = "{target}"\n'
                          'notify_from = "postmaster@example.com"\n'))
    with MilterProcess(config, folder / "sealgate.sock", folder / "milter.log"):
        yield folder, recorder, folder / "milter.log"


def _send_plain(folder: Path, queue_id: str) -> Any:
    raw = m.message(m.text_entity(f"Hello {MARK_BODY}\r\n"), "alice@example.com",
                    ["bob@example.com"], subject=MARK_SUBJECT)
    return send_raw(folder / "sealgate.sock", raw, "alice@example.com", ["bob@example.com"], queue_id)


def _wait_for(predicate: Any, what: str) -> None:
    for _ in range(300):
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_held_message_sends_one_content_free_notice(
        notifying_milter: tuple[Path, Recorder, Path]) -> None:
    folder, recorder, _log = notifying_milter
    result = _send_plain(folder, "NOTE1")
    assert result.outcome == "held"
    _wait_for(lambda: recorder.messages, "the notice")
    (notice,) = recorder.messages
    assert notice.mail_from == "<>"  # like a bounce: RFC 5321 §4.5.5
    assert notice.rcpt_tos == ["alice@example.com"]
    store = SqliteQuarantine(folder / "quarantine")
    try:
        (entry,) = store.list()
        (decision,) = store.decisions()
    finally:
        store.close()
    text = notice.content.decode()
    assert entry.id in text and "NOTE1" in text
    assert MARK_SUBJECT not in text and MARK_BODY not in text
    assert (decision.action, decision.quarantine_id, decision.recipient_domains) == (
        "quarantine", entry.id, ("example.com",))


def test_a_failing_notice_does_not_touch_the_held_message(tmp_path: Path, pki: TestPKI) -> None:
    with _milter(tmp_path, pki, f"127.0.0.1:{free_port()}", None) as (folder, _recorder, log):
        assert _send_plain(folder, "NOTE2").outcome == "held"
        _wait_for(lambda: "event=notice-failed" in log.read_text(), "the failure log line")
        store = SqliteQuarantine(folder / "quarantine")
        try:
            assert [e.queue_id for e in store.list()] == ["NOTE2"]
        finally:
            store.close()
