"""Fixtures for the endpoint tests: a SoftHSM2 folder, a sealgate CA, a gateway site, cards.

One SoftHSM2 folder per test session (the PKCS#11 library reads SOFTHSM2_CONF
once per initialisation); every test makes its own tokens with unique labels.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from need import need, need_binary

from sealgate.devendpoint import Person, Site, SoftPerson, make_site
from sealgate.devsofthsm import SoftHSM, available

__all__ = ["Person", "Site", "SoftPerson", "make_site", "require_tool", "require_binary",
           "softhsm_fixture", "endpoint_site_fixture"]


def require_tool(missing: str | None) -> None:
    """In CI a missing tool fails the test (with the install hint); elsewhere it skips."""
    need(missing)


def require_binary(name: str, hint: str) -> None:
    need_binary(name, hint)


@pytest.fixture(scope="session", name="softhsm")
def softhsm_fixture(tmp_path_factory: pytest.TempPathFactory) -> SoftHSM:
    """One SoftHSM2 folder for the session (import ``softhsm_fixture`` to use ``softhsm``)."""
    require_tool(available())
    hsm = SoftHSM.create(tmp_path_factory.mktemp("softhsm"))
    hsm.activate()
    return hsm


@pytest.fixture(name="endpoint_site")
def endpoint_site_fixture(tmp_path: Path, softhsm: SoftHSM) -> Site:
    return make_site(tmp_path, softhsm)
