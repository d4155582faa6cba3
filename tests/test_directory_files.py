"""The ``files`` directory backend over the dev PKI's published certificates."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from asn1crypto import x509
from cryptography.hazmat.primitives.serialization import Encoding

from sealgate import devpki
from sealgate.devpki import Identity
from sealgate.directory.base import Directory
from sealgate.directory.files import FilesDirectory
from sealgate.errors import DirectoryUnavailable


def asn1(ident: Identity) -> x509.Certificate:
    return x509.Certificate.load(ident.cert.public_bytes(Encoding.DER))


def serials(certs: list[x509.Certificate]) -> list[int]:
    return [c.serial_number for c in certs]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def published(pki: devpki.TestPKI) -> FilesDirectory:
    """The session PKI's directory, read-only."""
    return FilesDirectory(pki.directory)


@pytest.fixture
def folder(pki: devpki.TestPKI, tmp_path: Path) -> Path:
    """A private copy of the published directory, for tests that change it."""
    return Path(shutil.copytree(pki.directory, tmp_path / "directory"))


def test_files_directory_is_a_directory(published: FilesDirectory) -> None:
    directory: Directory = published
    assert directory.certificates_for("alice@example.com")


def test_lookup_by_address_ignores_case(published: FilesDirectory, pki: devpki.TestPKI) -> None:
    assert serials(published.certificates_for("Alice@EXAMPLE.com")) == \
        [pki["alice"].cert.serial_number]


def test_lookup_of_an_unpublished_address_is_empty(published: FilesDirectory) -> None:
    assert published.certificates_for("mallory@example.com") == []
    assert published.certificates_for("nobody@example.com") == []


def test_nina_is_found_by_the_subject_email_address(published: FilesDirectory,
                                                    pki: devpki.TestPKI) -> None:
    # nina's certificate has no extensions: the address is only in the subject (RFC 8550 §3).
    assert serials(published.certificates_for("nina@example.com")) == \
        [pki["nina"].cert.serial_number]


def test_lookup_by_issuer_and_serial(published: FilesDirectory, pki: devpki.TestPKI) -> None:
    bob = asn1(pki["bob"])
    found = published.find_by_issuer_serial(bob.issuer, bob.serial_number)
    assert found is not None and found.sha256 == bob.sha256


def test_lookup_by_issuer_and_unknown_serial_is_none(published: FilesDirectory,
                                                      pki: devpki.TestPKI) -> None:
    bob = asn1(pki["bob"])
    assert published.find_by_issuer_serial(bob.issuer, bob.serial_number + 1) is None


def test_lookup_by_subject_key_identifier(published: FilesDirectory, pki: devpki.TestPKI) -> None:
    frank = asn1(pki["frank"])
    found = published.find_by_key_identifier(frank.key_identifier)
    assert found is not None and found.sha256 == frank.sha256


def test_certificate_without_ski_is_found_by_its_public_key_hash(
        published: FilesDirectory, pki: devpki.TestPKI) -> None:
    nina = asn1(pki["nina"])
    assert nina.key_identifier is None
    found = published.find_by_key_identifier(nina.public_key.sha1)
    assert found is not None and found.sha256 == nina.sha256


def test_a_file_may_hold_several_certificates(folder: Path, pki: devpki.TestPKI) -> None:
    (folder / "alice.pem").unlink()
    (folder / "bob.pem").unlink()
    (folder / "team.pem").write_bytes(pki["alice"].cert_path.read_bytes()
                                      + pki["bob"].cert_path.read_bytes())
    directory = FilesDirectory(folder)
    assert directory.certificates_for("alice@example.com")
    assert directory.certificates_for("bob@example.com")


def test_a_certificate_published_twice_is_returned_once(folder: Path, pki: devpki.TestPKI) -> None:
    shutil.copy(folder / "alice.pem", folder / "alice-copy.pem")
    assert len(FilesDirectory(folder).certificates_for("alice@example.com")) == 1


def test_reload_after_a_file_is_added(folder: Path, pki: devpki.TestPKI) -> None:
    (folder / "alice.pem").unlink()
    directory = FilesDirectory(folder, check_interval=0)
    assert directory.certificates_for("alice@example.com") == []
    shutil.copy(pki["alice"].cert_path, folder / "alice.pem")
    assert serials(directory.certificates_for("alice@example.com")) == \
        [pki["alice"].cert.serial_number]


def test_reload_after_a_file_is_removed(folder: Path) -> None:
    directory = FilesDirectory(folder, check_interval=0)
    assert directory.certificates_for("bob@example.com")
    (folder / "bob.pem").unlink()
    assert directory.certificates_for("bob@example.com") == []


def test_folder_is_checked_at_most_once_per_interval(folder: Path) -> None:
    clock = Clock()
    directory = FilesDirectory(folder, check_interval=1.0, clock=clock)
    (folder / "bob.pem").unlink()
    clock.now += 0.5
    assert directory.certificates_for("bob@example.com")  # not looked at yet
    clock.now += 0.6
    assert directory.certificates_for("bob@example.com") == []


def test_broken_file_is_logged_and_the_others_stay(folder: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    (folder / "broken.pem").write_text("-----BEGIN CERTIFICATE-----\nAAAA\n"
                                       "-----END CERTIFICATE-----\n")
    with caplog.at_level(logging.WARNING, logger="sealgate.directory.files"):
        directory = FilesDirectory(folder)
    assert directory.certificates_for("alice@example.com")
    assert any(str(folder / "broken.pem") in r.getMessage() for r in caplog.records)


def test_broken_rewrite_keeps_the_previous_certificates(folder: Path, pki: devpki.TestPKI,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    directory = FilesDirectory(folder, check_interval=0)
    (folder / "bob.pem").write_bytes(pki["bob"].cert_path.read_bytes()[:100])  # half-written
    with caplog.at_level(logging.WARNING, logger="sealgate.directory.files"):
        assert directory.certificates_for("bob@example.com")
    assert any("bob.pem" in r.getMessage() and "kept=1" in r.getMessage()
               for r in caplog.records)


def test_other_files_are_ignored(folder: Path) -> None:
    (folder / "README").write_text("published certificates\n")
    (folder / ".alice.pem.swp").write_bytes(b"\x00garbage")
    assert len(FilesDirectory(folder).certificates()) == len(list(folder.glob("*.pem")))


def test_missing_folder_is_directory_unavailable(folder: Path) -> None:
    directory = FilesDirectory(folder, check_interval=0)
    shutil.rmtree(folder)
    with pytest.raises(DirectoryUnavailable, match=str(folder)):
        directory.certificates_for("alice@example.com")
