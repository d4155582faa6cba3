"""What CMS building needs from a private key, and a software key that provides it.

:class:`PrivateKeyOps` is the protocol a card key (:class:`sealgate.endpoint.card.CardKey`)
and a software key (:class:`SoftwareKey`, for tests and for a reviewer's key
file) both satisfy. Each method is ONE private-key operation; the CMS code
never asks for more than it needs (two per sealed message: RFC 2634 inner and
outer signature; one per opened encryption layer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from asn1crypto import x509 as asn1x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from .errors import EndpointError

HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512,
}


class PrivateKeyOps(Protocol):
    """A private key with its certificate; each call is one private-key operation."""

    @property
    def certificate(self) -> asn1x509.Certificate: ...

    @property
    def chain(self) -> tuple[asn1x509.Certificate, ...]:
        """CA certificates between ``certificate`` and a trust anchor (sent with signatures)."""

    def sign_digest(self, digest: bytes, hash_name: str) -> bytes:
        """CMS signature value over a precomputed digest: RSA PKCS#1 v1.5 or DER ECDSA."""

    def decrypt_key_transport(self, encrypted_key: bytes, oaep: bool) -> bytes:
        """RSA-decrypt a KeyTransRecipientInfo's encryptedKey (OAEP: SHA-1/MGF1-SHA-1 defaults)."""

    def ecdh(self, peer_point: bytes) -> bytes:
        """The raw ECDH shared secret Z with an uncompressed peer EC point (RFC 5753 §3.1.2)."""


def key_kind(cert: asn1x509.Certificate) -> str:
    """``rsa`` or ``ec``, from the certificate's public key algorithm."""
    algo = cert.public_key.algorithm
    if algo in ("rsa", "ec"):
        return str(algo)
    raise EndpointError(f"certificate key algorithm {algo} is not supported (use RSA or EC P-256)")


class SoftwareKey:
    """:class:`PrivateKeyOps` over a key held by ``cryptography`` (tests, reviewer key files)."""

    def __init__(self, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
                 certificate: asn1x509.Certificate,
                 chain: tuple[asn1x509.Certificate, ...] = ()) -> None:
        self._key = key
        self.certificate = certificate
        self.chain = tuple(chain)
        self.operations = 0

    @classmethod
    def from_files(cls, key_path: Path, cert_path: Path) -> SoftwareKey:
        """A PEM private key (unencrypted PKCS#8) and its PEM or DER certificate."""
        from ..trust import load_certificates

        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise EndpointError(f"cannot load private key {key_path}: {exc}") from None
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise EndpointError(f"{key_path}: only RSA and EC keys are supported")
        return cls(key, load_certificates(cert_path, key="--cert")[0])

    def sign_digest(self, digest: bytes, hash_name: str) -> bytes:
        self.operations += 1
        algorithm = Prehashed(HASHES[hash_name]())
        if isinstance(self._key, rsa.RSAPrivateKey):
            return self._key.sign(digest, padding.PKCS1v15(), algorithm)
        return self._key.sign(digest, ec.ECDSA(algorithm))

    def decrypt_key_transport(self, encrypted_key: bytes, oaep: bool) -> bytes:
        self.operations += 1
        if not isinstance(self._key, rsa.RSAPrivateKey):
            raise EndpointError("key transport needs an RSA key; this key is EC")
        pad: padding.AsymmetricPadding = (
            padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(),  # noqa: S303
                         label=None) if oaep else padding.PKCS1v15())
        return self._key.decrypt(encrypted_key, pad)

    def ecdh(self, peer_point: bytes) -> bytes:
        self.operations += 1
        if not isinstance(self._key, ec.EllipticCurvePrivateKey):
            raise EndpointError("key agreement needs an EC key; this key is RSA")
        peer = ec.EllipticCurvePublicKey.from_encoded_point(self._key.curve, peer_point)
        return self._key.exchange(ec.ECDH(), peer)
