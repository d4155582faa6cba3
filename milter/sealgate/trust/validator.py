"""The trust store: anchors, CRLs and path validation for signers and recipients.

Division of labour (and why):

- **pyhanko-certvalidator** builds the path to an anchor and runs the RFC 5280
  §6.1 checks that do not depend on time: chain signatures, names, basic
  constraints, CA key usage, name and policy constraints, unsupported critical
  extensions, weak hashes in certificate signatures. It runs with revocation
  checking off and a time tolerance of a century, so its answer depends only
  on (certificate, extra certificates) and is cached per that pair.
- **this module** then judges, per call and cheaply: the validity of *every*
  certificate on the path at ``at``, the anchor included (pyhanko does not
  check an anchor's dates; SPEC §3 says a CA on the path), the leaf's key usage
  and extended key usage for S/MIME, and revocation with :mod:`.crl` — on a
  current CRL means revoked whatever the revocation date, and "current" is
  judged at ``now``, not at ``at``.

Thread safety: the path cache is guarded by a lock; each pyhanko run gets its
own ValidationContext and event loop (the trust manager shared by all of them
is read-only), so milter threads can validate concurrently. A cache miss costs
a few milliseconds; a hit costs microseconds.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from asn1crypto import x509
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.authority import AuthorityWithCert
from pyhanko_certvalidator.errors import (
    DisallowedAlgorithmError,
    InvalidCertificateError,
    PathBuildingError,
    PathValidationError,
    ValidationError,
)
from pyhanko_certvalidator.policy_decl import NO_REVOCATION, CertRevTrustPolicy
from pyhanko_certvalidator.registry import SimpleTrustManager

from ..certs import fingerprint, issuer_text, name_rfc4514, serial_hex, serial_of, subject_key
from ..codes import Code
from ..model import Finding
from .crl import CrlIndex

# Makes pyhanko's validity check a no-op: dates are judged here, at `at`.
_NO_TIME_CHECK = timedelta(days=36500)
_CACHE_SIZE = 4096

_SIGNING_KU = frozenset({"digital_signature", "non_repudiation"})
_ENCRYPTION_KU = frozenset({"key_encipherment", "key_agreement"})
_SMIME_EKU = frozenset({"email_protection", "any_extended_key_usage"})


@dataclass(init=False, unsafe_hash=True)  # never changed after __init__
class TrustResult:
    """What the trust store found about one certificate.

    ``findings`` is empty when the certificate is valid for the purpose at
    ``at``. ``notes`` holds facts the verdict should mention without failing
    on them, e.g. an issuer that is not revocation-checked because
    ``trust.require_crl = false`` and no CRL source names it. ``path`` runs
    from the anchor to the certificate; empty when no path was found.
    """

    findings: list[Finding]
    notes: list[str] = field(default_factory=list)
    path: tuple[x509.Certificate, ...] = ()

    def __init__(self, findings: list[Finding], notes: list[str] | None = None,
                 path: tuple[x509.Certificate, ...] = ()) -> None:
        # Written out so that it is compiled: see smime.ber.Tlv.
        self.findings = findings
        self.notes = notes if notes is not None else []
        self.path = path

    @property
    def ok(self) -> bool:
        return not self.findings


@dataclass(frozen=True)
class _Path:
    """A built path and the facts about it that do not change from call to call."""

    certs: tuple[x509.Certificate, ...]  # anchor first (when it is a certificate), leaf last
    windows: tuple[tuple[datetime, datetime], ...]  # (notBefore, notAfter) per certificate
    usage_problems: dict[frozenset[str], str | None]  # purpose -> leaf KU/EKU problem

    @classmethod
    def of(cls, certs: Sequence[x509.Certificate]) -> _Path:
        windows = []
        for cert in certs:
            validity = cert["tbs_certificate"]["validity"]
            windows.append((validity["not_before"].native, validity["not_after"].native))
        leaf = certs[-1]
        problems = {usage: _usage_problem(leaf, usage) for usage in (_SIGNING_KU, _ENCRYPTION_KU)}
        return cls(tuple(certs), tuple(windows), problems)


@dataclass(frozen=True)
class _NoPath:
    code: Code
    reason: str


def _who(cert: x509.Certificate, role: str) -> str:
    return f"{role} serial {serial_hex(cert)} issued by {issuer_text(cert)}"


class PathCache:
    """(certificate, extra certificates) -> pyhanko's time-independent answer, LRU."""

    def __init__(self, size: int = _CACHE_SIZE) -> None:
        self._size = size
        self._items: OrderedDict[tuple[bytes, ...], _Path | _NoPath] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[bytes, ...]) -> _Path | _NoPath | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: tuple[bytes, ...], value: _Path | _NoPath) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


