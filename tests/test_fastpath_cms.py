"""The in-place readings of plain DER give what the TLV-by-TLV walk gives, or step aside.

``smime.cms`` reads ContentInfo, a detached SignedData and the start of an
EnvelopedData straight out of the reader's buffer when they are plain DER and
wholly buffered; ``smime.cmsfields`` remembers the pieces of SignerInfos and
RecipientInfos that recur from message to message. Inputs come from
``openssl cms`` (DER, and BER with ``-stream``), whole and mangled: every
answer, error text and reader position must be the walk's.
"""

from __future__ import annotations

import dataclasses

import pytest
from asn1crypto import cms
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealgate.certs import (
    encoded,
    is_ca,
    issuer_text,
    name_key,
    name_rfc4514,
    serial_hex,
    serial_of,
    shared_certificate,
    subject_key,
)
from sealgate.devmail import run_openssl
from sealgate.devpki import TestPKI
from sealgate.smime import cms as cmswalk
from sealgate.smime import cmsfields
from sealgate.smime.ber import BerReader
from sealgate.smime.limits import InputError
from sealgate.smime.mime import content_type_of, parse_content_type
from sealgate.trust import load_certificates

CONTENT = b"Content-Type: text/plain\r\n\r\nThe quarterly figures are attached.\r\n"
LIMIT = 1024 * 1024


class _Chunks:
    """A body stream as :mod:`sealgate.smime.mime` makes them: decoded chunks of a given size."""

    def __init__(self, data: bytes, size: int) -> None:
        self.data, self.size, self.pos = data, size, 0

    def next_chunk(self) -> bytes:
        chunk = self.data[self.pos:self.pos + self.size]
        self.pos += len(chunk)
        return chunk

    def read(self, n: int) -> bytes:  # pragma: no cover - BerReader uses next_chunk
        chunk = self.data[self.pos:self.pos + n]
        self.pos += len(chunk)
        return chunk


def _walk(der: bytes, chunk: int, limit: int = LIMIT) -> tuple[object, ...]:
    """What the CMS reading of a detached signature or an enveloped-data gives."""
    r = BerReader(_Chunks(der, chunk), "CMS in part 1.2")
    try:
        ctype, outer, wrapper = cmswalk.read_content_info(r)
        if ctype == "signed_data":
            info: object = cmswalk.read_signed_data(r, limit, None)
            cmswalk.close(r, wrapper, outer)
        else:
            info = cmswalk.read_enveloped_data(r, limit)
        return ("ok", ctype, outer, wrapper, info, r.pos)
    except InputError as exc:
        return (type(exc).__name__, str(exc), r.pos)


