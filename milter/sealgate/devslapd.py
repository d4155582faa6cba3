"""A throwaway OpenLDAP ``slapd`` for tests, benchmarks and the demo.

The directory of SPEC §9, on a free loopback port, from a temp folder::

    with Slapd(workdir, suffix="dc=example,dc=com") as ldap:
        ldap.add_person("alice@example.com", cert_der)   # inetOrgPerson, userCertificate;binary
        ldap.add_ca(ca_der, crl_der)                      # cRLDistributionPoint + pkiCA
        config_text = f'url = "{ldap.url}"\\nbase_dn = "{ldap.people_dn}"'
        ldap.stop(); ldap.start()                          # same data, same port

Layout under the suffix: ``ou=people`` (people, ``cn=<local part>``) and
``ou=pki`` (CA entries, ``cn=<CA common name>``). slapd.conf style with the
core, cosine and inetorgperson schemas and back_mdb; the database lives in the
work folder and survives :meth:`Slapd.restart`. Everyone may read (SPEC §9:
certificates are public), the root DN writes; ``anonymous_read=False`` makes
binding compulsory (``Slapd.add_reader`` creates a simple-bind account).
``tls=(cert_pem, key_pem)`` adds an ``ldaps://`` listener and StartTLS.

:class:`BlackHole` is a server that accepts TCP connections and never answers
(a hung directory), to show that lookups are bounded by their timeout.

Nothing here talks to anything but 127.0.0.1. slapd is Debian's ``slapd``
package (``apt-get install slapd ldap-utils``); :func:`missing_tools` names
what is absent so tests can fail with an install hint.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import ldap3
from asn1crypto import x509

SLAPD = os.environ.get("SEALGATE_SLAPD", "/usr/sbin/slapd")
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")
INSTALL_HINT = "apt-get install slapd ldap-utils (preseed slapd/no_configuration=true)"


def missing_tools() -> list[str]:
    """What this harness needs and cannot find (empty: ready)."""
    missing = []
    if not (shutil.which(SLAPD) or Path(SLAPD).is_file()):
        missing.append(SLAPD)
    for schema in ("core", "cosine", "inetorgperson"):
        if not (SCHEMA_DIR / f"{schema}.schema").is_file():
            missing.append(str(SCHEMA_DIR / f"{schema}.schema"))
    if not any(MODULE_DIR.glob("back_mdb*.so*")):
        missing.append(str(MODULE_DIR / "back_mdb.so"))
    return missing


def free_port() -> int:
    """A TCP port on 127.0.0.1 free right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        time.sleep(0.05)
    return False


def _dn_value(text: str) -> str:
    """RFC 4514 §2.4 escaping of one attribute value in a DN."""
    from ldap3.utils.dn import escape_rdn
    return str(escape_rdn(text))


