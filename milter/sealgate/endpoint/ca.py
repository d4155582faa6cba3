"""The enterprise CA (``sealgate ca``): a root or intermediate that issues S/MIME
certificates from card-signed requests, revokes them, and signs CRLs.

State lives in one folder, every file 0600 (the folder 0700):

- ``ca.pem`` the CA certificate (and ``chain.pem``: it plus its parents);
- ``ca.key`` its private key (PKCS #8 PEM) -- absent when the key is on a
  PKCS#11 token (``state.json`` then names module, token and key labels);
- ``state.json`` CRL settings, the CRL number, and every revocation;
- ``issued/<serial>.pem`` every certificate issued (for the record, and so
  ``revoke --email`` can find serials);
- ``ca.crl`` the current CRL (DER), rewritten by ``revoke`` and ``crl``.

User certificates follow RFC 8550 §4.4: the address as an rfc822Name
subjectAltName, digitalSignature plus keyEncipherment (RSA) or keyAgreement
(EC), extendedKeyUsage emailProtection, and a CRL distribution point when one
is configured. Revocation takes an RFC 5280 §5.3.1 reason (keyCompromise for a
lost card), and every CRL has a nextUpdate.

cryptography can sign only with a key object it holds. For a CA key on a
token, the certificate or CRL is built and signed with a throwaway key of the
same type (to get the exact to-be-signed bytes and algorithm identifier), then
the signature is replaced by one the token makes over the same bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asn1crypto import crl as asn1crl
from asn1crypto import x509 as asn1x509
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import EndpointError

UTC = dt.UTC
# RFC 5280 §5.3.1 reasons by name (key_compromise for a lost card)
REASONS: dict[str, x509.ReasonFlags] = {r.name: r for r in x509.ReasonFlags}
CA_KEY_KINDS = ("rsa2048", "rsa3072", "rsa4096", "ec256", "ec384")

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
# (digest, hash name) -> signature value: a token key, or a software one
DigestSign = Callable[[bytes, str], bytes]


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600, whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def _now() -> dt.datetime:
    return dt.datetime.now(UTC).replace(microsecond=0)


def new_software_key(kind: str) -> PrivateKey:
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    if kind in ("ec256", "ec384"):
        return ec.generate_private_key(ec.SECP256R1() if kind == "ec256" else ec.SECP384R1())
    raise EndpointError(f"key type {kind!r} is not one of {', '.join(CA_KEY_KINDS)}")


_THROWAWAY: dict[str, PrivateKey] = {}


def _throwaway_like(public: Any) -> PrivateKey:
    kind = "rsa" if isinstance(public, rsa.RSAPublicKey) else "ec"
    if kind not in _THROWAWAY:
        _THROWAWAY[kind] = (rsa.generate_private_key(public_exponent=65537, key_size=2048)
                            if kind == "rsa" else ec.generate_private_key(ec.SECP256R1()))
    return _THROWAWAY[kind]


@dataclass
class CaSigner:
    """The CA's key: a software key, or a digest-signing callable for a token key."""

    public_key: Any
    software: PrivateKey | None = None
    external: DigestSign | None = None

    def sign_certificate(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        if self.software is not None:
            return builder.sign(self.software, hashes.SHA256())
        draft = builder.sign(_throwaway_like(self.public_key), hashes.SHA256())
        return x509.load_der_x509_certificate(
            self._resign(asn1x509.Certificate, "signature_value",
                         draft.public_bytes(serialization.Encoding.DER), draft.tbs_certificate_bytes))

    def sign_crl(self, builder: x509.CertificateRevocationListBuilder) -> x509.CertificateRevocationList:
        if self.software is not None:
            return builder.sign(self.software, hashes.SHA256())
        draft = builder.sign(_throwaway_like(self.public_key), hashes.SHA256())
        return x509.load_der_x509_crl(
            self._resign(asn1crl.CertificateList, "signature",
                         draft.public_bytes(serialization.Encoding.DER), draft.tbs_certlist_bytes))

    def _resign(self, spec: Any, field_name: str, der: bytes, tbs: bytes) -> bytes:
        assert self.external is not None  # noqa: S101 - one of the two is always set
        value = spec.load(der)
        value[field_name] = self.external(hashlib.sha256(tbs).digest(), "sha256")
        return bytes(value.dump(force=True))


@dataclass
class CertificateAuthority:
    folder: Path
    certificate: x509.Certificate
    chain: list[x509.Certificate]  # this CA first, then its parents
    signer: CaSigner
    state: dict[str, Any]

    # ------------------------------------------------------------ files

    @property
    def crl_path(self) -> Path:
        return self.folder / "ca.crl"

    def _save_state(self) -> None:
        write_private(self.folder / "state.json", json.dumps(self.state, indent=2).encode())

    # ------------------------------------------------------------ issuing

    def issue(self, csr_der: bytes, *, email: str | None = None, days: int | None = None,
              now: dt.datetime | None = None) -> x509.Certificate:
        """A user certificate for the key in the request (RFC 8550 §4.4 profile).

        The request's signature must verify (proof that the requester holds the
        key); the address is the request's rfc822Name unless ``email`` is given.
        """
        try:
            request = x509.load_der_x509_csr(csr_der)
        except ValueError:
            try:
                request = x509.load_pem_x509_csr(csr_der)
            except ValueError as exc:
                raise EndpointError(f"the certificate request cannot be read: {exc}") from None
        if not request.is_signature_valid:
            raise EndpointError("the certificate request's signature does not verify "
                                "(it was not signed by the key it names)")
        address = email or _request_email(request)
        if not address or "@" not in address:
            raise EndpointError("the request names no mail address (rfc822Name); give --email")
        public = request.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            if public.key_size < 2048:
                raise EndpointError(f"RSA key of {public.key_size} bits is too small (2048 or more)")
            is_rsa = True
        elif isinstance(public, ec.EllipticCurvePublicKey):
            if public.curve.key_size < 256:
                raise EndpointError(f"EC key of {public.curve.key_size} bits is too small")
            is_rsa = False
        else:
            raise EndpointError("only RSA and EC keys can be certified for S/MIME")
        now = now or _now()
        days = days or int(self.state["user_days"])
        cn = request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        subject = [x509.NameAttribute(NameOID.COMMON_NAME, str(cn[0].value) if cn else address)]
        org = self.certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        if org:
            subject.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, str(org[0].value)))
        not_after = min(now + dt.timedelta(days=days), self.certificate.not_valid_after_utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(subject))
            .issuer_name(self.certificate.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=is_rsa,
                data_encipherment=False, key_agreement=not is_rsa, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(address)]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.signer.public_key),
                           critical=False)
        )
        if self.state.get("crl_url"):
            builder = builder.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(self.state["crl_url"])],
                relative_name=None, reasons=None, crl_issuer=None)]), critical=False)
        cert = self.signer.sign_certificate(builder)
        issued = self.folder / "issued"
        issued.mkdir(mode=0o700, exist_ok=True)
        write_private(issued / f"{cert.serial_number:x}.pem", cert.public_bytes(serialization.Encoding.PEM))
        return cert

    def issued(self) -> list[x509.Certificate]:
        folder = self.folder / "issued"
        if not folder.is_dir():
            return []
        return [x509.load_pem_x509_certificate(p.read_bytes()) for p in sorted(folder.glob("*.pem"))]

    # ------------------------------------------------------------ revocation

    def revoke(self, serial: int, reason: str = "key_compromise",
               now: dt.datetime | None = None) -> x509.CertificateRevocationList:
        """Record the revocation and write a new CRL (returned, for publishing)."""
        if reason not in REASONS:
            raise EndpointError(f"revocation reason {reason!r} is not one of {', '.join(sorted(REASONS))}")
        known = {c.serial_number for c in self.issued()}
        if serial not in known:
            raise EndpointError(f"serial {serial:x} was not issued by this CA ({self.folder})")
        revoked = self.state.setdefault("revoked", [])
        if any(int(r["serial"], 16) == serial for r in revoked):
            raise EndpointError(f"serial {serial:x} is already revoked")
        now = now or _now()
        revoked.append({"serial": f"{serial:x}", "date": now.isoformat(), "reason": reason})
        self._save_state()
        return self.make_crl(now)

    def make_crl(self, now: dt.datetime | None = None) -> x509.CertificateRevocationList:
        """A new CRL (next CRL number, nextUpdate = now + crl_days), written to ``ca.crl``."""
        now = now or _now()
        number = int(self.state.get("crl_number", 0)) + 1
        self.state["crl_number"] = number
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(now)
            .next_update(now + dt.timedelta(days=int(self.state["crl_days"])))
            .add_extension(x509.CRLNumber(number), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.signer.public_key),
                           critical=False)
        )
        for entry in self.state.get("revoked", []):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(int(entry["serial"], 16))
                .revocation_date(dt.datetime.fromisoformat(entry["date"]))
                .add_extension(x509.CRLReason(REASONS[entry["reason"]]), critical=False)
                .build())
        crl = self.signer.sign_crl(builder)
        write_private(self.crl_path, crl.public_bytes(serialization.Encoding.DER))
        os.chmod(self.crl_path, 0o644)  # public by nature: the gateway and clients read it
        self._save_state()
        return crl


