"""The configuration file (SPEC §4): one typed, frozen structure, validated at load.

Every key is declared once in :data:`SCHEMA` with its default, its converter
and one line of documentation; :func:`load_config` reads TOML against it and
:func:`default_config_text` prints it. Every error is collected and reported
with the file and the key (``sealgate.toml: directory.cache_ttl: "5x" is not a
duration (use 30s, 10m, 2h, 90d)``), then raised together as
:class:`~sealgate.errors.ConfigErrors`.

Relative paths are relative to the folder of the config file; URLs
(``http://``, ``https://``, ``ldap://``, ``ldaps://``, ``dns-srv:``,
``postgresql://``) stay strings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .tomlreader import (
    Converter,
    ElementErrors,
    Reader,
    as_bool,
    as_duration,
    as_nonempty_str,
    as_optional_path,
    as_path,
    as_size,
    as_str,
    join_key,
    list_of,
    one_of,
)
from .units import format_duration, show

# --------------------------------------------------------------- the structure


@dataclass(frozen=True)
class MilterConfig:
    socket: str  # "unix:/abs/path" or "inet:PORT@HOST"
    timeout: int  # seconds
    max_message_size: int  # bytes
    workers: int = 1  # milter processes sharing the socket (sealgate.workers)
    pin_workers: bool = False  # each worker process on one CPU of its own, round robin


@dataclass(frozen=True)
class DirectoryConfig:
    backend: str  # "files" | "ldap"
    path: Path
    url: str | None
    base_dn: str
    bind_dn: str
    bind_password_file: Path | None
    mail_attribute: str
    certificate_attributes: tuple[str, ...]
    cache_ttl: int  # seconds
    smimea: bool
    cache_miss_ttl: int  # seconds; an empty answer is reused this long (<= cache_ttl)
    timeout: int  # seconds per LDAP/DNS query
    tls_ca_file: Path | None  # ldaps:// and StartTLS: CA certificates to verify the server
    starttls: bool
    dns_resolver: str  # "HOST:PORT", or "" for the system resolver


@dataclass(frozen=True)
class TrustConfig:
    anchors: tuple[Path, ...]
    crls: tuple[Path | str, ...]  # str: an http(s):// or ldap(s):// URL
    crl_refresh: int  # seconds
    require_crl: bool
    crl_distribution_points: bool  # also fetch the CRL DPs named in certificates


@dataclass(frozen=True)
class QuarantineConfig:
    backend: str  # "sqlite" | "postgresql"
    path: Path
    url: str | None
    encrypt_to: tuple[Path, ...]
    release_smtp: str  # "host:port"
    retention: int  # seconds
    notify_sender: str = "none"  # none | internal | all: tell senders their message is held
    notify_from: str = ""  # From: of those notices; "" = postmaster@<authserv_id>
    compliance_address: str = ""  # where `sealgate report --digest` mails the report


@dataclass(frozen=True)
class MetricsConfig:
    listen: str  # "host:port", or "" for disabled


@dataclass(frozen=True)
class PolicyConfig:
    file: Path


@dataclass(frozen=True)
class CardConfig:
    """Endpoint commands (seal, open, sendmail, card): which PKCS#11 token to use."""

    module: str  # PKCS#11 module path; "" = --module / SEALGATE_PKCS11_MODULE
    token_label: str  # "" = --token
    key_label: str  # CKA_LABEL of the key pair and certificate on the card


@dataclass(frozen=True)
class Config:
    source: Path  # the config file, as given
    authserv_id: str
    internal_domains: tuple[str, ...]  # lower-case
    milter: MilterConfig
    directory: DirectoryConfig
    trust: TrustConfig
    quarantine: QuarantineConfig
    metrics: MetricsConfig
    policy: PolicyConfig
    card: CardConfig = CardConfig("", "", "sealgate-smime")  # optional: endpoint commands only
    # Things that work but are probably not what the administrator meant
    # (a CRL file that does not exist yet, a key for another backend).
    warnings: tuple[ConfigError, ...] = ()


_HOST_PORT = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})")


