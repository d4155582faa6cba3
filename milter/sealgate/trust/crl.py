"""CRLs: load, check the issuer's signature, index revoked serials, answer freshness.

Revocation is decided here, not by pyhanko-certvalidator, because SPEC §3
wants semantics its CRL processing does not have:

- a certificate on a current CRL is revoked *whatever its revocation date*
  (a lost card's key can back-date a signature), and
- "current" means valid *now* (``thisUpdate <= now <= nextUpdate``), while the
  path itself is judged at the verification time ``at``.

A CRL is used only after its signature has been verified with cryptography
against the public key of a certificate with the CRL's issuer name. At load
this is tried against the trust anchors: a CRL that an anchor of the same name
does not sign is refused (logged, never used), so its issuer becomes
``crl-unavailable``. A CRL for an issuer that is not an anchor (an
intermediate CA) is checked later against the issuer certificate of the path,
once per (CRL, issuer certificate). Serial numbers are indexed in a dict, so a
lookup costs one hash probe whatever the size of the CRL.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from asn1crypto import crl as asn1_crl
from asn1crypto import pem, x509
from cryptography import x509 as cx509
from cryptography.hazmat.primitives.serialization import load_der_public_key

from ..certs import encoded, fingerprint, is_ca, name_key, name_rfc4514, settle, subject_key
from ..errors import ConfigError

log = logging.getLogger(__name__)

# A CRL issued a little in the future (clock skew between CA and gateway) is
# still accepted; beyond that it is not valid "now".
CLOCK_SKEW = timedelta(minutes=5)

URL_SCHEMES = ("http://", "https://", "ldap://", "ldaps://")


@dataclass
class CrlEntry:
    """One loaded CRL: its scope, its validity window and the revoked serials."""

    source: str
    issuer: x509.Name
    issuer_key: str  # certs.name_key of the issuer
    this_update: datetime
    next_update: datetime | None
    revoked: dict[int, datetime | None]  # serial -> revocation date
    der: bytes
    only_user_certs: bool = False
    only_ca_certs: bool = False
    # issuer-certificate fingerprint -> does the CRL signature verify with its key?
    _verified: dict[bytes, bool] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def issuer_text(self) -> str:
        return name_rfc4514(self.issuer)

    def is_current(self, now: datetime) -> bool:
        """RFC 5280 §5.1.2.4-5: current from thisUpdate to nextUpdate; none without nextUpdate."""
        if self.next_update is None:
            return False
        return self.this_update - CLOCK_SKEW <= now <= self.next_update

    def covers(self, cert: x509.Certificate) -> bool:
        """Scope from the issuingDistributionPoint (RFC 5280 §5.2.5)."""
        ca = is_ca(cert)
        if self.only_user_certs and ca:
            return False
        return not (self.only_ca_certs and not ca)

    def verified_by(self, issuer_cert: x509.Certificate) -> bool:
        """Does the CRL signature verify with ``issuer_cert``'s key (cached)?"""
        key = fingerprint(issuer_cert)
        with self._lock:
            known = self._verified.get(key)
        if known is not None:
            return known
        ok = _signature_ok(self.der, issuer_cert)
        with self._lock:
            self._verified[key] = ok
        return ok

    @property
    def verified_once(self) -> bool:
        with self._lock:
            return any(self._verified.values())


def _signature_ok(der: bytes, issuer_cert: x509.Certificate) -> bool:
    if name_key(issuer_cert.subject) != _issuer_key(der):
        return False
    key_usage = issuer_cert.key_usage_value
    if key_usage is not None and "crl_sign" not in key_usage.native:
        return False  # RFC 5280 §4.2.1.3: the issuer must be allowed to sign CRLs
    try:
        crl = cx509.load_der_x509_crl(der)
        public_key = load_der_public_key(encoded(issuer_cert.public_key))
        return bool(crl.is_signature_valid(public_key))  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return False


def _issuer_key(der: bytes) -> str:
    return name_key(asn1_crl.CertificateList.load(der)["tbs_cert_list"]["issuer"])


def is_url(source: str | Path) -> bool:
    return isinstance(source, str) and source.lower().startswith(URL_SCHEMES)


def read_crl_file(path: Path, *, config_file: str | None = None) -> list[CrlEntry]:
    """Every CRL in a DER or PEM file; ConfigError (key ``trust.crls``) when unreadable."""
    where = config_file or str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(where, "trust.crls",
                          f"cannot read CRL file {path}: {exc.strerror or exc}") from None
    blobs: list[bytes] = []
    if pem.detect(data):
        try:
            for kind, _headers, der in pem.unarmor(data, multiple=True):
                if kind == "X509 CRL":
                    blobs.append(der)
        except ValueError as exc:
            raise ConfigError(where, "trust.crls", f"{path} is not valid PEM: {exc}") from None
        if not blobs:
            raise ConfigError(where, "trust.crls", f"{path} holds no X509 CRL block")
    else:
        blobs.append(data)
    entries = []
    for der in blobs:
        try:
            entries.append(parse_crl(der, str(path)))
        except ValueError as exc:
            raise ConfigError(where, "trust.crls", f"{path} is not a readable CRL: {exc}") from None
    return entries


