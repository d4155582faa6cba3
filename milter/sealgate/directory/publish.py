"""Publishing into the directory: a person's certificate, a CA's CRL (SPEC §9).

Used by ``sealgate directory publish``, by card enrolment (the new
certificate) and by the CA (the CRL after a revocation). Both functions take
DER, check what they are given before writing anything, and return one line
saying where it went.

``files`` backend
    *Certificate*: a PEM file in ``[directory] path`` named
    ``<first address>-<serial hex>.pem``, written to a temporary file in the
    same folder and renamed (readers never see half a file), mode 0644
    (certificates are public). A re-enrolled person gets a second file: old and
    new certificate both stay published until the old one is removed.
    *CRL*: the rule for choosing the file is -- every *file* source of
    ``[trust] crls`` that now holds a CRL of the same issuer (RFC 5280 §7.1
    name comparison) is replaced; when none does, the first file source is
    written (a fresh installation, or a file not created yet); with no file
    source at all it is an error. A file keeps its format (DER or PEM; a new
    file is PEM). The gateway reads it at the next ``crl_refresh``.

``ldap`` backend
    *Certificate*: added (not replaced) to the first of
    ``certificate_attributes`` of the entry under ``base_dn`` whose
    ``mail_attribute`` is the certificate's first address; no such entry is an
    error (people are created by whoever manages the directory).
    *CRL*: replaces ``certificateRevocationList;binary`` of the CA entry whose
    ``cACertificate;binary`` has the CRL's issuer as subject. CA entries are
    looked for under the DNs of the ``ldap://`` sources in ``[trust] crls``,
    then under the server's naming contexts.

Publishing binds with ``[directory] bind_dn``/``bind_password_file``; that
account needs write access (the CLI can bind as another DN).
A CRL is refused if an anchor of ``[trust] anchors`` with the CRL's issuer
name does not verify its signature, so a mistaken file never replaces a good CRL.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

import ldap3
from asn1crypto import crl as asn1_crl
from asn1crypto import pem, x509

from ..certs import certificate_addresses, name_key, name_rfc4514, serial_hex
from ..config import Config
from ..errors import SealgateError
from ..trust import load_certificates
from ..trust.crl import is_url, parse_crl

__all__ = ["PublishError", "publish_certificate", "publish_crl"]


class PublishError(SealgateError):
    """What was to be published is unusable, or there is nowhere to publish it."""


def _atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_certificate(cert_der: bytes) -> tuple[x509.Certificate, str]:
    try:
        cert = x509.Certificate.load(bytes(cert_der), strict=True)
        addresses = certificate_addresses(cert)
        serial = serial_hex(cert)
    except (ValueError, TypeError, KeyError) as exc:
        raise PublishError(f"not a DER certificate: {exc}") from None
    if not addresses:
        raise PublishError(f"certificate serial {serial} names no mail address "
                           "(rfc822Name or emailAddress): nobody could look it up")
    return cert, addresses[0]


def _file_name(address: str) -> str:
    return "".join(c if c.isalnum() or c in "@.-_+" else "_" for c in address)


def publish_certificate(config: Config, cert_der: bytes) -> str:
    """Publish a person's certificate; returns where it went (one line)."""
    cert, address = _load_certificate(cert_der)
    if config.directory.backend == "ldap":
        return _ldap_publish_certificate(config, cert, address, bytes(cert_der))
    folder = Path(config.directory.path)
    if not folder.is_dir():
        raise PublishError(f"directory folder {folder} does not exist "
                           f"({config.source}: directory.path)")
    path = folder / f"{_file_name(address)}-{serial_hex(cert)}.pem"
    _atomic_write(path, pem.armor("CERTIFICATE", bytes(cert_der)))
    return f"{path} (for {address}, serial {serial_hex(cert)})"


def _load_crl(config: Config, crl_der: bytes) -> asn1_crl.CertificateList:
    try:
        entry = parse_crl(bytes(crl_der), "publish")
        parsed = asn1_crl.CertificateList.load(bytes(crl_der), strict=True)
    except ValueError as exc:
        raise PublishError(f"not a usable DER CRL: {exc}") from None
    issuer = name_key(entry.issuer)
    anchors = [a for path in config.trust.anchors
               for a in load_certificates(Path(path), config_file=str(config.source))]
    same_name = [a for a in anchors if name_key(a.subject) == issuer]
    if same_name and not any(entry.verified_by(a) for a in same_name):
        raise PublishError(f"the CRL of {entry.issuer_text} is not signed by the key of the trust "
                           "anchor of that name: refusing to publish it")
    return parsed


