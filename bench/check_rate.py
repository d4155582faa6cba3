"""Offline engine: messages/s of the ``sealgate check`` logic in one process, with its baselines.

    .venv/bin/python -m bench.check_rate [--sizes 10KB,1MB,25MB] [--seconds 3]

Loads the gateway once (strict policy, ``files`` directory) and calls
``Gateway.evaluate`` in a loop on a message in a file on disk (as the milter's
spool and ``sealgate check`` read it), for triple-wrapped messages made by
``openssl cms`` and plain ones of each size. Measured in the same run:

- ``openssl cms -verify`` of the same message's outer signature with the CA
  and CRL (``-crl_check``), one process per message as a script would run it;
  and the same less the start-up of an ``openssl`` process (``openssl
  version``), which is the floor the cryptography allows;
- ``hashlib.sha256`` over the message bytes in memory (the work a streamed
  verify cannot avoid on a large message);
- one RSA-2048 PKCS#1 v1.5 signature verification (cryptography).

Every figure is the median of its runs, in CPU seconds (user + system; of
the child process for ``openssl``): the machine is shared, and CPU time does
not count the neighbours' work. The path-validation cache is warm after the
first message, as it is in a milter that sees the same senders.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sealgate.engine import Gateway, load_gateway
from sealgate.model import Envelope
from sealgate.units import parse_size

from . import inputs
from .timing import children_cpu, durations, median, per_call


@dataclass
class EngineRow:
    kind: str  # "triple-wrapped", "plain", "sealgate seal"
    size: int  # bytes of the whole message
    action: str  # the verdict (strict policy)
    engine_s: float  # median seconds per Gateway.evaluate
    hash_s: float  # median seconds of sha256 over the message
    openssl_s: float | None = None  # median seconds of one `openssl cms -verify` process
    openssl_net_s: float | None = None  # the same less an openssl process start

    @property
    def rate(self) -> float:
        return 1.0 / self.engine_s


@dataclass
class EngineResult:
    rows: list[EngineRow] = field(default_factory=list)
    rsa_verify_s: float = 0.0
    openssl_start_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    def row(self, kind: str, size_near: int) -> EngineRow | None:
        """The row of ``kind`` whose size is nearest ``size_near``, if within 20% of it."""
        candidates = [r for r in self.rows if r.kind == kind and abs(r.size - size_near) <= 0.2 * size_near]
        if not candidates:
            return None
        return min(candidates, key=lambda r: abs(r.size - size_near))


def rsa_verify_seconds(seconds: float) -> float:
    """Median time of one RSA-2048 PKCS#1 v1.5 / SHA-256 verification."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    data = b"signed attributes" * 10
    signature = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    public = key.public_key()
    return per_call(lambda: public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256()),
                    seconds)


