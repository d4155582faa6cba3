"""The ``ldap`` directory backend (SPEC §4 ``[directory]``, §9).

People are entries under ``base_dn`` found by ``mail_attribute``; their
certificates are the values of ``certificate_attributes`` (default
``userCertificate;binary`` and ``userSMIMECertificate;binary``; the latter may
hold a PKCS #7 bundle, RFC 2798, whose certificates are taken). Every
certificate of the entry is published for every address the entry's mail
attribute matches -- the directory, not the certificate, makes the binding,
as it does for mail clients reading the same address book.

The three questions of :class:`~sealgate.directory.base.Directory`:

* ``certificates_for(address)``: one search ``(mail=<address>)``, cached for
  ``cache_ttl`` when something was found and ``cache_miss_ttl`` when not;
* ``find_by_issuer_serial``: certificates already read are remembered by
  issuer and serial; otherwise one search with the ``certificateExactMatch``
  assertion of RFC 4523 §2.1 (OpenLDAP indexes ``userCertificate`` that way);
* ``find_by_key_identifier``: LDAP has no matching rule for a key identifier,
  so this answers from the certificates already read (by address or by
  issuer/serial) within ``cache_ttl``, and None otherwise. The engine looks up
  every internal recipient by address as well, so an unknown key identifier
  only means that no published certificate of theirs is among the recipients.

Connections: one connection shared by the milter threads under a lock (about
1,000 searches/s on loopback, far above what the cache lets through), opened
lazily and re-opened after any failure, so a restarted directory is used again
without restarting the gateway. Every connect and every answer is bounded by
``timeout``; a server that does not answer in time, refuses the bind or is
unreachable makes the next one (``dns-srv:`` lists several) be tried, and when
none answers the lookup raises DirectoryUnavailable (``directory-unavailable``,
tempfail). Binds are anonymous, or simple with the password read from
``bind_password_file`` at start (never logged). ``ldaps://`` and StartTLS
verify the server against ``tls_ca_file`` (or the system's CAs).
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import ldap3
from asn1crypto import cms, x509
from ldap3.core import exceptions as ldap_errors
from ldap3.utils.conv import escape_filter_chars

from ..addresses import normalize_address
from ..certs import name_key, name_rfc4514, settle
from ..config import Config
from ..errors import DirectoryUnavailable
from .cache import TtlCache, is_missing
from .srv import lookup_srv, make_resolver, resolve_address

log = logging.getLogger(__name__)

# ldap3 result codes that mean "nothing there", not "the directory failed".
_NO_SUCH_OBJECT = 32
_SIZE_LIMIT_EXCEEDED = 4


@dataclass(frozen=True)
class Endpoint:
    scheme: str  # "ldap" | "ldaps"
    host: str
    port: int
    address: str | None = None  # resolved by the configured resolver (dns-srv:), else None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"


@dataclass(frozen=True)
class LdapSettings:
    """What a connection needs, taken from ``[directory]`` (password already read)."""

    url: str  # ldap://, ldaps:// or dns-srv:DOMAIN
    bind_dn: str = ""
    password: str = ""
    timeout: float = 5.0
    tls_ca_file: Path | None = None
    starttls: bool = False
    dns_resolver: str = ""

    def __repr__(self) -> str:  # the password stays out of logs and tracebacks
        return f"LdapSettings(url={self.url!r}, bind_dn={self.bind_dn!r}, timeout={self.timeout})"

    @classmethod
    def from_config(cls, config: Config) -> LdapSettings:
        d = config.directory
        if not d.url:
            raise DirectoryUnavailable(f"{config.source}: directory.url is not set")
        password = ""
        if d.bind_password_file is not None:
            try:
                password = d.bind_password_file.read_text().rstrip("\r\n")
            except OSError as exc:
                raise DirectoryUnavailable(
                    f"{config.source}: directory.bind_password_file {d.bind_password_file}: "
                    f"{exc.strerror or exc}") from None
        return cls(url=d.url, bind_dn=d.bind_dn, password=password, timeout=float(d.timeout),
                   tls_ca_file=d.tls_ca_file, starttls=d.starttls, dns_resolver=d.dns_resolver)


class VerifiedTls(ldap3.Tls):  # type: ignore[misc]
    """TLS that verifies the server's chain against ``ca_file`` (None: the system's CAs)
    and its name (RFC 6125, by OpenSSL: ``SSLContext.check_hostname``).

    ldap3 2.9 checks names itself with ``ssl.match_hostname``, deprecated since
    Python 3.7 and gone in 3.12; this replaces the whole wrap with the standard
    library's default client context.
    """

    def __init__(self, ca_file: str | None, host: str) -> None:
        super().__init__(validate=ssl.CERT_REQUIRED, ca_certs_file=ca_file)
        self.host = host

    def wrap_socket(self, connection: ldap3.Connection, do_handshake: bool = False) -> None:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_certs_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        connection.socket = context.wrap_socket(connection.socket, server_hostname=self.host,
                                                do_handshake_on_connect=do_handshake)


def close_connection(conn: ldap3.Connection) -> None:
    """Unbind, and close the socket even when ldap3 gave up on the session (a timeout)."""
    try:
        conn.unbind()
    except (ldap_errors.LDAPException, OSError):
        pass
    sock = getattr(conn, "socket", None)
    if sock is not None:
        try:
            sock.close()
        except OSError:
            pass


def parse_endpoint(url: str) -> Endpoint:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("ldap", "ldaps") or not parts.hostname:
        raise ValueError(f"{url!r} is not an ldap:// or ldaps:// URL with a host")
    return Endpoint(scheme, parts.hostname, parts.port or (636 if scheme == "ldaps" else 389))


class LdapClient:
    """Searches and modifications against the configured servers, with failover.

    Thread-safe: one connection, one operation at a time (``lock``).
    """

    def __init__(self, settings: LdapSettings, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        # After every server failed (or a fresh connection's answer did not come),
        # lookups fail at once for ``settings.timeout`` seconds: one message costs
        # at most about one timeout, not one per lookup.
        self._down_until = 0.0
        self._down_reason = ""
        self.lock = threading.Lock()
        self._conn: ldap3.Connection | None = None
        self._endpoint: Endpoint | None = None
        self.queries = 0  # searches sent (the benchmark counts them)

    # ------------------------------------------------------------ endpoints

    def endpoints(self) -> list[Endpoint]:
        url = self.settings.url
        if url.lower().startswith("dns-srv:"):
            domain = url.split(":", 1)[1].strip("/")
            resolver = make_resolver(self.settings.dns_resolver, self.settings.timeout)
            targets = lookup_srv(domain, resolver)
            # With a configured resolver, the targets' addresses come from it too:
            # the system resolver may not know the names (or must not be asked).
            return [Endpoint("ldap", t.host, t.port,
                             resolve_address(t.host, resolver) if self.settings.dns_resolver
                             else None)
                    for t in targets]
        return [parse_endpoint(url)]

    def _tls(self, endpoint: Endpoint) -> ldap3.Tls:
        ca = str(self.settings.tls_ca_file) if self.settings.tls_ca_file else None
        return VerifiedTls(ca, endpoint.host)

    def _open(self, endpoint: Endpoint) -> ldap3.Connection:
        s = self.settings
        seconds = max(1, round(s.timeout))  # ldap3 packs socket timeouts as whole seconds
        tls = self._tls(endpoint) if endpoint.scheme == "ldaps" or s.starttls else None
        server = ldap3.Server(endpoint.address or endpoint.host, port=endpoint.port,
                              use_ssl=endpoint.scheme == "ldaps", tls=tls, connect_timeout=seconds,
                              get_info=ldap3.NONE)
        conn = ldap3.Connection(
            server, user=s.bind_dn or None, password=s.password or None,
            authentication=ldap3.SIMPLE if s.bind_dn else ldap3.ANONYMOUS,
            receive_timeout=seconds, raise_exceptions=False, read_only=False,
            client_strategy=ldap3.SYNC)
        try:
            return self._start(conn, endpoint)
        except BaseException:
            close_connection(conn)
            raise

    def _start(self, conn: ldap3.Connection, endpoint: Endpoint) -> ldap3.Connection:
        s = self.settings
        conn.open()
        if s.starttls and endpoint.scheme == "ldap" and not conn.start_tls():
            conn.unbind()
            raise DirectoryUnavailable(f"{endpoint.url}: StartTLS refused: "
                                       f"{conn.result.get('description')}")
        if not conn.bind():
            who = s.bind_dn or "anonymous"
            result = conn.result or {}
            conn.unbind()
            raise DirectoryUnavailable(
                f"{endpoint.url}: bind as {who} refused ({result.get('description')}): "
                "check directory.bind_dn and directory.bind_password_file")
        return conn

    def _connection(self) -> ldap3.Connection:
        """The open connection, or a new one to the first server that answers."""
        if self._conn is not None:
            return self._conn
        if self._clock() < self._down_until:
            raise DirectoryUnavailable(self._down_reason)
        problems = []
        for endpoint in self.endpoints():
            try:
                self._conn = self._open(endpoint)
                self._endpoint = endpoint
                log.info("event=ldap-connected server=%s", endpoint.url)
                return self._conn
            except (ldap_errors.LDAPException, OSError, DirectoryUnavailable) as exc:
                problems.append(f"{endpoint.url}: {exc}")
                log.warning("event=ldap-connect-failed server=%s error=%r", endpoint.url, str(exc))
        self._down_reason = "no LDAP server answered (" + "; ".join(problems) + ")"
        self._down_until = self._clock() + self.settings.timeout
        raise DirectoryUnavailable(self._down_reason)

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            close_connection(conn)

    def close(self) -> None:
        with self.lock:
            self._drop()

    def _run(self, what: str, operation: Callable[[ldap3.Connection], Any]) -> Any:
        """Run one operation; reconnect once when a *reused* connection failed.

        A connection kept from earlier lookups may have been closed by a restarted
        or idle-timing-out server: that deserves one fresh try. A fresh connection
        that fails (a slow server) is not retried, so a lookup costs at most one
        ``timeout`` of waiting for an answer.
        """
        with self.lock:
            for _attempt in range(2):
                reused = self._conn is not None
                conn = self._connection()
                where = self._endpoint.url if self._endpoint else self.settings.url
                try:
                    return operation(conn)
                except (ldap_errors.LDAPException, OSError) as exc:
                    log.warning("event=ldap-failed server=%s operation=%s error=%r",
                                where, what, str(exc) or type(exc).__name__)
                    self._drop()
                    if not reused:
                        self._down_reason = (f"LDAP {what} at {where} failed: "
                                             f"{exc or type(exc).__name__}")
                        self._down_until = self._clock() + self.settings.timeout
                        raise DirectoryUnavailable(self._down_reason) from None
            raise DirectoryUnavailable(f"LDAP {what} failed twice")  # both connections broke

    # ------------------------------------------------------------ operations

    def search(self, base: str, search_filter: str, attributes: Sequence[str], *,
               scope: str = ldap3.SUBTREE, size_limit: int = 0) -> list[dict[str, Any]]:
        """Entries (``dn``, ``raw_attributes``) matching; [] when the base does not exist."""
        timeout = max(1, int(self.settings.timeout))

        def operation(conn: ldap3.Connection) -> list[dict[str, Any]]:
            self.queries += 1
            conn.search(base, search_filter, scope, attributes=list(attributes),
                        size_limit=size_limit, time_limit=timeout)
            code = (conn.result or {}).get("result")
            if code in (0, _SIZE_LIMIT_EXCEEDED):
                return [e for e in (conn.response or []) if e.get("type") == "searchResEntry"]
            if code == _NO_SUCH_OBJECT:
                return []
            if code is None:  # ldap3 without an answer: the connection is gone
                raise ldap_errors.LDAPSessionTerminatedByServerError("no answer to the search")
            raise DirectoryUnavailable(f"LDAP search under {base} failed: "
                                       f"{conn.result.get('description')} "
                                       f"{conn.result.get('message') or ''}".strip())

        result: list[dict[str, Any]] = self._run(f"search {search_filter}", operation)
        return result

    def modify(self, dn: str, changes: dict[str, list[tuple[str, list[bytes]]]]) -> None:
        def operation(conn: ldap3.Connection) -> None:
            if conn.modify(dn, changes):
                return
            code = (conn.result or {}).get("result")
            if code is None:
                raise ldap_errors.LDAPSessionTerminatedByServerError("no answer to the modify")
            raise DirectoryUnavailable(f"LDAP modify of {dn} refused: "
                                       f"{conn.result.get('description')} "
                                       f"{conn.result.get('message') or ''}".strip())
        self._run(f"modify {dn}", operation)

    def naming_contexts(self) -> list[str]:
        """The server's naming contexts (root DSE, RFC 4512 §5.1)."""
        entries = self.search("", "(objectClass=*)", ["namingContexts"], scope=ldap3.BASE)
        out: list[str] = []
        for entry in entries:
            out += [v.decode() if isinstance(v, bytes) else str(v)
                    for v in entry.get("raw_attributes", {}).get("namingContexts", [])]
        return out


