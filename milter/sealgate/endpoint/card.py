"""The card: a thin adapter over python-pkcs11 (PKCS#11 v2.40).

Everything card-specific is here: finding a token by label (slot numbers move:
SoftHSM renumbers them on ``--init-token --free``), initialising it, making a
key pair ON the token (CKA_SENSITIVE true, CKA_EXTRACTABLE false: the private
key never leaves it), and the private-key operations of
:class:`sealgate.endpoint.keys.PrivateKeyOps` -- RSA PKCS#1 v1.5 or ECDSA
signatures over a digest, RSA key-transport decryption, ECDH.

Mechanisms are the plain ones every token has (CKM_RSA_PKCS, CKM_RSA_PKCS_OAEP
with SHA-1, CKM_ECDSA, CKM_ECDH1_DERIVE): the digest is computed on the host,
so the card sees 32-64 bytes, not the message. SoftHSM 2.6.1 does RSA-OAEP with
SHA-1 parameters only (SHA-256 gives CKR_ARGUMENTS_BAD); the OAEP we write and
read is therefore the RFC 3560 default, SHA-1/MGF1-SHA-1.

Every private-key operation is counted and timed in :class:`CardStats`
(``sealgate seal`` makes exactly two per message). PINs are passed in, never
logged; wrong and locked PINs become :class:`PinError` with one clear sentence.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pkcs11
from asn1crypto import algos, keys
from asn1crypto import x509 as asn1x509
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass, TokenFlag
from pkcs11 import exceptions as p11e
from pkcs11.util.ec import encode_ec_public_key, encode_ecdsa_signature, encode_named_curve_parameters
from pkcs11.util.rsa import encode_rsa_public_key

from .errors import CardError, EndpointError, PinError

DEFAULT_KEY_LABEL = "sealgate-smime"
P256_OID = "1.2.840.10045.3.1.7"
KEY_KINDS = ("rsa2048", "rsa3072", "ec256")

_DIGEST_INFO_ALGS = {"sha256": "sha256", "sha384": "sha384", "sha512": "sha512"}


@dataclass
class CardStats:
    """Private-key operations done on the card and the time they took."""

    operations: int = 0
    seconds: float = 0.0
    kinds: list[str] = field(default_factory=list)

    @contextmanager
    def operation(self, kind: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - start
            self.operations += 1
            self.kinds.append(kind)


def _lib(module: str) -> Any:
    if not os.path.exists(module):
        raise CardError(f"PKCS#11 module {module} does not exist (set [card] module or --module; "
                        "SoftHSM2: /usr/lib/softhsm/libsofthsm2.so, OpenSC: "
                        "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so)")
    try:
        return pkcs11.lib(module)
    except (RuntimeError, OSError, p11e.PKCS11Error) as exc:
        raise CardError(f"cannot load PKCS#11 module {module}: {exc}") from None


def find_token(module: str, label: str) -> Any:
    """The token with this label; CardError when there is none or more than one."""
    lib = _lib(module)
    try:
        return lib.get_token(token_label=label)
    except p11e.NoSuchToken:
        labels = ", ".join(repr(t.label) for t in lib.get_tokens()) or "none"
        raise CardError(f"no card with label {label!r} in {module} (present: {labels}); "
                        "is it inserted?") from None
    except p11e.MultipleTokensReturned:
        raise CardError(f"more than one card is labelled {label!r}; remove all but one") from None


def _pin_failure(exc: Exception, label: str, who: str = "PIN") -> CardError:
    if isinstance(exc, p11e.PinIncorrect):
        return PinError(f"wrong {who} for card {label!r}")
    if isinstance(exc, p11e.PinLocked):
        return PinError(f"the {who} of card {label!r} is locked after too many wrong tries; "
                        "ask the card issuer to unblock it (sealgate card unblock)")
    if isinstance(exc, (p11e.PinLenRange, p11e.PinInvalid)):
        return PinError(f"the {who} given for card {label!r} has an invalid length or characters")
    if isinstance(exc, p11e.UserPinNotInitialized):
        return PinError(f"card {label!r} has no user PIN yet; run sealgate card init")
    return CardError(f"card {label!r} refused the login: {type(exc).__name__}")


def _public_certificate(token: Any, key_label: str) -> dict[str, Any] | None:
    """The certificate stored next to the key (a public object: no login needed)."""
    if not token.flags & TokenFlag.TOKEN_INITIALIZED:
        return None
    try:
        with token.open() as session:
            found = list(session.get_objects({Attribute.CLASS: ObjectClass.CERTIFICATE,
                                              Attribute.LABEL: key_label}))
            if not found:
                return None
            cert = asn1x509.Certificate.load(bytes(found[0][Attribute.VALUE]))
    except p11e.PKCS11Error:
        return None
    from ..certs import certificate_addresses

    return {"addresses": list(certificate_addresses(cert)), "serial": format(cert.serial_number, "x"),
            "issuer": cert.issuer.human_friendly,
            "not_after": cert["tbs_certificate"]["validity"]["not_after"].native.isoformat()}


def token_status(module: str, label: str, key_label: str = DEFAULT_KEY_LABEL) -> dict[str, Any]:
    """What a user (or ``card status``) wants to know, without logging in."""
    token = find_token(module, label)
    flags = token.flags
    return {
        "certificate": _public_certificate(token, key_label),
        "label": token.label,
        "manufacturer": token.manufacturer_id,
        "model": token.model,
        "serial": token.serial.decode(errors="replace").strip() if isinstance(token.serial, bytes)
        else str(token.serial),
        "initialized": bool(flags & TokenFlag.TOKEN_INITIALIZED),
        "user_pin_initialized": bool(flags & TokenFlag.USER_PIN_INITIALIZED),
        "user_pin_count_low": bool(flags & TokenFlag.USER_PIN_COUNT_LOW),
        "user_pin_final_try": bool(flags & TokenFlag.USER_PIN_FINAL_TRY),
        "user_pin_locked": bool(flags & TokenFlag.USER_PIN_LOCKED),
    }


def list_tokens(module: str) -> list[dict[str, Any]]:
    lib = _lib(module)
    out = []
    for slot in lib.get_slots(token_present=True):
        token = slot.get_token()
        out.append({"slot": slot.slot_id, "label": token.label,
                    "initialized": bool(token.flags & TokenFlag.TOKEN_INITIALIZED)})
    return out


def init_token(module: str, label: str, so_pin: str, user_pin: str) -> None:
    """C_InitToken on the first slot whose token is not initialised, then C_InitPIN.

    python-pkcs11 does not expose C_InitToken, so it is called through ctypes on
    the same (already initialised) module. This ERASES the token.
    """
    lib = _lib(module)
    blank = [s for s in lib.get_slots(token_present=True)
             if not s.get_token().flags & TokenFlag.TOKEN_INITIALIZED]
    if not blank:
        raise CardError(f"no uninitialised card found in {module}; a used card must be erased "
                        "with its vendor tool first (OpenSC: pkcs15-init --erase-card)")
    slot_id = blank[0].slot_id
    so = ctypes.CDLL(module)
    c_init = so.C_InitToken
    c_init.argtypes = [ctypes.c_ulong, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    c_init.restype = ctypes.c_ulong
    so_bytes = so_pin.encode()
    rv = c_init(slot_id, so_bytes, len(so_bytes), label.encode()[:32].ljust(32, b" "))
    if rv != 0:
        raise CardError(f"C_InitToken on slot {slot_id} failed with CKR 0x{rv:x}")
    lib.reinitialize()
    token = find_token(module, label)
    try:
        with token.open(rw=True, so_pin=so_pin) as session:
            session.init_pin(user_pin)
    except p11e.PKCS11Error as exc:
        raise _pin_failure(exc, label, "security officer PIN") from None


def unblock(module: str, label: str, so_pin: str, new_user_pin: str) -> None:
    """Set a new user PIN with the security officer PIN (C_InitPIN), clearing a lock."""
    token = find_token(module, label)
    try:
        with token.open(rw=True, so_pin=so_pin) as session:
            session.init_pin(new_user_pin)
    except p11e.PKCS11Error as exc:
        raise _pin_failure(exc, label, "security officer PIN") from None


class Card:
    """A logged-in read-write session on one token. Use as a context manager."""

    def __init__(self, module: str, label: str, pin: str, key_label: str = DEFAULT_KEY_LABEL) -> None:
        self.module = module
        self.label = label
        self.key_label = key_label
        self.stats = CardStats()
        token = find_token(module, label)
        try:
            self.session = token.open(rw=True, user_pin=pin)
        except p11e.PKCS11Error as exc:
            raise _pin_failure(exc, label) from None

    def __enter__(self) -> Card:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    # ------------------------------------------------------------ objects

    def _objects(self, object_class: ObjectClass, label: str | None = None) -> list[Any]:
        return list(self.session.get_objects({Attribute.CLASS: object_class,
                                              Attribute.LABEL: label or self.key_label}))

    def private_key(self) -> Any:
        found = self._objects(ObjectClass.PRIVATE_KEY)
        if not found:
            raise CardError(f"card {self.label!r} holds no private key labelled {self.key_label!r}; "
                            "enrol it first (sealgate card enroll)")
        return found[0]

    def has_key(self) -> bool:
        return bool(self._objects(ObjectClass.PRIVATE_KEY))

    def destroy_key(self) -> None:
        """Remove the key pair and certificates labelled ``key_label`` (an enrolment that failed)."""
        for obj in self._objects(ObjectClass.CERTIFICATE, self.chain_label):
            obj.destroy()
        for object_class in (ObjectClass.CERTIFICATE, ObjectClass.PUBLIC_KEY, ObjectClass.PRIVATE_KEY):
            for obj in self._objects(object_class):
                obj.destroy()

    def generate_key(self, kind: str) -> keys.PublicKeyInfo:
        """A new key pair ON the card; returns its public key. The private key is
        CKA_SENSITIVE, not CKA_EXTRACTABLE, and never leaves the token."""
        if kind not in KEY_KINDS:
            raise EndpointError(f"key type {kind!r} is not one of {', '.join(KEY_KINDS)}")
        if self.has_key():
            raise CardError(f"card {self.label!r} already holds a key labelled {self.key_label!r}; "
                            "use a new card, or initialise this one again (erases it)")
        key_id = os.urandom(20)
        private = {Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
                   Attribute.EXTRACTABLE: False, Attribute.SIGN: True, Attribute.LABEL: self.key_label,
                   Attribute.ID: key_id}
        public = {Attribute.TOKEN: True, Attribute.PRIVATE: False, Attribute.VERIFY: True,
                  Attribute.LABEL: self.key_label, Attribute.ID: key_id}
        try:
            if kind.startswith("rsa"):
                private |= {Attribute.DECRYPT: True, Attribute.UNWRAP: True}
                public |= {Attribute.ENCRYPT: True, Attribute.WRAP: True}
                pub, _priv = self.session.generate_keypair(
                    KeyType.RSA, int(kind[3:]), store=True, label=self.key_label, id=key_id,
                    public_template=public, private_template=private)
                return _public_key_info(pub)
            private |= {Attribute.DERIVE: True}
            params = self.session.create_domain_parameters(
                KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(P256_OID)}, local=True)
            pub, _priv = params.generate_keypair(store=True, label=self.key_label, id=key_id,
                                                 public_template=public, private_template=private)
            return _public_key_info(pub)
        except p11e.PKCS11Error as exc:
            raise CardError(f"card {self.label!r} could not generate a {kind} key pair: "
                            f"{type(exc).__name__}") from None

    def public_key_info(self) -> keys.PublicKeyInfo:
        """The public half of the card's key pair (to match a certificate issued elsewhere)."""
        found = self._objects(ObjectClass.PUBLIC_KEY)
        if not found:
            raise CardError(f"card {self.label!r} holds no public key labelled {self.key_label!r}")
        return _public_key_info(found[0])

    def private_key_attributes(self) -> dict[str, bool]:
        key = self.private_key()
        return {"sensitive": bool(key[Attribute.SENSITIVE]),
                "extractable": bool(key[Attribute.EXTRACTABLE]),
                "always_sensitive": bool(key[Attribute.ALWAYS_SENSITIVE]),
                "never_extractable": bool(key[Attribute.NEVER_EXTRACTABLE])}

    def certificate_der(self) -> bytes | None:
        found = self._objects(ObjectClass.CERTIFICATE)
        return bytes(found[0][Attribute.VALUE]) if found else None

    @property
    def chain_label(self) -> str:
        return f"{self.key_label}-chain"

    def write_certificate(self, der: bytes, chain: Sequence[bytes] = ()) -> None:
        """Store the certificate next to the key (same CKA_ID and label), replacing an old one,
        and the issuing CAs below the trust anchor (``chain``) under ``<label>-chain``, so
        signatures can carry them (RFC 5652 §5.1 certificates)."""
        for old in self._objects(ObjectClass.CERTIFICATE) + self._objects(ObjectClass.CERTIFICATE,
                                                                           self.chain_label):
            old.destroy()
        key_id = self.private_key()[Attribute.ID]
        self._store_certificate(der, self.key_label, key_id)
        for ca_der in chain:
            self._store_certificate(ca_der, self.chain_label, b"")

    def _store_certificate(self, der: bytes, label: str, key_id: bytes) -> None:
        cert = asn1x509.Certificate.load(der)
        self.session.create_object({
            Attribute.CLASS: ObjectClass.CERTIFICATE,
            Attribute.CERTIFICATE_TYPE: pkcs11.CertificateType.X_509,
            Attribute.TOKEN: True, Attribute.PRIVATE: False,
            Attribute.LABEL: label, Attribute.ID: key_id,
            Attribute.SUBJECT: cert.subject.dump(), Attribute.ISSUER: cert.issuer.dump(),
            Attribute.SERIAL_NUMBER: cert["tbs_certificate"]["serial_number"].dump(),
            Attribute.VALUE: der,
        })

    def chain(self) -> list[asn1x509.Certificate]:
        return [asn1x509.Certificate.load(bytes(o[Attribute.VALUE]))
                for o in self._objects(ObjectClass.CERTIFICATE, self.chain_label)]

    def key(self) -> CardKey:
        der = self.certificate_der()
        if der is None:
            raise CardError(f"card {self.label!r} holds no certificate labelled {self.key_label!r}; "
                            "enrol it first (sealgate card enroll)")
        return CardKey(self, asn1x509.Certificate.load(der), self.chain())

    # ------------------------------------------------------------ private-key operations

    def sign_digest(self, digest: bytes, hash_name: str) -> bytes:
        key = self.private_key()
        try:
            with self.stats.operation("sign"):
                if key.key_type == KeyType.RSA:
                    info = algos.DigestInfo({"digest_algorithm": {"algorithm": _DIGEST_INFO_ALGS[hash_name]},
                                             "digest": digest}).dump()
                    return bytes(key.sign(info, mechanism=Mechanism.RSA_PKCS))
                raw = key.sign(digest, mechanism=Mechanism.ECDSA)
        except p11e.PKCS11Error as exc:
            raise CardError(f"card {self.label!r} refused to sign: {type(exc).__name__}") from None
        return bytes(encode_ecdsa_signature(raw))  # CMS wants DER (r, s) (RFC 5753 §7.2)

    def decrypt_key_transport(self, encrypted_key: bytes, oaep: bool) -> bytes:
        key = self.private_key()
        if key.key_type != KeyType.RSA:
            raise CardError(f"card {self.label!r} holds an EC key; key transport needs RSA")
        try:
            with self.stats.operation("decrypt"):
                if oaep:
                    return bytes(key.decrypt(encrypted_key, mechanism=Mechanism.RSA_PKCS_OAEP,
                                             mechanism_param=(Mechanism.SHA_1, pkcs11.MGF.SHA1, None)))
                return bytes(key.decrypt(encrypted_key, mechanism=Mechanism.RSA_PKCS))
        except p11e.PKCS11Error as exc:
            raise CardError(f"card {self.label!r} could not decrypt the content key "
                            f"({type(exc).__name__}): the message was not encrypted to this card") from None

    def ecdh(self, peer_point: bytes) -> bytes:
        key = self.private_key()
        if key.key_type != KeyType.EC:
            raise CardError(f"card {self.label!r} holds an RSA key; key agreement needs EC")
        try:
            with self.stats.operation("derive"):
                secret = key.derive_key(
                    KeyType.GENERIC_SECRET, 256,
                    mechanism_param=(pkcs11.KDF.NULL, None, peer_point),
                    template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True,
                              Attribute.TOKEN: False})
                value = bytes(secret[Attribute.VALUE])
                secret.destroy()
                return value
        except p11e.PKCS11Error as exc:
            raise CardError(f"card {self.label!r} could not agree a key: {type(exc).__name__}") from None


def _public_key_info(pub: Any) -> keys.PublicKeyInfo:
    if pub.key_type == KeyType.RSA:
        return keys.PublicKeyInfo({"algorithm": {"algorithm": "rsa"},
                                   "public_key": keys.RSAPublicKey.load(encode_rsa_public_key(pub))})
    return keys.PublicKeyInfo.load(encode_ec_public_key(pub))


class CardKey:
    """The card's key pair as :class:`sealgate.endpoint.keys.PrivateKeyOps`."""

    def __init__(self, card: Card, certificate: asn1x509.Certificate,
                 chain: Sequence[asn1x509.Certificate] = ()) -> None:
        self.card = card
        self.certificate = certificate
        self.chain = tuple(chain)

    def sign_digest(self, digest: bytes, hash_name: str) -> bytes:
        return self.card.sign_digest(digest, hash_name)

    def decrypt_key_transport(self, encrypted_key: bytes, oaep: bool) -> bytes:
        return self.card.decrypt_key_transport(encrypted_key, oaep)

    def ecdh(self, peer_point: bytes) -> bytes:
        return self.card.ecdh(peer_point)
