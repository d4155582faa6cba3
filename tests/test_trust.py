"""Trust anchors, CRLs and path validation (SPEC §3 codes, §4 [trust])."""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

import pytest
from asn1crypto import x509
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sealgate import devpki
from sealgate.certs import certificate_addresses
from sealgate.codes import Code
from sealgate.devpki import Identity, issue_user, make_ca, write_crl
from sealgate.errors import ConfigError
from sealgate.trust import TrustStore

UTC = dt.UTC
DAY = dt.timedelta(days=1)


def _asn1(identity: Identity) -> x509.Certificate:
    return x509.Certificate.load(identity.cert.public_bytes(Encoding.DER))


def _codes(findings) -> set[Code]:
    return {f.code for f in findings}


@pytest.fixture(scope="module")
def store(pki: devpki.TestPKI) -> TrustStore:
    return TrustStore.load([pki.ca.cert_path], [pki.crl_path])


@pytest.fixture(scope="module")
def now() -> dt.datetime:
    return dt.datetime.now(UTC)


# ---------------------------------------------------------------- signers


def test_good_signer_is_valid(store, pki, now):
    result = store.check_signer(_asn1(pki["alice"]), now)
    assert result.ok and result.findings == [] and result.notes == []
    names = [c.subject.native["common_name"] for c in result.path]
    assert names == ["Example Corp Mail CA", "Alice"]


@pytest.mark.parametrize("name", ["bob", "frank", "grace"])
def test_other_good_signers_are_valid(store, pki, now, name):
    assert store.validate_signer(_asn1(pki[name]), now) == []


def test_revoked_signer_is_revoked_signer(store, pki, now):
    [finding] = store.validate_signer(_asn1(pki["carol"]), now)
    assert finding.code is Code.REVOKED_SIGNER
    assert pki["carol"].serial_hex in finding.detail and "revoked" in finding.detail


def test_signer_revoked_after_signing_is_revoked_signer(store, pki, now):
    # The CRL dates carol's revocation an hour ago; a signature claiming to be two
    # hours old may be back-dated with the lost card's key (SPEC §3).
    signed_at = now - dt.timedelta(hours=2)
    assert _codes(store.validate_signer(_asn1(pki["carol"]), signed_at, now=now)) == {
        Code.REVOKED_SIGNER}


def test_expired_signer_is_expired_signer(store, pki, now):
    [finding] = store.validate_signer(_asn1(pki["dave"]), now)
    assert finding.code is Code.EXPIRED_SIGNER and "expired" in finding.detail


def test_signer_not_yet_valid_at_the_time_is_expired_signer(store, pki, now):
    [finding] = store.validate_signer(_asn1(pki["alice"]), now - 10 * DAY, now=now)
    assert finding.code is Code.EXPIRED_SIGNER and "not valid until" in finding.detail


def test_untrusted_ca_is_untrusted_signer(store, pki, now):
    [finding] = store.validate_signer(_asn1(pki["mallory"]), now)
    assert finding.code is Code.UNTRUSTED_SIGNER and "no path to a trust anchor" in finding.detail


def test_untrusted_ca_supplied_in_the_message_is_still_untrusted(store, pki, now):
    findings = store.validate_signer(_asn1(pki["mallory"]), now, [_asn1(pki.other_ca)])
    assert _codes(findings) == {Code.UNTRUSTED_SIGNER}


def test_weak_key_signer_path_is_valid_and_weakness_is_separate(store, pki, now):
    # RSA-1024 is weak-algorithm (smime.algorithms), not a trust failure.
    from sealgate.smime.algorithms import weak_public_key

    erin = _asn1(pki["erin"])
    assert store.validate_signer(erin, now) == []
    assert "1024" in weak_public_key(erin.public_key)


def test_signer_without_extensions_is_valid_and_addressed_by_subject(store, pki, now):
    nina = _asn1(pki["nina"])
    assert nina["tbs_certificate"]["extensions"].native in (None, [])
    assert store.validate_signer(nina, now) == []
    assert certificate_addresses(nina) == ("nina@example.com",)


