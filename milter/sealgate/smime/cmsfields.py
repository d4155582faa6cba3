"""SignerInfo and RecipientInfo as the few plain fields the gateway reads (RFC 5652 §5.3, §6.2).

Every message brings its own SignerInfos and RecipientInfos (the signature,
the digest, the wrapped keys differ each time), so they cannot be cached, and
asn1crypto makes them expensive: parsing one SignerInfo of an ``openssl cms``
signature costs about 100 µs and reading the handful of fields the checks use
another 70 µs — a quarter of the verdict on a 10 KB message. Here the DER is
walked once into frozen dataclasses (about 15 µs).

Two ways in, one representation out:

- :func:`parse_signer_infos` / :func:`parse_recipient_infos` read DER with
  definite lengths and low tag numbers, what every client we know writes.
  Anything else (BER indefinite lengths, a constructed OCTET STRING, a field
  out of place) is not guessed at: the caller parses it with asn1crypto as
  before (:func:`signer_fields_of` / :func:`recipient_fields_of` convert), so
  unusual input is judged exactly as it was.
- :func:`as_signer_fields` accepts an asn1crypto ``SignerInfo`` too (tests and
  tools that build one).

OIDs are kept dotted; names come from asn1crypto's own maps, so a name here is
the name ``.native`` would give.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from asn1crypto import algos, cms, core, x509
from asn1crypto.core import Void

from ..certs import encoded

# X.690 identifier octets the fast path accepts (universal and context class, low tag numbers).
_INTEGER, _OCTETS, _OID, _SEQUENCE, _SET = 0x02, 0x04, 0x06, 0x30, 0x31
_UTC_TIME, _GENERALIZED_TIME = 0x17, 0x18
_CTX0_PRIMITIVE, _CTX0, _CTX1 = 0x80, 0xA0, 0xA1

MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
CONTENT_TYPE = "1.2.840.113549.1.9.3"
SIGNING_TIME = "1.2.840.113549.1.9.5"


class Unusual(Exception):  # noqa: N818 - not an error: "take the general parser"
    """The encoding is not plain DER as the fast path reads it: use asn1crypto."""


# ---------------------------------------------------------------- DER reading


def _tlv(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(identifier octet, contents start, contents end) of the TLV at ``pos``, inside ``end``."""
    if pos + 2 > end:
        raise Unusual
    ident = buf[pos]
    if ident & 0x1F == 0x1F:  # high tag number: never in these structures
        raise Unusual
    n = buf[pos + 1]
    if n < 0x80:  # short form: most TLVs here
        stop = pos + 2 + n
        if stop > end:
            raise Unusual
        return ident, pos + 2, stop
    k = n & 0x7F
    if k == 0 or k > 4:  # indefinite length (BER), or absurd
        raise Unusual
    start = pos + 2 + k
    if start > end:
        raise Unusual
    stop = start + int.from_bytes(buf[pos + 2:start], "big")
    if stop > end:
        raise Unusual
    return ident, start, stop


der_tlv = _tlv  # for .cms, which reads the outer structures in place the same way


def _check_nested(buf: bytes, pos: int, end: int) -> None:
    """Every TLV in [pos, end) is well formed and its children nest inside it.

    The same pieces recur message after message (issuer names, a client's
    S/MIME capabilities, algorithm parameters): their answer is cached by
    their bytes.
    """
    if pos < end and not _well_nested(bytes(buf[pos:end])):
        raise Unusual


@functools.lru_cache(maxsize=1024)
def _well_nested(data: bytes) -> bool:
    try:
        _walk_nested(data, 0, len(data), 0)
    except Unusual:
        return False
    return True


def _walk_nested(buf: bytes, pos: int, end: int, depth: int) -> None:
    while pos < end:
        ident, start, stop = _tlv(buf, pos, end)
        if ident & 0x20:
            if depth > 32:
                raise Unusual
            _walk_nested(buf, start, stop, depth + 1)
        pos = stop


def _integer(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    ident, start, stop = _tlv(buf, pos, end)
    if ident != _INTEGER or start == stop:
        raise Unusual
    return int.from_bytes(buf[start:stop], "big", signed=True), stop


@functools.lru_cache(maxsize=512)
def oid_of(contents: bytes) -> str:
    """Dotted form of an OBJECT IDENTIFIER's contents (X.690 §8.19); the same few recur."""
    if not contents or contents[-1] & 0x80:
        raise Unusual
    arcs: list[int] = []
    value = 0
    for b in contents:
        if value == 0 and b == 0x80:  # a leading 0x80 pads an arc: not DER
            raise Unusual
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in head + arcs[1:])


