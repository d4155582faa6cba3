"""Build and open CMS with a key that may live on a card (RFC 5652, 5083, 5084, 5753).

cryptography 50 can make PKCS #7 only with key objects it holds, and cannot
decrypt with a token key; so the structures are built with asn1crypto and the
primitives come from cryptography, while every private-key operation goes to a
:class:`sealgate.endpoint.keys.PrivateKeyOps` (a card or a software key).

Public API (also used by the quarantine, to let a reviewer's card read stored
mail):

- :func:`signed_data` -- SignedData over content, signed by ``key`` (one
  private-key operation): contentType, signingTime, messageDigest and
  smimeCapabilities signed attributes; RSA PKCS#1 v1.5 (``rsaEncryption``, as
  OpenSSL writes) or ECDSA.
- :func:`enveloped_data` -- EnvelopedData with AES-256-CBC, or AuthEnvelopedData
  with AES-256-GCM (RFC 5083/5084), to RSA recipients by key transport
  (PKCS#1 v1.5, or RSA-OAEP with the RFC 3560 default SHA-1 parameters -- the
  only OAEP that SoftHSM 2.6.1 decrypts) and to EC recipients by ephemeral-static
  ECDH (RFC 5753 §3.1.1, dhSinglePass-stdDH-sha256kdf-scheme, AES-256 key wrap).
  No private key is needed.
- :func:`decrypt_enveloped` ``(der, key) -> bytes`` -- open EnvelopedData or
  AuthEnvelopedData (AES-CBC/GCM, any AES key size) with ``key``: one
  private-key operation. ``key`` is anything with a ``certificate`` (asn1crypto)
  and ``decrypt_key_transport(encrypted_key, oaep)`` / ``ecdh(peer_point)``:
  :class:`sealgate.endpoint.card.CardKey` or
  :class:`sealgate.endpoint.keys.SoftwareKey` (``SoftwareKey.from_files``).
  Reads what ``openssl cms -encrypt``, cryptography's ``PKCS7EnvelopeBuilder``
  and gpgsm write.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import struct
from collections.abc import Sequence

from asn1crypto import algos, cms, core, keys
from asn1crypto import x509 as asn1x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asympad
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.x963kdf import X963KDF
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

from .errors import EndpointError
from .keys import PrivateKeyOps, key_kind

CIPHERS = ("aes256-gcm", "aes256-cbc")
KEY_TRANSPORTS = ("pkcs1v15", "oaep")

# RFC 5753 §7.1.4 / SEC 1: ephemeral-static ECDH with an X9.63 KDF
_KDF_SCHEMES: dict[str, type[hashes.HashAlgorithm]] = {
    "1.3.133.16.840.63.0.2": hashes.SHA1,   # dhSinglePass-stdDH-sha1kdf-scheme
    "1.3.132.1.11.0": hashes.SHA224,
    "1.3.132.1.11.1": hashes.SHA256,        # what we write
    "1.3.132.1.11.2": hashes.SHA384,
    "1.3.132.1.11.3": hashes.SHA512,
}
_KDF_SHA256 = "1.3.132.1.11.1"
_WRAP_BITS = {"aes128_wrap": 128, "aes192_wrap": 192, "aes256_wrap": 256}
# id-aes256-GCM, id-aes256-CBC, id-aes128-CBC
_CAPABILITIES = ("2.16.840.1.101.3.4.1.46", "2.16.840.1.101.3.4.1.42", "2.16.840.1.101.3.4.1.2")


class EccCmsSharedInfo(core.Sequence):
    """ECC-CMS-SharedInfo (RFC 5753 §7.2): the KDF's SharedInfo."""

    _fields = [
        ("key_info", algos.EncryptionAlgorithm),
        ("entity_u_info", core.OctetString, {"explicit": 0, "optional": True}),
        ("supp_pub_info", core.OctetString, {"explicit": 2}),
    ]


# ---------------------------------------------------------------- signing