def _custom_user(pki: devpki.TestPKI, folder: Path, name: str, *,
                 eku=None, key_usage=None) -> Identity:
    """A CA-issued certificate with the given EKU / key usage."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(UTC)
    builder = (
        cx509.CertificateBuilder()
        .subject_name(cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(pki.ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(cx509.random_serial_number())
        .not_valid_before(now - DAY)
        .not_valid_after(now + 30 * DAY)
        .add_extension(cx509.SubjectAlternativeName([cx509.RFC822Name(f"{name}@example.com")]),
                       critical=False)
    )
    if eku is not None:
        builder = builder.add_extension(cx509.ExtendedKeyUsage(eku), critical=False)
    if key_usage is not None:
        flags = dict.fromkeys(
            ["digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
             "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"], False)
        flags.update({k: True for k in key_usage})
        builder = builder.add_extension(cx509.KeyUsage(**flags), critical=True)
    cert = builder.sign(pki.ca.key, hashes.SHA256())
    return Identity(name, f"{name}@example.com", cert, key, folder / f"{name}.pem", folder / "x")


def test_server_auth_only_certificate_is_untrusted_signer(store, pki, now, tmp_path):
    server = _custom_user(pki, tmp_path, "web", eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    [finding] = store.validate_signer(_asn1(server), now)
    assert finding.code is Code.UNTRUSTED_SIGNER and "emailProtection" in finding.detail


def test_any_extended_key_usage_allows_smime(store, pki, now, tmp_path):
    cert = _custom_user(pki, tmp_path, "any", eku=[ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE])
    assert store.validate_signer(_asn1(cert), now) == []


def test_key_usage_without_signing_is_untrusted_signer(store, pki, now, tmp_path):
    cert = _custom_user(pki, tmp_path, "encr", key_usage=["key_encipherment"])
    [finding] = store.validate_signer(_asn1(cert), now)
    assert finding.code is Code.UNTRUSTED_SIGNER and "digital_signature" in finding.detail
    # ...but it is a fine recipient certificate.
    assert store.validate_recipient(_asn1(cert), now) == []


def test_non_repudiation_alone_allows_signing(store, pki, now, tmp_path):
    cert = _custom_user(pki, tmp_path, "nr", key_usage=["content_commitment"])
    assert store.validate_signer(_asn1(cert), now) == []


def test_expired_ca_is_expired_signer(pki, now, tmp_path):
    old_ca = make_ca(tmp_path, "old-ca", "Retired Mail CA", now - 3700 * DAY)
    assert old_ca.cert.not_valid_after_utc < now
    user = issue_user(tmp_path, old_ca, "oscar", "oscar@example.com",
                      not_before=now - DAY, not_after=now + 30 * DAY)
    crl = write_crl(tmp_path / "old.crl", old_ca, [], last_update=now - DAY,
                    next_update=now + DAY)
    store = TrustStore.load([old_ca.cert_path], [crl])
    [finding] = store.validate_signer(_asn1(user), now)
    assert finding.code is Code.EXPIRED_SIGNER
    assert finding.detail.startswith("CA ") and "expired" in finding.detail


def test_intermediate_ca_from_the_message_builds_the_path(pki, now, tmp_path):
    # Root -> intermediate (sent in the message) -> user; CRLs for both issuers.
    inter_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    inter_name = cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "Example Sub CA")])
    inter_cert = (
        cx509.CertificateBuilder().subject_name(inter_name).issuer_name(pki.ca.cert.subject)
        .public_key(inter_key.public_key()).serial_number(cx509.random_serial_number())
        .not_valid_before(now - DAY).not_valid_after(now + 300 * DAY)
        .add_extension(cx509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(pki.ca.key, hashes.SHA256())
    )
    inter = Identity("sub", "", inter_cert, inter_key, tmp_path / "sub.pem", tmp_path / "sub.key")
    user = issue_user(tmp_path, inter, "ivan", "ivan@example.com",
                      not_before=now - DAY, not_after=now + 30 * DAY)
    sub_crl = write_crl(tmp_path / "sub.crl", inter, [user.cert.serial_number],
                        last_update=now - DAY, next_update=now + DAY)
    store = TrustStore.load([pki.ca.cert_path], [pki.crl_path, sub_crl])
    ivan, sub = _asn1(user), _asn1(inter)
    assert _codes(store.validate_signer(ivan, now)) == {Code.UNTRUSTED_SIGNER}  # no intermediate
    [finding] = store.validate_signer(ivan, now, [sub])
    assert finding.code is Code.REVOKED_SIGNER  # the sub CA's CRL, checked with its key
    assert store.is_revoked(ivan.issuer, ivan.serial_number, now) is True


# ---------------------------------------------------------------- CRLs


def test_crl_past_next_update_is_crl_unavailable(store, pki, now):
    [finding] = store.validate_signer(_asn1(pki["alice"]), now, now=now + 8 * DAY)
    assert finding.code is Code.CRL_UNAVAILABLE and "nextUpdate" in finding.detail


def test_stale_crl_file_is_crl_unavailable(pki, now, tmp_path):
    stale = write_crl(tmp_path / "stale.crl", pki.ca, [], last_update=now - 10 * DAY,
                      next_update=now - DAY)
    store = TrustStore.load([pki.ca.cert_path], [stale])
    assert _codes(store.validate_signer(_asn1(pki["alice"]), now)) == {Code.CRL_UNAVAILABLE}


def test_newest_current_crl_wins(pki, now, tmp_path):
    older = write_crl(tmp_path / "older.crl", pki.ca, [], last_update=now - 2 * DAY,
                      next_update=now + 5 * DAY)
    store = TrustStore.load([pki.ca.cert_path], [older, pki.crl_path])
    assert _codes(store.validate_signer(_asn1(pki["carol"]), now)) == {Code.REVOKED_SIGNER}


def test_crl_signed_by_the_wrong_key_is_refused(pki, now, tmp_path, caplog):
    forged = write_crl(tmp_path / "forged.crl", pki.ca, [], last_update=now - DAY,
                       next_update=now + DAY, signing_key=pki.other_ca.key)
    with caplog.at_level(logging.ERROR, logger="sealgate.trust"):
        store = TrustStore.load([pki.ca.cert_path], [forged])
    assert any("crl-refused" in r.getMessage() for r in caplog.records)
    [finding] = store.validate_signer(_asn1(pki["carol"]), now)  # not "valid": refused CRL
    assert finding.code is Code.CRL_UNAVAILABLE and "refused" in finding.detail


def test_refused_crl_stays_crl_unavailable_without_require_crl(pki, now, tmp_path):
    forged = write_crl(tmp_path / "forged.crl", pki.ca, [], last_update=now - DAY,
                       next_update=now + DAY, signing_key=pki.other_ca.key)
    store = TrustStore.load([pki.ca.cert_path], [forged], require_crl=False)
    assert _codes(store.validate_signer(_asn1(pki["alice"]), now)) == {Code.CRL_UNAVAILABLE}


def test_no_crl_configured_is_crl_unavailable(pki, now):
    store = TrustStore.load([pki.ca.cert_path], [])
    [finding] = store.validate_signer(_asn1(pki["alice"]), now)
    assert finding.code is Code.CRL_UNAVAILABLE and "no CRL source" in finding.detail


def test_without_require_crl_an_issuer_without_crl_is_valid_with_a_note(pki, now):
    store = TrustStore.load([pki.ca.cert_path], [], require_crl=False)
    result = store.check_signer(_asn1(pki["carol"]), now)
    assert result.findings == []
    [note] = result.notes
    assert "not revocation-checked" in note and "Example Corp Mail CA" in note


def test_url_crl_source_is_not_fetched_and_is_crl_unavailable(pki, now):
    store = TrustStore.load([pki.ca.cert_path], ["http://pki.example.com/ca.crl"],
                            require_crl=False)
    [finding] = store.validate_signer(_asn1(pki["alice"]), now)
    assert finding.code is Code.CRL_UNAVAILABLE
    assert "http://pki.example.com/ca.crl" in finding.detail


def test_missing_crl_file_is_crl_unavailable_not_a_config_error(pki, now, tmp_path):
    store = TrustStore.load([pki.ca.cert_path], [tmp_path / "not-yet.crl"])
    assert _codes(store.validate_signer(_asn1(pki["alice"]), now)) == {Code.CRL_UNAVAILABLE}


def test_der_crl_file_is_read(pki, now, tmp_path):
    der = tmp_path / "ca.der.crl"
    der.write_bytes(cx509.load_pem_x509_crl(pki.crl_path.read_bytes()).public_bytes(Encoding.DER))
    store = TrustStore.load([pki.ca.cert_path], [der])
    assert _codes(store.validate_signer(_asn1(pki["carol"]), now)) == {Code.REVOKED_SIGNER}
    assert store.validate_signer(_asn1(pki["alice"]), now) == []


def test_with_crls_replaces_the_crls(store, pki, now, tmp_path):
    empty = write_crl(tmp_path / "empty.crl", pki.ca, [], last_update=now - DAY,
                      next_update=now + DAY)
    refreshed = store.with_crls([empty])
    assert refreshed.validate_signer(_asn1(pki["carol"]), now) == []
    assert _codes(store.validate_signer(_asn1(pki["carol"]), now)) == {Code.REVOKED_SIGNER}


def test_is_revoked_by_issuer_and_serial(store, pki, now):
    carol, bob = _asn1(pki["carol"]), _asn1(pki["bob"])
    assert store.is_revoked(carol.issuer, carol.serial_number, now) is True
    assert store.is_revoked(bob.issuer, bob.serial_number, now) is False


def test_is_revoked_is_none_without_a_current_crl(store, pki, now):
    carol, mallory = _asn1(pki["carol"]), _asn1(pki["mallory"])
    assert store.is_revoked(carol.issuer, carol.serial_number, now + 8 * DAY) is None
    assert store.is_revoked(mallory.issuer, mallory.serial_number, now) is None


def test_crl_next_updates_for_metrics(store, pki, now):
    [(issuer, next_update)] = store.crl_next_updates().items()
    assert "Example Corp Mail CA" in issuer and next_update > now
    assert store.earliest_crl_next_update == next_update  # what the refresh check reads
    assert TrustStore.load([pki.ca.cert_path], []).earliest_crl_next_update is None


# ---------------------------------------------------------------- recipients


def test_recipient_certificate_is_valid_for_encryption(store, pki, now):
    for name in ("alice", "frank", "nina"):
        assert store.validate_recipient(_asn1(pki[name]), now) == []


def test_revoked_and_expired_recipients_use_the_same_codes(store, pki, now):
    assert _codes(store.validate_recipient(_asn1(pki["carol"]), now)) == {Code.REVOKED_SIGNER}
    assert _codes(store.validate_recipient(_asn1(pki["dave"]), now)) == {Code.EXPIRED_SIGNER}
    assert _codes(store.validate_recipient(_asn1(pki["mallory"]), now)) == {Code.UNTRUSTED_SIGNER}


def test_signing_only_certificate_is_not_a_recipient(store, pki, now, tmp_path):
    cert = _custom_user(pki, tmp_path, "signonly", key_usage=["digital_signature"])
    [finding] = store.validate_recipient(_asn1(cert), now)
    assert finding.code is Code.UNTRUSTED_SIGNER and "key_encipherment" in finding.detail


# ---------------------------------------------------------------- configuration


def test_unreadable_anchor_file_is_a_config_error(pki, tmp_path):
    with pytest.raises(ConfigError) as err:
        TrustStore.load([tmp_path / "missing.pem"], [pki.crl_path])
    assert err.value.key == "trust.anchors" and "missing.pem" in str(err.value)


def test_anchor_file_without_certificates_is_a_config_error(pki, tmp_path):
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(ConfigError) as err:
        TrustStore.load([bad], [pki.crl_path], config_file="/etc/sealgate/sealgate.toml")
    assert err.value.key == "trust.anchors" and err.value.file == "/etc/sealgate/sealgate.toml"


def test_garbage_crl_file_is_a_config_error(pki, tmp_path):
    bad = tmp_path / "ca.crl"
    bad.write_bytes(b"\x30\x03\x02\x01\x01")
    with pytest.raises(ConfigError) as err:
        TrustStore.load([pki.ca.cert_path], [bad])
    assert err.value.key == "trust.crls" and "ca.crl" in str(err.value)


def test_anchor_file_may_hold_several_certificates(pki, now, tmp_path):
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pki.other_ca.cert_path.read_bytes() + pki.ca.cert_path.read_bytes())
    store = TrustStore.load([bundle], [pki.crl_path], require_crl=False)
    assert len(store.anchors) == 2
    assert store.validate_signer(_asn1(pki["alice"]), now) == []
    result = store.check_signer(_asn1(pki["mallory"]), now)  # trusted now, its CA has no CRL
    assert result.findings == [] and result.notes


# ---------------------------------------------------------------- concurrency


def test_concurrent_validations_from_many_threads_agree(pki, now):
    from concurrent.futures import ThreadPoolExecutor

    store = TrustStore.load([pki.ca.cert_path], [pki.crl_path])  # cold cache
    names = ["alice", "carol", "dave", "mallory", "frank", "nina"] * 20
    expected = {"alice": set(), "carol": {Code.REVOKED_SIGNER}, "dave": {Code.EXPIRED_SIGNER},
                "mallory": {Code.UNTRUSTED_SIGNER}, "frank": set(), "nina": set()}
    certs = {n: pki[n].cert.public_bytes(Encoding.DER) for n in expected}

    def one(name: str) -> tuple[str, set[Code]]:
        return name, _codes(store.validate_signer(x509.Certificate.load(certs[name]), now, now=now))

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, names))
    assert all(codes == expected[name] for name, codes in results)


def test_naive_times_are_taken_as_utc(store, pki, now):
    naive = now.replace(tzinfo=None)
    assert store.validate_signer(_asn1(pki["alice"]), naive, now=naive) == []
    carol = _asn1(pki["carol"])
    assert store.is_revoked(carol.issuer, carol.serial_number, naive) is True
