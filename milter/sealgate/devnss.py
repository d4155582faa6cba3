"""Test messages made by a second independent producer: NSS, the library Thunderbird uses.

Like :mod:`sealgate.devmail`, every function takes and returns a MIME entity as
bytes (CRLF line ends); ``devmail.message`` puts RFC 5322 headers in front.
The CMS comes from ``cmsutil`` (Debian's ``libnss3-tools``); the MIME around
it is written the way Thunderbird writes it (``mailnews/extensions/smime``):
a folded multipart/signed header, the "This is a cryptographically signed
message" preamble, a ``------------ms`` boundary and an ``smime.p7s`` part in
76-character base64 lines.

Each call works in a throwaway NSS database (a temporary folder, removed
afterwards) holding the CA as a trusted S/MIME anchor, the signer's key and
certificate imported from a PKCS #12 file, and the recipients' certificates.
Passwords only ever travel in files (``pk12util -w/-k``, ``cmsutil -f``),
never in argv, where ``ps`` would show them.
"""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, pkcs12

from .devpki import Identity

CMSUTIL = os.environ.get("SEALGATE_CMSUTIL", "cmsutil")
CERTUTIL = os.environ.get("SEALGATE_CERTUTIL", "certutil")
PK12UTIL = os.environ.get("SEALGATE_PK12UTIL", "pk12util")
TIMEOUT = 60  # seconds; NSS never prompts (stdin is /dev/null), so this only guards a hang

# cmsutil -H names -> micalg values (RFC 8551 §3.5.3.2)
MICALG = {"SHA1": "sha-1", "SHA256": "sha-256", "SHA384": "sha-384", "SHA512": "sha-512"}

PREAMBLE = b"This is a cryptographically signed message in MIME format.\r\n"


def missing_tools() -> list[str]:
    """The NSS command-line tools not found on PATH (empty: all there)."""
    return [tool for tool in (CMSUTIL, CERTUTIL, PK12UTIL) if shutil.which(tool) is None]


class NssDatabase:
    """A throwaway NSS certificate and key database (``sql:`` format, empty password)."""

    def __init__(self, folder: Path, anchors: Sequence[Identity]) -> None:
        self.folder = folder
        self.db = folder / "db"
        self.db.mkdir(mode=0o700)
        self.dbpass = folder / "db.pass"  # the (empty) database password, as a file
        _write_private(self.dbpass, b"")
        self.spec = f"sql:{self.db}"
        self.nicknames: dict[bytes, str] = {}  # certificate DER -> nickname
        self._run(CERTUTIL, ["-N", "--empty-password"])
        for i, ca in enumerate(anchors):
            # CT,C,C: a trusted CA for SSL (C + T: client auth), S/MIME and code signing
            self._import_cert(ca, f"ca{i}-{ca.name}", "CT,C,C")

    def _run(self, tool: str, args: list[str], data: bytes | None = None) -> bytes:
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found on PATH: install Debian's libnss3-tools")
        with tempfile.TemporaryDirectory(prefix="io-", dir=self.folder) as io_dir:
            argv = [tool, *args, "-d", self.spec]
            out = Path(io_dir) / "out"
            if data is not None:
                src = Path(io_dir) / "in"
                src.write_bytes(data)
                argv += ["-i", str(src), "-o", str(out)]
            proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,  # noqa: S603
                                  check=False, timeout=TIMEOUT)
            if proc.returncode != 0:
                raise RuntimeError(f"{tool} {' '.join(args[:1])} failed (exit {proc.returncode}): "
                                   f"{(proc.stderr or proc.stdout).decode(errors='replace').strip()}")
            return out.read_bytes() if data is not None else proc.stdout

    def _import_cert(self, ident: Identity, nickname: str, trust: str) -> str:
        pem = self.folder / f"{nickname}.pem"
        pem.write_bytes(ident.cert_path.read_bytes())
        self._run(CERTUTIL, ["-A", "-n", nickname, "-t", trust, "-i", str(pem)])
        self.nicknames[ident.cert_path.read_bytes()] = nickname
        return nickname

    def add_peer(self, ident: Identity) -> str:
        """A correspondent's certificate (no key): someone to encrypt to."""
        known = self.nicknames.get(ident.cert_path.read_bytes())
        return known or self._import_cert(ident, ident.name, ",,")

    def add_user(self, ident: Identity) -> str:
        """The user's key and certificate, imported from PKCS #12 as Thunderbird's users do."""
        known = self.nicknames.get(ident.cert_path.read_bytes())
        if known is not None:
            return known
        password = secrets.token_hex(16).encode()
        p12 = self.folder / f"{ident.name}.p12"
        p12pass = self.folder / f"{ident.name}.p12.pass"
        _write_private(p12pass, password)
        _write_private(p12, pkcs12.serialize_key_and_certificates(
            ident.name.encode(), ident.key, ident.cert, None, BestAvailableEncryption(password)))
        self._run(PK12UTIL, ["-i", str(p12), "-w", str(p12pass), "-k", str(self.dbpass)])
        self.nicknames[ident.cert_path.read_bytes()] = ident.name  # the PKCS #12 friendlyName
        return ident.name

    def sign_cms(self, content: bytes, signer: Identity, *, detached: bool,
                 md: str = "SHA256", key_preference: bool = True) -> bytes:
        """DER signed-data by ``cmsutil -S`` with Thunderbird's signed attributes.

        -G signingTime, -P SMIMECapabilities, -Y the encryption key preference,
        all of which Thunderbird sends. ``-Y`` adds two attributes, RFC 8551
        §2.5.3 id-aa-encrypKeyPref and Microsoft's 1.3.6.1.4.1.311.16.4 (an
        IssuerAndSerialNumber), and a second copy of the signer's certificate;
        ``key_preference=False`` (``-Y NONE``) leaves all three out.
        """
        nick = self.add_user(signer)
        args = ["-S", "-N", nick, "-H", md, "-G", "-P", "-Y", nick if key_preference else "NONE",
                "-f", str(self.dbpass)]
        if detached:
            args.append("-T")
        return self._run(CMSUTIL, args, content)

    def encrypt_cms(self, content: bytes, recipients: Sequence[Identity]) -> bytes:
        """DER enveloped-data by ``cmsutil -E``, recipients looked up by address like Thunderbird."""
        for rcpt in recipients:
            self.add_peer(rcpt)
        addresses = ",".join(r.email for r in recipients)
        return self._run(CMSUTIL, ["-E", "-r", addresses, "-f", str(self.dbpass)], content)