def _oid(buf: bytes, pos: int, end: int) -> tuple[str, int]:
    ident, start, stop = _tlv(buf, pos, end)
    if ident != _OID:
        raise Unusual
    return oid_of(bytes(buf[start:stop])), stop


def _algorithm(buf: bytes, pos: int, end: int) -> tuple[str, int, int]:
    """AlgorithmIdentifier at ``pos``: (dotted OID, TLV start, TLV end)."""
    ident, start, stop = _tlv(buf, pos, end)
    if ident != _SEQUENCE:
        raise Unusual
    oid, after = _oid(buf, start, stop)
    _check_nested(buf, after, stop)  # parameters, if any
    return oid, pos, stop


# ---------------------------------------------------------------- SignerInfo


@dataclass(init=False, unsafe_hash=True)  # never changed after __init__
class Attribute:
    type: str  # dotted OID
    values: tuple[bytes, ...]  # each value's whole TLV, as received

    def __init__(self, type: str, values: tuple[bytes, ...]) -> None:
        # Written out so that it is compiled: see ber.Tlv.
        self.type = type
        self.values = values


@dataclass(init=False, unsafe_hash=True)  # never changed after __init__
class SignerFields:
    """What the gateway reads of one SignerInfo."""

    sid_issuer: bytes | None  # issuerAndSerialNumber: the issuer Name's DER ...
    sid_serial: int | None  # ... and the serial number
    sid_key_id: bytes | None  # subjectKeyIdentifier
    digest_oid: str
    signed_attrs: bytes | None  # the [0] IMPLICIT SET OF Attribute as received; None: absent
    attributes: tuple[Attribute, ...]
    signature_algorithm: bytes  # the AlgorithmIdentifier's whole TLV (parameters for RSA-PSS)
    signature_oid: str
    signature: bytes

    def __init__(self, sid_issuer: bytes | None, sid_serial: int | None,
                 sid_key_id: bytes | None, digest_oid: str, signed_attrs: bytes | None,
                 attributes: tuple[Attribute, ...], signature_algorithm: bytes,
                 signature_oid: str, signature: bytes) -> None:
        # Written out so that it is compiled: see ber.Tlv.
        self.sid_issuer = sid_issuer
        self.sid_serial = sid_serial
        self.sid_key_id = sid_key_id
        self.digest_oid = digest_oid
        self.signed_attrs = signed_attrs
        self.attributes = attributes
        self.signature_algorithm = signature_algorithm
        self.signature_oid = signature_oid
        self.signature = signature

    @property
    def sid_kind(self) -> str:
        return "subject_key_identifier" if self.sid_key_id is not None else "issuer_and_serial_number"

    @property
    def issuer(self) -> x509.Name:
        """The sid's issuer as an asn1crypto Name (for directory lookups and names in details)."""
        return x509.Name.load(self.sid_issuer or b"")

    @property
    def digest_name(self) -> str:
        """asn1crypto's name for the digest algorithm (``sha256``), else the dotted OID."""
        return str(algos.DigestAlgorithmId._map.get(self.digest_oid, self.digest_oid))

    @property
    def signature_name(self) -> str:
        return str(algos.SignedDigestAlgorithmId._map.get(self.signature_oid, self.signature_oid))

    def signature_algorithm_asn1(self) -> algos.SignedDigestAlgorithm:
        """The signatureAlgorithm parsed by asn1crypto (RSA-PSS parameters; rare)."""
        return algos.SignedDigestAlgorithm.load(self.signature_algorithm)

    def values(self, attr_type: str) -> list[tuple[bytes, ...]]:
        """The value lists of every signed attribute of ``attr_type`` (dotted), in order."""
        return [a.values for a in self.attributes if a.type == attr_type]

    @property
    def message_digest(self) -> bytes | None:
        """The first messageDigest value, or None (no signed attributes, absent, unreadable)."""
        for values in self.values(MESSAGE_DIGEST):
            if values:
                try:
                    return octets_value(values[0])
                except ValueError:
                    return None
        return None

    @property
    def signing_time(self) -> datetime | None:
        """The signingTime signed attribute (RFC 5652 §11.3), timezone-aware, or None."""
        for values in self.values(SIGNING_TIME):
            if not values:
                return None
            try:
                value = _der_time(values[0]) or core.load(values[0]).native
            except (ValueError, TypeError):
                return None
            return value if isinstance(value, datetime) else None
        return None


