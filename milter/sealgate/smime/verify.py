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
from typing import Any

from asn1crypto import cms, x509
from asn1crypto.core import Void
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import load_der_public_key

from ..certs import encoded, name_rfc4514
from ..codes import Code
from ..directory.base import Directory
from ..model import Finding, SignerInput
from .algorithms import hash_algorithm

_DATA_OID = "1.2.840.113549.1.7.1"


class _Bad(Exception):
    """Internal: one reason the signature is bad (becomes the finding detail)."""


# ---------------------------------------------------------------- signer certificate


def _sid_parts(signer_info: cms.SignerInfo) -> tuple[str, Any]:
    sid = signer_info["sid"]
    return sid.name, sid.chosen


def find_signer_certificate(signer_info: cms.SignerInfo,
                            certificates: list[x509.Certificate],
                            directory: Directory | None) -> x509.Certificate | None:
    """The certificate the ``sid`` names: the CMS certificates first, then the directory.

    Issuers are compared as DER bytes (asn1crypto ``Name.__eq__`` runs LDAP
    stringprep and dominates a profile). The directory may raise
    :class:`sealgate.errors.DirectoryUnavailable`; that propagates. None: not
    found, or a sid that cannot be read — the engine reports it.
    """
    try:
        kind, value = _sid_parts(signer_info)
        if kind == "issuer_and_serial_number":
            issuer_der = encoded(value["issuer"])
            serial = value["serial_number"].native
            for cert in certificates:
                if cert.serial_number == serial and encoded(cert.issuer) == issuer_der:
                    return cert
            if directory is not None:
                return directory.find_by_issuer_serial(value["issuer"], serial)
            return None
        if kind == "subject_key_identifier":
            ski = bytes(value.native)
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


def describe_sid(signer_info: cms.SignerInfo) -> str:
    """``serial 1f... issued by CN=...`` or ``key identifier ab12...`` from the sid alone."""
    try:
        kind, value = _sid_parts(signer_info)
        if kind == "issuer_and_serial_number":
            return (f"serial {format(value['serial_number'].native, 'x')} "
                    f"issued by {name_rfc4514(value['issuer'])}")
        return f"key identifier {bytes(value.native).hex()}"
    except (ValueError, TypeError, KeyError):
        return "unreadable signer identifier"


# ---------------------------------------------------------------- signing time


def signing_time(signer_info: cms.SignerInfo) -> datetime | None:
    """The signingTime signed attribute (RFC 5652 §11.3), timezone-aware, or None."""
    try:
        attrs = signer_info["signed_attrs"]
        if isinstance(attrs, Void):
            return None
        for attr in attrs:
            if attr["type"].native == "signing_time":
                value = attr["values"][0].native
                return value if isinstance(value, datetime) else None
    except (ValueError, TypeError, KeyError, IndexError):
        return None
    return None


# ---------------------------------------------------------------- signature


def verify_signature(signer: SignerInput, cert: x509.Certificate) -> Finding | None:
    """None when the signature of ``signer`` verifies with ``cert``'s key; else bad-signature."""
    try:
        _verify(signer, cert)
    except _Bad as bad:
        who = f"serial {format(cert.serial_number, 'x')} issued by {name_rfc4514(cert.issuer)}"
        return Finding(Code.BAD_SIGNATURE, f"signer {who}: {bad}")
    return None


def _verify(signer: SignerInput, cert: x509.Certificate) -> None:
    si = signer.signer_info
    try:
        digest_alg = si["digest_algorithm"]["algorithm"]
        digest_name = digest_alg.native
        sig_alg = si["signature_algorithm"]
        sig_name = sig_alg["algorithm"].native
        signature = bytes(si["signature"].native)
        attrs = si["signed_attrs"]
        has_attrs = not isinstance(attrs, Void)
    except (ValueError, TypeError, KeyError) as exc:
        raise _Bad(f"SignerInfo cannot be read ({exc})") from None

    hash_alg = hash_algorithm(digest_alg.dotted)
    if hash_alg is None or not signer.content_digests:
        raise _Bad(f"unknown digest algorithm {digest_name}")

    if has_attrs:
        _check_signed_attributes(signer, attrs)
        try:
            # RFC 5652 §5.4: the signature covers the DER SET OF; take the bytes
            # as received and swap the [0] IMPLICIT tag for SET (0x31).
            received = encoded(attrs)
        except (ValueError, TypeError) as exc:
            raise _Bad(f"signed attributes cannot be encoded ({exc})") from None
        signed = b"\x31" + received[1:]
        _check_value(sig_name, sig_alg, hash_alg, cert, signature, signed, prehashed=False)
        return

    # RFC 5652 §5.3: signedAttrs MUST be present when eContentType is not id-data.
    if _content_type_oid(signer.econtent_type) != _DATA_OID:
        raise _Bad(f"no signed attributes for content type {signer.econtent_type}")
    last = _Bad("no content digest to check")
    for candidate in signer.content_digests:
        try:
            _check_value(sig_name, sig_alg, hash_alg, cert, signature, candidate, prehashed=True)
            return
        except _Bad as bad:
            last = bad
    raise last


