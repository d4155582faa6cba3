"""Mail addresses as sealgate compares them (SPEC §4)."""

from __future__ import annotations

import functools
from collections.abc import Iterable


def normalize_address(addr: str) -> str:
    """``<Alice@Example.COM>`` -> ``alice@example.com``; the null sender stays ``""``.

    The local part is lower-cased too: SPEC §4, clients vary its case in practice.
    """
    return addr.strip().removeprefix("<").removesuffix(">").strip().lower()


def domain_of(address: str) -> str:
    """The domain of an address, lower-case, without a trailing dot; "" if none."""
    local, at, domain = normalize_address(address).rpartition("@")
    return domain.rstrip(".") if at and local else ""


def is_internal(address: str, internal_domains: Iterable[str]) -> bool:
    """True when the address's domain is one of ``internal_domains``.

    Case-insensitive; subdomains are NOT implied (SPEC §4): ``a@mx.example.com``
    is not internal for ``["example.com"]``. The null sender is never internal.
    """
    if isinstance(internal_domains, tuple):  # the config's: the same tuple for every message
        return _is_internal(address, internal_domains)
    domain = domain_of(address)
    if not domain:
        return False
    return domain in {d.lower().rstrip(".") for d in internal_domains}


@functools.lru_cache(maxsize=4096)
def _is_internal(address: str, internal_domains: tuple[str, ...]) -> bool:
    # The same senders and recipients come back all day; each message asks 4-5 times.
    domain = domain_of(address)
    return bool(domain) and domain in _domain_set(internal_domains)


@functools.lru_cache(maxsize=16)
def _domain_set(internal_domains: tuple[str, ...]) -> frozenset[str]:
    return frozenset(d.lower().rstrip(".") for d in internal_domains)
