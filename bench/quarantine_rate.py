"""Quarantine store rates: puts and decision records per second, both backends.

    .venv/bin/python -m bench.quarantine_rate [--count 300] [--size 10000] [--encrypt-to CERT.pem]

SQLite in a temporary folder under /var/tmp (a real disk, fsync included);
PostgreSQL from ``sealgate.devpostgres`` (a throwaway local server, loopback
TCP, ``fsync`` on). One thread, wall-clock rates: the machine is shared, so
run it twice and report both.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from collections.abc import Callable

from sealgate.codes import Action, Direction
from sealgate.devpostgres import DevPostgres
from sealgate.model import Envelope, Verdict
from sealgate.quarantine import Decision, QuarantineStore, Sealer, SqliteQuarantine
from sealgate.quarantine.postgresql import PostgresQuarantine

ENVELOPE = Envelope("alice@example.com", ("bob@example.com",))
VERDICT = Verdict(Action.QUARANTINE, "internal", Direction.INTERNAL, "plain", [], [], [])


def rate(label: str, work: Callable[[], object], count: int, per_call: int = 1) -> None:
    start = time.perf_counter()
    for _ in range(count):
        work()
    print(f"{label:<40} {count * per_call / (time.perf_counter() - start):8.0f}/s")


BATCH = 100  # report lines per record_decisions call, as the milter's writer sends them under load


def rate_batched(name: str, store: QuarantineStore, decision: Decision, count: int) -> None:
    """Decision lines per second when written ``BATCH`` at a time (sealgate.quarantine.decisions)."""
    batch = [decision] * BATCH
    rate(f"{name} record_decisions x{BATCH} (per line)",
         lambda: store.record_decisions(batch), max(count // 10, 3), per_call=BATCH)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--encrypt-to", default=None, help="an RSA reviewer certificate (PEM)")
    args = parser.parse_args()
    body = b"x" * args.size
    decision = Decision.of(VERDICT, ENVELOPE)
    sealer = Sealer.from_files([args.encrypt_to]) if args.encrypt_to else None
    with tempfile.TemporaryDirectory(dir="/var/tmp") as folder:  # noqa: S108 - a real disk
        stores = [("sqlite", SqliteQuarantine(f"{folder}/q"))]
        if sealer:
            stores.append(("sqlite encrypted", SqliteQuarantine(f"{folder}/qe", sealer=sealer)))
        for name, store in stores:
            rate(f"{name} put {args.size} B", lambda s=store: s.put(io.BytesIO(body), ENVELOPE,
                                                                    VERDICT), args.count)
            rate(f"{name} record_decision", lambda s=store: s.record_decision(decision),
                 args.count * 3)
            rate_batched(name, store, decision, args.count)
            store.close()
    with DevPostgres() as pg:
        for name, s in (("postgresql", PostgresQuarantine(pg.url)),
                        ("postgresql encrypted", PostgresQuarantine(pg.url, sealer=sealer))):
            if name.endswith("encrypted") and sealer is None:
                s.close()
                continue
            rate(f"{name} put {args.size} B", lambda s=s: s.put(io.BytesIO(body), ENVELOPE, VERDICT),
                 args.count)
            rate(f"{name} record_decision", lambda s=s: s.record_decision(decision), args.count * 3)
            rate_batched(name, s, decision, args.count)
            s.close()


if __name__ == "__main__":
    main()