def _content_type_oid(name_or_oid: str) -> str:
    try:
        return str(cms.ContentType(name_or_oid).dotted)
    except (ValueError, TypeError):
        return name_or_oid


def _check_signed_attributes(signer: SignerInput, attrs: cms.CMSAttributes) -> None:
    """RFC 5652 §5.3/§11: exactly one contentType and one messageDigest, single-valued."""
    content_types: list[str] = []
    digests: list[bytes] = []
    try:
        for attr in attrs:
            attr_type = attr["type"].dotted
            if attr_type == "1.2.840.113549.1.9.3":  # contentType
                values = attr["values"]
                if len(values) != 1:
                    raise _Bad("contentType attribute must have exactly one value")
                content_types.append(values[0].dotted)
            elif attr_type == "1.2.840.113549.1.9.4":  # messageDigest
                values = attr["values"]
                if len(values) != 1:
                    raise _Bad("messageDigest attribute must have exactly one value")
                digests.append(bytes(values[0].native))
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


def _check_value(sig_name: str, sig_alg: object, hash_alg: hashes.HashAlgorithm,
                 cert: x509.Certificate, signature: bytes, data: bytes, *,
                 prehashed: bool) -> None:
    try:
        public_key = _public_key(encoded(cert.public_key))
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise _Bad(f"certificate public key cannot be loaded ({exc})") from None
    algorithm: hashes.HashAlgorithm | Prehashed = Prehashed(hash_alg) if prehashed else hash_alg
    try:
        if sig_name == "rsassa_pss":
            if not isinstance(public_key, rsa.RSAPublicKey):
                raise _Bad("RSA-PSS signature but the certificate key is not RSA")
            pss, pss_hash = _pss_padding(sig_alg)
            if prehashed:
                if pss_hash.name != hash_alg.name:
                    raise _Bad("RSA-PSS hash differs from the digest algorithm")
                algorithm = Prehashed(pss_hash)
            else:
                algorithm = pss_hash
            public_key.verify(signature, data, pss, algorithm)
        elif sig_name.endswith("_rsa") or sig_name == "rsassa_pkcs1v15":
            # OpenSSL writes plain rsaEncryption: the hash is the digestAlgorithm.
            if not isinstance(public_key, rsa.RSAPublicKey):
                raise _Bad(f"{sig_name} signature but the certificate key is not RSA")
            public_key.verify(signature, data, padding.PKCS1v15(), algorithm)
        elif sig_name.endswith("_ecdsa") or sig_name == "ecdsa":
            if not isinstance(public_key, ec.EllipticCurvePublicKey):
                raise _Bad(f"{sig_name} signature but the certificate key is not EC")
            public_key.verify(signature, data, ec.ECDSA(algorithm))
        elif sig_name in ("ed25519", "ed448"):
            # RFC 8419: pure EdDSA over the signed attributes, which are mandatory.
            if prehashed:
                raise _Bad(f"{sig_name} signature without signed attributes")
            if not isinstance(public_key, (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey)):
                raise _Bad(f"{sig_name} signature but the certificate key does not match")
            public_key.verify(signature, data)
        else:
            raise _Bad(f"unsupported signature algorithm {sig_name}")
    except InvalidSignature:
        raise _Bad(f"{_label(sig_name)} signature value does not verify with the "
                   f"certificate key") from None
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise _Bad(f"{_label(sig_name)} signature cannot be checked ({exc})") from None


@functools.lru_cache(maxsize=1024)
def _public_key(der: bytes) -> PublicKeyTypes:
    # The same signers come back all day; cryptography's key objects are immutable.
    return load_der_public_key(der)


def _label(sig_name: str) -> str:
    if sig_name == "rsassa_pss":
        return "RSA-PSS"
    if sig_name.endswith("_rsa") or sig_name == "rsassa_pkcs1v15":
        return "RSA PKCS#1 v1.5"
    if sig_name.endswith("ecdsa"):
        return "ECDSA"
    return sig_name


def _pss_padding(sig_alg: object) -> tuple[padding.PSS, hashes.HashAlgorithm]:
    """RFC 4055 §3.1: hash, MGF1 hash and salt length come from the parameters."""
    try:
        params = sig_alg["parameters"]  # type: ignore[index]
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
