"""The ``sealgate`` command: one click group, one module per sub-command.

The commands are thin: they parse options, call the library, and print. Exit
codes (SPEC §7): 0 accept, 1 tag/quarantine/reject, 3 tempfail, 2 usage or
configuration error.
"""

from __future__ import annotations

import importlib

import click

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
