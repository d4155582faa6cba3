"""S/MIME entities around CMS (RFC 8551 §3): multipart/signed and application/pkcs7-mime.

A message is split into its RFC 5322 header fields (kept raw, folding and
all) and its MIME entity (the Content-* fields and the body). Signing and
encryption work on the entity; the outer header fields (From, To, Subject...)
go in front of the result. Everything is CRLF: RFC 8551 §3.1.1 canonical form.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass

from .errors import EndpointError

_CONTENT_FIELDS = re.compile(rb"^content-", re.IGNORECASE)
_MICALG = {"sha256": "sha-256", "sha384": "sha-384", "sha512": "sha-512"}


def to_crlf(data: bytes) -> bytes:
    """Every line end as CRLF (a message from a Unix MUA or file has bare LF)."""
    if data.count(b"\n") == data.count(b"\r\n"):
        return data  # already canonical: the common case, and 50x cheaper than rewriting
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@dataclass
class Split:
    fields: list[tuple[str, bytes]]  # (lower-case name, the raw field with its CRLFs)
    body: bytes

    def header(self, name: str) -> list[str]:
        lname = name.lower()
        out = []
        for fname, raw in self.fields:
            if fname == lname:
                value = raw.split(b":", 1)[1]
                out.append(re.sub(rb"\r\n[ \t]", b" ", value).strip().decode("utf-8", "replace"))
        return out

    def raw_fields(self, *, content: bool) -> bytes:
        """The Content-* fields (``content=True``) or all the others, MIME-Version left out."""
        out = b""
        for name, raw in self.fields:
            if name == "mime-version":
                continue
            if bool(_CONTENT_FIELDS.match(name.encode())) == content:
                out += raw
        return out

    def without(self, *names: str) -> Split:
        drop = {n.lower() for n in names}
        return Split([(n, r) for n, r in self.fields if n not in drop], self.body)


def split_message(data: bytes) -> Split:
    """Header fields and body of an RFC 5322 message (CRLF-normalised)."""
    data = to_crlf(data)
    if data.startswith(b"From "):  # an mbox separator line
        data = data.split(b"\r\n", 1)[1] if b"\r\n" in data else b""
    end = data.find(b"\r\n\r\n")
    if data.startswith(b"\r\n"):
        head, body = b"", data[2:]
    elif end < 0:
        head, body = data, b""
    else:
        head, body = data[:end + 2], data[end + 4:]
    fields: list[tuple[str, bytes]] = []
    for line in head.split(b"\r\n")[:-1] if head else []:
        if line[:1] in (b" ", b"\t") and fields:
            last, raw = fields[-1]
            fields[-1] = (last, raw + line + b"\r\n")
            continue
        name, colon, _ = line.partition(b":")
        if not colon or not name.strip() or b" " in name.strip():
            raise EndpointError(f"the message header has a line that is not a header field: "
                                f"{line[:60].decode('utf-8', 'replace')!r}")
        fields.append((name.strip().decode("ascii", "replace").lower(), line + b"\r\n"))
    return Split(fields, body)


def entity_of(split: Split) -> bytes:
    """The MIME entity to protect: Content-* fields and body (text/plain when untyped)."""
    content = split.raw_fields(content=True)
    if not content:
        content = b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
    return content + b"\r\n" + split.body


def _b64_lines(der: bytes) -> bytes:
    text = base64.b64encode(der)
    return b"".join(text[i:i + 76] + b"\r\n" for i in range(0, len(text), 76))


def pkcs7_mime(der: bytes, smime_type: str) -> bytes:
    """application/pkcs7-mime entity (RFC 8551 §3.2), base64."""
    return (f'Content-Type: application/pkcs7-mime; smime-type={smime_type}; name="smime.p7m"\r\n'
            'Content-Transfer-Encoding: base64\r\n'
            'Content-Disposition: attachment; filename="smime.p7m"\r\n\r\n').encode() + _b64_lines(der)


def multipart_signed(entity: bytes, signature_der: bytes, hash_name: str) -> bytes:
    """multipart/signed (RFC 1847, RFC 8551 §3.5) around ``entity`` with a detached signature."""
    boundary = "----sealgate-" + os.urandom(12).hex()
    if boundary.encode() in entity:  # vanishingly unlikely; never produce an ambiguous part
        return multipart_signed(entity, signature_der, hash_name)
    head = (f'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; '
            f'micalg={_MICALG[hash_name]}; boundary="{boundary}"\r\n\r\n'
            f"This is an S/MIME signed message.\r\n\r\n--{boundary}\r\n").encode()
    sig_part = (f"\r\n--{boundary}\r\n"
                'Content-Type: application/pkcs7-signature; name="smime.p7s"\r\n'
                'Content-Transfer-Encoding: base64\r\n'
                'Content-Disposition: attachment; filename="smime.p7s"\r\n\r\n').encode()
    return head + entity + sig_part + _b64_lines(signature_der) + f"\r\n--{boundary}--\r\n".encode()


def with_headers(outer_fields: bytes, entity: bytes) -> bytes:
    """An RFC 5322 message: the outer fields, MIME-Version, then the entity."""
    return outer_fields + b"MIME-Version: 1.0\r\n" + entity
