"""Verify one CMS SignerInfo (RFC 5652 §5.4, §5.6) with cryptography's primitives.

cryptography has no CMS verify API, so the rules live here: find the signer
certificate from the ``sid``, check the signed attributes (contentType,
messageDigest), then check the signature value over the DER SET OF signed
attributes, or over the content digest when there are none. Nothing here
raises for bad data: every failure is a ``bad-signature`` finding whose detail
names the signer (serial, issuer) and what failed. Trust in the certificate is
not judged here (see :mod:`sealgate.trust`).
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import cast

from asn1crypto import cms, x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import load_der_public_key

from ..certs import encoded, issuer_der, issuer_text, kept, name_rfc4514_of, serial_hex, serial_of
from ..codes import Code
from ..directory.base import Directory
from ..model import Finding, SignerInput
from .algorithms import hash_algorithm
from .cmsfields import CONTENT_TYPE, MESSAGE_DIGEST, SignerFields, as_signer_fields, octets_value, oid_value

_DATA_OID = "1.2.840.113549.1.7.1"


class _Bad(Exception):
    """Internal: one reason the signature is bad (becomes the finding detail)."""


# ---------------------------------------------------------------- signer certificate


def find_signer_certificate(signer_info: SignerFields | cms.SignerInfo,
                            certificates: list[x509.Certificate],
                            directory: Directory | None) -> x509.Certificate | None:
    """The certificate the ``sid`` names: the CMS certificates first, then the directory.

    Issuers are compared as DER bytes (asn1crypto ``Name.__eq__`` runs LDAP
    stringprep and dominates a profile). The directory may raise
    :class:`sealgate.errors.DirectoryUnavailable`; that propagates. None: not
    found, or a sid that cannot be read — the engine reports it.
    """
    try:
        si = as_signer_fields(signer_info)
        if si.sid_issuer is not None:
            for cert in certificates:
                if serial_of(cert) == si.sid_serial and issuer_der(cert) == si.sid_issuer:
                    return cert
            if directory is not None and si.sid_serial is not None:
                return directory.find_by_issuer_serial(si.issuer, si.sid_serial)
            return None
        if si.sid_key_id is not None:
            ski = si.sid_key_id
            for cert in certificates:
                if _key_identifier_matches(cert, ski):
                    return cert
            if directory is not None:
                return directory.find_by_key_identifier(ski)
            return None
    except (ValueError, TypeError, KeyError):
        return None
    return None


def _key_identifier_matches(cert: x509.Certificate, ski: bytes) -> bool:
    try:
        if cert.key_identifier is not None:
            return bool(cert.key_identifier == ski)
        # No SKI extension: RFC 5280 §4.2.1.2 method (1), what OpenSSL computes.
        return bool(cert.public_key.sha1 == ski)
    except (ValueError, TypeError, KeyError):
        return False


def describe_sid(signer_info: SignerFields | cms.SignerInfo) -> str:
    """``serial 1f... issued by CN=...`` or ``key identifier ab12...`` from the sid alone."""
    try:
        si = as_signer_fields(signer_info)
        if si.sid_issuer is not None:
            return f"serial {format(si.sid_serial, 'x')} issued by {name_rfc4514_of(si.sid_issuer)}"
        return f"key identifier {(si.sid_key_id or b'').hex()}"
    except (ValueError, TypeError, KeyError):
        return "unreadable signer identifier"


# ---------------------------------------------------------------- signing time


def signing_time(signer_info: SignerFields | cms.SignerInfo) -> datetime | None:
    """The signingTime signed attribute (RFC 5652 §11.3), timezone-aware, or None."""
    try:
        return as_signer_fields(signer_info).signing_time
    except (ValueError, TypeError, KeyError, IndexError):
        return None


# ---------------------------------------------------------------- signature


def verify_signature(signer: SignerInput, cert: x509.Certificate) -> Finding | None:
    """None when the signature of ``signer`` verifies with ``cert``'s key; else bad-signature."""
    try:
        _verify(signer, cert)
    except _Bad as bad:
        who = f"serial {serial_hex(cert)} issued by {issuer_text(cert)}"
        return Finding(Code.BAD_SIGNATURE, f"signer {who}: {bad}")
    return None