class Slapd:
    """One slapd instance: ``start``/``stop``/``restart``, and helpers to load entries."""

    def __init__(self, workdir: Path, suffix: str = "dc=example,dc=com", *,
                 port: int | None = None, anonymous_read: bool = True,
                 tls: tuple[Path, Path] | None = None) -> None:
        self.workdir = Path(workdir)
        self.suffix = suffix
        self.port = port or free_port()
        self.tls = tls
        self.tls_port = free_port() if tls else None
        self.anonymous_read = anonymous_read
        self.admin_dn = f"cn=admin,{suffix}"
        self.admin_password = secrets.token_urlsafe(18)
        self.people_dn = f"ou=people,{suffix}"
        self.pki_dn = f"ou=pki,{suffix}"
        self.ca_dn: str | None = None  # the last CA entry added
        self._process: subprocess.Popen[bytes] | None = None
        self._initialised = False
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "db").mkdir(exist_ok=True)
        self.admin_password_file = self.workdir / "admin.password"
        fd = os.open(self.admin_password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.admin_password + "\n")

    # ------------------------------------------------------------ addresses

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        if self.tls_port is None:
            raise RuntimeError("this slapd was started without tls=(cert, key)")
        return f"ldaps://127.0.0.1:{self.tls_port}"

    @property
    def pidfile(self) -> Path:
        return self.workdir / "slapd.pid"

    # ------------------------------------------------------------ lifecycle

    def _conf(self) -> str:
        lines = [f"include {SCHEMA_DIR / s}.schema" for s in ("core", "cosine", "inetorgperson")]
        lines += [
            f"pidfile {self.pidfile}",
            f"argsfile {self.workdir / 'slapd.args'}",
            f"modulepath {MODULE_DIR}",
            "moduleload back_mdb",
            "loglevel none",
            "sizelimit 1000",
        ]
        if self.tls:
            lines += [f"TLSCertificateFile {self.tls[0]}", f"TLSCertificateKeyFile {self.tls[1]}"]
        lines += [
            "database mdb",
            "maxsize 67108864",
            f"suffix \"{self.suffix}\"",
            f"rootdn \"{self.admin_dn}\"",
            f"rootpw {self.admin_password}",
            f"directory {self.workdir / 'db'}",
            "index objectClass eq",
            "index mail eq",
            "access to attrs=userPassword by anonymous auth by * none",
            "access to * by users read by anonymous "
            + ("read" if self.anonymous_read else "auth"),
        ]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 15.0) -> Slapd:
        """Start slapd (and load the suffix, ou=people, ou=pki the first time)."""
        if self.running:
            return self
        conf = self.workdir / "slapd.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds rootpw
        with os.fdopen(fd, "w") as fh:
            fh.write(self._conf())
        listeners = [f"ldap://127.0.0.1:{self.port}/"]
        if self.tls_port:
            listeners.append(f"ldaps://127.0.0.1:{self.tls_port}/")
        # -d 0: stay in the foreground as our child, so stop() can wait for it.
        self._process = subprocess.Popen(
            [SLAPD, "-d", "0", "-h", " ".join(listeners), "-f", str(conf)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if not _wait_port(self.port, timeout):
            err = self._reap()
            raise RuntimeError(f"slapd did not start on 127.0.0.1:{self.port} "
                               f"(config {conf}): {err.strip() or 'no message'}")
        if not self._initialised:
            self._initialise()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """TERM and wait (slapd flushes and exits in about 1.5 s)."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr is not None:
            process.stderr.close()

    def restart(self) -> Slapd:
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _reap(self) -> str:
        process, self._process = self._process, None
        if process is None:
            return ""
        if process.poll() is None:
            process.kill()
        _out, err = process.communicate()
        return err.decode(errors="replace")

    def __enter__(self) -> Slapd:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ------------------------------------------------------------ entries

    @contextlib.contextmanager
    def admin(self) -> Iterator[ldap3.Connection]:
        """A bound root-DN connection for a ``with`` block (unbound at its end)."""
        server = ldap3.Server(self.url, connect_timeout=5)
        conn = ldap3.Connection(server, self.admin_dn, self.admin_password, auto_bind=True,
                                receive_timeout=10, raise_exceptions=True)
        try:
            yield conn
        finally:
            conn.unbind()

    def _initialise(self) -> None:
        top = self.suffix.split(",")[0]
        attr, _eq, value = top.partition("=")
        with self.admin() as conn:
            if not self._exists(conn, self.suffix):
                conn.add(self.suffix, ["dcObject", "organization"] if attr == "dc"
                         else ["organization"], {attr: value, "o": value})
            for dn in (self.people_dn, self.pki_dn):
                if not self._exists(conn, dn):
                    conn.add(dn, ["organizationalUnit"], {"ou": dn.split(",")[0][3:]})
        self._initialised = True

    @staticmethod
    def _exists(conn: ldap3.Connection, dn: str) -> bool:
        try:
            return bool(conn.search(dn, "(objectClass=*)", ldap3.BASE, attributes=[]))
        except ldap3.core.exceptions.LDAPNoSuchObjectResult:
            return False

    def add_person(self, mail: str, cert_der: bytes | list[bytes] | None = None, *,
                   name: str | None = None, attribute: str = "userCertificate;binary") -> str:
        """An inetOrgPerson ``cn=<local part>,ou=people`` with ``mail`` and certificates."""
        local = mail.split("@")[0]
        dn = f"cn={_dn_value(name or local)},{self.people_dn}"
        attrs: dict[str, object] = {"cn": name or local, "sn": name or local, "mail": mail}
        certs = [cert_der] if isinstance(cert_der, bytes) else list(cert_der or [])
        if certs:
            attrs[attribute] = certs
        with self.admin() as conn:
            conn.add(dn, ["inetOrgPerson"], attrs)
        return dn

    def add_reader(self, name: str, password: str) -> str:
        """A simple-bind account ``cn=<name>,<suffix>`` (e.g. the gateway's bind DN)."""
        dn = f"cn={_dn_value(name)},{self.suffix}"
        with self.admin() as conn:
            conn.add(dn, ["person"], {"cn": name, "sn": name, "userPassword": password})
        return dn

    def add_ca(self, cert_der: bytes, crl_der: bytes | None = None) -> str:
        """A CA entry ``cn=<CA common name>,ou=pki``: cRLDistributionPoint + pkiCA (SPEC §9)."""
        cert = x509.Certificate.load(cert_der)
        cn = str(cert.subject.native.get("common_name") or cert.subject.human_friendly)
        dn = f"cn={_dn_value(cn)},{self.pki_dn}"
        attrs: dict[str, object] = {"cn": cn, "cACertificate;binary": cert_der}
        if crl_der is not None:
            attrs["certificateRevocationList;binary"] = crl_der
        with self.admin() as conn:
            conn.add(dn, ["cRLDistributionPoint", "pkiCA"], attrs)
        self.ca_dn = dn
        return dn

    def set_crl(self, ca_dn: str, crl_der: bytes) -> None:
        """Replace the CA entry's CRL (what ``sealgate ca crl`` publishes)."""
        with self.admin() as conn:
            conn.modify(ca_dn, {"certificateRevocationList;binary": [(ldap3.MODIFY_REPLACE,
                                                                      [crl_der])]})

    def crl_url(self, ca_dn: str) -> str:
        """The ldap:// URL of a CA entry's CRL (RFC 4516), for ``trust.crls``."""
        from urllib.parse import quote
        return f"{self.url}/{quote(ca_dn, safe='=,')}?certificateRevocationList;binary"

    def delete(self, dn: str) -> None:
        with self.admin() as conn:
            conn.delete(dn)


class BlackHole:
    """A TCP server on 127.0.0.1 that accepts connections and never answers.

    Stands for a hung directory (or a firewall that swallows packets after the
    handshake): a client without a timeout would wait forever.
    """

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = int(self._sock.getsockname()[1])
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="blackhole", daemon=True)

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def start(self) -> BlackHole:
        self._thread.start()
        return self

    def _accept(self) -> None:
        self._sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _addr = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._held.append(conn)  # read nothing, answer nothing

    @property
    def accepted(self) -> int:
        """Connections accepted so far (each one a client that will wait in vain)."""
        return len(self._held)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._held:
            conn.close()
        self._sock.close()

    def __enter__(self) -> BlackHole:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
