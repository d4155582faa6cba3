"""``sealgate seal``: triple wrap made on the card, read by openssl, gpgsm and the gateway."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from endpoint_fixtures import (  # noqa: F401 - fixtures
    Site,
    endpoint_site_fixture,
    make_site,
    require_binary,
    softhsm_fixture,
)
from seal_helpers import BODY, GpgSM, body_of, plain_message, seal_as, split_signed

from sealgate.cli import main
from sealgate.devmail import run_openssl
from sealgate.endpoint.errors import EndpointError
from sealgate.endpoint.keys import SoftwareKey
from sealgate.endpoint.open import open_message
from sealgate.endpoint.seal import SealOptions, seal_message
from sealgate.model import Envelope


def _openssl_unwrap(site: Site, sealed: bytes, recip_cert, recip_key) -> bytes:  # noqa: ANN001
    """Outer verify (with CRL), decrypt, inner verify -- all by openssl; the clear entity."""
    ca_crl = site.ca_and_crl_file()
    encrypted = run_openssl(["cms", "-verify", "-CAfile", str(ca_crl), "-crl_check"], sealed)
    inner = run_openssl(["cms", "-decrypt", "-recip", str(recip_cert), "-inkey", str(recip_key)],
                        encrypted)
    return run_openssl(["cms", "-verify", "-CAfile", str(ca_crl), "-crl_check"], inner)


@pytest.mark.parametrize("cipher", ["aes256-gcm", "aes256-cbc"])
@pytest.mark.parametrize("transport", ["pkcs1v15", "oaep"])
def test_seal_output_is_verified_and_decrypted_by_openssl(endpoint_site: Site, cipher: str,
                                                          transport: str) -> None:
    require_binary("openssl", "apt-get install openssl")
    alice = endpoint_site.enrol("alice")
    bob = endpoint_site.software_user("bob")
    sealed, _ = seal_as(endpoint_site, alice, plain_message(alice.email, [bob.email]),
                        cipher=cipher, key_transport=transport)
    assert b"smime-type=authEnveloped-data" in sealed.message or cipher == "aes256-cbc"
    clear = _openssl_unwrap(endpoint_site, sealed.message, bob.cert_path, bob.key_path)
    assert BODY.replace("\n", "\r\n").encode() in clear


def test_seal_to_ec_recipient_is_ecdh_that_openssl_decrypts(endpoint_site: Site) -> None:
    frank = endpoint_site.enrol("frank", kind="ec256")  # EC card: ECDSA signatures
    erin = endpoint_site.software_user("erin", kind="ec256")
    sealed, stats = seal_as(endpoint_site, frank, plain_message(frank.email, [erin.email]))
    assert stats.operations == 2
    clear = _openssl_unwrap(endpoint_site, sealed.message, erin.cert_path, erin.key_path)
    assert b"quarterly figures" in clear


def _gpgsm_verify(gpg: GpgSM, work, signed_entity: bytes, name: str) -> bytes:  # noqa: ANN001
    content, signature = split_signed(signed_entity)
    (work / f"{name}.p7s").write_bytes(signature)
    (work / f"{name}.txt").write_bytes(content)
    proc = gpg.run(["--verify", str(work / f"{name}.p7s"), str(work / f"{name}.txt")])
    assert proc.returncode == 0, proc.stderr
    assert b"Good signature" in proc.stderr
    return content


def _gpgsm_decrypt(gpg: GpgSM, work, encrypted_entity: bytes) -> bytes:  # noqa: ANN001
    (work / "enc.p7m").write_bytes(base64.b64decode(b"".join(body_of(encrypted_entity).split())))
    out = work / "dec.eml"
    out.unlink(missing_ok=True)
    proc = gpg.run(["--decrypt", "--output", str(out), str(work / "enc.p7m")],
                   stdin=gpg.passphrase.encode() + b"\n")
    assert proc.returncode == 0, proc.stderr
    return out.read_bytes()


@pytest.fixture
def gpgsm(endpoint_site: Site):  # noqa: ANN201
    require_binary("gpgsm", "apt-get install gpgsm")
    gpg = GpgSM(endpoint_site.root / "gnupg", endpoint_site.ca.certificate,
                endpoint_site.ca.folder / "ca.pem")
    yield gpg
    gpg.close()


def test_card_signatures_of_seal_output_are_verified_by_gpgsm(endpoint_site: Site, gpgsm: GpgSM) -> None:
    alice = endpoint_site.enrol("alice")
    bob = endpoint_site.software_user("bob")
    sealed, _ = seal_as(endpoint_site, alice, plain_message(alice.email, [bob.email]),
                        cipher="aes256-cbc")
    encrypted = _gpgsm_verify(gpgsm, endpoint_site.root, sealed.message, "outer")
    # openssl decrypts for bob (gpgsm's multi-recipient bug: see the next test)
    inner = run_openssl(["cms", "-decrypt", "-recip", str(bob.cert_path), "-inkey", str(bob.key_path)],
                        encrypted)
    content = _gpgsm_verify(gpgsm, endpoint_site.root, inner, "inner")
    assert b"quarterly figures" in content


def test_seal_output_is_decrypted_by_gpgsm(endpoint_site: Site, gpgsm: GpgSM) -> None:
    """gpgsm 2.2 reads enveloped-data (AES-CBC), not authEnveloped-data (GCM).

    gpgsm 2.2.40 also fails (exit 2, no message) when the RecipientInfo it can
    use is not the first one and the first is for a certificate of the same CA
    it has no key for -- the same with ``openssl cms -encrypt`` output -- so the
    message here has one recipient: bob writing to himself (software key).
    """
    bob = endpoint_site.software_user("bob")
    gpgsm.import_key(bob.cert_path, bob.key_path)
    key = SoftwareKey.from_files(bob.key_path, bob.cert_path)
    gateway = endpoint_site.gateway()
    sealed = seal_message(plain_message(bob.email, [bob.email]), key, gateway.directory,
                          gateway.current_trust(), options=SealOptions(cipher="aes256-cbc"))
    encrypted = _gpgsm_verify(gpgsm, endpoint_site.root, sealed.message, "outer")
    inner = _gpgsm_decrypt(gpgsm, endpoint_site.root, encrypted)
    content = _gpgsm_verify(gpgsm, endpoint_site.root, inner, "inner")
    assert b"quarterly figures" in content


def test_sealgate_check_passes_seal_output_under_strict_policy(endpoint_site: Site) -> None:
    alice = endpoint_site.enrol("alice")
    bob = endpoint_site.enrol("bob")
    sealed, _ = seal_as(endpoint_site, alice, plain_message(alice.email, [bob.email]))
    path = endpoint_site.root / "sealed.eml"
    path.write_bytes(sealed.message)
    result = CliRunner().invoke(main, ["check", "--config", str(endpoint_site.config_path), "--json",
                                       str(path)])
    verdict = json.loads(result.output)
    assert result.exit_code == 0, result.output
    assert verdict["action"] == "accept" and verdict["rule"] == "internal"
    assert verdict["structure"] == "signed(encrypted)"
    assert verdict["violations"] == []
    assert [s["email"] for s in verdict["signers"]] == ["alice@example.com"]
    assert verdict["recipients"] == [{"address": "bob@example.com", "covered": True}]


def test_exactly_two_private_key_operations_per_sealed_message(endpoint_site: Site) -> None:
    alice = endpoint_site.enrol("alice")
    bob = endpoint_site.enrol("bob")
    carol = endpoint_site.enrol("carol", kind="ec256")
    gateway = endpoint_site.gateway()
    with endpoint_site.card(alice) as card:
        key = card.key()
        for n, recipients in enumerate([[bob.email], [bob.email, carol.email], [carol.email]], 1):
            seal_message(plain_message(alice.email, recipients), key, gateway.directory,
                         gateway.current_trust())
            assert card.stats.operations == 2 * n
        assert card.stats.kinds == ["sign"] * 6


def test_sender_opens_the_sent_copy_with_one_card_operation(endpoint_site: Site) -> None:
    alice = endpoint_site.enrol("alice")
    bob = endpoint_site.enrol("bob")
    sealed, _ = seal_as(endpoint_site, alice, plain_message(alice.email, [bob.email]))
    for person in (alice, bob):
        with endpoint_site.card(person) as card:
            opened = open_message(sealed.message, card.key(), endpoint_site.gateway())
            assert card.stats.kinds == ["decrypt"]
        assert opened.verified
        assert opened.layers == ["signed", "encrypted", "signed"]
        assert [s.email for s in opened.signers] == ["alice@example.com", "alice@example.com"]
        assert b"quarterly figures" in opened.message
        assert opened.message.startswith(b"From: alice@example.com\r\n")


def test_seal_refuses_a_recipient_without_a_published_certificate(endpoint_site: Site) -> None:
    alice = endpoint_site.enrol("alice")
    with pytest.raises(EndpointError, match="cannot encrypt to nobody@example.com: no certificate"):
        seal_as(endpoint_site, alice, plain_message(alice.email, ["nobody@example.com"]))


def test_seal_refuses_a_sender_the_card_is_not_for(endpoint_site: Site) -> None:
    alice = endpoint_site.enrol("alice")
    bob = endpoint_site.enrol("bob")
    with pytest.raises(EndpointError, match="not the sender bob@example.com"):
        seal_as(endpoint_site, alice, plain_message(bob.email, [alice.email]))


def test_bcc_recipients_get_the_message_but_are_not_named(endpoint_site: Site) -> None:
    alice = endpoint_site.enrol("alice")
    bob = endpoint_site.enrol("bob")
    dave = endpoint_site.enrol("dave")
    raw = plain_message(alice.email, [bob.email]).replace(b"Subject:", b"Bcc: dave@example.com\r\nSubject:")
    sealed, _ = seal_as(endpoint_site, alice, raw)
    assert sealed.recipients == [bob.email, dave.email]
    assert b"dave@example.com" not in sealed.message.split(b"\r\n\r\n", 1)[0]
    with endpoint_site.card(dave) as card:
        assert open_message(sealed.message, card.key(), endpoint_site.gateway()).verified


def test_seal_cli_reads_the_pin_from_a_named_variable(endpoint_site: Site,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    alice = endpoint_site.enrol("alice", pin="5511")
    bob = endpoint_site.enrol("bob")
    monkeypatch.setenv("ALICE_PIN", "5511")
    out = endpoint_site.root / "out.eml"
    result = CliRunner().invoke(main, [
        "seal", "--config", str(endpoint_site.config_path), "--token", alice.token,
        "--pin-env", "ALICE_PIN", "--cipher", "aes256-cbc", "-o", str(out), "-"],
        input=plain_message(alice.email, [bob.email]))
    assert result.exit_code == 0, result.output
    assert b"smime-type=enveloped-data" in out.read_bytes()
    sealgate = Path(sys.executable).with_name("sealgate")
    proc = subprocess.run([str(sealgate), "check", "--config", str(endpoint_site.config_path), str(out)],
                          capture_output=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_seal_under_an_intermediate_ca_carries_the_chain(tmp_path, softhsm) -> None:  # noqa: ANN001
    """Only the root is a trust anchor: the intermediate travels on the card and in the signatures."""
    site = make_site(tmp_path, softhsm, intermediate=True)
    alice = site.enrol("alice", kind="ec256")
    bob = site.enrol("bob")
    with site.card(alice) as card:
        assert [c.dump() for c in card.key().chain] == [
            site.ca.certificate.public_bytes(serialization.Encoding.DER)]
    sealed, _ = seal_as(site, alice, plain_message(alice.email, [bob.email]))
    verdict = site.gateway().evaluate(io.BytesIO(sealed.message), Envelope(alice.email, (bob.email,)))
    assert [(s.email, s.result) for s in verdict.signers] == [("alice@example.com", "pass")]
    # Recipients' published certificates chain through the intermediate the signatures carry.
    assert verdict.action == "accept" and list(verdict.codes) == []
    assert [(r.address, r.covered) for r in verdict.recipients] == [("bob@example.com", True)]
    root_only = tmp_path / "pki" / "ca.pem"  # the root
    run_openssl(["cms", "-verify", "-CAfile", str(root_only)], sealed.message)
    with site.card(bob) as card:
        assert open_message(sealed.message, card.key(), site.gateway()).verified
