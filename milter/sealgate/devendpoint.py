"""A throwaway endpoint site for tests, the benchmark and the demo.

A sealgate CA (:mod:`sealgate.endpoint.ca`), a gateway configuration (``files``
directory, strict policy, the CA as trust anchor with its CRL) and SoftHSM2
cards enrolled as a user would be: key pair made on the card, request signed by
the card, certificate issued, written back and published.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from .config import load_config
from .devconfig import write_gateway_config
from .devsofthsm import SoftHSM
from .directory.publish import publish_certificate, publish_crl
from .endpoint.ca import CertificateAuthority, init_ca, write_private
from .endpoint.card import Card
from .endpoint.enrol import enrol
from .engine import Gateway, load_gateway

_labels = itertools.count(1)


@dataclass
class Person:
    email: str
    token: str
    pin: str
    cert: x509.Certificate
    cert_path: Path

    @property
    def serial_hex(self) -> str:
        return format(self.cert.serial_number, "x")


@dataclass
class SoftPerson:
    """A user with a software key (for gpgsm and openssl as independent readers/writers)."""

    email: str
    cert: x509.Certificate
    cert_path: Path
    key_path: Path


@dataclass
class Site:
    """A sealgate CA, a gateway configuration (files directory, strict policy) and SoftHSM."""

    root: Path
    hsm: SoftHSM
    ca: CertificateAuthority
    config_path: Path
    directory: Path
    crl_path: Path  # the gateway's [trust] crls file
    people: dict[str, Person] = field(default_factory=dict)

    def gateway(self) -> Gateway:
        return load_gateway(self.config_path)

    def new_token(self, pin: str = "1234") -> str:
        label = f"card{next(_labels)}-{os.getpid()}"
        self.hsm.init_token(label, pin)
        return label

    def card(self, person: Person) -> Card:
        return Card(self.hsm.module, person.token, person.pin)

    def enrol(self, name: str, *, kind: str = "rsa2048", pin: str = "1234") -> Person:
        """A new card for ``name``: key made on it, CSR signed by it, issued, written, published."""
        email = f"{name}@example.com"
        token = self.new_token(pin)
        with Card(self.hsm.module, token, pin) as card:
            cert = enrol(card, self.ca, email, name.capitalize(), kind)
        der = cert.public_bytes(serialization.Encoding.DER)
        publish_certificate(load_config(self.config_path), der)
        cert_path = self.root / f"{name}-{cert.serial_number:x}.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        person = Person(email, token, pin, cert, cert_path)
        self.people[name] = person
        return person

    def software_user(self, name: str, kind: str = "rsa2048") -> SoftPerson:
        """A user whose key is a file (an independent client: openssl, gpgsm)."""
        email = f"{name}@example.com"
        key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048) if kind == "rsa2048"
            else ec.generate_private_key(ec.SECP256R1()))
        request = (x509.CertificateSigningRequestBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                   .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
                   .sign(key, hashes.SHA256()))
        cert = self.ca.issue(request.public_bytes(serialization.Encoding.DER))
        der = cert.public_bytes(serialization.Encoding.DER)
        publish_certificate(load_config(self.config_path), der)
        cert_path = self.root / f"{name}.pem"
        key_path = self.root / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        write_private(key_path, key.private_bytes(serialization.Encoding.PEM,
                                                  serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
        return SoftPerson(email, cert, cert_path, key_path)

    def publish_crl(self) -> str:
        der = self.ca.crl_path.read_bytes()
        return publish_crl(load_config(self.config_path), der)

    def ca_and_crl_file(self) -> Path:
        """CA certificate + current CRL in one PEM (openssl cms -CAfile ... -crl_check)."""
        out = self.root / "ca-and-crl.pem"
        crl = x509.load_der_x509_crl(self.ca.crl_path.read_bytes())
        out.write_bytes(self.ca.certificate.public_bytes(serialization.Encoding.PEM)
                        + crl.public_bytes(serialization.Encoding.PEM))
        return out


def make_site(root: Path, hsm: SoftHSM, now: dt.datetime | None = None, *,
              intermediate: bool = False) -> Site:
    """The site; ``intermediate``: users are issued by a CA under a root, and only the
    root is a trust anchor (the gateway needs both CRLs)."""
    pki = root / "pki"
    pki.mkdir()
    crls = []
    if intermediate:
        top = init_ca(root / "root", "Example Corp Root CA", organization="Example Corp",
                      key_kind="rsa2048", crl_url="http://127.0.0.1/root.crl", now=now)
        shutil.copy(top.crl_path, pki / "root.crl")
        crls.append(pki / "root.crl")
        ca = init_ca(root / "ca", "Example Corp Mail CA", organization="Example Corp", key_kind="rsa2048",
                     crl_url="http://127.0.0.1/ca.crl", parent=top, now=now)
        shutil.copy(root / "root" / "ca.pem", pki / "ca.pem")
    else:
        ca = init_ca(root / "ca", "Example Corp Mail CA", organization="Example Corp", key_kind="rsa2048",
                     crl_url="http://127.0.0.1/ca.crl", now=now)
        shutil.copy(root / "ca" / "ca.pem", pki / "ca.pem")
    shutil.copy(ca.crl_path, pki / "ca.crl")
    crls.insert(0, pki / "ca.crl")
    directory = root / "directory"
    directory.mkdir()
    config = write_gateway_config(root, anchors=[pki / "ca.pem"], crls=crls,
                                  directory={"backend": "files", "path": directory},
                                  extra=f'\n[card]\nmodule = "{hsm.module}"')
    return Site(root, hsm, ca, config, directory, pki / "ca.crl")
