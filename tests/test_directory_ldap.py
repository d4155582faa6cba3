"""The ``ldap`` directory backend against a real slapd (SPEC §4 [directory], §9).

Lookups, binds, the cache and its expiry, publish-then-lookup, and the
failures: slapd stopped in the middle of a run (tempfail, then recovery
without a restart), a server that accepts and never answers (bounded by the
timeout), a refused bind.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from pathlib import Path

import pytest
from asn1crypto import cms
from asn1crypto import x509 as ax509
from directory_fixtures import der, ldap_config, own_slapd, require, slapd  # noqa: F401
from gateway_helpers import evaluate

from sealgate import devmail as m
from sealgate import devslapd
from sealgate.codes import Action
from sealgate.config import load_config
from sealgate.devpki import TestPKI, issue_user
from sealgate.devslapd import BlackHole, Slapd
from sealgate.directory.cache import TtlCache
from sealgate.directory.ldap import LdapClient, LdapDirectory, LdapSettings
from sealgate.directory.publish import PublishError, publish_certificate
from sealgate.engine import load_gateway
from sealgate.errors import DirectoryUnavailable

UTC = dt.UTC
BODY = m.text_entity("Hi,\r\n\r\nthe minutes.\r\n")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def directory(server: Slapd, *, clock: Clock | None = None, ttl: float = 300, miss_ttl: float = 60,
              **settings: object) -> LdapDirectory:
    cache: TtlCache = TtlCache(ttl, miss_ttl, clock=clock or Clock())
    client = LdapClient(LdapSettings(url=settings.pop("url", server.url), **settings))  # type: ignore[arg-type]
    return LdapDirectory(client, server.people_dn, cache=cache)


def a(cert) -> ax509.Certificate:
    return ax509.Certificate.load(der(cert))


# ------------------------------------------------------------------ lookups


def test_lookup_by_mail_returns_the_published_certificate(slapd, pki):  # noqa: F811
    d = directory(slapd)
    try:
        certs = d.certificates_for("alice@example.com")
        assert [c.serial_number for c in certs] == [pki["alice"].cert.serial_number]
        assert d.certificates_for("Alice@Example.COM")[0].sha256 == certs[0].sha256
    finally:
        d.close()


def test_unknown_address_is_an_empty_answer_not_an_error(slapd):  # noqa: F811
    d = directory(slapd)
    try:
        assert d.certificates_for("zed@example.com") == []
    finally:
        d.close()


def test_filter_metacharacters_in_the_address_are_escaped(slapd):  # noqa: F811
    d = directory(slapd)
    try:
        # Unescaped, "*)(mail=*" would match everybody.
        assert d.certificates_for("*)(mail=*@example.com") == []
    finally:
        d.close()


def test_issuer_and_serial_found_with_certificate_exact_match(slapd, pki):  # noqa: F811
    d = directory(slapd)
    try:
        bob = a(pki["bob"].cert)
        found = d.find_by_issuer_serial(bob.issuer, bob.serial_number)
        assert found is not None and found.sha256 == bob.sha256
        assert d.queries == 1
        assert d.find_by_issuer_serial(bob.issuer, bob.serial_number + 1) is None
    finally:
        d.close()


def test_key_identifier_answers_from_certificates_already_read(slapd, pki):  # noqa: F811
    d = directory(slapd)
    try:
        frank = a(pki["frank"].cert)
        assert d.find_by_key_identifier(frank.key_identifier) is None  # LDAP cannot search it
        d.prefetch(["frank@example.com"])
        assert d.find_by_key_identifier(frank.key_identifier).sha256 == frank.sha256
    finally:
        d.close()


def test_smime_certificate_bundle_attribute_is_read(own_slapd, pki, tmp_path):  # noqa: F811
    # RFC 2798 userSMIMECertificate: a PKCS #7 SignedData carrying certificates.
    now = dt.datetime.now(UTC)
    zoe = issue_user(tmp_path, pki.ca, "zoe", "zoe@example.com", not_before=now,
                     not_after=now + dt.timedelta(days=30))
    bundle = cms.ContentInfo({"content_type": "signed_data", "content": cms.SignedData({
        "version": "v1", "digest_algorithms": [], "signer_infos": [],
        "encap_content_info": {"content_type": "data"},
        "certificates": [a(zoe.cert)]})}).dump()
    # OpenLDAP stores it without ;binary (Binary syntax); the default
    # certificate_attributes name it with ;binary, as SPEC §4 does.
    own_slapd.add_person("zoe@example.com", bundle, attribute="userSMIMECertificate")
    d = directory(own_slapd)
    try:
        assert [c.serial_number for c in d.certificates_for("zoe@example.com")] == [
            zoe.cert.serial_number]
    finally:
        d.close()


# ------------------------------------------------------------------ cache


def test_cache_answers_repeated_lookups_without_asking_again(slapd):  # noqa: F811
    d = directory(slapd)
    try:
        for _ in range(50):
            d.certificates_for("bob@example.com")
        assert d.queries == 1
    finally:
        d.close()


def test_cache_expires_after_ttl_and_misses_sooner(own_slapd, pki, tmp_path):  # noqa: F811
    clock = Clock()
    d = directory(own_slapd, clock=clock, ttl=300, miss_ttl=30)
    try:
        assert d.certificates_for("zoe@example.com") == []
        d.certificates_for("alice@example.com")
        assert d.queries == 2
        now = dt.datetime.now(UTC)
        zoe = issue_user(tmp_path, pki.ca, "zoe", "zoe@example.com", not_before=now,
                         not_after=now + dt.timedelta(days=30))
        own_slapd.add_person("zoe@example.com", der(zoe.cert))
        clock.now += 29
        assert d.certificates_for("zoe@example.com") == []  # the miss is still cached
        clock.now += 2
        assert len(d.certificates_for("zoe@example.com")) == 1  # miss_ttl over: asked again
        d.certificates_for("alice@example.com")
        assert d.queries == 3  # alice still cached
        clock.now += 300
        d.certificates_for("alice@example.com")
        assert d.queries == 4  # ttl over
    finally:
        d.close()


# ------------------------------------------------------------------ binds


def test_simple_bind_with_password_file(pki, tmp_path):
    require(devslapd.missing_tools(), devslapd.INSTALL_HINT)
    with Slapd(tmp_path / "ldap", anonymous_read=False) as server:
        server.add_person("alice@example.com", der(pki["alice"].cert))
        reader = server.add_reader("gateway", "s3cret-Pa55")
        password_file = tmp_path / "bind.pw"
        password_file.write_text("s3cret-Pa55\n")
        password_file.chmod(0o600)
        config = load_config(ldap_config(
            tmp_path / "gw", pki, server.url, server.people_dn,
            directory_extra=f'bind_dn = "{reader}"\nbind_password_file = "{password_file}"\n'))
        d = LdapDirectory.from_config(config)
        anonymous = directory(server)
        try:
            assert len(d.certificates_for("alice@example.com")) == 1
            # Anonymous may bind but not read: a refusal, never "no certificate".
            with pytest.raises(DirectoryUnavailable, match="insufficientAccessRights"):
                anonymous.certificates_for("alice@example.com")
        finally:
            d.close()
            anonymous.close()


def test_wrong_password_is_directory_unavailable_and_never_logged(pki, tmp_path, caplog):
    require(devslapd.missing_tools(), devslapd.INSTALL_HINT)
    with Slapd(tmp_path / "ldap") as server:
        reader = server.add_reader("gateway", "right-password")
        d = directory(server, bind_dn=reader, password="wrong-Pa55word")  # noqa: S106 -- a test account
        caplog.set_level(logging.DEBUG)
        try:
            with pytest.raises(DirectoryUnavailable, match="bind as cn=gateway.*refused"):
                d.certificates_for("alice@example.com")
        finally:
            d.close()
        assert "wrong-Pa55word" not in caplog.text
        assert "wrong-Pa55word" not in repr(d.client.settings)


# ------------------------------------------------------------------ faults


def test_slapd_stopped_mid_run_tempfails_then_recovers_without_restart(own_slapd, pki, tmp_path):  # noqa: F811
    config = ldap_config(tmp_path / "gw", pki, own_slapd.url, own_slapd.people_dn,
                         directory_extra='cache_ttl = "1s"\ncache_miss_ttl = "1s"\ntimeout = "2s"\n')
    gateway = load_gateway(config)
    clock = Clock()
    gateway.directory.cache._clock = clock  # type: ignore[attr-defined]
    gateway.directory.client._clock = clock  # type: ignore[attr-defined]
    raw = m.message(m.triple_wrap(BODY, pki["alice"], [pki["bob"], pki["alice"]]),
                    "alice@example.com", ["bob@example.com"])
    try:
        assert evaluate(gateway, raw, "alice@example.com", ["bob@example.com"]).action \
            is Action.ACCEPT
        own_slapd.stop()
        clock.now += 5  # the cached answers have expired
        v = evaluate(gateway, raw, "alice@example.com", ["bob@example.com"])
        assert v.action is Action.TEMPFAIL
        assert "directory-unavailable" in {str(f.code) for f in v.violations}
        own_slapd.start()
        clock.now += 5  # past the fail-fast window that spares a hung directory's timeouts
        v = evaluate(gateway, raw, "alice@example.com", ["bob@example.com"])
        assert v.action is Action.ACCEPT, v.violations
    finally:
        gateway.directory.close()


def test_server_that_never_answers_is_bounded_by_the_timeout(pki):
    with BlackHole() as hole:
        d = LdapDirectory(LdapClient(LdapSettings(url=hole.url, timeout=1)), "dc=example,dc=com")
        try:
            with pytest.raises(DirectoryUnavailable, match="timed out"):
                d.certificates_for("alice@example.com")
        finally:
            d.close()


def test_hung_directory_makes_the_gateway_tempfail(pki, tmp_path):
    with BlackHole() as hole:
        config = ldap_config(tmp_path / "gw", pki, hole.url, "ou=people,dc=example,dc=com",
                             directory_extra='timeout = "1s"\n')
        gateway = load_gateway(config)
        raw = m.message(m.triple_wrap(BODY, pki["alice"], [pki["bob"]]), "alice@example.com",
                        ["bob@example.com"])
        try:
            v = gateway.evaluate(io.BytesIO(raw), None)
        finally:
            gateway.directory.close()
        assert v.action is Action.TEMPFAIL
        assert {str(f.code) for f in v.violations} == {"directory-unavailable"}


def test_unreachable_server_is_directory_unavailable(pki):
    from sealgate.devslapd import free_port

    d = LdapDirectory(LdapClient(LdapSettings(url=f"ldap://127.0.0.1:{free_port()}", timeout=1)),
                      "dc=example,dc=com")
    with pytest.raises(DirectoryUnavailable, match="no LDAP server answered"):
        d.certificates_for("alice@example.com")


# ------------------------------------------------------------------ publish


def _publisher_config(server: Slapd, pki: TestPKI, folder: Path) -> Path:
    return ldap_config(folder, pki, server.url, server.people_dn, directory_extra=(
        f'bind_dn = "{server.admin_dn}"\nbind_password_file = "{server.admin_password_file}"\n'))


def test_publish_then_lookup_keeps_old_and_new_certificate(own_slapd, pki, tmp_path):  # noqa: F811
    config = load_config(_publisher_config(own_slapd, pki, tmp_path / "gw"))
    now = dt.datetime.now(UTC)
    renewed = issue_user(tmp_path, pki.ca, "bob2", "bob@example.com", not_before=now,
                         not_after=now + dt.timedelta(days=30))
    where = publish_certificate(config, der(renewed.cert))
    assert "cn=bob,ou=people" in where and "userCertificate;binary" in where
    publish_certificate(config, der(renewed.cert))  # twice: no duplicate value
    d = directory(own_slapd)
    try:
        serials = sorted(c.serial_number for c in d.certificates_for("bob@example.com"))
        assert serials == sorted([pki["bob"].cert.serial_number, renewed.cert.serial_number])
    finally:
        d.close()


def test_publish_for_a_person_not_in_the_directory_is_refused(own_slapd, pki, tmp_path):  # noqa: F811
    config = load_config(_publisher_config(own_slapd, pki, tmp_path / "gw"))
    now = dt.datetime.now(UTC)
    stranger = issue_user(tmp_path, pki.ca, "zed", "zed@example.com", not_before=now,
                          not_after=now + dt.timedelta(days=30))
    with pytest.raises(PublishError, match="no entry with mail=zed@example.com"):
        publish_certificate(config, der(stranger.cert))


def test_publish_needs_write_access(own_slapd, pki, tmp_path):  # noqa: F811
    config = load_config(ldap_config(tmp_path / "gw", pki, own_slapd.url, own_slapd.people_dn))
    now = dt.datetime.now(UTC)
    renewed = issue_user(tmp_path, pki.ca, "bob3", "bob@example.com", not_before=now,
                         not_after=now + dt.timedelta(days=30))
    with pytest.raises(DirectoryUnavailable, match="refused"):
        publish_certificate(config, der(renewed.cert))


# ------------------------------------------------------------------ TLS


def server_certificate(pki: TestPKI, folder: Path) -> tuple[Path, Path]:
    """A TLS server certificate for 127.0.0.1 issued by the test CA."""
    import ipaddress

    from cryptography import x509 as cx509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(UTC)
    cert = (cx509.CertificateBuilder()
            .subject_name(cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(pki.ca.cert.subject).public_key(key.public_key())
            .serial_number(cx509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(cx509.SubjectAlternativeName([
                cx509.IPAddress(ipaddress.ip_address("127.0.0.1")), cx509.DNSName("localhost")]),
                critical=False)
            .add_extension(cx509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(pki.ca.key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "server.pem", folder / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


@pytest.fixture
def tls_slapd(pki: TestPKI, tmp_path: Path):
    require(devslapd.missing_tools(), devslapd.INSTALL_HINT)
    with Slapd(tmp_path / "ldap", tls=server_certificate(pki, tmp_path / "tls")) as server:
        server.add_person("alice@example.com", der(pki["alice"].cert))
        yield server


def test_ldaps_with_the_configured_ca_file(tls_slapd, pki):
    d = directory(tls_slapd, url=tls_slapd.ldaps_url, tls_ca_file=pki.ca.cert_path)
    try:
        assert len(d.certificates_for("alice@example.com")) == 1
    finally:
        d.close()


def test_starttls_with_the_configured_ca_file(tls_slapd, pki):
    d = directory(tls_slapd, starttls=True, tls_ca_file=pki.ca.cert_path)
    try:
        assert len(d.certificates_for("alice@example.com")) == 1
    finally:
        d.close()


def test_ldaps_server_not_signed_by_the_ca_file_is_refused(tls_slapd, pki):
    d = directory(tls_slapd, url=tls_slapd.ldaps_url, tls_ca_file=pki.other_ca.cert_path)
    try:
        with pytest.raises(DirectoryUnavailable, match="no LDAP server answered"):
            d.certificates_for("alice@example.com")
    finally:
        d.close()


# ------------------------------------------------------------------ configuration


def test_ldap_keys_are_validated_with_file_and_key(pki, tmp_path):
    from sealgate.errors import ConfigErrors

    config = ldap_config(tmp_path, pki, "ldaps://127.0.0.1:636", "ou=people,dc=example,dc=com",
                         directory_extra='starttls = true\ndns_resolver = "nowhere"\n'
                                         f'tls_ca_file = "{tmp_path / "missing.pem"}"\n')
    with pytest.raises(ConfigErrors) as info:
        load_config(config)
    text = str(info.value)
    assert "directory.starttls: ldaps:// is TLS already" in text
    assert "directory.dns_resolver: " in text and "HOST:PORT" in text
    assert "directory.tls_ca_file: file" in text


def test_milter_threads_share_one_connection_and_get_their_own_answers(slapd, pki):  # noqa: F811
    import threading

    d = directory(slapd, ttl=0)  # no cache: every lookup goes to slapd
    names = ["alice", "bob", "frank", "grace"]
    wrong: list[str] = []

    def work(name: str) -> None:
        for _ in range(25):
            certs = d.certificates_for(f"{name}@example.com")
            if [c.serial_number for c in certs] != [pki[name].cert.serial_number]:
                wrong.append(name)

    threads = [threading.Thread(target=work, args=(n,)) for n in names * 2]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert wrong == []
        assert d.queries == 200
    finally:
        d.close()


def test_a_hung_directory_costs_one_timeout_then_fails_fast(pki):
    clock = Clock()
    with BlackHole() as hole:
        client = LdapClient(LdapSettings(url=hole.url, timeout=1), clock=clock)
        d = LdapDirectory(client, "dc=example,dc=com", cache=TtlCache(300, 60, clock=clock))
        try:
            with pytest.raises(DirectoryUnavailable, match="timed out"):
                d.certificates_for("alice@example.com")
            connections = hole.accepted
            for address in ("bob@example.com", "carol@example.com"):  # same message, no new wait
                with pytest.raises(DirectoryUnavailable, match="timed out"):
                    d.certificates_for(address)
            assert hole.accepted == connections
            clock.now += 2  # the window is over: the next lookup tries the server again
            with pytest.raises(DirectoryUnavailable):
                d.certificates_for("bob@example.com")
            assert hole.accepted == connections + 1
        finally:
            d.close()
