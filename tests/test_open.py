"""``sealgate open``: messages made by openssl (an independent producer), opened on the card."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from endpoint_fixtures import (  # noqa: F401 - fixtures
    Site,
    endpoint_site_fixture,
    require_binary,
    softhsm_fixture,
)
from seal_helpers import GpgSM, body_of, plain_message, seal_as

from sealgate.cli import main
from sealgate.devmail import message, run_openssl, text_entity
from sealgate.endpoint.cmsbuild import decrypt_enveloped
from sealgate.endpoint.errors import EndpointError
from sealgate.endpoint.keys import SoftwareKey
from sealgate.endpoint.open import open_message


def _openssl_sign(entity: bytes, cert, key) -> bytes:  # noqa: ANN001
    return run_openssl(["cms", "-sign", "-binary", "-crlfeol", "-md", "sha256", "-outform", "SMIME",
                        "-signer", str(cert), "-inkey", str(key)], entity)


def _openssl_encrypt(entity: bytes, recipient_cert, cipher: str, oaep: bool = False,  # noqa: ANN001
                     keyid: bool = False) -> bytes:
    args = ["cms", "-encrypt", "-binary", "-crlfeol", f"-{cipher}", "-outform", "SMIME"]
    if keyid:  # RecipientIdentifier by subject key identifier, not issuer and serial
        args.append("-keyid")
    args += ["-recip", str(recipient_cert)]
    if oaep:
        args += ["-keyopt", "rsa_padding_mode:oaep"]
    return run_openssl(args, entity)


def _strip_mime_version(entity: bytes) -> bytes:
    entity = entity.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return entity.removeprefix(b"MIME-Version: 1.0\r\n")


@pytest.mark.parametrize(("cipher", "oaep", "keyid"), [("aes-256-gcm", False, False),
                                                       ("aes-256-cbc", False, True),
                                                       ("aes-128-cbc", True, False)])
def test_open_reads_openssl_sign_then_encrypt(endpoint_site: Site, cipher: str, oaep: bool,
                                              keyid: bool) -> None:
    alice = endpoint_site.enrol("alice")
    bob = endpoint_site.software_user("bob")
    signed = _strip_mime_version(_openssl_sign(text_entity("From openssl.\n"), bob.cert_path, bob.key_path))
    encrypted = _strip_mime_version(_openssl_encrypt(signed, alice.cert_path, cipher, oaep, keyid))
    raw = message(encrypted, bob.email, [alice.email])
    with endpoint_site.card(alice) as card:
        opened = open_message(raw, card.key(), endpoint_site.gateway())
        assert card.stats.kinds == ["decrypt"]
    assert opened.layers == ["encrypted", "signed"]
    assert opened.verified
    assert [(s.email, s.result) for s in opened.signers] == [("bob@example.com", "pass")]
    assert b"From openssl." in opened.message


def test_open_reads_openssl_triple_wrap_to_an_ec_card(endpoint_site: Site) -> None:
    frank = endpoint_site.enrol("frank", kind="ec256")  # ECDH on the card
    bob = endpoint_site.software_user("bob")
    inner = _strip_mime_version(_openssl_sign(text_entity("Triple.\n"), bob.cert_path, bob.key_path))
    encrypted = _strip_mime_version(_openssl_encrypt(inner, frank.cert_path, "aes-256-cbc"))
    outer = _strip_mime_version(_openssl_sign(encrypted, bob.cert_path, bob.key_path))
    raw = message(outer, bob.email, [frank.email])
    with endpoint_site.card(frank) as card:
        opened = open_message(raw, card.key(), endpoint_site.gateway())
        assert card.stats.kinds == ["derive"]
    assert opened.layers == ["signed", "encrypted", "signed"]
    assert opened.verified and len(opened.signers) == 2
    assert b"Triple." in opened.message


def test_decrypt_enveloped_reads_cryptography_pkcs7_envelope_builder(endpoint_site: Site) -> None:
    """The quarantine's case: PKCS7EnvelopeBuilder output opened by a reviewer's card or key file."""
    reviewer = endpoint_site.enrol("reviewer")
    payload = b"Subject: held\r\n\r\nquarantined message\r\n"
    der = (pkcs7.PKCS7EnvelopeBuilder().set_data(payload).add_recipient(reviewer.cert)
           .encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary]))
    with endpoint_site.card(reviewer) as card:
        assert decrypt_enveloped(der, card.key()) == payload
    filer = endpoint_site.software_user("filer")
    der = (pkcs7.PKCS7EnvelopeBuilder().set_data(payload).add_recipient(filer.cert)
           .encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary]))
    key = SoftwareKey.from_files(filer.key_path, filer.cert_path)
    assert decrypt_enveloped(der, key) == payload and key.operations == 1


def test_open_says_when_the_message_is_not_for_this_card(endpoint_site: Site) -> None:
    alice = endpoint_site.enrol("alice")
    bob = endpoint_site.enrol("bob")
    carol = endpoint_site.enrol("carol")
    sealed, _ = seal_as(endpoint_site, alice, plain_message(alice.email, [bob.email]))
    with endpoint_site.card(carol) as card, \
            pytest.raises(EndpointError, match="not encrypted to this certificate"):
        open_message(sealed.message, card.key(), endpoint_site.gateway())


def test_altered_ciphertext_fails_the_gcm_check(endpoint_site: Site) -> None:
    alice = endpoint_site.enrol("alice")
    bob = endpoint_site.enrol("bob")
    sealed, _ = seal_as(endpoint_site, alice, plain_message(alice.email, [bob.email]))
    from seal_helpers import split_signed

    content, _sig = split_signed(sealed.message)
    import base64

    der = bytearray(base64.b64decode(b"".join(body_of(content).split())))
    der[-40] ^= 1  # inside the encrypted content, before the 16-byte tag
    with endpoint_site.card(bob) as card, pytest.raises(EndpointError, match="integrity check"):
        decrypt_enveloped(bytes(der), card.key())


def test_open_cli_prints_json_and_writes_the_clear_message(endpoint_site: Site,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    alice = endpoint_site.enrol("alice")
    bob = endpoint_site.enrol("bob", pin="7777")
    sealed, _ = seal_as(endpoint_site, alice, plain_message(alice.email, [bob.email]))
    src = endpoint_site.root / "in.eml"
    src.write_bytes(sealed.message)
    out = endpoint_site.root / "clear.eml"
    monkeypatch.setenv("BOB_PIN", "7777")
    result = CliRunner().invoke(main, ["open", "--config", str(endpoint_site.config_path), "--token",
                                       bob.token, "--pin-env", "BOB_PIN", "--json", "-o", str(out),
                                       str(src)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["verified"] is True and report["outer_action"] == "accept"
    assert [st["structure"] for st in report["stages"]] == ["signed(encrypted)", "signed(plain)"]
    assert b"quarterly figures" in out.read_bytes()
    assert "7777" not in result.output


def test_open_reads_gpgsm_encryption_to_a_card(endpoint_site: Site) -> None:
    require_binary("gpgsm", "apt-get install gpgsm")
    alice = endpoint_site.enrol("alice")
    gpg = GpgSM(endpoint_site.root / "gnupg", endpoint_site.ca.certificate,
                endpoint_site.ca.folder / "ca.pem")
    try:
        gpg.run(["--import", str(alice.cert_path)])
        src = endpoint_site.root / "entity"
        src.write_bytes(text_entity("Encrypted by gpgsm.\n"))
        proc = gpg.run(["--encrypt", "--base64", "-r", alice.email, str(src)])
        assert proc.returncode == 0, proc.stderr
    finally:
        gpg.close()
    b64 = proc.stdout.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    entity = (b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n"
              b"Content-Transfer-Encoding: base64\r\n\r\n" + b64)
    with endpoint_site.card(alice) as card:
        opened = open_message(message(entity, "someone@example.net", [alice.email]), card.key(),
                              endpoint_site.gateway())
    assert opened.layers == ["encrypted"]
    assert not opened.verified  # nothing was signed: open says so (exit status 1)
    assert b"Encrypted by gpgsm." in opened.message


def test_open_as_a_separate_process_with_a_pin_file(endpoint_site: Site) -> None:
    """The installed command, its own PKCS#11 initialisation, the PIN from a 0600 file."""
    alice = endpoint_site.enrol("alice")
    bob = endpoint_site.enrol("bob", pin="4545")
    sealed, _ = seal_as(endpoint_site, alice, plain_message(alice.email, [bob.email]))
    src = endpoint_site.root / "in.eml"
    src.write_bytes(sealed.message)
    pin_file = endpoint_site.root / "pin"
    pin_file.write_text("4545\n")
    pin_file.chmod(0o600)
    sealgate = Path(sys.executable).with_name("sealgate")
    proc = subprocess.run([str(sealgate), "open", "--config", str(endpoint_site.config_path), "--token",
                           bob.token, "--pin-file", str(pin_file), str(src)],
                          env=endpoint_site.hsm.env(), capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert b"signature outside the encryption: alice@example.com" in proc.stderr
    assert b"signature inside the encryption: alice@example.com" in proc.stderr
    assert proc.stderr.rstrip().endswith(b"verified")
    assert b"quarterly figures" in proc.stdout
