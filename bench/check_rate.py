"""Messages per second of the `sealgate check` engine in one process (warm).

    .venv/bin/python bench/check_rate.py [--size 10240] [--seconds 5]

Builds a throwaway PKI, a triple-wrapped message of about --size bytes made
by `openssl cms`, and a gateway on the strict policy; evaluates it in a loop
and prints messages/s next to the cost of `openssl cms -verify` on the outer
signature (the floor the cryptography allows) measured in the same run.
"""

from __future__ import annotations

import argparse
import io
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from gateway_helpers import gateway_for  # noqa: E402

from sealgate import devmail as m  # noqa: E402
from sealgate.devpki import build_pki  # noqa: E402
from sealgate.model import Envelope  # noqa: E402


def triple_wrapped_of_size(pki, size: int) -> bytes:
    """An openssl-made triple-wrapped message of about ``size`` bytes in all."""
    line = "The quarterly figures are in the attached table, line %06d.\r\n"
    content = max(size // 3, 100)
    for _ in range(4):  # signatures, certificates and base64 inflate the content
        text = "".join(line % i for i in range(content // len(line % 0) + 1))[:content]
        raw = m.message(m.triple_wrap(m.text_entity(text), pki["alice"], [pki["bob"], pki["alice"]]),
                        "alice@example.com", ["bob@example.com"])
        if abs(len(raw) - size) < size * 0.05:
            break
        content = max(100, int(content * size / len(raw)))
    return raw


def rate(fn, seconds: float) -> float:
    fn()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        fn()
        n += 1
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=10 * 1024)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pki = build_pki(root / "pki")
        raw = triple_wrapped_of_size(pki, args.size)
        gw = gateway_for(root / "gw", pki)
        env = Envelope("alice@example.com", ("bob@example.com",))
        verdict = gw.evaluate(io.BytesIO(raw), env)
        assert str(verdict.action) == "accept", verdict.violations
        ours = rate(lambda: gw.evaluate(io.BytesIO(raw), env), args.seconds)

        msg = root / "msg.eml"
        msg.write_bytes(raw)
        cafile = root / "ca+crl.pem"
        cafile.write_bytes(pki.ca.cert_path.read_bytes() + pki.crl_path.read_bytes())
        cmd = ["openssl", "cms", "-verify", "-in", str(msg), "-CAfile", str(cafile), "-crl_check",
               "-out", "/dev/null"]
        subprocess.run(cmd, check=True, capture_output=True)
        t0 = time.perf_counter()
        runs = 20
        for _ in range(runs):
            subprocess.run(cmd, check=True, capture_output=True)
        openssl = runs / (time.perf_counter() - t0)
    print(f"message size        {len(raw):>10,d} bytes (triple-wrapped)")
    print(f"sealgate engine     {ours:>10.1f} msgs/s  (one process, warm)")
    print(f"openssl cms -verify {openssl:>10.1f} msgs/s  (process per message, outer signature)")
    print(f"ratio engine/openssl {ours / openssl:>9.2f}")


if __name__ == "__main__":
    main()
