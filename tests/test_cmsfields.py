"""The fast SignerInfo/RecipientInfo reader gives what asn1crypto gives, or steps aside.

Inputs come from ``openssl cms`` (an independent producer): RSA PKCS #1 v1.5,
RSA-PSS, ECDSA, subject key identifiers, no signed attributes, several
signers; key transport by issuer/serial and by key identifier, ECDH key
agreement. Whatever the fast path accepts must equal asn1crypto's reading;
whatever it does not (BER, mangled bytes) must raise ``Unusual`` and nothing
else, and the CMS walker then still gives a verdict-ready answer or Malformed.
"""

from __future__ import annotations

import datetime as dt

import pytest
from asn1crypto import cms, core
from cmshelpers import openssl_sign
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealgate.devmail import run_openssl
from sealgate.devpki import TestPKI
from sealgate.smime import cms as cmswalk
from sealgate.smime.ber import BerReader
from sealgate.smime.cmsfields import (
    Unusual,
    _der_time,
    parse_recipient_infos,
    parse_signer_infos,
    recipient_fields_of,
    signer_fields_of,
)
from sealgate.smime.limits import Malformed

CONTENT = b"Content-Type: text/plain\r\n\r\nfigures\r\n"


def _signer_infos_der(signed) -> bytes:  # noqa: ANN001 - cmshelpers.Signed
    return signed.signed_data["signer_infos"].dump()


def _recipient_infos_der(pki: TestPKI, names: list[str], *extra: str) -> bytes:
    args = ["cms", "-encrypt", "-binary", "-outform", "DER", "-aes256", *extra,
            *(arg for n in names for arg in ("-recip", str(pki[n].cert_path)))]
    info = cms.ContentInfo.load(run_openssl(args, CONTENT))
    return info["content"]["recipient_infos"].dump()


SIGNATURES = {
    "rsa": lambda pki: openssl_sign(pki["alice"]),
    "pss-sha384": lambda pki: openssl_sign(pki["alice"], pss=True, md="sha384"),
    "ecdsa": lambda pki: openssl_sign(pki["frank"]),
    "keyid": lambda pki: openssl_sign(pki["frank"], keyid=True),
    "noattr": lambda pki: openssl_sign(pki["bob"], noattr=True),
    "two-signers": lambda pki: openssl_sign(pki["alice"], extra=[
        "-signer", str(pki["bob"].cert_path), "-inkey", str(pki["bob"].key_path)]),
}


@pytest.mark.parametrize("kind", sorted(SIGNATURES))
def test_signer_infos_read_fast_equal_asn1crypto(pki: TestPKI, kind: str) -> None:
    signed = SIGNATURES[kind](pki)
    der = _signer_infos_der(signed)
    fast = parse_signer_infos(der)
    assert fast == [signer_fields_of(si) for si in cms.SignerInfos.load(der)]
    assert len(fast) == (2 if kind == "two-signers" else 1)
    first = fast[0]
    if kind == "noattr":
        assert first.signed_attrs is None and first.message_digest is None
        assert first.signing_time is None
    else:
        assert first.message_digest is not None and len(first.message_digest) in (32, 48)
        assert first.signing_time is not None
        assert abs(first.signing_time - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=10)
    if kind == "keyid":
        assert first.sid_key_id and first.sid_issuer is None
    else:
        signers = {"rsa": ["alice"], "pss-sha384": ["alice"], "ecdsa": ["frank"],
                   "noattr": ["bob"], "two-signers": ["alice", "bob"]}[kind]
        assert all(f.sid_issuer is not None for f in fast)
        assert {f.sid_serial for f in fast} == {pki[n].cert.serial_number for n in signers}
    if kind == "pss-sha384":
        assert first.signature_name == "rsassa_pss" and first.digest_name == "sha384"


RECIPIENTS = {
    "ktri": (["alice", "bob"], ()),
    "ktri-keyid": (["alice"], ("-keyid",)),
    "kari": (["frank"], ()),
    "mixed": (["frank", "bob", "grace"], ()),
}


