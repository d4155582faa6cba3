"""``sealgate seal``, ``sealgate open``, ``sealgate sendmail`` (SPEC §7).

Exit status: 0 success (open: every signature verified); 1 open found a
signature that does not verify or none at all; 2 usage, configuration, card,
PIN or submission error.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ..endpoint.errors import SubmitTemporary
from . import config_option, exit_on_errors, main
from .endpoint_common import (
    EXIT_FAILED,
    card_options,
    errors_to_exit,
    open_card,
    read_input,
    write_output,
)

EX_TEMPFAIL = 75  # sysexits.h: sendmail's "try again later"

cipher_option = click.option("--cipher", type=click.Choice(["aes256-gcm", "aes256-cbc"]),
                             default="aes256-gcm", show_default=True,
                             help="aes256-gcm: authEnveloped-data (RFC 5083); aes256-cbc: enveloped-data.")
transport_option = click.option(
    "--key-transport", type=click.Choice(["pkcs1v15", "oaep"]), default="pkcs1v15", show_default=True,
    help="RSA recipients: PKCS#1 v1.5, or RSA-OAEP with SHA-1 (what cards decrypt). "
         "EC recipients always get ECDH (RFC 5753).")
submit_option = click.option("--submit", "submit_url", metavar="URL", envvar="SEALGATE_SUBMIT",
                             help="Send over SMTP instead of printing: smtp://HOST:PORT "
                                  "(STARTTLS when offered), smtps://HOST:PORT.")
submit_ca_option = click.option("--submit-ca", type=click.Path(dir_okay=False), default=None,
                                help="PEM CA file to verify the SMTP server's TLS certificate.")


def _gateway(config_path: str) -> Any:
    from ..engine import load_gateway

    return load_gateway(Path(config_path))


def _seal(config_path: str, raw: bytes, sender: str | None, recipients: list[str] | None,
          cipher: str, key_transport: str, card_args: dict[str, Any]) -> Any:
    from ..endpoint.seal import SealOptions, seal_message

    gateway = _gateway(config_path)
    with open_card(gateway.config, **card_args) as card:
        return seal_message(raw, card.key(), gateway.directory, gateway.current_trust(),
                            sender=sender, recipients=recipients,
                            options=SealOptions(cipher=cipher, key_transport=key_transport))


def _deliver(sealed: Any, submit_url: str | None, submit_ca: str | None, output: str | None) -> None:
    from ..endpoint.submit import submit

    if submit_url:
        submit(submit_url, sealed.message, sealed.sender, sealed.recipients,
               ca_file=Path(submit_ca) if submit_ca else None)
    else:
        write_output(output, sealed.message)


@main.command("seal")
@config_option
@card_options
@cipher_option
@transport_option
@click.option("--from", "sender", metavar="ADDRESS", help="Sender (default: the From: header).")
@click.option("--to", "recipients", multiple=True, metavar="ADDRESS",
              help="Recipient, repeatable (default: To, Cc and Bcc).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Write the sealed message here (default: standard output).")
@submit_option
@submit_ca_option
@click.argument("message", type=click.Path(allow_dash=True, dir_okay=False), default="-")
@errors_to_exit
def seal(config_path: str, module: str | None, token: str | None, key_label: str | None,
         pin_file: str | None, pin_env: str | None, cipher: str, key_transport: str,
         sender: str | None, recipients: tuple[str, ...], output: str | None,
         submit_url: str | None, submit_ca: str | None, message: str) -> None:
    """Sign on the card, encrypt to the directory certificates of every recipient and
    the sender, sign again (RFC 2634 triple wrap): two card operations per message."""
    card_args = {"module": module, "token": token, "key_label": key_label,
                 "pin_file": pin_file, "pin_env": pin_env}
    sealed = _seal(config_path, read_input(message), sender, list(recipients) or None, cipher,
                   key_transport, card_args)
    _deliver(sealed, submit_url, submit_ca, output)


@main.command("open")
@config_option
@card_options
@click.option("--json", "as_json", is_flag=True,
              help="Print the verification as one JSON object on standard output; the clear "
                   "message then goes to -o only.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Write the clear message here (default: standard output).")
@click.argument("message", type=click.Path(allow_dash=True, dir_okay=False), default="-")
@errors_to_exit
def open_(config_path: str, module: str | None, token: str | None, key_label: str | None,
          pin_file: str | None, pin_env: str | None, as_json: bool, output: str | None,
          message: str) -> None:
    """Decrypt MESSAGE on the card and verify every signature (anchors, CRLs, directory).

    The verification goes to standard error (or, with --json, standard output);
    the clear message to -o or standard output.
    """
    from ..endpoint.open import open_message

    raw = read_input(message)
    gateway = _gateway(config_path)
    with open_card(gateway.config, module, token, key_label, pin_file, pin_env) as card:
        opened = open_message(raw, card.key(), gateway)
    if as_json:
        click.echo(json.dumps(opened.as_dict()))
        if output:
            write_output(output, opened.message)
    else:
        for stage in opened.stages:
            for s in stage.signers:
                depth = "outside the encryption" if stage.after_decryptions == 0 else "inside the encryption"
                click.echo(f"signature {depth}: {s.email or '(no certificate)'} serial {s.serial}: "
                           f"{s.result}", err=True)
        click.echo("verified" if opened.verified else "NOT verified", err=True)
        write_output(output, opened.message)
    sys.exit(0 if opened.verified else EXIT_FAILED)


@main.command("sendmail", context_settings={"ignore_unknown_options": True,
                                             "allow_interspersed_args": False})
@config_option
@card_options
@cipher_option
@transport_option
@submit_option
@submit_ca_option
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@exit_on_errors((SubmitTemporary, EX_TEMPFAIL))
def sendmail(config_path: str, module: str | None, token: str | None, key_label: str | None,
             pin_file: str | None, pin_env: str | None, cipher: str, key_transport: str,
             submit_url: str | None, submit_ca: str | None, args: tuple[str, ...]) -> None:
    """A sendmail(8) stand-in for mail clients: seal standard input and submit it.

    sealgate's own options come first; then sendmail's: -t (recipients from
    To/Cc/Bcc, plus arguments), -f ADDRESS, -i/-oi, recipients. Example for
    mutt: set sendmail="sealgate sendmail --pin-env CARD_PIN --submit smtp://mail:25"

    Exit status as sendmail's (sysexits.h): 0 sent; 75 (EX_TEMPFAIL) when the
    server is unreachable or answers 4xx, so the mail client keeps the message
    and may try again; 2 for anything to fix first (card, PIN, certificates).
    """
    from ..endpoint.mimewrap import split_message
    from ..endpoint.sendmail import envelope_recipients, parse_args
    from ..engine import header_addresses

    parsed = parse_args(list(args))
    raw = sys.stdin.buffer.read()
    split = split_message(raw)
    recipients = envelope_recipients(
        parsed, header_addresses(split.header("To") + split.header("Cc") + split.header("Bcc")))
    if not submit_url:
        raise click.UsageError("sendmail needs --submit smtp://HOST:PORT (or $SEALGATE_SUBMIT)")
    card_args = {"module": module, "token": token, "key_label": key_label,
                 "pin_file": pin_file, "pin_env": pin_env}
    sealed = _seal(config_path, raw, parsed.sender, recipients, cipher, key_transport, card_args)
    _deliver(sealed, submit_url, submit_ca, None)