def signed_data(content: bytes, key: PrivateKeyOps, *, detached: bool = True,
                hash_name: str = "sha256", extra_certs: Sequence[asn1x509.Certificate] = (),
                signing_time: dt.datetime | None = None) -> bytes:
    """DER ContentInfo(SignedData) over ``content`` (id-data); one signature by ``key``."""
    digest = hashlib.new(hash_name, content).digest()
    when = (signing_time or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    signed_attrs = cms.CMSAttributes([
        {"type": "content_type", "values": ["data"]},
        {"type": "signing_time", "values": [cms.Time({"utc_time": when})]},
        {"type": "message_digest", "values": [digest]},
        # RFC 8551 §2.5.2: what we can decrypt, strongest first, so replies use it
        {"type": "smime_capabilities", "values": [[{"capability_id": oid} for oid in _CAPABILITIES]]},
    ])
    # RFC 5652 §5.4: the signature is over the DER encoding of the SET OF attributes.
    to_sign = signed_attrs.dump()
    signature = key.sign_digest(hashlib.new(hash_name, to_sign).digest(), hash_name)
    cert = key.certificate
    kind = key_kind(cert)
    sig_alg = {"algorithm": "rsassa_pkcs1v15"} if kind == "rsa" else {"algorithm": f"{hash_name}_ecdsa"}
    signer_info = cms.SignerInfo({
        "version": "v1",
        "sid": cms.SignerIdentifier({"issuer_and_serial_number": cms.IssuerAndSerialNumber({
            "issuer": cert.issuer, "serial_number": cert.serial_number})}),
        "digest_algorithm": {"algorithm": hash_name},
        "signed_attrs": signed_attrs,
        "signature_algorithm": sig_alg,
        "signature": signature,
    })
    encap: dict[str, object] = {"content_type": "data"}
    if not detached:
        encap["content"] = content
    sd = cms.SignedData({
        "version": "v1",
        "digest_algorithms": [{"algorithm": hash_name}],
        "encap_content_info": encap,
        "certificates": [cert, *extra_certs],
        "signer_infos": [signer_info],
    })
    return bytes(cms.ContentInfo({"content_type": "signed_data", "content": sd}).dump())


# ---------------------------------------------------------------- encrypting


def _issuer_serial(cert: asn1x509.Certificate) -> cms.IssuerAndSerialNumber:
    return cms.IssuerAndSerialNumber({"issuer": cert.issuer, "serial_number": cert.serial_number})


def _ktri(cert: asn1x509.Certificate, cek: bytes, key_transport: str) -> cms.RecipientInfo:
    public = serialization.load_der_public_key(cert.public_key.dump())
    assert isinstance(public, rsa.RSAPublicKey)  # noqa: S101 - key_kind() said rsa
    if key_transport == "oaep":
        # RFC 3560 §3 default parameters: SHA-1, MGF1-SHA-1 (what SoftHSM and most cards do)
        encrypted = public.encrypt(cek, asympad.OAEP(mgf=asympad.MGF1(hashes.SHA1()),  # noqa: S303
                                                     algorithm=hashes.SHA1(), label=None))  # noqa: S303
        params = algos.RSAESOAEPParams({
            "hash_algorithm": {"algorithm": "sha1"},
            "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha1"}},
        })  # all defaults: DER encodes an empty SEQUENCE
        alg: dict[str, object] = {"algorithm": "rsaes_oaep", "parameters": params}
    else:
        encrypted = public.encrypt(cek, asympad.PKCS1v15())
        alg = {"algorithm": "rsaes_pkcs1v15"}
    return cms.RecipientInfo({"ktri": cms.KeyTransRecipientInfo({
        "version": "v0",
        "rid": cms.RecipientIdentifier({"issuer_and_serial_number": _issuer_serial(cert)}),
        "key_encryption_algorithm": alg,
        "encrypted_key": encrypted,
    })})


def _shared_info(wrap_alg_der: bytes, key_bits: int, ukm: bytes | None) -> bytes:
    info: dict[str, object] = {"key_info": algos.EncryptionAlgorithm.load(wrap_alg_der),
                               "supp_pub_info": struct.pack(">I", key_bits)}
    if ukm is not None:
        info["entity_u_info"] = ukm
    return bytes(EccCmsSharedInfo(info).dump())


def _kek(z: bytes, kdf_oid: str, wrap_alg_der: bytes, key_bits: int, ukm: bytes | None) -> bytes:
    hash_cls = _KDF_SCHEMES.get(kdf_oid)
    if hash_cls is None:
        raise EndpointError(f"key agreement scheme {kdf_oid} is not supported")
    kdf = X963KDF(algorithm=hash_cls(), length=key_bits // 8,
                  sharedinfo=_shared_info(wrap_alg_der, key_bits, ukm))
    return kdf.derive(z)


