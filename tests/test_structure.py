"""inspect() on well-formed S/MIME made by an independent producer (openssl cms)."""

from __future__ import annotations

import base64
import hashlib
import io
import re
import subprocess
from pathlib import Path

import pytest

from sealgate import devmail
from sealgate.devpki import TestPKI as _PKI
from sealgate.model import EncryptedLayer, Inspection, PlainLayer, SignedLayer, SignerInput
from sealgate.smime.cmsfields import as_signer_fields
from sealgate.smime.limits import Limits
from sealgate.smime.structure import inspect

BODY = "Hello,\r\n\r\nthe quarterly figures are attached.\r\n-- \r\nAlice\r\n"


def run(msg: bytes, limits: Limits = Limits()) -> Inspection:  # noqa: B008
    insp = inspect(io.BytesIO(msg), limits)
    assert insp.size == len(msg)
    return insp


def mail(entity: bytes, pki: _PKI) -> bytes:
    return devmail.message(entity, pki["alice"].email, [pki["bob"].email])


def message_digest(signer: SignerInput) -> bytes:
    digest = as_signer_fields(signer.signer_info).message_digest
    assert digest is not None, "no messageDigest attribute"
    return digest


def signed_range(msg: bytes) -> bytes:
    """The detached content: between the first delimiter line and the CRLF before the next."""
    boundary = re.search(rb'boundary="([^"]+)"', msg).group(1)
    first = msg.index(b"--" + boundary)
    start = msg.index(b"\n", first) + 1
    end = msg.index(b"\n--" + boundary, start)
    return msg[start:end - 1] if msg[end - 1:end] == b"\r" else msg[start:end]


@pytest.fixture(scope="module")
def entity() -> bytes:
    return devmail.text_entity(BODY)


def test_plain_text_is_plain(pki, entity):
    insp = run(mail(entity, pki))
    assert insp.structure == "plain"
    assert insp.findings == []
    assert insp.root == PlainLayer("1", "text/plain")
    assert insp.header("from") == pki["alice"].email
    assert insp.header("Subject") == "Test"


def test_folded_header_is_unfolded(pki, entity):
    msg = b"Subject: a long\r\n\tsubject line\r\n" + mail(entity, pki)
    assert run(msg).headers[0] == ("Subject", "a long\tsubject line")


def test_detached_signature_digest_matches_message_digest(pki, entity):
    msg = mail(devmail.sign(entity, pki["alice"]), pki)
    insp = run(msg)
    assert insp.structure == "signed(plain)"
    assert insp.findings == []
    layer = insp.root
    assert isinstance(layer, SignedLayer) and layer.detached and layer.where == "1"
    (signer,) = layer.signers
    content = signed_range(msg)
    assert content.startswith(b"Content-Type: text/plain")
    assert signer.content_digests == [hashlib.sha256(content).digest()]
    assert message_digest(signer) == signer.content_digests[0]
    assert signer.econtent_type == "data"
    assert [c.serial_number for c in layer.certificates] == [pki["alice"].cert.serial_number]
    assert layer.inner == PlainLayer("1.1", "text/plain")


def test_detached_sha512_digest_without_micalg_hint(pki, entity):
    msg = mail(devmail.sign(entity, pki["alice"], md="sha512"), pki)
    msg = re.sub(rb'micalg="?[^";\r\n]+"?;?', b"", msg)
    (signer,) = run(msg).root.signers
    assert signer.content_digests == [hashlib.sha512(signed_range(msg)).digest()]
    assert message_digest(signer) == signer.content_digests[0]


def test_lf_line_ends_give_canonical_and_raw_digests(pki, entity):
    msg = devmail.to_lf(mail(devmail.sign(entity, pki["alice"]), pki))
    insp = run(msg)
    assert insp.structure == "signed(plain)"
    assert insp.findings == []
    (signer,) = insp.root.signers
    raw = signed_range(msg)
    assert b"\r" not in raw
    canonical = raw.replace(b"\n", b"\r\n")
    assert signer.content_digests == [hashlib.sha256(canonical).digest(),
                                      hashlib.sha256(raw).digest()]
    assert message_digest(signer) == signer.content_digests[0]


