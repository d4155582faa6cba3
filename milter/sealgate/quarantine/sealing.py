"""Encryption at rest: held messages CMS-encrypted to the compliance reviewers.

Quarantined mail is mostly the mail that escaped encryption; it must not sit
in clear on the gateway. When ``[quarantine] encrypt_to`` names reviewer
certificates, the store keeps each message as CMS enveloped-data (RFC 5652
§6; RSA key transport with PKCS #1 v1.5, AES-256-CBC — what cryptography can
build) to all of them. The gateway holds only certificates: it can write a
held message but never read it back. The clear bytes exist only in memory
(bounded by ``milter.max_message_size``) while being encrypted; no temporary
file ever holds them.

Reading back needs a reviewer key: a key file (:class:`KeyFileUnsealer`) or
a card (the endpoint's decrypt API, when present).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import pkcs7

from ..errors import StoreError
from .store import QuarantineEntry, QuarantineStore

READ_CHUNK = 1 << 16


class Sealer:
    """Encrypts a whole message to every reviewer certificate (write-only)."""

    def __init__(self, certificates: Sequence[x509.Certificate]) -> None:
        if not certificates:
            raise StoreError("encryption at rest needs at least one reviewer certificate")
        self.certificates = list(certificates)

    @classmethod
    def from_files(cls, paths: Iterable[Path | str]) -> Sealer:
        certs = []
        for path in paths:
            try:
                cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
            except (OSError, ValueError) as exc:
                raise StoreError(f"quarantine.encrypt_to: cannot read a PEM certificate from "
                                 f"{path}: {exc}") from exc
            if not isinstance(cert.public_key(), rsa.RSAPublicKey):
                raise StoreError(f"quarantine.encrypt_to: {path} holds a non-RSA certificate; "
                                 "encryption at rest needs RSA reviewer certificates")
            certs.append(cert)
        return cls(certs)

    def seal(self, data: bytes) -> bytes:
        """DER CMS enveloped-data holding ``data`` byte for byte (binary: no MIME canonicalisation)."""
        builder = pkcs7.PKCS7EnvelopeBuilder().set_data(data)
        builder = builder.set_content_encryption_algorithm(algorithms.AES256)
        for cert in self.certificates:
            builder = builder.add_recipient(cert)
        return builder.encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])


def read_bounded(source: IO[bytes], limit: int | None) -> bytes:
    """All of ``source`` from where it stands, refusing more than ``limit`` bytes."""
    parts: list[bytes] = []
    size = 0
    while chunk := source.read(READ_CHUNK):
        size += len(chunk)
        if limit is not None and size > limit:
            raise StoreError(f"message larger than {limit} bytes cannot be encrypted for the "
                             "quarantine (raise milter.max_message_size)")
        parts.append(chunk)
    return b"".join(parts)


class Unsealer(Protocol):
    """Anything that opens CMS enveloped-data with a reviewer's private key."""

    def decrypt(self, der: bytes) -> bytes: ...


class KeyFileUnsealer:
    """A reviewer key in a PEM/DER file, with its certificate (for tests and key escrow).

    When no certificate file is given, the one among ``candidates`` (the
    configured ``encrypt_to`` certificates) whose public key matches is used.
    """

    def __init__(self, key_path: Path | str, cert_path: Path | str | None = None,
                 candidates: Iterable[Path | str] = (), password: bytes | None = None) -> None:
        raw = _read(key_path, "key file")
        try:
            key = (serialization.load_pem_private_key(raw, password) if b"-----BEGIN" in raw
                   else serialization.load_der_private_key(raw, password))
        except (ValueError, TypeError) as exc:
            # Never echo key material: the path and the reason only.
            raise StoreError(f"cannot load the private key in {key_path}: {exc}") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise StoreError(f"{key_path}: quarantine encryption uses RSA keys only")
        self.key = key
        wanted = key.public_key().public_numbers()
        paths = [cert_path] if cert_path is not None else list(candidates)
        for path in paths:
            cert = x509.load_pem_x509_certificate(_read(path, "certificate"))
            public = cert.public_key()
            if isinstance(public, rsa.RSAPublicKey) and public.public_numbers() == wanted:
                self.certificate = cert
                return
        raise StoreError(f"no certificate for the key in {key_path} among "
                         f"{', '.join(str(p) for p in paths) or 'quarantine.encrypt_to (empty)'}")

    def decrypt(self, der: bytes) -> bytes:
        try:
            # No options: the content comes back byte for byte (Text would strip a header).
            return pkcs7.pkcs7_decrypt_der(der, self.certificate, self.key, [])
        except ValueError as exc:
            raise StoreError(f"cannot decrypt with this key ({exc}); is it one of the "
                             "reviewer keys the message was encrypted to?") from None


def _read(path: Path | str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise StoreError(f"cannot read the {what} {path}: {exc.strerror or exc}") from exc


def read_message(store: QuarantineStore, entry: QuarantineEntry,
                 unsealer: Unsealer | None = None) -> bytes:
    """The message exactly as received, decrypted if need be and checked against its SHA-256."""
    with store.open_message(entry.id) as fh:
        stored = fh.read()
    if entry.encrypted:
        if unsealer is None:
            raise StoreError(f"quarantined message {entry.id} is encrypted to the reviewers: "
                             "give a reviewer key (--key-file, or --card)")
        stored = unsealer.decrypt(stored)
    if hashlib.sha256(stored).hexdigest() != entry.sha256:
        raise StoreError(f"quarantined message {entry.id} does not match its recorded SHA-256 "
                         f"{entry.sha256}: the stored copy is damaged")
    return stored
