"""The throwaway Postfix harness itself (the API benchmarks and tests build on)."""

from __future__ import annotations

from postfix_fixtures import require_postfix

from sealgate.devpostfix import DevPostfix

RAW = b"From: a@example.net\r\nTo: b@example.org\r\nSubject: harness\r\n\r\nexact \xff bytes\r\n"


def test_without_a_milter_mail_reaches_the_sink_byte_for_byte_and_nothing_is_left():
    require_postfix()
    with DevPostfix() as mta:
        result = mta.send(RAW, "a@example.net", ["b@example.org"])
        assert result.accepted and mta.queue_id(result)
        mta.smtp_source(messages=20, sessions=2, size=512)
        mta.wait_for(lambda: mta.sink.count() == 21 and not mta.queue(), "21 deliveries")
        assert mta.sent_count() == 21
        got = next(r for r in mta.sink.messages if r.header("Subject") == ["harness"])
        assert (got.sender, got.recipients) == ("a@example.net", ("b@example.org",))
        # Postfix adds Received, Message-Id and Date; the rest arrives as sent.
        assert got.data.startswith(b"Received: from client.test")
        assert RAW.split(b"\r\n\r\n")[0] in got.data
        assert got.data.endswith(b"\r\n\r\nexact \xff bytes\r\n")
        base = mta.base
    assert not base.exists()  # stop() removed the instance folder


def test_a_milter_that_is_not_there_means_451_but_the_reinjection_port_bypasses_it():
    require_postfix()
    with DevPostfix(milter="unix:sealgate/sealgate.sock") as mta:
        refused = mta.send(RAW, "a@example.net", ["b@example.org"])
        assert refused.code == 451 and refused.text.startswith("4.7.1")
        assert mta.reinject_port is not None
        accepted = mta.send(RAW, "a@example.net", ["b@example.org"], port=mta.reinject_port)
        assert accepted.code == 250
        mta.wait_for(lambda: mta.sink.count() == 1, "the re-injected message")
        assert "milter" in mta.maillog()  # the instance logs to its own maillog
