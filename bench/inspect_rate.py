"""Cost of inspecting a large triple-wrapped message against hashing its bytes.

    .venv/bin/python bench/inspect_rate.py [--mb 25] [--runs 7]

The gateway's work on a big message should be the hash of it: the signed
content is hashed as it streams and the encrypted content is never decoded.
Prints the best of --runs for `inspect` (from a file on disk, as the milter's
spool) and for hashlib.sha256 over the same bytes in memory, and their ratio.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

from sealgate import devmail as m
from sealgate.devpki import build_pki
from sealgate.smime.structure import inspect


def best(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=25.0)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pki = build_pki(root / "pki")
        # base64 inside base64 (attachment, then the enveloped layer): ~1.8x growth
        attachment = m.binary_attachment(int(args.mb * 1e6 / 1.8))
        raw = m.message(m.triple_wrap(attachment, pki["alice"], [pki["bob"], pki["alice"]]),
                        "alice@example.com", ["bob@example.com"])
        path = root / "big.eml"
        path.write_bytes(raw)

        def run_inspect() -> None:
            with path.open("rb") as fh:
                result = inspect(fh)
            assert result.structure == "signed(encrypted)", result.findings

        t_inspect = best(run_inspect, args.runs)
        t_hash = best(lambda: hashlib.sha256(raw).digest(), args.runs)
    print(f"message            {len(raw) / 1e6:8.1f} MB triple-wrapped")
    print(f"inspect            {t_inspect * 1e3:8.1f} ms  ({len(raw) / t_inspect / 1e9:.2f} GB/s)")
    print(f"hashlib sha256     {t_hash * 1e3:8.1f} ms  ({len(raw) / t_hash / 1e9:.2f} GB/s)")
    print(f"ratio inspect/hash {t_inspect / t_hash:8.2f}")


if __name__ == "__main__":
    sys.exit(main())
