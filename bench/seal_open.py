"""Seal and open time per message on SoftHSM2 cards, split into card time and the rest.

    .venv/bin/python -m bench.seal_open [--messages 50] [--size 10KiB] [--key rsa2048|rsa3072|ec256]
                                        [--cipher aes256-gcm|aes256-cbc]

Builds a throwaway site (sealgate CA, strict policy, files directory) in a
temporary folder, enrols a sender and a recipient on SoftHSM2 tokens with the
chosen key type, then seals ``--messages`` messages (sender -> recipient) and
opens each one on the recipient's card. For each it records wall-clock time of
the whole call and the time spent inside PKCS#11 private-key operations
(:class:`sealgate.endpoint.card.CardStats`), and the count of those
operations. "Rest" is everything else: directory lookups and path validation
of the recipient certificates (seal), hashing, AES, RSA/ECDH public-key work,
MIME and CMS encoding, and for open the gateway's full verification of both
signatures (anchors, CRL, directory). Medians are printed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from sealgate.devendpoint import make_site
from sealgate.devmail import binary_attachment, message
from sealgate.devsofthsm import SoftHSM, available
from sealgate.endpoint.open import open_message
from sealgate.endpoint.seal import SealOptions, seal_message
from sealgate.units import parse_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--size", default="10KiB", help="attachment size per message (e.g. 10KiB, 1MiB)")
    parser.add_argument("--key", default="rsa2048", choices=["rsa2048", "rsa3072", "ec256"])
    parser.add_argument("--cipher", default="aes256-gcm", choices=["aes256-gcm", "aes256-cbc"])
    args = parser.parse_args()
    missing = available()
    if missing:
        raise SystemExit(missing)

    with tempfile.TemporaryDirectory(prefix="sealgate-bench-") as tmp:
        root = Path(tmp)
        hsm = SoftHSM.create(root / "softhsm")
        hsm.activate()
        site_root = root / "site"
        site_root.mkdir()
        site = make_site(site_root, hsm)
        alice = site.enrol("alice", kind=args.key)
        bob = site.enrol("bob", kind=args.key)
        gateway = site.gateway()
        raw = message(binary_attachment(parse_size(args.size)), alice.email, [bob.email])
        options = SealOptions(cipher=args.cipher)

        seal_total, seal_card, seal_ops = [], [], []
        open_total, open_card, open_ops = [], [], []
        with site.card(alice) as a_card, site.card(bob) as b_card:
            a_key, b_key = a_card.key(), b_card.key()
            for _ in range(args.messages):
                before_s, before_n = a_card.stats.seconds, a_card.stats.operations
                t0 = time.perf_counter()
                sealed = seal_message(raw, a_key, gateway.directory, gateway.current_trust(),
                                      options=options)
                seal_total.append(time.perf_counter() - t0)
                seal_card.append(a_card.stats.seconds - before_s)
                seal_ops.append(a_card.stats.operations - before_n)

                before_s, before_n = b_card.stats.seconds, b_card.stats.operations
                t0 = time.perf_counter()
                opened = open_message(sealed.message, b_key, gateway)
                open_total.append(time.perf_counter() - t0)
                open_card.append(b_card.stats.seconds - before_s)
                open_ops.append(b_card.stats.operations - before_n)
                assert opened.verified, opened.as_dict()

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:7.2f} ms"

    print(f"SoftHSM2 {hsm.module}, key {args.key}, cipher {args.cipher}, message "
          f"{len(raw)} bytes, {args.messages} messages, median per message:")
    for name, total, card, ops in (("seal", seal_total, seal_card, seal_ops),
                                   ("open", open_total, open_card, open_ops)):
        rest = [t - c for t, c in zip(total, card, strict=True)]
        print(f"  {name}: total {ms(total)}  card {ms(card)}  rest {ms(rest)}  "
              f"private-key operations {min(ops)}..{max(ops)}")


if __name__ == "__main__":
    main()
