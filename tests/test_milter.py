"""The milter adapter applies a verdict: driven through pymilter's TestCtx.

Messages are fed as exact bytes through the context's callbacks (not
``_feedFile``, which re-serialises them). The gateway is a fake that returns
a chosen verdict and records what it was shown; the store is the real SQLite
store in a temporary folder.
"""

from __future__ import annotations

import email.utils
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import IO, Any

import Milter
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from Milter.testctx import TestCtx as _TestCtx

from sealgate import headers, milter_app
from sealgate.codes import Action, AuthResult, Code, Direction
from sealgate.errors import DirectoryUnavailable, StoreError
from sealgate.model import Envelope, Finding, SignerReport, Verdict
from sealgate.quarantine import SqliteQuarantine

AUTHSERV = "mx.example.com"
ALICE = SignerReport("alice@example.com", ("alice@example.com",), "1f", "CN=Test CA", "pass")


def make_verdict(action: Action, *codes: Code, signers: tuple[SignerReport, ...] = (),
                 result: AuthResult = AuthResult.NONE) -> Verdict:
    return Verdict(action=action, rule="internal", direction=Direction.INTERNAL,
                   structure="signed(plain)" if signers else "plain",
                   violations=[Finding(c, f"{c} here") for c in codes],
                   signers=list(signers), recipients=[], auth_result=result)


class FakeGateway:
    """Returns ``verdict`` (or raises ``error``); records what it was shown."""

    def __init__(self, verdict: Verdict, max_message_size: int = 50 * 1024 * 1024) -> None:
        self.config = SimpleNamespace(
            authserv_id=AUTHSERV,
            milter=SimpleNamespace(max_message_size=max_message_size),
        )
        self.verdict = verdict
        self.error: BaseException | None = None
        self.seen: bytes | None = None
        self.envelope: Envelope | None = None
        self.spool_in_memory: bool | None = None
        self.too_large_size: int | None = None

    def evaluate(self, source: IO[bytes], envelope: Envelope) -> Verdict:
        self.envelope = envelope
        self.spool_in_memory = not getattr(source, "rolled", True)
        self.seen = source.read()
        if self.error is not None:
            raise self.error
        return self.verdict

    def too_large(self, envelope: Envelope, size: int) -> Verdict:
        self.envelope = envelope
        self.too_large_size = size
        return make_verdict(Action.REJECT, Code.TOO_COMPLEX)


class Ctx(_TestCtx):
    """TestCtx that records modifications and quarantine (its own raises)."""

    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events
        self.added: list[tuple[str, str, int]] = []
        self.changed: list[tuple[str, int, str]] = []
        self.held: str | None = None

    def addheader(self, field: str, value: str, idx: int) -> None:
        self.events.append(f"add {field}")
        self.added.append((field, value, idx))

    def chgheader(self, field: str, idx: int, value: str) -> None:
        self.events.append(f"chg {field} {idx}")
        self.changed.append((field, idx, value))

    def quarantine(self, reason: str) -> None:
        self.events.append("hold")
        self.held = reason


class RecordingStore(SqliteQuarantine):
    def __init__(self, path: Path, events: list[str]) -> None:
        super().__init__(path)
        self.events = events

    def put(self, source: Any, envelope: Envelope, verdict: Verdict, received: Any = None) -> str:
        entry_id = super().put(source, envelope, verdict, received)
        self.events.append("stored")
        return entry_id


class FailingStore(RecordingStore):
    def put(self, source: Any, envelope: Envelope, verdict: Verdict, received: Any = None) -> str:
        raise StoreError(f"cannot write the message file {self.messages}/x.eml: No space left")


@pytest.fixture
def events() -> list[str]:
    return []


@pytest.fixture
def store(tmp_path: Path, events: list[str]) -> Iterator[RecordingStore]:
    s = RecordingStore(tmp_path / "q", events)
    yield s
    s.close()


@pytest.fixture
def tracker() -> milter_app.Tracker:
    return milter_app.Tracker()


@pytest.fixture(autouse=True)
def _pristine_pymilter(monkeypatch: pytest.MonkeyPatch) -> None:
    # TestCtx negotiates into a class-level list: give each test its own.
    monkeypatch.setattr(_TestCtx, "default_opts", [Milter.CURR_ACTS, 0x1FFFFF, 0, 0])
    monkeypatch.setattr(Milter, "factory", Milter.factory)


