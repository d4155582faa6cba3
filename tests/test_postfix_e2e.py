"""End to end: SMTP client → real Postfix → real ``sealgate milter`` → SMTP sink.

Postfix loads deploy/postfix/main.cf and master.cf as shipped; messages are
made by openssl (sealgate.devmail) with the session's test PKI.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from postfix_fixtures import SealgateProcess, copy_directory, mta  # noqa: F401 - fixture

from sealgate import devmail as m
from sealgate.devpki import TestPKI
from sealgate.devpostfix import DevPostfix, Received
from sealgate.quarantine import SqliteQuarantine

# FilesDirectory re-checks its folder at most this often (seconds, its default).
FILES_CHECK_INTERVAL = 1.0
BODY = m.text_entity("Hi Bob,\r\n\r\nthe figures, as promised.\r\n")


@pytest.fixture(scope="module")
def gate(mta: DevPostfix, pki: TestPKI) -> Iterator[SealgateProcess]:  # noqa: F811
    directory = copy_directory(pki, mta.base / "published")
    process = SealgateProcess(mta, pki, directory=directory).start()
    try:
        yield process
    finally:
        process.stop()


def delivered(mta: DevPostfix, subject: str) -> Received:  # noqa: F811
    """Wait for the message with this Subject at the sink."""
    def find() -> Received | None:
        return next((r for r in list(mta.sink.messages) if subject in r.header("Subject")), None)

    mta.wait_for(find, f"delivery of {subject!r} to the sink")
    found = find()
    assert found is not None
    return found


def body_of(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[1]


def test_signed_encrypted_mail_arrives_with_authentication_results(mta, gate, pki):  # noqa: F811
    raw = m.message(m.triple_wrap(BODY, pki["alice"], [pki["bob"], pki["alice"]]),
                    "alice@example.com", ["bob@example.com"], subject="e2e pass")
    result = mta.send(raw, "alice@example.com", ["bob@example.com"])
    assert result.code == 250, result
    got = delivered(mta, "e2e pass")
    (ar,) = got.header("Authentication-Results")
    assert ar.startswith("mx.example.com; smime=pass")
    assert "body.smime-identifier=alice@example.com" in ar
    assert got.header("Sealgate-Policy") == ["rule=internal; action=accept; codes=none"]
    # The S/MIME body reaches the recipient byte for byte: signatures still verify there.
    assert body_of(got.data) == body_of(raw)
    # One JSON log line for it, with Postfix's queue id.
    queue_id = mta.queue_id(result)
    line = gate.message_record(queue_id)
    assert (line["rule"], line["action"], line["codes"]) == ("internal", "accept", [])


def test_inbound_unsigned_mail_is_tagged_and_delivered(mta, gate):  # noqa: F811
    raw = m.message(BODY, "someone@example.net", ["bob@example.com"], subject="e2e tag")
    result = mta.send(raw, "someone@example.net", ["bob@example.com"])
    assert result.code == 250, result
    got = delivered(mta, "e2e tag")
    assert got.header("Sealgate-Policy") == ["rule=inbound; action=tag; codes=unsigned"]
    assert got.header("Authentication-Results")[0].startswith("mx.example.com; smime=none")


def test_quarantined_mail_gets_250_is_kept_in_the_store_only(mta, gate):  # noqa: F811
    raw = m.message(BODY, "alice@example.com", ["bob@example.com"], subject="e2e quarantine")
    result = mta.send(raw, "alice@example.com", ["bob@example.com"])
    assert result.code == 250, result
    queue_id = mta.queue_id(result)
    # DISCARD after the store has it: Postfix logs it and keeps no copy of its own.
    mta.wait_for(lambda: f"{queue_id}: milter-discard" in mta.maillog(),
                 f"{queue_id} discarded by Postfix after the store took it")
    assert not any(e["queue_id"] == queue_id for e in mta.queue())
    assert not any("e2e quarantine" in r.header("Subject") for r in mta.sink.messages)
    store = SqliteQuarantine(gate.folder / "quarantine")
    try:
        (entry,) = [e for e in store.list() if e.queue_id == queue_id]
        assert "unsigned" in entry.codes
        with store.open_message(entry.id) as fh:
            assert body_of(fh.read()) == body_of(raw)
    finally:
        store.close()


def test_malformed_mail_is_rejected_550_with_the_code(mta, gate):  # noqa: F811
    entity = (b"Content-Type: application/pkcs7-mime; smime-type=signed-data\r\n"
              b"Content-Transfer-Encoding: base64\r\n\r\n!!!! not base64 !!!!\r\n")
    raw = m.message(entity, "alice@example.com", ["bob@example.com"], subject="e2e reject")
    result = mta.send(raw, "alice@example.com", ["bob@example.com"])
    assert result.code == 550
    assert result.text.startswith("5.7.1 "), result
    assert "malformed" in result.text


def test_directory_gone_tempfails_451_and_the_mail_goes_through_once_it_is_back(mta, gate, pki):  # noqa: F811
    published = mta.base / "published"
    away = mta.base / "published.away"
    # grace and frank: no other test looks them up, so no cached answer stands in.
    raw = m.message(m.triple_wrap(BODY, pki["grace"], [pki["frank"], pki["grace"]]),
                    "grace@example.com", ["frank@example.com"], subject="e2e tempfail")
    published.rename(away)
    try:
        time.sleep(FILES_CHECK_INTERVAL + 0.2)  # the files backend notices within this
        result = mta.send(raw, "grace@example.com", ["frank@example.com"])
    finally:
        away.rename(published)
    assert result.code == 451
    assert result.text.startswith("4.7.1 "), result
    assert "directory-unavailable" in result.text
    # The client keeps the message and retries: now it passes.
    again = mta.send(raw, "grace@example.com", ["frank@example.com"])
    assert again.code == 250, again
    assert delivered(mta, "e2e tempfail").header("Sealgate-Policy")[0].endswith("action=accept; codes=none")


def test_released_mail_is_reinjected_without_the_milter_and_delivered(mta, gate):  # noqa: F811
    raw = m.message(BODY, "alice@example.com", ["bob@example.com"], subject="e2e release")
    result = mta.send(raw, "alice@example.com", ["bob@example.com"])
    assert result.code == 250
    queue_id = mta.queue_id(result)
    store = SqliteQuarantine(gate.folder / "quarantine")
    try:
        (entry,) = [e for e in store.list() if e.queue_id == queue_id]
        with store.open_message(entry.id) as fh:
            stored = fh.read()
    finally:
        store.close()
    # [quarantine] release_smtp is the milter-less smtpd of deploy/postfix/master.cf.
    proc = subprocess.run(
        [sys.executable, "-m", "sealgate", "quarantine", "release", "--config", str(gate.config),
         "--reason", "e2e: reviewed, legitimate", "--reviewer", "e2e", entry.id],
        capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = delivered(mta, "e2e release")
    # Not judged again: through the milter it would have been held a second
    # time and carry a Sealgate-Policy header; the store keeps the bytes as received.
    assert got.header("Sealgate-Policy") == []
    assert body_of(got.data) == body_of(raw)
    assert stored.endswith(body_of(raw))
    store = SqliteQuarantine(gate.folder / "quarantine")
    try:
        assert store.get(entry.id).state == "released"
    finally:
        store.close()
    # The store's copy was the only one: nothing of it is left in Postfix's queue.
    assert not any(e["queue_id"] == queue_id for e in mta.queue())


def test_milter_down_means_451_and_nothing_lost(mta, gate, pki):  # noqa: F811
    raw = m.message(m.triple_wrap(BODY, pki["alice"], [pki["bob"], pki["alice"]]),
                    "alice@example.com", ["bob@example.com"], subject="e2e milter down")
    assert gate.stop() == 0
    try:
        refused = mta.send(raw, "alice@example.com", ["bob@example.com"])
    finally:
        gate.start()
    assert refused.code == 451, refused  # milter_default_action = tempfail
    assert not any("e2e milter down" in r.header("Subject") for r in mta.sink.messages)
    assert all(e["queue_name"] not in ("incoming", "active") for e in mta.queue())
    # The client still has the message; its retry, with the milter back, is delivered.
    retried = mta.send(raw, "alice@example.com", ["bob@example.com"])
    assert retried.code == 250, retried
    delivered(mta, "e2e milter down")
