"""Fixtures for the directory and revocation tests: a real slapd, an HTTP CRL server.

Import what a test module needs (``from directory_fixtures import ...``); the
fixtures are session-scoped where starting a daemon is worth sharing, and every
daemon is stopped by its fixture. Without slapd/knot/unbound a test fails in CI
(``CI=true``) with the install hint, and is skipped elsewhere.
"""

from __future__ import annotations

import http.server
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509 as cx509
from cryptography.hazmat.primitives.serialization import Encoding
from gateway_helpers import write_config
from need import need

from sealgate import devdns, devslapd
from sealgate.devpki import CAST, TestPKI
from sealgate.devslapd import Slapd


def require(missing: list[str], hint: str) -> None:
    """Fail in CI, skip elsewhere, when a service's tools are missing."""
    need(f"missing {', '.join(missing)}: {hint}" if missing else None)


def der(cert: cx509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def crl_der(path: Path) -> bytes:
    return cx509.load_pem_x509_crl(path.read_bytes()).public_bytes(Encoding.DER)


def load_people(slapd: Slapd, pki: TestPKI) -> str:
    """Everyone the files directory publishes (not mallory), and the CA entry; its DN."""
    for name, opts in CAST.items():
        if not opts.get("untrusted"):
            slapd.add_person(pki[name].email, der(pki[name].cert))
    return slapd.add_ca(der(pki.ca.cert), crl_der(pki.crl_path))


@pytest.fixture(scope="session")
def slapd(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Slapd]:
    """One slapd for the session, loaded with the devpki cast and the CA entry (``ca_dn``)."""
    require(devslapd.missing_tools(), devslapd.INSTALL_HINT)
    server = Slapd(tmp_path_factory.mktemp("slapd"))
    server.start()
    try:
        load_people(server, pki)
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_slapd(pki: TestPKI, tmp_path: Path) -> Iterator[Slapd]:
    """A slapd for one test (it may be stopped, restarted or written to)."""
    require(devslapd.missing_tools(), devslapd.INSTALL_HINT)
    server = Slapd(tmp_path / "slapd")
    server.start()
    try:
        load_people(server, pki)
        yield server
    finally:
        server.stop()


def require_dns() -> None:
    require(devdns.missing_tools(), devdns.INSTALL_HINT)


def ldap_config(folder: Path, pki: TestPKI, url: str, base_dn: str, *, directory_extra: str = "",
                **kwargs: object) -> Path:
    """write_config with ``[directory] backend = "ldap"`` (the other sections unchanged)."""
    path = write_config(folder, pki, **kwargs)  # type: ignore[arg-type]
    text = re.sub(r'backend = "files"\npath = "[^"]*"\n',
                  f'backend = "ldap"\nurl = "{url}"\nbase_dn = "{base_dn}"\n'
                  + directory_extra.replace("\\n", "\n"), path.read_text(), count=1)
    path.write_text(text)
    return path


class CrlHttpServer:
    """http.server in a thread on 127.0.0.1, serving ``files[path] = bytes``; counts GETs."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.status: int = 200  # set to 503 to play a broken CRL server
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 -- http.server's naming
                outer.requests.append(self.path)
                body = outer.files.get(self.path)
                if outer.status != 200 or body is None:
                    self.send_error(outer.status if outer.status != 200 else 404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/pkix-crl")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> CrlHttpServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def crl_http() -> Iterator[CrlHttpServer]:
    with CrlHttpServer() as server:
        yield server
