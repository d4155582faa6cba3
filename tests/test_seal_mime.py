"""The MIME pieces of seal (pure functions): splitting a message, signed entities, CRLF."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sealgate.endpoint.errors import EndpointError
from sealgate.endpoint.mimewrap import entity_of, multipart_signed, split_message, to_crlf
from sealgate.endpoint.open import _first_part


def test_split_keeps_folded_fields_raw_and_separates_content_fields() -> None:
    raw = (b"From: Alice <alice@example.com>\nTo: bob@example.com,\n\tcarol@example.com\n"
           b"Subject: x\nMIME-Version: 1.0\nContent-Type: text/plain;\n charset=utf-8\n\nbody\n")
    split = split_message(raw)
    assert split.header("To") == ["bob@example.com, carol@example.com"]
    assert split.raw_fields(content=False) == (b"From: Alice <alice@example.com>\r\nTo: bob@example.com,"
                                               b"\r\n\tcarol@example.com\r\nSubject: x\r\n")
    assert entity_of(split) == b"Content-Type: text/plain;\r\n charset=utf-8\r\n\r\nbody\r\n"


def test_untyped_body_becomes_text_plain_and_mbox_line_is_dropped() -> None:
    split = split_message(b"From alice@example.com Wed Nov 25 19:00:00 2026\nFrom: a@example.com\n\nhi\n")
    assert split.header("From") == ["a@example.com"]
    assert entity_of(split).startswith(b"Content-Type: text/plain; charset=utf-8\r\n")


def test_a_header_line_that_is_not_a_field_is_an_error() -> None:
    with pytest.raises(EndpointError, match="not a header field"):
        split_message(b"From: a@example.com\nthis is not a header\n\nbody")


@given(st.binary(max_size=300))
def test_to_crlf_leaves_no_bare_line_feed(data: bytes) -> None:
    out = to_crlf(data)
    assert out.count(b"\n") == out.count(b"\r\n")
    assert to_crlf(out) == out


@given(st.binary(max_size=500).map(lambda b: to_crlf(b) + b"\r\n"))
def test_signed_part_comes_back_byte_exact(entity: bytes) -> None:
    signed = split_message(multipart_signed(entity, b"\x30\x00", "sha256"))
    boundary = signed.header("Content-Type")[0].split('boundary="')[1].rstrip('"')
    assert _first_part(signed, boundary) == entity


def test_delimiter_line_may_end_in_white_space() -> None:
    entity = b"Content-Type: text/plain\r\n\r\nsigned\r\n"
    body = b"preamble\r\n--b1 \t\r\n" + entity + b"\r\n--b1\r\nContent-Type: x\r\n\r\nsig\r\n--b1--\r\n"
    signed = split_message(b'Content-Type: multipart/signed; boundary="b1"\r\n\r\n' + body)
    assert _first_part(signed, "b1") == entity
