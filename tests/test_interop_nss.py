"""Messages made by NSS (``cmsutil``, what Thunderbird signs and encrypts with).

A second producer besides OpenSSL: its CMS differs in the details a gateway
trips over (signed attributes, certificate sets, BER lengths, boundaries).
Every message is made by :mod:`sealgate.devnss` in a throwaway NSS database
and judged by ``Gateway.evaluate`` under the shipped strict policy.

sealgate produces no messages yet (``sealgate seal`` is an endpoint command
still to come), so the reverse direction -- NSS reading sealgate's output --
is not tested here.

Without the NSS tools (Debian's libnss3-tools, which ``make test`` installs)
these tests fail with the install hint, as the openssl and gpgsm ones do.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from gateway_helpers import evaluate, gateway_for

from sealgate import devmail as m
from sealgate import devnss
from sealgate.codes import Action, AuthResult
from sealgate.devpki import TestPKI
from sealgate.engine import Gateway


@pytest.fixture(scope="module", autouse=True)
def nss_tools() -> None:
    """Like openssl and gpgsm, NSS is a real producer: missing, the tests fail (make test installs it)."""
    missing = devnss.missing_tools()
    assert not missing, f"NSS tools missing ({', '.join(missing)}): apt-get install libnss3-tools"

BODY = m.text_entity("Hi Bob,\r\n\r\nthe signed contract is attached.\r\n")


@pytest.fixture(scope="module")
def gw(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Gateway:
    return gateway_for(tmp_path_factory.mktemp("gw-nss"), pki)


def codes(verdict) -> set[str]:
    return {str(f.code) for f in verdict.violations}


def judge(gw: Gateway, entity: bytes, sender: str = "alice@example.com",
          rcpts: tuple[str, ...] = ("bob@example.com",), *, lf: bool = False):
    raw = m.message(entity, sender, list(rcpts))
    return evaluate(gw, m.to_lf(raw) if lf else raw, sender, list(rcpts))


# ------------------------------------------------------------------ what Thunderbird sends

def test_thunderbird_key_preference_attributes_do_not_break_the_signature(gw, pki):
    # cmsutil -Y, as Thunderbird signs: RFC 8551 id-aa-encrypKeyPref and Microsoft's
    # 1.3.6.1.4.1.311.16.4 (unknown to asn1crypto: an IssuerAndSerialNumber, so a SET
    # inside) among the signed attributes, and the signer's certificate twice in the set.
    # Until 4b335c7 this made the SignerInfo malformed and every Thunderbird mail rejected.
    entity = devnss.nss_sign(m.encrypt(BODY, [pki["bob"], pki["alice"]]), pki["alice"], ca=pki.ca)
    v = judge(gw, entity)
    assert (v.action, v.violations) == (Action.ACCEPT, [])
    assert [(s.email, s.result) for s in v.signers] == [("alice@example.com", "pass")]


def test_nss_signature_without_key_preference_attributes_passes(gw, pki):
    entity = devnss.nss_sign(m.encrypt(BODY, [pki["bob"], pki["alice"]]), pki["alice"], ca=pki.ca,
                             key_preference=False)
    v = judge(gw, entity)
    assert (v.action, v.violations) == (Action.ACCEPT, [])


def test_nss_triple_wrap_passes(gw, pki):
    entity = devnss.nss_triple_wrap(BODY, pki["alice"], [pki["bob"], pki["alice"]], ca=pki.ca)
    v = judge(gw, entity)
    assert (v.action, v.rule, v.violations) == (Action.ACCEPT, "internal", [])
    assert v.structure == "signed(encrypted)"
    assert v.auth_result is AuthResult.PASS
    assert [(s.email, s.result) for s in v.signers] == [("alice@example.com", "pass")]
    assert v.signers[0].serial == pki["alice"].serial_hex
    assert [(r.address, r.covered) for r in v.recipients] == [("bob@example.com", True)]


def test_nss_signature_over_openssl_encryption_passes(gw, pki):
    entity = devnss.nss_sign(m.encrypt(BODY, [pki["bob"], pki["alice"]]), pki["alice"],
                             ca=pki.ca)
    v = judge(gw, entity)
    assert (v.action, v.structure) == (Action.ACCEPT, "signed(encrypted)"), v.violations
    assert [(s.email, s.result) for s in v.signers] == [("alice@example.com", "pass")]


def test_nss_encryption_under_openssl_signature_covers_recipients(gw, pki):
    entity = m.sign(devnss.nss_encrypt(BODY, [pki["bob"], pki["alice"]], ca=pki.ca), pki["alice"])
    v = judge(gw, entity)
    assert (v.action, v.structure) == (Action.ACCEPT, "signed(encrypted)"), v.violations
    assert [(r.address, r.covered) for r in v.recipients] == [("bob@example.com", True)]


def test_nss_opaque_signed_data_passes(gw, pki):
    entity = devnss.nss_sign(m.encrypt(BODY, [pki["bob"]]), pki["alice"], detached=False,
                             ca=pki.ca)
    assert b"smime-type=signed-data" in entity
    v = judge(gw, entity)
    assert (v.action, v.structure) == (Action.ACCEPT, "signed(encrypted)"), v.violations


def test_nss_signed_only_is_unencrypted(gw, pki):
    v = judge(gw, devnss.nss_sign(BODY, pki["alice"], ca=pki.ca))
    assert codes(v) == {"unencrypted"}
    assert v.structure == "signed(plain)"
    assert v.auth_result is AuthResult.PASS


def test_nss_encrypted_only_is_signature_hidden(gw, pki):
    v = judge(gw, devnss.nss_encrypt(BODY, [pki["bob"]], ca=pki.ca))
    assert codes(v) == {"signature-hidden"}
    assert v.structure == "encrypted"
    assert [(r.address, r.covered) for r in v.recipients] == [("bob@example.com", True)]


# ------------------------------------------------------------------ failures NSS does not catch

def test_nss_encrypted_to_a_lost_card_is_recipient_revoked(gw, pki):
    # NSS has no CRL for carol's card in its database and encrypts to it without a word.
    entity = devnss.nss_sign(devnss.nss_encrypt(BODY, [pki["bob"], pki["carol"]], ca=pki.ca),
                             pki["alice"], ca=pki.ca)
    v = judge(gw, entity)
    assert codes(v) == {"recipient-revoked"}
    assert v.action is Action.QUARANTINE


def test_nss_signed_by_a_lost_card_is_revoked_signer(gw, pki):
    entity = devnss.nss_triple_wrap(BODY, pki["carol"], [pki["bob"]], ca=pki.ca)
    v = judge(gw, entity, sender="carol@example.com")
    assert codes(v) == {"revoked-signer"}
    assert [(s.email, s.result) for s in v.signers] == [("carol@example.com", "revoked-signer")]
    assert v.auth_result is AuthResult.POLICY


def test_nss_rsa_1024_signer_is_weak_algorithm(gw, pki):
    entity = devnss.nss_sign(m.encrypt(BODY, [pki["bob"]]), pki["erin"], ca=pki.ca)
    v = judge(gw, entity, sender="erin@example.com")
    assert codes(v) == {"weak-algorithm"}
    assert v.action is Action.REJECT


def test_nss_sha1_signature_is_weak_algorithm(gw, pki):
    entity = devnss.nss_sign(m.encrypt(BODY, [pki["bob"]]), pki["alice"], ca=pki.ca, md="SHA1")
    assert b"micalg=sha-1" in entity
    v = judge(gw, entity)
    assert codes(v) == {"weak-algorithm"}


# ------------------------------------------------------------------ keys and line ends

def test_nss_ec_signer_passes(gw, pki):
    # NSS 3.87 signs with ECDSA but cannot encrypt to an EC (ECDH) recipient: only the
    # signature is NSS's here.
    entity = devnss.nss_sign(m.encrypt(BODY, [pki["bob"]]), pki["frank"], ca=pki.ca)
    v = judge(gw, entity, sender="frank@example.com")
    assert (v.action, v.violations) == (Action.ACCEPT, [])
    assert [(s.email, s.result) for s in v.signers] == [("frank@example.com", "pass")]


def test_nss_sha512_signature_passes(gw, pki):
    entity = devnss.nss_sign(m.encrypt(BODY, [pki["bob"]]), pki["grace"], ca=pki.ca, md="SHA512")
    v = judge(gw, entity, sender="grace@example.com")
    assert (v.action, v.violations) == (Action.ACCEPT, [])


def test_nss_triple_wrap_stored_with_lf_line_ends_still_verifies(gw, pki):
    entity = devnss.nss_triple_wrap(BODY, pki["alice"], [pki["bob"], pki["alice"]], ca=pki.ca)
    v = judge(gw, entity, lf=True)
    assert (v.action, v.violations) == (Action.ACCEPT, [])
    assert v.structure == "signed(encrypted)"


def test_nss_signed_plain_text_with_lf_line_ends_still_verifies(gw, pki):
    # here the signed content itself (not only base64) lost its CRs: RFC 8551 §3.1.1
    # canonicalisation must put them back before hashing.
    v = judge(gw, devnss.nss_sign(BODY, pki["alice"], ca=pki.ca), lf=True)
    assert codes(v) == {"unencrypted"}
    assert [(s.email, s.result) for s in v.signers] == [("alice@example.com", "pass")]


# ------------------------------------------------------------------ the producer itself

def test_nss_layout_is_thunderbirds(pki):
    entity = devnss.nss_sign(BODY, pki["alice"], ca=pki.ca)
    head, _, body = entity.partition(b"\r\n\r\n")
    assert head.startswith(b'Content-Type: multipart/signed; protocol="application/pkcs7-signature";'
                           b"\r\n micalg=sha-256; boundary=\"------------ms")
    assert re.search(rb'boundary="------------ms\d{24}"', head)
    assert body.startswith(b"This is a cryptographically signed message in MIME format.\r\n")
    sig = body.split(b"S/MIME Cryptographic Signature\r\n\r\n", 1)[1]
    lines = sig.split(b"\r\n--", 1)[0].strip().split(b"\r\n")
    assert {len(line) for line in lines[:-1]} == {76}
    assert b'Content-Type: application/pkcs7-signature; name="smime.p7s"' in body


def test_nss_keeps_secrets_off_argv_and_removes_its_database(pki, monkeypatch):
    seen: list[list[str]] = []
    real_run = subprocess.run

    def spy(argv, *args, **kwargs):  # noqa: ANN001, ANN202
        seen.append(list(argv))
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr(devnss.subprocess, "run", spy)
    devnss.nss_triple_wrap(BODY, pki["alice"], [pki["bob"]], ca=pki.ca)
    tools = {Path(a[0]).name for a in seen}
    assert {"certutil", "pk12util", "cmsutil"} <= tools
    for argv in seen:
        # -p/-W/-K would put a password on the command line; only files (-f/-w/-k) are used
        assert not {"-p", "-W", "-K"} & set(argv), argv
    dbs = {Path(a[a.index("-d") + 1].removeprefix("sql:")) for a in seen}
    assert dbs and not any(d.exists() for d in dbs)
