"""Release re-injects the original bytes with the original envelope over SMTP, never twice.

The receiver is a real SMTP server on loopback (aiosmtpd); the interrupted
releases are real processes killed with SIGKILL at the named step.
"""

from __future__ import annotations

import io
import signal
import subprocess
import sys
import textwrap
from typing import Any

import pytest
import quarantine_fixtures as qf
from quarantine_fixtures import ENVELOPE, VERDICT, Recorder, StoreFactory

from sealgate.quarantine import StateConflict
from sealgate.quarantine.release import ReleaseFailed, ReleaseUnconfirmed, dot_stuff, release

backend, factory, store, pg_server, receiver = (qf.backend, qf.factory, qf.store, qf.pg_server,
                                                qf.receiver)

# CRLF throughout (as the milter spools it), lines starting with "." that SMTP must stuff.
HELD_MESSAGE = (b"Received: from client by mx.example.com\r\nFrom: alice@example.com\r\n"
                b"Message-ID: <held-1@example.com>\r\n"
                b"To: bob@example.com, carol@example.com\r\nSubject: numbers\r\n\r\n"
                b".leading dot\r\n.\r\n..two dots\r\nend\r\n")


def _release(store: Any, entry_id: str, target: str, **kw: Any) -> Any:
    return release(store, entry_id, target, reviewer="rita", reason="ticket 7", **kw)


def test_release_delivers_the_exact_bytes_and_envelope(store: Any,
                                                       receiver: tuple[Recorder, str]) -> None:
    recorder, target = receiver
    entry_id = store.put(io.BytesIO(HELD_MESSAGE), ENVELOPE, VERDICT)
    result = _release(store, entry_id, target)
    assert result.sent and result.reply.startswith("250")
    (got,) = recorder.messages
    assert got.content == HELD_MESSAGE
    assert got.mail_from == "alice@example.com"
    assert got.rcpt_tos == ["bob@example.com", "carol@example.com"]
    entry = store.get(entry_id)
    assert entry.state == "released"
    assert entry.release_reply == "250 2.0.0 Ok: queued as TESTQ"
    (audit,) = store.audit_log(entry_id=entry_id)
    assert (audit.reviewer, audit.action, audit.reason) == ("rita", "release", "ticket 7")
    assert audit.detail["token"] == result.token


def test_second_release_of_a_released_message_sends_nothing(store: Any,
                                                            receiver: tuple[Recorder, str]) -> None:
    recorder, target = receiver
    entry_id = store.put(io.BytesIO(HELD_MESSAGE), ENVELOPE, VERDICT)
    _release(store, entry_id, target)
    with pytest.raises(StateConflict, match="released, not held"):
        _release(store, entry_id, target)
    assert len(recorder.messages) == 1


def test_null_sender_is_released_with_the_null_reverse_path(store: Any,
                                                            receiver: tuple[Recorder, str]) -> None:
    recorder, target = receiver
    bounce = qf.Envelope("", ("bob@example.com",))
    entry_id = store.put(io.BytesIO(HELD_MESSAGE), bounce, VERDICT)
    _release(store, entry_id, target)
    assert recorder.messages[0].mail_from == "<>"


def test_refused_message_goes_back_to_held(store: Any, receiver: tuple[Recorder, str]) -> None:
    recorder, target = receiver
    recorder.fail_with = "554 5.7.1 no thanks"
    entry_id = store.put(io.BytesIO(HELD_MESSAGE), ENVELOPE, VERDICT)
    with pytest.raises(ReleaseFailed, match="554 5.7.1 no thanks"):
        _release(store, entry_id, target)
    assert store.get(entry_id).state == "held"
    recorder.fail_with = None
    _release(store, entry_id, target)
    assert len(recorder.messages) == 1
    assert [a.action for a in store.audit_log(entry_id=entry_id)] == ["release-failed", "release"]


def test_unreachable_receiver_leaves_the_message_held(store: Any) -> None:
    from sealgate.devpostgres import free_port

    entry_id = store.put(io.BytesIO(HELD_MESSAGE), ENVELOPE, VERDICT)
    with pytest.raises(ReleaseFailed, match="nothing was delivered"):
        _release(store, entry_id, f"127.0.0.1:{free_port()}", timeout=5)
    assert store.get(entry_id).state == "held"


