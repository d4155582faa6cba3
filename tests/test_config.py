"""The configuration file (SPEC §4): defaults, units, paths, and errors with file and key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sealgate.addresses import is_internal, normalize_address
from sealgate.config import Config, default_config_text, load_config
from sealgate.errors import ConfigErrors
from sealgate.units import format_duration, format_size, parse_duration, parse_size

REPO = Path(__file__).resolve().parents[1]



def write(site: Path, text: str, name: str = "sealgate.toml") -> Path:
    path = site / name
    path.write_text(text)
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        load_config(path)
    return [str(e) for e in info.value.errors]


# ------------------------------------------------------------------ defaults


def test_empty_file_gives_the_spec_defaults(site: Path) -> None:
    config = load_config(write(site, ""))
    assert config.authserv_id == "mx.example.com"
    assert config.internal_domains == ("example.com",)
    assert config.milter.socket == "unix:/var/spool/postfix/sealgate/sealgate.sock"
    assert config.milter.timeout == 30
    assert config.milter.max_message_size == 50 * 1024 * 1024
    assert config.directory.backend == "files"
    assert config.directory.path == site / "directory"
    assert config.directory.url is None
    assert config.directory.bind_dn == ""
    assert config.directory.bind_password_file is None
    assert config.directory.mail_attribute == "mail"
    assert config.directory.certificate_attributes == (
        "userCertificate;binary", "userSMIMECertificate;binary")
    assert config.directory.cache_ttl == 300
    assert config.directory.smimea is False
    assert config.trust.anchors == (site / "pki" / "ca.pem",)
    assert config.trust.crls == (site / "pki" / "ca.crl",)
    assert config.trust.crl_refresh == 600
    assert config.trust.require_crl is True
    assert config.quarantine.backend == "sqlite"
    assert config.quarantine.path == site / "quarantine"
    assert config.quarantine.encrypt_to == ()
    assert config.quarantine.release_smtp == "127.0.0.1:10026"
    assert config.quarantine.retention == 90 * 86400
    assert config.metrics.listen == "127.0.0.1:9489"
    assert config.policy.file == site / "policies" / "strict.toml"
    assert config.warnings == ()


def test_default_config_text_loads_to_the_defaults(site: Path) -> None:
    from_text = load_config(write(site, default_config_text()))
    from_empty = load_config(write(site, "", name="empty.toml"))
    assert dataclasses.replace(from_text, source=from_empty.source) == from_empty


def test_config_is_frozen(site: Path) -> None:
    config = load_config(write(site, ""))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.authserv_id = "other"  # type: ignore[misc]
    assert isinstance(config, Config)


def test_internal_domains_are_lower_cased(site: Path) -> None:
    config = load_config(write(site, 'internal_domains = ["Example.COM", "corp.example."]'))
    assert config.internal_domains == ("example.com", "corp.example")


# ------------------------------------------------------------------ units


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("10m", 600), ("2h", 7200), ("90d", 7776000), ("5M", 300),
])
def test_durations_are_seconds(site: Path, text: str, seconds: int) -> None:
    config = load_config(write(site, f'[directory]\ncache_ttl = "{text}"\n'))
    assert config.directory.cache_ttl == seconds


def test_plain_integer_duration_is_seconds(site: Path) -> None:
    assert load_config(write(site, "[milter]\ntimeout = 45\n")).milter.timeout == 45


@pytest.mark.parametrize(("text", "size"), [
    ('"512KiB"', 512 * 1024), ('"50MiB"', 50 * 1024 * 1024), ('"1GiB"', 1 << 30),
    ("1048576", 1048576),
])
def test_sizes_are_bytes(site: Path, text: str, size: int) -> None:
    config = load_config(write(site, f"[milter]\nmax_message_size = {text}\n"))
    assert config.milter.max_message_size == size


@given(st.integers(min_value=0, max_value=10**9))
def test_format_duration_round_trips(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.integers(min_value=0, max_value=1 << 45))
def test_format_size_round_trips(size: int) -> None:
    assert parse_size(format_size(size)) == size


# ------------------------------------------------------------------ paths and URLs


def test_relative_paths_resolve_against_the_config_folder(
        site: Path, tmp_path_factory: pytest.TempPathFactory,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    (site / "reviewers").mkdir()
    (site / "reviewers" / "cr.pem").write_text("x")
    config = load_config(write(site, '[quarantine]\nencrypt_to = ["reviewers/cr.pem"]\n'
                                     'path = "../spool/q"\n'))
    assert config.quarantine.encrypt_to == (site / "reviewers" / "cr.pem",)
    assert config.quarantine.path == site.parent / "spool" / "q"
    assert config.policy.file == site / "policies" / "strict.toml"


def test_relative_unix_socket_resolves_against_the_config_folder(site: Path) -> None:
    config = load_config(write(site, '[milter]\nsocket = "unix:run/sealgate.sock"\n'))
    assert config.milter.socket == f"unix:{site / 'run' / 'sealgate.sock'}"


def test_inet_socket_is_kept(site: Path) -> None:
    config = load_config(write(site, '[milter]\nsocket = "inet:8894@127.0.0.1"\n'))
    assert config.milter.socket == "inet:8894@127.0.0.1"


def test_absolute_paths_are_kept(site: Path) -> None:
    anchor = site / "pki" / "ca.pem"
    config = load_config(write(site, f'[trust]\nanchors = ["{anchor}"]\n'))
    assert config.trust.anchors == (anchor,)


def test_urls_are_kept_as_strings(site: Path) -> None:
    config = load_config(write(site, """
        [directory]
        backend = "ldap"
        url = "dns-srv:example.com"
        base_dn = "ou=people,dc=example,dc=com"
        [trust]
        crls = ["pki/ca.crl", "http://pki.example.com/ca.crl",
                "ldaps://ldap.example.com/cn=CA?certificateRevocationList;binary"]
        [quarantine]
        backend = "postgresql"
        url = "postgresql://sealgate@db.example.com/sealgate"
        """))
    assert config.directory.url == "dns-srv:example.com"
    assert config.trust.crls == (
        site / "pki" / "ca.crl", "http://pki.example.com/ca.crl",
        "ldaps://ldap.example.com/cn=CA?certificateRevocationList;binary")
    assert config.quarantine.url == "postgresql://sealgate@db.example.com/sealgate"


# ------------------------------------------------------------------ errors name file and key


def test_bad_duration_names_file_and_key(site: Path) -> None:
    path = write(site, '[directory]\ncache_ttl = "5x"\n')
    assert errors_of(path) == [
        f'{path}: directory.cache_ttl: "5x" is not a duration (use 30s, 10m, 2h, 90d)']


def test_bad_size_names_file_and_key(site: Path) -> None:
    path = write(site, '[milter]\nmax_message_size = "50MB"\n')
    assert errors_of(path) == [f'{path}: milter.max_message_size: "50MB" is not a size '
                               "(use 512KiB, 50MiB, or a number of bytes)"]


def test_zero_duration_is_an_error(site: Path) -> None:
    path = write(site, '[trust]\ncrl_refresh = "0s"\n')
    assert errors_of(path) == [f'{path}: trust.crl_refresh: "0s" must be longer than zero']


def test_unknown_key_is_an_error_with_a_suggestion(site: Path) -> None:
    path = write(site, '[directory]\ncache_tll = "5m"\n')
    assert errors_of(path) == [
        f'{path}: directory.cache_tll: unknown key (did you mean "cache_ttl"?)']


def test_unknown_table_is_an_error(site: Path) -> None:
    path = write(site, "[directroy]\npath = \"directory\"\n")
    assert errors_of(path) == [
        f'{path}: directroy: unknown table (did you mean "directory"?)']


def test_unknown_top_level_key_is_an_error(site: Path) -> None:
    [error] = errors_of(write(site, 'internal_domain = ["example.com"]\n'))
    assert error.endswith('internal_domain: unknown key (did you mean "internal_domains"?)')


def test_type_error_names_file_and_key(site: Path) -> None:
    path = write(site, '[trust]\nrequire_crl = "yes"\n')
    assert errors_of(path) == [f'{path}: trust.require_crl: "yes" is not true or false']


def test_section_that_is_not_a_table_is_an_error(site: Path) -> None:
    path = write(site, 'milter = "inet:8894@localhost"\n')
    assert errors_of(path) == [
        f'{path}: milter: "inet:8894@localhost" is not a table (write [milter])']


def test_bad_enum_value_names_the_choices(site: Path) -> None:
    path = write(site, '[quarantine]\nbackend = "mysql"\n')
    assert errors_of(path) == [
        f'{path}: quarantine.backend: "mysql" is not one of "sqlite", "postgresql"']


def test_bad_array_element_names_its_index(site: Path) -> None:
    path = write(site, 'internal_domains = ["example.com", "alice@example.com"]\n')
    assert errors_of(path) == [f'{path}: internal_domains[1]: "alice@example.com" is not '
                               'a domain name (write "example.com")']


def test_missing_anchor_file_is_an_error(site: Path) -> None:
    path = write(site, '[trust]\nanchors = ["pki/ca.pem", "pki/missing.pem"]\n')
    assert errors_of(path) == [
        f"{path}: trust.anchors[1]: file {site / 'pki' / 'missing.pem'} does not exist"]


def test_no_anchor_is_an_error(site: Path) -> None:
    [error] = errors_of(write(site, "[trust]\nanchors = []\n"))
    assert "trust.anchors: at least one trust anchor is needed" in error


def test_missing_policy_file_is_an_error(site: Path) -> None:
    path = write(site, '[policy]\nfile = "policies/strcit.toml"\n')
    [error] = errors_of(path)
    assert error.startswith(f"{path}: policy.file: file {site / 'policies' / 'strcit.toml'} "
                            "does not exist")


def test_missing_directory_folder_is_an_error_for_the_files_backend(site: Path) -> None:
    [error] = errors_of(write(site, '[directory]\npath = "certs"\n'))
    assert f"directory.path: folder {site / 'certs'} does not exist" in error


def test_ldap_backend_requires_url_and_base_dn(site: Path) -> None:
    path = write(site, '[directory]\nbackend = "ldap"\n')
    errors = errors_of(path)
    assert [e.split(": ")[1] for e in errors] == ["directory.url", "directory.base_dn"]


def test_bad_ldap_url_is_an_error(site: Path) -> None:
    [error] = errors_of(write(site, '[directory]\nbackend = "ldap"\nurl = "ldap.example.com"\n'
                                    'base_dn = "dc=example,dc=com"\n'))
    assert 'directory.url: "ldap.example.com" is not an LDAP URL' in error


def test_bad_crl_url_scheme_is_an_error(site: Path) -> None:
    [error] = errors_of(write(site, '[trust]\ncrls = ["ftp://pki.example.com/ca.crl"]\n'))
    assert "trust.crls[0]:" in error


def test_bad_socket_is_an_error(site: Path) -> None:
    [error] = errors_of(write(site, '[milter]\nsocket = "inet:http@localhost"\n'))
    assert 'milter.socket: "inet:http@localhost" is not a milter socket' in error


def test_toml_syntax_error_names_file_and_line(site: Path) -> None:
    path = write(site, "[milter]\ntimeout = = 3\n")
    [error] = errors_of(path)
    assert error.startswith(f"{path}: not valid TOML:") and "line 2" in error


def test_missing_config_file_is_an_error(site: Path) -> None:
    [error] = errors_of(site / "absent.toml")
    assert error.startswith(f"{site / 'absent.toml'}: cannot read the file:")


def test_every_error_is_collected_not_just_the_first(site: Path) -> None:
    path = write(site, """
        authserv_id = 12
        colour = "blue"
        [milter]
        timeout = "forever"
        [directory]
        cache_ttl = "5x"
        [trust]
        anchors = ["pki/missing.pem"]
        [policy]
        file = "policies/missing.toml"
        """)
    keys = [e.split(": ")[1] for e in errors_of(path)]
    assert sorted(keys) == sorted(["colour", "authserv_id", "milter.timeout",
                                   "directory.cache_ttl", "trust.anchors[0]", "policy.file"])
    assert all(e.startswith(f"{path}: ") for e in errors_of(path))


def test_missing_crl_file_is_a_warning_not_an_error(site: Path) -> None:
    (site / "pki" / "ca.crl").unlink()
    config = load_config(write(site, ""))
    [warning] = config.warnings
    assert warning.key == "trust.crls[0]" and "does not exist yet" in warning.message


def test_ldap_keys_with_files_backend_are_a_warning(site: Path) -> None:
    config = load_config(write(site, '[directory]\nbase_dn = "dc=example,dc=com"\n'))
    assert [w.key for w in config.warnings] == ["directory.base_dn"]


# ------------------------------------------------------------------ address helpers


def test_normalize_address_strips_brackets_and_lower_cases() -> None:
    assert normalize_address(" <Alice@Example.COM> ") == "alice@example.com"
    assert normalize_address("<>") == ""


def test_is_internal_compares_the_domain_case_insensitively() -> None:
    assert is_internal("Alice@EXAMPLE.com", ["example.com"])
    assert is_internal("<bob@example.com>", ["Example.COM"])


def test_is_internal_does_not_imply_subdomains() -> None:
    assert not is_internal("alice@mx.example.com", ["example.com"])
    assert not is_internal("alice@badexample.com", ["example.com"])


def test_null_sender_and_bare_names_are_not_internal() -> None:
    assert not is_internal("", ["example.com"])
    assert not is_internal("postmaster", ["example.com"])
    assert not is_internal("@example.com", ["example.com"])
