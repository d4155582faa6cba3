"""Stable names: violation codes, actions, requirements and SMTP replies.

Everything a user, a policy file or a script can see is spelled here once
(SPEC §3, §5) and imported everywhere else.
"""

from __future__ import annotations

from enum import StrEnum


class Code(StrEnum):
    """Violation codes of SPEC §3. The string values are a public contract."""

    UNSIGNED = "unsigned"
    UNENCRYPTED = "unencrypted"
    SIGNATURE_HIDDEN = "signature-hidden"
    BAD_SIGNATURE = "bad-signature"
    UNTRUSTED_SIGNER = "untrusted-signer"
    EXPIRED_SIGNER = "expired-signer"
    REVOKED_SIGNER = "revoked-signer"
    SIGNER_NOT_SENDER = "signer-not-sender"
    SIGNER_NOT_IN_DIRECTORY = "signer-not-in-directory"
    RECIPIENT_UNKNOWN = "recipient-unknown"
    RECIPIENT_NOT_COVERED = "recipient-not-covered"
    RECIPIENT_REVOKED = "recipient-revoked"
    WEAK_ALGORITHM = "weak-algorithm"
    MALFORMED = "malformed"
    TOO_COMPLEX = "too-complex"
    DIRECTORY_UNAVAILABLE = "directory-unavailable"
    CRL_UNAVAILABLE = "crl-unavailable"


# Transient codes map to the policy's transient_action (tempfail by default).
TRANSIENT_CODES: frozenset[Code] = frozenset({Code.DIRECTORY_UNAVAILABLE, Code.CRL_UNAVAILABLE})


class Action(StrEnum):
    ACCEPT = "accept"
    TAG = "tag"
    QUARANTINE = "quarantine"
    TEMPFAIL = "tempfail"
    REJECT = "reject"

    @property
    def strength(self) -> int:
        """SPEC §5: reject > tempfail > quarantine > tag > accept."""
        return _STRENGTH[self]


_STRENGTH = {
    Action.ACCEPT: 0,
    Action.TAG: 1,
    Action.QUARANTINE: 2,
    Action.TEMPFAIL: 3,
    Action.REJECT: 4,
}


def strongest(actions: list[Action] | tuple[Action, ...], default: Action = Action.ACCEPT) -> Action:
    return max(actions, key=lambda a: a.strength, default=default)


class Requirement(StrEnum):
    """Requirements a policy rule can list (SPEC §5)."""

    SIGNED = "signed"
    ENCRYPTED = "encrypted"
    SIGNATURE_VISIBLE = "signature-visible"
    SIGNER_IS_SENDER = "signer-is-sender"
    SIGNER_IN_DIRECTORY = "signer-in-directory"
    RECIPIENTS_COVERED = "recipients-covered"


# The codes whose failure each requirement raises (SPEC §5).
REQUIREMENT_CODES: dict[Requirement, frozenset[Code]] = {
    Requirement.SIGNED: frozenset({Code.UNSIGNED, Code.SIGNATURE_HIDDEN}),
    Requirement.ENCRYPTED: frozenset({Code.UNENCRYPTED}),
    Requirement.SIGNATURE_VISIBLE: frozenset({Code.SIGNATURE_HIDDEN}),
    Requirement.SIGNER_IS_SENDER: frozenset({Code.SIGNER_NOT_SENDER}),
    Requirement.SIGNER_IN_DIRECTORY: frozenset({Code.SIGNER_NOT_IN_DIRECTORY}),
    Requirement.RECIPIENTS_COVERED: frozenset(
        {Code.RECIPIENT_UNKNOWN, Code.RECIPIENT_NOT_COVERED}
    ),
}

# Violations under every rule that requires anything at all (SPEC §5).
ALWAYS_CODES: frozenset[Code] = frozenset(
    {
        Code.BAD_SIGNATURE,
        Code.UNTRUSTED_SIGNER,
        Code.EXPIRED_SIGNER,
        Code.REVOKED_SIGNER,
        Code.RECIPIENT_REVOKED,
        Code.WEAK_ALGORITHM,
        Code.MALFORMED,
        Code.TOO_COMPLEX,
        Code.DIRECTORY_UNAVAILABLE,
        Code.CRL_UNAVAILABLE,
    }
)


class Direction(StrEnum):
    INTERNAL = "internal"
    OUTBOUND = "outbound"
    INBOUND = "inbound"
    ANY = "any"


# SMTP replies (RFC 3463 enhanced status codes): (code, enhanced code).
REPLY_REJECT = ("550", "5.7.1")
REPLY_TEMPFAIL = ("451", "4.7.1")

# Authentication-Results smime= results (RFC 7281 §3).
class AuthResult(StrEnum):
    PASS = "pass"  # noqa: S105 - an RFC 7281 result, not a password
    FAIL = "fail"
    NEUTRAL = "neutral"
    NONE = "none"
    POLICY = "policy"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"
