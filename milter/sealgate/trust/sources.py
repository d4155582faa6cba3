"""Where CRLs come from: files, http(s):// and ldap:// URLs, and distribution points.

SPEC §4 ``[trust] crls`` lists the sources; :class:`CrlLoader` reads them all
on every refresh (the engine calls it every ``crl_refresh`` and ahead of the
earliest nextUpdate) and remembers, per source, the last CRLs that were good:

* a source that cannot be read now (HTTP 503, slapd down, a half-written
  file) keeps its last good CRLs -- they turn into ``crl-unavailable`` by
  themselves once past their nextUpdate, never into an accept;
* a CRL whose signature does not verify with the trust anchor of its issuer's
  name is refused (logged ``event=crl-refused``) and the last good one kept
  (a CRL of an intermediate CA is checked against the issuer certificate of
  the path instead, in :mod:`sealgate.trust.crl`);
* a CRL older (thisUpdate) than the one already held for its issuer from the
  same source is not taken (a replayed or stale mirror).

``ldap://host:port/DN?attribute`` (RFC 4516) reads the attribute (default
``certificateRevocationList;binary``, RFC 4523) of the entry DN, anonymously.
``http(s)://`` is a GET with a timeout and a size cap (RFC 5280 §4.2.1.13
distribution points serve DER; PEM is accepted too). With
``crl_distribution_points = true`` the http(s)/ldap URIs of the
cRLDistributionPoints of certificates the gateway meets are added as sources
(:meth:`CrlLoader.learn`).

Every fetch is bounded by ``timeout``; only the engine calls this module, the
decision itself never does I/O.
"""

from __future__ import annotations

import logging
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from asn1crypto import pem, x509

from ..certs import name_key
from ..errors import ConfigError, SealgateError
from .crl import CrlEntry, is_url, parse_crl, read_crl_file

log = logging.getLogger(__name__)

MAX_CRL_BYTES = 64 * 1024 * 1024  # a CRL of a million entries is about 40 MB


class CrlFetchError(SealgateError):
    """A CRL source could not be read now."""


def _ders(data: bytes, source: str) -> list[bytes]:
    if pem.detect(data):
        blobs = [der for kind, _h, der in pem.unarmor(data, multiple=True) if kind == "X509 CRL"]
        if not blobs:
            raise CrlFetchError(f"{source}: no X509 CRL block in the PEM answer")
        return blobs
    return [data]


def _tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """The system's CAs, plus ``[directory] tls_ca_file`` (a private CA's servers)."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    return context


def fetch_http(url: str, timeout: float, ca_file: Path | None = None) -> list[bytes]:
    request = urllib.request.Request(url, headers={"User-Agent": "sealgate"})  # noqa: S310
    context = _tls_context(ca_file) if url.lower().startswith("https:") else None
    try:
        with urllib.request.urlopen(request, timeout=timeout,  # noqa: S310 -- http(s) only
                                    context=context) as response:
            data = response.read(MAX_CRL_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise CrlFetchError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise CrlFetchError(f"{url}: {getattr(exc, 'reason', exc)}") from None
    if len(data) > MAX_CRL_BYTES:
        raise CrlFetchError(f"{url}: larger than {MAX_CRL_BYTES} bytes")
    return _ders(data, url)


def fetch_ldap(url: str, timeout: float, ca_file: Path | None = None) -> list[bytes]:
    """RFC 4516 URL: ldap://host:port/dn?attributes -- the values of the attribute."""
    import ldap3
    from ldap3.core import exceptions as ldap_errors

    from ..directory.ldap import VerifiedTls, close_connection

    parts = urlsplit(url)
    dn = unquote(parts.path.lstrip("/"))
    attribute = unquote(parts.query.split("?")[0]) or "certificateRevocationList;binary"
    if ";binary" not in attribute.lower():
        attribute += ";binary"
    if not parts.hostname or not dn:
        raise CrlFetchError(f"{url}: an ldap:// CRL URL needs a host and the CA entry's DN")
    seconds = max(1, round(timeout))
    ldaps = parts.scheme.lower() == "ldaps"
    try:
        server = ldap3.Server(parts.hostname, port=parts.port or (636 if ldaps else 389),
                              use_ssl=ldaps, connect_timeout=seconds, get_info=ldap3.NONE,
                              tls=VerifiedTls(str(ca_file) if ca_file else None, parts.hostname)
                              if ldaps else None)
        conn = ldap3.Connection(server, receive_timeout=seconds)
        try:
            conn.open()
            conn.bind()
            conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=[attribute],
                        time_limit=seconds)
            entries = [e for e in conn.response or [] if e.get("type") == "searchResEntry"]
        finally:
            close_connection(conn)
    except (ldap_errors.LDAPException, OSError) as exc:
        raise CrlFetchError(f"{url}: {exc}") from None
    values = [bytes(v) for e in entries for k, vs in e.get("raw_attributes", {}).items()
              if k.lower().split(";")[0] == attribute.lower().split(";")[0] for v in vs]
    if not values:
        raise CrlFetchError(f"{url}: the entry has no {attribute} value")
    return values


