"""A message's CPU in the milter with the CPU caches emptied before it, as under load.

    .venv/bin/python -m bench.cold_path [--messages 300] [--blocks 5] [--size 10KB]

Through Postfix (:mod:`bench.through_postfix`), Postfix's processes run on the
same two cores between two messages of a milter and push its code and data out
of the CPU caches: the verdict that costs 0.09 ms in a warm loop costs several
times that there. This benchmark reproduces that in one process, without
Postfix, so that a change to the per-message path can be measured in seconds
and without the machine's load drifting: before each message it writes
through a 64 MB buffer (twice this machine's L3 cache), then times the
message alone with the thread's CPU clock.

It measures, warm (no emptying) and cold, per message:

- ``verdict``: ``Gateway.evaluate`` on the 10 KB triple-wrapped message
  (strict policy, ``files`` directory), as in :mod:`bench.check_rate`;
- ``sealgate milter``: the callbacks libmilter makes for one connection
  (negotiate, connect, MAIL FROM, RCPT TO, each header, end of headers, the
  body, end of message, close), replayed on ``SealgateMilter`` as ``sealgate
  milter`` installs it (logging to a file, the buffered report writer, the
  metrics, the outcome thread), against a stand-in for libmilter's context;
  the message thread's CPU only (the outcome, log and report writer threads
  work in batches);
- ``no-op milter``: the same on :class:`bench.milters.NoopMilter`.

Each figure is the median over ``--blocks`` blocks of ``--messages``
messages; the lowest block is shown too (the machine's neighbours only ever
add to a block).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import Milter

from . import inputs
from .milters import NoopMilter
from .timing import median

EMPTY_BYTES = 64 << 20  # written through before each cold message
LINE = 64  # bytes per cache line


class CacheEmptier:
    """Writes one byte per cache line of a buffer larger than the L3 cache."""

    def __init__(self, size: int = EMPTY_BYTES) -> None:
        self._buf = bytearray(size)
        self._ones = b"\x01" * len(self._buf[::LINE])

    def __call__(self) -> None:
        self._buf[::LINE] = self._ones


class FakeContext:
    """What pymilter's milter context gives a milter: macros, header actions (kept), replies."""

    def __init__(self, queue_id: str) -> None:
        self._priv: Any = None
        self.queue_id = queue_id
        self.added: list[tuple[str, str, int]] = []

    def setpriv(self, priv: Any) -> None:
        self._priv = priv

    def getpriv(self) -> Any:
        return self._priv

    def getsymval(self, name: str) -> str | None:
        return self.queue_id if name == "i" else None

    def setsymlist(self, *args: Any) -> None:
        pass

    def addheader(self, field: str, value: str, idx: int) -> None:
        self.added.append((field, value, idx))

    def chgheader(self, field: str, idx: int, value: str) -> None:
        pass

    def setreply(self, *args: Any) -> None:
        pass


@dataclass(frozen=True)
class Conversation:
    """One message as libmilter hands it to a Python milter (Postfix's milter protocol)."""

    sender: bytes
    recipients: tuple[bytes, ...]
    headers: tuple[tuple[str, bytes], ...]  # value as Postfix sends it: folded lines joined by LF
    body: bytes

    @classmethod
    def of(cls, raw: bytes, sender: str, recipients: tuple[str, ...]) -> Conversation:
        head, _, body = raw.partition(b"\r\n\r\n")
        fields: list[list[Any]] = []
        for line in head.split(b"\r\n"):
            if line[:1] in (b" ", b"\t") and fields:
                fields[-1][1] += b"\n" + line
            else:
                name, _, value = line.partition(b":")
                fields.append([name.decode("ascii"), value.lstrip(b" ")])
        return cls(b"<" + sender.encode() + b">",
                   tuple(b"<" + r.encode() + b">" for r in recipients),
                   tuple((name, value) for name, value in fields), body)

    def replay(self, factory: Callable[[], Milter.Base], queue_id: str = "4QBENCH") -> int:
        """negotiate .. close on a new milter object; the end-of-message answer."""
        ctx = FakeContext(queue_id)
        milter = factory()
        milter._setctx(ctx)  # type: ignore[attr-defined]
        milter.negotiate([Milter.CURR_ACTS, 0x1FFFFF, 0, 0])
        milter.connect("client.example.com", 2, ("192.0.2.7", 2525))
        milter.envfrom_bytes(self.sender)
        for rcpt in self.recipients:
            milter.envrcpt_bytes(rcpt)
        for name, value in self.headers:
            milter.header_bytes(name, value)
        milter.eoh()
        for start in range(0, len(self.body), 65535):
            milter.body(self.body[start:start + 65535])
        answer = milter.eom()
        milter.close()
        milter._setctx(None)  # type: ignore[attr-defined]
        return int(answer)


