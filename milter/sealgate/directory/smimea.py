"""SMIMEA (RFC 8162): certificates of external addresses from DNSSEC-signed DNS.

With ``[directory] smimea = true`` the directory answers for addresses outside
``internal_domains`` too, from DNS:

* owner name (RFC 8162 §3): hex of the SHA2-256 of the local part, truncated
  to 28 octets (56 hex digits), then ``._smimecert.`` and the domain. sealgate
  compares addresses case-insensitively (SPEC §4), so the local part is hashed
  lower-cased, as the address reaches the directory;
* only answers the resolver marks *Authenticated Data* (RFC 4035 §3.2.3) are
  used: the resolver must validate (``[directory] dns_resolver`` names one on a
  trusted path, e.g. Unbound on the same host). An answer without AD -- an
  unsigned zone, or a resolver that does not validate -- is logged and treated
  as "nothing published", never trusted;
* certificate usages (RFC 6698 §2.1.1, RFC 8162 §2): the *end-entity* usages
  PKIX-EE (1) and DANE-EE (3) with selector 0 (full certificate) and matching
  type 0 (exact) carry the person's certificate and are published for the
  address. Trust-anchor usages (0, 2) and hash-only records (selector 1 or
  matching types 1, 2) name no certificate for the address and are ignored
  (logged at debug level);
* NXDOMAIN or no record: no certificate (cached ``cache_miss_ttl``); a DNS
  timeout or SERVFAIL (which is what a validating resolver returns for bogus
  signatures): DirectoryUnavailable -- tempfail, fail closed.

The certificate found this way can satisfy ``signer-in-directory`` for that
external address (``sealgate.facts`` judges external senders when the
directory has ``external_lookups``). It does not make the certificate trusted:
the signer still needs a path to a ``[trust] anchors`` CA.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable

import dns.exception
import dns.flags
import dns.rdatatype
import dns.resolver
from asn1crypto import x509

from ..addresses import normalize_address
from ..certs import settle
from ..config import Config
from ..errors import DirectoryUnavailable
from .base import Directory
from .cache import TtlCache, is_missing
from .srv import make_resolver

log = logging.getLogger(__name__)

END_ENTITY_USAGES = (1, 3)  # PKIX-EE, DANE-EE (RFC 6698 §2.1.1)


def smimea_name(address: str) -> str:
    """RFC 8162 §3 owner name of ``address`` (absolute, with the final dot)."""
    local, _at, domain = normalize_address(address).rpartition("@")
    if not local or not domain:
        raise ValueError(f"{address!r} is not an addr-spec (local@domain)")
    digest = hashlib.sha256(local.encode("utf-8")).hexdigest()[:56]
    return f"{digest}._smimecert.{domain.rstrip('.')}."


class SmimeaLookup:
    """DNS SMIMEA lookups, validated answers only, cached."""

    def __init__(self, resolver: dns.resolver.Resolver,
                 cache: TtlCache[tuple[x509.Certificate, ...]]) -> None:
        self.resolver = resolver
        self.cache = cache
        self.queries = 0

    def certificates_for(self, address: str) -> list[x509.Certificate]:
        name = smimea_name(address)
        cached = self.cache.get(("smimea", name))
        if not is_missing(cached):
            return list(cached)  # type: ignore[call-overload]
        certs = self._query(name, address)
        self.cache.put(("smimea", name), certs, found=bool(certs))
        return list(certs)

    def _query(self, name: str, address: str) -> tuple[x509.Certificate, ...]:
        self.queries += 1
        try:
            answer = self.resolver.resolve(name, dns.rdatatype.SMIMEA, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return ()
        except (dns.exception.DNSException, OSError) as exc:
            raise DirectoryUnavailable(f"SMIMEA lookup of {name} for {address} failed: "
                                       f"{exc}") from None
        if answer.rrset is None:
            return ()
        if not answer.response.flags & dns.flags.AD:
            log.warning("event=smimea-insecure address=%s name=%s (answer not DNSSEC-validated "
                        "by the resolver: not trusted)", address, name)
            return ()
        found: list[x509.Certificate] = []
        for record in answer.rrset:
            if (record.usage not in END_ENTITY_USAGES or record.selector != 0
                    or record.mtype != 0):
                log.debug("event=smimea-skipped name=%s usage=%d selector=%d mtype=%d", name,
                          record.usage, record.selector, record.mtype)
                continue
            try:
                cert = x509.Certificate.load(bytes(record.cert), strict=True)
                cert.issuer.hashable, cert.serial_number  # noqa: B018 -- fail here
                found.append(settle(cert))
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("event=smimea-bad-certificate name=%s error=%r", name, str(exc))
        return tuple(found)


class SmimeaDirectory:
    """A directory for internal addresses, plus SMIMEA for external ones."""

    external_lookups = True  # sealgate.facts: judge signer-in-directory for external senders

    def __init__(self, inner: Directory, lookup: SmimeaLookup,
                 internal_domains: tuple[str, ...]) -> None:
        self.inner = inner
        self.lookup = lookup
        self.internal_domains = tuple(d.lower() for d in internal_domains)

    @classmethod
    def from_config(cls, config: Config, inner: Directory, *,
                    clock: Callable[[], float] | None = None) -> SmimeaDirectory:
        d = config.directory
        cache: TtlCache[tuple[x509.Certificate, ...]] = TtlCache(
            d.cache_ttl, d.cache_miss_ttl, clock=clock or time.monotonic)
        resolver = make_resolver(d.dns_resolver, float(d.timeout))
        return cls(inner, SmimeaLookup(resolver, cache), config.internal_domains)

    def _internal(self, address: str) -> bool:
        return normalize_address(address).rpartition("@")[2] in self.internal_domains

    def certificates_for(self, address: str) -> list[x509.Certificate]:
        if self._internal(address):
            return self.inner.certificates_for(address)
        try:
            return self.lookup.certificates_for(address)
        except ValueError:
            return []

    def find_by_issuer_serial(self, issuer: x509.Name, serial: int) -> x509.Certificate | None:
        return self.inner.find_by_issuer_serial(issuer, serial)

    def find_by_key_identifier(self, ski: bytes) -> x509.Certificate | None:
        return self.inner.find_by_key_identifier(ski)

    def __getattr__(self, name: str) -> object:  # certificates(), queries, close() of the inner
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)
