"""Fixtures shared by the whole suite: a throwaway PKI built once per session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from sealgate import native
from sealgate.devpki import TestPKI, build_pki

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    """Test the code that runs: no compiled module older than its source (sealgate.native)."""
    problems = native.stale()
    if problems:
        raise pytest.UsageError("compiled sealgate.smime modules are out of date: "
                                + "; ".join(problems) + ". Run `make native` (or `make test`).")
    if os.environ.get("CI") == "true" and not native.compiled():
        raise pytest.UsageError("CI tests the compiled message walk (make test compiles it): "
                                "run `make native` first (make test does)")


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    """CA + CRL + the cast of sealgate.devpki.CAST (alice, bob, carol revoked, ...)."""
    return build_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A config folder holding what the default config points at: anchors, CRL, policies, directory."""
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "ca.pem").write_text("placeholder\n")
    (tmp_path / "pki" / "ca.crl").write_text("placeholder\n")
    (tmp_path / "policies").mkdir()
    for name in ("strict.toml", "compat.toml"):
        shutil.copy(REPO / "policies" / name, tmp_path / "policies" / name)
    (tmp_path / "directory").mkdir()
    return tmp_path
