"""``sealgate card init|enroll|list|status|unblock``: issuing cards (SPEC §7).

Enrolment: the key pair is generated ON the card (sensitive, never
extractable), the request is signed BY the card, the CA issues the
certificate, it is written back to the card and published to the directory
(``--config``: the directory of that configuration). No private key ever
exists outside the card, so this program keeps no copy of one.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from cryptography.hazmat.primitives import serialization

from . import F, main
from .endpoint_common import (
    card_options,
    card_settings,
    errors_to_exit,
    fail,
    load_config_optional,
    open_card,
)


@main.group("card")
def card() -> None:
    """Smart cards (PKCS#11 tokens): initialise, enrol, inspect, unblock."""


def _so_pin(so_pin_file: str | None, so_pin_env: str | None, token: str) -> str:
    from ..endpoint.pin import read_pin

    return read_pin(pin_file=so_pin_file, pin_env=so_pin_env, what="security officer PIN",
                    prompt=f"Security officer PIN for card {token}: ")


def _new_pin(pin_file: str | None, pin_env: str | None, token: str) -> str:
    from ..endpoint.pin import read_pin

    return read_pin(pin_file=pin_file, pin_env=pin_env, what="new user PIN",
                    prompt=f"New user PIN for card {token}: ")


so_pin_options = [
    click.option("--so-pin-file", type=click.Path(dir_okay=False), default=None,
                 help="Read the security officer PIN from this file (mode 600)."),
    click.option("--so-pin-env", metavar="VARIABLE", default=None,
                 help="Read the security officer PIN from this environment variable."),
]


def _with_so_pin(func):  # noqa: ANN001, ANN202 - click decorator plumbing
    for decorator in reversed(so_pin_options):
        func = decorator(func)
    return func


@card.command("init")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Configuration with a [card] section (optional).")
@card_options
@_with_so_pin
@errors_to_exit
def init(config_path: str | None, module: str | None, token: str | None, key_label: str | None,
         pin_file: str | None, pin_env: str | None, so_pin_file: str | None,
         so_pin_env: str | None) -> None:
    """Initialise a blank card: label it --token, set the SO PIN and the user PIN.

    This ERASES the card. --pin-file/--pin-env give the new user PIN.
    """
    from ..endpoint.card import init_token

    module, token, _ = card_settings(load_config_optional(config_path), module, token, key_label)
    so_pin = _so_pin(so_pin_file, so_pin_env, token)
    user_pin = _new_pin(pin_file, pin_env, token)
    init_token(module, token, so_pin, user_pin)
    click.echo(f"card {token} initialised")


def holder_options(func: F) -> F:
    """--email, --name, --key-type: who the key pair on the card is for, and its kind."""
    for option in reversed([
        click.option("--email", required=True, metavar="ADDRESS", help="The card holder's mail address."),
        click.option("--name", "common_name", required=True, help="The card holder's name (subject CN)."),
        click.option("--key-type", type=click.Choice(["rsa2048", "rsa3072", "ec256"]), default="rsa2048",
                     show_default=True, help="Key pair generated on the card."),
    ]):
        func = option(func)
    return func


@card.command("enroll")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Publish the certificate to this configuration's directory.")
@card_options
@holder_options
@click.option("--ca", "ca_folder", required=True, type=click.Path(file_okay=False, exists=True),
              help="CA folder (sealgate ca init) that issues the certificate.")
@click.option("--ca-pin-file", type=click.Path(dir_okay=False), default=None,
              help="PIN of the CA's token, when the CA key is on one.")
@click.option("--ca-pin-env", metavar="VARIABLE", default=None)
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Also write the certificate (PEM) here.")
@errors_to_exit
def enroll(config_path: str | None, module: str | None, token: str | None, key_label: str | None,
           pin_file: str | None, pin_env: str | None, email: str, common_name: str, key_type: str,
           ca_folder: str, ca_pin_file: str | None, ca_pin_env: str | None,
           output: str | None) -> None:
    """Generate a key pair on the card, have the CA certify it, store and publish the certificate."""
    from ..endpoint.enrol import enrol
    from .ca_cmd import open_ca

    config = load_config_optional(config_path)
    ca = open_ca(Path(ca_folder), ca_pin_file, ca_pin_env)
    with open_card(config, module, token, key_label, pin_file, pin_env) as c:
        cert = enrol(c, ca, email, common_name, key_type)
    der = cert.public_bytes(serialization.Encoding.DER)
    click.echo(f"card {c.label}: {key_type} key generated on the card, certificate serial "
               f"{cert.serial_number:x} for {email} written to the card")
    if output:
        Path(output).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if config is not None:
        from ..directory.publish import publish_certificate
        from ..errors import SealgateError

        try:
            click.echo(publish_certificate(config, der))
        except SealgateError as exc:
            # The card is enrolled; only publishing failed: say how to finish, do not undo.
            kept = output or str(Path(ca_folder) / "issued" / f"{cert.serial_number:x}.pem")
            fail(f"the certificate is on the card but was not published: {exc}; publish it with "
                 f"sealgate directory publish --config {config_path} --certificate {kept}")


@card.command("list")
@click.option("--module", metavar="PATH", default=None, help="PKCS#11 module.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None)
@click.option("--json", "as_json", is_flag=True, help="One JSON array.")
@errors_to_exit
def list_(module: str | None, config_path: str | None, as_json: bool) -> None:
    """The cards (tokens) the module sees, by label."""
    from ..endpoint.card import list_tokens

    module, _, _ = card_settings(load_config_optional(config_path), module, "-", None)
    tokens = list_tokens(module)
    if as_json:
        click.echo(json.dumps(tokens))
        return
    for t in tokens:
        state = "initialised" if t["initialized"] else "blank"
        click.echo(f"{t['label'] or '(no label)'}\t{state}")


@card.command("status")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None)
@click.option("--module", metavar="PATH", default=None, help="PKCS#11 module.")
@click.option("--token", metavar="LABEL", default=None, help="Card label.")
@click.option("--key-label", metavar="LABEL", default=None, help="Label of the certificate on the card.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@errors_to_exit
def status(config_path: str | None, module: str | None, token: str | None, key_label: str | None,
           as_json: bool) -> None:
    """PIN state (count low, final try, locked) and the stored certificate, without logging in."""
    from ..endpoint.card import token_status

    module, token, key_label = card_settings(load_config_optional(config_path), module, token, key_label)
    info = token_status(module, token, key_label)
    if as_json:
        click.echo(json.dumps(info))
        return
    for key, value in info.items():
        if isinstance(value, dict):
            click.echo(f"{key}:")
            for sub, item in value.items():
                click.echo(f"  {sub}: {', '.join(item) if isinstance(item, list) else item}")
        else:
            click.echo(f"{key}: {'none' if value is None else value}")


@card.command("unblock")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None)
@card_options
@_with_so_pin
@errors_to_exit
def unblock(config_path: str | None, module: str | None, token: str | None, key_label: str | None,
            pin_file: str | None, pin_env: str | None, so_pin_file: str | None,
            so_pin_env: str | None) -> None:
    """Set a new user PIN with the security officer PIN (clears a locked PIN)."""
    from ..endpoint.card import unblock as do_unblock

    module, token, _ = card_settings(load_config_optional(config_path), module, token, key_label)
    so_pin = _so_pin(so_pin_file, so_pin_env, token)
    do_unblock(module, token, so_pin, _new_pin(pin_file, pin_env, token))
    click.echo(f"card {token}: new user PIN set")


@card.command("request")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Configuration with a [card] section (optional).")
@card_options
@holder_options
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), default="-",
              help="Write the request (PEM) here (default: standard output).")
