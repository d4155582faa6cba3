"""``make bench``: every figure of issue 7 next to its baselines, measured in one run.

    .venv/bin/python -m bench [--quick] [--only offline,direct,cold,postfix,memory] [--runs 3] ...

Builds its own inputs (throwaway PKI, ``openssl cms`` messages), then runs
the offline engine (:mod:`bench.check_rate`), sealgate and the no-op milter
without Postfix (:mod:`bench.milter_direct`), the same conversation in one
process with the CPU caches emptied before each message
(:mod:`bench.cold_path`), the Postfix runs
(:mod:`bench.through_postfix`, as root) and the memory runs
(:mod:`bench.milter_memory`), and prints one table with PASS/MISS per
target. Progress goes to stderr, the table to stdout. About 3 minutes on the
2-core development machine (``--inet`` adds one); ``--quick`` about 1.
"""

from __future__ import annotations

import argparse
import os
import platform
import ssl
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sealgate import native

from . import check_rate, cold_path, inputs, milter_direct, milter_memory, through_postfix
from .timing import median

PARTS = ("offline", "direct", "cold", "postfix", "memory")


@dataclass(frozen=True)
class Target:
    what: str
    limit: str
    measured: str
    ok: bool | None  # None: not measured in this run

    def line(self) -> str:
        verdict = {True: "PASS", False: "MISS", None: "n/a "}[self.ok]
        return f"{verdict}  {self.what:<62} {self.limit:<10} {self.measured}"


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def offline_targets(result: check_rate.EngineResult) -> list[Target]:
    targets = []
    small = result.row("triple-wrapped", 10 * inputs.KB)
    if small is not None and small.openssl_net_s and small.openssl_s:
        ratio = small.engine_s / small.openssl_net_s
        targets.append(Target("offline engine vs openssl cms -verify, 10 KB triple-wrapped",
                              "<= 3x", f"{ratio:.2f}x of openssl's own work (start-up taken off); "
                              f"{small.engine_s / small.openssl_s:.2f}x of a whole openssl run",
                              ratio <= 3.0))
    elif small is not None and small.openssl_s:
        # openssl's start-up was within the noise of its whole run: judge against the run
        ratio = small.engine_s / small.openssl_s
        targets.append(Target("offline engine vs openssl cms -verify, 10 KB triple-wrapped",
                              "<= 3x", f"{ratio:.2f}x of a whole openssl run (its start-up could "
                              "not be told apart from its work in this run)", ratio <= 3.0))
    else:
        targets.append(Target("offline engine vs openssl cms -verify, 10 KB triple-wrapped", "<= 3x",
                              "not measured (no 10 KB size)", None))
    large = result.row("triple-wrapped", 25 * inputs.MB)
    if large is not None:
        ratio = large.engine_s / large.hash_s
        targets.append(Target("offline engine vs sha256 of the message, 25 MB triple-wrapped",
                              "<= 1.5x", f"{ratio:.2f}x", ratio <= 1.5))
    else:
        targets.append(Target("offline engine vs sha256 of the message, 25 MB triple-wrapped",
                              "<= 1.5x", "not measured (no 25 MB size)", None))
    return targets


def postfix_targets(rows: list[through_postfix.PostfixRow]) -> list[Target]:
    by = {r.setup: r for r in rows}
    noop, ours = by.get("no-op milter"), by.get("sealgate files")
    what = "through Postfix: sealgate (files) vs the no-op milter, 10 KB"
    if noop is None or ours is None or not noop.runs or not ours.runs:
        return [Target(what, ">= 85%", "not measured", None)]
    share = ours.rate / noop.rate
    # Run i of every setup ran minutes apart at most (the runs alternate): the share
    # run by run shows how far the machine's drift moves the figure.
    paired = sorted(o / n for o, n in zip(ours.runs, noop.runs, strict=False))
    spread = (f"; run by run {paired[0] * 100:.0f}-{paired[-1] * 100:.0f}%, median "
              f"{median(paired) * 100:.0f}%") if len(paired) > 1 else ""
    return [Target(what, ">= 85%", f"{share * 100:.0f}% ({ours.rate:.0f} vs {noop.rate:.0f} "
                   f"msgs/s{spread})", share >= 0.85)]


def memory_targets(result: milter_memory.MemoryResult) -> list[Target]:
    what = f"peak RSS growth over idle, one {result.big_size / inputs.MB:.0f} MB message"
    return [Target(what, "<= 64 MB", f"+{result.big_growth_mib:.1f} MiB",
                   result.big_growth_mib * 1024 * 1024 <= 64 * inputs.MB)]


