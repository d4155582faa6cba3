"""A thread that takes items from the message threads and handles them in batches.

The milter's message threads hand over what need not hold up Postfix (report
rows, a message's log line and counts) and go on; the thread handles
whatever gathered. It is woken only by the first item after it went idle (a
lone message's item is handled at once); while items keep coming it handles
what gathered every ``gather`` seconds, so under load a message costs a list
append, not a thread wake-up of its own, and the handling runs in a batch,
its code and data still in the CPU caches from the item before.

Items still queued when the process is killed are lost; :meth:`close` handles
what is queued, and :meth:`drain` does so at once in the caller's thread. The
queue is bounded: an item that finds it full is refused (``on_full``), never
waited for. The thread starts with the first item. Not fork-safe: a forked
child makes its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class BatchThread(Generic[T]):
    """``record(item)`` from any thread; ``handle(batch)`` in a thread of its own (module docstring)."""

    def __init__(self, name: str, handle: Callable[[list[T]], None], *,
                 on_full: Callable[[], None] = lambda: None, max_batch: int = 500,
                 max_pending: int = 20_000, gather: float = 0.1,
                 hold_first: bool = False) -> None:
        """``hold_first``: let items gather ``gather`` seconds before the first batch too."""
        self.name = name
        self.handle = handle
        self.on_full = on_full
        self.max_batch = max_batch
        self.max_pending = max_pending
        self.gather = gather
        self.hold_first = hold_first
        self._lock = threading.Lock()
        self._pending: list[T] = []
        self._idle = True  # the thread waits for _wake: the next record must set it
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, item: T) -> None:
        """Queue ``item``; never blocks the caller (``on_full`` when the queue is full)."""
        wake = False
        with self._lock:
            full = len(self._pending) >= self.max_pending
            if not full:
                self._pending.append(item)
                wake, self._idle = self._idle, False
                if wake and self._thread is None:
                    self._thread = threading.Thread(target=self._loop, name=self.name,
                                                    daemon=True)
                    self._thread.start()
        if full:
            self.on_full()
        elif wake:
            self._wake.set()

    def drain(self) -> None:
        """Handle what is queued now, in the caller's thread."""
        with self._lock:
            batch, self._pending = self._pending, []
        for start in range(0, len(batch), self.max_batch):
            self.handle(batch[start:start + self.max_batch])

    def close(self, timeout: float = 30.0) -> None:
        """Handle what is queued, then stop the thread."""
        if self._thread is not None and self._thread.is_alive():
            self._closing.set()
            self._wake.set()
            self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            self._wake.wait()
            if self.hold_first:
                self._closing.wait(self.gather)  # a close cuts this short
            while True:  # busy: handle what gathered, then let more gather
                with self._lock:
                    batch, self._pending = self._pending, []
                    if not batch:  # idle again: the next record wakes us
                        self._wake.clear()
                        self._idle = True
                        break
                for start in range(0, len(batch), self.max_batch):
                    self.handle(batch[start:start + self.max_batch])
                self._closing.wait(self.gather)  # a close cuts this short
            if self._closing.is_set():
                return