def connect(gateway: FakeGateway, store: Any, tracker: milter_app.Tracker,
            events: list[str]) -> Ctx:
    milter_app.install(gateway, store, tracker)
    ctx = Ctx(events)
    assert ctx._connect(host="mail.client.test", ip="192.0.2.7") == Milter.CONTINUE
    return ctx


HEADERS: list[tuple[str, bytes]] = [
    ("Received", b"from client (client [192.0.2.7])\n\tby mx.example.com; Tue, 1 Jan 2030"),
    ("From", b"Alice <alice@example.com>"),
    ("To", b"bob@example.com"),
    ("Subject", b"hello"),
]
BODY = b"line one\r\nline two\r\n\r\n--\r\nsig\r\n"


def send(ctx: Ctx, headers_: list[tuple[str, bytes]] = HEADERS, body: bytes = BODY,
         sender: str = "<alice@example.com>",
         rcpts: tuple[str, ...] = ("<bob@example.com>", "<carol@example.com>"),
         queue_id: str = "4QID1", chunk: int = 65535) -> int:
    """One message through the callbacks libmilter would call, exact bytes."""
    ctx._setsymval("i", queue_id)
    rc = ctx._envfrom(sender)
    if rc != Milter.CONTINUE:
        return rc
    priv = ctx.getpriv()
    for rcpt in rcpts:  # as libmilter through pymilter: bytes, to envrcpt_bytes
        assert priv.envrcpt_bytes(rcpt.encode()) in (Milter.CONTINUE, Milter.NOREPLY)
    for name, value in headers_:
        assert priv.header_bytes(name, value) in (Milter.CONTINUE, Milter.NOREPLY)
    for start in range(0, len(body), chunk):
        rc = priv.body(body[start:start + chunk])
        if rc == Milter.SKIP:
            break
        assert rc == Milter.CONTINUE
    return ctx._eom()


# ---------------------------------------------------------------- what the engine sees

def test_engine_sees_the_message_reconstructed_with_crlf(store: Any, tracker: Any,
                                                         events: list[str]) -> None:
    gateway = FakeGateway(make_verdict(Action.ACCEPT))
    ctx = connect(gateway, store, tracker, events)
    assert send(ctx, chunk=7) == Milter.CONTINUE
    assert gateway.seen == (
        b"Received: from client (client [192.0.2.7])\r\n\tby mx.example.com; Tue, 1 Jan 2030\r\n"
        b"From: Alice <alice@example.com>\r\nTo: bob@example.com\r\nSubject: hello\r\n"
        b"\r\n" + BODY)


def test_engine_gets_the_envelope(store: Any, tracker: Any, events: list[str]) -> None:
    gateway = FakeGateway(make_verdict(Action.ACCEPT))
    ctx = connect(gateway, store, tracker, events)
    send(ctx)
    assert gateway.envelope == Envelope(
        sender="alice@example.com", recipients=("bob@example.com", "carol@example.com"),
        from_header="alice@example.com", client_address="192.0.2.7", queue_id="4QID1")


def test_null_sender_is_empty(store: Any, tracker: Any, events: list[str]) -> None:
    gateway = FakeGateway(make_verdict(Action.ACCEPT))
    ctx = connect(gateway, store, tracker, events)
    send(ctx, sender="<>")
    assert gateway.envelope is not None and gateway.envelope.sender == ""


def test_message_without_body_still_has_the_blank_line(store: Any, tracker: Any,
                                                       events: list[str]) -> None:
    gateway = FakeGateway(make_verdict(Action.ACCEPT))
    ctx = connect(gateway, store, tracker, events)
    send(ctx, headers_=[("Subject", b"x")], body=b"")
    assert gateway.seen == b"Subject: x\r\n\r\n"


def test_second_message_on_a_connection_starts_afresh(store: Any, tracker: Any,
                                                      events: list[str]) -> None:
    gateway = FakeGateway(make_verdict(Action.ACCEPT))
    ctx = connect(gateway, store, tracker, events)
    send(ctx)
    send(ctx, headers_=[("Subject", b"two")], body=b"2\r\n", rcpts=("<dave@example.com>",),
         queue_id="4QID2")
    assert gateway.seen == b"Subject: two\r\n\r\n2\r\n"
    assert gateway.envelope is not None
    assert gateway.envelope.recipients == ("dave@example.com",)
    assert gateway.envelope.from_header is None
    assert gateway.envelope.queue_id == "4QID2"


