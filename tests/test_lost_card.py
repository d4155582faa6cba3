"""The lost-card flow, end to end (issue #4 §7), with the real CLI, CA, SoftHSM cards and gateway.

revoke -> new CRL published -> the gateway says revoked-signer for the lost
card's signatures and recipient-revoked for mail encrypted to it -> the user is
enrolled on a new card -> mail flows again.
"""

from __future__ import annotations

import io

import pytest
from click.testing import CliRunner
from endpoint_fixtures import Site, endpoint_site_fixture, softhsm_fixture  # noqa: F401 - fixtures
from seal_helpers import plain_message, seal_as

from sealgate.cli import main
from sealgate.endpoint.cmsbuild import signed_data
from sealgate.endpoint.errors import EndpointError
from sealgate.endpoint.mimewrap import multipart_signed, with_headers
from sealgate.endpoint.open import open_message
from sealgate.model import Envelope


def _codes(site: Site, raw: bytes, sender: str, recipients: list[str]) -> tuple[str, list[str]]:
    verdict = site.gateway().evaluate(io.BytesIO(raw), Envelope(sender, tuple(recipients)))
    return str(verdict.action), verdict.codes


def test_lost_card_revoked_then_reenrolled_mail_flows_again(endpoint_site: Site,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    site = endpoint_site
    alice = site.enrol("alice")
    bob = site.enrol("bob")
    to_alice, _ = seal_as(site, bob, plain_message(bob.email, [alice.email]))
    from_alice, _ = seal_as(site, alice, plain_message(alice.email, [bob.email]))
    assert _codes(site, to_alice.message, bob.email, [alice.email]) == ("accept", [])
    assert _codes(site, from_alice.message, alice.email, [bob.email]) == ("accept", [])

    # Alice reports her card lost: the CA revokes it and publishes the new CRL.
    runner = CliRunner()
    result = runner.invoke(main, ["ca", "revoke", str(site.ca.folder), "--email", alice.email,
                                  "--reason", "key_compromise", "--config", str(site.config_path)])
    assert result.exit_code == 0, result.output
    assert f"revoked serial {alice.serial_hex} (key_compromise)" in result.output

    # Whoever holds the card can still sign, but the gateway no longer believes it ...
    with site.card(alice) as card:
        entity = b"Content-Type: text/plain\r\n\r\nPlease wire the money.\r\n"
        signed = multipart_signed(entity, signed_data(entity, card.key()), "sha256")
    thief = with_headers(f"From: {alice.email}\r\nTo: {bob.email}\r\nSubject: x\r\n".encode(), signed)
    action, codes = _codes(site, thief, alice.email, [bob.email])
    assert "revoked-signer" in codes and action != "accept"
    # (seal itself refuses: the sender's copy would be encrypted to the revoked certificate)
    with pytest.raises(EndpointError, match="cannot encrypt to alice@example.com"):
        seal_as(site, alice, plain_message(alice.email, [bob.email]))
    action, codes = _codes(site, from_alice.message, alice.email, [bob.email])
    assert "revoked-signer" in codes
    # ... and mail that the lost card could read is flagged.
    action, codes = _codes(site, to_alice.message, bob.email, [alice.email])
    assert "recipient-revoked" in codes and action != "accept"
    # New mail is no longer encrypted to the lost card: seal refuses, saying why.
    with pytest.raises(EndpointError, match="cannot encrypt to alice@example.com: none of its 1 "
                                            "published certificate"):
        seal_as(site, bob, plain_message(bob.email, [alice.email]))

    # Alice gets a new card: key made on it, certificate issued, written back, published.
    new_token = site.new_token("8080")
    monkeypatch.setenv("NEW_CARD_PIN", "8080")
    result = runner.invoke(main, ["card", "enroll", "--config", str(site.config_path), "--token", new_token,
                                  "--pin-env", "NEW_CARD_PIN", "--email", alice.email, "--name", "Alice",
                                  "--ca", str(site.ca.folder)])
    assert result.exit_code == 0, result.output
    new_alice = type(alice)(alice.email, new_token, "8080", alice.cert, alice.cert_path)

    to_new, _ = seal_as(site, bob, plain_message(bob.email, [alice.email]))
    assert to_new.encrypted_to[alice.email] != [alice.serial_hex]  # only the new certificate
    assert _codes(site, to_new.message, bob.email, [alice.email]) == ("accept", [])
    from_new, _ = seal_as(site, new_alice, plain_message(alice.email, [bob.email]))
    assert _codes(site, from_new.message, alice.email, [bob.email]) == ("accept", [])
    with site.card(new_alice) as card:
        assert open_message(to_new.message, card.key(), site.gateway()).verified
    with site.card(alice) as card, pytest.raises(EndpointError, match="not encrypted to this certificate"):
        open_message(to_new.message, card.key(), site.gateway())
