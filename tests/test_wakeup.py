"""sealgate.wakeup: the main loops' wake-up, safe to set from a signal handler (no lock)."""

from __future__ import annotations

import os
import signal
import threading

from sealgate.wakeup import Wakeup


def test_set_never_blocks_and_one_wait_uses_up_every_pending_wakeup():
    wake = Wakeup()
    try:
        for _ in range(200_000):  # far more than a pipe holds: a full pipe is a pending wake-up
            wake.set()
        assert wake.wait(0) is True
        assert wake.wait(0) is False
        assert not wake.stopping
    finally:
        wake.close()


def test_a_signal_handler_wakes_the_waiting_main_thread_and_can_stop_it():
    wake = Wakeup()
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: wake.stop())
    try:
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGUSR1)).start()
        assert wake.wait(30) is True  # woken by the handler, not by the timeout
        assert wake.stopping
    finally:
        signal.signal(signal.SIGUSR1, previous)
        wake.close()


def test_handlers_that_interrupt_each_other_and_the_main_thread_do_not_hang():
    # threading.Event.set() from handlers deadlocked the worker supervisor once
    # (a handler ran while the main thread was inside set() holding its lock).
    # That race is too rare to provoke at will; this checks that a flood of
    # handlers, interrupting set() and wait() anywhere, neither hangs nor fails.
    wake = Wakeup()
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: wake.set())
    stop = threading.Event()

    def storm() -> None:
        while not stop.is_set():
            os.kill(os.getpid(), signal.SIGUSR1)

    sender = threading.Thread(target=storm, daemon=True)
    sender.start()
    try:
        for _ in range(2_000):
            wake.set()
            wake.wait(0)
    finally:
        stop.set()
        sender.join(10)
        signal.signal(signal.SIGUSR1, previous)
        wake.close()
    assert not sender.is_alive()


def test_after_close_set_is_harmless_and_wait_returns():
    wake = Wakeup()
    wake.close()
    wake.set()
    assert wake.wait(0) is False
