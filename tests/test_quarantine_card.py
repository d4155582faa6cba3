"""A reviewer's card (PKCS#11, SoftHSM2 here) opens entries encrypted at rest.

The key pair is made on the token and never leaves it; decryption goes
through the endpoint's CMS code (one key-transport operation on the card).
"""

from __future__ import annotations

import datetime as dt
import io
import secrets
from pathlib import Path

import endpoint_fixtures as ef
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from gateway_helpers import write_config
from quarantine_fixtures import ENVELOPE, VERDICT

from sealgate.cli import main
from sealgate.cli.quarantine_cmd import CardUnsealer
from sealgate.devpki import TestPKI
from sealgate.endpoint.card import Card
from sealgate.quarantine import Sealer, SqliteQuarantine, read_message

softhsm = ef.softhsm_fixture

SECRET = b"Subject: held on the card test\r\n\r\nCARD-MARKER-3b9f\r\n"
PIN = "4321"


@pytest.fixture
def reviewer_card(softhsm: ef.SoftHSM, pki: TestPKI, tmp_path: Path) -> tuple[str, Path]:
    """A token holding an RSA key made on it and the certificate our test CA issued for it."""
    label = f"reviewer-{secrets.token_hex(3)}"
    softhsm.init_token(label, PIN)
    with Card(softhsm.module, label, PIN) as card:
        public = serialization.load_der_public_key(card.generate_key("rsa2048").dump())
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Rita Reviewer")]))
                .issuer_name(pki.ca.cert.subject).public_key(public)  # type: ignore[arg-type]
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1))
                .not_valid_after(now + dt.timedelta(days=30))
                .sign(pki.ca.key, hashes.SHA256()))
        card.write_certificate(cert.public_bytes(serialization.Encoding.DER))
    path = tmp_path / "reviewer.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return label, path


def test_reviewer_card_decrypts_an_entry_encrypted_at_rest(
        softhsm: ef.SoftHSM, reviewer_card: tuple[str, Path], tmp_path: Path) -> None:
    label, cert_path = reviewer_card
    store = SqliteQuarantine(tmp_path / "q", sealer=Sealer.from_files([cert_path]))
    try:
        entry = store.get(store.put(io.BytesIO(SECRET), ENVELOPE, VERDICT))
        with Card(softhsm.module, label, PIN) as card:
            assert read_message(store, entry, CardUnsealer(card)) == SECRET
    finally:
        store.close()


def test_show_with_card_prints_the_body(softhsm: ef.SoftHSM, reviewer_card: tuple[str, Path],
                                        pki: TestPKI, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    label, cert_path = reviewer_card
    config = write_config(tmp_path / "site", pki)
    config.write_text(config.read_text().replace(
        "[quarantine]\n", f'[quarantine]\nencrypt_to = ["{cert_path}"]\n'))
    store = SqliteQuarantine(tmp_path / "site" / "quarantine", sealer=Sealer.from_files([cert_path]))
    entry_id = store.put(io.BytesIO(SECRET), ENVELOPE, VERDICT)
    store.close()
    monkeypatch.setenv("REVIEWER_PIN", PIN)
    result = CliRunner().invoke(main, [
        "quarantine", "show", entry_id, "--body", "--config", str(config), "--card",
        "--module", softhsm.module, "--token", label, "--pin-env", "REVIEWER_PIN"],
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "CARD-MARKER-3b9f" in result.output
    assert PIN not in result.output
