"""``sealgate directory lookup|publish``, run as a user would (a subprocess), on both backends."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

from cryptography import x509 as cx509
from directory_fixtures import ldap_config, own_slapd  # noqa: F401
from gateway_helpers import write_config

from sealgate.devpki import TestPKI, issue_user, write_crl
from sealgate.devslapd import BlackHole

UTC = dt.UTC


def sealgate(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sealgate", "directory", *args, "--config",
                           str(config)], capture_output=True, text=True, check=False, timeout=120)


def files_config(pki: TestPKI, folder: Path) -> Path:
    published = folder / "published"
    published.mkdir(parents=True)
    for name in ("alice", "bob"):
        (published / f"{name}.pem").write_bytes(pki[name].cert_path.read_bytes())
    crl = folder / "ca.crl"
    crl.write_bytes(pki.crl_path.read_bytes())
    return write_config(folder, pki, directory=published, crls=[crl])


def test_lookup_prints_the_certificate_as_json(pki, tmp_path):
    result = sealgate(files_config(pki, tmp_path), "lookup", "Alice@example.com", "--json")
    assert result.returncode == 0, result.stderr
    [cert] = json.loads(result.stdout)
    assert cert["serial"] == pki["alice"].serial_hex
    assert cert["addresses"] == ["alice@example.com"]


def test_lookup_of_an_unknown_address_exits_1(pki, tmp_path):
    result = sealgate(files_config(pki, tmp_path), "lookup", "zed@example.com")
    assert result.returncode == 1
    assert "zed@example.com: no certificate published" in result.stderr


def test_publish_then_lookup_with_the_files_backend(pki, tmp_path):
    config = files_config(pki, tmp_path)
    now = dt.datetime.now(UTC)
    new = issue_user(tmp_path, pki.ca, "zoe", "zoe@example.com", not_before=now,
                     not_after=now + dt.timedelta(days=30))
    result = sealgate(config, "publish", "--certificate", str(new.cert_path))
    assert result.returncode == 0, result.stderr
    written = tmp_path / "published" / f"zoe@example.com-{new.serial_hex}.pem"
    assert f"published: {written}" in result.stdout
    assert written.stat().st_mode & 0o777 == 0o644
    result = sealgate(config, "lookup", "zoe@example.com", "--pem")
    assert result.returncode == 0, result.stderr
    assert cx509.load_pem_x509_certificate(result.stdout.encode()).serial_number == \
        new.cert.serial_number


def test_publish_crl_with_the_files_backend(pki, tmp_path):
    config = files_config(pki, tmp_path)
    now = dt.datetime.now(UTC)
    crl = write_crl(tmp_path / "new.crl", pki.ca, [pki["bob"].cert.serial_number],
                    last_update=now, next_update=now + dt.timedelta(days=1))
    result = sealgate(config, "publish", "--crl", str(crl))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "ca.crl").read_bytes() == crl.read_bytes()


def test_publish_needs_exactly_one_thing(pki, tmp_path):
    result = sealgate(files_config(pki, tmp_path), "publish")
    assert result.returncode == 2
    assert "exactly one of --certificate" in result.stderr


def test_publish_of_a_non_certificate_is_refused(pki, tmp_path):
    junk = tmp_path / "junk.der"
    junk.write_bytes(b"\x30\x03\x02\x01\x01")
    result = sealgate(files_config(pki, tmp_path), "publish", "--certificate", str(junk))
    assert result.returncode == 1
    assert "not published: not a DER certificate" in result.stderr


def test_publish_and_lookup_with_ldap_and_a_bind_dn_option(pki, tmp_path, own_slapd):  # noqa: F811
    config = ldap_config(tmp_path, pki, own_slapd.url, own_slapd.people_dn)
    now = dt.datetime.now(UTC)
    renewed = issue_user(tmp_path, pki.ca, "alice2", "alice@example.com", not_before=now,
                         not_after=now + dt.timedelta(days=30))
    refused = sealgate(config, "publish", "--certificate", str(renewed.cert_path))
    assert refused.returncode == 3  # anonymous may not write
    result = sealgate(config, "publish", "--certificate", str(renewed.cert_path),
                      "--bind-dn", own_slapd.admin_dn,
                      "--password-file", str(own_slapd.admin_password_file))
    assert result.returncode == 0, result.stderr
    assert own_slapd.admin_password not in result.stdout + result.stderr
    found = json.loads(sealgate(config, "lookup", "alice@example.com", "--json").stdout)
    assert sorted(c["serial"] for c in found) == sorted([pki["alice"].serial_hex,
                                                         renewed.serial_hex])


def test_lookup_against_a_hung_directory_exits_3(pki, tmp_path):
    with BlackHole() as hole:
        config = ldap_config(tmp_path, pki, hole.url, "ou=people,dc=example,dc=com",
                             directory_extra='timeout = "1s"\n')
        result = sealgate(config, "lookup", "alice@example.com")
    assert result.returncode == 3
    assert "the directory did not answer" in result.stderr
