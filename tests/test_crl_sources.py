"""CRL sources in production: http(s) and ldap URLs, distribution points, refresh, faults.

A real HTTP server on loopback (directory_fixtures.CrlHttpServer) and a real
slapd serve the CRLs; the gateway is the one ``sealgate milter`` runs. Time is
moved by hand (Gateway.clock / wall_clock), never waited for.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from directory_fixtures import crl_der, crl_http, der, ldap_config, own_slapd  # noqa: F401
from gateway_helpers import evaluate, write_config

from sealgate import devmail as m
from sealgate.codes import Action
from sealgate.config import load_config
from sealgate.devpki import Identity, TestPKI, write_crl
from sealgate.directory.publish import PublishError, publish_crl
from sealgate.engine import load_gateway

UTC = dt.UTC
BODY = m.text_entity("Hi,\r\n\r\nbudget attached.\r\n")


def codes(verdict) -> set[str]:
    return {str(f.code) for f in verdict.violations}


def signed_by(pki: TestPKI, who: str | Identity, to: str = "bob") -> tuple[bytes, str]:
    ident = pki[who] if isinstance(who, str) else who
    raw = m.message(m.triple_wrap(BODY, ident, [pki[to]]), ident.email, [f"{to}@example.com"])
    return raw, ident.email


def judge(gateway, pki, who: str | Identity = "alice"):
    raw, sender = signed_by(pki, who)
    return evaluate(gateway, raw, sender, ["bob@example.com"])


def crl_bytes(pki: TestPKI, folder: Path, revoked: list[int], *, hours_valid: float = 24 * 7,
              age_hours: float = 1, signing_key=None) -> bytes:
    now = dt.datetime.now(UTC)
    path = write_crl(folder / f"crl-{len(list(folder.glob('crl-*')))}.pem", pki.ca, revoked,
                     last_update=now - dt.timedelta(hours=age_hours),
                     next_update=now - dt.timedelta(hours=age_hours) + dt.timedelta(hours=hours_valid),
                     signing_key=signing_key)
    return crl_der(path)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.wall = dt.datetime.now(UTC)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.wall += dt.timedelta(seconds=seconds)


def with_clock(gateway) -> Clock:
    clock = Clock()
    gateway.clock = clock
    gateway.wall_clock = lambda: clock.wall
    gateway.current_trust()  # starts the refresh timer at clock.now
    return clock


# ------------------------------------------------------------------ http


def test_crl_from_http_url_revokes_and_passes(pki, tmp_path, crl_http):  # noqa: F811
    crl_http.files["/ca.crl"] = crl_der(pki.crl_path)
    gateway = load_gateway(write_config(tmp_path, pki, crls=[crl_http.url("/ca.crl")]))
    assert judge(gateway, pki).action is Action.ACCEPT
    v = judge(gateway, pki, "carol")
    assert codes(v) == {"revoked-signer"}
    assert crl_http.requests == ["/ca.crl"]  # fetched once at start, not per message


def test_failed_http_refresh_keeps_the_last_valid_crl(pki, tmp_path, crl_http, caplog):  # noqa: F811
    crl_http.files["/ca.crl"] = crl_der(pki.crl_path)
    gateway = load_gateway(write_config(tmp_path, pki, crls=[crl_http.url("/ca.crl")]))
    clock = with_clock(gateway)
    crl_http.status = 503
    clock.advance(gateway.config.trust.crl_refresh + 1)
    assert judge(gateway, pki).action is Action.ACCEPT
    assert len(crl_http.requests) == 2  # it did try
    assert "event=crl-fetch-failed" in caplog.text and "HTTP 503" in caplog.text
    assert codes(judge(gateway, pki, "carol")) == {"revoked-signer"}


def test_crl_signed_by_the_wrong_key_is_refused_and_logged(pki, tmp_path, crl_http, caplog):  # noqa: F811
    crl_http.files["/ca.crl"] = crl_der(pki.crl_path)
    gateway = load_gateway(write_config(tmp_path, pki, crls=[crl_http.url("/ca.crl")]))
    clock = with_clock(gateway)
    # A forged CRL that would un-revoke carol: refused, the good one stays.
    crl_http.files["/ca.crl"] = crl_bytes(pki, tmp_path, [], signing_key=pki.other_ca.key)
    caplog.set_level(logging.ERROR)
    clock.advance(gateway.config.trust.crl_refresh + 1)
    assert codes(judge(gateway, pki, "carol")) == {"revoked-signer"}
    assert "event=crl-refused" in caplog.text
    assert "signature does not verify" in caplog.text


def test_forged_crl_and_no_good_one_is_crl_unavailable(pki, tmp_path, crl_http):  # noqa: F811
    crl_http.files["/ca.crl"] = crl_bytes(pki, tmp_path, [], signing_key=pki.other_ca.key)
    gateway = load_gateway(write_config(tmp_path, pki, crls=[crl_http.url("/ca.crl")]))
    v = judge(gateway, pki)
    assert "crl-unavailable" in codes(v)
    assert v.action is Action.TEMPFAIL


def test_expired_crl_from_http_is_crl_unavailable(pki, tmp_path, crl_http):  # noqa: F811
    crl_http.files["/ca.crl"] = crl_bytes(pki, tmp_path, [], age_hours=48, hours_valid=24)
    gateway = load_gateway(write_config(tmp_path, pki, crls=[crl_http.url("/ca.crl")]))
    v = judge(gateway, pki)
    assert "crl-unavailable" in codes(v)
    assert v.action is Action.TEMPFAIL
    assert any("nextUpdate" in f.detail for f in v.violations)


def test_unreachable_crl_url_at_start_is_crl_unavailable(pki, tmp_path):
    from sealgate.devslapd import free_port

    gateway = load_gateway(write_config(tmp_path, pki,
                                        crls=[f"http://127.0.0.1:{free_port()}/ca.crl"]))
    v = judge(gateway, pki)
    assert "crl-unavailable" in codes(v)
    assert v.action is Action.TEMPFAIL


def test_crl_is_refreshed_ahead_of_next_update(pki, tmp_path, crl_http):  # noqa: F811
    # nextUpdate in 20 minutes while crl_refresh is 1 hour: the gateway must not
    # wait the hour and tempfail every message after nextUpdate.
    crl_http.files["/ca.crl"] = crl_bytes(pki, tmp_path, [], age_hours=1, hours_valid=1 + 20 / 60)
    config = write_config(tmp_path, pki, crls=[crl_http.url("/ca.crl")])
    config.write_text(config.read_text().replace("[trust]\n", "[trust]\ncrl_refresh = \"1h\"\n"))
    gateway = load_gateway(config)
    clock = with_clock(gateway)
    assert judge(gateway, pki).action is Action.ACCEPT
    crl_http.files["/ca.crl"] = crl_bytes(pki, tmp_path, [pki["alice"].cert.serial_number])
    clock.advance(10 * 60)  # 10 minutes before nextUpdate: not due yet
    assert judge(gateway, pki).action is Action.ACCEPT
    assert len(crl_http.requests) == 1
    clock.advance(6 * 60)  # 4 minutes before: inside min(crl_refresh/2, 5 min)
    assert codes(judge(gateway, pki)) == {"revoked-signer"}
    assert len(crl_http.requests) == 2


# ------------------------------------------------------------------ distribution points


def issue_with_dp(pki: TestPKI, folder: Path, name: str, url: str) -> Identity:
    """A user certificate naming ``url`` in cRLDistributionPoints (RFC 5280 §4.2.1.13)."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(UTC)
    email = f"{name}@example.com"
    cert = (cx509.CertificateBuilder()
            .subject_name(cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(pki.ca.cert.subject).public_key(key.public_key())
            .serial_number(cx509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(cx509.SubjectAlternativeName([cx509.RFC822Name(email)]), critical=False)
            .add_extension(cx509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                           critical=False)
            .add_extension(cx509.CRLDistributionPoints([cx509.DistributionPoint(
                full_name=[cx509.UniformResourceIdentifier(url)], relative_name=None,
                reasons=None, crl_issuer=None)]), critical=False)
            .sign(pki.ca.key, hashes.SHA256()))
    cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(Encoding.PEM))
    key_path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    key_path.chmod(0o600)
    return Identity(name, email, cert, key, cert_path, key_path)


def dp_gateway(pki, folder: Path, who: Identity, allow: bool):
    directory = folder / "published"
    directory.mkdir(parents=True)
    for name in ("bob",):
        (directory / f"{name}.pem").write_bytes(pki[name].cert_path.read_bytes())
    (directory / f"{who.name}.pem").write_bytes(who.cert_path.read_bytes())
    config = write_config(folder, pki, crls=[], directory=directory)
    if allow:
        config.write_text(config.read_text().replace(
            "[trust]\n", "[trust]\ncrl_distribution_points = true\n"))
    return load_gateway(config)


def test_crl_distribution_point_of_the_signer_is_fetched_when_allowed(pki, tmp_path, crl_http):  # noqa: F811
    crl_http.files["/dp.crl"] = crl_der(pki.crl_path)
    dave = issue_with_dp(pki, tmp_path, "dpuser", crl_http.url("/dp.crl"))
    gateway = dp_gateway(pki, tmp_path / "gw", dave, allow=True)
    raw = m.message(m.triple_wrap(BODY, dave, [pki["bob"]]), dave.email, ["bob@example.com"])
    v = evaluate(gateway, raw, dave.email, ["bob@example.com"])
    assert v.action is Action.ACCEPT, v.violations
    assert crl_http.requests == ["/dp.crl"]
    evaluate(gateway, raw, dave.email, ["bob@example.com"])
    assert crl_http.requests == ["/dp.crl"]  # learned once, then refreshed on schedule


def test_crl_distribution_points_are_ignored_unless_allowed(pki, tmp_path, crl_http):  # noqa: F811
    crl_http.files["/dp.crl"] = crl_der(pki.crl_path)
    dave = issue_with_dp(pki, tmp_path, "dpuser", crl_http.url("/dp.crl"))
    gateway = dp_gateway(pki, tmp_path / "gw", dave, allow=False)
    raw = m.message(m.triple_wrap(BODY, dave, [pki["bob"]]), dave.email, ["bob@example.com"])
    v = evaluate(gateway, raw, dave.email, ["bob@example.com"])
    assert "crl-unavailable" in codes(v)
    assert crl_http.requests == []


# ------------------------------------------------------------------ ldap


def test_crl_from_the_ca_entry_over_ldap(pki, tmp_path, own_slapd):  # noqa: F811
    url = own_slapd.crl_url(own_slapd.ca_dn)
    gateway = load_gateway(ldap_config(tmp_path, pki, own_slapd.url, own_slapd.people_dn,
                                       crls=[url]))  # type: ignore[list-item]
    try:
        assert judge(gateway, pki).action is Action.ACCEPT
        assert codes(judge(gateway, pki, "carol")) == {"revoked-signer"}
    finally:
        gateway.directory.close()


def test_crl_published_into_ldap_is_read_at_the_next_refresh(pki, tmp_path, own_slapd):  # noqa: F811
    url = own_slapd.crl_url(own_slapd.ca_dn)
    config_path = ldap_config(tmp_path, pki, own_slapd.url, own_slapd.people_dn, crls=[url],  # type: ignore[list-item]
                              directory_extra=f'bind_dn = "{own_slapd.admin_dn}"\n'
                              f'bind_password_file = "{own_slapd.admin_password_file}"\n')
    gateway = load_gateway(config_path)
    clock = with_clock(gateway)
    try:
        assert judge(gateway, pki, "grace").action is Action.ACCEPT
        # grace loses her card: the CA publishes a new CRL into the CA entry.
        new = crl_bytes(pki, tmp_path, [*pki.revoked, pki["grace"].cert.serial_number],
                        age_hours=0.5)
        where = publish_crl(load_config(config_path), new)
        assert own_slapd.ca_dn in where
        assert judge(gateway, pki, "grace").action is Action.ACCEPT  # not refreshed yet
        clock.advance(gateway.config.trust.crl_refresh + 1)
        assert codes(judge(gateway, pki, "grace")) == {"revoked-signer"}
    finally:
        gateway.directory.close()


def test_slapd_down_at_refresh_keeps_the_crl(pki, tmp_path, own_slapd):  # noqa: F811
    url = own_slapd.crl_url(own_slapd.ca_dn)
    gateway = load_gateway(write_config(tmp_path, pki, crls=[url]))  # type: ignore[list-item]
    clock = with_clock(gateway)
    own_slapd.stop()
    clock.advance(gateway.config.trust.crl_refresh + 1)
    assert judge(gateway, pki).action is Action.ACCEPT
    assert codes(judge(gateway, pki, "carol")) == {"revoked-signer"}
    assert url in gateway.crl_loader.failures


# ------------------------------------------------------------------ publish (files)


def test_publish_crl_replaces_the_file_of_the_same_issuer(pki, tmp_path):
    other = tmp_path / "other.crl"
    other.write_bytes(pki.crl_path.read_bytes())  # a copy: same issuer
    unrelated = tmp_path / "unrelated.crl"
    write_crl(unrelated, pki.other_ca, [], last_update=dt.datetime.now(UTC),
              next_update=dt.datetime.now(UTC) + dt.timedelta(days=1))
    mine = tmp_path / "mine.crl"
    mine.write_bytes(pki.crl_path.read_bytes())
    config = load_config(write_config(tmp_path / "gw", pki, crls=[unrelated, mine]))
    new = crl_bytes(pki, tmp_path, [pki["bob"].cert.serial_number], age_hours=0.1)
    where = publish_crl(config, new)
    assert str(mine) in where and str(unrelated) not in where
    assert cx509.load_pem_x509_crl(mine.read_bytes()).get_revoked_certificate_by_serial_number(
        pki["bob"].cert.serial_number) is not None
    assert mine.stat().st_mode & 0o777 == 0o644


def test_publish_crl_goes_to_the_first_file_when_none_matches(pki, tmp_path):
    first = tmp_path / "new.crl"
    config = load_config(write_config(tmp_path / "gw", pki, crls=[first]))
    publish_crl(config, crl_der(pki.crl_path))
    assert cx509.load_pem_x509_crl(first.read_bytes()).issuer == pki.ca.cert.subject


def test_publish_refuses_a_crl_not_signed_by_the_anchor(pki, tmp_path):
    target = tmp_path / "ca.crl"
    target.write_bytes(pki.crl_path.read_bytes())
    config = load_config(write_config(tmp_path / "gw", pki, crls=[target]))
    forged = crl_bytes(pki, tmp_path, [], signing_key=pki.other_ca.key)
    with pytest.raises(PublishError, match="not signed by the key"):
        publish_crl(config, forged)
    assert target.read_bytes() == pki.crl_path.read_bytes()


def test_crl_server_down_at_start_is_retried_soon_not_after_crl_refresh(pki, tmp_path, crl_http):  # noqa: F811
    crl_http.status = 503
    gateway = load_gateway(write_config(tmp_path, pki, crls=[crl_http.url("/ca.crl")]))
    clock = with_clock(gateway)
    assert judge(gateway, pki).action is Action.TEMPFAIL
    crl_http.status = 200
    crl_http.files["/ca.crl"] = crl_der(pki.crl_path)
    clock.advance(31)  # far less than crl_refresh (10 minutes)
    assert judge(gateway, pki).action is Action.ACCEPT
