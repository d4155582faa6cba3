"""Test and demo messages made by an independent producer: ``openssl cms``.

Every function takes and returns a MIME entity as bytes (headers, blank line,
body, CRLF line ends); :func:`message` puts RFC 5322 headers in front. Only
compressed-data is built here with asn1crypto + zlib, because Debian's
OpenSSL is built without zlib (``openssl cms -compress`` fails there).
"""

from __future__ import annotations

import base64
import email.utils
import os
import re
import subprocess
import tempfile
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

from asn1crypto import cms
from cryptography.hazmat.primitives import hashes

from .devpki import Identity

OPENSSL = os.environ.get("SEALGATE_OPENSSL", "openssl")


def text_entity(body: str = "Hello,\r\n\r\nthe quarterly figures are attached.\r\n",
                content_type: str = "text/plain; charset=utf-8") -> bytes:
    body = body.replace("\r\n", "\n").replace("\n", "\r\n")
    return f"Content-Type: {content_type}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n".encode() + body.encode()


def binary_attachment(size: int) -> bytes:
    """An application/octet-stream entity of ``size`` raw bytes, base64 in CRLF lines."""
    block = bytes(range(256)) * 4096
    content = (block * (size // len(block) + 1))[:size]
    return (b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + base64.encodebytes(content).replace(b"\n", b"\r\n"))


def message(entity: bytes, sender: str, recipients: Sequence[str], subject: str = "Test",
            extra_headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """Prefix an entity with From/To/Subject/Date/Message-ID (and MIME-Version if absent)."""
    head = [
        ("From", sender),
        ("To", ", ".join(recipients)),
        ("Subject", subject),
        ("Date", email.utils.formatdate(localtime=False)),
        ("Message-ID", email.utils.make_msgid(domain=sender.rpartition("@")[2] or "localhost")),
        *extra_headers,
    ]
    entity_head = b"\n" + entity.lower().split(b"\r\n\r\n", 1)[0]
    if b"\nmime-version:" not in entity_head:
        head.append(("MIME-Version", "1.0"))
    return "".join(f"{k}: {v}\r\n" for k, v in head).encode() + entity


def run_openssl(args: list[str], data: bytes) -> bytes:
    """``openssl ARGS -in FILE`` with ``data`` in a temporary file; stdout, or RuntimeError."""
    with tempfile.TemporaryDirectory(prefix="sealgate-openssl-") as tmp:
        src = Path(tmp) / "in"
        src.write_bytes(data)
        proc = subprocess.run([OPENSSL, *args, "-in", str(src)], capture_output=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {proc.stderr.decode(errors='replace')}")
        return proc.stdout


def _strip_mime_version(entity: bytes) -> bytes:
    # openssl leaves LF in its base64 lines even with -crlfeol; a mail client
    # would send CRLF throughout (RFC 5322 §2.3). Signed bytes are CRLF already.
    entity = re.sub(rb"(?<!\r)\n", b"\r\n", entity)
    # openssl writes MIME-Version: 1.0 as the first header; message() adds its own.
    if entity.startswith(b"MIME-Version: 1.0\r\n"):
        return entity[len(b"MIME-Version: 1.0\r\n"):]
    return entity


def sign(entity: bytes, signer: Identity, *, detached: bool = True, md: str = "sha256",
         include_certs: bool = True, pss: bool = False, keyid: bool = False,
         extra_signers: Sequence[Identity] = ()) -> bytes:
    """``openssl cms -sign``: multipart/signed (detached) or opaque signed-data."""
    args = ["cms", "-sign", "-binary", "-crlfeol", "-md", md, "-outform", "SMIME",
            "-signer", str(signer.cert_path), "-inkey", str(signer.key_path)]
    if pss:
        args += ["-keyopt", "rsa_padding_mode:pss"]
    for extra in extra_signers:
        args += ["-signer", str(extra.cert_path), "-inkey", str(extra.key_path)]
    if not detached:
        args.append("-nodetach")
    if not include_certs:
        args.append("-nocerts")
    if keyid:  # SignerIdentifier by subject key identifier, not issuer+serial
        args.append("-keyid")
    return _strip_mime_version(run_openssl(args, entity))


def encrypt(entity: bytes, recipients: Sequence[Identity | Path], *, cipher: str = "aes-256-cbc",
            oaep: bool = False, keyid: bool = False) -> bytes:
    """``openssl cms -encrypt``: enveloped-data, or authEnveloped-data for *-gcm ciphers."""
    args = ["cms", "-encrypt", "-binary", "-crlfeol", f"-{cipher}", "-outform", "SMIME"]
    if keyid:  # RecipientIdentifier by subject key identifier
        args.append("-keyid")
    for rcpt in recipients:
        path = rcpt.cert_path if isinstance(rcpt, Identity) else rcpt
        args += ["-recip", str(path)]
        if oaep:
            args += ["-keyopt", "rsa_padding_mode:oaep"]
    return _strip_mime_version(run_openssl(args, entity))


def gpgsm_encrypt(entity: bytes, recipients: Sequence[Identity], ca: Identity) -> bytes:
    """``gpgsm --encrypt`` (GnuPG's S/MIME, BER with indefinite lengths) in a throwaway home.

    The CA is marked trusted in the home's trustlist; CRL checks are off there
    because gpgsm would fetch them through dirmngr.
    """
    with tempfile.TemporaryDirectory(prefix="sealgate-gpgsm-") as tmp:
        home = Path(tmp)
        home.chmod(0o700)
        env = {**os.environ, "GNUPGHOME": str(home)}
        fpr = ca.cert.fingerprint(hashes.SHA1()).hex(":").upper()  # noqa: S303 - gpgsm's id
        (home / "trustlist.txt").write_text(f"{fpr} S relax\n")
        (home / "gpgsm.conf").write_text("disable-crl-checks\n")
        certs = [str(ca.cert_path), *(str(r.cert_path) for r in recipients)]
        try:
            subprocess.run(["gpgsm", "--batch", "--import", *certs], env=env, check=True,
                           capture_output=True)
            src = home / "in"
            src.write_bytes(entity)
            args = ["gpgsm", "--batch", "--base64", "--encrypt"]
            for r in recipients:
                args += ["-r", r.email]
            proc = subprocess.run([*args, str(src)], env=env, capture_output=True, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"gpgsm --encrypt failed: {proc.stderr.decode(errors='replace')}")
        finally:
            subprocess.run(["gpgconf", "--kill", "all"], env=env, capture_output=True, check=False)
    b64 = re.sub(rb"(?<!\r)\n", b"\r\n", proc.stdout)
    return (b'Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"\r\n'
            b'Content-Transfer-Encoding: base64\r\n'
            b'Content-Disposition: attachment; filename="smime.p7m"\r\n\r\n' + b64)


def triple_wrap(entity: bytes, signer: Identity, recipients: Sequence[Identity | Path],
                **encrypt_opts) -> bytes:
    """RFC 2634 §1.1 triple wrap: sign, encrypt, sign again (outer detached)."""
    return sign(encrypt(sign(entity, signer), recipients, **encrypt_opts), signer)


def compress(entity: bytes) -> bytes:
    """RFC 3274 compressed-data (zlib), as application/pkcs7-mime."""
    info = cms.ContentInfo({
        "content_type": "compressed_data",
        "content": cms.CompressedData({
            "version": "v0",
            "compression_algorithm": {"algorithm": "zlib"},
            "encap_content_info": {"content_type": "data",
                                   "content": zlib.compress(entity)},
        }),
    })
    b64 = base64.encodebytes(info.dump()).replace(b"\n", b"\r\n")
    return (b'Content-Type: application/pkcs7-mime; smime-type=compressed-data; name="smime.p7z"\r\n'
            b'Content-Transfer-Encoding: base64\r\n'
            b'Content-Disposition: attachment; filename="smime.p7z"\r\n\r\n' + b64)


def to_lf(data: bytes) -> bytes:
    """The same message as stored by a Unix MTA: LF line ends."""
    return data.replace(b"\r\n", b"\n")
