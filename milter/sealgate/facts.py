"""From an inspection to facts: every check, on every message (SPEC §3).

Pure over its inputs: the inspection, the envelope, the trust store, the
directory and the two times (``at`` for validity, ``now`` for CRL freshness
and recipients' current certificates). The policy decides later which of the
candidate violations count under the matched rule.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass

from asn1crypto import x509

from .addresses import is_internal
from .certs import (
    certificate_addresses,
    describe,
    fingerprint,
    issuer_serial,
    issuer_text,
    name_key_of,
    name_rfc4514_of,
    serial_hex,
)
from .codes import TRANSIENT_CODES, Code, Direction
from .directory.base import Directory
from .errors import DirectoryUnavailable
from .model import (
    EncryptedLayer,
    Envelope,
    Facts,
    Finding,
    Inspection,
    Layer,
    RecipientReport,
    SignedLayer,
    SignerInput,
    SignerReport,
)
from .smime import algorithms
from .smime.cmsfields import SignerFields, as_signer_fields
from .smime.verify import describe_sid, find_signer_certificate, signing_time, verify_signature
from .trust import TrustStore

log = logging.getLogger(__name__)
PASS = "pass"  # noqa: S105 - a result name, not a password


@dataclass(init=False)
class _Collector:
    """Candidate violations in order of discovery, each (code, detail) once."""

    items: list[Finding]

    def __init__(self) -> None:
        # Written out: compiled, as sealgate.smime.ber.Tlv's (a generated __init__ is interpreted).
        self.items = []

    def add(self, code: Code, detail: str) -> None:
        finding = Finding(code, detail)
        if finding not in self.items:
            self.items.append(finding)

    def extend(self, findings: list[Finding]) -> None:
        for f in findings:
            self.add(f.code, f.detail)


def visible_layers(root: Layer | None) -> tuple[list[SignedLayer], EncryptedLayer | None]:
    """The signed layers outside any encryption, and the outermost encrypted layer."""
    signed: list[SignedLayer] = []
    layer = root
    while layer is not None:
        if isinstance(layer, SignedLayer):
            signed.append(layer)
        elif isinstance(layer, EncryptedLayer):
            return signed, layer
        layer = getattr(layer, "inner", None)
    return signed, None


def _signer_report(layer: SignedLayer, cert: x509.Certificate | None, signer_info: SignerFields,
                   result: str) -> SignerReport:
    claimed = signing_time(signer_info)
    when = claimed.isoformat() if claimed else None
    if cert is None:
        if signer_info.sid_issuer is not None:
            serial = format(signer_info.sid_serial, "x")
            issuer = name_rfc4514_of(signer_info.sid_issuer)
        else:
            serial, issuer = "", describe_sid(signer_info)
        return SignerReport(None, (), serial, issuer, result, layer.where, None, when)
    emails = certificate_addresses(cert)
    return SignerReport(emails[0] if emails else None, emails, serial_hex(cert),
                        issuer_text(cert), result, layer.where, cert, when)


def judge_signers(layers: list[SignedLayer], trust: TrustStore, directory: Directory,
                  at: dt.datetime, now: dt.datetime, out: _Collector,
                  notes: list[str]) -> list[SignerReport]:
    reports: list[SignerReport] = []
    for layer in layers:
        if not layer.signers:
            out.add(Code.MALFORMED, f"part {layer.where}: signed-data without any SignerInfo")
        for number, signer in enumerate(layer.signers, 1):
            try:
                reports.append(_judge_signer(layer, signer, trust, directory, at, now, out, notes))
            except DirectoryUnavailable:
                raise
            except Exception as exc:  # noqa: BLE001 - bad input is normal input (SPEC §10)
                # Broken certificates and attributes surface as assorted exceptions from
                # the ASN.1 and path libraries; the message gets a verdict, the log the trace.
                log.warning("signer %d of part %s could not be processed", number, layer.where,
                            exc_info=True)
                out.add(Code.MALFORMED, f"part {layer.where}: signer {number} could not be "
                        f"processed ({type(exc).__name__}: {exc})")
                reports.append(SignerReport(None, (), "", "unreadable", str(Code.MALFORMED),
                                            layer.where))
    return reports


def _judge_signer(layer: SignedLayer, signer: SignerInput, trust: TrustStore, directory: Directory,
                  at: dt.datetime, now: dt.datetime, out: _Collector,
                  notes: list[str]) -> SignerReport:
    info = as_signer_fields(signer.signer_info)
    try:
        cert = find_signer_certificate(info, layer.certificates, directory)
    except DirectoryUnavailable as exc:
        out.add(Code.DIRECTORY_UNAVAILABLE, f"looking up the signer of part {layer.where}: {exc}")
        return _signer_report(layer, None, info, str(Code.DIRECTORY_UNAVAILABLE))
    if cert is None:
        out.add(Code.UNTRUSTED_SIGNER,
                f"part {layer.where}: signer certificate ({describe_sid(info)}) is "
                f"neither in the message nor in the directory")
        return _signer_report(layer, None, info, str(Code.UNTRUSTED_SIGNER))
    findings: list[Finding] = []
    bad = verify_signature(signer, cert)
    if bad is not None:
        findings.append(bad)
    checked = trust.check_signer(cert, at, extra_certs=layer.certificates, now=now)
    findings.extend(checked.findings)
    notes.extend(n for n in checked.notes if n not in notes)
    out.extend(algorithms.signer_weak_findings(info, cert, layer.where))
    out.extend(findings)
    return _signer_report(layer, cert, info, str(findings[0].code) if findings else PASS)


def _recipient_ids(layer: EncryptedLayer) -> Iterator[tuple[str, object, bytes | None]]:
    """Each RecipientInfo's key: ("iss", (issuer name key, serial), issuer DER) or ("ski", bytes, None)."""
    for ri in layer.recipients:  # kekri, pwri, ori have no rids: not addressed to a certificate
        for rid in ri.rids:
            if rid.issuer is not None:
                yield "iss", (name_key_of(rid.issuer), rid.serial), rid.issuer
            else:
                yield "ski", rid.key_id, None