@contextmanager
def nss_database(anchors: Sequence[Identity]) -> Iterator[NssDatabase]:
    """An NSS database trusting ``anchors``; its folder (keys included) is removed on exit."""
    with tempfile.TemporaryDirectory(prefix="sealgate-nss-") as tmp:
        folder = Path(tmp)
        folder.chmod(0o700)
        yield NssDatabase(folder, anchors)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _base64_lines(der: bytes, width: int = 76) -> bytes:
    text = base64.b64encode(der)
    return b"".join(text[i:i + width] + b"\r\n" for i in range(0, len(text), width))


def thunderbird_boundary() -> str:
    # Thunderbird: "------------ms" followed by 24 random digits
    return "------------ms" + "".join(secrets.choice("0123456789") for _ in range(24))


def multipart_signed(entity: bytes, signature: bytes, *, micalg: str = "sha-256",
                     boundary: str | None = None) -> bytes:
    """A detached signature put around ``entity`` exactly as Thunderbird lays it out."""
    boundary = boundary or thunderbird_boundary()
    dash = b"--" + boundary.encode()
    return (
        b'Content-Type: multipart/signed; protocol="application/pkcs7-signature";\r\n'
        b" micalg=" + micalg.encode() + b'; boundary="' + boundary.encode() + b'"\r\n'
        b"\r\n" + PREAMBLE + b"\r\n"
        + dash + b"\r\n" + entity + b"\r\n"
        + dash + b"\r\n"
        b'Content-Type: application/pkcs7-signature; name="smime.p7s"\r\n'
        b"Content-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="smime.p7s"\r\n'
        b"Content-Description: S/MIME Cryptographic Signature\r\n"
        b"\r\n" + _base64_lines(signature)
        + b"\r\n" + dash + b"--\r\n\r\n"
    )


def pkcs7_mime(der: bytes, smime_type: str, description: str) -> bytes:
    """application/pkcs7-mime as Thunderbird writes it (name, smime-type, attachment)."""
    return (
        b'Content-Type: application/pkcs7-mime; name="smime.p7m";\r\n'
        b" smime-type=" + smime_type.encode() + b"\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="smime.p7m"\r\n'
        b"Content-Description: " + description.encode() + b"\r\n"
        b"\r\n" + _base64_lines(der)
    )


def _sign_in(db: NssDatabase, entity: bytes, signer: Identity, detached: bool, md: str,
             key_preference: bool) -> bytes:
    der = db.sign_cms(entity, signer, detached=detached, md=md, key_preference=key_preference)
    if detached:
        return multipart_signed(entity, der, micalg=MICALG.get(md.upper(), md.lower()))
    return pkcs7_mime(der, "signed-data", "S/MIME Cryptographic Signature")


def _encrypt_in(db: NssDatabase, entity: bytes, recipients: Sequence[Identity]) -> bytes:
    return pkcs7_mime(db.encrypt_cms(entity, recipients), "enveloped-data",
                      "S/MIME Encrypted Message")


def nss_sign(entity: bytes, signer: Identity, detached: bool = True, *,
             ca: Identity, md: str = "SHA256", key_preference: bool = True) -> bytes:
    """Sign with NSS: Thunderbird's multipart/signed (detached) or opaque signed-data.

    ``ca`` is the signer's issuer: NSS builds the chain it puts in the message
    from its database and refuses a signer certificate it cannot validate.
    """
    with nss_database([ca]) as db:
        return _sign_in(db, entity, signer, detached, md, key_preference)


def nss_encrypt(entity: bytes, recipients: Sequence[Identity], *, ca: Identity) -> bytes:
    """Encrypt with NSS to ``recipients`` (looked up by address): enveloped-data."""
    with nss_database([ca]) as db:
        return _encrypt_in(db, entity, recipients)


def nss_triple_wrap(entity: bytes, signer: Identity, recipients: Sequence[Identity], *,
                    ca: Identity, md: str = "SHA256", key_preference: bool = True) -> bytes:
    """RFC 2634 §1.1 triple wrap by NSS: sign, encrypt, sign again (outer detached)."""
    with nss_database([ca]) as db:
        inner = _sign_in(db, entity, signer, True, md, key_preference)
        return _sign_in(db, _encrypt_in(db, inner, recipients), signer, True, md, key_preference)
