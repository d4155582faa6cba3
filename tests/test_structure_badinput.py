"""inspect() on bad input: always an Inspection with malformed or too-complex, never an exception."""

from __future__ import annotations

import base64
import io
import os
import re
import tracemalloc
import zlib
from pathlib import Path

import pytest
from asn1crypto import cms
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealgate import devmail
from sealgate.model import Inspection
from sealgate.smime.limits import Limits
from sealgate.smime.structure import inspect

MiB = 1024 * 1024


def run(msg: bytes, limits: Limits = Limits()) -> Inspection:  # noqa: B008
    return inspect(io.BytesIO(msg), limits)


def codes(insp: Inspection) -> set[str]:
    return {str(f.code) for f in insp.findings}


def head(ctype: str, cte: str = "base64") -> bytes:
    return (f"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: {ctype}\r\nContent-Transfer-Encoding: {cte}\r\n\r\n").encode()


P7M = "application/pkcs7-mime; smime-type=enveloped-data"


@pytest.fixture(scope="module")
def samples(pki) -> dict[str, bytes]:
    ent = devmail.text_entity()
    a, b = pki["alice"], pki["bob"]
    made = {
        "detached": devmail.sign(ent, a),
        "opaque": devmail.sign(ent, a, detached=False),
        "encrypted": devmail.encrypt(ent, [b]),
        "triple": devmail.triple_wrap(ent, a, [b], cipher="aes-256-gcm"),
        "compressed": devmail.compress(ent),
    }
    return {k: devmail.message(v, a.email, [b.email]) for k, v in made.items()}


