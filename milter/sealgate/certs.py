"""Small facts about one certificate that several modules need.

Addresses (SPEC §4, RFC 8550 §3), fingerprints for indexes and caches, and
the strings used in details and headers (serial as lower-case hex, names as
RFC 4514). Certificates are asn1crypto objects throughout sealgate.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

from asn1crypto import x509
from asn1crypto.core import Asn1Value, Choice
from cryptography import x509 as cx509
from cryptography.x509.oid import ObjectIdentifier

from . import asn1patch

asn1patch.apply()  # before any certificate is parsed (see sealgate.asn1patch)

_ADDRESSES = "_sealgate_addresses"
T = TypeVar("T")
A = TypeVar("A", bound=Asn1Value)


def kept(cert: x509.Certificate, attribute: str, compute: Callable[[x509.Certificate], T]) -> T:
    """``compute(cert)``, worked out once and kept on the certificate object as ``attribute``.

    For values that depend on the certificate's bytes only: sealgate never
    changes a parsed certificate, and parsed certificates are shared between
    messages and threads (:func:`shared_certificate`); two threads computing
    the same value at once both store it, harmlessly.
    """
    known = getattr(cert, attribute, None)
    if known is None:
        known = compute(cert)
        setattr(cert, attribute, known)
    return known  # type: ignore[no-any-return]


def certificate_addresses(cert: x509.Certificate) -> tuple[str, ...]:
    """rfc822Name subjectAltNames, then PKCS #9 emailAddress attributes of the subject.

    RFC 8550 §3: receiving agents must recognise both. Lower-cased (SPEC §4:
    compare case-insensitively), deduplicated, first occurrence order kept.
    Kept on the object, as :func:`fingerprint` is (a parsed certificate never changes).
    """
    return kept(cert, _ADDRESSES, _addresses)


def _addresses(cert: x509.Certificate) -> tuple[str, ...]:
    found: list[str] = []
    try:
        san = cert.subject_alt_name_value
    except (ValueError, TypeError):
        san = None
    if san is not None:
        for general_name in san:
            if general_name.name == "rfc822_name":
                found.append(str(general_name.native))
    try:
        rdns = cert.subject.chosen
        for rdn in rdns:
            for attribute in rdn:
                if attribute["type"].native == "email_address":
                    found.append(str(attribute["value"].native))
    except (ValueError, TypeError, KeyError):
        pass
    seen: dict[str, None] = {}
    for address in found:
        address = address.strip().lower()
        if address and "@" in address:
            seen.setdefault(address, None)
    return tuple(seen)


def encoded(value: Asn1Value) -> bytes:
    """The bytes a parsed asn1crypto value was read from, without re-encoding.

    asn1crypto 1.5.1 ``dump()`` takes a length whose last byte is 0x80 for the
    indefinite form and re-encodes the whole tree (one certificate in 256: about
    0.5 ms instead of 3 µs, and a changed encoding for non-DER input). Parsed
    values keep header and contents; only built ones need ``dump()``.
    """
    if isinstance(value, Choice) and not getattr(value, "_header", None):
        return encoded(value.chosen)  # an untagged CHOICE (Name): its alternative's bytes
    header = getattr(value, "_header", None)
    if header is not None and value.contents is not None:
        return bytes(header + value.contents + (getattr(value, "_trailer", b"") or b""))
    return bytes(value.dump())


_NAME_KEY = "_sealgate_name_key"


@functools.lru_cache(maxsize=4096)
def _name_key(der: bytes) -> str:
    return x509.Name.load(der).hashable


def name_key_of(der: bytes) -> str:
    """:func:`name_key` of a Name's DER encoding."""
    try:
        return _name_key(der)
    except (ValueError, TypeError):
        return "undecodable:" + der.hex()


def name_key(name: x509.Name) -> str:
    """A distinguished name as RFC 5280 §7.1 compares them (case, spaces, string types).

    A CRL's issuer and a certificate's issuer are often encoded differently
    (PrintableString against UTF8String, another case): comparing bytes would
    miss the CRL and tempfail forever. ``hashable`` runs LDAP stringprep, which
    is slow, hence the cache on the encoded bytes.
    """
    known = getattr(name, _NAME_KEY, None)
    if known is not None:
        return str(known)
    key = name_key_of(encoded(name))
    setattr(name, _NAME_KEY, key)  # parsed names never change (see fingerprint)
    return key


def fingerprint(cert: x509.Certificate) -> bytes:
    """SHA-256 of the certificate's encoding, the key of indexes and caches.

    Kept on the object after the first call: sealgate never changes a parsed
    certificate, and reading a parsed asn1crypto tree's bytes walks the whole
    tree (asn1crypto checks every node for changes), 7 µs a call, several
    calls a message.
    """
    return kept(cert, _FINGERPRINT, lambda c: hashlib.sha256(encoded(c)).digest())


