"""Verifying one SignerInfo made by openssl cms (RFC 5652 §5.4, §5.6)."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from asn1crypto import cms, x509
from cmshelpers import CONTENT, asn1_cert, openssl_sign, resign_attrs
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from sealgate.certs import certificate_addresses
from sealgate.codes import Code
from sealgate.errors import DirectoryUnavailable
from sealgate.model import SignerInput
from sealgate.smime.verify import (
    describe_sid,
    find_signer_certificate,
    signing_time,
    verify_signature,
)


class FakeDirectory:
    """The Directory protocol over a list of certificates (pure logic)."""

    def __init__(self, certs: list[x509.Certificate], *, down: bool = False) -> None:
        self.certs = certs
        self.down = down

    def certificates_for(self, address: str) -> list[x509.Certificate]:
        return [c for c in self.certs if address.lower() in certificate_addresses(c)]

    def find_by_issuer_serial(self, issuer: x509.Name, serial: int) -> x509.Certificate | None:
        if self.down:
            raise DirectoryUnavailable("ldap://127.0.0.1:1 did not answer within 2 s")
        for cert in self.certs:
            if cert.serial_number == serial and cert.issuer.dump() == issuer.dump():
                return cert
        return None

    def find_by_key_identifier(self, ski: bytes) -> x509.Certificate | None:
        if self.down:
            raise DirectoryUnavailable("ldap://127.0.0.1:1 did not answer within 2 s")
        return next((c for c in self.certs if c.key_identifier == ski), None)


def _verify_one(signed, content: bytes | None = None):
    [signer] = signed.inputs(content)
    cert = find_signer_certificate(signer.signer_info, signed.certificates, None)
    assert cert is not None
    return verify_signature(signer, cert)


# ---------------------------------------------------------------- good signatures


def test_rsa_pkcs1v15_signature_verifies(pki):
    signed = openssl_sign(pki["alice"])
    assert signed.signer_infos[0]["signature_algorithm"]["algorithm"].native == "rsassa_pkcs1v15"
    assert _verify_one(signed) is None


@pytest.mark.parametrize("md", ["sha384", "sha512"])
def test_rsa_pkcs1v15_with_other_digests_verifies(pki, md):
    assert _verify_one(openssl_sign(pki["grace"], md=md)) is None


def test_rsa_pss_signature_verifies(pki):
    signed = openssl_sign(pki["alice"], pss=True)
    assert signed.signer_infos[0]["signature_algorithm"]["algorithm"].native == "rsassa_pss"
    assert _verify_one(signed) is None


def test_rsa_pss_signature_from_devmail_verifies(pki):
    import base64
    import re

    from sealgate import devmail

    entity = devmail.sign(devmail.text_entity(), pki["bob"], detached=False, pss=True)
    body = entity.split(b"\r\n\r\n", 1)[1]
    info = cms.ContentInfo.load(base64.b64decode(re.sub(rb"\s+", b"", body)))
    signed_data = info["content"]
    content = signed_data["encap_content_info"]["content"].native
    from cmshelpers import signer_inputs

    [signer] = signer_inputs(signed_data, content)
    certs = [c.chosen for c in signed_data["certificates"]]
    cert = find_signer_certificate(signer.signer_info, certs, None)
    assert verify_signature(signer, cert) is None


def test_ecdsa_p256_signature_verifies(pki):
    signed = openssl_sign(pki["frank"])
    assert "ecdsa" in signed.signer_infos[0]["signature_algorithm"]["algorithm"].native
    assert _verify_one(signed) is None


def test_signature_without_signed_attributes_verifies(pki):
    signed = openssl_sign(pki["alice"], noattr=True)
    assert not signed.signer_infos[0]["signed_attrs"].contents
    assert _verify_one(signed) is None


def test_ecdsa_without_signed_attributes_verifies(pki):
    assert _verify_one(openssl_sign(pki["frank"], noattr=True)) is None


def test_pss_without_signed_attributes_verifies(pki):
    assert _verify_one(openssl_sign(pki["alice"], pss=True, noattr=True)) is None


def test_one_of_several_candidate_digests_may_match(pki):
    # Detached content: the parser offers the CRLF-canonical and the raw digest.
    signed = openssl_sign(pki["alice"])
    [signer] = signed.inputs()
    signer.content_digests.insert(0, hashlib.sha256(b"LF variant\n").digest())
    cert = find_signer_certificate(signer.signer_info, signed.certificates, None)
    assert verify_signature(signer, cert) is None


def test_signed_attributes_are_verified_as_received_not_re_encoded(pki):
    # Build a SignerInfo whose SET OF is not in DER order: re-encoding would sort it
    # and break the signature; RFC 5652 §5.4 says the signature covers what was sent.
    alice = pki["alice"]
    digest = hashlib.sha256(CONTENT).digest()
    attrs = [
        cms.CMSAttribute({"type": "message_digest", "values": [digest]}),
        cms.CMSAttribute({"type": "content_type", "values": ["data"]}),
    ]
    set_body = b"".join(a.dump() for a in attrs)
    assert set_body != b"".join(sorted(a.dump() for a in attrs))
    set_der = b"\x31" + bytes([len(set_body)]) + set_body
    signature = alice.key.sign(set_der, padding.PKCS1v15(), hashes.SHA256())
    cert = asn1_cert(alice)
    info = cms.SignerInfo({
        "version": "v1",
        "sid": {"issuer_and_serial_number": {"issuer": cert.issuer,
                                              "serial_number": cert.serial_number}},
        "digest_algorithm": {"algorithm": "sha256"},
        "signature_algorithm": {"algorithm": "rsassa_pkcs1v15"},
        "signature": signature,
    }).dump()
    # Splice the attributes in by hand so that asn1crypto cannot reorder them.
    parsed = cms.SignerInfo.load(info)
    head = parsed["version"].dump() + parsed["sid"].dump() + parsed["digest_algorithm"].dump()
    tail = parsed["signature_algorithm"].dump() + parsed["signature"].dump()
    body = head + b"\xa0" + bytes([len(set_body)]) + set_body + tail
    der = b"\x30\x82" + len(body).to_bytes(2, "big") + body
    signer = SignerInput(cms.SignerInfo.load(der), [digest], "data")
    assert verify_signature(signer, cert) is None


# ---------------------------------------------------------------- bad signatures


def test_tampered_content_is_bad_signature(pki):
    signed = openssl_sign(pki["alice"])
    finding = _verify_one(signed, CONTENT.replace(b"quarterly", b"QUARTERLY"))
    assert finding is not None and finding.code is Code.BAD_SIGNATURE
    assert "messageDigest" in finding.detail
    assert format(pki["alice"].cert.serial_number, "x") in finding.detail


def test_tampered_content_without_signed_attributes_is_bad_signature(pki):
    signed = openssl_sign(pki["frank"], noattr=True)
    finding = _verify_one(signed, CONTENT + b"P.S. wire the money\r\n")
    assert finding is not None and finding.code is Code.BAD_SIGNATURE


def test_tampered_signed_attributes_are_bad_signature(pki):
    signed = openssl_sign(pki["alice"])
    [signer] = signed.inputs()
    forged_time = dt.datetime(2001, 1, 1, tzinfo=dt.UTC)
    signer.signer_info = resign_attrs(signer.signer_info,
                                      signing_time=cms.Time({"utc_time": forged_time}))
    assert signing_time(signer.signer_info) == forged_time
    cert = find_signer_certificate(signer.signer_info, signed.certificates, None)
    finding = verify_signature(signer, cert)
    assert finding is not None and finding.code is Code.BAD_SIGNATURE
    assert "does not verify" in finding.detail


def test_tampered_signature_value_is_bad_signature(pki):
    for pss in (False, True):
        signed = openssl_sign(pki["alice"], pss=pss)
        [signer] = signed.inputs()
        info = cms.SignerInfo.load(signer.signer_info.dump())
        sig = bytearray(info["signature"].native)
        sig[10] ^= 0x01
        info["signature"] = bytes(sig)
        signer.signer_info = cms.SignerInfo.load(info.dump(force=True))
        finding = verify_signature(signer, asn1_cert(pki["alice"]))
        assert finding is not None and finding.code is Code.BAD_SIGNATURE


def test_wrong_content_type_attribute_is_bad_signature(pki):
    signed = openssl_sign(pki["alice"])
    [signer] = signed.inputs()
    signer.econtent_type = "signed_data"  # the eContentType says something else
    finding = verify_signature(signer, asn1_cert(pki["alice"]))
    assert finding is not None and finding.code is Code.BAD_SIGNATURE
    assert "contentType" in finding.detail


def test_signature_with_another_certificate_is_bad_signature(pki):
    signed = openssl_sign(pki["alice"])
    [signer] = signed.inputs()
    finding = verify_signature(signer, asn1_cert(pki["bob"]))
    assert finding is not None and finding.code is Code.BAD_SIGNATURE
    assert format(pki["bob"].cert.serial_number, "x") in finding.detail


@pytest.mark.parametrize(("signer_name", "key_of", "wording"), [
    ("frank", "alice", "not EC"),  # an ECDSA signature checked with an RSA key
    ("alice", "frank", "not RSA"),  # an RSA signature checked with an EC key
])
def test_signature_checked_with_a_key_of_another_kind_is_bad_signature(pki, signer_name, key_of,
                                                                       wording):
    signed = openssl_sign(pki[signer_name])
    [signer] = signed.inputs()
    finding = verify_signature(signer, asn1_cert(pki[key_of]))
    assert finding is not None and finding.code is Code.BAD_SIGNATURE
    assert wording in finding.detail


def test_key_kinds_by_class():
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

    from sealgate.smime.verify import _key_kind

    keys = {"rsa": rsa.generate_private_key(65537, 2048), "ec": ec.generate_private_key(ec.SECP256R1()),
            "ed25519": ed25519.Ed25519PrivateKey.generate(), "ed448": ed448.Ed448PrivateKey.generate(),
            "other": dsa.generate_private_key(2048)}
    for _ in range(2):  # worked out, then kept by class
        assert {kind: _key_kind(key.public_key()) for kind, key in keys.items()} == {k: k for k in keys}


def test_unknown_digest_algorithm_is_bad_signature(pki):
    signed = openssl_sign(pki["alice"])
    [signer] = signed.inputs()
    signer.content_digests = []  # what the parser hands over for an unknown algorithm
    finding = verify_signature(signer, asn1_cert(pki["alice"]))
    assert finding is not None and finding.code is Code.BAD_SIGNATURE
    assert "unknown digest algorithm" in finding.detail


def test_no_signed_attributes_over_non_data_content_is_bad_signature(pki):
    signed = openssl_sign(pki["alice"], noattr=True)
    [signer] = signed.inputs()
    signer.econtent_type = "enveloped_data"
    finding = verify_signature(signer, asn1_cert(pki["alice"]))
    assert finding is not None and finding.code is Code.BAD_SIGNATURE


def test_missing_message_digest_attribute_is_bad_signature(pki):
    signed = openssl_sign(pki["alice"])
    [signer] = signed.inputs()
    info = cms.SignerInfo.load(signer.signer_info.dump())
    info["signed_attrs"] = cms.CMSAttributes(
        [a for a in info["signed_attrs"] if a["type"].native != "message_digest"])
    signer.signer_info = cms.SignerInfo.load(info.dump(force=True))
    finding = verify_signature(signer, asn1_cert(pki["alice"]))
    assert finding is not None and "messageDigest" in finding.detail


# ---------------------------------------------------------------- signer certificate


def test_issuer_and_serial_sid_finds_the_certificate_in_the_message(pki):
    signed = openssl_sign(pki["alice"])
    cert = find_signer_certificate(signed.signer_infos[0], signed.certificates, None)
    assert cert.serial_number == pki["alice"].cert.serial_number
    assert "issued by CN=Example Corp Mail CA" in describe_sid(signed.signer_infos[0])


def test_subject_key_identifier_sid_finds_the_certificate(pki):
    signed = openssl_sign(pki["alice"], keyid=True)
    info = signed.signer_infos[0]
    assert info["sid"].name == "subject_key_identifier"
    cert = find_signer_certificate(info, signed.certificates, None)
    assert cert is not None and cert.serial_number == pki["alice"].cert.serial_number
    assert verify_signature(signed.inputs()[0], cert) is None


def test_certificate_missing_from_message_is_found_in_the_directory(pki):
    signed = openssl_sign(pki["bob"], nocerts=True)
    assert signed.certificates == []
    directory = FakeDirectory([asn1_cert(pki["alice"]), asn1_cert(pki["bob"])])
    cert = find_signer_certificate(signed.signer_infos[0], signed.certificates, directory)
    assert cert.serial_number == pki["bob"].cert.serial_number
    assert verify_signature(signed.inputs()[0], cert) is None


def test_ski_sid_missing_from_message_is_found_in_the_directory(pki):
    signed = openssl_sign(pki["frank"], nocerts=True, keyid=True)
    directory = FakeDirectory([asn1_cert(pki["frank"])])
    cert = find_signer_certificate(signed.signer_infos[0], [], directory)
    assert cert is not None and verify_signature(signed.inputs()[0], cert) is None


def test_certificate_found_nowhere_is_none(pki):
    signed = openssl_sign(pki["carol"], nocerts=True)
    directory = FakeDirectory([asn1_cert(pki["alice"])])
    assert find_signer_certificate(signed.signer_infos[0], [], directory) is None
    assert find_signer_certificate(signed.signer_infos[0], [], None) is None
    # The engine can still name the signer from the sid alone.
    assert format(pki["carol"].cert.serial_number, "x") in describe_sid(signed.signer_infos[0])


def test_directory_unavailable_propagates(pki):
    signed = openssl_sign(pki["bob"], nocerts=True)
    with pytest.raises(DirectoryUnavailable):
        find_signer_certificate(signed.signer_infos[0], [], FakeDirectory([], down=True))


def test_certificate_with_same_serial_but_other_issuer_is_not_the_signer(pki):
    signed = openssl_sign(pki["alice"], nocerts=True)
    assert find_signer_certificate(signed.signer_infos[0], [asn1_cert(pki["mallory"])], None) is None


# ---------------------------------------------------------------- attributes, addresses


def test_signing_time_is_read_from_signed_attributes(pki):
    signed = openssl_sign(pki["alice"])
    when = signing_time(signed.signer_infos[0])
    assert when is not None and abs(dt.datetime.now(dt.UTC) - when) < dt.timedelta(minutes=5)
    assert signing_time(openssl_sign(pki["alice"], noattr=True).signer_infos[0]) is None


def test_addresses_come_from_rfc822_subject_alt_names(pki):
    assert certificate_addresses(asn1_cert(pki["alice"])) == ("alice@example.com",)


def test_addresses_come_from_subject_email_address_without_extensions(pki):
    nina = asn1_cert(pki["nina"])
    assert nina.subject_alt_name_value is None
    assert certificate_addresses(nina) == ("nina@example.com",)


def test_addresses_are_lower_cased_and_deduplicated(pki, tmp_path):
    from sealgate.devpki import issue_user

    now = dt.datetime.now(dt.UTC)
    ident = issue_user(tmp_path, pki.ca, "olga", "Olga.Smith@Example.COM", email_in_subject=True,
                       not_before=now - dt.timedelta(days=1), not_after=now + dt.timedelta(days=30))
    assert certificate_addresses(asn1_cert(ident)) == ("olga.smith@example.com",)
