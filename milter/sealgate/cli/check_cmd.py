"""``sealgate check``: evaluate one message exactly as the milter would (SPEC §7)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
from pathlib import Path

import click

from ..codes import Action
from ..errors import SealgateError
from ..model import Verdict
from ..spool import sealed_spool
from . import EXIT_ACCEPT, EXIT_FLAGGED, EXIT_TEMPFAIL, EXIT_USAGE, config_option, main

EXIT_FOR_ACTION = {
    Action.ACCEPT: EXIT_ACCEPT,
    Action.TAG: EXIT_FLAGGED,
    Action.QUARANTINE: EXIT_FLAGGED,
    Action.REJECT: EXIT_FLAGGED,
    Action.TEMPFAIL: EXIT_TEMPFAIL,
}


def _parse_at(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time (e.g. 2026-11-25T12:00:00Z)",
                                 param_hint="--at") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def format_verdict(verdict: Verdict) -> str:
    lines = [f"{verdict.action}: rule {verdict.rule or '(none)'}, direction {verdict.direction}, "
             f"structure {verdict.structure}, smime={verdict.auth_result}"]
    lines += [f"  violation {f.code}: {f.detail}" for f in verdict.violations]
    lines += [f"  signer {s.email or '(no certificate)'} serial {s.serial or '?'} "
              f"issuer {s.issuer}: {s.result}" for s in verdict.signers]
    for r in verdict.recipients:
        state = {True: "covered", False: "NOT covered", None: "not judged"}[r.covered]
        lines.append(f"  recipient {r.address}: {state}")
    return "\n".join(lines)


@main.command("check")
@config_option
@click.option("--from", "sender", metavar="ADDRESS",
              help="Envelope sender (default: the From: header).")
@click.option("--to", "recipients", multiple=True, metavar="ADDRESS",
              help="Envelope recipient, repeatable (default: To: and Cc:).")
@click.option("--at", "at", metavar="ISO-TIME", help="Verify as of this time (default: now).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.argument("message", type=click.Path(allow_dash=True, dir_okay=False))
def check(config_path: str, sender: str | None, recipients: tuple[str, ...], at: str | None,
          as_json: bool, message: str) -> None:
    """Evaluate MESSAGE (a file, or - for stdin) as the milter would.

    Exit status: 0 accept, 1 tag/quarantine/reject, 3 tempfail, 2 usage or
    configuration error.
    """
    from ..engine import load_gateway  # heavy imports only when the command runs

    moment = _parse_at(at)
    try:
        gateway = load_gateway(Path(config_path))
    except SealgateError as exc:
        click.echo(f"sealgate: {exc}", err=True)
        sys.exit(EXIT_USAGE)

    try:
        with _open_message(message) as source:
            verdict = gateway.evaluate(source, at=moment, sender=sender,
                                       recipients=tuple(recipients) or None)
    except OSError as exc:
        click.echo(f"sealgate: cannot read {message}: {exc.strerror or exc}", err=True)
        sys.exit(EXIT_USAGE)
    except SealgateError as exc:  # directory / CRL failure outside a verdict
        click.echo(f"sealgate: {exc}", err=True)
        sys.exit(EXIT_TEMPFAIL)

    if as_json:
        click.echo(json.dumps(verdict.as_dict()))
    else:
        click.echo(format_verdict(verdict))
    sys.exit(EXIT_FOR_ACTION[verdict.action])


def _open_message(name: str):
    if name != "-":
        return open(name, "rb")  # noqa: SIM115 - closed by the caller's with
    spool = sealed_spool(1 << 20)
    shutil.copyfileobj(sys.stdin.buffer, spool, 1 << 20)
    spool.seek(0)
    return spool
