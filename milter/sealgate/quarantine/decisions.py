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
from collections.abc import Callable
from typing import Any

from ..batching import BatchThread
from .store import Decision, QuarantineStore

# A line, or what makes it: the milter hands over a function of the verdict, and
# the writer thread calls it, with the batch, off the message's path.
Pending = Decision | Callable[[], Decision]

log = logging.getLogger(__name__)

MAX_BATCH = 500
MAX_PENDING = 20_000
# After a write, the writer lets lines gather this long before the next one.
GATHER_SECONDS = 0.1


class DecisionWriter:
    """A background thread that commits queued decisions to ``store`` in batches.

    The thread (:class:`sealgate.batching.BatchThread`) is woken only by the
    first line after it went idle (so a lone message's line is written at
    once); while lines keep coming it writes whatever gathered every
    ``gather`` seconds. Under load a message costs a list append, not a
    thread wake-up and a transaction of its own. Woken per line, the writer
    committed a line or two per wake: with 4 concurrent milter connections
    that was ~54 of the ~96 futex calls per message sealgate made beyond a
    no-op milter, and ~0.2 of its ~0.66 ms CPU per message.
    """

    def __init__(self, store: QuarantineStore, *, on_error: Callable[[], None] = lambda: None,
                 max_batch: int = MAX_BATCH, max_pending: int = MAX_PENDING,
                 gather: float = GATHER_SECONDS) -> None:
        self.store = store
        self.on_error = on_error
        self._batches: BatchThread[Pending] = BatchThread(
            "decision-writer", self._write, on_full=self._full, max_batch=max_batch,
            max_pending=max_pending, gather=gather)

    def record(self, decision: Pending) -> None:
        """Queue one line, or a function that makes it (called by the writer); never blocks the caller."""
        self._batches.record(decision)

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the thread."""
        self._batches.close(timeout)

    def _full(self) -> None:
        log.warning("event=decision-not-recorded error=%s",
                    "queue full: the quarantine store has not kept up")
        self.on_error()

    def _write(self, batch: list[Pending]) -> None:
        decisions: list[Decision] = []
        for item in batch:
            if isinstance(item, Decision):
                decisions.append(item)
                continue
            try:
                decisions.append(item())
            except Exception as exc:  # noqa: BLE001 - one bad line; the rest are written
                log.warning("event=decision-not-recorded count=1 error=%s", exc)
                self.on_error()
        if not decisions:
            return
        try:
            self.store.record_decisions(decisions)
        except Exception as exc:  # noqa: BLE001 - a report line is never a reason to stop
            log.warning("event=decision-not-recorded count=%d error=%s", len(decisions), exc)
            for _ in decisions:
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

    def record_decision_later(self, make: Callable[[], Decision]) -> None:
        """Queue the line ``make()`` returns; the writer thread calls it with its batch.

        The milter's message threads pass ``Decision.of`` bound to the verdict,
        so that building the line, like writing it, is off the message's path.
        """
        self._writer.record(make)

    def close(self) -> None:
        self._writer.close()
        self._store.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)
