"""``sealgate sendmail`` / ``seal --submit``: sendmail(8) arguments and SMTP submission on loopback."""

from __future__ import annotations

import datetime as dt
import io
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from endpoint_fixtures import Site, endpoint_site_fixture, softhsm_fixture  # noqa: F401 - fixtures
from seal_helpers import plain_message

from sealgate.cli import main
from sealgate.endpoint.errors import EndpointError
from sealgate.endpoint.sendmail import envelope_recipients, parse_args
from sealgate.endpoint.submit import parse_url
from sealgate.model import Envelope


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes


@dataclass
class Collector:
    """aiosmtpd handler that keeps every message it is given."""

    messages: list[Received] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001, N802 - aiosmtpd hook
        self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[str, Collector]]:
    handler = Collector()
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{controller.port}", handler
    finally:
        controller.stop()


def test_sendmail_arguments_like_sendmail() -> None:
    args = parse_args(["-oi", "-f", "<alice@example.com>", "-oem", "--", "bob@example.com"])
    assert args.sender == "alice@example.com" and args.recipients == ["bob@example.com"]
    assert not args.extract and "-oem" in args.ignored
    args = parse_args(["-t", "-i", "-falice@example.com", "-B", "8BITMIME", "extra@example.com"])
    assert args.extract and args.sender == "alice@example.com"
    assert args.recipients == ["extra@example.com"] and args.ignored == ["-B", "8BITMIME"]
    # -t: the header recipients plus the arguments (as Postfix does)
    assert envelope_recipients(args, ["bob@example.com", "extra@example.com"]) == \
        ["bob@example.com", "extra@example.com"]
    assert envelope_recipients(parse_args(["carol@example.com"]), ["bob@example.com"]) == \
        ["carol@example.com"]
    with pytest.raises(EndpointError, match="no recipients"):
        envelope_recipients(parse_args([]), ["bob@example.com"])
    with pytest.raises(EndpointError, match="needs an address"):
        parse_args(["-f"])


def test_submit_url_forms() -> None:
    assert parse_url("smtp://127.0.0.1:2525") == ("smtp", "127.0.0.1", 2525)
    assert parse_url("submission://[::1]") == ("submission", "::1", 587)
    with pytest.raises(EndpointError, match="is not smtp://"):
        parse_url("http://127.0.0.1")


def test_sendmail_t_seals_and_submits_to_every_recipient(endpoint_site: Site, smtp,  # noqa: ANN001
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    url, received = smtp
    alice = endpoint_site.enrol("alice", pin="3141")
    bob = endpoint_site.enrol("bob")
    dave = endpoint_site.enrol("dave")
    monkeypatch.setenv("ALICE_PIN", "3141")
    raw = plain_message(alice.email, [bob.email]).replace(b"Subject:", b"Bcc: dave@example.com\r\nSubject:")
    result = CliRunner().invoke(main, [
        "sendmail", "--config", str(endpoint_site.config_path), "--token", alice.token,
        "--pin-env", "ALICE_PIN", "--submit", url, "-oem", "-oi", "-t", "-f", alice.email, "--", bob.email],
        input=raw.replace(b"\r\n", b"\n"))  # a MUA writes LF
    assert result.exit_code == 0, result.output
    [msg] = received.messages
    assert msg.sender == alice.email and sorted(msg.recipients) == [bob.email, dave.email]
    assert b"Bcc:" not in msg.data
    verdict = endpoint_site.gateway().evaluate(io.BytesIO(msg.data), Envelope(alice.email, (bob.email,)))
    assert str(verdict.action) == "accept" and verdict.structure == "signed(encrypted)"


def test_seal_submit_option_sends_over_smtp(endpoint_site: Site, smtp,  # noqa: ANN001
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    url, received = smtp
    alice = endpoint_site.enrol("alice", pin="2718")
    bob = endpoint_site.enrol("bob")
    monkeypatch.setenv("ALICE_PIN", "2718")
    result = CliRunner().invoke(main, [
        "seal", "--config", str(endpoint_site.config_path), "--token", alice.token,
        "--pin-env", "ALICE_PIN", "--submit", url, "-"], input=plain_message(alice.email, [bob.email]))
    assert result.exit_code == 0, result.output
    assert [m.recipients for m in received.messages] == [[bob.email]]


def test_unreachable_server_is_one_clear_sentence_and_ex_tempfail(endpoint_site: Site,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    alice = endpoint_site.enrol("alice", pin="1618")
    bob = endpoint_site.enrol("bob")
    monkeypatch.setenv("ALICE_PIN", "1618")
    port = _free_port()  # nothing listens there
    result = CliRunner().invoke(main, [
        "sendmail", "--config", str(endpoint_site.config_path), "--token", alice.token,
        "--pin-env", "ALICE_PIN", "--submit", f"smtp://127.0.0.1:{port}", bob.email],
        input=plain_message(alice.email, [bob.email]))
    assert result.exit_code == 75  # EX_TEMPFAIL: the mail client keeps the message
    assert f"cannot submit to 127.0.0.1:{port}" in result.output


@dataclass
class Answering:
    """aiosmtpd handler that answers the end of data with a fixed reply."""

    reply: str

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001, N802 - aiosmtpd hook
        return self.reply


@pytest.mark.parametrize(("reply", "status"), [("451 4.3.0 try again later", 75),
                                               ("554 5.7.1 not accepted", 2)])
def test_a_4xx_answer_is_ex_tempfail_and_a_5xx_answer_is_not(endpoint_site: Site, reply: str, status: int,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    alice = endpoint_site.enrol("alice", pin="1414")
    bob = endpoint_site.enrol("bob")
    monkeypatch.setenv("ALICE_PIN", "1414")
    controller = Controller(Answering(reply), hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        result = CliRunner().invoke(main, [
            "sendmail", "--config", str(endpoint_site.config_path), "--token", alice.token,
            "--pin-env", "ALICE_PIN", "--submit", f"smtp://127.0.0.1:{controller.port}", bob.email],
            input=plain_message(alice.email, [bob.email]))
    finally:
        controller.stop()
    assert result.exit_code == status, result.output
    assert reply.split()[0] in result.output


def _tls_server_context(folder: Path) -> tuple[ssl.SSLContext, Path]:
    """A server certificate for 127.0.0.1 under a throwaway CA; (server context, CA file)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Loopback Test CA")])
    ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    (folder / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    (folder / "ca.pem").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "server.pem", folder / "server.key")
    return context, folder / "ca.pem"


def test_submission_uses_starttls_when_offered(endpoint_site: Site, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    context, ca_file = _tls_server_context(tmp_path)
    handler = Collector()
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port(), tls_context=context,
                            require_starttls=True)
    controller.start()
    try:
        alice = endpoint_site.enrol("alice", pin="1414")
        bob = endpoint_site.enrol("bob")
        monkeypatch.setenv("ALICE_PIN", "1414")
        url = f"smtp://127.0.0.1:{controller.port}"
        args = ["sendmail", "--config", str(endpoint_site.config_path), "--token", alice.token,
                "--pin-env", "ALICE_PIN", "--submit", url]
        # the server's certificate is checked: without its CA the submission fails
        result = CliRunner().invoke(main, [*args, bob.email], input=plain_message(alice.email, [bob.email]))
        assert result.exit_code == 2 and "certificate verify failed" in result.output
        result = CliRunner().invoke(main, [*args, "--submit-ca", str(ca_file), bob.email],
                                    input=plain_message(alice.email, [bob.email]))
        assert result.exit_code == 0, result.output
    finally:
        controller.stop()
    [msg] = handler.messages
    assert msg.recipients == [bob.email]