def _request_email(request: x509.CertificateSigningRequest) -> str | None:
    try:
        san = request.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = san.value.get_values_for_type(x509.RFC822Name)
        if names:
            return str(names[0])
    except x509.ExtensionNotFound:
        pass
    attrs = request.subject.get_attributes_for_oid(NameOID.EMAIL_ADDRESS)
    return str(attrs[0].value) if attrs else None


# ---------------------------------------------------------------- creating and loading


def init_ca(folder: Path, common_name: str, *, organization: str | None = None,
            key_kind: str = "rsa3072", days: int = 3650, user_days: int = 730,
            crl_days: int = 7, crl_url: str | None = None,
            parent: CertificateAuthority | None = None,
            token_key: tuple[dict[str, str], Any, DigestSign] | None = None,
            now: dt.datetime | None = None) -> CertificateAuthority:
    """A new root (or, with ``parent``, intermediate) CA in an empty ``folder``.

    ``token_key``: (what state.json records about it, its cryptography public
    key, its digest signer) for a CA key made on a PKCS#11 token.
    """
    if folder.exists() and any(folder.iterdir()):
        raise EndpointError(f"{folder} is not empty; a CA folder is created once")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    now = now or _now()
    software: PrivateKey | None = None
    if token_key is None:
        software = new_software_key(key_kind)
        public = software.public_key()
        signer = CaSigner(public, software=software)
        key_state: dict[str, str] = {"storage": "file"}
    else:
        key_state, public, external = token_key
        signer = CaSigner(public, external=external)
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    subject = x509.Name(attrs)
    issuer_signer = parent.signer if parent else signer
    not_after = now + dt.timedelta(days=days)
    if parent is not None:
        not_after = min(not_after, parent.certificate.not_valid_after_utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(parent.certificate.subject if parent else subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0 if parent else None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_signer.public_key),
                       critical=False)
    )
    if parent is not None and parent.state.get("crl_url"):
        builder = builder.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(parent.state["crl_url"])],
            relative_name=None, reasons=None, crl_issuer=None)]), critical=False)
    cert = issuer_signer.sign_certificate(builder)
    if parent is not None:
        parent_copy = parent.folder / "issued"
        parent_copy.mkdir(mode=0o700, exist_ok=True)
        write_private(parent_copy / f"{cert.serial_number:x}.pem",
                      cert.public_bytes(serialization.Encoding.PEM))
    chain = [cert, *(parent.chain if parent else [])]
    write_private(folder / "ca.pem", cert.public_bytes(serialization.Encoding.PEM))
    write_private(folder / "chain.pem",
                  b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain))
    if software is not None:
        write_private(folder / "ca.key", software.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    state = {"key": key_state, "crl_days": crl_days, "user_days": user_days, "crl_url": crl_url,
             "crl_number": 0, "revoked": []}
    ca = CertificateAuthority(folder, cert, chain, signer, state)
    ca.make_crl(now)
    return ca


def load_ca(folder: Path, token_signer: Callable[[dict[str, str]], DigestSign] | None = None
            ) -> CertificateAuthority:
    """Open the CA in ``folder``; ``token_signer(key state)`` opens a token CA key."""
    try:
        state = json.loads((folder / "state.json").read_text())
        cert = x509.load_pem_x509_certificate((folder / "ca.pem").read_bytes())
        chain = x509.load_pem_x509_certificates((folder / "chain.pem").read_bytes())
    except (OSError, ValueError) as exc:
        raise EndpointError(f"{folder} is not a sealgate CA folder ({exc})") from None
    key_state = state.get("key", {})
    if key_state.get("storage") == "pkcs11":
        if token_signer is None:
            raise EndpointError(f"the CA key of {folder} is on a PKCS#11 token; a PIN is needed")
        signer = CaSigner(cert.public_key(), external=token_signer(key_state))
    else:
        try:
            key = serialization.load_pem_private_key((folder / "ca.key").read_bytes(), password=None)
        except (OSError, ValueError) as exc:
            raise EndpointError(f"cannot read the CA key {folder / 'ca.key'}: {exc}") from None
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise EndpointError(f"{folder / 'ca.key'} is not an RSA or EC key")
        signer = CaSigner(cert.public_key(), software=key)
    return CertificateAuthority(folder, cert, chain, signer, state)


def check_certificate_signature(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer``'s key verifies ``cert`` (used by tests and ``ca issue``)."""
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False

