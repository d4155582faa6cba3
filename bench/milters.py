"""The milters the Postfix benchmark runs, each timed from inside its own process.

    python -m bench.milters noop --socket unix:/path/sock --times FILE
    python -m bench.milters sealgate --config sealgate.toml --times FILE

``noop`` is the baseline: a pymilter milter that reads the whole message
(headers and every body chunk) and accepts it at end of message; with
``--headers`` it also prepends two header fields as sealgate does. ``sealgate``
is ``sealgate milter --config ...`` unchanged, with the same timing wrapper
put around its callbacks before the first connection (its workers, forked
later, inherit it and append to the same file).

Milter time, as this benchmark defines it: wall time in the milter process
from the first ``header`` callback of a message to the return of its ``eom``
callback — Postfix hands the milter the content only once the whole message
is in its queue file, so this is the transfer of the message over the milter
socket plus the decision, which is what the SMTP client waits for. The eom
callback alone (the decision) is recorded too. One line per message is
appended to the ``--times`` file: ``<milter seconds> <eom seconds>``.
"""

from __future__ import annotations

import argparse
import functools
import threading
import time
from pathlib import Path
from typing import Any

import Milter


class TimingLog:
    """Appends ``<milter seconds> <eom seconds>`` per message to a file (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self._fh = path.open("a", buffering=1)
        self._lock = threading.Lock()

    def record(self, milter_s: float, eom_s: float) -> None:
        with self._lock:
            self._fh.write(f"{milter_s:.6f} {eom_s:.6f}\n")

    def close(self) -> None:
        with self._lock:
            self._fh.close()


def read_times(path: Path) -> tuple[list[float], list[float]]:
    """The (milter seconds, eom seconds) lists a TimingLog wrote; empty when absent."""
    milter_s: list[float] = []
    eom_s: list[float] = []
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                milter_s.append(float(parts[0]))
                eom_s.append(float(parts[1]))
    return milter_s, eom_s


def instrument(cls: type[Milter.Base], log: TimingLog) -> None:
    """Wrap ``cls``'s header (and its own header_bytes)/eom/abort callbacks to time each message.

    See the module docstring.

    ``functools.wraps`` keeps the attributes pymilter's decorators set
    (``milter_protocol`` of ``@Milter.noreply``, ``error_strategy`` of
    ``@Milter.decode``), so the negotiated protocol does not change.
    """
    header, eom, abort = cls.header, cls.eom, cls.abort

    @functools.wraps(header)
    def timed_header(self: Any, *args: Any) -> Any:
        if getattr(self, "_bench_t0", None) is None:
            self._bench_t0 = time.perf_counter()
        return header(self, *args)

    @functools.wraps(eom)
    def timed_eom(self: Any) -> Any:
        started = time.perf_counter()
        try:
            return eom(self)
        finally:
            ended = time.perf_counter()
            first = getattr(self, "_bench_t0", None)
            log.record(ended - (first if first is not None else started), ended - started)
            self._bench_t0 = None

    @functools.wraps(abort)
    def timed_abort(self: Any) -> Any:
        self._bench_t0 = None
        return abort(self)

    cls.header = timed_header  # type: ignore[method-assign]
    own_header_bytes = cls.__dict__.get("header_bytes")
    if own_header_bytes is not None:  # sealgate takes header fields here, not through header()

        @functools.wraps(own_header_bytes)
        def timed_header_bytes(self: Any, *args: Any) -> Any:
            if getattr(self, "_bench_t0", None) is None:
                self._bench_t0 = time.perf_counter()
            return own_header_bytes(self, *args)

        cls.header_bytes = timed_header_bytes  # type: ignore[method-assign]
    cls.eom = timed_eom  # type: ignore[method-assign]
    cls.abort = timed_abort  # type: ignore[method-assign]
    if "_protocol_mask" in cls.__dict__:  # computed from the callbacks: recompute
        delattr(cls, "_protocol_mask")


class NoopMilter(Milter.Base):
    """Accepts every message after reading all of it: the cost of being a pymilter milter.

    It takes the protocol steps ``SealgateMilter`` takes, with the same reply
    flags (connect, MAIL FROM; RCPT TO and headers without a reply; body; end
    of message), so that the difference between the two is sealgate's work
    and not a shorter conversation with Postfix.
    """

    def __init__(self) -> None:
        self.size = 0
        self.recipients = 0

    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        return Milter.CONTINUE

    def envfrom(self, sender: str, *params: str) -> int:
        self.size = 0
        self.recipients = 0
        return Milter.CONTINUE

    @Milter.noreply
    def envrcpt(self, recipient: str, *params: str) -> int:
        self.recipients += 1
        return Milter.CONTINUE

    @Milter.noreply
    def header(self, name: str, value: str) -> int:
        self.size += len(name) + len(value) + 4
        return Milter.CONTINUE

    def body(self, chunk: bytes) -> int:
        self.size += len(chunk)
        return Milter.CONTINUE

    def eom(self) -> int:
        self.size = 0
        return Milter.ACCEPT

    def abort(self) -> int:
        self.size = 0
        return Milter.CONTINUE


class NoopHeadersMilter(NoopMilter):
    """The no-op milter, plus the two header fields sealgate prepends to each message it passes.

    Its difference from ``NoopMilter`` is what Postfix spends editing the
    queued message for sealgate's verdict headers (SPEC §6).
    """

    def eom(self) -> int:
        self.size = 0
        self.addheader("Sealgate-Policy", "rule=strict; action=accept; codes=none", 0)
        self.addheader("Authentication-Results",
                       "mx.example.test; smime=pass body.smime-identifier=alice@example.com "
                       "body.smime-serial=1234567890ABCDEF body.smime-issuer=\"CN=Test CA\"", 0)
        return Milter.ACCEPT


def run_noop(socket: str, times: Path, timeout: int = 30, *, headers: bool = False) -> None:
    cls = NoopHeadersMilter if headers else NoopMilter
    instrument(cls, TimingLog(times))
    Milter.factory = cls
    Milter.set_flags(Milter.ADDHDRS if headers else 0)
    Milter.runmilter("sealgate-bench-noop", socket, timeout)


def run_sealgate(config: Path, times: Path) -> None:
    from sealgate.cli import main as cli_main
    from sealgate.milter_app import SealgateMilter

    instrument(SealgateMilter, TimingLog(times))
    cli_main(["milter", "--config", str(config), "--log-level", "info"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="which", required=True)
    noop = sub.add_parser("noop", help="the no-op baseline milter")
    noop.add_argument("--socket", required=True, help="unix:PATH or inet:PORT@HOST")
    noop.add_argument("--times", type=Path, required=True)
    noop.add_argument("--headers", action="store_true",
                      help="prepend the two header fields sealgate adds to each message")
    sg = sub.add_parser("sealgate", help="sealgate milter with the timing wrapper")
    sg.add_argument("--config", type=Path, required=True)
    sg.add_argument("--times", type=Path, required=True)
    args = ap.parse_args()
    if args.which == "noop":
        run_noop(args.socket, args.times, headers=args.headers)
    else:
        run_sealgate(args.config, args.times)


if __name__ == "__main__":
    main()
