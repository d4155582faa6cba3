"""Where a PIN comes from: a prompt, a file, or an environment variable the user names.

Never the command line (argv is visible to every user in ``ps``) and never a
log line: the PIN is returned to the caller and goes straight to C_Login.
A PIN file must not be readable by others (like an ssh key).
"""

from __future__ import annotations

import getpass
import os
import stat
import sys
from pathlib import Path

from .errors import PinError


def read_pin(*, pin_file: str | None = None, pin_env: str | None = None,
             prompt: str = "Card PIN: ", what: str = "PIN") -> str:
    """The PIN from ``pin_file``, else the variable named ``pin_env``, else a prompt on the tty."""
    if pin_file is not None and pin_env is not None:
        raise PinError(f"give the {what} with either --pin-file or --pin-env, not both")
    if pin_file is not None:
        return _from_file(Path(pin_file), what)
    if pin_env is not None:
        value = os.environ.get(pin_env)
        if value is None:
            raise PinError(f"environment variable {pin_env} (named by --pin-env) is not set")
        value = value.strip()
        if not value:
            raise PinError(f"environment variable {pin_env} (named by --pin-env) is empty")
        return value
    if not sys.stdin.isatty():
        raise PinError(f"no {what}: standard input is not a terminal; use --pin-file FILE or "
                       "--pin-env VARIABLE")
    value = getpass.getpass(prompt)
    if not value:
        raise PinError(f"no {what} entered")
    return value


def _from_file(path: Path, what: str) -> str:
    try:
        st = path.stat()
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise PinError(f"{what} file {path} is readable by others; chmod 600 {path}")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PinError(f"cannot read {what} file {path}: {exc.strerror or exc}") from None
    value = text.splitlines()[0].strip() if text.strip() else ""
    if not value:
        raise PinError(f"{what} file {path} is empty")
    return value
