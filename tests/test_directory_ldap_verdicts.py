"""The gateway verdicts of tests/test_verdicts.py, with the ``ldap`` directory backend.

Every test there that judges through the shared ``gw``/``compat`` gateways is
collected here again, with those two fixtures replaced by gateways whose
directory is a real slapd holding the same people (directory_fixtures.slapd).
Same messages, same assertions: the backend must not change a verdict.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import pytest
import test_verdicts
from directory_fixtures import ldap_config, slapd  # noqa: F401 -- the fixture is used by gw
from test_verdicts import internal  # noqa: F401 -- helpers the reused tests look up here

from sealgate.devpki import TestPKI
from sealgate.devslapd import Slapd
from sealgate.directory.ldap import LdapDirectory
from sealgate.engine import Gateway, load_gateway


def _ldap_gateway(folder, pki: TestPKI, server: Slapd, **kwargs) -> Gateway:
    gateway = load_gateway(ldap_config(folder, pki, server.url, server.people_dn, **kwargs))
    assert isinstance(gateway.directory, LdapDirectory)
    return gateway


@pytest.fixture(scope="module")
def gw(pki: TestPKI, slapd: Slapd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:  # noqa: F811
    gateway = _ldap_gateway(tmp_path_factory.mktemp("ldap-gw"), pki, slapd)
    yield gateway
    gateway.directory.close()


@pytest.fixture(scope="module")
def compat(pki: TestPKI, slapd: Slapd,  # noqa: F811
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = _ldap_gateway(tmp_path_factory.mktemp("ldap-compat"), pki, slapd, policy="compat.toml")
    yield gateway
    gateway.directory.close()


# Reuse, not copy: every test of test_verdicts that takes gw or compat.
REUSED = []
for _name, _test in inspect.getmembers(test_verdicts, inspect.isfunction):
    if _name.startswith("test_") and {"gw", "compat"} & set(inspect.signature(_test).parameters):
        globals()[_name] = _test
        REUSED.append(_name)


def test_the_reused_verdict_tests_are_most_of_the_core_ones():
    core = [n for n in dir(test_verdicts) if n.startswith("test_")]
    assert len(REUSED) >= 30, REUSED
    assert len(REUSED) > len(core) * 3 // 4


def test_the_ldap_gateway_really_asked_slapd(gw):
    assert gw.directory.queries > 0
