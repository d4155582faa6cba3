"""LDAP directory: lookups/s with a warm and a cold cache, and LDAP queries per 1,000 messages.

    .venv/bin/python -m bench.directory_lookups [--people 200] [--messages 1000] [--seconds 3]

Starts a throwaway slapd (sealgate.devslapd) on loopback, loads ``--people``
inetOrgPerson entries with one certificate each, and measures through
:class:`sealgate.directory.ldap.LdapDirectory` -- the backend the milter uses:

- *cold*: ``cache_ttl`` 0, so every ``certificates_for`` is one LDAP search
  over the one shared connection (addresses cycled over every person);
- *warm*: the default cache, every address already cached;
- *messages*: a gateway (strict policy, ``ldap`` backend, ``cache_ttl`` 5m)
  judges ``--messages`` triple-wrapped messages (``openssl cms``) between 20
  people, each from a random person to another; the LDAP searches it sent
  are counted. Without the cache this would be about two per message (sender
  and recipient); with it, one per person.

Cold and warm rates are wall-clock (a search is mostly slapd's and the
socket's time, not ours), median of 3 runs of ``--seconds`` each.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import random
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from sealgate import devmail
from sealgate.devconfig import write_gateway_config
from sealgate.devpki import build_pki, issue_user
from sealgate.devslapd import Slapd
from sealgate.directory.cache import TtlCache
from sealgate.directory.ldap import LdapClient, LdapDirectory, LdapSettings
from sealgate.engine import load_gateway
from sealgate.model import Envelope


def rate(fn, addresses: list[str], seconds: float) -> float:
    """Lookups per second of ``fn`` over ``addresses`` (cycled), wall clock."""
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for address in addresses:
            fn(address)
        done += len(addresses)
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, default=200)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="sealgate-bench-") as tmp:
        root = Path(tmp)
        pki = build_pki(root / "pki")
        now = dt.datetime.now(dt.UTC)
        with Slapd(root / "slapd") as slapd:
            slapd.add_ca(pki.ca.cert.public_bytes(Encoding.DER))
            addresses = []
            for i in range(args.people):
                person = issue_user(root / "pki" / "keys", pki.ca, f"p{i:05d}", f"p{i:05d}@example.com",
                                    key_kind="ec256", not_before=now - dt.timedelta(hours=1),
                                    not_after=now + dt.timedelta(days=30))
                slapd.add_person(person.email, person.cert.public_bytes(Encoding.DER))
                addresses.append(person.email)

            def directory(ttl: float) -> LdapDirectory:
                return LdapDirectory(LdapClient(LdapSettings(url=slapd.url)), slapd.people_dn,
                                     cache=TtlCache(ttl, min(ttl, 60)))

            cold_dir, warm_dir = directory(0), directory(300)
            for address in addresses:
                warm_dir.certificates_for(address)
            cold = [rate(cold_dir.certificates_for, addresses, args.seconds) for _ in range(3)]
            warm = [rate(warm_dir.certificates_for, addresses, args.seconds) for _ in range(3)]
            cold_dir.close()
            warm_dir.close()

            # 1,000 messages between 20 people (RSA, as the cast of devpki).
            people = []
            for i in range(20):
                ident = issue_user(root / "pki" / "keys", pki.ca, f"m{i:02d}", f"m{i:02d}@example.com",
                                   not_before=now - dt.timedelta(hours=1),
                                   not_after=now + dt.timedelta(days=30))
                slapd.add_person(ident.email, ident.cert.public_bytes(Encoding.DER))
                people.append(ident)
            config = write_gateway_config(
                root / "gw", anchors=[pki.ca.cert_path], crls=[root / "pki" / "ca.crl"],
                directory={"backend": "ldap", "url": slapd.url, "base_dn": slapd.people_dn,
                           "cache_ttl": "5m"},
                socket=f"unix:{root}/gw/sock", quarantine=root / "gw" / "q")
            gateway = load_gateway(config)
            rng = random.Random(args.seed)  # noqa: S311 -- a reproducible mix, not cryptography
            made: dict[tuple[int, int], bytes] = {}
            actions: Counter[str] = Counter()
            body = devmail.text_entity("Hello,\r\n\r\nthe figures.\r\n")
            start = time.perf_counter()
            for _ in range(args.messages):
                s, r = rng.sample(range(20), 2)
                if (s, r) not in made:
                    made[(s, r)] = devmail.message(
                        devmail.triple_wrap(body, people[s], [people[r], people[s]]),
                        people[s].email, [people[r].email])
                envelope = Envelope(sender=people[s].email, recipients=(people[r].email,))
                actions[str(gateway.evaluate(io.BytesIO(made[(s, r)]), envelope).action)] += 1
            elapsed = time.perf_counter() - start
            queries = gateway.directory.queries  # type: ignore[attr-defined]
            gateway.directory.close()  # type: ignore[attr-defined]

    print(f"people in slapd: {args.people} (+20 for the messages)")
    print(f"cold cache (every lookup one LDAP search): {statistics.median(cold):,.0f} lookups/s "
          f"(runs: {', '.join(f'{r:,.0f}' for r in cold)})")
    print(f"warm cache: {statistics.median(warm):,.0f} lookups/s "
          f"(runs: {', '.join(f'{r:,.0f}' for r in warm)})")
    print(f"{args.messages} messages between 20 people: {queries} LDAP searches "
          f"({len(made)} distinct sender/recipient pairs; verdicts {dict(actions)}; "
          f"{elapsed:.1f} s including openssl message creation)")


if __name__ == "__main__":
    main()
