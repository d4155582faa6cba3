"""Peak RSS of a running `sealgate milter` while it takes large messages.

    .venv/bin/python bench/milter_memory.py [--mb 49] [--concurrent 20 --each-mb 5]

Starts `sealgate milter` on a throwaway PKI and the strict policy, reads its
idle RSS, pushes one signed message of about --mb MB through the milter
protocol (sealgate.milterclient, chunked as Postfix sends it), then
--concurrent messages of --each-mb MB at once, and prints the peak RSS
(VmHWM) growth over idle for each. The body is spooled to disk and hashed as
it streams, so the growth should not scale with the message.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from gateway_helpers import write_config  # noqa: E402

from sealgate import devmail as m  # noqa: E402
from sealgate.devpki import build_pki  # noqa: E402
from sealgate.milterclient import MilterClient, split_message, wait_for_milter  # noqa: E402


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")


def signed_message(pki, megabytes: float) -> bytes:
    attachment = m.binary_attachment(int(megabytes * 1e6 * 3 / 4))
    return m.message(m.sign(attachment, pki["alice"]), "alice@example.com", ["bob@example.com"])


def send(sock: Path, raw: bytes, results: list, qid: str) -> None:
    headers, body = split_message(raw)
    with MilterClient(f"unix:{sock}", timeout=300) as client:
        client.negotiate()
        results.append(client.send_message("alice@example.com", ["bob@example.com"], headers, body,
                                           queue_id=qid))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=49.0)
    ap.add_argument("--concurrent", type=int, default=20)
    ap.add_argument("--each-mb", type=float, default=5.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pki = build_pki(root / "pki")
        config = write_config(root / "gw", pki)
        sock = root / "gw" / "sealgate.sock"
        big = signed_message(pki, args.mb)
        small = signed_message(pki, args.each_mb)
        with (root / "milter.log").open("wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "sealgate", "milter", "--config",
                                     str(config)], stderr=log)
        try:
            wait_for_milter(sock, proc)
            results: list = []
            send(sock, small[:2000] + b"\r\n", results, "WARM")  # warm the code paths
            idle = status_kib(proc.pid, "VmRSS")
            send(sock, big, results, "BIG")
            peak_big = status_kib(proc.pid, "VmHWM")
            threads = [threading.Thread(target=send, args=(sock, small, results, f"C{i}"))
                       for i in range(args.concurrent)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            peak_conc = status_kib(proc.pid, "VmHWM")
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    print(f"idle RSS                          {idle / 1024:8.1f} MiB")
    print(f"one {len(big) / 1e6:5.1f} MB message: peak      {peak_big / 1024:8.1f} MiB"
          f"  (+{(peak_big - idle) / 1024:.1f} MiB over idle)")
    print(f"{args.concurrent} x {len(small) / 1e6:4.1f} MB concurrent: peak {peak_conc / 1024:8.1f} MiB"
          f"  (+{(peak_conc - idle) / 1024:.1f} MiB over idle)")
    print(f"outcomes: {sorted({r.outcome for r in results})}")


if __name__ == "__main__":
    main()
