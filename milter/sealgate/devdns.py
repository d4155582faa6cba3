"""A throwaway signed DNS on loopback: Knot (authoritative) + Unbound (validating).

For the tests of ``dns-srv:`` discovery and SMIMEA (RFC 8162), where the AD
bit must be real::

    with DevDns(workdir, {"example.com": records, "example.net": other},
                signed={"example.com"}) as dns:
        config_text = f'dns_resolver = "{dns.resolver_address}"'

* ``knotd`` serves every zone on a free 127.0.0.1 port and signs the zones in
  ``signed`` itself (``dnssec-signing: on``, ECDSA P-256, NSEC);
* ``unbound`` listens on another free port, sends every query for those zones
  to Knot (``stub-zone``), holds the signed zones' KSKs as trust anchors (read
  from Knot once it has signed) and has no root anchor -- so answers from a
  signed zone come with AD, answers from the others without.

``records`` are zone-file lines relative to the zone (``"_ldap._tcp SRV 0 0
389 ldap1"``); SOA and NS are added. Nothing leaves 127.0.0.1. The tools are
Debian's ``knot``, ``knot-dnsutils`` and ``unbound`` packages.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType

import dns.flags
import dns.message
import dns.query
import dns.rdatatype

from .devslapd import free_port

KNOTD = os.environ.get("SEALGATE_KNOTD", "/usr/sbin/knotd")
UNBOUND = os.environ.get("SEALGATE_UNBOUND", "/usr/sbin/unbound")
INSTALL_HINT = "apt-get install knot knot-dnsutils unbound"


def missing_tools() -> list[str]:
    return [tool for tool in (KNOTD, UNBOUND) if not (shutil.which(tool) or Path(tool).is_file())]


def _udp_query(name: str, rdtype: str, port: int, timeout: float = 1.0) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, want_dnssec=True)
    query.flags |= dns.flags.AD
    return dns.query.udp(query, "127.0.0.1", timeout=timeout, port=port)


class DevDns:
    """Knot + Unbound for a few zones; ``start``/``stop``, ``resolver_address``."""

    def __init__(self, workdir: Path, zones: Mapping[str, Iterable[str]], *,
                 signed: Iterable[str] = ()) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.zones = {z.rstrip("."): list(r) for z, r in zones.items()}
        self.signed = {z.rstrip(".") for z in signed}
        self.knot_port = free_port()
        self.unbound_port = free_port()
        self._knot: subprocess.Popen[bytes] | None = None
        self._unbound: subprocess.Popen[bytes] | None = None
        self.anchors: list[str] = []

    @property
    def resolver_address(self) -> str:
        """``HOST:PORT`` of the validating resolver (``[directory] dns_resolver``)."""
        return f"127.0.0.1:{self.unbound_port}"

    # ------------------------------------------------------------ Knot

    def _zone_text(self, zone: str) -> str:
        head = [f"$ORIGIN {zone}.", "$TTL 60",
                f"@ SOA ns1.{zone}. hostmaster.{zone}. 1 3600 600 86400 60",
                f"@ NS ns1.{zone}.", "ns1 A 127.0.0.1"]
        return "\n".join(head + self.zones[zone]) + "\n"

    def _knot_conf(self) -> str:
        w = self.workdir / "knot"
        lines = ["server:", f"    rundir: \"{w}\"", f"    listen: 127.0.0.1@{self.knot_port}",
                 "log:", "  - target: stderr", "    any: error",
                 "database:", f"    storage: \"{w}\"", f"    kasp-db: \"{w / 'keys'}\"",
                 "policy:", "  - id: dev", "    algorithm: ecdsap256sha256", "    nsec3: off",
                 "template:", "  - id: default", f"    storage: \"{w}\"", "    file: \"%s.zone\"",
                 "    zonefile-sync: -1", "    journal-content: none",
                 "zone:"]
        for zone in self.zones:
            lines.append(f"  - domain: {zone}")
            if zone in self.signed:
                lines += ["    dnssec-signing: on", "    dnssec-policy: dev"]
        return "\n".join(lines) + "\n"

    def _start_knot(self, timeout: float) -> None:
        w = self.workdir / "knot"
        (w / "keys").mkdir(parents=True, exist_ok=True)
        for zone in self.zones:
            (w / f"{zone}.zone").write_text(self._zone_text(zone))
        conf = w / "knot.conf"
        conf.write_text(self._knot_conf())
        self._knot = subprocess.Popen([KNOTD, "-c", str(conf)], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        waiting = set(self.zones)
        while waiting and time.monotonic() < deadline:
            if self._knot.poll() is not None:
                break
            for zone in list(waiting):
                want = "DNSKEY" if zone in self.signed else "SOA"
                try:
                    answer = _udp_query(f"{zone}.", want, self.knot_port, 0.3)
                except (OSError, dns.exception.DNSException):
                    continue
                if answer.answer:
                    waiting.discard(zone)
            time.sleep(0.05)
        if waiting:
            err = self._reap(self._knot)
            self._knot = None
            raise RuntimeError(f"knotd did not serve {', '.join(sorted(waiting))} on "
                               f"127.0.0.1:{self.knot_port} (config {conf}): {err.strip()}")
        self.anchors = []
        for zone in sorted(self.signed):
            answer = _udp_query(f"{zone}.", "DNSKEY", self.knot_port)
            for rrset in answer.answer:
                if rrset.rdtype != dns.rdatatype.DNSKEY:
                    continue
                for key in rrset:
                    if key.flags & 0x0001:  # SEP: the key-signing key (RFC 4034 §2.1.1)
                        self.anchors.append(f"{zone}. DNSKEY {key.to_text()}")

    # ------------------------------------------------------------ Unbound

    def _unbound_conf(self) -> str:
        w = self.workdir / "unbound"
        lines = ["server:", f"    interface: 127.0.0.1@{self.unbound_port}",
                 f"    port: {self.unbound_port}", "    do-ip6: no", "    do-daemonize: no",
                 "    username: \"\"", "    chroot: \"\"", f"    directory: \"{w}\"",
                 f"    pidfile: \"{w / 'unbound.pid'}\"", "    use-syslog: no",
                 "    logfile: \"\"", "    verbosity: 0", "    do-not-query-localhost: no",
                 "    access-control: 127.0.0.0/8 allow", "    module-config: \"validator iterator\"",
                 "    val-log-level: 1", "    cache-max-ttl: 1", "    cache-max-negative-ttl: 1"]
        for tld in sorted({zone.rsplit(".", 1)[-1] for zone in self.zones}):
            # Unbound answers RFC 6761 names (test., invalid., ...) itself unless told not to.
            if tld in ("test", "invalid", "local", "localhost", "onion"):
                lines.append(f"    local-zone: \"{tld}.\" nodefault")
        for anchor in self.anchors:
            lines.append(f"    trust-anchor: \"{anchor}\"")
        for zone in self.zones:
            if zone not in self.signed:
                lines.append(f"    domain-insecure: \"{zone}\"")
        lines.append("remote-control:")
        lines.append("    control-enable: no")
        for zone in self.zones:
            lines += ["stub-zone:", f"    name: \"{zone}\"",
                      f"    stub-addr: 127.0.0.1@{self.knot_port}"]
        return "\n".join(lines) + "\n"

    def _start_unbound(self, timeout: float) -> None:
        w = self.workdir / "unbound"
        w.mkdir(parents=True, exist_ok=True)
        conf = w / "unbound.conf"
        conf.write_text(self._unbound_conf())
        self._unbound = subprocess.Popen([UNBOUND, "-d", "-c", str(conf)],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        zone = next(iter(self.zones))
        while time.monotonic() < deadline:
            if self._unbound.poll() is not None:
                break
            try:
                _udp_query(f"{zone}.", "SOA", self.unbound_port, 0.3)
                return
            except (OSError, dns.exception.DNSException):
                time.sleep(0.05)
        err = self._reap(self._unbound)
        self._unbound = None
        raise RuntimeError(f"unbound did not answer on 127.0.0.1:{self.unbound_port} "
                           f"(config {conf}): {err.strip()}")

    # ------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 20.0) -> DevDns:
        try:
            self._start_knot(timeout)
            self._start_unbound(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    @staticmethod
    def _reap(process: subprocess.Popen[bytes] | None) -> str:
        if process is None:
            return ""
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        _out, err = process.communicate()
        return (err or b"").decode(errors="replace")

    def stop(self) -> None:
        for attr in ("_unbound", "_knot"):
            process = getattr(self, attr)
            setattr(self, attr, None)
            self._reap(process)

    def __enter__(self) -> DevDns:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
