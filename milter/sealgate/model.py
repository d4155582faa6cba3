"""The values that cross module boundaries.

``smime.structure.inspect`` produces an :class:`Inspection` (layers, as seen
without any key); ``engine.evaluate`` turns it, with the trust store and the
directory, into :class:`Facts`; ``policy.rules.decide`` turns facts, policy
and envelope into a :class:`Verdict`. All are plain data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asn1crypto import cms, x509

from .codes import Action, AuthResult, Code, Direction
from .smime.cmsfields import RecipientFields, SignerFields


@dataclass(init=False, unsafe_hash=True)  # never changed after __init__
class Finding:
    """One violation, with a detail that names what and where."""

    code: Code
    detail: str

    def __init__(self, code: Code, detail: str) -> None:
        # Written out so that it is compiled: see smime.ber.Tlv.
        self.code = code
        self.detail = detail

    def as_dict(self) -> dict[str, str]:
        return {"code": str(self.code), "detail": self.detail}


@dataclass(init=False, unsafe_hash=True)  # never changed after __init__
class Envelope:
    sender: str  # "" for the null sender
    recipients: tuple[str, ...]
    from_header: str | None = None  # the addr-spec of the From: header, if any
    client_address: str = ""
    queue_id: str = ""

    def __init__(self, sender: str, recipients: tuple[str, ...], from_header: str | None = None,
                 client_address: str = "", queue_id: str = "") -> None:
        # Written out so that it is compiled: see smime.ber.Tlv.
        self.sender = sender
        self.recipients = recipients
        self.from_header = from_header
        self.client_address = client_address
        self.queue_id = queue_id


# ---------------------------------------------------------------- layers

@dataclass(init=False)
class SignerInput:
    """One SignerInfo of a signed layer, before verification.

    ``content_digests`` holds the candidate digests of the signed content under
    the SignerInfo's digest algorithm: for detached signatures the CRLF-canonical
    content, and also the raw bytes when they differ (RFC 8551 §3.1.1). Empty
    when the digest algorithm is unknown.
    """

    signer_info: SignerFields | cms.SignerInfo  # asn1crypto's: built by tests and tools
    content_digests: list[bytes]
    econtent_type: str  # asn1crypto name ("data", "signed_data", ...) or dotted OID

    def __init__(self, signer_info: SignerFields | cms.SignerInfo, content_digests: list[bytes],
                 econtent_type: str) -> None:
        # Written out so that it is compiled: see smime.ber.Tlv.
        self.signer_info = signer_info
        self.content_digests = content_digests
        self.econtent_type = econtent_type


@dataclass(init=False)
class SignedLayer:
    where: str  # MIME part path, "1" is the whole message, "1.2" its second part
    detached: bool
    certificates: list[x509.Certificate]
    signers: list[SignerInput]
    inner: Layer | None  # None: the signed content could not be inspected (see findings)
    kind: str = "signed"

    def __init__(self, where: str, detached: bool, certificates: list[x509.Certificate],
                 signers: list[SignerInput], inner: Layer | None, kind: str = "signed") -> None:
        # Written out so that it is compiled: see smime.ber.Tlv.
        self.where = where
        self.detached = detached
        self.certificates = certificates
        self.signers = signers
        self.inner = inner
        self.kind = kind


@dataclass(init=False)
class EncryptedLayer:
    where: str
    authenticated: bool  # authEnveloped-data (RFC 5083)
    content_algorithm: str  # asn1crypto algorithm name ("aes256_cbc") or dotted OID
    content_key_bits: int | None
    recipients: list[RecipientFields]
    kind: str = "encrypted"

    def __init__(self, where: str, authenticated: bool, content_algorithm: str,
                 content_key_bits: int | None, recipients: list[RecipientFields],
                 kind: str = "encrypted") -> None:
        # Written out so that it is compiled: see smime.ber.Tlv.
        self.where = where
        self.authenticated = authenticated
        self.content_algorithm = content_algorithm
        self.content_key_bits = content_key_bits
        self.recipients = recipients
        self.kind = kind


@dataclass
class CompressedLayer:
    where: str
    inner: Layer | None
    kind: str = "compressed"


@dataclass
class PlainLayer:
    where: str
    content_type: str  # lower-case type/subtype
    kind: str = "plain"


Layer = SignedLayer | EncryptedLayer | CompressedLayer | PlainLayer


def structure_of(layer: Layer | None) -> str:
    """SPEC §2 naming: plain, signed(plain), encrypted, signed(compressed(plain))."""
    if layer is None:
        return "malformed"
    if isinstance(layer, PlainLayer):
        return "plain"
    if isinstance(layer, EncryptedLayer):
        return "encrypted"
    return f"{layer.kind}({structure_of(layer.inner)})"


@dataclass(init=False)
class Inspection:
    headers: list[tuple[str, str]]  # top-level header fields, unfolded, in order
    root: Layer | None
    findings: list[Finding] = field(default_factory=list)  # malformed / too-complex / weak content cipher
    size: int = 0

    def __init__(self, headers: list[tuple[str, str]], root: Layer | None,
                 findings: list[Finding] | None = None, size: int = 0) -> None:
        # Written out so that it is compiled: see smime.ber.Tlv.
        self.headers = headers
        self.root = root
        self.findings = findings if findings is not None else []
        self.size = size

    @property
    def structure(self) -> str:
        return structure_of(self.root)

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None


# ---------------------------------------------------------------- results

@dataclass(init=False)
class SignerReport:
    """One verified (or not) signer, as reported in JSON and headers."""

    email: str | None  # first address of the certificate, None when no certificate
    emails: tuple[str, ...]
    serial: str  # lower-case hex
    issuer: str  # RFC 4514 string
    result: str  # "pass", or the violation code that failed it
    where: str = ""
    certificate: x509.Certificate | None = None
    signing_time: str | None = None  # ISO 8601 from the signingTime attribute, as claimed

    def __init__(self, email: str | None, emails: tuple[str, ...], serial: str, issuer: str,
                 result: str, where: str = "", certificate: x509.Certificate | None = None,
                 signing_time: str | None = None) -> None:
        # Written out so that it is compiled: see smime.ber.Tlv.
        self.email = email
        self.emails = emails
        self.serial = serial
        self.issuer = issuer
        self.result = result
        self.where = where
        self.certificate = certificate
        self.signing_time = signing_time

    def as_dict(self) -> dict[str, object]:
        return {"email": self.email, "serial": self.serial, "issuer": self.issuer,
                "result": self.result, "signing_time": self.signing_time}


@dataclass(init=False)
class RecipientReport:
    address: str
    covered: bool | None  # None: not judged (external, or content not encrypted)

    def __init__(self, address: str, covered: bool | None) -> None:
        # Written out so that it is compiled: see smime.ber.Tlv.
        self.address = address
        self.covered = covered

    def as_dict(self) -> dict[str, object]:
        return {"address": self.address, "covered": self.covered}


@dataclass(init=False)
class Facts:
    """Everything the checks found, before the policy looks at it.

    ``candidates`` holds every violation any rule could care about; the policy
    keeps those its matched rule requires (SPEC §5).
    """

    structure: str
    direction: Direction
    candidates: list[Finding]
    signers: list[SignerReport]
    recipients: list[RecipientReport]
    notes: list[str] = field(default_factory=list)  # e.g. an issuer not revocation-checked

    def __init__(self, structure: str, direction: Direction, candidates: list[Finding],
                 signers: list[SignerReport], recipients: list[RecipientReport],
                 notes: list[str] | None = None) -> None:
        # Written out so that it is compiled: see smime.ber.Tlv.
        self.structure = structure
        self.direction = direction
        self.candidates = candidates
        self.signers = signers
        self.recipients = recipients
        self.notes = notes if notes is not None else []


@dataclass(init=False)
class Verdict:
    action: Action
    rule: str | None
    direction: Direction
    structure: str
    violations: list[Finding]
    signers: list[SignerReport]
    recipients: list[RecipientReport]
    auth_result: AuthResult = AuthResult.NONE
    notes: list[str] = field(default_factory=list)

    def __init__(self, action: Action, rule: str | None, direction: Direction, structure: str,
                 violations: list[Finding], signers: list[SignerReport],
                 recipients: list[RecipientReport], auth_result: AuthResult = AuthResult.NONE,
                 notes: list[str] | None = None) -> None:
        # Written out so that it is compiled: see smime.ber.Tlv.
        self.action = action
        self.rule = rule
        self.direction = direction
        self.structure = structure
        self.violations = violations
        self.signers = signers
        self.recipients = recipients
        self.auth_result = auth_result
        self.notes = notes if notes is not None else []

    @property
    def codes(self) -> list[str]:
        return sorted({str(f.code) for f in self.violations})

    def as_dict(self) -> dict[str, object]:
        return {
            "action": str(self.action),
            "rule": self.rule,
            "direction": str(self.direction),
            "structure": self.structure,
            "violations": [f.as_dict() for f in self.violations],
            "signers": [s.as_dict() for s in self.signers],
            "recipients": [r.as_dict() for r in self.recipients],
            "notes": list(self.notes),
        }