def _host_port(value: Any, base: Path, example: str = "127.0.0.1:10026") -> str:
    match = _HOST_PORT.fullmatch(as_str(value, base))
    if not match or not 0 < int(match.group(1)) < 65536:
        raise ValueError(f"{show(value)} is not HOST:PORT (e.g. {example})")
    return value


def _resolver(value: Any, base: Path) -> str:
    if not as_str(value, base):
        return ""
    return _host_port(value, base, example="127.0.0.1:53, or \"\" for the system resolver")


def _listen(value: Any, base: Path) -> str:
    if not as_str(value, base):
        return ""
    return _host_port(value, base, example="127.0.0.1:9489, or \"\" to disable")


def _socket(value: Any, base: Path) -> str:
    """pymilter socket spec; a relative unix socket path follows the config file."""
    text = as_str(value, base)
    kind, colon, rest = text.partition(":")
    if colon and kind in ("unix", "local") and rest:
        return f"unix:{as_path(rest, base)}"
    if colon and kind in ("inet", "inet6"):
        port, _at, _host = rest.partition("@")
        if port.isdigit() and 0 < int(port) < 65536:
            return text
    raise ValueError(f"{show(value)} is not a milter socket "
                     "(use unix:/path/to.sock or inet:PORT@HOST)")


MAX_WORKERS = 64