class Validator:
    """Path building and the checks on top; :class:`sealgate.trust.TrustStore` wraps it."""

    def __init__(self, anchors: Sequence[x509.Certificate], crls: CrlIndex,
                 require_crl: bool, cache: PathCache | None = None) -> None:
        self.anchors = tuple(anchors)
        self.crls = crls
        self.require_crl = require_crl
        self._trust_manager = SimpleTrustManager.build(trust_roots=list(self.anchors))
        self._revinfo_policy = CertRevTrustPolicy(revocation_checking_policy=NO_REVOCATION)
        self._cache = cache or PathCache()

    @property
    def cache(self) -> PathCache:
        return self._cache

    # ------------------------------------------------------------ public checks

    def check(self, cert: x509.Certificate, at: datetime, now: datetime,
              extra_certs: Iterable[x509.Certificate], role: str,
              usage: frozenset[str]) -> TrustResult:
        at, now = _aware(at), _aware(now)
        path = self._path(cert, tuple(extra_certs))
        if isinstance(path, _NoPath):
            return TrustResult([Finding(path.code, f"{_who(cert, role)}: {path.reason}")])
        findings: list[Finding] = []
        if usage in path.usage_problems:
            usage_problem = path.usage_problems[usage]
        else:
            usage_problem = _usage_problem(cert, usage)
        if usage_problem:
            findings.append(Finding(Code.UNTRUSTED_SIGNER, f"{_who(cert, role)}: {usage_problem}"))
        for not_before, not_after in path.windows:
            if not not_before <= at <= not_after:  # some certificate is out of its dates
                findings.extend(_dates(path, at, role))
                break
        revocation, notes = self._revocation(path.certs, now, role)
        findings.extend(revocation)
        return TrustResult(findings, notes, path.certs)

    def is_revoked(self, issuer_key: str, serial: int, now: datetime) -> bool | None:
        entry = self.crls.current_by_name(issuer_key, _aware(now))
        if entry is None:
            return None
        return serial in entry.revoked

    # ------------------------------------------------------------ path building

    def _path(self, cert: x509.Certificate,
              extras: tuple[x509.Certificate, ...]) -> _Path | _NoPath:
        key = (fingerprint(cert), *sorted(fingerprint(c) for c in extras))
        cached = self._cache.get(key)
        if cached is None:
            cached = self._build(cert, extras)
            self._cache.put(key, cached)
        return cached

    def _build(self, cert: x509.Certificate,
               extras: tuple[x509.Certificate, ...]) -> _Path | _NoPath:
        context = ValidationContext(
            trust_manager=self._trust_manager,
            other_certs=list(extras),
            moment=datetime(2000, 1, 1, tzinfo=UTC),  # irrelevant: see _NO_TIME_CHECK
            time_tolerance=_NO_TIME_CHECK,
            revinfo_policy=self._revinfo_policy,
            allow_fetching=False,
        )
        validator = CertificateValidator(cert, validation_context=context)
        loop = asyncio.new_event_loop()
        try:
            found = loop.run_until_complete(validator.async_validate_path())
        except DisallowedAlgorithmError as exc:
            return _NoPath(Code.WEAK_ALGORITHM, f"the certificate path uses a weak algorithm "
                                                f"({exc.failure_msg})")
        except PathBuildingError:
            return _NoPath(Code.UNTRUSTED_SIGNER, "no path to a trust anchor")
        except (PathValidationError, InvalidCertificateError, ValidationError) as exc:
            return _NoPath(Code.UNTRUSTED_SIGNER,
                           f"the path to a trust anchor is not valid ({exc.failure_msg})")
        finally:
            loop.close()
        certs: list[x509.Certificate] = []
        authority = found.trust_anchor.authority
        if isinstance(authority, AuthorityWithCert):
            certs.append(authority.certificate)
        certs.extend(found.iter_certs(include_root=False))
        if not certs or fingerprint(certs[-1]) != fingerprint(cert):
            certs.append(cert)  # the certificate is itself an anchor
        return _Path.of(certs)

    # ------------------------------------------------------------ revocation

    def _revocation(self, certs: tuple[x509.Certificate, ...], now: datetime,
                    role: str) -> tuple[list[Finding], list[str]]:
        findings: list[Finding] = []
        notes: list[str] = []
        # The anchor is trusted by configuration, not by status (RFC 5280 §6.1).
        for index in range(1, len(certs)):
            issuer, subject = certs[index - 1], certs[index]
            entry = self.crls.current(issuer, subject, now)
            if entry is not None:
                serial = serial_of(subject)
                if serial in entry.revoked:
                    who = _who(subject, role if index == len(certs) - 1 else "CA")
                    when = entry.revoked[serial]
                    date = f" since {when:%Y-%m-%d %H:%M:%SZ}" if when else ""
                    # SPEC §3: revoked even when the date is after signing time (back-dating).
                    findings.append(Finding(Code.REVOKED_SIGNER,
                                            f"{who} is revoked{date} (CRL from {entry.source})"))
                continue
            who = _who(subject, role if index == len(certs) - 1 else "CA")
            issuer_key = subject_key(issuer)
            if not self.require_crl and not self.crls.has_source(issuer_key):
                notes.append(f"{who}: not revocation-checked, no CRL source for "
                             f"{name_rfc4514(issuer.subject)} (trust.require_crl = false)")
                continue
            findings.append(Finding(
                Code.CRL_UNAVAILABLE,
                f"{who}: no CRL valid now for {name_rfc4514(issuer.subject)}: "
                f"{self.crls.stale_reason(issuer_key, now)}"))
        return findings, notes