def _der_time(tlv: bytes) -> datetime | None:
    """UTCTime ``YYMMDDHHMMSSZ`` or GeneralizedTime ``YYYYMMDDHHMMSSZ`` (the DER forms, RFC 5280
    §4.1.2.5) without asn1crypto; None for any other form (asn1crypto reads those)."""
    if len(tlv) == 15 and tlv[0] == _UTC_TIME and tlv[1] == 13 and tlv[14] == 0x5A:
        digits = tlv[2:14]
        year = int(digits[:2])
        year += 2000 if year < 50 else 1900  # RFC 5280 §4.1.2.5.1
        rest = digits[2:]
    elif len(tlv) == 17 and tlv[0] == _GENERALIZED_TIME and tlv[1] == 15 and tlv[16] == 0x5A:
        digits = tlv[2:16]
        year = int(digits[:4])
        rest = digits[4:]
    else:
        return None
    if not digits.isdigit():
        return None
    return datetime(year, int(rest[0:2]), int(rest[2:4]), int(rest[4:6]), int(rest[6:8]),
                    int(rest[8:10]), tzinfo=UTC)


def octets_value(tlv: bytes) -> bytes:
    """The contents of a primitive OCTET STRING TLV; ValueError for anything else."""
    if not tlv or tlv[0] != _OCTETS:
        raise ValueError(f"expected an OCTET STRING, found identifier 0x{tlv[:1].hex() or '--'}")
    try:
        _ident, start, stop = _tlv(tlv, 0, len(tlv))
    except Unusual:
        raise ValueError("OCTET STRING not in DER") from None
    return tlv[start:stop]


def oid_value(tlv: bytes) -> str:
    """The dotted OID of an OBJECT IDENTIFIER TLV; ValueError for anything else."""
    try:
        return _oid(tlv, 0, len(tlv))[0]
    except Unusual:
        raise ValueError(f"expected an OBJECT IDENTIFIER, found identifier "
                         f"0x{tlv[:1].hex() or '--'}") from None


def _signer(buf: bytes, pos: int, end: int) -> tuple[SignerFields, int]:
    ident, p, stop = _tlv(buf, pos, end)
    if ident != _SEQUENCE:
        raise Unusual
    _version, p = _integer(buf, p, stop)
    _i, _s, after = _tlv(buf, p, stop)  # sid
    _i, _s, digest_end = _tlv(buf, after, stop)  # digestAlgorithm
    issuer, serial, key_id, digest_oid = _piece(_signer_head, buf, p, digest_end)
    p = digest_end
    signed_attrs: bytes | None = None
    attributes: tuple[Attribute, ...] = ()
    if p < stop and buf[p] == _CTX0:
        _i, start, after = _tlv(buf, p, stop)
        signed_attrs = bytes(buf[p:after])
        attributes = _attributes(buf, start, after)
        p = after
    _i, _s, alg_end = _tlv(buf, p, stop)
    signature_algorithm = bytes(buf[p:alg_end])
    signature_oid = _piece(_algorithm_oid, signature_algorithm, 0, len(signature_algorithm))
    p = alg_end
    ident, start, after = _tlv(buf, p, stop)
    if ident != _OCTETS:
        raise Unusual
    signature = bytes(buf[start:after])
    p = after
    if p < stop and buf[p] == _CTX1:  # unsignedAttrs: read for structure only
        _i, start, after = _tlv(buf, p, stop)
        _attributes(buf, start, after)
        p = after
    if p != stop:
        raise Unusual
    return SignerFields(issuer, serial, key_id, digest_oid, signed_attrs, attributes,
                        signature_algorithm, signature_oid, signature), stop


# ---------------------------------------------------------------- pieces that recur
#
# Most of a SignerInfo or RecipientInfo is the same in every message of a sender, or
# to a recipient: the signer's issuer and serial, the algorithm identifiers, the
# contentType and S/MIME capabilities attributes, a recipient's issuer and serial
# with the key-encryption algorithm. Those pieces are read once per encoding
# (0.2 µs a lookup against 1-1.5 µs a read); the signature, the wrapped keys, the
# messageDigest and the signingTime are read every time. Each cached function is the
# same reading of the piece's bytes alone, raising Unusual as that reading does.