def test_truncated_cms_is_malformed(samples):
    for name in ("opaque", "encrypted", "compressed"):
        msg = samples[name]
        cut = msg[:len(msg) - (len(msg) - msg.index(b"\r\n\r\n")) // 2]
        insp = run(cut)
        assert codes(insp) == {"malformed"}, name
        assert insp.root is None
        assert "part 1" in insp.findings[0].detail


def test_garbage_base64_is_malformed():
    insp = run(head(P7M) + b"MIIB!!!!not base64 at all$$$\r\n")
    assert codes(insp) == {"malformed"}
    assert "invalid base64" in insp.findings[0].detail


def test_base64_of_garbage_is_malformed():
    body = base64.encodebytes(os.urandom(3000)).replace(b"\n", b"\r\n")
    assert codes(run(head(P7M) + body)) == {"malformed"}


def test_empty_pkcs7_body_is_malformed():
    insp = run(head(P7M))
    assert codes(insp) == {"malformed"}
    assert "truncated" in insp.findings[0].detail


def test_base64_continuing_after_padding_is_malformed(samples):
    msg = samples["encrypted"].rstrip() + b"\r\nQUJD\r\n"
    assert "malformed" in codes(run(msg))


def _detached_parts(msg: bytes) -> tuple[bytes, bytes]:
    boundary = re.search(rb'boundary="([^"]+)"', msg).group(1)
    return boundary, msg


def test_multipart_signed_without_signature_part_is_malformed(samples):
    boundary, msg = _detached_parts(samples["detached"])
    second = msg.index(b"\r\n--" + boundary, msg.index(b"--" + boundary) + 10)
    cut = msg[:second] + b"\r\n--" + boundary + b"--\r\n"
    insp = run(cut)
    assert codes(insp) == {"malformed"}
    assert "signature part" in insp.findings[0].detail


def test_multipart_signed_with_empty_signature_part_is_malformed(samples):
    boundary, msg = _detached_parts(samples["detached"])
    second = msg.index(b"\r\n--" + boundary, msg.index(b"--" + boundary) + 10)
    cut = (msg[:second] + b"\r\n--" + boundary
           + b"\r\nContent-Type: application/pkcs7-signature\r\n\r\n\r\n--" + boundary + b"--\r\n")
    insp = run(cut)
    assert codes(insp) == {"malformed"}
    assert insp.structure == "signed(plain)"
    assert insp.root.signers == []
    assert "1.2" in insp.findings[0].detail


def test_signature_part_of_wrong_type_is_malformed(samples):
    msg = samples["detached"].replace(b"Content-Type: application/pkcs7-signature",
                                      b"Content-Type: text/plain")
    assert codes(run(msg)) == {"malformed"}


def test_multipart_without_boundary_is_malformed():
    insp = run(head("multipart/mixed", "7bit") + b"--x\r\n\r\nhi\r\n--x--\r\n")
    assert codes(insp) == {"malformed"}
    assert "boundary" in insp.findings[0].detail
    assert insp.structure == "plain"


def test_multipart_signed_without_boundary_is_malformed():
    insp = run(head('multipart/signed; protocol="application/pkcs7-signature"', "7bit") + b"x\r\n")
    assert codes(insp) == {"malformed"}


def test_missing_close_delimiter_is_tolerated():
    body = b"--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x\r\nContent-Type: text/html\r\n\r\n<p>\r\n"
    insp = run(head('multipart/alternative; boundary="x"', "7bit") + body)
    assert (insp.structure, insp.findings) == ("plain", [])


def test_two_content_type_headers_are_malformed(samples):
    msg = b"Content-Type: text/plain\r\n" + samples["encrypted"]
    assert "malformed" in codes(run(msg))


def test_deep_mime_nesting_is_too_complex():
    parts = [f'--b{i}\r\nContent-Type: multipart/mixed; boundary="b{i + 1}"\r\n\r\n' for i in range(1000)]
    insp = run(head('multipart/mixed; boundary="b0"', "7bit") + "".join(parts).encode())
    assert codes(insp) == {"too-complex"}
    assert "nesting" in insp.findings[0].detail


def test_too_many_parts_is_too_complex():
    body = b"".join(b"--x\r\nContent-Type: text/plain\r\n\r\n.\r\n" for _ in range(1100)) + b"--x--\r\n"
    insp = run(head('multipart/mixed; boundary="x"', "7bit") + body)
    assert codes(insp) == {"too-complex"}
    assert "1000 MIME parts" in insp.findings[0].detail


def test_megabyte_header_line_is_too_complex():
    msg = b"From: a@example.com\r\nX-Junk: " + b"A" * MiB + b"\r\n\r\nbody\r\n"
    insp = run(msg)
    assert codes(insp) == {"too-complex"}
    assert "X-Junk" in insp.findings[0].detail


def test_long_header_line_within_block_is_too_complex():
    msg = b"From: a@example.com\r\nX-Junk: " + b"A" * 100_000 + b"\r\n\r\nbody\r\n"
    insp = run(msg)
    assert codes(insp) == {"too-complex"}
    assert "X-Junk" in insp.findings[0].detail


def test_message_over_max_size_is_too_complex():
    insp = run(head("text/plain", "7bit") + b"x" * 5000, Limits(max_size=4096))
    assert codes(insp) == {"too-complex"}
    assert insp.header("Subject") == "x"


def _compressed(entity: bytes) -> bytes:
    info = cms.ContentInfo({"content_type": "compressed_data", "content": cms.CompressedData({
        "version": "v0", "compression_algorithm": {"algorithm": "zlib"},
        "encap_content_info": {"content_type": "data", "content": entity}})})
    return (head("application/pkcs7-mime; smime-type=compressed-data")
            + base64.encodebytes(info.dump()).replace(b"\n", b"\r\n"))


def test_zip_bomb_is_too_complex():
    z = zlib.compressobj(9)
    bomb = b"".join(z.compress(bytes(MiB)) for _ in range(64)) + z.flush()  # 64 MiB of zeros
    assert len(bomb) < 200_000
    insp = run(_compressed(bomb), Limits(max_decompressed=16 * MiB))
    assert codes(insp) == {"too-complex"}
    assert "inflates" in insp.findings[0].detail


def test_compressed_data_that_does_not_inflate_is_malformed():
    assert codes(run(_compressed(b"not zlib at all"))) == {"malformed"}


def test_deep_cms_nesting_is_too_complex():
    entity = devmail.text_entity()
    for _ in range(12):
        entity = devmail.compress(entity)
    insp = run(b"From: a@example.com\r\n" + entity)
    assert codes(insp) == {"too-complex"}
    assert "8 nested S/MIME layers" in insp.findings[0].detail


@pytest.mark.parametrize("data", [b"", b"\r\n", b"no colon here\r\n", b"\xff\xfe\x00garbage",
                                  b"Content-Type: multipart/signed\r\n", b"A: b\r\n \r\n\tc"])
def test_odd_small_inputs_never_raise(data):
    assert isinstance(run(data), Inspection)


def test_fifty_megabyte_body_streams_in_bounded_memory(tmp_path):
    path = tmp_path / "big.eml"
    line = base64.b64encode(os.urandom(57)) + b"\r\n"
    block = line * 16384  # about 1.2 MB
    with path.open("wb") as f:
        f.write(head('multipart/mixed; boundary="big"', "7bit"))
        f.write(b"--big\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n--big\r\n"
                b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
        while f.tell() < 50_000_000:
            f.write(block)
        f.write(b"--big--\r\n")
    assert 50_000_000 < path.stat().st_size < 50 * MiB
    insp, peak = inspect_with_peak_memory(path)
    assert (insp.structure, insp.findings) == ("plain", [])
    assert peak < 4 * MiB


def test_fifty_megabyte_opaque_signed_streams_in_bounded_memory(tmp_path, pki):
    path = tmp_path / "big.p7m"
    src = tmp_path / "big.txt"
    with src.open("wb") as f:
        f.write(b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")
        f.write((base64.b64encode(os.urandom(57)) + b"\r\n") * 200_000)  # 15.6 MB
    der = tmp_path / "big.der"
    alice = pki["alice"]
    import subprocess
    subprocess.run([devmail.OPENSSL, "cms", "-sign", "-nodetach", "-binary", "-stream", "-outform", "DER",
                    "-signer", str(alice.cert_path), "-inkey", str(alice.key_path),
                    "-in", str(src), "-out", str(der)], check=True)
    with path.open("wb") as f, der.open("rb") as d:
        f.write(head("application/pkcs7-mime; smime-type=signed-data"))
        while chunk := d.read(57 * 1000):
            f.write(base64.encodebytes(chunk).replace(b"\n", b"\r\n"))
    insp, peak = inspect_with_peak_memory(path)
    assert (insp.structure, insp.findings) == ("signed(plain)", [])
    assert peak < 8 * MiB


def inspect_with_peak_memory(path: Path):
    """Inspect a file on disk; also the peak Python memory it took (tracemalloc)."""
    tracemalloc.start()
    try:
        with path.open("rb") as f:
            insp = inspect(f)
        return insp, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@st.composite
def mutations(draw, samples):
    msg = draw(st.sampled_from(sorted(samples.values())))
    data = bytearray(msg)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.sampled_from([b"\r\n", b"--", b"\x00", b"=", b"\r\n\r\n", b"A" * 70,
                                                  b"; boundary=x", b"\x80\x80"]))
        else:
            del data[pos:pos + draw(st.integers(1, 200))]
    return bytes(data)


def test_mutated_smime_never_raises(samples):
    @settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(mutations(samples))
    def check(data: bytes) -> None:
        insp = run(data)
        assert isinstance(insp, Inspection)
        assert insp.size == len(data)

    check()


@pytest.mark.parametrize("ctype", ['multipart/mixed; boundary="x"',
                                   'multipart/signed; protocol="application/pkcs7-signature"; boundary="x"'])
def test_lines_that_only_look_like_delimiters_cost_little_time(ctype):
    import time
    msg = head(ctype, "7bit") + b"--x\r\n\r\n" + b"--xq\r\n" * 2_000_000 + b"--x--\r\n"
    started = time.perf_counter()
    insp = run(msg)
    assert time.perf_counter() - started < 2.0  # a Python loop per line takes about 4 s here
    assert isinstance(insp, Inspection)


def _spoil_base64(msg: bytes, from_end: int) -> bytes:
    """``msg`` with one base64 character of its last body line ``from_end`` lines up made "!"."""
    lines = msg.split(b"\r\n")
    k = max(i for i, line in enumerate(lines) if re.fullmatch(rb"[A-Za-z0-9+/]{40,}", line)) - from_end
    lines[k] = lines[k][:10] + b"!" + lines[k][11:]
    return b"\r\n".join(lines)


def test_bad_base64_beyond_what_enveloped_data_needs_is_malformed(pki):
    # The reader needs only the recipients and the cipher, but the chunk they come
    # in is checked whole: bad base64 later in a small body is still found.
    entity = devmail.text_entity("x" * 6000)
    msg = devmail.message(devmail.encrypt(entity, [pki["bob"]]), pki["alice"].email, [pki["bob"].email])
    assert (run(msg).structure, run(msg).findings) == ("encrypted", [])
    insp = run(_spoil_base64(msg, 1))
    assert codes(insp) == {"malformed"}
    assert "invalid base64 near byte" in insp.findings[0].detail


def test_encrypted_content_past_the_first_chunk_is_never_read(pki):
    # Streaming: enveloped-data is read up to its cipher; a large body's later chunks
    # (here spoilt) are not even decoded.
    entity = devmail.binary_attachment(200_000)
    msg = devmail.message(devmail.encrypt(entity, [pki["bob"]]), pki["alice"].email, [pki["bob"].email])
    insp = run(_spoil_base64(msg, 1))
    assert (insp.structure, insp.findings) == ("encrypted", [])


def test_bad_padding_in_a_small_body_is_malformed(samples):
    body_end = samples["encrypted"].rstrip().rindex(b"\r\n")
    msg = samples["encrypted"][:body_end] + b"\r\nQU==QUJD\r\n"
    insp = run(msg)
    assert codes(insp) == {"malformed"}
    assert "invalid base64" in insp.findings[0].detail
