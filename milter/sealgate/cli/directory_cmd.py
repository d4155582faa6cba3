"""``sealgate directory lookup|publish`` (SPEC §7, §9): read or publish certificates and CRLs.

Thin: the lookups are the gateway's own directory (``engine.build_directory``,
so ``lookup`` sees exactly what the milter sees, SMIMEA included), and
publishing is :mod:`sealgate.directory.publish`.

Exit codes: 0 done (lookup: at least one certificate), 1 lookup found nothing
or publishing was refused, 2 usage or configuration error, 3 the directory did
not answer (try again).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import click
from asn1crypto import pem, x509

from ..certs import certificate_addresses, name_rfc4514, serial_hex
from ..config import Config, load_config
from ..errors import ConfigError, ConfigErrors, DirectoryUnavailable
from . import EXIT_FLAGGED, EXIT_TEMPFAIL, EXIT_USAGE, config_option, main


@main.group("directory")
def directory_group() -> None:
    """Read or publish certificates and CRLs in the directory."""


def _config(config_path: str) -> Config:
    try:
        return load_config(Path(config_path))
    except ConfigErrors as exc:
        for error in exc.errors:
            click.echo(str(error), err=True)
        sys.exit(EXIT_USAGE)


def _describe(cert: x509.Certificate) -> dict[str, object]:
    validity = cert["tbs_certificate"]["validity"]
    return {
        "serial": serial_hex(cert),
        "subject": name_rfc4514(cert.subject),
        "issuer": name_rfc4514(cert.issuer),
        "not_before": validity["not_before"].native.isoformat(),
        "not_after": validity["not_after"].native.isoformat(),
        "addresses": list(certificate_addresses(cert)),
        "sha256": cert.sha256.hex(),
    }


@directory_group.command("lookup")
@config_option
@click.argument("address")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of certificates.")
@click.option("--pem", "as_pem", is_flag=True, help="Print the certificates as PEM.")
def lookup(config_path: str, address: str, as_json: bool, as_pem: bool) -> None:
    """Print the certificates the directory publishes for ADDRESS.

    Exits 0 when there is at least one, 1 when there is none, 3 when the
    directory does not answer.
    """
    from ..engine import build_directory

    config = _config(config_path)
    try:
        directory = build_directory(config)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_USAGE)
    try:
        certs = directory.certificates_for(address)
    except DirectoryUnavailable as exc:
        click.echo(f"{address}: the directory did not answer: {exc}", err=True)
        sys.exit(EXIT_TEMPFAIL)
    finally:
        close = getattr(directory, "close", None)
        if callable(close):
            close()
    if as_json:
        click.echo(json.dumps([_describe(c) for c in certs], indent=2))
    elif as_pem:
        for cert in certs:
            click.echo(pem.armor("CERTIFICATE", cert.dump()).decode(), nl=False)
    else:
        for cert in certs:
            d = _describe(cert)
            click.echo(f"{address}: serial {d['serial']} subject {d['subject']} issuer "
                       f"{d['issuer']} valid {d['not_before']} to {d['not_after']}")
    if not certs:
        if not as_json:
            click.echo(f"{address}: no certificate published", err=True)
        sys.exit(EXIT_FLAGGED)


def _read_der(path: Path, kinds: tuple[str, ...], what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror or exc}") from None
    if not pem.detect(data):
        return data
    try:
        for kind, _headers, der in pem.unarmor(data, multiple=True):
            if kind in kinds:
                return bytes(der)
    except ValueError as exc:
        raise click.BadParameter(f"{path} is not valid PEM: {exc}") from None
    raise click.BadParameter(f"{path} holds no {what} PEM block")


@directory_group.command("publish")
@config_option
@click.option("--certificate", "certificate", type=click.Path(dir_okay=False, path_type=Path),
              help="A person's certificate (PEM or DER) to publish under its address.")
@click.option("--crl", "crl", type=click.Path(dir_okay=False, path_type=Path),
              help="A CA's CRL (PEM or DER) to publish.")
@click.option("--bind-dn", default=None,
              help="ldap: bind as this DN instead of directory.bind_dn (it needs write access).")
@click.option("--password-file", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help="ldap: file holding the password of --bind-dn.")
def publish(config_path: str, certificate: Path | None, crl: Path | None, bind_dn: str | None,
            password_file: Path | None) -> None:
    """Publish a certificate (--certificate) or a CRL (--crl) in the directory.

    Prints where it went. Exits 1 when it is refused (not a certificate, no
    entry for its address, a CRL the trust anchor did not sign), 3 when the
    directory does not answer.
    """
    from ..directory.publish import PublishError, publish_certificate, publish_crl

    if (certificate is None) == (crl is None):
        raise click.UsageError("give exactly one of --certificate FILE or --crl FILE")
    config = _config(config_path)
    if bind_dn is not None or password_file is not None:
        config = dataclasses.replace(config, directory=dataclasses.replace(
            config.directory, bind_dn=bind_dn if bind_dn is not None else config.directory.bind_dn,
            bind_password_file=password_file or config.directory.bind_password_file))
    try:
        if certificate is not None:
            where = publish_certificate(config, _read_der(certificate, ("CERTIFICATE",),
                                                          "CERTIFICATE"))
        else:
            assert crl is not None  # noqa: S101 -- checked above; for the type checker
            where = publish_crl(config, _read_der(crl, ("X509 CRL",), "X509 CRL"))
    except PublishError as exc:
        click.echo(f"not published: {exc}", err=True)
        sys.exit(EXIT_FLAGGED)
    except DirectoryUnavailable as exc:
        click.echo(f"not published: the directory did not answer: {exc}", err=True)
        sys.exit(EXIT_TEMPFAIL)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_USAGE)
    click.echo(f"published: {where}")