_CACHED_PIECE = 1024  # bytes: longer pieces (odd names, big attributes) are not kept
P = TypeVar("P")


def _piece(parse: Callable[[bytes], P], buf: bytes, start: int, stop: int) -> P:
    """``parse(buf[start:stop])``, remembered for pieces up to :data:`_CACHED_PIECE` bytes."""
    data = bytes(buf[start:stop])
    if stop - start <= _CACHED_PIECE:
        return parse(data)
    return parse.__wrapped__(data)  # type: ignore[attr-defined]


@functools.lru_cache(maxsize=1024)
def _signer_head(data: bytes) -> tuple[bytes | None, int | None, bytes | None, str]:
    """sid and digestAlgorithm of a SignerInfo: (issuer DER, serial, key id, digest OID)."""
    ident, start, after = _tlv(data, 0, len(data))
    issuer = serial = key_id = None
    if ident == _SEQUENCE:  # IssuerAndSerialNumber
        name_ident, _s, name_end = _tlv(data, start, after)
        if name_ident != _SEQUENCE:
            raise Unusual
        issuer = data[start:name_end]
        if not _well_nested(issuer):  # _check_nested, on the bytes kept anyway
            raise Unusual
        serial, rest = _integer(data, name_end, after)
        if rest != after:
            raise Unusual
    elif ident == _CTX0_PRIMITIVE:  # [0] IMPLICIT SubjectKeyIdentifier
        key_id = data[start:after]
    else:
        raise Unusual
    digest_oid, _a, p = _algorithm(data, after, len(data))
    if p != len(data):
        raise Unusual
    return issuer, serial, key_id, digest_oid


@functools.lru_cache(maxsize=256)
def _algorithm_oid(data: bytes) -> str:
    """The OID of an AlgorithmIdentifier TLV (its parameters checked for structure)."""
    oid, _a, p = _algorithm(data, 0, len(data))
    if p != len(data):
        raise Unusual
    return oid


# messageDigest and signingTime (OID TLVs): new in every message, not worth remembering
_VOLATILE_ATTRIBUTES = frozenset({bytes.fromhex("06092a864886f70d010904"),
                                  bytes.fromhex("06092a864886f70d010905")})


@functools.lru_cache(maxsize=1024)
def _attribute(data: bytes) -> Attribute:
    """One Attribute TLV (a SEQUENCE, whole)."""
    _i, start, stop = _tlv(data, 0, len(data))
    return _attribute_in(data, start, stop)


def _attributes(buf: bytes, pos: int, end: int) -> tuple[Attribute, ...]:
    # The TLVs of an attribute are short (< 128 bytes) but for big values: those are read
    # here as _tlv reads them, the others by _tlv (1.3 µs an attribute, now about half).
    found = []
    while pos < end:
        if pos + 2 <= end and buf[pos] == _SEQUENCE and buf[pos + 1] < 0x80:
            start = pos + 2
            stop = start + buf[pos + 1]
            if stop > end:
                raise Unusual
        else:
            ident, start, stop = _tlv(buf, pos, end)
            if ident != _SEQUENCE:
                raise Unusual
        if stop - pos <= _CACHED_PIECE and buf[start:start + 11] not in _VOLATILE_ATTRIBUTES:
            found.append(_attribute(bytes(buf[pos:stop])))
        else:
            found.append(_attribute_in(buf, start, stop))
        pos = stop
    return tuple(found)


def _attribute_in(buf: bytes, start: int, stop: int) -> Attribute:
    """The Attribute whose SEQUENCE contents are [start, stop)."""
    if start + 2 <= stop and buf[start] == _OID and buf[start + 1] < 0x80:
        p = start + 2 + buf[start + 1]
        if p > stop:
            raise Unusual
        attr_type = oid_of(bytes(buf[start + 2:p]))
    else:
        attr_type, p = _oid(buf, start, stop)
    if p + 2 <= stop and buf[p] == _SET and buf[p + 1] < 0x80:
        vstart, vstop = p + 2, p + 2 + buf[p + 1]
    else:
        ident, vstart, vstop = _tlv(buf, p, stop)
        if ident != _SET:
            raise Unusual
    if vstop != stop:
        raise Unusual
    values = []
    q = vstart
    while q < vstop:
        if q + 2 <= vstop and buf[q + 1] < 0x80 and buf[q] & 0x1F != 0x1F:
            vident, cstart, cstop = buf[q], q + 2, q + 2 + buf[q + 1]
            if cstop > vstop:
                raise Unusual
        else:
            vident, cstart, cstop = _tlv(buf, q, vstop)
        if vident & 0x20:
            _check_nested(buf, cstart, cstop)
        values.append(bytes(buf[q:cstop]))
        q = cstop
    return Attribute(attr_type, tuple(values))