# ---------------------------------------------------------------- shared parsed certificates

# About 30 KiB each once parsed: 256 senders' certificates stay under 8 MiB.
SHARED_CERTIFICATES = 256
_FINGERPRINT = "_sealgate_fingerprint"
_shared: OrderedDict[bytes, x509.Certificate] = OrderedDict()
_shared_lock = threading.Lock()


def shared_certificate(der: bytes) -> x509.Certificate:
    """The parsed certificate for ``der``: one read-only object per encoding, shared by messages.

    Every signed message carries its signer's certificate, and the same few
    certificates come back all day. Parsing one with asn1crypto and working
    out its extensions, key and fingerprint cost about 0.5 ms — several times
    the verdict on a small message. The object is parsed whole and its lazily
    computed parts (extensions, key facts, serial, fingerprint) are computed
    before it is shared (:func:`settle`), so that threads only read it
    afterwards. Raises what asn1crypto raises for bytes that do not parse (the
    caller says where); a certificate whose extensions do not parse is
    returned parsed but not shared, so its problems surface per message as
    before.
    """
    with _shared_lock:
        cert = _shared.get(der)
        if cert is not None:
            _shared.move_to_end(der)
            return cert
    cert = settle(x509.Certificate.load(der, strict=True))
    try:
        _warm(cert, der)
    except Exception:  # noqa: BLE001 - asn1crypto raises assorted types on bad extensions
        fresh = x509.Certificate.load(der, strict=True)  # no half-computed state
        fresh._parse_children(recurse=True)
        return fresh
    with _shared_lock:
        cert = _shared.setdefault(der, cert)
        _shared.move_to_end(der)
        while len(_shared) > SHARED_CERTIFICATES:
            _shared.popitem(last=False)
    return cert


def _warm(cert: x509.Certificate, der: bytes) -> None:
    """Compute what asn1crypto computes lazily (and what sealgate asks of every signer)."""
    cert.subject_alt_name_value  # noqa: B018 - parses every extension (x509 _set_extensions)
    cert.key_identifier  # noqa: B018
    cert.serial_number  # noqa: B018
    public_key = cert.public_key
    public_key.algorithm  # noqa: B018
    if public_key.algorithm in ("rsa", "rsassa_pss", "ec"):
        public_key.bit_size  # noqa: B018
    certificate_addresses(cert)
    name_key(cert.issuer)
    subject_key(cert)
    serial_hex(cert)
    issuer_text(cert)
    setattr(cert, _FINGERPRINT, hashlib.sha256(der).digest())


# ---------------------------------------------------------------- objects read by many threads

# Properties settle() leaves alone. Digests of the encoding: asn1crypto keeps each with
# one assignment (two threads computing one at once both store the same bytes; the
# encoding itself is read as parsed, sealgate.asn1patch), and sealgate keeps its own
# fingerprint. A Name's ``hashable``: computed anew on every read (LDAP stringprep,
# slow; sealgate keeps it, certs.name_key). PublicKeyInfo's deprecated ``fingerprint``:
# needs oscrypto, raises without it.
_NOT_SETTLED = frozenset({"sha1", "sha256", "sha1_fingerprint", "sha256_fingerprint",
                          "hashable", "fingerprint"})
_SETTLE_DEPTH = 2  # the certificate, its parts (names, key, extensions), their parts
_properties: dict[type, tuple[str, ...]] = {}


def settle(value: A) -> A:
    """``value`` with everything asn1crypto computes lazily computed now, in this thread.

    asn1crypto parses on first access and keeps what it parsed on the object,
    in several steps: a list of children is emptied and then filled, a set is
    created and then added to, a value is set to "no" and then corrected.
    Two threads reading a fresh object at once can see each other's half-built
    state -- a missing field, an empty key usage, a signature that does not
    verify -- and a cache may then keep the wrong answer. That happened with
    several milter threads judging the first messages of a worker. Every
    asn1crypto object that threads share (certificates from messages, the
    directory and the trust anchors; the issuer names of CRLs) is settled
    before another thread can see it; after that, threads only read it.

    Settling parses the whole tree (``native``) and reads every property that
    asn1crypto's own modules define on the object's class (extensions, key
    facts, names, fingerprints), and so on for what those return, to
    :data:`_SETTLE_DEPTH` levels. A part that does not parse is left as it is:
    it raises the same error whenever it is read.
    """
    _settle(value, 0)
    return value


def _settle(value: Asn1Value, depth: int) -> None:
    try:
        value.native  # noqa: B018 - parses every node below and keeps its native value
    except Exception:  # noqa: BLE001, S110 - asn1crypto raises assorted types on bad content
        pass
    if depth >= _SETTLE_DEPTH:
        return
    for name in _lazy_properties(type(value)):
        try:
            found = getattr(value, name)
        except Exception:  # noqa: BLE001, S112 - as above; reading it later raises the same
            continue
        if isinstance(found, Asn1Value):
            _settle(found, depth + 1)
        elif isinstance(found, list):
            for item in found:
                if isinstance(item, Asn1Value):
                    _settle(item, depth + 1)


