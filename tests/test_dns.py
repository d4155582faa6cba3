"""DNS for the directory: SRV discovery (RFC 2782) and SMIMEA (RFC 8162) with a real AD bit.

Knot serves ``example.com`` and ``partner.test`` signed and ``plain.test``
unsigned; Unbound validates with the signed zones' keys as trust anchors
(sealgate.devdns). Answers from ``plain.test`` come without AD and must not
be trusted.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from directory_fixtures import der, ldap_config, load_people, require, require_dns
from gateway_helpers import evaluate, write_config

from sealgate import devmail as m
from sealgate import devslapd
from sealgate.codes import Action
from sealgate.devdns import DevDns
from sealgate.devpki import Identity, TestPKI, issue_user
from sealgate.devslapd import BlackHole, Slapd
from sealgate.directory.cache import TtlCache
from sealgate.directory.ldap import LdapClient, LdapDirectory, LdapSettings
from sealgate.directory.smimea import SmimeaLookup, smimea_name
from sealgate.directory.srv import SrvTarget, lookup_srv, make_resolver, rfc2782_order
from sealgate.engine import load_gateway
from sealgate.errors import DirectoryUnavailable

UTC = dt.UTC
BODY = m.text_entity("Hello from outside.\r\n")

INBOUND_POLICY = """\
[defaults]
action = "quarantine"
transient_action = "tempfail"

