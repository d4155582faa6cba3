"""Trust anchors, CRLs and path validation (SPEC §3, §4 ``[trust]``).

:class:`TrustStore` is built once from the configuration and is then read-only
and thread-safe; a CRL refresh builds a new store with :meth:`TrustStore.with_crls`
(sharing the path cache, which does not depend on CRLs).

Codes (SPEC §3), for signers and recipients alike (the engine turns a revoked
recipient into ``recipient-revoked``):

- ``untrusted-signer``: no path to an anchor, an invalid path, or key usage /
  extended key usage that does not allow the purpose;
- ``expired-signer``: the certificate or a CA on its path (the anchor
  included) is outside its validity at ``at``;
- ``revoked-signer``: the certificate or a CA on its path is on a CRL valid
  *now*, whatever the revocation date;
- ``crl-unavailable``: no CRL valid now for an issuer on the path (stale,
  refused because its signature does not verify, URL not fetched yet, or none
  configured while ``require_crl`` is true);
- ``weak-algorithm``: a certificate on the path is signed with MD5/SHA-1 or by
  an RSA key below 2048 bits (pyhanko's algorithm policy).

``require_crl = false``: an issuer with no CRL source is not revocation-checked;
this is not a finding but a *note* in :attr:`TrustResult.notes`, which the
verdict should carry (``check_signer``/``check_recipient`` return it;
``validate_signer``/``validate_recipient`` return only the findings).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from asn1crypto import pem, x509

from ..certs import name_key, settle
from ..errors import ConfigError
from ..model import Finding
from .crl import CrlEntry, CrlIndex, is_url, read_crl_file
from .validator import ENCRYPTION_USAGE, SIGNING_USAGE, PathCache, TrustResult, Validator

__all__ = ["TrustStore", "TrustResult", "load_certificates"]

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def load_certificates(path: Path, *, key: str = "trust.anchors",
                      config_file: str | None = None) -> list[x509.Certificate]:
    """Every certificate of a PEM (one or more) or DER file; ConfigError when unreadable."""
    where = config_file or str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(where, key,
                          f"cannot read certificate file {path}: {exc.strerror or exc}") from None
    certs: list[x509.Certificate] = []
    try:
        if pem.detect(data):
            for kind, _headers, der in pem.unarmor(data, multiple=True):
                if kind in ("CERTIFICATE", "TRUSTED CERTIFICATE"):
                    certs.append(x509.Certificate.load(der, strict=True))
        else:
            certs.append(x509.Certificate.load(data, strict=True))
        for cert in certs:
            cert.native  # noqa: B018 -- parse everything now: an unreadable one fails here
            settle(cert)  # and read by many threads only after (certs.settle)
    except (ValueError, TypeError, KeyError) as exc:
        raise ConfigError(where, key, f"{path} holds an unreadable certificate: {exc}") from None
    if not certs:
        raise ConfigError(where, key, f"{path} holds no PEM CERTIFICATE block")
    return certs


class TrustStore:
    def __init__(self, anchors: Sequence[x509.Certificate], crls: CrlIndex,
                 require_crl: bool = True, *, _cache: PathCache | None = None) -> None:
        self._validator = Validator(anchors, crls, require_crl, _cache)

    @classmethod
    def load(cls, anchors: list[Path], crls: list[str | Path], require_crl: bool = True,
             *, config_file: str | None = None) -> TrustStore:
        """Read anchor and CRL files; ConfigError names ``trust.anchors``/``trust.crls``.

        CRL sources are files (DER or PEM). http(s)/ldap URLs are not fetched here
        (no I/O in the store: the gateway fetches them with
        :class:`sealgate.trust.sources.CrlLoader` and calls :meth:`with_entries`),
        and a CRL file that does not exist (yet) is logged, not an
        error: with either, every issuer without a readable CRL is ``crl-unavailable``
        (their issuer is unknown until read). An unreadable or unparsable file is
        a ConfigError.
        """
        anchor_certs: list[x509.Certificate] = []
        for path in anchors:
            anchor_certs.extend(load_certificates(Path(path), config_file=config_file))
        entries, urls = _read_crls(crls, config_file)
        return cls(anchor_certs, CrlIndex(entries, anchor_certs, urls), require_crl)

    def with_crls(self, crls: list[str | Path], *, config_file: str | None = None) -> TrustStore:
        """A store with the same anchors and new CRLs (a refresh); the path cache is shared."""
        entries, urls = _read_crls(crls, config_file)
        v = self._validator
        return TrustStore(v.anchors, CrlIndex(entries, v.anchors, urls), v.require_crl,
                          _cache=v.cache)

    def with_entries(self, entries: Iterable[CrlEntry], pending: Iterable[str]) -> TrustStore:
        """A store with the same anchors and CRLs already read (by
        :class:`sealgate.trust.sources.CrlLoader`); ``pending`` names sources with no
        usable CRL yet (their issuers are ``crl-unavailable``)."""
        v = self._validator
        return TrustStore(v.anchors, CrlIndex(entries, v.anchors, pending), v.require_crl,
                          _cache=v.cache)

    @property
    def anchors(self) -> tuple[x509.Certificate, ...]:
        return self._validator.anchors

    @property
    def require_crl(self) -> bool:
        return self._validator.require_crl

    def crl_next_updates(self) -> dict[str, datetime | None]:
        """nextUpdate of the newest usable CRL per issuer, for ``sealgate_crl_next_update_*``."""
        return self._validator.crls.next_updates()

    @property
    def earliest_crl_next_update(self) -> datetime | None:
        """The earliest of :meth:`crl_next_updates`' values (None if none), worked out once."""
        return self._validator.crls.earliest_next_update

    # ------------------------------------------------------------ signers

    def check_signer(self, cert: x509.Certificate, at: datetime,
                     extra_certs: Iterable[x509.Certificate] = (), *,
                     now: datetime | None = None) -> TrustResult:
        """Is ``cert`` valid for S/MIME signing at ``at``, with CRLs judged at ``now``?"""
        return self._validator.check(cert, at, now or _now(), extra_certs, "signer",
                                     SIGNING_USAGE)

    def validate_signer(self, cert: x509.Certificate, at: datetime,
                        extra_certs: Iterable[x509.Certificate] = (), *,
                        now: datetime | None = None) -> list[Finding]:
        """[] = valid for S/MIME signing at ``at``; see :meth:`check_signer` for notes."""
        return self.check_signer(cert, at, extra_certs, now=now).findings

    # ------------------------------------------------------------ recipients

    def check_recipient(self, cert: x509.Certificate, at: datetime,
                        extra_certs: Iterable[x509.Certificate] = (), *,
                        now: datetime | None = None) -> TrustResult:
        """Is ``cert`` a current certificate usable for encryption (keyEncipherment or
        keyAgreement, emailProtection)? Same codes as for signers."""
        return self._validator.check(cert, at, now or _now(), extra_certs, "recipient",
                                     ENCRYPTION_USAGE)

    def validate_recipient(self, cert: x509.Certificate, at: datetime,
                           extra_certs: Iterable[x509.Certificate] = (), *,
                           now: datetime | None = None) -> list[Finding]:
        return self.check_recipient(cert, at, extra_certs, now=now).findings

    def is_revoked(self, issuer: x509.Name, serial: int,
                   now: datetime | None = None) -> bool | None:
        """Is (issuer, serial) on the issuer's current CRL? None: no CRL valid now for it."""
        return self._validator.is_revoked(name_key(issuer), serial, now or _now())

    def is_revoked_key(self, issuer_key: str, serial: int,
                       now: datetime | None = None) -> bool | None:
        """:meth:`is_revoked` for an issuer given by its :func:`sealgate.certs.name_key`."""
        return self._validator.is_revoked(issuer_key, serial, now or _now())


def _read_crls(sources: Iterable[str | Path],
               config_file: str | None) -> tuple[list[CrlEntry], list[str]]:
    entries: list[CrlEntry] = []
    urls: list[str] = []
    for source in sources:
        if is_url(source):
            urls.append(str(source))
            continue
        if not Path(source).exists():
            # Not fatal (config check warns): it may be published later. Until then
            # it counts like an unfetched URL: its issuer is unknown, so every
            # issuer without a readable CRL is crl-unavailable.
            log.warning("event=crl-missing source=%s", source)
            urls.append(str(source))
            continue
        entries.extend(read_crl_file(Path(source), config_file=config_file))
    return entries, urls