@pytest.mark.parametrize("kind", sorted(RECIPIENTS))
def test_recipient_infos_read_fast_equal_asn1crypto(pki: TestPKI, kind: str) -> None:
    names, extra = RECIPIENTS[kind]
    der = _recipient_infos_der(pki, names, *extra)
    fast = parse_recipient_infos(der)
    assert fast == [recipient_fields_of(ri) for ri in cms.RecipientInfos.load(der)]
    serials = {rid.serial for r in fast for rid in r.rids}
    if kind == "ktri-keyid":
        assert all(rid.key_id for r in fast for rid in r.rids)
    else:
        assert serials == {pki[n].cert.serial_number for n in names}
    if kind in ("kari", "mixed"):
        assert "kari" in {r.kind for r in fast}


def _indefinite(der: bytes) -> bytes:
    """The same SET with the outer length written the BER indefinite way (X.690 §8.1.3.6)."""
    reader = BerReader(_Bytes(der))
    tlv = reader.header()
    return b"\x31\x80" + der[len(tlv.header):] + b"\x00\x00"


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, n: int) -> bytes:
        chunk = self.data[self.pos:self.pos + n]
        self.pos += len(chunk)
        return chunk


def test_ber_signer_infos_take_the_asn1crypto_path_with_the_same_result(pki: TestPKI) -> None:
    der = _signer_infos_der(openssl_sign(pki["alice"]))
    ber = _indefinite(der)
    with pytest.raises(Unusual):
        parse_signer_infos(ber)
    reader = BerReader(_Bytes(ber))
    assert cmswalk._signer_infos(ber, reader, 0) == parse_signer_infos(der)


def test_ber_recipient_infos_take_the_asn1crypto_path_with_the_same_result(pki: TestPKI) -> None:
    der = _recipient_infos_der(pki, ["alice", "frank"])
    ber = _indefinite(der)
    with pytest.raises(Unusual):
        parse_recipient_infos(ber)
    assert cmswalk._recipient_infos(ber, BerReader(_Bytes(ber)), 0) == parse_recipient_infos(der)


@pytest.fixture(scope="module")
def samples(pki: TestPKI) -> dict[str, bytes]:
    return {"signers": _signer_infos_der(openssl_sign(pki["alice"])),
            "recipients": _recipient_infos_der(pki, ["alice", "frank"])}


def _mangle(data: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    out = bytearray(data)
    for pos, value in edits:
        out[pos % len(out)] = value
    return bytes(out[:max(1, len(out) - cut)])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=4),
       cut=st.integers(0, 40), which=st.sampled_from(["signers", "recipients"]))
def test_mangled_infos_are_unusual_or_malformed_never_a_crash(samples: dict[str, bytes],
                                                              edits: list[tuple[int, int]], cut: int,
                                                              which: str) -> None:
    data = _mangle(samples[which], edits, cut)
    fast, walk = ((parse_signer_infos, cmswalk._signer_infos) if which == "signers"
                  else (parse_recipient_infos, cmswalk._recipient_infos))
    try:
        fast(data)
    except Unusual:
        pass
    try:
        walk(data, BerReader(_Bytes(data), "CMS in part 1.2"), 0)
    except Malformed as exc:
        assert "CMS in part 1.2: bad" in str(exc)


@given(st.datetimes(min_value=dt.datetime(1950, 1, 1), max_value=dt.datetime(2049, 12, 31)))
def test_der_times_read_as_asn1crypto_reads_them(moment: dt.datetime) -> None:
    moment = moment.replace(microsecond=0, tzinfo=dt.UTC)
    for value in (core.UTCTime(moment), core.GeneralizedTime(moment)):
        der = value.dump()
        assert _der_time(der) == core.load(der).native == moment


def test_other_time_forms_are_left_to_asn1crypto() -> None:
    assert _der_time(b"\x17\x0b2611252001Z") is None  # no seconds: BER, not DER
    assert _der_time(b"\x18\x1320261125200102.123Z") is None  # fractional seconds