def split_elements(raw: bytes) -> list[tuple[int, bytes]]:
    """The elements of a SET or SEQUENCE (whole TLV, DER): (identifier octet, element TLV)."""
    ident, pos, end = _tlv(raw, 0, len(raw))
    if not ident & 0x20 or end != len(raw):
        raise Unusual
    found = []
    while pos < end:
        element, _start, stop = _tlv(raw, pos, end)
        found.append((element, bytes(raw[pos:stop])))
        pos = stop
    return found


T = TypeVar("T")


def _set_of(raw: bytes, element: Callable[[bytes, int, int], tuple[T, int]]) -> list[T]:
    """A SET OF (whole TLV, DER), each element read by ``element``; Unusual for anything else."""
    ident, pos, end = _tlv(raw, 0, len(raw))
    if ident != _SET or end != len(raw):
        raise Unusual
    found = []
    while pos < end:
        value, pos = element(raw, pos, end)
        found.append(value)
    return found


def parse_signer_infos(raw: bytes) -> list[SignerFields]:
    """The SignerInfos SET (whole TLV, DER); raises :class:`Unusual` for anything else."""
    return _set_of(raw, _signer)


def signer_fields_of(si: cms.SignerInfo) -> SignerFields:
    """The same fields from an asn1crypto SignerInfo (BER input, or one a test built)."""
    sid = si["sid"]
    issuer = serial = key_id = None
    if sid.name == "issuer_and_serial_number":
        issuer = encoded(sid.chosen["issuer"])
        serial = int(sid.chosen["serial_number"].native)
    else:
        key_id = bytes(sid.chosen.native)
    attrs = si["signed_attrs"]
    signed_attrs: bytes | None = None
    attributes: tuple[Attribute, ...] = ()
    if not isinstance(attrs, Void):
        signed_attrs = encoded(attrs)
        attributes = tuple(Attribute(a["type"].dotted, tuple(encoded(v) for v in a["values"]))
                           for a in attrs)
    sig_alg = si["signature_algorithm"]
    return SignerFields(issuer, serial, key_id, si["digest_algorithm"]["algorithm"].dotted,
                        signed_attrs, attributes, encoded(sig_alg), sig_alg["algorithm"].dotted,
                        bytes(si["signature"].native))


def as_signer_fields(si: SignerFields | cms.SignerInfo) -> SignerFields:
    return si if isinstance(si, SignerFields) else signer_fields_of(si)


# ---------------------------------------------------------------- RecipientInfo


@dataclass(init=False, unsafe_hash=True)  # never changed after __init__
class RecipientId:
    """One rid: issuer Name DER and serial, or a subject key identifier."""

    issuer: bytes | None
    serial: int | None
    key_id: bytes | None

    def __init__(self, issuer: bytes | None, serial: int | None, key_id: bytes | None) -> None:
        # Written out: compiled, as sealgate.smime.ber.Tlv's (a generated __init__ is interpreted).
        self.issuer = issuer
        self.serial = serial
        self.key_id = key_id


@dataclass(init=False, unsafe_hash=True)  # never changed after __init__
class RecipientFields:
    """What the gateway reads of one RecipientInfo: its kind and whom it is for."""

    kind: str  # asn1crypto's names: ktri, kari, kekri, pwri, ori
    rids: tuple[RecipientId, ...]  # empty for kekri, pwri, ori (not addressed to a certificate)

    def __init__(self, kind: str, rids: tuple[RecipientId, ...]) -> None:
        # Written out so that it is compiled: see ber.Tlv.
        self.kind = kind
        self.rids = rids


_KINDS = {_SEQUENCE: "ktri", 0xA1: "kari", 0xA2: "kekri", 0xA3: "pwri", 0xA4: "ori"}


def _issuer_serial(buf: bytes, start: int, stop: int) -> RecipientId:
    name_ident, _s, name_end = _tlv(buf, start, stop)
    if name_ident != _SEQUENCE:
        raise Unusual
    issuer = bytes(buf[start:name_end])
    if not _well_nested(issuer):  # _check_nested, on the bytes kept anyway
        raise Unusual
    serial, rest = _integer(buf, name_end, stop)
    if rest != stop:
        raise Unusual
    return RecipientId(issuer, serial, None)