def publish_crl(config: Config, crl_der: bytes) -> str:
    """Publish a CA's CRL; returns where it went (one line)."""
    parsed = _load_crl(config, crl_der)
    issuer = parsed["tbs_cert_list"]["issuer"]
    if config.directory.backend == "ldap":
        return _ldap_publish_crl(config, issuer, bytes(crl_der))
    files = [Path(s) for s in config.trust.crls if not is_url(s)]
    if not files:
        raise PublishError(f"{config.source}: trust.crls names no CRL file to publish into")
    targets = [p for p in files if p.is_file() and _holds_crl_of(p, name_key(issuer))]
    written = []
    for path in targets or files[:1]:
        old = path.read_bytes() if path.is_file() else b""
        data = bytes(crl_der)
        if not old or pem.detect(old):
            data = pem.armor("X509 CRL", data)
        _atomic_write(path, data)
        written.append(str(path))
    return f"{', '.join(written)} (CRL of {name_rfc4514(issuer)})"


def _holds_crl_of(path: Path, issuer_key: str) -> bool:
    try:
        data = path.read_bytes()
        blobs = ([der for kind, _h, der in pem.unarmor(data, multiple=True) if kind == "X509 CRL"]
                 if pem.detect(data) else [data])
        return any(name_key(asn1_crl.CertificateList.load(b)["tbs_cert_list"]["issuer"])
                   == issuer_key for b in blobs)
    except (OSError, ValueError, TypeError, KeyError):
        return False


# ------------------------------------------------------------------ LDAP


def _client(config: Config):  # type: ignore[no-untyped-def]
    from .ldap import LdapClient, LdapSettings  # ldap3 only when the backend is ldap

    return LdapClient(LdapSettings.from_config(config))


def _ldap_publish_certificate(config: Config, cert: x509.Certificate, address: str,
                              der: bytes) -> str:
    from ldap3.utils.conv import escape_filter_chars

    d = config.directory
    attribute = d.certificate_attributes[0]
    if ";binary" not in attribute.lower():
        attribute += ";binary"
    client = _client(config)
    try:
        entries = client.search(d.base_dn, f"({d.mail_attribute}={escape_filter_chars(address)})",
                                [attribute])
        if not entries:
            raise PublishError(f"no entry with {d.mail_attribute}={address} under {d.base_dn}: "
                               "create the person in the directory first")
        if len(entries) > 1:
            raise PublishError(f"{len(entries)} entries have {d.mail_attribute}={address} under "
                               f"{d.base_dn}: which one is the person is ambiguous")
        dn = entries[0]["dn"]
        present = [bytes(v) for k, vs in entries[0].get("raw_attributes", {}).items()
                   if k.lower().split(";")[0] == attribute.lower().split(";")[0] for v in vs]
        if der not in present:
            client.modify(dn, {attribute: [(ldap3.MODIFY_ADD, [der])]})
    finally:
        client.close()
    return f"{d.url} {dn} {attribute} (for {address}, serial {serial_hex(cert)})"


def _ca_search_bases(config: Config, client) -> list[str]:  # type: ignore[no-untyped-def]
    bases = []
    for source in config.trust.crls:
        if isinstance(source, str) and source.lower().startswith(("ldap://", "ldaps://")):
            dn = unquote(urlsplit(source).path.lstrip("/"))
            if dn:
                bases.append(dn)
    return bases + [b for b in client.naming_contexts() if b not in bases]


def _ldap_publish_crl(config: Config, issuer: x509.Name, der: bytes) -> str:
    client = _client(config)
    wanted = name_key(issuer)
    try:
        for base in _ca_search_bases(config, client):
            entries = client.search(base, "(|(objectClass=pkiCA)(objectClass=cRLDistributionPoint)"
                                    "(objectClass=certificationAuthority))",
                                    ["cACertificate;binary"])
            for entry in entries:
                for value in entry.get("raw_attributes", {}).get("cACertificate;binary", []):
                    try:
                        subject = x509.Certificate.load(bytes(value)).subject
                        if name_key(subject) != wanted:
                            continue
                    except (ValueError, TypeError):
                        continue
                    client.modify(entry["dn"], {"certificateRevocationList;binary":
                                                [(ldap3.MODIFY_REPLACE, [der])]})
                    return (f"{config.directory.url} {entry['dn']} certificateRevocationList;binary "
                            f"(CRL of {name_rfc4514(issuer)})")
    finally:
        client.close()
    raise PublishError(f"no CA entry in the directory has a cACertificate;binary for "
                       f"{name_rfc4514(issuer)}: add the CA entry (pkiCA) first")