def test_opaque_signed_data_digest_is_over_econtent(pki, entity):
    insp = run(mail(devmail.sign(entity, pki["alice"], detached=False), pki))
    assert insp.structure == "signed(plain)"
    assert insp.findings == []
    layer = insp.root
    assert not layer.detached
    (signer,) = layer.signers
    assert signer.content_digests == [hashlib.sha256(entity).digest()]
    assert message_digest(signer) == signer.content_digests[0]
    assert layer.inner == PlainLayer("1.1", "text/plain")


def test_multiple_signers_each_get_a_digest(pki, entity):
    msg = mail(devmail.sign(entity, pki["alice"], extra_signers=[pki["frank"]]), pki)
    layer = run(msg).root
    assert len(layer.signers) == 2
    for signer in layer.signers:
        assert message_digest(signer) in signer.content_digests
    assert len(layer.certificates) == 2


def test_signature_without_certificates(pki, entity):
    layer = run(mail(devmail.sign(entity, pki["alice"], include_certs=False), pki)).root
    assert layer.certificates == []
    assert message_digest(layer.signers[0]) == layer.signers[0].content_digests[0]


@pytest.mark.parametrize(("cipher", "name", "bits", "authenticated"), [
    ("aes-256-cbc", "aes256_cbc", 256, False),
    ("aes-128-cbc", "aes128_cbc", 128, False),
    ("aes-256-gcm", "aes256_gcm", 256, True),
])
def test_encrypted_records_cipher_and_recipients(pki, entity, cipher, name, bits, authenticated):
    msg = mail(devmail.encrypt(entity, [pki["bob"], pki["alice"], pki["frank"]], cipher=cipher), pki)
    insp = run(msg)
    assert insp.structure == "encrypted"
    assert insp.findings == []
    layer = insp.root
    assert isinstance(layer, EncryptedLayer)
    assert (layer.content_algorithm, layer.content_key_bits, layer.authenticated) == (
        name, bits, authenticated)
    assert len(layer.recipients) == 3
    serials = {rid.serial for r in layer.recipients if r.kind == "ktri" for rid in r.rids}
    assert pki["bob"].cert.serial_number in serials


def test_triple_wrap_is_signed_encrypted(pki, entity):
    msg = mail(devmail.triple_wrap(entity, pki["alice"], [pki["bob"]]), pki)
    insp = run(msg)
    assert insp.structure == "signed(encrypted)"
    assert insp.findings == []
    (signer,) = insp.root.signers
    assert message_digest(signer) == signer.content_digests[0]
    assert insp.root.inner.where == "1.1"
    assert len(insp.root.inner.recipients) == 1


def test_compressed_plain(pki, entity):
    insp = run(mail(devmail.compress(entity), pki))
    assert insp.structure == "compressed(plain)"
    assert insp.findings == []
    assert insp.root.inner == PlainLayer("1.1", "text/plain")


def test_signed_compressed_plain(pki, entity):
    insp = run(mail(devmail.sign(devmail.compress(entity), pki["alice"]), pki))
    assert insp.structure == "signed(compressed(plain))"
    assert insp.findings == []


def test_signed_signed_plain(pki, entity):
    inner = devmail.sign(entity, pki["alice"])
    insp = run(mail(devmail.sign(inner, pki["bob"], detached=False), pki))
    assert insp.structure == "signed(signed(plain))"
    assert insp.findings == []
    assert insp.root.inner.where == "1.1"
    assert insp.root.inner.inner.where == "1.1.1"
    assert message_digest(insp.root.inner.signers[0]) == insp.root.inner.signers[0].content_digests[0]


def test_signed_multipart_mixed_is_walked(pki):
    mixed = (b'Content-Type: multipart/mixed; boundary="mix"\r\n\r\n'
             b"--mix\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
             b"--mix\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
             + base64.encodebytes(b"\x00" * 3000).replace(b"\n", b"\r\n")
             + b"--mix--\r\n")
    insp = run(mail(devmail.sign(mixed, pki["alice"]), pki))
    assert insp.structure == "signed(plain)"
    assert insp.findings == []
    assert insp.root.inner == PlainLayer("1.1", "multipart/mixed")
    assert message_digest(insp.root.signers[0]) == insp.root.signers[0].content_digests[0]


