"""Messages shaped the way real clients and MTAs shape them.

The CMS is OpenSSL's (sealgate.devmail); the MIME around it is taken apart and
rebuilt by hand, as Thunderbird, Outlook, Apple Mail, mbox files and mailing
lists lay it out: folded and mixed-case headers, missing or wrong micalg,
preambles, base64 line widths, LF line ends, x-pkcs7 spellings. Then the
adversarial shapes: duplicate and prefix boundaries, a signature for other
content, content re-encoded in transit. Each test asserts the exact codes of
``Gateway.evaluate`` under the shipped strict policy.
"""

from __future__ import annotations

import base64
import io
import re

import pytest
from gateway_helpers import evaluate, gateway_for

from sealgate import devmail as m
from sealgate.codes import Action, AuthResult
from sealgate.devpki import TestPKI
from sealgate.engine import Gateway
from sealgate.smime.mime import CHUNK

BODY = m.text_entity("Hi Bob,\r\n\r\nsee the figures below.\r\n\r\nRegards,\r\nAlice\r\n")
SIGNATURE_CT = b'Content-Type: application/pkcs7-signature; name="smime.p7s"'
STANDARD_CT = ('Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
               'micalg=sha-256; boundary="{b}"')
BOUNDARY = "=_sealgate_test_7f3a"


