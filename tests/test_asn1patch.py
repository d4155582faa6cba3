"""sealgate.asn1patch: a definite length ending in 0x80 is not re-encoded by dump().

asn1crypto 1.5.1 takes a header whose last byte is 0x80 for the indefinite
form and re-encodes the whole value on every dump(), which is slow and, when
threads share the value, unsafe (sealgate.asn1patch says how it failed).
"""

from __future__ import annotations

import datetime as dt
import sys
import threading

import pytest
from asn1crypto import core, x509
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import sealgate.certs  # noqa: F401 -- applies the patch, as the gateway does
from sealgate import asn1patch


def _certificate_with_length_ending_in_0x80() -> bytes:
    """A self-signed certificate whose TBS part is 0x?80 bytes long (a SAN pads it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    name = cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "padded")])
    for pad in range(1, 400):
        san = cx509.SubjectAlternativeName([cx509.RFC822Name("a" * pad + "@example.com")])
        cert = (cx509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(1)
                .not_valid_before(start).not_valid_after(start + dt.timedelta(days=1))
                .add_extension(san, critical=False)
                .sign(key, hashes.SHA256()))
        der = cert.public_bytes(serialization.Encoding.DER)
        tbs = x509.Certificate.load(der)["tbs_certificate"]
        if tbs._header[-1:] == b"\x80" and len(tbs._header) > 2:
            return der
    raise AssertionError("no padding gave a TBS length ending in 0x80")


@pytest.fixture(scope="module")
def der() -> bytes:
    return _certificate_with_length_ending_in_0x80()


def test_the_patch_is_applied_to_every_dump_with_the_check():
    for cls in (core.Asn1Value, core.Choice, core.Primitive, core.Sequence, core.SequenceOf):
        assert getattr(cls.__dict__["dump"], "_sealgate_definite_dump", False), cls
    asn1patch.apply()  # a second time changes nothing
    assert not hasattr(core.Sequence.dump.__wrapped__, "_sealgate_definite_dump")


def test_a_definite_length_ending_in_0x80_is_dumped_as_read_without_re_encoding(der, monkeypatch):
    cert = x509.Certificate.load(der, strict=True)
    cert.native  # noqa: B018 -- parsed whole, as sealgate.certs.settle leaves it
    re_encoded = []
    for cls in (core.Sequence, core.SequenceOf):
        original = cls._set_contents
        monkeypatch.setattr(cls, "_set_contents",
                            lambda self, force=False, _o=original: (
                                re_encoded.append(type(self).__name__), _o(self, force))[1])
    tbs = cert["tbs_certificate"]
    assert bytes(tbs._header)[-1:] == b"\x80"
    assert cert.dump() == der
    assert der.find(tbs.dump()) > 0
    assert re_encoded == []
    assert cert.dump(force=True) == der  # asked for: re-encoded, to the same DER
    assert re_encoded


def test_values_read_in_the_indefinite_form_are_still_re_encoded_as_der():
    ber = bytes.fromhex("2480" "0403666f6f" "0000")  # constructed OCTET STRING, indefinite
    value = core.OctetString.load(ber)
    assert value.native == b"foo"
    assert value.dump() == bytes.fromhex("0403666f6f")


def test_a_changed_value_is_encoded_anew(der):
    cert = x509.Certificate.load(der, strict=True)
    cert["tbs_certificate"]["serial_number"] = core.Integer(2)
    again = x509.Certificate.load(cert.dump())
    assert again.serial_number == 2
    assert again["tbs_certificate"]["subject"].native == cert.subject.native


def test_threads_dumping_and_reading_one_certificate_at_once_agree(der):
    cert = x509.Certificate.load(der, strict=True)
    cert.native  # noqa: B018
    tbs = cert["tbs_certificate"]
    expected_tbs, expected_cn = tbs.dump(), cert.subject.native["common_name"]
    assert bytes(tbs._header)[-1:] == b"\x80"
    problems: list[str] = []
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        for _ in range(300):
            if problems:  # unpatched, the values grow with each dump: stop at the first sign
                return
            try:
                if tbs.dump() != expected_tbs:
                    problems.append("tbs bytes differ")
                if cert.subject.native["common_name"] != expected_cn:
                    problems.append("subject differs")
                if tbs["validity"]["not_before"].native is None:
                    problems.append("not_before read as None")
            except Exception as exc:  # noqa: BLE001 -- any failure is the finding
                problems.append(repr(exc))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert problems == []
