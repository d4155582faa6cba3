"""``sealgate ca``: the certificate profile, revocation and CRLs, private files, a token CA key."""

from __future__ import annotations

import datetime as dt
import os
import stat

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from endpoint_fixtures import Site, endpoint_site_fixture, softhsm_fixture  # noqa: F401 - fixtures

from sealgate.cli import main
from sealgate.devsofthsm import SoftHSM
from sealgate.endpoint.ca import check_certificate_signature, init_ca, load_ca
from sealgate.endpoint.card import Card
from sealgate.endpoint.errors import EndpointError


def _request(email: str, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Someone")]))
            .add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))


def test_user_certificate_profile_rsa_and_ec(tmp_path) -> None:  # noqa: ANN001
    ca = init_ca(tmp_path / "ca", "Test CA", crl_url="http://127.0.0.1:8080/ca.crl", key_kind="ec256")
    for key, enc_bit in ((rsa.generate_private_key(public_exponent=65537, key_size=2048), "key_encipherment"),
                         (ec.generate_private_key(ec.SECP256R1()), "key_agreement")):
        cert = ca.issue(_request("ivan@example.com", key))
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
        assert ku.critical and ku.value.digital_signature and getattr(ku.value, enc_bit)
        other = "key_agreement" if enc_bit == "key_encipherment" else "key_encipherment"
        assert not getattr(ku.value, other)
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [ExtendedKeyUsageOID.EMAIL_PROTECTION]
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.RFC822Name) == ["ivan@example.com"]
        cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        assert cdp[0].full_name == [x509.UniformResourceIdentifier("http://127.0.0.1:8080/ca.crl")]
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert check_certificate_signature(cert, ca.certificate)


def test_request_whose_signature_does_not_verify_is_refused(tmp_path) -> None:  # noqa: ANN001
    ca = init_ca(tmp_path / "ca", "Test CA", key_kind="ec256")
    der = bytearray(_request("ivan@example.com", ec.generate_private_key(ec.SECP256R1())))
    der[-5] ^= 0xFF  # inside the signature value
    with pytest.raises(EndpointError, match="signature does not verify"):
        ca.issue(bytes(der))


def test_revocation_is_in_the_next_crl_with_reason_and_next_update(tmp_path) -> None:  # noqa: ANN001
    ca = init_ca(tmp_path / "ca", "Test CA", key_kind="ec256", crl_days=3)
    cert = ca.issue(_request("lost@example.com", ec.generate_private_key(ec.SECP256R1())))
    first = x509.load_der_x509_crl(ca.crl_path.read_bytes())
    assert first.get_revoked_certificate_by_serial_number(cert.serial_number) is None
    crl = ca.revoke(cert.serial_number, "key_compromise")
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason \
        == x509.ReasonFlags.key_compromise
    assert crl.next_update_utc is not None
    assert crl.next_update_utc - crl.last_update_utc == dt.timedelta(days=3)
    assert crl.is_signature_valid(ca.certificate.public_key())  # type: ignore[arg-type]
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number == first.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1
    with pytest.raises(EndpointError, match="already revoked"):
        ca.revoke(cert.serial_number)
    # the state survives a reload
    assert load_ca(ca.folder).state["revoked"][0]["reason"] == "key_compromise"


def test_ca_files_are_private(tmp_path) -> None:  # noqa: ANN001
    ca = init_ca(tmp_path / "ca", "Test CA", key_kind="ec256")
    ca.issue(_request("x@example.com", ec.generate_private_key(ec.SECP256R1())))
    assert stat.S_IMODE(os.stat(ca.folder).st_mode) == 0o700
    for name in ("ca.key", "state.json", "ca.pem"):
        assert stat.S_IMODE(os.stat(ca.folder / name).st_mode) == 0o600, name
    for issued in (ca.folder / "issued").iterdir():
        assert stat.S_IMODE(os.stat(issued).st_mode) == 0o600


def test_intermediate_ca_issues_certificates_that_chain_to_the_root(tmp_path) -> None:  # noqa: ANN001
    root = init_ca(tmp_path / "root", "Root CA", key_kind="ec256", crl_url="http://127.0.0.1/root.crl")
    sub = init_ca(tmp_path / "sub", "Mail CA", key_kind="ec256", parent=root)
    assert sub.certificate.issuer == root.certificate.subject
    assert sub.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 0
    assert check_certificate_signature(sub.certificate, root.certificate)
    cert = sub.issue(_request("y@example.com", ec.generate_private_key(ec.SECP256R1())))
    assert check_certificate_signature(cert, sub.certificate)
    assert [c.subject for c in sub.chain] == [sub.certificate.subject, root.certificate.subject]


def test_ca_key_on_a_token_signs_certificates_and_crls(tmp_path, softhsm: SoftHSM,  # noqa: ANN001
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    label = f"ca-token-{os.getpid()}"
    softhsm.init_token(label, "2222")
    monkeypatch.setenv("CA_PIN", "2222")
    result = CliRunner().invoke(main, ["ca", "init", str(tmp_path / "ca"), "--name", "Token CA",
                                       "--key-type", "ec256", "--module", softhsm.module,
                                       "--token", label, "--pin-env", "CA_PIN"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "ca" / "ca.key").exists()
    csr = tmp_path / "req.der"
    csr.write_bytes(_request("z@example.com", ec.generate_private_key(ec.SECP256R1())))
    result = CliRunner().invoke(main, ["ca", "issue", str(tmp_path / "ca"), "--csr", str(csr),
                                       "-o", str(tmp_path / "z.pem"), "--pin-env", "CA_PIN"])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["ca", "revoke", str(tmp_path / "ca"), "--email",
                                       "z@example.com", "--pin-env", "CA_PIN"])
    assert result.exit_code == 0, result.output
    ca_cert = x509.load_pem_x509_certificate((tmp_path / "ca" / "ca.pem").read_bytes())
    cert = x509.load_pem_x509_certificate((tmp_path / "z.pem").read_bytes())
    assert check_certificate_signature(ca_cert, ca_cert)  # self-signed by the token key
    assert check_certificate_signature(cert, ca_cert)
    crl = x509.load_der_x509_crl((tmp_path / "ca" / "ca.crl").read_bytes())
    assert crl.is_signature_valid(ca_cert.public_key())  # type: ignore[arg-type]
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    with Card(softhsm.module, label, "2222", key_label="sealgate-ca") as card:
        assert card.private_key_attributes()["extractable"] is False


def test_ca_crl_command_publishes_to_the_gateways_crl_file(endpoint_site: Site) -> None:
    before = x509.load_der_x509_crl(endpoint_site.crl_path.read_bytes()) \
        if not endpoint_site.crl_path.read_bytes().startswith(b"-----") \
        else x509.load_pem_x509_crl(endpoint_site.crl_path.read_bytes())
    result = CliRunner().invoke(main, ["ca", "crl", str(endpoint_site.ca.folder), "--config",
                                       str(endpoint_site.config_path)])
    assert result.exit_code == 0, result.output
    data = endpoint_site.crl_path.read_bytes()
    after = x509.load_pem_x509_crl(data) if data.startswith(b"-----") else x509.load_der_x509_crl(data)
    number = after.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number == before.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number + 1