def _kari(cert: asn1x509.Certificate, cek: bytes) -> cms.RecipientInfo:
    public = serialization.load_der_public_key(cert.public_key.dump())
    assert isinstance(public, ec.EllipticCurvePublicKey)  # noqa: S101 - key_kind() said ec
    ephemeral = ec.generate_private_key(public.curve)
    z = ephemeral.exchange(ec.ECDH(), public)
    wrap_alg = algos.EncryptionAlgorithm({"algorithm": "aes256_wrap"}).dump()
    kek = _kek(z, _KDF_SHA256, wrap_alg, 256, None)
    eph_info = keys.PublicKeyInfo.load(ephemeral.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))
    return cms.RecipientInfo({"kari": cms.KeyAgreeRecipientInfo({
        "version": "v3",
        "originator": cms.OriginatorIdentifierOrKey({"originator_key": eph_info}),
        "key_encryption_algorithm": {"algorithm": _KDF_SHA256, "parameters": core.Any.load(wrap_alg)},
        "recipient_encrypted_keys": [{
            "rid": cms.KeyAgreementRecipientIdentifier({"issuer_and_serial_number": _issuer_serial(cert)}),
            "encrypted_key": aes_key_wrap(kek, cek),
        }],
    })})


def enveloped_data(content: bytes, recipients: Sequence[asn1x509.Certificate], *,
                   cipher: str = "aes256-gcm", key_transport: str = "pkcs1v15") -> bytes:
    """DER ContentInfo: EnvelopedData (AES-256-CBC) or AuthEnvelopedData (AES-256-GCM)."""
    if cipher not in CIPHERS:
        raise EndpointError(f"cipher {cipher!r} is not one of {', '.join(CIPHERS)}")
    if key_transport not in KEY_TRANSPORTS:
        raise EndpointError(f"key transport {key_transport!r} is not one of {', '.join(KEY_TRANSPORTS)}")
    if not recipients:
        raise EndpointError("no recipient certificate to encrypt to")
    cek = os.urandom(32)
    infos = []
    for cert in recipients:
        infos.append(_ktri(cert, cek, key_transport) if key_kind(cert) == "rsa" else _kari(cert, cek))
    # RFC 5652 §6.1: version 2 when any RecipientInfo is not version 0 (kari is v3)
    version = "v2" if any(ri.name != "ktri" for ri in infos) else "v0"
    if cipher == "aes256-gcm":
        nonce = os.urandom(12)  # RFC 5084 §3.2: 12-octet nonce recommended
        sealed = AESGCM(cek).encrypt(nonce, content, None)  # no authAttrs: empty AAD (RFC 5083 §2.2)
        params = algos.CcmParams({"aes_nonce": nonce, "aes_icvlen": 16})  # GCMParameters, same shape
        auth = cms.AuthEnvelopedData({
            "version": "v0",
            "recipient_infos": infos,
            "auth_encrypted_content_info": {
                "content_type": "data",
                "content_encryption_algorithm": {"algorithm": "aes256_gcm", "parameters": params},
                "encrypted_content": sealed[:-16],
            },
            "mac": sealed[-16:],
        })
        return bytes(cms.ContentInfo({"content_type": "authenticated_enveloped_data",
                                      "content": auth}).dump())
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(content) + padder.finalize()
    encryptor = Cipher(algorithms.AES(cek), modes.CBC(iv)).encryptor()
    env = cms.EnvelopedData({
        "version": version,
        "recipient_infos": infos,
        "encrypted_content_info": {
            "content_type": "data",
            "content_encryption_algorithm": {"algorithm": "aes256_cbc", "parameters": iv},
            "encrypted_content": encryptor.update(padded) + encryptor.finalize(),
        },
    })
    return bytes(cms.ContentInfo({"content_type": "enveloped_data", "content": env}).dump())


# ---------------------------------------------------------------- decrypting


def _matches(rid: object, cert: asn1x509.Certificate) -> bool:
    chosen = rid.chosen  # type: ignore[attr-defined]
    if rid.name == "issuer_and_serial_number":  # type: ignore[attr-defined]
        return bool(chosen["serial_number"].native == cert.serial_number
                    and chosen["issuer"].dump() == cert.issuer.dump())
    ski = bytes(chosen["subject_key_identifier"].native if rid.name == "r_key_id"  # type: ignore[attr-defined]
                else chosen.native)
    own = cert.key_identifier if cert.key_identifier is not None else cert.public_key.sha1
    return bytes(own) == ski


