"""The outer CMS structures, walked as a stream (RFC 5652, RFC 5083, RFC 3274).

Big content (the eContent of SignedData, compressed data) is streamed to a
sink; the small pieces around it are read whole, bounded, and parsed: the
per-message SignerInfos and RecipientInfos by :mod:`.cmsfields` (asn1crypto
for encodings that are not plain DER), algorithm identifiers with asn1crypto
once per distinct encoding, certificates once per encoding
(:func:`sealgate.certs.shared_certificate`). Encrypted content is never read:
once the content-encryption algorithm is known there is nothing more the
gateway can see.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from asn1crypto import algos, cms, x509

from ..certs import encoded, shared_certificate
from .ber import (
    CONTEXT,
    INTEGER,
    OCTET_STRING,
    OID,
    SEQUENCE,
    SET,
    UNIVERSAL,
    BerReader,
    Tlv,
)
from .cmsfields import (
    RecipientFields,
    SignerFields,
    Unusual,
    der_tlv,
    parse_recipient_infos,
    parse_signer_infos,
    recipient_fields_of,
    signer_fields_of,
    split_elements,
)
from .limits import Malformed

Sink = Callable[[bytes], object]

# asn1crypto digest names that hashlib computes under the same name.
HASHLIB_NAMES = frozenset({"md5", "sha1", "sha224", "sha256", "sha384", "sha512",
                           "sha3_224", "sha3_256", "sha3_384", "sha3_512"})


def _load(spec, raw: bytes, what: str, r: BerReader, offset: int):  # noqa: ANN001, ANN202
    """Parse a small piece's structure up front, so a broken one is malformed here.

    ``_parse_children(recurse=True)`` builds the whole tree of constructed
    values without converting every leaf: ``.native`` would also interpret
    attributes asn1crypto does not know (Microsoft's key preference attribute,
    1.3.6.1.4.1.311.16.4, that Thunderbird and Outlook sign) and fail on them,
    and costs 50 times more on certificates (660 µs against 12 µs). Leaves that
    turn out broken later are caught per signer by the engine (facts.py).
    """
    try:
        value = spec.load(raw, strict=True)
        parse = getattr(value, "_parse_children", None)
        if parse is not None:
            parse(recurse=True)
        else:
            value.native  # noqa: B018 - a primitive: forces asn1crypto's lazy parse
    except Exception as exc:  # noqa: BLE001 - asn1crypto raises assorted types on bad input
        raise Malformed(f"{r.what}: bad {what} at byte {offset} ({exc})") from None
    return value


def _certificates(raw: bytes, r: BerReader, offset: int) -> list[x509.Certificate]:
    """The X.509 certificates of a CertificateSet, parsed once per encoding (``shared_certificate``).

    The other CertificateChoices (attribute certificates, RFC 5652 §10.2.2)
    are parsed for structure, as :func:`_load` does, and left out.
    """
    try:
        elements = split_elements(raw)
    except Unusual:
        elements = None
    if elements is not None and all(ident == 0x30 for ident, _der in elements):
        # Only certificates, in DER: no need to parse the set with asn1crypto first.
        try:
            return [shared_certificate(der) for _ident, der in elements]
        except Exception as exc:  # noqa: BLE001 - asn1crypto raises assorted types on bad input
            raise Malformed(f"{r.what}: bad certificates at byte {offset} ({exc})") from None
    try:
        found = []
        for choice in cms.CertificateSet.load(raw, strict=True):
            if choice.name == "certificate":
                found.append(shared_certificate(encoded(choice.chosen)))
            else:
                parse = getattr(choice.chosen, "_parse_children", None)
                if parse is not None:
                    parse(recurse=True)
        return found
    except Exception as exc:  # noqa: BLE001 - asn1crypto raises assorted types on bad input
        raise Malformed(f"{r.what}: bad certificates at byte {offset} ({exc})") from None


def _as_set(raw: bytes) -> bytes:
    # [0]/[1] IMPLICIT SET OF: the identifier is one byte, swap it for the universal SET tag
    return b"\x31" + raw[1:]


def read_oid(r: BerReader, what: str) -> str:
    tlv = r.expect(UNIVERSAL, OID, what, constructed=False)
    raw = r.raw(tlv, 256)
    try:
        return _oid_name(raw)
    except (ValueError, TypeError) as exc:
        raise Malformed(f"{r.what}: bad {what} at byte {tlv.offset} ({exc})") from None


def _cached(parse: Callable[[bytes], Any], raw: bytes, what: str, r: BerReader, offset: int) -> Any:
    """``parse(raw)`` (an lru-cached function of the encoding); its failure is malformed here."""
    try:
        return parse(raw)
    except Exception as exc:  # noqa: BLE001 - asn1crypto raises assorted types on bad input
        raise Malformed(f"{r.what}: bad {what} at byte {offset} ({exc})") from None


@functools.lru_cache(maxsize=256)
def _digest_names(raw: bytes) -> tuple[str, ...]:
    # The same digestAlgorithms SET comes with every message of a client: 5 µs each time.
    digests = cms.DigestAlgorithms.load(raw, strict=True)
    digests._parse_children(recurse=True)
    return tuple(str(d["algorithm"].native) for d in digests)


@functools.lru_cache(maxsize=256)
def _content_algorithm(raw: bytes) -> tuple[str, int | None]:
    """(asn1crypto name or dotted OID, key bits or None) of a contentEncryptionAlgorithm."""
    alg = algos.EncryptionAlgorithm.load(raw, strict=True)
    alg._parse_children(recurse=True)
    name = str(alg["algorithm"].native)
    bits: int | None
    try:
        bits = alg.key_length * 8
    except (ValueError, KeyError, TypeError):
        bits = None  # unknown to asn1crypto: the algorithm check judges the name
    return name, bits


F = TypeVar("F")


def _infos(raw: bytes, r: BerReader, offset: int, what: str, fast: Callable[[bytes], list[F]],
           spec: Any, convert: Callable[[Any], F]) -> list[F]:
    """SignerInfos or RecipientInfos: the fast DER reader, else asn1crypto as it always was."""
    try:
        return fast(raw)
    except Unusual:  # not plain DER: asn1crypto reads it
        pass
    infos = _load(spec, raw, what, r, offset)
    try:
        return [convert(info) for info in infos]
    except Exception as exc:  # noqa: BLE001 - asn1crypto raises assorted types on bad input
        raise Malformed(f"{r.what}: bad {what} at byte {offset} ({exc})") from None


def _signer_infos(raw: bytes, r: BerReader, offset: int) -> list[SignerFields]:
    return _infos(raw, r, offset, "signerInfos", parse_signer_infos, cms.SignerInfos,
                  signer_fields_of)


def _recipient_infos(raw: bytes, r: BerReader, offset: int) -> list[RecipientFields]:
    return _infos(raw, r, offset, "recipientInfos", parse_recipient_infos, cms.RecipientInfos,
                  recipient_fields_of)


@functools.lru_cache(maxsize=256)
def _oid_name(raw: bytes) -> str:
    # A handful of content types recur in every message; asn1crypto's OID
    # decoding and name lookup cost 25 µs each time (errors are not cached).
    return str(cms.ContentType.load(raw, strict=True).native)


# ---------------------------------------------------------------- plain DER, in place
#
# What every client we know writes (definite lengths, low tag numbers) is read
# straight out of the reader's buffer when the structure is wholly there: the
# TLV-by-TLV walk cost about 1 µs a TLV, 20 TLVs a message (a tenth of the
# verdict on a 10 KB message). Each ``_fast_*`` function checks everything the
# walk below checks, in the same order, and raises :class:`Unusual` (nothing
# consumed) for anything else: the walk then reads the same bytes as always,
# with its own errors. The parsers that may raise Malformed (``_certificates``,
# ``_signer_infos``, ``_recipient_infos``) are called with the same arguments at
# the same point of the walk, after everything the walk checks before them.

_DER_SEQUENCE, _DER_SET, _DER_INTEGER, _DER_OID, _DER_CTX0, _DER_CTX1 = 0x30, 0x31, 0x02, 0x06, 0xA0, 0xA1
IN_PLACE = True  # tests switch it off to compare with the walk alone


def _head(buf: bytes, pos: int) -> tuple[int, int, int | None]:
    """(identifier octet, contents start, length or None for indefinite) of a header at ``pos``.

    Only the header need be buffered (an outer TLV's content goes on in the stream);
    Unusual for a high tag number or a length of more than 4 octets.
    """
    end = len(buf)
    if pos + 2 > end:
        raise Unusual
    ident = buf[pos]
    n = buf[pos + 1]
    if ident & 0x1F == 0x1F:
        raise Unusual
    if n < 0x80:
        return ident, pos + 2, n
    if n == 0x80:
        if not ident & 0x20:
            raise Unusual  # indefinite primitive: the walk's error
        return ident, pos + 2, None
    start = pos + 2 + (n & 0x7F)
    if n > 0x84 or start > end:
        raise Unusual
    return ident, start, int.from_bytes(buf[pos + 2:start], "big")


def _whole(buf: bytes, pos: int, ident: int, limit: int) -> int:
    """End of the definite-length TLV at ``pos`` with identifier ``ident``, at most ``limit``
    bytes long (as ``BerReader.raw`` allows), wholly buffered; else Unusual."""
    found, _start, stop = der_tlv(buf, pos, len(buf))
    if found != ident or stop - pos > limit:
        raise Unusual
    return stop


def _fast_oid(buf: bytes, pos: int) -> tuple[str, int]:
    """:func:`read_oid` on the buffer: (name, end); Unusual if it is not read here."""
    stop = _whole(buf, pos, _DER_OID, 256)
    try:
        return _oid_name(buf[pos:stop]), stop
    except Exception:  # noqa: BLE001 - read_oid words the error
        raise Unusual from None


def _fast_content_info(r: BerReader) -> tuple[str, Tlv, Tlv]:
    buf, off = r.buffered()
    ident, start, length = _head(buf, off)
    if ident != _DER_SEQUENCE:
        raise Unusual
    ctype, after = _fast_oid(buf, start)
    wident, wstart, wlength = _head(buf, after)
    if wident != _DER_CTX0:
        raise Unusual
    pos = r.pos
    outer = Tlv(UNIVERSAL, True, SEQUENCE, length, buf[off:start], pos)
    wrapper = Tlv(CONTEXT, True, 0, wlength, buf[after:wstart], pos + after - off)
    r.consume(wstart - off)
    return ctype, outer, wrapper


def _fast_signed_data(r: BerReader, limit: int) -> SignedDataInfo:
    """A SignedData without eContent (detached), wholly buffered."""
    buf, off = r.buffered()
    seq_end = _whole(buf, off, _DER_SEQUENCE, len(buf))
    p = _head(buf, off)[1]
    p = _whole(buf, p, _DER_INTEGER, 64)  # version
    digests_at, p = p, _whole(buf, p, _DER_SET, limit)
    try:
        names = list(_digest_names(buf[digests_at:p]))
    except Exception:  # noqa: BLE001 - the walk words the error
        raise Unusual from None
    encap_end = _whole(buf, p, _DER_SEQUENCE, len(buf))
    etype, p = _fast_oid(buf, _head(buf, p)[1])
    if p != encap_end:  # eContent, or an overrun: the walk's
        raise Unusual
    certs_at = certs_end = -1
    if p < seq_end and buf[p] == _DER_CTX0:
        certs_at, p = p, _whole(buf, p, _DER_CTX0, limit)
        certs_end = p
    if p < seq_end and buf[p] == _DER_CTX1:  # CRLs: skipped, as the walk does
        p = _whole(buf, p, _DER_CTX1, len(buf))
    infos_at, p = p, _whole(buf, p, _DER_SET, limit)
    if p != seq_end:
        raise Unusual
    # From here on nothing is left to the walk: the reader moves on as it would have.
    pos = r.pos - off
    certificates: list[x509.Certificate] = []
    if certs_at >= 0:
        r.consume(certs_end - off)
        certificates = _certificates(_as_set(buf[certs_at:certs_end]), r, pos + certs_at)
    r.consume(seq_end - (r.pos - pos))
    infos = _signer_infos(buf[infos_at:p], r, pos + infos_at)
    return SignedDataInfo(names, etype, False, certificates, infos)


def _fast_enveloped_data(r: BerReader, limit: int) -> EnvelopedInfo:
    """(Auth)EnvelopedData up to the content-encryption algorithm, that much buffered."""
    buf, off = r.buffered()
    ident, p, _length = _head(buf, off)
    if ident != _DER_SEQUENCE:
        raise Unusual
    p = _whole(buf, p, _DER_INTEGER, 64)  # version
    if p < len(buf) and buf[p] == _DER_CTX0:  # originatorInfo: skipped, as the walk does
        p = _whole(buf, p, _DER_CTX0, len(buf))
    infos_at, p = p, _whole(buf, p, _DER_SET, limit)
    infos_end = p
    ident, p, _length = _head(buf, p)  # encryptedContentInfo: its content goes on
    if ident != _DER_SEQUENCE:
        raise Unusual
    _ctype, p = _fast_oid(buf, p)
    alg_at, p = p, _whole(buf, p, _DER_SEQUENCE, limit)
    try:
        name, bits = _content_algorithm(buf[alg_at:p])
    except Exception:  # noqa: BLE001 - the walk words the error
        raise Unusual from None
    # From here on nothing is left to the walk: the reader moves on as it would have.
    pos = r.pos - off
    r.consume(infos_end - off)
    recipients = _recipient_infos(buf[infos_at:infos_end], r, pos + infos_at)
    r.consume(p - infos_end)
    return EnvelopedInfo(name, bits, recipients)


# ---------------------------------------------------------------- the walk


def read_content_info(r: BerReader) -> tuple[str, Tlv, Tlv]:
    """ContentInfo ::= SEQUENCE { contentType, [0] EXPLICIT content } (RFC 5652 §3).

    Returns the content type name, the outer SEQUENCE and the [0] wrapper, both
    open: the caller reads the content and then calls :func:`close`.
    """
    if IN_PLACE:
        try:
            return _fast_content_info(r)
        except Unusual:
            pass
    outer = r.expect(UNIVERSAL, SEQUENCE, "ContentInfo SEQUENCE", constructed=True)
    ctype = read_oid(r, "contentType")
    wrapper = r.expect(CONTEXT, 0, "[0] content", constructed=True)
    return ctype, outer, wrapper


def close(r: BerReader, *tlvs: Tlv) -> None:
    """Check that each open TLV (innermost first) ends here."""
    for tlv in tlvs:
        if r.more(tlv):
            raise Malformed(f"{r.what}: unexpected element at byte {r.pos} inside byte {tlv.offset}")


def _skip_integer(r: BerReader, what: str) -> None:
    tlv = r.expect(UNIVERSAL, INTEGER, what, constructed=False)
    r.raw(tlv, 64)


@dataclass(init=False)
class SignedDataInfo:
    digest_algorithms: list[str]
    econtent_type: str
    has_content: bool
    certificates: list[x509.Certificate]
    signer_infos: list[SignerFields]

    def __init__(self, digest_algorithms: list[str], econtent_type: str, has_content: bool,
                 certificates: list[x509.Certificate], signer_infos: list[SignerFields]) -> None:
        # Written out: compiled, as sealgate.smime.ber.Tlv's (a generated __init__ is interpreted).
        self.digest_algorithms = digest_algorithms
        self.econtent_type = econtent_type
        self.has_content = has_content
        self.certificates = certificates
        self.signer_infos = signer_infos


def read_signed_data(r: BerReader, limit: int,
                     content_sink: Callable[[list[str]], Sink] | None) -> SignedDataInfo:
    """SignedData (RFC 5652 §5.1); eContent goes to ``content_sink(digest names)``."""
    if IN_PLACE:
        try:
            return _fast_signed_data(r, limit)
        except Unusual:
            pass
    seq = r.expect(UNIVERSAL, SEQUENCE, "SignedData SEQUENCE", constructed=True)
    _skip_integer(r, "SignedData version")
    tlv = r.expect(UNIVERSAL, SET, "digestAlgorithms SET", constructed=True)
    names = list(_cached(_digest_names, r.raw(tlv, limit), "digestAlgorithms", r, tlv.offset))
    encap = r.expect(UNIVERSAL, SEQUENCE, "encapContentInfo SEQUENCE", constructed=True)
    etype = read_oid(r, "eContentType")
    has_content = False
    if r.more(encap):
        explicit = r.expect(CONTEXT, 0, "[0] eContent", constructed=True)
        octets = r.expect(UNIVERSAL, OCTET_STRING, "eContent OCTET STRING")
        if content_sink is None:
            raise Malformed(f"{r.what}: detached signature carries content at byte {explicit.offset}")
        r.octets(octets, content_sink(names))
        has_content = True
        close(r, explicit, encap)
    certificates: list[x509.Certificate] = []
    tag = r.peek_tag()
    if tag == (CONTEXT, 0):
        tlv = r.header()
        certificates = _certificates(_as_set(r.raw(tlv, limit)), r, tlv.offset)
        tag = r.peek_tag()
    if tag == (CONTEXT, 1):
        r.skip(r.header())  # CRLs: the trust store brings its own
    tlv = r.expect(UNIVERSAL, SET, "signerInfos SET", constructed=True)
    infos = _signer_infos(r.raw(tlv, limit), r, tlv.offset)
    close(r, seq)
    return SignedDataInfo(names, etype, has_content, certificates, infos)


@dataclass(init=False)
class EnvelopedInfo:
    content_algorithm: str
    content_key_bits: int | None
    recipients: list[RecipientFields]

    def __init__(self, content_algorithm: str, content_key_bits: int | None,
                 recipients: list[RecipientFields]) -> None:
        # Written out: compiled, as sealgate.smime.ber.Tlv's (a generated __init__ is interpreted).
        self.content_algorithm = content_algorithm
        self.content_key_bits = content_key_bits
        self.recipients = recipients


def read_enveloped_data(r: BerReader, limit: int) -> EnvelopedInfo:
    """(Auth)EnvelopedData up to the content-encryption algorithm (RFC 5652 §6.1, RFC 5083 §2.1)."""
    if IN_PLACE:
        try:
            return _fast_enveloped_data(r, limit)
        except Unusual:
            pass
    r.expect(UNIVERSAL, SEQUENCE, "EnvelopedData SEQUENCE", constructed=True)
    _skip_integer(r, "EnvelopedData version")
    if r.peek_tag() == (CONTEXT, 0):
        r.skip(r.header())  # originatorInfo: certificates for key agreement, not needed here
    tlv = r.expect(UNIVERSAL, SET, "recipientInfos SET", constructed=True)
    recipients = _recipient_infos(r.raw(tlv, limit), r, tlv.offset)
    r.expect(UNIVERSAL, SEQUENCE, "encryptedContentInfo SEQUENCE", constructed=True)
    read_oid(r, "encrypted contentType")
    tlv = r.expect(UNIVERSAL, SEQUENCE, "contentEncryptionAlgorithm", constructed=True)
    name, bits = _cached(_content_algorithm, r.raw(tlv, limit), "contentEncryptionAlgorithm",
                         r, tlv.offset)
    return EnvelopedInfo(name, bits, recipients)


def read_compressed_data(r: BerReader, sink: Sink) -> None:
    """CompressedData (RFC 3274 §1.1); the compressed eContent goes to ``sink``."""
    seq = r.expect(UNIVERSAL, SEQUENCE, "CompressedData SEQUENCE", constructed=True)
    _skip_integer(r, "CompressedData version")
    tlv = r.expect(UNIVERSAL, SEQUENCE, "compressionAlgorithm", constructed=True)
    alg = r.raw(tlv, 4096)
    if _load(cms.CompressionAlgorithm, alg, "compressionAlgorithm", r,
             tlv.offset)["algorithm"].native != "zlib":
        raise Malformed(f"{r.what}: compression algorithm other than zlib at byte {tlv.offset}")
    encap = r.expect(UNIVERSAL, SEQUENCE, "encapContentInfo SEQUENCE", constructed=True)
    read_oid(r, "eContentType")
    explicit = r.expect(CONTEXT, 0, "[0] eContent", constructed=True)
    r.octets(r.expect(UNIVERSAL, OCTET_STRING, "eContent OCTET STRING"), sink)
    close(r, explicit, encap, seq)