def _verify(signer: SignerInput, cert: x509.Certificate) -> None:
    try:
        si = as_signer_fields(signer.signer_info)
    except (ValueError, TypeError, KeyError) as exc:
        raise _Bad(f"SignerInfo cannot be read ({exc})") from None
    sig_name = si.signature_name
    signature = si.signature

    hash_alg = _hash_algorithm(si.digest_oid)
    if hash_alg is None or not signer.content_digests:
        raise _Bad(f"unknown digest algorithm {si.digest_name}")

    if si.signed_attrs is not None:
        _check_signed_attributes(signer, si)
        # RFC 5652 §5.4: the signature covers the DER SET OF; take the bytes
        # as received and swap the [0] IMPLICIT tag for SET (0x31).
        signed = b"\x31" + si.signed_attrs[1:]
        _check_value(sig_name, si, hash_alg, cert, signature, signed, prehashed=False)
        return

    # RFC 5652 §5.3: signedAttrs MUST be present when eContentType is not id-data.
    if _content_type_oid(signer.econtent_type) != _DATA_OID:
        raise _Bad(f"no signed attributes for content type {signer.econtent_type}")
    last = _Bad("no content digest to check")
    for candidate in signer.content_digests:
        try:
            _check_value(sig_name, si, hash_alg, cert, signature, candidate, prehashed=True)
            return
        except _Bad as bad:
            last = bad
    raise last


@functools.lru_cache(maxsize=64)
def _hash_algorithm(digest_oid: str) -> hashes.HashAlgorithm | None:
    # The same few digest OIDs in every message; cryptography's hash objects are immutable.
    return hash_algorithm(digest_oid)


@functools.lru_cache(maxsize=256)
def _content_type_oid(name_or_oid: str) -> str:
    try:
        return str(cms.ContentType(name_or_oid).dotted)
    except (ValueError, TypeError):
        return name_or_oid


def _check_signed_attributes(signer: SignerInput, si: SignerFields) -> None:
    """RFC 5652 §5.3/§11: exactly one contentType and one messageDigest, single-valued."""
    content_types: list[str] = []
    digests: list[bytes] = []
    try:
        for attr in si.attributes:
            if attr.type == CONTENT_TYPE:
                if len(attr.values) != 1:
                    raise _Bad("contentType attribute must have exactly one value")
                content_types.append(oid_value(attr.values[0]))
            elif attr.type == MESSAGE_DIGEST:
                if len(attr.values) != 1:
                    raise _Bad("messageDigest attribute must have exactly one value")
                digests.append(octets_value(attr.values[0]))
    except _Bad:
        raise
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise _Bad(f"signed attributes cannot be parsed ({exc})") from None
    if len(content_types) != 1:
        raise _Bad(f"signed attributes hold {len(content_types)} contentType attributes, not 1")
    if len(digests) != 1:
        raise _Bad(f"signed attributes hold {len(digests)} messageDigest attributes, not 1")
    expected = _content_type_oid(signer.econtent_type)
    if content_types[0] != expected:
        raise _Bad(f"contentType attribute {content_types[0]} does not match "
                   f"eContentType {expected}")
    if digests[0] not in signer.content_digests:
        raise _Bad("messageDigest does not match the content (content altered)")


