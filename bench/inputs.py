"""What every benchmark needs, built in a throwaway folder: PKI, messages, configs.

Messages come from independent producers: ``openssl cms`` through
:mod:`sealgate.devmail` (triple-wrapped per RFC 2634 §1.1 and plain ones of a
given size) and ``sealgate seal`` (the endpoint CLI, signing on a SoftHSM2
card) when this tree and machine have it. Configurations
use ``policies/strict.toml`` with either the ``files`` directory or an LDAP
URL, and keep the metrics endpoint off.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sealgate import devmail as m
from sealgate.devconfig import write_gateway_config
from sealgate.devpki import TestPKI, build_pki

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "policies"
SENDER = "alice@example.com"
RECIPIENTS = ("bob@example.com",)

KB = 1000
MB = 1000 * 1000

_LINE = "The quarterly figures are in the attached table, line %06d.\r\n"


def pki_in(folder: Path) -> TestPKI:
    return build_pki(folder)


def _text(size: int) -> str:
    return "".join(_LINE % i for i in range(size // len(_LINE % 0) + 1))[:size]


def _entity(size: int) -> bytes:
    """Text for small messages, a base64 attachment (what big mail carries) for large ones."""
    if size < 64 * KB:
        return m.text_entity(_text(size))
    return m.binary_attachment(size * 3 // 4)


def _fit(build: Callable[[int], bytes], size: int, growth: float) -> bytes:
    """Call ``build(content_size)`` until the message is within 3% of ``size`` (4 tries).

    The message is about ``overhead + growth * content`` (signatures and
    certificates are fixed, base64 grows): the second try fits that line.
    """
    content = max(int(size / growth), 100)
    seen: list[tuple[int, int]] = []
    raw = b""
    for _ in range(4):
        raw = build(content)
        seen.append((content, len(raw)))
        if abs(len(raw) - size) <= size * 0.03:
            break
        if len(seen) >= 2 and seen[-1][0] != seen[-2][0]:
            (c1, n1), (c2, n2) = seen[-2], seen[-1]
            slope = (n2 - n1) / (c2 - c1)
            content = max(100, int(c2 + (size - n2) / slope)) if slope > 0 else content // 2
        else:
            content = max(100, int(content * size / len(raw)))
    return raw


def triple_wrapped(pki: TestPKI, size: int) -> bytes:
    """An ``openssl cms`` triple-wrapped message (alice to bob and herself) of about ``size`` bytes."""
    def build(content: int) -> bytes:
        return m.message(m.triple_wrap(_entity(content), pki["alice"], [pki["bob"], pki["alice"]]),
                         SENDER, list(RECIPIENTS))
    # base64 of the attachment, then of the enveloped layer: ~1.8x; text ~1.4x
    return _fit(build, size, 1.8 if size >= 64 * KB else 1.4)


def plain(size: int) -> bytes:
    """An unsigned, unencrypted message of about ``size`` bytes."""
    return _fit(lambda content: m.message(_entity(content), SENDER, list(RECIPIENTS)), size, 1.0)


def signed(pki: TestPKI, size: int) -> bytes:
    """A detached-signed (multipart/signed) message of about ``size`` bytes."""
    return _fit(lambda content: m.message(m.sign(_entity(content), pki["alice"]), SENDER,
                                          list(RECIPIENTS)), size, 1.0)


@dataclass
class SealSite:
    """A SoftHSM-backed endpoint site (:mod:`sealgate.devendpoint`) where alice seals to bob."""

    site: Any  # sealgate.devendpoint.Site
    alice: Any  # sealgate.devendpoint.Person
    pin_file: Path

    def gateway_config(self) -> Path:
        return Path(self.site.config_path)

    def ca_and_crl(self) -> Path:
        return Path(self.site.ca_and_crl_file())

    def seal(self, size: int) -> bytes:
        """``sealgate seal`` (the CLI, with alice's card) of a plain message of about ``size`` bytes.

        The sealed message is larger than the plain one (base64 twice, two
        signatures): the plain size is fitted so that the sealed one is near ``size``.
        """
        def build(content: int) -> bytes:
            plain = m.message(_entity(content), SENDER, list(RECIPIENTS))
            proc = subprocess.run(
                [sys.executable, "-m", "sealgate", "seal", "--config", str(self.site.config_path),
                 "--token", self.alice.token, "--pin-file", str(self.pin_file), "-"],
                input=plain, capture_output=True, env=self.site.hsm.env(), check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"sealgate seal failed ({proc.returncode}): "
                                   f"{proc.stderr.decode(errors='replace')[-800:]}")
            return proc.stdout
        return _fit(build, size, 1.8 if size >= 64 * KB else 1.4)


def seal_site(folder: Path) -> SealSite | str:
    """A site where ``sealgate seal`` works, or why it cannot be built here."""
    try:
        from sealgate.devendpoint import make_site
        from sealgate.devsofthsm import SoftHSM, available
    except ImportError as exc:
        return f"sealgate seal is not in this tree ({exc})"
    missing = available()
    if missing:
        return missing
    hsm = SoftHSM.create(folder / "softhsm")
    hsm.activate()
    (folder / "site").mkdir(parents=True, exist_ok=True)
    site = make_site(folder / "site", hsm)
    alice = site.enrol("alice")
    site.enrol("bob")
    pin_file = folder / "alice.pin"
    fd = os.open(pin_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(alice.pin + "\n")
    return SealSite(site, alice, pin_file)


def write_config(folder: Path, pki: TestPKI, *, directory: str = "files", ldap_url: str = "",
                 ldap_base: str = "", socket: str = "", policy: str = "strict.toml",
                 workers: int = 1, pin_workers: bool = False) -> Path:
    """A sealgate.toml under ``folder`` for the strict policy and the chosen directory backend."""
    directory_keys: dict[str, str | Path]
    if directory == "files":
        directory_keys = {"backend": "files", "path": pki.directory}
    elif directory == "ldap":
        directory_keys = {"backend": "ldap", "url": ldap_url, "base_dn": ldap_base}
    else:
        raise ValueError(f"unknown directory backend {directory!r}")
    return write_gateway_config(folder, anchors=[pki.ca.cert_path], crls=[pki.crl_path],
                                directory=directory_keys, policy=POLICIES / policy, socket=socket,
                                milter={"max_message_size": "64MiB", "workers": workers,
                                        "pin_workers": pin_workers})


def ca_and_crl(pki: TestPKI, folder: Path) -> Path:
    """One PEM file with the CA and its CRL (``openssl cms`` has no CRL-file option)."""
    path = folder / "ca+crl.pem"
    path.write_bytes(pki.ca.cert_path.read_bytes() + pki.crl_path.read_bytes())
    return path


def human(size: int) -> str:
    """``10.0 KB``, ``1.00 MB``, ``25.0 MB`` (decimal units, as the issue states sizes)."""
    if size < MB:
        return f"{size / KB:.1f} KB"
    return f"{size / MB:.3g} MB" if size < 10 * MB else f"{size / MB:.1f} MB"


def stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
