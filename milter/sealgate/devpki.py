"""A throwaway PKI for the demo and the tests.

Builds, under one folder, a root CA with a CRL and a cast of users whose
certificates exercise every check: a good RSA user, a revoked one, an expired
one, an RSA-1024 one, an EC one, one without any extensions (address only in
the subject's emailAddress, RFC 8550 §3) and one issued by a second CA that
nobody trusts. Private keys are written 0600 and exist only for tests and the
demo: the real CA is ``sealgate ca`` and real user keys live on cards.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

UTC = dt.UTC
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass
class Identity:
    name: str
    email: str
    cert: x509.Certificate
    key: PrivateKey
    cert_path: Path
    key_path: Path

    @property
    def serial_hex(self) -> str:
        return format(self.cert.serial_number, "x")


@dataclass
class TestPKI:
    __test__ = False  # not a pytest test class, despite the name

    root: Path
    domain: str
    ca: Identity
    other_ca: Identity  # not a trust anchor
    crl_path: Path  # PEM CRL of ``ca``
    directory: Path  # folder of published user certificates (the ``files`` backend)
    users: dict[str, Identity] = field(default_factory=dict)
    revoked: list[int] = field(default_factory=list)

    def __getitem__(self, name: str) -> Identity:
        return self.users[name]


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _new_key(kind: str) -> PrivateKey:
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    if kind == "ec256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ec384":
        return ec.generate_private_key(ec.SECP384R1())
    raise ValueError(f"unknown key kind {kind!r}")


def _save(folder: Path, name: str, cert: x509.Certificate, key: PrivateKey) -> tuple[Path, Path]:
    cert_path = folder / f"{name}.pem"
    key_path = folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(
        key_path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    return cert_path, key_path


def make_ca(folder: Path, name: str, common_name: str, now: dt.datetime,
            key_kind: str = "rsa2048") -> Identity:
    key = _new_key(key_kind)
    subject = x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Corp"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=30))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=False, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          key_cert_sign=True, crl_sign=True, encipher_only=False,
                          decipher_only=False),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = _save(folder, name, cert, key)
    return Identity(name, "", cert, key, cert_path, key_path)


def issue_user(
    folder: Path,
    issuer: Identity,
    name: str,
    email: str,
    *,
    key_kind: str = "rsa2048",
    not_before: dt.datetime,
    not_after: dt.datetime,
    extensions: bool = True,
    email_in_subject: bool = False,
    eku: bool = True,
    hash_alg: hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None = None,
) -> Identity:
    """Issue a user certificate the way an enterprise CA would (SPEC §9)."""
    key = _new_key(key_kind)
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Corp"),
             x509.NameAttribute(NameOID.COMMON_NAME, name.capitalize())]
    if email_in_subject or not extensions:
        attrs.append(x509.NameAttribute(NameOID.EMAIL_ADDRESS, email))
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if extensions:
        is_rsa = isinstance(key, rsa.RSAPrivateKey)
        builder = (
            builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(digital_signature=True, content_commitment=False,
                              key_encipherment=is_rsa, data_encipherment=False,
                              key_agreement=not is_rsa, key_cert_sign=False, crl_sign=False,
                              encipher_only=False, decipher_only=False),
                critical=True,
            )
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
                critical=False,
            )
        )
        if eku:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
            )
    cert = builder.sign(issuer.key, hash_alg or hashes.SHA256())
    cert_path, key_path = _save(folder, name, cert, key)
    return Identity(name, email, cert, key, cert_path, key_path)


def write_crl(
    path: Path,
    issuer: Identity,
    revoked: list[int],
    *,
    last_update: dt.datetime,
    next_update: dt.datetime,
    signing_key: PrivateKey | None = None,
    issuer_name: x509.Name | None = None,
) -> Path:
    """Write a PEM CRL; ``signing_key`` other than the issuer's makes a forged one.

    ``issuer_name`` writes the issuer differently from the CA certificate's
    subject (another string type, another case), as some CAs do.
    """
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer_name or issuer.cert.subject)
        .last_update(last_update)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(int(last_update.timestamp())), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(last_update)
            .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
            .build()
        )
    crl = builder.sign(signing_key or issuer.key, hashes.SHA256())
    path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return path


# name -> (key kind, options); the cast every test and the demo can rely on.
CAST: dict[str, dict] = {
    "alice": {"key_kind": "rsa2048"},
    "bob": {"key_kind": "rsa2048"},
    "carol": {"key_kind": "rsa2048"},          # revoked (lost card)
    "dave": {"key_kind": "rsa2048", "expired": True},
    "erin": {"key_kind": "rsa1024"},           # weak key
    "frank": {"key_kind": "ec256"},
    "grace": {"key_kind": "rsa3072"},
    "nina": {"key_kind": "rsa2048", "extensions": False},  # no extensions, emailAddress only
    "mallory": {"key_kind": "rsa2048", "untrusted": True},  # issued by the other CA
}
REVOKED = ("carol",)


def build_pki(root: Path, domain: str = "example.com",
              now: dt.datetime | None = None) -> TestPKI:
    """Create CA, CRL, the cast of users and the published directory under ``root``."""
    now = now or dt.datetime.now(UTC)
    root.mkdir(parents=True, exist_ok=True)
    keys = root / "keys"
    keys.mkdir(exist_ok=True)
    directory = root / "directory"
    directory.mkdir(exist_ok=True)
    ca = make_ca(root, "ca", "Example Corp Mail CA", now)
    other = make_ca(keys, "other-ca", "Unrelated CA", now)
    pki = TestPKI(root=root, domain=domain, ca=ca, other_ca=other,
                  crl_path=root / "ca.crl", directory=directory)
    for name, opts in CAST.items():
        if opts.get("expired"):
            nb, na = now - dt.timedelta(days=400), now - dt.timedelta(days=35)
        else:
            nb, na = now - dt.timedelta(days=1), now + dt.timedelta(days=365)
        ident = issue_user(
            keys, other if opts.get("untrusted") else ca, name, f"{name}@{domain}",
            key_kind=opts["key_kind"], not_before=nb, not_after=na,
            extensions=opts.get("extensions", True),
        )
        pki.users[name] = ident
        if not opts.get("untrusted"):
            (directory / f"{name}.pem").write_bytes(ident.cert_path.read_bytes())
    pki.revoked = [pki.users[n].cert.serial_number for n in REVOKED]
    write_crl(pki.crl_path, ca, pki.revoked, last_update=now - dt.timedelta(hours=1),
              next_update=now + dt.timedelta(days=7))
    return pki
