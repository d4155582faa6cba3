"""DNS for the directory: the resolver, and LDAP server discovery by SRV (RFC 2782).

``[directory] url = "dns-srv:example.com"`` means: ask for
``_ldap._tcp.example.com`` SRV records and try the servers in RFC 2782 order
-- lowest priority first; within one priority, a weighted random order (a
record of weight 0 has a small chance only when others have weight) -- and fail
over to the next when one does not answer. A single record with target ``.``
says the service is decidedly not available (RFC 2782 "Target").

``[directory] dns_resolver = "127.0.0.1:5353"`` sends the questions to that
resolver instead of the system's (/etc/resolv.conf); the tests point it at a
validating Unbound on loopback. DNS failures raise DirectoryUnavailable
(tempfail), never "no directory".
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.rdatatype
import dns.resolver

from ..errors import DirectoryUnavailable


@dataclass(frozen=True)
class SrvTarget:
    priority: int
    weight: int
    port: int
    host: str  # without the trailing dot


def make_resolver(address: str = "", timeout: float = 5.0) -> dns.resolver.Resolver:
    """A resolver asking ``HOST:PORT`` ("" = the system's), with DNSSEC OK and AD requested.

    RFC 6840 §5.7: setting AD in the query asks the resolver to report whether
    it validated the answer, even without DO; DO is set as well so that a
    validating resolver returns the signatures it checked.
    """
    if address:
        host, _colon, port = address.rpartition(":")
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [host.strip("[]")]
        resolver.port = int(port)
    else:
        resolver = dns.resolver.Resolver()
    resolver.timeout = timeout
    resolver.lifetime = timeout
    resolver.use_edns(0, dns.flags.DO, 1232)
    resolver.flags = dns.flags.RD | dns.flags.AD
    resolver.cache = None  # the directory keeps its own cache with its own TTLs
    return resolver


def rfc2782_order(records: list[SrvTarget], rng: random.Random | None = None) -> list[SrvTarget]:
    """RFC 2782 "Usage rules": by priority, then weighted random selection within one."""
    rng = rng or random.SystemRandom()
    ordered: list[SrvTarget] = []
    for priority in sorted({r.priority for r in records}):
        # Zero-weight records first, so they are picked only when drawn with a zero sum.
        group = sorted((r for r in records if r.priority == priority), key=lambda r: r.weight)
        while group:
            total = sum(r.weight for r in group)
            pick = rng.randint(0, total)
            running = 0
            for index, record in enumerate(group):
                running += record.weight
                if running >= pick:
                    ordered.append(group.pop(index))
                    break
    return ordered


def lookup_srv(domain: str, resolver: dns.resolver.Resolver, service: str = "_ldap._tcp",
               rng: random.Random | None = None) -> list[SrvTarget]:
    """The servers for ``service`` in ``domain``, in the order to try them."""
    name = f"{service}.{domain.rstrip('.')}."
    try:
        answer = resolver.resolve(name, dns.rdatatype.SRV, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        raise DirectoryUnavailable(f"no SRV records at {name} (check [directory] url)") from None
    except (dns.exception.DNSException, OSError) as exc:
        raise DirectoryUnavailable(f"DNS lookup of {name} failed: {exc}") from None
    records = [SrvTarget(int(r.priority), int(r.weight), int(r.port),
                         r.target.to_text(omit_final_dot=True))
               for r in (answer.rrset or ())]
    if not records or (len(records) == 1 and records[0].host in ("", ".")):
        raise DirectoryUnavailable(f"{name} announces no LDAP server")
    return rfc2782_order([r for r in records if r.host not in ("", ".")], rng)


def resolve_address(host: str, resolver: dns.resolver.Resolver) -> str | None:
    """An IPv4 (else IPv6) address of ``host`` from ``resolver``; None when it has none.

    None leaves the name to the system resolver; a DNS failure is skipped the
    same way, and the connection attempt then reports what went wrong.
    """
    for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        try:
            answer = resolver.resolve(host.rstrip(".") + ".", rdtype, raise_on_no_answer=False)
        except (dns.exception.DNSException, OSError):
            continue
        if answer.rrset:
            return str(next(iter(answer.rrset)).address)
    return None
