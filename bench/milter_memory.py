"""Peak RSS of a running ``sealgate milter`` while it takes large messages.

    .venv/bin/python -m bench.milter_memory [--mb 50] [--concurrent 20 --each-mb 5]

Starts ``sealgate milter`` (strict policy, ``files`` directory, unix socket),
reads its RSS when idle (after one small message has warmed the code paths),
pushes one ``openssl cms`` triple-wrapped message of about --mb MB through
the milter protocol (:mod:`sealgate.milterclient`, in 64 KB chunks as Postfix
sends them), reads the peak (VmHWM), then sends --concurrent messages of
--each-mb MB at once on as many connections and reads the peak again. The
body is spooled to disk and hashed as it streams, so the growth over idle
should not scale with the message.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sealgate.milterclient import MilterProcess, MilterResult, send_raw

from . import inputs


@dataclass
class MemoryResult:
    idle_kib: int
    big_size: int
    big_peak_kib: int
    concurrent: int
    each_size: int
    concurrent_peak_kib: int
    outcomes: list[str]

    @property
    def big_growth_mib(self) -> float:
        return (self.big_peak_kib - self.idle_kib) / 1024

    @property
    def concurrent_growth_mib(self) -> float:
        return (self.concurrent_peak_kib - self.idle_kib) / 1024


def status_kib(pid: int, field: str) -> int:
    """A ``/proc/PID/status`` figure in KiB (VmRSS now, VmHWM the peak so far)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def send(sock: Path, raw: bytes, results: list[MilterResult], qid: str) -> None:
    results.append(send_raw(sock, raw, inputs.SENDER, inputs.RECIPIENTS, qid, timeout=600))


def measure(big_mb: float, concurrent: int, each_mb: float, *, work: Path | None = None,
            log: Callable[[str], object] = print) -> MemoryResult:
    with tempfile.TemporaryDirectory(prefix="sealgate-bench-memory-") as tmp:
        root = work or Path(tmp)
        pki = inputs.pki_in(root / "pki")
        config = inputs.write_config(root / "gw", pki)
        sock = root / "gw" / "sealgate.sock"
        log(f"memory: building a {big_mb:g} MB and a {each_mb:g} MB triple-wrapped message")
        big = inputs.triple_wrapped(pki, int(big_mb * inputs.MB))
        small = inputs.triple_wrapped(pki, int(each_mb * inputs.MB))
        warm = inputs.triple_wrapped(pki, 10 * inputs.KB)
        with MilterProcess(config, sock, root / "milter.log", "--log-level", "warning") as proc:
            results: list[MilterResult] = []
            send(sock, warm, results, "WARM")
            idle = status_kib(proc.pid, "VmRSS")
            log(f"memory: one {len(big) / inputs.MB:.1f} MB message")
            send(sock, big, results, "BIG")
            peak_big = status_kib(proc.pid, "VmHWM")
            log(f"memory: {concurrent} x {len(small) / inputs.MB:.1f} MB at once")
            threads = [threading.Thread(target=send, args=(sock, small, results, f"C{i}"))
                       for i in range(concurrent)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            peak_conc = status_kib(proc.pid, "VmHWM")
    return MemoryResult(idle, len(big), peak_big, concurrent, len(small), peak_conc,
                        sorted(r.outcome for r in results))


def report(result: MemoryResult) -> str:
    return "\n".join([
        f"idle RSS {result.idle_kib / 1024:.1f} MiB",
        f"one {result.big_size / inputs.MB:.1f} MB message: peak {result.big_peak_kib / 1024:.1f} MiB "
        f"(+{result.big_growth_mib:.1f} MiB over idle)",
        f"{result.concurrent} x {result.each_size / inputs.MB:.1f} MB at once: peak "
        f"{result.concurrent_peak_kib / 1024:.1f} MiB (+{result.concurrent_growth_mib:.1f} MiB over idle)",
        f"outcomes: {', '.join(sorted(set(result.outcomes)))}",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mb", type=float, default=50.0)
    ap.add_argument("--concurrent", type=int, default=20)
    ap.add_argument("--each-mb", type=float, default=5.0)
    args = ap.parse_args()
    print(report(measure(args.mb, args.concurrent, args.each_mb)))


if __name__ == "__main__":
    main()
