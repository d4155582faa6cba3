"""Fixtures shared by the whole suite: a throwaway PKI built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from sealgate.devpki import TestPKI, build_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    """CA + CRL + the cast of sealgate.devpki.CAST (alice, bob, carol revoked, ...)."""
    return build_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
