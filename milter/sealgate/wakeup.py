"""A wake-up and stop flag that signal handlers may set.

The milter's main loop (:func:`sealgate.milter_app.run`) and the worker
supervisor (:mod:`sealgate.workers`) sleep until a signal (SIGTERM, SIGHUP,
SIGCHLD) or another thread wakes them. ``threading.Event`` cannot be used from
a signal handler: ``set()`` takes a lock, and Python runs a handler in the main
thread between two bytecodes -- possibly while that thread is inside
``set()`` or ``wait()`` holding the same lock, which then never comes free.
It happened: two workers exiting at once sent two SIGCHLDs, the second
handler ran inside the first one's ``set()``, and the supervisor hung on
SIGTERM. Here a wake-up is a byte written to a non-blocking pipe
(async-signal-safe, no lock), and the stop flag a plain attribute.
"""

from __future__ import annotations

import contextlib
import os
import select


class Wakeup:
    """``set()`` wakes one ``wait()``; ``stop()`` also raises ``stopping``. Safe in signal handlers."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.stopping = False

    def set(self) -> None:
        # A full pipe already holds a wake-up; a closed one has nobody left to wake.
        with contextlib.suppress(OSError):
            os.write(self._write, b"\0")

    def stop(self) -> None:
        self.stopping = True
        self.set()

    def wait(self, timeout: float) -> bool:
        """Sleep until woken or ``timeout`` seconds pass; True if woken. Pending wake-ups are used up."""
        try:
            ready, _, _ = select.select([self._read], [], [], timeout)
        except (OSError, ValueError):  # closed
            return False
        if not ready:
            return False
        with contextlib.suppress(BlockingIOError):
            while os.read(self._read, 4096):
                pass
        return True

    def close(self) -> None:
        fds, (self._read, self._write) = (self._read, self._write), (-1, -1)
        for fd in fds:  # -1 from now on: a later set() never writes to a reused number
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
