"""The ``files`` directory backend: a folder of published PEM certificates.

The embedded default (SPEC §4 ``[directory] backend = "files"``): every
``*.pem``, ``*.crt``, ``*.cer`` or ``*.der`` file in the folder holds one or
more certificates (PEM blocks, or one DER certificate). They are indexed by

* their addresses -- rfc822Name subjectAltNames and the subject's PKCS #9
  emailAddress (RFC 8550 §3), lower-cased (SPEC §4);
* issuer and serial number (CMS IssuerAndSerialNumber, RFC 5652 §10.2.4),
  with the issuer compared as RFC 5280 §7.1 names, not as raw DER;
* subject key identifier (CMS SubjectKeyIdentifier); a certificate without
  the extension is indexed by the SHA-1 of its public key (RFC 5280 §4.2.1.2).

The folder is re-read when it changes: at most once per ``check_interval``
seconds a lookup compares every file's size and timestamps with the last
read, and re-parses only the files that changed. A file that cannot be read
or parsed is logged and keeps the certificates it had before (a half-written
file does not make its owner vanish); the other files are unaffected. A
folder that disappears raises DirectoryUnavailable (tempfail), never "no
certificate" (which would quarantine).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from asn1crypto import pem, x509

from ..addresses import normalize_address
from ..certs import certificate_addresses, name_key, settle
from ..errors import DirectoryUnavailable

log = logging.getLogger(__name__)

SUFFIXES = frozenset({".pem", ".crt", ".cer", ".der"})
_CERT_BLOCKS = frozenset({"CERTIFICATE", "X509 CERTIFICATE"})

# (size, mtime_ns, ctime_ns, inode): changes whenever the file is rewritten or replaced.
_Stamp = tuple[int, int, int, int]


@dataclass(frozen=True)
class _Index:
    certificates: tuple[x509.Certificate, ...] = ()
    by_address: dict[str, tuple[x509.Certificate, ...]] = field(default_factory=dict)
    by_issuer_serial: dict[tuple[str, int], x509.Certificate] = field(default_factory=dict)
    by_key_identifier: dict[bytes, x509.Certificate] = field(default_factory=dict)


def _key_identifier(cert: x509.Certificate) -> bytes:
    ski = cert.key_identifier
    return bytes(ski) if ski is not None else bytes(cert.public_key.sha1)


def _build_index(certs: list[x509.Certificate]) -> _Index:
    unique: dict[bytes, x509.Certificate] = {}
    for cert in certs:
        unique.setdefault(bytes(cert.sha256), cert)  # one certificate published twice
    by_address: dict[str, list[x509.Certificate]] = {}
    by_issuer_serial: dict[tuple[str, int], x509.Certificate] = {}
    by_ski: dict[bytes, x509.Certificate] = {}
    for cert in unique.values():
        for address in certificate_addresses(cert):
            by_address.setdefault(address, []).append(cert)
        by_issuer_serial.setdefault((name_key(cert.issuer), cert.serial_number), cert)
        by_ski.setdefault(_key_identifier(cert), cert)
    return _Index(
        certificates=tuple(unique.values()),
        by_address={a: tuple(c) for a, c in by_address.items()},
        by_issuer_serial=by_issuer_serial,
        by_key_identifier=by_ski,
    )


def read_certificates(path: Path) -> tuple[x509.Certificate, ...]:
    """Every certificate in a PEM file (several blocks) or a DER file (one).

    Raises OSError or ValueError with a sentence naming what is wrong.
    """
    data = path.read_bytes()
    certs = []
    if pem.detect(data):
        for block_type, _headers, der in pem.unarmor(data, multiple=True):
            if block_type in _CERT_BLOCKS:
                certs.append(x509.Certificate.load(der))
            else:
                log.warning("directory file holds a non-certificate block: file=%s block=%r "
                            "(ignored; a private key does not belong here)", path, block_type)
    else:
        certs.append(x509.Certificate.load(data))
    for cert in certs:
        # asn1crypto parses lazily: touch what the index needs, so a broken
        # certificate fails here, at load, and not in the middle of a lookup.
        cert.issuer.hashable, cert.serial_number, _key_identifier(cert)  # noqa: B018
        certificate_addresses(cert)
        settle(cert)  # lookups in many threads only read it (certs.settle)
    if not certs:
        raise ValueError("no certificate in the file")
    return tuple(certs)


class FilesDirectory:
    """:class:`sealgate.directory.base.Directory` over a folder of PEM files. Thread-safe."""

    def __init__(self, folder: Path, *, check_interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.folder = Path(folder)
        self.check_interval = check_interval
        self._clock = clock
        self._lock = threading.Lock()
        self._files: dict[str, tuple[_Stamp, tuple[x509.Certificate, ...]]] = {}
        self._index = _Index()
        self._checked: float | None = None
        self.refresh(force=True)

    # ------------------------------------------------------------ Directory

    def certificates_for(self, address: str) -> list[x509.Certificate]:
        return list(self._current().by_address.get(normalize_address(address), ()))

    def find_by_issuer_serial(self, issuer: x509.Name, serial: int) -> x509.Certificate | None:
        return self._current().by_issuer_serial.get((name_key(issuer), serial))

    def find_by_key_identifier(self, ski: bytes) -> x509.Certificate | None:
        return self._current().by_key_identifier.get(bytes(ski))

    # ------------------------------------------------------------ extra

    def certificates(self) -> list[x509.Certificate]:
        """Every published certificate, once each (``sealgate directory lookup``, summaries)."""
        return list(self._current().certificates)

    def refresh(self, force: bool = False) -> None:
        """Re-read changed files if ``check_interval`` has passed (or ``force``)."""
        if force:
            with self._lock:
                self._reload()
            return
        # A lookup never waits for another thread's reload: it uses the index
        # that was current when it started.
        if not self._lock.acquire(blocking=False):
            return
        try:
            now = self._clock()
            if self._checked is None or now - self._checked >= self.check_interval:
                self._reload()
        finally:
            self._lock.release()

    def _current(self) -> _Index:
        self.refresh()
        return self._index

    # ------------------------------------------------------------ reading

    def _scan(self) -> dict[str, tuple[Path, _Stamp]]:
        try:
            entries = list(os.scandir(self.folder))
        except OSError as exc:
            raise DirectoryUnavailable(
                f"directory folder {self.folder}: {exc.strerror or exc} "
                "(check [directory] path in the configuration)") from exc
        found = {}
        for entry in entries:
            path = Path(entry.path)
            if entry.name.startswith(".") or path.suffix.lower() not in SUFFIXES:
                continue  # editor swap files, README, keys by mistake
            try:
                if not entry.is_file():
                    continue
                st = entry.stat()
            except OSError:
                continue  # removed between scandir and stat: gone
            found[entry.name] = (path, (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
        return found

    def _reload(self) -> None:
        """Caller holds the lock."""
        self._checked = self._clock()
        found = self._scan()
        unchanged = found.keys() == self._files.keys() and all(
            self._files[name][0] == stamp for name, (_path, stamp) in found.items())
        if unchanged:
            return
        files: dict[str, tuple[_Stamp, tuple[x509.Certificate, ...]]] = {}
        for name in sorted(found):
            path, stamp = found[name]
            previous = self._files.get(name)
            if previous is not None and previous[0] == stamp:
                files[name] = previous
                continue
            try:
                files[name] = (stamp, read_certificates(path))
            except (OSError, ValueError, TypeError) as exc:
                kept = previous[1] if previous else ()
                log.warning("directory file not loaded: file=%s error=%r kept=%d "
                            "(its previous certificates stay published until it is fixed)",
                            path, str(exc), len(kept))
                # Stamped as read: retried (and logged) once more when it changes again.
                files[name] = (stamp, kept)
        self._files = files
        self._index = _build_index([c for _stamp, certs in files.values() for c in certs])
        log.info("directory loaded: folder=%s files=%d certificates=%d",
                 self.folder, len(files), len(self._index.certificates))