def _check_value(sig_name: str, si: SignerFields, hash_alg: hashes.HashAlgorithm,
                 cert: x509.Certificate, signature: bytes, data: bytes, *,
                 prehashed: bool) -> None:
    try:
        public_key = _public_key_of(cert)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise _Bad(f"certificate public key cannot be loaded ({exc})") from None
    algorithm: hashes.HashAlgorithm | Prehashed = Prehashed(hash_alg) if prehashed else hash_alg
    kind = _key_kind(public_key)
    try:
        if sig_name == "rsassa_pss":
            if kind != "rsa":
                raise _Bad("RSA-PSS signature but the certificate key is not RSA")
            pss, pss_hash = _pss_padding(si)
            if prehashed:
                if pss_hash.name != hash_alg.name:
                    raise _Bad("RSA-PSS hash differs from the digest algorithm")
                algorithm = Prehashed(pss_hash)
            else:
                algorithm = pss_hash
            cast(rsa.RSAPublicKey, public_key).verify(signature, data, pss, algorithm)
        elif sig_name.endswith("_rsa") or sig_name == "rsassa_pkcs1v15":
            # OpenSSL writes plain rsaEncryption: the hash is the digestAlgorithm.
            if kind != "rsa":
                raise _Bad(f"{sig_name} signature but the certificate key is not RSA")
            cast(rsa.RSAPublicKey, public_key).verify(signature, data, padding.PKCS1v15(),
                                                      algorithm)
        elif sig_name.endswith("_ecdsa") or sig_name == "ecdsa":
            if kind != "ec":
                raise _Bad(f"{sig_name} signature but the certificate key is not EC")
            cast(ec.EllipticCurvePublicKey, public_key).verify(signature, data, ec.ECDSA(algorithm))
        elif sig_name in ("ed25519", "ed448"):
            # RFC 8419: pure EdDSA over the signed attributes, which are mandatory.
            if prehashed:
                raise _Bad(f"{sig_name} signature without signed attributes")
            if kind != sig_name:
                raise _Bad(f"{sig_name} signature but the certificate key does not match")
            cast(ed25519.Ed25519PublicKey | ed448.Ed448PublicKey, public_key).verify(signature, data)
        else:
            raise _Bad(f"unsupported signature algorithm {sig_name}")
    except InvalidSignature:
        raise _Bad(f"{_label(sig_name)} signature value does not verify with the "
                   f"certificate key") from None
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise _Bad(f"{_label(sig_name)} signature cannot be checked ({exc})") from None


_PUBLIC_KEY = "_sealgate_public_key"


# A key's kind by its class. isinstance against cryptography's key classes (ABCs)
# runs ABCMeta.__instancecheck__, Python code, on every message; the classes are few.
_KEY_KINDS: dict[type, str] = {}


def _key_kind(key: PublicKeyTypes) -> str:
    """"rsa", "ec", "ed25519", "ed448" or "other"."""
    cls = type(key)
    kind = _KEY_KINDS.get(cls)
    if kind is None:
        kind = ("rsa" if isinstance(key, rsa.RSAPublicKey) else
                "ec" if isinstance(key, ec.EllipticCurvePublicKey) else
                "ed25519" if isinstance(key, ed25519.Ed25519PublicKey) else
                "ed448" if isinstance(key, ed448.Ed448PublicKey) else "other")
        _KEY_KINDS[cls] = kind
    return kind


def _public_key_of(cert: x509.Certificate) -> PublicKeyTypes:
    # The same signers come back all day (one shared parsed certificate each,
    # sealgate.certs.shared_certificate); cryptography's key objects are immutable.
    return kept(cert, _PUBLIC_KEY, lambda c: load_der_public_key(encoded(c.public_key)))


def _label(sig_name: str) -> str:
    if sig_name == "rsassa_pss":
        return "RSA-PSS"
    if sig_name.endswith("_rsa") or sig_name == "rsassa_pkcs1v15":
        return "RSA PKCS#1 v1.5"
    if sig_name.endswith("ecdsa"):
        return "ECDSA"
    return sig_name


def _pss_padding(si: SignerFields) -> tuple[padding.PSS, hashes.HashAlgorithm]:
    """RFC 4055 §3.1: hash, MGF1 hash and salt length come from the parameters."""
    try:
        params = si.signature_algorithm_asn1()["parameters"]
        hash_name = params["hash_algorithm"]["algorithm"].dotted
        mgf = params["mask_gen_algorithm"]
        if mgf["algorithm"].native != "mgf1":
            raise _Bad(f"RSA-PSS mask generation {mgf['algorithm'].native} is not MGF1")
        mgf_hash_name = mgf["parameters"]["algorithm"].dotted
        salt_length = int(params["salt_length"].native)
        trailer = params["trailer_field"].native
    except _Bad:
        raise
    except (ValueError, TypeError, KeyError) as exc:
        raise _Bad(f"RSA-PSS parameters cannot be read ({exc})") from None
    if trailer not in ("trailer_field_bc", 1):
        raise _Bad(f"RSA-PSS trailer field {trailer} is not supported")
    pss_hash = hash_algorithm(hash_name)
    mgf_hash = hash_algorithm(mgf_hash_name)
    if pss_hash is None or mgf_hash is None:
        raise _Bad("RSA-PSS parameters name an unknown hash")
    return padding.PSS(mgf=padding.MGF1(mgf_hash), salt_length=salt_length), pss_hash
