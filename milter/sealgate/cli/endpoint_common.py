"""Options and helpers shared by the endpoint commands (card, ca, seal, open, sendmail).

PINs are read by :func:`sealgate.endpoint.pin.read_pin` from a prompt, a file
(``--pin-file``) or an environment variable the user names (``--pin-env
NAME``): there is deliberately no option that takes the PIN itself.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from . import exit_on_errors, fail  # noqa: F401 - fail is re-exported to the card commands

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("sealgate.endpoint")

MODULE_ENV = "SEALGATE_PKCS11_MODULE"
EXIT_FAILED = 1


def card_options(func: F) -> F:
    """--module, --token, --key-label, --pin-file, --pin-env."""
    decorators = [
        click.option("--module", "module", metavar="PATH",
                     help=f"PKCS#11 module (default: [card] module, then ${MODULE_ENV}).",
                     default=None),
        click.option("--token", "token", metavar="LABEL",
                     help="Card (token) label (default: [card] token_label)."),
        click.option("--key-label", "key_label", metavar="LABEL", default=None,
                     help="Label of the key pair and certificate on the card (default sealgate-smime)."),
        click.option("--pin-file", "pin_file", type=click.Path(dir_okay=False), default=None,
                     help="Read the card PIN from this file (mode 600)."),
        click.option("--pin-env", "pin_env", metavar="VARIABLE", default=None,
                     help="Read the card PIN from this environment variable."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


# SealgateError (a card, PIN, file or config problem) -> one line on stderr, exit 2.
errors_to_exit = exit_on_errors()


def load_config_optional(config_path: str | None) -> Any:
    """The Config of ``--config``, or None when it was not given (card commands work without)."""
    from ..config import load_config

    if config_path is None:
        return None
    return load_config(Path(config_path))


def card_settings(config: Any, module: str | None, token: str | None,
                  key_label: str | None) -> tuple[str, str, str]:
    """(module, token label, key label) from the options, then the config, then the env."""
    card = config.card if config is not None else None
    module = module or (card.module if card else "") or os.environ.get(MODULE_ENV, "")
    token = token or (card.token_label if card else "")
    key_label = key_label or (card.key_label if card else "") or "sealgate-smime"
    if not module:
        raise click.UsageError(f"no PKCS#11 module: give --module, [card] module in the config, "
                               f"or ${MODULE_ENV}")
    if not token:
        raise click.UsageError("no card label: give --token or [card] token_label in the config")
    return module, token, key_label


def open_card(config: Any, module: str | None, token: str | None, key_label: str | None,
              pin_file: str | None, pin_env: str | None) -> Any:
    """Log in to the card; the PIN goes from its source to C_Login and nowhere else."""
    from ..endpoint.card import Card
    from ..endpoint.pin import read_pin

    module, token, key_label = card_settings(config, module, token, key_label)
    pin = read_pin(pin_file=pin_file, pin_env=pin_env, prompt=f"PIN for card {token}: ")
    card = Card(module, token, pin, key_label=key_label)
    log.info("event=card-open token=%s key_label=%s", token, key_label)
    return card


def read_input(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    return Path(name).read_bytes()


def write_output(name: str | None, data: bytes) -> None:
    if name is None or name == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        Path(name).write_bytes(data)