def certificates_in(values: Iterable[bytes], where: str) -> list[x509.Certificate]:
    """Certificates from attribute values: DER certificates or PKCS #7 bundles (RFC 2798)."""
    found: list[x509.Certificate] = []
    for value in values:
        try:
            cert = x509.Certificate.load(bytes(value), strict=True)
            cert.issuer.hashable, cert.serial_number  # noqa: B018 -- fail here, not later
            found.append(settle(cert))
            continue
        except (ValueError, TypeError, KeyError):
            pass
        try:
            info = cms.ContentInfo.load(bytes(value), strict=True)
            if info["content_type"].native == "signed_data":
                for choice in info["content"]["certificates"] or []:
                    if choice.name == "certificate":
                        found.append(settle(choice.chosen))
                continue
        except (ValueError, TypeError, KeyError):
            pass
        log.warning("event=ldap-bad-certificate entry=%s (a value that is neither a DER "
                    "certificate nor a PKCS #7 bundle is ignored)", where)
    return found


def _values(entry: dict[str, Any], attribute: str) -> list[bytes]:
    """Every value of ``attribute`` whatever options it came back with (;binary or not)."""
    wanted = attribute.lower().split(";")[0]
    out: list[bytes] = []
    for name, values in entry.get("raw_attributes", {}).items():
        if name.lower().split(";")[0] == wanted:
            out.extend(values)
    return out