@errors_to_exit
def request(config_path: str | None, module: str | None, token: str | None, key_label: str | None,
            pin_file: str | None, pin_env: str | None, email: str, common_name: str, key_type: str,
            output: str) -> None:
    """Enrolment with a CA elsewhere, step 1: key pair on the card, PKCS #10 request signed by it.

    Give the request to the CA (sealgate ca issue --csr), then store the certificate with
    sealgate card store.
    """
    from asn1crypto import pem

    from ..endpoint.enrol import request as make_request
    from .endpoint_common import write_output

    with open_card(load_config_optional(config_path), module, token, key_label, pin_file, pin_env) as c:
        der = make_request(c, email, common_name, key_type)
    write_output(output, pem.armor("CERTIFICATE REQUEST", der))


@card.command("store")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Also publish the certificate to this configuration's directory.")
@card_options
@click.option("--certificate", "cert_path", required=True, type=click.Path(dir_okay=False, exists=True),
              help="The issued certificate (PEM or DER).")
@click.option("--chain", "chain_path", type=click.Path(dir_okay=False, exists=True), default=None,
              help="PEM file of the CA certificates between it and the root, to send with signatures.")
@errors_to_exit
def store(config_path: str | None, module: str | None, token: str | None, key_label: str | None,
          pin_file: str | None, pin_env: str | None, cert_path: str, chain_path: str | None) -> None:
    """Enrolment with a CA elsewhere, step 2: write the issued certificate next to the card's key.

    Refused when the certificate is not for the key on the card.
    """
    from asn1crypto import pem

    from ..endpoint.enrol import store as store_certificate

    data = Path(cert_path).read_bytes()
    der = pem.unarmor(data)[2] if pem.detect(data) else data
    chain = ([d for kind, _h, d in pem.unarmor(Path(chain_path).read_bytes(), multiple=True)
              if kind == "CERTIFICATE"] if chain_path else [])
    config = load_config_optional(config_path)
    with open_card(config, module, token, key_label, pin_file, pin_env) as c:
        cert = store_certificate(c, der, chain)
    click.echo(f"card {c.label}: certificate serial {cert.serial_number:x} stored")
    if config is not None:
        from ..directory.publish import publish_certificate

        click.echo(publish_certificate(config, der))
