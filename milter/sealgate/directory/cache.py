"""A small thread-safe cache with separate lifetimes for hits and misses.

A directory answer is reused for ``cache_ttl`` (SPEC §4); a "nobody by that
address" answer only for a shorter ``miss_ttl``, so a person published a
moment ago is found soon while a typo'd recipient does not cost one LDAP
query per message. Errors are never cached: the next lookup asks again, which
is how the gateway recovers without a restart when the directory comes back.

Time comes from an injectable monotonic clock (tests move it by hand).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")

_MISSING = object()


class TtlCache(Generic[V]):
    """key -> value, each entry expiring after its own lifetime; LRU-bounded."""

    def __init__(self, ttl: float, miss_ttl: float, *, max_entries: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.miss_ttl = min(miss_ttl, ttl)
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, tuple[float, V]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> V | object:
        """The cached value, or the module's ``MISSING`` sentinel (see :func:`is_missing`)."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] <= now:
                if entry is not None:
                    del self._entries[key]
                self.misses += 1
                return _MISSING
            self._entries.move_to_end(key)
            self.hits += 1
            return entry[1]

    def put(self, key: Hashable, value: V, *, found: bool = True) -> None:
        """Remember ``value`` for ``ttl`` (found) or ``miss_ttl`` (an empty answer)."""
        if self.ttl <= 0:
            return
        expires = self._clock() + (self.ttl if found else self.miss_ttl)
        with self._lock:
            self._entries[key] = (expires, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def is_missing(value: object) -> bool:
    return value is _MISSING