def test_x_pkcs7_spellings(pki, entity):
    for made in (devmail.sign(entity, pki["alice"]), devmail.triple_wrap(entity, pki["alice"], [pki["bob"]])):
        msg = mail(made, pki).replace(b"application/pkcs7-", b"application/x-pkcs7-")
        assert b"x-pkcs7-signature" in msg
        insp = run(msg)
        assert insp.findings == []
        assert insp.structure in ("signed(plain)", "signed(encrypted)")


def test_missing_smime_type_uses_cms_content_type(pki, entity):
    cases = {"signed(plain)": devmail.sign(entity, pki["alice"], detached=False),
             "encrypted": devmail.encrypt(entity, [pki["bob"]]),
             "compressed(plain)": devmail.compress(entity)}
    for structure, made in cases.items():
        msg = re.sub(rb" ?smime-type=[\w-]+;?", b"", mail(made, pki))
        assert b"smime-type" not in msg
        insp = run(msg)
        assert (insp.structure, insp.findings) == (structure, [])


def test_smime_type_contradicting_cms_is_malformed(pki, entity):
    msg = mail(devmail.encrypt(entity, [pki["bob"]]), pki).replace(
        b"smime-type=enveloped-data", b"smime-type=signed-data")
    insp = run(msg)
    assert insp.structure == "encrypted"
    assert [f.code for f in insp.findings] == ["malformed"]
    assert "smime-type=signed-data" in insp.findings[0].detail


def _openssl_ber(pki: _PKI, entity: bytes, tmp: Path) -> bytes:
    src, out = tmp / "in", tmp / "out.der"
    src.write_bytes(entity)
    alice = pki["alice"]
    subprocess.run([devmail.OPENSSL, "cms", "-sign", "-nodetach", "-stream", "-binary",
                    "-outform", "DER", "-signer", str(alice.cert_path), "-inkey",
                    str(alice.key_path), "-in", str(src), "-out", str(out)], check=True)
    der = out.read_bytes()
    assert der[1] == 0x80  # indefinite length: BER, as streaming clients write it
    return der


def test_ber_indefinite_length_signed_data(pki, tmp_path):
    entity = devmail.text_entity(BODY * 2000)  # several OCTET STRING segments
    der = _openssl_ber(pki, entity, tmp_path)
    for cte, body in (("base64", base64.encodebytes(der).replace(b"\n", b"\r\n")), ("binary", der)):
        msg = mail((f"Content-Type: application/pkcs7-mime; smime-type=signed-data\r\n"
                    f"Content-Transfer-Encoding: {cte}\r\n\r\n").encode() + body, pki)
        insp = run(msg)
        assert (insp.structure, insp.findings) == ("signed(plain)", [])
        (signer,) = insp.root.signers
        assert signer.content_digests == [hashlib.sha256(entity).digest()]
        assert message_digest(signer) == signer.content_digests[0]


def test_mbox_from_line_is_skipped(pki, entity):
    insp = run(b"From alice@example.com Thu Jan  1 00:00:00 2026\n" + devmail.to_lf(mail(entity, pki)))
    assert insp.header("From") == pki["alice"].email
    assert insp.structure == "plain"


def test_large_triple_wrap_streams(pki, tmp_path):
    att = base64.encodebytes(bytes(range(256)) * 8000).replace(b"\n", b"\r\n")
    entity = b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n" + att
    msg = mail(devmail.triple_wrap(entity, pki["alice"], [pki["bob"]]), pki)
    path = tmp_path / "m.eml"
    path.write_bytes(msg)
    with path.open("rb") as f:
        insp = inspect(f)
    assert (insp.structure, insp.findings) == ("signed(encrypted)", [])
    assert message_digest(insp.root.signers[0]) == insp.root.signers[0].content_digests[0]


# ---------------------------------------------------------------- the streaming pieces