[[rules]]
name = "inbound"
direction = "inbound"
require = ["signed", "signer-is-sender", "signer-in-directory"]
"""


# ------------------------------------------------------------------ pure rules


def test_smimea_owner_name_is_the_rfc_8162_example():
    # RFC 8162 Appendix A.
    assert smimea_name("hugh@example.com") == (
        "c93f1e400f26708f98cb19d936620da35eec8f72e57f9eec01c1afd6._smimecert.example.com.")


def test_rfc2782_order_is_by_priority_then_weight():
    records = [SrvTarget(10, 0, 1, "c"), SrvTarget(0, 1, 2, "b"), SrvTarget(0, 99, 3, "a")]
    # Seeded draws (reproducible), not cryptography.
    orders = [rfc2782_order(records, random.Random(seed)) for seed in range(200)]  # noqa: S311
    assert all(order[2].host == "c" for order in orders)  # priority 10 always last
    firsts = [order[0].host for order in orders]
    # weight 99 against 1: "a" first in nearly every draw, "b" sometimes (RFC 2782).
    assert firsts.count("a") > 150 and "b" in firsts


# ------------------------------------------------------------------ services


def smimea_record(zone: str, address: str, cert_der: bytes, usage: int = 3, selector: int = 0,
                  mtype: int = 0) -> str:
    owner = smimea_name(address)[: -len(zone) - 2]  # relative to the zone
    data = cert_der.hex() if mtype == 0 else hashlib.sha256(cert_der).hexdigest()
    return f"{owner} SMIMEA {usage} {selector} {mtype} {data}"


class World:
    def __init__(self, dns: DevDns, people: dict[str, Identity], slapd: Slapd,
                 hole: BlackHole) -> None:
        self.dns = dns
        self.people = people
        self.slapd = slapd
        self.hole = hole


@pytest.fixture(scope="module")
def world(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    require(devslapd.missing_tools(), devslapd.INSTALL_HINT)
    require_dns()
    root = tmp_path_factory.mktemp("dns")
    now = dt.datetime.now(UTC)
    people = {}
    for name, address in (("ext", "ext@partner.test"), ("hashed", "hashed@partner.test"),
                          ("plain", "plain@plain.test"), ("nobody", "nobody@partner.test")):
        people[name] = issue_user(root, pki.ca, name, address, not_before=now - dt.timedelta(hours=1),
                                  not_after=now + dt.timedelta(days=30))
    slapd = Slapd(root / "slapd").start()
    hole = BlackHole().start()
    try:
        load_people(slapd, pki)
        zones = {
            # priority 0 is a server that never answers; 1 the real slapd.
            "example.com": [f"_ldap._tcp SRV 0 5 {hole.port} hung",
                            f"_ldap._tcp SRV 1 5 {slapd.port} ldap1",
                            "hung A 127.0.0.1", "ldap1 A 127.0.0.1"],
            "partner.test": [smimea_record("partner.test", "ext@partner.test",
                                           der(people["ext"].cert)),
                             smimea_record("partner.test", "hashed@partner.test",
                                           der(people["hashed"].cert), mtype=1)],
            "plain.test": [smimea_record("plain.test", "plain@plain.test",
                                         der(people["plain"].cert))],
        }
        with DevDns(root / "dns", zones, signed={"example.com", "partner.test"}) as dns:
            yield World(dns, people, slapd, hole)
    finally:
        hole.stop()
        slapd.stop()


def lookup(world: World) -> SmimeaLookup:
    return SmimeaLookup(make_resolver(world.dns.resolver_address, 3), TtlCache(300, 60))


# ------------------------------------------------------------------ SRV


def test_srv_lists_servers_in_priority_order(world):
    targets = lookup_srv("example.com", make_resolver(world.dns.resolver_address, 3))
    assert [(t.priority, t.port) for t in targets] == [(0, world.hole.port), (1, world.slapd.port)]


def test_dns_srv_url_fails_over_past_a_hung_server(world, pki):
    client = LdapClient(LdapSettings(url="dns-srv:example.com", timeout=1,
                                     dns_resolver=world.dns.resolver_address))
    d = LdapDirectory(client, world.slapd.people_dn)
    try:
        certs = d.certificates_for("alice@example.com")
        assert [c.serial_number for c in certs] == [pki["alice"].cert.serial_number]
    finally:
        d.close()


def test_dns_srv_without_records_is_directory_unavailable(world):
    client = LdapClient(LdapSettings(url="dns-srv:plain.test", timeout=1,
                                     dns_resolver=world.dns.resolver_address))
    with pytest.raises(DirectoryUnavailable, match="_ldap._tcp.plain.test"):
        LdapDirectory(client, "dc=example,dc=com").certificates_for("alice@example.com")


# ------------------------------------------------------------------ SMIMEA


def test_smimea_certificate_from_a_signed_zone_is_found(world):
    certs = lookup(world).certificates_for("ext@partner.test")
    assert [c.serial_number for c in certs] == [world.people["ext"].cert.serial_number]


def test_smimea_answer_without_ad_bit_is_not_trusted(world, caplog):
    caplog.set_level(logging.WARNING)
    assert lookup(world).certificates_for("plain@plain.test") == []
    assert "event=smimea-insecure" in caplog.text


def test_smimea_hash_only_record_names_no_certificate(world):
    assert lookup(world).certificates_for("hashed@partner.test") == []


def test_smimea_absent_is_an_empty_answer(world):
    assert lookup(world).certificates_for("nobody@partner.test") == []


def test_smimea_resolver_down_is_directory_unavailable(world):
    from sealgate.devslapd import free_port

    dead = SmimeaLookup(make_resolver(f"127.0.0.1:{free_port()}", 1), TtlCache(300, 60))
    with pytest.raises(DirectoryUnavailable, match="SMIMEA lookup"):
        dead.certificates_for("ext@partner.test")


def smimea_gateway(world: World, pki: TestPKI, folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    policy = folder / "inbound.toml"
    policy.write_text(INBOUND_POLICY)
    config = write_config(folder, pki, policy=str(policy))
    config.write_text(config.read_text().replace(
        "[directory]\n", f'[directory]\nsmimea = true\ndns_resolver = "{world.dns.resolver_address}"\n'))
    return load_gateway(config)


def inbound(world: World, pki: TestPKI, name: str) -> tuple[bytes, str]:
    who = world.people[name]
    return m.message(m.triple_wrap(BODY, who, [pki["bob"]]), who.email, ["bob@example.com"]), who.email


def test_smimea_certificate_satisfies_signer_in_directory(world, pki, tmp_path):
    gateway = smimea_gateway(world, pki, tmp_path)
    raw, sender = inbound(world, pki, "ext")
    v = evaluate(gateway, raw, sender, ["bob@example.com"])
    assert v.action is Action.ACCEPT, v.violations


def test_unsigned_smimea_does_not_satisfy_signer_in_directory(world, pki, tmp_path):
    gateway = smimea_gateway(world, pki, tmp_path)
    raw, sender = inbound(world, pki, "plain")
    v = evaluate(gateway, raw, sender, ["bob@example.com"])
    assert {str(f.code) for f in v.violations} == {"signer-not-in-directory"}
    assert v.action is Action.QUARANTINE


def test_external_sender_without_smimea_is_signer_not_in_directory(world, pki, tmp_path):
    gateway = smimea_gateway(world, pki, tmp_path)
    raw, sender = inbound(world, pki, "nobody")
    v = evaluate(gateway, raw, sender, ["bob@example.com"])
    assert {str(f.code) for f in v.violations} == {"signer-not-in-directory"}


def test_internal_addresses_still_come_from_the_backend(world, pki, tmp_path):
    gateway = smimea_gateway(world, pki, tmp_path)
    raw = m.message(m.triple_wrap(BODY, pki["alice"], [pki["bob"], pki["alice"]]),
                    "alice@example.com", ["bob@example.com"])
    v = evaluate(gateway, raw, "alice@example.com", ["bob@example.com"])
    assert v.action is Action.ACCEPT, v.violations  # no rule for internal mail here: accept
    assert gateway.directory.lookup.queries == 0


def test_gateway_with_a_dns_srv_url_judges_internal_mail(world, pki, tmp_path):
    config = ldap_config(tmp_path, pki, "dns-srv:example.com", world.slapd.people_dn,
                         directory_extra=f'timeout = "1s"\ndns_resolver = "{world.dns.resolver_address}"\n')
    gateway = load_gateway(config)
    raw = m.message(m.triple_wrap(BODY, pki["alice"], [pki["bob"], pki["alice"]]),
                    "alice@example.com", ["bob@example.com"])
    try:
        v = evaluate(gateway, raw, "alice@example.com", ["bob@example.com"])
    finally:
        gateway.directory.close()
    assert v.action is Action.ACCEPT, v.violations
