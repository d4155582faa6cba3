"""``sealgate seal``: the RFC 2634 §1.1 triple wrap, with both signatures made on the card.

1. the MIME entity is signed (inner multipart/signed: the reader's proof of
   who wrote it, hidden from the gateway);
2. that is encrypted to the current directory certificate(s) of every recipient
   AND of the sender (so the sender can read the sent copy);
3. the encrypted entity is signed again (outer multipart/signed: what the
   gateway verifies without any key).

Exactly two private-key operations per message (steps 1 and 3); encryption
uses only public keys. A recipient certificate is used only when the trust
store says it is current, trusted, usable for encryption and not revoked: a
revoked (lost) card never gets new mail.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from asn1crypto import x509 as asn1x509

from ..addresses import normalize_address
from ..certs import certificate_addresses
from ..directory.base import Directory
from ..engine import header_addresses
from ..trust import TrustStore
from . import cmsbuild, mimewrap
from .errors import EndpointError
from .keys import PrivateKeyOps


@dataclass(frozen=True)
class SealOptions:
    cipher: str = "aes256-gcm"  # or aes256-cbc
    key_transport: str = "pkcs1v15"  # or oaep (SHA-1 parameters: what cards decrypt)
    hash_name: str = "sha256"


@dataclass
class Sealed:
    message: bytes
    sender: str
    recipients: list[str]  # envelope recipients (the sender is not added here)
    encrypted_to: dict[str, list[str]] = field(default_factory=dict)  # address -> serials (hex)


def current_certificates(address: str, directory: Directory, trust: TrustStore, now: dt.datetime,
                         extra_certs: tuple[asn1x509.Certificate, ...] = ()) -> list[asn1x509.Certificate]:
    """The directory's certificates for ``address`` that are usable for encryption now.

    ``extra_certs``: intermediate CAs to build paths with (the sender card's chain).
    """
    published = directory.certificates_for(address)
    good = [c for c in published if not trust.validate_recipient(c, now, extra_certs, now=now)]
    if not good:
        why = ("no certificate is published" if not published else
               f"none of its {len(published)} published certificate(s) is current "
               "(expired, revoked or untrusted)")
        raise EndpointError(f"cannot encrypt to {address}: {why} in the directory")
    return good


def seal_message(raw: bytes, key: PrivateKeyOps, directory: Directory, trust: TrustStore, *,
                 sender: str | None = None, recipients: list[str] | None = None,
                 options: SealOptions = SealOptions(),  # noqa: B008 - frozen dataclass
                 now: dt.datetime | None = None) -> Sealed:
    """Triple-wrap the RFC 5322 message ``raw``; recipients default to To/Cc/Bcc."""
    now = now or dt.datetime.now(dt.UTC)
    split = mimewrap.split_message(raw)
    from_addrs = header_addresses(split.header("From"))
    sender = normalize_address(sender) if sender else (from_addrs[0] if from_addrs else None)
    if not sender:
        raise EndpointError("the message has no From: address and no sender was given (-f)")
    own = certificate_addresses(key.certificate)
    if sender not in own:
        raise EndpointError(f"the card's certificate is for {', '.join(sorted(own)) or 'no address'}, "
                            f"not the sender {sender}")
    if recipients is None:
        recipients = header_addresses(split.header("To") + split.header("Cc") + split.header("Bcc"))
    recipients = list(dict.fromkeys(normalize_address(r) for r in recipients))
    if not recipients:
        raise EndpointError("the message has no recipients (To:, Cc:, Bcc: or arguments)")

    # Bcc recipients get the message but must not be named in it (RFC 5322 §3.6.3).
    split = split.without("bcc")
    encrypted_to: dict[str, list[str]] = {}
    certs: dict[bytes, asn1x509.Certificate] = {}
    for address in [*recipients, sender]:
        if address in encrypted_to:
            continue
        found = current_certificates(address, directory, trust, now, key.chain)
        encrypted_to[address] = [format(c.serial_number, "x") for c in found]
        for cert in found:
            certs.setdefault(cert.dump(), cert)
    # The sender's copy: their card must be able to read it; the card's own
    # certificate is what their directory entry should hold.
    if key.certificate.dump() not in certs and not trust.validate_recipient(key.certificate, now,
                                                                             key.chain, now=now):
        certs[key.certificate.dump()] = key.certificate

    entity = mimewrap.entity_of(split)
    inner_sig = cmsbuild.signed_data(entity, key, hash_name=options.hash_name, signing_time=now,
                                     extra_certs=key.chain)
    inner = mimewrap.multipart_signed(entity, inner_sig, options.hash_name)
    smime_type = "authEnveloped-data" if options.cipher == "aes256-gcm" else "enveloped-data"
    env_der = cmsbuild.enveloped_data(inner, list(certs.values()), cipher=options.cipher,
                                      key_transport=options.key_transport)
    encrypted = mimewrap.pkcs7_mime(env_der, smime_type)
    outer_sig = cmsbuild.signed_data(encrypted, key, hash_name=options.hash_name, signing_time=now,
                                     extra_certs=key.chain)
    outer = mimewrap.multipart_signed(encrypted, outer_sig, options.hash_name)
    message = mimewrap.with_headers(split.raw_fields(content=False), outer)
    return Sealed(message, sender, recipients, encrypted_to)