@pytest.fixture(scope="module")
def gw(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Gateway:
    return gateway_for(tmp_path_factory.mktemp("gw-shapes"), pki)


@pytest.fixture(scope="module")
def enc(pki: TestPKI) -> bytes:
    """Encrypted content for bob and alice: signing it makes a message strict accepts."""
    return m.encrypt(BODY, [pki["bob"], pki["alice"]])


@pytest.fixture(scope="module")
def enc_sig(pki: TestPKI, enc: bytes) -> bytes:
    """alice's detached DER signature over ``enc``."""
    return signature_der(enc, pki["alice"])


# ------------------------------------------------------------------ surgery

def signature_der(content: bytes, signer, md: str = "sha256") -> bytes:
    """The DER signature from openssl's multipart/signed over ``content`` (signed as given)."""
    entity = m.sign(content, signer, md=md)
    part = entity.rsplit(SIGNATURE_CT, 1)[1]
    b64 = part.split(b"\r\n\r\n", 1)[1].split(b"\r\n--", 1)[0]
    return base64.b64decode(b"".join(b64.split()))


def b64_lines(der: bytes, width: int | None = 76, suffix: bytes = b"") -> bytes:
    text = base64.b64encode(der)
    if width is None:
        return text + suffix + b"\r\n"
    return b"".join(text[i:i + width] + suffix + b"\r\n" for i in range(0, len(text), width))


def detached(content: bytes, der: bytes, *, header: str = STANDARD_CT, boundary: str = BOUNDARY,
             preamble: bytes = b"This is an S/MIME signed message\r\n\r\n", epilogue: bytes = b"",
             sig_head: bytes = SIGNATURE_CT + b"\r\nContent-Transfer-Encoding: base64\r\n"
                               b'Content-Disposition: attachment; filename="smime.p7s"\r\n',
             sig_body: bytes | None = None) -> bytes:
    """multipart/signed around ``content``: the signed bytes run up to the CRLF before "--"."""
    dash = b"--" + boundary.encode()
    return (header.format(b=boundary).encode() + b"\r\n\r\n" + preamble
            + dash + b"\r\n" + content + b"\r\n"
            + dash + b"\r\n" + sig_head + b"\r\n" + (sig_body or b64_lines(der))
            + b"\r\n" + dash + b"--\r\n" + epilogue)


def opaque(der: bytes, content_type: str) -> bytes:
    return (f"Content-Type: {content_type}\r\n".encode() + b"Content-Transfer-Encoding: base64\r\n"
            b'Content-Disposition: attachment; filename="smime.p7m"\r\n\r\n' + b64_lines(der))


def opaque_der(entity: bytes, signer) -> bytes:
    """The DER signed-data (content included) from openssl's application/pkcs7-mime."""
    signed = m.sign(entity, signer, detached=False)
    return base64.b64decode(b"".join(signed.split(b"\r\n\r\n", 1)[1].split()))


def msg(entity: bytes, from_header: str = "alice@example.com",
        to: tuple[str, ...] = ("bob@example.com",), extra=()) -> bytes:
    return m.message(entity, from_header, list(to), extra_headers=extra)


def judge(gw: Gateway, raw: bytes, sender: str = "alice@example.com",
          rcpts: tuple[str, ...] = ("bob@example.com",)):
    return evaluate(gw, raw, sender, list(rcpts))


def codes(verdict) -> set[str]:
    return {str(f.code) for f in verdict.violations}


def assert_accepted(v) -> None:
    assert (v.action, v.violations) == (Action.ACCEPT, []), v.violations
    assert v.structure == "signed(encrypted)"
    assert [(s.email, s.result) for s in v.signers] == [("alice@example.com", "pass")]


def assert_signed_plain(v, signer: str = "alice@example.com") -> None:
    """Signed, verified, not encrypted: strict's only complaint is unencrypted."""
    assert codes(v) == {"unencrypted"}, v.violations
    assert v.structure == "signed(plain)"
    assert [(s.email, s.result) for s in v.signers] == [(signer, "pass")]


def test_surgery_baseline_is_accepted(gw, enc, enc_sig):
    assert_accepted(judge(gw, msg(detached(enc, enc_sig))))


# ------------------------------------------------------------------ Content-Type header shapes

def test_boundary_on_a_folded_continuation_line_with_tabs(gw, enc, enc_sig):
    header = ('Content-Type: multipart/signed;\r\n\tprotocol="application/pkcs7-signature";\r\n'
              '\tmicalg=sha-256;\r\n\tboundary="{b}"')
    assert_accepted(judge(gw, msg(detached(enc, enc_sig, header=header))))


def test_folding_between_parameter_name_and_value(gw, enc, enc_sig):
    header = ('Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256;'
              '\r\n boundary=\r\n "{b}"')
    assert_accepted(judge(gw, msg(detached(enc, enc_sig, header=header))))


def test_mixed_case_type_protocol_and_parameter_names(gw, enc, enc_sig):
    header = ('Content-Type: Multipart/Signed; Protocol="Application/PKCS7-Signature"; '
              'MicAlg=SHA-256; Boundary="{b}"')
    sig_head = (b'Content-Type: Application/PKCS7-Signature; Name="smime.p7s"\r\n'
                b"Content-Transfer-Encoding: BASE64\r\n")
    assert_accepted(judge(gw, msg(detached(enc, enc_sig, header=header, sig_head=sig_head))))


def test_rfc2231_continued_boundary_parameter(gw, enc, enc_sig):
    header = ('Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256;'
              '\r\n boundary*0="{b0}";\r\n boundary*1="{b1}"').replace("{b0}", BOUNDARY[:8]).replace(
                  "{b1}", BOUNDARY[8:])
    assert_accepted(judge(gw, msg(detached(enc, enc_sig, header=header))))


def test_rfc2231_extended_boundary_parameter_is_decoded(gw, enc, enc_sig):
    header = ('Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256;'
              "\r\n boundary*=us-ascii'en'{b}")
    assert_accepted(judge(gw, msg(detached(enc, enc_sig, header=header))))


def test_micalg_absent_still_verifies(gw, enc, enc_sig):
    header = 'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; boundary="{b}"'
    assert_accepted(judge(gw, msg(detached(enc, enc_sig, header=header))))


def test_micalg_sha1_over_a_sha256_signature_still_verifies_and_is_not_weak(gw, enc, enc_sig):
    # micalg is a hint for one-pass hashing (RFC 8551 §3.5.3.2); the SignerInfo decides.
    header = STANDARD_CT.replace("micalg=sha-256", "micalg=sha-1")
    assert_accepted(judge(gw, msg(detached(enc, enc_sig, header=header))))


def test_micalg_unknown_value_still_verifies(gw, enc, enc_sig):
    header = STANDARD_CT.replace("micalg=sha-256", 'micalg="sha-256, unknown-alg"')
    assert_accepted(judge(gw, msg(detached(enc, enc_sig, header=header))))


def test_comment_in_content_type_is_ignored(gw, enc, enc_sig):
    header = ('Content-Type: multipart/signed (signed by Alice); protocol="application/pkcs7-signature"'
              ' (RFC 8551); micalg=sha-256; boundary="{b}"')
    assert_accepted(judge(gw, msg(detached(enc, enc_sig, header=header))))


# ------------------------------------------------------------------ body layout

def test_preamble_and_epilogue_text_are_not_signed_content(gw, enc, enc_sig):
    raw = msg(detached(enc, enc_sig,
                       preamble=b"This is a multi-part message in MIME format.\r\n"
                                b"Your client does not understand S/MIME.\r\n\r\n",
                       epilogue=b"\r\n-- \r\nList footer added by the mailing list\r\n"))
    assert_accepted(judge(gw, raw))


def test_preamble_lines_that_start_like_the_delimiter(gw, enc, enc_sig):
    preamble = f"--{BOUNDARY}x is not a delimiter\r\n--{BOUNDARY}-- neither\r\n\r\n".encode()
    assert_accepted(judge(gw, msg(detached(enc, enc_sig, preamble=preamble))))


def test_no_preamble_at_all(gw, enc, enc_sig):
    assert_accepted(judge(gw, msg(detached(enc, enc_sig, preamble=b""))))


@pytest.mark.parametrize("width", [64, 73, 76, None], ids=["64", "73", "76", "one-line"])
def test_signature_base64_line_width_does_not_matter(gw, enc, enc_sig, width):
    raw = msg(detached(enc, enc_sig, sig_body=b64_lines(enc_sig, width)))
    assert_accepted(judge(gw, raw))


def test_trailing_whitespace_on_signature_base64_lines(gw, enc, enc_sig):
    raw = msg(detached(enc, enc_sig, sig_body=b64_lines(enc_sig, 76, suffix=b" \t ")))
    assert_accepted(judge(gw, raw))


def test_transport_padding_after_delimiters(gw, enc, enc_sig):
    # RFC 2046 §5.1.1: a delimiter line may end in linear whitespace
    raw = detached(enc, enc_sig).replace(f"--{BOUNDARY}\r\n".encode(), f"--{BOUNDARY}  \r\n".encode())
    assert_accepted(judge(gw, msg(raw)))


def test_boundary_with_every_rfc2046_special_character(gw, enc, enc_sig):
    # bcharsnospace: ' ( ) + _ , - . / : = ? and inner spaces (RFC 2046 §5.1.1)
    raw = msg(detached(enc, enc_sig, boundary="=_(a+b)?.c:d/e'f,g h"))
    assert_accepted(judge(gw, raw))


def test_signature_part_in_binary_transfer_encoding(gw, enc, enc_sig):
    sig_head = SIGNATURE_CT + b"\r\nContent-Transfer-Encoding: binary\r\n"
    assert_accepted(judge(gw, msg(detached(enc, enc_sig, sig_head=sig_head, sig_body=enc_sig))))


def test_quoted_printable_text_under_a_detached_signature(gw, pki):
    content = (b"Content-Type: text/plain; charset=utf-8\r\n"
               b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
               b"Gr=C3=BC=C3=9Fe aus M=C3=BCnchen, this line is long enough to need a soft =\r\n"
               b"line break, and ends in a space=20\r\n")
    v = judge(gw, msg(detached(content, signature_der(content, pki["alice"]))))
    assert_signed_plain(v)


def test_multipart_alternative_content_with_html(gw, pki):
    content = (b'Content-Type: multipart/alternative; boundary="alt-1"\r\n\r\n'
               b"--alt-1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nHello\r\n"
               b"--alt-1\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n<p>Hello</p>\r\n"
               b"--alt-1--\r\n")
    v = judge(gw, msg(detached(content, signature_der(content, pki["alice"]))))
    assert_signed_plain(v)


# ------------------------------------------------------------------ storage shapes

def test_mbox_from_line_in_front(gw, enc, enc_sig):
    raw = b"From alice@example.com  Thu Nov 20 10:00:00 2025\r\n" + msg(detached(enc, enc_sig))
    assert_accepted(judge(gw, raw))


def test_mbox_from_line_and_lf_line_ends(gw, enc, enc_sig):
    raw = b"From alice@example.com  Thu Nov 20 10:00:00 2025\n" + m.to_lf(msg(detached(enc, enc_sig)))
    assert_accepted(judge(gw, raw))


def test_lf_line_ends_throughout_detached_text(gw, pki):
    # the signed text itself lost its CRs: RFC 8551 §3.1.1 canonical CRLF restores the digest
    raw = m.to_lf(msg(detached(BODY, signature_der(BODY, pki["alice"]))))
    assert b"\r" not in raw
    assert_signed_plain(judge(gw, raw))


def test_lf_line_ends_throughout_opaque_text(gw, pki):
    raw = m.to_lf(msg(m.sign(BODY, pki["alice"], detached=False)))
    assert b"\r" not in raw
    assert_signed_plain(judge(gw, raw))


def test_lf_line_ends_throughout_encrypt_then_sign(gw, enc, enc_sig):
    assert_accepted(judge(gw, m.to_lf(msg(detached(enc, enc_sig)))))


def test_mixed_line_ends_across_the_hashing_chunk_boundary(gw, pki):
    # A 2 MiB text whose CRLF straddles the 1 MiB read boundary of the canonical pass, and
    # one line further on that lost its CR in transit (which forces that pass).
    head = b"Content-Type: text/plain\r\n\r\n"
    line = b"x" * 98 + b"\r\n"
    lines, pad = divmod(CHUNK - 1 - len(head), len(line))
    content = head + line * lines + b"y" * pad + b"\r\n" + line * 10_000 + b"tail\r\nend\r\n"
    assert content[CHUNK - 1:CHUNK + 1] == b"\r\n"
    raw = msg(detached(content, signature_der(content, pki["alice"])))
    assert_signed_plain(judge(gw, raw.replace(b"tail\r\n", b"tail\n")))


# ------------------------------------------------------------------ client dialects

def test_wrapped_message_rfc822_inside_the_signature(gw, pki):
    # header protection, RFC 8551 §3.1: the whole message, headers and all, is the signed part
    inner = m.message(BODY, "alice@example.com", ["bob@example.com"], subject="Quarterly figures")
    content = b"Content-Type: message/rfc822; forwarded=no\r\n\r\n" + inner
    v = judge(gw, msg(detached(content, signature_der(content, pki["alice"]))))
    assert_signed_plain(v)


def test_outlook_x_pkcs7_signature_detached(gw, enc, enc_sig):
    header = ('Content-Type: multipart/signed;\r\n\tprotocol="application/x-pkcs7-signature";'
              '\r\n\tmicalg=SHA1;\r\n\tboundary="{b}"')  # Outlook 2010 wrote SHA1 whatever it used
    sig_head = (b'Content-Type: application/x-pkcs7-signature;\r\n\tname="smime.p7s"\r\n'
                b"Content-Transfer-Encoding: base64\r\n"
                b'Content-Disposition: attachment;\r\n\tfilename="smime.p7s"\r\n')
    raw = msg(detached(enc, enc_sig, header=header, sig_head=sig_head,
                       preamble=b"This is a multipart message in MIME format.\r\n\r\n"))
    assert_accepted(judge(gw, raw))


def test_outlook_x_pkcs7_mime_opaque_signed_without_smime_type(gw, pki, enc):
    entity = opaque(opaque_der(enc, pki["alice"]), 'application/x-pkcs7-mime; name=smime.p7m')
    assert_accepted(judge(gw, msg(entity)))


def test_quoted_mixed_case_smime_type_value(gw, enc):
    v = judge(gw, msg(enc.replace(b"smime-type=enveloped-data", b'smime-type="Enveloped-Data"')))
    assert codes(v) == {"signature-hidden"}
    assert v.structure == "encrypted"


def test_outlook_x_pkcs7_mime_enveloped_without_smime_type_is_signature_hidden(gw, enc):
    head, _, body = enc.partition(b"\r\n\r\n")
    head = re.sub(rb"Content-Type: [^\r]*", b"Content-Type: application/x-pkcs7-mime; name=smime.p7m",
                  head)
    v = judge(gw, msg(head + b"\r\n\r\n" + body))
    assert codes(v) == {"signature-hidden"}
    assert v.structure == "encrypted"
    assert [(r.address, r.covered) for r in v.recipients] == [("bob@example.com", True)]


def test_apple_mail_layout(gw, enc, enc_sig):
    boundary = "Apple-Mail=_0D1B2C3A-4E5F-4A6B-8C7D-9E0F1A2B3C4D"
    header = ("Mime-Version: 1.0 (Mac OS X Mail 16.0 \\(3731.500.231\\))\r\n"
              'Content-Type: multipart/signed;\r\n\tboundary="{b}";\r\n'
              '\tprotocol="application/pkcs7-signature";\r\n\tmicalg=sha-256')
    sig_head = (b"Content-Disposition: attachment;\r\n\tfilename=smime.p7s\r\n"
                b"Content-Type: application/pkcs7-signature;\r\n\tname=smime.p7s\r\n"
                b"Content-Transfer-Encoding: base64\r\n")
    raw = msg(detached(enc, enc_sig, header=header, boundary=boundary, sig_head=sig_head,
                       preamble=b"\r\n"))
    assert raw.count(b"\r\nMime-Version:") + raw.count(b"\r\nMIME-Version:") == 1
    assert_accepted(judge(gw, raw))


# ------------------------------------------------------------------ From: and recipients

def test_from_with_display_name_angle_brackets_and_mixed_case(gw, enc, enc_sig):
    raw = msg(detached(enc, enc_sig), from_header='"Example, Alice" <Alice@Example.COM>')
    assert_accepted(judge(gw, raw))


def test_from_with_encoded_word_display_name(gw, enc, enc_sig):
    raw = msg(detached(enc, enc_sig), from_header="=?UTF-8?B?w4RsaWNlIMOWeGFtcGxl?= <alice@example.com>")
    assert_accepted(judge(gw, raw))


def test_display_name_that_looks_like_another_address_does_not_count(gw, enc, enc_sig):
    # the addr-spec is alice's: a display name is never the sender
    raw = msg(detached(enc, enc_sig), from_header='"bob@example.com" <alice@example.com>')
    assert_accepted(judge(gw, raw))


def test_signer_other_than_the_from_address_behind_a_display_name(gw, pki, enc):
    raw = msg(detached(enc, signature_der(enc, pki["alice"])),
              from_header='"Alice" <bob@example.com>')
    v = judge(gw, raw, sender="bob@example.com")
    assert codes(v) == {"signer-not-sender"}


def test_check_without_envelope_takes_recipients_from_to_and_cc(gw, pki):
    entity = m.triple_wrap(BODY, pki["alice"], [pki["bob"], pki["grace"], pki["alice"]])
    raw = m.message(entity, '"Alice" <Alice@example.com>', ['"Bob B." <bob@example.com>',
                                                            "Grace <GRACE@example.com>"],
                    extra_headers=[("Cc", "alice@example.com")])
    v = gw.evaluate(io.BytesIO(raw))
    assert (v.action, v.rule, v.violations) == (Action.ACCEPT, "internal", [])
    assert [(r.address, r.covered) for r in v.recipients] == [
        ("bob@example.com", True), ("grace@example.com", True), ("alice@example.com", True)]


def test_from_with_a_trailing_comment(gw, enc, enc_sig):
    assert_accepted(judge(gw, msg(detached(enc, enc_sig), from_header="alice@example.com (Alice Example)")))


def test_second_from_header_naming_someone_else_is_not_accepted(gw, pki):
    entity = m.triple_wrap(BODY, pki["bob"], [pki["alice"], pki["bob"]])
    raw = m.message(entity, "bob@example.com", ["alice@example.com"],
                    extra_headers=[("From", "grace@example.com")])
    v = judge(gw, raw, sender="bob@example.com", rcpts=("alice@example.com",))
    assert codes(v) == {"malformed"}
    assert v.action is Action.REJECT


def test_check_without_envelope_reads_group_syntax_in_to(gw, pki):
    entity = m.triple_wrap(BODY, pki["alice"], [pki["bob"], pki["grace"], pki["alice"]])
    raw = m.message(entity, "alice@example.com", ["Team: bob@example.com, Grace <grace@example.com>;"])
    v = gw.evaluate(io.BytesIO(raw))
    assert (v.action, v.violations) == (Action.ACCEPT, [])
    assert [(r.address, r.covered) for r in v.recipients] == [
        ("bob@example.com", True), ("grace@example.com", True)]


def test_check_without_envelope_finds_an_uncovered_cc_recipient(gw, pki):
    entity = m.triple_wrap(BODY, pki["alice"], [pki["bob"], pki["alice"]])
    raw = m.message(entity, "alice@example.com", ["bob@example.com"],
                    extra_headers=[("Cc", '"Grace Hopper" <grace@example.com>,\r\n nina@example.com')])
    v = gw.evaluate(io.BytesIO(raw))
    assert codes(v) == {"recipient-not-covered"}
    assert [(r.address, r.covered) for r in v.recipients] == [
        ("bob@example.com", True), ("grace@example.com", False), ("nina@example.com", False)]


# ------------------------------------------------------------------ adversarial

def test_boundary_parameter_given_twice_is_malformed(gw, enc, enc_sig):
    header = STANDARD_CT + '; boundary="other-boundary"'
    v = judge(gw, msg(detached(enc, enc_sig, header=header)))
    assert codes(v) == {"malformed"}
    assert v.action is Action.REJECT


def test_inner_multipart_reusing_the_outer_boundary_does_not_verify(gw, pki):
    # The signed content is a multipart/mixed with the same boundary as multipart/signed:
    # its first delimiter ends the signed part early, and its text part becomes the
    # "signature" part. No signature can be checked, so the message must not pass.
    content = (f'Content-Type: multipart/mixed; boundary="{BOUNDARY}"\r\n\r\n'
               f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nHello\r\n"
               f"--{BOUNDARY}--\r\n").encode()
    v = judge(gw, msg(detached(content, signature_der(content, pki["alice"]))))
    assert codes(v) == {"malformed", "unencrypted"}
    assert v.signers == []
    assert v.action is Action.REJECT


def test_content_line_that_starts_with_the_boundary_is_not_a_delimiter(gw, pki):
    content = (f"Content-Type: text/plain\r\n\r\n--{BOUNDARY}extra is just text\r\n"
               f"--{BOUNDARY}-x also text\r\n --{BOUNDARY}\r\n").encode()
    v = judge(gw, msg(detached(content, signature_der(content, pki["alice"]))))
    assert_signed_plain(v)


def test_signature_over_different_content_is_bad_signature(gw, pki, enc):
    other = m.encrypt(BODY, [pki["bob"], pki["alice"]])  # same recipients, new content key
    v = judge(gw, msg(detached(enc, signature_der(other, pki["alice"]))))
    assert codes(v) == {"bad-signature"}
    assert v.auth_result is AuthResult.FAIL
    assert v.signers[0].result == "bad-signature"


def test_signature_moved_onto_other_plain_text_is_bad_signature(gw, pki):
    sig = signature_der(m.text_entity("I owe Bob 10 EUR.\r\n"), pki["alice"])
    v = judge(gw, msg(detached(m.text_entity("I owe Bob 10000 EUR.\r\n"), sig)))
    assert codes(v) == {"bad-signature", "unencrypted"}


def test_content_with_crlf_to_lf_and_trailing_spaces_stripped_is_bad_signature(gw, pki):
    # A relay that rewrites line ends AND strips trailing whitespace changes the text:
    # canonicalisation restores CRLF (RFC 8551 §3.1.1) but not the removed spaces, and
    # S/MIME has no relaxed canonicalisation, so the digest differs. bad-signature is
    # the honest answer (RFC 8551 §3.1.1 tells senders to protect such text with QP).
    content = m.text_entity("Total:   42  \r\nSigned,  \r\nAlice\r\n")
    raw = msg(detached(content, signature_der(content, pki["alice"])))
    mangled = re.sub(rb"[ \t]+\n", b"\n", m.to_lf(raw))
    assert mangled != m.to_lf(raw)
    v = judge(gw, mangled)
    assert codes(v) == {"bad-signature", "unencrypted"}
    assert v.auth_result is AuthResult.FAIL


def test_mbox_from_quoting_inside_signed_text_is_bad_signature(gw, pki):
    # an mbox writer turned "From " at a line start into ">From ": the signed text changed
    content = m.text_entity("Hello\r\nFrom here on, all is signed.\r\n")
    raw = msg(detached(content, signature_der(content, pki["alice"])))
    v = judge(gw, raw.replace(b"\r\nFrom here", b"\r\n>From here"))
    assert codes(v) == {"bad-signature", "unencrypted"}


def test_signature_part_that_is_not_base64_is_malformed(gw, enc):
    raw = msg(detached(enc, b"", sig_body=b"This is not base64 at all!\r\n"))
    v = judge(gw, raw)
    assert codes(v) == {"malformed"}