def test_release_begun_but_not_sent_is_sent_once_on_retry(store: Any,
                                                          receiver: tuple[Recorder, str]) -> None:
    # A crash right after held -> releasing (phase "prepared"): nothing reached the receiver.
    recorder, target = receiver
    entry_id = store.put(io.BytesIO(HELD_MESSAGE), ENVELOPE, VERDICT)
    token = store.begin_release(entry_id).token
    result = _release(store, entry_id, target)
    assert result.token == token
    assert len(recorder.messages) == 1
    assert store.get(entry_id).state == "released"


# ---------------------------------------------------------------- killed half-way

_CHILD = textwrap.dedent("""
    import os, signal, sys
    from sealgate.quarantine import release as rel
    from sealgate.quarantine.sqlite import SqliteQuarantine
    backend, location, entry_id, target, kill_at = sys.argv[1:6]
    if backend == "sqlite":
        store = SqliteQuarantine(location)
    else:
        from sealgate.quarantine.postgresql import PostgresQuarantine
        store = PostgresQuarantine(location)
    def checkpoint(step):
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    rel._checkpoint = checkpoint
    rel.release(store, entry_id, target, reviewer="rita", reason="ticket 7")
    print("finished")
""")


def _release_in_child_killed_at(factory: StoreFactory, entry_id: str, target: str,
                                step: str) -> None:
    result = subprocess.run([sys.executable, "-c", _CHILD, factory.backend, factory.location,
                             entry_id, target, step], capture_output=True, text=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, (result.returncode, result.stderr)


def test_release_killed_after_the_250_does_not_deliver_twice(
        factory: StoreFactory, receiver: tuple[Recorder, str]) -> None:
    recorder, target = receiver
    store = factory.open()
    entry_id = store.put(io.BytesIO(HELD_MESSAGE), ENVELOPE, VERDICT)
    _release_in_child_killed_at(factory, entry_id, target, "smtp-accepted")
    assert len(recorder.messages) == 1  # the receiver said 250, then the releaser died
    entry = store.get(entry_id)
    assert (entry.state, entry.release_phase) == ("releasing", "data-sent")

    with pytest.raises(ReleaseUnconfirmed, match=entry.release_token or "?") as info:
        _release(store, entry_id, target)  # the retry
    assert "message-id=<held-1@example.com>" in str(info.value)
    assert len(recorder.messages) == 1
    assert store.get(entry_id).state == "releasing"

    result = _release(store, entry_id, target, confirm_delivered=True)
    assert not result.sent
    assert len(recorder.messages) == 1
    assert store.get(entry_id).state == "released"
    actions = [a.action for a in store.audit_log(entry_id=entry_id)]
    assert actions == ["release-unconfirmed", "release-confirm"]


def test_release_killed_before_the_final_dot_delivers_nothing_and_resend_delivers_once(
        factory: StoreFactory, receiver: tuple[Recorder, str]) -> None:
    recorder, target = receiver
    store = factory.open()
    entry_id = store.put(io.BytesIO(HELD_MESSAGE), ENVELOPE, VERDICT)
    _release_in_child_killed_at(factory, entry_id, target, "data-sent")
    assert recorder.messages == []  # the connection dropped inside DATA: no transaction
    with pytest.raises(ReleaseUnconfirmed):
        _release(store, entry_id, target)
    assert recorder.messages == []
    _release(store, entry_id, target, resend=True)
    assert [m.content for m in recorder.messages] == [HELD_MESSAGE]
    assert store.get(entry_id).state == "released"


def test_confirm_without_an_unconfirmed_release_is_refused(store: Any,
                                                          receiver: tuple[Recorder, str]) -> None:
    recorder, target = receiver
    entry_id = store.put(io.BytesIO(HELD_MESSAGE), ENVELOPE, VERDICT)
    with pytest.raises(StateConflict, match="no unconfirmed release"):
        _release(store, entry_id, target, confirm_delivered=True)
    assert recorder.messages == []


def test_dot_stuffing_follows_rfc_5321() -> None:
    assert dot_stuff(b".a\r\nb\r\n.\r\n") == b"..a\r\nb\r\n..\r\n"
    assert dot_stuff(b"no final newline") == b"no final newline\r\n"
