"""Milter CPU per message without Postfix: sealgate and the no-op milter, driven by sealgate's own client.

Sends the same 10 KB triple-wrapped message ``--messages`` times, one milter
connection per message (as Postfix opens one per SMTP session), one at a
time, to ``sealgate milter`` and to the no-op milter (:class:`bench.milters.NoopMilter`),
alternating between the two in ``--runs`` rounds, and reads each milter
process's CPU time from /proc. Set beside the through-Postfix figures
(:mod:`bench.through_postfix`), it separates what the milter itself costs per
message from what the load around it adds.

    python -m bench.milter_direct [--messages 500] [--runs 3] [--size 10KB] [--log-level info]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from sealgate.milterclient import MilterProcess, MilterResult, send_raw, wait_for_milter

from . import inputs
from .check_rate import parse_sizes
from .through_postfix import cpu_seconds, stop_milter
from .timing import median

WARM = 20  # messages before timing: caches, path validation


@dataclass
class DirectRow:
    milter: str  # "sealgate" or "no-op"
    cpu_ms: list[float] = field(default_factory=list)  # milter CPU per message, per run
    wall_ms: list[float] = field(default_factory=list)  # per message, client side, per run
    outcomes: set[str] = field(default_factory=set)

    @property
    def cpu(self) -> float:
        return median(self.cpu_ms)

    @property
    def wall(self) -> float:
        return median(self.wall_ms)


@dataclass(frozen=True)
class DirectResult:
    messages: int  # per run
    size: int
    sealgate: DirectRow
    noop: DirectRow

    @property
    def cpu_ms(self) -> float:  # sealgate's (the figure the README quotes)
        return self.sealgate.cpu

    @property
    def wall_ms(self) -> float:
        return self.sealgate.wall

    @property
    def outcomes(self) -> tuple[str, ...]:
        return tuple(sorted(self.sealgate.outcomes))


def _start_noop(socket_path: Path, log: Path) -> subprocess.Popen[bytes]:
    """The no-op milter (``python -m bench.milters noop``) on a unix socket, as a child."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.milters", "noop", "--socket", f"unix:{socket_path}",
             "--times", str(log.with_suffix(".times"))],
            stdout=out, stderr=out, cwd=inputs.ROOT)
    try:
        wait_for_milter(socket_path, proc)
    except BaseException:
        stop_milter(proc)
        raise
    return proc


def _run(row: DirectRow, pid: int, sock: Path, raw: bytes, messages: int) -> None:
    results: list[MilterResult] = []
    cpu0, wall0 = cpu_seconds(pid), time.monotonic()
    for i in range(messages):
        results.append(send_raw(sock, raw, inputs.SENDER, inputs.RECIPIENTS, f"Q{i}"))
    cpu, wall = cpu_seconds(pid) - cpu0, time.monotonic() - wall0
    row.cpu_ms.append(cpu / messages * 1e3)
    row.wall_ms.append(wall / messages * 1e3)
    row.outcomes.update(r.outcome for r in results)


def measure(messages: int, size: int, level: str = "info", runs: int = 3) -> DirectResult:
    with tempfile.TemporaryDirectory(prefix="sealgate-bench-direct-") as tmp:
        root = Path(tmp)
        pki = inputs.pki_in(root / "pki")
        config = inputs.write_config(root / "gw", pki)
        raw = inputs.triple_wrapped(pki, size)
        ours, noop = DirectRow("sealgate"), DirectRow("no-op")
        sock = root / "gw" / "sealgate.sock"
        noop_sock = root / "noop.sock"
        with MilterProcess(config, sock, root / "milter.log", "--log-level", level) as proc:
            baseline = _start_noop(noop_sock, root / "noop.log")
            try:
                for _ in range(WARM):
                    send_raw(sock, raw, inputs.SENDER, inputs.RECIPIENTS)
                    send_raw(noop_sock, raw, inputs.SENDER, inputs.RECIPIENTS)
                for _ in range(runs):  # alternating, so that other load touches both alike
                    _run(ours, proc.pid, sock, raw, messages)
                    _run(noop, baseline.pid, noop_sock, raw, messages)
            finally:
                stop_milter(baseline)
    return DirectResult(messages, len(raw), ours, noop)


def report(r: DirectResult) -> str:
    ratio = r.sealgate.cpu / r.noop.cpu if r.noop.cpu else float("nan")
    return (f"{r.messages} x {inputs.human(r.size)} triple-wrapped per run, one at a time, "
            f"median of {len(r.sealgate.cpu_ms)} runs: milter CPU sealgate {r.sealgate.cpu:.2f} "
            f"ms/msg, no-op {r.noop.cpu:.2f} ms/msg ({ratio:.1f}x); wall sealgate "
            f"{r.sealgate.wall:.2f} ms/msg, no-op {r.noop.wall:.2f}; sealgate outcomes: "
            f"{', '.join(r.outcomes)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=500)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--size", default="10KB", help="message size, e.g. 10KB, 1MB")
    ap.add_argument("--log-level", default="info", help="the milter's log level (info: one line per message)")
    args = ap.parse_args()
    (size,) = parse_sizes(args.size)
    print(report(measure(args.messages, size, args.log_level, args.runs)))


if __name__ == "__main__":
    main()
