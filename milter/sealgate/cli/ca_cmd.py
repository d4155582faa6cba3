"""``sealgate ca init|issue|revoke|crl``: the enterprise CA (SPEC §7).

The CA lives in a folder (files 0600); its key is a file there, or on a
PKCS#11 token (``ca init --token``). ``revoke`` and ``crl`` write ``ca.crl``
and, with ``--config``, publish it through the directory (files or LDAP) so
the gateway picks it up at its next ``crl_refresh``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from cryptography.hazmat.primitives import serialization

from . import main
from .endpoint_common import errors_to_exit, fail, load_config_optional


@main.group("ca")
def ca() -> None:
    """The enterprise CA: init, issue from a request, revoke (lost card), CRL."""


def open_ca(folder: Path, pin_file: str | None, pin_env: str | None) -> Any:
    """Load the CA in ``folder``; a token-held key asks for its PIN (never argv)."""
    from ..endpoint.ca import load_ca
    from ..endpoint.card import Card
    from ..endpoint.pin import read_pin

    def token_signer(state: dict[str, str]) -> Any:
        pin = read_pin(pin_file=pin_file, pin_env=pin_env, what="CA token PIN",
                       prompt=f"PIN for CA token {state['token_label']}: ")
        card = Card(state["module"], state["token_label"], pin, key_label=state["key_label"])
        click.get_current_context().call_on_close(card.close)  # logout when done
        return card.sign_digest

    return load_ca(folder, token_signer)


def _publish_crl(config_path: str | None, crl_der: bytes) -> None:
    if config_path is None:
        return
    from ..directory.publish import publish_crl

    click.echo(publish_crl(load_config_optional(config_path), crl_der))


config_publish = click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                              help="Publish to this configuration's directory / CRL files.")


@ca.command("init")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--name", "common_name", required=True, help="CA name (subject CN).")
@click.option("--org", "organization", default=None, help="Organisation (subject O).")
@click.option("--key-type", type=click.Choice(["rsa2048", "rsa3072", "rsa4096", "ec256", "ec384"]),
              default="rsa3072", show_default=True)
@click.option("--days", type=click.IntRange(1, 36500), default=3650, show_default=True,
              help="CA certificate lifetime.")
@click.option("--user-days", type=click.IntRange(1, 3650), default=730, show_default=True,
              help="Lifetime of issued user certificates.")
@click.option("--crl-days", type=click.IntRange(1, 365), default=7, show_default=True,
              help="CRL validity (nextUpdate = thisUpdate + this).")
@click.option("--crl-url", default=None, metavar="URL",
              help="CRL distribution point written into issued certificates.")
@click.option("--parent", type=click.Path(file_okay=False, exists=True), default=None,
              help="Parent CA folder: make an intermediate CA under it.")
@click.option("--parent-pin-file", type=click.Path(dir_okay=False), default=None)
@click.option("--parent-pin-env", metavar="VARIABLE", default=None)
@click.option("--module", metavar="PATH", default=None,
              help="Keep the CA key on this PKCS#11 module's token (with --token).")
@click.option("--token", metavar="LABEL", default=None, help="Token label for the CA key.")
@click.option("--pin-file", type=click.Path(dir_okay=False), default=None, help="Token PIN file.")
@click.option("--pin-env", metavar="VARIABLE", default=None, help="Token PIN variable.")
@errors_to_exit
def init(folder: str, common_name: str, organization: str | None, key_type: str, days: int,
         user_days: int, crl_days: int, crl_url: str | None, parent: str | None,
         parent_pin_file: str | None, parent_pin_env: str | None, module: str | None,
         token: str | None, pin_file: str | None, pin_env: str | None) -> None:
    """Create a root CA (or with --parent an intermediate) in FOLDER, with its first CRL."""
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    from ..endpoint.ca import init_ca
    from ..endpoint.card import Card
    from ..endpoint.pin import read_pin

    parent_ca = open_ca(Path(parent), parent_pin_file, parent_pin_env) if parent else None
    token_key = None
    if (module is None) != (token is None):
        fail("--module and --token go together (a CA key on a token)")
    if module and token:
        if key_type not in ("rsa2048", "rsa3072", "ec256"):
            fail(f"--key-type {key_type} cannot be generated on a token (rsa2048, rsa3072, ec256)")
        pin = read_pin(pin_file=pin_file, pin_env=pin_env, what="CA token PIN",
                       prompt=f"PIN for CA token {token}: ")
        card = Card(module, token, pin, key_label="sealgate-ca")
        click.get_current_context().call_on_close(card.close)  # logout when done
        public = load_der_public_key(card.generate_key(key_type).dump())
        state = {"storage": "pkcs11", "module": module, "token_label": token, "key_label": "sealgate-ca"}
        token_key = (state, public, card.sign_digest)
    ca_obj = init_ca(Path(folder), common_name, organization=organization, key_kind=key_type,
                     days=days, user_days=user_days, crl_days=crl_days, crl_url=crl_url,
                     parent=parent_ca, token_key=token_key)
    click.echo(f"CA {common_name} created in {folder} (certificate {folder}/ca.pem, CRL {ca_obj.crl_path})")


@ca.command("issue")
@click.argument("folder", type=click.Path(file_okay=False, exists=True))
@click.option("--csr", "csr_path", required=True, type=click.Path(dir_okay=False, exists=True),
              help="PKCS #10 request (DER or PEM), e.g. signed by a card.")
@click.option("--email", default=None, help="Address to certify (default: the request's rfc822Name).")
@click.option("--days", type=click.IntRange(1, 3650), default=None, help="Lifetime (default: CA's).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Write the certificate (PEM) here (default: standard output).")
@click.option("--pin-file", type=click.Path(dir_okay=False), default=None, help="CA token PIN file.")
@click.option("--pin-env", metavar="VARIABLE", default=None, help="CA token PIN variable.")
@config_publish
@errors_to_exit
def issue(folder: str, csr_path: str, email: str | None, days: int | None, output: str | None,
          pin_file: str | None, pin_env: str | None, config_path: str | None) -> None:
    """Issue an S/MIME certificate from a request; --config also publishes it."""
    ca_obj = open_ca(Path(folder), pin_file, pin_env)
    cert = ca_obj.issue(Path(csr_path).read_bytes(), email=email, days=days)
    pem_bytes = cert.public_bytes(serialization.Encoding.PEM)
    if output:
        Path(output).write_bytes(pem_bytes)
    else:
        click.echo(pem_bytes.decode(), nl=False)
    if config_path:
        from ..directory.publish import publish_certificate

        click.echo(publish_certificate(load_config_optional(config_path),
                                       cert.public_bytes(serialization.Encoding.DER)), err=True)


@ca.command("revoke")
@click.argument("folder", type=click.Path(file_okay=False, exists=True))
@click.option("--serial", default=None, metavar="HEX", help="Serial number of the certificate.")
@click.option("--email", default=None, metavar="ADDRESS",
              help="Revoke every unrevoked certificate this CA issued for this address.")
@click.option("--reason", default="key_compromise", show_default=True,
              help="RFC 5280 reason: key_compromise (lost card), affiliation_changed, superseded, "
                   "cessation_of_operation, ...")
@click.option("--pin-file", type=click.Path(dir_okay=False), default=None, help="CA token PIN file.")
@click.option("--pin-env", metavar="VARIABLE", default=None, help="CA token PIN variable.")
@config_publish
@errors_to_exit
def revoke(folder: str, serial: str | None, email: str | None, reason: str, pin_file: str | None,
           pin_env: str | None, config_path: str | None) -> None:
    """Revoke a certificate and write (and with --config publish) the new CRL."""
    from ..addresses import normalize_address

    if (serial is None) == (email is None):
        fail("give exactly one of --serial or --email")
    ca_obj = open_ca(Path(folder), pin_file, pin_env)
    if serial is not None:
        try:
            serials = [int(serial, 16)]
        except ValueError:
            fail(f"--serial {serial!r} is not hexadecimal")
            return
    else:
        from cryptography import x509

        done = {int(r["serial"], 16) for r in ca_obj.state.get("revoked", [])}
        target = normalize_address(email or "")
        serials = []
        for cert in ca_obj.issued():
            try:
                san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            except x509.ExtensionNotFound:
                continue
            if target in {normalize_address(a) for a in san.value.get_values_for_type(x509.RFC822Name)} \
                    and cert.serial_number not in done:
                serials.append(cert.serial_number)
        if not serials:
            fail(f"this CA has no unrevoked certificate for {email}")
    crl = None
    for number in serials:
        crl = ca_obj.revoke(number, reason)
        click.echo(f"revoked serial {number:x} ({reason})")
    assert crl is not None  # noqa: S101 - serials is not empty here
    _publish_crl(config_path, crl.public_bytes(serialization.Encoding.DER))


@ca.command("crl")
@click.argument("folder", type=click.Path(file_okay=False, exists=True))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Also write the CRL (DER) here.")
@click.option("--pin-file", type=click.Path(dir_okay=False), default=None, help="CA token PIN file.")
@click.option("--pin-env", metavar="VARIABLE", default=None, help="CA token PIN variable.")
@config_publish
@errors_to_exit
def crl(folder: str, output: str | None, pin_file: str | None, pin_env: str | None,
        config_path: str | None) -> None:
    """Sign a fresh CRL (run it well before nextUpdate, e.g. daily from cron) and publish it."""
    ca_obj = open_ca(Path(folder), pin_file, pin_env)
    new = ca_obj.make_crl()
    der = new.public_bytes(serialization.Encoding.DER)
    if output:
        Path(output).write_bytes(der)
    click.echo(f"CRL number {ca_obj.state['crl_number']} written to {ca_obj.crl_path}, "
               f"next update {new.next_update_utc:%Y-%m-%d %H:%M} UTC")
    _publish_crl(config_path, der)