@pytest.fixture
def walk_only(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """Switch the in-place readings off: the TLV-by-TLV walk alone."""
    def switch(on: bool) -> None:
        if on:
            monkeypatch.setattr(cmswalk, "IN_PLACE", False)
        else:
            monkeypatch.undo()
    return switch


def _comparable(result: tuple[object, ...]) -> tuple[object, ...]:
    """Certificates as their encodings: one whose extensions do not parse is a new object each time."""
    if result[0] != "ok" or not isinstance(result[4], cmswalk.SignedDataInfo):
        return result
    info = result[4]
    return (*result[:4], dataclasses.replace(info, certificates=[encoded(c) for c in info.certificates]),
            *result[5:])


def _both(walk_only, der: bytes, chunk: int, limit: int = LIMIT) -> tuple[object, object]:  # noqa: ANN001
    fast = _walk(der, chunk, limit)
    walk_only(True)
    try:
        slow = _walk(der, chunk, limit)
    finally:
        walk_only(False)
    return _comparable(fast), _comparable(slow)


def _signature(pki: TestPKI, *extra: str, content: bytes = CONTENT) -> bytes:
    return run_openssl(["cms", "-sign", "-binary", "-outform", "DER", "-md", "sha256",
                        "-signer", str(pki["alice"].cert_path), "-inkey", str(pki["alice"].key_path),
                        *extra], content)


def _enveloped(pki: TestPKI, names: list[str], *extra: str) -> bytes:
    return run_openssl(["cms", "-encrypt", "-binary", "-outform", "DER", *extra,
                        *(arg for n in names for arg in ("-recip", str(pki[n].cert_path)))], CONTENT)


@pytest.fixture(scope="module")
def samples(pki: TestPKI) -> dict[str, bytes]:
    return {
        "detached": _signature(pki),
        "detached-keyid-nocerts": _signature(pki, "-keyid", "-nocerts"),
        "detached-two": _signature(pki, "-signer", str(pki["bob"].cert_path),
                                   "-inkey", str(pki["bob"].key_path)),
        "signed-ber": _signature(pki, "-stream"),  # indefinite lengths; with its content
        "opaque": _signature(pki, "-nodetach"),
        "ktri": _enveloped(pki, ["bob", "alice"], "-aes256"),
        "ktri-keyid": _enveloped(pki, ["bob"], "-aes128", "-keyid"),
        "kari": _enveloped(pki, ["frank", "bob"], "-aes256"),
        "gcm": _enveloped(pki, ["bob"], "-aes-256-gcm"),
        "enveloped-ber": _enveloped(pki, ["bob"], "-aes256", "-stream"),
    }


@pytest.mark.parametrize("chunk", [7, 100, 1536, 1 << 20])
@pytest.mark.parametrize("kind", ["detached", "detached-keyid-nocerts", "detached-two", "signed-ber",
                                  "opaque", "ktri", "ktri-keyid", "kari", "gcm", "enveloped-ber"])
def test_openssl_output_reads_as_the_walk_reads_it(walk_only, samples: dict[str, bytes], kind: str,  # noqa: ANN001
                                                   chunk: int) -> None:
    fast, slow = _both(walk_only, samples[kind], chunk)
    assert fast == slow
    if kind not in ("opaque", "signed-ber"):  # eContent where a detached signature is read
        assert fast[0] == "ok"


def _in_place(der: bytes, chunk: int) -> str:
    """Which in-place reading takes the structure after the ContentInfo, or "walk" if none does.

    The ``_fast_*`` readers are called directly: compiled (sealgate.native),
    calls inside a module do not go through patched attributes, so which path
    :func:`_walk` took cannot be watched from outside.
    """
    r = BerReader(_Chunks(der, chunk), "CMS in part 1.2")
    try:
        ctype, _outer, _wrapper = cmswalk._fast_content_info(r)
    except cmswalk.Unusual:
        return "walk"
    try:
        if ctype == "signed_data":
            cmswalk._fast_signed_data(r, LIMIT)
        else:
            cmswalk._fast_enveloped_data(r, LIMIT)
    except cmswalk.Unusual:
        return "walk"
    return ctype


def test_plain_der_is_read_in_place(samples: dict[str, bytes]) -> None:
    for kind, ctype in (("detached", "signed_data"), ("detached-keyid-nocerts", "signed_data"),
                        ("ktri", "enveloped_data"), ("kari", "enveloped_data"),
                        ("gcm", "authenticated_enveloped_data")):
        assert _in_place(samples[kind], 1 << 20) == ctype, kind


def test_a_structure_not_wholly_buffered_or_not_der_is_left_to_the_walk(
        samples: dict[str, bytes]) -> None:
    assert _in_place(samples["detached"], 100) == "walk"  # the SignedData is never wholly buffered
    assert _in_place(samples["signed-ber"], 1 << 20) == "walk"  # indefinite lengths


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["detached", "detached-keyid-nocerts", "detached-two", "ktri", "kari",
                             "gcm"]),
       edits=st.lists(st.tuples(st.integers(0, 1500), st.integers(0, 255)), max_size=3),
       inserts=st.lists(st.tuples(st.integers(0, 1500), st.binary(min_size=1, max_size=3)), max_size=2),
       cut=st.integers(0, 3000), chunk=st.sampled_from([64, 1536, 1 << 20]),
       limit=st.sampled_from([LIMIT, 400, 1000]))
def test_mangled_cms_reads_as_the_walk_reads_it(walk_only, samples: dict[str, bytes], kind: str,  # noqa: ANN001, PLR0913
                                                edits: list[tuple[int, int]],
                                                inserts: list[tuple[int, bytes]], cut: int, chunk: int,
                                                limit: int) -> None:
    data = bytearray(samples[kind])
    for pos, value in edits:  # mostly in the outer structure, where the readings differ
        data[pos % len(data)] = value
    for pos, more in inserts:
        data[pos % len(data):pos % len(data)] = more
    der = bytes(data[:max(1, len(data) - cut)])
    fast, slow = _both(walk_only, der, chunk, limit)
    assert fast == slow