class _Chunks:
    """A stream handing over ``data`` in chunks of ``size`` (``next_chunk``), or by ``read``."""

    def __init__(self, data: bytes, size: int, chunked: bool = True) -> None:
        self.data, self.size, self.pos = data, size, 0
        if not chunked:
            self.next_chunk = None  # type: ignore[assignment]

    def next_chunk(self) -> bytes:
        out = self.data[self.pos:self.pos + self.size]
        self.pos += len(out)
        return out

    def read(self, n: int) -> bytes:
        out = self.data[self.pos:self.pos + min(n, self.size)]
        self.pos += len(out)
        return out


def _walk(reader, limit: int = 1 << 20) -> list:  # noqa: ANN001
    """Every TLV's header fields and primitive contents, depth first, as a reader sees them."""
    out = []

    def one(tlv, depth: int) -> None:  # noqa: ANN001
        out.append((tlv.cls, tlv.constructed, tlv.number, tlv.length, tlv.header, tlv.offset, depth))
        if not tlv.constructed:
            out.append(reader.raw(tlv, limit))
            return
        while reader.more(tlv):
            one(reader.header(), depth + 1)

    while not reader.at_eof():
        one(reader.header(), 0)
    return out


def test_ber_reader_reads_the_same_whatever_the_chunks(pki, tmp_path):
    from sealgate.smime.ber import BerReader
    from sealgate.smime.limits import Malformed

    der = _openssl_ber(pki, devmail.text_entity(BODY * 300), tmp_path)  # indefinite lengths
    want = _walk(BerReader(_Chunks(der, len(der))))
    assert len(want) > 50
    for size in (1, 2, 3, 7, 13, 1000):
        for chunked in (True, False):
            assert _walk(BerReader(_Chunks(der, size, chunked))) == want, (size, chunked)
    for cut in (1, 5, 100, len(der) // 2):
        errors = set()
        for size in (1, 7, len(der)):
            with pytest.raises(Malformed) as exc:
                _walk(BerReader(_Chunks(der[:-cut], size)))
            errors.add(str(exc.value))
        assert len(errors) == 1, errors


@pytest.mark.parametrize("lf", [False, True])
@pytest.mark.parametrize("big", [False, True])
def test_header_block_ends_at_the_first_blank_line_of_either_kind(lf, big):
    from sealgate.smime.mime import Cursor, read_header_block

    head = b"Subject: x\r\nX-Folded: a\r\n b\r\n"
    if lf:
        head = head.replace(b"\r\n", b"\n")
    other = b"\n\r\n" if lf else b"\n\n"  # a blank line of the other kind, later on
    body = b"text" + other + b"more\r\n" + (b"y" * 100 + b"\r\n") * (12_000 if big else 1)  # > 1 MiB
    msg = head + (b"\n" if lf else b"\r\n") + body
    head_block = read_header_block(Cursor(io.BytesIO(msg), 0, len(msg)), 0, Limits(), "1")
    assert head_block.fields == [("Subject", "x"), ("X-Folded", "a b")]
    assert msg[head_block.body_start:] == body


@pytest.mark.parametrize("body", [
    b"--b\r\nfirst\r\n--b--\r\n",  # the delimiter first of all
    b"content\r\nmore\r\n--b\r\nsig\r\n--b--\r\n",
    b"content\nmore\n--b\nsig\n--b--\n",  # bare LF
    b"content\r\n--bq\r\n--b \t\r\nsig\r\n",  # a look-alike, then blanks after the boundary
    b"content\r\n--bq\r\nno delimiter at all\r\n",
    b"content, no line end",
])
def test_hashing_until_the_delimiter_in_place_or_streamed(body):
    from sealgate.smime.digest import hash_until_delimiter
    from sealgate.smime.mime import Cursor

    msg = b"preamble\r\n" + body
    start = len(b"preamble\r\n")
    f = io.BytesIO(msg)
    streamed = hash_until_delimiter(f, start, len(msg), b"b", {"sha256", "sha1"})
    cur = Cursor(f, 0, len(msg))
    in_place = hash_until_delimiter(f, start, len(msg), b"b", {"sha256", "sha1"}, cur)
    assert cur.held(start, len(msg)) is not None  # it was hashed where it was
    assert in_place == streamed
