"""Algorithm facts in one place: digests, and what SPEC §3 calls weak.

Names are asn1crypto's (``sha256``, ``aes256_cbc``, ``rsassa_pss``); a dotted
OID is accepted wherever a name is and is mapped to the name when asn1crypto
knows it. Every ``weak_*`` function returns ``None`` for an acceptable
algorithm or a one-line detail for the ``weak-algorithm`` finding; the
``*_findings`` helpers wrap those details into :class:`Finding` values for the
engine (signers and encrypted layers).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import Any

from asn1crypto import algos, cms, keys
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes

from ..certs import kept
from ..codes import Code
from ..model import Finding
from .cmsfields import SignerFields, as_signer_fields

# digest name -> (hashlib name, cryptography hash class)
_DIGESTS: dict[str, tuple[str, type[hashes.HashAlgorithm]]] = {
    "md5": ("md5", hashes.MD5),
    "sha1": ("sha1", hashes.SHA1),
    "sha224": ("sha224", hashes.SHA224),
    "sha256": ("sha256", hashes.SHA256),
    "sha384": ("sha384", hashes.SHA384),
    "sha512": ("sha512", hashes.SHA512),
    "sha512_224": ("sha512_224", hashes.SHA512_224),
    "sha512_256": ("sha512_256", hashes.SHA512_256),
    "sha3_224": ("sha3_224", hashes.SHA3_224),
    "sha3_256": ("sha3_256", hashes.SHA3_256),
    "sha3_384": ("sha3_384", hashes.SHA3_384),
    "sha3_512": ("sha3_512", hashes.SHA3_512),
}

# RFC 8551 §2.1 / SPEC §3: MD5 and SHA-1 signature digests are weak (md2 too).
_WEAK_DIGESTS = {"md2": "MD2", "md4": "MD4", "md5": "MD5", "sha1": "SHA-1"}

# SPEC §3: RC2, DES, 3DES and RC4 content ciphers are weak, whatever the key size.
_WEAK_CIPHERS = {
    "des": "DES",
    "tripledes": "3DES",
    "tripledes_3key": "3DES",
    "tripledes_2key": "3DES",
    "rc2": "RC2",
    "rc4": "RC4",
    "rc5": "RC5",
}

MIN_RSA_BITS = 2048
MIN_EC_BITS = 256


def _normalise(name: str, mapping: dict[str, str]) -> str:
    """A dotted OID becomes the asn1crypto name when known; names are lower-cased."""
    name = name.strip()
    if name[:1].isdigit():
        return mapping.get(name, name)
    return name.lower().replace("-", "_")


def digest_name(name_or_oid: str) -> str:
    """The asn1crypto name of a digest algorithm (``2.16.840.1.101.3.4.2.1`` -> ``sha256``)."""
    return _normalise(name_or_oid, algos.DigestAlgorithmId._map)


def hash_algorithm(name_or_oid: str) -> hashes.HashAlgorithm | None:
    """A cryptography hash instance for the digest, or None when unknown/unsupported."""
    entry = _DIGESTS.get(digest_name(name_or_oid))
    return entry[1]() if entry else None


def hashlib_constructor(name_or_oid: str) -> Callable[..., Any] | None:
    """A ``hashlib`` constructor (call it, ``update`` in chunks) or None when unknown."""
    entry = _DIGESTS.get(digest_name(name_or_oid))
    if entry is None:
        return None
    hashlib_name = entry[0]
    return lambda data=b"": hashlib.new(hashlib_name, data)


def digest(name_or_oid: str, data: bytes) -> bytes | None:
    """One-shot digest of ``data``; None when the algorithm is unknown."""
    ctor = hashlib_constructor(name_or_oid)
    return ctor(data).digest() if ctor else None


# ---------------------------------------------------------------- weakness


def weak_digest(name_or_oid: str) -> str | None:
    name = digest_name(name_or_oid)
    label = _WEAK_DIGESTS.get(name)
    if label is None:
        return None
    return f"signature digest {label} is weak"


@functools.lru_cache(maxsize=256)
def weak_cipher(name_or_oid: str, key_bits: int | None = None) -> str | None:
    """Content-encryption cipher check; ``key_bits`` only decorates the detail."""
    name = _normalise(name_or_oid, algos.EncryptionAlgorithmId._map)
    label = _WEAK_CIPHERS.get(name)
    if label is None:
        return None
    size = f" ({key_bits}-bit key)" if key_bits else ""
    return f"content cipher {label}{size} is weak"


def weak_public_key(public_key: keys.PublicKeyInfo) -> str | None:
    """RSA below 2048 bits, EC below 256 bits (SPEC §3); None otherwise or if unreadable."""
    try:
        algorithm = public_key.algorithm
        if algorithm in ("rsa", "rsassa_pss"):
            bits = public_key.bit_size
            if bits < MIN_RSA_BITS:
                return f"RSA key of {bits} bits is weak (minimum {MIN_RSA_BITS})"
        elif algorithm == "ec":
            bits = public_key.bit_size
            if bits < MIN_EC_BITS:
                curve = public_key.curve[1]
                return f"EC key on {curve} ({bits} bits) is weak (minimum {MIN_EC_BITS})"
    except (ValueError, TypeError, KeyError):
        # An unreadable key is the signature verifier's problem, not a strength fact.
        return None
    return None


def signature_hash_name(signer_info: SignerFields | cms.SignerInfo) -> str | None:
    """The hash a signatureAlgorithm names itself (``sha1_rsa`` -> sha1, PSS -> its parameter)."""
    try:
        si = as_signer_fields(signer_info)
        name = si.signature_name
        if name == "rsassa_pss":
            params = si.signature_algorithm_asn1()["parameters"]
            return str(params["hash_algorithm"]["algorithm"].native)
        if "_" in name and name.split("_", 1)[1] in ("rsa", "dsa", "ecdsa"):
            return str(name.split("_", 1)[0])
        if name.startswith("sha3_") and name.endswith("_ecdsa"):
            return str(name[: -len("_ecdsa")])
    except (ValueError, TypeError, KeyError):
        return None
    return None


# ---------------------------------------------------------------- findings


def signer_weak_findings(signer_info: SignerFields | cms.SignerInfo,
                         cert: asn1_x509.Certificate | None,
                         where: str = "") -> list[Finding]:
    """weak-algorithm findings for one SignerInfo: digest, signature hash, signer key."""
    at = f" in part {where}" if where else ""
    if isinstance(signer_info, SignerFields) and len(signer_info.signature_algorithm) <= 256:
        details = list(_algorithm_details(signer_info.digest_oid, signer_info.signature_oid,
                                          signer_info.signature_algorithm))
    else:
        details = _signer_algorithm_details(signer_info)
    if cert is not None:
        detail = _signer_key_detail(cert)
        if detail:
            details.append(detail)
    return [Finding(Code.WEAK_ALGORITHM, f"{d}{at}") for d in details]


@functools.lru_cache(maxsize=256)
def _algorithm_details(digest_oid: str, signature_oid: str,
                       signature_algorithm: bytes) -> tuple[str, ...]:
    # A signer's algorithms are the same in each of its messages: judged once (1.5 µs).
    return tuple(_signer_algorithm_details(SignerFields(
        None, None, None, digest_oid, None, (), signature_algorithm, signature_oid, b"")))


def _signer_algorithm_details(signer_info: SignerFields | cms.SignerInfo) -> list[str]:
    """The weak digest and signature hash details of a SignerInfo (its algorithms only)."""
    details: list[str] = []
    try:
        digest_alg: str | None = as_signer_fields(signer_info).digest_oid
    except (ValueError, TypeError, KeyError):
        digest_alg = None
    if digest_alg is not None:
        detail = weak_digest(digest_alg)
        if detail:
            details.append(detail)
    sig_hash = signature_hash_name(signer_info)
    if sig_hash is not None:
        detail = weak_digest(sig_hash)
        if detail and detail not in details:
            details.append(detail)
    return details


_KEY_DETAIL = "_sealgate_weak_key_detail"


def _signer_key_detail(cert: asn1_x509.Certificate) -> str | None:
    """The weak-key detail of a signer certificate, kept on the object (it never changes)."""
    def compute(c: asn1_x509.Certificate) -> str:
        detail = weak_public_key(c.public_key)
        return f"signer {format(c.serial_number, 'x')}: {detail}" if detail else ""

    return kept(cert, _KEY_DETAIL, compute) or None


def cipher_weak_findings(name_or_oid: str, key_bits: int | None,
                         where: str = "") -> list[Finding]:
    """weak-algorithm finding for the content cipher of an encrypted layer."""
    detail = weak_cipher(name_or_oid, key_bits)
    if detail is None:
        return []
    at = f" in part {where}" if where else ""
    return [Finding(Code.WEAK_ALGORITHM, f"{detail}{at}")]


def certificate_weak_findings(cert: asn1_x509.Certificate,
                              role: str = "certificate") -> list[Finding]:
    """weak-algorithm finding for a certificate's key (e.g. a recipient's)."""
    detail = weak_public_key(cert.public_key)
    if detail is None:
        return []
    return [Finding(Code.WEAK_ALGORITHM, f"{role} {format(cert.serial_number, 'x')}: {detail}")]
