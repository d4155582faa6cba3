"""``sealgate config check`` and ``sealgate config defaults`` (SPEC §7)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..config import default_config_text, describe, load_config
from ..errors import ConfigError, ConfigErrors
from ..policy import load_policy
from . import EXIT_USAGE, config_option, main


@main.group("config")
def config_group() -> None:
    """Validate the configuration, or print its defaults."""


def _warn(warning: ConfigError) -> None:
    where = f"{warning.file}: {warning.key}: " if warning.key else f"{warning.file}: "
    click.echo(f"{where}warning: {warning.message}", err=True)


@config_group.command("check")
@config_option
def check(config_path: str) -> None:
    """Validate the configuration file and the policy it names.

    Prints every error as FILE: KEY: message on standard error and exits 2;
    otherwise prints one summary line (warnings, if any, on standard error)
    and exits 0.
    """
    try:
        config = load_config(Path(config_path))
        policy = load_policy(config.policy.file)
    except ConfigErrors as exc:
        for error in exc.errors:
            click.echo(str(error), err=True)
        sys.exit(EXIT_USAGE)

    for warning in config.warnings:
        _warn(warning)
    for direction in policy.uncovered_directions():
        _warn(ConfigError(str(policy.source), "rules",
                          f"some {direction} mail can match no rule and is then accepted "
                          f"unchecked (add a last rule with direction = \"{direction}\" "
                          "and no senders/recipients)"))
    click.echo(f"{config_path}: ok: {describe(config)} "
               f"({len(policy.rules)} rules: {', '.join(r.name for r in policy.rules)})")


@config_group.command("defaults")
def defaults() -> None:
    """Print a configuration file with every key at its default, commented."""
    click.echo(default_config_text(), nl=False)
