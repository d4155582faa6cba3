"""The ``sealgate`` command: one click group, one module per sub-command.

The commands are thin: they parse options, call the library, and print. Exit
codes (SPEC §7): 0 accept, 1 tag/quarantine/reject, 3 tempfail, 2 usage or
configuration error.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from ..errors import SealgateError

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_CONFIG = "/etc/sealgate/sealgate.toml"

EXIT_ACCEPT = 0
EXIT_FLAGGED = 1
EXIT_USAGE = 2
EXIT_TEMPFAIL = 3

config_option = click.option(
    "--config", "config_path", default=DEFAULT_CONFIG, show_default=True,
    envvar="SEALGATE_CONFIG", type=click.Path(dir_okay=False),
    help="Configuration file (TOML).",
)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """One line on stderr, then exit with ``code``."""
    click.echo(f"sealgate: {message}", err=True)
    sys.exit(code)


def exit_on_errors(*special: tuple[type[BaseException] | tuple[type[BaseException], ...], int]
                   ) -> Callable[[F], F]:
    """A command decorator: expected failures become one line on stderr and an exit code.

    ``special`` maps exception types to their own exit codes (checked first); any
    other SealgateError (config, card, PIN, store ...) and OSError exit 2.
    """
    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except SealgateError as exc:
                for kinds, code in special:
                    if isinstance(exc, kinds):
                        fail(str(exc), code)
                fail(str(exc))
            except OSError as exc:
                where = f" {exc.filename}" if exc.filename else ""
                fail(f"cannot access{where}: {exc.strerror or exc}")
        return wrapper  # type: ignore[return-value]
    return decorate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="sealgate")
def main() -> None:
    """sealgate: S/MIME policy gateway for Postfix."""


# Each sub-command lives in its own module and registers itself on ``main``.
for _name in ("config_cmd", "check_cmd", "milter_cmd", "directory_cmd", "ca_cmd", "card_cmd",
              "seal_cmd", "quarantine_cmd", "report_cmd"):
    try:
        importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as exc:  # a command module not written yet
        if exc.name != f"{__name__}.{_name}":
            raise