def _aware(moment: datetime) -> datetime:
    """Certificates and CRLs carry UTC; a naive time from a caller is taken as UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _usage_problem(cert: x509.Certificate, usage: frozenset[str]) -> str | None:
    """RFC 8550 §4.4.2-4.4.4; absent extensions do not restrict (RFC 5280)."""
    try:
        key_usage = cert.key_usage_value
        ext_key_usage = cert.extended_key_usage_value
    except (ValueError, TypeError):
        return "key usage extensions cannot be parsed"
    if key_usage is not None and not (usage & set(key_usage.native)):
        wanted = " or ".join(sorted(usage))
        return f"key usage {sorted(key_usage.native)} does not allow {wanted}"
    if ext_key_usage is not None and not (_SMIME_EKU & set(ext_key_usage.native)):
        return f"extended key usage {list(ext_key_usage.native)} lacks emailProtection"
    return None


def _dates(path: _Path, at: datetime, role: str) -> list[Finding]:
    findings = []
    last = len(path.certs) - 1
    for index, (not_before, not_after) in enumerate(path.windows):
        if not_before <= at <= not_after:
            continue
        who = _who(path.certs[index], role if index == last else "CA")
        if at < not_before:
            findings.append(Finding(Code.EXPIRED_SIGNER,
                                    f"{who} is not valid until {not_before:%Y-%m-%d %H:%M:%SZ} "
                                    f"(checked at {at:%Y-%m-%d %H:%M:%SZ})"))
        elif at > not_after:
            findings.append(Finding(Code.EXPIRED_SIGNER,
                                    f"{who} expired {not_after:%Y-%m-%d %H:%M:%SZ} "
                                    f"(checked at {at:%Y-%m-%d %H:%M:%SZ})"))
    return findings


SIGNING_USAGE = _SIGNING_KU
ENCRYPTION_USAGE = _ENCRYPTION_KU
