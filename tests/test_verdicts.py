"""One test per violation code of SPEC §3 that can arise with the files directory.

Every message here is made by ``openssl cms`` (sealgate.devmail), never by
sealgate itself; each test asserts the exact set of codes and the action
under the shipped strict policy.
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pytest
from gateway_helpers import evaluate, gateway_for

from sealgate import devmail as m
from sealgate.codes import Action, AuthResult
from sealgate.devpki import TestPKI, issue_user, write_crl
from sealgate.engine import Gateway
from sealgate.headers import authentication_results

UTC = dt.UTC
BODY = m.text_entity("Hi,\r\n\r\nsee attached.\r\n")


@pytest.fixture(scope="module")
def gw(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Gateway:
    return gateway_for(tmp_path_factory.mktemp("gw"), pki)


@pytest.fixture(scope="module")
def compat(pki: TestPKI, tmp_path_factory: pytest.TempPathFactory) -> Gateway:
    return gateway_for(tmp_path_factory.mktemp("compat"), pki, policy="compat.toml")


def internal(sender: str, rcpt: str, entity: bytes, from_header: str | None = None) -> bytes:
    return m.message(entity, from_header or sender, [rcpt])


def codes(verdict) -> set[str]:
    return {str(f.code) for f in verdict.violations}


def test_triple_wrapped_internal_mail_passes(gw, pki):
    raw = internal("alice@example.com", "bob@example.com",
                   m.triple_wrap(BODY, pki["alice"], [pki["bob"], pki["alice"]]))
    v = evaluate(gw, raw, "alice@example.com", ["bob@example.com"])
    assert (v.action, v.rule, str(v.direction)) == (Action.ACCEPT, "internal", "internal")
    assert v.violations == []
    assert v.structure == "signed(encrypted)"
    assert v.auth_result is AuthResult.PASS
    assert [s.result for s in v.signers] == ["pass"]
    assert v.signers[0].email == "alice@example.com"
    assert [(r.address, r.covered) for r in v.recipients] == [("bob@example.com", True)]
    header = authentication_results("mx.example.com", v)
    assert header.startswith("mx.example.com; smime=pass")
    assert "body.smime-identifier=alice@example.com" in header
    assert f"body.smime-serial={pki['alice'].serial_hex}" in header


def test_encrypt_then_sign_with_gcm_and_oaep_passes(gw, pki):
    entity = m.sign(m.encrypt(BODY, [pki["bob"], pki["alice"]], cipher="aes-256-gcm", oaep=True),
                    pki["alice"])
    v = evaluate(gw, internal("alice@example.com", "bob@example.com", entity),
                 "alice@example.com", ["bob@example.com"])
    assert v.action is Action.ACCEPT, v.violations
    assert v.structure == "signed(encrypted)"


def test_plain_internal_mail_is_unsigned_and_unencrypted(gw):
    v = evaluate(gw, internal("alice@example.com", "bob@example.com", BODY),
                 "alice@example.com", ["bob@example.com"])
    assert codes(v) == {"unsigned", "unencrypted"}
    assert v.action is Action.QUARANTINE
    assert v.auth_result is AuthResult.NONE
    assert v.structure == "plain"


def test_signed_only_mail_is_unencrypted(gw, pki):
    v = evaluate(gw, internal("alice@example.com", "bob@example.com", m.sign(BODY, pki["alice"])),
                 "alice@example.com", ["bob@example.com"])
    assert codes(v) == {"unencrypted"}
    assert v.structure == "signed(plain)"
    assert v.auth_result is AuthResult.PASS


def test_sign_then_encrypt_is_signature_hidden(gw, pki):
    entity = m.encrypt(m.sign(BODY, pki["alice"]), [pki["bob"], pki["alice"]])
    v = evaluate(gw, internal("alice@example.com", "bob@example.com", entity),
                 "alice@example.com", ["bob@example.com"])
    assert codes(v) == {"signature-hidden"}
    assert v.action is Action.QUARANTINE
    assert v.structure == "encrypted"


def test_compat_policy_accepts_signature_hidden_when_recipients_covered(compat, pki):
    entity = m.encrypt(m.sign(BODY, pki["alice"]), [pki["bob"], pki["alice"]])
    v = evaluate(compat, internal("alice@example.com", "bob@example.com", entity),
                 "alice@example.com", ["bob@example.com"])
    assert v.action is Action.ACCEPT
    assert v.violations == []


def test_tampered_content_is_bad_signature(gw, pki):
    raw = internal("alice@example.com", "bob@example.com", m.sign(BODY, pki["alice"]))
    raw = raw.replace(b"see attached", b"see ATTACHED")
    v = evaluate(gw, raw, "alice@example.com", ["bob@example.com"])
    assert codes(v) == {"bad-signature", "unencrypted"}
    assert v.auth_result is AuthResult.FAIL


def test_signer_from_untrusted_ca_is_untrusted_signer(gw, pki):
    mallory = pki["mallory"]
    raw = internal("mallory@example.com", "bob@example.com",
                   m.triple_wrap(BODY, mallory, [pki["bob"]]))
    v = evaluate(gw, raw, "mallory@example.com", ["bob@example.com"])
    assert codes(v) == {"untrusted-signer"}
    assert v.auth_result is AuthResult.POLICY


def test_expired_signer_is_expired_signer(gw, pki):
    raw = internal("dave@example.com", "bob@example.com",
                   m.triple_wrap(BODY, pki["dave"], [pki["bob"]]))
    v = evaluate(gw, raw, "dave@example.com", ["bob@example.com"])
    assert codes(v) == {"expired-signer"}


def test_signer_revoked_after_signing_is_revoked_signer(gw, pki):
    # carol signed while her card was valid; the CRL now lists it (lost card):
    # a thief could back-date signing-time, so revocation counts whatever the date.
    raw = internal("carol@example.com", "bob@example.com",
                   m.triple_wrap(BODY, pki["carol"], [pki["bob"]]))
    v = evaluate(gw, raw, "carol@example.com", ["bob@example.com"])
    assert codes(v) == {"revoked-signer"}
    assert v.signers[0].result == "revoked-signer"


def test_signature_by_someone_else_is_signer_not_sender(gw, pki):
    raw = internal("bob@example.com", "alice@example.com",
                   m.triple_wrap(BODY, pki["alice"], [pki["alice"], pki["bob"]]))
    v = evaluate(gw, raw, "bob@example.com", ["alice@example.com"])
    assert codes(v) == {"signer-not-sender"}


def test_unpublished_certificate_is_signer_not_in_directory(gw, pki, tmp_path):
    now = dt.datetime.now(UTC)
    second = issue_user(tmp_path, pki.ca, "alice2", "alice@example.com",
                        not_before=now - dt.timedelta(hours=1), not_after=now + dt.timedelta(days=30))
    raw = internal("alice@example.com", "bob@example.com",
                   m.triple_wrap(BODY, second, [pki["bob"]]))
    v = evaluate(gw, raw, "alice@example.com", ["bob@example.com"])
    assert codes(v) == {"signer-not-in-directory"}


def test_recipient_without_certificate_is_recipient_unknown(gw, pki):
    raw = internal("alice@example.com", "zed@example.com",
                   m.triple_wrap(BODY, pki["alice"], [pki["alice"]]))
    v = evaluate(gw, raw, "alice@example.com", ["zed@example.com"])
    assert codes(v) == {"recipient-unknown"}
    assert [(r.address, r.covered) for r in v.recipients] == [("zed@example.com", False)]


def test_recipient_left_out_is_recipient_not_covered(gw, pki):
    raw = m.message(m.triple_wrap(BODY, pki["alice"], [pki["alice"], pki["bob"]]),
                    "alice@example.com", ["bob@example.com", "grace@example.com"])
    v = evaluate(gw, raw, "alice@example.com", ["bob@example.com", "grace@example.com"])
    assert codes(v) == {"recipient-not-covered"}
    assert {(r.address, r.covered) for r in v.recipients} == {
        ("bob@example.com", True), ("grace@example.com", False)}


def test_mail_encrypted_to_a_lost_card_is_recipient_revoked(gw, pki):
    raw = internal("alice@example.com", "bob@example.com",
                   m.triple_wrap(BODY, pki["alice"], [pki["bob"], pki["carol"]]))
    v = evaluate(gw, raw, "alice@example.com", ["bob@example.com"])
    assert codes(v) == {"recipient-revoked"}


def test_rsa_1024_signer_is_weak_algorithm(gw, pki):
    raw = internal("erin@example.com", "bob@example.com",
                   m.triple_wrap(BODY, pki["erin"], [pki["bob"]]))
    v = evaluate(gw, raw, "erin@example.com", ["bob@example.com"])
    assert codes(v) == {"weak-algorithm"}
    assert v.action is Action.REJECT


def test_sha1_signature_is_weak_algorithm(gw, pki):
    entity = m.sign(m.encrypt(m.sign(BODY, pki["alice"]), [pki["bob"]]), pki["alice"], md="sha1")
    v = evaluate(gw, internal("alice@example.com", "bob@example.com", entity),
                 "alice@example.com", ["bob@example.com"])
    assert codes(v) == {"weak-algorithm"}


def test_triple_des_content_is_weak_algorithm(gw, pki):
    entity = m.triple_wrap(BODY, pki["alice"], [pki["bob"]], cipher="des3")
    v = evaluate(gw, internal("alice@example.com", "bob@example.com", entity),
                 "alice@example.com", ["bob@example.com"])
    assert codes(v) == {"weak-algorithm"}


def test_garbage_cms_is_malformed_and_rejected(gw):
    entity = (b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n"
              b"Content-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHA6CAMIACAQAx////\r\n")
    v = evaluate(gw, internal("alice@example.com", "bob@example.com", entity),
                 "alice@example.com", ["bob@example.com"])
    assert "malformed" in codes(v)
    assert v.action is Action.REJECT
    assert v.auth_result is AuthResult.PERMERROR


def test_deep_mime_nesting_is_too_complex(gw):
    depth = 1000
    head = "".join(f'Content-Type: multipart/mixed; boundary="b{i}"\r\n\r\n--b{i}\r\n'
                   for i in range(depth))
    tail = "".join(f"\r\n--b{i}--\r\n" for i in reversed(range(depth)))
    entity = (head + "Content-Type: text/plain\r\n\r\nx" + tail).encode()
    v = evaluate(gw, internal("alice@example.com", "bob@example.com", entity),
                 "alice@example.com", ["bob@example.com"])
    assert "too-complex" in codes(v)


def test_crl_past_next_update_is_crl_unavailable_and_tempfails(pki, tmp_path):
    now = dt.datetime.now(UTC)
    stale = write_crl(tmp_path / "stale.crl", pki.ca, pki.revoked,
                      last_update=now - dt.timedelta(days=10), next_update=now - dt.timedelta(days=1))
    gw = gateway_for(tmp_path / "gw", pki, crls=[stale])
    raw = internal("alice@example.com", "bob@example.com",
                   m.triple_wrap(BODY, pki["alice"], [pki["bob"]]))
    v = evaluate(gw, raw, "alice@example.com", ["bob@example.com"])
    assert "crl-unavailable" in codes(v)
    assert v.action is Action.TEMPFAIL
    assert v.auth_result is AuthResult.TEMPERROR


def test_lf_line_endings_still_verify(gw, pki):
    raw = internal("alice@example.com", "bob@example.com",
                   m.triple_wrap(BODY, pki["alice"], [pki["bob"], pki["alice"]]))
    v = evaluate(gw, m.to_lf(raw), "alice@example.com", ["bob@example.com"])
    assert v.action is Action.ACCEPT, v.violations


def test_signer_certificate_left_out_is_found_in_the_directory(gw, pki):
    inner = m.encrypt(m.sign(BODY, pki["alice"]), [pki["bob"]])
    entity = m.sign(inner, pki["alice"], include_certs=False)
    v = evaluate(gw, internal("alice@example.com", "bob@example.com", entity),
                 "alice@example.com", ["bob@example.com"])
    assert v.action is Action.ACCEPT, v.violations


def test_ec_signer_and_mixed_case_address_pass(gw, pki):
    raw = m.message(m.triple_wrap(BODY, pki["frank"], [pki["bob"]]),
                    "Frank@Example.COM", ["Bob@example.com"])
    v = evaluate(gw, raw, "Frank@Example.COM", ["Bob@example.com"])
    assert v.action is Action.ACCEPT, v.violations


def test_certificate_without_extensions_addressed_by_subject_email(gw, pki):
    raw = internal("nina@example.com", "bob@example.com",
                   m.triple_wrap(BODY, pki["nina"], [pki["bob"]]))
    v = evaluate(gw, raw, "nina@example.com", ["bob@example.com"])
    assert v.action is Action.ACCEPT, v.violations


def test_at_before_signer_was_issued_is_expired_signer(gw, pki):
    raw = internal("alice@example.com", "bob@example.com",
                   m.triple_wrap(BODY, pki["alice"], [pki["bob"]]))
    v = evaluate(gw, raw, "alice@example.com", ["bob@example.com"],
                 at=dt.datetime.now(UTC) - dt.timedelta(days=30))
    assert codes(v) == {"expired-signer"}


def test_inbound_plain_mail_is_tagged(gw):
    raw = m.message(BODY, "news@partner.example", ["bob@example.com"])
    v = evaluate(gw, raw, "news@partner.example", ["bob@example.com"])
    assert (v.action, v.rule, codes(v)) == (Action.TAG, "inbound", {"unsigned"})


def test_null_sender_bounces_are_accepted(gw):
    raw = m.message(BODY, "MAILER-DAEMON@example.com", ["bob@example.com"])
    v = evaluate(gw, raw, "", ["bob@example.com"])
    assert (v.action, v.rule) == (Action.ACCEPT, "bounces")


def test_verdict_is_the_same_for_check_input_from_a_file(gw, pki, tmp_path: Path):
    raw = internal("alice@example.com", "bob@example.com",
                   m.triple_wrap(BODY, pki["alice"], [pki["bob"]]))
    path = tmp_path / "msg.eml"
    path.write_bytes(raw)
    with path.open("rb") as fh:
        from_file = gw.evaluate(fh)
    from_bytes = gw.evaluate(io.BytesIO(raw))
    assert from_file.as_dict() == from_bytes.as_dict()
    assert from_file.action is Action.ACCEPT


def test_gpgsm_encrypted_then_openssl_signed_passes(gw, pki):
    # GnuPG writes BER with indefinite lengths; the outer signature is OpenSSL's.
    entity = m.sign(m.gpgsm_encrypt(m.sign(BODY, pki["alice"]), [pki["bob"], pki["alice"]], pki.ca),
                    pki["alice"])
    v = evaluate(gw, internal("alice@example.com", "bob@example.com", entity),
                 "alice@example.com", ["bob@example.com"])
    assert v.action is Action.ACCEPT, v.violations
    assert v.structure == "signed(encrypted)"
    assert [(r.address, r.covered) for r in v.recipients] == [("bob@example.com", True)]


def test_gpgsm_encrypted_only_is_signature_hidden(gw, pki):
    entity = m.gpgsm_encrypt(BODY, [pki["bob"]], pki.ca)
    v = evaluate(gw, internal("alice@example.com", "bob@example.com", entity),
                 "alice@example.com", ["bob@example.com"])
    assert codes(v) == {"signature-hidden"}


def test_ec_recipient_by_key_agreement_is_covered(gw, pki):
    raw = internal("alice@example.com", "frank@example.com",
                   m.triple_wrap(BODY, pki["alice"], [pki["frank"], pki["alice"]]))
    v = evaluate(gw, raw, "alice@example.com", ["frank@example.com"])
    assert v.action is Action.ACCEPT, v.violations
    assert [(r.address, r.covered) for r in v.recipients] == [("frank@example.com", True)]


def test_recipients_and_signer_identified_by_key_identifier(gw, pki):
    inner = m.encrypt(m.sign(BODY, pki["alice"], keyid=True), [pki["bob"], pki["alice"]],
                      keyid=True)
    entity = m.sign(inner, pki["alice"], keyid=True, include_certs=False)
    v = evaluate(gw, internal("alice@example.com", "bob@example.com", entity),
                 "alice@example.com", ["bob@example.com"])
    assert v.action is Action.ACCEPT, v.violations
    assert [(r.address, r.covered) for r in v.recipients] == [("bob@example.com", True)]


def test_every_visible_signature_is_reported(gw, pki):
    entity = m.sign(m.sign(m.encrypt(BODY, [pki["bob"]]), pki["bob"]), pki["alice"])
    v = evaluate(gw, internal("alice@example.com", "bob@example.com", entity),
                 "alice@example.com", ["bob@example.com"])
    assert v.structure == "signed(signed(encrypted))"
    assert [(s.email, s.result) for s in v.signers] == [
        ("alice@example.com", "pass"), ("bob@example.com", "pass")]
    assert v.action is Action.ACCEPT, v.violations


def test_one_bad_signer_among_several_is_reported(gw, pki):
    entity = m.sign(m.encrypt(BODY, [pki["bob"]]), pki["alice"], extra_signers=[pki["carol"]])
    v = evaluate(gw, internal("alice@example.com", "bob@example.com", entity),
                 "alice@example.com", ["bob@example.com"])
    assert {(s.email, s.result) for s in v.signers} == {
        ("alice@example.com", "pass"), ("carol@example.com", "revoked-signer")}
    assert codes(v) == {"revoked-signer"}


def test_outlook_x_pkcs7_spellings_and_opaque_signing(gw, pki):
    entity = m.sign(m.encrypt(BODY, [pki["bob"]]), pki["alice"], detached=False)
    entity = entity.replace(b"application/pkcs7-mime", b"application/x-pkcs7-mime")
    v = evaluate(gw, internal("alice@example.com", "bob@example.com", entity),
                 "alice@example.com", ["bob@example.com"])
    assert v.structure == "signed(encrypted)"
    assert v.action is Action.ACCEPT, v.violations


def test_directory_folder_gone_is_directory_unavailable_and_tempfails(pki, tmp_path):
    import dataclasses
    import shutil

    from sealgate.directory.files import FilesDirectory

    published = tmp_path / "published"
    shutil.copytree(pki.directory, published)
    gw = gateway_for(tmp_path / "gw", pki, directory=published)
    gw = dataclasses.replace(gw, directory=FilesDirectory(published, check_interval=0))
    raw = internal("alice@example.com", "bob@example.com",
                   m.triple_wrap(BODY, pki["alice"], [pki["bob"]]))
    assert evaluate(gw, raw, "alice@example.com", ["bob@example.com"]).action is Action.ACCEPT
    shutil.rmtree(published)  # an NFS mount gone away, a deploy half-done
    v = evaluate(gw, raw, "alice@example.com", ["bob@example.com"])
    assert "directory-unavailable" in codes(v)
    assert v.action is Action.TEMPFAIL
    shutil.copytree(pki.directory, published)  # back again: no restart needed
    assert evaluate(gw, raw, "alice@example.com", ["bob@example.com"]).action is Action.ACCEPT


def test_crl_issuer_encoded_differently_still_applies(pki, tmp_path):
    # RFC 5280 §7.1: names compare after normalisation, not byte for byte.
    from cryptography import x509 as cx509
    from cryptography.x509.name import _ASN1Type
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(UTC)
    other_spelling = cx509.Name([
        cx509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Corp", _ASN1Type.PrintableString),
        cx509.NameAttribute(NameOID.COMMON_NAME, "EXAMPLE CORP  MAIL CA", _ASN1Type.PrintableString),
    ])
    assert other_spelling.public_bytes() != pki.ca.cert.subject.public_bytes()
    crl = write_crl(tmp_path / "respelled.crl", pki.ca, pki.revoked, issuer_name=other_spelling,
                    last_update=now - dt.timedelta(hours=1), next_update=now + dt.timedelta(days=1))
    gw = gateway_for(tmp_path / "gw", pki, crls=[crl])
    good = internal("alice@example.com", "bob@example.com",
                    m.triple_wrap(BODY, pki["alice"], [pki["bob"]]))
    assert evaluate(gw, good, "alice@example.com", ["bob@example.com"]).action is Action.ACCEPT
    lost = internal("carol@example.com", "bob@example.com",
                    m.triple_wrap(BODY, pki["carol"], [pki["bob"]]))
    assert codes(evaluate(gw, lost, "carol@example.com", ["bob@example.com"])) == {"revoked-signer"}


def test_a_new_crl_file_is_read_after_crl_refresh(pki, tmp_path):
    # A card is lost after the gateway started: the CA writes a new CRL file.
    now = dt.datetime.now(UTC)
    crl = write_crl(tmp_path / "ca.crl", pki.ca, [], last_update=now - dt.timedelta(hours=2),
                    next_update=now + dt.timedelta(days=1))
    gw = gateway_for(tmp_path / "gw", pki, crls=[crl])
    ticks = [0.0]
    gw.clock = lambda: ticks[0]
    raw = internal("carol@example.com", "bob@example.com",
                   m.triple_wrap(BODY, pki["carol"], [pki["bob"]]))
    assert evaluate(gw, raw, "carol@example.com", ["bob@example.com"]).action is Action.ACCEPT
    write_crl(crl, pki.ca, pki.revoked, last_update=now - dt.timedelta(hours=1),
              next_update=now + dt.timedelta(days=1))
    ticks[0] = gw.config.trust.crl_refresh - 1.0
    assert evaluate(gw, raw, "carol@example.com", ["bob@example.com"]).action is Action.ACCEPT
    ticks[0] = gw.config.trust.crl_refresh + 1.0
    assert codes(evaluate(gw, raw, "carol@example.com", ["bob@example.com"])) == {"revoked-signer"}


def test_an_unreadable_crl_refresh_keeps_the_loaded_crls(pki, tmp_path):
    crl = tmp_path / "ca.crl"
    crl.write_bytes(pki.crl_path.read_bytes())
    gw = gateway_for(tmp_path / "gw", pki, crls=[crl])
    ticks = [0.0]
    gw.clock = lambda: ticks[0]
    raw = internal("carol@example.com", "bob@example.com",
                   m.triple_wrap(BODY, pki["carol"], [pki["bob"]]))
    assert codes(evaluate(gw, raw, "carol@example.com", ["bob@example.com"])) == {"revoked-signer"}
    crl.write_bytes(b"-----BEGIN X509 CRL-----\ngarbage\n-----END X509 CRL-----\n")
    ticks[0] = gw.config.trust.crl_refresh + 1.0
    assert codes(evaluate(gw, raw, "carol@example.com", ["bob@example.com"])) == {"revoked-signer"}