def _lazy_properties(cls: type) -> tuple[str, ...]:
    """The properties asn1crypto's modules (not its core) define on ``cls`` and its bases."""
    known = _properties.get(cls)
    if known is None:
        names: set[str] = set()
        for klass in cls.__mro__:
            module = str(getattr(klass, "__module__", ""))
            if module.startswith("asn1crypto.") and module != "asn1crypto.core":
                names.update(n for n, v in vars(klass).items() if isinstance(v, property))
        known = _properties[cls] = tuple(sorted(names - _NOT_SETTLED))
    return known


_ISSUER_DER = "_sealgate_issuer_der"
_ID = "_sealgate_id"


def issuer_der(cert: x509.Certificate) -> bytes:
    """The issuer Name's encoding, kept on the object (compared for every signer)."""
    return kept(cert, _ISSUER_DER, lambda c: bytes(encoded(c.issuer)))


def issuer_serial(cert: x509.Certificate) -> tuple[str, int]:
    """(issuer :func:`name_key`, serial number): how CRLs and RecipientInfos name a certificate."""
    return kept(cert, _ID, lambda c: (name_key(c.issuer), serial_of(c)))


# Per-certificate values every signer and recipient check reads (trust path, CRL
# lookup, reports). asn1crypto computes each on every access (0.3-0.4 µs for a
# field, 2.7 µs for an issuer's RFC 4514 string); kept on the object as
# :func:`fingerprint` is: they depend on the certificate's bytes only.
_SERIAL = "_sealgate_serial"
_SERIAL_HEX = "_sealgate_serial_hex"
_ISSUER_TEXT = "_sealgate_issuer_text"
_SUBJECT_KEY = "_sealgate_subject_key"
_IS_CA = "_sealgate_is_ca"


def serial_of(cert: x509.Certificate) -> int:
    """``cert.serial_number``, kept on the object."""
    return kept(cert, _SERIAL, lambda c: int(c.serial_number))


def serial_hex(cert: x509.Certificate) -> str:
    return kept(cert, _SERIAL_HEX, lambda c: format(serial_of(c), "x"))


def issuer_text(cert: x509.Certificate) -> str:
    """``name_rfc4514(cert.issuer)``, kept on the object."""
    return kept(cert, _ISSUER_TEXT, lambda c: name_rfc4514(c.issuer))


def subject_key(cert: x509.Certificate) -> str:
    """``name_key(cert.subject)``, kept on the object."""
    return kept(cert, _SUBJECT_KEY, lambda c: name_key(c.subject))


def is_ca(cert: x509.Certificate) -> bool:
    """``bool(cert.ca)`` (basicConstraints cA), kept on the object; raises as asn1crypto does."""
    return kept(cert, _IS_CA, lambda c: bool(c.ca))


def name_rfc4514(name: x509.Name) -> str:
    """An RFC 4514 string (``CN=Example Corp Mail CA,O=Example Corp``) for details and headers."""
    try:
        der = encoded(name)
    except (ValueError, TypeError):
        return _name_rfc4514(name)
    return _rfc4514_of(der)


def name_rfc4514_of(der: bytes) -> str:
    """:func:`name_rfc4514` of a Name's DER encoding."""
    return _rfc4514_of(der)


@functools.lru_cache(maxsize=4096)
def _rfc4514_of(der: bytes) -> str:
    # The same issuers appear in every message; building the string costs 10 µs.
    try:
        name = x509.Name.load(der, strict=True)
    except (ValueError, TypeError):
        return f"unreadable name {der[:32].hex()}"
    return _name_rfc4514(name)


def _name_rfc4514(name: x509.Name) -> str:
    try:
        attributes = []
        for rdn in name.chosen:
            attributes.append(cx509.RelativeDistinguishedName([
                cx509.NameAttribute(ObjectIdentifier(attribute["type"].dotted),
                                    str(attribute["value"].native))
                for attribute in rdn
            ]))
        # RFC 4514 §2.1 writes the most specific RDN first: cryptography reverses.
        return cx509.Name(attributes).rfc4514_string()
    except Exception:  # noqa: BLE001 - a broken name in a message must still be describable
        try:
            return name.human_friendly
        except Exception:  # noqa: BLE001
            return f"unreadable name {encoded(name)[:32].hex()}"


def describe(cert: x509.Certificate) -> str:
    """``serial 1f2e... issued by CN=...`` for finding details."""
    return f"serial {serial_hex(cert)} issued by {issuer_text(cert)}"