@dataclass
class ColdRow:
    what: str
    warm: list[float]  # µs per message, per block
    cold: list[float]


def per_message(step: Callable[[], object], messages: int, blocks: int,
                empty: Callable[[], None] | None) -> list[float]:
    """µs of this thread's CPU per ``step()``, one figure per block."""
    out = []
    for _ in range(blocks):
        total = 0.0
        for _ in range(messages):
            if empty is not None:
                empty()
            started = time.thread_time()
            step()
            total += time.thread_time() - started
        out.append(total / messages * 1e6)
    return out


def measure(size: int, messages: int, blocks: int, work: Path) -> list[ColdRow]:
    from sealgate import milter_app
    from sealgate.engine import load_gateway
    from sealgate.logging_setup import flush_logs, setup
    from sealgate.metrics import Metrics
    from sealgate.model import Envelope
    from sealgate.quarantine import open_store
    from sealgate.quarantine.decisions import BufferedDecisions, DecisionWriter
    from sealgate.spool import sealed_spool

    pki = inputs.pki_in(work / "pki")
    raw = inputs.triple_wrapped(pki, size)
    gateway = load_gateway(inputs.write_config(work / "gw", pki))
    envelope = Envelope(inputs.SENDER, inputs.RECIPIENTS, from_header=inputs.SENDER,
                        client_address="192.0.2.7", queue_id="4QBENCH")
    spool = sealed_spool()
    spool.write(raw)

    def verdict() -> None:
        got = gateway.evaluate(spool, envelope)
        if got.action != "accept":
            raise RuntimeError(f"the benchmark message was not accepted: {got.violations}")

    log_file = (work / "milter.log").open("a", encoding="utf-8")
    setup("info", "text", log_file)  # as `sealgate milter` sets it up
    metrics = Metrics()
    store = open_store(gateway.config.quarantine)
    buffered = BufferedDecisions(store, DecisionWriter(store))
    milter_app.instrument(gateway, metrics)
    outcomes = milter_app.outcome_thread(metrics)
    milter_app.install(gateway, buffered, milter_app.Tracker(),  # type: ignore[arg-type]
                       live=milter_app.Live(gateway), metrics=metrics, outcomes=outcomes)
    sealgate_factory = Milter.factory
    conversation = Conversation.of(raw, inputs.SENDER, inputs.RECIPIENTS)

    def milter(factory: Callable[[], Milter.Base]) -> Callable[[], None]:
        def step() -> None:
            if conversation.replay(factory) not in (Milter.CONTINUE, Milter.ACCEPT):
                raise RuntimeError("the milter did not accept the benchmark message")
        return step

    steps = [("verdict", verdict), ("sealgate milter", milter(sealgate_factory)),
             ("no-op milter", milter(NoopMilter))]
    empty = CacheEmptier()
    rows = []
    try:
        for what, step in steps:
            per_message(step, 50, 1, None)  # warm-up: caches of every kind filled
            rows.append(ColdRow(what, per_message(step, messages, blocks, None),
                                per_message(step, messages, blocks, empty)))
    finally:
        outcomes.close()
        buffered.close()
        flush_logs()
        logging.getLogger().handlers.clear()
        log_file.close()
        spool.close()
    return rows


def report(size: int, rows: list[ColdRow]) -> str:
    lines = [f"one process, {inputs.human(size)} triple-wrapped message; µs of CPU per message "
             f"(median of blocks, lowest in brackets); cold: {EMPTY_BYTES >> 20} MB written "
             "through before each message",
             f"{'':<18} {'warm':>16} {'cold':>16} {'cold/warm':>10}"]
    for row in rows:
        warm, cold = median(row.warm), median(row.cold)
        lines.append(f"{row.what:<18} {warm:8.0f} ({min(row.warm):4.0f}) "
                     f"{cold:8.0f} ({min(row.cold):4.0f}) {cold / warm:9.1f}x")
    by = {r.what: r for r in rows}
    if "sealgate milter" in by and "no-op milter" in by:
        extra = median(by["sealgate milter"].cold) - median(by["no-op milter"].cold)
        lines.append(f"sealgate's own work, cold: {extra:.0f} µs per message over the no-op milter")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from .check_rate import parse_sizes
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="10KB", type=lambda s: parse_sizes(s)[0])
    ap.add_argument("--messages", type=int, default=300)
    ap.add_argument("--blocks", type=int, default=5)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sealgate-bench-cold-") as tmp:
        rows = measure(args.size, args.messages, args.blocks, Path(tmp))
    print(report(args.size, rows))


if __name__ == "__main__":
    main()