def _ski(cert: x509.Certificate) -> bytes | None:
    return cert.key_identifier


def judge_recipients(layer: EncryptedLayer, envelope: Envelope, internal_domains: tuple[str, ...],
                     trust: TrustStore, directory: Directory, now: dt.datetime,
                     out: _Collector, extra_certs: tuple[x509.Certificate, ...] = ()
                     ) -> list[RecipientReport]:
    """Who the content key is wrapped for, against each internal recipient's certificates.

    ``extra_certs`` (the certificates the message's signatures carry) may hold the
    intermediate CAs between a recipient's published certificate and the anchors.
    """
    by_serial: dict[tuple[str, int], bytes] = {}
    by_ski: set[bytes] = set()
    for kind, key, issuer in _recipient_ids(layer):
        if kind == "iss" and issuer is not None:
            by_serial[key] = issuer  # type: ignore[index]
        else:
            by_ski.add(key)  # type: ignore[arg-type]

    out.extend(algorithms.cipher_weak_findings(layer.content_algorithm, layer.content_key_bits,
                                               layer.where))

    # recipient-revoked: the content key is wrapped for a revoked certificate (RFC 5280 §5.3).
    revoked_keys: set[tuple[str, int]] = set()
    for (issuer_key, serial), issuer in sorted(by_serial.items(), key=lambda kv: kv[0]):
        if trust.is_revoked_key(issuer_key, serial, now):
            revoked_keys.add((issuer_key, serial))
            out.add(Code.RECIPIENT_REVOKED,
                    f"part {layer.where}: encrypted to revoked certificate serial {serial:x} "
                    f"issued by {name_rfc4514_of(issuer)}")
    for ski in sorted(by_ski):
        try:
            cert = directory.find_by_key_identifier(ski)
        except DirectoryUnavailable as exc:
            out.add(Code.DIRECTORY_UNAVAILABLE, f"looking up recipient key {ski.hex()}: {exc}")
            continue
        if cert is not None and trust.is_revoked(cert.issuer, cert.serial_number, now):
            revoked_keys.add(issuer_serial(cert))
            out.add(Code.RECIPIENT_REVOKED,
                    f"part {layer.where}: encrypted to revoked certificate {describe(cert)}")

    reports: list[RecipientReport] = []
    for address in envelope.recipients:
        if not is_internal(address, internal_domains):
            reports.append(RecipientReport(address, None))
            continue
        try:
            published = directory.certificates_for(address)
        except DirectoryUnavailable as exc:
            out.add(Code.DIRECTORY_UNAVAILABLE, f"looking up recipient {address}: {exc}")
            reports.append(RecipientReport(address, None))
            continue
        if not published:
            out.add(Code.RECIPIENT_UNKNOWN, f"{address}: no certificate published in the directory")
            reports.append(RecipientReport(address, False))
            continue
        covered = False
        for cert in published:
            addressed = issuer_serial(cert) in by_serial or (_ski(cert) or b"") in by_ski
            if not addressed or issuer_serial(cert) in revoked_keys:
                continue
            problems = trust.validate_recipient(cert, now, extra_certs)
            transient = [p for p in problems if p.code in TRANSIENT_CODES]
            out.extend(transient)
            if not problems:
                covered = True
                break
        if not covered:
            out.add(Code.RECIPIENT_NOT_COVERED,
                    f"{address}: none of the {len(published)} published current certificate(s) "
                    f"is among the message's {len(layer.recipients)} RecipientInfo(s)")
        reports.append(RecipientReport(address, covered))
    return reports


