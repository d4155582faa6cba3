"""One rule for tests whose tool or service is missing: fail in CI, skip elsewhere.

CI (``CI=true``) runs on a machine that ``make test`` has provisioned: a
missing postfix, slapd, softhsm2, postgresql ... there is a broken install
step, and must fail the run with the hint that fixes it, never pass as a skip.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(problem: str) -> NoReturn:
    """Fail (CI) or skip (elsewhere) the current test because of ``problem``."""
    if IN_CI:
        pytest.fail(f"{problem} (CI=true: a missing tool or service fails the run)")
    pytest.skip(problem)


def need(problem: str | None) -> None:
    """Go on when ``problem`` is None; otherwise :func:`unavailable`."""
    if problem:
        unavailable(problem)


def need_binary(name: str, hint: str) -> str:
    """The path of a command-line tool, or :func:`unavailable`."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} is not installed ({hint})")
    return path
