"""The milter's decision records, written off the message path and in batches.

Every verdict becomes one report line (``sealgate report``). Writing it inside
the end-of-message callback costs each message an index transaction while
Postfix waits for the reply, and serialises the milter threads on the store's
lock. :class:`DecisionWriter` takes the line from the callback into a bounded
queue and a background thread commits whatever has gathered, one transaction
per batch.

What may be lost, and when: lines still queued when the process is killed
(SIGKILL, power cut; a SIGTERM drain flushes them), and lines dropped because
the queue is full (the store has been failing or slow for a long time). Both
are counted (``sealgate_errors_total{kind="decision-record"}``) and logged; the
messages themselves are never affected. Quarantined messages do not go this
way: they are stored durably before Postfix gets an answer.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from .store import Decision, QuarantineStore

log = logging.getLogger(__name__)

MAX_BATCH = 500
MAX_PENDING = 20_000


class DecisionWriter:
    """A background thread that commits queued decisions to ``store`` in batches."""

    def __init__(self, store: QuarantineStore, *, on_error: Callable[[], None] = lambda: None,
                 max_batch: int = MAX_BATCH, max_pending: int = MAX_PENDING) -> None:
        self.store = store
        self.on_error = on_error
        self.max_batch = max_batch
        self._queue: queue.Queue[Decision | None] = queue.Queue(max_pending)
        self._thread = threading.Thread(target=self._loop, name="decision-writer", daemon=True)
        self._thread.start()

    def record(self, decision: Decision) -> None:
        """Queue one line; never blocks the caller."""
        try:
            self._queue.put_nowait(decision)
        except queue.Full:
            log.warning("event=decision-not-recorded error=%s",
                        "queue full: the quarantine store has not kept up")
            self.on_error()

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            batch: list[Decision] = []
            if first is None:
                stopping = True
            else:
                batch.append(first)
            while len(batch) < self.max_batch:  # whatever else has gathered meanwhile
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            if batch:
                self._write(batch)

    def _write(self, batch: list[Decision]) -> None:
        try:
            self.store.record_decisions(batch)
        except Exception as exc:  # noqa: BLE001 - a report line is never a reason to stop
            log.warning("event=decision-not-recorded count=%d error=%s", len(batch), exc)
            for _ in batch:
                self.on_error()


class BufferedDecisions:
    """A store whose ``record_decision`` goes through a :class:`DecisionWriter`.

    Everything else is the wrapped store's own; ``close`` flushes the queue first.
    """

    def __init__(self, store: QuarantineStore, writer: DecisionWriter) -> None:
        self._store = store
        self._writer = writer

    def record_decision(self, decision: Decision) -> None:
        self._writer.record(decision)

    def close(self) -> None:
        self._writer.close()
        self._store.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)