def test_small_body_stays_in_memory_large_body_goes_to_a_file(store: Any, tracker: Any,
                                                              events: list[str]) -> None:
    gateway = FakeGateway(make_verdict(Action.ACCEPT))
    ctx = connect(gateway, store, tracker, events)
    send(ctx)
    assert gateway.spool_in_memory is True
    big = b"x" * 1000 + b"\r\n"
    body = big * (2 * milter_app.SPOOL_MEMORY // len(big))
    send(ctx, body=body)
    assert gateway.spool_in_memory is False
    assert gateway.seen is not None and gateway.seen.endswith(body)


def test_message_over_the_size_limit_is_judged_without_reading_it(
        store: Any, tracker: Any, events: list[str]) -> None:
    gateway = FakeGateway(make_verdict(Action.ACCEPT), max_message_size=10_000)
    ctx = connect(gateway, store, tracker, events)
    rc = send(ctx, body=b"y" * 50_000, chunk=4096)
    assert gateway.seen is None  # evaluate never called
    assert gateway.too_large_size is not None and gateway.too_large_size > 10_000
    assert rc == Milter.REJECT
    assert ctx._reply is not None and "too-complex" in ctx._reply[2]


# ---------------------------------------------------------------- actions

def test_accept_adds_authentication_results_and_policy(store: Any, tracker: Any,
                                                       events: list[str]) -> None:
    verdict = make_verdict(Action.ACCEPT, signers=(ALICE,), result=AuthResult.PASS)
    ctx = connect(FakeGateway(verdict), store, tracker, events)
    assert send(ctx) == Milter.CONTINUE
    assert ctx.added == [
        ("Sealgate-Policy", "rule=internal; action=accept; codes=none", 0),
        ("Authentication-Results",
         "mx.example.com; smime=pass body.smime-identifier=alice@example.com "
         'body.smime-serial=1f body.smime-issuer="CN=Test CA"', 0),
    ]
    assert ctx.held is None
    assert ctx._reply is None


def test_tag_names_the_codes_in_sealgate_policy(store: Any, tracker: Any,
                                                events: list[str]) -> None:
    verdict = make_verdict(Action.TAG, Code.UNSIGNED, Code.UNENCRYPTED)
    ctx = connect(FakeGateway(verdict), store, tracker, events)
    assert send(ctx) == Milter.CONTINUE
    assert ("Sealgate-Policy", "rule=internal; action=tag; codes=unencrypted,unsigned", 0) \
        in ctx.added
    assert ("Authentication-Results", "mx.example.com; smime=none", 0) in ctx.added
    assert store.count() == 0


def test_quarantine_stores_durably_then_discards_postfix_copy(store: RecordingStore, tracker: Any,
                                                              events: list[str]) -> None:
    verdict = make_verdict(Action.QUARANTINE, Code.SIGNATURE_HIDDEN)
    gateway = FakeGateway(verdict)
    ctx = connect(gateway, store, tracker, events)
    # Postfix gets DISCARD (250 to the client, its copy dropped) only after the store has it.
    assert send(ctx) == Milter.DISCARD
    assert events[0] == "stored"  # before any header modification too
    assert "hold" not in events  # no second copy in Postfix's hold queue
    (entry,) = store.list()
    with store.open_message(entry.id) as fh:
        assert fh.read() == gateway.seen
    assert entry.queue_id == "4QID1"
    assert entry.recipients == ("bob@example.com", "carol@example.com")
    assert entry.client_address == "192.0.2.7"
    assert entry.codes == ("signature-hidden",)
    assert ctx.held is None
    assert ("Sealgate-Policy", "rule=internal; action=quarantine; codes=signature-hidden", 0) \
        in ctx.added


def test_quarantine_store_failure_tempfails(tmp_path: Path, tracker: Any,
                                            events: list[str]) -> None:
    failing = FailingStore(tmp_path / "q", events)
    try:
        ctx = connect(FakeGateway(make_verdict(Action.QUARANTINE, Code.UNSIGNED)), failing,
                      tracker, events)
        assert send(ctx) == Milter.TEMPFAIL
    finally:
        failing.close()
    assert ctx._reply is not None and ctx._reply[:2] == ("451", "4.7.1")
    assert ctx.held is None
    assert ctx.added == []


def test_quarantine_of_a_message_too_large_to_keep_tempfails(store: Any, tracker: Any,
                                                             events: list[str]) -> None:
    gateway = FakeGateway(make_verdict(Action.ACCEPT), max_message_size=1000)
    gateway.too_large = lambda envelope, size: make_verdict(  # type: ignore[method-assign]
        Action.QUARANTINE, Code.TOO_COMPLEX)
    ctx = connect(gateway, store, tracker, events)
    assert send(ctx, body=b"z" * 5000) == Milter.TEMPFAIL
    assert ctx.held is None
    assert store.count() == 0


def test_reject_replies_550_with_the_codes(store: Any, tracker: Any, events: list[str]) -> None:
    verdict = make_verdict(Action.REJECT, Code.MALFORMED, Code.WEAK_ALGORITHM)
    ctx = connect(FakeGateway(verdict), store, tracker, events)
    assert send(ctx) == Milter.REJECT
    assert ctx._reply == ("550", "5.7.1", headers.reply_for(verdict)[2])
    assert "malformed, weak-algorithm" in ctx._reply[2]
    assert ctx.added == [] and ctx.changed == []


def test_tempfail_verdict_replies_451(store: Any, tracker: Any, events: list[str]) -> None:
    verdict = make_verdict(Action.TEMPFAIL, Code.CRL_UNAVAILABLE)
    ctx = connect(FakeGateway(verdict), store, tracker, events)
    assert send(ctx) == Milter.TEMPFAIL
    assert ctx._reply is not None and ctx._reply[:2] == ("451", "4.7.1")
    assert "crl-unavailable" in ctx._reply[2]


# ---------------------------------------------------------------- forged Authentication-Results

def test_forged_authentication_results_are_removed_by_index(store: Any, tracker: Any,
                                                            events: list[str]) -> None:
    forged_headers = [
        ("Authentication-Results", b"other.example.net; dkim=pass"),        # 1: kept
        ("Authentication-Results", b"mx.example.com; smime=pass"),          # 2: forged
        ("Received", b"from x by y"),
        ("authentication-results", b"(fake)\n\tMX.EXAMPLE.COM 1; smime=pass"),  # 3: forged
        ("Authentication-Results", b"mx.example.com.evil.net; smime=pass"),  # 4: kept
        *HEADERS,
    ]
    ctx = connect(FakeGateway(make_verdict(Action.ACCEPT)), store, tracker, events)
    assert send(ctx, headers_=forged_headers) == Milter.CONTINUE
    # Last first: removing one never shifts the index of another.
    assert ctx.changed == [("Authentication-Results", 3, ""), ("Authentication-Results", 2, "")]
    assert events[:2] == ["chg Authentication-Results 3", "chg Authentication-Results 2"]


def test_forged_results_are_kept_when_the_message_is_rejected(store: Any, tracker: Any,
                                                              events: list[str]) -> None:
    ctx = connect(FakeGateway(make_verdict(Action.REJECT, Code.UNSIGNED)), store, tracker, events)
    send(ctx, headers_=[("Authentication-Results", b"mx.example.com; smime=pass")])
    assert ctx.changed == []


# ---------------------------------------------------------------- failures

def test_exception_in_evaluate_tempfails_and_logs_a_traceback(
        store: Any, tracker: Any, events: list[str], caplog: pytest.LogCaptureFixture) -> None:
    gateway = FakeGateway(make_verdict(Action.ACCEPT))
    gateway.error = RuntimeError("bug in the engine")
    ctx = connect(gateway, store, tracker, events)
    with caplog.at_level(logging.INFO, logger="sealgate.milter"):
        assert send(ctx) == Milter.TEMPFAIL
    assert ctx._reply is not None and ctx._reply[:2] == ("451", "4.7.1")
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and errors[0].exc_info is not None
    assert "bug in the engine" in caplog.text
    assert "line one" not in caplog.text  # never the body
    assert tracker.active == 0


def test_directory_failure_tempfails_without_traceback(
        store: Any, tracker: Any, events: list[str], caplog: pytest.LogCaptureFixture) -> None:
    gateway = FakeGateway(make_verdict(Action.ACCEPT))
    gateway.error = DirectoryUnavailable("ldap://127.0.0.1:389 did not answer in 5 s")
    ctx = connect(gateway, store, tracker, events)
    with caplog.at_level(logging.INFO, logger="sealgate.milter"):
        assert send(ctx) == Milter.TEMPFAIL
    assert ctx._reply is not None and ctx._reply[:2] == ("451", "4.7.1")
    assert "ldap://127.0.0.1:389" in caplog.text
    assert all(r.exc_info is None for r in caplog.records)


def test_exception_in_a_no_reply_callback_tempfails_at_end_of_message(
        store: Any, tracker: Any, events: list[str], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    def boom(value: str, authserv_id: str) -> bool:
        raise ValueError("parser bug")

    monkeypatch.setattr(headers, "is_forged_authentication_results", boom)
    gateway = FakeGateway(make_verdict(Action.ACCEPT))
    ctx = connect(gateway, store, tracker, events)
    with caplog.at_level(logging.INFO, logger="sealgate.milter"):
        rc = send(ctx, headers_=[("Authentication-Results", b"x; none"), *HEADERS])
    assert rc == Milter.TEMPFAIL
    assert gateway.seen is None
    assert "parser bug" in caplog.text
    assert ctx.added == []


def test_abort_discards_the_message(store: Any, tracker: milter_app.Tracker,
                                    events: list[str]) -> None:
    ctx = connect(FakeGateway(make_verdict(Action.ACCEPT)), store, tracker, events)
    ctx._envfrom("<alice@example.com>")
    ctx.getpriv().body(b"partial")
    assert tracker.active == 1
    ctx._abort()
    assert tracker.active == 0


# ---------------------------------------------------------------- logs and draining

def test_one_key_value_log_line_per_message(store: Any, tracker: Any, events: list[str],
                                            caplog: pytest.LogCaptureFixture) -> None:
    verdict = make_verdict(Action.QUARANTINE, Code.UNENCRYPTED, Code.SIGNATURE_HIDDEN)
    ctx = connect(FakeGateway(verdict), store, tracker, events)
    with caplog.at_level(logging.INFO, logger="sealgate.milter"):
        send(ctx)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("message ")]
    assert len(lines) == 1
    fields = dict(part.split("=", 1) for part in lines[0].split()[1:])
    assert fields["queue_id"] == "4QID1"
    assert fields["sender"] == "alice@example.com"
    assert fields["rcpts"] == "2"
    assert fields["rule"] == "internal"
    assert fields["action"] == "quarantine"
    assert fields["codes"] == "signature-hidden,unencrypted"
    assert fields["structure"] == "plain"
    assert int(fields["ms"]) >= 0
    assert fields["quarantine_id"] == store.list()[0].id
    assert "line one" not in caplog.text


def test_new_message_while_stopping_is_tempfailed(store: Any, tracker: milter_app.Tracker,
                                                  events: list[str]) -> None:
    ctx = connect(FakeGateway(make_verdict(Action.ACCEPT)), store, tracker, events)
    tracker.stop()
    assert send(ctx) == Milter.TEMPFAIL
    assert ctx._reply is not None and ctx._reply[:2] == ("451", "4.7.1")
    assert tracker.active == 0


def test_message_in_flight_when_stopping_finishes(store: Any, tracker: milter_app.Tracker,
                                                  events: list[str]) -> None:
    ctx = connect(FakeGateway(make_verdict(Action.ACCEPT)), store, tracker, events)
    ctx._envfrom("<alice@example.com>")
    tracker.stop()
    assert not tracker.wait_idle(0.01)
    priv = ctx.getpriv()
    priv.header_bytes("Subject", b"x")
    priv.body(b"body\r\n")
    assert ctx._eom() == Milter.CONTINUE
    assert tracker.wait_idle(0.01)


def test_a_stop_waiting_for_messages_wakes_when_the_last_one_ends() -> None:
    tracker = milter_app.Tracker()
    for _ in range(3):
        assert tracker.begin()
    woke: list[tuple[bool, float]] = []

    def wait() -> None:
        woke.append((tracker.wait_idle(30), time.monotonic()))

    waiter = threading.Thread(target=wait)
    waiter.start()
    for _ in range(3):
        time.sleep(0.05)
        assert not woke  # still messages in flight
        tracker.end()
    ended = time.monotonic()
    waiter.join(10)
    assert woke and woke[0][0] is True and woke[0][1] - ended < 5  # woken, not timed out
    tracker.stop()
    assert not tracker.begin() and tracker.active == 0 and tracker.wait_idle(0)


def test_recipients_arrive_as_bytes_decoded_as_pymilter_decodes_them(
        store: Any, tracker: Any, events: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    gateway = FakeGateway(make_verdict(Action.ACCEPT))
    ctx = connect(gateway, store, tracker, events)
    ctx._envfrom("<alice@example.com>")
    priv = ctx.getpriv()
    priv._protocol |= Milter.P_NR_RCPT  # Postfix agreed: no reply to RCPT TO
    assert priv.envrcpt_bytes(b"<bob@example.com>", b"NOTIFY=NEVER") == Milter.NOREPLY
    priv._protocol &= ~Milter.P_NR_RCPT
    assert priv.envrcpt_bytes("<jös\xe9@example.com>".encode("utf-8", "surrogateescape")
                              .replace(b"\xc3\xa9", b"\xe9")) == Milter.CONTINUE
    assert priv.recipients == ["bob@example.com", "jös\udce9@example.com"]

    def broken(address: str) -> str:
        raise ValueError("address parser bug")

    monkeypatch.setattr(milter_app, "_bracketless", broken)
    assert priv.envrcpt_bytes(b"<carol@example.com>") == Milter.CONTINUE  # answered at the end
    priv.header_bytes("Subject", b"x")
    assert ctx._eom() == Milter.TEMPFAIL and gateway.seen is None


def test_only_the_needed_actions_are_negotiated(store: Any, tracker: Any,
                                                events: list[str]) -> None:
    ctx = connect(FakeGateway(make_verdict(Action.ACCEPT)), store, tracker, events)
    priv = ctx.getpriv()
    assert priv._actions == Milter.ADDHDRS | Milter.CHGHDRS
    for step in (Milter.P_NOHELO, Milter.P_NODATA, Milter.P_NOUNKNOWN, Milter.P_NOEOH,
                 Milter.P_NR_HDR, Milter.P_NR_RCPT):
        assert priv._protocol & step, hex(step)
    for step in (Milter.P_NOCONNECT, Milter.P_NOMAIL, Milter.P_NORCPT, Milter.P_NOHDRS,
                 Milter.P_NOBODY):
        assert not priv._protocol & step, hex(step)


# ---------------------------------------------------------------- From: address

_ATEXT = "abcXYZ019!#$%&'*+/=?^_`{|}~-"
_atoms = st.text(_ATEXT, min_size=1, max_size=4)
_addrs = st.builds(lambda local, domain: ".".join(local) + "@" + ".".join(domain),
                   st.lists(_atoms, min_size=1, max_size=3),
                   st.lists(st.text("abcXY09-", min_size=1, max_size=4), min_size=1, max_size=3))
_spaces = st.sampled_from(["", " ", "  ", "\t"])
_display_names = st.lists(st.one_of(_atoms, st.just("."), st.builds(
    lambda t: f'"{t}"', st.text(_ATEXT + " ,.;:<>@()\u00fc", max_size=5))), max_size=4)
_from_values = st.one_of(
    st.builds(lambda a, b, c: a + b + c, _spaces, _addrs, _spaces),
    st.builds(lambda a, names, sep, addr, b: a + sep.join(names) + sep + f"<{addr}>" + b,
              _spaces, _display_names, _spaces, _addrs, _spaces))


@st.composite
def _mutated_from_values(draw: st.DrawFn) -> str:
    """Well-formed From: values, some with a character inserted, dropped or replaced."""
    value = draw(_from_values)
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(value)))
        char = draw(st.sampled_from(' \t."<>@,;:()[]\\\r\n\u00e9\ufffd' + _ATEXT))
        value = draw(st.sampled_from([value[:at] + char + value[at:], value[:at] + value[at + 1:],
                                      value[:at] + char + value[at + 1:]]))
    return value


@settings(max_examples=1000, deadline=None)
@given(_mutated_from_values())
def test_from_address_is_what_parseaddr_reads(value: str) -> None:
    # The fast path for simple From: values must never disagree with email.utils.
    assert milter_app.from_address(value) == (email.utils.parseaddr(value)[1] or None)


@pytest.mark.parametrize("value, address", [
    ("alice@example.com", "alice@example.com"),
    ("Alice Example <alice@example.com>", "alice@example.com"),
    ('"Doe, John" <john.doe@example.com>', "john.doe@example.com"),
    ("John Q. Public <jqp@example.org>", "jqp@example.org"),
    ("alice@example.com (Alice)", "alice@example.com"),  # not simple: parseaddr reads it
    ("undisclosed-recipients:;", None),
    ("", None),
])
def test_from_address_examples(value: str, address: str | None) -> None:
    assert milter_app.from_address(value) == address