def _cert_id(cert: x509.Certificate) -> tuple[str, int]:
    return name_key(cert.issuer), cert.serial_number


def _key_id(cert: x509.Certificate) -> bytes:
    ski = cert.key_identifier
    return bytes(ski) if ski is not None else bytes(cert.public_key.sha1)


def gser_issuer_serial(issuer: x509.Name, serial: int) -> str:
    """RFC 4523 §2.1 certificateExactMatch assertion value (GSER, RFC 3641)."""
    dn = name_rfc4514(issuer).replace('"', '""')
    return f'{{ serialNumber {serial}, issuer rdnSequence:"{dn}" }}'


class LdapDirectory:
    """:class:`sealgate.directory.base.Directory` over LDAP, cached. Thread-safe."""

    def __init__(self, client: LdapClient, base_dn: str, *, mail_attribute: str = "mail",
                 certificate_attributes: Sequence[str] = ("userCertificate;binary",
                                                          "userSMIMECertificate;binary"),
                 cache: TtlCache[tuple[x509.Certificate, ...]] | None = None) -> None:
        self.client = client
        self.base_dn = base_dn
        self.mail_attribute = mail_attribute
        self.certificate_attributes = tuple(certificate_attributes)
        # RFC 4523 §2: certificates travel with the ;binary option, but OpenLDAP
        # refuses ;binary on userSMIMECertificate (Binary syntax, RFC 2798):
        # ask for both spellings; values are matched on the attribute's base name.
        wanted: dict[str, None] = {}
        for attribute in self.certificate_attributes:
            base = attribute.split(";")[0]
            wanted.update({f"{base};binary": None, base: None})
        self._requested = tuple(wanted)
        self.cache: TtlCache[tuple[x509.Certificate, ...]] = (
            cache if cache is not None else TtlCache(300, 60))

    @classmethod
    def from_config(cls, config: Config, *,
                    clock: Callable[[], float] | None = None) -> LdapDirectory:
        d = config.directory
        cache: TtlCache[tuple[x509.Certificate, ...]] = TtlCache(
            d.cache_ttl, d.cache_miss_ttl, clock=clock or time.monotonic)
        return cls(LdapClient(LdapSettings.from_config(config)), d.base_dn,
                   mail_attribute=d.mail_attribute,
                   certificate_attributes=d.certificate_attributes, cache=cache)

    @property
    def queries(self) -> int:
        return self.client.queries

    # ------------------------------------------------------------ Directory

    def certificates_for(self, address: str) -> list[x509.Certificate]:
        address = normalize_address(address)
        cached = self.cache.get(("mail", address))
        if not is_missing(cached):
            return list(cached)  # type: ignore[call-overload]
        flt = f"({self.mail_attribute}={escape_filter_chars(address)})"
        certs = self._search(flt)
        self.cache.put(("mail", address), certs, found=bool(certs))
        return list(certs)

    def find_by_issuer_serial(self, issuer: x509.Name, serial: int) -> x509.Certificate | None:
        key = ("iss", name_key(issuer), serial)
        cached = self.cache.get(key)
        if not is_missing(cached):
            return cached[0] if cached else None  # type: ignore[index]
        assertion = escape_filter_chars(gser_issuer_serial(issuer, serial))
        attribute = self.certificate_attributes[0].split(";")[0]
        found = self._search(f"({attribute}:certificateExactMatch:={assertion})")
        match = tuple(c for c in found if _cert_id(c) == (name_key(issuer), serial))
        self.cache.put(key, match, found=bool(match))
        return match[0] if match else None

    def find_by_key_identifier(self, ski: bytes) -> x509.Certificate | None:
        cached = self.cache.get(("ski", bytes(ski)))
        if is_missing(cached) or not cached:
            return None
        return cached[0]  # type: ignore[index]

    def prefetch(self, addresses: Iterable[str]) -> None:
        """Read (or find cached) the certificates of these addresses, ignoring failures.

        ``sealgate.facts`` calls this with the internal addresses a message names
        before resolving key identifiers, which LDAP cannot search for. A failure
        here is reported by the lookup that needs the answer, not here.
        """
        for address in addresses:
            try:
                self.certificates_for(address)
            except DirectoryUnavailable:
                return

    # ------------------------------------------------------------ reading

    def _search(self, search_filter: str) -> tuple[x509.Certificate, ...]:
        entries = self.client.search(self.base_dn, search_filter,
                                     [*self._requested, self.mail_attribute])
        certs: dict[bytes, x509.Certificate] = {}
        for entry in entries:
            for attribute in {a.split(";")[0].lower(): a for a in self.certificate_attributes}:
                for cert in certificates_in(_values(entry, attribute), entry.get("dn", "?")):
                    certs.setdefault(bytes(cert.sha256), cert)
        found = tuple(certs.values())
        for cert in found:  # remembered for find_by_issuer_serial / find_by_key_identifier
            self.cache.put(("iss", *_cert_id(cert)), (cert,))
            self.cache.put(("ski", _key_id(cert)), (cert,))
        return found

    def close(self) -> None:
        self.client.close()