def test_length_changes_in_each_outer_tlv_read_as_the_walk_reads_them(walk_only,  # noqa: ANN001
                                                                     samples: dict[str, bytes]) -> None:
    for kind in ("detached", "ktri"):
        der = samples[kind]
        for pos in range(0, 80):  # the headers of ContentInfo, SignedData/EnvelopedData and more
            for delta in (-1, 1):
                data = bytearray(der)
                data[pos] = (data[pos] + delta) % 256
                fast, slow = _both(walk_only, bytes(data), 1 << 20)
                assert fast == slow, (kind, pos, delta)


# ---------------------------------------------------------------- recurring pieces


def _signer_infos(der: bytes) -> bytes:
    return cms.ContentInfo.load(der)["content"]["signer_infos"].dump()


def _recipient_infos(der: bytes) -> bytes:
    return cms.ContentInfo.load(der)["content"]["recipient_infos"].dump()


def _read(parse, data: bytes) -> object:  # noqa: ANN001
    try:
        return parse(data)
    except cmsfields.Unusual:
        return "unusual"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(["detached", "detached-two", "detached-keyid-nocerts", "ktri", "kari",
                              "ktri-keyid"]),
       edits=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=3))
def test_remembered_pieces_read_as_fresh_ones(samples: dict[str, bytes], which: str,
                                              edits: list[tuple[int, int]],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    signers = which.startswith("detached")
    raw = bytearray(_signer_infos(samples[which]) if signers else _recipient_infos(samples[which]))
    for pos, value in edits:
        raw[pos % len(raw)] = value
    parse = cmsfields.parse_signer_infos if signers else cmsfields.parse_recipient_infos
    remembered = [_read(parse, bytes(raw)) for _ in range(2)]
    with monkeypatch.context() as m:
        m.setattr(cmsfields, "_CACHED_PIECE", -1)  # every piece read afresh
        fresh = _read(parse, bytes(raw))
    assert remembered[0] == remembered[1] == fresh


def test_recurring_pieces_are_shared_and_new_ones_read_each_time(pki: TestPKI) -> None:
    first = cmsfields.parse_signer_infos(_signer_infos(_signature(pki)))[0]
    second = cmsfields.parse_signer_infos(_signer_infos(_signature(pki, content=CONTENT + b"!")))[0]
    assert first.signature != second.signature
    assert first.message_digest != second.message_digest
    by_type = {a.type: a for a in first.attributes}
    again = {a.type: a for a in second.attributes}
    assert by_type[cmsfields.CONTENT_TYPE] is again[cmsfields.CONTENT_TYPE]
    assert first.sid_issuer is second.sid_issuer  # the signer's issuer, read once


# ---------------------------------------------------------------- kept per certificate


def test_values_kept_on_a_certificate_are_asn1cryptos(pki: TestPKI) -> None:
    for name in ("alice", "bob", "frank", "erin"):
        cert = shared_certificate(pki[name].cert.public_bytes(Encoding.DER))
        fresh = load_certificates(pki[name].cert_path)[0]
        assert serial_of(cert) == fresh.serial_number
        assert serial_hex(cert) == format(fresh.serial_number, "x")
        assert issuer_text(cert) == name_rfc4514(fresh.issuer)
        assert subject_key(cert) == name_key(fresh.subject)
        assert is_ca(cert) is bool(fresh.ca) is False
    ca = load_certificates(pki.ca.cert_path)[0]
    assert is_ca(ca) is True


def test_shared_content_types_equal_fresh_ones() -> None:
    value = 'application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"'
    assert content_type_of(value) is content_type_of(value)
    assert content_type_of(value) == parse_content_type(value)
    long_value = "multipart/mixed; boundary=" + "x" * 300
    assert content_type_of(long_value) is not content_type_of(long_value)
    assert content_type_of(long_value) == parse_content_type(long_value)
    assert content_type_of(None) == parse_content_type(None)

