"""Algorithm facts: digest mapping and what SPEC §3 calls weak."""

from __future__ import annotations

import hashlib

from cmshelpers import asn1_cert, openssl_sign
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given
from hypothesis import strategies as st

from sealgate.codes import Code
from sealgate.smime import algorithms
from sealgate.smime.algorithms import (
    cipher_weak_findings,
    digest,
    hash_algorithm,
    hashlib_constructor,
    signer_weak_findings,
    weak_cipher,
    weak_digest,
    weak_public_key,
)


def test_digest_names_and_oids_map_to_the_same_hash():
    assert isinstance(hash_algorithm("sha256"), hashes.SHA256)
    assert isinstance(hash_algorithm("2.16.840.1.101.3.4.2.1"), hashes.SHA256)
    assert isinstance(hash_algorithm("sha384"), hashes.SHA384)
    assert isinstance(hash_algorithm("md5"), hashes.MD5)
    assert hash_algorithm("1.2.3.4") is None
    assert hash_algorithm("whirlpool") is None


@given(st.binary(max_size=256),
       st.sampled_from(["md5", "sha1", "sha224", "sha256", "sha384", "sha512"]))
def test_digest_matches_hashlib(data, name):
    assert digest(name, data) == hashlib.new(name, data).digest()
    ctor = hashlib_constructor(name)
    assert ctor is not None
    h = ctor()
    h.update(data)
    assert h.digest() == hashlib.new(name, data).digest()


def test_md5_and_sha1_signature_digests_are_weak():
    assert "MD5" in weak_digest("md5")
    assert "SHA-1" in weak_digest("sha1")
    assert "SHA-1" in weak_digest("1.3.14.3.2.26")
    for name in ("sha224", "sha256", "sha384", "sha512", "sha3_256"):
        assert weak_digest(name) is None


def test_rc2_des_3des_rc4_content_ciphers_are_weak():
    assert "RC2" in weak_cipher("rc2", 128)
    assert "DES" in weak_cipher("des", 56)
    assert "3DES" in weak_cipher("tripledes_3key", 192)
    assert "3DES" in weak_cipher("1.2.840.113549.3.7", 192)
    assert "3DES" in weak_cipher("tripledes")
    assert "RC4" in weak_cipher("rc4", 128)
    for name in ("aes128_cbc", "aes256_cbc", "aes128_gcm", "aes256_gcm"):
        assert weak_cipher(name, 256) is None


def test_cipher_finding_names_the_part():
    [finding] = cipher_weak_findings("tripledes_3key", 192, "1.2")
    assert finding.code is Code.WEAK_ALGORITHM
    assert "3DES" in finding.detail and "1.2" in finding.detail
    assert cipher_weak_findings("aes256_cbc", 256, "1") == []


def test_rsa_below_2048_bits_is_weak(pki):
    detail = weak_public_key(asn1_cert(pki["erin"]).public_key)
    assert detail is not None and "1024" in detail
    assert weak_public_key(asn1_cert(pki["alice"]).public_key) is None
    assert weak_public_key(asn1_cert(pki["grace"]).public_key) is None


def test_ec_p256_is_not_weak(pki):
    assert weak_public_key(asn1_cert(pki["frank"]).public_key) is None


def test_ec_below_256_bits_is_weak():
    from asn1crypto import keys
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import PublicFormat

    key = ec.generate_private_key(ec.SECP224R1()).public_key()
    spki = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    info = keys.PublicKeyInfo.load(spki)
    detail = weak_public_key(info)
    assert detail is not None and "224" in detail


def test_signer_findings_cover_digest_and_key(pki):
    signed = openssl_sign(pki["erin"], md="sha1")
    findings = signer_weak_findings(signed.signer_infos[0], asn1_cert(pki["erin"]), "1")
    details = " ".join(f.detail for f in findings)
    assert {f.code for f in findings} == {Code.WEAK_ALGORITHM}
    assert "SHA-1" in details and "1024" in details


def test_sha256_rsa2048_signer_has_no_weak_findings(pki):
    signed = openssl_sign(pki["alice"])
    assert signer_weak_findings(signed.signer_infos[0], asn1_cert(pki["alice"])) == []


def test_pss_hash_comes_from_parameters(pki):
    signed = openssl_sign(pki["alice"], pss=True, md="sha384")
    assert algorithms.signature_hash_name(signed.signer_infos[0]) == "sha384"