def _content_key(infos: cms.RecipientInfos, key: PrivateKeyOps) -> bytes:
    cert = key.certificate
    for ri in infos:
        if ri.name == "ktri":
            ktri = ri.chosen
            if not _matches(ktri["rid"], cert):
                continue
            alg = ktri["key_encryption_algorithm"]
            name = alg["algorithm"].native
            if name == "rsaes_oaep":
                params = alg["parameters"]
                if (params["hash_algorithm"]["algorithm"].native != "sha1"
                        or params["mask_gen_algorithm"]["parameters"]["algorithm"].native != "sha1"):
                    raise EndpointError("RSA-OAEP with a hash other than SHA-1 is not supported "
                                        "on cards (SoftHSM and most cards do OAEP with SHA-1 only)")
                return key.decrypt_key_transport(bytes(ktri["encrypted_key"].native), oaep=True)
            if name == "rsaes_pkcs1v15":
                return key.decrypt_key_transport(bytes(ktri["encrypted_key"].native), oaep=False)
            raise EndpointError(f"key transport algorithm {name} is not supported")
        if ri.name == "kari":
            kari = ri.chosen
            for rek in kari["recipient_encrypted_keys"]:
                if _matches(rek["rid"], cert):
                    return _kari_content_key(kari, bytes(rek["encrypted_key"].native), key)
    raise EndpointError(f"the message is not encrypted to this certificate (serial "
                        f"{cert.serial_number:x}, {cert.subject.human_friendly})")


def _kari_content_key(kari: cms.KeyAgreeRecipientInfo, wrapped: bytes, key: PrivateKeyOps) -> bytes:
    originator = kari["originator"]
    if originator.name != "originator_key":
        raise EndpointError("only ephemeral-static ECDH (originatorKey) is supported (RFC 5753 §3.1)")
    point = bytes(originator.chosen["public_key"].native)
    alg = kari["key_encryption_algorithm"]
    wrap_der = alg["parameters"].dump()
    wrap_name = algos.EncryptionAlgorithm.load(wrap_der)["algorithm"].native
    bits = _WRAP_BITS.get(wrap_name)
    if bits is None:
        raise EndpointError(f"key wrap algorithm {wrap_name} is not supported")
    ukm_field = kari["ukm"]
    ukm = bytes(ukm_field.native) if ukm_field.native is not None else None
    z = key.ecdh(point)
    kek = _kek(z, alg["algorithm"].dotted, wrap_der, bits, ukm)
    try:
        return aes_key_unwrap(kek, wrapped)
    except InvalidUnwrap:
        raise EndpointError("the content key does not unwrap (wrong key or altered message)") from None


def decrypt_enveloped(der: bytes, key: PrivateKeyOps) -> bytes:
    """The content of an EnvelopedData or AuthEnvelopedData ContentInfo, decrypted with ``key``.

    One private-key operation (key transport or ECDH). Raises EndpointError
    naming what is wrong: not encrypted to this key, unsupported algorithm,
    altered ciphertext (GCM tag, CBC padding).
    """
    try:
        info = cms.ContentInfo.load(der)
        ctype = info["content_type"].native
        content = info["content"]
    except (ValueError, TypeError) as exc:
        raise EndpointError(f"not a CMS ContentInfo ({exc})") from None
    if ctype == "enveloped_data":
        eci = content["encrypted_content_info"]
    elif ctype == "authenticated_enveloped_data":
        eci = content["auth_encrypted_content_info"]
    else:
        raise EndpointError(f"CMS content is {ctype}, not enveloped-data")
    cek = _content_key(content["recipient_infos"], key)
    alg = eci["content_encryption_algorithm"]
    name = alg["algorithm"].native
    ciphertext = bytes(eci["encrypted_content"].native or b"")
    if ctype == "authenticated_enveloped_data":
        if not name.endswith("_gcm"):
            raise EndpointError(f"authEnveloped content algorithm {name} is not supported (AES-GCM only)")
        params = algos.CcmParams.load(alg["parameters"].dump())
        nonce = bytes(params["aes_nonce"].native)
        mac = bytes(content["mac"].native)
        aad = None
        if content["auth_attrs"].native is not None:
            # RFC 5083 §2.2: authAttrs are authenticated as their DER SET OF
            aad = b"\x31" + content["auth_attrs"].dump()[1:]
        try:
            return AESGCM(cek).decrypt(nonce, ciphertext + mac, aad)
        except (InvalidTag, ValueError):
            raise EndpointError("the encrypted content fails its integrity check (AES-GCM tag): "
                                "altered in transit or a wrong key") from None
    if not name.startswith("aes") or not name.endswith("_cbc"):
        raise EndpointError(f"content encryption algorithm {name} is not supported (AES-CBC or AES-GCM)")
    iv = bytes(alg["parameters"].native)
    try:
        decryptor = Cipher(algorithms.AES(cek), modes.CBC(iv)).decryptor()
        padded = decryptor.update(ciphertext) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise EndpointError("the encrypted content does not decrypt (bad padding: wrong key "
                            "or altered message)") from None
