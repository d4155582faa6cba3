"""Milter CPU per message without Postfix: ``sealgate milter`` driven by sealgate's own milter client.

Sends the same 10 KB triple-wrapped message ``--messages`` times, one milter
connection per message (as Postfix opens one per SMTP session), one at a
time, and reads the milter process's CPU time from /proc. Set beside the
through-Postfix figures (``bench.through_postfix``), it separates what the
milter itself costs per message from what the load around it adds.

    python -m bench.milter_direct [--messages 500] [--size 10KB] [--log-level info]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sealgate.milterclient import MilterProcess, MilterResult

from . import inputs
from .check_rate import parse_sizes
from .milter_memory import send
from .through_postfix import cpu_seconds


@dataclass(frozen=True)
class DirectResult:
    messages: int
    size: int
    cpu_ms: float  # milter CPU per message
    wall_ms: float  # per message, client side, one at a time
    outcomes: tuple[str, ...]


def measure(messages: int, size: int, level: str = "info") -> DirectResult:
    with tempfile.TemporaryDirectory(prefix="sealgate-bench-direct-") as tmp:
        root = Path(tmp)
        pki = inputs.pki_in(root / "pki")
        config = inputs.write_config(root / "gw", pki)
        raw = inputs.triple_wrapped(pki, size)
        with MilterProcess(config, root / "gw" / "sealgate.sock", root / "milter.log",
                           "--log-level", level) as proc:
            results: list[MilterResult] = []
            for i in range(20):  # warm: caches, path validation
                send(root / "gw" / "sealgate.sock", raw, results, f"W{i}")
            results.clear()
            cpu0, wall0 = cpu_seconds(proc.pid), time.monotonic()
            for i in range(messages):
                send(root / "gw" / "sealgate.sock", raw, results, f"Q{i}")
            cpu, wall = cpu_seconds(proc.pid) - cpu0, time.monotonic() - wall0
    return DirectResult(messages, len(raw), cpu / messages * 1e3, wall / messages * 1e3,
                        tuple(sorted({r.outcome for r in results})))


def report(r: DirectResult) -> str:
    return (f"{r.messages} x {inputs.human(r.size)} triple-wrapped, one at a time: milter CPU "
            f"{r.cpu_ms:.2f} ms/msg, wall {r.wall_ms:.2f} ms/msg; outcomes: {', '.join(r.outcomes)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=500)
    ap.add_argument("--size", default="10KB", help="message size, e.g. 10KB, 1MB")
    ap.add_argument("--log-level", default="info", help="the milter's log level (info: one line per message)")
    args = ap.parse_args()
    (size,) = parse_sizes(args.size)
    print(report(measure(args.messages, size, args.log_level)))


if __name__ == "__main__":
    main()