def parse_crl(der: bytes, source: str) -> CrlEntry:
    """Parse one DER CRL into an entry; ValueError for what sealgate cannot use."""
    try:
        parsed = asn1_crl.CertificateList.load(der, strict=True)
        tbs = parsed["tbs_cert_list"]
        issuer = settle(tbs["issuer"])  # kept, and read by the milter's threads (certs.settle)
        this_update = tbs["this_update"].native
        next_update = tbs["next_update"].native
        if parsed.delta_crl_indicator_value is not None:
            raise ValueError("delta CRLs are not supported")
        idp = parsed.issuing_distribution_point_value
        only_user = only_ca = False
        if idp is not None:
            if idp["indirect_crl"].native or idp["only_some_reasons"].native:
                raise ValueError("indirect or reason-partitioned CRLs are not supported")
            only_user = bool(idp["only_contains_user_certs"].native)
            only_ca = bool(idp["only_contains_ca_certs"].native)
        revoked: dict[int, datetime | None] = {}
        for item in tbs["revoked_certificates"]:
            revoked[item["user_certificate"].native] = item["revocation_date"].native
    except (TypeError, KeyError) as exc:
        raise ValueError(str(exc)) from None
    return CrlEntry(source=source, issuer=issuer, issuer_key=name_key(issuer),
                    this_update=this_update, next_update=next_update, revoked=revoked,
                    der=der, only_user_certs=only_user, only_ca_certs=only_ca)


class CrlIndex:
    """The usable CRLs by issuer name (DER), plus which issuers have any source at all."""

    def __init__(self, entries: Iterable[CrlEntry], anchors: Iterable[x509.Certificate],
                 url_sources: Iterable[str] = ()) -> None:
        self._by_issuer: dict[str, list[CrlEntry]] = {}
        # Issuers with a configured source, even if its CRL was refused or is stale:
        # those are crl-unavailable, never "not revocation-checked".
        self.configured_issuers: set[str] = set()
        self.url_sources = tuple(url_sources)  # URLs, and files that do not exist yet
        anchors_by_subject: dict[str, list[x509.Certificate]] = {}
        for anchor in anchors:
            anchors_by_subject.setdefault(name_key(anchor.subject), []).append(anchor)
        for entry in entries:
            self.configured_issuers.add(entry.issuer_key)
            candidates = anchors_by_subject.get(entry.issuer_key, [])
            if candidates and not any(entry.verified_by(a) for a in candidates):
                log.error("event=crl-refused source=%s issuer=%r reason=%s", entry.source,
                          entry.issuer_text, "signature does not verify with the anchor's key")
                continue
            self._by_issuer.setdefault(entry.issuer_key, []).append(entry)
        for entries_of_issuer in self._by_issuer.values():
            entries_of_issuer.sort(key=lambda e: e.this_update, reverse=True)
        # The earliest of next_updates()'s values: the engine asks on every message
        # whether a refresh is due (sealgate.engine.Gateway._refresh_due).
        moments = [n for n in self.next_updates().values() if n is not None]
        self.earliest_next_update: datetime | None = min(moments) if moments else None

    def current(self, issuer_cert: x509.Certificate, subject: x509.Certificate | None,
                now: datetime) -> CrlEntry | None:
        """The newest CRL of ``issuer_cert`` current at ``now``, signed by its key,
        covering ``subject``."""
        for entry in self._by_issuer.get(subject_key(issuer_cert), ()):
            if not entry.is_current(now):
                continue
            if subject is not None and not entry.covers(subject):
                continue
            if entry.verified_by(issuer_cert):
                return entry
        return None

    def current_by_name(self, issuer_key: str, now: datetime) -> CrlEntry | None:
        """As :meth:`current`, for callers that only know the issuer name: the CRL must
        already have been verified against a certificate of that issuer."""
        for entry in self._by_issuer.get(issuer_key, ()):
            if entry.is_current(now) and entry.verified_once:
                return entry
        return None

    def has_source(self, issuer_key: str) -> bool:
        # A URL source's issuer is unknown until it is fetched (trust.sources): it may
        # be any issuer's, so with URL sources configured every issuer counts as covered.
        return issuer_key in self.configured_issuers or bool(self.url_sources)

    def stale_reason(self, issuer_key: str, now: datetime) -> str:
        entries = self._by_issuer.get(issuer_key, [])
        if entries:
            newest = entries[0]
            if newest.next_update is None:
                return f"the CRL from {newest.source} has no nextUpdate"
            if newest.next_update < now:
                return (f"the CRL from {newest.source} is past its nextUpdate "
                        f"{newest.next_update:%Y-%m-%d %H:%M:%SZ}")
            return f"the CRL from {newest.source} is not valid yet or not signed by this issuer"
        if issuer_key in self.configured_issuers:
            return "its CRL was refused (signature does not verify)"
        if self.url_sources:
            return f"CRL sources not read yet: {', '.join(self.url_sources)}"
        return "no CRL source is configured for it"

    def next_updates(self) -> dict[str, datetime | None]:
        """Per issuer (RFC 4514), the nextUpdate of its newest CRL (for the metrics)."""
        return {entries[0].issuer_text: entries[0].next_update
                for entries in self._by_issuer.values() if entries}
