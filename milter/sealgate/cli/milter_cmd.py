"""``sealgate milter``: run the Postfix milter in the foreground (SPEC §7).

Logs go to stderr (one line per message: key=value, or JSON with
``--log-format json``). SIGTERM stops accepting connections, lets the
messages in flight finish, and exits 0. SIGHUP reloads the configuration
file, the policy, the trust anchors, the CRLs and the directory settings; a
configuration that does not load is refused and the running one kept.
Metrics and ``/healthz`` are served on ``[metrics] listen``. With
``[milter] workers`` above 1, this process supervises that many milter
processes on the one socket (:mod:`sealgate.workers`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..errors import SealgateError
from . import EXIT_USAGE, config_option, main


@main.command("milter")
@config_option
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]),
              help="Least severe log level written to stderr.")
@click.option("--log-format", default="text", show_default=True,
              type=click.Choice(["text", "json"]),
              help="text: key=value lines; json: one JSON object per line.")
def milter(config_path: str, log_level: str, log_format: str) -> None:
    """Run the milter until SIGTERM (foreground, logs to stderr; SIGHUP reloads)."""
    from ..engine import load_gateway  # heavy imports only when the command runs
    from ..logging_setup import setup
    from ..metrics import Metrics
    from ..milter_app import run
    from ..quarantine import open_store

    setup(log_level, log_format)
    path = Path(config_path)
    try:
        gateway = load_gateway(path)
        store = open_store(gateway.config.quarantine)
    except SealgateError as exc:
        click.echo(f"sealgate: {exc}", err=True)
        sys.exit(EXIT_USAGE)
    settings = gateway.config.milter
    try:
        if settings.workers > 1:  # several processes on one socket (sealgate.workers)
            from ..workers import run_workers
            run_workers(gateway, lambda: load_gateway(path), settings.workers, store=store,
                        metrics_listen=gateway.config.metrics.listen)
        else:
            run(gateway, settings.socket, settings.timeout, store=store, metrics=Metrics(),
                metrics_listen=gateway.config.metrics.listen, reload=lambda: load_gateway(path))
    except SealgateError as exc:
        click.echo(f"sealgate: {exc}", err=True)
        sys.exit(1)
