"""Enrolment: a key pair made on the card, certified by the CA, written back (issue #4 §2).

One function used by ``sealgate card enroll`` and by the test/demo harness.
Nothing here ever sees a private key: the card makes the key pair and signs
the request, the CA signs the certificate. If anything fails after the key
pair was made, the key pair is removed again, so the card can be enrolled
again from a clean state.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .ca import CertificateAuthority
from .card import Card
from .csr import build_csr
from .errors import EndpointError


def enrol(card: Card, ca: CertificateAuthority, email: str, common_name: str,
          key_kind: str = "rsa2048") -> x509.Certificate:
    """Generate on ``card``, request, issue with ``ca``, store on the card; returns the certificate.

    Publishing is the caller's (it needs the configuration).
    """
    public = card.generate_key(key_kind)
    try:
        request = build_csr(public, email, common_name, card)
        cert = ca.issue(request, email=email)
        # the CAs below the root go on the card too, so signatures can carry them
        intermediates = [c.public_bytes(serialization.Encoding.DER) for c in ca.chain
                         if c.issuer != c.subject]
        card.write_certificate(cert.public_bytes(serialization.Encoding.DER), intermediates)
    except BaseException:
        card.destroy_key()
        raise
    return cert


def request(card: Card, email: str, common_name: str, key_kind: str = "rsa2048") -> bytes:
    """The first half of an enrolment with a CA elsewhere: key pair on the card, DER request."""
    public = card.generate_key(key_kind)
    try:
        return build_csr(public, email, common_name, card)
    except BaseException:
        card.destroy_key()
        raise


def store(card: Card, cert_der: bytes, chain: list[bytes] | None = None) -> x509.Certificate:
    """The second half: check that the certificate is for the card's key, then write it."""
    try:
        cert = x509.load_der_x509_certificate(cert_der)
    except ValueError as exc:
        raise EndpointError(f"the certificate cannot be read: {exc}") from None
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    if spki != card.public_key_info().dump():
        raise EndpointError(f"certificate serial {cert.serial_number:x} is not for the key on card "
                            f"{card.label!r}")
    card.write_certificate(cert_der, chain or [])
    return cert