def postfix_table(size: int, rows: list[through_postfix.PostfixRow]) -> str:
    by = {r.setup: r for r in rows}
    noop = by.get("no-op milter")
    base = noop.rate if noop is not None and noop.runs else None
    lines = [f"{'setup':<20} {'msgs/s':>8} {'of no-op':>9} {'runs (msgs/s)':>24} "
             f"{'milter p50':>11} {'p99':>9} {'mean':>9} {'eom p50':>9} {'milter CPU/msg':>15} "
             f"{'all CPU/msg':>12}"]
    for row in rows:
        if not row.runs:
            lines.append(f"{row.setup:<20} {'-':>8}  not run: {row.note}")
            continue
        share = f"{row.rate / base * 100:8.0f}%" if base else f"{'-':>9}"
        runs = "/".join(f"{r:.0f}" for r in row.runs)
        if row.p50:
            ms = (f"{median(row.p50) * 1e3:9.2f}ms {median(row.p99) * 1e3:7.2f}ms "
                  f"{median(row.mean) * 1e3:7.2f}ms "
                  f"{median(row.eom_p50) * 1e3:7.2f}ms {median(row.cpu) * 1e3:13.2f}ms")
        else:
            ms = f"{'-':>11} {'-':>9} {'-':>9} {'-':>9} {'-':>15}"
        ms += f" {median(row.machine) * 1e3:10.2f}ms" if row.machine else f" {'-':>12}"
        lines.append(f"{row.setup:<20} {row.rate:8.1f} {share} {runs:>24} {ms}"
                     + (f"  ({row.note})" if row.note else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="shorter timings, fewer Postfix messages and runs (same sizes and targets)")
    ap.add_argument("--only", default=",".join(PARTS),
                    help=f"comma-separated parts to run: {', '.join(PARTS)}")
    ap.add_argument("--sizes", default="10KB,1MB,25MB", type=check_rate.parse_sizes,
                    help="offline message sizes (10KB and 25MB carry targets)")
    ap.add_argument("--seconds", type=float, help="offline: time budget per figure (default 3, quick 1)")
    ap.add_argument("--messages", type=int, help="Postfix: messages per run (default 600, quick 200)")
    ap.add_argument("--sessions", type=int, default=10, help="Postfix: parallel SMTP sessions")
    ap.add_argument("--runs", type=int, help="Postfix: runs per setup, median (default 5, quick 3)")
    ap.add_argument("--setups", default=",".join(through_postfix.SETUPS),
                    help=f"Postfix setups to run, of: {', '.join(through_postfix.SETUPS)}")
    ap.add_argument("--inet", action="store_true",
                    help=f"Postfix: also {' and '.join(through_postfix.INET_SETUPS)}")
    ap.add_argument("--mb", type=float, default=50.0, help="memory: the one large message, MB")
    ap.add_argument("--concurrent", type=int, default=20, help="memory: messages at once")
    ap.add_argument("--each-mb", type=float, default=5.0, help="memory: size of each of those, MB")
    args = ap.parse_args(argv)
    parts = {p.strip() for p in args.only.split(",") if p.strip()}
    unknown = parts - set(PARTS)
    if unknown:
        ap.error(f"--only: unknown part(s) {', '.join(sorted(unknown))}; use {', '.join(PARTS)}")
    seconds = args.seconds if args.seconds is not None else (1.0 if args.quick else 3.0)
    messages = args.messages if args.messages is not None else (200 if args.quick else 600)
    runs = args.runs if args.runs is not None else (3 if args.quick else 5)
    setups = tuple(s.strip() for s in args.setups.split(",") if s.strip())
    if args.inet:
        setups += through_postfix.INET_SETUPS
    unknown = {s for s in setups if not through_postfix.known_setup(s)}
    if unknown:
        ap.error(f"--setups: unknown setup(s) {', '.join(sorted(unknown))}")

    started = time.monotonic()
    out: list[str] = [
        f"sealgate benchmark, {inputs.stamp()}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{ssl.OPENSSL_VERSION}",
        f"command: python -m bench {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip(),
        f"verdict path: {native.describe()}",
    ]
    targets: list[Target] = []

    if "offline" in parts:
        result = check_rate.measure(args.sizes, seconds, log=progress)
        out += ["", "1. Offline engine: Gateway.evaluate in one process, warm (strict policy, files "
                "directory); medians", check_rate.report(result)]
        targets += offline_targets(result)

    if "direct" in parts:
        progress("direct: sealgate and the no-op milter, one message at a time, no Postfix")
        direct = milter_direct.measure(200 if args.quick else 500, 10 * inputs.KB,
                                       runs=3 if args.quick else 5)
        out += ["", "2a. Milters without Postfix (sealgate's own milter client, one connection per "
                "message)", milter_direct.report(direct)]

    if "cold" in parts:
        progress("cold: one process, CPU caches emptied before each message")
        with tempfile.TemporaryDirectory(prefix="sealgate-bench-cold-") as tmp:
            cold = cold_path.measure(10 * inputs.KB, 100 if args.quick else 300,
                                     3 if args.quick else 5, Path(tmp))
        out += ["", "2b. Cold caches, as under load: the milter conversation replayed in one "
                "process, no libmilter", cold_path.report(10 * inputs.KB, cold)]

    if "postfix" in parts:
        if os.geteuid() != 0:
            out += ["", "2. Through Postfix: not run (Postfix must be started as root)"]
            targets += postfix_targets([])
        else:
            size, rows = through_postfix.measure(10 * inputs.KB, messages=messages,
                                                 sessions=args.sessions, runs=runs,
                                                 setups=setups, log=progress)
            out += ["", f"2. Through Postfix: {size / inputs.KB:.1f} KB triple-wrapped message, "
                    f"smtp-source ({args.sessions} sessions, {messages} msgs per run) -> Postfix -> "
                    f"smtp-sink; median of {runs} runs; milters on a unix socket unless 'inet'",
                    postfix_table(size, rows),
                    "milter time: in the milter process, first header callback to the return of "
                    "eom (message transfer + decision; mean: what each SMTP session waits on "
                    "average); eom: the eom callback alone; "
                    "CPU: the milter process's user+system time per message"]
            targets += postfix_targets(rows)

    if "memory" in parts:
        mem = milter_memory.measure(args.mb, args.concurrent, args.each_mb, log=progress)
        out += ["", "3. Memory: sealgate milter over the milter protocol, triple-wrapped messages",
                milter_memory.report(mem)]
        targets += memory_targets(mem)

    out += ["", "Targets", *(t.line() for t in targets),
            f"({time.monotonic() - started:.0f} s)"]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