def _workers(value: Any, base: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WORKERS:
        raise ValueError(f"{show(value)} is not a number of processes from 1 to {MAX_WORKERS}")
    return value


def _domain(value: Any, base: Path) -> str:
    text = as_nonempty_str(value, base).strip().lower().rstrip(".")
    if "@" in text or not re.fullmatch(r"[a-z0-9.-]+", text):
        raise ValueError(f"{show(value)} is not a domain name (write \"example.com\")")
    return text


def _authserv_id(value: Any, base: Path) -> str:
    # RFC 8601 §2.2: authserv-id is a token in the Authentication-Results header.
    text = as_nonempty_str(value, base)
    if re.search(r"[\s;()\"]", text):
        raise ValueError(f"{show(value)} is not usable as authserv-id "
                         "(a host name such as mx.example.com)")
    return text


_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")


def _crl_source(value: Any, base: Path) -> Path | str:
    text = as_nonempty_str(value, base)
    scheme = _URL.match(text)
    if scheme and "://" in text:
        if scheme.group(1).lower() in ("http", "https", "ldap", "ldaps"):
            return text
        raise ValueError(f"{show(value)}: CRL URLs must be http://, https://, ldap:// or ldaps://")
    return as_path(text, base)


def _ldap_url(value: Any, base: Path) -> str | None:
    text = as_str(value, base)
    if not text:
        return None
    if text.lower().startswith(("ldap://", "ldaps://", "dns-srv:")):
        return text
    raise ValueError(f"{show(value)} is not an LDAP URL "
                     "(use ldap://HOST:389, ldaps://HOST:636 or dns-srv:DOMAIN)")


def _optional_address(value: Any, base: Path) -> str:
    text = as_str(value, base).strip()
    if text and not re.fullmatch(r"[^@\s<>]+@[A-Za-z0-9.-]+", text):
        raise ValueError(f"{show(value)} is not a mail address (write \"compliance@example.com\")")
    return text


def _postgresql_url(value: Any, base: Path) -> str | None:
    text = as_str(value, base)
    if not text:
        return None
    if text.lower().startswith(("postgresql://", "postgres://")):
        return text
    raise ValueError(f"{show(value)} is not a PostgreSQL URL (use postgresql://USER@HOST/DB)")


# --------------------------------------------------------------- the schema


@dataclass(frozen=True)
class Key:
    """One configuration key: its default (as written in TOML), converter and doc."""

    name: str
    default: Any  # a TOML value; None: absent unless set
    convert: Converter
    doc: str
    commented: bool = False  # written commented out by default_config_text
    example: Any = None  # shown instead of the default when commented


# Section None is the top level. The defaults are the values of SPEC §4 and
# live here only.
SCHEMA: dict[str | None, tuple[Key, ...]] = {
    None: (
        Key("authserv_id", "mx.example.com", _authserv_id,
            "used in Authentication-Results"),
        Key("internal_domains", ["example.com"], list_of(_domain),
            "subdomains are not implied"),
    ),
    "milter": (
        Key("socket", "unix:/var/spool/postfix/sealgate/sealgate.sock", _socket,
            "where Postfix connects: unix:PATH, or inet:PORT@HOST (about 40 ms slower "
            "per message: Nagle)"),
        Key("timeout", 30, as_duration, "seconds of Postfix-side inactivity (or 30s, 2m)"),
        Key("max_message_size", "50MiB", as_size, "larger messages get too-complex"),
        Key("workers", 1, _workers,
            "milter processes sharing the socket; more than 1 uses several cores "
            "(about one per core)"),
        Key("pin_workers", False, as_bool,
            "with workers > 1: keep worker N on the Nth CPU the milter may use "
            "(round robin); its caches stay warm on a busy gateway"),
    ),
    "directory": (
        Key("backend", "files", one_of("files", "ldap"),
            "\"files\" (embedded default) or \"ldap\""),
        Key("path", "directory", as_path,
            "files: folder of PEM certificates, indexed by their addresses"),
        Key("url", None, _ldap_url,
            "ldap: ldap://HOST:389 or ldaps://HOST:636; \"dns-srv:example.com\" "
            "looks up _ldap._tcp",
            commented=True, example="ldap://127.0.0.1:389"),
        Key("base_dn", "", as_str, "ldap: where people entries live",
            commented=True, example="ou=people,dc=example,dc=com"),
        Key("bind_dn", "", as_str, "ldap: empty: anonymous", commented=True),
        Key("bind_password_file", "", as_optional_path,
            "ldap: file holding the bind password", commented=True),
        Key("mail_attribute", "mail", as_nonempty_str, "ldap: attribute holding the address",
            commented=True),
        Key("certificate_attributes", ["userCertificate;binary", "userSMIMECertificate;binary"],
            list_of(as_nonempty_str), "ldap: attributes holding certificates", commented=True),
        Key("cache_ttl", "5m", as_duration, "how long a directory answer is reused"),
        Key("smimea", False, as_bool,
            "also look up external addresses in DNS SMIMEA (RFC 8162), "
            "DNSSEC-validated answers only"),
        Key("cache_miss_ttl", "1m", as_duration,
            "how long \"no certificate for this address\" is reused (at most cache_ttl)"),
        Key("timeout", "5s", as_duration,
            "per LDAP/DNS query and CRL fetch; a slower directory is directory-unavailable (tempfail)"),
        Key("tls_ca_file", "", as_optional_path,
            "ldap: PEM CA certificates that verify the server for ldaps:// and StartTLS",
            commented=True),
        Key("starttls", False, as_bool, "ldap: upgrade ldap:// connections with StartTLS",
            commented=True),
        Key("dns_resolver", "", _resolver,
            "resolver for dns-srv: and SMIMEA as HOST:PORT; empty: the system resolver",
            commented=True),
    ),
    "trust": (
        Key("anchors", ["pki/ca.pem"], list_of(as_path),
            "PEM files, each one or more CA certificates"),
        Key("crls", ["pki/ca.crl"], list_of(_crl_source),
            "CRL sources: file paths (DER or PEM), http(s):// and ldap:// URLs"),
        Key("crl_refresh", "10m", as_duration, "how often CRL sources are re-read"),
        Key("require_crl", True, as_bool,
            "false: an issuer with no configured CRL source is not revocation-checked"),
        Key("crl_distribution_points", False, as_bool,
            "also fetch the http(s)/ldap CRL distribution points named in certificates"),
    ),
    "quarantine": (
        Key("backend", "sqlite", one_of("sqlite", "postgresql"),
            "\"sqlite\" (embedded default) or \"postgresql\""),
        Key("path", "quarantine", as_path, "sqlite: folder for the index and the message files"),
        Key("url", None, _postgresql_url,
            "postgresql: shared store (index and message bytes) for several gateways",
            commented=True, example="postgresql://sealgate@db.example.com/sealgate"),
        Key("encrypt_to", [], list_of(as_path),
            "PEM certificates of compliance reviewers; non-empty: stored messages "
            "are CMS-encrypted to them"),
        Key("release_smtp", "127.0.0.1:10026", _host_port,
            "where released messages are re-injected (a Postfix smtpd without milters)"),
        Key("retention", "90d", as_duration, "how long quarantined messages are kept"),
        Key("notify_sender", "none", one_of("none", "internal", "all"),
            "tell the sender a message is held (no content of it): \"none\", \"internal\" "
            "senders only, or \"all\""),
        Key("notify_from", "", _optional_address,
            "From: address of those notices; empty: postmaster@<authserv_id>"),
        Key("compliance_address", "", _optional_address,
            "where `sealgate report --digest` mails the report; empty: --to is required"),
    ),
    "metrics": (
        Key("listen", "127.0.0.1:9489", _listen, "Prometheus /metrics; empty string disables"),
    ),
    "policy": (
        Key("file", "policies/strict.toml", as_path, "the policy (see policies/*.toml)"),
    ),
    "card": (
        Key("module", "", as_str,
            "endpoint: PKCS#11 module (OpenSC: /usr/lib/x86_64-linux-gnu/opensc-pkcs11.so)",
            commented=True, example="/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"),
        Key("token_label", "", as_str, "endpoint: label of the user's card", commented=True),
        Key("key_label", "sealgate-smime", as_nonempty_str,
            "endpoint: label of the key pair and certificate on the card", commented=True),
    ),
}

_SECTION_TYPES: dict[str, type] = {
    "milter": MilterConfig, "directory": DirectoryConfig, "trust": TrustConfig,
    "quarantine": QuarantineConfig, "metrics": MetricsConfig, "policy": PolicyConfig,
    "card": CardConfig,
}


def _read_section(reader: Reader, table: Mapping[str, Any], section: str | None,
                  base: Path) -> dict[str, Any]:
    keys = SCHEMA[section]
    known = [k.name for k in keys]
    if section is None:
        table = {k: v for k, v in table.items() if k not in _SECTION_TYPES}
        known += list(_SECTION_TYPES)
    reader.check_keys(table, section or "", known)
    values: dict[str, Any] = {}
    for key in keys:
        name = join_key(section or "", key.name)
        raw = table.get(key.name, key.default)
        if raw is None:
            values[key.name] = None
            continue
        try:
            values[key.name] = key.convert(raw, base)
        except ElementErrors as exc:
            for index, message in exc.problems:
                reader.error(f"{name}[{index}]", message)
            values[key.name] = exc.partial  # the good elements are still checked
        except ValueError as exc:
            reader.error(name, str(exc))
            values[key.name] = None
    return values


def _check_files(reader: Reader, v: dict[str, dict[str, Any]]) -> None:
    """Cross-key and file-system checks, once every key has its type."""
    d, t, q, p = v["directory"], v["trust"], v["quarantine"], v["policy"]
    if d["backend"] == "files" and d["path"] is not None and not d["path"].is_dir():
        reader.error("directory.path", f"folder {d['path']} does not exist "
                     "(create it and put the published PEM certificates there)")
    if d["backend"] == "ldap":
        if d["url"] is None and not reader.has_error("directory.url"):
            reader.error("directory.url", "required with backend \"ldap\" "
                         "(e.g. url = \"ldap://127.0.0.1:389\")")
        if d["base_dn"] == "":
            reader.error("directory.base_dn", "required with backend \"ldap\" "
                         "(e.g. base_dn = \"ou=people,dc=example,dc=com\")")
        if d["bind_password_file"] is not None and not d["bind_password_file"].is_file():
            reader.error("directory.bind_password_file",
                         f"file {d['bind_password_file']} does not exist")
        if d["tls_ca_file"] is not None and not d["tls_ca_file"].is_file():
            reader.error("directory.tls_ca_file", f"file {d['tls_ca_file']} does not exist")
        if d["starttls"] and (d["url"] or "").lower().startswith("ldaps://"):
            reader.error("directory.starttls", "ldaps:// is TLS already; StartTLS is for ldap://")
    elif d["backend"] == "files":
        for key in ("url", "base_dn", "bind_dn", "bind_password_file", "tls_ca_file"):
            if d[key]:
                reader.warn(f"directory.{key}", "ignored with backend \"files\"")
    if t["anchors"] is not None:
        if not t["anchors"]:
            reader.error("trust.anchors", "at least one trust anchor is needed "
                         "(the PEM file of the CA that issues your users' certificates)")
        for i, anchor in enumerate(t["anchors"]):
            if anchor is not None and not anchor.is_file():
                reader.error(f"trust.anchors[{i}]", f"file {anchor} does not exist")
    for i, source in enumerate(t["crls"] or ()):
        if isinstance(source, Path) and not source.is_file():
            # Not fatal: it may be published later; until then its issuer's
            # signers get crl-unavailable (tempfail).
            reader.warn(f"trust.crls[{i}]", f"file {source} does not exist yet "
                        "(messages signed under its issuer are tempfailed until it does)")
    if q["backend"] == "postgresql" and q["url"] is None and not reader.has_error("quarantine.url"):
        reader.error("quarantine.url", "required with backend \"postgresql\" "
                     "(e.g. url = \"postgresql://sealgate@db.example.com/sealgate\")")
    for i, cert in enumerate(q["encrypt_to"] or ()):
        if cert is not None and not cert.is_file():
            reader.error(f"quarantine.encrypt_to[{i}]", f"file {cert} does not exist")
    if p["file"] is not None and not p["file"].is_file():
        reader.error("policy.file", f"file {p['file']} does not exist "
                     "(start from policies/strict.toml or policies/compat.toml)")


def load_config(path: Path) -> Config:
    """Read and validate a config file; raises ConfigErrors listing every problem."""
    path = Path(path)
    reader = Reader(path)
    document = reader.document()
    base = path.absolute().parent

    values: dict[str, dict[str, Any]] = {}
    values[""] = _read_section(reader, document, None, base)
    for section in _SECTION_TYPES:
        table = document.get(section, {})
        if not isinstance(table, dict):
            reader.error(section, f"{show(table)} is not a table (write [{section}])")
            table = {}
        values[section] = _read_section(reader, table, section, base)
    _check_files(reader, values)
    if values[""]["internal_domains"] == ():
        reader.warn("internal_domains", "empty: no mail is internal or outbound, "
                    "every message is judged as inbound")
    reader.raise_if_errors()

    sections = {name: cls(**values[name]) for name, cls in _SECTION_TYPES.items()}
    return Config(source=path, warnings=tuple(reader.warnings), **values[""], **sections)


# --------------------------------------------------------------- documentation


def _toml_value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return show(value)


def default_config_text() -> str:
    """A commented TOML file of every key at its default (SPEC §4)."""
    lines = ["# sealgate configuration (SPEC §4). Active keys show their defaults;",
             "# commented keys belong to another backend (LDAP, PostgreSQL).",
             "# Relative paths are relative to this file. Unknown keys are errors.",
             "# Durations: 30s, 10m, 2h, 90d. Sizes: 512KiB, 50MiB."]
    lines.append("")
    for section, keys in SCHEMA.items():
        if section:
            lines += ["", f"[{section}]"]
        for key in keys:
            value = key.example if key.example is not None else key.default
            lines.append(f"# {key.doc}")
            lines.append(f"{'# ' if key.commented else ''}{key.name} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def describe(config: Config) -> str:
    """One line for people: what this configuration will do."""
    d = config.directory
    where = d.path if d.backend == "files" else d.url
    return (f"authserv_id {config.authserv_id}, internal {', '.join(config.internal_domains)}; "
            f"directory {d.backend} {where} (cache {format_duration(d.cache_ttl)}); "
            f"{len(config.trust.anchors)} anchor(s), {len(config.trust.crls)} CRL source(s); "
            f"policy {config.policy.file}")
