"""A throwaway SoftHSM2 for the tests, the benchmark and the demo.

SoftHSM2 keeps its tokens in a folder named by the file that ``SOFTHSM2_CONF``
points at; :class:`SoftHSM` makes both under a temporary folder, so nothing
touches the machine's own tokens. Tokens are created with ``softhsm2-util``
and always found again by *label*: ``--init-token --free`` renumbers slots.

The PKCS#11 library reads ``SOFTHSM2_CONF`` when it is initialised, so a
process works with one SoftHSM folder: :meth:`SoftHSM.activate` sets the
variable and re-initialises the library so tokens made by ``softhsm2-util``
(another process) become visible.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Where Debian, Fedora and Homebrew put the module; SEALGATE_SOFTHSM_MODULE wins.
MODULE_CANDIDATES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)
INSTALL_HINT = "install SoftHSM2 (Debian: apt-get install softhsm2; or make deps)"

SO_PIN = "87654321"  # the harness's security officer PIN; tests pick user PINs themselves


def find_module() -> str | None:
    """The SoftHSM2 PKCS#11 module on this machine, or None."""
    env = os.environ.get("SEALGATE_SOFTHSM_MODULE")
    if env:
        return env if Path(env).exists() else None
    for candidate in MODULE_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    return None


def available() -> str | None:
    """None when SoftHSM2 can be used here, else what is missing (with an install hint)."""
    if find_module() is None:
        return f"the SoftHSM2 PKCS#11 module is not installed ({INSTALL_HINT})"
    if shutil.which("softhsm2-util") is None:
        return f"softhsm2-util is not on PATH ({INSTALL_HINT})"
    return None


@dataclass
class SoftHSM:
    """A SoftHSM2 token folder of its own under ``root``."""

    root: Path
    module: str

    @classmethod
    def create(cls, root: Path) -> SoftHSM:
        missing = available()
        if missing:
            raise RuntimeError(missing)
        root.mkdir(parents=True, exist_ok=True)
        tokens = root / "tokens"
        tokens.mkdir(mode=0o700, exist_ok=True)
        conf = root / "softhsm2.conf"
        conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
                        "log.level = ERROR\nslots.removable = false\n")
        return cls(root, find_module() or "")

    @property
    def conf(self) -> Path:
        return self.root / "softhsm2.conf"

    def env(self) -> dict[str, str]:
        """The environment a child process (the CLI) needs to see these tokens."""
        return {**os.environ, "SOFTHSM2_CONF": str(self.conf)}

    def activate(self) -> None:
        """Point this process's PKCS#11 library at this folder and rescan tokens."""
        os.environ["SOFTHSM2_CONF"] = str(self.conf)
        import pkcs11

        lib = pkcs11.lib(self.module)
        lib.reinitialize()

    def init_token(self, label: str, user_pin: str, so_pin: str = SO_PIN) -> None:
        """A fresh token in the next free slot, with a user PIN set (a blank card)."""
        proc = subprocess.run(
            ["softhsm2-util", "--init-token", "--free", "--label", label,
             "--so-pin", so_pin, "--pin", user_pin],
            env=self.env(), capture_output=True, text=True, check=False)
        # The PINs above are on softhsm2-util's argv: acceptable for a throwaway
        # test token only; sealgate itself never puts a PIN on a command line.
        if proc.returncode != 0:
            raise RuntimeError(f"softhsm2-util --init-token {label!r} failed: {proc.stderr.strip()}")
        self.activate()