def fetch(source: str | Path, timeout: float, ca_file: Path | None = None) -> list[CrlEntry]:
    """Read and parse the CRLs of one source; CrlFetchError when that fails now."""
    text = str(source)
    if not is_url(source):
        try:
            return read_crl_file(Path(source))
        except ConfigError as exc:
            raise CrlFetchError(exc.message) from None
    scheme = text.split(":", 1)[0].lower()
    ders = (fetch_ldap(text, timeout, ca_file) if scheme.startswith("ldap")
            else fetch_http(text, timeout, ca_file))
    try:
        return [parse_crl(der, text) for der in ders]
    except ValueError as exc:
        raise CrlFetchError(f"{text}: not a readable CRL: {exc}") from None


def distribution_points(cert: x509.Certificate) -> list[str]:
    """http(s)/ldap URIs of the certificate's cRLDistributionPoints (RFC 5280 §4.2.1.13)."""
    urls: list[str] = []
    try:
        points = cert.crl_distribution_points_value
    except (ValueError, TypeError):
        return urls
    for point in points or ():
        name = point["distribution_point"]
        if name.name != "full_name":
            continue  # a name relative to the issuer: no URL to fetch
        for general in name.chosen:
            if general.name == "uniform_resource_identifier":
                uri = str(general.native)
                if is_url(uri) and uri not in urls:
                    urls.append(uri)
    return urls


class CrlLoader:
    """The configured sources (plus learned distribution points), last good CRLs kept."""

    def __init__(self, sources: Iterable[str | Path], anchors: Iterable[x509.Certificate], *,
                 timeout: float = 10.0, config_file: str | None = None,
                 tls_ca_file: Path | None = None) -> None:
        self.sources: list[str | Path] = list(sources)
        self.tls_ca_file = tls_ca_file
        self.learned: list[str] = []
        self.timeout = timeout
        self.config_file = config_file
        self._anchors: dict[str, list[x509.Certificate]] = {}
        for anchor in anchors:
            self._anchors.setdefault(name_key(anchor.subject), []).append(anchor)
        self._good: dict[str, list[CrlEntry]] = {}
        self._lock = threading.Lock()
        self.failures: dict[str, str] = {}  # source -> last error, for logs and tests
        self.pending: list[str] = []  # sources with no usable CRL after the last load

    def learn(self, certificates: Iterable[x509.Certificate]) -> list[str]:
        """Add the distribution points of these certificates; returns the new URLs."""
        new = []
        with self._lock:
            known = {str(s) for s in self.sources} | set(self.learned)
            for cert in certificates:
                for url in distribution_points(cert):
                    if url not in known:
                        known.add(url)
                        self.learned.append(url)
                        new.append(url)
        for url in new:
            log.info("event=crl-distribution-point-learned url=%s", url)
        return new

    def _acceptable(self, entry: CrlEntry, previous: list[CrlEntry]) -> str | None:
        """Why ``entry`` is refused, or None."""
        candidates = self._anchors.get(entry.issuer_key, [])
        if candidates and not any(entry.verified_by(a) for a in candidates):
            return "signature does not verify with the anchor's key"
        for old in previous:
            if old.issuer_key == entry.issuer_key and old.this_update > entry.this_update:
                return f"older than the CRL already held (thisUpdate {old.this_update:%Y-%m-%d %H:%M})"
        return None

    def load(self, *, strict: bool = False) -> tuple[list[CrlEntry], list[str]]:
        """Read every source now: (usable entries, sources with nothing usable yet).

        ``strict`` (start-up): an existing CRL *file* that cannot be read is a
        ConfigError, as before; URLs and missing files are only logged.
        """
        with self._lock:
            sources: list[str | Path] = [*self.sources, *self.learned]
        entries: list[CrlEntry] = []
        pending: list[str] = []
        for source in sources:
            key = str(source)
            previous = self._good.get(key, [])
            try:
                if not is_url(source) and not Path(source).exists():
                    raise CrlFetchError(f"file {source} does not exist (yet)")
                fetched = fetch(source, self.timeout, self.tls_ca_file)
            except CrlFetchError as exc:
                if strict and not is_url(source) and Path(source).exists():
                    raise ConfigError(self.config_file or key, "trust.crls", str(exc)) from None
                self.failures[key] = str(exc)
                log.warning("event=crl-fetch-failed source=%s error=%r kept=%d", key, str(exc),
                            len(previous))
                fetched = None
            if fetched is not None:
                good, refused = [], set()
                for entry in fetched:
                    reason = self._acceptable(entry, previous)
                    if reason:
                        log.error("event=crl-refused source=%s issuer=%r reason=%s", key,
                                  entry.issuer_text, reason)
                        self.failures[key] = reason
                        refused.add(entry.issuer_key)
                    else:
                        good.append(entry)
                if good:
                    if not refused:
                        self.failures.pop(key, None)
                    # An issuer whose new CRL was refused keeps its last good one.
                    kept = [e for e in previous if e.issuer_key in refused
                            and e.issuer_key not in {g.issuer_key for g in good}]
                    self._good[key] = previous = good + kept
            if previous:
                entries.extend(previous)
            else:
                pending.append(key)
        self.pending = pending
        return entries, pending