def _openssl(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


def openssl_verify_seconds(message: Path, cafile: Path, seconds: float) -> float:
    cmd = ["openssl", "cms", "-verify", "-in", str(message), "-CAfile", str(cafile), "-crl_check",
           "-out", "/dev/null"]
    return median(durations(lambda: _openssl(cmd), seconds, min_runs=3, clock=children_cpu))


def openssl_start_seconds(seconds: float) -> float:
    """CPU of an ``openssl`` process that does nothing (loading, configuration, exit)."""
    return median(durations(lambda: _openssl(["openssl", "version"]), seconds, min_runs=5,
                            clock=children_cpu))


def measure(sizes: list[int], seconds: float, *, plain: bool = True, seal: bool = True,
            work: Path | None = None, log: Callable[[str], object] = print) -> EngineResult:
    """Build the inputs under ``work`` (a temporary folder by default) and measure.

    ``seal``: also messages made by ``sealgate seal`` on a SoftHSM2 card, judged
    by the gateway of that endpoint site (its own CA), when the tree has it;
    otherwise :attr:`EngineResult.notes` says why not.
    """
    with tempfile.TemporaryDirectory(prefix="sealgate-bench-") as tmp:
        root = work or Path(tmp)
        pki = inputs.pki_in(root / "pki")
        gateway = load_gateway(inputs.write_config(root / "gw", pki))
        cafile = inputs.ca_and_crl(pki, root)
        envelope = Envelope(inputs.SENDER, inputs.RECIPIENTS)
        result = EngineResult()
        log("offline: RSA verify and openssl start-up")
        result.rsa_verify_s = rsa_verify_seconds(min(seconds, 1.0))
        result.openssl_start_s = openssl_start_seconds(min(seconds, 1.0))
        kinds: list[tuple[str, Callable[[int], bytes], Gateway, Path | None]] = [
            ("triple-wrapped", lambda size: inputs.triple_wrapped(pki, size), gateway, cafile)]
        if plain:
            kinds.append(("plain", inputs.plain, gateway, None))
        if seal:
            try:
                site = inputs.seal_site(root / "endpoint")
            except Exception as exc:  # noqa: BLE001 - the endpoint harness may fail in any way
                site = f"the endpoint site could not be built ({type(exc).__name__}: {exc})"
            if isinstance(site, str):
                result.notes.append(f"sealgate seal: not measured: {site}")
            else:
                kinds.append(("sealgate seal", site.seal, load_gateway(site.gateway_config()),
                              site.ca_and_crl()))
        for kind, make, judge, ca in kinds:
            for size in sizes:
                log(f"offline: {kind} {inputs.human(size)}: building")
                try:
                    raw = make(size)
                except RuntimeError as exc:
                    result.notes.append(f"{kind}: not measured: {exc}")
                    break
                result.rows.append(_measure_one(kind, raw, judge, ca, envelope, seconds, result,
                                                root / f"{kind.replace(' ', '-')}-{size}.eml", log))
        return result


def _measure_one(kind: str, raw: bytes, gateway: Gateway, cafile: Path | None, envelope: Envelope,
                 seconds: float, result: EngineResult, path: Path,
                 log: Callable[[str], object]) -> EngineRow:
    path.write_bytes(raw)
    try:
        with path.open("rb") as fh:
            verdict = gateway.evaluate(fh, envelope)
            expected = "quarantine" if kind == "plain" else "accept"
            assert str(verdict.action) == expected, (kind, len(raw), verdict.violations)
            log(f"offline: {kind} {inputs.human(len(raw))}: engine")
            engine = median(durations(lambda: gateway.evaluate(fh, envelope), seconds, min_runs=3))
        hashed = median(durations(lambda: hashlib.sha256(raw).digest(), min(seconds, 1.0),
                                  min_runs=3))
        row = EngineRow(kind, len(raw), str(verdict.action), engine, hashed)
        if cafile is not None:
            log(f"offline: {kind} {inputs.human(len(raw))}: openssl cms -verify")
            row.openssl_s = openssl_verify_seconds(path, cafile, seconds)
            net = row.openssl_s - result.openssl_start_s
            # within the noise of the start-up figure: no honest "net" figure
            row.openssl_net_s = net if net > 0.1 * row.openssl_s else None
        return row
    finally:
        path.unlink()


def parse_sizes(text: str) -> list[int]:
    """``10KB,1MB,25MB`` -> bytes (decimal units as well as KiB/MiB)."""
    sizes = []
    for part in text.split(","):
        part = part.strip()
        upper = part.upper()
        if upper.endswith("MB") and not upper.endswith("IB"):
            sizes.append(int(float(part[:-2]) * inputs.MB))
        elif upper.endswith("KB") and not upper.endswith("IB"):
            sizes.append(int(float(part[:-2]) * inputs.KB))
        else:
            sizes.append(parse_size(part))
    return sizes


def report(result: EngineResult) -> str:
    lines = [f"{'message':<26} {'msgs/s':>9} {'openssl/s':>10} {'x openssl':>10} "
             f"{'x net':>7} {'x sha256':>9} {'RSA verifies':>13}"]
    for row in result.rows:
        name = f"{row.kind} {inputs.human(row.size)}"
        ossl = f"{1 / row.openssl_s:10.1f}" if row.openssl_s else f"{'-':>10}"
        ratio = f"{row.engine_s / row.openssl_s:10.2f}" if row.openssl_s else f"{'-':>10}"
        net = f"{row.engine_s / row.openssl_net_s:7.2f}" if row.openssl_net_s else f"{'-':>7}"
        lines.append(f"{name:<26} {row.rate:9.1f} {ossl} {ratio} {net} "
                     f"{row.engine_s / row.hash_s:9.2f} {row.engine_s / result.rsa_verify_s:13.1f}")
    lines.append(f"one RSA-2048 verify {result.rsa_verify_s * 1e6:.1f} µs; "
                 f"openssl process start {result.openssl_start_s * 1e3:.2f} ms")
    lines += result.notes
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10KB,1MB,25MB", type=parse_sizes)
    ap.add_argument("--seconds", type=float, default=3.0, help="time budget per figure")
    ap.add_argument("--no-plain", action="store_true", help="no plain messages")
    ap.add_argument("--no-seal", action="store_true", help="no messages made by sealgate seal")
    args = ap.parse_args()
    print(report(measure(args.sizes, args.seconds, plain=not args.no_plain, seal=not args.no_seal)))


if __name__ == "__main__":
    main()
