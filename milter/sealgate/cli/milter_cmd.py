"""``sealgate milter``: run the Postfix milter in the foreground (SPEC §7).

Logs go to stderr (one key=value line per message); SIGTERM stops accepting
connections, lets the messages in flight finish, and exits 0.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from ..errors import SealgateError
from . import EXIT_USAGE, config_option, main

LOG_FORMAT = "%(asctime)s sealgate[%(process)d] %(levelname)s %(name)s: %(message)s"


@main.command("milter")
@config_option
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]),
              help="Least severe log level written to stderr.")
def milter(config_path: str, log_level: str) -> None:
    """Run the milter until SIGTERM (foreground, logs to stderr)."""
    from ..engine import load_gateway  # heavy imports only when the command runs
    from ..milter_app import run
    from ..quarantine import open_store

    logging.basicConfig(stream=sys.stderr, level=log_level.upper(), format=LOG_FORMAT)
    try:
        gateway = load_gateway(Path(config_path))
        store = open_store(gateway.config.quarantine)
    except SealgateError as exc:
        click.echo(f"sealgate: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    settings = gateway.config.milter
    try:
        run(gateway, settings.socket, settings.timeout, store=store)
    except SealgateError as exc:
        click.echo(f"sealgate: {exc}", err=True)
        sys.exit(1)
