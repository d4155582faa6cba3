"""Cards (SoftHSM2 tokens): keys made on the card stay there; enrolment; PINs."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket

import pkcs11
import pytest
from asn1crypto import csr as asn1csr
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from endpoint_fixtures import Site, endpoint_site_fixture, softhsm_fixture  # noqa: F401 - fixtures

from sealgate.cli import main
from sealgate.directory.files import FilesDirectory
from sealgate.endpoint import card as cardmod
from sealgate.endpoint.card import Card
from sealgate.endpoint.csr import build_csr
from sealgate.endpoint.enrol import enrol
from sealgate.endpoint.errors import CardError, EndpointError, PinError
from sealgate.endpoint.pin import read_pin


def test_private_key_made_on_card_is_sensitive_and_cannot_be_read(endpoint_site: Site) -> None:
    alice = endpoint_site.enrol("alice")
    with endpoint_site.card(alice) as card:
        key = card.private_key()
        assert key[pkcs11.Attribute.SENSITIVE] is True
        assert key[pkcs11.Attribute.EXTRACTABLE] is False
        assert key[pkcs11.Attribute.NEVER_EXTRACTABLE] is True
        with pytest.raises(pkcs11.exceptions.AttributeSensitive):
            key[pkcs11.Attribute.PRIVATE_EXPONENT]  # noqa: B018 - the read is the test
        with pytest.raises(pkcs11.exceptions.AttributeSensitive):
            key[pkcs11.Attribute.PRIME_1]  # noqa: B018


def test_ec_private_key_value_cannot_be_read(endpoint_site: Site) -> None:
    frank = endpoint_site.enrol("frank", kind="ec256")
    with endpoint_site.card(frank) as card:
        assert card.private_key_attributes() == {"sensitive": True, "extractable": False,
                                                 "always_sensitive": True, "never_extractable": True}
        with pytest.raises(pkcs11.exceptions.AttributeSensitive):
            card.private_key()[pkcs11.Attribute.VALUE]  # noqa: B018


def test_request_is_signed_by_the_card_and_names_the_address(endpoint_site: Site) -> None:
    token = endpoint_site.new_token("4321")
    with Card(endpoint_site.hsm.module, token, "4321") as card:
        public = card.generate_key("rsa2048")
        der = build_csr(public, "grace@example.com", "Grace", card)
        assert card.stats.operations == 1 and card.stats.kinds == ["sign"]
    request = x509.load_der_x509_csr(der)
    assert request.is_signature_valid
    san = request.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(x509.RFC822Name) == ["grace@example.com"]
    assert asn1csr.CertificationRequest.load(der)["certification_request_info"]["subject_pk_info"].dump() \
        == public.dump()


def test_enrolled_certificate_is_on_the_card_and_in_the_directory(endpoint_site: Site) -> None:
    bob = endpoint_site.enrol("bob")
    with endpoint_site.card(bob) as card:
        on_card = x509.load_der_x509_certificate(card.certificate_der() or b"")
        # the certificate's key is the card's key: a signature by the card verifies with it
        digest = hashlib.sha256(b"proof").digest()
        signature = card.sign_digest(digest, "sha256")
    assert on_card == bob.cert
    on_card.public_key().verify(signature, digest, padding.PKCS1v15(),  # type: ignore[union-attr]
                                Prehashed(hashes.SHA256()))
    published = FilesDirectory(endpoint_site.directory).certificates_for("bob@example.com")
    assert [c.serial_number for c in published] == [bob.cert.serial_number]


def test_wrong_pin_is_one_clear_sentence(endpoint_site: Site) -> None:
    alice = endpoint_site.enrol("alice")
    with pytest.raises(PinError, match=f"wrong PIN for card '{alice.token}'"):
        Card(endpoint_site.hsm.module, alice.token, "9999")


def test_locked_pin_says_how_to_unblock() -> None:
    error = cardmod._pin_failure(pkcs11.exceptions.PinLocked(), "card7")
    assert isinstance(error, PinError)
    assert "locked" in str(error) and "sealgate card unblock" in str(error)


def test_unknown_card_lists_what_is_there(endpoint_site: Site) -> None:
    with pytest.raises(CardError, match="no card with label 'nope'"):
        Card(endpoint_site.hsm.module, "nope", "1234")


def test_pin_file_readable_by_others_is_refused(tmp_path) -> None:  # noqa: ANN001
    pin_file = tmp_path / "pin"
    pin_file.write_text("1234\n")
    os.chmod(pin_file, 0o644)
    with pytest.raises(PinError, match="readable by others"):
        read_pin(pin_file=str(pin_file))
    os.chmod(pin_file, 0o600)
    assert read_pin(pin_file=str(pin_file)) == "1234"


def test_pin_from_named_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_CARD_PIN", "2468")
    assert read_pin(pin_env="MY_CARD_PIN") == "2468"
    monkeypatch.delenv("MY_CARD_PIN")
    with pytest.raises(PinError, match="MY_CARD_PIN"):
        read_pin(pin_env="MY_CARD_PIN")


def test_card_cli_init_enroll_status_unblock_never_log_the_pin(
        endpoint_site: Site, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG)
    module = endpoint_site.hsm.module
    monkeypatch.setenv("SO_PIN", "so-secret-8642")
    monkeypatch.setenv("USER_PIN", "user-secret-1357")
    runner = CliRunner()
    label = f"cli-{os.getpid()}"
    result = runner.invoke(main, ["card", "init", "--module", module, "--token", label,
                                  "--so-pin-env", "SO_PIN", "--pin-env", "USER_PIN"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, [
        "card", "enroll", "--config", str(endpoint_site.config_path), "--token", label,
        "--pin-env", "USER_PIN", "--email", "heidi@example.com", "--name", "Heidi",
        "--key-type", "ec256", "--ca", str(endpoint_site.ca.folder)])
    assert result.exit_code == 0, result.output
    assert "published" in result.output or "heidi@example.com" in result.output
    assert FilesDirectory(endpoint_site.directory).certificates_for("heidi@example.com")
    result = runner.invoke(main, ["card", "status", "--module", module, "--token", label, "--json"])
    status = json.loads(result.output)
    assert status["user_pin_locked"] is False
    assert status["certificate"]["addresses"] == ["heidi@example.com"]
    # a wrong PIN, then a new one set by the security officer
    monkeypatch.setenv("WRONG_PIN", "0000")
    result = runner.invoke(main, ["seal", "--config", str(endpoint_site.config_path), "--token", label,
                                  "--pin-env", "WRONG_PIN", "-"], input=b"From: heidi@example.com\r\n\r\nx")
    assert result.exit_code == 2 and f"wrong PIN for card '{label}'" in result.output
    monkeypatch.setenv("NEW_PIN", "user-secret-9753")
    result = runner.invoke(main, ["card", "unblock", "--module", module, "--token", label,
                                  "--so-pin-env", "SO_PIN", "--pin-env", "NEW_PIN"])
    assert result.exit_code == 0, result.output
    with Card(module, label, "user-secret-9753") as card:
        assert card.has_key()
    result = runner.invoke(main, ["card", "list", "--module", module])
    assert label in result.output
    for secret in ("so-secret-8642", "user-secret-1357", "user-secret-9753"):
        assert secret not in caplog.text
        assert secret not in result.output


@pytest.mark.parametrize("command", [["seal"], ["open"], ["sendmail"], ["card", "enroll"], ["card", "init"],
                                     ["card", "request"], ["card", "store"], ["ca", "init"]])
def test_no_command_takes_a_pin_on_the_command_line(command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0
    options = {word.split("=")[0].rstrip(",") for word in result.output.split() if word.startswith("--")}
    assert "--pin-file" in options and "--pin-env" in options
    assert not {o for o in options if o in ("--pin", "--so-pin", "--ca-pin", "--password")}


def test_failed_enrolment_leaves_no_key_on_the_card(endpoint_site: Site) -> None:
    token = endpoint_site.new_token("1111")
    with Card(endpoint_site.hsm.module, token, "1111") as card:
        with pytest.raises(EndpointError, match="names no mail address"):
            enrol(card, endpoint_site.ca, "not-an-address", "Nobody")  # the CA refuses it
        assert not card.has_key()
        cert = enrol(card, endpoint_site.ca, "olga@example.com", "Olga", "ec256")  # a clean retry
        assert card.certificate_der() == cert.public_bytes(serialization.Encoding.DER)


def test_enrolment_whose_publishing_fails_says_how_to_finish(endpoint_site: Site,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a loopback port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = endpoint_site.root / "ldap.toml"
    text = endpoint_site.config_path.read_text().replace(
        'backend = "files"', f'backend = "ldap"\nurl = "ldap://127.0.0.1:{port}"\n'
                             'base_dn = "ou=people,dc=example,dc=com"\ntimeout = "1s"')
    config.write_text(text)
    token = endpoint_site.new_token("6060")
    monkeypatch.setenv("PIN", "6060")
    result = CliRunner().invoke(main, ["card", "enroll", "--config", str(config), "--token", token,
                                       "--pin-env", "PIN", "--email", "pat@example.com", "--name", "Pat",
                                       "--ca", str(endpoint_site.ca.folder)])
    assert result.exit_code == 2
    assert "the certificate is on the card but was not published" in result.output
    assert "sealgate directory publish --config" in result.output
    with Card(endpoint_site.hsm.module, token, "6060") as card:
        assert card.certificate_der() is not None  # enrolment itself is kept


def test_enrolment_with_a_ca_elsewhere_request_then_store(endpoint_site: Site,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    token = endpoint_site.new_token("2020")
    monkeypatch.setenv("PIN", "2020")
    runner = CliRunner()
    csr = endpoint_site.root / "ruth.csr"
    result = runner.invoke(main, ["card", "request", "--config", str(endpoint_site.config_path),
                                  "--token", token, "--pin-env", "PIN", "--email", "ruth@example.com",
                                  "--name", "Ruth", "--key-type", "ec256", "-o", str(csr)])
    assert result.exit_code == 0, result.output
    assert csr.read_bytes().startswith(b"-----BEGIN CERTIFICATE REQUEST-----")
    cert_path = endpoint_site.root / "ruth.pem"
    result = runner.invoke(main, ["ca", "issue", str(endpoint_site.ca.folder), "--csr", str(csr),
                                  "-o", str(cert_path)])
    assert result.exit_code == 0, result.output
    # a certificate for another key is refused
    other = endpoint_site.software_user("sam")
    result = runner.invoke(main, ["card", "store", "--config", str(endpoint_site.config_path), "--token",
                                  token, "--pin-env", "PIN", "--certificate", str(other.cert_path)])
    assert result.exit_code == 2 and "is not for the key on card" in result.output
    result = runner.invoke(main, ["card", "store", "--config", str(endpoint_site.config_path), "--token",
                                  token, "--pin-env", "PIN", "--certificate", str(cert_path)])
    assert result.exit_code == 0, result.output
    assert FilesDirectory(endpoint_site.directory).certificates_for("ruth@example.com")
    with Card(endpoint_site.hsm.module, token, "2020") as card:
        assert card.key().certificate.dump() == x509.load_pem_x509_certificate(
            cert_path.read_bytes()).public_bytes(serialization.Encoding.DER)