@functools.lru_cache(maxsize=1024)
def _ktri_head(data: bytes) -> RecipientId:
    """rid and keyEncryptionAlgorithm of a KeyTransRecipientInfo: the rid."""
    rident, start, after = _tlv(data, 0, len(data))
    if rident == _SEQUENCE:
        rid = _issuer_serial(data, start, after)
    elif rident == _CTX0_PRIMITIVE:
        rid = RecipientId(None, None, data[start:after])
    else:
        raise Unusual
    _oid_name, _a, p = _algorithm(data, after, len(data))
    if p != len(data):
        raise Unusual
    return rid


def _recipient(buf: bytes, pos: int, end: int) -> tuple[RecipientFields, int]:
    ident, p, stop = _tlv(buf, pos, end)
    kind = _KINDS.get(ident)
    if kind is None:
        raise Unusual
    if kind == "ktri":
        _version, p = _integer(buf, p, stop)
        _i, _s, after = _tlv(buf, p, stop)  # rid
        _i, _s, alg_end = _tlv(buf, after, stop)  # keyEncryptionAlgorithm
        rid = _piece(_ktri_head, buf, p, alg_end)
        kident, _ks, p = _tlv(buf, alg_end, stop)
        if kident != _OCTETS or p != stop:
            raise Unusual
        return RecipientFields(kind, (rid,)), stop
    if kind == "kari":
        _version, p = _integer(buf, p, stop)
        oident, ostart, p = _tlv(buf, p, stop)  # originator [0] EXPLICIT
        if oident != _CTX0:
            raise Unusual
        _check_nested(buf, ostart, p)
        if p < stop and buf[p] == _CTX1:  # ukm [1] EXPLICIT
            _u, ustart, uend = _tlv(buf, p, stop)
            _check_nested(buf, ustart, uend)
            p = uend
        _oid_name, _a, p = _algorithm(buf, p, stop)
        sident, q, send = _tlv(buf, p, stop)
        if sident != _SEQUENCE or send != stop:
            raise Unusual
        rids = []
        while q < send:
            eident, estart, eend = _tlv(buf, q, send)  # RecipientEncryptedKey
            if eident != _SEQUENCE:
                raise Unusual
            rident, start, after = _tlv(buf, estart, eend)
            if rident == _SEQUENCE:
                rids.append(_issuer_serial(buf, start, after))
            elif rident == _CTX0:  # rKeyId [0] IMPLICIT RecipientKeyIdentifier
                kident, kstart, kend = _tlv(buf, start, after)
                if kident != _OCTETS:
                    raise Unusual
                _check_nested(buf, kend, after)  # date, other
                rids.append(RecipientId(None, None, bytes(buf[kstart:kend])))
            else:
                raise Unusual
            kident, _ks, k_end = _tlv(buf, after, eend)
            if kident != _OCTETS or k_end != eend:
                raise Unusual
            q = eend
        return RecipientFields(kind, tuple(rids)), stop
    _check_nested(buf, p, stop)
    return RecipientFields(kind, ()), stop


def parse_recipient_infos(raw: bytes) -> list[RecipientFields]:
    """The RecipientInfos SET (whole TLV, DER); raises :class:`Unusual` for anything else."""
    return _set_of(raw, _recipient)


def _rid_of(rid: cms.RecipientIdentifier | cms.KeyAgreementRecipientIdentifier) -> RecipientId:
    if rid.name == "issuer_and_serial_number":
        ias = rid.chosen
        return RecipientId(encoded(ias["issuer"]), int(ias["serial_number"].native), None)
    if rid.name == "subject_key_identifier":
        return RecipientId(None, None, bytes(rid.chosen.native))
    return RecipientId(None, None, bytes(rid.chosen["subject_key_identifier"].native))  # r_key_id


def recipient_fields_of(ri: cms.RecipientInfo) -> RecipientFields:
    """The same fields from an asn1crypto RecipientInfo (BER input)."""
    kind, value = ri.name, ri.chosen
    if kind == "ktri":
        return RecipientFields(kind, (_rid_of(value["rid"]),))
    if kind == "kari":
        return RecipientFields(kind, tuple(_rid_of(rek["rid"])
                                           for rek in value["recipient_encrypted_keys"]))
    return RecipientFields(kind, ())
