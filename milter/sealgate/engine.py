"""The decision, end to end: message bytes + envelope -> verdict.

``Gateway.evaluate`` is the one path that ``sealgate check``, the milter and
the tests share. It holds only loaded, immutable material (config, policy,
trust store, directory, limits); time comes in as an argument.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

from .addresses import normalize_address
from .codes import TRANSIENT_CODES, AuthResult, Code
from .config import Config, load_config
from .directory.base import Directory
from .directory.files import FilesDirectory
from .errors import ConfigError, SealgateError
from .facts import PASS, gather
from .model import Envelope, Facts, Finding, Inspection, SignerReport, Verdict
from .policy import Policy, decide, direction_of, load_policy
from .smime.limits import Limits
from .smime.structure import inspect
from .trust import TrustStore
from .trust.sources import CrlLoader

UTC = dt.UTC
log = logging.getLogger(__name__)


def header_addresses(values: Iterable[str | None]) -> list[str]:
    """addr-specs from address header values (From, To, Cc), lower-cased, in order."""
    present = [v for v in values if v]
    return [normalize_address(addr) for _name, addr in email.utils.getaddresses(present) if addr]


def complete_envelope(envelope: Envelope | None, inspection: Inspection,
                      sender: str | None = None,
                      recipients: tuple[str, ...] | None = None) -> Envelope:
    """Fill what the envelope lacks from the message headers.

    Without an envelope (``sealgate check``), the sender defaults to the From:
    address and the recipients to To: and Cc: (SPEC §7).
    """
    if envelope is not None and envelope.from_header is not None:
        return envelope  # the milter read From: as it arrived
    from_addrs = header_addresses([inspection.header("From")])
    from_header = from_addrs[0] if from_addrs else None
    if envelope is None:
        if recipients is None:
            recipients = tuple(header_addresses([inspection.header("To"),
                                                 inspection.header("Cc")]))
        return Envelope(sender=normalize_address(sender) if sender is not None
                        else (from_header or ""),
                        recipients=tuple(normalize_address(r) for r in recipients),
                        from_header=from_header)
    if envelope.from_header is None:
        envelope = replace(envelope, from_header=from_header)
    return envelope


def auth_result(facts: Facts, violations: list[Finding]) -> AuthResult:
    """RFC 7281 §3 smime= result from what was seen about the signers."""
    codes = {f.code for f in facts.candidates}
    signers: list[SignerReport] = facts.signers
    if not signers:
        if Code.MALFORMED in codes or Code.TOO_COMPLEX in codes:
            return AuthResult.PERMERROR
        return AuthResult.NONE
    results = {s.result for s in signers}
    if PASS in results:
        return AuthResult.PASS
    if results & {str(c) for c in TRANSIENT_CODES}:
        return AuthResult.TEMPERROR
    if str(Code.BAD_SIGNATURE) in results:
        return AuthResult.FAIL
    if any(s.certificate is None for s in signers):
        return AuthResult.NEUTRAL  # no certificate to verify with
    return AuthResult.POLICY  # verified math, but untrusted / expired / revoked certificate


@dataclass
class Gateway:
    config: Config
    policy: Policy
    trust: TrustStore
    directory: Directory
    limits: Limits
    # CRL sources are re-read every trust.crl_refresh, and ahead of the earliest
    # nextUpdate (a CA publishes a new CRL when a card is lost, and before the
    # old one's nextUpdate). The loader keeps each source's last good CRLs.
    crl_loader: CrlLoader | None = field(default=None, repr=False, compare=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False, compare=False)
    wall_clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(UTC), repr=False,
                                                  compare=False)
    _refreshed: float = field(init=False, repr=False, compare=False)
    _lock: threading.Lock = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Set here, not as field defaults: compiled (sealgate.native), a native
        # class does not fill init=False fields from their defaults.
        self._refreshed = -1.0
        self._lock = threading.Lock()

    def _refresh_due(self) -> bool:
        elapsed = self.clock() - self._refreshed
        refresh = self.config.trust.crl_refresh
        if elapsed >= refresh:
            return True
        # Ahead of nextUpdate: from min(refresh/2, 5 min) before the earliest one
        # (and after it, while the CA has not published), and while a source has
        # no usable CRL at all, retried every min(refresh, 30 s) -- not per message.
        if elapsed < min(refresh, 30):
            return False
        if self.crl_loader is not None and self.crl_loader.pending:
            return True  # a source with no usable CRL yet (down at start): retry soon
        earliest = self.trust.earliest_crl_next_update
        if earliest is None:
            return False
        ahead = dt.timedelta(seconds=min(refresh / 2, 300))
        return self.wall_clock() >= earliest - ahead

    def refresh_crls(self) -> None:
        """Re-read every CRL source now (the caller holds no lock)."""
        with self._lock:
            self._refresh_locked()

    def _refresh_locked(self) -> None:
        self._refreshed = self.clock()
        try:
            if self.crl_loader is not None:
                entries, pending = self.crl_loader.load()
                self.trust = self.trust.with_entries(entries, pending)
            else:
                self.trust = self.trust.with_crls(list(self.config.trust.crls),
                                                  config_file=str(self.config.source))
            log.info("event=crl-refresh sources=%d", len(self.config.trust.crls))
        except SealgateError as exc:
            # Keep what was loaded: a CRL past its nextUpdate turns into
            # crl-unavailable (tempfail) by itself, never into an accept.
            log.error("event=crl-refresh-failed error=%r: keeping the CRLs loaded", str(exc))

    def current_trust(self) -> TrustStore:
        """The trust store, its CRLs re-read when due (see :meth:`_refresh_due`)."""
        if self._refreshed < 0:
            self._refreshed = self.clock()
        if not self._refresh_due():
            return self.trust
        # One thread refreshes; the others go on with the CRLs loaded so far.
        if self._lock.acquire(blocking=False):
            try:
                if self._refresh_due():
                    self._refresh_locked()
            finally:
                self._lock.release()
        return self.trust

    def evaluate(self, source: IO[bytes], envelope: Envelope | None = None,
                 at: dt.datetime | None = None, now: dt.datetime | None = None, *,
                 sender: str | None = None,
                 recipients: tuple[str, ...] | None = None) -> Verdict:
        """Judge one message. Bad input gives a verdict; OSError may propagate (tempfail).

        ``sender``/``recipients`` stand in for a missing envelope (``check --from/--to``).
        """
        now = now or dt.datetime.now(UTC)
        source.seek(0)
        inspection = inspect(source, self.limits)
        env = complete_envelope(envelope, inspection, sender, recipients)
        internal = tuple(self.config.internal_domains)
        direction = direction_of(env, internal)
        facts = gather(inspection, env, direction, internal, self.current_trust(), self.directory,
                       at or now, now)
        if self.crl_loader is not None and self.config.trust.crl_distribution_points:
            # [trust] crl_distribution_points: a signer's CRL DP not seen before is
            # fetched now, and the message judged again with it.
            certs = [s.certificate for s in facts.signers if s.certificate is not None]
            if self.crl_loader.learn(certs):
                self.refresh_crls()
                facts = gather(inspection, env, direction, internal, self.trust, self.directory,
                               at or now, now)
        verdict = decide(facts, self.policy, env)
        # decide() made it for this call alone: set in place (dataclasses.replace costs 1.5 µs)
        verdict.auth_result = auth_result(facts, verdict.violations)
        return verdict

    def too_large(self, envelope: Envelope, size: int) -> Verdict:
        """The verdict for a message the milter stopped reading past max_message_size."""
        internal = tuple(self.config.internal_domains)
        direction = direction_of(envelope, internal)
        finding = Finding(Code.TOO_COMPLEX, f"message of {size} bytes or more exceeds "
                          f"milter.max_message_size ({self.limits.max_size} bytes)")
        facts = Facts(structure="unknown", direction=direction, candidates=[finding],
                      signers=[], recipients=[])
        verdict = decide(facts, self.policy, envelope)
        return replace(verdict, auth_result=AuthResult.PERMERROR)


def build_directory(config: Config) -> Directory:
    """The configured backend; with ``smimea = true``, external addresses go to DNS."""
    backend = config.directory.backend
    directory: Directory
    if backend == "files":
        directory = FilesDirectory(Path(config.directory.path))
    elif backend == "ldap":
        from .directory.ldap import LdapDirectory  # connects lazily, at the first lookup

        try:
            directory = LdapDirectory.from_config(config)
        except SealgateError as exc:  # the bind password file cannot be read
            raise ConfigError(str(config.source), "directory.bind_password_file", str(exc)) from None
    else:
        raise ConfigError(str(config.source), "directory.backend",
                          f"backend {backend!r} is not available (use \"files\" or \"ldap\")")
    if config.directory.smimea:
        from .directory.smimea import SmimeaDirectory

        directory = SmimeaDirectory.from_config(config, directory)
    return directory


def load_gateway(config_path: Path | str) -> Gateway:
    """Load config, policy, trust anchors, CRLs and directory; raises ConfigError(s)."""
    config = load_config(Path(config_path))
    policy = load_policy(Path(config.policy.file))
    trust = TrustStore.load([Path(p) for p in config.trust.anchors], [],
                            require_crl=config.trust.require_crl)
    loader = CrlLoader(config.trust.crls, trust.anchors, timeout=config.directory.timeout,
                       config_file=str(config.source), tls_ca_file=config.directory.tls_ca_file)
    trust = trust.with_entries(*loader.load(strict=True))
    limits = Limits(max_size=config.milter.max_message_size)
    return Gateway(config, policy, trust, build_directory(config), limits, crl_loader=loader)
