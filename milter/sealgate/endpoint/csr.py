"""A PKCS #10 certification request (RFC 2986) signed by a key that stays on the card.

cryptography's CSR builder wants the private key object, which a card does not
give out; so the CertificationRequestInfo is built with asn1crypto and only its
digest is handed to the signer (one private-key operation). The request carries
the address as an rfc822Name subjectAltName in an extensionRequest attribute
(RFC 2985 §5.4.2); the CA decides the rest of the certificate.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

from asn1crypto import csr, keys, x509

from .errors import EndpointError
from .keys import HASHES

_SIG_ALGS = {("rsa", "sha256"): "sha256_rsa", ("ec", "sha256"): "sha256_ecdsa",
             ("rsa", "sha384"): "sha384_rsa", ("ec", "sha384"): "sha384_ecdsa"}


class DigestSigner(Protocol):
    """Anything with ``sign_digest(digest, hash_name) -> signature`` (a Card, a SoftwareKey)."""

    def sign_digest(self, digest: bytes, hash_name: str) -> bytes: ...


def build_csr(public_key: keys.PublicKeyInfo, email: str, common_name: str,
              signer: DigestSigner, *, hash_name: str = "sha256",
              organization: str | None = None) -> bytes:
    """DER CertificationRequest for ``email``; the signature is made by ``signer``."""
    if hash_name not in HASHES:
        raise EndpointError(f"hash {hash_name} is not supported for requests")
    subject: dict[str, str] = {}
    if organization:
        subject["organization_name"] = organization
    subject["common_name"] = common_name
    extensions = x509.Extensions([{
        "extn_id": "subject_alt_name", "critical": False,
        "extn_value": x509.GeneralNames([x509.GeneralName(name="rfc822_name", value=email)]),
    }])
    info = csr.CertificationRequestInfo({
        "version": "v1",
        "subject": x509.Name.build(subject),
        "subject_pk_info": public_key,
        "attributes": [{"type": "extension_request", "values": [extensions]}],
    })
    tbs = info.dump()
    digest = hashlib.new(hash_name, tbs).digest()
    signature = signer.sign_digest(digest, hash_name)
    algorithm = _SIG_ALGS.get((public_key.algorithm, hash_name))
    if algorithm is None:
        raise EndpointError(f"no signature algorithm for a {public_key.algorithm} key with {hash_name}")
    return csr.CertificationRequest({
        "certification_request_info": info,
        "signature_algorithm": {"algorithm": algorithm},
        "signature": signature,
    }).dump()