def gather(inspection: Inspection, envelope: Envelope, direction: Direction,
           internal_domains: tuple[str, ...], trust: TrustStore, directory: Directory,
           at: dt.datetime, now: dt.datetime) -> Facts:
    out = _Collector()
    out.extend(inspection.findings)
    from_fields = sum(1 for name, _ in inspection.headers if len(name) == 4 and name.lower() == "from")
    if from_fields > 1:
        # RFC 5322 §3.6: exactly one From:. Clients differ in which one they show,
        # so a second one is a way to pass a signature off as someone else's.
        out.add(Code.MALFORMED, f"the message has {from_fields} From: header fields "
                "(RFC 5322 §3.6 allows one)")
    signed_layers, encrypted = visible_layers(inspection.root)

    if inspection.root is not None:
        if encrypted is None:
            if not signed_layers:
                out.add(Code.UNSIGNED, "the message has no S/MIME signature")
            out.add(Code.UNENCRYPTED, "the content is not inside an S/MIME encrypted layer")
        elif not signed_layers:
            out.add(Code.SIGNATURE_HIDDEN,
                    "encrypted, with no signature outside the encryption: the signer cannot be "
                    "verified at the gateway")

    notes: list[str] = []
    # A backend that cannot search by key identifier (LDAP) reads the people the
    # message names first, so a signer or recipient identified only by its key
    # identifier is found among their certificates.
    prefetch = getattr(directory, "prefetch", None)
    if prefetch is not None and (signed_layers or encrypted is not None):
        prefetch([a for a in (envelope.from_header, *envelope.recipients)
                  if a and is_internal(a, internal_domains)])
    signers = judge_signers(signed_layers, trust, directory, at, now, out, notes)
    _judge_sender(signers, envelope, internal_domains, directory, out)

    if encrypted is not None:
        try:
            carried = tuple(c for layer in signed_layers for c in layer.certificates)
            recipients = judge_recipients(encrypted, envelope, internal_domains, trust, directory,
                                          now, out, carried)
        except DirectoryUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - bad input is normal input (SPEC §10)
            log.warning("recipients of part %s could not be processed", encrypted.where,
                        exc_info=True)
            out.add(Code.MALFORMED, f"part {encrypted.where}: RecipientInfos could not be "
                    f"processed ({type(exc).__name__}: {exc})")
            recipients = [RecipientReport(a, None) for a in envelope.recipients]
    else:
        recipients = [RecipientReport(a, None) for a in envelope.recipients]
    return Facts(structure=inspection.structure, direction=direction, candidates=out.items,
                 signers=signers, recipients=recipients, notes=notes)


def _judge_sender(signers: list[SignerReport], envelope: Envelope,
                  internal_domains: tuple[str, ...], directory: Directory, out: _Collector) -> None:
    """signer-is-sender and signer-in-directory, judged over verified signers only.

    When no signer verified, the failure codes (bad-signature, untrusted-signer, ...)
    stand for these two, as unsigned/signature-hidden do when nothing is visible.
    """
    verified = [s for s in signers if s.result == PASS]
    if not verified:
        return
    sender = (envelope.from_header or "").lower()
    matching = [s for s in verified if sender and sender in s.emails]
    if not matching:
        names = ", ".join(sorted({e for s in verified for e in s.emails})) or "no address"
        out.add(Code.SIGNER_NOT_SENDER,
                f"From: {sender or '(none)'} is not named by any verified signer ({names})")
        return
    # External senders are judged only by a directory that answers for them
    # (SMIMEA, RFC 8162: sealgate.directory.smimea).
    if not is_internal(sender, internal_domains) and not getattr(directory, "external_lookups",
                                                                   False):
        return
    try:
        published = {fingerprint(c) for c in directory.certificates_for(sender)}
    except DirectoryUnavailable as exc:
        out.add(Code.DIRECTORY_UNAVAILABLE, f"looking up sender {sender}: {exc}")
        return
    if not any(s.certificate is not None and fingerprint(s.certificate) in published
               for s in matching):
        out.add(Code.SIGNER_NOT_IN_DIRECTORY,
                f"{sender}: the signing certificate (serial {matching[0].serial}) is not one the "
                f"directory publishes for this address")
